/* The job router (router.h; docs/ROUTING.md): where the next attempt of a
 * job should run. Kept apart from the job protocol so that the simulator
 * can drive the very same decisions with a virtual clock and compare
 * strategies; hence no I/O, no clock and no randomness of its own.
 *
 * Two choices worth a note here, the rest is in docs/ROUTING.md:
 * - Estimates are decayed lazily, at read time, without being written back:
 *   reading a cost does not change the router, so picks that were not
 *   taken leave no trace and a pick sequence depends only on the events
 *   fed in (Finagle and tower write the decay back on every read).
 * - exp() is not on the core's allowlist (tests/core-purity.sh); the decay
 *   uses pow(e, x), which libm computes as exp(x). */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/router.h"

/* e, for pow(FM__ROUTER_E, x) = exp(x). */
#define FM__ROUTER_E 2.718281828459045235
/* First allocation of the candidate table; it doubles from there. */
#define FM__ROUTER_INITIAL_CAP 8

static const char *const strategy_names[FM__ROUTE_STRATEGY_COUNT] = {
        [FM__ROUTE_P2C_PEAK_EWMA] = "p2c_peak_ewma",
        [FM__ROUTE_RANDOM] = "random",
        [FM__ROUTE_ROUND_ROBIN] = "round_robin",
        [FM__ROUTE_LEAST_PENDING] = "least_pending",
};

void fm__router_params_default(fm__router_params *p)
{
	memset(p, 0, sizeof(*p));
	p->strategy = FM__ROUTE_P2C_PEAK_EWMA;
	p->decay_ms = FM_ROUTER_DECAY_MS;
	p->default_rtt_ms = FM_ROUTER_DEFAULT_RTT_MS;
	p->failure_penalty_ms = FM_ROUTER_FAILURE_PENALTY_MS;
	p->eject_after = FM_ROUTER_EJECT_AFTER;
	p->eject_base_ms = FM_ROUTER_EJECT_BASE_MS;
	p->eject_max_ms = FM_ROUTER_EJECT_MAX_MS;
	p->eject_forgive_ms = FM_ROUTER_EJECT_FORGIVE_MS;
	p->retry_budget_pct = FM_ROUTER_RETRY_BUDGET_PCT;
	p->retry_min_per_s = FM_ROUTER_RETRY_MIN_PER_S;
}

static int params_valid(const fm__router_params *p)
{
	if ((unsigned)p->strategy >= FM__ROUTE_STRATEGY_COUNT)
		return 0;
	/* Written so that NaN fails every test. */
	if (!(p->decay_ms > 0 && p->decay_ms <= FM_ROUTER_LATENCY_CAP_MS))
		return 0;
	if (!(p->default_rtt_ms >= 0 &&
	      p->default_rtt_ms <= FM_ROUTER_LATENCY_CAP_MS))
		return 0;
	if (!(p->failure_penalty_ms >= 0 &&
	      p->failure_penalty_ms <= FM_ROUTER_LATENCY_CAP_MS))
		return 0;
	if (p->eject_after > 0 &&
	    (p->eject_base_ms == 0 || p->eject_max_ms < p->eject_base_ms))
		return 0;
	return 1;
}

int fm__router_init(fm__router *r, uint64_t (*rand_u64)(void *ctx),
                    void *rand_ctx, const fm__router_params *params)
{
	fm__router_params p;

	if (r == NULL || rand_u64 == NULL)
		return -EINVAL;
	if (params != NULL)
		p = *params;
	else
		fm__router_params_default(&p);
	if (!params_valid(&p))
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	r->params = p;
	r->rand_u64 = rand_u64;
	r->rand_ctx = rand_ctx;
	return 0;
}

void fm__router_free(fm__router *r)
{
	if (r == NULL)
		return;
	free(r->cands);
	r->cands = NULL;
	r->count = 0;
	r->cap = 0;
	r->rr_cursor = 0;
}

/* ---- estimates ---------------------------------------------------------- */

