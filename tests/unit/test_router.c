/* Tests of the job router (src/core/router.c), driven with a fake clock and
 * a seeded xorshift, so every run is the same run. Most tests use a small
 * discrete-event loop: jobs arrive at a fixed rate, the router picks, the
 * attempt stays pending for the candidate's latency and then reports
 * success or failure, so pending counts feed back into the cost as they
 * would in the daemon or the simulator. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four above first. */
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/router.h"

#define TEST_SEED 0x9e3779b97f4a7c15ULL
#define TEST_T0 1000000ULL
#define TEST_CANDS_MAX 8
#define TEST_LOCAL 0 /* candidate index of the local node, when present */
#define INFLIGHT_MAX 4096
#define FAST_MS 20.0
#define SLOW_MS 200.0 /* 10 x FAST_MS */
#define FAIL_FAST_MS 1.0
#define WARMUP_PICKS 1000
#define MEASURE_PICKS 10000
#define EPS 1e-6
#define JITTER_PCT 25
#define JITTER_STREAM 0x5bd1e995ULL

/* ---- helpers ------------------------------------------------------------- */

static uint64_t xorshift(void *ctx)
{
	uint64_t *s = ctx;

	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static void make_id(uint8_t id[FM_ROUTER_ID_BYTES], unsigned n)
{
	memset(id, 0xa5, FM_ROUTER_ID_BYTES);
	id[0] = (uint8_t)n;
}

static unsigned id_index(const uint8_t id[FM_ROUTER_ID_BYTES])
{
	return id[0];
}

/* One candidate of the fake world: how it answers. */
struct behaviour {
	double latency_ms;
	int fails;
};

struct attempt {
	uint64_t done_ms;
	uint64_t start_ms;
	unsigned cand;
};

struct world {
	fm__router r;
	uint64_t seed;
	uint64_t now;
	struct behaviour b[TEST_CANDS_MAX];
	size_t ncands;
	struct attempt inflight[INFLIGHT_MAX];
	size_t ninflight;
	uint64_t picks[TEST_CANDS_MAX];
	/* Latencies vary by +-jitter_pct %, from a stream of their own. */
	unsigned jitter_pct;
	uint64_t jitter_seed;
};

static void world_init(struct world *w, enum fm__route_strategy s,
                       uint64_t seed)
{
	fm__router_params p;

	memset(w, 0, sizeof(*w));
	w->seed = seed;
	w->jitter_seed = seed ^ JITTER_STREAM;
	w->now = TEST_T0;
	fm__router_params_default(&p);
	p.strategy = s;
	assert_int_equal(fm__router_init(&w->r, xorshift, &w->seed, &p), 0);
}

static void world_add(struct world *w, int local, uint32_t slots, double score,
                      double latency_ms, int fails)
{
	uint8_t id[FM_ROUTER_ID_BYTES];

	assert_true(w->ncands < TEST_CANDS_MAX);
	make_id(id, (unsigned)w->ncands);
	assert_int_equal(
	        fm__router_upsert(&w->r, w->now, id, local, slots, score), 0);
	w->b[w->ncands].latency_ms = latency_ms;
	w->b[w->ncands].fails = fails;
	w->ncands++;
}

static void world_complete(struct world *w)
{
	size_t i = 0;
	uint8_t id[FM_ROUTER_ID_BYTES];

	while (i < w->ninflight) {
		struct attempt *a = &w->inflight[i];
		double lat;

		if (a->done_ms > w->now) {
			i++;
			continue;
		}
		make_id(id, a->cand);
		lat = (double)(a->done_ms - a->start_ms);
		if (w->b[a->cand].fails)
			fm__router_failure(&w->r, id, a->done_ms, lat, 0);
		else
			fm__router_success(&w->r, id, a->done_ms, lat);
		*a = w->inflight[--w->ninflight];
	}
}

/* One job: pick, start, schedule its outcome. Returns the index. */
static unsigned world_dispatch(struct world *w)
{
	uint8_t id[FM_ROUTER_ID_BYTES];
	struct attempt *a;
	double lat;
	unsigned c;

	world_complete(w);
	assert_int_equal(fm__router_pick(&w->r, w->now, NULL, 0, id), 0);
	c = id_index(id);
	assert_true(c < w->ncands);
	fm__router_start(&w->r, id, w->now);
	assert_true(w->ninflight < INFLIGHT_MAX);
	a = &w->inflight[w->ninflight++];
	a->cand = c;
	a->start_ms = w->now;
	lat = w->b[c].latency_ms;
	if (w->jitter_pct > 0) {
		uint64_t span = 2 * (uint64_t)w->jitter_pct + 1;
		double pct = (double)(xorshift(&w->jitter_seed) % span) -
		             w->jitter_pct;

		lat *= 1 + pct / 100;
	}
	a->done_ms = w->now + (uint64_t)(lat + 0.5);
	w->picks[c]++;
	return c;
}

/* n jobs, per_ms of them each millisecond (or one every -per_ms ms). */
static void world_run(struct world *w, size_t n, int per_ms)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (per_ms > 0) {
			if (i % (size_t)per_ms == 0)
				w->now++;
		} else {
			w->now += (uint64_t)-per_ms;
		}
		world_dispatch(w);
	}
}

