/* Jobs (jobs.h): submitting, routing, failover and hedging of this node's
 * own jobs, and running peers' jobs with deduplication. docs/PROTOCOL.md
 * ("Jobs") has the messages, docs/ROUTING.md the router's model, and
 * docs/ARCHITECTURE.md the reasons; what is left for here:
 *
 * - Nothing re-enters. Every entry point counts its depth; a call the
 *   driver makes from inside an fm_io callback (a job that finishes inside
 *   job_execute, a submit from job_update) is queued and applied when the
 *   outermost entry point returns. A session that ends in the middle of our
 *   work (a ban) only marks (fm__jobs_peers_changed); the failover runs at
 *   the next tick. So no job can vanish under the code handling it.
 * - An attempt is bound to the session it was sent on (its stream ID):
 *   when that session is gone the attempt is lost, even if a new session to
 *   the same peer is already up; its result may still come, over the new
 *   session, from the peer's cache.
 * - Timers are pulled: the tick scans the jobs only when the earliest
 *   deadline it computed last time is due, or after a peer change.
 * - Lookups by job ID, and by (submitter, job ID) on the executing side,
 *   go through hash tables keyed with SipHash (crypto_shorthash) under a
 *   random key, so a peer cannot choose IDs that collide. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "jobs.h"
#include "router.h"
#include "wire.h"

/* First size of a hash table; it doubles when its load passes 1. */
#define FM__JOBS_HASH_INITIAL 64
/* Per-submitter accounting entries allocated at first. */
#define FM__JOBS_ACCT_INITIAL 8
/* Key of the hash tables: BLAKE2b keyed with this label over the secret
 * key. */
#define FM__JOBS_HASH_LABEL "fedmesh-jobs-hash-v1"
/* Node ID prefix shown in the tried list: 4 bytes, 8 hex digits. */
#define FM__JOBS_ID_SHOWN 4

/* ---- state ---------------------------------------------------------------
 */

/* How an attempt comes to be; it decides whether the retry budget is
 * asked (docs/ROUTING.md, "What the budget is not for"). */
enum dispatch_kind {
	KIND_FIRST = 0,
	KIND_FAILOVER, /* the last attempt never ran: session lost, refused */
	KIND_RETRY,    /* it failed or timed out on a live node: budget */
	KIND_HEDGE,    /* a second attempt while the first runs: budget */
};

struct hentry {
	struct hentry *next;
	uint64_t hash;
};

struct htable {
	struct hentry **b;
	size_t size; /* 0 or a power of two */
	size_t count;
};

/* Runtime of one attempt (its public half is fm_job_attempt). */
struct attempt {
	uint8_t live;
	uint8_t local;
	uint8_t lost;     /* ended with its session: the node may come back */
	uint8_t answered; /* any message about it since the request */
	uint8_t accepted;
	uint8_t running;
	uint8_t query_sent;
	uint8_t kill_pending; /* local: killed, the driver's end still due */
	uint64_t stream_id;   /* remote: the session the request went on */
	uint64_t last_heard_ms;
	uint64_t query_ms;
	size_t sent; /* input bytes sent */
	/* the result, as it arrives */
	uint8_t has_result;
	uint8_t res_state;
	int32_t res_exit;
	uint64_t res_stream;
	size_t res_total, res_got, res_cap;
	uint8_t *res_buf;
	char res_error[FM_JOB_ERROR_MAX];
};

struct jrouter;

/* A job submitted here. */
struct job {
	struct hentry h; /* first: the hash table holds &job->h */
	struct job *prev, *next;
	char id[FM_JOB_ID_MAX + 1];
	char service[FM_SERVICE_NAME_MAX + 1];
	uint8_t *input;
	size_t input_len;
	uint64_t deadline_ms;
	uint8_t idempotent;
	uint8_t state; /* QUEUED, DISPATCHED or RUNNING while active */
	uint8_t hedged;
	uint8_t waiting; /* nothing to pick now: wake at wake_ms or on a
	                    peer change */
	uint8_t wait_kind;
	uint64_t wake_ms;
	uint64_t hedge_ms; /* when to hedge; 0 = not armed */
	struct jrouter *router;
	size_t attempt_count;
	fm_job_attempt attempts[FM_JOB_ATTEMPTS_MAX];
	struct attempt rt[FM_JOB_ATTEMPTS_MAX];
	char error[FM_JOB_ERROR_MAX];
};

struct jrouter {
	char service[FM_SERVICE_NAME_MAX + 1];
	fm__router r;
	uint64_t gen; /* jobs->gen when last synced with the peer table */
	uint64_t synced_ms;
	uint64_t used_ms;
	uint32_t jobs; /* active jobs routed by it */
};

enum served_state { S_RECEIVING = 1, S_RUNNING, S_FINISHED };

/* A peer's job, here. */
struct served {
	struct hentry h;            /* first */
	struct served *prev, *next; /* FIFO of finished results */
	uint8_t submitter[FM_NODE_ID_BYTES];
	char id[FM_JOB_ID_MAX + 1];
	char service[FM_SERVICE_NAME_MAX + 1];
	uint8_t state;
	uint8_t killed;     /* the submitter cancelled it: drop at its end */
	uint8_t delivered;  /* the submitter acknowledged the result */
	uint64_t stream_id; /* receiving: the session the input comes on */
	uint64_t timeout_ms;
	uint8_t *input;
	size_t total, got;
	uint8_t res_state;
	int32_t exit_status;
	uint8_t *output;
	size_t output_len;
	char error[FM__WIRE_JOB_ERROR_MAX + 1];
	uint64_t finished_ms;
};

/* What one submitter holds here. */
struct acct {
	uint8_t id[FM_NODE_ID_BYTES];
	uint32_t inbound;
	uint64_t bytes;
};

enum deferred_op { D_SUBMIT = 0, D_CANCEL, D_FINISHED };

/* A call made from inside a callback, applied afterwards. */
struct deferred {
	struct deferred *next;
	uint8_t op;
	fm_job_spec spec; /* D_SUBMIT; spec.input points to data */
	char id[FM_JOB_DRIVER_ID_MAX + 1];
	uint8_t state;
	int exit_status;
	uint8_t *data;
	size_t len;
	uint8_t too_large;
	uint8_t has_error;
	char error[FM_JOB_ERROR_MAX];
};

struct fm__jobs {
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	fm_service local[FM_NODE_SERVICES_MAX]; /* local_services */
	uint8_t local_count;
	uint8_t strategy; /* enum fm_job_strategy */
	/* own jobs */
	struct htable jobs;
	struct job *head;
	size_t job_count;
	struct jrouter *routers[FM_JOB_ROUTERS_MAX];
	uint64_t gen, seen_gen; /* peer changes: marked, handled */
	uint64_t next_due;
	/* peers' jobs */
	struct htable served;
	struct served *fifo_head, *fifo_tail;
	size_t served_active;
	uint64_t served_bytes;
	size_t cached;
	uint64_t cached_bytes;
	struct acct *accts;
	size_t acct_count, acct_cap;
	/* own job IDs still running in the driver after their job ended */
	char (*zombies)[FM_JOB_ID_MAX + 1];
	size_t zombie_count;
	/* re-entrance */
	unsigned depth;
	struct deferred *dq_head, *dq_tail;
	size_t dq_submits;
};

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static void due(struct fm__jobs *J, uint64_t t)
{
	if (t < J->next_due)
		J->next_due = t;
}

static uint64_t rand_cb(void *ctx)
{
	return fm__random_u64(ctx);
}

static int is_final(unsigned state)
{
	return state == FM_JOB_DONE || state == FM_JOB_FAILED ||
	       state == FM_JOB_TIMED_OUT || state == FM_JOB_CANCELLED;
}

const char *fm_job_state_name(enum fm_job_state state)
{
	static const char *const names[FM_JOB_STATE_COUNT] = {
	        "queued", "dispatched", "running",   "done",
	        "failed", "timed_out",  "cancelled",
	};

	return (unsigned)state < FM_JOB_STATE_COUNT ? names[state] : "unknown";
}

/* ---- hash tables --------------------------------------------------------- */

static uint64_t hash_bytes(const struct fm__jobs *J, const uint8_t *a,
                           size_t alen, const char *s)
{
	uint8_t buf[FM_NODE_ID_BYTES + FM_JOB_ID_MAX];
	uint8_t out[crypto_shorthash_BYTES];
	size_t n = strnlen(s, FM_JOB_ID_MAX);
	uint64_t h;

	if (alen > 0)
		memcpy(buf, a, alen);
	memcpy(buf + alen, s, n);
	crypto_shorthash(out, buf, alen + n, J->hash_key);
	memcpy(&h, out, sizeof(h));
	return h;
}

static int ht_grow(struct htable *t)
{
	size_t size = t->size ? t->size * 2 : FM__JOBS_HASH_INITIAL;
	struct hentry **b = calloc(size, sizeof(*b));
	size_t i;

	if (b == NULL)
		return -ENOMEM;
	for (i = 0; i < t->size; i++) {
		struct hentry *e = t->b[i], *next;
		for (; e != NULL; e = next) {
			next = e->next;
			e->next = b[e->hash & (size - 1)];
			b[e->hash & (size - 1)] = e;
		}
	}
	free(t->b);
	t->b = b;
	t->size = size;
	return 0;
}

static int ht_insert(struct htable *t, struct hentry *e)
{
	size_t i;

	/* A table that cannot grow still works, only slower. */
	if (t->count >= t->size && ht_grow(t) != 0 && t->size == 0)
		return -ENOMEM;
	i = e->hash & (t->size - 1);
	e->next = t->b[i];
	t->b[i] = e;
	t->count++;
	return 0;
}

static void ht_remove(struct htable *t, struct hentry *e)
{
	struct hentry **pp = &t->b[e->hash & (t->size - 1)];

	while (*pp != NULL && *pp != e)
		pp = &(*pp)->next;
	if (*pp == e) {
		*pp = e->next;
		t->count--;
	}
}

static struct job *find_job(const struct fm__jobs *J, const char *id)
{
	uint64_t h;
	struct hentry *e;

