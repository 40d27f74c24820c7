/* mDNS / DNS-SD (RFC 6762, RFC 6763) for _fedmesh._udp.local, and the
 * discovery state it shares with the beacon (beacon.c).
 *
 * Why it lives in the core: probing, answer delays, rate limits, cache
 * lifetimes and the decision to dial are protocol logic; with the clock
 * coming in as now_ms and randomness through fm_io, the simulator and the
 * unit tests replay every timing rule exactly. The driver only opens the
 * sockets (fm_io.send_mdns, fm_node_recv_mdns) and reports interfaces.
 *
 * What we publish on each interface:
 *   _services._dns-sd._udp.local PTR _fedmesh._udp.local       (4500 s)
 *   _fedmesh._udp.local PTR <instance>._fedmesh._udp.local     (4500 s)
 *   <instance>._fedmesh._udp.local SRV 0 0 <peer port> <host>.local (120 s)
 *   <instance>._fedmesh._udp.local TXT "v=1" "id=<64 hex>" "fed=<16 hex>"
 *                                                              (4500 s)
 *   <host>.local A / AAAA: the interface's addresses            (120 s)
 * SRV, TXT, A and AAAA are unique records and carry the cache-flush bit.
 * <instance> is "fedmesh-" and the first 12 hex digits of the node ID, and
 * becomes "... (2)", "... (3)" after a name conflict (RFC 6763 section 4.1).
 *
 * The federation tag ("fed"): the first 8 bytes of
 *   BLAKE2b-256(key = federation key, "fedmesh-mdns-tag-v1" || node ID)
 * as 16 hex digits. A member recomputes it from the advertised id with its
 * own key and compares in constant time, so members recognise each other
 * before dialling and do not dial nodes of other federations on the LAN.
 * An outsider cannot compute it without the key, and because it is a keyed
 * hash of the node ID the tags of two nodes look unrelated: they neither
 * reveal the key nor which nodes share a federation. The tag is a filter,
 * not a proof: anyone can replay a member's TXT. Membership is proven only
 * by the session handshake (psk3 with the federation key), which a
 * non-member cannot complete; a replayed TXT costs at most one dial per
 * FM_DISC_CONTACT_MIN_MS, then the peer table's backoff.
 *
 * Responder: 3 probes 250 ms apart after a random 0-250 ms, then 2
 * announcements 1 s apart; answers to PTR, SRV, TXT, A, AAAA, ANY and the
 * meta-query; shared answers (PTR) wait a random 20-120 ms and aggregate,
 * unique answers go at once; known-answer suppression (a record the query
 * lists with at least half our TTL is not sent) and duplicate-answer
 * suppression (RFC 6762 section 7.4); QU questions and legacy unicast
 * queries (source port not 5353) get a unicast reply; a record is
 * multicast at most once a second per interface (250 ms for answers to
 * probes); goodbyes (TTL 0) at shutdown for the service records.
 * Simplifications, each harmless for node-ID-derived names:
 * - the tie-break of simultaneous probes (RFC 6762 section 8.2) is not
 *   implemented: any response holding a record of our instance name with
 *   other data is a conflict, in any state, and we rename and probe again;
 * - the host name is not probed: it is the driver's to choose, and the
 *   host's records have the same data as the system's own responder;
 * - known-answer lists spread over several packets (TC bit) are not
 *   awaited; a QU question is answered by unicast even when the record was
 *   not multicast recently;
 * - the goodbye does not withdraw the A/AAAA records: another responder on
 *   the host (avahi-daemon) may be publishing the same host name.
 *
 * Querier: PTR _fedmesh._udp.local 20-120 ms after an interface appears,
 * then 1 s, 2 s, 4 s ... up to an hour, with the
 * cached PTRs that have more than half their TTL left as known answers.
 * Responses fill a bounded cache of instances (PTR, SRV, TXT) and of their
 * targets' addresses, which expire with their TTLs (a goodbye or a
 * cache-flush leaves one second). An instance whose SRV, TXT or address is
 * missing is resolved by asking for exactly that, backing off. A complete
 * instance whose TXT says v=1, a valid id and our federation's tag goes to
 * the peer table (fm_node_add_contact, FM_SRC_MDNS); one of another
 * federation is counted in foreign_seen and never dialled. Names, services
 * and record types we do not care about are ignored. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mdns.h"

static const uint8_t group_v4[4] = {224, 0, 0, 251};
static const uint8_t group_v6[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0,
                                     0,    0,    0, 0, 0, 0, 0, 0xfb};

#define FM__DNS_CLASS_ANY 255
#define FM__DNS_OPCODE(flags) (((flags) >> 11) & 0xf)
#define FM__DNS_RCODE(flags) ((flags)&0xf)

/* ---- small helpers ------------------------------------------------------ */