static void world_reset_counts(struct world *w)
{
	memset(w->picks, 0, sizeof(w->picks));
}

static void world_free(struct world *w)
{
	fm__router_free(&w->r);
}

/* ---- Peak-EWMA mechanics --------------------------------------------------
 */

static void test_peak_ewma(void **state)
{
	struct world w;
	const fm__router_candidate *c;
	uint8_t id[FM_ROUTER_ID_BYTES];
	double want;

	(void)state;
	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	make_id(id, 0);
	c = fm__router_find(&w.r, id);
	assert_non_null(c);
	/* A new candidate starts at the default. */
	assert_true(fabs(fm__router_latency_ms(&w.r, c, w.now) -
	                 FM_ROUTER_DEFAULT_RTT_MS) < EPS);
	/* A higher sample is taken at once (the peak). */
	fm__router_start(&w.r, id, w.now);
	fm__router_success(&w.r, id, w.now, 500);
	assert_true(fabs(fm__router_latency_ms(&w.r, c, w.now) - 500) < EPS);
	/* Without samples it decays towards zero: e^-1 after tau. */
	want = 500 * exp(-1.0);
	assert_true(
	        fabs(fm__router_latency_ms(
	                     &w.r, c, w.now + (uint64_t)FM_ROUTER_DECAY_MS) -
	             want) < 1e-3);
	/* A lower sample after tau is blended with weight 1 - e^-1. */
	w.now += (uint64_t)FM_ROUTER_DECAY_MS;
	fm__router_start(&w.r, id, w.now);
	fm__router_success(&w.r, id, w.now, 20);
	want = 500 * exp(-1.0) + 20 * (1 - exp(-1.0));
	assert_true(fabs(fm__router_latency_ms(&w.r, c, w.now) - want) < 1e-3);
	/* Steady samples bring it down to them. */
	for (int i = 0; i < 2000; i++) {
		w.now += 100;
		fm__router_start(&w.r, id, w.now);
		fm__router_success(&w.r, id, w.now, 20);
	}
	assert_true(fabs(fm__router_latency_ms(&w.r, c, w.now) - 20) < 0.01);
	/* Pending multiplies the cost. */
	fm__router_start(&w.r, id, w.now);
	fm__router_start(&w.r, id, w.now);
	assert_true(fabs(fm__router_cost(&w.r, c, w.now) -
	                 3 * fm__router_latency_ms(&w.r, c, w.now)) < EPS);
	/* A fast failure is a penalty sample, not a fast one. */
	fm__router_failure(&w.r, id, w.now, FAIL_FAST_MS, 0);
	assert_true(fm__router_latency_ms(&w.r, c, w.now) >=
	            FM_ROUTER_FAILURE_PENALTY_MS);
	/* And never lowers a high estimate. */
	fm__router_success(&w.r, id, w.now, 5000);
	fm__router_failure(&w.r, id, w.now, FAIL_FAST_MS, 1);
	assert_true(fm__router_latency_ms(&w.r, c, w.now) >= 10000 - EPS);
	assert_int_equal(c->pending, 0);
	/* Garbage samples are clamped, not propagated. */
	fm__router_success(&w.r, id, w.now + 1, NAN);
	fm__router_success(&w.r, id, w.now + 2, -5);
	assert_false(isnan(fm__router_latency_ms(&w.r, c, w.now + 3)));
	assert_int_equal(c->pending, 0); /* never wraps */
	world_free(&w);
}

static void test_weight(void **state)
{
	fm__router_candidate c;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.slots = 3;
	assert_true(fabs(fm__router_weight(&c) - 3) < EPS);
	c.score = 10; /* the best reputation */
	assert_true(fabs(fm__router_weight(&c) - 3.75) < EPS);
	c.score = -30; /* the ban threshold */
	assert_true(fabs(fm__router_weight(&c) - 0.75) < EPS);
	c.score = -1e9;
	assert_true(fabs(fm__router_weight(&c) -
	                 3 * FM_ROUTER_SCORE_WEIGHT_MIN) < EPS);
	c.score = 1e9;
	assert_true(fabs(fm__router_weight(&c) -
	                 3 * FM_ROUTER_SCORE_WEIGHT_MAX) < EPS);
	c.score = 0;
	c.slots = 0; /* not advertised */
	assert_true(fabs(fm__router_weight(&c) - FM_ROUTER_SLOTS_DEFAULT) <
	            EPS);
	c.slots = UINT32_MAX; /* a lie is capped */
	assert_true(fabs(fm__router_weight(&c) - FM_ROUTER_SLOTS_MAX) < EPS);
}

