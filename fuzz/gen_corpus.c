/* Writes the seed corpora of the fuzz harnesses: valid inputs made by the
 * real encoders (session messages, hellos, handshakes, DNS packets that a
 * real node sends, DHT RPCs, invites, records, API bodies, configuration
 * files), each prefixed as its harness expects. Deterministic: running it
 * again writes the same bytes, so the committed corpus can be regenerated
 * and compared.
 *
 *   gen_corpus DIR        writes DIR/HARNESS/NAME for every seed
 *
 * Built by `make fuzz-corpus`, which writes into $(srcdir)/fuzz/corpus. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "core/core.h"
#include "core/dht.h"
#include "core/dns.h"
#include "core/mdns.h"
#include "core/wire.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "fuzz.h"

/* main.c owns the real one and is not linked here (as in the unit tests). */
uint64_t fmd_now_ms(const fmd *d)
{
	return uv_now(d->loop);
}

#define SEED_MAX (64 * 1024)
#define MDNS_PACKETS_MAX 8

static const char *outdir;
static int failures;

static void put(const char *harness, const char *name, const uint8_t *prefix,
                size_t prefix_len, const uint8_t *buf, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, harness);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		perror(path);
		failures++;
		return;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, harness, name);
	f = fopen(path, "wb");
	if (f == NULL ||
	    (prefix_len > 0 &&
	     fwrite(prefix, 1, prefix_len, f) != prefix_len) ||
	    (len > 0 && fwrite(buf, 1, len, f) != len) || fclose(f) != 0) {
		perror(path);
		failures++;
	}
}

static void put1(const char *harness, const char *name, uint8_t mode,
                 const uint8_t *buf, size_t len)
{
	put(harness, name, &mode, 1, buf, len);
}

static void check(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "gen_corpus: %s failed: %d\n", what, rc);
		exit(1);
	}
}

/* Appends a 2-byte length and the bytes (the harnesses' chunks). */
static void chunk(uint8_t *out, size_t *len, const uint8_t *buf, size_t n)
{
	out[(*len)++] = (uint8_t)(n >> 8);
	out[(*len)++] = (uint8_t)n;
	memcpy(out + *len, buf, n);
	*len += n;
}

/* ---- session messages ---------------------------------------------------- */

static size_t msgs(fm__msg *m, size_t max)
{
	static uint8_t record[FM_RECORD_MAX_BYTES];
	static const uint8_t data[] = "hello";
	size_t n = 0, record_len = 0;

	check(fz_peer_record(record, sizeof(record), &record_len), "record");
	memset(m, 0, max * sizeof(*m));
	m[n].type = FM__MSG_PING, m[n].seq = 1, m[n].time_ms = 1000000, n++;
	m[n].type = FM__MSG_PONG, m[n].seq = 1, m[n].time_ms = 1000000, n++;
	m[n].type = FM__MSG_RECORD, m[n].record = record;
	m[n].record_len = record_len, n++;
	m[n].type = FM__MSG_REKEY, n++;
	m[n].type = FM__MSG_CLOSE;
	snprintf(m[n].reason, sizeof(m[n].reason), "shutting down"), n++;
	m[n].type = FM__MSG_JOB_REQUEST;
	snprintf(m[n].job_id, sizeof(m[n].job_id), "job-1");
	snprintf(m[n].service, sizeof(m[n].service), "echo");
	m[n].timeout_ms = 30000, m[n].total_len = 10;
	m[n].chunk = data, m[n].chunk_len = 5, n++;
	m[n].type = FM__MSG_JOB_DATA;
	snprintf(m[n].job_id, sizeof(m[n].job_id), "job-1");
	m[n].offset = 5, m[n].chunk = data, m[n].chunk_len = 5, n++;
	m[n].type = FM__MSG_JOB_ACCEPT;
	snprintf(m[n].job_id, sizeof(m[n].job_id), "job-1");
	m[n].offset = 10, n++;
	m[n].type = FM__MSG_JOB_REFUSE;
	snprintf(m[n].job_id, sizeof(m[n].job_id), "job-1");
	snprintf(m[n].reason, sizeof(m[n].reason), "busy"), n++;
	m[n].type = FM__MSG_JOB_RUNNING;
	snprintf(m[n].job_id, sizeof(m[n].job_id), "job-1"), n++;
	m[n].type = FM__MSG_JOB_RESULT;
	snprintf(m[n].job_id, sizeof(m[n].job_id), "job-1");
	m[n].state = FM_JOB_DONE, m[n].exit_status = 0, m[n].total_len = 10;
	m[n].chunk = data, m[n].chunk_len = 5, n++;
	m[n].type = FM__MSG_JOB_RESULT_DATA;
	snprintf(m[n].job_id, sizeof(m[n].job_id), "job-1");
	m[n].offset = 5, m[n].chunk = data, m[n].chunk_len = 5, n++;
	m[n].type = FM__MSG_JOB_CANCEL;
	snprintf(m[n].job_id, sizeof(m[n].job_id), "job-1"), n++;
	m[n].type = FM__MSG_JOB_QUERY;
	snprintf(m[n].job_id, sizeof(m[n].job_id), "job-1"), n++;
	m[n].type = FM__MSG_JOB_ACK;
	snprintf(m[n].job_id, sizeof(m[n].job_id), "job-1"), n++;
	if (n > max)
		abort();
	return n;
}