	if (J->jobs.size == 0)
		return NULL;
	h = hash_bytes(J, NULL, 0, id);
	for (e = J->jobs.b[h & (J->jobs.size - 1)]; e != NULL; e = e->next) {
		struct job *j = (struct job *)e;
		if (e->hash == h && strcmp(j->id, id) == 0)
			return j;
	}
	return NULL;
}

static struct served *find_served(const struct fm__jobs *J,
                                  const uint8_t submitter[FM_NODE_ID_BYTES],
                                  const char *id)
{
	uint64_t h;
	struct hentry *e;

	if (J->served.size == 0)
		return NULL;
	h = hash_bytes(J, submitter, FM_NODE_ID_BYTES, id);
	for (e = J->served.b[h & (J->served.size - 1)]; e != NULL;
	     e = e->next) {
		struct served *s = (struct served *)e;
		if (e->hash == h &&
		    memcmp(s->submitter, submitter, FM_NODE_ID_BYTES) == 0 &&
		    strcmp(s->id, id) == 0)
			return s;
	}
	return NULL;
}

/* ---- peers, sessions and candidates -------------------------------------
 */

/* The open session to node `id`, or -1. */
static int session_of(const fm_node *node, const uint8_t id[FM_NODE_ID_BYTES])
{
	int p = fm__peer_find(node, id);
	int s;

	if (p < 0)
		return -1;
	s = node->peers[p].session;
	if (s < 0 || node->sessions[s] == NULL ||
	    node->sessions[s]->state != FM__SESS_OPEN)
		return -1;
	return s;
}

static int stream_alive(const fm_node *node, uint64_t stream_id,
                        const uint8_t id[FM_NODE_ID_BYTES])
{
	int s = session_of(node, id);

	return s >= 0 && node->sessions[s]->stream_id == stream_id;
}

static int find_service(const fm_service *list, size_t count,
                        const char *service, uint32_t *slots)
{
	size_t i;

	for (i = 0; i < count; i++) {
		if (strcmp(list[i].name, service) == 0) {
			*slots = list[i].slots;
			return 1;
		}
	}
	return 0;
}

/* This node runs `service` for peers (its record offers it). */
static int offered(const fm_node *node, const char *service, uint32_t *slots)
{
	return find_service(node->record.services, node->record.service_count,
	                    service, slots);
}

/* This node runs `service` for its own jobs. */
static int runs_locally(const fm_node *node, const char *service,
                        uint32_t *slots)
{
	const struct fm__jobs *J = node->jobs;

	if (node->io.job_execute == NULL)
		return 0;
	return offered(node, service, slots) ||
	       find_service(J->local, J->local_count, service, slots);
}

static int is_self(const fm_node *node, const uint8_t id[FM_NODE_ID_BYTES])
{
	return memcmp(id, node->identity.node_id, FM_NODE_ID_BYTES) == 0;
}

/* A peer is a candidate when its session is open and its record offers
 * the service. */
static int peer_candidate(const fm_node *node, const struct fm__peer *p,
                          const char *service, uint32_t *slots)
{
	return p->id_known && p->info.has_record && p->session >= 0 &&
	       node->sessions[p->session] != NULL &&
	       node->sessions[p->session]->state == FM__SESS_OPEN &&
	       find_service(p->info.record.services,
	                    p->info.record.service_count, service, slots);
}

/* A service in local_services that this node does not offer is a program
 * of its own (an exec service): a peer's service of the same name may be
 * anything, so such jobs never leave this node. */
static int local_only(const fm_node *node, const char *service)
{
	const struct fm__jobs *J = node->jobs;
	uint32_t slots;

	return find_service(J->local, J->local_count, service, &slots) &&
	       !offered(node, service, &slots);
}

/* Brings a router's candidates in line with the peer table. */
static void router_sync(fm_node *node, struct jrouter *jr, uint64_t now_ms)
{
	struct fm__jobs *J = node->jobs;
	uint8_t id[FM_NODE_ID_BYTES];
	int peers_ok = !local_only(node, jr->service);
	uint32_t slots;
	size_t i;

	if (jr->gen == J->gen && now_ms < jr->synced_ms + FM_JOB_ROUTER_SYNC_MS)
		return;
	jr->gen = J->gen;
	jr->synced_ms = now_ms;
	i = fm__router_count(&jr->r);
	while (i-- > 0) {
		const fm__router_candidate *c = fm__router_at(&jr->r, i);
		int keep;

		memcpy(id, c->id, sizeof(id));
		if (c->local) {
			keep = runs_locally(node, jr->service, &slots);
		} else {
			int p = fm__peer_find(node, id);
			keep = peers_ok && p >= 0 &&
			       peer_candidate(node, &node->peers[p],
			                      jr->service, &slots);
		}
		if (!keep)
			fm__router_remove(&jr->r, id);
	}
	for (i = 0; i < node->peer_count; i++) {
		const struct fm__peer *p = &node->peers[i];
		if (peers_ok && peer_candidate(node, p, jr->service, &slots))
			(void)fm__router_upsert(
			        &jr->r, now_ms, p->info.node_id, 0, slots,
			        fm_reputation_score(&p->info.reputation));
	}
	if (runs_locally(node, jr->service, &slots))
		(void)fm__router_upsert(&jr->r, now_ms, node->identity.node_id,
		                        1, slots, 0.0);
}

static struct jrouter *router_get(fm_node *node, const char *service,
                                  uint64_t now_ms)
{
	struct fm__jobs *J = node->jobs;
	fm__router_params rp;
	struct jrouter *jr;
	int i, slot = -1;

	for (i = 0; i < FM_JOB_ROUTERS_MAX; i++) {
		jr = J->routers[i];
		if (jr != NULL && strcmp(jr->service, service) == 0) {
			jr->used_ms = now_ms;
			return jr;
		}
		if (jr == NULL && slot < 0)
			slot = i;
	}
	if (slot < 0) {
		/* Recycle the idle router used longest ago. */
		for (i = 0; i < FM_JOB_ROUTERS_MAX; i++) {
			jr = J->routers[i];
			if (jr->jobs == 0 &&
			    (slot < 0 ||
			     jr->used_ms < J->routers[slot]->used_ms))
				slot = i;
		}
		if (slot < 0)
			return NULL;
		fm__router_free(&J->routers[slot]->r);
		free(J->routers[slot]);
		J->routers[slot] = NULL;
	}
	jr = calloc(1, sizeof(*jr));
	if (jr == NULL)
		return NULL;
	fm__router_params_default(&rp);
	rp.strategy = (enum fm__route_strategy)J->strategy;
	if (fm__router_init(&jr->r, rand_cb, node, &rp) != 0) {
		free(jr);
		return NULL;
	}
	snprintf(jr->service, sizeof(jr->service), "%s", service);
	jr->gen = J->gen - 1; /* sync at first use */
	jr->used_ms = now_ms;
	J->routers[slot] = jr;
	return jr;
}

/* ---- sending ------------------------------------------------------------- */

static void msg_init(fm__msg *m, uint8_t type, const char *id)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	snprintf(m->job_id, sizeof(m->job_id), "%s", id);
}

static int send_simple(fm_node *node, int sidx, uint8_t type, const char *id)
{
	fm__msg m;

	msg_init(&m, type, id);
	return fm__session_send(node, sidx, &m);
}

static int send_accept(fm_node *node, int sidx, const char *id, size_t offset)
{
	fm__msg m;

	msg_init(&m, FM__MSG_JOB_ACCEPT, id);
	m.offset = offset;
	return fm__session_send(node, sidx, &m);
}

static int send_refuse(fm_node *node, int sidx, const char *id,
                       const char *reason)
{
	fm__msg m;

	msg_init(&m, FM__MSG_JOB_REFUSE, id);
	snprintf(m.reason, sizeof(m.reason), "%s", reason);
	return fm__session_send(node, sidx, &m);
}

/* DATA or RESULT_DATA chunks of buf[from..len). Stops at the first send
 * that fails: the session is going, and the loss is handled with it. */
static void send_chunks(fm_node *node, int sidx, uint8_t type, const char *id,
                        const uint8_t *buf, size_t from, size_t len)
{
	fm__msg m;

	msg_init(&m, type, id);
	while (from < len) {
		m.offset = from;
		m.chunk = buf + from;
		m.chunk_len = len - from < FM_JOB_CHUNK_BYTES
		                      ? len - from
		                      : FM_JOB_CHUNK_BYTES;
		if (fm__session_send(node, sidx, &m) != 0)
			return;
		from += m.chunk_len;
	}
}

static void send_result(fm_node *node, int sidx, const struct served *e)
{
	fm__msg m;

	msg_init(&m, FM__MSG_JOB_RESULT, e->id);
	m.state = e->res_state;
	m.exit_status = e->exit_status;
	m.total_len = e->output_len;
	m.chunk = e->output;
	m.chunk_len = e->output_len < FM_JOB_CHUNK_BYTES ? e->output_len
	                                                 : FM_JOB_CHUNK_BYTES;
	snprintf(m.error, sizeof(m.error), "%s", e->error);
	if (fm__session_send(node, sidx, &m) != 0)
		return;
	send_chunks(node, sidx, FM__MSG_JOB_RESULT_DATA, e->id, e->output,
	            m.chunk_len, e->output_len);
}

/* ---- own jobs: updates, attempts, routing outcomes ------------------------
 */

static void emit(fm_node *node, const struct job *j, const uint8_t *ran_on,
                 const uint8_t *output, size_t output_len, int exit_status)
{
	fm_job_update u;

	if (node->io.job_update == NULL)
		return;
	memset(&u, 0, sizeof(u));
	u.id = j->id;
	u.state = (enum fm_job_state)j->state;
	u.ran_on = ran_on;
	u.output = output;
	u.output_len = output_len;
	u.exit_status = exit_status;
	u.error = j->error[0] != '\0' ? j->error : NULL;
	u.attempts = j->attempts;
	u.attempt_count = j->attempt_count;
	node->io.job_update(node->io.ctx, &u);
}

static void emit_progress(fm_node *node, const struct job *j)
{
	emit(node, j, NULL, NULL, 0, 0);
}

/* QUEUED, DISPATCHED or RUNNING: the furthest any live attempt got. */
static void derive_state(struct job *j)
{
	uint8_t st = FM_JOB_QUEUED;
	size_t i;

	for (i = 0; i < j->attempt_count; i++) {
		if (!j->rt[i].live)
			continue;
		if (j->rt[i].local || j->rt[i].running)
			st = FM_JOB_RUNNING;
		else if (st == FM_JOB_QUEUED)
			st = FM_JOB_DISPATCHED;
	}
	j->state = st;
}