/* ---- routing behaviour ----------------------------------------------------
 */

/* Three peers, one 10 x slower: after warm-up it gets < 10 % of the picks;
 * round robin on the same load gives it a third. */
static void test_slow_peer_avoided(void **state)
{
	struct world w;
	double share;

	(void)state;
	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	w.jitter_pct = JITTER_PCT;
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	world_add(&w, 0, 1, 0, SLOW_MS, 0);
	world_run(&w, WARMUP_PICKS, -2);
	world_reset_counts(&w);
	world_run(&w, MEASURE_PICKS, -2);
	share = (double)w.picks[2] / MEASURE_PICKS;
	print_message("# slow peer share, p2c: %.4f\n", share);
	assert_true(share < 0.10);
	world_free(&w);

	world_init(&w, FM__ROUTE_ROUND_ROBIN, TEST_SEED);
	w.jitter_pct = JITTER_PCT;
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	world_add(&w, 0, 1, 0, SLOW_MS, 0);
	world_run(&w, WARMUP_PICKS + MEASURE_PICKS, -2);
	share = (double)w.picks[2] / (WARMUP_PICKS + MEASURE_PICKS);
	assert_true(share > 0.33 && share < 0.34);
	world_free(&w);
}

/* A peer that fails in 1 ms while the others succeed in 20 ms is not
 * preferred, and over a long run is ejected. */
static void test_failing_fast_peer_not_preferred(void **state)
{
	struct world w;
	const fm__router_candidate *c;
	uint8_t id[FM_ROUTER_ID_BYTES];
	fm__router_stats st;
	const size_t picks = 60000; /* 10 minutes, one job per 10 ms */
	double share;

	(void)state;
	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	world_add(&w, 0, 1, 0, FAIL_FAST_MS, 1);
	world_run(&w, picks, -10);
	share = (double)w.picks[2] / picks;
	print_message("# failing peer share: %.5f (%llu picks)\n", share,
	              (unsigned long long)w.picks[2]);
	assert_true(share < 0.01);
	make_id(id, 2);
	c = fm__router_find(&w.r, id);
	assert_non_null(c);
	assert_true(c->ejections_total >= 1);
	fm__router_get_stats(&w.r, &st);
	assert_int_equal(st.ejections, c->ejections_total);
	assert_int_equal(st.readmissions, 0);
	world_free(&w);
}

/* Pick with the local candidate excluded: the peer or -ENOENT. */
static int pick_peer(struct world *w, uint64_t now)
{
	uint8_t ex[FM_ROUTER_ID_BYTES], out[FM_ROUTER_ID_BYTES];
	int rc;

	make_id(ex, TEST_LOCAL);
	rc = fm__router_pick(&w->r, now, ex, 1, out);
	if (rc == 0)
		assert_int_equal(id_index(out), 1);
	return rc;
}

static void fail_n(struct world *w, unsigned cand, unsigned n)
{
	uint8_t id[FM_ROUTER_ID_BYTES];
	unsigned i;

	make_id(id, cand);
	for (i = 0; i < n; i++) {
		fm__router_start(&w->r, id, w->now);
		fm__router_failure(&w->r, id, w->now, FAIL_FAST_MS, 0);
	}
}

/* Ejection after FM_ROUTER_EJECT_AFTER consecutive failures, for 30 s x n
 * up to 300 s, half-open trials, readmission, forgiveness. */
