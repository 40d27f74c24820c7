/* Local discovery, driven with an explicit clock: the mDNS responder and
 * querier (src/core/mdns.c) and the encrypted beacon (src/core/beacon.c).
 * A fake fm_io captures every mDNS packet and datagram the cores send; the
 * tests parse them with the core's own DNS codec and check the timing rules
 * of RFC 6762, and a miniature LAN delivers one core's packets to the
 * others (1 ms later) so discovery runs end to end on virtual time. Linked
 * with the core and libsodium/msgpack-c only. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/dns.h"
#include "fedmesh/fedmesh.h"

#define NODES_MAX 3
#define LOG_MAX 2048
#define QUEUE_MAX 512
#define PKT_MAX 1500
#define OPENS_MAX 256
#define PEER_PORT 4242
#define IFINDEX 2
#define LAN_LATENCY_MS 1
#define FED_A 0x11
#define FED_B 0x22

enum pkt_kind { PKT_MDNS = 0, PKT_DGRAM };

struct pkt {
	int kind;
	int node; /* sender */
	uint32_t ifindex;
	fm_addr to;
	uint64_t at; /* sent (log) or due (queue) */
	size_t len;
	uint8_t buf[PKT_MAX];
};

struct open_attempt {
	int node;
	fm_addr to;
	uint64_t at;
};

struct harness {
	fm_node *nodes[NODES_MAX];
	fm_iface ifaces[NODES_MAX];
	uint8_t fed[NODES_MAX];
	uint64_t deadline[NODES_MAX];
	uint64_t now;
	uint64_t rng;
	int lan; /* deliver between the cores */
	struct pkt log[LOG_MAX];
	int log_count;
	struct pkt queue[QUEUE_MAX];
	int queue_count;
	struct open_attempt opens[OPENS_MAX];
	int open_count;
	uint64_t next_stream;
};

static struct harness H;
static int ctx_ids[NODES_MAX] = {0, 1, 2};
static fm__dns_message M; /* the tests' parse buffer */

/* ---- the fake fm_io ---------------------------------------------------- */

static void record_pkt(struct pkt *p, int kind, int node, uint32_t ifindex,
                       const fm_addr *to, const uint8_t *buf, size_t len,
                       uint64_t at)
{
	assert_true(len <= PKT_MAX);
	p->kind = kind;
	p->node = node;
	p->ifindex = ifindex;
	p->to = *to;
	p->at = at;
	p->len = len;
	memcpy(p->buf, buf, len);
}

static void capture(int kind, int node, uint32_t ifindex, const fm_addr *to,
                    const uint8_t *buf, size_t len)
{
	if (H.log_count < LOG_MAX)
		record_pkt(&H.log[H.log_count++], kind, node, ifindex, to, buf,
		           len, H.now);
	if (H.lan) {
		assert_true(H.queue_count < QUEUE_MAX);
		record_pkt(&H.queue[H.queue_count++], kind, node, ifindex, to,
		           buf, len, H.now + LAN_LATENCY_MS);
	}
}

static int io_send_mdns(void *ctx, uint32_t ifindex, const fm_addr *to,
                        const uint8_t *buf, size_t len)
{
	capture(PKT_MDNS, *(int *)ctx, ifindex, to, buf, len);
	return 0;
}

static int io_send_datagram(void *ctx, const fm_addr *to, const uint8_t *buf,
                            size_t len)
{
	capture(PKT_DGRAM, *(int *)ctx, 0, to, buf, len);
	return 0;
}

static int io_stream_open(void *ctx, const fm_addr *to, uint64_t *id)
{
	assert_true(H.open_count < OPENS_MAX);
	H.opens[H.open_count].node = *(int *)ctx;
	H.opens[H.open_count].to = *to;
	H.opens[H.open_count].at = H.now;
	H.open_count++;
	*id = ++H.next_stream;
	return 0;
}

static int io_stream_send(void *ctx, uint64_t id, const uint8_t *buf,
                          size_t len)
{
	(void)ctx, (void)id, (void)buf, (void)len;
	return 0;
}

static void io_stream_close(void *ctx, uint64_t id)
{
	(void)ctx, (void)id;
}

static void io_random(void *ctx, uint8_t *buf, size_t len)
{
	size_t i;

	(void)ctx;
	for (i = 0; i < len; i++) {
		H.rng ^= H.rng << 13;
		H.rng ^= H.rng >> 7;
		H.rng ^= H.rng << 17;
		buf[i] = (uint8_t)H.rng;
	}
}

/* ---- addresses and the LAN --------------------------------------------- */

static fm_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
	fm_addr x;

	memset(&x, 0, sizeof(x));
	x.family = FM_AF_INET;
	x.ip[0] = a;
	x.ip[1] = b;
	x.ip[2] = c;
	x.ip[3] = d;
	x.port = port;
	return x;
}

static fm_addr v6_ula(uint8_t last, uint16_t port)
{
	fm_addr x;

	memset(&x, 0, sizeof(x));
	x.family = FM_AF_INET6;
	x.ip[0] = 0xfd;
	x.ip[15] = last;
	x.port = port;
	return x;
}

static int is_group(const fm_addr *a)
{
	return (a->family == FM_AF_INET && a->ip[0] == 224 &&
	        a->ip[3] == 251) ||
	       (a->family == FM_AF_INET6 && a->ip[0] == 0xff &&
	        a->ip[15] == 0xfb);
}

/* Node i's interface address of a family, or NULL. */
static const fm_addr *node_addr(int i, uint8_t family)
{
	uint8_t k;

	for (k = 0; k < H.ifaces[i].addr_count; k++)
		if (H.ifaces[i].addrs[k].family == family)
			return &H.ifaces[i].addrs[k];
	return NULL;
}

static int node_has(int i, const fm_addr *a)
{
	uint8_t k;

	for (k = 0; k < H.ifaces[i].addr_count; k++)
		if (H.ifaces[i].addrs[k].family == a->family &&
		    memcmp(H.ifaces[i].addrs[k].ip, a->ip, 16) == 0)
			return 1;
	return 0;
}

static void kick(int i)
{
	if (H.nodes[i] != NULL)
		H.deadline[i] = fm_node_tick(H.nodes[i], H.now);
}

static void deliver(const struct pkt *p)
{
	int j;

	for (j = 0; j < NODES_MAX; j++) {
		const fm_addr *src;
		fm_addr from;

		if (j == p->node || H.nodes[j] == NULL)
			continue;
		src = node_addr(p->node, p->to.family);
		if (src == NULL || node_addr(j, p->to.family) == NULL)
			continue;
		from = *src;
		if (p->kind == PKT_MDNS) {
			if (!is_group(&p->to) && !node_has(j, &p->to))
				continue;
			from.port = FM_MDNS_PORT;
			fm_node_recv_mdns(H.nodes[j], H.now, IFINDEX, &from,
			                  p->buf, p->len);
		} else {
			if (!(p->to.family == FM_AF_INET &&
			      p->to.ip[3] == 255) &&
			    !node_has(j, &p->to))
				continue;
			from.port = PEER_PORT;
			fm_node_recv_datagram(H.nodes[j], H.now, &from, p->buf,
			                      p->len);
		}
		kick(j);
	}
}

/* Runs timers and deliveries in time order up to `end`. */
static void run_until(uint64_t end)
{
	for (;;) {
		uint64_t t = UINT64_MAX;
		int i, k;

		for (i = 0; i < NODES_MAX; i++)
			if (H.nodes[i] != NULL && H.deadline[i] < t)
				t = H.deadline[i];
		for (k = 0; k < H.queue_count; k++)
			if (H.queue[k].at < t)
				t = H.queue[k].at;
		if (t > end)
			break;
		if (t > H.now)
			H.now = t;
		for (k = 0; k < H.queue_count;) {
			if (H.queue[k].at <= H.now) {
				static struct pkt p;
				p = H.queue[k];
				H.queue[k] = H.queue[--H.queue_count];
				deliver(&p);
				continue;
			}
			k++;
		}
		for (i = 0; i < NODES_MAX; i++)
			if (H.nodes[i] != NULL && H.deadline[i] <= H.now)
				kick(i);
	}
	if (end > H.now)
		H.now = end;
}

/* ---- nodes --------------------------------------------------------------- */

