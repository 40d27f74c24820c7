/* The simulated network: endpoints placed in regions, datagrams with
 * latency, jitter, loss, duplication and reordering, reliable ordered byte
 * streams that connect, carry data and break the way TCP connections do,
 * partitions, and hosts that crash or vanish. It knows nothing of fedmesh:
 * endpoints are numbers, payloads are bytes, and what arrives is handed to
 * the callbacks in struct fms_net_ops. The simulator (sim.c) maps endpoints
 * to nodes and fedmesh addresses; the unit tests drive it directly.
 *
 * Time is in microseconds of simulated time. Every delay and every fault is
 * drawn from one random stream (FMS_RNG_STREAM_NET), in call order, so a run
 * replays from its seed. docs/SIMULATION.md describes the model and where
 * its figures come from. */
#ifndef FMS_NETMODEL_H
#define FMS_NETMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "eventq.h"
#include "rng.h"

#define FMS_NET_REGIONS_MAX 16
#define FMS_NET_REGION_NAME_MAX 23
/* Largest datagram the model carries; longer sends fail with -EMSGSIZE. */
#define FMS_NET_DGRAM_MAX_BYTES 2048
/* Largest single stream_send. */
#define FMS_NET_SEND_MAX_BYTES (1u << 20)
/* Bytes in flight per stream direction before stream_send says -ENOBUFS
 * (a full socket send buffer). */
#define FMS_NET_STREAM_BUF_BYTES (4u << 20)
/* Payload bytes per pooled chunk; a chunk is 256 bytes with its header. */
#define FMS_NET_CHUNK_BYTES 232
#define FMS_NET_CHUNKS_MAX (1u << 26)
#define FMS_NET_STREAMS_MAX (1u << 30)
#define FMS_NET_ENDPOINTS_MAX (1u << 24)
/* "No such endpoint": an address nobody has. */
#define FMS_NET_NOWHERE UINT32_MAX
#define FMS_NET_NIL UINT32_MAX

/* Event types of the network model; the simulator's own start at
 * FMS_NET_EV_USER. */
enum {
	FMS_NET_EV_DGRAM = 1, /* a = from, b = to, c = first chunk */
	FMS_NET_EV_SYN,       /* a = slot, b = gen */
	FMS_NET_EV_DELIVER,   /* a = slot, b = gen, c = dir | epoch << 1 */
	FMS_NET_EV_BREAK,     /* a = slot, b = gen: a cut stream breaks */
	FMS_NET_EV_USER = 16,
};

enum fms_ep_state {
	FMS_EP_UP = 0,  /* the process runs */
	FMS_EP_CRASHED, /* host up, process gone: connects get RST */
	FMS_EP_OFFLINE, /* host gone: silence, connects time out */
};

struct fms_net_params {
	uint32_t region_count;
	char region_names[FMS_NET_REGIONS_MAX][FMS_NET_REGION_NAME_MAX + 1];
	double rtt_ms[FMS_NET_REGIONS_MAX][FMS_NET_REGIONS_MAX];
	double jitter_ms;  /* mean of the exponential one-way jitter */
	double loss;       /* datagram loss; stream segment retransmission */
	double duplicate;  /* datagram duplication */
	double reorder;    /* a datagram is held back ... */
	double reorder_ms; /* ... by up to this much (uniform) */
	uint32_t bandwidth_kbps;     /* per-endpoint uplink; 0 = unlimited */
	uint64_t syn_rto_us;         /* first SYN retransmission timeout */
	uint32_t syn_retries;        /* SYN retransmissions before giving up */
	uint64_t rto_min_us;         /* stream retransmission timeout floor */
	uint64_t partition_break_us; /* cut streams break after this */
};

struct fms_net_ops {
	void *ctx;
	void (*datagram)(void *ctx, uint32_t to, uint32_t from,
	                 const uint8_t *buf, size_t len);
	/* A stream end is usable: the acceptor's when the SYN arrives
	 * (incoming = 1), the dialer's when the SYN-ACK does. */
	void (*stream_opened)(void *ctx, uint32_t ep, uint64_t stream_id,
	                      uint32_t remote, int incoming);
	void (*stream_data)(void *ctx, uint32_t ep, uint64_t stream_id,
	                    const uint8_t *buf, size_t len);
	/* The end is gone: the peer closed (error 0), the connect failed or
	 * the stream was reset or cut (negative errno). No callback follows
	 * for this stream ID. */
	void (*stream_closed)(void *ctx, uint32_t ep, uint64_t stream_id,
	                      int error);
};

struct fms_net_stats {
	uint64_t dgrams_sent;
	uint64_t dgrams_delivered;
	uint64_t dgrams_lost;
	uint64_t dgrams_duplicated;
	uint64_t dgrams_reordered;
	uint64_t dgrams_unroutable; /* no endpoint has the address */
	uint64_t dgrams_partitioned;
	uint64_t dgrams_host_down;
	uint64_t streams_opened; /* connect attempts */
	uint64_t streams_accepted;
	uint64_t streams_refused; /* RST: process down */
	uint64_t streams_timed_out;
	uint64_t streams_reset; /* broken by a crash */
	uint64_t streams_cut;   /* broken by a partition */
	uint64_t stream_bytes;
	uint64_t stream_bytes_dropped; /* sent towards an end that is gone */
	uint64_t segments_retransmitted;
	uint64_t send_errors;
};

