/* The job router: given the candidates that offer a service (peers, and this
 * node itself), choose where the next attempt of a job should run so that it
 * finishes soonest. It exists as its own pure module so that the job
 * protocol (which calls it for real) and the simulator (which compares its
 * strategies side by side on the same scenario) run exactly the same code.
 *
 * Pure: no I/O, no clock (every call that depends on time takes now_ms), no
 * globals; randomness only from the caller's rand_u64 callback, so a run
 * replays from its seed. One fm__router per service; the caller owns it.
 *
 * The model (docs/ROUTING.md explains it with its references):
 * - Power of two choices over the eligible candidates, on
 *   cost = latency_ms x (pending + 1) / weight, where latency_ms is a
 *   Peak-EWMA estimate (Finagle, Linkerd: a sample above the estimate
 *   replaces it at once, lower samples pull it down with time constant
 *   FM_ROUTER_DECAY_MS, and with no samples it decays towards zero so an
 *   idle candidate is tried again), and weight = slots x
 *   clamp(1 + score / FM_ROUTER_SCORE_SCALE, FM_ROUTER_SCORE_WEIGHT_MIN,
 *   FM_ROUTER_SCORE_WEIGHT_MAX).
 * - A failure or timeout feeds a penalty sample, never lower than twice the
 *   current estimate, so a peer that fails fast never looks fast.
 * - FM_ROUTER_EJECT_AFTER consecutive failures eject a peer for
 *   FM_ROUTER_EJECT_BASE_MS x n (n-th ejection), at most
 * FM_ROUTER_EJECT_MAX_MS; then it is half-open: one trial attempt readmits or
 * re-ejects it. The local candidate is never ejected, so with no usable peer
 * work runs here.
 * - A retry budget: retries up to FM_ROUTER_RETRY_BUDGET_PCT % of the
 *   requests of the last FM_ROUTER_RETRY_WINDOW_MS, plus a reserve of
 *   FM_ROUTER_RETRY_MIN_PER_S per second of that window.
 * - A hedge delay per candidate (about its 95th percentile latency) for
 *   idempotent jobs. */
#ifndef FM_CORE_ROUTER_H
#define FM_CORE_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "fedmesh/fedmesh.h"

/* ---- parameters ------------------------------------------------------- */

#define FM_ROUTER_ID_BYTES FM_NODE_ID_BYTES
/* Candidates one router holds; upsert beyond this is -ENOSPC. */
#define FM_ROUTER_CANDIDATES_MAX 256
/* Time constant of the Peak-EWMA (Finagle's and Linkerd's default). */
#define FM_ROUTER_DECAY_MS 10000.0
/* Estimate of a candidate with no sample yet (it decays like any other). */
#define FM_ROUTER_DEFAULT_RTT_MS 100.0
/* Latency samples and estimates are clamped to [FLOOR, CAP]: the floor keeps
 * pending meaningful when everything is sub-millisecond or long idle (a
 * zero estimate would make cost ignore pending); the cap keeps repeated
 * failure penalties finite. */
#define FM_ROUTER_LATENCY_FLOOR_MS 0.1
#define FM_ROUTER_LATENCY_CAP_MS (60.0 * 60 * 1000)
/* A failure or timeout counts as a sample of
 * max(observed, FM_ROUTER_FAILURE_PENALTY_MS,
 *     FM_ROUTER_FAILURE_PENALTY_FACTOR x current estimate):
 * a failure always raises the estimate, however fast it came back. */
#define FM_ROUTER_FAILURE_PENALTY_MS 1000.0
#define FM_ROUTER_FAILURE_PENALTY_FACTOR 2.0
/* Weight: advertised slots (0 = not advertised, counted as
 * FM_ROUTER_SLOTS_DEFAULT; more than FM_ROUTER_SLOTS_MAX counted as the max,
 * so a peer cannot draw all the work by advertising 2^32 slots) times a
 * reputation factor. With FM_ROUTER_SCORE_SCALE 40 the best reputation
 * (+10, docs/REPUTATION.md) weighs 1.25 and the ban threshold (-30) 0.25. */
#define FM_ROUTER_SLOTS_DEFAULT 1
#define FM_ROUTER_SLOTS_MAX 256
#define FM_ROUTER_SCORE_SCALE 40.0
#define FM_ROUTER_SCORE_WEIGHT_MIN 0.1
#define FM_ROUTER_SCORE_WEIGHT_MAX 2.0
/* Outlier ejection (Envoy's consecutive-failure detector). */
#define FM_ROUTER_EJECT_AFTER 5 /* consecutive failures */
#define FM_ROUTER_EJECT_BASE_MS 30000ULL
#define FM_ROUTER_EJECT_MAX_MS 300000ULL
/* Each full period of this length spent admitted forgives one past
 * ejection, so a peer that recovered is not punished for an old outage. */
