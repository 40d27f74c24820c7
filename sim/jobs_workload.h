/* The jobs workload of fedmesh-sim: jobs arrive (Poisson) at submitter
 * nodes, the unmodified cores route them (fm_node_job_submit), and the
 * simulator plays every worker's executor behind fm_io.job_execute:
 * concurrent slots with a FIFO queue, service times drawn per job and
 * scaled per node (heterogeneous speed, one node slow for a while), a
 * share of failed runs; it calls fm_node_job_finished when a run ends.
 * fm_io.job_update at the submitters gives each job's outcome and latency.
 * A scenario can crash a worker while jobs run ([failover]), and compare
 * the core's routing strategies on the same seed ([jobs] strategy = all,
 * or --strategy all). docs/SIMULATION.md ("Jobs") describes the model and
 * the output.
 *
 * This header does not include sim.h (scenario.h includes it for the
 * parameters); the functions taking a struct fms_sim are for sim.c,
 * main.c and report.c. */
#ifndef FMS_JOBS_WORKLOAD_H
#define FMS_JOBS_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eventq.h"
#include "fedmesh/fedmesh.h"
#include "netmodel.h"

/* Event types of the workload, well clear of the simulator's own. */
enum {
	FMS_EV_JOBS_FIRST = FMS_NET_EV_USER + 64,
	FMS_EV_JOB_ARRIVE = FMS_EV_JOBS_FIRST, /* the next job arrives */
	FMS_EV_JOB_END,   /* a = run, b = run generation: a run ends */
	FMS_EV_JOB_CRASH, /* the [failover] node dies */
	FMS_EV_JOBS_LAST = FMS_EV_JOBS_FIRST + 15,
};

/* Random stream of the workload (arrivals, job sizes, node speeds and
 * failures), apart from the network's, the scenario's and the nodes'. */
#define FMS_RNG_STREAM_JOBS 12

#define FMS_JOBS_SLOTS_CHOICES 8
#define FMS_JOBS_STRATEGIES 4

/* The routing strategies, in the order "all" runs them (production last,
 * so its run provides the rest of results.json). Values are indices, not
 * the core's enum. */
enum fms_strategy {
	FMS_STRAT_RANDOM = 0,
	FMS_STRAT_ROUND_ROBIN,
	FMS_STRAT_LEAST_PENDING,
	FMS_STRAT_P2C,
	FMS_STRAT_ALL = 255, /* --strategy all: one run per strategy */
};

enum fms_service_dist {
	FMS_SVC_CONSTANT = 0,
	FMS_SVC_EXPONENTIAL,
	FMS_SVC_LOGNORMAL,
	FMS_SVC_WEIBULL,
};

enum fms_failover_mode {
	FMS_FAILOVER_CRASH = 0, /* the process dies; the host resets */
	FMS_FAILOVER_VANISH,    /* the host goes silent */
};

/* [jobs] and [failover] of a scenario. */
struct fms_jobs_params {
	int enabled;
	uint8_t strategy;       /* enum fms_strategy */
	uint32_t submitters;    /* nodes 0 .. submitters-1 submit */
	int submitters_serve;   /* ... and offer the service too */
	int connect_submitters; /* every worker bootstraps to them */
	double rate;            /* jobs per second, all submitters */
	uint64_t start_ms;      /* first arrival not before */
	uint64_t stop_ms;       /* no arrival after (0: the end) */
	uint64_t max_jobs;      /* 0: no limit */
	char service[FM_SERVICE_NAME_MAX + 1];
	uint8_t service_dist;   /* enum fms_service_dist */
	double service_mean_ms; /* of a job's size on a speed-1 node */
	double service_shape;   /* lognormal sigma, Weibull k */
	uint32_t slots[FMS_JOBS_SLOTS_CHOICES];      /* per worker, drawn ... */
	double slots_weight[FMS_JOBS_SLOTS_CHOICES]; /* ... with these */
	uint32_t slots_choices;
	double speed_sigma; /* node speed factors: lognormal, mean 1 */
	double fail;        /* share of runs every worker fails */
	uint32_t queue_max; /* runs queued per worker, then busy; 0: no cap */
	uint32_t slow_node; /* UINT32_MAX: none */
	double slow_factor; /* its service times x this ... */
	uint64_t slow_from_ms, slow_to_ms; /* ... from, until (0: end) */
	uint32_t flaky_node;               /* UINT32_MAX: none */
	double flaky_fail;                 /* share of its runs that fail */
	uint64_t timeout_ms;               /* per job; 0: the core's default */
	uint32_t input_bytes, output_bytes;
	int idempotent; /* jobs may be hedged */
	/* [failover] */
	int failover;
	uint32_t failover_node;
	uint64_t failover_at_ms;
	uint8_t failover_mode; /* enum fms_failover_mode */
};

struct fms_sim;
struct fms_jobs;
struct fms_scenario;

void fms_jobs_params_default(struct fms_jobs_params *p);
/* One key of [jobs] or [failover]. Returns 0 or -EINVAL with a message. */
int fms_jobs_params_set(struct fms_jobs_params *p, const char *section,
                        const char *key, const char *value, char *err,
                        size_t err_len);
/* Checks against the node count and duration of the scenario. */
int fms_jobs_params_check(const struct fms_jobs_params *p, uint32_t nodes,
                          uint64_t duration_ms, char *err, size_t err_len);
const char *fms_strategy_name(unsigned s);
/* The strategy names "all" runs, in order, as one string. */
const char *fms_strategy_names(void);

/* For sim.c. setup: after the nodes are placed and before they join (a
 * no-op without [jobs] or [failover]). node_config: the services, the
 * strategy and the ops of a node about to start. node_stopped: its runs
 * die with it. dispatch: an event of the workload. */
int fms_jobs_setup(struct fms_sim *sim);
void fms_jobs_free(struct fms_sim *sim);
void fms_jobs_node_config(struct fms_sim *sim, uint32_t node,
                          fm_node_config *cfg, fm_io *io);
void fms_jobs_node_stopped(struct fms_sim *sim, uint32_t node);
int fms_jobs_dispatch(struct fms_sim *sim, const struct fms_event *ev);

/* For main.c: runs the scenario once, or once per strategy with the same
 * seed when it says "all". *out is the last run (the production router's
 * with "all"), holding the jobs results of the earlier runs for the
 * report; NULL when a run could not be set up. Returns 0 or -errno. */
int fms_jobs_run(const struct fms_scenario *sc, int progress, int verbose,
                 struct fms_sim **out);

/* For report.c: the "jobs", "jobs_workload" and "failover" objects of
 * results.json (NULL when the scenario has none; void * keeps jansson out
 * of this header: they are new json_t *), the CSV files and the jobs
 * plot, and the summary lines. */
void *fms_jobs_json(const struct fms_sim *sim);
void *fms_jobs_workload_json(const struct fms_sim *sim);
void *fms_jobs_failover_json(const struct fms_sim *sim);
int fms_jobs_write_files(const struct fms_sim *sim, const char *dir, int quiet,
                         char *err, size_t err_len);
void fms_jobs_summary(const struct fms_sim *sim, FILE *out);

#endif
