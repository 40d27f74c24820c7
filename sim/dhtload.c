/* The DHT in the simulator (sim.h): the lookup workload (node-record and
 * service-provider lookups arriving as Poisson processes, measured from
 * the public API's callback and counters), bootstrap through the DHT alone
 * (no session), the routing tables the cores persist for their restarts,
 * and the routing-table health samples.
 *
 * Bootstrap through the DHT alone: fm_node_add_contact always dials a
 * session (a Noise handshake each, ~1 ms of CPU) as well as seeding the
 * DHT. With `[bootstrap] mode = dht`, a node is given its bootstrap
 * addresses through fm_node_dht_bootstrap: the core keeps them among its
 * known addresses (pinned) and challenges each at once, and no session is
 * ever opened. A restart gives back the saved table through
 * fm_node_dht_restore, in the core's own "dht/table" format. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define IN_TABLE 2u
/* [dht] join_refresh: the first lookup this long after the start, the
 * next ones this far apart. */
#define JOIN_REFRESH_AFTER_US 5000000ULL
#define JOIN_REFRESH_GAP_US 250000ULL
/* Tries to draw a random running node before an arrival is given up. */
#define PICK_TRIES 64

static inline uint64_t now_ms(const struct fms_sim *sim)
{
	return sim->now_us / 1000;
}

static uint64_t lookup_start_us(const struct fms_sim *sim)
{
	uint64_t ms = sim->sc.lookup_start_ms;

	if (ms == UINT64_MAX)
		ms = sim->sc.join_spread_ms + sim->sc.target_min_age_ms;
	return ms * 1000;
}

static double kind_rate(const struct fms_sim *sim, int kind)
{
	return kind == FMS_LK_NODE ? sim->sc.lookup_rate
	                           : sim->sc.provider_rate;
}

/* Arrivals so far: lookups issued, refused at the start, or without a
 * node to issue them. */
static uint64_t arrivals(const struct fms_lookup_metrics *lk)
{
	return lk->issued + lk->start_errors + lk->no_issuer;
}

static void schedule_arrival(struct fms_sim *sim, int kind, uint64_t from_us)
{
	double rate = kind_rate(sim, kind);
	uint64_t gap;

	if (rate <= 0)
		return;
	if (sim->sc.lookup_count > 0 &&
	    arrivals(&sim->m.lk[kind]) >= sim->sc.lookup_count)
		return;
	gap = (uint64_t)fms_rng_exp(&sim->rng, 1e6 / rate);
	fms_push(sim, from_us + gap, FMS_EV_LOOKUP, 0, 0, (uint32_t)kind);
}

int fms_dht_setup(struct fms_sim *sim)
{
	int k;

	if (!sim->sc.dht)
		return 0;
	for (k = 0; k < FMS_LK_KINDS; k++) {
		struct fms_lookup_metrics *lk = &sim->m.lk[k];
		if (kind_rate(sim, k) <= 0)
			continue;
		lk->latency.buckets = calloc(FMS_HIST_MS, sizeof(uint32_t));
		lk->latency_all.buckets = calloc(FMS_HIST_MS, sizeof(uint32_t));
		if (lk->latency.buckets == NULL ||
		    lk->latency_all.buckets == NULL)
			return -ENOMEM;
	}
	for (k = 0; k < FMS_LK_KINDS; k++)
		schedule_arrival(sim, k, lookup_start_us(sim));
	return 0;
}

void fms_dht_free(struct fms_sim *sim)
{
	int k;

	free(sim->m.failures);
	sim->m.failures = NULL;
	for (k = 0; k < FMS_LK_KINDS; k++) {
		free(sim->m.lk[k].latency.buckets);
		free(sim->m.lk[k].latency.over);
		free(sim->m.lk[k].latency_all.buckets);
		free(sim->m.lk[k].latency_all.over);
		sim->m.lk[k].latency.buckets = NULL;
		sim->m.lk[k].latency.over = NULL;
		sim->m.lk[k].latency_all.buckets = NULL;
		sim->m.lk[k].latency_all.over = NULL;
	}
}

