/* The simulator engine (sim.h). One event loop drives everything: the
 * network model's deliveries, each node's fm_node_tick deadline, and the
 * scenario's script. The cores are the real ones, unmodified; this file is
 * their third driver after the daemon and the unit tests, and like the
 * daemon it calls fm_node_tick after every event it hands a node and
 * schedules one timer at the deadline it returns.
 *
 * Nothing here scans all nodes per event: a node's timer is one heap entry
 * (stale entries are recognised and skipped), stream events find their
 * stream by ID, and only the periodic sample and the partition checks walk
 * the node array. */
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

static void fatal_oom(const char *what)
{
	fprintf(stderr, "fedmesh-sim: out of memory (%s)\n", what);
	abort();
}

static void push(struct fms_sim *sim, uint64_t time_us, uint32_t type,
                 uint32_t a, uint32_t b, uint32_t c)
{
	if (fms_eventq_push(&sim->q, time_us, type, a, b, c) != 0)
		fatal_oom("event queue");
}

void fms_fatal_oom(const char *what)
{
	fatal_oom(what);
}

void fms_push(struct fms_sim *sim, uint64_t time_us, uint32_t type, uint32_t a,
              uint32_t b, uint32_t c)
{
	push(sim, time_us, type, a, b, c);
}

static inline uint64_t now_ms(const struct fms_sim *sim)
{
	return sim->now_us / 1000;
}

static inline uint32_t node_index(const struct fms_sim *sim,
                                  const struct fms_node *nd)
{
	return (uint32_t)(nd - sim->nodes);
}

/* ---- addresses -------------------------------------------------------------
 */

static struct {
	const uint32_t *nodes; /* sorted */
	uint32_t n;
} shared_subnet;

void fms_addr_share_subnet(const uint32_t *nodes, uint32_t n)
{
	shared_subnet.nodes = n > 0 ? nodes : NULL;
	shared_subnet.n = nodes != NULL && n <= FMS_SHARED_SUBNET_MAX ? n : 0;
}

