/* The simulator engine: N instances of the unmodified protocol core on one
 * virtual clock, their struct fm_io implemented over the network model,
 * and the scenario's script (joins, partitions, churn, crashes, garbage
 * senders) played as events on the same queue. Internal to fedmesh-sim and
 * its tests. */
#ifndef FMS_SIM_H
#define FMS_SIM_H

#include <stdint.h>

#include "eventq.h"
#include "fedmesh/fedmesh.h"
#include "netmodel.h"
#include "rng.h"
#include "scenario.h"

/* The port every simulated node listens on. */
#define FMS_PORT 7420
/* Handshake and reconnect latencies: 1 ms buckets below this; longer
 * samples are kept one by one, so percentiles stay exact. */
#define FMS_HIST_MS 120000

/* Simulator event types, after the network model's. */
enum {
	FMS_EV_JOIN = FMS_NET_EV_USER, /* a = node */
	FMS_EV_TICK,                   /* a = node, b = incarnation */
	FMS_EV_LIFE,    /* a = node, b = incarnation, c = FMS_LIFE_* */
	FMS_EV_RETURN,  /* a = node, b = incarnation */
	FMS_EV_GARBAGE, /* a = node */
	FMS_EV_SAMPLE,
	FMS_EV_SPLIT,
	FMS_EV_HEAL,
	FMS_EV_PCHECK,
};

enum { FMS_LIFE_LEAVE = 0, FMS_LIFE_CRASH = 1 };

enum fms_node_kind { FMS_HONEST = 0, FMS_GARBAGE };

enum fms_node_state {
	FMS_NODE_UNBORN = 0, /* has not joined yet */
	FMS_NODE_UP,
	FMS_NODE_CRASHED, /* process down, restarts soon */
	FMS_NODE_OFFLINE, /* churned away, comes back later */
};

/* What a node persisted through fm_io.peer_changed: the fields the daemon
 * stores, minus the record and last_error, with IPv4 addresses packed (the
 * simulator's addresses are all IPv4). About 170 bytes. */
struct fms_saved_addr {
	uint32_t ip; /* host byte order */
	uint16_t port;
	uint8_t source;
};

struct fms_saved_peer {
	uint8_t node_id[FM_NODE_ID_BYTES];
	struct fms_saved_addr addrs[FM_PEER_ADDRS_MAX];
	uint8_t addr_count;
	uint8_t source;
	float rtt_ms;
	uint64_t last_seen_ms;
	fm_reputation reputation;
	uint64_t ban_until_ms; /* absolute, simulated clock */
};

struct fms_sim;

struct fms_node {
	fm_node *core; /* NULL unless up (and always for garbage senders) */
	struct fms_sim *sim;
	struct fms_rng rng;   /* this node's fm_io.random_bytes */
	uint64_t tick_us;     /* scheduled fm_node_tick, UINT64_MAX: none */
	uint64_t up_since_us; /* last start */
	uint64_t hs_seen;     /* handshakes_completed seen so far */
	struct fms_saved_peer *saved;
	uint32_t saved_count, saved_cap;
	uint32_t boot[FMS_BOOT_MAX]; /* bootstrap contacts: node indices */
	uint32_t incarnation;        /* bumped at every stop */
	uint8_t boot_count;
	uint8_t boot_ok; /* bit i: boot[i] completed a handshake once */
	uint8_t region;
	uint8_t kind;        /* enum fms_node_kind */
	uint8_t state;       /* enum fms_node_state */
	uint8_t reconnected; /* a handshake completed since the last start */
};

struct fms_hist {
	uint32_t *buckets; /* FMS_HIST_MS */
	uint64_t *over;    /* samples >= FMS_HIST_MS, unsorted */
	size_t over_count, over_cap;
	uint64_t count;
	uint64_t sum_ms;
	uint64_t max_ms;
};

