/* The simulated network (netmodel.h). Payloads live in a pool of 256-byte
 * chunks and streams in a pool of slots, both grown by doubling and recycled
 * through free lists, so sending costs no allocation once the pools have
 * grown to the run's high-water mark. A stream direction is a list of
 * chunks in arrival order with one DELIVER event pending for its head;
 * arrival times never decrease within a direction, so a stream never
 * reorders, while datagrams each get their own delay and may. The
 * connection's SYN-ACK and FIN travel in the same list as its data, which
 * keeps "opened, data, closed" in order without special cases.
 *
 * Callbacks run synchronously and may call back into the model (send,
 * close, open), which can grow the pools: nothing here holds a pointer into
 * a pool across a callback. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netmodel.h"

enum { END_NONE = 0, END_PENDING, END_OPEN, END_CLOSED };
enum { CH_DATA = 0, CH_OPEN, CH_FIN };

struct fms_chunk {
	uint32_t next;
	uint16_t len;
	uint8_t kind;
	uint8_t live; /* the stream slot is in use (streams only) */
	int32_t err;
	uint32_t reserved;
	uint64_t arrival_us;
	uint8_t data[FMS_NET_CHUNK_BYTES];
};

_Static_assert(sizeof(struct fms_chunk) == 256, "chunk is 256 bytes");

/* Bytes handed to one stream_data callback at most. */
#define SCRATCH_BYTES 65536
#define GEN_MAX 0x7fffffffu

/* The built-in regions. Inter-region RTTs are the averages of the AWS
 * inter-region table published in April 2017 (docs/SIMULATION.md gives the
 * source), made symmetric by averaging both directions where both were
 * given. The same-region figure is an assumption, not a measurement. */
#define INTRA_MS 20.0
static const char *const region_names[] = {
        "us-east",    "us-west",      "sa-east",      "eu-west",
        "eu-central", "ap-northeast", "ap-southeast", "au-southeast",
};
#define REGIONS (sizeof(region_names) / sizeof(region_names[0]))
static const double region_rtt_ms[REGIONS][REGIONS] = {
        {INTRA_MS, 87.8, 119.5, 80.5, 88.6, 145.3, 216.7, 229.9},
        {87.8, INTRA_MS, 182.7, 137.0, 159.5, 89.1, 161.4, 162.1},
        {119.5, 182.7, INTRA_MS, 191.3, 194.9, 256.8, 328.1, 322.5},
        {80.5, 137.0, 191.3, INTRA_MS, 19.6, 212.4, 238.6, 309.6},
        {88.6, 159.5, 194.9, 19.6, INTRA_MS, 236.6, 325.9, 323.4},
        {145.3, 89.1, 256.8, 212.4, 236.6, INTRA_MS, 73.8, 103.9},
        {216.7, 161.4, 328.1, 238.6, 325.9, 73.8, INTRA_MS, 175.4},
        {229.9, 162.1, 322.5, 309.6, 323.4, 103.9, 175.4, INTRA_MS},
};

_Static_assert(sizeof(region_names) / sizeof(region_names[0]) <=
                       FMS_NET_REGIONS_MAX,
               "region table fits");

/* A simulation that runs out of memory has no meaningful result. */
static void fatal_oom(const char *what)
{
	fprintf(stderr, "fedmesh-sim: out of memory (%s)\n", what);
	abort();
}

void fms_net_params_default(struct fms_net_params *p)
{
	size_t i, j;

	memset(p, 0, sizeof(*p));
	p->region_count = REGIONS;
	for (i = 0; i < REGIONS; i++) {
		snprintf(p->region_names[i], sizeof(p->region_names[i]), "%s",
		         region_names[i]);
		for (j = 0; j < REGIONS; j++)
			p->rtt_ms[i][j] = region_rtt_ms[i][j];
	}
	p->jitter_ms = 0;
	p->syn_rto_us = 1000000; /* Linux: 1 s initial RTO ... */
	p->syn_retries = 6;      /* ... tcp_syn_retries = 6: 127 s */
	p->rto_min_us = 200000;  /* Linux TCP_RTO_MIN */
	p->partition_break_us = 0;
}