/* Uniform in [lo, hi]. */
static uint64_t rand_between(const fm_node *node, uint64_t lo, uint64_t hi)
{
	return lo + fm__random_u64(node) % (hi - lo + 1);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Copies a NUL-terminated string; -ENAMETOOLONG (and nothing copied) when
 * it does not fit. */
static int copy_str(char *dst, size_t cap, const char *src)
{
	size_t len = strnlen(src, cap);

	if (len >= cap)
		return -ENAMETOOLONG;
	memcpy(dst, src, len + 1);
	return 0;
}

static int is_us(const fm_node *node, const uint8_t id[FM_NODE_ID_BYTES])
{
	return memcmp(id, node->identity.node_id, FM_NODE_ID_BYTES) == 0;
}

static struct fm__disc_iface *find_iface(const struct fm__disc *d,
                                         uint32_t ifindex)
{
	size_t i;

	for (i = 0; i < FM_IFACES_MAX; i++)
		if (d->ifaces[i] != NULL &&
		    d->ifaces[i]->iface.index == ifindex)
			return d->ifaces[i];
	return NULL;
}

/* The responder publishes only with a port to publish. */
static int advertising(const struct fm__disc *d)
{
	return d->mdns_enabled && d->peer_port != 0;
}

void fm__mdns_tag(const fm_node *node, const uint8_t id[FM_NODE_ID_BYTES],
                  uint8_t tag[FM_MDNS_TAG_BYTES])
{
	crypto_generichash_state st;
	uint8_t full[32];

	crypto_generichash_init(&st, node->federation_key,
	                        FM_FEDERATION_KEY_BYTES, sizeof(full));
	crypto_generichash_update(&st, (const uint8_t *)FM_MDNS_TAG_LABEL,
	                          sizeof(FM_MDNS_TAG_LABEL) - 1);
	crypto_generichash_update(&st, id, FM_NODE_ID_BYTES);
	crypto_generichash_final(&st, full, sizeof(full));
	memcpy(tag, full, FM_MDNS_TAG_BYTES);
	sodium_memzero(full, sizeof(full));
}

/* ---- the seen table (shared with the beacon) ----------------------------- */

static struct fm__disc_seen *seen_get(struct fm__disc *d,
                                      const uint8_t id[FM_NODE_ID_BYTES])
{
	struct fm__disc_seen *s;
	size_t i;

	for (i = 0; i < FM_DISC_SEEN_MAX; i++)
		if (d->seen[i].used &&
		    memcmp(d->seen[i].id, id, FM_NODE_ID_BYTES) == 0)
			return &d->seen[i];
	s = &d->seen[d->seen_next];
	d->seen_next = (d->seen_next + 1) % FM_DISC_SEEN_MAX;
	memset(s, 0, sizeof(*s));
	s->used = 1;
	memcpy(s->id, id, FM_NODE_ID_BYTES);
	return s;
}

void fm__disc_member(fm_node *node, uint64_t now_ms,
                     const uint8_t id[FM_NODE_ID_BYTES], const fm_addr *addr,
                     enum fm_addr_source source, int urgent)
{
	struct fm__disc *d = node->disc;
	struct fm__disc_seen *s;
	int peer, holder;
	char text[FM_ADDR_STR_MAX];

	if (d == NULL || is_us(node, id))
		return;
	s = seen_get(d, id);
	if (!s->member) {
		s->member = 1;
		node->stats.peers_discovered++;
	}
	peer = fm__peer_find(node, id);
	if (peer >= 0) {
		uint8_t state = node->peers[peer].info.state;
		if (state == FM_PEER_CONNECTED || state == FM_PEER_CONNECTING ||
		    state == FM_PEER_BANNED)
			return;
	}
	if (s->contacted && now_ms < s->contact_ms + FM_DISC_CONTACT_MIN_MS)
		return;
	holder = fm__peer_find_addr(node, addr);
	if (holder >= 0 && node->peers[holder].id_known &&
	    memcmp(node->peers[holder].info.node_id, id, FM_NODE_ID_BYTES) !=
	            0) {
		/* Another member now answers at an address a known peer had:
		 * that address is stale for the old peer. */
		fm__peer_remove_addr(&node->peers[holder], addr);
		fm__peer_changed(node, now_ms, holder);
		holder = -1;
	}
	if (!urgent && holder >= 0)
		return;
	if (fm_node_add_contact(node, now_ms, addr, source) != 0)
		return;
	s->contacted = 1;
	s->contact_ms = now_ms;
	if (fm_addr_format(addr, text, sizeof(text)) == 0)
		fm__log(node, FM_LOG_INFO, "discovery",
		        "found a member at %s (%s)", text,
		        fm_addr_source_name(source));
}

void fm__disc_foreign(fm_node *node, const uint8_t id[FM_NODE_ID_BYTES])
{
	struct fm__disc_seen *s;

	if (node->disc == NULL || is_us(node, id))
		return;
	s = seen_get(node->disc, id);
	if (!s->foreign) {
		s->foreign = 1;
		node->stats.foreign_seen++;
		fm__log(node, FM_LOG_DEBUG, "discovery",
		        "a node of another federation is on the link");
	}
}

/* ---- our records ----------------------------------------------------------
 */

static uint32_t bit(unsigned r)
{
	return (uint32_t)1 << r;
}

static uint32_t all_records(const struct fm__disc *d,
                            const struct fm__disc_iface *ifc)
{
	uint32_t mask = 0;
	uint8_t i;

	if (!advertising(d))
		return 0;
	mask = bit(FM__MDNS_R_META) | bit(FM__MDNS_R_PTR) |
	       bit(FM__MDNS_R_SRV) | bit(FM__MDNS_R_TXT);
	for (i = 0; i < ifc->iface.addr_count; i++)
		mask |= bit(FM__MDNS_R_ADDR0 + i);
	return mask;
}

static uint32_t addr_records(const struct fm__disc_iface *ifc, uint8_t family)
{
	uint32_t mask = 0;
	uint8_t i;

	for (i = 0; i < ifc->iface.addr_count; i++)
		if (family == FM_AF_NONE ||
		    ifc->iface.addrs[i].family == family)
			mask |= bit(FM__MDNS_R_ADDR0 + i);
	return mask;
}

/* Fills record r of interface ifc, with its normal TTL and class. */
static int record_fill(const fm_node *node, const struct fm__disc_iface *ifc,
                       unsigned r, fm__dns_record *rec)
{
	const struct fm__disc *d = node->disc;
	char id_hex[FM_NODE_ID_HEX_LEN + 1];
	const fm_addr *a;

	memset(rec, 0, sizeof(*rec));
	rec->class_ = FM__DNS_CLASS_IN;
	switch (r) {
	case FM__MDNS_R_META:
		rec->type = FM__DNS_PTR;
		rec->ttl = FM_MDNS_TTL_SERVICE_S;
		copy_str(rec->name, sizeof(rec->name), FM_MDNS_META_QUERY);
		copy_str(rec->rd.ptr, sizeof(rec->rd.ptr), FM_MDNS_SERVICE);
		return 0;
	case FM__MDNS_R_PTR:
		rec->type = FM__DNS_PTR;
		rec->ttl = FM_MDNS_TTL_SERVICE_S;
		copy_str(rec->name, sizeof(rec->name), FM_MDNS_SERVICE);
		copy_str(rec->rd.ptr, sizeof(rec->rd.ptr), ifc->instance);
		return 0;
	case FM__MDNS_R_SRV:
		rec->type = FM__DNS_SRV;
		rec->class_ |= FM__DNS_CLASS_TOP;
		rec->ttl = FM_MDNS_TTL_HOST_S;
		copy_str(rec->name, sizeof(rec->name), ifc->instance);
		rec->rd.srv.port = d->peer_port;
		copy_str(rec->rd.srv.target, sizeof(rec->rd.srv.target),
		         d->host_name);
		return 0;
	case FM__MDNS_R_TXT:
		rec->type = FM__DNS_TXT;
		rec->class_ |= FM__DNS_CLASS_TOP;
		rec->ttl = FM_MDNS_TTL_SERVICE_S;
		copy_str(rec->name, sizeof(rec->name), ifc->instance);
		fm_hex_encode(node->identity.node_id, FM_NODE_ID_BYTES, id_hex);
		copy_str(rec->rd.txt.strings[0], sizeof(rec->rd.txt.strings[0]),
		         FM_MDNS_TXT_VERSION);
		snprintf(rec->rd.txt.strings[1], sizeof(rec->rd.txt.strings[1]),
		         "id=%s", id_hex);
		snprintf(rec->rd.txt.strings[2], sizeof(rec->rd.txt.strings[2]),
		         "fed=%s", d->tag_hex);
		rec->rd.txt.count = 3;
		return 0;
	default:
		if (r < FM__MDNS_R_ADDR0 ||
		    r - FM__MDNS_R_ADDR0 >= ifc->iface.addr_count)
			return -ENOENT;
		a = &ifc->iface.addrs[r - FM__MDNS_R_ADDR0];
		rec->class_ |= FM__DNS_CLASS_TOP;
		rec->ttl = FM_MDNS_TTL_HOST_S;
		copy_str(rec->name, sizeof(rec->name), d->host_name);
		if (a->family == FM_AF_INET) {
			rec->type = FM__DNS_A;
			memcpy(rec->rd.a, a->ip, 4);
		} else {
			rec->type = FM__DNS_AAAA;
			memcpy(rec->rd.aaaa, a->ip, 16);
		}
		return 0;
	}
}

static int rdata_equal(const fm__dns_record *a, const fm__dns_record *b)
{
	uint8_t i;

	switch (a->type) {
	case FM__DNS_PTR:
		return fm__dns_name_equal(a->rd.ptr, b->rd.ptr);
	case FM__DNS_SRV:
		return a->rd.srv.priority == b->rd.srv.priority &&
		       a->rd.srv.weight == b->rd.srv.weight &&
		       a->rd.srv.port == b->rd.srv.port &&
		       fm__dns_name_equal(a->rd.srv.target, b->rd.srv.target);
	case FM__DNS_TXT:
		if (a->rd.txt.count != b->rd.txt.count || a->rd.txt.truncated ||
		    b->rd.txt.truncated)
			return 0;
		for (i = 0; i < a->rd.txt.count && i < FM__DNS_TXT_STRINGS_MAX;
		     i++)
			if (strcmp(a->rd.txt.strings[i],
			           b->rd.txt.strings[i]) != 0)
				return 0;
		return 1;
	case FM__DNS_A:
		return memcmp(a->rd.a, b->rd.a, 4) == 0;
	case FM__DNS_AAAA:
		return memcmp(a->rd.aaaa, b->rd.aaaa, 16) == 0;
	default:
		return 0;
	}
}

/* Same name, type, class (ignoring the top bit) and data. */
static int same_record(const fm__dns_record *a, const fm__dns_record *b)
{
	return a->type == b->type &&
	       (a->class_ & ~FM__DNS_CLASS_TOP) ==
	               (b->class_ & ~FM__DNS_CLASS_TOP) &&
	       fm__dns_name_equal(a->name, b->name) && rdata_equal(a, b);
}

/* Which of `mask` appear in the message's answer section with at least
 * half our TTL: known answers (RFC 6762 section 7.1) or, in another
 * responder's response, duplicate answers (section 7.4). */
static uint32_t listed_records(const fm_node *node,
                               const struct fm__disc_iface *ifc,
                               const fm__dns_message *m, uint32_t mask,
                               int answers_only)
{
	fm__dns_record ours;
	uint32_t found = 0;
	unsigned r;
	uint8_t i;

	for (r = 0; r < FM__MDNS_RECORDS; r++) {
		if (!(mask & bit(r)) || record_fill(node, ifc, r, &ours) != 0)
			continue;
		for (i = 0; i < m->record_count; i++) {
			const fm__dns_record *k = &m->records[i];
			if (answers_only && k->section != FM__DNS_ANSWER)
				continue;
			if (k->ttl >= ours.ttl / 2 && same_record(k, &ours)) {
				found |= bit(r);
				break;
			}
		}
	}
	return found;
}

/* RFC 6763 section 12: what a querier will want next. */
static uint32_t additional_for(const struct fm__disc_iface *ifc,
                               uint32_t answers)
{
	uint32_t extra = 0;

	if (answers & bit(FM__MDNS_R_PTR))
		extra |= bit(FM__MDNS_R_SRV) | bit(FM__MDNS_R_TXT) |
		         addr_records(ifc, FM_AF_NONE);
	if (answers & bit(FM__MDNS_R_SRV))
		extra |= addr_records(ifc, FM_AF_NONE);
	/* RFC 6762 section 6.2: an address answer carries the others. */
	if (answers & addr_records(ifc, FM_AF_NONE))
		extra |= addr_records(ifc, FM_AF_NONE);
	return extra & ~answers;
}

/* ---- sending ------------------------------------------------------------- */

static void send_to(fm_node *node, const struct fm__disc_iface *ifc,
                    const fm_addr *to, const uint8_t *buf, size_t len)
{
	node->stats.mdns_sent++;
	(void)node->io.send_mdns(node->io.ctx, ifc->iface.index, to, buf, len);
}

/* To the group of each address family the interface has. */
static void send_multicast(fm_node *node, const struct fm__disc_iface *ifc,
                           const uint8_t *buf, size_t len)
{
	fm_addr to;

	memset(&to, 0, sizeof(to));
	to.port = FM_MDNS_PORT;
	if (ifc->has_v4) {
		to.family = FM_AF_INET;
		memcpy(to.ip, group_v4, sizeof(group_v4));
		send_to(node, ifc, &to, buf, len);
	}
	if (ifc->has_v6) {
		to.family = FM_AF_INET6;
		memcpy(to.ip, group_v6, sizeof(group_v6));
		send_to(node, ifc, &to, buf, len);
	}
}

enum send_mode {
	MODE_NORMAL = 0,
	MODE_GOODBYE, /* TTL 0 */
	MODE_LEGACY,  /* RFC 6762 section 6.7: no cache-flush, TTL <= 10 s */
};

/* Adds records `mask` to section `section`. */
static int add_records(const fm_node *node, const struct fm__disc_iface *ifc,
                       fm__dns_writer *w, uint32_t mask, uint8_t section,
                       enum send_mode mode)
{
	fm__dns_record rec;
	unsigned r;
	int rc;

	for (r = 0; r < FM__MDNS_RECORDS; r++) {
		if (!(mask & bit(r)) || record_fill(node, ifc, r, &rec) != 0)
			continue;
		rec.section = section;
		if (mode == MODE_GOODBYE)
			rec.ttl = 0;
		if (mode == MODE_LEGACY) {
			rec.class_ &= (uint16_t)~FM__DNS_CLASS_TOP;
			if (rec.ttl > FM_MDNS_TTL_LEGACY_MAX_S)
				rec.ttl = FM_MDNS_TTL_LEGACY_MAX_S;
		}
		rc = fm__dns_add_record(w, &rec);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Builds a response and sends it to `to`, or multicasts it when to is
 * NULL. A legacy reply echoes the query's ID and questions. */
static void send_response(fm_node *node, const struct fm__disc_iface *ifc,
                          const fm_addr *to, uint32_t answers,
                          uint32_t additional, enum send_mode mode,
                          const fm__dns_message *query)
{
	uint8_t buf[FM_MDNS_TX_MAX];
	fm__dns_writer w;
	size_t len = 0;
	uint8_t i;

	fm__dns_writer_init(&w, buf, sizeof(buf),
	                    mode == MODE_LEGACY ? query->id : 0,
	                    FM__DNS_FLAG_QR | FM__DNS_FLAG_AA);
	if (mode == MODE_LEGACY)
		for (i = 0; i < query->question_count; i++)
			if (fm__dns_add_question(
			            &w, query->questions[i].name,
			            query->questions[i].type,
			            query->questions[i].class_ &
			                    (uint16_t)~FM__DNS_CLASS_TOP) != 0)
				return;
	if (add_records(node, ifc, &w, answers, FM__DNS_ANSWER, mode) != 0 ||
	    add_records(node, ifc, &w, additional, FM__DNS_ADDITIONAL, mode) !=
	            0 ||
	    fm__dns_finish(&w, &len) != 0)
		return;
	if (to != NULL)
		send_to(node, ifc, to, buf, len);
	else
		send_multicast(node, ifc, buf, len);
}

/* Drops from mask the records multicast less than interval_ms ago. */
static uint32_t rate_limit(const struct fm__disc_iface *ifc, uint64_t now_ms,
                           uint32_t mask, uint64_t interval_ms)
{
	unsigned r;

	for (r = 0; r < FM__MDNS_RECORDS; r++)
		if ((mask & bit(r)) &&
		    ifc->last_mcast_ms[r] != FM_DEADLINE_NONE &&
		    now_ms < ifc->last_mcast_ms[r] + interval_ms)
			mask &= ~bit(r);
	return mask;
}

static void mark_multicast(struct fm__disc_iface *ifc, uint64_t now_ms,
                           uint32_t mask)
{
	unsigned r;

	for (r = 0; r < FM__MDNS_RECORDS; r++)
		if (mask & bit(r))
			ifc->last_mcast_ms[r] = now_ms;
}

static void forget_multicast(struct fm__disc_iface *ifc, uint32_t mask)
{
	unsigned r;

	for (r = 0; r < FM__MDNS_RECORDS; r++)
		if (mask & bit(r))
			ifc->last_mcast_ms[r] = FM_DEADLINE_NONE;
}

/* Multicasts answers (and what goes with them) within the per-record rate
 * limit. */
static void multicast_answers(fm_node *node, struct fm__disc_iface *ifc,
                              uint64_t now_ms, uint32_t answers, int probe)
{
	uint64_t interval = probe ? FM_MDNS_PROBE_ANSWER_INTERVAL_MS
	                          : FM_MDNS_RECORD_INTERVAL_MS;
	uint32_t extra;

	answers = rate_limit(ifc, now_ms, answers, interval);
	if (answers == 0)
		return;
	extra = rate_limit(ifc, now_ms, additional_for(ifc, answers), interval);
	send_response(node, ifc, NULL, answers, extra, MODE_NORMAL, NULL);
	mark_multicast(ifc, now_ms, answers | extra);
}

static void send_probe(fm_node *node, const struct fm__disc_iface *ifc)
{
	uint8_t buf[FM_MDNS_TX_MAX];
	fm__dns_writer w;
	size_t len = 0;
	uint16_t class_ = FM__DNS_CLASS_IN;

	/* RFC 6762 section 8.1: the first probe asks for unicast answers. */
	if (ifc->step == 0)
		class_ |= FM__DNS_CLASS_TOP;
	fm__dns_writer_init(&w, buf, sizeof(buf), 0, 0);
	if (fm__dns_add_question(&w, ifc->instance, FM__DNS_ANY, class_) != 0)
		return;
	/* The data we propose, so a simultaneous prober can compare. The
	 * cache-flush bit has no meaning in the authority section. */
	if (add_records(node, ifc, &w,
	                bit(FM__MDNS_R_SRV) | bit(FM__MDNS_R_TXT),
	                FM__DNS_AUTHORITY, MODE_LEGACY) != 0)
		return;
	if (fm__dns_finish(&w, &len) != 0)
		return;
	send_multicast(node, ifc, buf, len);
}

/* A PTR query for our service, with the known answers that still have more
 * than half their TTL, plus questions for instances being resolved. */
static void send_query(fm_node *node, struct fm__disc_iface *ifc,
                       uint64_t now_ms, int qu)
{
	uint8_t buf[FM_MDNS_TX_MAX];
	fm__dns_record rec;
	fm__dns_writer w;
	size_t len = 0;
	size_t i;

	fm__dns_writer_init(&w, buf, sizeof(buf), 0, 0);
	if (fm__dns_add_question(&w, FM_MDNS_SERVICE, FM__DNS_PTR,
	                         (uint16_t)(FM__DNS_CLASS_IN |
	                                    (qu ? FM__DNS_CLASS_TOP : 0))) != 0)
		return;
	memset(&rec, 0, sizeof(rec));
	copy_str(rec.name, sizeof(rec.name), FM_MDNS_SERVICE);
	rec.type = FM__DNS_PTR;
	rec.class_ = FM__DNS_CLASS_IN;
	rec.section = FM__DNS_ANSWER;
	for (i = 0; i < FM_MDNS_INSTANCES_MAX; i++) {
		const struct fm__mdns_instance *in = &ifc->instances[i];
		uint64_t left_s;

		if (!in->used || in->ptr_ttl_s == 0 ||
		    in->ptr_expires_ms <= now_ms)
			continue;
		left_s = (in->ptr_expires_ms - now_ms) / 1000;
		if (left_s * 2 <= in->ptr_ttl_s)
			continue;
		if (w.cap - w.len < FM_MDNS_KNOWN_ANSWER_ROOM)
			break;
		rec.ttl = (uint32_t)left_s;
		if (copy_str(rec.rd.ptr, sizeof(rec.rd.ptr), in->name) != 0 ||
		    fm__dns_add_record(&w, &rec) != 0)
			return;
	}
	if (fm__dns_finish(&w, &len) != 0)
		return;
	send_multicast(node, ifc, buf, len);
}

/* ---- the responder's state machine ----------------------------------------
 */

static void set_instance_name(const struct fm__disc *d,
                              struct fm__disc_iface *ifc)
{
	if (ifc->name_number <= 1)
		snprintf(ifc->instance, sizeof(ifc->instance), "%s.%s",
		         d->instance_base, FM_MDNS_SERVICE);
	else
		snprintf(ifc->instance, sizeof(ifc->instance), "%s (%u).%s",
		         d->instance_base, (unsigned)ifc->name_number,
		         FM_MDNS_SERVICE);
}

static void start_probing(fm_node *node, struct fm__disc_iface *ifc,
                          uint64_t now_ms)
{
	ifc->state = FM__MDNS_PROBING;
	ifc->step = 0;
	ifc->step_at_ms =
	        now_ms + rand_between(node, 0, FM_MDNS_PROBE_WAIT_MAX_MS - 1);
	if (ifc->conflicts > FM_MDNS_CONFLICT_BURST)
		ifc->step_at_ms = now_ms + FM_MDNS_CONFLICT_BACKOFF_MS;
	ifc->pending = 0;
}

/* Records changed (new addresses, a new federation tag): announce again. */
static void start_announcing(struct fm__disc_iface *ifc, uint64_t now_ms)
{
	if (ifc->state != FM__MDNS_ANNOUNCING && ifc->state != FM__MDNS_READY)
		return;
	ifc->state = FM__MDNS_ANNOUNCING;
	ifc->step = 0;
	ifc->step_at_ms = now_ms;
}

static void rename_instance(fm_node *node, struct fm__disc_iface *ifc,
                            uint64_t now_ms)
{
	if (now_ms >= ifc->conflict_window_ms + FM_MDNS_CONFLICT_WINDOW_MS) {
		ifc->conflict_window_ms = now_ms;
		ifc->conflicts = 0;
	}
	ifc->conflicts++;
	if (ifc->name_number < FM_MDNS_RENAME_MAX)
		ifc->name_number =
		        ifc->name_number <= 1 ? 2 : ifc->name_number + 1;
	set_instance_name(node->disc, ifc);
	/* New names are new records: no rate limit carries over. */
	forget_multicast(ifc, bit(FM__MDNS_R_PTR) | bit(FM__MDNS_R_SRV) |
	                              bit(FM__MDNS_R_TXT));
	start_probing(node, ifc, now_ms);
	fm__log(node, FM_LOG_INFO, "mdns",
	        "name conflict on %s: probing again as \"%s\"", ifc->iface.name,
	        ifc->instance);
}

static void responder_tick(fm_node *node, struct fm__disc_iface *ifc,
                           uint64_t now_ms)
{
	if (ifc->state == FM__MDNS_PROBING && now_ms >= ifc->step_at_ms) {
		if (ifc->step < FM_MDNS_PROBE_COUNT) {
			send_probe(node, ifc);
			ifc->step++;
			ifc->step_at_ms = now_ms + FM_MDNS_PROBE_INTERVAL_MS;
		} else {
			ifc->state = FM__MDNS_ANNOUNCING;
			ifc->step = 0;
			ifc->step_at_ms = now_ms;
			fm__log(node, FM_LOG_DEBUG, "mdns",
			        "%s: \"%s\" is ours", ifc->iface.name,
			        ifc->instance);
		}
	}
	if (ifc->state == FM__MDNS_ANNOUNCING && now_ms >= ifc->step_at_ms) {
		uint32_t all =
		        rate_limit(ifc, now_ms, all_records(node->disc, ifc),
		                   FM_MDNS_RECORD_INTERVAL_MS);
		if (all != 0) {
			send_response(node, ifc, NULL, all, 0, MODE_NORMAL,
			              NULL);
			mark_multicast(ifc, now_ms, all);
		}
		ifc->step++;
		ifc->step_at_ms = now_ms + FM_MDNS_ANNOUNCE_INTERVAL_MS;
		if (ifc->step >= FM_MDNS_ANNOUNCE_COUNT)
			ifc->state = FM__MDNS_READY;
	}
	if (ifc->pending != 0 && now_ms >= ifc->pending_at_ms) {
		multicast_answers(node, ifc, now_ms, ifc->pending,
		                  ifc->pending_probe);
		ifc->pending = 0;
		ifc->pending_probe = 0;
	}
}

/* Which of our records answer question q. */
static uint32_t question_match(const fm_node *node,
                               const struct fm__disc_iface *ifc,
                               const fm__dns_question *q)
{
	const struct fm__disc *d = node->disc;
	uint16_t class_ = q->class_ & (uint16_t)~FM__DNS_CLASS_TOP;
	uint16_t t = q->type;
	uint32_t mask = 0;

	if (class_ != FM__DNS_CLASS_IN && class_ != FM__DNS_CLASS_ANY)
		return 0;
	if ((t == FM__DNS_PTR || t == FM__DNS_ANY) &&
	    fm__dns_name_equal(q->name, FM_MDNS_META_QUERY))
		mask |= bit(FM__MDNS_R_META);
	if ((t == FM__DNS_PTR || t == FM__DNS_ANY) &&
	    fm__dns_name_equal(q->name, FM_MDNS_SERVICE))
		mask |= bit(FM__MDNS_R_PTR);
	if (fm__dns_name_equal(q->name, ifc->instance)) {
		if (t == FM__DNS_SRV || t == FM__DNS_ANY)
			mask |= bit(FM__MDNS_R_SRV);
		if (t == FM__DNS_TXT || t == FM__DNS_ANY)
			mask |= bit(FM__MDNS_R_TXT);
	}
	if (fm__dns_name_equal(q->name, d->host_name)) {
		if (t == FM__DNS_A || t == FM__DNS_ANY)
			mask |= addr_records(ifc, FM_AF_INET);
		if (t == FM__DNS_AAAA || t == FM__DNS_ANY)
			mask |= addr_records(ifc, FM_AF_INET6);
	}
	return mask & all_records(d, ifc);
}

static void handle_query(fm_node *node, struct fm__disc_iface *ifc,
                         uint64_t now_ms, const fm_addr *from,
                         const fm__dns_message *m)
{
	const uint32_t shared = bit(FM__MDNS_R_META) | bit(FM__MDNS_R_PTR);
	int legacy = from->port != FM_MDNS_PORT;
	int probe = m->nscount > 0;
	uint32_t unicast = 0, multicast = 0;
	uint8_t i;

	/* Until probing is done the names are not ours to answer for. */
	if (ifc->state != FM__MDNS_ANNOUNCING && ifc->state != FM__MDNS_READY)
		return;
	for (i = 0; i < m->question_count; i++) {
		uint32_t mask = question_match(node, ifc, &m->questions[i]);
		if (mask == 0)
			continue;
		if (legacy || (m->questions[i].class_ & FM__DNS_CLASS_TOP))
			unicast |= mask;
		else
			multicast |= mask;
	}
	if ((unicast | multicast) == 0)
		return;
	/* Known-answer suppression; a legacy resolver has no cache to
	 * consult, so it lists nothing we would honour anyway. */
	if (!probe) {
		uint32_t known =
		        listed_records(node, ifc, m, unicast | multicast, 1);
		unicast &= ~known;
		multicast &= ~known;
	}
	if (unicast != 0)
		send_response(node, ifc, from, unicast,
		              additional_for(ifc, unicast),
		              legacy ? MODE_LEGACY : MODE_NORMAL, m);
	if (multicast == 0)
		return;
	if ((multicast & shared) == 0 || probe) {
		/* Unique answers, and answers to probes, go at once. */
		multicast_answers(node, ifc, now_ms, multicast, probe);
		return;
	}
	/* Shared answers wait 20-120 ms and aggregate with later queries. */
	if (ifc->pending == 0)
		ifc->pending_at_ms =
		        now_ms + rand_between(node, FM_MDNS_SHARED_DELAY_MIN_MS,
		                              FM_MDNS_SHARED_DELAY_MAX_MS);
	ifc->pending |= multicast;
}

/* ---- the cache ------------------------------------------------------------
 */

static struct fm__mdns_instance *find_instance(struct fm__disc_iface *ifc,
                                               const char *name)
{
	size_t i;

	for (i = 0; i < FM_MDNS_INSTANCES_MAX; i++)
		if (ifc->instances[i].used &&
		    fm__dns_name_equal(ifc->instances[i].name, name))
			return &ifc->instances[i];
	return NULL;
}

/* A free slot, or the least useful entry: one that is not a member of our
 * federation, then the one expiring first. Flooding the cache with junk
 * therefore evicts junk first. */
static struct fm__mdns_instance *alloc_instance(struct fm__disc_iface *ifc)
{
	struct fm__mdns_instance *victim = NULL;
	size_t i;

	for (i = 0; i < FM_MDNS_INSTANCES_MAX; i++) {
		struct fm__mdns_instance *in = &ifc->instances[i];
		if (!in->used)
			return in;
		if (victim == NULL || (victim->member && !in->member) ||
		    (victim->member == in->member &&
		     in->ptr_expires_ms < victim->ptr_expires_ms))
			victim = in;
	}
	return victim;
}

static struct fm__mdns_host *find_host(struct fm__disc_iface *ifc,
                                       const char *name)
{
	size_t i;

	for (i = 0; i < FM_MDNS_HOSTS_MAX; i++)
		if (ifc->hosts[i].used &&
		    fm__dns_name_equal(ifc->hosts[i].name, name))
			return &ifc->hosts[i];
	return NULL;
}

static int host_wanted(struct fm__disc_iface *ifc, const char *name)
{
	size_t i;

	for (i = 0; i < FM_MDNS_INSTANCES_MAX; i++)
		if (ifc->instances[i].used && ifc->instances[i].has_srv &&
		    fm__dns_name_equal(ifc->instances[i].target, name))
			return 1;
	return 0;
}

/* Expiry of a record just received: TTL 0 is a goodbye, kept one second. */
static uint64_t expiry(uint64_t now_ms, uint32_t ttl_s)
{
	if (ttl_s == 0)
		return now_ms + FM_MDNS_GOODBYE_EXPIRE_MS;
	return now_ms + (uint64_t)ttl_s * 1000;
}

static void cache_ptr(struct fm__disc_iface *ifc, uint64_t now_ms,
                      const fm__dns_record *rec)
{
	struct fm__mdns_instance *in;

	if (strnlen(rec->rd.ptr, sizeof(rec->rd.ptr)) > FM_MDNS_NAME_MAX ||
	    fm__dns_name_equal(rec->rd.ptr, ifc->instance))
		return;
	in = find_instance(ifc, rec->rd.ptr);
	if (in == NULL) {
		if (rec->ttl == 0)
			return;
		in = alloc_instance(ifc);
		memset(in, 0, sizeof(*in));
		in->used = 1;
		copy_str(in->name, sizeof(in->name), rec->rd.ptr);
		in->resolve_at_ms = FM_DEADLINE_NONE;
	}
	in->ptr_ttl_s = rec->ttl;
	in->ptr_expires_ms = expiry(now_ms, rec->ttl);
}

/* TXT keys are case-insensitive (RFC 6763 section 6.4). Returns the value
 * of string s when its key is `key`, else NULL. */
static const char *txt_value(const char *s, const char *key)
{
	size_t i;

	for (i = 0; key[i] != '\0'; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != key[i])
			return NULL;
	}
	return s[i] == '=' ? s + i + 1 : NULL;
}

static void parse_txt(const fm_node *node, struct fm__mdns_instance *in,
                      const fm__dns_record *rec)
{
	uint8_t id[FM_NODE_ID_BYTES];
	uint8_t tag[FM_MDNS_TAG_BYTES];
	uint8_t want[FM_MDNS_TAG_BYTES];
	int seen_v = 0, seen_id = 0, seen_fed = 0;
	int v_ok = 0, id_ok = 0, fed_ok = 0;
	const char *val;
	uint8_t i;

	for (i = 0; i < rec->rd.txt.count && i < FM__DNS_TXT_STRINGS_MAX; i++) {
		const char *s = rec->rd.txt.strings[i];
		/* Only the first occurrence of a key counts (6763 6.4). */
		if (!seen_v && (val = txt_value(s, "v")) != NULL) {
			seen_v = 1;
			v_ok = strcmp(val, "1") == 0;
		} else if (!seen_id && (val = txt_value(s, "id")) != NULL) {
			seen_id = 1;
			id_ok = fm_hex_decode(val, id, sizeof(id)) == 0;
		} else if (!seen_fed && (val = txt_value(s, "fed")) != NULL) {
			seen_fed = 1;
			fed_ok = fm_hex_decode(val, tag, sizeof(tag)) == 0;
		}
	}
	if (!(v_ok && id_ok && fed_ok) || rec->rd.txt.truncated) {
		in->txt_ok = 0;
		in->member = 0;
		return;
	}
	if (in->txt_ok && memcmp(in->id, id, FM_NODE_ID_BYTES) != 0)
		in->acted = 0; /* another node took the name */
	in->txt_ok = 1;
	memcpy(in->id, id, FM_NODE_ID_BYTES);
	memcpy(in->tag, tag, FM_MDNS_TAG_BYTES);
	fm__mdns_tag(node, id, want);
	in->member = sodium_memcmp(want, tag, FM_MDNS_TAG_BYTES) == 0;
}

static void cache_srv_txt(fm_node *node, struct fm__disc_iface *ifc,
                          uint64_t now_ms, const fm__dns_record *rec)
{
	struct fm__mdns_instance *in = find_instance(ifc, rec->name);

	if (in == NULL)
		return;
	if (rec->type == FM__DNS_SRV) {
		if (rec->ttl == 0) {
			in->srv_expires_ms =
			        min_u64(in->srv_expires_ms, expiry(now_ms, 0));
			return;
		}
		if (strnlen(rec->rd.srv.target, sizeof(rec->rd.srv.target)) >
		    FM_MDNS_NAME_MAX)
			return;
		in->has_srv = 1;
		in->port = rec->rd.srv.port;
		copy_str(in->target, sizeof(in->target), rec->rd.srv.target);
		in->srv_received_ms = now_ms;
		in->srv_expires_ms = expiry(now_ms, rec->ttl);
		return;
	}
	if (rec->ttl == 0) {
		in->txt_expires_ms =
		        min_u64(in->txt_expires_ms, expiry(now_ms, 0));
		return;
	}
	in->has_txt = 1;
	in->txt_received_ms = now_ms;
	in->txt_expires_ms = expiry(now_ms, rec->ttl);
	parse_txt(node, in, rec);
}

static void cache_addr(struct fm__disc_iface *ifc, uint64_t now_ms,
                       const fm__dns_record *rec)
{
	struct fm__mdns_host *h;
	struct fm__mdns_host_addr *slot = NULL;
	fm_addr a;
	size_t i;

	if (!host_wanted(ifc, rec->name))
		return;
	memset(&a, 0, sizeof(a));
	if (rec->type == FM__DNS_A) {
		a.family = FM_AF_INET;
		memcpy(a.ip, rec->rd.a, 4);
	} else {
		a.family = FM_AF_INET6;
		memcpy(a.ip, rec->rd.aaaa, 16);
	}
	h = find_host(ifc, rec->name);
	if (h == NULL) {
		if (rec->ttl == 0)
			return;
		for (i = 0; i < FM_MDNS_HOSTS_MAX && h == NULL; i++)
			if (!ifc->hosts[i].used)
				h = &ifc->hosts[i];
		if (h == NULL)
			return; /* full of wanted hosts: wait for expiry */
		memset(h, 0, sizeof(*h));
		h->used = 1;
		copy_str(h->name, sizeof(h->name), rec->name);
	}
	/* Cache flush (RFC 6762 section 10.2): the sender's set replaces
	 * what we had for this name and family, one second from now. */
	if ((rec->class_ & FM__DNS_CLASS_TOP) && rec->ttl > 0)
		for (i = 0; i < h->count; i++)
			if (h->addrs[i].addr.family == a.family &&
			    h->addrs[i].received_ms + FM_MDNS_FLUSH_GRACE_MS <=
			            now_ms)
				h->addrs[i].expires_ms = min_u64(
				        h->addrs[i].expires_ms,
				        now_ms + FM_MDNS_FLUSH_GRACE_MS);
	for (i = 0; i < h->count; i++)
		if (fm__addr_equal(&h->addrs[i].addr, &a))
			slot = &h->addrs[i];
	if (rec->ttl == 0) {
		if (slot != NULL)
			slot->expires_ms =
			        min_u64(slot->expires_ms, expiry(now_ms, 0));
		return;
	}
	if (slot == NULL && h->count < FM_MDNS_HOST_ADDRS_MAX)
		slot = &h->addrs[h->count++];
	if (slot == NULL) {
		slot = &h->addrs[0];
		for (i = 1; i < h->count; i++)
			if (h->addrs[i].expires_ms < slot->expires_ms)
				slot = &h->addrs[i];
	}
	slot->addr = a;
	slot->received_ms = now_ms;
	slot->expires_ms = expiry(now_ms, rec->ttl);
}

/* An address we can dial: IPv4 first, then IPv6 that is not link-local
 * (fm_addr has no scope). Never unspecified, multicast or broadcast. */
static int best_addr(struct fm__disc_iface *ifc,
                     const struct fm__mdns_instance *in, fm_addr *out)
{
	static const uint8_t zero[16];
	struct fm__mdns_host *h = find_host(ifc, in->target);
	int pass;
	uint8_t i;

	if (h == NULL)
		return 0;
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < h->count; i++) {
			const fm_addr *a = &h->addrs[i].addr;
			if (pass == 0 && a->family == FM_AF_INET &&
			    memcmp(a->ip, zero, 4) != 0 && a->ip[0] < 224) {
				*out = *a;
				return 1;
			}
			if (pass == 1 && a->family == FM_AF_INET6 &&
			    memcmp(a->ip, zero, 16) != 0 && a->ip[0] != 0xff &&
			    !(a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80)) {
				*out = *a;
				return 1;
			}
		}
	}
	return 0;
}

