/* The jobs workload (jobs_workload.h, docs/SIMULATION.md "Jobs").
 *
 * Who does what:
 * - Arrivals: one Poisson process for the whole run (rate jobs/s), each
 *   job going to a submitter drawn at random. Its size (service time on a
 *   node of speed factor 1) is drawn at arrival, from the workload's own
 *   random stream, whatever happens to the job afterwards: so every
 *   strategy of a comparison sees the same jobs, at the same times, of the
 *   same sizes (common random numbers). The size travels in the job's
 *   input, so a retried job is the same work everywhere.
 * - Workers: the simulator is their driver. fm_io.job_execute queues the
 *   run (FIFO) or starts it in a free slot; a run lasts size x the node's
 *   speed factor (x slow_factor while the node is slow); a share `fail` of
 *   runs fail, after a uniform part of their time; then
 *   fm_node_job_finished. fm_io.job_kill ends a run at once (cancelled).
 *   A node that stops loses its runs without a word, as a crashed process
 *   does.
 * - Outcomes: fm_io.job_update at the submitter: the final state, where it
 *   ran, and the attempts; latency is from arrival to the final update.
 *
 * Nothing here walks all nodes or all jobs per event; only the failover
 * snapshot (once) and the report do. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobs_workload.h"
#include "sim.h"

#define NIL UINT32_MAX
/* A run's ID as the core names it: "SUBMITTERHEX:JOBID" or "JOBID". */
#define RUN_ID_MAX (2 * FM_NODE_ID_BYTES + 1 + FM_JOB_ID_MAX)
#define INPUT_MAX (1u << 20)
#define OUTPUT_MAX (1u << 20)
#define PATH_BYTES 4096

/* ---- parameters -------------------------------------------------------- */

static const char *const strategy_names[FMS_JOBS_STRATEGIES] = {
        "random", "round_robin", "least_pending", "p2c"};

const char *fms_strategy_name(unsigned s)
{
	if (s == FMS_STRAT_ALL)
		return "all";
	return s < FMS_JOBS_STRATEGIES ? strategy_names[s] : "?";
}

const char *fms_strategy_names(void)
{
	return "random round_robin least_pending p2c";
}

static const char *service_dist_name(unsigned d)
{
	static const char *const names[] = {"constant", "exponential",
	                                    "lognormal", "weibull"};

	return d < 4 ? names[d] : "?";
}

void fms_jobs_params_default(struct fms_jobs_params *p)
{
	memset(p, 0, sizeof(*p));
	p->strategy = FMS_STRAT_P2C;
	p->submitters = 1;
	p->connect_submitters = 1;
	p->rate = 100;
	p->start_ms = 10000;
	snprintf(p->service, sizeof(p->service), "work");
	p->service_dist = FMS_SVC_EXPONENTIAL;
	p->service_mean_ms = 10;
	p->service_shape = 1;
	p->slots[0] = 1;
	p->slots_weight[0] = 1;
	p->slots_choices = 1;
	p->slow_node = NIL;
	p->slow_factor = 1;
	p->flaky_node = NIL;
	p->input_bytes = 64;
	p->output_bytes = 32;
	p->failover_node = NIL;
}

/* A duration in milliseconds, fractions kept: "0.5ms", "20ms", "1.5s". */
static int parse_ms(const char *text, double *out)
{
	char *end = NULL;
	double v;

	if (text == NULL || *text == '\0')
		return -EINVAL;
	errno = 0;
	v = strtod(text, &end);
	if (errno != 0 || end == text || !(v >= 0) || v > 1e12)
		return -EINVAL;
	if (strcmp(end, "ms") == 0)
		*out = v;
	else if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		*out = v * 1000;
	else if (strcmp(end, "us") == 0)
		*out = v / 1000;
	else if (strcmp(end, "m") == 0)
		*out = v * 60000;
	else
		return -EINVAL;
	return 0;
}

/* "none" or a node index. */
static int parse_node(const char *text, uint32_t *out)
{
	if (strcmp(text, "none") == 0) {
		*out = NIL;
		return 0;
	}
	return fms_parse_u32(text, FMS_NODES_MAX - 1, out);
}