int fms_net_region_find(const struct fms_net_params *p, const char *name)
{
	uint32_t i;

	for (i = 0; i < p->region_count; i++)
		if (strcmp(p->region_names[i], name) == 0)
			return (int)i;
	return -1;
}

/* ---- ids, pools and lists ----------------------------------------------- */

static inline uint64_t make_id(uint32_t slot, uint32_t gen, int side)
{
	return ((uint64_t)gen << 33) | ((uint64_t)slot << 1) | (uint64_t)side;
}

static struct fms_stream *lookup(const struct fms_net *net, uint32_t ep,
                                 uint64_t id, uint32_t *slot_out, int *side)
{
	uint64_t slot = (id >> 1) & 0xffffffffu;
	uint32_t gen = (uint32_t)(id >> 33);
	struct fms_stream *s;

	if (slot >= net->stream_used)
		return NULL;
	s = &net->streams[slot];
	*side = (int)(id & 1);
	if (!s->live || s->gen != gen || s->ep[*side] != ep ||
	    s->end[*side] == END_NONE)
		return NULL;
	*slot_out = (uint32_t)slot;
	return s;
}

static uint32_t chunk_alloc(struct fms_net *net)
{
	uint32_t i;

	if (net->chunk_free != FMS_NET_NIL) {
		i = net->chunk_free;
		net->chunk_free = net->chunks[i].next;
	} else {
		if (net->chunk_used == net->chunk_cap) {
			uint32_t cap =
			        net->chunk_cap ? net->chunk_cap * 2 : 4096;
			struct fms_chunk *grown;
			if (cap > FMS_NET_CHUNKS_MAX)
				cap = FMS_NET_CHUNKS_MAX;
			if (cap <= net->chunk_used)
				fatal_oom("chunk pool at its limit");
			grown = realloc(net->chunks,
			                (size_t)cap * sizeof(*grown));
			if (grown == NULL)
				fatal_oom("chunks");
			net->chunks = grown;
			net->chunk_cap = cap;
		}
		i = net->chunk_used++;
	}
	net->chunks_live++;
	net->chunks[i].next = FMS_NET_NIL;
	net->chunks[i].len = 0;
	net->chunks[i].kind = CH_DATA;
	net->chunks[i].err = 0;
	return i;
}

static void chunk_free(struct fms_net *net, uint32_t i)
{
	net->chunks[i].next = net->chunk_free;
	net->chunk_free = i;
	net->chunks_live--;
}

static void chain_free(struct fms_net *net, uint32_t head)
{
	while (head != FMS_NET_NIL) {
		uint32_t next = net->chunks[head].next;
		chunk_free(net, head);
		head = next;
	}
}

/* Fills a chain of chunks with buf; returns its head (len 0: one empty
 * chunk) and sets *tail. */
static uint32_t chain_build(struct fms_net *net, const uint8_t *buf, size_t len,
                            uint8_t kind, uint64_t arrival_us, uint32_t *tail)
{
	uint32_t head = FMS_NET_NIL, last = FMS_NET_NIL;
	size_t off = 0;

	do {
		size_t n = len - off;
		uint32_t c = chunk_alloc(net);
		if (n > FMS_NET_CHUNK_BYTES)
			n = FMS_NET_CHUNK_BYTES;
		if (n > 0)
			memcpy(net->chunks[c].data, buf + off, n);
		net->chunks[c].len = (uint16_t)n;
		net->chunks[c].kind = kind;
		net->chunks[c].arrival_us = arrival_us;
		if (last == FMS_NET_NIL)
			head = c;
		else
			net->chunks[last].next = c;
		last = c;
		off += n;
	} while (off < len);
	*tail = last;
	return head;
}