static void node_new(int i, uint8_t fed, int mdns, int beacon, int with_v6)
{
	fm_node_config cfg;
	uint8_t seed[FM_SEED_BYTES];
	fm_io io;
	fm_iface *ifc = &H.ifaces[i];

	memset(&cfg, 0, sizeof(cfg));
	memset(seed, 10 + i, sizeof(seed));
	assert_int_equal(fm_identity_from_seed(seed, &cfg.identity), 0);
	memset(cfg.federation_key, fed, sizeof(cfg.federation_key));
	cfg.mdns_enabled = (uint8_t)mdns;
	cfg.beacon_enabled = (uint8_t)beacon;
	cfg.dht_disabled = 1; /* discovery timing alone */
	cfg.peer_port = PEER_PORT;
	snprintf(cfg.hostname, sizeof(cfg.hostname), "host%d", i);
	memset(&io, 0, sizeof(io));
	io.ctx = &ctx_ids[i];
	io.send_datagram = io_send_datagram;
	io.random_bytes = io_random;
	io.stream_open = io_stream_open;
	io.stream_send = io_stream_send;
	io.stream_close = io_stream_close;
	io.send_mdns = io_send_mdns;
	assert_int_equal(fm_node_new(&cfg, &io, H.now, &H.nodes[i]), 0);
	H.fed[i] = fed;
	H.deadline[i] = UINT64_MAX;
	memset(ifc, 0, sizeof(*ifc));
	ifc->index = IFINDEX;
	snprintf(ifc->name, sizeof(ifc->name), "eth0");
	ifc->addrs[ifc->addr_count++] = v4(10, 0, 0, (uint8_t)(i + 1), 0);
	if (with_v6)
		ifc->addrs[ifc->addr_count++] = v6_ula((uint8_t)(i + 1), 0);
	ifc->broadcast[ifc->broadcast_count++] = v4(10, 0, 0, 255, 0);
}

static void iface_up(int i)
{
	assert_int_equal(fm_node_iface_update(H.nodes[i], H.now, &H.ifaces[i]),
	                 0);
	kick(i);
}

static fm_node_stats stats(int i)
{
	fm_node_stats s;

	fm_node_get_stats(H.nodes[i], &s);
	return s;
}

static void node_id(int i, uint8_t id[FM_NODE_ID_BYTES])
{
	fm_node_status st;

	fm_node_get_status(H.nodes[i], &st);
	memcpy(id, st.node_id, FM_NODE_ID_BYTES);
}

/* "fedmesh-<12 hex>[ (n)]._fedmesh._udp.local" of node i. */
static void instance_name(int i, int number, char *out, size_t cap)
{
	uint8_t id[FM_NODE_ID_BYTES];
	char hex[FM_NODE_ID_HEX_LEN + 1];

	node_id(i, id);
	fm_hex_encode(id, sizeof(id), hex);
	if (number <= 1)
		snprintf(out, cap, "fedmesh-%.12s._fedmesh._udp.local", hex);
	else
		snprintf(out, cap, "fedmesh-%.12s (%d)._fedmesh._udp.local",
		         hex, number);
}

/* The tag as documented, computed here independently of the core. */
static void expected_tag(uint8_t fed, const uint8_t id[FM_NODE_ID_BYTES],
                         char hex[17])
{
	static const char label[] = "fedmesh-mdns-tag-v1";
	crypto_generichash_state st;
	uint8_t key[FM_FEDERATION_KEY_BYTES], full[32];

	memset(key, fed, sizeof(key));
	crypto_generichash_init(&st, key, sizeof(key), sizeof(full));
	crypto_generichash_update(&st, (const uint8_t *)label,
	                          sizeof(label) - 1);
	crypto_generichash_update(&st, id, FM_NODE_ID_BYTES);
	crypto_generichash_final(&st, full, sizeof(full));
	fm_hex_encode(full, 8, hex);
}

static int setup(void **state)
{
	(void)state;
	memset(&H, 0, sizeof(H));
	H.rng = 0x9e3779b97f4a7c15ULL;
	return 0;
}

static int teardown(void **state)
{
	int i;

	(void)state;
	for (i = 0; i < NODES_MAX; i++)
		fm_node_free(H.nodes[i]);
	memset(H.nodes, 0, sizeof(H.nodes));
	return 0;
}

/* ---- packet inspection -----------------------------------------------------
 */

static const fm__dns_message *parse(const struct pkt *p)
{
	assert_int_equal(p->kind, PKT_MDNS);
	assert_int_equal(fm__dns_parse(p->buf, p->len, &M), 0);
	return &M;
}

static int is_response(const struct pkt *p)
{
	return parse(p)->flags & FM__DNS_FLAG_QR;
}

static int is_probe(const struct pkt *p)
{
	const fm__dns_message *m = parse(p);

	return !(m->flags & FM__DNS_FLAG_QR) && m->nscount > 0;
}

/* A query of the querier (not a probe) asking PTR _fedmesh._udp.local. */
static int is_ptr_query(const struct pkt *p)
{
	const fm__dns_message *m = parse(p);

	return !(m->flags & FM__DNS_FLAG_QR) && m->nscount == 0 &&
	       m->question_count >= 1 && m->questions[0].type == FM__DNS_PTR &&
	       fm__dns_name_equal(m->questions[0].name, FM_MDNS_SERVICE);
}

/* A query for an instance's SRV: resolving. */
static int is_resolve(const struct pkt *p)
{
	const fm__dns_message *m = parse(p);

	return !(m->flags & FM__DNS_FLAG_QR) && m->nscount == 0 &&
	       m->question_count >= 1 && m->questions[0].type == FM__DNS_SRV;
}

static const fm__dns_record *find_rec(const fm__dns_message *m,
                                      const char *name, uint16_t type)
{
	uint8_t i;

	for (i = 0; i < m->record_count; i++)
		if (m->records[i].type == type &&
		    fm__dns_name_equal(m->records[i].name, name))
			return &m->records[i];
	return NULL;
}

/* Index of the next mDNS packet of node `node` at or after log index
 * `from` satisfying pred, or -1. */
static int next_pkt(int node, int from, int (*pred)(const struct pkt *))
{
	int k;

	for (k = from; k < H.log_count; k++)
		if (H.log[k].kind == PKT_MDNS && H.log[k].node == node &&
		    (pred == NULL || pred(&H.log[k])))
			return k;
	return -1;
}

static int count_responses(int node)
{
	int k, n = 0;

	for (k = 0; k < H.log_count; k++)
		if (H.log[k].node == node && H.log[k].kind == PKT_MDNS &&
		    is_response(&H.log[k]))
			n++;
	return n;
}

static int count_pkts(int node, int kind)
{
	int k, n = 0;

	for (k = 0; k < H.log_count; k++)
		if (H.log[k].node == node && H.log[k].kind == kind)
			n++;
	return n;
}

/* ---- building packets to inject ------------------------------------------ */

static void rec_init(fm__dns_record *r, const char *name, uint16_t type,
                     uint32_t ttl, uint8_t section)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->type = type;
	r->class_ = FM__DNS_CLASS_IN;
	r->ttl = ttl;
	r->section = section;
}

static size_t build_query(uint8_t *buf, size_t cap, uint16_t id,
                          const char *name, uint16_t type, int qu,
                          const fm__dns_record *known, int nknown)
{
	fm__dns_writer w;
	size_t len = 0;
	int i;

	fm__dns_writer_init(&w, buf, cap, id, 0);
	assert_int_equal(
	        fm__dns_add_question(&w, name, type,
	                             (uint16_t)(FM__DNS_CLASS_IN |
	                                        (qu ? FM__DNS_CLASS_TOP : 0))),
	        0);
	for (i = 0; i < nknown; i++)
		assert_int_equal(fm__dns_add_record(&w, &known[i]), 0);
	assert_int_equal(fm__dns_finish(&w, &len), 0);
	return len;
}

static size_t build_response(uint8_t *buf, size_t cap,
                             const fm__dns_record *recs, int n)
{
	fm__dns_writer w;
	size_t len = 0;
	int i;

	fm__dns_writer_init(&w, buf, cap, 0, FM__DNS_FLAG_QR | FM__DNS_FLAG_AA);
	for (i = 0; i < n; i++)
		assert_int_equal(fm__dns_add_record(&w, &recs[i]), 0);
	assert_int_equal(fm__dns_finish(&w, &len), 0);
	return len;
}