static size_t live_attempts(const struct job *j)
{
	size_t i, n = 0;

	for (i = 0; i < j->attempt_count; i++)
		n += j->rt[i].live;
	return n;
}

static void end_attempt(struct job *j, size_t i, uint64_t now_ms,
                        uint8_t outcome, const char *error)
{
	fm_job_attempt *a = &j->attempts[i];
	struct attempt *rt = &j->rt[i];

	rt->live = 0;
	a->end_ms = now_ms > a->start_ms ? now_ms : a->start_ms;
	if (a->end_ms == 0)
		a->end_ms = 1; /* 0 means running */
	a->outcome = outcome;
	snprintf(a->error, sizeof(a->error), "%s", error != NULL ? error : "");
	free(rt->res_buf);
	rt->res_buf = NULL;
	rt->res_cap = 0;
	rt->has_result = 0;
}

static double elapsed_ms(const struct job *j, size_t i, uint64_t now_ms)
{
	uint64_t start = j->attempts[i].start_ms;

	return now_ms > start ? (double)(now_ms - start) : 0.0;
}

static void route_success(fm_node *node, struct job *j, size_t i,
                          uint64_t now_ms)
{
	const uint8_t *id = j->attempts[i].node_id;
	const fm__router_candidate *c;

	fm__router_success(&j->router->r, id, now_ms, elapsed_ms(j, i, now_ms));
	if (j->rt[i].local)
		return;
	c = fm__router_find(&j->router->r, id);
	if (c != NULL && c->successes % FM_JOB_REP_SUCCESS_EVERY == 1) {
		int p = fm__peer_find(node, id);
		if (p >= 0)
			fm__peer_reputation(node, now_ms, p, FM__REP_SUCCESS);
	}
}

static void route_failure(fm_node *node, struct job *j, size_t i,
                          uint64_t now_ms, int timeout)
{
	uint64_t before = j->router->r.stats.ejections;

	fm__router_failure(&j->router->r, j->attempts[i].node_id, now_ms,
	                   elapsed_ms(j, i, now_ms), timeout);
	node->stats.job_ejections += j->router->r.stats.ejections - before;
}

/* An attempt we stop waiting for without judging it (the job was
 * cancelled, or won elsewhere). The router has no "abandoned" outcome, and
 * its pending count must come down: this is a success sample of the time
 * so far, a lower bound of its latency, but never below the current
 * estimate, so that a job cancelled at once does not make its node look
 * fast, while a hedge loser slower than the winner is seen to be. */
static void route_release(struct job *j, size_t i, uint64_t now_ms)
{
	const fm__router_candidate *c =
	        fm__router_find(&j->router->r, j->attempts[i].node_id);
	double sample = elapsed_ms(j, i, now_ms);

	if (c == NULL)
		return;
	if (sample < fm__router_latency_ms(&j->router->r, c, now_ms))
		sample = fm__router_latency_ms(&j->router->r, c, now_ms);
	fm__router_success(&j->router->r, j->attempts[i].node_id, now_ms,
	                   sample);
}

static void reputation(fm_node *node, const uint8_t id[FM_NODE_ID_BYTES],
                       uint64_t now_ms, enum fm__rep_event ev)
{
	int p = fm__peer_find(node, id);

	if (p >= 0)
		fm__peer_reputation(node, now_ms, p, ev);
}

/* Stops a live attempt: the local run is killed, a peer told to cancel. */
static void abandon(fm_node *node, struct job *j, size_t i, uint64_t now_ms,
                    uint8_t outcome, const char *why, int timeout)
{
	struct attempt *rt = &j->rt[i];

	if (!rt->live)
		return;
	if (rt->local) {
		rt->kill_pending = 1;
		if (node->io.job_kill != NULL)
			node->io.job_kill(node->io.ctx, j->id);
	} else {
		int s = session_of(node, j->attempts[i].node_id);
		if (s >= 0)
			(void)send_simple(node, s, FM__MSG_JOB_CANCEL, j->id);
	}
	if (timeout)
		route_failure(node, j, i, now_ms, 1);
	else
		route_release(j, i, now_ms);
	end_attempt(j, i, now_ms, outcome, why);
}

/* ---- zombies ---------------------------------------------------------------
 */

static int zombie_find(const struct fm__jobs *J, const char *id)
{
	size_t i;

	for (i = 0; i < J->zombie_count; i++)
		if (strcmp(J->zombies[i], id) == 0)
			return (int)i;
	return -1;
}

static void zombie_add(struct fm__jobs *J, const char *id)
{
	if (J->zombies == NULL) {
		J->zombies = calloc(FM_JOB_ZOMBIES_MAX, sizeof(*J->zombies));
		if (J->zombies == NULL)
			return;
	}
	if (J->zombie_count == FM_JOB_ZOMBIES_MAX) {
		/* The oldest has surely ended by now; forget it. */
		memmove(J->zombies[0], J->zombies[1],
		        (FM_JOB_ZOMBIES_MAX - 1) * sizeof(J->zombies[0]));
		J->zombie_count--;
	}
	snprintf(J->zombies[J->zombie_count++], sizeof(J->zombies[0]), "%s",
	         id);
}

static void zombie_remove(struct fm__jobs *J, int i)
{
	J->zombie_count--;
	if ((size_t)i < J->zombie_count)
		memmove(J->zombies[i], J->zombies[i + 1],
		        (J->zombie_count - (size_t)i) * sizeof(J->zombies[0]));
}

/* ---- own jobs: ending ----------------------------------------------------
 */

static void free_job(struct job *j)
{
	size_t i;

	for (i = 0; i < j->attempt_count; i++)
		free(j->rt[i].res_buf);
	free(j->input);
	free(j);
}

/* The job reached a final state: out of the tables first (so the driver
 * may submit the ID again from its update), then the final update, then
 * freed. Live attempts must have been ended by the caller. */
static void finish_job(fm_node *node, struct job *j, uint8_t state,
                       const uint8_t *ran_on, const uint8_t *output,
                       size_t output_len, int exit_status)
{
	struct fm__jobs *J = node->jobs;
	uint8_t ran[FM_NODE_ID_BYTES];
	size_t i;

	ht_remove(&J->jobs, &j->h);
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		J->head = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	J->job_count--;
	j->router->jobs--;
	if (J->job_count == 0)
		J->next_due = FM_DEADLINE_NONE; /* nothing left to time */
	j->state = state;
	node->stats.jobs_by_state[state]++;
	if (state == FM_JOB_DONE && ran_on != NULL) {
		memcpy(ran, ran_on, sizeof(ran));
		if (is_self(node, ran))
			node->stats.jobs_ran_local++;
		else
			node->stats.jobs_ran_remote++;
	}
	for (i = 0; i < j->attempt_count; i++)
		if (j->rt[i].kill_pending)
			zombie_add(J, j->id);
	emit(node, j, state == FM_JOB_DONE && ran_on != NULL ? ran : NULL,
	     state == FM_JOB_DONE ? output : NULL,
	     state == FM_JOB_DONE ? output_len : 0, exit_status);
	free_job(j);
}

/* "<summary> (tried: local: no such service; 3f2a1b0c: refused: busy)" */
static void tried_list(const struct job *j, const char *summary, char *out,
                       size_t cap)
{
	size_t pos, i;
	int n;

	n = snprintf(out, cap, "%s (tried: %s", summary,
	             j->attempt_count == 0 ? "nothing" : "");
	pos = n < 0 ? 0 : (size_t)n;
	for (i = 0; i < j->attempt_count && pos < cap; i++) {
		const fm_job_attempt *a = &j->attempts[i];
		char who[2 * FM__JOBS_ID_SHOWN + 1];

		if (j->rt[i].local)
			snprintf(who, sizeof(who), "local");
		else
			fm_hex_encode(a->node_id, FM__JOBS_ID_SHOWN, who);
		n = snprintf(out + pos, cap - pos, "%s%s: %s", i ? "; " : "",
		             who,
		             a->error[0] != '\0'
		                     ? a->error
		                     : fm_job_state_name(
		                               (enum fm_job_state)a->outcome));
		pos += n < 0 ? 0 : (size_t)n;
	}
	if (pos < cap)
		snprintf(out + pos, cap - pos, ")");
}

/* Nothing can run the job: FAILED, saying what was tried. */
static void fail_job(fm_node *node, struct job *j, const char *summary)
{
	tried_list(j, summary, j->error, sizeof(j->error));
	finish_job(node, j, FM_JOB_FAILED, NULL, NULL, 0, 0);
}

/* Why nothing could be picked, for the error. */
static void fail_no_candidate(fm_node *node, struct job *j)
{
	char summary[FM_SERVICE_NAME_MAX + 64];
	size_t i;
	int offers = 0;

	/* "Offers" unless every node tried said it has no such service. */
	for (i = 0; i < j->attempt_count; i++)
		if (strcmp(j->attempts[i].error, "no such service") != 0 &&
		    strcmp(j->attempts[i].error, "refused: no such service") !=
		            0)
			offers = 1;
	snprintf(summary, sizeof(summary),
	         offers ? "no node could run service '%s'"
	                : "no node offers service '%s'",
	         j->service);
	fail_job(node, j, summary);
}

static void timeout_job(fm_node *node, struct job *j, uint64_t now_ms)
{
	char summary[64];
	size_t i;

	for (i = 0; i < j->attempt_count; i++)
		abandon(node, j, i, now_ms, FM_JOB_TIMED_OUT, "job timed out",
		        1);
	snprintf(summary, sizeof(summary), "timed out");
	tried_list(j, summary, j->error, sizeof(j->error));
	finish_job(node, j, FM_JOB_TIMED_OUT, NULL, NULL, 0, 0);
}

/* ---- own jobs: dispatch ---------------------------------------------------
 */

static int dispatch(fm_node *node, struct job *j, uint64_t now_ms, int kind);

/* When a job that found no candidate should look again, or
 * FM_DEADLINE_NONE when nothing will change: a node it lost may come back
 * (until the deadline; peer changes wake it sooner), an ejected candidate
 * it has not tried becomes eligible. */