static int connected(const fm_node *node, const uint8_t id[FM_NODE_ID_BYTES])
{
	int peer = fm__peer_find(node, id);

	return peer >= 0 && node->peers[peer].info.state == FM_PEER_CONNECTED;
}

static void want_resolve(fm_node *node, struct fm__mdns_instance *in,
                         uint64_t now_ms)
{
	if (in->resolve_at_ms != FM_DEADLINE_NONE)
		return;
	in->resolve_at_ms =
	        now_ms + rand_between(node, FM_MDNS_SHARED_DELAY_MIN_MS,
	                              FM_MDNS_SHARED_DELAY_MAX_MS);
	if (in->resolve_interval_ms == 0)
		in->resolve_interval_ms = FM_MDNS_RESOLVE_FIRST_INTERVAL_MS;
}

/* Decides what an instance means now: nothing yet (resolve what is
 * missing), us, a foreign node, or a member to hand to the peer table. */
static void evaluate(fm_node *node, struct fm__disc_iface *ifc,
                     struct fm__mdns_instance *in, uint64_t now_ms)
{
	fm_addr addr;

	if (in->has_txt && !in->txt_ok) {
		in->resolve_at_ms = FM_DEADLINE_NONE; /* not a fedmesh node */
		return;
	}
	if (in->has_txt && is_us(node, in->id)) {
		in->resolve_at_ms = FM_DEADLINE_NONE;
		return;
	}
	if (in->has_txt && !in->member) {
		in->resolve_at_ms = FM_DEADLINE_NONE;
		fm__disc_foreign(node, in->id);
		return;
	}
	if (!in->has_txt || !in->has_srv || !best_addr(ifc, in, &addr)) {
		if (!(in->has_txt && connected(node, in->id)))
			want_resolve(node, in, now_ms);
		return;
	}
	in->resolve_at_ms = FM_DEADLINE_NONE;
	in->resolve_interval_ms = 0;
	addr.port = in->port;
	if (in->acted && fm__addr_equal(&in->acted_addr, &addr))
		return;
	/* New on the link, or moved: worth cutting a backoff short. */
	fm__disc_member(node, now_ms, in->id, &addr, FM_SRC_MDNS, 1);
	in->acted = 1;
	in->acted_addr = addr;
}