int fms_dht_lookups_pending(const struct fms_sim *sim)
{
	int k;

	if (sim->m.lookups_in_flight > 0)
		return 1;
	for (k = 0; k < FMS_LK_KINDS; k++)
		if (kind_rate(sim, k) > 0 &&
		    (sim->sc.lookup_count == 0 ||
		     arrivals(&sim->m.lk[k]) < sim->sc.lookup_count))
			return 1;
	return 0;
}

static void maybe_stop(struct fms_sim *sim)
{
	if (sim->sc.stop_when_done && !sim->stopped_early &&
	    sim->lookup_end_us == 0 && !fms_dht_lookups_pending(sim)) {
		sim->lookup_end_us = sim->now_us;
		fms_push(sim, sim->now_us, FMS_EV_STOP, 0, 0, 0);
	}
}

/* A running honest node with a DHT, up for at least target_min_age. */
static int eligible(const struct fms_sim *sim, uint32_t i)
{
	const struct fms_node *nd = &sim->nodes[i];

	return nd->kind == FMS_HONEST && nd->core != NULL &&
	       sim->now_us >=
	               nd->up_since_us + sim->sc.target_min_age_ms * 1000;
}

static uint32_t pick_node(struct fms_sim *sim, uint32_t not, int idle)
{
	int t;

	for (t = 0; t < PICK_TRIES; t++) {
		uint32_t i = (uint32_t)fms_rng_below(&sim->rng, sim->sc.nodes);
		if (i != not &&eligible(sim, i) &&
		    (!idle || !sim->nodes[i].lookup_busy))
			return i;
	}
	return FMS_NET_NOWHERE;
}

static void note_failure(struct fms_sim *sim, const struct fms_lookup *l,
                         int status)
{
	struct fms_lookup_failure *f;

	if (sim->m.failure_count == FMS_FAILURES_MAX)
		return;
	if (sim->m.failure_count == sim->m.failure_cap) {
		size_t cap = sim->m.failure_cap ? sim->m.failure_cap * 2 : 64;
		struct fms_lookup_failure *grown =
		        realloc(sim->m.failures, cap * sizeof(*grown));
		if (grown == NULL)
			fms_fatal_oom("lookup failures");
		sim->m.failures = grown;
		sim->m.failure_cap = cap;
	}
	f = &sim->m.failures[sim->m.failure_count++];
	f->t_ms = now_ms(sim);
	f->start_ms = l->start_us / 1000;
	f->target_up_ms = l->target_up_us / 1000;
	f->issuer = l->issuer;
	f->target = l->target;
	f->status = status;
	f->kind = l->kind;
}

static void lookup_done(void *ctx, const fm_find_result *res)
{
	struct fms_lookup *l = ctx;
	int status = res->status;
	const fm_record *records = res->records;
	size_t count = res->count;
	uint32_t hops = res->hops;
	struct fms_sim *sim = l->sim;
	struct fms_node *nd = &sim->nodes[l->issuer];
	struct fms_lookup_metrics *lk = &sim->m.lk[l->kind];
	uint64_t ms = (sim->now_us - l->start_us) / 1000;
	int ok = 0;

	sim->m.lookups_in_flight--;
	nd->lookup_busy = 0;
	if (status == -ECANCELED) {
		/* the issuer stopped (churn, crash, end of run) */
		lk->cancelled++;
		free(l);
		return;
	}
	lk->done++;
	if (status != 0) {
		lk->failed_status++;
	} else if (l->kind == FMS_LK_NODE) {
		if (count >= 1 &&
		    memcmp(records[0].node_id, sim->nodes[l->target].node_id,
		           FM_NODE_ID_BYTES) == 0)
			ok = 1;
		else
			lk->wrong_record++;
	} else {
		ok = count >= 1;
		lk->providers_sum += count;
	}
	fms_hist_add(&lk->latency_all, ms);
	if (ok) {
		lk->succeeded++;
		fms_hist_add(&lk->latency, ms);
		lk->hops[hops < FMS_HOPS_MAX ? hops : FMS_HOPS_MAX]++;
		lk->hops_sum += hops;
		if (l->kind == FMS_LK_NODE) {
			lk->rtt_sum_ms += fms_rtt_ms(sim, l->issuer, l->target);
			lk->rtt_samples++;
		}
	}
	if (!ok)
		note_failure(sim, l, status);
	if (l->victim) {
		lk->victim_done++;
		lk->victim_succeeded += (uint64_t)ok;
	}
	/* Messages: the requests the core reports for this lookup. */
	lk->msg_samples++;
	lk->msg_sum += res->messages;
	free(l);
	maybe_stop(sim);
}