static void link_end(struct fms_net *net, uint32_t slot, int side)
{
	struct fms_stream *s = &net->streams[slot];
	struct fms_ep *e = &net->eps[s->ep[side]];
	uint32_t idx = slot * 2 + (uint32_t)side;

	s->next[side] = e->ends;
	s->prev[side] = FMS_NET_NIL;
	if (e->ends != FMS_NET_NIL)
		net->streams[e->ends >> 1].prev[e->ends & 1] = idx;
	e->ends = idx;
}

static void unlink_end(struct fms_net *net, uint32_t slot, int side)
{
	struct fms_stream *s = &net->streams[slot];
	struct fms_ep *e = &net->eps[s->ep[side]];
	uint32_t next = s->next[side], prev = s->prev[side];

	if (prev != FMS_NET_NIL)
		net->streams[prev >> 1].next[prev & 1] = next;
	else
		e->ends = next;
	if (next != FMS_NET_NIL)
		net->streams[next >> 1].prev[next & 1] = prev;
	s->next[side] = s->prev[side] = FMS_NET_NIL;
}

static void dir_clear(struct fms_net *net, uint32_t slot, int d)
{
	struct fms_dir *dir = &net->streams[slot].dir[d];

	chain_free(net, dir->head);
	dir->head = dir->tail = FMS_NET_NIL;
	dir->queued_bytes = 0;
	dir->epoch = (dir->epoch + 1) & GEN_MAX;
	dir->scheduled = 0;
}

static void push(struct fms_net *net, uint64_t time_us, uint32_t type,
                 uint32_t a, uint32_t b, uint32_t c)
{
	if (fms_eventq_push(net->q, time_us, type, a, b, c) != 0)
		fatal_oom("event queue");
}

static void dir_schedule(struct fms_net *net, uint32_t slot, int d)
{
	struct fms_stream *s = &net->streams[slot];
	struct fms_dir *dir = &s->dir[d];

	if (dir->scheduled || dir->head == FMS_NET_NIL)
		return;
	push(net, net->chunks[dir->head].arrival_us, FMS_NET_EV_DELIVER, slot,
	     s->gen, (uint32_t)d | (dir->epoch << 1));
	dir->scheduled = 1;
}

/* Appends a chain to direction d; arrival times never go backwards. */
static void dir_append(struct fms_net *net, uint32_t slot, int d,
                       const uint8_t *buf, size_t len, uint8_t kind, int err,
                       uint64_t arrival_us)
{
	struct fms_dir *dir;
	uint32_t head, tail;

	if (arrival_us < net->streams[slot].dir[d].last_arrival_us)
		arrival_us = net->streams[slot].dir[d].last_arrival_us;
	head = chain_build(net, buf, len, kind, arrival_us, &tail);
	net->chunks[tail].err = err;
	dir = &net->streams[slot].dir[d];
	dir->last_arrival_us = arrival_us;
	if (dir->tail == FMS_NET_NIL)
		dir->head = head;
	else
		net->chunks[dir->tail].next = head;
	dir->tail = tail;
	if (kind == CH_DATA)
		dir->queued_bytes += (uint32_t)len;
	dir_schedule(net, slot, d);
}

/* RST: whatever was in flight towards end d is lost, and the end learns
 * `err` at at_us. */
static void dir_reset(struct fms_net *net, uint32_t slot, int d, uint64_t at_us,
                      int err)
{
	dir_clear(net, slot, d);
	net->streams[slot].dir[d].last_arrival_us = at_us;
	dir_append(net, slot, d, NULL, 0, CH_FIN, err, at_us);
}