static void test_ejection_backoff(void **state)
{
	struct world w;
	const fm__router_candidate *c;
	uint8_t id[FM_ROUTER_ID_BYTES];
	fm__router_stats st;
	uint64_t len, n;

	(void)state;
	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	world_add(&w, 1, 1, 0, FAST_MS, 0); /* local */
	world_add(&w, 0, 1, 0, FAST_MS, 0); /* the peer */
	make_id(id, 1);
	c = fm__router_find(&w.r, id);

	/* A success between failures resets the count. */
	fail_n(&w, 1, FM_ROUTER_EJECT_AFTER - 1);
	fm__router_start(&w.r, id, w.now);
	fm__router_success(&w.r, id, w.now, FAST_MS);
	fail_n(&w, 1, FM_ROUTER_EJECT_AFTER - 1);
	assert_false(fm__router_is_ejected(c, w.now));
	assert_int_equal(pick_peer(&w, w.now), 0);
	fail_n(&w, 1, 1);
	assert_true(fm__router_is_ejected(c, w.now));

	/* 30 s, 60 s, ... up to 300 s, each ended by a failed trial. */
	for (n = 1; n <= 13; n++) {
		len = FM_ROUTER_EJECT_BASE_MS * n;
		if (len > FM_ROUTER_EJECT_MAX_MS)
			len = FM_ROUTER_EJECT_MAX_MS;
		assert_int_equal(fm__router_next_deadline_ms(&w.r, w.now),
		                 w.now + len);
		assert_int_equal(pick_peer(&w, w.now + len - 1), -ENOENT);
		w.now += len;
		assert_int_equal(pick_peer(&w, w.now), 0);
		/* Half-open: one trial at a time. */
		fm__router_start(&w.r, id, w.now);
		assert_int_equal(pick_peer(&w, w.now), -ENOENT);
		w.now += 1;
		fm__router_failure(&w.r, id, w.now, FAIL_FAST_MS, 1);
		assert_true(fm__router_is_ejected(c, w.now));
	}
	fm__router_get_stats(&w.r, &st);
	assert_int_equal(st.ejections, 14);

	/* A late success inside the period does not cut it short. */
	fm__router_success(&w.r, id, w.now + 1, FAST_MS);
	assert_true(fm__router_is_ejected(c, w.now + 1));
	/* A successful trial readmits. */
	w.now += FM_ROUTER_EJECT_MAX_MS;
	assert_int_equal(pick_peer(&w, w.now), 0);
	fm__router_start(&w.r, id, w.now);
	fm__router_success(&w.r, id, w.now, FAST_MS);
	assert_false(fm__router_is_ejected(c, w.now));
	assert_int_equal(c->state, FM__ROUTER_ADMITTED);
	fm__router_get_stats(&w.r, &st);
	assert_int_equal(st.readmissions, 1);
	assert_int_equal(pick_peer(&w, w.now), 0);
	assert_int_equal(fm__router_next_deadline_ms(&w.r, w.now),
	                 FM_DEADLINE_NONE);

	/* Failing again at once: still the longest period. */
	fail_n(&w, 1, FM_ROUTER_EJECT_AFTER);
	assert_int_equal(c->eject_until_ms, w.now + FM_ROUTER_EJECT_MAX_MS);

	/* Healthy for three forgiveness periods: three ejections forgiven. */
	w.now += FM_ROUTER_EJECT_MAX_MS;
	fm__router_start(&w.r, id, w.now);
	fm__router_success(&w.r, id, w.now, FAST_MS);
	n = c->ejections;
	w.now += 3 * FM_ROUTER_EJECT_FORGIVE_MS;
	fail_n(&w, 1, FM_ROUTER_EJECT_AFTER);
	assert_int_equal(c->ejections, n - 3 + 1);
	assert_int_equal(c->eject_until_ms,
	                 w.now + FM_ROUTER_EJECT_BASE_MS * (n - 2));

	/* The local candidate is never ejected. */
	fail_n(&w, TEST_LOCAL, 10 * FM_ROUTER_EJECT_AFTER);
	make_id(id, TEST_LOCAL);
	assert_false(fm__router_is_ejected(fm__router_find(&w.r, id), w.now));
	world_free(&w);
}

/* Slots 1 and 3 at equal (jittered) latency, about 40 jobs in flight:
 * picks within 20 % of 1:3. */
static void test_weights_proportional(void **state)
{
	struct world w;
	double ratio;

	(void)state;
	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	w.jitter_pct = JITTER_PCT;
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	world_add(&w, 0, 3, 0, FAST_MS, 0);
	world_run(&w, WARMUP_PICKS, 2);
	world_reset_counts(&w);
	world_run(&w, MEASURE_PICKS, 2);
	ratio = (double)w.picks[1] / (double)w.picks[0];
	print_message("# slots 3:1 -> picks %.3f:1\n", ratio);
	assert_true(ratio > 3 * 0.8 && ratio < 3 * 1.2);
	world_free(&w);

	/* Reputation shifts load the same way: +10 vs -30 at equal slots. */
	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	world_add(&w, 0, 2, 10, FAST_MS, 0);
	world_add(&w, 0, 2, -30, FAST_MS, 0);
	world_run(&w, WARMUP_PICKS + MEASURE_PICKS, 2);
	assert_true(w.picks[0] > 3 * w.picks[1]);
	world_free(&w);
}

/* The retry budget never grants more than 20 % of the window's requests
 * plus the reserve, under steady load, a burst, and silence. */