void fms_dht_lookup_event(struct fms_sim *sim, const struct fms_event *ev)
{
	int kind = (int)ev->c;
	struct fms_lookup_metrics *lk = &sim->m.lk[kind];
	struct fms_lookup *l;
	struct fms_node *nd;
	uint32_t issuer, target = FMS_NET_NOWHERE;
	int victim = 0, rc;

	issuer = pick_node(sim, FMS_NET_NOWHERE, 1);
	if (issuer != FMS_NET_NOWHERE && kind == FMS_LK_NODE) {
		if (sim->sc.sybils > 0 &&
		    sim->sc.sybil_target == FMS_SYBIL_NODE &&
		    sim->victim != issuer &&
		    fms_rng_double(&sim->rng) < sim->sc.victim_share &&
		    eligible(sim, sim->victim)) {
			target = sim->victim;
			victim = 1;
		} else {
			target = pick_node(sim, issuer, 0);
		}
		if (target == FMS_NET_NOWHERE)
			issuer = FMS_NET_NOWHERE;
	}
	if (issuer == FMS_NET_NOWHERE) {
		lk->no_issuer++;
		goto next;
	}
	if (kind == FMS_LK_PROVIDER && sim->sc.sybils > 0 &&
	    sim->sc.sybil_target == FMS_SYBIL_SERVICE)
		victim = 1;
	nd = &sim->nodes[issuer];
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		fms_fatal_oom("lookup");
	l->sim = sim;
	l->issuer = issuer;
	l->target = target;
	l->kind = (uint8_t)kind;
	l->victim = (uint8_t)victim;
	l->start_us = sim->now_us;
	if (target != FMS_NET_NOWHERE)
		l->target_up_us = sim->now_us - sim->nodes[target].up_since_us;
	nd->lookup_busy = 1;
	sim->m.lookups_in_flight++;
	lk->issued++;
	rc = kind == FMS_LK_NODE
	             ? fm_node_find_record_ex(nd->core, now_ms(sim),
	                                      sim->nodes[target].node_id,
	                                      lookup_done, l)
	             : fm_node_find_service_ex(nd->core, now_ms(sim),
	                                       sim->sc.service, lookup_done, l);
	if (rc != 0) {
		note_failure(sim, l, rc);
		lk->issued--;
		lk->start_errors++;
		sim->m.lookups_in_flight--;
		nd->lookup_busy = 0;
		free(l);
	} else {
		fms_sim_kick(sim, (uint32_t)(nd - sim->nodes));
	}
next:
	schedule_arrival(sim, kind, sim->now_us);
	maybe_stop(sim);
}

/* ---- join refresh ------------------------------------------------------ */

static void refresh_done(void *ctx, int status, const fm_record *records,
                         size_t count, uint32_t hops)
{
	(void)ctx;
	(void)status;
	(void)records;
	(void)count;
	(void)hops;
}

/* Kademlia's join (Maymounkov and Mazieres, section 2.3) refreshes every
 * bucket farther than the node's closest neighbour; the core does so
 * after the self-lookup of every join. With `join_refresh`, the driver
 * adds a second refresh through the public API (kept to compare): 5 s
 * after a start, one record lookup of a random ID in each bucket from 0
 * to the deepest non-empty one, 250 ms apart. The lookups are not part of
 * the workload's figures. c is the bucket, UINT32_MAX at the first
 * event. */