static void inject(int node, const fm_addr *from, const uint8_t *buf,
                   size_t len)
{
	fm_node_recv_mdns(H.nodes[node], H.now, IFINDEX, from, buf, len);
	kick(node);
}

/* A stranger on the link, 10.0.0.9. */
static fm_addr stranger(uint16_t port)
{
	return v4(10, 0, 0, 9, port);
}

/* Node 0 alone, past probing and announcing, log cleared. */
static void single_ready(void)
{
	node_new(0, FED_A, 1, 0, 0);
	iface_up(0);
	run_until(H.now + 3000);
	H.log_count = 0;
}

/* ---- responder -------------------------------------------------------------
 */

static void test_probe_then_announce(void **state)
{
	char inst[256], tag[17], want[128];
	uint8_t id[FM_NODE_ID_BYTES];
	const fm__dns_message *m;
	const fm__dns_record *r;
	uint64_t probe_at[3], ann_at[2];
	int k = 0, n;

	(void)state;
	node_new(0, FED_A, 1, 0, 0);
	iface_up(0);
	run_until(6000);
	instance_name(0, 1, inst, sizeof(inst));
	for (n = 0; n < 3; n++) {
		k = next_pkt(0, k, is_probe);
		assert_true(k >= 0);
		probe_at[n] = H.log[k].at;
		m = parse(&H.log[k]);
		assert_int_equal(m->question_count, 1);
		assert_string_equal(m->questions[0].name, inst);
		assert_int_equal(m->questions[0].type, FM__DNS_ANY);
		/* the first probe asks for unicast answers */
		assert_int_equal(!!(m->questions[0].class_ & FM__DNS_CLASS_TOP),
		                 n == 0);
		assert_non_null(find_rec(m, inst, FM__DNS_SRV));
		assert_non_null(find_rec(m, inst, FM__DNS_TXT));
		assert_int_equal(m->records[0].section, FM__DNS_AUTHORITY);
		k++;
	}
	assert_true(next_pkt(0, k, is_probe) < 0);
	assert_true(probe_at[0] < 250);
	assert_int_equal(probe_at[1] - probe_at[0], 250);
	assert_int_equal(probe_at[2] - probe_at[1], 250);
	k = 0;
	for (n = 0; n < 2; n++) {
		k = next_pkt(0, k, is_response);
		assert_true(k >= 0);
		ann_at[n] = H.log[k].at;
		k++;
	}
	assert_true(next_pkt(0, k, is_response) < 0);
	assert_int_equal(ann_at[0] - probe_at[2], 250);
	assert_int_equal(ann_at[1] - ann_at[0], 1000);
	/* what an announcement holds */
	m = parse(&H.log[next_pkt(0, 0, is_response)]);
	assert_int_equal(m->id, 0);
	assert_true(m->flags & FM__DNS_FLAG_AA);
	r = find_rec(m, "_services._dns-sd._udp.local", FM__DNS_PTR);
	assert_non_null(r);
	assert_string_equal(r->rd.ptr, FM_MDNS_SERVICE);
	r = find_rec(m, FM_MDNS_SERVICE, FM__DNS_PTR);
	assert_non_null(r);
	assert_string_equal(r->rd.ptr, inst);
	assert_int_equal(r->ttl, 4500);
	assert_int_equal(r->class_, FM__DNS_CLASS_IN); /* shared */
	r = find_rec(m, inst, FM__DNS_SRV);
	assert_non_null(r);
	assert_int_equal(r->ttl, 120);
	assert_int_equal(r->class_, FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP);
	assert_int_equal(r->rd.srv.priority, 0);
	assert_int_equal(r->rd.srv.weight, 0);
	assert_int_equal(r->rd.srv.port, PEER_PORT);
	assert_string_equal(r->rd.srv.target, "host0.local");
	r = find_rec(m, inst, FM__DNS_TXT);
	assert_non_null(r);
	assert_int_equal(r->ttl, 4500);
	assert_int_equal(r->class_, FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP);
	assert_int_equal(r->rd.txt.count, 3);
	assert_string_equal(r->rd.txt.strings[0], "v=1");
	node_id(0, id);
	fm_hex_encode(id, sizeof(id), want + 3);
	memcpy(want, "id=", 3);
	assert_string_equal(r->rd.txt.strings[1], want);
	expected_tag(FED_A, id, tag);
	snprintf(want, sizeof(want), "fed=%s", tag);
	assert_string_equal(r->rd.txt.strings[2], want);
	r = find_rec(m, "host0.local", FM__DNS_A);
	assert_non_null(r);
	assert_int_equal(r->ttl, 120);
	assert_int_equal(r->class_, FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP);
	assert_memory_equal(r->rd.a, H.ifaces[0].addrs[0].ip, 4);
	/* sent to the IPv4 group only: the interface has no IPv6 */
	assert_true(H.log[next_pkt(0, 0, is_response)].to.family == FM_AF_INET);
	assert_true(is_group(&H.log[next_pkt(0, 0, is_response)].to));
	assert_int_equal(H.log[0].ifindex, IFINDEX);
	assert_int_equal(stats(0).mdns_sent, (uint64_t)H.log_count);
}

static void test_both_families(void **state)
{
	const fm__dns_message *m;
	int k, v4_seen = 0, v6_seen = 0;

	(void)state;
	node_new(0, FED_A, 1, 0, 1);
	iface_up(0);
	run_until(3000);
	for (k = 0; k < H.log_count; k++) {
		if (!is_response(&H.log[k]))
			continue;
		assert_true(is_group(&H.log[k].to));
		assert_int_equal(H.log[k].to.port, FM_MDNS_PORT);
		v4_seen += H.log[k].to.family == FM_AF_INET;
		v6_seen += H.log[k].to.family == FM_AF_INET6;
		m = parse(&H.log[k]);
		assert_non_null(find_rec(m, "host0.local", FM__DNS_A));
		assert_non_null(find_rec(m, "host0.local", FM__DNS_AAAA));
	}
	assert_int_equal(v4_seen, 2);
	assert_int_equal(v6_seen, 2);
}

static void test_ptr_answer_delayed(void **state)
{
	uint8_t buf[512];
	fm_addr from = stranger(FM_MDNS_PORT);
	size_t len;
	int round, k;

	(void)state;
	single_ready();
	for (round = 0; round < 12; round++) {
		uint64_t asked = H.now;
		const fm__dns_message *m;
		char inst[256];

		H.log_count = 0;
		len = build_query(buf, sizeof(buf), 0, FM_MDNS_SERVICE,
		                  FM__DNS_PTR, 0, NULL, 0);
		inject(0, &from, buf, len);
		/* nothing goes out at once */
		assert_int_equal(H.log_count, 0);
		run_until(asked + 200);
		k = next_pkt(0, 0, is_response);
		assert_true(k >= 0);
		assert_true(H.log[k].at - asked >= 20);
		assert_true(H.log[k].at - asked <= 120);
		assert_true(is_group(&H.log[k].to));
		m = parse(&H.log[k]);
		instance_name(0, 1, inst, sizeof(inst));
		assert_non_null(find_rec(m, FM_MDNS_SERVICE, FM__DNS_PTR));
		assert_int_equal(
		        find_rec(m, FM_MDNS_SERVICE, FM__DNS_PTR)->section,
		        FM__DNS_ANSWER);
		/* RFC 6763 section 12: SRV, TXT and address come along */
		assert_int_equal(find_rec(m, inst, FM__DNS_SRV)->section,
		                 FM__DNS_ADDITIONAL);
		assert_non_null(find_rec(m, inst, FM__DNS_TXT));
		assert_non_null(find_rec(m, "host0.local", FM__DNS_A));
		assert_true(next_pkt(0, k + 1, is_response) < 0);
		run_until(H.now + 1500);
	}
}