/* Internal state, visible for the tests. */
struct fms_ep {
	uint64_t tx_free_us; /* the uplink is busy until then */
	uint32_t group;      /* partition group; equal groups can talk */
	uint32_t ends;       /* first stream end of this endpoint */
	uint8_t region;
	uint8_t state; /* enum fms_ep_state */
};

struct fms_dir {
	uint32_t head, tail; /* chunk list, in arrival order */
	uint32_t queued_bytes;
	uint32_t epoch; /* bumped on reset: older DELIVER events are stale */
	uint64_t last_arrival_us;
	uint8_t scheduled;
};

struct fms_stream {
	uint32_t gen;   /* 0 when free */
	uint32_t ep[2]; /* [0] dialer, [1] acceptor */
	uint8_t end[2]; /* enum in netmodel.c */
	uint8_t cut;
	uint8_t live;              /* the slot is in use */
	uint32_t next[2], prev[2]; /* per-endpoint lists of ends */
	uint64_t opened_us;
	struct fms_dir dir[2]; /* dir[i]: bytes travelling towards end i */
};

struct fms_chunk;

struct fms_net {
	struct fms_net_params p;
	struct fms_eventq *q;
	struct fms_net_ops ops;
	struct fms_rng rng;
	uint64_t now_us; /* set by the event loop before dispatching */
	struct fms_ep *eps;
	uint32_t ep_count;
	struct fms_stream *streams;
	uint32_t stream_cap, stream_used, stream_free, streams_live;
	struct fms_chunk *chunks;
	uint32_t chunk_cap, chunk_used, chunk_free, chunks_live;
	uint8_t *scratch;
	struct fms_net_stats stats;
};

/* The built-in regions and RTTs (docs/SIMULATION.md) and default faults:
 * none. */
void fms_net_params_default(struct fms_net_params *p);
/* Index of a region by name, or -1. */
int fms_net_region_find(const struct fms_net_params *p, const char *name);

/* ep_count endpoints, all in region 0, group 0, up. */
int fms_net_init(struct fms_net *net, const struct fms_net_params *p,
                 struct fms_eventq *q, const struct fms_net_ops *ops,
                 uint64_t seed, uint32_t ep_count);
void fms_net_free(struct fms_net *net);

/* Runs a network event. Returns 1 when it was one (type below
 * FMS_NET_EV_USER), 0 otherwise. The caller sets net->now_us first. */
int fms_net_dispatch(struct fms_net *net, const struct fms_event *ev);

void fms_net_set_region(struct fms_net *net, uint32_t ep, uint8_t region);

/* Datagrams: best effort. to may be FMS_NET_NOWHERE. Returns 0, or
 * -EMSGSIZE / -EINVAL. */
int fms_net_send_datagram(struct fms_net *net, uint32_t from, uint32_t to,
                          const uint8_t *buf, size_t len);

/* Streams. open always succeeds at once (0) with an ID; the outcome comes
 * later through stream_opened or stream_closed. */
int fms_net_stream_open(struct fms_net *net, uint32_t from, uint32_t to,
                        uint64_t *stream_id);
/* 0, -EBADF (not this endpoint's), -ENOTCONN (not open yet or closed),
 * -EMSGSIZE, -ENOBUFS (send buffer full). */
int fms_net_stream_send(struct fms_net *net, uint32_t ep, uint64_t stream_id,
                        const uint8_t *buf, size_t len);
/* Orderly close: the peer gets stream_closed(0) after the data in flight.
 * No callback follows for this end. Unknown IDs are ignored. */
void fms_net_stream_close(struct fms_net *net, uint32_t ep, uint64_t stream_id);
/* What the simulator needs to attribute events: the remote endpoint, which
 * side this end is (1 = acceptor) and when the dialer called open. Returns
 * 0 or -EBADF. */
int fms_net_stream_info(const struct fms_net *net, uint32_t ep,
                        uint64_t stream_id, uint32_t *remote, int *incoming,
                        uint64_t *opened_us);

/* Hosts. down: the endpoint's streams end without callbacks to it; with
 * FMS_EP_CRASHED the kernel resets them (peers get -ECONNRESET after one
 * trip) and refuses connects, with FMS_EP_OFFLINE nothing answers. up:
 * reachable again, with no streams. */
void fms_net_ep_down(struct fms_net *net, uint32_t ep, enum fms_ep_state how);
void fms_net_ep_up(struct fms_net *net, uint32_t ep);

/* Partitions: endpoints talk only within their group. Set groups, then
 * apply: streams between groups are cut (both ends get -ETIMEDOUT after
 * partition_break_us). heal puts everyone back in group 0. */
void fms_net_set_group(struct fms_net *net, uint32_t ep, uint32_t group);
void fms_net_partition_apply(struct fms_net *net);
void fms_net_heal(struct fms_net *net);
int fms_net_reachable(const struct fms_net *net, uint32_t a, uint32_t b);

/* One-way delay of one packet from a to b, jitter included (consumes the
 * network's random stream). */
uint64_t fms_net_one_way_us(struct fms_net *net, uint32_t a, uint32_t b);

/* Live streams and chunks, for reports and leak checks. */
static inline uint32_t fms_net_streams_live(const struct fms_net *net)
{
	return net->streams_live;
}

#endif