static void gen_wire_and_handshake(void)
{
	static uint8_t buf[SEED_MAX], seq2[SEED_MAX], seq3[SEED_MAX];
	static uint8_t hello[FM__HELLO_MAX_BYTES];
	fm__msg m[16];
	size_t n, i, len, hello_len = 0, len2 = 0, len3 = 0;
	uint8_t e[32], e_pub[32], psk[32], s_priv[32], s_pub[32];
	fm__noise_handshake hs;
	char name[64];

	n = msgs(m, 16);
	check(fz_peer_hello(hello, sizeof(hello), &hello_len), "hello");
	put("wire", "hello", NULL, 0, hello, hello_len);
	chunk(seq2, &len2, hello, hello_len);
	chunk(seq3, &len3, hello, hello_len);
	for (i = 0; i < n; i++) {
		check(fm__msg_encode(&m[i], buf, sizeof(buf), &len), "msg");
		snprintf(name, sizeof(name), "msg-%02u", (unsigned)m[i].type);
		put("wire", name, NULL, 0, buf, len);
		/* Handshake sequences: hello, then the messages a peer
		 * sends on a session (CLOSE last: it ends the session). */
		if (m[i].type == FM__MSG_CLOSE)
			continue;
		chunk(seq2, &len2, buf, len);
		chunk(seq3, &len3, buf, len);
	}
	put1("handshake", "responder-hello-messages", 2, seq2, len2);
	put1("handshake", "initiator-hello-messages", 3, seq3, len3);
	len = 0;
	chunk(buf, &len, hello, hello_len);
	put1("handshake", "responder-hello", 2, buf, len);
	put1("handshake", "initiator-hello", 3, buf, len);
	/* Message 1: e and an empty payload (encrypted: psk3 mixes e into
	 * the key), as an initiator writes it. */
	memset(e, 0x55, sizeof(e));
	fz_federation_key(psk);
	check(fz_peer_static(s_priv, s_pub), "static");
	check(fm__noise_handshake_init(&hs, FM__SESSION_PROTOCOL, 1,
	                               (const uint8_t *)FM__SESSION_PROLOGUE,
	                               sizeof(FM__SESSION_PROLOGUE) - 1, s_priv,
	                               NULL, psk, 1, e),
	      "noise init");
	check(fm__noise_write_message(&hs, NULL, 0, buf, sizeof(buf), &len),
	      "msg1");
	put1("handshake", "msg1", 1, buf, len);
	fm__noise_wipe_handshake(&hs);
	crypto_scalarmult_base(e_pub, e);
	/* A raw first frame: length, mac1 (wrong) and e. */
	buf[0] = 0;
	buf[1] = 48;
	memset(buf + 2, 0, 16);
	memcpy(buf + 18, e_pub, 32);
	put1("handshake", "raw-frame", 0, buf, 50);
}