static uint64_t wait_until(const fm_node *node, const struct job *j,
                           const uint8_t *excl, size_t n, uint64_t now_ms)
{
	uint64_t wake = FM_DEADLINE_NONE;
	size_t i, k;

	(void)node;
	for (i = 0; i < j->attempt_count; i++)
		if (j->rt[i].lost)
			wake = j->deadline_ms;
	for (i = 0; i < fm__router_count(&j->router->r); i++) {
		const fm__router_candidate *c = fm__router_at(&j->router->r, i);
		int tried = 0;
		if (!fm__router_is_ejected(c, now_ms))
			continue;
		for (k = 0; k < n; k++)
			if (memcmp(excl + k * FM_NODE_ID_BYTES, c->id,
			           FM_NODE_ID_BYTES) == 0)
				tried = 1;
		if (!tried)
			wake = min_u64(wake, c->eject_until_ms);
	}
	return wake;
}

static void arm_hedge(fm_node *node, struct job *j, const uint8_t *id,
                      uint64_t now_ms)
{
	if (!j->idempotent || j->hedged || j->hedge_ms != 0)
		return;
	j->hedge_ms = now_ms + fm__router_hedge_delay_ms(&j->router->r, id);
	due(node->jobs, j->hedge_ms);
}

/* Returns 1 when the job ended (and is freed). */
static int start_local(fm_node *node, struct job *j, size_t i, uint64_t now_ms)
{
	int rc;

	j->state = FM_JOB_RUNNING;
	rc = node->io.job_execute(node->io.ctx, j->id, j->service, j->input,
	                          j->input_len, j->deadline_ms - now_ms);
	if (rc != 0) {
		char why[48];
		if (rc == -ENOENT)
			snprintf(why, sizeof(why), "no such service");
		else
			snprintf(why, sizeof(why), "cannot start (error %d)",
			         rc);
		route_failure(node, j, i, now_ms, 0);
		end_attempt(j, i, now_ms, FM_JOB_FAILED, why);
		derive_state(j);
		/* It never ran: not a retry the budget pays for. */
		return dispatch(node, j, now_ms, KIND_FAILOVER);
	}
	arm_hedge(node, j, node->identity.node_id, now_ms);
	emit_progress(node, j);
	return 0;
}

static int start_remote(fm_node *node, struct job *j, size_t i, uint64_t now_ms)
{
	struct attempt *rt = &j->rt[i];
	int s = session_of(node, j->attempts[i].node_id);
	fm__msg m;

	msg_init(&m, FM__MSG_JOB_REQUEST, j->id);
	snprintf(m.service, sizeof(m.service), "%s", j->service);
	m.timeout_ms = j->deadline_ms - now_ms;
	m.total_len = j->input_len;
	m.chunk = j->input;
	m.chunk_len = j->input_len < FM_JOB_CHUNK_BYTES ? j->input_len
	                                                : FM_JOB_CHUNK_BYTES;
	if (s < 0 || fm__session_send(node, s, &m) != 0) {
		/* Its session went between the sync and now. */
		route_failure(node, j, i, now_ms, 0);
		end_attempt(j, i, now_ms, FM_JOB_FAILED, "not connected");
		derive_state(j);
		return dispatch(node, j, now_ms, KIND_FAILOVER);
	}
	rt->stream_id = node->sessions[s]->stream_id;
	rt->sent = m.chunk_len;
	derive_state(j);
	due(node->jobs, now_ms + FM_JOB_ANSWER_TIMEOUT_MS);
	arm_hedge(node, j, j->attempts[i].node_id, now_ms);
	emit_progress(node, j);
	return 0;
}

static int start_attempt(fm_node *node, struct job *j,
                         const uint8_t id[FM_NODE_ID_BYTES], uint64_t now_ms,
                         int kind)
{
	size_t i = j->attempt_count++;
	fm_job_attempt *a = &j->attempts[i];
	struct attempt *rt = &j->rt[i];

	memset(a, 0, sizeof(*a));
	memset(rt, 0, sizeof(*rt));
	memcpy(a->node_id, id, FM_NODE_ID_BYTES);
	a->start_ms = now_ms;
	a->outcome = FM_JOB_RUNNING;
	rt->live = 1;
	rt->local = (uint8_t)is_self(node, id);
	rt->last_heard_ms = now_ms;
	node->stats.job_attempts++;
	if (kind == KIND_FAILOVER || kind == KIND_RETRY)
		node->stats.job_retries++;
	fm__router_start(&j->router->r, id, now_ms);
	return rt->local ? start_local(node, j, i, now_ms)
	                 : start_remote(node, j, i, now_ms);
}

/* Picks the next candidate and starts an attempt there, or waits, or fails
 * the job. Returns 1 when the job ended (and is freed). */
static int dispatch(fm_node *node, struct job *j, uint64_t now_ms, int kind)
{
	struct fm__jobs *J = node->jobs;
	uint8_t excl[(FM_JOB_ATTEMPTS_MAX + 1) * FM_NODE_ID_BYTES];
	uint8_t pick[FM_NODE_ID_BYTES];
	size_t i, n = 0, live = live_attempts(j);
	uint8_t before = j->state;

	j->waiting = 0;
	if (now_ms >= j->deadline_ms) {
		due(J, now_ms); /* the tick times it out */
		return 0;
	}
	if (j->attempt_count >= FM_JOB_ATTEMPTS_MAX) {
		if (live > 0)
			return 0;
		fail_job(node, j, "gave up: attempt limit reached");
		return 1;
	}
	/* Skip every node tried, except those lost with their session:
	 * they may come back, with the result in their cache. */
	for (i = 0; i < j->attempt_count; i++)
		if (j->rt[i].live || !j->rt[i].lost)
			memcpy(excl + FM_NODE_ID_BYTES * n++,
			       j->attempts[i].node_id, FM_NODE_ID_BYTES);
	/* The driver still runs an earlier job with this ID. */
	if (zombie_find(J, j->id) >= 0)
		memcpy(excl + FM_NODE_ID_BYTES * n++, node->identity.node_id,
		       FM_NODE_ID_BYTES);
	router_sync(node, j->router, now_ms);
	if (fm__router_pick(&j->router->r, now_ms, excl, n, pick) != 0) {
		uint64_t wake;
		if (kind == KIND_HEDGE || live > 0)
			return 0;
		wake = wait_until(node, j, excl, n, now_ms);
		if (wake == FM_DEADLINE_NONE) {
			fail_no_candidate(node, j);
			return 1;
		}
		j->waiting = 1;
		j->wait_kind =
		        (uint8_t)(kind == KIND_FIRST ? KIND_FAILOVER : kind);
		j->wake_ms = wake;
		due(J, wake);
		derive_state(j);
		if (j->state != before)
			emit_progress(node, j);
		return 0;
	}
	if ((kind == KIND_RETRY || kind == KIND_HEDGE) &&
	    !fm__router_may_retry(&j->router->r, now_ms)) {
		if (kind == KIND_HEDGE)
			return 0;
		j->waiting = 1;
		j->wait_kind = KIND_RETRY;
		j->wake_ms = now_ms + FM_JOB_RETRY_WAIT_MS;
		due(J, j->wake_ms);
		derive_state(j);
		if (j->state != before)
			emit_progress(node, j);
		return 0;
	}
	return start_attempt(node, j, pick, now_ms, kind);
}

/* An attempt came back with a result. Returns 1 when the job ended. */
static int attempt_result(fm_node *node, struct job *j, size_t i,
                          uint64_t now_ms, uint8_t state, int exit_status,
                          const uint8_t *output, size_t output_len,
                          const char *error)
{
	uint8_t id[FM_NODE_ID_BYTES];
	size_t k;

	memcpy(id, j->attempts[i].node_id, sizeof(id));
	if (state == FM_JOB_DONE) {
		route_success(node, j, i, now_ms);
		end_attempt(j, i, now_ms, FM_JOB_DONE, NULL);
		for (k = 0; k < j->attempt_count; k++)
			abandon(node, j, k, now_ms, FM_JOB_CANCELLED,
			        "another attempt finished first", 0);
		j->error[0] = '\0';
		finish_job(node, j, FM_JOB_DONE, id, output, output_len,
		           exit_status);
		return 1;
	}
	route_failure(node, j, i, now_ms, state == FM_JOB_TIMED_OUT);
	end_attempt(j, i, now_ms, state,
	            error != NULL && error[0] != '\0'
	                    ? error
	                    : fm_job_state_name((enum fm_job_state)state));
	/* A FAILED result is the job's own outcome (the program exited
	 * non-zero, the input was bad), honestly reported: it costs the peer
	 * routing weight and, repeated, an ejection (route_failure above),
	 * but no reputation, which is for misbehaviour. Charging it made
	 * fedmesh-sim ban every worker of a service that fails 5 % of its
	 * jobs. Silence and protocol errors still cost reputation. */
	derive_state(j);
	if (live_attempts(j) > 0) {
		emit_progress(node, j);
		return 0;
	}
	return dispatch(node, j, now_ms, KIND_RETRY);
}

/* ---- own jobs: messages from the executing peer ---------------------------
 */

/* The live remote attempt of job `id` on node `from`. */
static struct job *find_attempt(const struct fm__jobs *J, const char *id,
                                const uint8_t from[FM_NODE_ID_BYTES],
                                size_t *index)
{
	struct job *j = find_job(J, id);
	size_t i;

	if (j == NULL)
		return NULL;
	for (i = 0; i < j->attempt_count; i++) {
		if (j->rt[i].live && !j->rt[i].local &&
		    memcmp(j->attempts[i].node_id, from, FM_NODE_ID_BYTES) ==
		            0) {
			*index = i;
			return j;
		}
	}
	return NULL;
}

static void heard(struct attempt *rt, uint64_t now_ms)
{
	rt->answered = 1;
	rt->query_sent = 0;
	rt->last_heard_ms = now_ms;
}

