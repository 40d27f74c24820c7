/* The simulator's engine, without a scenario file: the event queue against
 * a sorted reference, the random streams and distributions, the network
 * model's loss, latency, duplication and reordering figures, stream order,
 * crash and partition semantics, and a small whole-simulator run that must
 * connect every bootstrap pair and replay identically. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eventq.h"
#include "netmodel.h"
#include "rng.h"
#include "scenario.h"
#include "sim.h"

/* ---- event queue ----------------------------------------------------------
 */

static void test_eventq_ties_keep_push_order(void **state)
{
	struct fms_eventq q;
	struct fms_event ev;
	uint32_t i;

	(void)state;
	assert_int_equal(fms_eventq_init(&q, 4), 0);
	for (i = 0; i < 100; i++)
		assert_int_equal(fms_eventq_push(&q, 500, 1, i, 0, 0), 0);
	assert_int_equal(fms_eventq_push(&q, 499, 2, 0, 0, 0), 0);
	assert_int_equal(fms_eventq_push(&q, 501, 3, 0, 0, 0), 0);
	assert_int_equal(fms_eventq_pop(&q, &ev), 1);
	assert_int_equal(ev.type, 2);
	for (i = 0; i < 100; i++) {
		assert_int_equal(fms_eventq_pop(&q, &ev), 1);
		assert_int_equal(ev.time_us, 500);
		assert_int_equal(ev.a, i);
	}
	assert_int_equal(fms_eventq_pop(&q, &ev), 1);
	assert_int_equal(ev.type, 3);
	assert_int_equal(fms_eventq_pop(&q, &ev), 0);
	assert_null(fms_eventq_peek(&q));
	fms_eventq_free(&q);
	fms_eventq_free(NULL);
}

struct ref {
	uint64_t time, seq;
};