/* ---- DNS and mDNS -------------------------------------------------------- */

struct capture {
	uint8_t pkts[MDNS_PACKETS_MAX][FM__DNS_PACKET_MAX];
	size_t lens[MDNS_PACKETS_MAX];
	size_t count;
	uint64_t rng;
};

static int cap_mdns(void *ctx, uint32_t ifindex, const fm_addr *to,
                    const uint8_t *buf, size_t len)
{
	struct capture *c = ctx;

	(void)ifindex;
	(void)to;
	if (c->count < MDNS_PACKETS_MAX && len <= FM__DNS_PACKET_MAX) {
		memcpy(c->pkts[c->count], buf, len);
		c->lens[c->count++] = len;
	}
	return 0;
}

static int cap_datagram(void *ctx, const fm_addr *to, const uint8_t *buf,
                        size_t len)
{
	(void)ctx;
	(void)to;
	(void)buf;
	(void)len;
	return 0;
}

static void cap_random(void *ctx, uint8_t *buf, size_t len)
{
	struct capture *c = ctx;
	size_t i;

	for (i = 0; i < len; i++) {
		c->rng = c->rng * 6364136223846793005ULL +
		         1442695040888963407ULL;
		buf[i] = (uint8_t)(c->rng >> 56);
	}
}

static void gen_dns_and_mdns(void)
{
	static struct capture cap;
	static uint8_t buf[FM__DNS_PACKET_MAX + 2];
	fm_node_config cfg;
	fm_node *node = NULL;
	fm__dns_writer w;
	fm_iface ifc;
	fm_io io;
	size_t i, len;
	char name[64];
	uint8_t plain[FM_BEACON_PLAIN_BYTES];

	/* What another member (identity 3) sends: probes, announcements. */
	fz_node_config(&cfg);
	fz_identity(3, &cfg.identity);
	cfg.mdns_enabled = 1;
	cfg.beacon_enabled = 1;
	snprintf(cfg.hostname, sizeof(cfg.hostname), "otherhost");
	memset(&io, 0, sizeof(io));
	io.ctx = &cap;
	io.send_datagram = cap_datagram;
	io.random_bytes = cap_random;
	io.send_mdns = cap_mdns;
	check(fm_node_new(&cfg, &io, 1000, &node), "fm_node_new");
	memset(&ifc, 0, sizeof(ifc));
	ifc.index = 2;
	memcpy(ifc.name, "eth0", 5);
	check(fm_addr_parse("10.0.0.3:0", &ifc.addrs[0]), "addr");
	check(fm_addr_parse("[fe80::3]:0", &ifc.addrs[1]), "addr");
	ifc.addr_count = 2;
	check(fm_node_iface_update(node, 1000, &ifc), "iface");
	for (i = 1; i <= 40 && cap.count < MDNS_PACKETS_MAX; i++)
		(void)fm_node_tick(node, 1000 + i * 250);
	for (i = 0; i < cap.count; i++) {
		snprintf(name, sizeof(name), "node-%02u", (unsigned)i);
		put("dns", name, NULL, 0, cap.pkts[i], cap.lens[i]);
		buf[0] = 0;
		buf[1] = 0; /* from 10.0.0.7:5353 */
		put("mdns", name, buf, 2, cap.pkts[i], cap.lens[i]);
	}
	fm_node_free(node);
	/* A plain DNS-SD browse query, as avahi-browse sends. */
	fm__dns_writer_init(&w, buf, sizeof(buf), 0, 0);
	check(fm__dns_add_question(&w, FM_MDNS_SERVICE, FM__DNS_PTR,
	                           FM__DNS_CLASS_IN),
	      "question");
	check(fm__dns_finish(&w, &len), "finish");
	put("dns", "browse", NULL, 0, buf, len);
	put("mdns", "browse", (const uint8_t *)"\0\0", 2, buf, len);
	/* The same with the unicast-response bit, from a unicast port. */
	fm__dns_writer_init(&w, buf, sizeof(buf), 0x1234, 0);
	check(fm__dns_add_question(&w, FM_MDNS_SERVICE, FM__DNS_PTR,
	                           FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP),
	      "question");
	check(fm__dns_finish(&w, &len), "finish");
	put("mdns", "browse-qu", (const uint8_t *)"\0\2", 2, buf, len);
	/* Beacons: another member's announce and reply. */
	memset(plain, 0, sizeof(plain));
	fz_identity(3, &cfg.identity);
	memcpy(plain, cfg.identity.node_id, FM_NODE_ID_BYTES);
	plain[FM_NODE_ID_BYTES] = 0x10;
	plain[FM_NODE_ID_BYTES + 1] = 0x92;
	put1("mdns", "beacon-announce", 1, plain, sizeof(plain));
	plain[FM_NODE_ID_BYTES + 2] = FM_BEACON_FLAG_REPLY;
	put1("mdns", "beacon-reply", 3, plain, sizeof(plain));
}