static int on_accept(fm_node *node, uint64_t now_ms, int sidx, const fm__msg *m,
                     const uint8_t *from)
{
	struct attempt *rt;
	struct job *j;
	size_t i;

	j = find_attempt(node->jobs, m->job_id, from, &i);
	if (j == NULL)
		return 0; /* ended meanwhile */
	rt = &j->rt[i];
	if (m->offset > j->input_len)
		return -EBADMSG;
	if (rt->stream_id != node->sessions[sidx]->stream_id)
		return 0; /* about a request on a session that is gone */
	heard(rt, now_ms);
	if (rt->accepted)
		return 0; /* an answer to a QUERY: progress only */
	rt->accepted = 1;
	if (m->offset == j->input_len) { /* it has the job already */
		rt->sent = j->input_len;
		return 0;
	}
	if (m->offset > rt->sent)
		return -EBADMSG; /* holds bytes we never sent */
	send_chunks(node, sidx, FM__MSG_JOB_DATA, j->id, j->input, rt->sent,
	            j->input_len);
	rt->sent = j->input_len;
	return 0;
}

static int on_refuse(fm_node *node, uint64_t now_ms, const fm__msg *m,
                     const uint8_t *from)
{
	char why[sizeof(m->reason) + 16];
	struct job *j;
	size_t i;

	j = find_attempt(node->jobs, m->job_id, from, &i);
	if (j == NULL)
		return 0;
	snprintf(why, sizeof(why), "refused: %s", m->reason);
	/* A refusal counts as cost, so a busy peer gets less; it is no
	 * misbehaviour, and the job never ran: no reputation, no budget. */
	route_failure(node, j, i, now_ms, 0);
	end_attempt(j, i, now_ms, FM_JOB_FAILED, why);
	derive_state(j);
	if (live_attempts(j) > 0) {
		emit_progress(node, j);
		return 0;
	}
	(void)dispatch(node, j, now_ms, KIND_FAILOVER);
	return 0;
}

static int on_running(fm_node *node, uint64_t now_ms, const fm__msg *m,
                      const uint8_t *from)
{
	struct job *j;
	size_t i;

	j = find_attempt(node->jobs, m->job_id, from, &i);
	if (j == NULL)
		return 0;
	heard(&j->rt[i], now_ms);
	j->rt[i].accepted = 1;
	if (!j->rt[i].running) {
		j->rt[i].running = 1;
		derive_state(j);
		emit_progress(node, j);
	}
	return 0;
}

static int append_result(struct attempt *rt, const uint8_t *chunk, size_t len)
{
	if (rt->res_got + len > rt->res_cap) {
		size_t cap = rt->res_cap ? rt->res_cap : FM_JOB_CHUNK_BYTES;
		uint8_t *grown;
		while (cap < rt->res_got + len)
			cap *= 2;
		if (cap > rt->res_total)
			cap = rt->res_total;
		grown = realloc(rt->res_buf, cap);
		if (grown == NULL)
			return -ENOMEM;
		rt->res_buf = grown;
		rt->res_cap = cap;
	}
	if (len > 0)
		memcpy(rt->res_buf + rt->res_got, chunk, len);
	rt->res_got += len;
	return 0;
}

/* The whole result is here: acknowledge it, and act on it. */
static void result_complete(fm_node *node, uint64_t now_ms, int sidx,
                            struct job *j, size_t i)
{
	struct attempt *rt = &j->rt[i];
	uint8_t *out = rt->res_buf;
	size_t len = rt->res_got;
	char error[FM_JOB_ERROR_MAX];

	(void)send_simple(node, sidx, FM__MSG_JOB_ACK, j->id);
	rt->res_buf = NULL; /* ours now: end_attempt must not free it */
	rt->res_cap = 0;
	snprintf(error, sizeof(error), "%s", rt->res_error);
	(void)attempt_result(node, j, i, now_ms, rt->res_state, rt->res_exit,
	                     out, len, error);
	free(out);
}

static int on_result(fm_node *node, uint64_t now_ms, int sidx, const fm__msg *m,
                     const uint8_t *from)
{
	uint64_t stream = node->sessions[sidx]->stream_id;
	struct attempt *rt;
	struct job *j;
	size_t i;

	j = find_attempt(node->jobs, m->job_id, from, &i);
	if (j == NULL)
		return 0; /* cancelled, timed out or won elsewhere meanwhile */
	rt = &j->rt[i];
	if (rt->has_result && rt->res_stream == stream)
		return -EBADMSG; /* a second RESULT before the first ended */
	/* A RESULT on another session starts over: the first one's session
	 * is gone, with the rest of it. */
	free(rt->res_buf);
	rt->res_buf = NULL;
	rt->res_cap = 0;
	rt->res_got = 0;
	rt->has_result = 1;
	rt->res_stream = stream;
	rt->res_state = m->state;
	rt->res_exit = m->exit_status;
	rt->res_total = (size_t)m->total_len;
	snprintf(rt->res_error, sizeof(rt->res_error), "%s", m->error);
	heard(rt, now_ms);
	rt->accepted = 1;
	if (append_result(rt, m->chunk, m->chunk_len) != 0) {
		route_failure(node, j, i, now_ms, 0);
		end_attempt(j, i, now_ms, FM_JOB_FAILED, "out of memory");
		derive_state(j);
		if (live_attempts(j) == 0)
			(void)dispatch(node, j, now_ms, KIND_RETRY);
		return 0;
	}
	if (rt->res_got == rt->res_total)
		result_complete(node, now_ms, sidx, j, i);
	return 0;
}

static int on_result_data(fm_node *node, uint64_t now_ms, int sidx,
                          const fm__msg *m, const uint8_t *from)
{
	uint64_t stream = node->sessions[sidx]->stream_id;
	struct attempt *rt;
	struct job *j;
	size_t i;

	j = find_attempt(node->jobs, m->job_id, from, &i);
	if (j == NULL)
		return 0;
	rt = &j->rt[i];
	if (!rt->has_result || rt->res_stream != stream ||
	    m->offset != rt->res_got ||
	    m->chunk_len > rt->res_total - rt->res_got)
		return -EBADMSG; /* a gap, an overrun, or no RESULT first */
	heard(rt, now_ms);
	if (append_result(rt, m->chunk, m->chunk_len) != 0) {
		route_failure(node, j, i, now_ms, 0);
		end_attempt(j, i, now_ms, FM_JOB_FAILED, "out of memory");
		derive_state(j);
		if (live_attempts(j) == 0)
			(void)dispatch(node, j, now_ms, KIND_RETRY);
		return 0;
	}
	if (rt->res_got == rt->res_total)
		result_complete(node, now_ms, sidx, j, i);
	return 0;
}

/* ---- peers' jobs -----------------------------------------------------------
 */

static struct acct *acct_get(struct fm__jobs *J,
                             const uint8_t id[FM_NODE_ID_BYTES], int create)
{
	size_t i;

	for (i = 0; i < J->acct_count; i++)
		if (memcmp(J->accts[i].id, id, FM_NODE_ID_BYTES) == 0)
			return &J->accts[i];
	if (!create)
		return NULL;
	if (J->acct_count == J->acct_cap) {
		size_t cap =
		        J->acct_cap ? J->acct_cap * 2 : FM__JOBS_ACCT_INITIAL;
		struct acct *grown = realloc(J->accts, cap * sizeof(*grown));
		if (grown == NULL)
			return NULL;
		J->accts = grown;
		J->acct_cap = cap;
	}
	memset(&J->accts[J->acct_count], 0, sizeof(J->accts[0]));
	memcpy(J->accts[J->acct_count].id, id, FM_NODE_ID_BYTES);
	return &J->accts[J->acct_count++];
}

static void acct_release(struct fm__jobs *J, const uint8_t *id, uint64_t bytes,
                         int inbound)
{
	struct acct *a = acct_get(J, id, 0);

	if (a == NULL)
		return;
	a->bytes -= bytes <= a->bytes ? bytes : a->bytes;
	if (inbound && a->inbound > 0)
		a->inbound--;
	if (a->inbound == 0 && a->bytes == 0)
		*a = J->accts[--J->acct_count];
}

static void fifo_unlink(struct fm__jobs *J, struct served *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		J->fifo_head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		J->fifo_tail = e->prev;
	e->prev = e->next = NULL;
}

static void drop_served(struct fm__jobs *J, struct served *e)
{
	ht_remove(&J->served, &e->h);
	if (e->state == S_RECEIVING) {
		J->served_bytes -= e->total;
		acct_release(J, e->submitter, e->total, 1);
		J->served_active--;
	} else if (e->state == S_RUNNING) {
		acct_release(J, e->submitter, 0, 1);
		J->served_active--;
	} else {
		fifo_unlink(J, e);
		J->cached--;
		J->cached_bytes -= e->output_len;
	}
	free(e->input);
	free(e->output);
	free(e);
}

static void evict(struct fm__jobs *J, uint64_t now_ms)
{
	while (J->fifo_head != NULL &&
	       J->fifo_head->finished_ms + FM_JOB_RESULT_KEEP_MS <= now_ms)
		drop_served(J, J->fifo_head);
	while (J->fifo_head != NULL &&
	       (J->cached > FM_JOB_RESULTS_KEPT ||
	        J->cached_bytes > FM_JOB_RESULTS_BYTES_MAX)) {
		struct served *v = J->fifo_head, *e = v;
		int k;
		for (k = 0; e != NULL && k < FM_JOB_EVICT_SCAN;
		     k++, e = e->next) {
			if (e->delivered) {
				v = e;
				break;
			}
		}
		drop_served(J, v);
	}
}

static void driver_id(const struct served *e, char *out)
{
	fm_hex_encode(e->submitter, FM_NODE_ID_BYTES, out);
	out[2 * FM_NODE_ID_BYTES] = ':';
	snprintf(out + 2 * FM_NODE_ID_BYTES + 1, FM_JOB_ID_MAX + 1, "%s",
	         e->id);
}

/* The whole input is here: run it. */
static void start_served(fm_node *node, int sidx, struct served *e)
{
	struct fm__jobs *J = node->jobs;
	char id[FM_JOB_DRIVER_ID_MAX + 1];
	char name[FM_JOB_ID_MAX + 1];
	int rc;

	/* No longer input waiting: out of the byte budgets. */
	J->served_bytes -= e->total;
	acct_release(J, e->submitter, e->total, 0);
	e->state = S_RUNNING;
	driver_id(e, id);
	rc = node->io.job_execute(node->io.ctx, id, e->service, e->input,
	                          e->total, e->timeout_ms);
	free(e->input);
	e->input = NULL;
	if (rc != 0) {
		snprintf(name, sizeof(name), "%s", e->id);
		drop_served(J, e);
		(void)send_refuse(node, sidx, name,
		                  rc == -ENOENT ? "no such service" : "busy");
		return;
	}
	node->stats.jobs_served++;
	(void)send_simple(node, sidx, FM__MSG_JOB_RUNNING, e->id);
}