static double clamp_latency(double ms)
{
	if (!(ms >= FM_ROUTER_LATENCY_FLOOR_MS)) /* NaN too */
		return FM_ROUTER_LATENCY_FLOOR_MS;
	if (ms > FM_ROUTER_LATENCY_CAP_MS)
		return FM_ROUTER_LATENCY_CAP_MS;
	return ms;
}

/* exp(-elapsed / tau): the weight the old estimate keeps after elapsed. */
static double decay_weight(const fm__router *r, uint64_t from_ms,
                           uint64_t now_ms)
{
	if (now_ms <= from_ms)
		return 1.0;
	return pow(FM__ROUTER_E,
	           -(double)(now_ms - from_ms) / r->params.decay_ms);
}

double fm__router_latency_ms(const fm__router *r, const fm__router_candidate *c,
                             uint64_t now_ms)
{
	double v =
	        c->latency_ms_ewma * decay_weight(r, c->latency_at_ms, now_ms);

	return clamp_latency(v);
}

/* Peak-EWMA update: a sample above the current (decayed) estimate replaces
 * it; a lower one is blended in with weight 1 - exp(-elapsed / tau), so the
 * estimate falls towards steady samples with time constant tau whatever
 * their rate. */
static void observe(const fm__router *r, fm__router_candidate *c,
                    uint64_t now_ms, double sample_ms)
{
	double w = decay_weight(r, c->latency_at_ms, now_ms);
	double cur = c->latency_ms_ewma * w;

	sample_ms = clamp_latency(sample_ms);
	if (sample_ms > cur)
		c->latency_ms_ewma = sample_ms;
	else
		c->latency_ms_ewma = cur + sample_ms * (1.0 - w);
	if (now_ms > c->latency_at_ms)
		c->latency_at_ms = now_ms;
}

/* RFC 6298's SRTT and RTTVAR, over successful samples only: the hedge
 * delay is about how long a good answer takes. */
static void observe_hedge(fm__router_candidate *c, double sample_ms)
{
	double diff;

	sample_ms = clamp_latency(sample_ms);
	if (c->latency_ms_smooth < 0) {
		c->latency_ms_smooth = sample_ms;
		c->latency_ms_dev = sample_ms / 2;
		return;
	}
	diff = c->latency_ms_smooth - sample_ms;
	if (diff < 0)
		diff = -diff;
	c->latency_ms_dev +=
	        FM_ROUTER_HEDGE_DEV_GAIN * (diff - c->latency_ms_dev);
	c->latency_ms_smooth +=
	        FM_ROUTER_HEDGE_GAIN * (sample_ms - c->latency_ms_smooth);
}

double fm__router_weight(const fm__router_candidate *c)
{
	double slots = c->slots;
	double f;

	if (c->slots == 0)
		slots = FM_ROUTER_SLOTS_DEFAULT;
	else if (c->slots > FM_ROUTER_SLOTS_MAX)
		slots = FM_ROUTER_SLOTS_MAX;
	f = 1.0 + c->score / FM_ROUTER_SCORE_SCALE;
	if (!(f >= FM_ROUTER_SCORE_WEIGHT_MIN))
		f = FM_ROUTER_SCORE_WEIGHT_MIN;
	else if (f > FM_ROUTER_SCORE_WEIGHT_MAX)
		f = FM_ROUTER_SCORE_WEIGHT_MAX;
	return slots * f;
}

double fm__router_cost(const fm__router *r, const fm__router_candidate *c,
                       uint64_t now_ms)
{
	return fm__router_latency_ms(r, c, now_ms) * ((double)c->pending + 1) /
	       fm__router_weight(c);
}

/* ---- table --------------------------------------------------------------- */

static fm__router_candidate *find(const fm__router *r,
                                  const uint8_t id[FM_ROUTER_ID_BYTES])
{
	size_t i;

	if (r == NULL || id == NULL)
		return NULL;
	for (i = 0; i < r->count; i++)
		if (memcmp(r->cands[i].id, id, FM_ROUTER_ID_BYTES) == 0)
			return &r->cands[i];
	return NULL;
}