static void test_meta_query(void **state)
{
	uint8_t buf[512];
	fm_addr from = stranger(FM_MDNS_PORT);
	const fm__dns_record *r;
	size_t len;
	int k;

	(void)state;
	single_ready();
	len = build_query(buf, sizeof(buf), 0, "_services._dns-sd._udp.local",
	                  FM__DNS_PTR, 0, NULL, 0);
	inject(0, &from, buf, len);
	run_until(H.now + 200);
	k = next_pkt(0, 0, is_response);
	assert_true(k >= 0);
	r = find_rec(parse(&H.log[k]), "_services._dns-sd._udp.local",
	             FM__DNS_PTR);
	assert_non_null(r);
	assert_string_equal(r->rd.ptr, FM_MDNS_SERVICE);
	/* questions about names that are not ours get nothing */
	H.log_count = 0;
	len = build_query(buf, sizeof(buf), 0, "_http._tcp.local", FM__DNS_PTR,
	                  0, NULL, 0);
	inject(0, &from, buf, len);
	len = build_query(buf, sizeof(buf), 0, "other.local", FM__DNS_A, 0,
	                  NULL, 0);
	inject(0, &from, buf, len);
	run_until(H.now + 2000);
	assert_true(next_pkt(0, 0, is_response) < 0);
}

static void test_qu_and_legacy_unicast(void **state)
{
	uint8_t buf[512];
	fm_addr from = stranger(FM_MDNS_PORT);
	fm_addr legacy = stranger(40000);
	const fm__dns_message *m;
	const fm__dns_record *r;
	char inst[256];
	size_t len;
	int k;

	(void)state;
	single_ready();
	len = build_query(buf, sizeof(buf), 0, FM_MDNS_SERVICE, FM__DNS_PTR, 1,
	                  NULL, 0);
	inject(0, &from, buf, len);
	/* unicast, at once, to the asker */
	assert_int_equal(count_responses(0), 1);
	k = next_pkt(0, 0, is_response);
	assert_int_equal(H.log[k].to.family, FM_AF_INET);
	assert_memory_equal(H.log[k].to.ip, from.ip, 4);
	assert_int_equal(H.log[k].to.port, FM_MDNS_PORT);
	m = parse(&H.log[k]);
	assert_non_null(find_rec(m, FM_MDNS_SERVICE, FM__DNS_PTR));
	run_until(H.now + 500);
	assert_int_equal(count_responses(0), 1); /* and nothing multicast */

	/* legacy unicast (source port not 5353): ID and question echoed, no
	 * cache-flush, TTL at most 10 s */
	H.log_count = 0;
	instance_name(0, 1, inst, sizeof(inst));
	len = build_query(buf, sizeof(buf), 0x1234, inst, FM__DNS_SRV, 0, NULL,
	                  0);
	inject(0, &legacy, buf, len);
	assert_int_equal(count_responses(0), 1);
	k = next_pkt(0, 0, is_response);
	assert_int_equal(H.log[k].to.port, 40000);
	m = parse(&H.log[k]);
	assert_int_equal(m->id, 0x1234);
	assert_int_equal(m->question_count, 1);
	assert_string_equal(m->questions[0].name, inst);
	r = find_rec(m, inst, FM__DNS_SRV);
	assert_non_null(r);
	assert_true(r->ttl <= 10);
	assert_int_equal(r->class_, FM__DNS_CLASS_IN);
	for (k = 0; k < m->record_count; k++)
		assert_int_equal(m->records[k].class_ & FM__DNS_CLASS_TOP, 0);
}

static void test_known_answer_suppression(void **state)
{
	uint8_t buf[512];
	fm_addr from = stranger(FM_MDNS_PORT);
	fm__dns_record known;
	char inst[256];
	size_t len;

	(void)state;
	single_ready();
	instance_name(0, 1, inst, sizeof(inst));
	/* listed with at least half our TTL: not repeated */
	rec_init(&known, FM_MDNS_SERVICE, FM__DNS_PTR, 2250, FM__DNS_ANSWER);
	snprintf(known.rd.ptr, sizeof(known.rd.ptr), "%s", inst);
	len = build_query(buf, sizeof(buf), 0, FM_MDNS_SERVICE, FM__DNS_PTR, 0,
	                  &known, 1);
	inject(0, &from, buf, len);
	run_until(H.now + 1500);
	assert_true(next_pkt(0, 0, is_response) < 0);
	/* the same via QU: no unicast either */
	len = build_query(buf, sizeof(buf), 0, FM_MDNS_SERVICE, FM__DNS_PTR, 1,
	                  &known, 1);
	inject(0, &from, buf, len);
	assert_true(next_pkt(0, 0, is_response) < 0);
	/* less than half our TTL left in the asker's cache: answered */
	known.ttl = 2249;
	len = build_query(buf, sizeof(buf), 0, FM_MDNS_SERVICE, FM__DNS_PTR, 0,
	                  &known, 1);
	inject(0, &from, buf, len);
	run_until(H.now + 200);
	assert_true(next_pkt(0, 0, is_response) >= 0);
	/* a known answer for another instance suppresses nothing */
	run_until(H.now + 1500);
	H.log_count = 0;
	known.ttl = 4500;
	snprintf(known.rd.ptr, sizeof(known.rd.ptr),
	         "someone else._fedmesh._udp.local");
	len = build_query(buf, sizeof(buf), 0, FM_MDNS_SERVICE, FM__DNS_PTR, 0,
	                  &known, 1);
	inject(0, &from, buf, len);
	run_until(H.now + 200);
	assert_true(next_pkt(0, 0, is_response) >= 0);
}

static void test_one_multicast_per_second(void **state)
{
	uint8_t buf[512];
	fm_addr from = stranger(FM_MDNS_PORT);
	char inst[256];
	uint64_t t0;
	size_t len;
	int k;

	(void)state;
	single_ready();
	instance_name(0, 1, inst, sizeof(inst));
	len = build_query(buf, sizeof(buf), 0, inst, FM__DNS_SRV, 0, NULL, 0);
	/* a unique record is answered at once */
	t0 = H.now;
	inject(0, &from, buf, len);
	assert_int_equal(count_responses(0), 1);
	k = next_pkt(0, 0, is_response);
	assert_int_equal(H.log[k].at, t0);
	assert_non_null(find_rec(parse(&H.log[k]), inst, FM__DNS_SRV));
	/* again within the second: not multicast again */
	run_until(t0 + 500);
	inject(0, &from, buf, len);
	run_until(t0 + 999);
	inject(0, &from, buf, len);
	assert_int_equal(count_responses(0), 1);
	/* a second later it is */
	run_until(t0 + 1000);
	inject(0, &from, buf, len);
	assert_int_equal(count_responses(0), 2);
	/* a burst of PTR queries yields one multicast per second */
	run_until(H.now + 2000);
	H.log_count = 0;
	len = build_query(buf, sizeof(buf), 0, FM_MDNS_SERVICE, FM__DNS_PTR, 0,
	                  NULL, 0);
	t0 = H.now;
	for (k = 0; k < 20; k++) {
		inject(0, &from, buf, len);
		run_until(t0 + (uint64_t)(k + 1) * 100);
	}
	run_until(t0 + 2100);
	{
		int n = 0;
		uint64_t last = 0;
		for (k = 0; k < H.log_count; k++) {
			if (!is_response(&H.log[k]) ||
			    find_rec(parse(&H.log[k]), FM_MDNS_SERVICE,
			             FM__DNS_PTR) == NULL)
				continue;
			if (n > 0)
				assert_true(H.log[k].at - last >= 1000);
			last = H.log[k].at;
			n++;
		}
		assert_true(n >= 2 && n <= 3);
	}
}

static void test_goodbye_on_shutdown(void **state)
{
	const fm__dns_message *m;
	char inst[256];
	uint8_t i;

	(void)state;
	single_ready();
	instance_name(0, 1, inst, sizeof(inst));
	fm_node_shutdown(H.nodes[0], H.now);
	assert_int_equal(H.log_count, 1);
	m = parse(&H.log[0]);
	assert_true(m->flags & FM__DNS_FLAG_QR);
	assert_non_null(find_rec(m, FM_MDNS_SERVICE, FM__DNS_PTR));
	assert_non_null(find_rec(m, inst, FM__DNS_SRV));
	assert_non_null(find_rec(m, inst, FM__DNS_TXT));
	for (i = 0; i < m->record_count; i++)
		assert_int_equal(m->records[i].ttl, 0);
	/* and then silence */
	assert_int_equal(fm_node_tick(H.nodes[0], H.now), FM_DEADLINE_NONE);
	H.deadline[0] = FM_DEADLINE_NONE;
	run_until(H.now + 60000);
	assert_int_equal(H.log_count, 1);
	fm_node_shutdown(H.nodes[0], H.now); /* twice is harmless */
	assert_int_equal(H.log_count, 1);
}

