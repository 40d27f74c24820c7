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
#define FMS_SERVICE_NAME_MAX 32
#define FMS_SYBILS_MAX 4096u
#define FMS_SHARED_SUBNET_MAX 254u /* [sybil] subnet = shared: one /24 */

enum fms_dist {
	FMS_DIST_LOGNORMAL = 0,
	FMS_DIST_WEIBULL,
	FMS_DIST_EXPONENTIAL,
};

/* How a node is given its bootstrap contacts. */
enum fms_boot_mode {
	FMS_BOOT_SESSIONS = 0, /* fm_node_add_contact: a session each, and
	                          the DHT is seeded with the address */
	FMS_BOOT_DHT,          /* the DHT only (fm_node_dht_restore of the
	                          addresses, pinned): no session at all */
};

/* What the sybils aim at. */
enum fms_sybil_target {
	FMS_SYBIL_NODE = 0, /* the record key (node ID) of one honest node */
	FMS_SYBIL_SERVICE,  /* the provider key of the scenario's service */
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
	enum fms_boot_mode boot_mode;
	uint32_t boot_fixed; /* > 0: contacts come from the first N nodes */

	/* [dht] */
	int dht;             /* the cores' DHT (fm_node_config.dht_disabled) */
	uint32_t subnet_max; /* fm_node_config.dht_subnet_max; 0 = default */
	int verify_cache;    /* sigcache.c: skip re-verifying known-good
	                        Ed25519 signatures (results are identical) */
	int crypto_modeled;  /* sigcache.c: cheap stand-ins for Ed25519 and
	                        the DHT's seal (results are identical) */
	int join_refresh;    /* the driver looks up a random ID in every
	                        bucket once the node has joined */

	/* [services] */
	double service_fraction; /* share of honest nodes offering it */
	char service[FMS_SERVICE_NAME_MAX + 1];

	/* [lookups] */
	double lookup_rate;   /* node-record lookups per second, network-wide */
	double provider_rate; /* service-provider lookups per second */
	uint64_t lookup_start_ms;   /* warm-up: none before this */
	uint64_t lookup_count;      /* issue at most this many of each; 0: no
	                               limit */
	uint64_t target_min_age_ms; /* issuers and targets up this long */
	int stop_when_done; /* end the run once every lookup has finished */

	/* [sybil] */
	uint32_t sybils;
	uint32_t sybil_prefix_bits;
	enum fms_sybil_target sybil_target;
	uint32_t liars;
	double victim_share;     /* share of node lookups aimed at the victim */
	int sybil_shared_subnet; /* the sybils share one public /24 */
	uint64_t adversary_interval_ms; /* adversaries crawl this often */

	/* [lan] */
	int lan;
	uint32_t lan_segment_size;
	double lan_delay_ms; /* one-way delay on a segment */

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

/* The value parsers of the scenario keys, shared with the workloads' own
 * keys: 0, or -EINVAL when the text is not a value in range. */
int fms_parse_u64(const char *text, uint64_t *out);
int fms_parse_u32(const char *text, uint32_t max, uint32_t *out);
int fms_parse_double(const char *text, double lo, double hi, double *out);
/* true/yes/1/on, false/no/0/off */
int fms_parse_bool(const char *text, int *out);
/* 1 to FMS_SERVICE_NAME_MAX characters of [a-z0-9_.-] */
int fms_service_name_check(const char *name);

/* Formats a message into err (when given) and returns -EINVAL. */
int fms_fail(char *err, size_t err_len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Parameters of the session-length distribution fitted to the median and
 * the 80th percentile: lognormal (mu, sigma) of ln(ms), Weibull (k,
 * lambda ms), exponential (mean ms, 0). */
void fms_scenario_session_params(const struct fms_scenario *sc, double *p1,
                                 double *p2);
const char *fms_dist_name(enum fms_dist d);
const char *fms_split_name(enum fms_split s);
const char *fms_boot_mode_name(enum fms_boot_mode m);

#endif