static void handle_response(fm_node *node, struct fm__disc_iface *ifc,
                            uint64_t now_ms, const fm__dns_message *m)
{
	fm__dns_record ours;
	int conflict = 0;
	uint8_t i;
	size_t k;

	for (i = 0; i < m->record_count; i++) {
		const fm__dns_record *rec = &m->records[i];
		unsigned r;

		if (ifc->state == FM__MDNS_IDLE || rec->ttl == 0 ||
		    !fm__dns_name_equal(rec->name, ifc->instance))
			continue;
		/* Our own packet looped back carries identical data. */
		r = rec->type == FM__DNS_SRV   ? FM__MDNS_R_SRV
		    : rec->type == FM__DNS_TXT ? FM__MDNS_R_TXT
		                               : FM__MDNS_RECORDS;
		if (r == FM__MDNS_RECORDS ||
		    record_fill(node, ifc, r, &ours) != 0 ||
		    !rdata_equal(rec, &ours))
			conflict = 1;
	}
	if (conflict)
		rename_instance(node, ifc, now_ms);
	else if (ifc->pending != 0)
		ifc->pending &= ~listed_records(node, ifc, m, ifc->pending, 0);
	/* PTRs first, then what they point at, then their targets. */
	for (i = 0; i < m->record_count; i++)
		if (m->records[i].type == FM__DNS_PTR &&
		    fm__dns_name_equal(m->records[i].name, FM_MDNS_SERVICE))
			cache_ptr(ifc, now_ms, &m->records[i]);
	for (i = 0; i < m->record_count; i++)
		if (m->records[i].type == FM__DNS_SRV ||
		    m->records[i].type == FM__DNS_TXT)
			cache_srv_txt(node, ifc, now_ms, &m->records[i]);
	for (i = 0; i < m->record_count; i++)
		if (m->records[i].type == FM__DNS_A ||
		    m->records[i].type == FM__DNS_AAAA)
			cache_addr(ifc, now_ms, &m->records[i]);
	for (k = 0; k < FM_MDNS_INSTANCES_MAX; k++)
		if (ifc->instances[k].used)
			evaluate(node, ifc, &ifc->instances[k], now_ms);
}