/* ---- DHT ----------------------------------------------------------------- */

static void gen_dht(void)
{
	static uint8_t buf[SEED_MAX], body[FM_DATAGRAM_MAX_BYTES];
	static uint8_t record[FM_RECORD_MAX_BYTES];
	uint8_t fed[FM_FEDERATION_KEY_BYTES], key[32];
	uint8_t nonce[FM_DHT_NONCE_BYTES];
	fm_identity peer;
	fm__dht_msg m;
	fm__mp_writer mw;
	size_t len, blen, record_len = 0, all = 0;
	static uint8_t seq[SEED_MAX];
	uint8_t addr[FM_DHT_ADDR6_BYTES];
	fm_addr a;
	char name[64];
	int t;

	fz_identity(FZ_SEED_PEER, &peer);
	check(fz_peer_record(record, sizeof(record), &record_len), "record");
	for (t = FM__DHT_PING; t <= FM__DHT_PROOF; t++) {
		memset(&m, 0, sizeof(m));
		m.type = (uint8_t)t;
		memset(m.txid, 0x11, sizeof(m.txid));
		memcpy(m.sender, peer.node_id, sizeof(m.sender));
		memset(m.key, 0x77, sizeof(m.key));
		switch (t) {
		case FM__DHT_NODES:
			m.contact_count = 2;
			memcpy(m.contacts[0].id, peer.node_id, FM_DHT_ID_BYTES);
			check(fm_addr_parse("192.0.2.2:4242",
			                    &m.contacts[0].addr),
			      "addr");
			memset(m.contacts[1].id, 0x66, FM_DHT_ID_BYTES);
			check(fm_addr_parse("[2001:db8::6]:4242",
			                    &m.contacts[1].addr),
			      "addr");
			break;
		case FM__DHT_FIND_VALUE:
			check(fm__dht_service_key("echo", m.key), "svc key");
			break;
		case FM__DHT_VALUE:
			check(fm__dht_service_key("echo", m.key), "svc key");
			m.value_count = 1;
			m.values[0].record = record;
			m.values[0].record_len = record_len;
			m.values[0].ttl_ms = 3600000;
			break;
		case FM__DHT_STORE:
			memcpy(m.key, peer.node_id, sizeof(m.key));
			m.record = record;
			m.record_len = record_len;
			m.ttl_ms = 3600000;
			break;
		case FM__DHT_CHALLENGE:
			memset(m.nonce, 0x99, sizeof(m.nonce));
			check(fm_addr_parse("192.0.2.1:4242", &m.observed),
			      "addr");
			break;
		case FM__DHT_PROOF:
			memcpy(m.public_key, peer.public_key,
			       sizeof(m.public_key));
			memset(m.signature, 0x5e, sizeof(m.signature));
			break;
		default:
			break;
		}
		check(fm__dht_msg_encode(&m, body, sizeof(body), &blen),
		      "dht encode");
		len = 0;
		chunk(buf, &len, body, blen);
		chunk(seq, &all, body, blen);
		snprintf(name, sizeof(name), "rpc-%02d", t);
		put1("dht", name, 0, buf, len);
	}
	put1("dht", "rpc-all", 0, seq, all);
	/* A sealed PING as the raw datagram. */
	memset(&m, 0, sizeof(m));
	m.type = FM__DHT_PING;
	memset(m.txid, 0x22, sizeof(m.txid));
	memcpy(m.sender, peer.node_id, sizeof(m.sender));
	check(fm__dht_msg_encode(&m, body, sizeof(body), &blen), "encode");
	fz_federation_key(fed);
	fm__dht_derive_key(fed, key);
	memset(nonce, 0x31, sizeof(nonce));
	check(fm__dht_seal(key, nonce, body, blen, buf + 2, sizeof(buf) - 2,
	                   &len),
	      "seal");
	buf[0] = (uint8_t)(len >> 8);
	buf[1] = (uint8_t)len;
	put1("dht", "raw-sealed-ping", 1, buf, len + 2);
	/* A saved routing table: [1, [[id, addr, flags], ...]]. */
	fm__mp_writer_init(&mw, buf, sizeof(buf));
	fm__mp_write_array(&mw, 2);
	fm__mp_write_uint(&mw, 1);
	fm__mp_write_array(&mw, 2);
	fm__mp_write_array(&mw, 3);
	fm__mp_write_bin(&mw, peer.node_id, FM_DHT_ID_BYTES);
	check(fm_addr_parse("192.0.2.2:4242", &a), "addr");
	check(fm__dht_addr_encode(&a, addr, &blen), "addr encode");
	fm__mp_write_bin(&mw, addr, blen);
	fm__mp_write_uint(&mw, 1);
	fm__mp_write_array(&mw, 3);
	memset(body, 0x66, FM_DHT_ID_BYTES);
	fm__mp_write_bin(&mw, body, FM_DHT_ID_BYTES);
	check(fm_addr_parse("[2001:db8::6]:4242", &a), "addr");
	check(fm__dht_addr_encode(&a, addr, &blen), "addr encode");
	fm__mp_write_bin(&mw, addr, blen);
	fm__mp_write_uint(&mw, 0);
	check(fm__mp_writer_finish(&mw, &len), "table");
	put1("dht", "restore-table", 2, buf, len);
	fm_identity_wipe(&peer);
}