static void test_no_goodbye_before_probing_done(void **state)
{
	(void)state;
	node_new(0, FED_A, 1, 0, 0);
	iface_up(0);
	run_until(100);
	H.log_count = 0;
	fm_node_shutdown(H.nodes[0], H.now);
	assert_int_equal(H.log_count, 0);
}

/* ---- querier ---------------------------------------------------------------
 */

static void test_query_backoff(void **state)
{
	uint64_t at[16];
	int k = 0, n = 0;

	(void)state;
	node_new(0, FED_A, 1, 0, 0);
	iface_up(0);
	run_until(5ULL * 60 * 60 * 1000);
	while (n < 16 && (k = next_pkt(0, k, is_ptr_query)) >= 0) {
		const fm__dns_message *m = parse(&H.log[k]);
		/* always QM: unicast replies to a shared port 5353 may reach
		 * another process (avahi-daemon) instead of us */
		assert_int_equal(m->questions[0].class_ & FM__DNS_CLASS_TOP, 0);
		at[n++] = H.log[k++].at;
	}
	/* 1 s, 2 s, ... 2048 s (68 min in all), then hourly */
	assert_true(n >= 14);
	assert_true(at[0] >= 20 && at[0] <= 120);
	for (k = 1; k < n; k++) {
		uint64_t want = 1000ULL << (k - 1);
		if (want > 60ULL * 60 * 1000)
			want = 60ULL * 60 * 1000;
		assert_int_equal(at[k] - at[k - 1], want);
	}
	assert_int_equal(at[n - 1] - at[n - 2], 60ULL * 60 * 1000);
}

/* A member that is not running here: its records are crafted. */
struct fake_member {
	uint8_t id[FM_NODE_ID_BYTES];
	char inst[128];
	char host[64];
	char tag[17];
};

static void fake_member(struct fake_member *f, uint8_t seed, uint8_t fed)
{
	char hex[FM_NODE_ID_HEX_LEN + 1];

	memset(f->id, seed, sizeof(f->id));
	f->id[0] = 0xab;
	fm_hex_encode(f->id, sizeof(f->id), hex);
	snprintf(f->inst, sizeof(f->inst), "fedmesh-%.12s._fedmesh._udp.local",
	         hex);
	snprintf(f->host, sizeof(f->host), "fake%u.local", seed);
	expected_tag(fed, f->id, f->tag);
}

/* PTR [+ SRV + TXT + A] of a fake member, plus unrelated records that
 * must be ignored. Returns the record count. */
static int fake_records(const struct fake_member *f, fm__dns_record *r,
                        int complete, const char *version, uint16_t port,
                        uint8_t last_octet)
{
	char hex[FM_NODE_ID_HEX_LEN + 1];
	int n = 0;

	fm_hex_encode(f->id, sizeof(f->id), hex);
	rec_init(&r[n], "_http._tcp.local", FM__DNS_PTR, 4500, FM__DNS_ANSWER);
	snprintf(r[n++].rd.ptr, sizeof(r[0].rd.ptr),
	         "Printer._http._tcp.local");
	rec_init(&r[n], FM_MDNS_SERVICE, FM__DNS_PTR, 4500, FM__DNS_ANSWER);
	snprintf(r[n++].rd.ptr, sizeof(r[0].rd.ptr), "%s", f->inst);
	if (!complete)
		return n;
	rec_init(&r[n], "Printer._http._tcp.local", FM__DNS_SRV, 120,
	         FM__DNS_ADDITIONAL);
	r[n].rd.srv.port = 80;
	snprintf(r[n++].rd.srv.target, sizeof(r[0].rd.srv.target),
	         "printer.local");
	rec_init(&r[n], f->inst, FM__DNS_SRV, 120, FM__DNS_ADDITIONAL);
	r[n].class_ |= FM__DNS_CLASS_TOP;
	r[n].rd.srv.port = port;
	snprintf(r[n++].rd.srv.target, sizeof(r[0].rd.srv.target), "%s",
	         f->host);
	rec_init(&r[n], f->inst, FM__DNS_TXT, 4500, FM__DNS_ADDITIONAL);
	r[n].class_ |= FM__DNS_CLASS_TOP;
	snprintf(r[n].rd.txt.strings[0], 256, "%s", version);
	snprintf(r[n].rd.txt.strings[1], 256, "id=%s", hex);
	snprintf(r[n].rd.txt.strings[2], 256, "fed=%s", f->tag);
	r[n++].rd.txt.count = 3;
	rec_init(&r[n], "printer.local", FM__DNS_A, 120, FM__DNS_ADDITIONAL);
	memcpy(r[n++].rd.a, (const uint8_t[]){10, 0, 0, 77}, 4);
	rec_init(&r[n], f->host, FM__DNS_A, 120, FM__DNS_ADDITIONAL);
	r[n].class_ |= FM__DNS_CLASS_TOP;
	memcpy(r[n++].rd.a, (const uint8_t[]){10, 0, 0, last_octet}, 4);
	return n;
}

static void test_learns_member_and_known_answers(void **state)
{
	static fm__dns_record recs[8];
	uint8_t buf[FM_DATAGRAM_MAX_BYTES];
	fm_addr from = v4(10, 0, 0, 50, FM_MDNS_PORT);
	fm_addr want;
	struct fake_member f;
	const fm__dns_message *m;
	const fm__dns_record *ka;
	size_t len;
	int n, k;

	(void)state;
	single_ready();
	fake_member(&f, 5, FED_A);
	/* a PTR alone: the querier asks for SRV and TXT */
	n = fake_records(&f, recs, 0, "v=1", PEER_PORT, 50);
	len = build_response(buf, sizeof(buf), recs, n);
	inject(0, &from, buf, len);
	run_until(H.now + 150);
	k = next_pkt(0, 0, is_resolve);
	assert_true(k >= 0);
	m = parse(&H.log[k]);
	assert_int_equal(m->question_count, 2);
	assert_string_equal(m->questions[0].name, f.inst);
	assert_int_equal(m->questions[0].type, FM__DNS_SRV);
	assert_int_equal(m->questions[1].type, FM__DNS_TXT);
	assert_int_equal(H.open_count, 0);
	/* the rest: dialled at 10.0.0.50:4242, once */
	n = fake_records(&f, recs, 1, "v=1", PEER_PORT, 50);
	len = build_response(buf, sizeof(buf), recs, n);
	inject(0, &from, buf, len);
	assert_int_equal(stats(0).peers_discovered, 1);
	assert_int_equal(H.open_count, 1);
	assert_int_equal(H.opens[0].node, 0);
	want = v4(10, 0, 0, 50, PEER_PORT);
	assert_int_equal(H.opens[0].to.family, want.family);
	assert_memory_equal(H.opens[0].to.ip, want.ip, 4);
	assert_int_equal(H.opens[0].to.port, PEER_PORT);
	inject(0, &from, buf, len);
	assert_int_equal(H.open_count, 1);
	assert_int_equal(stats(0).peers_discovered, 1);
	assert_int_equal(stats(0).foreign_seen, 0);
	/* the next periodic query lists it as a known answer */
	H.log_count = 0;
	run_until(H.now + 70000);
	k = next_pkt(0, 0, is_ptr_query);
	assert_true(k >= 0);
	m = parse(&H.log[k]);
	ka = find_rec(m, FM_MDNS_SERVICE, FM__DNS_PTR);
	assert_non_null(ka);
	assert_string_equal(ka->rd.ptr, f.inst);
	assert_true(ka->ttl > 2250 && ka->ttl <= 4500);
	/* a goodbye removes it one second later: no longer listed */
	recs[1].ttl = 0;
	len = build_response(buf, sizeof(buf), &recs[1], 1);
	inject(0, &from, buf, len);
	H.log_count = 0;
	run_until(H.now + 200000);
	k = next_pkt(0, 0, is_ptr_query);
	assert_true(k >= 0);
	assert_null(find_rec(parse(&H.log[k]), FM_MDNS_SERVICE, FM__DNS_PTR));
	assert_int_equal(stats(0).mdns_malformed, 0);
}