#define BUDGET_SECONDS 90
static void test_retry_budget(void **state)
{
	struct world w;
	uint64_t req[BUDGET_SECONDS] = {0}, ret[BUDGET_SECONDS] = {0};
	uint64_t total_req = 0, total_ret = 0, allowed;
	const uint64_t reserve =
	        FM_ROUTER_RETRY_MIN_PER_S * FM_ROUTER_RETRY_WINDOW_MS / 1000;
	const uint64_t window_s = FM_ROUTER_RETRY_WINDOW_MS / 1000;
	fm__router_stats st;
	uint64_t t, s, k, granted;

	(void)state;
	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	/* Silence: the reserve only, then nothing until the window moves. */
	w.now = 0;
	for (k = granted = 0; k < 100; k++)
		granted += (uint64_t)fm__router_may_retry(&w.r, w.now);
	assert_int_equal(granted, reserve);
	w.now += FM_ROUTER_RETRY_WINDOW_MS - 1;
	assert_int_equal(fm__router_may_retry(&w.r, w.now), 0);
	w.now += 1;
	assert_int_equal(fm__router_may_retry(&w.r, w.now), 1);
	world_free(&w);

	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	for (t = 0; t < BUDGET_SECONDS * 1000ULL; t++) {
		uint64_t rate; /* requests per second */

		s = t / 1000;
		if (s < 30)
			rate = 100;
		else if (s < 40)
			rate = 2000; /* a burst */
		else if (s < 60)
			rate = 0; /* silence, retries still wanted */
		else
			rate = 500;
		/* Two chances a millisecond, each of rate / 2000. */
		for (k = 0; k < 2; k++) {
			if (xorshift(&w.seed) % 2000 < rate) {
				fm__router_note_request(&w.r, t);
				req[s]++;
				total_req++;
			}
		}
		/* Far more retries wanted than any budget allows. */
		for (k = 0; k < 3; k++) {
			if (fm__router_may_retry(&w.r, t)) {
				ret[s]++;
				total_ret++;
			}
		}
	}
	/* The budget is checked at each grant over the trailing window: so
	 * every window that ends in a second with a grant is within it.
	 * (A window ending later may hold retries that earlier requests,
	 * since slid out, paid for: that is what a sliding window means.) */
	for (s = 0; s < BUDGET_SECONDS; s++) {
		uint64_t wr = 0, wt = 0, j;

		if (ret[s] == 0)
			continue;
		for (j = s + 1 > window_s ? s + 1 - window_s : 0; j <= s; j++) {
			wr += req[j];
			wt += ret[j];
		}
		allowed = wr * FM_ROUTER_RETRY_BUDGET_PCT / 100 + reserve;
		assert_true(wt <= allowed);
	}
	fm__router_get_stats(&w.r, &st);
	assert_int_equal(st.retries_granted, total_ret);
	assert_int_equal(st.requests, total_req);
	assert_int_equal(st.retries_granted + st.retries_denied,
	                 3 * BUDGET_SECONDS * 1000ULL);
	/* Over the whole run: 20 % plus a reserve per window, and not
	 * stingy either: the budget is used. */
	assert_true(total_ret <= total_req * FM_ROUTER_RETRY_BUDGET_PCT / 100 +
	                                 reserve * BUDGET_SECONDS / window_s);
	assert_true(total_ret >= total_req * FM_ROUTER_RETRY_BUDGET_PCT / 100);
	print_message("# retries %llu for %llu requests\n",
	              (unsigned long long)total_ret,
	              (unsigned long long)total_req);
	world_free(&w);
}

/* ---- the local candidate --------------------------------------------------
 */

static void test_local_only(void **state)
{
	struct world w;
	fm__router_stats st;
	size_t i;

	(void)state;
	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	world_add(&w, 1, 4, 0, FAST_MS, 0);
	world_run(&w, 1000, 1);
	assert_int_equal(w.picks[TEST_LOCAL], 1000);
	/* Failing locally, over and over, it is still picked. */
	w.b[TEST_LOCAL].fails = 1;
	for (i = 0; i < 100; i++) {
		w.now += 100;
		assert_int_equal(world_dispatch(&w), TEST_LOCAL);
	}
	fm__router_get_stats(&w.r, &st);
	assert_int_equal(st.picks, st.picks_local);
	assert_int_equal(st.ejections, 0);
	world_free(&w);
}

static void test_all_peers_ejected(void **state)
{
	struct world w;
	uint8_t out[FM_ROUTER_ID_BYTES], id[FM_ROUTER_ID_BYTES];
	unsigned p;
	size_t i;

	(void)state;
	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	world_add(&w, 1, 1, 0, SLOW_MS, 0); /* local, and slow */
	for (p = 1; p <= 3; p++)
		world_add(&w, 0, 4, 0, FAST_MS, 0);
	for (p = 1; p <= 3; p++)
		fail_n(&w, p, FM_ROUTER_EJECT_AFTER);
	for (i = 0; i < 200; i++) {
		w.now += 10;
		assert_int_equal(world_dispatch(&w), TEST_LOCAL);
	}
	/* Without a local candidate: nothing, until the first readmission. */
	make_id(id, TEST_LOCAL);
	fm__router_remove(&w.r, id);
	assert_int_equal(fm__router_count(&w.r), 3);
	assert_int_equal(fm__router_pick(&w.r, w.now, NULL, 0, out), -ENOENT);
	assert_int_equal(fm__router_next_deadline_ms(&w.r, w.now),
	                 TEST_T0 + FM_ROUTER_EJECT_BASE_MS);
	assert_int_equal(fm__router_pick(&w.r,
	                                 TEST_T0 + FM_ROUTER_EJECT_BASE_MS,
	                                 NULL, 0, out),
	                 0);
	world_free(&w);
}