const fm__router_candidate *
fm__router_find(const fm__router *r, const uint8_t id[FM_ROUTER_ID_BYTES])
{
	return find(r, id);
}

size_t fm__router_count(const fm__router *r)
{
	return r->count;
}

const fm__router_candidate *fm__router_at(const fm__router *r, size_t index)
{
	return index < r->count ? &r->cands[index] : NULL;
}

static int grow(fm__router *r)
{
	fm__router_candidate *n;
	size_t cap;

	if (r->count < r->cap)
		return 0;
	cap = r->cap ? r->cap * 2 : FM__ROUTER_INITIAL_CAP;
	if (cap > FM_ROUTER_CANDIDATES_MAX)
		cap = FM_ROUTER_CANDIDATES_MAX;
	n = realloc(r->cands, cap * sizeof(*n));
	if (n == NULL)
		return -ENOMEM;
	r->cands = n;
	r->cap = cap;
	return 0;
}

int fm__router_upsert(fm__router *r, uint64_t now_ms,
                      const uint8_t id[FM_ROUTER_ID_BYTES], int local,
                      uint32_t slots, double score)
{
	fm__router_candidate *c;
	size_t i;
	int err;

	if (r == NULL || id == NULL)
		return -EINVAL;
	if (score != score) /* NaN: no opinion */
		score = 0;
	c = find(r, id);
	if (local) {
		for (i = 0; i < r->count; i++)
			if (r->cands[i].local && &r->cands[i] != c)
				return -EEXIST;
	}
	if (c != NULL) {
		c->local = local ? 1 : 0;
		c->slots = slots;
		c->score = score;
		if (c->local) /* the local candidate is never ejected */
			c->state = FM__ROUTER_ADMITTED;
		return 0;
	}
	if (r->count >= FM_ROUTER_CANDIDATES_MAX)
		return -ENOSPC;
	err = grow(r);
	if (err < 0)
		return err;
	c = &r->cands[r->count++];
	memset(c, 0, sizeof(*c));
	memcpy(c->id, id, FM_ROUTER_ID_BYTES);
	c->local = local ? 1 : 0;
	c->state = FM__ROUTER_ADMITTED;
	c->slots = slots;
	c->score = score;
	c->latency_ms_ewma = r->params.default_rtt_ms;
	c->latency_at_ms = now_ms;
	c->latency_ms_smooth = -1;
	c->admitted_ms = now_ms;
	return 0;
}

void fm__router_remove(fm__router *r, const uint8_t id[FM_ROUTER_ID_BYTES])
{
	fm__router_candidate *c = find(r, id);
	size_t i;

	if (c == NULL)
		return;
	i = (size_t)(c - r->cands);
	r->count--;
	if (i != r->count)
		r->cands[i] = r->cands[r->count];
}

/* ---- ejection ------------------------------------------------------------ */

int fm__router_is_ejected(const fm__router_candidate *c, uint64_t now_ms)
{
	return c->state == FM__ROUTER_EJECTED && now_ms < c->eject_until_ms;
}

static void eject(fm__router *r, fm__router_candidate *c, uint64_t now_ms)
{
	const fm__router_params *p = &r->params;
	uint64_t n_max =
	        (p->eject_max_ms + p->eject_base_ms - 1) / p->eject_base_ms;
	uint64_t len;

	assert(!c->local);
	/* Time spent admitted since the last readmission forgives. */
	if (c->state == FM__ROUTER_ADMITTED && p->eject_forgive_ms > 0 &&
	    now_ms > c->admitted_ms) {
		uint64_t forgiven =
		        (now_ms - c->admitted_ms) / p->eject_forgive_ms;

		c->ejections = forgiven >= c->ejections
		                       ? 0
		                       : c->ejections - (uint32_t)forgiven;
	}
	if (c->ejections < n_max)
		c->ejections++;
	len = p->eject_base_ms * c->ejections;
	if (len > p->eject_max_ms)
		len = p->eject_max_ms;
	c->state = FM__ROUTER_EJECTED;
	c->eject_until_ms = now_ms + len;
	c->ejections_total++;
	r->stats.ejections++;
}