static uint32_t stream_alloc(struct fms_net *net)
{
	struct fms_stream *s;
	uint32_t slot, gen;
	int d;

	if (net->stream_free != FMS_NET_NIL) {
		slot = net->stream_free;
		net->stream_free = net->streams[slot].next[0];
	} else {
		if (net->stream_used == net->stream_cap) {
			uint32_t cap =
			        net->stream_cap ? net->stream_cap * 2 : 1024;
			struct fms_stream *grown;
			if (cap > FMS_NET_STREAMS_MAX)
				cap = FMS_NET_STREAMS_MAX;
			if (cap <= net->stream_used)
				fatal_oom("stream pool at its limit");
			grown = realloc(net->streams,
			                (size_t)cap * sizeof(*grown));
			if (grown == NULL)
				fatal_oom("streams");
			net->streams = grown;
			net->stream_cap = cap;
		}
		slot = net->stream_used++;
		net->streams[slot].gen = 0;
		net->streams[slot].live = 0;
	}
	s = &net->streams[slot];
	gen = s->gen >= GEN_MAX ? 1 : s->gen + 1;
	memset(s, 0, sizeof(*s));
	s->gen = gen;
	s->live = 1;
	for (d = 0; d < 2; d++) {
		s->next[d] = s->prev[d] = FMS_NET_NIL;
		s->dir[d].head = s->dir[d].tail = FMS_NET_NIL;
	}
	net->streams_live++;
	return slot;
}

static int end_alive(uint8_t end)
{
	return end == END_PENDING || end == END_OPEN;
}

/* Frees the slot once neither end can see it any more. Pending events
 * for it go stale: a free slot is not live, and its next use has another
 * generation. */
static void maybe_free(struct fms_net *net, uint32_t slot)
{
	struct fms_stream *s = &net->streams[slot];

	if (end_alive(s->end[0]) || end_alive(s->end[1]))
		return;
	dir_clear(net, slot, 0);
	dir_clear(net, slot, 1);
	s->live = 0;
	s->next[0] = net->stream_free;
	net->stream_free = slot;
	net->streams_live--;
}

static int slot_live(const struct fms_net *net, uint32_t slot, uint32_t gen)
{
	return slot < net->stream_used && net->streams[slot].live &&
	       net->streams[slot].gen == gen;
}

/* ---- delays ---------------------------------------------------------------
 */

uint64_t fms_net_one_way_us(struct fms_net *net, uint32_t a, uint32_t b)
{
	double us =
	        net->p.rtt_ms[net->eps[a].region][net->eps[b].region] * 500.0;

	if (net->p.jitter_ms > 0)
		us += fms_rng_exp(&net->rng, net->p.jitter_ms * 1000.0);
	return (uint64_t)(us + 0.5);
}

/* When the last bit of len bytes leaves ep's uplink. */
static uint64_t tx_done(struct fms_net *net, uint32_t ep, size_t len)
{
	struct fms_ep *e = &net->eps[ep];
	uint64_t start;

	if (net->p.bandwidth_kbps == 0)
		return net->now_us;
	start = e->tx_free_us > net->now_us ? e->tx_free_us : net->now_us;
	e->tx_free_us = start + (uint64_t)len * 8000u / net->p.bandwidth_kbps;
	return e->tx_free_us;
}

static uint64_t syn_give_up_us(const struct fms_net *net)
{
	uint64_t total = 0, rto = net->p.syn_rto_us;
	uint32_t i;

	for (i = 0; i <= net->p.syn_retries; i++, rto *= 2)
		total += rto;
	return total;
}

int fms_net_reachable(const struct fms_net *net, uint32_t a, uint32_t b)
{
	return a < net->ep_count && b < net->ep_count &&
	       net->eps[a].group == net->eps[b].group;
}

/* ---- setup ----------------------------------------------------------------
 */

int fms_net_init(struct fms_net *net, const struct fms_net_params *p,
                 struct fms_eventq *q, const struct fms_net_ops *ops,
                 uint64_t seed, uint32_t ep_count)
{
	uint32_t i;

	memset(net, 0, sizeof(*net));
	if (ep_count > FMS_NET_ENDPOINTS_MAX || p->region_count == 0 ||
	    p->region_count > FMS_NET_REGIONS_MAX)
		return -EINVAL;
	net->p = *p;
	net->q = q;
	net->ops = *ops;
	fms_rng_seed(&net->rng, seed, FMS_RNG_STREAM_NET);
	net->ep_count = ep_count;
	net->eps = calloc(ep_count ? ep_count : 1, sizeof(*net->eps));
	net->scratch = malloc(SCRATCH_BYTES);
	if (net->eps == NULL || net->scratch == NULL) {
		fms_net_free(net);
		return -ENOMEM;
	}
	for (i = 0; i < ep_count; i++)
		net->eps[i].ends = FMS_NET_NIL;
	net->stream_free = FMS_NET_NIL;
	net->chunk_free = FMS_NET_NIL;
	return 0;
}