/* Failover: each attempt excludes those tried; every candidate is tried
 * once, then -ENOENT. */
static void test_exclusion(void **state)
{
	struct world w;
	uint8_t ex[TEST_CANDS_MAX * FM_ROUTER_ID_BYTES];
	uint8_t out[FM_ROUTER_ID_BYTES];
	unsigned seen[TEST_CANDS_MAX] = {0};
	size_t n, round, i;

	(void)state;
	for (round = 0; round < 50; round++) {
		world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED + round);
		world_add(&w, 1, 1, 0, FAST_MS, 0);
		world_add(&w, 0, 1, 0, FAST_MS, 0);
		world_add(&w, 0, 1, 0, SLOW_MS, 0);
		world_add(&w, 0, 1, 0, FAST_MS, 0);
		world_run(&w, 500, -3);
		memset(seen, 0, sizeof(seen));
		for (n = 0; n < w.ncands; n++) {
			assert_int_equal(
			        fm__router_pick(&w.r, w.now, ex, n, out), 0);
			for (i = 0; i < n; i++)
				assert_memory_not_equal(
				        out, ex + i * FM_ROUTER_ID_BYTES,
				        FM_ROUTER_ID_BYTES);
			seen[id_index(out)]++;
			memcpy(ex + n * FM_ROUTER_ID_BYTES, out,
			       FM_ROUTER_ID_BYTES);
		}
		for (i = 0; i < w.ncands; i++)
			assert_int_equal(seen[i], 1);
		assert_int_equal(fm__router_pick(&w.r, w.now, ex, n, out),
		                 -ENOENT);
		world_free(&w);
	}
	/* Excluding every peer leaves the local candidate. */
	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	world_add(&w, 1, 1, 0, SLOW_MS, 0);
	world_add(&w, 0, 8, 0, FAST_MS, 0);
	world_add(&w, 0, 8, 0, FAST_MS, 0);
	make_id(ex, 1);
	make_id(ex + FM_ROUTER_ID_BYTES, 2);
	for (i = 0; i < 100; i++) {
		assert_int_equal(fm__router_pick(&w.r, w.now, ex, 2, out), 0);
		assert_int_equal(id_index(out), TEST_LOCAL);
	}
	assert_int_equal(fm__router_pick(&w.r, w.now, NULL, 1, out), -EINVAL);
	world_free(&w);
}

/* ---- the comparison strategies --------------------------------------------
 */

static void test_strategy_random(void **state)
{
	struct world w;
	const size_t n = 8000;
	uint64_t mean;
	unsigned c;

	(void)state;
	world_init(&w, FM__ROUTE_RANDOM, TEST_SEED);
	world_add(&w, 0, 1, 0, 1, 0);
	world_add(&w, 0, 100, 0, FAST_MS, 0);
	world_add(&w, 0, 1, 0, SLOW_MS, 0);
	world_add(&w, 0, 1, 0, FAIL_FAST_MS, 1);
	world_run(&w, n, -1);
	/* Blind to latency and weight: the three that do not fail share
	 * evenly (the failing one is soon ejected, the only thing that
	 * applies to every strategy). */
	mean = (w.picks[0] + w.picks[1] + w.picks[2]) / 3;
	for (c = 0; c < 3; c++)
		assert_in_range(w.picks[c], mean * 90 / 100, mean * 110 / 100);
	assert_true(w.picks[3] < n / 100);
	world_free(&w);
}

static void test_strategy_round_robin(void **state)
{
	struct world w;
	uint8_t out[FM_ROUTER_ID_BYTES], ex[FM_ROUTER_ID_BYTES];
	unsigned i;

	(void)state;
	world_init(&w, FM__ROUTE_ROUND_ROBIN, TEST_SEED);
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	world_add(&w, 0, 9, 0, SLOW_MS, 0);
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	for (i = 0; i < 30; i++) {
		w.now++;
		assert_int_equal(world_dispatch(&w), i % 3);
	}
	/* Ejected and excluded candidates are skipped, the order holds. */
	fail_n(&w, 1, FM_ROUTER_EJECT_AFTER);
	for (i = 0; i < 10; i++)
		assert_int_equal(world_dispatch(&w), (i % 2) * 2);
	make_id(ex, 2);
	for (i = 0; i < 5; i++) {
		assert_int_equal(fm__router_pick(&w.r, w.now, ex, 1, out), 0);
		assert_int_equal(id_index(out), 0);
	}
	world_free(&w);
}