uint64_t fm__router_next_deadline_ms(const fm__router *r, uint64_t now_ms)
{
	uint64_t next = FM_DEADLINE_NONE;
	size_t i;

	for (i = 0; i < r->count; i++) {
		const fm__router_candidate *c = &r->cands[i];

		if (fm__router_is_ejected(c, now_ms) &&
		    c->eject_until_ms < next)
			next = c->eject_until_ms;
	}
	return next;
}

/* ---- picking ------------------------------------------------------------- */

static int excluded(const uint8_t id[FM_ROUTER_ID_BYTES],
                    const uint8_t *exclude_ids, size_t exclude_count)
{
	size_t i;

	for (i = 0; i < exclude_count; i++)
		if (memcmp(exclude_ids + i * FM_ROUTER_ID_BYTES, id,
		           FM_ROUTER_ID_BYTES) == 0)
			return 1;
	return 0;
}

static int eligible(const fm__router_candidate *c, uint64_t now_ms)
{
	if (c->local || c->state == FM__ROUTER_ADMITTED)
		return 1;
	if (now_ms < c->eject_until_ms)
		return 0;
	/* Half-open: one trial attempt at a time. */
	return c->pending == 0;
}

/* Uniform in [0, n), n > 0. The modulo bias is below n / 2^64: nothing for
 * n <= FM_ROUTER_CANDIDATES_MAX. */
static size_t below(fm__router *r, size_t n)
{
	assert(n > 0);
	return (size_t)(r->rand_u64(r->rand_ctx) % n);
}

static size_t pick_p2c(fm__router *r, const uint16_t *idx, size_t n,
                       uint64_t now_ms)
{
	size_t a, b;

	if (n == 1)
		return idx[0];
	a = below(r, n);
	b = below(r, n - 1);
	if (b >= a)
		b++;
	if (fm__router_cost(r, &r->cands[idx[b]], now_ms) <
	    fm__router_cost(r, &r->cands[idx[a]], now_ms))
		return idx[b];
	return idx[a];
}

static size_t pick_round_robin(fm__router *r, const uint16_t *idx, size_t n)
{
	size_t i;

	/* idx is in table order: the first at or after the cursor, else
	 * wrap around. */
	for (i = 0; i < n; i++)
		if (idx[i] >= r->rr_cursor)
			return idx[i];
	return idx[0];
}

static size_t pick_least_pending(fm__router *r, const uint16_t *idx, size_t n)
{
	size_t best = idx[0], ties = 1, i;

	for (i = 1; i < n; i++) {
		const fm__router_candidate *c = &r->cands[idx[i]];

		if (c->pending < r->cands[best].pending) {
			best = idx[i];
			ties = 1;
		} else if (c->pending == r->cands[best].pending) {
			/* Reservoir sampling: each tie equally likely. */
			ties++;
			if (below(r, ties) == 0)
				best = idx[i];
		}
	}
	return best;
}