void fms_net_free(struct fms_net *net)
{
	if (net == NULL)
		return;
	free(net->eps);
	free(net->streams);
	free(net->chunks);
	free(net->scratch);
	net->eps = NULL;
	net->streams = NULL;
	net->chunks = NULL;
	net->scratch = NULL;
}

void fms_net_set_region(struct fms_net *net, uint32_t ep, uint8_t region)
{
	if (ep < net->ep_count && region < net->p.region_count)
		net->eps[ep].region = region;
}

/* ---- datagrams -------------------------------------------------------------
 */

int fms_net_send_datagram(struct fms_net *net, uint32_t from, uint32_t to,
                          const uint8_t *buf, size_t len)
{
	uint64_t sent_us;
	int copies = 1, i;

	if (from >= net->ep_count)
		return -EINVAL;
	if (len > FMS_NET_DGRAM_MAX_BYTES)
		return -EMSGSIZE;
	net->stats.dgrams_sent++;
	if (to == FMS_NET_NOWHERE || to >= net->ep_count) {
		net->stats.dgrams_unroutable++;
		return 0;
	}
	if (!fms_net_reachable(net, from, to)) {
		net->stats.dgrams_partitioned++;
		return 0;
	}
	sent_us = tx_done(net, from, len);
	if (net->p.loss > 0 && fms_rng_double(&net->rng) < net->p.loss) {
		net->stats.dgrams_lost++;
		return 0;
	}
	if (net->p.duplicate > 0 &&
	    fms_rng_double(&net->rng) < net->p.duplicate) {
		copies = 2;
		net->stats.dgrams_duplicated++;
	}
	for (i = 0; i < copies; i++) {
		uint64_t at = sent_us + fms_net_one_way_us(net, from, to);
		uint32_t head, tail;
		if (net->p.reorder > 0 &&
		    fms_rng_double(&net->rng) < net->p.reorder) {
			at += (uint64_t)(fms_rng_double(&net->rng) *
			                 net->p.reorder_ms * 1000.0);
			net->stats.dgrams_reordered++;
		}
		head = chain_build(net, buf, len, CH_DATA, at, &tail);
		push(net, at, FMS_NET_EV_DGRAM, from, to, head);
	}
	return 0;
}

static void on_dgram(struct fms_net *net, const struct fms_event *ev)
{
	uint32_t from = ev->a, to = ev->b, c = ev->c;
	size_t len = 0;

	while (c != FMS_NET_NIL) {
		uint32_t next = net->chunks[c].next;
		memcpy(net->scratch + len, net->chunks[c].data,
		       net->chunks[c].len);
		len += net->chunks[c].len;
		chunk_free(net, c);
		c = next;
	}
	if (net->eps[to].state != FMS_EP_UP) {
		net->stats.dgrams_host_down++;
		return;
	}
	if (!fms_net_reachable(net, from, to)) {
		net->stats.dgrams_partitioned++;
		return;
	}
	net->stats.dgrams_delivered++;
	if (net->ops.datagram != NULL)
		net->ops.datagram(net->ops.ctx, to, from, net->scratch, len);
}

/* ---- streams ---------------------------------------------------------------
 */