/* Drops what has expired; returns the next expiry. */
static uint64_t cache_expire(struct fm__disc_iface *ifc, uint64_t now_ms)
{
	uint64_t next = FM_DEADLINE_NONE;
	size_t i, j;

	for (i = 0; i < FM_MDNS_INSTANCES_MAX; i++) {
		struct fm__mdns_instance *in = &ifc->instances[i];
		if (!in->used)
			continue;
		if (now_ms >= in->ptr_expires_ms) {
			memset(in, 0, sizeof(*in));
			continue;
		}
		next = min_u64(next, in->ptr_expires_ms);
		if (in->has_srv && now_ms >= in->srv_expires_ms)
			in->has_srv = 0;
		if (in->has_txt && now_ms >= in->txt_expires_ms)
			in->has_txt = in->txt_ok = in->member = 0;
		if (in->has_srv)
			next = min_u64(next, in->srv_expires_ms);
		if (in->has_txt)
			next = min_u64(next, in->txt_expires_ms);
	}
	for (i = 0; i < FM_MDNS_HOSTS_MAX; i++) {
		struct fm__mdns_host *h = &ifc->hosts[i];
		if (!h->used)
			continue;
		for (j = 0; j < h->count;) {
			if (now_ms >= h->addrs[j].expires_ms) {
				h->addrs[j] = h->addrs[--h->count];
				continue;
			}
			next = min_u64(next, h->addrs[j].expires_ms);
			j++;
		}
		if (h->count == 0 || !host_wanted(ifc, h->name))
			h->used = 0;
	}
	return next;
}

