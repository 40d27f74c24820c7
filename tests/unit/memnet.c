/* memnet: the in-memory stream network of the session and job unit tests
 * (see memnet.h). Kept beside the tests rather than in sim/ because it is
 * deliberately tiny: a FIFO of frames, no latency, faults switched by hand. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "memnet.h"

struct memnet M;

static int ctx_ids[MEMNET_NODES_MAX] = {0, 1, 2, 3};

int memnet_node_of(void *ctx)
{
	return *(int *)ctx;
}

void memnet_push(enum memnet_ev type, int end, const uint8_t *data, size_t len)
{
	struct memnet_event *e = &M.events[M.ev_tail];

	assert_true((M.ev_tail + 1) % MEMNET_EVENTS_MAX != M.ev_head);
	M.ev_tail = (M.ev_tail + 1) % MEMNET_EVENTS_MAX;
	e->type = type;
	e->end = end;
	e->len = len;
	e->data = NULL;
	if (len > 0) {
		e->data = malloc(len);
		assert_non_null(e->data);
		memcpy(e->data, data, len);
	}
}

static int io_send_datagram(void *c, const fm_addr *to, const uint8_t *buf,
                            size_t len)
{
	(void)c, (void)to, (void)buf, (void)len;
	return 0;
}

static void io_random(void *c, uint8_t *buf, size_t len)
{
	size_t i;

	(void)c;
	for (i = 0; i < len; i++) {
		M.rng ^= M.rng << 13;
		M.rng ^= M.rng >> 7;
		M.rng ^= M.rng << 17;
		buf[i] = (uint8_t)M.rng;
	}
}

static int find_end(int node, uint64_t id)
{
	int i;

	for (i = 0; i < M.end_count; i++)
		if (M.ends[i].node == node && M.ends[i].id == id)
			return i;
	return -1;
}

static int io_stream_open(void *c, const fm_addr *to, uint64_t *id)
{
	int self = memnet_node_of(c);
	int target = -1, i, a, b;

	for (i = 0; i < M.node_count; i++)
		if (M.nodes[i] != NULL && fm__addr_equal(&M.addrs[i], to))
			target = i;
	assert_true(M.end_count + 2 <= MEMNET_ENDS_MAX);
	a = M.end_count++;
	b = M.end_count++;
	M.ends[a] = (struct memnet_end){self, b, 1, 0, (uint64_t)a + 1000, 0};
	*id = M.ends[a].id;
	if (target < 0 && M.blackhole) {
		M.ends[b].node = -1; /* nobody will ever answer */
		return 0;
	}
	if (target < 0 || M.partitioned || M.cut[target] || M.cut[self]) {
		M.ends[a].open = 0;
		memnet_push(MEMNET_CLOSED, a, NULL, 0);
		M.ends[b].node = -1;
		return 0;
	}
	M.ends[b] = (struct memnet_end){target, a, 1, 1, (uint64_t)b + 1000, 0};
	memnet_push(MEMNET_OPENED, b, NULL, 0);
	memnet_push(MEMNET_OPENED, a, NULL, 0);
	return 0;
}

static int io_stream_send(void *c, uint64_t id, const uint8_t *buf, size_t len)
{
	int self = memnet_node_of(c);
	int e = find_end(self, id), peer;

	assert_true(e >= 0);
	if (!M.ends[e].open)
		return -ENOTCONN;
	M.ends[e].bytes_sent += len;
	peer = M.ends[M.ends[e].other].node;
	if (M.partitioned || M.cut[self] || (peer >= 0 && M.cut[peer]))
		return 0; /* lost */
	if (M.hold) {
		struct memnet_event *h = &M.held[M.held_count++];
		assert_true(M.held_count <= MEMNET_HELD_MAX);
		h->type = MEMNET_DATA;
		h->end = M.ends[e].other;
		h->len = len;
		h->data = malloc(len);
		assert_non_null(h->data);
		memcpy(h->data, buf, len);
		return 0;
	}
	memnet_push(MEMNET_DATA, M.ends[e].other, buf, len);
	return 0;
}

static void io_stream_close(void *c, uint64_t id)
{
	int e = find_end(memnet_node_of(c), id);

	if (e < 0 || !M.ends[e].open)
		return;
	M.ends[e].open = 0;
	if (M.ends[M.ends[e].other].open)
		memnet_push(MEMNET_CLOSED, M.ends[e].other, NULL, 0);
}

