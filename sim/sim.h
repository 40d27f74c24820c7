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
	FMS_EV_LOOKUP,  /* c = FMS_LK_* */
	FMS_EV_ADV,     /* a = node: an adversary's periodic crawl */
	FMS_EV_MDNS,    /* a = to, b = from, c = packet slot */
	FMS_EV_STOP,    /* every lookup has finished: end the run */
	FMS_EV_REFRESH, /* a = node, b = incarnation, c = bucket */
};

/* Lookup kinds of the workload. */
enum { FMS_LK_NODE = 0, FMS_LK_PROVIDER = 1, FMS_LK_KINDS = 2 };
/* Hops histogram: 0..FMS_HOPS_MAX, the last bucket holds longer ones. */
#define FMS_HOPS_MAX 32

enum { FMS_LIFE_LEAVE = 0, FMS_LIFE_CRASH = 1 };

enum fms_node_kind {
	FMS_HONEST = 0,
	FMS_GARBAGE, /* not a member: random bytes (no core) */
	FMS_SYBIL,   /* a member (runs no core; adversary.c speaks for it)
	                whose ID shares a prefix with the target key */
	FMS_LIAR,    /* a member answering FIND_NODE with made-up contacts */
};

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
struct fms_adv;
struct fms_mdns_pkt;

/* A saved "dht/table" (fm_io.persist), packed: per contact the node index
 * (bits 0..23), the persisted flags (bits 24..25) and whether the ID was
 * saved (bit 26). The bytes are rebuilt from it at a restart; a table
 * with a contact that is no simulated node is kept verbatim instead. */
#define FMS_DHT_SAVED_IDX 0xffffffu
#define FMS_DHT_SAVED_FLAGS_SHIFT 24
#define FMS_DHT_SAVED_HAS_ID (1u << 26)

struct fms_dht_saved {
	uint32_t *contacts;
	uint32_t count;
	uint8_t *raw; /* verbatim, when it could not be packed */
	uint32_t raw_len;
};

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
	uint8_t service;     /* offers the scenario's service */
	uint8_t lookup_busy; /* a workload lookup runs here */
	uint8_t id_known;    /* id is set */
	uint8_t node_id[FM_NODE_ID_BYTES];   /* fixed across restarts */
	struct fms_dht_saved dht_saved;      /* churn and crash scenarios */
	uint32_t segment;                    /* LAN segment (lan scenarios) */
	uint64_t disc_first_us, disc_all_us; /* LAN: 0 pending, else done */
	uint32_t lan_need;   /* LAN: members running when it started */
	struct fms_adv *adv; /* sybils and liars */
};

/* A failed workload lookup, for lookup_failures.csv. */
struct fms_lookup_failure {
	uint64_t t_ms;         /* when it ended */
	uint64_t start_ms;     /* when it was issued */
	uint64_t target_up_ms; /* the target's uptime at the issue; 0: none */
	uint32_t issuer, target;
	int32_t status;
	uint8_t kind;
};
#define FMS_FAILURES_MAX 100000

/* One row of dht_table.csv. */
struct fms_dht_row {
	uint64_t t_ms;
	uint32_t nodes; /* honest nodes running with a DHT */
	uint64_t table_sum, live_sum, known_sum, values_sum;
	uint64_t empty_tables;
	uint64_t truth_entries, truth_up; /* saved tables vs. who is up */
	uint64_t lookups_done, lookups_ok;
	uint64_t dgrams_sent;
};

struct fms_hist {
	uint32_t *buckets; /* FMS_HIST_MS */
	uint64_t *over;    /* samples >= FMS_HIST_MS, unsorted */
	size_t over_count, over_cap;
	uint64_t count;
	uint64_t sum_ms;
	uint64_t max_ms;
};

/* One workload lookup in flight (the callback's context). */
struct fms_lookup {
	struct fms_sim *sim;
	uint32_t issuer, target; /* target: FMS_NET_NOWHERE for providers */
	uint8_t kind;            /* FMS_LK_* */
	uint8_t victim;          /* aimed at the sybils' target */
	uint64_t start_us;
	uint64_t target_up_us; /* the target's uptime at the issue */
};