#define FM_ROUTER_EJECT_FORGIVE_MS FM_ROUTER_EJECT_MAX_MS
/* Retry budget (Envoy's retry_budget, Finagle's RetryBudget). */
#define FM_ROUTER_RETRY_BUDGET_PCT 20
#define FM_ROUTER_RETRY_MIN_PER_S 3
#define FM_ROUTER_RETRY_WINDOW_MS 10000ULL
#define FM_ROUTER_RETRY_BUCKETS 10 /* window granularity: 1 s */
/* Hedge delay = smoothed latency + K x mean deviation of the successful
 * samples (RFC 6298's estimators, gains 1/8 and 1/4); K = 2 puts it near
 * the 95th percentile (mean + 1.6 sigma for a normal distribution). */
#define FM_ROUTER_HEDGE_GAIN 0.125
#define FM_ROUTER_HEDGE_DEV_GAIN 0.25
#define FM_ROUTER_HEDGE_DEV_MULT 2.0
#define FM_ROUTER_HEDGE_MIN_MS 1ULL
#define FM_ROUTER_HEDGE_MAX_MS 60000ULL

/* ---- types ------------------------------------------------------------- */

enum fm__route_strategy {
	FM__ROUTE_P2C_PEAK_EWMA = 0, /* production */
	FM__ROUTE_RANDOM,            /* uniform among the eligible */
	FM__ROUTE_ROUND_ROBIN,       /* table order, skipping the ineligible */
	FM__ROUTE_LEAST_PENDING,     /* fewest pending, ties at random */
	FM__ROUTE_STRATEGY_COUNT
};

/* Tunables. fm__router_params_default() fills in the constants above; the
 * simulator changes them to compare variants. */
typedef struct fm__router_params {
	enum fm__route_strategy strategy;
	double decay_ms;
	double default_rtt_ms;
	double failure_penalty_ms;
	uint32_t eject_after; /* 0 disables ejection */
	uint64_t eject_base_ms;
	uint64_t eject_max_ms;
	uint64_t eject_forgive_ms; /* 0: ejections are never forgiven */
	uint32_t retry_budget_pct;
	uint32_t retry_min_per_s;
} fm__router_params;

enum fm__router_state {
	FM__ROUTER_ADMITTED = 0,
	FM__ROUTER_EJECTED, /* until eject_until_ms, then half-open */
};

typedef struct fm__router_candidate {
	uint8_t id[FM_ROUTER_ID_BYTES];
	uint8_t local; /* this node */
	uint8_t state; /* enum fm__router_state */
	uint32_t slots;
	double score;
	/* Peak-EWMA: the estimate as of latency_at_ms; it has decayed
	 * towards zero since (fm__router_latency_ms() applies that). */
	double latency_ms_ewma;
	uint64_t latency_at_ms;
	/* RFC 6298 estimators over successful samples, for hedging. */
	double latency_ms_smooth; /* < 0: no sample yet */
	double latency_ms_dev;
	uint32_t pending;
	uint32_t consecutive_failures;
	uint32_t ejections;      /* counts towards the next ejection's length */
	uint64_t eject_until_ms; /* when ejected: half-open from then */
	uint64_t admitted_ms;    /* last readmission, for forgiveness */
	/* metrics */
	uint64_t picks;
	uint64_t successes;
	uint64_t failures;
	uint64_t timeouts;
	uint64_t ejections_total;
} fm__router_candidate;

typedef struct fm__router_stats {
	uint64_t picks;
	uint64_t picks_local;
	uint64_t picks_none; /* -ENOENT: nothing eligible */
	uint64_t successes;
	uint64_t failures; /* timeouts included */
	uint64_t timeouts;
	uint64_t ejections;
	uint64_t readmissions;
	uint64_t requests; /* fm__router_note_request() */
	uint64_t retries_granted;
	uint64_t retries_denied;
} fm__router_stats;

struct fm__router_retry_bucket {
	uint64_t epoch; /* now_ms / bucket length + 1; 0 = unused */
	uint64_t requests;
	uint64_t retries;
};

typedef struct fm__router {
	fm__router_params params;
	uint64_t (*rand_u64)(void *ctx);
	void *rand_ctx;
	fm__router_candidate *cands; /* grown on demand, up to the max */
	size_t count;
	size_t cap;
	size_t rr_cursor; /* round robin: next table index to consider */
	struct fm__router_retry_bucket retry[FM_ROUTER_RETRY_BUCKETS];
	uint64_t retry_epoch; /* latest epoch seen: the clock never goes back */
	fm__router_stats stats;
} fm__router;

/* ---- API --------------------------------------------------------------- */

/* Fills p with the FM_ROUTER_* defaults and the P2C Peak-EWMA strategy. */
void fm__router_params_default(fm__router_params *p);
/* Initialises an empty router (fresh or freed); allocates nothing. params
 * NULL = defaults. rand_u64 is required: the core passes its fm_io
 * randomness, the simulator a per-node seeded stream. -EINVAL for a NULL
 * argument or unusable params. */
int fm__router_init(fm__router *r, uint64_t (*rand_u64)(void *ctx),
                    void *rand_ctx, const fm__router_params *params);