int fms_net_stream_open(struct fms_net *net, uint32_t from, uint32_t to,
                        uint64_t *stream_id)
{
	struct fms_stream *s;
	uint64_t at = net->now_us, rto = net->p.syn_rto_us;
	uint32_t slot, tries;

	if (from >= net->ep_count || stream_id == NULL)
		return -EINVAL;
	slot = stream_alloc(net);
	s = &net->streams[slot];
	s->ep[0] = from;
	s->ep[1] = to < net->ep_count ? to : FMS_NET_NOWHERE;
	s->end[0] = END_PENDING;
	s->end[1] = END_NONE;
	s->opened_us = net->now_us;
	link_end(net, slot, 0);
	*stream_id = make_id(slot, s->gen, 0);
	net->stats.streams_opened++;
	if (s->ep[1] == FMS_NET_NOWHERE) {
		net->stats.streams_timed_out++;
		dir_append(net, slot, 0, NULL, 0, CH_FIN, -ETIMEDOUT,
		           net->now_us + syn_give_up_us(net));
		return 0;
	}
	/* Lost SYNs are retransmitted after 1 s, 2 s, 4 s, ... */
	for (tries = 0; tries <= net->p.syn_retries; tries++) {
		if (net->p.loss <= 0 ||
		    fms_rng_double(&net->rng) >= net->p.loss)
			break;
		at += rto;
		rto *= 2;
	}
	if (tries > net->p.syn_retries) {
		net->stats.streams_timed_out++;
		dir_append(net, slot, 0, NULL, 0, CH_FIN, -ETIMEDOUT,
		           net->now_us + syn_give_up_us(net));
		return 0;
	}
	push(net, at + fms_net_one_way_us(net, from, to), FMS_NET_EV_SYN, slot,
	     s->gen, 0);
	return 0;
}

static void on_syn(struct fms_net *net, const struct fms_event *ev)
{
	uint32_t slot = ev->a, from, to;
	struct fms_stream *s;
	uint64_t id;

	if (!slot_live(net, slot, ev->b))
		return;
	s = &net->streams[slot];
	if (s->end[0] != END_PENDING)
		return;
	from = s->ep[0];
	to = s->ep[1];
	if (!fms_net_reachable(net, from, to) ||
	    net->eps[to].state == FMS_EP_OFFLINE) {
		uint64_t at = s->opened_us + syn_give_up_us(net);
		net->stats.streams_timed_out++;
		dir_append(net, slot, 0, NULL, 0, CH_FIN, -ETIMEDOUT,
		           at > net->now_us ? at : net->now_us);
		return;
	}
	if (net->eps[to].state == FMS_EP_CRASHED) {
		net->stats.streams_refused++;
		dir_append(net, slot, 0, NULL, 0, CH_FIN, -ECONNREFUSED,
		           net->now_us + fms_net_one_way_us(net, to, from));
		return;
	}
	net->stats.streams_accepted++;
	s->end[1] = END_OPEN;
	link_end(net, slot, 1);
	/* The SYN-ACK goes first, so anything the acceptor sends from its
	 * callback queues behind it. */
	dir_append(net, slot, 0, NULL, 0, CH_OPEN, 0,
	           net->now_us + fms_net_one_way_us(net, to, from));
	id = make_id(slot, s->gen, 1);
	if (net->ops.stream_opened != NULL)
		net->ops.stream_opened(net->ops.ctx, to, id, from, 1);
}