static void test_foreign_and_invalid_txt(void **state)
{
	static fm__dns_record recs[8];
	uint8_t buf[FM_DATAGRAM_MAX_BYTES];
	fm_addr from = v4(10, 0, 0, 60, FM_MDNS_PORT);
	struct fake_member f, g, h;
	size_t len;
	int n;

	(void)state;
	single_ready();
	/* another federation's node: seen once, never dialled */
	fake_member(&f, 6, FED_B);
	n = fake_records(&f, recs, 1, "v=1", PEER_PORT, 60);
	len = build_response(buf, sizeof(buf), recs, n);
	inject(0, &from, buf, len);
	inject(0, &from, buf, len);
	assert_int_equal(stats(0).foreign_seen, 1);
	assert_int_equal(stats(0).peers_discovered, 0);
	/* a member's id with a forged tag is foreign too */
	fake_member(&g, 7, FED_A);
	g.tag[0] = g.tag[0] == '0' ? '1' : '0';
	n = fake_records(&g, recs, 1, "v=1", PEER_PORT, 61);
	len = build_response(buf, sizeof(buf), recs, n);
	inject(0, &from, buf, len);
	assert_int_equal(stats(0).foreign_seen, 2);
	/* another version: not counted, not dialled */
	fake_member(&h, 8, FED_A);
	n = fake_records(&h, recs, 1, "v=2", PEER_PORT, 62);
	len = build_response(buf, sizeof(buf), recs, n);
	inject(0, &from, buf, len);
	run_until(H.now + 600000);
	assert_int_equal(stats(0).foreign_seen, 2);
	assert_int_equal(stats(0).peers_discovered, 0);
	assert_int_equal(H.open_count, 0);
}

/* ---- conflicts -------------------------------------------------------------
 */

static void test_name_conflict_renames(void **state)
{
	static fm__dns_record rec;
	uint8_t buf[FM_DATAGRAM_MAX_BYTES];
	fm_addr from = stranger(FM_MDNS_PORT);
	char inst[256], inst2[256], inst3[256];
	const fm__dns_message *m;
	size_t len;
	int k;

	(void)state;
	node_new(0, FED_A, 1, 0, 0);
	iface_up(0);
	instance_name(0, 1, inst, sizeof(inst));
	instance_name(0, 2, inst2, sizeof(inst2));
	instance_name(0, 3, inst3, sizeof(inst3));
	/* after the first probe, another host answers for our name */
	k = -1;
	while (k < 0) {
		run_until(H.now + 10);
		k = next_pkt(0, 0, is_probe);
	}
	rec_init(&rec, inst, FM__DNS_SRV, 120, FM__DNS_ANSWER);
	rec.class_ |= FM__DNS_CLASS_TOP;
	rec.rd.srv.port = 9999;
	snprintf(rec.rd.srv.target, sizeof(rec.rd.srv.target), "other.local");
	len = build_response(buf, sizeof(buf), &rec, 1);
	inject(0, &from, buf, len);
	H.log_count = 0;
	run_until(H.now + 3000);
	/* three probes and two announcements of the new name, none of the
	 * old one */
	for (k = 0; k < H.log_count; k++) {
		m = parse(&H.log[k]);
		assert_null(find_rec(m, inst, FM__DNS_SRV));
	}
	k = next_pkt(0, 0, is_probe);
	assert_true(k >= 0);
	assert_string_equal(parse(&H.log[k])->questions[0].name, inst2);
	k = next_pkt(0, 0, is_response);
	assert_true(k >= 0);
	assert_non_null(find_rec(parse(&H.log[k]), inst2, FM__DNS_SRV));
}

static void test_conflict_after_announcing(void **state)
{
	static fm__dns_record rec;
	static struct pkt own;
	uint8_t buf[FM_DATAGRAM_MAX_BYTES];
	fm_addr from = stranger(FM_MDNS_PORT);
	fm_addr self = v4(10, 0, 0, 1, FM_MDNS_PORT);
	char inst[256], inst2[256];
	size_t len;
	int k;

	(void)state;
	single_ready();
	instance_name(0, 1, inst, sizeof(inst));
	instance_name(0, 2, inst2, sizeof(inst2));
	/* our own announcement, looped back: no conflict */
	len = build_query(buf, sizeof(buf), 0, inst, FM__DNS_ANY, 0, NULL, 0);
	inject(0, &from, buf, len);
	k = next_pkt(0, 0, is_response);
	assert_true(k >= 0);
	own = H.log[k];
	inject(0, &self, own.buf, own.len);
	H.log_count = 0;
	run_until(H.now + 3000);
	assert_true(next_pkt(0, 0, is_probe) < 0);
	/* a different TXT for our name from another host: rename */
	rec_init(&rec, inst, FM__DNS_TXT, 4500, FM__DNS_ANSWER);
	rec.class_ |= FM__DNS_CLASS_TOP;
	snprintf(rec.rd.txt.strings[0], 256, "v=1");
	rec.rd.txt.count = 1;
	len = build_response(buf, sizeof(buf), &rec, 1);
	inject(0, &from, buf, len);
	run_until(H.now + 3000);
	k = next_pkt(0, 0, is_probe);
	assert_true(k >= 0);
	assert_string_equal(parse(&H.log[k])->questions[0].name, inst2);
	k = next_pkt(0, k, is_response);
	assert_true(k >= 0);
	assert_non_null(find_rec(parse(&H.log[k]), inst2, FM__DNS_TXT));
}

/* Another host probing for our name gets our records at once. */
static void test_probe_answered_at_once(void **state)
{
	static fm__dns_record proposed;
	uint8_t buf[FM_DATAGRAM_MAX_BYTES];
	fm_addr from = stranger(FM_MDNS_PORT);
	char inst[256];
	size_t len;
	int k;

	(void)state;
	single_ready();
	instance_name(0, 1, inst, sizeof(inst));
	rec_init(&proposed, inst, FM__DNS_SRV, 120, FM__DNS_AUTHORITY);
	proposed.rd.srv.port = 1;
	snprintf(proposed.rd.srv.target, sizeof(proposed.rd.srv.target),
	         "intruder.local");
	len = build_query(buf, sizeof(buf), 0, inst, FM__DNS_ANY, 0, &proposed,
	                  1);
	inject(0, &from, buf, len);
	k = next_pkt(0, 0, is_response);
	assert_true(k >= 0);
	assert_true(is_group(&H.log[k].to));
	assert_non_null(find_rec(parse(&H.log[k]), inst, FM__DNS_SRV));
	assert_non_null(find_rec(parse(&H.log[k]), inst, FM__DNS_TXT));
	/* a probe is no conflict for the owner */
	H.log_count = 0;
	run_until(H.now + 2000);
	assert_true(next_pkt(0, 0, is_probe) < 0);
}

/* ---- robustness ------------------------------------------------------------
 */

static void test_malformed_packets(void **state)
{
	static struct pkt seeds[4];
	uint8_t buf[700];
	fm_addr from = stranger(FM_MDNS_PORT);
	fm_node_stats s;
	int nseeds = 0, k, round;
	uint64_t rejected = 0;

	(void)state;
	single_ready();
	/* valid packets to mutate: a probe, an announcement, a query */
	node_new(1, FED_A, 1, 0, 1);
	iface_up(1);
	run_until(H.now + 3000);
	for (k = 0; k < H.log_count && nseeds < 4; k++)
		if (H.log[k].node == 1 && H.log[k].len <= sizeof(buf))
			seeds[nseeds++] = H.log[k];
	assert_true(nseeds >= 3);
	for (round = 0; round < 20000; round++) {
		size_t len;
		uint8_t r[8];

		io_random(NULL, r, sizeof(r));
		if (round % 4 == 0) {
			len = r[0] % 200;
			io_random(NULL, buf, len);
		} else {
			const struct pkt *p = &seeds[round % nseeds];
			int flips = 1 + r[1] % 4, f;
			memcpy(buf, p->buf, p->len);
			len = p->len;
			if (r[2] & 1)
				len = r[3] % (len + 1); /* truncated */
			for (f = 0; f < flips && len > 0; f++) {
				uint8_t pos[2];
				io_random(NULL, pos, 2);
				buf[((size_t)pos[0] << 8 | pos[1]) % len] ^=
				        (uint8_t)(1u << (r[4 + f] % 8));
			}
		}
		if (fm__dns_parse(buf, len, &M) != 0)
			rejected++;
		fm_node_recv_mdns(H.nodes[0], H.now, IFINDEX, &from, buf, len);
		if (round % 100 == 0) {
			run_until(H.now + 50);
		}
	}
	/* a packet larger than any mDNS packet */
	{
		static uint8_t big[FM__DNS_PACKET_MAX + 1];
		fm_node_recv_mdns(H.nodes[0], H.now, IFINDEX, &from, big,
		                  sizeof(big));
		rejected++;
	}
	s = stats(0);
	assert_int_equal(s.mdns_malformed, rejected);
	assert_true(rejected > 1000);
	assert_int_equal(s.mdns_received, 20001);
	/* and the node still answers */
	H.log_count = 0;
	run_until(H.now + 10000);
	{
		size_t len = build_query(buf, sizeof(buf), 0, FM_MDNS_SERVICE,
		                         FM__DNS_PTR, 1, NULL, 0);
		inject(0, &from, buf, len);
	}
	assert_true(next_pkt(0, 0, is_response) >= 0);
	/* packets for an unknown interface are ignored */
	fm_node_recv_mdns(H.nodes[0], H.now, 99, &from, buf, 3);
	assert_int_equal(stats(0).mdns_malformed, rejected);
}