/* The DHT harness's node, driven as fuzz_dht.c drives it, answered by the
 * harness peer: its CHALLENGE with a valid PROOF, its lookups with two
 * contacts, its STOREs and PINGs. The answers, in order, are the seed
 * "bootstrap": replayed by the harness they take the node past the proof
 * into its routing table, lookups and stores. */
#define DHT_SENT_MAX 64
#define DHT_CHUNKS_MAX 24

static uint8_t dht_sent[DHT_SENT_MAX][FM_DATAGRAM_MAX_BYTES];
static size_t dht_sent_len[DHT_SENT_MAX];
static size_t dht_sent_count;

static int dht_capture(void *ctx, const fm_addr *to, const uint8_t *buf,
                       size_t len)
{
	(void)ctx;
	(void)to;
	if (dht_sent_count < DHT_SENT_MAX && len <= FM_DATAGRAM_MAX_BYTES) {
		memcpy(dht_sent[dht_sent_count], buf, len);
		dht_sent_len[dht_sent_count++] = len;
	}
	return 0;
}

static int dht_answer(const fm__dht_msg *q, const fm_identity *peer,
                      const uint8_t *record, size_t record_len, fm__dht_msg *a)
{
	uint8_t msg[64];
	size_t n = sizeof(FM_DHT_PROOF_LABEL) - 1, alen = 0;

	memset(a, 0, sizeof(*a));
	memcpy(a->txid, q->txid, sizeof(a->txid));
	memcpy(a->sender, peer->node_id, sizeof(a->sender));
	switch (q->type) {
	case FM__DHT_CHALLENGE:
		a->type = FM__DHT_PROOF;
		memcpy(a->public_key, peer->public_key, sizeof(a->public_key));
		memcpy(msg, FM_DHT_PROOF_LABEL, n);
		memcpy(msg + n, q->nonce, FM_DHT_CHALLENGE_NONCE_BYTES);
		n += FM_DHT_CHALLENGE_NONCE_BYTES;
		check(fm__dht_addr_encode(&q->observed, msg + n, &alen),
		      "observed");
		crypto_sign_detached(a->signature, NULL, msg, n + alen,
		                     peer->secret_key);
		return 0;
	case FM__DHT_PING:
		a->type = FM__DHT_PONG;
		return 0;
	case FM__DHT_STORE:
		a->type = FM__DHT_STORED;
		a->status = FM__DHT_STORE_OK;
		return 0;
	case FM__DHT_FIND_VALUE:
		a->type = FM__DHT_VALUE;
		a->value_count = 1;
		a->values[0].record = record;
		a->values[0].record_len = record_len;
		a->values[0].ttl_ms = 3600000;
		return 0;
	case FM__DHT_FIND_NODE:
		a->type = FM__DHT_NODES;
		a->contact_count = 2;
		memset(a->contacts[0].id, 0x66, FM_DHT_ID_BYTES);
		memset(a->contacts[1].id, 0x99, FM_DHT_ID_BYTES);
		check(fm_addr_parse("192.0.2.66:4000", &a->contacts[0].addr),
		      "addr");
		check(fm_addr_parse("198.51.100.99:4000", &a->contacts[1].addr),
		      "addr");
		return 0;
	default:
		return -ENOTSUP;
	}
}