static void test_strategy_least_pending(void **state)
{
	struct world w;
	uint8_t out[FM_ROUTER_ID_BYTES], id[FM_ROUTER_ID_BYTES];
	unsigned hits[3] = {0};
	unsigned i, c;
	const unsigned pending[3] = {3, 1, 2};

	(void)state;
	world_init(&w, FM__ROUTE_LEAST_PENDING, TEST_SEED);
	for (c = 0; c < 3; c++) {
		world_add(&w, 0, 1, 0, c == 1 ? SLOW_MS : FAST_MS, 0);
		make_id(id, c);
		for (i = 0; i < pending[c]; i++)
			fm__router_start(&w.r, id, w.now);
	}
	/* The slow one has fewest pending: it is picked regardless. */
	for (i = 0; i < 20; i++) {
		assert_int_equal(fm__router_pick(&w.r, w.now, NULL, 0, out), 0);
		assert_int_equal(id_index(out), 1);
	}
	/* Ties are broken at random. */
	make_id(id, 1);
	fm__router_start(&w.r, id, w.now); /* 3, 2, 2 */
	for (i = 0; i < 1000; i++) {
		assert_int_equal(fm__router_pick(&w.r, w.now, NULL, 0, out), 0);
		hits[id_index(out)]++;
	}
	assert_int_equal(hits[0], 0);
	assert_in_range(hits[1], 400, 600);
	assert_int_equal(hits[1] + hits[2], 1000);
	world_free(&w);
}

/* ---- determinism, hedging, the API edges ----------------------------------
 */

#define DET_PICKS 3000
static void record_run(uint64_t seed, uint8_t seq[DET_PICKS])
{
	struct world w;
	size_t i;

	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, seed);
	world_add(&w, 1, 2, 0, 5, 0);
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	world_add(&w, 0, 3, -5, 40, 0);
	world_add(&w, 0, 1, 0, SLOW_MS, 0);
	world_add(&w, 0, 1, 0, FAIL_FAST_MS, 1);
	for (i = 0; i < DET_PICKS; i++) {
		w.now++;
		seq[i] = (uint8_t)world_dispatch(&w);
	}
	world_free(&w);
}

static void test_determinism(void **state)
{
	uint8_t a[DET_PICKS], b[DET_PICKS], c[DET_PICKS];

	(void)state;
	record_run(TEST_SEED, a);
	record_run(TEST_SEED, b);
	record_run(TEST_SEED ^ 1, c);
	assert_memory_equal(a, b, DET_PICKS);
	assert_memory_not_equal(a, c, DET_PICKS);
}

static void test_hedge_delay(void **state)
{
	struct world w;
	uint8_t id[FM_ROUTER_ID_BYTES], unknown[FM_ROUTER_ID_BYTES];
	uint64_t d;
	int i;

	(void)state;
	world_init(&w, FM__ROUTE_P2C_PEAK_EWMA, TEST_SEED);
	world_add(&w, 0, 1, 0, FAST_MS, 0);
	make_id(id, 0);
	make_id(unknown, 7);
	/* Unmeasured: the default latency plus twice half of it. */
	d = (uint64_t)(2 * FM_ROUTER_DEFAULT_RTT_MS);
	assert_int_equal(fm__router_hedge_delay_ms(&w.r, id), d);
	assert_int_equal(fm__router_hedge_delay_ms(&w.r, unknown), d);
	/* Uniform 10..30 ms: the 95th percentile is 29 ms. */
	for (i = 0; i < 2000; i++) {
		w.now += 10;
		fm__router_start(&w.r, id, w.now);
		fm__router_success(&w.r, id, w.now,
		                   10 + (double)(xorshift(&w.seed) % 21));
	}
	d = fm__router_hedge_delay_ms(&w.r, id);
	print_message("# hedge delay for U(10, 30): %llu ms\n",
	              (unsigned long long)d);
	assert_in_range(d, 25, 40);
	/* Failures do not stretch it. */
	fail_n(&w, 0, 3);
	assert_int_equal(fm__router_hedge_delay_ms(&w.r, id), d);
	/* Steady 20 ms: about 20 ms. */
	for (i = 0; i < 500; i++) {
		fm__router_start(&w.r, id, w.now);
		fm__router_success(&w.r, id, w.now, 20);
	}
	assert_in_range(fm__router_hedge_delay_ms(&w.r, id), 20, 21);
	world_free(&w);
}