static void on_deliver(struct fms_net *net, const struct fms_event *ev)
{
	uint32_t slot = ev->a, gen = ev->b;
	int d = (int)(ev->c & 1);
	uint32_t ep;
	uint64_t id;

	if (!slot_live(net, slot, gen) ||
	    net->streams[slot].dir[d].epoch != ev->c >> 1)
		return;
	net->streams[slot].dir[d].scheduled = 0;
	ep = net->streams[slot].ep[d];
	id = make_id(slot, gen, d);
	for (;;) {
		struct fms_stream *s = &net->streams[slot];
		struct fms_dir *dir = &s->dir[d];
		struct fms_chunk *c;

		if (dir->head == FMS_NET_NIL ||
		    net->chunks[dir->head].arrival_us > net->now_us)
			break;
		c = &net->chunks[dir->head];
		if (c->kind == CH_DATA) {
			size_t n = 0;
			while (dir->head != FMS_NET_NIL) {
				uint32_t h = dir->head;
				c = &net->chunks[h];
				if (c->kind != CH_DATA ||
				    c->arrival_us > net->now_us ||
				    n + c->len > SCRATCH_BYTES)
					break;
				memcpy(net->scratch + n, c->data, c->len);
				n += c->len;
				dir->head = c->next;
				chunk_free(net, h);
			}
			if (dir->head == FMS_NET_NIL)
				dir->tail = FMS_NET_NIL;
			dir->queued_bytes -= (uint32_t)n;
			if (net->ops.stream_data != NULL)
				net->ops.stream_data(net->ops.ctx, ep, id,
				                     net->scratch, n);
		} else if (c->kind == CH_OPEN) {
			uint32_t h = dir->head;
			dir->head = c->next;
			if (dir->head == FMS_NET_NIL)
				dir->tail = FMS_NET_NIL;
			chunk_free(net, h);
			s->end[d] = END_OPEN;
			if (net->ops.stream_opened != NULL)
				net->ops.stream_opened(net->ops.ctx, ep, id,
				                       s->ep[!d], d == 1);
		} else {
			int err = c->err;
			dir_clear(net, slot, d);
			s->end[d] = END_CLOSED;
			unlink_end(net, slot, d);
			maybe_free(net, slot);
			if (net->ops.stream_closed != NULL)
				net->ops.stream_closed(net->ops.ctx, ep, id,
				                       err);
			return;
		}
		/* The callback may have closed or reset this end. */
		if (!slot_live(net, slot, gen) ||
		    net->streams[slot].end[d] != END_OPEN)
			return;
	}
	dir_schedule(net, slot, d);
}

int fms_net_stream_send(struct fms_net *net, uint32_t ep, uint64_t stream_id,
                        const uint8_t *buf, size_t len)
{
	struct fms_stream *s;
	uint32_t slot, peer;
	uint64_t at;
	int side, o;

	s = lookup(net, ep, stream_id, &slot, &side);
	if (s == NULL)
		return -EBADF;
	if (s->end[side] != END_OPEN)
		return -ENOTCONN;
	if (len > FMS_NET_SEND_MAX_BYTES)
		return -EMSGSIZE;
	if (len == 0)
		return 0;
	o = !side;
	peer = s->ep[o];
	if (!end_alive(s->end[o]) || s->cut ||
	    !fms_net_reachable(net, ep, peer)) {
		/* Written into a connection whose far end is gone: the
		 * bytes never arrive; the writer finds out by its own
		 * timeouts. */
		net->stats.stream_bytes_dropped += len;
		return 0;
	}
	if (s->dir[o].queued_bytes + len > FMS_NET_STREAM_BUF_BYTES) {
		net->stats.send_errors++;
		return -ENOBUFS;
	}
	at = tx_done(net, ep, len) + fms_net_one_way_us(net, ep, peer);
	if (net->p.loss > 0 && fms_rng_double(&net->rng) < net->p.loss) {
		/* A lost segment arrives one retransmission timeout later,
		 * and holds back everything behind it. */
		uint64_t rtt_us =
		        (uint64_t)(net->p.rtt_ms[net->eps[ep].region]
		                                [net->eps[peer].region] *
		                   1000.0);
		at += rtt_us > net->p.rto_min_us ? rtt_us : net->p.rto_min_us;
		net->stats.segments_retransmitted++;
	}
	net->stats.stream_bytes += len;
	dir_append(net, slot, o, buf, len, CH_DATA, 0, at);
	return 0;
}

void fms_net_stream_close(struct fms_net *net, uint32_t ep, uint64_t stream_id)
{
	struct fms_stream *s;
	uint32_t slot, peer;
	int side, o;

	s = lookup(net, ep, stream_id, &slot, &side);
	if (s == NULL || !end_alive(s->end[side]))
		return;
	s->end[side] = END_CLOSED;
	unlink_end(net, slot, side);
	dir_clear(net, slot, side);
	o = !side;
	peer = s->ep[o];
	if (end_alive(s->end[o]) && !s->cut && fms_net_reachable(net, ep, peer))
		dir_append(net, slot, o, NULL, 0, CH_FIN, 0,
		           tx_done(net, ep, 0) +
		                   fms_net_one_way_us(net, ep, peer));
	maybe_free(net, slot);
}