/* ---- two cores on a LAN
 * ------------------------------------------------------ */

static int opened_to(int node, int target, uint64_t *at)
{
	int k;

	for (k = 0; k < H.open_count; k++)
		if (H.opens[k].node == node &&
		    memcmp(H.opens[k].to.ip, node_addr(target, FM_AF_INET)->ip,
		           4) == 0 &&
		    H.opens[k].to.port == PEER_PORT) {
			if (at != NULL)
				*at = H.opens[k].at;
			return 1;
		}
	return 0;
}

static void test_two_cores_discover(void **state)
{
	uint64_t at0 = 0, at1 = 0;

	(void)state;
	H.lan = 1;
	node_new(0, FED_A, 1, 0, 0);
	node_new(1, FED_A, 1, 0, 0);
	iface_up(0);
	iface_up(1);
	run_until(999);
	assert_int_equal(stats(0).peers_discovered, 1);
	assert_int_equal(stats(1).peers_discovered, 1);
	assert_true(opened_to(0, 1, &at0));
	assert_true(opened_to(1, 0, &at1));
	assert_true(at0 < 1000 && at1 < 1000);
	assert_int_equal(stats(0).mdns_malformed, 0);
	assert_int_equal(stats(0).foreign_seen, 0);
}

static void test_late_joiner_found_fast(void **state)
{
	uint64_t start, at = 0;

	(void)state;
	H.lan = 1;
	node_new(0, FED_A, 1, 0, 0);
	iface_up(0);
	run_until(10000);
	start = H.now;
	node_new(1, FED_A, 1, 0, 0);
	iface_up(1);
	run_until(start + 1000);
	/* the newcomer's first query (20-120 ms after start) is answered
	 * after the shared-record delay (20-120 ms) */
	assert_true(opened_to(1, 0, &at));
	assert_true(at - start <= 250);
	/* and the old node learns the newcomer from its announcement */
	assert_true(opened_to(0, 1, NULL));
}

static void test_other_federation_never_dialled(void **state)
{
	(void)state;
	H.lan = 1;
	node_new(0, FED_A, 1, 0, 0);
	node_new(1, FED_B, 1, 0, 0);
	node_new(2, FED_A, 1, 0, 0);
	iface_up(0);
	iface_up(1);
	iface_up(2);
	run_until(10ULL * 60 * 1000);
	assert_int_equal(stats(0).foreign_seen, 1);
	assert_int_equal(stats(1).foreign_seen, 2);
	assert_int_equal(stats(2).foreign_seen, 1);
	assert_int_equal(stats(1).peers_discovered, 0);
	assert_int_equal(stats(0).peers_discovered, 1);
	assert_false(opened_to(0, 1, NULL));
	assert_false(opened_to(2, 1, NULL));
	assert_false(opened_to(1, 0, NULL));
	assert_false(opened_to(1, 2, NULL));
	assert_true(opened_to(0, 2, NULL));
	/* the traffic settles: an hour later, few packets */
	{
		int before = H.log_count;
		run_until(H.now + 60ULL * 60 * 1000);
		assert_true(H.log_count - before < 60);
	}
}

static void test_federation_switch(void **state)
{
	uint8_t key[FM_FEDERATION_KEY_BYTES];

	(void)state;
	H.lan = 1;
	node_new(0, FED_A, 1, 0, 0);
	node_new(1, FED_B, 1, 0, 0);
	iface_up(0);
	iface_up(1);
	run_until(5000);
	assert_int_equal(stats(0).foreign_seen, 1);
	assert_int_equal(H.open_count, 0);
	/* node 1 joins federation A: it re-announces its new tag and looks
	 * again, and both find each other */
	memset(key, FED_A, sizeof(key));
	fm_node_set_federation(H.nodes[1], H.now, key);
	H.fed[1] = FED_A;
	kick(1);
	run_until(H.now + 1500);
	assert_int_equal(stats(0).peers_discovered, 1);
	assert_int_equal(stats(1).peers_discovered, 1);
	assert_true(opened_to(0, 1, NULL));
	assert_true(opened_to(1, 0, NULL));
}

/* ---- the beacon
 * -------------------------------------------------------------- */

static int beacon_flags(int sender, const struct pkt *p)
{
	uint8_t key[32], fedkey[FM_FEDERATION_KEY_BYTES], plain[35];
	unsigned long long plen = 0;
	crypto_generichash_state st;

	memset(fedkey, H.fed[sender], sizeof(fedkey));
	crypto_generichash_init(&st, NULL, 0, sizeof(key));
	crypto_generichash_update(&st, (const uint8_t *)"fedmesh-beacon-v1",
	                          17);
	crypto_generichash_update(&st, fedkey, sizeof(fedkey));
	crypto_generichash_final(&st, key, sizeof(key));
	if (p->len != 79 || memcmp(p->buf, "FMB1", 4) != 0 ||
	    crypto_aead_xchacha20poly1305_ietf_decrypt(
	            plain, &plen, NULL, p->buf + 28, 51,
	            (const uint8_t *)"FMB1", 4, p->buf + 4, key) != 0)
		return -1;
	assert_int_equal(plen, 35);
	assert_int_equal((plain[32] << 8) | plain[33], PEER_PORT);
	return plain[34];
}

static void test_beacon_round_trip(void **state)
{
	int k, replies = 0, announces = 0;

	(void)state;
	H.lan = 1;
	node_new(0, FED_A, 0, 1, 0);
	node_new(1, FED_A, 0, 1, 0);
	iface_up(0);
	run_until(5000);
	iface_up(1);
	run_until(5100);
	for (k = 0; k < H.log_count; k++) {
		assert_int_equal(H.log[k].kind, PKT_DGRAM);
		if (beacon_flags(H.log[k].node, &H.log[k]) == 0) {
			announces++;
			assert_int_equal(H.log[k].to.ip[3], 255);
			assert_int_equal(H.log[k].to.port, PEER_PORT);
		} else {
			assert_int_equal(beacon_flags(H.log[k].node, &H.log[k]),
			                 1);
			replies++;
			/* unicast back to the announcer */
			assert_int_equal(H.log[k].to.ip[3], 2 - H.log[k].node);
		}
	}
	/* node 1 answers node 0's announce, and node 0 (still without a
	 * session: no stream ever opens here) answers node 1's */
	assert_int_equal(announces, 2);
	assert_int_equal(replies, 2);
	assert_int_equal(stats(0).peers_discovered, 1);
	assert_int_equal(stats(1).peers_discovered, 1);
	assert_true(opened_to(0, 1, NULL));
	assert_true(opened_to(1, 0, NULL));
	assert_int_equal(stats(0).beacons_invalid, 0);
	assert_int_equal(count_pkts(0, PKT_MDNS), 0);
	/* periodic announces: every 30 s +-10 % */
	H.log_count = 0;
	run_until(H.now + 10ULL * 60 * 1000);
	{
		uint64_t last = 0;
		int n = 0;
		for (k = 0; k < H.log_count; k++) {
			if (H.log[k].node != 0 ||
			    beacon_flags(0, &H.log[k]) != 0)
				continue;
			if (n > 0) {
				assert_true(H.log[k].at - last >= 27000);
				assert_true(H.log[k].at - last <= 33000);
			}
			last = H.log[k].at;
			n++;
		}
		assert_true(n >= 18 && n <= 23);
	}
}