static void gen_dht_bootstrap(void)
{
	static uint8_t seq[SEED_MAX], body[FM_DATAGRAM_MAX_BYTES];
	static uint8_t sealed[FM_DATAGRAM_MAX_BYTES * 2];
	static uint8_t record[FM_RECORD_MAX_BYTES];
	uint8_t fed[FM_FEDERATION_KEY_BYTES], key[32];
	uint8_t nonce[FM_DHT_NONCE_BYTES];
	static fz_io ctx;
	fm_node_config cfg;
	fm_node *node = NULL;
	fm_identity peer;
	fm__dht_msg q, a;
	fm_addr from;
	fm_io io;
	size_t len = 0, i, blen, slen, record_len = 0;
	uint64_t chunks = 0;

	fz_identity(FZ_SEED_PEER, &peer);
	check(fz_peer_record(record, sizeof(record), &record_len), "record");
	fz_federation_key(fed);
	fm__dht_derive_key(fed, key);
	memset(nonce, 0x24, sizeof(nonce));
	fz_io_reset(&ctx);
	fz_io_init(&io, &ctx);
	io.send_datagram = dht_capture;
	fz_node_config(&cfg);
	cfg.dht_disabled = 0;
	check(fm_node_new(&cfg, &io, FZ_NOW_MS, &node), "fm_node_new");
	check(fm_addr_parse(FZ_DHT_BOOTSTRAP, &from), "addr");
	check(fm_node_add_contact(node, FZ_NOW_MS, &from, FM_SRC_BOOTSTRAP),
	      "contact");
	(void)fm_node_tick(node, FZ_NOW_MS);
	/* As fuzz_dht.c: chunk i arrives at FZ_NOW_MS + 1 + i, then the
	 * node's timers run; every datagram it sent meanwhile is answered in
	 * turn by a later chunk. */
	for (i = 0; i < dht_sent_count && chunks < DHT_CHUNKS_MAX; i++) {
		if (fm__dht_open(key, dht_sent[i], dht_sent_len[i], body,
		                 sizeof(body), &blen) != 0 ||
		    fm__dht_msg_decode(body, blen, &q) != 0 ||
		    dht_answer(&q, &peer, record, record_len, &a) != 0)
			continue;
		check(fm__dht_msg_encode(&a, body, sizeof(body), &blen),
		      "answer");
		if (len + 2 + blen > sizeof(seq))
			break;
		chunk(seq, &len, body, blen);
		check(fm__dht_seal(key, nonce, body, blen, sealed,
		                   sizeof(sealed), &slen),
		      "seal");
		fm_node_recv_datagram(node, FZ_NOW_MS + 1 + chunks, &from,
		                      sealed, slen);
		(void)fm_node_tick(node, FZ_NOW_MS + 1 + chunks);
		chunks++;
	}
	fm_node_free(node);
	fz_io_free(&ctx);
	fm_identity_wipe(&peer);
	put1("dht", "bootstrap", 0, seq, len);
}