struct fms_lookup_metrics {
	uint64_t issued;       /* calls that returned 0 */
	uint64_t start_errors; /* calls that failed (-ENOTCONN, -EBUSY) */
	uint64_t no_issuer;    /* arrivals that found no node to ask */
	uint64_t done, succeeded, failed_status, wrong_record;
	uint64_t cancelled; /* the issuer stopped during the lookup */
	uint64_t hops[FMS_HOPS_MAX + 1]; /* succeeded lookups */
	uint64_t hops_sum;
	uint64_t msg_samples, msg_sum;
	uint64_t providers_sum; /* provider lookups: records returned */
	uint64_t victim_done, victim_succeeded;
	struct fms_hist latency;     /* succeeded lookups */
	struct fms_hist latency_all; /* every finished lookup */
	double rtt_sum_ms;           /* succeeded: issuer-target RTT */
	uint64_t rtt_samples;
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
	fm_dht_stats dht_retired;
	/* the DHT workload */
	struct fms_lookup_metrics lk[FMS_LK_KINDS];
	uint64_t lookups_in_flight;
	uint64_t refresh_lookups, refresh_errors; /* [dht] join_refresh */
	struct fms_lookup_failure *failures; /* the first FMS_FAILURES_MAX */
	size_t failure_count, failure_cap;
	uint64_t providers; /* honest nodes offering the service */
	/* adversaries */
	uint64_t adv_dgrams_in, adv_dgrams_out, adv_proofs, adv_lies;
	uint64_t adv_stores_swallowed, adv_crawls;
	uint32_t sybil_prefix_min, sybil_prefix_max; /* bits shared */
	uint64_t grind_tries;
	/* LAN discovery */
	uint64_t mdns_packets, mdns_deliveries;
	struct fms_hist disc_first, disc_all;
	uint32_t lan_segments;
	/* sigcache.c */
	uint64_t verify_calls, verify_hits, sign_calls;
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
	struct fms_dht_row *dht_rows;
	size_t dht_row_count, dht_row_cap;
	double wall_s;
	struct fms_jobs *jobs; /* the jobs workload (jobs_workload.c) */
	/* the DHT */
	uint8_t dht_key[32]; /* seals the adversaries' datagrams */
	uint8_t target_key[FM_NODE_ID_BYTES]; /* the sybils' aim */
	uint32_t victim;                      /* FMS_SYBIL_NODE: whose record */
	uint32_t *adv_index; /* adversary nodes, in index order */
	uint32_t adv_count;
	uint32_t *sybil_near;   /* sybils by distance to target_key */
	uint32_t *sybil_shared; /* [sybil] subnet = shared: sybils by index */
	uint64_t lookup_end_us; /* stop_when_done: when the run ended */
	int stopped_early;
	/* mDNS packets in flight */
	struct fms_mdns_pkt *mdns;
	uint32_t mdns_cap, mdns_free;
};

struct fms_mdns_pkt {
	uint8_t *buf; /* NULL: free slot; next free in len */
	uint32_t len;
	uint32_t refs;
	uint16_t port; /* source port */
	uint8_t unicast;
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
/* Moves nodes[0..n) (sorted by index, n <= FMS_SHARED_SUBNET_MAX) to
 * 11.0.0.1, 11.0.0.2, ...: one public /24, whose entries the cores' subnet
 * caps limit (their 10/8 addresses are private, exempt). n = 0 undoes it.
 * For the one simulation of the process that sets it. */
void fms_addr_share_subnet(const uint32_t *nodes, uint32_t n);
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

/* Shared by sim.c and its parts (dhtload.c, adversary.c). */
void fms_push(struct fms_sim *sim, uint64_t time_us, uint32_t type, uint32_t a,
              uint32_t b, uint32_t c);
void fms_hist_add(struct fms_hist *h, uint64_t ms);
void fms_fatal_oom(const char *what);
/* RTT between two nodes' regions, ms (no jitter). */
double fms_rtt_ms(const struct fms_sim *sim, uint32_t a, uint32_t b);
/* The identity of honest node i (the same at every start). */
int fms_node_identity(const struct fms_sim *sim, uint32_t i, fm_identity *out);

/* dhtload.c: the DHT workload, bootstrap through the DHT, persisted
 * tables. */
int fms_dht_setup(struct fms_sim *sim);
void fms_dht_free(struct fms_sim *sim);
void fms_dht_lookup_event(struct fms_sim *sim, const struct fms_event *ev);
/* Bootstrap contacts (mode = dht) and a saved table, after a start. */
void fms_dht_node_started(struct fms_sim *sim, struct fms_node *nd,
                          int restart);
int fms_dht_persist(struct fms_node *nd, const uint8_t *val, size_t len);
void fms_dht_node_stopping(struct fms_sim *sim, struct fms_node *nd);
void fms_dht_sample(struct fms_sim *sim);
void fms_dht_refresh_event(struct fms_sim *sim, const struct fms_event *ev);
/* DHT counters summed over honest nodes, stopped cores included. */
void fms_dht_sum(const struct fms_sim *sim, fm_dht_stats *out);
int fms_dht_lookups_pending(const struct fms_sim *sim);

/* adversary.c: sybils and liars, speaking the DHT protocol themselves. */
int fms_adv_setup(struct fms_sim *sim);
void fms_adv_free(struct fms_sim *sim);
void fms_adv_start(struct fms_sim *sim, struct fms_node *nd);
void fms_adv_datagram(struct fms_sim *sim, struct fms_node *nd, uint32_t from,
                      const uint8_t *buf, size_t len);
void fms_adv_act(struct fms_sim *sim, struct fms_node *nd);

/* lan.c: LAN segments and mDNS. */
int fms_lan_setup(struct fms_sim *sim);
void fms_lan_free(struct fms_sim *sim);
void fms_lan_node_started(struct fms_sim *sim, struct fms_node *nd);
void fms_lan_deliver(struct fms_sim *sim, const struct fms_event *ev);
void fms_lan_check(struct fms_sim *sim, struct fms_node *nd);
int fms_lan_send_mdns(void *ctx, uint32_t ifindex, const fm_addr *to,
                      const uint8_t *buf, size_t len);

/* sigcache.c */
void fms_sigcache_enable(struct fms_sim *sim, int on);
void fms_sigcache_free(void);
void fms_crypto_model_enable(struct fms_sim *sim, int on);

#endif