void fms_dht_refresh_event(struct fms_sim *sim, const struct fms_event *ev)
{
	struct fms_node *nd = &sim->nodes[ev->a];
	uint8_t id[FM_NODE_ID_BYTES], r[FM_NODE_ID_BYTES];
	uint32_t b = ev->c, depth = 0, i;
	fm_dht_stats st;
	uint8_t mask;

	if (nd->core == NULL || nd->incarnation != ev->b)
		return;
	fm_node_dht_stats(nd->core, &st);
	for (i = 0; i < FM_DHT_BUCKET_COUNT; i++)
		if (st.bucket_fill[i] > 0)
			depth = i;
	if (b == UINT32_MAX)
		b = 0;
	if (b >= depth)
		return;
	fms_rng_bytes(&sim->rng, r, sizeof(r));
	memcpy(id, nd->node_id, sizeof(id));
	mask = (uint8_t)(0x80u >> (b % 8));
	id[b / 8] = (uint8_t)(((id[b / 8] ^ mask) & (uint8_t) ~(mask - 1)) |
	                      (r[b / 8] & (mask - 1)));
	for (i = b / 8 + 1; i < FM_NODE_ID_BYTES; i++)
		id[i] = r[i];
	if (fm_node_find_record(nd->core, now_ms(sim), id, refresh_done,
	                        NULL) == 0)
		sim->m.refresh_lookups++;
	else
		sim->m.refresh_errors++;
	fms_sim_kick(sim, (uint32_t)(nd - sim->nodes));
	fms_push(sim, sim->now_us + JOIN_REFRESH_GAP_US, FMS_EV_REFRESH, ev->a,
	         ev->b, b + 1);
}

/* ---- "dht/table" values ------------------------------------------------ */