/* One row of timeseries.csv. */
struct fms_row {
	uint64_t t_ms;
	uint32_t nodes_up;       /* honest nodes running */
	uint64_t peer_links;     /* sum of peers_connected */
	uint64_t handshakes;     /* initiator-side, cumulative */
	uint64_t dials;          /* cumulative */
	uint64_t events;         /* cumulative */
	uint64_t drops;          /* datagrams dropped by cores, cumulative */
	uint64_t session_errors; /* cumulative */
	uint32_t streams_live;
};

struct fms_metrics {
	uint64_t dials;
	uint64_t hs_initiator;
	uint64_t hs_acceptor;
	struct fms_hist hs;
	uint64_t bootstrap_pairs;
	uint64_t bootstrap_established;
	uint64_t joins, leaves, leaves_graceful, returns, crashes, restarts;
	uint64_t peers_saved_max; /* largest saved peer table */
	uint64_t peers_restored;
	uint64_t restore_errors;
	struct fms_hist reconnect;           /* restart to first handshake */
	uint64_t online_samples, online_sum; /* nodes up, per sample */
	/* partition */
	int split_done, heal_done;
	uint64_t sessions_before, sessions_at_heal, sessions_min;
	uint64_t streams_cut;
	uint32_t side_a_nodes;
	uint64_t t90_us, t99_us, t100_us; /* after heal; 0: not yet */
	uint64_t sessions_last_check;
	/* garbage senders */
	uint64_t garbage_dgrams, garbage_streams, garbage_bytes;
	/* counters of cores that were stopped (their stats die with them) */
	fm_node_stats retired;
};

struct fms_sim {
	struct fms_scenario sc;
	struct fms_eventq q;
	struct fms_net net;
	struct fms_rng rng; /* scenario decisions */
	struct fms_node *nodes;
	uint32_t honest, garbage;
	uint8_t federation_key[FM_FEDERATION_KEY_BYTES];
	uint64_t now_us, end_us;
	uint64_t events; /* processed */
	int verbose;     /* core logs on stderr */
	int progress;    /* progress line on stderr */
	uint8_t *junk;   /* garbage senders' buffer */
	struct fms_metrics m;
	struct fms_row *rows;
	size_t row_count, row_cap;
	double wall_s;
	struct fms_jobs *jobs; /* the jobs workload (jobs_workload.c) */
};

int fms_sim_new(const struct fms_scenario *sc, struct fms_sim **out);
void fms_sim_free(struct fms_sim *sim);
/* Runs the scenario to its end. Returns 0 or a negative errno. */
int fms_sim_run(struct fms_sim *sim);
/* Calls fm_node_tick on a running node and reschedules its timer: for
 * workloads that call into a core outside the engine's own events. */
void fms_sim_kick(struct fms_sim *sim, uint32_t node);

/* Simulated addresses: node i is 10.b.c.d:FMS_PORT with v = i + 1,
 * b = v & 255, c = (v >> 8) & 255, d = 1 + (v >> 16): the first 65,535
 * nodes each have a /24 of their own. */
void fms_addr_of(uint32_t node, uint16_t port, fm_addr *out);
/* Node index of an address on FMS_PORT, or FMS_NET_NOWHERE. */
uint32_t fms_node_of_addr(const fm_addr *addr, uint32_t nodes);

/* Percentile (0..100, nearest rank) of a histogram in ms; 0 when
 * empty. */
uint64_t fms_hist_percentile(const struct fms_hist *h, double pct);
/* The samples of at least FMS_HIST_MS, sorted, in a new array (NULL when
 * there are none). The caller frees it. */
uint64_t *fms_hist_sorted_over(const struct fms_hist *h);
/* Sum over honest running nodes of peers_connected. */
uint64_t fms_sim_peer_links(const struct fms_sim *sim, uint32_t *up,
                            uint32_t *min, uint32_t *max);
/* Core counters summed over honest nodes, stopped cores included. */
void fms_sim_stats(const struct fms_sim *sim, fm_node_stats *out);

#endif
