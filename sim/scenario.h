/* A scenario: everything that defines a simulation run, read from an INI
 * file (inih) and overridable from the command line. The parameters map
 * one to one onto the keys documented in docs/SIMULATION.md; unknown keys
 * are errors, so a typo cannot silently run the defaults. */
#ifndef FMS_SCENARIO_H
#define FMS_SCENARIO_H

#include <stddef.h>
#include <stdint.h>

#include "jobs_workload.h"
#include "netmodel.h"

#define FMS_SCENARIO_NAME_MAX 63
#define FMS_SCENARIO_DESC_MAX 255
#define FMS_NODES_MAX 1000000u
#define FMS_BOOT_MAX 8 /* bootstrap contacts per node */
#define FMS_GARBAGE_BYTES_MAX 65536u

enum fms_dist {
	FMS_DIST_LOGNORMAL = 0,
	FMS_DIST_WEIBULL,
	FMS_DIST_EXPONENTIAL,
};

enum fms_split {
	FMS_SPLIT_HALVES = 0, /* two random halves */
	FMS_SPLIT_REGIONS,    /* the regions in side_a against the rest */
	FMS_SPLIT_ISOLATE,    /* `isolate` random nodes, each cut off alone */
};

struct fms_scenario {
	char name[FMS_SCENARIO_NAME_MAX + 1];
	char description[FMS_SCENARIO_DESC_MAX + 1];
	uint32_t nodes;
	uint64_t seed;
	uint64_t duration_ms;

	/* [network] and [rtt] */
	struct fms_net_params net;
	double region_weight[FMS_NET_REGIONS_MAX];

	/* [bootstrap] */
	uint32_t contacts_min, contacts_max;
	uint64_t join_spread_ms;

	/* [partition] */
	int partition;
	uint64_t split_at_ms, heal_at_ms;
	enum fms_split split_mode;
	uint8_t side_a[FMS_NET_REGIONS_MAX];
	uint32_t isolate;
	uint64_t check_ms;

	/* [churn] */
	int churn;
	enum fms_dist session_dist;
	uint64_t session_median_ms, session_p80_ms;
	uint64_t offline_mean_ms;
	double graceful; /* share of departures that shut down in order */

	/* [crash] */
	int crash;
	uint64_t mtbf_ms;
	uint64_t restart_min_ms, restart_max_ms;

	/* [garbage] */
	double garbage_fraction;
	uint64_t garbage_interval_ms;
	double garbage_datagram_share;
	uint32_t garbage_max_bytes;

	/* [output] */
	uint64_t sample_ms;

	/* [jobs] and [failover] (jobs_workload.c) */
	struct fms_jobs_params jobs;
};

void fms_scenario_defaults(struct fms_scenario *sc);
/* Reads an INI file over the current values. Returns 0, or -errno with a
 * message in err. */
int fms_scenario_load(struct fms_scenario *sc, const char *path, char *err,
                      size_t err_len);
/* One key, as from the file: section "network", key "loss", value
 * "0.01". Returns 0 or -EINVAL with a message in err. */
int fms_scenario_set(struct fms_scenario *sc, const char *section,
                     const char *key, const char *value, char *err,
                     size_t err_len);
/* Cross-field checks once everything is read. */
int fms_scenario_check(const struct fms_scenario *sc, char *err,
                       size_t err_len);

/* "250ms", "30s", "5m", "2h", "1d"; a bare number is seconds. */
int fms_parse_duration_ms(const char *text, uint64_t *out);

/* Parameters of the session-length distribution fitted to the median and
 * the 80th percentile: lognormal (mu, sigma) of ln(ms), Weibull (k,
 * lambda ms), exponential (mean ms, 0). */
void fms_scenario_session_params(const struct fms_scenario *sc, double *p1,
                                 double *p2);
const char *fms_dist_name(enum fms_dist d);
const char *fms_split_name(enum fms_split s);

#endif