static int ref_cmp(const void *a, const void *b)
{
	const struct ref *x = a, *y = b;

	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void test_eventq_random_load_matches_sort(void **state)
{
	const size_t n = 1000000;
	struct ref *ref = malloc(n * sizeof(*ref));
	struct fms_rng rng;
	struct fms_eventq q;
	struct fms_event ev;
	size_t i;

	(void)state;
	assert_non_null(ref);
	fms_rng_seed(&rng, 42, 7);
	assert_int_equal(fms_eventq_init(&q, 0), 0);
	for (i = 0; i < n; i++) {
		/* few distinct times: plenty of ties */
		uint64_t t = fms_rng_below(&rng, 5000);
		ref[i].time = t;
		ref[i].seq = i;
		assert_int_equal(fms_eventq_push(&q, t, 1, (uint32_t)i, 0, 0),
		                 0);
	}
	qsort(ref, n, sizeof(*ref), ref_cmp);
	for (i = 0; i < n; i++) {
		assert_int_equal(fms_eventq_pop(&q, &ev), 1);
		assert_int_equal(ev.time_us, ref[i].time);
		assert_int_equal(ev.seq, ref[i].seq);
		assert_int_equal(ev.a, (uint32_t)ref[i].seq);
	}
	assert_int_equal(fms_eventq_pop(&q, &ev), 0);
	fms_eventq_free(&q);
	free(ref);
}

/* The simulator's pattern: pop one, push a few at or after its time. The
 * popped sequence must never go back in (time, seq). */
static void test_eventq_interleaved_is_monotone(void **state)
{
	struct fms_rng rng;
	struct fms_eventq q;
	struct fms_event ev;
	uint64_t last_t = 0, last_seq = 0, popped = 0, pushed = 0;
	int i;

	(void)state;
	fms_rng_seed(&rng, 1, 9);
	assert_int_equal(fms_eventq_init(&q, 16), 0);
	for (i = 0; i < 1000; i++, pushed++)
		assert_int_equal(fms_eventq_push(&q, fms_rng_below(&rng, 1000),
		                                 0, 0, 0, 0),
		                 0);
	while (fms_eventq_pop(&q, &ev)) {
		int k, more;
		if (popped > 0)
			assert_true(
			        ev.time_us > last_t ||
			        (ev.time_us == last_t && ev.seq > last_seq));
		last_t = ev.time_us;
		last_seq = ev.seq;
		popped++;
		more = pushed < 2000000 ? (int)fms_rng_below(&rng, 3) : 0;
		for (k = 0; k < more; k++, pushed++)
			assert_int_equal(
			        fms_eventq_push(&q,
			                        ev.time_us +
			                                fms_rng_below(&rng, 50),
			                        0, 0, 0, 0),
			        0);
	}
	assert_int_equal(popped, pushed);
	assert_int_equal(q.pushed, pushed);
	fms_eventq_free(&q);
}

/* ---- randomness -------------------------------------------------------- */

static void test_rng_streams(void **state)
{
	struct fms_rng a, b, c;
	uint64_t hist[10] = {0};
	double sum = 0;
	int i;

	(void)state;
	fms_rng_seed(&a, 5, 1);
	fms_rng_seed(&b, 5, 1);
	fms_rng_seed(&c, 5, 2);
	for (i = 0; i < 1000; i++) {
		uint64_t x = fms_rng_next(&a);
		assert_int_equal(x, fms_rng_next(&b));
		assert_true(x != fms_rng_next(&c) || i > 0);
	}
	for (i = 0; i < 100000; i++) {
		uint64_t v = fms_rng_below(&a, 10);
		assert_true(v < 10);
		hist[v]++;
		sum += fms_rng_exp(&a, 3.0);
	}
	for (i = 0; i < 10; i++)
		assert_true(hist[i] > 9500 && hist[i] < 10500);
	assert_true(fabs(sum / 100000 - 3.0) < 0.05);
}

static void test_churn_fit_matches_quantiles(void **state)
{
	struct fms_scenario sc;
	struct fms_rng rng;
	double p1, p2;
	int d, i, below_median, below_p80;

	(void)state;
	fms_rng_seed(&rng, 3, 3);
	for (d = 0; d < 2; d++) {
		fms_scenario_defaults(&sc);
		sc.session_dist =
		        d == 0 ? FMS_DIST_LOGNORMAL : FMS_DIST_WEIBULL;
		fms_scenario_session_params(&sc, &p1, &p2);
		below_median = below_p80 = 0;
		for (i = 0; i < 200000; i++) {
			double v = d == 0 ? fms_rng_lognormal(&rng, p1, p2)
			                  : fms_rng_weibull(&rng, p1, p2);
			below_median += v < 2.0 * 3600 * 1000;
			below_p80 += v < 8.0 * 3600 * 1000;
		}
		/* ProbeLab RFM2: 50 % under 2 h, 80 % under 8 h */
		assert_true(fabs(below_median / 200000.0 - 0.5) < 0.005);
		assert_true(fabs(below_p80 / 200000.0 - 0.8) < 0.005);
	}
}

static void test_scenario_keys(void **state)
{
	struct fms_scenario sc;
	char err[256];
	uint64_t ms;

	(void)state;
	assert_int_equal(fms_parse_duration_ms("90", &ms), 0);
	assert_int_equal(ms, 90000);
	assert_int_equal(fms_parse_duration_ms("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(fms_parse_duration_ms("1.5h", &ms), 0);
	assert_int_equal(ms, 5400000);
	assert_int_equal(fms_parse_duration_ms("5m", &ms), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(fms_parse_duration_ms("5x", &ms), -EINVAL);
	assert_int_equal(fms_parse_duration_ms("-1s", &ms), -EINVAL);
	fms_scenario_defaults(&sc);
	assert_int_equal(fms_scenario_set(&sc, "network", "loss", "0.25", err,
	                                  sizeof(err)),
	                 0);
	assert_true(sc.net.loss == 0.25);
	assert_int_equal(
	        fms_scenario_set(&sc, "network", "loss", "2", err, sizeof(err)),
	        -EINVAL);
	assert_int_equal(fms_scenario_set(&sc, "network", "los", "0.1", err,
	                                  sizeof(err)),
	                 -EINVAL);
	assert_non_null(strstr(err, "unknown key"));
	assert_int_equal(fms_scenario_set(&sc, "rtt", "us-east/eu-west", "12",
	                                  err, sizeof(err)),
	                 0);
	assert_true(sc.net.rtt_ms[fms_net_region_find(&sc.net, "eu-west")]
	                         [fms_net_region_find(&sc.net, "us-east")] ==
	            12.0);
	assert_int_equal(fms_scenario_set(&sc, "network", "regions",
	                                  "us-east:3 mars:1", err, sizeof(err)),
	                 -EINVAL);
	sc.partition = 1;
	sc.split_at_ms = 10;
	sc.heal_at_ms = 5;
	assert_int_equal(fms_scenario_check(&sc, err, sizeof(err)), -EINVAL);
}

static void test_addresses_round_trip(void **state)
{
	const uint32_t nodes[] = {0, 1, 254, 255, 65534, 65535, 65536, 200000};
	fm_addr a;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		fms_addr_of(nodes[i], FMS_PORT, &a);
		assert_int_equal(a.ip[0], 10);
		assert_true(a.ip[3] != 0);
		assert_int_equal(fms_node_of_addr(&a, 300000), nodes[i]);
	}
	/* the first 65,535 nodes each own a /24 */
	fms_addr_of(0, FMS_PORT, &a);
	assert_int_equal(a.ip[3], 1);
	fms_addr_of(65534, FMS_PORT, &a);
	assert_int_equal(a.ip[3], 1);
	fms_addr_of(5, FMS_PORT, &a);
	assert_int_equal(fms_node_of_addr(&a, 5), FMS_NET_NOWHERE);
	a.port = 1234;
	assert_int_equal(fms_node_of_addr(&a, 300000), FMS_NET_NOWHERE);
}

/* ---- network model --------------------------------------------------------
 */

#define LOG_MAX 200000

struct rec {
	int kind; /* 'd' datagram, 'o' opened, 'x' data, 'c' closed */
	uint32_t ep, peer;
	uint64_t id;
	uint64_t t_us;
	int err;
	size_t len;
	uint32_t first; /* first 4 bytes of a payload */
};

struct harness {
	struct fms_eventq q;
	struct fms_net net;
	struct rec *log;
	size_t n;
	uint8_t stream_bytes[2][1 << 16]; /* what each of ep 0/1 received */
	size_t stream_len[2];
};

static void h_log(struct harness *h, int kind, uint32_t ep, uint32_t peer,
                  uint64_t id, int err, const uint8_t *buf, size_t len)
{
	struct rec *r;

	assert_true(h->n < LOG_MAX);
	r = &h->log[h->n++];
	r->kind = kind;
	r->ep = ep;
	r->peer = peer;
	r->id = id;
	r->t_us = h->net.now_us;
	r->err = err;
	r->len = len;
	r->first = 0;
	if (buf != NULL && len >= 4)
		memcpy(&r->first, buf, 4);
}

static void h_datagram(void *ctx, uint32_t to, uint32_t from,
                       const uint8_t *buf, size_t len)
{
	h_log(ctx, 'd', to, from, 0, 0, buf, len);
}

static void h_opened(void *ctx, uint32_t ep, uint64_t id, uint32_t remote,
                     int incoming)
{
	h_log(ctx, 'o', ep, remote, id, incoming, NULL, 0);
}

static void h_data(void *ctx, uint32_t ep, uint64_t id, const uint8_t *buf,
                   size_t len)
{
	struct harness *h = ctx;

	h_log(h, 'x', ep, 0, id, 0, buf, len);
	if (ep < 2 && h->stream_len[ep] + len <= sizeof(h->stream_bytes[ep])) {
		memcpy(h->stream_bytes[ep] + h->stream_len[ep], buf, len);
		h->stream_len[ep] += len;
	}
}

static void h_closed(void *ctx, uint32_t ep, uint64_t id, int error)
{
	h_log(ctx, 'c', ep, 0, id, error, NULL, 0);
}

/* Two regions, RTT 100 ms between them and 10 ms within. */
static struct harness *h_new(uint32_t eps, double jitter_ms, double loss)
{
	struct harness *h = calloc(1, sizeof(*h));
	struct fms_net_params p;
	struct fms_net_ops ops = {0};
	uint32_t i;

	assert_non_null(h);
	h->log = calloc(LOG_MAX, sizeof(*h->log));
	assert_non_null(h->log);
	memset(&p, 0, sizeof(p));
	fms_net_params_default(&p);
	p.region_count = 2;
	p.rtt_ms[0][0] = p.rtt_ms[1][1] = 10;
	p.rtt_ms[0][1] = p.rtt_ms[1][0] = 100;
	p.jitter_ms = jitter_ms;
	p.loss = loss;
	ops.ctx = h;
	ops.datagram = h_datagram;
	ops.stream_opened = h_opened;
	ops.stream_data = h_data;
	ops.stream_closed = h_closed;
	assert_int_equal(fms_eventq_init(&h->q, 0), 0);
	assert_int_equal(fms_net_init(&h->net, &p, &h->q, &ops, 11, eps), 0);
	for (i = 0; i < eps; i++)
		fms_net_set_region(&h->net, i, (uint8_t)(i % 2));
	return h;
}

static void h_free(struct harness *h)
{
	fms_net_free(&h->net);
	fms_eventq_free(&h->q);
	free(h->log);
	free(h);
}

static void h_run_until(struct harness *h, uint64_t until_us)
{
	struct fms_event ev;

	while (fms_eventq_peek(&h->q) != NULL &&
	       fms_eventq_peek(&h->q)->time_us <= until_us) {
		assert_int_equal(fms_eventq_pop(&h->q, &ev), 1);
		h->net.now_us = ev.time_us;
		assert_int_equal(fms_net_dispatch(&h->net, &ev), 1);
	}
	h->net.now_us = until_us;
}

static size_t h_count(const struct harness *h, int kind, uint32_t ep)
{
	size_t i, n = 0;

	for (i = 0; i < h->n; i++)
		n += h->log[i].kind == kind && h->log[i].ep == ep;
	return n;
}

static const struct rec *h_find(const struct harness *h, int kind, uint32_t ep)
{
	size_t i;

	for (i = 0; i < h->n; i++)
		if (h->log[i].kind == kind && h->log[i].ep == ep)
			return &h->log[i];
	return NULL;
}

static void test_net_loss_rate(void **state)
{
	struct harness *h = h_new(2, 0, 0.1);
	uint8_t buf[64] = {0};
	size_t delivered;
	double rate;
	int i;

	(void)state;
	for (i = 0; i < 100000; i++) {
		h->net.now_us = (uint64_t)i * 10;
		assert_int_equal(
		        fms_net_send_datagram(&h->net, 0, 1, buf, sizeof(buf)),
		        0);
	}
	h_run_until(h, 10ULL * 1000 * 1000);
	delivered = h_count(h, 'd', 1);
	rate = 1.0 - (double)delivered / 100000.0;
	/* binomial: sd = sqrt(0.1 * 0.9 / 1e5) = 0.00095; allow 5 sd */
	assert_true(fabs(rate - 0.1) < 0.005);
	assert_int_equal(h->net.stats.dgrams_lost + delivered, 100000);
	assert_int_equal(h->net.chunks_live, 0);
	assert_int_equal(fms_net_send_datagram(&h->net, 0, 1, buf,
	                                       FMS_NET_DGRAM_MAX_BYTES + 1),
	                 -EMSGSIZE);
	h_free(h);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void test_net_latency_distribution(void **state)
{
	struct harness *h = h_new(2, 5.0, 0);
	const int n = 100000;
	double *lat = malloc((size_t)n * sizeof(*lat)), sum = 0, p50, p99;
	uint8_t buf[8];
	int i;

	(void)state;
	assert_non_null(lat);
	/* One datagram per simulated second: each is delivered before the
	 * next is sent, so its latency is arrival - send. */
	for (i = 0; i < n; i++) {
		uint64_t sent = (uint64_t)i * 1000000;
		size_t before = h->n;
		h_run_until(h, sent);
		memcpy(buf, &i, sizeof(i));
		assert_int_equal(fms_net_send_datagram(&h->net, 0, 1, buf, 8),
		                 0);
		h_run_until(h, sent + 999999);
		assert_int_equal(h->n, before + 1);
		lat[i] = (double)(h->log[h->n - 1].t_us - sent) / 1000.0;
		sum += lat[i];
	}
	qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
	p50 = lat[n / 2];
	p99 = lat[n * 99 / 100];
	/* one way = RTT/2 + Exp(5 ms): mean 55, p50 50 + 5 ln 2, p99
	 * 50 + 5 ln 100 */
	assert_true(fabs(sum / n - 55.0) < 0.1);
	assert_true(fabs(p50 - (50.0 + 5.0 * log(2.0))) < 0.15);
	assert_true(fabs(p99 - (50.0 + 5.0 * log(100.0))) < 1.0);
	assert_true(lat[0] >= 50.0);
	free(lat);
	h_free(h);
}

static void test_net_duplicate_and_reorder(void **state)
{
	struct harness *h = h_new(2, 0, 0);
	uint32_t i, last = 0;
	size_t k, out_of_order = 0;

	(void)state;
	/* no jitter, no reordering: FIFO */
	for (i = 0; i < 1000; i++) {
		h->net.now_us = i;
		fms_net_send_datagram(&h->net, 0, 1, (uint8_t *)&i, 4);
	}
	h_run_until(h, 1000000);
	for (k = 0; k < h->n; k++) {
		assert_true(k == 0 || h->log[k].first > last);
		last = h->log[k].first;
	}
	/* 10 % duplicated, 10 % held back up to 50 ms */
	h->n = 0;
	h->net.p.duplicate = 0.1;
	h->net.p.reorder = 0.1;
	h->net.p.reorder_ms = 50;
	for (i = 0; i < 10000; i++) {
		h->net.now_us = 2000000 + (uint64_t)i * 1000;
		fms_net_send_datagram(&h->net, 0, 1, (uint8_t *)&i, 4);
	}
	h_run_until(h, 20000000);
	assert_true(h->n > 10800 && h->n < 11200);
	assert_int_equal(h->n, 10000 + h->net.stats.dgrams_duplicated);
	for (k = 1; k < h->n; k++)
		out_of_order += h->log[k].first < h->log[k - 1].first;
	assert_true(out_of_order > 100);
	h_free(h);
}

static void test_net_stream_order_and_close(void **state)
{
	struct harness *h = h_new(2, 20.0, 0.05);
	uint64_t id0;
	const struct rec *o0, *o1, *c1;
	uint8_t chunk[300];
	size_t i;

	(void)state;
	assert_int_equal(fms_net_stream_open(&h->net, 0, 1, &id0), 0);
	assert_int_equal(fms_net_stream_send(&h->net, 0, id0, chunk, 1),
	                 -ENOTCONN);
	h_run_until(h, 5000000);
	o1 = h_find(h, 'o', 1);
	o0 = h_find(h, 'o', 0);
	assert_non_null(o1);
	assert_non_null(o0);
	assert_int_equal(o1->err, 1); /* incoming */
	assert_int_equal(o0->err, 0);
	assert_int_equal(o0->id, id0);
	assert_true(o0->t_us >= o1->t_us);
	/* 200 sends of 300 bytes, heavy jitter and loss: the bytes still
	 * arrive in order */
	for (i = 0; i < 200; i++) {
		size_t j;
		for (j = 0; j < sizeof(chunk); j++)
			chunk[j] = (uint8_t)(i * sizeof(chunk) + j);
		h->net.now_us += 1000;
		assert_int_equal(fms_net_stream_send(&h->net, 0, id0, chunk,
		                                     sizeof(chunk)),
		                 0);
	}
	fms_net_stream_close(&h->net, 0, id0);
	assert_int_equal(fms_net_stream_send(&h->net, 0, id0, chunk, 1),
	                 -ENOTCONN);
	h_run_until(h, 60000000);
	assert_int_equal(h->stream_len[1], 200 * sizeof(chunk));
	for (i = 0; i < h->stream_len[1]; i++)
		assert_int_equal(h->stream_bytes[1][i], (uint8_t)i);
	/* the orderly close arrives after the data, with no error */
	c1 = h_find(h, 'c', 1);
	assert_non_null(c1);
	assert_int_equal(c1->err, 0);
	assert_int_equal(h->log[h->n - 1].kind, 'c');
	assert_int_equal(h_count(h, 'c', 0), 0);  /* the closer hears nothing */
	fms_net_stream_close(&h->net, 1, c1->id); /* already gone: ignored */
	assert_int_equal(fms_net_streams_live(&h->net), 0);
	assert_int_equal(h->net.chunks_live, 0);
	h_free(h);
}

static void test_net_crash_semantics(void **state)
{
	struct harness *h = h_new(3, 0, 0);
	uint64_t id, id2;
	const struct rec *c;

	(void)state;
	assert_int_equal(fms_net_stream_open(&h->net, 0, 1, &id), 0);
	h_run_until(h, 1000000);
	assert_int_equal(h_count(h, 'o', 0), 1);
	/* 1 crashes: 0 gets a reset one trip later (50 ms) */
	fms_net_ep_down(&h->net, 1, FMS_EP_CRASHED);
	h_run_until(h, 2000000);
	c = h_find(h, 'c', 0);
	assert_non_null(c);
	assert_int_equal(c->err, -ECONNRESET);
	assert_int_equal(c->t_us, 1000000 + 50000);
	assert_int_equal(h_count(h, 'c', 1), 0);
	/* connecting to the crashed process is refused after one RTT */
	h->n = 0;
	assert_int_equal(fms_net_stream_open(&h->net, 0, 1, &id2), 0);
	h_run_until(h, 3000000);
	c = h_find(h, 'c', 0);
	assert_non_null(c);
	assert_int_equal(c->err, -ECONNREFUSED);
	assert_int_equal(c->t_us, 2000000 + 100000);
	/* a host that went away answers nothing: connects time out after
	 * the SYN retries (127 s), established peers hear nothing */
	fms_net_ep_up(&h->net, 1);
	h->n = 0;
	assert_int_equal(fms_net_stream_open(&h->net, 2, 1, &id), 0);
	h_run_until(h, 4000000);
	assert_int_equal(h_count(h, 'o', 2), 1);
	fms_net_ep_down(&h->net, 1, FMS_EP_OFFLINE);
	assert_int_equal(fms_net_stream_send(&h->net, 2, id, (uint8_t *)"x", 1),
	                 0);
	assert_int_equal(fms_net_stream_open(&h->net, 0, 1, &id2), 0);
	h_run_until(h, 200000000);
	assert_int_equal(h_count(h, 'c', 2), 0);
	assert_int_equal(h_count(h, 'x', 1), 0);
	c = h_find(h, 'c', 0);
	assert_non_null(c);
	assert_int_equal(c->err, -ETIMEDOUT);
	assert_int_equal(c->t_us, 4000000 + 127000000);
	fms_net_stream_close(&h->net, 2, id);
	assert_int_equal(fms_net_streams_live(&h->net), 0);
	assert_int_equal(h->net.chunks_live, 0);
	h_free(h);
}

static void test_net_partition_semantics(void **state)
{
	struct harness *h = h_new(4, 2.0, 0);
	uint64_t id01, id23, id;
	size_t before;

	(void)state;
	assert_int_equal(fms_net_stream_open(&h->net, 0, 1, &id01), 0);
	assert_int_equal(fms_net_stream_open(&h->net, 2, 3, &id23), 0);
	h_run_until(h, 1000000);
	assert_int_equal(h_count(h, 'o', 0) + h_count(h, 'o', 1), 2);
	/* {0, 2} | {1, 3}: both streams cross the cut */
	fms_net_set_group(&h->net, 1, 1);
	fms_net_set_group(&h->net, 3, 1);
	fms_net_partition_apply(&h->net);
	assert_int_equal(h->net.stats.streams_cut, 2);
	assert_false(fms_net_reachable(&h->net, 0, 1));
	assert_true(fms_net_reachable(&h->net, 1, 3));
	/* no datagram crosses, inside a side they still flow */
	before = h->n;
	fms_net_send_datagram(&h->net, 0, 1, (uint8_t *)"abcd", 4);
	fms_net_send_datagram(&h->net, 1, 3, (uint8_t *)"abcd", 4);
	h_run_until(h, 2000000);
	assert_int_equal(h_count(h, 'd', 1), 0);
	assert_int_equal(h_count(h, 'd', 3), 1);
	/* every end of a cut stream got -ETIMEDOUT */
	{
		size_t i, closed = 0;
		for (i = before; i < h->n; i++)
			if (h->log[i].kind == 'c') {
				assert_int_equal(h->log[i].err, -ETIMEDOUT);
				closed++;
			}
		assert_int_equal(closed, 4);
	}
	/* both ends closed: the stream is gone */
	assert_int_equal(
	        fms_net_stream_send(&h->net, 0, id01, (uint8_t *)"x", 1),
	        -EBADF);
	/* a connect across the cut does not get through */
	h->n = 0;
	assert_int_equal(fms_net_stream_open(&h->net, 0, 3, &id), 0);
	h_run_until(h, 10000000);
	assert_int_equal(h_count(h, 'o', 3), 0);
	fms_net_stream_close(&h->net, 0, id); /* the dialler gives up */
	/* heal: datagrams and connects get through again */
	fms_net_heal(&h->net);
	assert_true(fms_net_reachable(&h->net, 0, 3));
	fms_net_send_datagram(&h->net, 0, 1, (uint8_t *)"abcd", 4);
	assert_int_equal(fms_net_stream_open(&h->net, 0, 3, &id), 0);
	h_run_until(h, 20000000);
	assert_int_equal(h_count(h, 'd', 1), 1);
	assert_int_equal(h_count(h, 'o', 3), 1);
	assert_int_equal(h_count(h, 'o', 0), 1);
	fms_net_stream_close(&h->net, 0, id);
	h_run_until(h, 30000000);
	assert_int_equal(fms_net_streams_live(&h->net), 0);
	assert_int_equal(h->net.chunks_live, 0);
	h_free(h);
}

/* ---- the whole simulator --------------------------------------------------
 */

static struct fms_sim *run_small(uint64_t seed)
{
	struct fms_scenario sc;
	struct fms_sim *sim = NULL;
	char err[256];

	fms_scenario_defaults(&sc);
	snprintf(sc.name, sizeof(sc.name), "unit");
	sc.nodes = 20;
	sc.seed = seed;
	sc.duration_ms = 60000;
	sc.join_spread_ms = 5000;
	sc.net.loss = 0.01;
	assert_int_equal(fms_scenario_check(&sc, err, sizeof(err)), 0);
	assert_int_equal(fms_sim_new(&sc, &sim), 0);
	assert_int_equal(fms_sim_run(sim), 0);
	return sim;
}

static void test_sim_small_run_replays(void **state)
{
	struct fms_sim *a = run_small(7), *b = run_small(7), *c = run_small(8);
	uint32_t up;

	(void)state;
	assert_true(a->m.bootstrap_pairs > 0);
	assert_int_equal(a->m.bootstrap_established, a->m.bootstrap_pairs);
	assert_int_equal(fms_sim_peer_links(a, &up, NULL, NULL) / 2,
	                 a->m.bootstrap_pairs);
	assert_int_equal(up, 20);
	/* the same seed replays exactly, another one does not */
	assert_int_equal(a->events, b->events);
	assert_int_equal(a->m.hs.sum_ms, b->m.hs.sum_ms);
	assert_int_equal(a->row_count, b->row_count);
	assert_memory_equal(a->rows, b->rows, a->row_count * sizeof(*a->rows));
	assert_true(a->events != c->events || a->m.hs.sum_ms != c->m.hs.sum_ms);
	fms_sim_free(a);
	fms_sim_free(b);
	fms_sim_free(c);
	fms_sim_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_eventq_ties_keep_push_order),
	        cmocka_unit_test(test_eventq_random_load_matches_sort),
	        cmocka_unit_test(test_eventq_interleaved_is_monotone),
	        cmocka_unit_test(test_rng_streams),
	        cmocka_unit_test(test_churn_fit_matches_quantiles),
	        cmocka_unit_test(test_scenario_keys),
	        cmocka_unit_test(test_addresses_round_trip),
	        cmocka_unit_test(test_net_loss_rate),
	        cmocka_unit_test(test_net_latency_distribution),
	        cmocka_unit_test(test_net_duplicate_and_reorder),
	        cmocka_unit_test(test_net_stream_order_and_close),
	        cmocka_unit_test(test_net_crash_semantics),
	        cmocka_unit_test(test_net_partition_semantics),
	        cmocka_unit_test(test_sim_small_run_replays),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