static int on_request(fm_node *node, int sidx, const fm__msg *m,
                      const uint8_t *from)
{
	struct fm__jobs *J = node->jobs;
	uint64_t stream = node->sessions[sidx]->stream_id;
	struct served *e = find_served(J, from, m->job_id);
	struct acct *a;
	uint32_t slots;

	if (e != NULL && e->state == S_RECEIVING) {
		if (e->stream_id == stream)
			return -EBADMSG; /* requested twice on one session */
		drop_served(J, e);       /* its session is gone: start over */
		e = NULL;
	}
	if (e != NULL) {
		if (strcmp(e->service, m->service) != 0 || e->killed) {
			(void)send_refuse(node, sidx, m->job_id,
			                  e->killed ? "busy" : "job ID in use");
			return 0;
		}
		/* Here already: attach, or answer from what is kept. */
		node->stats.jobs_deduplicated++;
		(void)send_accept(node, sidx, m->job_id, (size_t)m->total_len);
		if (e->state == S_RUNNING)
			(void)send_simple(node, sidx, FM__MSG_JOB_RUNNING,
			                  m->job_id);
		else
			send_result(node, sidx, e);
		return 0;
	}
	/* Only what the record offers; local_services are never for peers. */
	if (!offered(node, m->service, &slots) ||
	    node->io.job_execute == NULL) {
		(void)send_refuse(node, sidx, m->job_id, "no such service");
		return 0;
	}
	a = acct_get(J, from, 1);
	if (a == NULL || J->served_active >= FM_JOB_INBOUND_MAX ||
	    a->inbound >= FM_JOB_INBOUND_PER_PEER_MAX ||
	    m->total_len > FM_JOB_INBOUND_BYTES_MAX - J->served_bytes ||
	    m->total_len > FM_JOB_INBOUND_PEER_BYTES_MAX - a->bytes) {
		(void)send_refuse(node, sidx, m->job_id, "busy");
		if (a != NULL && a->inbound == 0 && a->bytes == 0)
			acct_release(J, from, 0, 0);
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (e != NULL)
		e->input = malloc(m->total_len > 0 ? (size_t)m->total_len : 1);
	if (e == NULL || e->input == NULL) {
		if (e != NULL)
			free(e);
		(void)send_refuse(node, sidx, m->job_id, "busy");
		acct_release(J, from, 0, 0);
		return 0;
	}
	memcpy(e->submitter, from, FM_NODE_ID_BYTES);
	snprintf(e->id, sizeof(e->id), "%s", m->job_id);
	snprintf(e->service, sizeof(e->service), "%s", m->service);
	e->state = S_RECEIVING;
	e->stream_id = stream;
	e->timeout_ms = m->timeout_ms == 0 ? 1 : m->timeout_ms;
	if (e->timeout_ms > FM_JOB_TIMEOUT_MAX_MS)
		e->timeout_ms = FM_JOB_TIMEOUT_MAX_MS;
	e->total = (size_t)m->total_len;
	if (m->chunk_len > 0)
		memcpy(e->input, m->chunk, m->chunk_len);
	e->got = m->chunk_len;
	e->h.hash = hash_bytes(J, from, FM_NODE_ID_BYTES, e->id);
	if (ht_insert(&J->served, &e->h) != 0) {
		free(e->input);
		free(e);
		(void)send_refuse(node, sidx, m->job_id, "busy");
		acct_release(J, from, 0, 0);
		return 0;
	}
	J->served_active++;
	J->served_bytes += e->total;
	a->inbound++;
	a->bytes += e->total;
	if (e->got == e->total)
		start_served(node, sidx, e);
	else
		(void)send_accept(node, sidx, e->id, e->got);
	return 0;
}

static int on_data(fm_node *node, int sidx, const fm__msg *m,
                   const uint8_t *from)
{
	struct served *e = find_served(node->jobs, from, m->job_id);

	/* DATA only ever follows our ACCEPT, on the session of the request,
	 * in order, within the announced length. */
	if (e == NULL || e->state != S_RECEIVING ||
	    e->stream_id != node->sessions[sidx]->stream_id ||
	    m->offset != e->got || m->chunk_len > e->total - e->got)
		return -EBADMSG;
	memcpy(e->input + e->got, m->chunk, m->chunk_len);
	e->got += m->chunk_len;
	if (e->got == e->total)
		start_served(node, sidx, e);
	return 0;
}

static void on_cancel(fm_node *node, const fm__msg *m, const uint8_t *from)
{
	struct served *e = find_served(node->jobs, from, m->job_id);
	char id[FM_JOB_DRIVER_ID_MAX + 1];

	if (e == NULL) /* finished and gone, or never accepted */
		return;
	if (e->state == S_RECEIVING) {
		drop_served(node->jobs, e);
	} else if (e->state == S_RUNNING && !e->killed) {
		e->killed = 1;
		driver_id(e, id);
		if (node->io.job_kill != NULL)
			node->io.job_kill(node->io.ctx, id);
	}
}

static void on_query(fm_node *node, int sidx, const fm__msg *m,
                     const uint8_t *from)
{
	struct served *e = find_served(node->jobs, from, m->job_id);

	if (e == NULL || (e->state == S_RECEIVING &&
	                  e->stream_id != node->sessions[sidx]->stream_id)) {
		(void)send_refuse(node, sidx, m->job_id, "unknown job");
		return;
	}
	if (e->state == S_RECEIVING)
		(void)send_accept(node, sidx, e->id, e->got);
	else if (e->state == S_RUNNING && e->killed)
		(void)send_refuse(node, sidx, e->id, "cancelled");
	else if (e->state == S_RUNNING)
		(void)send_simple(node, sidx, FM__MSG_JOB_RUNNING, e->id);
	else
		send_result(node, sidx, e);
}

static void served_finished(fm_node *node, uint64_t now_ms, const char *drv,
                            uint8_t state, int exit_status,
                            const uint8_t *output, size_t output_len,
                            int too_large, const char *error)
{
	struct fm__jobs *J = node->jobs;
	uint8_t submitter[FM_NODE_ID_BYTES];
	char hex[2 * FM_NODE_ID_BYTES + 1];
	const char *id = drv + 2 * FM_NODE_ID_BYTES + 1;
	struct served *e;
	int s;

	if (strnlen(drv, FM_JOB_DRIVER_ID_MAX + 1) <=
	            2 * FM_NODE_ID_BYTES + 1 ||
	    drv[2 * FM_NODE_ID_BYTES] != ':' ||
	    !fm__job_id_ok(id, strnlen(id, FM_JOB_ID_MAX + 1)))
		return;
	memcpy(hex, drv, 2 * FM_NODE_ID_BYTES);
	hex[2 * FM_NODE_ID_BYTES] = '\0';
	if (fm_hex_decode(hex, submitter, FM_NODE_ID_BYTES) != 0)
		return;
	e = find_served(J, submitter, id);
	if (e == NULL || e->state != S_RUNNING)
		return;
	if (e->killed) { /* the submitter cancelled it: nobody wants it */
		drop_served(J, e);
		return;
	}
	acct_release(J, e->submitter, 0, 1);
	J->served_active--;
	e->state = S_FINISHED;
	e->finished_ms = now_ms;
	e->res_state = is_final(state) ? state : FM_JOB_FAILED;
	e->exit_status = exit_status;
	snprintf(e->error, sizeof(e->error), "%s", error != NULL ? error : "");
	if (too_large || output_len > FM_JOB_OUTPUT_MAX) {
		e->res_state = FM_JOB_FAILED;
		snprintf(e->error, sizeof(e->error), "output too large");
	} else if (output_len > 0) {
		e->output = malloc(output_len);
		if (e->output == NULL) {
			e->res_state = FM_JOB_FAILED;
			snprintf(e->error, sizeof(e->error), "out of memory");
		} else {
			memcpy(e->output, output, output_len);
			e->output_len = output_len;
		}
	}
	e->prev = J->fifo_tail;
	e->next = NULL;
	if (J->fifo_tail != NULL)
		J->fifo_tail->next = e;
	else
		J->fifo_head = e;
	J->fifo_tail = e;
	J->cached++;
	J->cached_bytes += e->output_len;
	/* If its session is gone the result waits here for a re-request. */
	s = session_of(node, e->submitter);
	if (s >= 0)
		send_result(node, s, e);
	evict(J, now_ms);
}

/* ---- entry points: re-entrance --------------------------------------------
 */

static void finished_now(fm_node *node, uint64_t now_ms, const char *id,
                         uint8_t state, int exit_status, const uint8_t *output,
                         size_t output_len, int too_large, const char *error);
static int submit_now(fm_node *node, uint64_t now_ms, const fm_job_spec *spec);
static int cancel_now(fm_node *node, uint64_t now_ms, const char *id);

static void enter(fm_node *node)
{
	node->jobs->depth++;
}

/* Leaving the outermost entry point: apply what callbacks asked for. */
static void leave(fm_node *node, uint64_t now_ms)
{
	struct fm__jobs *J = node->jobs;
	struct deferred *d;

	while (J->depth == 1 && (d = J->dq_head) != NULL) {
		J->dq_head = d->next;
		if (J->dq_head == NULL)
			J->dq_tail = NULL;
		if (d->op == D_SUBMIT) {
			J->dq_submits--;
			if (submit_now(node, now_ms, &d->spec) != 0 &&
			    node->io.job_update != NULL) {
				fm_job_update u;
				memset(&u, 0, sizeof(u));
				u.id = d->spec.id;
				u.state = FM_JOB_FAILED;
				u.error = "cannot submit: too many jobs";
				node->stats.jobs_by_state[FM_JOB_FAILED]++;
				node->io.job_update(node->io.ctx, &u);
			}
		} else if (d->op == D_CANCEL) {
			(void)cancel_now(node, now_ms, d->id);
		} else {
			finished_now(node, now_ms, d->id, d->state,
			             d->exit_status, d->data, d->len,
			             d->too_large,
			             d->has_error ? d->error : NULL);
		}
		free(d->data);
		free(d);
	}
	J->depth--;
}

static void defer(struct fm__jobs *J, struct deferred *d)
{
	d->next = NULL;
	if (J->dq_tail != NULL)
		J->dq_tail->next = d;
	else
		J->dq_head = d;
	J->dq_tail = d;
}

static int deferred_submit_exists(const struct fm__jobs *J, const char *id)
{
	const struct deferred *d;

	for (d = J->dq_head; d != NULL; d = d->next)
		if (d->op == D_SUBMIT && strcmp(d->spec.id, id) == 0)
			return 1;
	return 0;
}

/* ---- entry points -------------------------------------------------------- */

static int spec_ok(const fm_job_spec *spec)
{
	size_t id_len = strnlen(spec->id, sizeof(spec->id));
	size_t svc_len = strnlen(spec->service, sizeof(spec->service));

	return id_len < sizeof(spec->id) && fm__job_id_ok(spec->id, id_len) &&
	       svc_len < sizeof(spec->service) &&
	       fm__service_name_ok(spec->service, svc_len) &&
	       spec->input_len <= FM_JOB_INPUT_MAX &&
	       (spec->input != NULL || spec->input_len == 0) &&
	       spec->timeout_ms <= FM_JOB_TIMEOUT_MAX_MS;
}

static int submit_now(fm_node *node, uint64_t now_ms, const fm_job_spec *spec)
{
	struct fm__jobs *J = node->jobs;
	struct jrouter *jr;
	struct job *j;

	if (find_job(J, spec->id) != NULL)
		return -EEXIST;
	if (J->job_count >= FM_JOBS_ACTIVE_MAX)
		return -ENOSPC;
	jr = router_get(node, spec->service, now_ms);
	if (jr == NULL)
		return -ENOSPC;
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->input = malloc(spec->input_len > 0 ? spec->input_len : 1);
	if (j->input == NULL) {
		free(j);
		return -ENOMEM;
	}
	if (spec->input_len > 0)
		memcpy(j->input, spec->input, spec->input_len);
	j->input_len = spec->input_len;
	snprintf(j->id, sizeof(j->id), "%s", spec->id);
	snprintf(j->service, sizeof(j->service), "%s", spec->service);
	j->idempotent = spec->idempotent ? 1 : 0;
	j->deadline_ms =
	        now_ms + (spec->timeout_ms > 0 ? spec->timeout_ms
	                                       : FM_JOB_TIMEOUT_DEFAULT_MS);
	j->state = FM_JOB_QUEUED;
	j->router = jr;
	j->h.hash = hash_bytes(J, NULL, 0, j->id);
	if (ht_insert(&J->jobs, &j->h) != 0) {
		free_job(j);
		return -ENOMEM;
	}
	j->next = J->head;
	if (J->head != NULL)
		J->head->prev = j;
	J->head = j;
	J->job_count++;
	jr->jobs++;
	node->stats.jobs_submitted++;
	fm__router_note_request(&jr->r, now_ms);
	due(J, j->deadline_ms);
	emit_progress(node, j);
	(void)dispatch(node, j, now_ms, KIND_FIRST);
	return 0;
}

int fm_node_job_submit(fm_node *node, uint64_t now_ms, const fm_job_spec *spec)
{
	struct fm__jobs *J;
	struct deferred *d;
	int rc;

	if (node == NULL || spec == NULL || node->jobs == NULL ||
	    !spec_ok(spec))
		return -EINVAL;
	J = node->jobs;
	if (now_ms > node->last_now_ms)
		node->last_now_ms = now_ms;
	now_ms = node->last_now_ms;
	if (find_job(J, spec->id) != NULL ||
	    deferred_submit_exists(J, spec->id))
		return -EEXIST;
	if (J->job_count + J->dq_submits >= FM_JOBS_ACTIVE_MAX)
		return -ENOSPC;
	if (J->depth > 0) {
		d = calloc(1, sizeof(*d));
		if (d == NULL)
			return -ENOMEM;
		d->op = D_SUBMIT;
		d->spec = *spec;
		d->data = malloc(spec->input_len > 0 ? spec->input_len : 1);
		if (d->data == NULL) {
			free(d);
			return -ENOMEM;
		}
		if (spec->input_len > 0)
			memcpy(d->data, spec->input, spec->input_len);
		d->spec.input = d->data;
		J->dq_submits++;
		defer(J, d);
		return 0;
	}
	enter(node);
	rc = submit_now(node, now_ms, spec);
	leave(node, now_ms);
	return rc;
}

static int cancel_now(fm_node *node, uint64_t now_ms, const char *id)
{
	struct job *j = find_job(node->jobs, id);
	size_t i;

	if (j == NULL)
		return -ENOENT;
	for (i = 0; i < j->attempt_count; i++)
		abandon(node, j, i, now_ms, FM_JOB_CANCELLED, "cancelled", 0);
	snprintf(j->error, sizeof(j->error), "cancelled");
	finish_job(node, j, FM_JOB_CANCELLED, NULL, NULL, 0, 0);
	return 0;
}

int fm_node_job_cancel(fm_node *node, uint64_t now_ms, const char *id)
{
	struct fm__jobs *J;
	struct deferred *d;
	int rc;

	if (node == NULL || id == NULL || node->jobs == NULL)
		return -EINVAL;
	J = node->jobs;
	if (now_ms > node->last_now_ms)
		node->last_now_ms = now_ms;
	now_ms = node->last_now_ms;
	if (find_job(J, id) == NULL && !deferred_submit_exists(J, id))
		return -ENOENT;
	if (J->depth > 0) {
		d = calloc(1, sizeof(*d));
		if (d == NULL)
			return -ENOMEM;
		d->op = D_CANCEL;
		snprintf(d->id, sizeof(d->id), "%s", id);
		defer(J, d);
		return 0;
	}
	enter(node);
	rc = cancel_now(node, now_ms, id);
	leave(node, now_ms);
	return rc;
}

static void finished_now(fm_node *node, uint64_t now_ms, const char *id,
                         uint8_t state, int exit_status, const uint8_t *output,
                         size_t output_len, int too_large, const char *error)
{
	struct fm__jobs *J = node->jobs;
	struct job *j;
	size_t i;
	int z;

	if (!is_final(state))
		state = FM_JOB_FAILED;
	if (strchr(id, ':') != NULL) {
		served_finished(node, now_ms, id, state, exit_status, output,
		                output_len, too_large, error);
		return;
	}
	j = find_job(J, id);
	if (j != NULL) {
		for (i = 0; i < j->attempt_count; i++) {
			struct attempt *rt = &j->rt[i];
			if (!rt->local)
				continue;
			if (rt->kill_pending) {
				rt->kill_pending = 0; /* killed: the end */
				return;
			}
			if (!rt->live)
				continue;
			if (too_large || output_len > FM_JOB_OUTPUT_MAX) {
				state = FM_JOB_FAILED;
				error = "output too large";
				output_len = 0;
			}
			(void)attempt_result(node, j, i, now_ms, state,
			                     exit_status, output, output_len,
			                     error);
			return;
		}
	}
	/* An earlier job with this ID, killed after it ended (a new job of
	 * the same ID never runs here while that one does). */
	z = zombie_find(J, id);
	if (z >= 0)
		zombie_remove(J, z);
}

void fm_node_job_finished(fm_node *node, uint64_t now_ms, const char *job_id,
                          enum fm_job_state state, int exit_status,
                          const uint8_t *output, size_t output_len,
                          const char *error)
{
	struct fm__jobs *J;
	struct deferred *d;

	if (node == NULL || job_id == NULL || node->jobs == NULL ||
	    strnlen(job_id, FM_JOB_DRIVER_ID_MAX + 1) > FM_JOB_DRIVER_ID_MAX ||
	    (output == NULL && output_len > 0))
		return;
	J = node->jobs;
	if (now_ms > node->last_now_ms)
		node->last_now_ms = now_ms;
	now_ms = node->last_now_ms;
	if (J->depth > 0) {
		d = calloc(1, sizeof(*d));
		if (d == NULL)
			return;
		d->op = D_FINISHED;
		snprintf(d->id, sizeof(d->id), "%s", job_id);
		d->state = (uint8_t)state;
		d->exit_status = exit_status;
		if (output_len > FM_JOB_OUTPUT_MAX) {
			d->too_large = 1;
		} else if (output_len > 0) {
			d->data = malloc(output_len);
			if (d->data == NULL) {
				free(d);
				return;
			}
			memcpy(d->data, output, output_len);
			d->len = output_len;
		}
		if (error != NULL) {
			d->has_error = 1;
			snprintf(d->error, sizeof(d->error), "%s", error);
		}
		defer(J, d);
		return;
	}
	enter(node);
	finished_now(node, now_ms, job_id, (uint8_t)state, exit_status, output,
	             output_len, 0, error);
	leave(node, now_ms);
}

int fm__jobs_on_msg(fm_node *node, uint64_t now_ms, int session,
                    const fm__msg *m)
{
	uint8_t from[FM_NODE_ID_BYTES];
	int rc = 0;

	if (node->jobs == NULL)
		return 0;
	/* Copied: the session (and its remote_id) may end under us. */
	memcpy(from, node->sessions[session]->remote_id, sizeof(from));
	enter(node);
	switch (m->type) {
	case FM__MSG_JOB_REQUEST:
		rc = on_request(node, session, m, from);
		break;
	case FM__MSG_JOB_DATA:
		rc = on_data(node, session, m, from);
		break;
	case FM__MSG_JOB_ACCEPT:
		rc = on_accept(node, now_ms, session, m, from);
		break;
	case FM__MSG_JOB_REFUSE:
		rc = on_refuse(node, now_ms, m, from);
		break;
	case FM__MSG_JOB_RUNNING:
		rc = on_running(node, now_ms, m, from);
		break;
	case FM__MSG_JOB_RESULT:
		rc = on_result(node, now_ms, session, m, from);
		break;
	case FM__MSG_JOB_RESULT_DATA:
		rc = on_result_data(node, now_ms, session, m, from);
		break;
	case FM__MSG_JOB_CANCEL:
		on_cancel(node, m, from);
		break;
	case FM__MSG_JOB_QUERY:
		on_query(node, session, m, from);
		break;
	case FM__MSG_JOB_ACK: {
		struct served *e = find_served(node->jobs, from, m->job_id);
		if (e != NULL && e->state == S_FINISHED)
			e->delivered = 1;
		break;
	}
	default:
		break;
	}
	leave(node, now_ms);
	return rc;
}

/* ---- timers ----------------------------------------------------------------
 */

void fm__jobs_peers_changed(fm_node *node)
{
	if (node->jobs == NULL)
		return;
	node->jobs->gen++;
	node->jobs->next_due = 0;
}

/* After a peer change: attempts whose session is gone fail over at once
 * (no budget: they never ran, or their result waits in the peer's cache);
 * input arriving on a session that is gone is dropped; waiting jobs look
 * again. */
static void peers_changed(fm_node *node, uint64_t now_ms)
{
	struct fm__jobs *J = node->jobs;
	struct job *j, *next;
	size_t i, b;

	for (b = 0; b < J->served.size; b++) {
		struct hentry *e = J->served.b[b], *enext;
		for (; e != NULL; e = enext) {
			struct served *s = (struct served *)e;
			enext = e->next;
			if (s->state == S_RECEIVING &&
			    !stream_alive(node, s->stream_id, s->submitter))
				drop_served(J, s);
		}
	}
	for (j = J->head; j != NULL; j = next) {
		int lost = 0;
		next = j->next;
		for (i = 0; i < j->attempt_count; i++) {
			struct attempt *rt = &j->rt[i];
			if (!rt->live || rt->local ||
			    stream_alive(node, rt->stream_id,
			                 j->attempts[i].node_id))
				continue;
			route_failure(node, j, i, now_ms, 0);
			end_attempt(j, i, now_ms, FM_JOB_FAILED,
			            "session lost");
			rt->lost = 1;
			lost = 1;
		}
		if (lost) {
			derive_state(j);
			if (live_attempts(j) > 0)
				emit_progress(node, j);
			else
				(void)dispatch(node, j, now_ms, KIND_FAILOVER);
		} else if (j->waiting) {
			(void)dispatch(node, j, now_ms, j->wait_kind);
		}
	}
}

static void attempt_timed_out(fm_node *node, struct job *j, size_t i,
                              uint64_t now_ms)
{
	uint8_t id[FM_NODE_ID_BYTES];
	int s;

	memcpy(id, j->attempts[i].node_id, sizeof(id));
	s = session_of(node, id);
	if (s >= 0)
		(void)send_simple(node, s, FM__MSG_JOB_CANCEL, j->id);
	route_failure(node, j, i, now_ms, 1);
	end_attempt(j, i, now_ms, FM_JOB_TIMED_OUT, "no answer");
	/* May ban the peer and end its session: that only marks. */
	reputation(node, id, now_ms, FM__REP_TIMEOUT);
}

/* Earliest time anything about j is due. */
static uint64_t job_due(const struct job *j)
{
	uint64_t t = j->deadline_ms;
	size_t i;

	if (j->waiting)
		t = min_u64(t, j->wake_ms);
	if (j->hedge_ms != 0)
		t = min_u64(t, j->hedge_ms);
	for (i = 0; i < j->attempt_count; i++) {
		const struct attempt *rt = &j->rt[i];
		if (!rt->live || rt->local)
			continue;
		if (!rt->answered)
			t = min_u64(t, j->attempts[i].start_ms +
			                       FM_JOB_ANSWER_TIMEOUT_MS);
		else if (rt->query_sent)
			t = min_u64(t, rt->query_ms + FM_JOB_QUERY_TIMEOUT_MS);
		else
			t = min_u64(t,
			            rt->last_heard_ms + FM_JOB_QUERY_AFTER_MS);
	}
	return t;
}

/* Returns 1 when the job ended. */
static int job_timers(fm_node *node, struct job *j, uint64_t now_ms)
{
	size_t i;
	int timed_out = 0;

	if (now_ms >= j->deadline_ms) {
		timeout_job(node, j, now_ms);
		return 1;
	}
	for (i = 0; i < j->attempt_count; i++) {
		struct attempt *rt = &j->rt[i];
		if (!rt->live || rt->local)
			continue;
		if (!rt->answered) {
			if (now_ms >= j->attempts[i].start_ms +
			                      FM_JOB_ANSWER_TIMEOUT_MS) {
				attempt_timed_out(node, j, i, now_ms);
				timed_out = 1;
			}
		} else if (rt->query_sent) {
			if (now_ms >= rt->query_ms + FM_JOB_QUERY_TIMEOUT_MS) {
				attempt_timed_out(node, j, i, now_ms);
				timed_out = 1;
			}
		} else if (now_ms >=
		           rt->last_heard_ms + FM_JOB_QUERY_AFTER_MS) {
			int s = session_of(node, j->attempts[i].node_id);
			rt->query_sent = 1;
			rt->query_ms = now_ms;
			if (s >= 0)
				(void)send_simple(node, s, FM__MSG_JOB_QUERY,
				                  j->id);
		}
	}
	if (timed_out) {
		derive_state(j);
		if (live_attempts(j) == 0)
			return dispatch(node, j, now_ms, KIND_RETRY);
		emit_progress(node, j);
	}
	if (j->hedge_ms != 0 && now_ms >= j->hedge_ms) {
		j->hedge_ms = 0;
		if (!j->hedged && live_attempts(j) == 1) {
			j->hedged = 1;
			if (dispatch(node, j, now_ms, KIND_HEDGE))
				return 1;
		}
	}
	if (j->waiting && now_ms >= j->wake_ms)
		return dispatch(node, j, now_ms, j->wait_kind);
	return 0;
}

uint64_t fm__jobs_tick(fm_node *node, uint64_t now_ms)
{
	struct fm__jobs *J = node->jobs;
	uint64_t next;

	if (J == NULL)
		return FM_DEADLINE_NONE;
	enter(node);
	if (J->gen != J->seen_gen) {
		J->seen_gen = J->gen;
		peers_changed(node, now_ms);
	}
	if (now_ms >= J->next_due) {
		struct job *j, *jnext;
		uint64_t t = FM_DEADLINE_NONE;
		J->next_due = FM_DEADLINE_NONE;
		for (j = J->head; j != NULL; j = jnext) {
			jnext = j->next;
			if (!job_timers(node, j, now_ms))
				t = min_u64(t, job_due(j));
		}
		due(J, t);
	}
	evict(J, now_ms);
	leave(node, now_ms);
	next = J->next_due;
	if (J->fifo_head != NULL)
		next = min_u64(next, J->fifo_head->finished_ms +
		                             FM_JOB_RESULT_KEEP_MS);
	if (J->gen != J->seen_gen || J->dq_head != NULL)
		next = now_ms;
	return next < now_ms ? now_ms : next;
}

/* ---- life cycle -----------------------------------------------------------
 */

int fm__jobs_new(fm_node *node, const fm_node_config *cfg)
{
	struct fm__jobs *J;
	uint8_t i, k;

	if (cfg->local_service_count > FM_NODE_SERVICES_MAX ||
	    cfg->job_strategy >= FM_JOB_ROUTE_COUNT)
		return -EINVAL;
	for (i = 0; i < cfg->local_service_count; i++) {
		const char *name = cfg->local_services[i].name;
		size_t len = strnlen(name, sizeof(cfg->local_services[i].name));
		if (len >= sizeof(cfg->local_services[i].name) ||
		    !fm__service_name_ok(name, len))
			return -EINVAL;
		for (k = 0; k < i; k++)
			if (strcmp(name, cfg->local_services[k].name) == 0)
				return -EINVAL;
	}
	J = calloc(1, sizeof(*J));
	if (J == NULL)
		return -ENOMEM;
	/* Derived, not drawn: creating a node consumes no randomness, so
	 * seeded runs of other modules replay as before. Secret all the same:
	 * a peer cannot compute it. */
	crypto_generichash(J->hash_key, sizeof(J->hash_key),
	                   node->identity.secret_key,
	                   sizeof(node->identity.secret_key),
	                   (const uint8_t *)FM__JOBS_HASH_LABEL,
	                   sizeof(FM__JOBS_HASH_LABEL) - 1);
	memcpy(J->local, cfg->local_services, sizeof(J->local));
	J->local_count = cfg->local_service_count;
	J->strategy = cfg->job_strategy;
	J->gen = 1;
	J->seen_gen = 1;
	J->next_due = FM_DEADLINE_NONE;
	node->jobs = J;
	return 0;
}

void fm__jobs_free(fm_node *node)
{
	struct fm__jobs *J;
	struct deferred *d;
	struct job *j;
	size_t b;
	int i;

	if (node == NULL || node->jobs == NULL)
		return;
	J = node->jobs;
	while ((j = J->head) != NULL) {
		J->head = j->next;
		free_job(j);
	}
	for (b = 0; b < J->served.size; b++) {
		struct hentry *e = J->served.b[b], *next;
		for (; e != NULL; e = next) {
			struct served *s = (struct served *)e;
			next = e->next;
			free(s->input);
			free(s->output);
			free(s);
		}
	}
	for (i = 0; i < FM_JOB_ROUTERS_MAX; i++) {
		if (J->routers[i] != NULL)
			fm__router_free(&J->routers[i]->r);
		free(J->routers[i]);
	}
	while ((d = J->dq_head) != NULL) {
		J->dq_head = d->next;
		free(d->data);
		free(d);
	}
	free(J->jobs.b);
	free(J->served.b);
	free(J->accts);
	free(J->zombies);
	free(J);
	node->jobs = NULL;
}

_Static_assert((int)FM_JOB_ROUTE_P2C == (int)FM__ROUTE_P2C_PEAK_EWMA &&
                       (int)FM_JOB_ROUTE_RANDOM == (int)FM__ROUTE_RANDOM &&
                       (int)FM_JOB_ROUTE_ROUND_ROBIN ==
                               (int)FM__ROUTE_ROUND_ROBIN &&
                       (int)FM_JOB_ROUTE_LEAST_PENDING ==
                               (int)FM__ROUTE_LEAST_PENDING &&
                       FM_JOB_ROUTE_COUNT == (int)FM__ROUTE_STRATEGY_COUNT,
               "public job strategies mirror the router's");