static void test_api_edges(void **state)
{
	fm__router r;
	fm__router_params p;
	uint64_t seed = TEST_SEED;
	uint8_t id[FM_ROUTER_ID_BYTES], out[FM_ROUTER_ID_BYTES];
	enum fm__route_strategy s;
	unsigned i;
	int k;

	(void)state;
	fm__router_params_default(&p);
	assert_int_equal(fm__router_init(NULL, xorshift, &seed, &p), -EINVAL);
	assert_int_equal(fm__router_init(&r, NULL, &seed, &p), -EINVAL);
	p.decay_ms = 0;
	assert_int_equal(fm__router_init(&r, xorshift, &seed, &p), -EINVAL);
	fm__router_params_default(&p);
	p.strategy = FM__ROUTE_STRATEGY_COUNT;
	assert_int_equal(fm__router_init(&r, xorshift, &seed, &p), -EINVAL);
	fm__router_params_default(&p);
	p.eject_max_ms = p.eject_base_ms - 1;
	assert_int_equal(fm__router_init(&r, xorshift, &seed, &p), -EINVAL);
	assert_int_equal(fm__router_init(&r, xorshift, &seed, NULL), 0);

	/* Empty: nothing to pick. */
	assert_int_equal(fm__router_pick(&r, TEST_T0, NULL, 0, out), -ENOENT);
	assert_int_equal(fm__router_upsert(&r, TEST_T0, NULL, 0, 1, 0),
	                 -EINVAL);
	/* One local candidate only. */
	make_id(id, 0);
	assert_int_equal(fm__router_upsert(&r, TEST_T0, id, 1, 1, 0), 0);
	make_id(id, 1);
	assert_int_equal(fm__router_upsert(&r, TEST_T0, id, 1, 1, 0), -EEXIST);
	/* Update in place keeps the entry. */
	assert_int_equal(fm__router_upsert(&r, TEST_T0, id, 0, 1, 0), 0);
	assert_int_equal(fm__router_upsert(&r, TEST_T0, id, 0, 7, NAN), 0);
	assert_int_equal(fm__router_count(&r), 2);
	assert_int_equal(fm__router_find(&r, id)->slots, 7);
	assert_true(fm__router_find(&r, id)->score == 0);
	/* Bounded table. */
	for (i = 2; i < FM_ROUTER_CANDIDATES_MAX; i++) {
		memset(id, 0, sizeof(id));
		id[0] = (uint8_t)i;
		id[1] = (uint8_t)(i >> 8);
		assert_int_equal(fm__router_upsert(&r, TEST_T0, id, 0, 1, 0),
		                 0);
	}
	memset(id, 0xff, sizeof(id));
	assert_int_equal(fm__router_upsert(&r, TEST_T0, id, 0, 1, 0), -ENOSPC);
	assert_int_equal(fm__router_count(&r), FM_ROUTER_CANDIDATES_MAX);
	assert_null(fm__router_at(&r, FM_ROUTER_CANDIDATES_MAX));
	assert_int_equal(fm__router_pick(&r, TEST_T0, NULL, 0, out), 0);
	/* Outcomes for unknown candidates are ignored. */
	fm__router_start(&r, id, TEST_T0);
	fm__router_success(&r, id, TEST_T0, 1);
	fm__router_failure(&r, id, TEST_T0, 1, 1);
	fm__router_remove(&r, id);
	assert_int_equal(fm__router_count(&r), FM_ROUTER_CANDIDATES_MAX);
	make_id(id, 1);
	fm__router_remove(&r, id);
	assert_null(fm__router_find(&r, id));
	assert_int_equal(fm__router_count(&r), FM_ROUTER_CANDIDATES_MAX - 1);
	fm__router_free(&r);
	fm__router_free(&r);
	fm__router_free(NULL);

	for (k = 0; k < FM__ROUTE_STRATEGY_COUNT; k++) {
		const char *name =
		        fm__route_strategy_name((enum fm__route_strategy)k);

		assert_int_equal(fm__route_strategy_parse(name, &s), 0);
		assert_int_equal(s, k);
	}
	assert_int_equal(fm__route_strategy_parse("fastest", &s), -EINVAL);
	assert_string_equal(fm__route_strategy_name(FM__ROUTE_STRATEGY_COUNT),
	                    "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_peak_ewma),
	        cmocka_unit_test(test_weight),
	        cmocka_unit_test(test_slow_peer_avoided),
	        cmocka_unit_test(test_failing_fast_peer_not_preferred),
	        cmocka_unit_test(test_ejection_backoff),
	        cmocka_unit_test(test_weights_proportional),
	        cmocka_unit_test(test_retry_budget),
	        cmocka_unit_test(test_local_only),
	        cmocka_unit_test(test_all_peers_ejected),
	        cmocka_unit_test(test_exclusion),
	        cmocka_unit_test(test_strategy_random),
	        cmocka_unit_test(test_strategy_round_robin),
	        cmocka_unit_test(test_strategy_least_pending),
	        cmocka_unit_test(test_determinism),
	        cmocka_unit_test(test_hedge_delay),
	        cmocka_unit_test(test_api_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