int fm__router_pick(fm__router *r, uint64_t now_ms, const uint8_t *exclude_ids,
                    size_t exclude_count, uint8_t out_id[FM_ROUTER_ID_BYTES])
{
	uint16_t idx[FM_ROUTER_CANDIDATES_MAX];
	fm__router_candidate *c;
	size_t n = 0, i, choice;

	if (r == NULL || out_id == NULL ||
	    (exclude_count > 0 && exclude_ids == NULL))
		return -EINVAL;
	assert(r->count <= FM_ROUTER_CANDIDATES_MAX);
	for (i = 0; i < r->count; i++) {
		c = &r->cands[i];
		if (eligible(c, now_ms) &&
		    !excluded(c->id, exclude_ids, exclude_count))
			idx[n++] = (uint16_t)i;
	}
	if (n == 0) {
		r->stats.picks_none++;
		return -ENOENT;
	}
	switch (r->params.strategy) {
	case FM__ROUTE_RANDOM:
		choice = idx[below(r, n)];
		break;
	case FM__ROUTE_ROUND_ROBIN:
		choice = pick_round_robin(r, idx, n);
		r->rr_cursor = choice + 1;
		break;
	case FM__ROUTE_LEAST_PENDING:
		choice = pick_least_pending(r, idx, n);
		break;
	case FM__ROUTE_P2C_PEAK_EWMA:
	default:
		choice = pick_p2c(r, idx, n, now_ms);
		break;
	}
	c = &r->cands[choice];
	memcpy(out_id, c->id, FM_ROUTER_ID_BYTES);
	c->picks++;
	r->stats.picks++;
	if (c->local)
		r->stats.picks_local++;
	return 0;
}

/* ---- outcomes ------------------------------------------------------------ */

void fm__router_start(fm__router *r, const uint8_t id[FM_ROUTER_ID_BYTES],
                      uint64_t now_ms)
{
	fm__router_candidate *c = find(r, id);

	(void)now_ms; /* kept for symmetry and future use (in-flight age) */
	if (c != NULL && c->pending < UINT32_MAX)
		c->pending++;
}

/* An attempt ended; results of attempts the table lost track of (the
 * candidate was removed and added again) must not wrap the count. */
static void attempt_done(fm__router_candidate *c)
{
	if (c->pending > 0)
		c->pending--;
}

void fm__router_success(fm__router *r, const uint8_t id[FM_ROUTER_ID_BYTES],
                        uint64_t now_ms, double latency_ms)
{
	fm__router_candidate *c = find(r, id);

	if (c == NULL)
		return;
	attempt_done(c);
	c->successes++;
	r->stats.successes++;
	c->consecutive_failures = 0;
	observe(r, c, now_ms, latency_ms);
	observe_hedge(c, latency_ms);
	/* The half-open trial succeeded. A late success of an attempt sent
	 * before the ejection does not cut the period short. */
	if (c->state == FM__ROUTER_EJECTED && now_ms >= c->eject_until_ms) {
		c->state = FM__ROUTER_ADMITTED;
		c->admitted_ms = now_ms;
		r->stats.readmissions++;
	}
}

void fm__router_failure(fm__router *r, const uint8_t id[FM_ROUTER_ID_BYTES],
                        uint64_t now_ms, double latency_ms, int timeout)
{
	fm__router_candidate *c = find(r, id);
	double sample, floor_ms;

	if (c == NULL)
		return;
	attempt_done(c);
	c->failures++;
	r->stats.failures++;
	if (timeout) {
		c->timeouts++;
		r->stats.timeouts++;
	}
	/* The penalty: never below the configured figure, and never below
	 * twice what the candidate costs now, so a failure always raises the
	 * estimate (linkerd2 #11669: fast failures made a peer look fast). */
	sample = clamp_latency(latency_ms);
	floor_ms = FM_ROUTER_FAILURE_PENALTY_FACTOR *
	           fm__router_latency_ms(r, c, now_ms);
	if (sample < r->params.failure_penalty_ms)
		sample = r->params.failure_penalty_ms;
	if (sample < floor_ms)
		sample = floor_ms;
	observe(r, c, now_ms, sample);
	if (c->consecutive_failures < UINT32_MAX)
		c->consecutive_failures++;
	if (c->local || r->params.eject_after == 0)
		return;
	if (c->state == FM__ROUTER_EJECTED) {
		/* The half-open trial failed: out again, for longer. A late
		 * failure inside the period changes nothing. */
		if (now_ms >= c->eject_until_ms)
			eject(r, c, now_ms);
		return;
	}
	if (c->consecutive_failures >= r->params.eject_after)
		eject(r, c, now_ms);
}