/* Frees the table. Accepts NULL; the router may be initialised again. */
void fm__router_free(fm__router *r);

/* Adds a candidate or updates its slots, score and local flag (its
 * estimates, pending count and ejection state are kept). A new candidate
 * starts at the default latency as of now_ms. -EINVAL for a NULL id,
 * -EEXIST when another candidate is already the local one, -ENOSPC past
 * FM_ROUTER_CANDIDATES_MAX, -ENOMEM. */
int fm__router_upsert(fm__router *r, uint64_t now_ms,
                      const uint8_t id[FM_ROUTER_ID_BYTES], int local,
                      uint32_t slots, double score);
/* Forgets a candidate (it left, or no longer offers the service). Results
 * of its attempts still in flight are then ignored. No-op when unknown. */
void fm__router_remove(fm__router *r, const uint8_t id[FM_ROUTER_ID_BYTES]);

/* Chooses the candidate for the next attempt. exclude_ids holds
 * exclude_count IDs of FM_ROUTER_ID_BYTES each (the candidates this job
 * already tried), skipped like ejected ones; the local candidate is never
 * ejected but is skipped when excluded. An ejected peer whose period is
 * over is eligible for one trial attempt at a time. Writes the ID and
 * returns 0, or -ENOENT when nothing is eligible (-EINVAL for bad args).
 * Does not count the attempt as pending: call fm__router_start() when it is
 * sent. */
int fm__router_pick(fm__router *r, uint64_t now_ms, const uint8_t *exclude_ids,
                    size_t exclude_count, uint8_t out_id[FM_ROUTER_ID_BYTES]);

/* An attempt was sent to id (pending + 1). */
void fm__router_start(fm__router *r, const uint8_t id[FM_ROUTER_ID_BYTES],
                      uint64_t now_ms);
/* The attempt returned a result after latency_ms. A job that ran and exited
 * non-zero is a success here: routing judges the node, not the job. */
void fm__router_success(fm__router *r, const uint8_t id[FM_ROUTER_ID_BYTES],
                        uint64_t now_ms, double latency_ms);
/* The attempt failed (refused, session lost, error) or, timeout != 0, got
 * no answer in time, after latency_ms. Feeds the penalty sample, counts a
 * consecutive failure, and may eject the candidate. */
void fm__router_failure(fm__router *r, const uint8_t id[FM_ROUTER_ID_BYTES],
                        uint64_t now_ms, double latency_ms, int timeout);

/* Retry budget. Call fm__router_note_request() once per job's first
 * attempt. fm__router_may_retry() asks for one retry (or hedge) now:
 * 1 = granted and counted against the budget, 0 = denied (the job waits or
 * fails; see docs/ROUTING.md for failover after a peer is gone). Granting
 * is counting, so the check and the accounting cannot drift apart. */
void fm__router_note_request(fm__router *r, uint64_t now_ms);
int fm__router_may_retry(fm__router *r, uint64_t now_ms);

/* How long to wait for an attempt on id before hedging a second one
 * (idempotent jobs only, and only if fm__router_may_retry() grants it):
 * about the candidate's 95th percentile latency, in whole ms, within
 * [FM_ROUTER_HEDGE_MIN_MS, FM_ROUTER_HEDGE_MAX_MS]. Unknown or unmeasured
 * candidates get the default latency's figure. */
uint64_t fm__router_hedge_delay_ms(const fm__router *r,
                                   const uint8_t id[FM_ROUTER_ID_BYTES]);

/* When the next ejection ends (a peer becomes eligible again), or
 * FM_DEADLINE_NONE: a job waiting on -ENOENT can sleep until then. */
uint64_t fm__router_next_deadline_ms(const fm__router *r, uint64_t now_ms);

/* Inspection, for metrics, the simulator and tests. */
size_t fm__router_count(const fm__router *r);
const fm__router_candidate *fm__router_at(const fm__router *r, size_t index);
const fm__router_candidate *
fm__router_find(const fm__router *r, const uint8_t id[FM_ROUTER_ID_BYTES]);
/* Peak-EWMA estimate of c at now_ms (decayed, floored). */
double fm__router_latency_ms(const fm__router *r, const fm__router_candidate *c,
                             uint64_t now_ms);
double fm__router_weight(const fm__router_candidate *c);
/* latency x (pending + 1) / weight. */
double fm__router_cost(const fm__router *r, const fm__router_candidate *c,
                       uint64_t now_ms);
/* 1 when c is ejected and its period has not ended at now_ms. */
int fm__router_is_ejected(const fm__router_candidate *c, uint64_t now_ms);
void fm__router_get_stats(const fm__router *r, fm__router_stats *out);
const char *fm__route_strategy_name(enum fm__route_strategy s);
/* Parses "p2c_peak_ewma", "random", "round_robin", "least_pending". */
int fm__route_strategy_parse(const char *name, enum fm__route_strategy *out);

#endif