/* One query for everything that instances due for resolving lack. */
static uint64_t resolve_tick(fm_node *node, struct fm__disc_iface *ifc,
                             uint64_t now_ms)
{
	uint8_t buf[FM_MDNS_TX_MAX];
	uint64_t next = FM_DEADLINE_NONE;
	fm__dns_writer w;
	size_t len = 0, i;
	int any = 0;

	fm__dns_writer_init(&w, buf, sizeof(buf), 0, 0);
	for (i = 0; i < FM_MDNS_INSTANCES_MAX; i++) {
		struct fm__mdns_instance *in = &ifc->instances[i];
		fm_addr unused;

		if (!in->used || in->resolve_at_ms == FM_DEADLINE_NONE)
			continue;
		if (now_ms < in->resolve_at_ms) {
			next = min_u64(next, in->resolve_at_ms);
			continue;
		}
		if (w.cap - w.len < 4 * (FM_MDNS_NAME_MAX + 8)) {
			next = min_u64(next, now_ms); /* the rest: next time */
			break;
		}
		if (!in->has_srv)
			fm__dns_add_question(&w, in->name, FM__DNS_SRV,
			                     FM__DNS_CLASS_IN);
		if (!in->has_txt)
			fm__dns_add_question(&w, in->name, FM__DNS_TXT,
			                     FM__DNS_CLASS_IN);
		if (in->has_srv && !best_addr(ifc, in, &unused)) {
			fm__dns_add_question(&w, in->target, FM__DNS_A,
			                     FM__DNS_CLASS_IN);
			fm__dns_add_question(&w, in->target, FM__DNS_AAAA,
			                     FM__DNS_CLASS_IN);
		}
		any = 1;
		in->resolve_at_ms = now_ms + in->resolve_interval_ms;
		in->resolve_interval_ms *= 2;
		if (in->resolve_interval_ms > FM_MDNS_RESOLVE_MAX_INTERVAL_MS)
			in->resolve_interval_ms =
			        FM_MDNS_RESOLVE_MAX_INTERVAL_MS;
		next = min_u64(next, in->resolve_at_ms);
	}
	if (any && fm__dns_finish(&w, &len) == 0 && w.qdcount > 0)
		send_multicast(node, ifc, buf, len);
	return next;
}

