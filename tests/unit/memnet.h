/* memnet: a few cores wired through in-memory streams on a virtual clock,
 * for the unit tests that need whole nodes talking (sessions, jobs) — a
 * miniature of what fedmesh-sim does. Tests reach into the global `M` to
 * hold back, alter, replay or reorder frames, cut nodes off or partition
 * the network. Stream ends are never reused within one test. */
#ifndef FM_TEST_MEMNET_H
#define FM_TEST_MEMNET_H

#include <stddef.h>
#include <stdint.h>

#include "fedmesh/fedmesh.h"

#define MEMNET_NODES_MAX 4
#define MEMNET_ENDS_MAX 512
#define MEMNET_EVENTS_MAX (1 << 16)
#define MEMNET_HELD_MAX 64

enum memnet_ev { MEMNET_OPENED, MEMNET_DATA, MEMNET_CLOSED };

struct memnet_event {
	enum memnet_ev type;
	int end; /* the receiving stream end */
	size_t len;
	uint8_t *data;
};

struct memnet_end {
	int node;  /* -1: nobody (a refused connect, or a test's stranger) */
	int other; /* index of the other end */
	int open;
	int incoming;
	uint64_t id;
	uint64_t bytes_sent;
};

struct memnet {
	fm_node *nodes[MEMNET_NODES_MAX];
	fm_addr addrs[MEMNET_NODES_MAX]; /* 10.0.0.(i+1):7420 */
	int node_count;
	struct memnet_end ends[MEMNET_ENDS_MAX];
	int end_count;
	struct memnet_event *events; /* a ring */
	int ev_head, ev_tail;
	uint64_t now;
	uint64_t rng;
	/* faults a test switches on and off */
	int hold; /* 1: data is parked in `held` instead of delivered */
	struct memnet_event held[MEMNET_HELD_MAX];
	int held_count;
	int partitioned; /* connects fail, data is lost */
	int blackhole;   /* connects to unknown addresses hang (lost SYNs) */
	int cut[MEMNET_NODES_MAX]; /* traffic to and from the node is lost */
	/* optional: called on every step of memnet_run_until after the
	 * events are drained; returns its next deadline (the fake executor of
	 * test_jobs.c) */
	uint64_t (*step)(void);
};

extern struct memnet M;

/* Clears M for a test (the clock starts at 1000 ms); memnet_free() releases
 * the nodes and every undelivered frame. */
void memnet_reset(void);
void memnet_free(void);

/* Fills a configuration and an ops table for node i: identity from a seed of
 * `seed` bytes, address 10.0.0.(i+1):7420 advertised, the stream and random
 * ops of the in-memory network; the test adds its own, then starts it. */
void memnet_node_prepare(int i, uint8_t seed, const uint8_t fedkey[32],
                         fm_node_config *cfg, fm_io *io);
void memnet_node_start(int i, const fm_node_config *cfg, const fm_io *io);

/* The node index behind an ops-table ctx. */
int memnet_node_of(void *ctx);

/* Queues an event for the stream end `end` (the data is copied). */
void memnet_push(enum memnet_ev type, int end, const uint8_t *data, size_t len);
/* Delivers every queued event. */
void memnet_drain(void);
/* Runs the network until virtual time `until`, jumping between deadlines. */
void memnet_run_until(uint64_t until);

/* Resets every stream of node i (as when its host vanishes with a RST),
 * optionally freeing the node (a crash). */
void memnet_reset_links(int i, int free_node);

int memnet_connected_peers(int node);
void memnet_node_id(int node, uint8_t out[32]);

#endif