static void test_beacon_invalid(void **state)
{
	static struct pkt good;
	uint8_t buf[FM_DATAGRAM_MAX_BYTES];
	fm_addr from = v4(10, 0, 0, 3, PEER_PORT);
	fm_node_stats s;
	int k;

	(void)state;
	node_new(0, FED_A, 0, 1, 0);
	node_new(1, FED_A, 0, 1, 0);
	node_new(2, FED_B, 0, 1, 0);
	iface_up(1);
	iface_up(2);
	k = 0;
	while (k < H.log_count && H.log[k].node != 1)
		k++;
	good = H.log[k];
	H.log_count = 0;
	/* a flipped bit anywhere: invalid, never answered */
	for (k = 0; k < (int)good.len * 8; k += 7) {
		memcpy(buf, good.buf, good.len);
		buf[k / 8] ^= (uint8_t)(1u << (k % 8));
		fm_node_recv_datagram(H.nodes[0], H.now, &from, buf, good.len);
	}
	s = stats(0);
	/* flips inside the magic make it not a beacon at all */
	assert_int_equal(s.beacons_invalid, (good.len * 8 + 6) / 7 - 5);
	assert_int_equal(s.datagrams_dropped[FM_DROP_UNAUTHENTICATED],
	                 (uint64_t)((good.len * 8 + 6) / 7));
	/* truncated and padded */
	fm_node_recv_datagram(H.nodes[0], H.now, &from, good.buf, good.len - 1);
	memcpy(buf, good.buf, good.len);
	buf[good.len] = 0;
	fm_node_recv_datagram(H.nodes[0], H.now, &from, buf, good.len + 1);
	fm_node_recv_datagram(H.nodes[0], H.now, &from, good.buf, 4);
	assert_int_equal(stats(0).beacons_invalid, s.beacons_invalid + 3);
	/* another federation's beacon */
	H.log_count = 0;
	iface_up(2); /* unchanged: no new beacon */
	assert_int_equal(H.log_count, 0);
	fm_node_iface_remove(H.nodes[2], H.now, IFINDEX);
	iface_up(2); /* back: announces again */
	assert_int_equal(H.log_count, 1);
	s = stats(0);
	fm_node_recv_datagram(H.nodes[0], H.now, &from, H.log[0].buf,
	                      H.log[0].len);
	assert_int_equal(stats(0).beacons_invalid, s.beacons_invalid + 1);
	assert_int_equal(stats(0).beacons_received, 0);
	assert_int_equal(stats(0).peers_discovered, 0);
	assert_int_equal(count_pkts(0, PKT_DGRAM), 0);
	assert_int_equal(H.open_count, 0);
	/* the genuine one is accepted, and answered once per 5 s */
	fm_node_recv_datagram(H.nodes[0], H.now, &from, good.buf, good.len);
	fm_node_recv_datagram(H.nodes[0], H.now, &from, good.buf, good.len);
	assert_int_equal(stats(0).beacons_received, 2);
	assert_int_equal(count_pkts(0, PKT_DGRAM), 1);
	H.now += 5000;
	fm_node_recv_datagram(H.nodes[0], H.now, &from, good.buf, good.len);
	assert_int_equal(count_pkts(0, PKT_DGRAM), 2);
}

static void test_disabled_sends_nothing(void **state)
{
	uint8_t buf[256];
	fm_addr from = stranger(FM_MDNS_PORT);
	size_t len;

	(void)state;
	H.lan = 1;
	node_new(0, FED_A, 0, 0, 1);
	node_new(1, FED_A, 1, 1, 1);
	iface_up(0);
	assert_int_equal(H.deadline[0], FM_DEADLINE_NONE);
	iface_up(1);
	run_until(60000);
	assert_int_equal(count_pkts(0, PKT_MDNS), 0);
	assert_int_equal(count_pkts(0, PKT_DGRAM), 0);
	assert_true(count_pkts(1, PKT_MDNS) > 0);
	assert_true(count_pkts(1, PKT_DGRAM) > 0);
	/* node 0 ignores what arrives, and finds no one */
	len = build_query(buf, sizeof(buf), 0, FM_MDNS_SERVICE, FM__DNS_PTR, 1,
	                  NULL, 0);
	inject(0, &from, buf, len);
	assert_int_equal(count_pkts(0, PKT_MDNS), 0);
	assert_int_equal(stats(0).peers_discovered, 0);
	assert_int_equal(stats(0).beacons_invalid, 0);
	assert_true(stats(0).datagrams_dropped[FM_DROP_UNAUTHENTICATED] > 0);
}

static void test_no_send_mdns_op(void **state)
{
	fm_node_config cfg;
	uint8_t seed[FM_SEED_BYTES];
	fm_io io;
	fm_node *node = NULL;
	fm_iface ifc;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	memset(seed, 3, sizeof(seed));
	assert_int_equal(fm_identity_from_seed(seed, &cfg.identity), 0);
	cfg.mdns_enabled = 1;
	cfg.dht_disabled = 1;
	cfg.peer_port = PEER_PORT;
	memset(&io, 0, sizeof(io));
	io.ctx = &ctx_ids[0];
	io.send_datagram = io_send_datagram;
	io.random_bytes = io_random;
	assert_int_equal(fm_node_new(&cfg, &io, 0, &node), 0);
	memset(&ifc, 0, sizeof(ifc));
	ifc.index = 1;
	ifc.addrs[0] = v4(10, 0, 0, 1, 0);
	ifc.addr_count = 1;
	assert_int_equal(fm_node_iface_update(node, 0, &ifc), 0);
	assert_int_equal(fm_node_tick(node, 0), FM_DEADLINE_NONE);
	/* bad interfaces are refused */
	ifc.addr_count = FM_IFACE_ADDRS_MAX + 1;
	assert_int_equal(fm_node_iface_update(node, 0, &ifc), -EINVAL);
	assert_int_equal(fm_node_iface_update(node, 0, NULL), -EINVAL);
	fm_node_free(node);
	assert_int_equal(H.log_count, 0);
}

static void test_iface_limits_and_changes(void **state)
{
	fm_iface ifc;
	int i;

	(void)state;
	node_new(0, FED_A, 1, 1, 0);
	ifc = H.ifaces[0];
	for (i = 0; i < FM_IFACES_MAX; i++) {
		ifc.index = (uint32_t)(100 + i);
		assert_int_equal(fm_node_iface_update(H.nodes[0], H.now, &ifc),
		                 0);
	}
	ifc.index = 999;
	assert_int_equal(fm_node_iface_update(H.nodes[0], H.now, &ifc),
	                 -ENOSPC);
	fm_node_iface_remove(H.nodes[0], H.now, 100);
	assert_int_equal(fm_node_iface_update(H.nodes[0], H.now, &ifc), 0);
	kick(0);
	run_until(5000);
	/* an address change re-announces and re-queries */
	H.log_count = 0;
	ifc.addrs[0] = v4(10, 0, 0, 42, 0);
	assert_int_equal(fm_node_iface_update(H.nodes[0], H.now, &ifc), 0);
	kick(0);
	run_until(H.now + 1500);
	{
		int k = next_pkt(0, 0, is_response), q;
		const fm__dns_record *r;
		assert_true(k >= 0);
		assert_int_equal(H.log[k].ifindex, 999);
		r = find_rec(parse(&H.log[k]), "host0.local", FM__DNS_A);
		assert_non_null(r);
		assert_int_equal(r->rd.a[3], 42);
		q = next_pkt(0, 0, is_ptr_query);
		assert_true(q >= 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_probe_then_announce, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_both_families, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_ptr_answer_delayed, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_meta_query, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_qu_and_legacy_unicast,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_known_answer_suppression,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_one_multicast_per_second,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_goodbye_on_shutdown, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(
	                test_no_goodbye_before_probing_done, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_query_backoff, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(
	                test_learns_member_and_known_answers, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_foreign_and_invalid_txt,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_name_conflict_renames,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_conflict_after_announcing,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_probe_answered_at_once,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_malformed_packets, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_two_cores_discover, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_late_joiner_found_fast,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(
	                test_other_federation_never_dialled, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_federation_switch, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_beacon_round_trip, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_beacon_invalid, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_disabled_sends_nothing,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_no_send_mdns_op, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_iface_limits_and_changes,
	                                        setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