static void querier_start(fm_node *node, struct fm__disc_iface *ifc,
                          uint64_t now_ms)
{
	ifc->query_at_ms =
	        now_ms + rand_between(node, FM_MDNS_QUERY_DELAY_MIN_MS,
	                              FM_MDNS_QUERY_DELAY_MAX_MS);
	ifc->query_interval_ms = FM_MDNS_QUERY_FIRST_INTERVAL_MS;
	ifc->queries_sent = 0;
}

static uint64_t mdns_tick(fm_node *node, struct fm__disc_iface *ifc,
                          uint64_t now_ms)
{
	uint64_t next = FM_DEADLINE_NONE;

	responder_tick(node, ifc, now_ms);
	if (ifc->state == FM__MDNS_PROBING || ifc->state == FM__MDNS_ANNOUNCING)
		next = min_u64(next, ifc->step_at_ms);
	if (ifc->pending != 0)
		next = min_u64(next, ifc->pending_at_ms);
	if (now_ms >= ifc->query_at_ms) {
		/* Always QM: a unicast reply to port 5353 reaches only one of
		 * the processes sharing it (avahi-daemon and us), so QU made
		 * the first answer miss us half the time. */
		send_query(node, ifc, now_ms, 0);
		ifc->queries_sent++;
		ifc->query_at_ms = now_ms + ifc->query_interval_ms;
		ifc->query_interval_ms *= 2;
		if (ifc->query_interval_ms > FM_MDNS_QUERY_MAX_INTERVAL_MS)
			ifc->query_interval_ms = FM_MDNS_QUERY_MAX_INTERVAL_MS;
	}
	next = min_u64(next, ifc->query_at_ms);
	next = min_u64(next, cache_expire(ifc, now_ms));
	next = min_u64(next, resolve_tick(node, ifc, now_ms));
	return next;
}

/* ---- the node's discovery state -------------------------------------------
 */

/* "<label>.local" from the configured host name: its first label, with
 * anything but letters, digits and '-' replaced, so the name needs no
 * escaping anywhere; empty means the instance's own base name. */