struct blob {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct blob *b, const void *src, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		uint8_t *grown;
		while (cap < b->len + n)
			cap *= 2;
		grown = realloc(b->p, cap);
		if (grown == NULL)
			fms_fatal_oom("dht table");
		b->p = grown;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void put_byte(struct blob *b, uint8_t v)
{
	put(b, &v, 1);
}

/* [1, [ ...count contacts ]] */
static void put_header(struct blob *b, uint32_t count)
{
	put_byte(b, 0x92);
	put_byte(b, 0x01);
	if (count < 16) {
		put_byte(b, (uint8_t)(0x90 | count));
	} else {
		put_byte(b, 0xdc);
		put_byte(b, (uint8_t)(count >> 8));
		put_byte(b, (uint8_t)count);
	}
}

static void put_contact(struct blob *b, const uint8_t *id, uint32_t node,
                        unsigned flags)
{
	fm_addr a;

	fms_addr_of(node, FMS_PORT, &a);
	put_byte(b, 0x93);
	put_byte(b, 0xc4);
	if (id != NULL) {
		put_byte(b, FM_NODE_ID_BYTES);
		put(b, id, FM_NODE_ID_BYTES);
	} else {
		put_byte(b, 0);
	}
	put_byte(b, 0xc4);
	put_byte(b, 6);
	put(b, a.ip, 4);
	put_byte(b, (uint8_t)(a.port >> 8));
	put_byte(b, (uint8_t)a.port);
	put_byte(b, (uint8_t)flags); /* positive fixint */
}

/* The node ID the simulator knows for node i, or NULL. */
static const uint8_t *known_id(const struct fms_sim *sim, uint32_t i)
{
	const struct fms_node *nd = &sim->nodes[i];

	return nd->id_known ? nd->node_id : NULL;
}

void fms_dht_node_started(struct fms_sim *sim, struct fms_node *nd, int restart)
{
	const struct fms_dht_saved *sv = &nd->dht_saved;
	struct blob b = {NULL, 0, 0};
	uint32_t i;

	if (!sim->sc.dht || nd->core == NULL)
		return;
	if (restart && sv->raw != NULL) {
		fm_node_dht_restore(nd->core, now_ms(sim), sv->raw,
		                    sv->raw_len);
	} else if (restart && sv->count > 0) {
		put_header(&b, sv->count);
		for (i = 0; i < sv->count; i++) {
			uint32_t c = sv->contacts[i];
			uint32_t node = c & FMS_DHT_SAVED_IDX;
			put_contact(
			        &b,
			        (c & FMS_DHT_SAVED_HAS_ID) ? known_id(sim, node)
			                                   : NULL,
			        node, (c >> FMS_DHT_SAVED_FLAGS_SHIFT) & 3u);
		}
		fm_node_dht_restore(nd->core, now_ms(sim), b.p, b.len);
		b.len = 0;
	}
	if (sim->sc.join_refresh)
		fms_push(sim, sim->now_us + JOIN_REFRESH_AFTER_US,
		         FMS_EV_REFRESH, (uint32_t)(nd - sim->nodes),
		         nd->incarnation, UINT32_MAX);
	if (sim->sc.boot_mode == FMS_BOOT_DHT && nd->boot_count > 0) {
		/* Bootstrap addresses, as an invite gives them: no node ID. */
		fm_addr *addrs = calloc(nd->boot_count, sizeof(*addrs));
		if (addrs == NULL)
			fms_fatal_oom("bootstrap addresses");
		for (i = 0; i < nd->boot_count; i++)
			fms_addr_of(nd->boot[i], FMS_PORT, &addrs[i]);
		fm_node_dht_bootstrap(nd->core, now_ms(sim), addrs,
		                      nd->boot_count);
		free(addrs);
	}
	free(b.p);
}

/* Reads the core's "dht/table" value, the format written by
 * fm__dht_save: shortest-form msgpack, bin8 IDs and addresses. Returns
 * the number of contacts packed, or -1 when some contact is not a
 * simulated node under its known ID (the value is then kept verbatim). */
static int pack_table(const struct fms_sim *sim, const uint8_t *p, size_t len,
                      uint32_t *out, uint32_t max)
{
	size_t at = 0;
	uint32_t n, i;

#define NEED(k)                     \
	do {                        \
		if (at + (k) > len) \
			return -1;  \
	} while (0)
	NEED(3);
	if (p[0] != 0x92 || p[1] != 0x01)
		return -1;
	at = 2;
	if ((p[at] & 0xf0) == 0x90) {
		n = p[at] & 0x0f;
		at++;
	} else if (p[at] == 0xdc) {
		NEED(3);
		n = ((uint32_t)p[at + 1] << 8) | p[at + 2];
		at += 3;
	} else {
		return -1;
	}
	if (n > max)
		return -1;
	for (i = 0; i < n; i++) {
		const uint8_t *id = NULL;
		fm_addr a;
		uint32_t node, flags;
		NEED(3);
		if (p[at] != 0x93 || p[at + 1] != 0xc4)
			return -1;
		if (p[at + 2] == FM_NODE_ID_BYTES) {
			NEED(3 + FM_NODE_ID_BYTES);
			id = p + at + 3;
			at += 3 + FM_NODE_ID_BYTES;
		} else if (p[at + 2] == 0) {
			at += 3;
		} else {
			return -1;
		}
		NEED(2 + 6 + 1);
		if (p[at] != 0xc4 || p[at + 1] != 6)
			return -1;
		memset(&a, 0, sizeof(a));
		a.family = FM_AF_INET;
		memcpy(a.ip, p + at + 2, 4);
		a.port = (uint16_t)((p[at + 6] << 8) | p[at + 7]);
		at += 8;
		if (p[at] > 0x7f)
			return -1;
		flags = p[at++];
		node = fms_node_of_addr(&a, sim->sc.nodes);
		if (node == FMS_NET_NOWHERE || flags > 3)
			return -1;
		if (id != NULL &&
		    (known_id(sim, node) == NULL ||
		     memcmp(id, known_id(sim, node), FM_NODE_ID_BYTES) != 0))
			return -1;
		out[i] = node | (flags << FMS_DHT_SAVED_FLAGS_SHIFT) |
		         (id != NULL ? FMS_DHT_SAVED_HAS_ID : 0);
	}
#undef NEED
	return at == len ? (int)n : -1;
}

int fms_dht_persist(struct fms_node *nd, const uint8_t *val, size_t len)
{
	struct fms_dht_saved *sv = &nd->dht_saved;
	uint32_t tmp[512 + 1];
	int n = pack_table(nd->sim, val, len, tmp, 512);

	free(sv->raw);
	sv->raw = NULL;
	sv->raw_len = 0;
	if (n < 0) {
		sv->raw = malloc(len);
		if (sv->raw == NULL)
			fms_fatal_oom("dht table");
		memcpy(sv->raw, val, len);
		sv->raw_len = (uint32_t)len;
		sv->count = 0;
		return 0;
	}
	if ((uint32_t)n > sv->count || sv->contacts == NULL) {
		uint32_t *grown = realloc(sv->contacts,
		                          (size_t)(n ? n : 1) * sizeof(*grown));
		if (grown == NULL)
			fms_fatal_oom("dht table");
		sv->contacts = grown;
	}
	memcpy(sv->contacts, tmp, (size_t)n * sizeof(*tmp));
	sv->count = (uint32_t)n;
	return 0;
}

/* ---- counters ------------------------------------------------------------ */

static void dht_add(fm_dht_stats *r, const fm_dht_stats *s)
{
	r->lookups += s->lookups;
	r->lookups_succeeded += s->lookups_succeeded;
	r->lookup_hops_sum += s->lookup_hops_sum;
	r->lookup_messages_sum += s->lookup_messages_sum;
	r->bootstraps += s->bootstraps;
	r->datagrams_received += s->datagrams_received;
	r->datagrams_sent += s->datagrams_sent;
	r->datagrams_dropped += s->datagrams_dropped;
	r->rpc_timeouts += s->rpc_timeouts;
}

void fms_dht_node_stopping(struct fms_sim *sim, struct fms_node *nd)
{
	fm_dht_stats st;

	if (nd->core == NULL || !sim->sc.dht)
		return;
	fm_node_dht_stats(nd->core, &st);
	dht_add(&sim->m.dht_retired, &st);
}

void fms_dht_sum(const struct fms_sim *sim, fm_dht_stats *out)
{
	uint32_t i;

	memset(out, 0, sizeof(*out));
	dht_add(out, &sim->m.dht_retired);
	for (i = 0; i < sim->sc.nodes; i++) {
		fm_dht_stats st;
		if (sim->nodes[i].core == NULL)
			continue;
		fm_node_dht_stats(sim->nodes[i].core, &st);
		dht_add(out, &st);
		out->table_size += st.table_size;
		out->table_live += st.table_live;
		out->known_addrs += st.known_addrs;
		out->values_stored += st.values_stored;
	}
}

void fms_dht_sample(struct fms_sim *sim)
{
	struct fms_dht_row *r;
	uint32_t i, j;

	if (sim->dht_row_count == sim->dht_row_cap) {
		size_t cap = sim->dht_row_cap ? sim->dht_row_cap * 2 : 256;
		struct fms_dht_row *grown =
		        realloc(sim->dht_rows, cap * sizeof(*grown));
		if (grown == NULL)
			fms_fatal_oom("samples");
		sim->dht_rows = grown;
		sim->dht_row_cap = cap;
	}
	r = &sim->dht_rows[sim->dht_row_count++];
	memset(r, 0, sizeof(*r));
	r->t_ms = now_ms(sim);
	r->dgrams_sent = sim->m.dht_retired.datagrams_sent;
	for (i = 0; i < sim->sc.nodes; i++) {
		const struct fms_node *nd = &sim->nodes[i];
		fm_dht_stats st;
		if (nd->core == NULL)
			continue;
		fm_node_dht_stats(nd->core, &st);
		r->nodes++;
		r->table_sum += st.table_size;
		r->live_sum += st.table_live;
		r->known_sum += st.known_addrs;
		r->values_sum += st.values_stored;
		r->empty_tables += st.table_size == 0;
		r->dgrams_sent += st.datagrams_sent;
		/* Ground truth, from the table the node saved last (at most
		 * a minute old): which of its entries are really up. */
		for (j = 0; j < nd->dht_saved.count; j++) {
			uint32_t c = nd->dht_saved.contacts[j];
			if (!((c >> FMS_DHT_SAVED_FLAGS_SHIFT) & IN_TABLE))
				continue;
			r->truth_entries++;
			r->truth_up +=
			        sim->nodes[c & FMS_DHT_SAVED_IDX].state ==
			        FMS_NODE_UP;
		}
	}
	r->lookups_done = sim->m.lk[FMS_LK_NODE].done;
	r->lookups_ok = sim->m.lk[FMS_LK_NODE].succeeded;
}