/* ---- invites, records, API bodies, configuration ---------------------- */

static void gen_text(void)
{
	static uint8_t buf[SEED_MAX], record[FM_RECORD_MAX_BYTES];
	uint8_t fed[FM_FEDERATION_KEY_BYTES];
	char invite[FM_INVITE_TEXT_MAX + 1], json[2048];
	fm_addr addrs[2];
	fm__mp_writer mw;
	size_t len, record_len = 0;
	int n;
	static const char *const configs[] = {
	        "[node]\nlisten = 0.0.0.0:7420\nbootstrap = 192.0.2.2:7420\n"
	        "advertise = 192.0.2.1:7420\n\n[api]\nlisten = "
	        "127.0.0.1:7421\n\n[log]\nformat = json\nlevel = debug\n\n"
	        "[discovery]\nmdns = true\nbeacon = false\ninterfaces = "
	        "eth*\nexclude = docker*\nhostname = box\n\n[dht]\nenabled "
	        "= true\nsubnet_max = 4\n",
	        "[jobs]\nkeep = 2h\ninput_max = 1M\noffer_builtin = false\n"
	        "[service.thumb]\ncommand = /usr/bin/convert\nargs = - "
	        "-thumbnail \"128 x 128\"\nargs = png:-\ntimeout = 30s\n"
	        "output_max = 2M\noffer = true\n",
	        "; comment\n[security]\nallow_root = false\n",
	};
	size_t i;

	fz_federation_key(fed);
	check(fm_addr_parse("192.0.2.2:7420", &addrs[0]), "addr");
	check(fm_addr_parse("[2001:db8::2]:7420", &addrs[1]), "addr");
	check(fm_invite_encode(fed, addrs, 2, invite, sizeof(invite)),
	      "invite");
	put1("invite", "text", 1, (const uint8_t *)invite, strlen(invite));
	fm__mp_writer_init(&mw, buf, sizeof(buf));
	fm__mp_write_array(&mw, 3);
	fm__mp_write_uint(&mw, 1);
	fm__mp_write_bin(&mw, fed, sizeof(fed));
	fm__mp_write_array(&mw, 2);
	fm__mp_write_str(&mw, "192.0.2.2:7420", 14);
	fm__mp_write_str(&mw, "[2001:db8::2]:7420", 18);
	check(fm__mp_writer_finish(&mw, &len), "invite body");
	put1("invite", "body", 0, buf, len);

	check(fz_peer_record(record, sizeof(record), &record_len), "record");
	put1("record", "record", 0, record, record_len);
	put1("record", "addr4", 1, (const uint8_t *)"192.0.2.1:4242", 14);
	put1("record", "addr6", 1, (const uint8_t *)"[2001:db8::1]:443", 17);

	n = snprintf(json, sizeof(json),
	             "{\"service\": \"echo\", \"input_b64\": \"aGVsbG8=\", "
	             "\"id\": \"job-1\", \"timeout_ms\": 30000, "
	             "\"idempotent\": true}");
	put1("api", "jobs-full", 0, (const uint8_t *)json, (size_t)n);
	n = snprintf(json, sizeof(json), "{\"service\": \"sha256\"}");
	put1("api", "jobs-min", 0, (const uint8_t *)json, (size_t)n);
	n = snprintf(json, sizeof(json), "{\"invite\": \"%s\"}", invite);
	put1("api", "join", 1, (const uint8_t *)json, (size_t)n);

	for (i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
		char name[32];
		snprintf(name, sizeof(name), "conf-%u", (unsigned)i);
		put("config", name, NULL, 0, (const uint8_t *)configs[i],
		    strlen(configs[i]));
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	if (sodium_init() < 0)
		return 1;
	outdir = argv[1];
	if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
		perror(outdir);
		return 1;
	}
	gen_wire_and_handshake();
	gen_dns_and_mdns();
	gen_dht();
	gen_dht_bootstrap();
	gen_text();
	return failures == 0 ? 0 : 1;
}