static void set_host_name(struct fm__disc *d, const char *hostname)
{
	char label[FM_HOSTNAME_MAX + 1];
	size_t i, n = strnlen(hostname, FM_HOSTNAME_MAX);

	for (i = 0; i < n && hostname[i] != '.'; i++) {
		char c = hostname[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		         (c >= '0' && c <= '9') || c == '-';
		label[i] = ok ? c : '-';
	}
	label[i] = '\0';
	snprintf(d->host_name, sizeof(d->host_name), "%s.local",
	         i > 0 ? label : d->instance_base);
}

int fm__disc_new(fm_node *node, const fm_node_config *cfg)
{
	struct fm__disc *d;
	char id_hex[FM_NODE_ID_HEX_LEN + 1];
	int mdns = cfg->mdns_enabled && node->io.send_mdns != NULL;

	node->disc = NULL;
	if (!mdns && !cfg->beacon_enabled)
		return 0;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->mdns_enabled = (uint8_t)mdns;
	d->beacon_enabled = cfg->beacon_enabled ? 1 : 0;
	d->peer_port = cfg->peer_port;
	fm_hex_encode(node->identity.node_id, FM_NODE_ID_BYTES, id_hex);
	snprintf(d->instance_base, sizeof(d->instance_base), "%s%.*s",
	         FM_MDNS_INSTANCE_PREFIX, FM_MDNS_INSTANCE_ID_HEX, id_hex);
	set_host_name(d, cfg->hostname);
	node->disc = d;
	fm__disc_set_federation(node, node->last_now_ms);
	return 0;
}

void fm__disc_free(fm_node *node)
{
	struct fm__disc *d = node->disc;
	size_t i;

	if (d == NULL)
		return;
	for (i = 0; i < FM_IFACES_MAX; i++)
		free(d->ifaces[i]);
	free(d->rx);
	sodium_memzero(d->beacon_key, sizeof(d->beacon_key));
	free(d);
	node->disc = NULL;
}

void fm__disc_set_federation(fm_node *node, uint64_t now_ms)
{
	struct fm__disc *d = node->disc;
	uint8_t tag[FM_MDNS_TAG_BYTES];
	size_t i, k;

	if (d == NULL)
		return;
	fm__mdns_tag(node, node->identity.node_id, tag);
	fm_hex_encode(tag, sizeof(tag), d->tag_hex);
	fm__beacon_set_federation(node);
	/* Who is a member changed: count and contact afresh. */
	memset(d->seen, 0, sizeof(d->seen));
	d->seen_next = 0;
	for (i = 0; i < FM_IFACES_MAX; i++) {
		struct fm__disc_iface *ifc = d->ifaces[i];
		if (ifc == NULL)
			continue;
		for (k = 0; k < FM_MDNS_INSTANCES_MAX; k++) {
			struct fm__mdns_instance *in = &ifc->instances[k];
			uint8_t want[FM_MDNS_TAG_BYTES];
			if (!in->used)
				continue;
			in->acted = 0;
			in->resolve_at_ms = FM_DEADLINE_NONE;
			if (!in->txt_ok)
				continue;
			fm__mdns_tag(node, in->id, want);
			in->member = sodium_memcmp(want, in->tag,
			                           FM_MDNS_TAG_BYTES) == 0;
			/* Our queries list it as a known answer, so nobody
			 * would tell us again: act on the cache now. */
			evaluate(node, ifc, in, now_ms);
		}
		if (d->mdns_enabled) {
			forget_multicast(ifc, bit(FM__MDNS_R_TXT));
			start_announcing(ifc, now_ms);
			querier_start(node, ifc, now_ms);
		}
		ifc->beacon_at_ms = now_ms;
	}
}

static int addrs_equal(const fm_addr *a, uint8_t na, const fm_addr *b,
                       uint8_t nb)
{
	uint8_t i;

	if (na != nb)
		return 0;
	for (i = 0; i < na; i++)
		if (a[i].family != b[i].family ||
		    memcmp(a[i].ip, b[i].ip, 16) != 0)
			return 0;
	return 1;
}

static int iface_valid(const fm_iface *iface)
{
	uint8_t i;

	if (iface->addr_count > FM_IFACE_ADDRS_MAX ||
	    iface->broadcast_count > FM_IFACE_ADDRS_MAX)
		return 0;
	for (i = 0; i < iface->addr_count; i++)
		if (iface->addrs[i].family != FM_AF_INET &&
		    iface->addrs[i].family != FM_AF_INET6)
			return 0;
	for (i = 0; i < iface->broadcast_count; i++)
		if (iface->broadcast[i].family != FM_AF_INET)
			return 0;
	return 1;
}

static void copy_iface(struct fm__disc_iface *ifc, const fm_iface *iface)
{
	uint8_t i;

	ifc->iface = *iface;
	ifc->iface.name[FM_IFACE_NAME_MAX] = '\0';
	ifc->has_v4 = ifc->has_v6 = 0;
	for (i = 0; i < iface->addr_count; i++) {
		ifc->iface.addrs[i].port = 0;
		if (iface->addrs[i].family == FM_AF_INET)
			ifc->has_v4 = 1;
		else
			ifc->has_v6 = 1;
	}
}

int fm__disc_iface_update(fm_node *node, uint64_t now_ms, const fm_iface *iface)
{
	struct fm__disc *d = node->disc;
	struct fm__disc_iface *ifc;
	int addrs_changed, bcast_changed;
	size_t i;

	if (iface == NULL || !iface_valid(iface))
		return -EINVAL;
	if (d == NULL || d->stopped)
		return 0;
	ifc = find_iface(d, iface->index);
	if (ifc == NULL) {
		for (i = 0; i < FM_IFACES_MAX && d->ifaces[i] != NULL; i++)
			;
		if (i == FM_IFACES_MAX)
			return -ENOSPC;
		ifc = calloc(1, sizeof(*ifc));
		if (ifc == NULL)
			return -ENOMEM;
		d->ifaces[i] = ifc;
		copy_iface(ifc, iface);
		forget_multicast(ifc, ~(uint32_t)0);
		ifc->name_number = 1;
		set_instance_name(d, ifc);
		for (i = 0; i < FM_MDNS_INSTANCES_MAX; i++)
			ifc->instances[i].resolve_at_ms = FM_DEADLINE_NONE;
		if (d->mdns_enabled) {
			if (advertising(d))
				start_probing(node, ifc, now_ms);
			querier_start(node, ifc, now_ms);
		}
		if (d->beacon_enabled) {
			fm__beacon_announce(node, ifc);
			ifc->beacon_at_ms = now_ms + FM_BEACON_INTERVAL_MS;
		}
		fm__log(node, FM_LOG_INFO, "discovery", "interface %s is up",
		        ifc->iface.name);
		return 0;
	}
	addrs_changed = !addrs_equal(ifc->iface.addrs, ifc->iface.addr_count,
	                             iface->addrs, iface->addr_count);
	bcast_changed =
	        !addrs_equal(ifc->iface.broadcast, ifc->iface.broadcast_count,
	                     iface->broadcast, iface->broadcast_count);
	copy_iface(ifc, iface);
	if (addrs_changed && d->mdns_enabled) {
		/* The host records changed: announce them, and look again
		 * (RFC 6762 section 8.4 and the querier's "on interface
		 * changes"). */
		forget_multicast(ifc, ~(uint32_t)0 << FM__MDNS_R_ADDR0);
		ifc->pending = 0;
		start_announcing(ifc, now_ms);
		querier_start(node, ifc, now_ms);
	}
	if (bcast_changed && d->beacon_enabled)
		ifc->beacon_at_ms = now_ms;
	return 0;
}

void fm__disc_iface_remove(fm_node *node, uint64_t now_ms, uint32_t ifindex)
{
	struct fm__disc *d = node->disc;
	size_t i;

	(void)now_ms;
	if (d == NULL)
		return;
	/* The interface is gone: nothing can be sent on it, not even a
	 * goodbye. Its cache goes with it. */
	for (i = 0; i < FM_IFACES_MAX; i++) {
		if (d->ifaces[i] == NULL ||
		    d->ifaces[i]->iface.index != ifindex)
			continue;
		fm__log(node, FM_LOG_INFO, "discovery", "interface %s is gone",
		        d->ifaces[i]->iface.name);
		free(d->ifaces[i]);
		d->ifaces[i] = NULL;
	}
}

void fm__mdns_recv(fm_node *node, uint64_t now_ms, uint32_t ifindex,
                   const fm_addr *from, const uint8_t *buf, size_t len)
{
	struct fm__disc *d = node->disc;
	struct fm__disc_iface *ifc;
	const fm__dns_message *m;

	node->stats.mdns_received++;
	if (d == NULL || !d->mdns_enabled || d->stopped || from == NULL ||
	    (buf == NULL && len > 0))
		return;
	ifc = find_iface(d, ifindex);
	if (ifc == NULL)
		return;
	/* The parse buffer is large; nodes that never hear mDNS (most of a
	 * simulation) never allocate it. */
	if (d->rx == NULL) {
		d->rx = malloc(sizeof(*d->rx));
		if (d->rx == NULL)
			return;
	}
	if (fm__dns_parse(buf, len, d->rx) != 0) {
		node->stats.mdns_malformed++;
		return;
	}
	m = d->rx;
	/* RFC 6762 section 18.3 and 18.11: other opcodes and rcodes are
	 * ignored. */
	if (FM__DNS_OPCODE(m->flags) != 0 || FM__DNS_RCODE(m->flags) != 0)
		return;
	if (m->flags & FM__DNS_FLAG_QR) {
		/* Section 11: responses come from port 5353. */
		if (from->port == FM_MDNS_PORT)
			handle_response(node, ifc, now_ms, m);
		return;
	}
	handle_query(node, ifc, now_ms, from, m);
}

void fm__disc_shutdown(fm_node *node, uint64_t now_ms)
{
	struct fm__disc *d = node->disc;
	const uint32_t service = bit(FM__MDNS_R_META) | bit(FM__MDNS_R_PTR) |
	                         bit(FM__MDNS_R_SRV) | bit(FM__MDNS_R_TXT);
	size_t i;

	(void)now_ms;
	if (d == NULL || d->stopped)
		return;
	for (i = 0; i < FM_IFACES_MAX && d->mdns_enabled; i++) {
		struct fm__disc_iface *ifc = d->ifaces[i];
		/* Only names we announced are ours to withdraw. */
		if (ifc == NULL || (ifc->state != FM__MDNS_ANNOUNCING &&
		                    ifc->state != FM__MDNS_READY))
			continue;
		send_response(node, ifc, NULL, service & all_records(d, ifc), 0,
		              MODE_GOODBYE, NULL);
		ifc->state = FM__MDNS_IDLE;
	}
	d->stopped = 1;
}

uint64_t fm__disc_tick(fm_node *node, uint64_t now_ms)
{
	struct fm__disc *d = node->disc;
	uint64_t next = FM_DEADLINE_NONE;
	size_t i;

	if (d == NULL || d->stopped)
		return FM_DEADLINE_NONE;
	for (i = 0; i < FM_IFACES_MAX; i++) {
		struct fm__disc_iface *ifc = d->ifaces[i];
		if (ifc == NULL)
			continue;
		if (d->mdns_enabled)
			next = min_u64(next, mdns_tick(node, ifc, now_ms));
		if (d->beacon_enabled && ifc->iface.broadcast_count > 0 &&
		    d->peer_port != 0) {
			if (now_ms >= ifc->beacon_at_ms) {
				uint64_t jitter = FM_BEACON_INTERVAL_MS *
				                  FM_BEACON_JITTER_PERCENT /
				                  100;
				fm__beacon_announce(node, ifc);
				ifc->beacon_at_ms =
				        now_ms + FM_BEACON_INTERVAL_MS -
				        jitter +
				        rand_between(node, 0, 2 * jitter);
			}
			next = min_u64(next, ifc->beacon_at_ms);
		}
	}
	return next;
}