/* "4", or weighted choices "1:30 2:40 4:30". */
static int parse_slots(struct fms_jobs_params *p, const char *value)
{
	char buf[256], *save = NULL, *tok;
	uint32_t n = 0;
	double total = 0;

	if (strlen(value) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", value);
	for (tok = strtok_r(buf, " ,\t", &save); tok != NULL;
	     tok = strtok_r(NULL, " ,\t", &save)) {
		char *colon = strchr(tok, ':');
		double w = 1;
		uint32_t s;
		if (n == FMS_JOBS_SLOTS_CHOICES)
			return -EINVAL;
		if (colon != NULL) {
			*colon = '\0';
			if (fms_parse_double(colon + 1, 0, 1e9, &w) != 0)
				return -EINVAL;
		}
		if (fms_parse_u32(tok, 65536, &s) != 0 || s == 0)
			return -EINVAL;
		p->slots[n] = s;
		p->slots_weight[n] = w;
		total += w;
		n++;
	}
	if (n == 0 || !(total > 0))
		return -EINVAL;
	p->slots_choices = n;
	return 0;
}

static int parse_strategy(const char *v, uint8_t *out)
{
	if (strcmp(v, "p2c") == 0 || strcmp(v, "p2c_peak_ewma") == 0)
		*out = FMS_STRAT_P2C;
	else if (strcmp(v, "random") == 0)
		*out = FMS_STRAT_RANDOM;
	else if (strcmp(v, "round_robin") == 0)
		*out = FMS_STRAT_ROUND_ROBIN;
	else if (strcmp(v, "least_pending") == 0)
		*out = FMS_STRAT_LEAST_PENDING;
	else if (strcmp(v, "all") == 0)
		*out = FMS_STRAT_ALL;
	else
		return -EINVAL;
	return 0;
}

#define IS(s, k) (strcmp(section, s) == 0 && strcmp(key, k) == 0)

int fms_jobs_params_set(struct fms_jobs_params *p, const char *section,
                        const char *key, const char *value, char *err,
                        size_t err_len)
{
	double d;
	int rc = 0;

	if (IS("jobs", "enabled")) {
		rc = fms_parse_bool(value, &p->enabled);
	} else if (IS("jobs", "strategy")) {
		if (parse_strategy(value, &p->strategy) != 0)
			return fms_fail(
			        err, err_len,
			        "[jobs] strategy: '%s' is not one of %s all",
			        value, fms_strategy_names());
	} else if (IS("jobs", "submitters")) {
		rc = fms_parse_u32(value, FMS_NODES_MAX, &p->submitters);
		if (rc == 0 && p->submitters == 0)
			rc = -EINVAL;
	} else if (IS("jobs", "submitters_serve")) {
		rc = fms_parse_bool(value, &p->submitters_serve);
	} else if (IS("jobs", "connect_submitters")) {
		rc = fms_parse_bool(value, &p->connect_submitters);
	} else if (IS("jobs", "rate")) {
		rc = fms_parse_double(value, 1e-6, 1e7, &p->rate);
	} else if (IS("jobs", "start")) {
		rc = fms_parse_duration_ms(value, &p->start_ms);
	} else if (IS("jobs", "stop")) {
		rc = fms_parse_duration_ms(value, &p->stop_ms);
	} else if (IS("jobs", "max_jobs")) {
		rc = fms_parse_u64(value, &p->max_jobs);
	} else if (IS("jobs", "service")) {
		rc = fms_service_name_check(value);
		if (rc == 0)
			snprintf(p->service, sizeof(p->service), "%s", value);
	} else if (IS("jobs", "service_time")) {
		if (strcmp(value, "constant") == 0)
			p->service_dist = FMS_SVC_CONSTANT;
		else if (strcmp(value, "exponential") == 0)
			p->service_dist = FMS_SVC_EXPONENTIAL;
		else if (strcmp(value, "lognormal") == 0)
			p->service_dist = FMS_SVC_LOGNORMAL;
		else if (strcmp(value, "weibull") == 0)
			p->service_dist = FMS_SVC_WEIBULL;
		else
			rc = -EINVAL;
	} else if (IS("jobs", "service_mean")) {
		rc = parse_ms(value, &d);
		if (rc == 0 && !(d > 0 && d <= 86400000.0))
			rc = -EINVAL;
		if (rc == 0)
			p->service_mean_ms = d;
	} else if (IS("jobs", "service_shape")) {
		rc = fms_parse_double(value, 0.01, 100, &p->service_shape);
	} else if (IS("jobs", "slots")) {
		rc = parse_slots(p, value);
	} else if (IS("jobs", "speed_sigma")) {
		rc = fms_parse_double(value, 0, 5, &p->speed_sigma);
	} else if (IS("jobs", "fail")) {
		rc = fms_parse_double(value, 0, 1, &p->fail);
	} else if (IS("jobs", "queue_max")) {
		rc = fms_parse_u32(value, UINT32_MAX, &p->queue_max);
	} else if (IS("jobs", "slow_node")) {
		rc = parse_node(value, &p->slow_node);
	} else if (IS("jobs", "slow_factor")) {
		rc = fms_parse_double(value, 0.001, 1e6, &p->slow_factor);
	} else if (IS("jobs", "slow_from")) {
		rc = fms_parse_duration_ms(value, &p->slow_from_ms);
	} else if (IS("jobs", "slow_to")) {
		rc = fms_parse_duration_ms(value, &p->slow_to_ms);
	} else if (IS("jobs", "flaky_node")) {
		rc = parse_node(value, &p->flaky_node);
	} else if (IS("jobs", "flaky_fail")) {
		rc = fms_parse_double(value, 0, 1, &p->flaky_fail);
	} else if (IS("jobs", "timeout")) {
		rc = fms_parse_duration_ms(value, &p->timeout_ms);
		if (rc == 0 && p->timeout_ms > 24ULL * 3600 * 1000)
			rc = -EINVAL;
	} else if (IS("jobs", "input_bytes")) {
		rc = fms_parse_u32(value, INPUT_MAX, &p->input_bytes);
	} else if (IS("jobs", "output_bytes")) {
		rc = fms_parse_u32(value, OUTPUT_MAX, &p->output_bytes);
	} else if (IS("jobs", "idempotent")) {
		rc = fms_parse_bool(value, &p->idempotent);
	} else if (IS("failover", "enabled")) {
		rc = fms_parse_bool(value, &p->failover);
	} else if (IS("failover", "node")) {
		rc = parse_node(value, &p->failover_node);
	} else if (IS("failover", "at")) {
		rc = fms_parse_duration_ms(value, &p->failover_at_ms);
	} else if (IS("failover", "mode")) {
		if (strcmp(value, "crash") == 0)
			p->failover_mode = FMS_FAILOVER_CRASH;
		else if (strcmp(value, "vanish") == 0)
			p->failover_mode = FMS_FAILOVER_VANISH;
		else
			rc = -EINVAL;
	} else {
		return fms_fail(err, err_len, "unknown key [%s] %s", section,
		                key);
	}
	if (rc != 0)
		return fms_fail(err, err_len, "[%s] %s: invalid value '%s'",
		                section, key, value);
	return 0;
}

int fms_jobs_params_check(const struct fms_jobs_params *p, uint32_t nodes,
                          uint64_t duration_ms, char *err, size_t err_len)
{
	if (p->failover && !p->enabled)
		return fms_fail(err, err_len, "failover: needs [jobs] enabled");
	if (!p->enabled && p->strategy != FMS_STRAT_P2C)
		return fms_fail(
		        err, err_len,
		        "jobs: a strategy was chosen but the scenario has "
		        "no jobs ([jobs] enabled = false)");
	if (!p->enabled)
		return 0;
#ifndef FM_JOB_ROUTE_COUNT
	if (p->strategy != FMS_STRAT_P2C)
		return fms_fail(
		        err, err_len,
		        "jobs: strategy %s needs a core whose "
		        "fm_node_config has job_strategy; this one routes "
		        "with p2c only",
		        fms_strategy_name(p->strategy));
#endif
	if (p->submitters >= nodes && !p->submitters_serve)
		return fms_fail(
		        err, err_len,
		        "jobs: %u submitters leave no worker among %u nodes",
		        p->submitters, nodes);
	if (p->submitters > nodes)
		return fms_fail(err, err_len,
		                "jobs: more submitters than nodes");
	if (p->connect_submitters && p->submitters > FMS_BOOT_MAX)
		return fms_fail(err, err_len,
		                "jobs: connect_submitters allows at most %d "
		                "submitters",
		                FMS_BOOT_MAX);
	if (p->start_ms >= duration_ms)
		return fms_fail(err, err_len, "jobs: start is after the end");
	if (p->stop_ms != 0 && p->stop_ms <= p->start_ms)
		return fms_fail(err, err_len, "jobs: stop must follow start");
	if (p->slow_node != NIL && p->slow_node >= nodes)
		return fms_fail(err, err_len, "jobs: slow_node %u >= nodes",
		                p->slow_node);
	if (p->slow_to_ms != 0 && p->slow_to_ms <= p->slow_from_ms)
		return fms_fail(err, err_len,
		                "jobs: slow_to must follow slow_from");
	if (p->flaky_node != NIL && p->flaky_node >= nodes)
		return fms_fail(err, err_len, "jobs: flaky_node %u >= nodes",
		                p->flaky_node);
	if (p->input_bytes < 24)
		return fms_fail(err, err_len, "jobs: input_bytes below 24");
	if (p->failover) {
		if (p->failover_node == NIL || p->failover_node >= nodes ||
		    p->failover_node < p->submitters)
			return fms_fail(
			        err, err_len,
			        "failover: node must be a worker (%u to %u)",
			        p->submitters, nodes - 1);
		if (p->failover_at_ms == 0 || p->failover_at_ms >= duration_ms)
			return fms_fail(
			        err, err_len,
			        "failover: at must fall within the run");
	}
	return 0;
}

/* ---- state ------------------------------------------------------------- */

enum run_state { RUN_FREE = 0, RUN_QUEUED, RUN_RUNNING, RUN_DROPPED };
enum run_end { END_OK = 0, END_FAIL, END_TIMEOUT };

/* A job queued or running on a worker. */
struct run {
	uint32_t next; /* queue, or free list */
	uint32_t gen;  /* bumped when its end event is superseded */
	uint32_t node;
	uint8_t state;  /* enum run_state */
	uint8_t killed; /* the core asked: cancelled */
	uint8_t end;    /* enum run_end, decided at start */
	uint64_t size_us;
	uint64_t timeout_us;
	uint64_t start_us;
	char id[RUN_ID_MAX + 1];
};

struct worker {
	uint32_t slots; /* 0: does not offer the service */
	uint32_t busy;
	uint32_t queued;
	uint32_t head, tail; /* FIFO of queued runs */
	double factor;       /* service time multiplier */
	double fail;
	uint8_t id_known;
	uint8_t node_id[FM_NODE_ID_BYTES];
	/* counters */
	uint64_t runs, done, failed, killed, lost, refused;
	uint64_t busy_us; /* slot time spent running */
};

/* A job, as its submitter sees it. */
struct job {
	uint64_t arrive_us;
	uint64_t end_us; /* 0: not final */
	uint64_t size_us;
	uint64_t redispatch_us; /* failover: first attempt elsewhere, 0 */
	uint32_t submitter;
	uint32_t ran_on;  /* node index, or NIL */
	uint32_t live[2]; /* nodes of its live attempts (last update) */
	uint8_t state;    /* enum fm_job_state; QUEUED.. while active */
	uint8_t final;
	uint8_t attempts;
	uint8_t failover; /* live on the failover node when it died */
};

struct node_row {
	uint32_t slots;
	double factor;
	uint64_t runs, done, failed, killed, lost, refused, busy_us;
};

/* The outcome of one run (one strategy). */
struct result {
	uint8_t strategy;
	uint32_t nodes, submitters;
	uint64_t sim_us;
	uint64_t count, done, failed, timed_out, cancelled, unfinished;
	uint64_t rejected, submitter_down;
	uint64_t retries, attempts, ran_local, ran_remote, slow_node_jobs;
	uint64_t *lat_us; /* done jobs, sorted */
	size_t lat_n;
	uint64_t lat_sum_us;
	struct job *jobs;
	size_t job_count;
	struct node_row *rows;
	/* failover */
	int fo_done;
	uint64_t fo_at_us, fo_in_flight, fo_elsewhere, fo_same_node;
	uint64_t *fo_us; /* time to complete elsewhere, sorted */
	size_t fo_n;
	uint64_t *fo_redispatch_us; /* time to the attempt elsewhere, sorted */
	size_t fo_redispatch_n;
};

struct fms_jobs {
	struct fms_jobs_params p;
	uint8_t strategy;        /* this run's */
	struct fms_rng rng;      /* arrivals, sizes, node draws */
	struct fms_rng exec_rng; /* per run: failures */
	struct worker *w;
	uint32_t n;
	struct run *runs;
	uint32_t run_cap, run_used, run_free;
	struct job *jobs;
	size_t job_count, job_cap;
	uint64_t arrivals, rejected, submitter_down;
	uint32_t *idmap; /* node IDs to indices, open addressing */
	uint32_t idmap_mask;
	uint8_t *input;
	uint8_t *output;
	/* failover */
	int fo_armed, fo_done;
	uint64_t fo_at_us, fo_in_flight;
	/* results: earlier strategies' runs, then this one's once done */
	struct result *results[FMS_JOBS_STRATEGIES + 1];
	size_t result_count;
	int finished;
};

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

static inline uint64_t now_ms(const struct fms_sim *sim)
{
	return sim->now_us / 1000;
}

/* ---- node IDs ---------------------------------------------------------- */

static uint64_t id_hash(const uint8_t *id)
{
	uint64_t h;

	memcpy(&h, id, sizeof(h)); /* node IDs are hashes already */
	return h;
}

static void idmap_add(struct fms_jobs *J, const uint8_t *id, uint32_t node)
{
	uint32_t i = (uint32_t)id_hash(id) & J->idmap_mask;

	while (J->idmap[i] != NIL)
		i = (i + 1) & J->idmap_mask;
	J->idmap[i] = node;
}

static uint32_t idmap_find(const struct fms_jobs *J, const uint8_t *id)
{
	uint32_t i;

	if (id == NULL)
		return NIL;
	i = (uint32_t)id_hash(id) & J->idmap_mask;
	while (J->idmap[i] != NIL) {
		uint32_t k = J->idmap[i];
		if (memcmp(J->w[k].node_id, id, FM_NODE_ID_BYTES) == 0)
			return k;
		i = (i + 1) & J->idmap_mask;
	}
	return NIL;
}

/* ---- draws ------------------------------------------------------------- */

/* A job's size in microseconds: its service time on a node of factor 1. */
static uint64_t draw_size_us(struct fms_jobs *J)
{
	double m = J->p.service_mean_ms * 1000.0, k = J->p.service_shape, v;

	switch (J->p.service_dist) {
	case FMS_SVC_CONSTANT:
		v = m;
		break;
	case FMS_SVC_LOGNORMAL:
		/* mean m: mu = ln m - sigma^2 / 2 */
		v = fms_rng_lognormal(&J->rng, log(m) - k * k / 2, k);
		break;
	case FMS_SVC_WEIBULL:
		/* mean m = lambda * Gamma(1 + 1/k) */
		v = fms_rng_weibull(&J->rng, k, m / tgamma(1.0 + 1.0 / k));
		break;
	case FMS_SVC_EXPONENTIAL:
	default:
		v = fms_rng_exp(&J->rng, m);
		break;
	}
	if (!(v >= 1))
		v = 1;
	if (v > 1e13)
		v = 1e13;
	return (uint64_t)v;
}

static uint32_t draw_slots(struct fms_jobs *J)
{
	double total = 0, x;
	uint32_t i;

	if (J->p.slots_choices == 1)
		return J->p.slots[0];
	for (i = 0; i < J->p.slots_choices; i++)
		total += J->p.slots_weight[i];
	x = fms_rng_double(&J->rng) * total;
	for (i = 0; i < J->p.slots_choices; i++) {
		if (x < J->p.slots_weight[i])
			return J->p.slots[i];
		x -= J->p.slots_weight[i];
	}
	return J->p.slots[J->p.slots_choices - 1];
}

/* ---- runs on workers --------------------------------------------------- */

static uint32_t run_alloc(struct fms_jobs *J)
{
	uint32_t i;

	if (J->run_free != NIL) {
		i = J->run_free;
		J->run_free = J->runs[i].next;
	} else {
		if (J->run_used == J->run_cap) {
			uint32_t cap = J->run_cap ? J->run_cap * 2 : 256;
			struct run *grown =
			        realloc(J->runs, (size_t)cap * sizeof(*grown));
			if (grown == NULL)
				fatal_oom("job runs");
			J->runs = grown;
			J->run_cap = cap;
		}
		i = J->run_used++;
	}
	memset(&J->runs[i], 0, sizeof(J->runs[i]));
	J->runs[i].next = NIL;
	return i;
}

static void run_release(struct fms_jobs *J, uint32_t i)
{
	J->runs[i].state = RUN_FREE;
	J->runs[i].gen++;
	J->runs[i].next = J->run_free;
	J->run_free = i;
}

static double node_factor(const struct fms_sim *sim, const struct fms_jobs *J,
                          uint32_t node)
{
	double f = J->w[node].factor;
	uint64_t t = now_ms(sim);

	if (node == J->p.slow_node && t >= J->p.slow_from_ms &&
	    (J->p.slow_to_ms == 0 || t < J->p.slow_to_ms))
		f *= J->p.slow_factor;
	return f;
}

static void run_start(struct fms_sim *sim, struct fms_jobs *J, uint32_t i)
{
	struct run *r = &J->runs[i];
	struct worker *w = &J->w[r->node];
	double t = (double)r->size_us * node_factor(sim, J, r->node);
	uint64_t dur;

	r->state = RUN_RUNNING;
	r->start_us = sim->now_us;
	w->busy++;
	w->runs++;
	r->end = END_OK;
	if (w->fail > 0 && fms_rng_double(&J->exec_rng) < w->fail) {
		/* It fails part of the way through. */
		r->end = END_FAIL;
		t *= fms_rng_double(&J->exec_rng);
	}
	if (!(t >= 1))
		t = 1;
	if (t > 1e13)
		t = 1e13;
	dur = (uint64_t)t;
	if (r->timeout_us > 0 && dur > r->timeout_us) {
		dur = r->timeout_us; /* the driver kills it at its timeout */
		r->end = END_TIMEOUT;
	}
	push(sim, sim->now_us + dur, FMS_EV_JOB_END, i, r->gen, 0);
}

/* A slot is free: the next queued run, if any, starts. */
static void worker_next(struct fms_sim *sim, struct fms_jobs *J, uint32_t node)
{
	struct worker *w = &J->w[node];

	while (w->busy < w->slots && w->head != NIL) {
		uint32_t i = w->head;
		w->head = J->runs[i].next;
		if (w->head == NIL)
			w->tail = NIL;
		J->runs[i].next = NIL;
		w->queued--;
		run_start(sim, J, i);
	}
}

/* "SEQ SIZE_US" at the start of a job's input. */
static void input_parse(const uint8_t *in, size_t len, uint64_t *size_us)
{
	char buf[48];
	unsigned long long seq, size;
	size_t n = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;

	memcpy(buf, in, n);
	buf[n] = '\0';
	if (sscanf(buf, "%llu %llu", &seq, &size) == 2 && size > 0)
		*size_us = size;
}

static int io_job_execute(void *ctx, const char *job_id, const char *service,
                          const uint8_t *input, size_t input_len,
                          uint64_t timeout_ms)
{
	struct fms_node *nd = ctx;
	struct fms_sim *sim = nd->sim;
	struct fms_jobs *J = sim->jobs;
	uint32_t node = (uint32_t)(nd - sim->nodes), i;
	struct worker *w = &J->w[node];
	struct run *r;

	if (strcmp(service, J->p.service) != 0 || w->slots == 0)
		return -ENOENT;
	if (J->p.queue_max > 0 && w->busy >= w->slots &&
	    w->queued >= J->p.queue_max) {
		w->refused++;
		return -EBUSY;
	}
	i = run_alloc(J);
	r = &J->runs[i];
	r->node = node;
	r->state = RUN_QUEUED;
	r->size_us = (uint64_t)(J->p.service_mean_ms * 1000.0);
	input_parse(input, input_len, &r->size_us);
	r->timeout_us = timeout_ms * 1000;
	snprintf(r->id, sizeof(r->id), "%s", job_id);
	if (w->busy < w->slots) {
		run_start(sim, J, i);
	} else {
		if (w->tail != NIL)
			J->runs[w->tail].next = i;
		else
			w->head = i;
		w->tail = i;
		w->queued++;
	}
	return 0;
}

static void io_job_kill(void *ctx, const char *job_id)
{
	struct fms_node *nd = ctx;
	struct fms_sim *sim = nd->sim;
	struct fms_jobs *J = sim->jobs;
	uint32_t node = (uint32_t)(nd - sim->nodes), i, *pp;
	struct worker *w = &J->w[node];

	/* Kills are rare (cancels, timeouts, hedges): a scan will do. */
	for (i = 0; i < J->run_used; i++) {
		struct run *r = &J->runs[i];
		if (r->node != node || r->killed ||
		    (r->state != RUN_QUEUED && r->state != RUN_RUNNING) ||
		    strcmp(r->id, job_id) != 0)
			continue;
		r->killed = 1;
		if (r->state == RUN_QUEUED) {
			for (pp = &w->head; *pp != i; pp = &J->runs[*pp].next)
				;
			*pp = r->next;
			if (w->tail == i) {
				uint32_t k = w->head;
				w->tail = NIL;
				while (k != NIL) {
					w->tail = k;
					k = J->runs[k].next;
				}
			}
			r->next = NIL;
			w->queued--;
			r->state = RUN_DROPPED; /* ends without a slot */
		}
		/* The driver still reports its end, now. */
		r->gen++;
		push(sim, sim->now_us, FMS_EV_JOB_END, i, r->gen, 0);
		return;
	}
}

static void run_end(struct fms_sim *sim, struct fms_jobs *J, uint32_t i,
                    uint32_t gen)
{
	struct run *r;
	struct worker *w;
	struct fms_node *nd;
	char id[RUN_ID_MAX + 1];
	enum fm_job_state state;
	const char *error = NULL;
	uint32_t node;
	size_t out_len = 0;

	if (i >= J->run_used)
		return;
	r = &J->runs[i];
	if (r->gen != gen ||
	    (r->state != RUN_RUNNING && r->state != RUN_DROPPED))
		return; /* superseded, or died with its node */
	node = r->node;
	w = &J->w[node];
	nd = &sim->nodes[node];
	memcpy(id, r->id, sizeof(id));
	if (r->killed) {
		state = FM_JOB_CANCELLED;
		error = "killed";
		w->killed++;
	} else if (r->end == END_FAIL) {
		state = FM_JOB_FAILED;
		error = "simulated failure";
		w->failed++;
	} else if (r->end == END_TIMEOUT) {
		state = FM_JOB_TIMED_OUT;
		error = "timed out";
		w->failed++;
	} else {
		state = FM_JOB_DONE;
		out_len = J->p.output_bytes;
		w->done++;
	}
	if (r->state == RUN_RUNNING) {
		w->busy--;
		w->busy_us += sim->now_us - r->start_us;
	}
	/* r goes before the core hears of it: the call below may start new
	 * runs (a local retry), which may move the pool. */
	run_release(J, i);
	worker_next(sim, J, node);
	if (nd->core == NULL)
		return;
	fm_node_job_finished(nd->core, now_ms(sim), id, state, 0, J->output,
	                     out_len, error);
	fms_sim_kick(sim, node);
}

/* ---- submitters -------------------------------------------------------- */

static uint64_t job_seq(const char *id)
{
	char *end = NULL;
	unsigned long long v;

	if (id == NULL || id[0] != 'j')
		return UINT64_MAX;
	v = strtoull(id + 1, &end, 10);
	if (end == id + 1 || *end != '\0')
		return UINT64_MAX;
	return v;
}

static void io_job_update(void *ctx, const struct fm_job_update *u)
{
	struct fms_node *nd = ctx;
	struct fms_sim *sim = nd->sim;
	struct fms_jobs *J = sim->jobs;
	uint64_t seq = job_seq(u->id);
	struct job *j;
	size_t i, live = 0;

	if (seq >= J->job_count)
		return;
	j = &J->jobs[seq];
	if (j->final || j->submitter != (uint32_t)(nd - sim->nodes))
		return;
	j->state = (uint8_t)u->state;
	j->attempts = (uint8_t)u->attempt_count;
	j->live[0] = j->live[1] = NIL;
	for (i = 0; i < u->attempt_count; i++) {
		const fm_job_attempt *a = &u->attempts[i];
		uint32_t k;
		if (a->end_ms != 0 || a->outcome != FM_JOB_RUNNING)
			continue;
		k = idmap_find(J, a->node_id);
		if (live < 2)
			j->live[live++] = k;
		if (j->failover && j->redispatch_us == 0 &&
		    k != J->p.failover_node)
			j->redispatch_us = sim->now_us;
	}
	if (u->state == FM_JOB_DONE || u->state == FM_JOB_FAILED ||
	    u->state == FM_JOB_TIMED_OUT || u->state == FM_JOB_CANCELLED) {
		j->final = 1;
		j->end_us = sim->now_us;
		j->live[0] = j->live[1] = NIL;
		if (u->state == FM_JOB_DONE)
			j->ran_on = idmap_find(J, u->ran_on);
	}
}

static void arrive(struct fms_sim *sim, struct fms_jobs *J)
{
	uint64_t stop_us =
	        (J->p.stop_ms ? J->p.stop_ms : sim->sc.duration_ms) * 1000;
	uint64_t gap, size;
	uint32_t s;
	struct fms_node *nd;
	struct job *j;
	fm_job_spec spec;
	int n, rc;

	/* Every draw is made whatever becomes of the job, so that every
	 * strategy sees the same arrivals and sizes. */
	gap = (uint64_t)fms_rng_exp(&J->rng, 1e6 / J->p.rate) + 1;
	s = J->p.submitters > 1
	            ? (uint32_t)fms_rng_below(&J->rng, J->p.submitters)
	            : 0;
	size = draw_size_us(J);
	J->arrivals++;
	if (sim->now_us + gap < stop_us &&
	    (J->p.max_jobs == 0 || J->arrivals < J->p.max_jobs))
		push(sim, sim->now_us + gap, FMS_EV_JOB_ARRIVE, 0, 0, 0);
	nd = &sim->nodes[s];
	if (nd->core == NULL) {
		J->submitter_down++;
		return;
	}
	if (J->job_count == J->job_cap) {
		size_t cap = J->job_cap ? J->job_cap * 2 : 1024;
		struct job *grown = realloc(J->jobs, cap * sizeof(*grown));
		if (grown == NULL)
			fatal_oom("jobs");
		J->jobs = grown;
		J->job_cap = cap;
	}
	j = &J->jobs[J->job_count];
	memset(j, 0, sizeof(*j));
	j->arrive_us = sim->now_us;
	j->size_us = size;
	j->submitter = s;
	j->ran_on = NIL;
	j->live[0] = j->live[1] = NIL;
	memset(&spec, 0, sizeof(spec));
	snprintf(spec.id, sizeof(spec.id), "j%zu", J->job_count);
	snprintf(spec.service, sizeof(spec.service), "%s", J->p.service);
	n = snprintf((char *)J->input, J->p.input_bytes + 1, "%zu %llu\n",
	             J->job_count, (unsigned long long)size);
	if (n > 0 && (uint32_t)n < J->p.input_bytes)
		memset(J->input + n, '.', J->p.input_bytes - (uint32_t)n);
	spec.input = J->input;
	spec.input_len = J->p.input_bytes;
	spec.timeout_ms = J->p.timeout_ms;
	spec.idempotent = (uint8_t)J->p.idempotent;
	J->job_count++;
	rc = fm_node_job_submit(nd->core, now_ms(sim), &spec);
	if (rc != 0) {
		J->job_count--; /* never became a job */
		J->rejected++;
	}
	fms_sim_kick(sim, s);
}

/* ---- failover ---------------------------------------------------------- */

static void failover_crash(struct fms_sim *sim, struct fms_jobs *J)
{
	uint32_t node = J->p.failover_node;
	struct fms_node *nd = &sim->nodes[node];

	if (nd->state != FMS_NODE_UP || nd->core == NULL)
		return; /* down already: nothing to measure */
	J->fo_armed = 1;
	/* The simulator's own lifecycle event does the rest: the host
	 * resets the node's connections (crash) or goes silent (vanish). */
	push(sim, sim->now_us, FMS_EV_LIFE, node, nd->incarnation,
	     J->p.failover_mode == FMS_FAILOVER_VANISH ? FMS_LIFE_LEAVE
	                                               : FMS_LIFE_CRASH);
}

static void failover_snapshot(struct fms_sim *sim, struct fms_jobs *J,
                              uint32_t node)
{
	size_t i;

	J->fo_armed = 0;
	J->fo_done = 1;
	J->fo_at_us = sim->now_us;
	for (i = 0; i < J->job_count; i++) {
		struct job *j = &J->jobs[i];
		if (!j->final && (j->live[0] == node || j->live[1] == node)) {
			j->failover = 1;
			J->fo_in_flight++;
		}
	}
}

/* ---- hooks for sim.c --------------------------------------------------- */

int fms_jobs_setup(struct fms_sim *sim)
{
	const struct fms_jobs_params *p = &sim->sc.jobs;
	struct fms_jobs *J;
	uint32_t i, n = sim->sc.nodes, size = 16;

	if (!p->enabled)
		return 0;
	J = calloc(1, sizeof(*J));
	if (J == NULL)
		return -ENOMEM;
	sim->jobs = J;
	J->p = *p;
	J->strategy =
	        p->strategy == FMS_STRAT_ALL ? FMS_STRAT_P2C : p->strategy;
	J->n = n;
	J->run_free = NIL;
	fms_rng_seed(&J->rng, sim->sc.seed, FMS_RNG_STREAM_JOBS);
	fms_rng_seed(&J->exec_rng, sim->sc.seed,
	             ((uint64_t)FMS_RNG_STREAM_JOBS << 32) | 1);
	while (size < 2 * n)
		size *= 2;
	J->w = calloc(n, sizeof(*J->w));
	J->idmap = malloc((size_t)size * sizeof(*J->idmap));
	J->input = malloc((size_t)p->input_bytes + 1);
	J->output = malloc(p->output_bytes > 0 ? p->output_bytes : 1);
	if (J->w == NULL || J->idmap == NULL || J->input == NULL ||
	    J->output == NULL)
		return -ENOMEM;
	J->idmap_mask = size - 1;
	memset(J->idmap, 0xff, (size_t)size * sizeof(*J->idmap));
	for (i = 0; i < p->output_bytes; i++)
		J->output[i] = (uint8_t) "fedmesh-sim "[i % 12];
	for (i = 0; i < n; i++) {
		struct worker *w = &J->w[i];
		double sigma = p->speed_sigma;
		uint32_t slots = draw_slots(J);
		double factor =
		        sigma > 0 ? fms_rng_lognormal(&J->rng,
		                                      -sigma * sigma / 2, sigma)
		                  : 1.0;
		w->head = w->tail = NIL;
		w->factor = factor;
		w->fail = i == p->flaky_node ? p->flaky_fail : p->fail;
		if (sim->nodes[i].kind == FMS_HONEST &&
		    (i >= p->submitters || p->submitters_serve))
			w->slots = slots;
	}
	/* Every worker knows the submitters from the start, as a client's
	 * backends would: without a DHT walk the bootstrap graph alone may
	 * leave a worker out of a submitter's sessions. */
	if (p->connect_submitters)
		for (i = p->submitters; i < n; i++) {
			struct fms_node *nd = &sim->nodes[i];
			uint32_t s;
			uint8_t b;
			if (nd->kind != FMS_HONEST)
				continue;
			for (s = 0; s < p->submitters; s++) {
				int have = 0, slot = -1;
				if (sim->nodes[s].kind != FMS_HONEST)
					continue;
				for (b = 0; b < nd->boot_count; b++)
					if (nd->boot[b] == s)
						have = 1;
				if (have)
					continue;
				if (nd->boot_count < FMS_BOOT_MAX) {
					nd->boot[nd->boot_count++] = s;
					sim->m.bootstrap_pairs++;
					continue;
				}
				/* Full: replace a contact that is not a
				 * submitter. */
				for (b = nd->boot_count; b-- > 0;)
					if (nd->boot[b] >= p->submitters) {
						slot = b;
						break;
					}
				if (slot >= 0) {
					nd->boot[slot] = s;
					nd->boot_ok &= (uint8_t) ~(1u << slot);
				}
			}
		}
	push(sim,
	     p->start_ms * 1000 + (uint64_t)fms_rng_exp(&J->rng, 1e6 / p->rate),
	     FMS_EV_JOB_ARRIVE, 0, 0, 0);
	if (p->failover)
		push(sim, p->failover_at_ms * 1000, FMS_EV_JOB_CRASH, 0, 0, 0);
	return 0;
}

static void result_free(struct result *r)
{
	if (r == NULL)
		return;
	free(r->lat_us);
	free(r->jobs);
	free(r->rows);
	free(r->fo_us);
	free(r->fo_redispatch_us);
	free(r);
}

void fms_jobs_free(struct fms_sim *sim)
{
	struct fms_jobs *J = sim->jobs;
	size_t i;

	if (J == NULL)
		return;
	for (i = 0; i < J->result_count; i++)
		result_free(J->results[i]);
	free(J->w);
	free(J->runs);
	free(J->jobs);
	free(J->idmap);
	free(J->input);
	free(J->output);
	free(J);
	sim->jobs = NULL;
}

void fms_jobs_node_config(struct fms_sim *sim, uint32_t node,
                          fm_node_config *cfg, fm_io *io)
{
	struct fms_jobs *J = sim->jobs;
	struct worker *w;

	if (J == NULL)
		return;
	w = &J->w[node];
	if (!w->id_known) {
		memcpy(w->node_id, cfg->identity.node_id, FM_NODE_ID_BYTES);
		w->id_known = 1;
		idmap_add(J, w->node_id, node);
	}
	io->job_execute = io_job_execute;
	io->job_kill = io_job_kill;
	io->job_update = io_job_update;
#ifdef FM_JOB_ROUTE_COUNT
	switch (J->strategy) {
	case FMS_STRAT_RANDOM:
		cfg->job_strategy = FM_JOB_ROUTE_RANDOM;
		break;
	case FMS_STRAT_ROUND_ROBIN:
		cfg->job_strategy = FM_JOB_ROUTE_ROUND_ROBIN;
		break;
	case FMS_STRAT_LEAST_PENDING:
		cfg->job_strategy = FM_JOB_ROUTE_LEAST_PENDING;
		break;
	default:
		cfg->job_strategy = FM_JOB_ROUTE_P2C;
		break;
	}
#endif
	if (w->slots > 0 && cfg->service_count < FM_NODE_SERVICES_MAX) {
		fm_service *s = &cfg->services[cfg->service_count++];
		snprintf(s->name, sizeof(s->name), "%s", J->p.service);
		s->slots = w->slots;
		cfg->capacity += w->slots;
	}
}

void fms_jobs_node_stopped(struct fms_sim *sim, uint32_t node)
{
	struct fms_jobs *J = sim->jobs;
	struct worker *w;
	uint32_t i;

	if (J == NULL || node >= J->n)
		return;
	if (J->fo_armed && node == J->p.failover_node)
		failover_snapshot(sim, J, node);
	w = &J->w[node];
	/* Its runs die with the process; the core that ran them is gone, so
	 * nobody is told. */
	for (i = 0; i < J->run_used; i++) {
		struct run *r = &J->runs[i];
		if (r->node != node || r->state == RUN_FREE)
			continue;
		if (r->state == RUN_RUNNING)
			w->busy_us += sim->now_us - r->start_us;
		w->lost++;
		run_release(J, i);
	}
	w->busy = 0;
	w->queued = 0;
	w->head = w->tail = NIL;
}

int fms_jobs_dispatch(struct fms_sim *sim, const struct fms_event *ev)
{
	struct fms_jobs *J = sim->jobs;

	if (J == NULL)
		return 0;
	switch (ev->type) {
	case FMS_EV_JOB_ARRIVE:
		arrive(sim, J);
		break;
	case FMS_EV_JOB_END:
		run_end(sim, J, ev->a, ev->b);
		break;
	case FMS_EV_JOB_CRASH:
		failover_crash(sim, J);
		break;
	default:
		break;
	}
	return 0;
}

/* ---- results ----------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank, as the rest of the simulator's percentiles. */
static uint64_t pct(const uint64_t *v, size_t n, double p)
{
	size_t rank;

	if (n == 0)
		return 0;
	rank = (size_t)ceil(p / 100.0 * (double)n);
	if (rank == 0)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

/* This run's outcome, kept once the run is over. */
static void finish(struct fms_sim *sim, struct fms_jobs *J)
{
	struct result *r;
	size_t i;

	if (J->finished)
		return;
	J->finished = 1;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		fatal_oom("job results");
	r->strategy = J->strategy;
	r->nodes = J->n;
	r->submitters = J->p.submitters;
	r->sim_us = sim->end_us;
	r->count = J->job_count;
	r->rejected = J->rejected;
	r->submitter_down = J->submitter_down;
	r->lat_us =
	        malloc((J->job_count ? J->job_count : 1) * sizeof(uint64_t));
	r->fo_us = malloc((J->job_count ? J->job_count : 1) * sizeof(uint64_t));
	r->fo_redispatch_us =
	        malloc((J->job_count ? J->job_count : 1) * sizeof(uint64_t));
	r->rows = calloc(J->n, sizeof(*r->rows));
	if (r->lat_us == NULL || r->fo_us == NULL ||
	    r->fo_redispatch_us == NULL || r->rows == NULL)
		fatal_oom("job results");
	r->fo_done = J->fo_done;
	r->fo_at_us = J->fo_at_us;
	r->fo_in_flight = J->fo_in_flight;
	for (i = 0; i < J->job_count; i++) {
		const struct job *j = &J->jobs[i];
		if (j->attempts > 0) {
			r->attempts += j->attempts;
			r->retries += (uint64_t)j->attempts - 1;
		}
		if (j->failover && j->redispatch_us != 0)
			r->fo_redispatch_us[r->fo_redispatch_n++] =
			        j->redispatch_us - J->fo_at_us;
		if (!j->final) {
			r->unfinished++;
			continue;
		}
		switch (j->state) {
		case FM_JOB_DONE:
			r->done++;
			r->lat_us[r->lat_n++] = j->end_us - j->arrive_us;
			r->lat_sum_us += j->end_us - j->arrive_us;
			if (j->ran_on == j->submitter)
				r->ran_local++;
			else
				r->ran_remote++;
			if (j->ran_on != NIL && j->ran_on == J->p.slow_node)
				r->slow_node_jobs++;
			if (j->failover) {
				if (j->ran_on == J->p.failover_node) {
					r->fo_same_node++;
				} else {
					r->fo_elsewhere++;
					r->fo_us[r->fo_n++] =
					        j->end_us - J->fo_at_us;
				}
			}
			break;
		case FM_JOB_FAILED:
			r->failed++;
			break;
		case FM_JOB_TIMED_OUT:
			r->timed_out++;
			break;
		default:
			r->cancelled++;
			break;
		}
	}
	qsort(r->lat_us, r->lat_n, sizeof(uint64_t), cmp_u64);
	qsort(r->fo_us, r->fo_n, sizeof(uint64_t), cmp_u64);
	qsort(r->fo_redispatch_us, r->fo_redispatch_n, sizeof(uint64_t),
	      cmp_u64);
	for (i = 0; i < J->n; i++) {
		const struct worker *w = &J->w[i];
		struct node_row *row = &r->rows[i];
		row->slots = w->slots;
		row->factor = w->factor;
		row->runs = w->runs;
		row->done = w->done;
		row->failed = w->failed;
		row->killed = w->killed;
		row->lost = w->lost;
		row->refused = w->refused;
		row->busy_us = w->busy_us;
		/* runs still going at the end */
	}
	for (i = 0; i < J->run_used; i++)
		if (J->runs[i].state == RUN_RUNNING)
			r->rows[J->runs[i].node].busy_us +=
			        sim->now_us - J->runs[i].start_us;
	/* The job table moves into the result (the CSV needs it). */
	r->jobs = J->jobs;
	r->job_count = J->job_count;
	J->jobs = NULL;
	J->job_count = J->job_cap = 0;
	J->results[J->result_count++] = r;
}

int fms_jobs_run(const struct fms_scenario *sc, int progress, int verbose,
                 struct fms_sim **out)
{
	struct result *kept[FMS_JOBS_STRATEGIES];
	size_t kept_count = 0, k;
	struct fms_scenario one = *sc;
	unsigned first, last, s;
	struct fms_sim *sim = NULL;
	int rc = 0;

	*out = NULL;
	if (sc->jobs.enabled && sc->jobs.strategy == FMS_STRAT_ALL) {
		first = 0;
		last = FMS_JOBS_STRATEGIES - 1;
	} else {
		first = last = 0;
	}
	for (s = first; s <= last; s++) {
		if (sc->jobs.enabled && sc->jobs.strategy == FMS_STRAT_ALL)
			one.jobs.strategy = (uint8_t)s;
		rc = fms_sim_new(&one, &sim);
		if (rc != 0)
			break;
		sim->progress = progress;
		sim->verbose = verbose;
		if (progress && last > first)
			fprintf(stderr, "fedmesh-sim: strategy %s\n",
			        fms_strategy_name(s));
		rc = fms_sim_run(sim);
		if (sim->jobs != NULL)
			finish(sim, sim->jobs);
		if (rc != 0 || s == last)
			break;
		/* Keep the jobs results; free the rest of this run. */
		kept[kept_count++] = sim->jobs->results[0];
		sim->jobs->result_count = 0;
		fms_sim_free(sim);
		sim = NULL;
	}
	if (sim != NULL && sim->jobs != NULL && kept_count > 0) {
		struct fms_jobs *J = sim->jobs;
		struct result *mine = J->results[0];
		for (k = 0; k < kept_count; k++)
			J->results[k] = kept[k];
		J->results[kept_count] = mine;
		J->result_count = kept_count + 1;
		kept_count = 0;
	}
	for (k = 0; k < kept_count; k++)
		result_free(kept[k]);
	*out = sim;
	return rc;
}

static struct fms_jobs *results_of(const struct fms_sim *sim)
{
	struct fms_jobs *J = sim->jobs;

	if (J == NULL)
		return NULL;
	/* A caller that ran the simulation itself: this run only. */
	if (!J->finished)
		finish((struct fms_sim *)sim, J);
	return J;
}

static void set_u(json_t *o, const char *k, uint64_t v)
{
	json_object_set_new(o, k, json_integer((json_int_t)v));
}

static void set_d(json_t *o, const char *k, double v)
{
	json_object_set_new(o, k, json_real(v));
}

static void set_ms(json_t *o, const char *k, uint64_t us)
{
	json_object_set_new(o, k, json_real((double)us / 1000.0));
}

static json_t *result_json(const struct fms_jobs *J, const struct result *r)
{
	json_t *o = json_object();

	set_u(o, "count", r->count);
	set_d(o, "success_rate",
	      r->count ? (double)r->done / (double)r->count : 0.0);
	set_ms(o, "latency_ms_p50", pct(r->lat_us, r->lat_n, 50));
	set_ms(o, "latency_ms_p90", pct(r->lat_us, r->lat_n, 90));
	set_ms(o, "latency_ms_p99", pct(r->lat_us, r->lat_n, 99));
	set_ms(o, "latency_ms_p999", pct(r->lat_us, r->lat_n, 99.9));
	set_ms(o, "latency_ms_max", r->lat_n ? r->lat_us[r->lat_n - 1] : 0);
	set_d(o, "latency_ms_mean",
	      r->lat_n ? (double)r->lat_sum_us / (double)r->lat_n / 1000.0
	               : 0.0);
	set_u(o, "retries", r->retries);
	set_u(o, "ran_local", r->ran_local);
	set_u(o, "ran_remote", r->ran_remote);
	set_u(o, "done", r->done);
	set_u(o, "failed", r->failed);
	set_u(o, "timed_out", r->timed_out);
	set_u(o, "cancelled", r->cancelled);
	set_u(o, "unfinished", r->unfinished);
	set_u(o, "rejected", r->rejected);
	set_u(o, "submitter_down", r->submitter_down);
	set_u(o, "attempts", r->attempts);
	if (J->p.slow_node != NIL) {
		set_u(o, "slow_node_jobs", r->slow_node_jobs);
		set_d(o, "slow_node_share",
		      r->done ? (double)r->slow_node_jobs / (double)r->done
		              : 0.0);
	}
	return o;
}

void *fms_jobs_json(const struct fms_sim *sim)
{
	struct fms_jobs *J = results_of(sim);
	json_t *o;
	size_t i;

	if (J == NULL)
		return NULL;
	o = json_object();
	for (i = 0; i < J->result_count; i++)
		json_object_set_new(o,
		                    fms_strategy_name(J->results[i]->strategy),
		                    result_json(J, J->results[i]));
	return o;
}

/* The workload's settings, for the record. */
void *fms_jobs_workload_json(const struct fms_sim *sim)
{
	const struct fms_jobs *J = sim->jobs;
	const struct fms_jobs_params *p;
	json_t *o, *slots, *names;
	uint32_t i, workers = 0;

	if (J == NULL)
		return NULL;
	p = &J->p;
	o = json_object();
	for (i = 0; i < J->n; i++)
		workers += J->w[i].slots > 0;
	names = json_array();
	for (i = 0; i < J->result_count; i++)
		json_array_append_new(names, json_string(fms_strategy_name(
		                                     J->results[i]->strategy)));
	json_object_set_new(o, "strategies", names);
	set_u(o, "submitters", p->submitters);
	set_u(o, "workers", workers);
	set_d(o, "rate_per_s", p->rate);
	set_d(o, "start_s", (double)p->start_ms / 1000.0);
	set_d(o, "stop_s",
	      (double)(p->stop_ms ? p->stop_ms : sim->sc.duration_ms) / 1000.0);
	json_object_set_new(o, "service_time",
	                    json_string(service_dist_name(p->service_dist)));
	set_d(o, "service_mean_ms", p->service_mean_ms);
	if (p->service_dist == FMS_SVC_LOGNORMAL ||
	    p->service_dist == FMS_SVC_WEIBULL)
		set_d(o, "service_shape", p->service_shape);
	slots = json_object();
	for (i = 0; i < p->slots_choices; i++) {
		char k[16];
		snprintf(k, sizeof(k), "%u", p->slots[i]);
		json_object_set_new(slots, k, json_real(p->slots_weight[i]));
	}
	json_object_set_new(o, "slots", slots);
	set_d(o, "speed_sigma", p->speed_sigma);
	set_d(o, "fail", p->fail);
	if (p->slow_node != NIL) {
		set_u(o, "slow_node", p->slow_node);
		set_d(o, "slow_factor", p->slow_factor);
		set_d(o, "slow_from_s", (double)p->slow_from_ms / 1000.0);
		if (p->slow_to_ms)
			set_d(o, "slow_to_s", (double)p->slow_to_ms / 1000.0);
	}
	if (p->flaky_node != NIL) {
		set_u(o, "flaky_node", p->flaky_node);
		set_d(o, "flaky_fail", p->flaky_fail);
	}
	set_u(o, "timeout_ms", p->timeout_ms);
	set_u(o, "input_bytes", p->input_bytes);
	set_u(o, "output_bytes", p->output_bytes);
	return o;
}

void *fms_jobs_failover_json(const struct fms_sim *sim)
{
	struct fms_jobs *J = results_of(sim);
	json_t *o;
	size_t i;

	if (J == NULL || !J->p.failover)
		return NULL;
	o = json_object();
	for (i = 0; i < J->result_count; i++) {
		const struct result *r = J->results[i];
		json_t *f = json_object();
		set_u(f, "node", J->p.failover_node);
		json_object_set_new(
		        f, "mode",
		        json_string(J->p.failover_mode == FMS_FAILOVER_VANISH
		                            ? "vanish"
		                            : "crash"));
		if (r->fo_done) {
			set_d(f, "died_at_s", (double)r->fo_at_us / 1e6);
			set_u(f, "jobs_in_flight_on_dead_node",
			      r->fo_in_flight);
			set_u(f, "completed_elsewhere", r->fo_elsewhere);
			set_u(f, "completed_by_dead_node", r->fo_same_node);
			set_u(f, "not_completed",
			      r->fo_in_flight - r->fo_elsewhere -
			              r->fo_same_node);
			set_ms(f, "time_to_complete_elsewhere_ms_p50",
			       pct(r->fo_us, r->fo_n, 50));
			set_ms(f, "time_to_complete_elsewhere_ms_p99",
			       pct(r->fo_us, r->fo_n, 99));
			set_ms(f, "time_to_complete_elsewhere_ms_max",
			       r->fo_n ? r->fo_us[r->fo_n - 1] : 0);
			set_u(f, "redispatched", r->fo_redispatch_n);
			set_ms(f, "time_to_redispatch_ms_p50",
			       pct(r->fo_redispatch_us, r->fo_redispatch_n,
			           50));
			set_ms(f, "time_to_redispatch_ms_max",
			       r->fo_redispatch_n
			               ? r->fo_redispatch_us
			                         [r->fo_redispatch_n - 1]
			               : 0);
		}
		json_object_set_new(o, fms_strategy_name(r->strategy), f);
	}
	return o;
}

/* ---- files ------------------------------------------------------------- */

static int write_fail(char *err, size_t err_len, const char *path)
{
	int saved = errno;

	snprintf(err, err_len, "%s: %s", path,
	         saved ? strerror(saved) : "write failed");
	return saved > 0 ? -saved : -EIO;
}

static const char *state_name(const struct job *j)
{
	return j->final ? fm_job_state_name((enum fm_job_state)j->state)
	                : "unfinished";
}

static int write_result_files(const struct fms_jobs *J, const struct result *r,
                              const char *dir, char *err, size_t err_len)
{
	const char *name = fms_strategy_name(r->strategy);
	char path[PATH_BYTES];
	FILE *f;
	size_t i, k;

	/* One row per job. */
	snprintf(path, sizeof(path), "%s/jobs_%s.csv", dir, name);
	f = fopen(path, "w");
	if (f == NULL)
		return write_fail(err, err_len, path);
	fprintf(f, "job,submitter,arrive_s,size_ms,state,latency_ms,ran_on,"
	           "attempts,failover\n");
	for (i = 0; i < r->job_count; i++) {
		const struct job *j = &r->jobs[i];
		fprintf(f, "%zu,%u,%.6f,%.3f,%s,", i, j->submitter,
		        (double)j->arrive_us / 1e6, (double)j->size_us / 1e3,
		        state_name(j));
		if (j->final)
			fprintf(f, "%.3f,",
			        (double)(j->end_us - j->arrive_us) / 1e3);
		else
			fputc(',', f);
		if (j->ran_on != NIL)
			fprintf(f, "%u", j->ran_on);
		fprintf(f, ",%u,%u\n", j->attempts, j->failover);
	}
	if (fclose(f) != 0)
		return write_fail(err, err_len, path);
	/* Latency distribution of the jobs done: one row per value. */
	snprintf(path, sizeof(path), "%s/job_latency_%s.csv", dir, name);
	f = fopen(path, "w");
	if (f == NULL)
		return write_fail(err, err_len, path);
	fprintf(f, "latency_ms,count,cdf,ccdf\n");
	for (i = 0; i < r->lat_n; i = k) {
		for (k = i; k < r->lat_n && r->lat_us[k] == r->lat_us[i]; k++)
			;
		fprintf(f, "%.3f,%zu,%.6f,%.6f\n", (double)r->lat_us[i] / 1e3,
		        k - i, (double)k / (double)r->lat_n,
		        (double)(r->lat_n - k) / (double)r->lat_n);
	}
	if (fclose(f) != 0)
		return write_fail(err, err_len, path);
	/* Per node: what it offered and what it ran. */
	snprintf(path, sizeof(path), "%s/jobs_nodes_%s.csv", dir, name);
	f = fopen(path, "w");
	if (f == NULL)
		return write_fail(err, err_len, path);
	fprintf(f, "node,role,slots,speed_factor,slow,runs,done,failed,killed,"
	           "lost,refused,utilisation\n");
	for (i = 0; i < r->nodes; i++) {
		const struct node_row *row = &r->rows[i];
		fprintf(f,
		        "%zu,%s,%u,%.4f,%.3f,%llu,%llu,%llu,%llu,%llu,%llu,"
		        "%.4f\n",
		        i, i < J->p.submitters ? "submitter" : "worker",
		        row->slots, row->factor,
		        i == J->p.slow_node ? J->p.slow_factor : 1.0,
		        (unsigned long long)row->runs,
		        (unsigned long long)row->done,
		        (unsigned long long)row->failed,
		        (unsigned long long)row->killed,
		        (unsigned long long)row->lost,
		        (unsigned long long)row->refused,
		        row->slots && r->sim_us
		                ? (double)row->busy_us / ((double)row->slots *
		                                          (double)r->sim_us)
		                : 0.0);
	}
	if (fclose(f) != 0)
		return write_fail(err, err_len, path);
	return 0;
}

static int find_gnuplot(char *out, size_t out_len)
{
	const char *path = getenv("PATH");
	char buf[PATH_BYTES], *save = NULL, *dir;

	if (path == NULL || strlen(path) >= sizeof(buf))
		return 0;
	snprintf(buf, sizeof(buf), "%s", path);
	for (dir = strtok_r(buf, ":", &save); dir != NULL;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(out, out_len, "%s/gnuplot", *dir ? dir : ".");
		if (access(out, X_OK) == 0)
			return 1;
	}
	return 0;
}

/* jobs_latency.svg: the share of jobs slower than x, per strategy, on log
 * scales, so the tail shows. */
static void write_plot(const struct fms_sim *sim, const struct fms_jobs *J,
                       const char *dir, int quiet)
{
	char gnuplot[PATH_BYTES], path[PATH_BYTES];
	FILE *f;
	pid_t pid;
	int status, any = 0;
	size_t i;

	if (!find_gnuplot(gnuplot, sizeof(gnuplot)))
		return;
	snprintf(path, sizeof(path), "%s/jobs.gp", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return;
	fprintf(f,
	        "# fedmesh-sim jobs plot; rerun with: gnuplot jobs.gp\n"
	        "set terminal svg size 900,500 dynamic background '#ffffff'\n"
	        "set datafile separator ','\n"
	        "set grid\n"
	        "set output 'jobs_latency.svg'\n"
	        "set title '%s: job latency per strategy (arrival to result)'\n"
	        "set xlabel 'latency (ms)'\n"
	        "set ylabel 'share of jobs slower'\n"
	        "set logscale xy\n"
	        "set format y '10^{%%L}'\n"
	        "set key top right\n",
	        sim->sc.name);
	for (i = 0; i < J->result_count; i++) {
		const struct result *r = J->results[i];
		char title[96];
		if (r->lat_n == 0)
			continue;
		snprintf(title, sizeof(title), "%s (p99 %.1f ms)",
		         fms_strategy_name(r->strategy),
		         (double)pct(r->lat_us, r->lat_n, 99) / 1000.0);
		fprintf(f,
		        "%s 'job_latency_%s.csv' using 1:($4 > 0 ? $4 : "
		        "1/0) every ::1 with steps lw 2 title '%s'",
		        any ? ", \\\n    " : "plot ",
		        fms_strategy_name(r->strategy), title);
		any = 1;
	}
	fprintf(f, "\n");
	if (fclose(f) != 0 || !any)
		return;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		if (chdir(dir) != 0)
			_exit(127);
		if (quiet && freopen("/dev/null", "w", stderr) == NULL)
			_exit(127);
		execl(gnuplot, "gnuplot", "jobs.gp", (char *)NULL);
		_exit(127);
	}
	if (pid > 0) {
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (!quiet && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
			fprintf(stderr,
			        "fedmesh-sim: gnuplot failed on "
			        "jobs.gp; the CSV files are complete\n");
	}
}

int fms_jobs_write_files(const struct fms_sim *sim, const char *dir, int quiet,
                         char *err, size_t err_len)
{
	struct fms_jobs *J = results_of(sim);
	size_t i;
	int rc;

	if (J == NULL)
		return 0;
	for (i = 0; i < J->result_count; i++) {
		rc = write_result_files(J, J->results[i], dir, err, err_len);
		if (rc != 0)
			return rc;
	}
	write_plot(sim, J, dir, quiet);
	return 0;
}

void fms_jobs_summary(const struct fms_sim *sim, FILE *out)
{
	struct fms_jobs *J = results_of(sim);
	size_t i;

	if (J == NULL)
		return;
	for (i = 0; i < J->result_count; i++) {
		const struct result *r = J->results[i];
		fprintf(out,
		        "jobs [%s]: %llu submitted, %.2f %% done, latency "
		        "p50 %.1f ms p99 %.1f ms p99.9 %.1f ms, %llu retries, "
		        "%llu ran locally\n",
		        fms_strategy_name(r->strategy),
		        (unsigned long long)r->count,
		        r->count ? 100.0 * (double)r->done / (double)r->count
		                 : 0.0,
		        (double)pct(r->lat_us, r->lat_n, 50) / 1000.0,
		        (double)pct(r->lat_us, r->lat_n, 99) / 1000.0,
		        (double)pct(r->lat_us, r->lat_n, 99.9) / 1000.0,
		        (unsigned long long)r->retries,
		        (unsigned long long)r->ran_local);
		if (J->p.failover && r->fo_done)
			fprintf(out,
			        "failover [%s]: node %u died at %.1f s with "
			        "%llu jobs in flight; %llu completed "
			        "elsewhere, p50 %.1f ms p99 %.1f ms max %.1f "
			        "ms after the death\n",
			        fms_strategy_name(r->strategy),
			        J->p.failover_node, (double)r->fo_at_us / 1e6,
			        (unsigned long long)r->fo_in_flight,
			        (unsigned long long)r->fo_elsewhere,
			        (double)pct(r->fo_us, r->fo_n, 50) / 1000.0,
			        (double)pct(r->fo_us, r->fo_n, 99) / 1000.0,
			        (double)(r->fo_n ? r->fo_us[r->fo_n - 1] : 0) /
			                1000.0);
	}
}