/* Position of node in the shared /24, or -1. */
static int shared_slot(uint32_t node)
{
	uint32_t lo = 0, hi = shared_subnet.n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (shared_subnet.nodes[mid] == node)
			return (int)mid;
		if (shared_subnet.nodes[mid] < node)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

void fms_addr_of(uint32_t node, uint16_t port, fm_addr *out)
{
	uint32_t v = node + 1;
	int k = shared_subnet.n > 0 ? shared_slot(node) : -1;

	memset(out, 0, sizeof(*out));
	if (k >= 0) {
		out->family = FM_AF_INET;
		out->ip[0] = 11;
		out->ip[3] = (uint8_t)(k + 1);
		out->port = port;
		return;
	}
	out->family = FM_AF_INET;
	out->ip[0] = 10;
	out->ip[1] = (uint8_t)(v & 0xff);
	out->ip[2] = (uint8_t)((v >> 8) & 0xff);
	out->ip[3] = (uint8_t)(1 + (v >> 16));
	out->port = port;
}

uint32_t fms_node_of_addr(const fm_addr *addr, uint32_t nodes)
{
	uint32_t v;

	if (addr != NULL && addr->family == FM_AF_INET && addr->ip[0] == 11 &&
	    addr->ip[1] == 0 && addr->ip[2] == 0 && addr->port == FMS_PORT &&
	    addr->ip[3] >= 1 && addr->ip[3] <= shared_subnet.n)
		return shared_subnet.nodes[addr->ip[3] - 1];
	if (addr == NULL || addr->family != FM_AF_INET || addr->ip[0] != 10 ||
	    addr->port != FMS_PORT || addr->ip[3] == 0)
		return FMS_NET_NOWHERE;
	v = (uint32_t)addr->ip[1] | ((uint32_t)addr->ip[2] << 8) |
	    ((uint32_t)(addr->ip[3] - 1) << 16);
	if (v == 0 || v > nodes ||
	    (shared_subnet.n > 0 && shared_slot(v - 1) >= 0))
		return FMS_NET_NOWHERE; /* moved to the shared /24 */
	return v - 1;
}

/* Inbound connections come from an ephemeral port, as over TCP. */
static uint16_t ephemeral_port(uint64_t stream_id)
{
	return (uint16_t)(32768 + (stream_id >> 1) % 28000);
}

/* ---- histograms ------------------------------------------------------------
 */

void fms_hist_add(struct fms_hist *h, uint64_t ms)
{
	if (ms < FMS_HIST_MS) {
		h->buckets[ms]++;
	} else {
		if (h->over_count == h->over_cap) {
			size_t cap = h->over_cap ? h->over_cap * 2 : 64;
			uint64_t *grown =
			        realloc(h->over, cap * sizeof(*grown));
			if (grown == NULL)
				fatal_oom("histogram");
			h->over = grown;
			h->over_cap = cap;
		}
		h->over[h->over_count++] = ms;
	}
	h->count++;
	h->sum_ms += ms;
	if (ms > h->max_ms)
		h->max_ms = ms;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t *fms_hist_sorted_over(const struct fms_hist *h)
{
	uint64_t *v;

	if (h->over_count == 0)
		return NULL;
	v = malloc(h->over_count * sizeof(*v));
	if (v == NULL)
		fatal_oom("histogram");
	memcpy(v, h->over, h->over_count * sizeof(*v));
	qsort(v, h->over_count, sizeof(*v), cmp_u64);
	return v;
}

uint64_t fms_hist_percentile(const struct fms_hist *h, double pct)
{
	uint64_t rank, seen = 0, value, *over;
	uint32_t i;

	if (h->count == 0)
		return 0;
	/* Nearest rank: the smallest value with at least pct % at or below
	 * it. */
	rank = (uint64_t)ceil(pct / 100.0 * (double)h->count);
	if (rank == 0)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (i = 0; i < FMS_HIST_MS; i++) {
		seen += h->buckets[i];
		if (seen >= rank)
			return i;
	}
	over = fms_hist_sorted_over(h);
	value = over[rank - seen - 1];
	free(over);
	return value;
}

/* ---- the core's ops table --------------------------------------------------
 */

static void schedule_tick(struct fms_sim *sim, struct fms_node *nd,
                          uint64_t deadline_ms)
{
	uint64_t at;

	if (deadline_ms == FM_DEADLINE_NONE) {
		nd->tick_us = UINT64_MAX;
		return;
	}
	at = deadline_ms * 1000;
	if (at <= sim->now_us) /* due already: the next millisecond */
		at = (now_ms(sim) + 1) * 1000;
	if (at == nd->tick_us)
		return;
	nd->tick_us = at;
	push(sim, at, FMS_EV_TICK, node_index(sim, nd), nd->incarnation, 0);
}

static void kick(struct fms_sim *sim, struct fms_node *nd)
{
	if (nd->core != NULL)
		schedule_tick(sim, nd, fm_node_tick(nd->core, now_ms(sim)));
}

void fms_sim_kick(struct fms_sim *sim, uint32_t node)
{
	if (node < sim->sc.nodes)
		kick(sim, &sim->nodes[node]);
}

static int io_send_datagram(void *ctx, const fm_addr *to, const uint8_t *buf,
                            size_t len)
{
	struct fms_node *nd = ctx;
	struct fms_sim *sim = nd->sim;

	return fms_net_send_datagram(&sim->net, node_index(sim, nd),
	                             fms_node_of_addr(to, sim->sc.nodes), buf,
	                             len);
}

static int io_stream_open(void *ctx, const fm_addr *to, uint64_t *stream_id)
{
	struct fms_node *nd = ctx;
	struct fms_sim *sim = nd->sim;

	sim->m.dials++;
	return fms_net_stream_open(&sim->net, node_index(sim, nd),
	                           fms_node_of_addr(to, sim->sc.nodes),
	                           stream_id);
}

static int io_stream_send(void *ctx, uint64_t stream_id, const uint8_t *buf,
                          size_t len)
{
	struct fms_node *nd = ctx;

	return fms_net_stream_send(&nd->sim->net, node_index(nd->sim, nd),
	                           stream_id, buf, len);
}

static void io_stream_close(void *ctx, uint64_t stream_id)
{
	struct fms_node *nd = ctx;

	fms_net_stream_close(&nd->sim->net, node_index(nd->sim, nd), stream_id);
}

static void io_random(void *ctx, uint8_t *buf, size_t len)
{
	struct fms_node *nd = ctx;

	fms_rng_bytes(&nd->rng, buf, len);
}

static void io_log(void *ctx, enum fm_log_level level, const char *subsystem,
                   const char *msg)
{
	struct fms_node *nd = ctx;
	struct fms_sim *sim = nd->sim;
	static const char *const names[] = {"error", "warn", "info", "debug"};

	if ((int)level > sim->verbose)
		return;
	fprintf(stderr, "[%12.3f] node %u %s %s: %s\n",
	        (double)sim->now_us / 1e6, node_index(sim, nd),
	        (unsigned)level < 4 ? names[level] : "?", subsystem, msg);
}

static int io_persist(void *ctx, const char *key, const uint8_t *val,
                      size_t len)
{
	if (strcmp(key, "dht/table") == 0)
		return fms_dht_persist(ctx, val, len);
	return 0; /* nothing else is persisted by the core today */
}

static void io_peer_changed(void *ctx, const fm_peer_info *p, int forgotten)
{
	struct fms_node *nd = ctx;
	struct fms_sim *sim = nd->sim;
	struct fms_saved_peer *s;
	uint32_t i;
	uint8_t j;

	if (!sim->sc.churn && !sim->sc.crash)
		return; /* nobody restarts: nothing to persist */
	for (i = 0; i < nd->saved_count; i++)
		if (memcmp(nd->saved[i].node_id, p->node_id,
		           FM_NODE_ID_BYTES) == 0)
			break;
	if (forgotten) {
		if (i < nd->saved_count)
			nd->saved[i] = nd->saved[--nd->saved_count];
		return;
	}
	if (i == nd->saved_count) {
		if (nd->saved_count == nd->saved_cap) {
			uint32_t cap = nd->saved_cap ? nd->saved_cap * 2 : 4;
			struct fms_saved_peer *grown =
			        realloc(nd->saved, cap * sizeof(*grown));
			if (grown == NULL)
				fatal_oom("saved peers");
			nd->saved = grown;
			nd->saved_cap = cap;
		}
		nd->saved_count++;
		if (nd->saved_count > sim->m.peers_saved_max)
			sim->m.peers_saved_max = nd->saved_count;
	}
	s = &nd->saved[i];
	memset(s, 0, sizeof(*s));
	memcpy(s->node_id, p->node_id, FM_NODE_ID_BYTES);
	for (j = 0; j < p->addr_count && j < FM_PEER_ADDRS_MAX; j++) {
		const fm_addr *a = &p->addrs[j].addr;
		if (a->family != FM_AF_INET)
			continue;
		s->addrs[s->addr_count].ip = ((uint32_t)a->ip[0] << 24) |
		                             ((uint32_t)a->ip[1] << 16) |
		                             ((uint32_t)a->ip[2] << 8) |
		                             a->ip[3];
		s->addrs[s->addr_count].port = a->port;
		s->addrs[s->addr_count].source = p->addrs[j].source;
		s->addr_count++;
	}
	s->source = p->source;
	s->rtt_ms = (float)p->rtt_ms;
	s->last_seen_ms = p->last_seen_ms;
	s->reputation = p->reputation;
	s->ban_until_ms = p->reputation.ban_remaining_ms > 0
	                          ? now_ms(sim) + p->reputation.ban_remaining_ms
	                          : 0;
}

static void restore_peers(struct fms_sim *sim, struct fms_node *nd)
{
	fm_peer_info info;
	uint32_t i;
	uint8_t j;

	for (i = 0; i < nd->saved_count; i++) {
		const struct fms_saved_peer *s = &nd->saved[i];
		memset(&info, 0, sizeof(info));
		memcpy(info.node_id, s->node_id, FM_NODE_ID_BYTES);
		for (j = 0; j < s->addr_count; j++) {
			fm_addr *a = &info.addrs[j].addr;
			a->family = FM_AF_INET;
			a->ip[0] = (uint8_t)(s->addrs[j].ip >> 24);
			a->ip[1] = (uint8_t)(s->addrs[j].ip >> 16);
			a->ip[2] = (uint8_t)(s->addrs[j].ip >> 8);
			a->ip[3] = (uint8_t)s->addrs[j].ip;
			a->port = s->addrs[j].port;
			info.addrs[j].source = s->addrs[j].source;
		}
		info.addr_count = s->addr_count;
		info.source = s->source;
		info.rtt_ms = s->rtt_ms;
		info.last_seen_ms = s->last_seen_ms;
		info.reputation = s->reputation;
		info.reputation.ban_remaining_ms =
		        s->ban_until_ms > now_ms(sim)
		                ? s->ban_until_ms - now_ms(sim)
		                : 0;
		info.score = fm_reputation_score(&info.reputation);
		if (fm_node_restore_peer(nd->core, now_ms(sim), &info) == 0)
			sim->m.peers_restored++;
		else
			sim->m.restore_errors++;
	}
}

/* ---- node lifecycle --------------------------------------------------------
 */

static uint64_t draw_session_ms(struct fms_sim *sim)
{
	double p1, p2, v;

	fms_scenario_session_params(&sim->sc, &p1, &p2);
	switch (sim->sc.session_dist) {
	case FMS_DIST_WEIBULL:
		v = fms_rng_weibull(&sim->rng, p1, p2);
		break;
	case FMS_DIST_EXPONENTIAL:
		v = fms_rng_exp(&sim->rng, p1);
		break;
	default:
		v = fms_rng_lognormal(&sim->rng, p1, p2);
		break;
	}
	if (!(v >= 1000.0))
		v = 1000.0; /* at least a second online */
	if (v > 1e15)
		v = 1e15;
	return (uint64_t)v;
}

/* One pending lifecycle event per running node: its churn departure or
 * its next crash, whichever comes first. */
static void schedule_life(struct fms_sim *sim, struct fms_node *nd)
{
	uint64_t leave = UINT64_MAX, crash = UINT64_MAX;

	if (sim->sc.churn)
		leave = draw_session_ms(sim);
	if (sim->sc.crash)
		crash = (uint64_t)fms_rng_exp(&sim->rng,
		                              (double)sim->sc.mtbf_ms) +
		        1;
	if (leave == UINT64_MAX && crash == UINT64_MAX)
		return;
	if (leave <= crash)
		push(sim, sim->now_us + leave * 1000, FMS_EV_LIFE,
		     node_index(sim, nd), nd->incarnation, FMS_LIFE_LEAVE);
	else
		push(sim, sim->now_us + crash * 1000, FMS_EV_LIFE,
		     node_index(sim, nd), nd->incarnation, FMS_LIFE_CRASH);
}

int fms_node_identity(const struct fms_sim *sim, uint32_t i, fm_identity *out)
{
	struct fms_rng id_rng;
	uint8_t seed[FM_SEED_BYTES];
	int rc;

	/* The same identity at every start: derived from the seed. */
	fms_rng_seed(&id_rng, sim->sc.seed,
	             ((uint64_t)FMS_RNG_STREAM_IDENTITY << 32) | i);
	fms_rng_bytes(&id_rng, seed, sizeof(seed));
	rc = fm_identity_from_seed(seed, out);
	sodium_memzero(seed, sizeof(seed));
	return rc;
}

double fms_rtt_ms(const struct fms_sim *sim, uint32_t a, uint32_t b)
{
	return sim->sc.net.rtt_ms[sim->nodes[a].region][sim->nodes[b].region];
}

static int node_start(struct fms_sim *sim, struct fms_node *nd, int restart)
{
	uint32_t idx = node_index(sim, nd);
	fm_node_config cfg;
	fm_io io;
	uint8_t i;
	int rc;

	fms_net_ep_up(&sim->net, idx);
	nd->state = FMS_NODE_UP;
	nd->up_since_us = sim->now_us;
	nd->reconnected = 0;
	nd->tick_us = UINT64_MAX;
	if (nd->kind == FMS_GARBAGE) {
		push(sim,
		     sim->now_us + 1000 +
		             (uint64_t)fms_rng_exp(
		                     &nd->rng,
		                     (double)sim->sc.garbage_interval_ms *
		                             1000),
		     FMS_EV_GARBAGE, idx, 0, 0);
		return 0;
	}
	if (nd->kind == FMS_SYBIL || nd->kind == FMS_LIAR) {
		fms_adv_start(sim, nd);
		return 0;
	}
	memset(&cfg, 0, sizeof(cfg));
	rc = fms_node_identity(sim, idx, &cfg.identity);
	if (rc != 0)
		return rc;
	memcpy(nd->node_id, cfg.identity.node_id, FM_NODE_ID_BYTES);
	nd->id_known = 1;
	cfg.dht_disabled = !sim->sc.dht;
	cfg.dht_subnet_max = (uint8_t)sim->sc.subnet_max;
	if (nd->service) { /* [services]: offered, for provider lookups */
		fm_service *s = &cfg.services[cfg.service_count++];
		snprintf(s->name, sizeof(s->name), "%s", sim->sc.service);
		s->slots = 1;
		cfg.capacity += 1;
	}
	memcpy(cfg.federation_key, sim->federation_key,
	       sizeof(cfg.federation_key));
	cfg.record_seq = now_ms(sim) + 1;
	fms_addr_of(idx, FMS_PORT, &cfg.advertise[0]);
	cfg.advertise_count = 1;
	cfg.peer_port = FMS_PORT;
	snprintf(cfg.hostname, sizeof(cfg.hostname), "n%u", idx);
	memset(&io, 0, sizeof(io));
	io.ctx = nd;
	io.send_datagram = io_send_datagram;
	io.stream_open = io_stream_open;
	io.stream_send = io_stream_send;
	io.stream_close = io_stream_close;
	io.random_bytes = io_random;
	io.peer_changed = io_peer_changed;
	if (sim->sc.dht && (sim->sc.churn || sim->sc.crash))
		io.persist = io_persist; /* the table, for restarts */
	if (sim->sc.lan) {
		cfg.mdns_enabled = 1;
		io.send_mdns = fms_lan_send_mdns;
	}
	if (sim->verbose >= 0)
		io.log = io_log;
	fms_jobs_node_config(sim, idx, &cfg, &io); /* services, job ops */
	rc = fm_node_new(&cfg, &io, now_ms(sim), &nd->core);
	fm_identity_wipe(&cfg.identity);
	if (rc != 0)
		return rc;
	nd->hs_seen = 0;
	if (restart)
		restore_peers(sim, nd);
	/* Like the daemon: the saved DHT table, then the bootstrap addresses
	 * again at every start. */
	fms_dht_node_started(sim, nd, restart);
	if (sim->sc.boot_mode == FMS_BOOT_SESSIONS)
		for (i = 0; i < nd->boot_count; i++) {
			fm_addr a;
			fms_addr_of(nd->boot[i], FMS_PORT, &a);
			fm_node_add_contact(nd->core, now_ms(sim), &a,
			                    FM_SRC_BOOTSTRAP);
		}
	if (sim->sc.lan)
		fms_lan_node_started(sim, nd);
	kick(sim, nd);
	schedule_life(sim, nd);
	return 0;
}

static void stats_add(fm_node_stats *r, const fm_node_stats *st)
{
	int i;

	r->datagrams_received += st->datagrams_received;
	for (i = 0; i < FM_DROP_REASON_COUNT; i++)
		r->datagrams_dropped[i] += st->datagrams_dropped[i];
	r->stream_bytes_received += st->stream_bytes_received;
	r->streams_opened += st->streams_opened;
	r->streams_closed += st->streams_closed;
	r->ticks += st->ticks;
	r->handshakes_completed += st->handshakes_completed;
	for (i = 0; i < FM_SESS_ERROR_COUNT; i++)
		r->session_errors[i] += st->session_errors[i];
	r->frames_sent += st->frames_sent;
	r->frames_received += st->frames_received;
	r->rekeys += st->rekeys;
	r->records_accepted += st->records_accepted;
	r->peers_banned += st->peers_banned;
}

/* The process stops without a goodbye: a crash, or the host going away. */
static void node_stop(struct fms_sim *sim, struct fms_node *nd,
                      enum fms_ep_state how)
{
	if (nd->core != NULL) {
		fm_node_stats st;
		fm_node_get_stats(nd->core, &st);
		stats_add(&sim->m.retired, &st);
		fms_dht_node_stopping(sim, nd);
		fm_node_free(nd->core); /* lookups in flight: -ECANCELED */
		nd->core = NULL;
		nd->lookup_busy = 0;
	}
	fms_jobs_node_stopped(sim, node_index(sim, nd)); /* its job runs die */
	fms_net_ep_down(&sim->net, node_index(sim, nd), how);
	nd->state = how == FMS_EP_CRASHED ? FMS_NODE_CRASHED : FMS_NODE_OFFLINE;
	nd->incarnation++;
	nd->tick_us = UINT64_MAX;
}

/* ---- garbage senders -------------------------------------------------------
 */

static void garbage_act(struct fms_sim *sim, struct fms_node *nd)
{
	uint32_t idx = node_index(sim, nd), target = FMS_NET_NOWHERE;
	int tries;

	for (tries = 0; tries < 8; tries++) {
		uint32_t t = (uint32_t)fms_rng_below(&nd->rng, sim->sc.nodes);
		if (sim->nodes[t].kind == FMS_HONEST &&
		    sim->nodes[t].state == FMS_NODE_UP) {
			target = t;
			break;
		}
	}
	if (target != FMS_NET_NOWHERE) {
		if (fms_rng_double(&nd->rng) < sim->sc.garbage_datagram_share) {
			size_t len =
			        1 +
			        fms_rng_below(
			                &nd->rng,
			                sim->sc.garbage_max_bytes <
			                                FMS_NET_DGRAM_MAX_BYTES
			                        ? sim->sc.garbage_max_bytes
			                        : FMS_NET_DGRAM_MAX_BYTES);
			fms_rng_bytes(&nd->rng, sim->junk, len);
			fms_net_send_datagram(&sim->net, idx, target, sim->junk,
			                      len);
			sim->m.garbage_dgrams++;
		} else {
			uint64_t id;
			fms_net_stream_open(&sim->net, idx, target, &id);
			sim->m.garbage_streams++;
		}
	}
	push(sim,
	     sim->now_us + 1000 +
	             (uint64_t)fms_rng_exp(&nd->rng,
	                                   (double)sim->sc.garbage_interval_ms *
	                                           1000),
	     FMS_EV_GARBAGE, idx, 0, 0);
}

/* A garbage sender's stream is open: spray, and hang up if we dialled. */
static void garbage_opened(struct fms_sim *sim, struct fms_node *nd,
                           uint64_t id, int incoming)
{
	uint32_t idx = node_index(sim, nd);
	size_t len = 1 + fms_rng_below(&nd->rng, sim->sc.garbage_max_bytes);

	fms_rng_bytes(&nd->rng, sim->junk, len);
	if (fms_net_stream_send(&sim->net, idx, id, sim->junk, len) == 0)
		sim->m.garbage_bytes += len;
	if (!incoming)
		fms_net_stream_close(&sim->net, idx, id);
}

/* ---- network callbacks -----------------------------------------------------
 */

static void net_datagram(void *ctx, uint32_t to, uint32_t from,
                         const uint8_t *buf, size_t len)
{
	struct fms_sim *sim = ctx;
	struct fms_node *nd = &sim->nodes[to];
	fm_addr a;

	if (nd->adv != NULL) {
		fms_adv_datagram(sim, nd, from, buf, len);
		return;
	}
	if (nd->core == NULL)
		return;
	fms_addr_of(from, FMS_PORT, &a);
	fm_node_recv_datagram(nd->core, now_ms(sim), &a, buf, len);
	kick(sim, nd);
}

static void net_stream_opened(void *ctx, uint32_t ep, uint64_t id,
                              uint32_t remote, int incoming)
{
	struct fms_sim *sim = ctx;
	struct fms_node *nd = &sim->nodes[ep];
	fm_addr a;

	if (nd->kind == FMS_GARBAGE) {
		garbage_opened(sim, nd, id, incoming);
		return;
	}
	if (nd->core == NULL) {
		fms_net_stream_close(&sim->net, ep, id);
		return;
	}
	fms_addr_of(remote, incoming ? ephemeral_port(id) : FMS_PORT, &a);
	fm_node_stream_opened(nd->core, now_ms(sim), id, &a, incoming);
	kick(sim, nd);
}

/* A handshake completes inside stream_data; the dialler's side gives the
 * latency from its connect to its session. */
static void note_handshakes(struct fms_sim *sim, struct fms_node *nd,
                            uint32_t ep, uint64_t id)
{
	fm_node_stats st;
	uint64_t opened_us;
	uint32_t remote;
	int incoming;
	uint8_t i;

	fm_node_get_stats(nd->core, &st);
	if (st.handshakes_completed == nd->hs_seen)
		return;
	nd->hs_seen = st.handshakes_completed;
	if (!nd->reconnected && nd->incarnation > 0)
		fms_hist_add(&sim->m.reconnect,
		             (sim->now_us - nd->up_since_us) / 1000);
	nd->reconnected = 1;
	if (fms_net_stream_info(&sim->net, ep, id, &remote, &incoming,
	                        &opened_us) != 0 ||
	    incoming) {
		sim->m.hs_acceptor++;
		return;
	}
	sim->m.hs_initiator++;
	fms_hist_add(&sim->m.hs, (sim->now_us - opened_us) / 1000);
	for (i = 0; i < nd->boot_count; i++)
		if (nd->boot[i] == remote && !(nd->boot_ok & (1u << i))) {
			nd->boot_ok |= (uint8_t)(1u << i);
			sim->m.bootstrap_established++;
		}
}

static void net_stream_data(void *ctx, uint32_t ep, uint64_t id,
                            const uint8_t *buf, size_t len)
{
	struct fms_sim *sim = ctx;
	struct fms_node *nd = &sim->nodes[ep];

	if (nd->core == NULL)
		return; /* garbage senders do not listen */
	fm_node_stream_data(nd->core, now_ms(sim), id, buf, len);
	note_handshakes(sim, nd, ep, id);
	kick(sim, nd);
}

static void net_stream_closed(void *ctx, uint32_t ep, uint64_t id, int error)
{
	struct fms_sim *sim = ctx;
	struct fms_node *nd = &sim->nodes[ep];

	if (nd->core == NULL)
		return;
	fm_node_stream_closed(nd->core, now_ms(sim), id, error);
	kick(sim, nd);
}

/* ---- measurements ----------------------------------------------------------
 */

uint64_t fms_sim_peer_links(const struct fms_sim *sim, uint32_t *up,
                            uint32_t *min, uint32_t *max)
{
	uint64_t links = 0;
	uint32_t i, n = 0, lo = UINT32_MAX, hi = 0;

	for (i = 0; i < sim->sc.nodes; i++) {
		const struct fms_node *nd = &sim->nodes[i];
		fm_node_status st;
		if (nd->core == NULL)
			continue;
		fm_node_get_status(nd->core, &st);
		links += st.peers_connected;
		n++;
		if (st.peers_connected < lo)
			lo = st.peers_connected;
		if (st.peers_connected > hi)
			hi = st.peers_connected;
	}
	if (up != NULL)
		*up = n;
	if (min != NULL)
		*min = n > 0 ? lo : 0;
	if (max != NULL)
		*max = hi;
	return links;
}

void fms_sim_stats(const struct fms_sim *sim, fm_node_stats *out)
{
	uint32_t i;

	*out = sim->m.retired;
	for (i = 0; i < sim->sc.nodes; i++) {
		fm_node_stats st;
		if (sim->nodes[i].core == NULL)
			continue;
		fm_node_get_stats(sim->nodes[i].core, &st);
		stats_add(out, &st);
	}
}

static void take_sample(struct fms_sim *sim)
{
	struct fms_row *r;
	fm_node_stats st;
	uint32_t up;
	int i;

	if (sim->row_count == sim->row_cap) {
		size_t cap = sim->row_cap ? sim->row_cap * 2 : 256;
		struct fms_row *grown =
		        realloc(sim->rows, cap * sizeof(*grown));
		if (grown == NULL)
			fatal_oom("samples");
		sim->rows = grown;
		sim->row_cap = cap;
	}
	r = &sim->rows[sim->row_count++];
	memset(r, 0, sizeof(*r));
	r->t_ms = now_ms(sim);
	r->peer_links = fms_sim_peer_links(sim, &up, NULL, NULL);
	r->nodes_up = up;
	r->handshakes = sim->m.hs_initiator;
	r->dials = sim->m.dials;
	r->events = sim->events;
	fms_sim_stats(sim, &st);
	for (i = 0; i < FM_DROP_REASON_COUNT; i++)
		r->drops += st.datagrams_dropped[i];
	for (i = 0; i < FM_SESS_ERROR_COUNT; i++)
		r->session_errors += st.session_errors[i];
	r->streams_live = fms_net_streams_live(&sim->net);
	sim->m.online_samples++;
	sim->m.online_sum += up;
	if (sim->sc.dht)
		fms_dht_sample(sim);
}

/* ---- partitions ------------------------------------------------------------
 */

/* k distinct indices from honest[0..n) to the front, at random. */
static void partial_shuffle(struct fms_rng *rng, uint32_t *a, uint32_t n,
                            uint32_t k)
{
	uint32_t i;

	for (i = 0; i < k && i < n; i++) {
		uint32_t j = i + (uint32_t)fms_rng_below(rng, n - i);
		uint32_t t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

static void do_split(struct fms_sim *sim)
{
	uint64_t cut_before = sim->net.stats.streams_cut;
	uint32_t i, n = sim->sc.nodes, k;
	uint32_t *idx;

	sim->m.sessions_before = fms_sim_peer_links(sim, NULL, NULL, NULL) / 2;
	sim->m.sessions_min = sim->m.sessions_before;
	switch (sim->sc.split_mode) {
	case FMS_SPLIT_REGIONS:
		for (i = 0; i < n; i++)
			if (sim->sc.side_a[sim->nodes[i].region]) {
				fms_net_set_group(&sim->net, i, 1);
				sim->m.side_a_nodes++;
			}
		break;
	case FMS_SPLIT_ISOLATE:
	case FMS_SPLIT_HALVES:
	default:
		idx = malloc((size_t)n * sizeof(*idx));
		if (idx == NULL)
			fatal_oom("partition");
		for (i = 0; i < n; i++)
			idx[i] = i;
		k = sim->sc.split_mode == FMS_SPLIT_HALVES ? n / 2
		                                           : sim->sc.isolate;
		if (k > n)
			k = n;
		partial_shuffle(&sim->rng, idx, n, k);
		for (i = 0; i < k; i++)
			fms_net_set_group(&sim->net, idx[i],
			                  sim->sc.split_mode == FMS_SPLIT_HALVES
			                          ? 1
			                          : 1 + i);
		sim->m.side_a_nodes = k;
		free(idx);
		break;
	}
	fms_net_partition_apply(&sim->net);
	sim->m.streams_cut = sim->net.stats.streams_cut - cut_before;
	sim->m.split_done = 1;
}

static void do_heal(struct fms_sim *sim)
{
	sim->m.sessions_at_heal = fms_sim_peer_links(sim, NULL, NULL, NULL) / 2;
	if (sim->m.sessions_at_heal < sim->m.sessions_min)
		sim->m.sessions_min = sim->m.sessions_at_heal;
	fms_net_heal(&sim->net);
	sim->m.heal_done = 1;
	push(sim, sim->now_us + sim->sc.check_ms * 1000, FMS_EV_PCHECK, 0, 0,
	     0);
}

static void partition_check(struct fms_sim *sim)
{
	uint64_t s = fms_sim_peer_links(sim, NULL, NULL, NULL) / 2;
	uint64_t since = sim->now_us - sim->sc.heal_at_ms * 1000;
	uint64_t before = sim->m.sessions_before;

	sim->m.sessions_last_check = s;
	if (sim->m.t90_us == 0 && s * 10 >= before * 9)
		sim->m.t90_us = since ? since : 1;
	if (sim->m.t99_us == 0 && s * 100 >= before * 99)
		sim->m.t99_us = since ? since : 1;
	if (sim->m.t100_us == 0 && s >= before)
		sim->m.t100_us = since ? since : 1;
	if (sim->m.t100_us == 0)
		push(sim, sim->now_us + sim->sc.check_ms * 1000, FMS_EV_PCHECK,
		     0, 0, 0);
}

/* ---- setup -----------------------------------------------------------------
 */

static uint8_t pick_region(struct fms_sim *sim)
{
	double total = 0, x;
	uint32_t r;

	for (r = 0; r < sim->sc.net.region_count; r++)
		total += sim->sc.region_weight[r];
	x = fms_rng_double(&sim->rng) * total;
	for (r = 0; r < sim->sc.net.region_count; r++) {
		if (x < sim->sc.region_weight[r])
			return (uint8_t)r;
		x -= sim->sc.region_weight[r];
	}
	/* rounding: the last region with a weight */
	for (r = sim->sc.net.region_count; r-- > 0;)
		if (sim->sc.region_weight[r] > 0)
			return (uint8_t)r;
	return 0;
}

/* k nodes of kind `kind` among the honest ones of 1..n-1, at random. */
static void pick_kind(struct fms_sim *sim, uint32_t *scratch, uint32_t k,
                      uint8_t kind)
{
	uint32_t i, m = 0, n = sim->sc.nodes;

	for (i = 1; i < n; i++)
		if (sim->nodes[i].kind == FMS_HONEST)
			scratch[m++] = i;
	if (k > m)
		k = m;
	partial_shuffle(&sim->rng, scratch, m, k);
	for (i = 0; i < k; i++)
		sim->nodes[scratch[i]].kind = kind;
}

static int setup(struct fms_sim *sim)
{
	uint32_t n = sim->sc.nodes, i, j, honest_before = 0, k;
	uint32_t *earlier;
	struct fms_net_ops ops;
	int rc;

	fms_rng_seed(&sim->rng, sim->sc.seed, FMS_RNG_STREAM_SCENARIO);
	fms_rng_bytes(&sim->rng, sim->federation_key,
	              sizeof(sim->federation_key));
	memset(&ops, 0, sizeof(ops));
	ops.ctx = sim;
	ops.datagram = net_datagram;
	ops.stream_opened = net_stream_opened;
	ops.stream_data = net_stream_data;
	ops.stream_closed = net_stream_closed;
	if (fms_eventq_init(&sim->q, (size_t)n * 8) != 0 ||
	    fms_net_init(&sim->net, &sim->sc.net, &sim->q, &ops, sim->sc.seed,
	                 n) != 0)
		return -ENOMEM;
	sim->nodes = calloc(n, sizeof(*sim->nodes));
	sim->m.hs.buckets = calloc(FMS_HIST_MS, sizeof(uint32_t));
	sim->m.reconnect.buckets = calloc(FMS_HIST_MS, sizeof(uint32_t));
	sim->junk = malloc(FMS_GARBAGE_BYTES_MAX);
	earlier = malloc((size_t)n * sizeof(*earlier));
	if (sim->nodes == NULL || sim->m.hs.buckets == NULL ||
	    sim->m.reconnect.buckets == NULL || sim->junk == NULL ||
	    earlier == NULL) {
		free(earlier);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		struct fms_node *nd = &sim->nodes[i];
		nd->sim = sim;
		nd->tick_us = UINT64_MAX;
		fms_rng_seed(&nd->rng, sim->sc.seed, FMS_RNG_STREAM_NODE + i);
		nd->region = pick_region(sim);
		fms_net_set_region(&sim->net, i, nd->region);
	}
	/* Garbage senders: an exact share, never node 0 (the first
	 * bootstrap target). */
	k = (uint32_t)floor(sim->sc.garbage_fraction * n + 0.5);
	if (k > 0 && n > 1)
		pick_kind(sim, earlier, k, FMS_GARBAGE);
	/* Sybils and liars, likewise; drawn only when there are some, so
	 * that scenarios without them replay as before. */
	if (sim->sc.sybils > 0 && n > 1)
		pick_kind(sim, earlier, sim->sc.sybils, FMS_SYBIL);
	if (sim->sc.liars > 0 && n > 1)
		pick_kind(sim, earlier, sim->sc.liars, FMS_LIAR);
	/* Bootstrap: each node knows 1..3 random earlier honest nodes, or
	 * with `fixed`, 1..3 of the first `fixed` honest nodes. Adversaries
	 * are given contacts too, but are nobody's. */
	for (i = 0; i < n; i++) {
		struct fms_node *nd = &sim->nodes[i];
		uint32_t want, pool = honest_before;
		if (nd->kind == FMS_GARBAGE) {
			sim->garbage++;
			continue;
		}
		if (nd->kind == FMS_HONEST)
			sim->honest++;
		if (sim->sc.boot_fixed > 0 && pool > sim->sc.boot_fixed)
			pool = sim->sc.boot_fixed;
		want = sim->sc.contacts_min +
		       (uint32_t)fms_rng_below(
		               &sim->rng,
		               sim->sc.contacts_max - sim->sc.contacts_min + 1);
		if (want > pool)
			want = pool;
		partial_shuffle(&sim->rng, earlier, pool, want);
		for (j = 0; j < want; j++)
			nd->boot[j] = earlier[j];
		nd->boot_count = (uint8_t)want;
		if (nd->kind != FMS_HONEST)
			continue;
		sim->m.bootstrap_pairs += want;
		earlier[honest_before++] = i;
	}
	free(earlier);
	/* Service providers: an exact share of the honest nodes. */
	if (sim->sc.service_fraction > 0) {
		uint32_t *h = malloc((size_t)n * sizeof(*h)), m = 0;
		if (h == NULL)
			return -ENOMEM;
		for (i = 0; i < n; i++)
			if (sim->nodes[i].kind == FMS_HONEST)
				h[m++] = i;
		k = (uint32_t)floor(sim->sc.service_fraction * m + 0.5);
		if (k == 0)
			k = 1;
		partial_shuffle(&sim->rng, h, m, k);
		for (i = 0; i < k && i < m; i++)
			sim->nodes[h[i]].service = 1;
		sim->m.providers = k < m ? k : m;
		free(h);
	}
	rc = fms_dht_setup(sim);
	if (rc == 0)
		rc = fms_adv_setup(sim);
	if (rc == 0 && sim->sc.lan)
		rc = fms_lan_setup(sim);
	if (rc != 0)
		return rc;
	/* The script. Nodes join in index order over join_spread. */
	for (i = 0; i < n; i++)
		push(sim, n > 1 ? sim->sc.join_spread_ms * 1000 * i / n : 0,
		     FMS_EV_JOIN, i, 0, 0);
	push(sim, 0, FMS_EV_SAMPLE, 0, 0, 0);
	if (sim->sc.partition) {
		push(sim, sim->sc.split_at_ms * 1000, FMS_EV_SPLIT, 0, 0, 0);
		if (sim->sc.heal_at_ms > 0)
			push(sim, sim->sc.heal_at_ms * 1000, FMS_EV_HEAL, 0, 0,
			     0);
	}
	sim->end_us = sim->sc.duration_ms * 1000;
	return fms_jobs_setup(sim); /* a no-op without [jobs] */
}

int fms_sim_new(const struct fms_scenario *sc, struct fms_sim **out)
{
	struct fms_sim *sim;
	int rc;

	*out = NULL;
	if (sodium_init() < 0)
		return -EIO;
	sim = calloc(1, sizeof(*sim));
	if (sim == NULL)
		return -ENOMEM;
	sim->sc = *sc;
	sim->verbose = -1;
	fms_sigcache_enable(sim, sc->verify_cache);
	fms_crypto_model_enable(sim, sc->crypto_modeled);
	rc = setup(sim);
	if (rc != 0) {
		fms_sim_free(sim);
		return rc;
	}
	*out = sim;
	return 0;
}

void fms_sim_free(struct fms_sim *sim)
{
	uint32_t i;

	if (sim == NULL)
		return;
	if (sim->nodes != NULL)
		for (i = 0; i < sim->sc.nodes; i++) {
			if (sim->nodes[i].core != NULL)
				fms_dht_node_stopping(sim, &sim->nodes[i]);
			fm_node_free(sim->nodes[i].core);
			sim->nodes[i].core = NULL;
			free(sim->nodes[i].saved);
			free(sim->nodes[i].dht_saved.contacts);
			free(sim->nodes[i].dht_saved.raw);
		}
	fms_dht_free(sim);
	fms_adv_free(sim);
	fms_lan_free(sim);
	fms_sigcache_enable(sim, 0);
	fms_crypto_model_enable(sim, 0);
	free(sim->nodes);
	fms_net_free(&sim->net);
	fms_eventq_free(&sim->q);
	free(sim->m.hs.buckets);
	free(sim->m.hs.over);
	free(sim->m.reconnect.buckets);
	free(sim->m.reconnect.over);
	free(sim->junk);
	free(sim->rows);
	free(sim->dht_rows);
	fms_jobs_free(sim);
	free(sim);
}

/* ---- the loop --------------------------------------------------------------
 */

static double wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dispatch(struct fms_sim *sim, const struct fms_event *ev)
{
	struct fms_node *nd = ev->a < sim->sc.nodes ? &sim->nodes[ev->a] : NULL;
	int rc;

	switch (ev->type) {
	case FMS_EV_JOIN:
		if (nd == NULL || nd->state != FMS_NODE_UNBORN)
			break;
		sim->m.joins++;
		return node_start(sim, nd, 0);
	case FMS_EV_TICK:
		if (nd == NULL || nd->core == NULL ||
		    nd->incarnation != ev->b || nd->tick_us != ev->time_us)
			break; /* stale: the deadline moved */
		nd->tick_us = UINT64_MAX;
		kick(sim, nd);
		break;
	case FMS_EV_LIFE:
		if (nd == NULL || nd->state != FMS_NODE_UP ||
		    nd->incarnation != ev->b)
			break;
		if (ev->c == FMS_LIFE_LEAVE) {
			sim->m.leaves++;
			/* An orderly exit says CLOSE on every session before
			 * the host goes; the rest just vanish. */
			if (sim->sc.graceful > 0 &&
			    fms_rng_double(&sim->rng) < sim->sc.graceful) {
				sim->m.leaves_graceful++;
				fm_node_shutdown(nd->core, now_ms(sim));
			}
			node_stop(sim, nd, FMS_EP_OFFLINE);
			push(sim,
			     sim->now_us +
			             1000 * (1 +
			                     (uint64_t)fms_rng_exp(
			                             &sim->rng,
			                             (double)sim->sc
			                                     .offline_mean_ms)),
			     FMS_EV_RETURN, ev->a, nd->incarnation, 0);
		} else {
			uint64_t span = sim->sc.restart_max_ms -
			                sim->sc.restart_min_ms + 1;
			sim->m.crashes++;
			node_stop(sim, nd, FMS_EP_CRASHED);
			push(sim,
			     sim->now_us +
			             1000 * (sim->sc.restart_min_ms +
			                     fms_rng_below(&sim->rng, span)),
			     FMS_EV_RETURN, ev->a, nd->incarnation, 0);
		}
		break;
	case FMS_EV_RETURN:
		if (nd == NULL || nd->state == FMS_NODE_UP ||
		    nd->incarnation != ev->b)
			break;
		if (nd->state == FMS_NODE_CRASHED)
			sim->m.restarts++;
		else
			sim->m.returns++;
		rc = node_start(sim, nd, 1);
		if (rc != 0)
			return rc;
		break;
	case FMS_EV_GARBAGE:
		if (nd != NULL && nd->state == FMS_NODE_UP)
			garbage_act(sim, nd);
		break;
	case FMS_EV_SAMPLE:
		take_sample(sim);
		if (sim->now_us + sim->sc.sample_ms * 1000 <= sim->end_us)
			push(sim, sim->now_us + sim->sc.sample_ms * 1000,
			     FMS_EV_SAMPLE, 0, 0, 0);
		break;
	case FMS_EV_SPLIT:
		do_split(sim);
		break;
	case FMS_EV_HEAL:
		do_heal(sim);
		break;
	case FMS_EV_PCHECK:
		partition_check(sim);
		break;
	case FMS_EV_LOOKUP:
		fms_dht_lookup_event(sim, ev);
		break;
	case FMS_EV_ADV:
		if (nd != NULL && nd->state == FMS_NODE_UP && nd->adv != NULL)
			fms_adv_act(sim, nd);
		break;
	case FMS_EV_MDNS:
		fms_lan_deliver(sim, ev);
		break;
	case FMS_EV_STOP:
		sim->stopped_early = 1;
		break;
	case FMS_EV_REFRESH:
		fms_dht_refresh_event(sim, ev);
		break;
	default:
		if (ev->type >= FMS_EV_JOBS_FIRST &&
		    ev->type <= FMS_EV_JOBS_LAST)
			return fms_jobs_dispatch(sim, ev);
		break;
	}
	return 0;
}

int fms_sim_run(struct fms_sim *sim)
{
	double start = wall_now(), last_print = 0;
	struct fms_event ev;
	int printed = 0, rc;

	while (fms_eventq_pop(&sim->q, &ev)) {
		if (ev.time_us > sim->end_us)
			break;
		sim->now_us = ev.time_us;
		sim->net.now_us = ev.time_us;
		sim->events++;
		if (!fms_net_dispatch(&sim->net, &ev)) {
			rc = dispatch(sim, &ev);
			if (rc != 0) {
				fprintf(stderr,
				        "fedmesh-sim: event %u failed: %d\n",
				        ev.type, rc);
				return rc;
			}
			if (sim->stopped_early) {
				/* stop_when_done: the run ends here */
				sim->end_us = sim->now_us;
				break;
			}
		}
		if (sim->progress && (sim->events & 0xffff) == 0) {
			double w = wall_now();
			if (w - start >= 2.0 && w - last_print >= 0.5) {
				fprintf(stderr,
				        "\rfedmesh-sim: %s  t=%.0f/%.0f s  "
				        "%llu events (%.2f M/s)  ",
				        sim->sc.name, (double)sim->now_us / 1e6,
				        (double)sim->end_us / 1e6,
				        (unsigned long long)sim->events,
				        (double)sim->events / (w - start) /
				                1e6);
				last_print = w;
				printed = 1;
			}
		}
	}
	sim->now_us = sim->end_us;
	sim->net.now_us = sim->end_us;
	if (sim->row_count == 0 ||
	    sim->rows[sim->row_count - 1].t_ms != sim->end_us / 1000)
		take_sample(sim);
	sim->wall_s = wall_now() - start;
	if (printed)
		fprintf(stderr, "\n");
	return 0;
}