void memnet_node_prepare(int i, uint8_t seed, const uint8_t fedkey[32],
                         fm_node_config *cfg, fm_io *io)
{
	uint8_t s[FM_SEED_BYTES];
	char text[32];

	assert_true(i >= 0 && i < MEMNET_NODES_MAX);
	memset(cfg, 0, sizeof(*cfg));
	memset(s, seed, sizeof(s));
	assert_int_equal(fm_identity_from_seed(s, &cfg->identity), 0);
	memcpy(cfg->federation_key, fedkey, 32);
	snprintf(text, sizeof(text), "10.0.0.%d:7420", i + 1);
	assert_int_equal(fm_addr_parse(text, &M.addrs[i]), 0);
	cfg->record_seq = 1;
	cfg->advertise[0] = M.addrs[i];
	cfg->advertise_count = 1;
	memset(io, 0, sizeof(*io));
	io->ctx = &ctx_ids[i];
	io->send_datagram = io_send_datagram;
	io->random_bytes = io_random;
	io->stream_open = io_stream_open;
	io->stream_send = io_stream_send;
	io->stream_close = io_stream_close;
}

void memnet_node_start(int i, const fm_node_config *cfg, const fm_io *io)
{
	assert_int_equal(fm_node_new(cfg, io, M.now, &M.nodes[i]), 0);
	if (i >= M.node_count)
		M.node_count = i + 1;
}

void memnet_reset_links(int i, int free_node)
{
	int e;

	for (e = 0; e < M.end_count; e++) {
		struct memnet_end *a = &M.ends[e];
		if (a->node != i)
			continue;
		if (a->open && M.ends[a->other].open &&
		    M.ends[a->other].node >= 0)
			memnet_push(MEMNET_CLOSED, a->other, NULL, 0);
		if (a->open && !free_node)
			memnet_push(MEMNET_CLOSED, e, NULL, 0);
		if (free_node)
			a->open = 0;
	}
	if (free_node) {
		fm_node_free(M.nodes[i]);
		M.nodes[i] = NULL;
	}
}

static void deliver(struct memnet_event *e)
{
	struct memnet_end *end = &M.ends[e->end];
	fm_node *node = end->node >= 0 ? M.nodes[end->node] : NULL;
	fm_addr remote;

	if (e->type == MEMNET_OPENED && node != NULL) {
		/* a stranger injected by a test has no node: any address */
		if (M.ends[end->other].node >= 0)
			remote = M.addrs[M.ends[end->other].node];
		else
			assert_int_equal(
			        fm_addr_parse("192.0.2.66:40000", &remote), 0);
		fm_node_stream_opened(node, M.now, end->id, &remote,
		                      end->incoming);
	} else if (e->type == MEMNET_DATA && node != NULL && end->open) {
		fm_node_stream_data(node, M.now, end->id, e->data, e->len);
	} else if (e->type == MEMNET_CLOSED && node != NULL) {
		end->open = 0;
		fm_node_stream_closed(node, M.now, end->id, 0);
	}
	free(e->data);
	e->data = NULL;
}

void memnet_drain(void)
{
	long guard = 0;

	while (M.ev_head != M.ev_tail) {
		struct memnet_event e = M.events[M.ev_head];
		M.ev_head = (M.ev_head + 1) % MEMNET_EVENTS_MAX;
		deliver(&e);
		assert_true(++guard < 10000000);
	}
}

void memnet_run_until(uint64_t until)
{
	for (;;) {
		uint64_t next = FM_DEADLINE_NONE;
		int i;

		memnet_drain();
		if (M.step != NULL)
			next = M.step();
		for (i = 0; i < M.node_count; i++) {
			uint64_t d;
			if (M.nodes[i] == NULL)
				continue;
			d = fm_node_tick(M.nodes[i], M.now);
			if (d < next)
				next = d;
		}
		if (M.ev_head != M.ev_tail)
			continue;
		if (next > until)
			break;
		M.now = next > M.now ? next : M.now + 1;
	}
	M.now = until;
}

void memnet_reset(void)
{
	memset(&M, 0, sizeof(M));
	M.events = calloc(MEMNET_EVENTS_MAX, sizeof(*M.events));
	assert_non_null(M.events);
	M.now = 1000;
	M.rng = 0x9e3779b97f4a7c15ULL;
}

void memnet_free(void)
{
	int i;

	for (i = 0; i < MEMNET_NODES_MAX; i++) {
		fm_node_free(M.nodes[i]);
		M.nodes[i] = NULL;
	}
	while (M.ev_head != M.ev_tail) {
		free(M.events[M.ev_head].data);
		M.ev_head = (M.ev_head + 1) % MEMNET_EVENTS_MAX;
	}
	for (i = 0; i < M.held_count; i++)
		free(M.held[i].data);
	free(M.events);
	M.events = NULL;
}

int memnet_connected_peers(int node)
{
	fm_node_status st;

	fm_node_get_status(M.nodes[node], &st);
	return (int)st.peers_connected;
}

void memnet_node_id(int node, uint8_t out[32])
{
	fm_node_status st;

	fm_node_get_status(M.nodes[node], &st);
	memcpy(out, st.node_id, 32);
}