/* ---- retry budget -------------------------------------------------------- */

#define FM__ROUTER_RETRY_BUCKET_MS \
	(FM_ROUTER_RETRY_WINDOW_MS / FM_ROUTER_RETRY_BUCKETS)

/* The current window bucket; the clock is not allowed to run backwards. */
static struct fm__router_retry_bucket *retry_bucket(fm__router *r,
                                                    uint64_t now_ms)
{
	uint64_t e = now_ms / FM__ROUTER_RETRY_BUCKET_MS + 1;
	struct fm__router_retry_bucket *b;

	if (e < r->retry_epoch)
		e = r->retry_epoch;
	r->retry_epoch = e;
	b = &r->retry[e % FM_ROUTER_RETRY_BUCKETS];
	if (b->epoch != e) {
		b->epoch = e;
		b->requests = 0;
		b->retries = 0;
	}
	return b;
}

void fm__router_note_request(fm__router *r, uint64_t now_ms)
{
	retry_bucket(r, now_ms)->requests++;
	r->stats.requests++;
}

int fm__router_may_retry(fm__router *r, uint64_t now_ms)
{
	struct fm__router_retry_bucket *cur = retry_bucket(r, now_ms);
	uint64_t e = cur->epoch, requests = 0, retries = 0, allowed;
	size_t i;

	for (i = 0; i < FM_ROUTER_RETRY_BUCKETS; i++) {
		const struct fm__router_retry_bucket *b = &r->retry[i];

		if (b->epoch != 0 && b->epoch <= e &&
		    b->epoch + FM_ROUTER_RETRY_BUCKETS > e) {
			requests += b->requests;
			retries += b->retries;
		}
	}
	allowed = requests * r->params.retry_budget_pct / 100 +
	          (uint64_t)r->params.retry_min_per_s *
	                  FM_ROUTER_RETRY_WINDOW_MS / 1000;
	if (retries >= allowed) {
		r->stats.retries_denied++;
		return 0;
	}
	cur->retries++;
	r->stats.retries_granted++;
	return 1;
}

/* ---- hedging ------------------------------------------------------------- */

uint64_t fm__router_hedge_delay_ms(const fm__router *r,
                                   const uint8_t id[FM_ROUTER_ID_BYTES])
{
	const fm__router_candidate *c = find(r, id);
	double smooth = r->params.default_rtt_ms;
	double dev = r->params.default_rtt_ms / 2; /* RFC 6298's first RTTVAR */
	double d;
	uint64_t ms;

	if (c != NULL && c->latency_ms_smooth >= 0) {
		smooth = c->latency_ms_smooth;
		dev = c->latency_ms_dev;
	}
	d = smooth + FM_ROUTER_HEDGE_DEV_MULT * dev;
	if (!(d >= (double)FM_ROUTER_HEDGE_MIN_MS))
		return FM_ROUTER_HEDGE_MIN_MS;
	if (d >= (double)FM_ROUTER_HEDGE_MAX_MS)
		return FM_ROUTER_HEDGE_MAX_MS;
	ms = (uint64_t)d;
	if ((double)ms < d) /* round up */
		ms++;
	return ms;
}

/* ---- names and stats ----------------------------------------------------- */

void fm__router_get_stats(const fm__router *r, fm__router_stats *out)
{
	*out = r->stats;
}

const char *fm__route_strategy_name(enum fm__route_strategy s)
{
	if ((unsigned)s >= FM__ROUTE_STRATEGY_COUNT)
		return "unknown";
	return strategy_names[s];
}

int fm__route_strategy_parse(const char *name, enum fm__route_strategy *out)
{
	int i;

	if (name == NULL || out == NULL)
		return -EINVAL;
	for (i = 0; i < FM__ROUTE_STRATEGY_COUNT; i++) {
		if (strcmp(name, strategy_names[i]) == 0) {
			*out = (enum fm__route_strategy)i;
			return 0;
		}
	}
	return -EINVAL;
}