int fms_net_stream_info(const struct fms_net *net, uint32_t ep,
                        uint64_t stream_id, uint32_t *remote, int *incoming,
                        uint64_t *opened_us)
{
	const struct fms_stream *s;
	uint32_t slot;
	int side;

	s = lookup(net, ep, stream_id, &slot, &side);
	if (s == NULL)
		return -EBADF;
	if (remote != NULL)
		*remote = s->ep[!side];
	if (incoming != NULL)
		*incoming = side;
	if (opened_us != NULL)
		*opened_us = s->opened_us;
	return 0;
}

/* ---- hosts and partitions ------------------------------------------------ */

void fms_net_ep_down(struct fms_net *net, uint32_t ep, enum fms_ep_state how)
{
	struct fms_ep *e;

	if (ep >= net->ep_count)
		return;
	e = &net->eps[ep];
	e->state = (uint8_t)how;
	while (e->ends != FMS_NET_NIL) {
		uint32_t idx = e->ends, slot = idx >> 1, peer;
		int side = (int)(idx & 1), o = !side;
		struct fms_stream *s = &net->streams[slot];

		unlink_end(net, slot, side);
		s->end[side] = END_CLOSED;
		dir_clear(net, slot, side);
		peer = s->ep[o];
		if (end_alive(s->end[o]) && peer != ep &&
		    how == FMS_EP_CRASHED && !s->cut &&
		    fms_net_reachable(net, ep, peer)) {
			/* The kernel of a host whose process died resets
			 * its connections. */
			net->stats.streams_reset++;
			dir_reset(net, slot, o,
			          net->now_us +
			                  fms_net_one_way_us(net, ep, peer),
			          -ECONNRESET);
		}
		maybe_free(net, slot);
	}
	e->tx_free_us = 0;
}

void fms_net_ep_up(struct fms_net *net, uint32_t ep)
{
	if (ep < net->ep_count)
		net->eps[ep].state = FMS_EP_UP;
}

void fms_net_set_group(struct fms_net *net, uint32_t ep, uint32_t group)
{
	if (ep < net->ep_count)
		net->eps[ep].group = group;
}

static void break_stream(struct fms_net *net, uint32_t slot)
{
	int d;

	for (d = 0; d < 2; d++)
		if (end_alive(net->streams[slot].end[d]))
			dir_reset(net, slot, d, net->now_us, -ETIMEDOUT);
}

void fms_net_partition_apply(struct fms_net *net)
{
	uint32_t slot;

	/* Partitions are rare; one pass over the pool is fine. */
	for (slot = 0; slot < net->stream_used; slot++) {
		struct fms_stream *s = &net->streams[slot];
		if (!s->live || s->cut || s->ep[1] == FMS_NET_NOWHERE ||
		    s->end[1] == END_NONE ||
		    (!end_alive(s->end[0]) && !end_alive(s->end[1])) ||
		    fms_net_reachable(net, s->ep[0], s->ep[1]))
			continue;
		s->cut = 1;
		net->stats.streams_cut++;
		if (net->p.partition_break_us == 0)
			break_stream(net, slot);
		else
			push(net, net->now_us + net->p.partition_break_us,
			     FMS_NET_EV_BREAK, slot, s->gen, 0);
	}
}

void fms_net_heal(struct fms_net *net)
{
	uint32_t i;

	for (i = 0; i < net->ep_count; i++)
		net->eps[i].group = 0;
}

int fms_net_dispatch(struct fms_net *net, const struct fms_event *ev)
{
	switch (ev->type) {
	case FMS_NET_EV_DGRAM:
		on_dgram(net, ev);
		return 1;
	case FMS_NET_EV_SYN:
		on_syn(net, ev);
		return 1;
	case FMS_NET_EV_DELIVER:
		on_deliver(net, ev);
		return 1;
	case FMS_NET_EV_BREAK:
		if (slot_live(net, ev->a, ev->b))
			break_stream(net, ev->a);
		return 1;
	default:
		return ev->type < FMS_NET_EV_USER;
	}
}
