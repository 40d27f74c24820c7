/* Sessions, peer table and reputation, end to end inside one process:
 * several cores wired through in-memory streams on a virtual clock (a
 * miniature of what fedmesh-sim does). Each test can hold back, alter,
 * replay or reorder frames between the cores. Linked with the core and
 * libsodium/msgpack-c only. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "core/core.h"
#include "fedmesh/fedmesh.h"

#define NODES_MAX 4
#define ENDS_MAX 256
#define EVENTS_MAX 4096
#define DATA_MAX 70000

enum ev_type { EV_OPENED, EV_DATA, EV_CLOSED };

struct event {
	enum ev_type type;
	int end; /* receiving stream end */
	size_t len;
	uint8_t *data;
};

struct end {
	int node;
	int other; /* index of the other end */
	int open;
	int incoming;
	uint64_t id;
	uint64_t bytes_sent;
};

struct net {
	fm_node *nodes[NODES_MAX];
	fm_addr addrs[NODES_MAX];
	uint8_t seeds[NODES_MAX];
	int node_count;
	struct end ends[ENDS_MAX];
	int end_count;
	struct event events[EVENTS_MAX];
	int ev_head, ev_tail;
	uint64_t now;
	uint64_t rng;
	int hold; /* 1: data events are parked in `held` instead */
	struct event held[64];
	int held_count;
	int partitioned;
	int blackhole; /* connects to unknown addresses hang, like lost SYNs */
	/* peer_changed persistence, per node */
	fm_peer_info saved[NODES_MAX][8];
	int saved_count[NODES_MAX];
};

static struct net N;

struct ctx {
	int node;
};
static struct ctx ctxs[NODES_MAX];

static void push(enum ev_type type, int end, const uint8_t *data, size_t len)
{
	struct event *e = &N.events[N.ev_tail];

	assert_true((N.ev_tail + 1) % EVENTS_MAX != N.ev_head);
	N.ev_tail = (N.ev_tail + 1) % EVENTS_MAX;
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
		N.rng ^= N.rng << 13;
		N.rng ^= N.rng >> 7;
		N.rng ^= N.rng << 17;
		buf[i] = (uint8_t)N.rng;
	}
}

static int find_end(int node, uint64_t id)
{
	int i;

	for (i = 0; i < N.end_count; i++)
		if (N.ends[i].node == node && N.ends[i].id == id)
			return i;
	return -1;
}

static int io_stream_open(void *c, const fm_addr *to, uint64_t *id)
{
	struct ctx *x = c;
	int target = -1, i, a, b;

	for (i = 0; i < N.node_count; i++)
		if (N.nodes[i] != NULL && fm__addr_equal(&N.addrs[i], to))
			target = i;
	assert_true(N.end_count + 2 <= ENDS_MAX);
	a = N.end_count++;
	b = N.end_count++;
	N.ends[a] = (struct end){x->node, b, 1, 0, (uint64_t)a + 1000, 0};
	*id = N.ends[a].id;
	if (target < 0 && N.blackhole) {
		N.ends[b].node = -1; /* nobody will ever answer */
		return 0;
	}
	if (target < 0 || N.partitioned) {
		N.ends[a].open = 0;
		push(EV_CLOSED, a, NULL, 0);
		N.ends[b].node = -1;
		return 0;
	}
	N.ends[b] = (struct end){target, a, 1, 1, (uint64_t)b + 1000, 0};
	push(EV_OPENED, b, NULL, 0);
	push(EV_OPENED, a, NULL, 0);
	return 0;
}

static int io_stream_send(void *c, uint64_t id, const uint8_t *buf, size_t len)
{
	struct ctx *x = c;
	int e = find_end(x->node, id);

	assert_true(e >= 0);
	if (!N.ends[e].open)
		return -ENOTCONN;
	N.ends[e].bytes_sent += len;
	if (N.partitioned)
		return 0; /* lost in the partition */
	if (N.hold) {
		struct event *h = &N.held[N.held_count++];
		assert_true(N.held_count <= 64);
		h->type = EV_DATA;
		h->end = N.ends[e].other;
		h->len = len;
		h->data = malloc(len);
		memcpy(h->data, buf, len);
		return 0;
	}
	push(EV_DATA, N.ends[e].other, buf, len);
	return 0;
}

static void io_stream_close(void *c, uint64_t id)
{
	struct ctx *x = c;
	int e = find_end(x->node, id);

	if (e < 0 || !N.ends[e].open)
		return;
	N.ends[e].open = 0;
	if (N.ends[N.ends[e].other].open)
		push(EV_CLOSED, N.ends[e].other, NULL, 0);
}

static void io_peer_changed(void *c, const fm_peer_info *p, int forgotten)
{
	struct ctx *x = c;
	int i, n = N.saved_count[x->node];

	for (i = 0; i < n; i++)
		if (memcmp(N.saved[x->node][i].node_id, p->node_id, 32) == 0)
			break;
	if (forgotten) {
		if (i < n) {
			N.saved[x->node][i] = N.saved[x->node][n - 1];
			N.saved_count[x->node]--;
		}
		return;
	}
	if (i == n) {
		assert_true(n < 8);
		N.saved_count[x->node]++;
	}
	N.saved[x->node][i] = *p;
}

static void make_node(int i, uint8_t seed, const uint8_t fedkey[32])
{
	fm_node_config cfg;
	uint8_t s[FM_SEED_BYTES];
	char text[32];
	fm_io io;

	memset(&cfg, 0, sizeof(cfg));
	memset(s, seed, sizeof(s));
	assert_int_equal(fm_identity_from_seed(s, &cfg.identity), 0);
	memcpy(cfg.federation_key, fedkey, 32);
	snprintf(text, sizeof(text), "10.0.0.%d:7420", i + 1);
	assert_int_equal(fm_addr_parse(text, &N.addrs[i]), 0);
	cfg.record_seq = 1;
	cfg.advertise[0] = N.addrs[i];
	cfg.advertise_count = 1;
	memset(&io, 0, sizeof(io));
	ctxs[i].node = i;
	io.ctx = &ctxs[i];
	io.send_datagram = io_send_datagram;
	io.random_bytes = io_random;
	io.stream_open = io_stream_open;
	io.stream_send = io_stream_send;
	io.stream_close = io_stream_close;
	io.peer_changed = io_peer_changed;
	N.seeds[i] = seed;
	assert_int_equal(fm_node_new(&cfg, &io, N.now, &N.nodes[i]), 0);
	if (i >= N.node_count)
		N.node_count = i + 1;
}

static void deliver(struct event *e)
{
	struct end *end = &N.ends[e->end];
	fm_node *node = end->node >= 0 ? N.nodes[end->node] : NULL;
	fm_addr remote;

	if (e->type == EV_OPENED && node != NULL) {
		/* a stranger injected by a test has no node: any address */
		if (N.ends[end->other].node >= 0)
			remote = N.addrs[N.ends[end->other].node];
		else
			assert_int_equal(
			        fm_addr_parse("192.0.2.66:40000", &remote), 0);
		fm_node_stream_opened(node, N.now, end->id, &remote,
		                      end->incoming);
	} else if (e->type == EV_DATA && node != NULL && end->open) {
		fm_node_stream_data(node, N.now, end->id, e->data, e->len);
	} else if (e->type == EV_CLOSED && node != NULL) {
		end->open = 0;
		fm_node_stream_closed(node, N.now, end->id, 0);
	}
	free(e->data);
	e->data = NULL;
}

static void drain(void)
{
	int guard = 0;

	while (N.ev_head != N.ev_tail) {
		struct event e = N.events[N.ev_head];
		N.ev_head = (N.ev_head + 1) % EVENTS_MAX;
		deliver(&e);
		assert_true(++guard < 100000);
	}
}

/* Runs the network until virtual time `until`, jumping between deadlines. */
static void run_until(uint64_t until)
{
	for (;;) {
		uint64_t next = FM_DEADLINE_NONE;
		int i;

		drain();
		for (i = 0; i < N.node_count; i++) {
			uint64_t d;
			if (N.nodes[i] == NULL)
				continue;
			d = fm_node_tick(N.nodes[i], N.now);
			if (d < next)
				next = d;
		}
		if (N.ev_head != N.ev_tail)
			continue;
		if (next > until)
			break;
		N.now = next > N.now ? next : N.now + 1;
	}
	N.now = until;
}

static int setup(void **state)
{
	(void)state;
	memset(&N, 0, sizeof(N));
	N.now = 1000;
	N.rng = 0x9e3779b97f4a7c15ULL;
	return 0;
}

static int teardown(void **state)
{
	int i;

	(void)state;
	for (i = 0; i < NODES_MAX; i++)
		fm_node_free(N.nodes[i]);
	while (N.ev_head != N.ev_tail) {
		free(N.events[N.ev_head].data);
		N.ev_head = (N.ev_head + 1) % EVENTS_MAX;
	}
	for (i = 0; i < N.held_count; i++)
		free(N.held[i].data);
	return 0;
}

static const uint8_t FED_A[32] = {1, 2, 3};
static const uint8_t FED_B[32] = {9, 9, 9};

static int connected_peers(int node)
{
	fm_node_status st;

	fm_node_get_status(N.nodes[node], &st);
	return (int)st.peers_connected;
}

static void get_peer(int node, int index, fm_peer_info *info)
{
	assert_int_equal(fm_node_peer_get(N.nodes[node], (size_t)index, info),
	                 0);
}

static void node_id(int node, uint8_t out[32])
{
	fm_node_status st;

	fm_node_get_status(N.nodes[node], &st);
	memcpy(out, st.node_id, 32);
}

static void connect_pair(void)
{
	make_node(0, 1, FED_A);
	make_node(1, 2, FED_A);
	assert_int_equal(fm_node_add_contact(N.nodes[0], N.now, &N.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	run_until(N.now + 2000);
}

static void test_handshake_and_rtt(void **state)
{
	fm_peer_info p;
	fm_node_stats st;
	uint8_t id1[32], id0[32];

	(void)state;
	connect_pair();
	assert_int_equal(connected_peers(0), 1);
	assert_int_equal(connected_peers(1), 1);
	assert_int_equal(fm_node_peer_count(N.nodes[0]), 1);
	node_id(1, id1);
	node_id(0, id0);
	get_peer(0, 0, &p);
	assert_memory_equal(p.node_id, id1, 32);
	assert_int_equal(p.state, FM_PEER_CONNECTED);
	assert_true(p.rtt_ms >= 0);
	assert_int_equal(p.source, FM_SRC_INVITE);
	assert_true(p.has_record);
	assert_true(p.score > 0);
	get_peer(1, 0, &p);
	assert_memory_equal(p.node_id, id0, 32);
	assert_int_equal(p.source, FM_SRC_INBOUND);
	assert_true(p.has_record);
	/* B learned A's advertised (dialable) address from A's record */
	assert_true(fm__peer_dialable(&N.nodes[1]->peers[0]));
	fm_node_get_stats(N.nodes[0], &st);
	assert_int_equal(st.handshakes_completed, 1);
	/* keepalives keep it up for a long while */
	run_until(N.now + 5 * 60 * 1000);
	assert_int_equal(connected_peers(0), 1);
	assert_int_equal(connected_peers(1), 1);
	fm_node_get_stats(N.nodes[1], &st);
	assert_int_equal(st.handshakes_completed, 1);
	assert_true(st.frames_received > 50);
	/* both sides persisted the other */
	assert_int_equal(N.saved_count[0], 1);
	assert_int_equal(N.saved_count[1], 1);
}

static void test_outsider_gets_silence(void **state)
{
	fm_node_stats st;
	int e;

	(void)state;
	make_node(0, 1, FED_A);
	make_node(1, 2, FED_B); /* another federation */
	assert_int_equal(fm_node_add_contact(N.nodes[0], N.now, &N.addrs[1],
	                                     FM_SRC_BOOTSTRAP),
	                 0);
	run_until(N.now + 3000);
	assert_int_equal(connected_peers(0), 0);
	assert_int_equal(connected_peers(1), 0);
	assert_int_equal(fm_node_peer_count(N.nodes[0]), 0);
	assert_int_equal(fm_node_peer_count(N.nodes[1]), 0);
	/* not one byte from the responder, on any stream */
	for (e = 0; e < N.end_count; e++)
		if (N.ends[e].node == 1)
			assert_int_equal(N.ends[e].bytes_sent, 0);
	fm_node_get_stats(N.nodes[1], &st);
	assert_true(st.session_errors[FM_SESS_BAD_MAC] >= 1);
	/* the dialler backs off instead of hammering: few attempts in 3 s */
	assert_true(st.session_errors[FM_SESS_BAD_MAC] <= 3);
}

static void test_tampered_frame(void **state)
{
	fm_node_stats st;
	fm_peer_info p;

	(void)state;
	connect_pair();
	N.hold = 1;
	run_until(N.now + 10001); /* A's next keepalive is held back */
	N.hold = 0;
	assert_true(N.held_count >= 1);
	N.held[0].data[N.held[0].len - 1] ^= 0x01;
	push(EV_DATA, N.held[0].end, N.held[0].data, N.held[0].len);
	run_until(N.now + 10);
	fm_node_get_stats(N.nodes[1], &st);
	fm_node_get_stats(N.nodes[0], &st);
	{
		fm_node_stats a, b;
		fm_node_get_stats(N.nodes[0], &a);
		fm_node_get_stats(N.nodes[1], &b);
		assert_int_equal(a.session_errors[FM_SESS_BAD_FRAME] +
		                         b.session_errors[FM_SESS_BAD_FRAME],
		                 1);
	}
	/* the receiver penalised the sender */
	get_peer(N.ends[N.held[0].end].node, 0, &p);
	assert_true(p.reputation.invalid > 0.9);
	assert_true(p.score < 0);
}

static void test_replayed_frame(void **state)
{
	fm_node_stats a, b;
	int receiver, i;

	(void)state;
	connect_pair();
	N.hold = 1;
	run_until(N.now + 10001);
	N.hold = 0;
	assert_true(N.held_count >= 1);
	receiver = N.ends[N.held[0].end].node;
	/* deliver everything in order, then the first frame once more: only
	 * the replay may fail, at its receiver */
	for (i = 0; i < N.held_count; i++)
		push(EV_DATA, N.held[i].end, N.held[i].data, N.held[i].len);
	push(EV_DATA, N.held[0].end, N.held[0].data, N.held[0].len);
	run_until(N.now + 10);
	fm_node_get_stats(N.nodes[receiver], &b);
	fm_node_get_stats(N.nodes[1 - receiver], &a);
	assert_int_equal(b.session_errors[FM_SESS_BAD_FRAME], 1);
	assert_int_equal(a.session_errors[FM_SESS_BAD_FRAME], 0);
	assert_true(fm_node_peer_count(N.nodes[receiver]) == 1);
}

static void test_reordered_frames(void **state)
{
	fm_node_stats a, b;
	int i, from;

	(void)state;
	connect_pair();
	N.hold = 1;
	/* two keepalive rounds: collect frames, then swap two of one side */
	run_until(N.now + 20002);
	N.hold = 0;
	assert_true(N.held_count >= 2);
	from = -1;
	for (i = 1; i < N.held_count; i++)
		if (N.held[i].end == N.held[0].end) {
			from = i;
			break;
		}
	assert_true(from > 0);
	push(EV_DATA, N.held[from].end, N.held[from].data, N.held[from].len);
	push(EV_DATA, N.held[0].end, N.held[0].data, N.held[0].len);
	run_until(N.now + 10);
	fm_node_get_stats(N.nodes[0], &a);
	fm_node_get_stats(N.nodes[1], &b);
	assert_int_equal(a.session_errors[FM_SESS_BAD_FRAME] +
	                         b.session_errors[FM_SESS_BAD_FRAME],
	                 1);
}

static void test_truncated_stream(void **state)
{
	uint8_t junk[40];
	fm_node_stats st;
	int a, b;

	(void)state;
	make_node(0, 1, FED_A);
	/* a stranger opens a stream, sends half a frame header and a
	 * truncated first message, and goes away */
	a = N.end_count++;
	b = N.end_count++;
	N.ends[a] = (struct end){-1, b, 1, 0, 5000, 0};
	N.ends[b] = (struct end){0, a, 1, 1, 5001, 0};
	push(EV_OPENED, b, NULL, 0);
	memset(junk, 0x41, sizeof(junk));
	junk[0] = 0;
	junk[1] = 60; /* announces 60 bytes, sends 38 */
	push(EV_DATA, b, junk, sizeof(junk));
	push(EV_CLOSED, b, NULL, 0);
	run_until(N.now + 100);
	fm_node_get_stats(N.nodes[0], &st);
	assert_int_equal(st.streams_closed, 1);
	assert_int_equal(N.ends[b].bytes_sent, 0);
	/* an announced frame beyond the first-message limit is refused at
	 * once, without waiting for its bytes */
	a = N.end_count++;
	b = N.end_count++;
	N.ends[a] = (struct end){-1, b, 1, 0, 6000, 0};
	N.ends[b] = (struct end){0, a, 1, 1, 6001, 0};
	push(EV_OPENED, b, NULL, 0);
	junk[0] = 0xff;
	junk[1] = 0xff;
	push(EV_DATA, b, junk, 2);
	run_until(N.now + 100);
	fm_node_get_stats(N.nodes[0], &st);
	assert_int_equal(st.session_errors[FM_SESS_BAD_MAC], 1);
	assert_int_equal(N.ends[b].open, 0);
}

static void test_wrong_psk_after_mac(void **state)
{
	fm_node_stats st;

	(void)state;
	/* Same mac1 key but a different PSK cannot happen with one
	 * federation key; simulate an attacker who learned mac1's key only:
	 * change the PSK the responder uses after its mac1 key is derived. */
	make_node(0, 1, FED_A);
	make_node(1, 2, FED_A);
	N.nodes[1]->federation_key[0] ^= 0xff;
	assert_int_equal(fm_node_add_contact(N.nodes[0], N.now, &N.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	run_until(N.now + 500);
	fm_node_get_stats(N.nodes[1], &st);
	assert_true(st.session_errors[FM_SESS_BAD_HANDSHAKE] >= 1);
	assert_int_equal(connected_peers(0), 0);
	assert_int_equal(connected_peers(1), 0);
}

static void test_bad_identity_signature(void **state)
{
	fm_node_stats st;

	(void)state;
	make_node(0, 1, FED_A);
	make_node(1, 2, FED_A);
	N.nodes[1]->binding_sig[10] ^= 0x04; /* B's proof no longer verifies */
	assert_int_equal(fm_node_add_contact(N.nodes[0], N.now, &N.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	run_until(N.now + 500);
	fm_node_get_stats(N.nodes[0], &st);
	assert_true(st.session_errors[FM_SESS_BAD_IDENTITY] >= 1);
	assert_int_equal(connected_peers(0), 0);
	assert_int_equal(fm_node_peer_count(N.nodes[0]), 0);
}

static void test_unexpected_node_id(void **state)
{
	fm_peer_info info;
	fm_node_stats st;

	(void)state;
	make_node(0, 1, FED_A);
	make_node(1, 2, FED_A);
	/* A believes node X lives at B's address */
	memset(&info, 0, sizeof(info));
	memset(info.node_id, 0x77, 32);
	info.addrs[0].addr = N.addrs[1];
	info.addrs[0].source = FM_SRC_BOOTSTRAP;
	info.addr_count = 1;
	info.rtt_ms = -1;
	assert_int_equal(fm_node_restore_peer(N.nodes[0], N.now, &info), 0);
	run_until(N.now + 60000);
	fm_node_get_stats(N.nodes[0], &st);
	/* B is a valid member, just not X: the address is stale for X, which
	 * is neither penalised nor dialled there again */
	assert_int_equal(st.session_errors[FM_SESS_WRONG_NODE], 1);
	assert_int_equal(st.session_errors[FM_SESS_BAD_IDENTITY], 0);
	assert_int_equal(connected_peers(0), 0);
	get_peer(0, 0, &info);
	assert_int_equal(info.addr_count, 0);
	assert_true(info.reputation.invalid == 0);
	assert_int_equal(info.state, FM_PEER_IDLE);
	assert_string_equal(info.last_error,
	                    "another node answers at this address");
}

static void test_idle_timeout_and_reconnect(void **state)
{
	fm_peer_info p;

	(void)state;
	connect_pair();
	N.partitioned = 1;
	run_until(N.now + FM_SESSION_IDLE_TIMEOUT_MS + 1000);
	assert_int_equal(connected_peers(0), 0);
	assert_int_equal(connected_peers(1), 0);
	get_peer(0, 0, &p);
	assert_true(p.state == FM_PEER_BACKOFF ||
	            p.state == FM_PEER_CONNECTING);
	assert_true(p.reputation.timeouts > 0.9);
	assert_true(p.last_error[0] != '\0');
	N.partitioned = 0;
	run_until(N.now + 10 * 60 * 1000);
	assert_int_equal(connected_peers(0), 1);
	assert_int_equal(connected_peers(1), 1);
}

static void test_rekey_keeps_session(void **state)
{
	fm_node_stats a, b;

	(void)state;
	connect_pair();
	run_until(N.now + FM_SESSION_REKEY_MS * 2 + 1000);
	fm_node_get_stats(N.nodes[0], &a);
	fm_node_get_stats(N.nodes[1], &b);
	assert_true(a.rekeys >= 2);
	assert_true(b.rekeys >= 2);
	assert_int_equal(a.session_errors[FM_SESS_BAD_FRAME], 0);
	assert_int_equal(b.session_errors[FM_SESS_BAD_FRAME], 0);
	assert_int_equal(a.handshakes_completed, 1);
	assert_int_equal(connected_peers(0), 1);
}

static void test_simultaneous_dial_keeps_one(void **state)
{
	int open_ends = 0, e;

	(void)state;
	make_node(0, 1, FED_A);
	make_node(1, 2, FED_A);
	assert_int_equal(fm_node_add_contact(N.nodes[0], N.now, &N.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	assert_int_equal(fm_node_add_contact(N.nodes[1], N.now, &N.addrs[0],
	                                     FM_SRC_INVITE),
	                 0);
	run_until(N.now + 60000);
	assert_int_equal(connected_peers(0), 1);
	assert_int_equal(connected_peers(1), 1);
	assert_int_equal(fm_node_peer_count(N.nodes[0]), 1);
	assert_int_equal(fm_node_peer_count(N.nodes[1]), 1);
	for (e = 0; e < N.end_count; e++)
		open_ends += N.ends[e].open;
	assert_int_equal(open_ends, 2); /* one stream, two ends */
}

static void test_restart_reconnects_from_saved(void **state)
{
	fm_peer_info saved;

	(void)state;
	connect_pair();
	assert_int_equal(N.saved_count[1], 1);
	saved = N.saved[1][0];
	/* B restarts with the same identity and only its saved peer table */
	fm_node_free(N.nodes[1]);
	N.nodes[1] = NULL;
	run_until(N.now + 1000);
	make_node(1, 2, FED_A);
	assert_int_equal(fm_node_restore_peer(N.nodes[1], N.now, &saved), 0);
	run_until(N.now + 5000);
	assert_int_equal(connected_peers(1), 1);
	assert_int_equal(connected_peers(0), 1);
}

static void test_reputation_decay_and_ban(void **state)
{
	struct fm__peer *p;
	fm_peer_info info;
	fm_node_stats st;
	double before;
	uint64_t first_ban;

	(void)state;
	connect_pair();
	p = &N.nodes[0]->peers[0];
	/* decay: a failure is worth half as much after one half-life */
	fm__peer_reputation(N.nodes[0], N.now, 0, FM__REP_FAILURE);
	before = p->info.reputation.failures;
	run_until(N.now + FM_REPUTATION_HALF_LIFE_MS);
	get_peer(0, 0, &info);
	assert_true(info.reputation.failures > before / 2 - 0.01 &&
	            info.reputation.failures < before / 2 + 0.01);
	/* invalid messages ban: two are enough */
	fm__peer_reputation(N.nodes[0], N.now, 0, FM__REP_INVALID);
	get_peer(0, 0, &info);
	assert_int_equal(info.state, FM_PEER_CONNECTED);
	fm__peer_reputation(N.nodes[0], N.now, 0, FM__REP_INVALID);
	get_peer(0, 0, &info);
	assert_int_equal(info.state, FM_PEER_BANNED);
	assert_int_equal(info.reputation.bans, 1);
	first_ban = info.reputation.ban_remaining_ms;
	assert_int_equal(first_ban, FM_REPUTATION_BAN_BASE_MS);
	assert_int_equal(connected_peers(0), 0);
	fm_node_get_stats(N.nodes[0], &st);
	assert_int_equal(st.peers_banned, 1);
	/* A never dials a banned peer; B's reconnects are refused */
	run_until(N.now + FM_REPUTATION_BAN_BASE_MS - 1000);
	assert_int_equal(connected_peers(0), 0);
	/* after the ban the peer may come back ... */
	run_until(N.now + 30000);
	get_peer(0, 0, &info);
	assert_true(info.state != FM_PEER_BANNED);
	/* ... and the next offence bans twice as long */
	fm__peer_reputation(N.nodes[0], N.now, 0, FM__REP_INVALID);
	get_peer(0, 0, &info);
	assert_int_equal(info.state, FM_PEER_BANNED);
	assert_int_equal(info.reputation.bans, 2);
	assert_int_equal(info.reputation.ban_remaining_ms, 2 * first_ban);
}

static void test_ban_survives_restore(void **state)
{
	fm_peer_info info, saved;
	fm_node_stats st;

	(void)state;
	connect_pair();
	fm__peer_reputation(N.nodes[0], N.now, 0, FM__REP_INVALID);
	fm__peer_reputation(N.nodes[0], N.now, 0, FM__REP_INVALID);
	assert_int_equal(N.saved_count[0], 1);
	saved = N.saved[0][0];
	assert_true(saved.reputation.ban_remaining_ms > 0);
	assert_true(saved.reputation.invalid > 1.9);
	/* A restarts: the ban and the counters are back, nothing laundered */
	fm_node_free(N.nodes[0]);
	N.nodes[0] = NULL;
	make_node(0, 1, FED_A);
	assert_int_equal(fm_node_restore_peer(N.nodes[0], N.now, &saved), 0);
	run_until(N.now + 10000);
	get_peer(0, 0, &info);
	assert_int_equal(info.state, FM_PEER_BANNED);
	assert_true(info.score < FM_REPUTATION_BAN_SCORE);
	assert_int_equal(connected_peers(0), 0);
	fm_node_get_stats(N.nodes[0], &st);
	assert_int_equal(st.handshakes_completed, 0);
}

static void test_neutral_prior(void **state)
{
	fm_reputation r;

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_true(fm_reputation_score(&r) == 0.0);
	r.successes = 1000; /* good behaviour is capped */
	assert_true(fm_reputation_score(&r) ==
	            FM_REPUTATION_W_SUCCESS * FM_REPUTATION_SUCCESS_CAP);
	r.invalid = 2;
	assert_true(fm_reputation_score(&r) < FM_REPUTATION_BAN_SCORE);
}

static void test_federation_switch(void **state)
{
	(void)state;
	connect_pair();
	fm_node_set_federation(N.nodes[0], N.now, FED_B);
	run_until(N.now + 5000);
	assert_int_equal(connected_peers(0), 0);
	assert_int_equal(fm_node_peer_count(N.nodes[0]), 0);
	assert_int_equal(N.saved_count[0], 0); /* forgotten in the store */
	/* joining B's federation too brings them back together */
	fm_node_set_federation(N.nodes[1], N.now, FED_B);
	assert_int_equal(fm_node_add_contact(N.nodes[0], N.now, &N.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	run_until(N.now + 5000);
	assert_int_equal(connected_peers(0), 1);
}

static void test_dial_self_and_dead_address(void **state)
{
	fm_addr nowhere;
	fm_peer_info info;
	int attempts = 0, e;

	(void)state;
	make_node(0, 1, FED_A);
	assert_int_equal(fm_node_add_contact(N.nodes[0], N.now, &N.addrs[0],
	                                     FM_SRC_BOOTSTRAP),
	                 0);
	assert_int_equal(fm_addr_parse("10.9.9.9:7420", &nowhere), 0);
	assert_int_equal(fm_node_add_contact(N.nodes[0], N.now, &nowhere,
	                                     FM_SRC_BOOTSTRAP),
	                 0);
	run_until(N.now + 60000);
	assert_int_equal(connected_peers(0), 0);
	assert_int_equal(fm_node_peer_count(N.nodes[0]), 0);
	assert_int_equal(fm_node_peer_get(N.nodes[0], 0, &info), -ENOENT);
	/* exponential backoff: a minute of failures is a handful of dials */
	for (e = 0; e < N.end_count; e++)
		if (N.ends[e].node == 0 && !N.ends[e].incoming)
			attempts++;
	assert_true(attempts <= 2 * 8);
	assert_int_equal(fm_node_add_contact(N.nodes[0], N.now, &nowhere,
	                                     FM_SRC_INBOUND),
	                 -EINVAL);
}

static void test_offline_peer_costs_no_reputation(void **state)
{
	fm_peer_info info;

	(void)state;
	make_node(0, 1, FED_A);
	N.blackhole = 1;
	/* a known peer whose host is gone: every connect hangs */
	memset(&info, 0, sizeof(info));
	memset(info.node_id, 0x55, 32);
	assert_int_equal(fm_addr_parse("10.9.9.9:7420", &info.addrs[0].addr),
	                 0);
	info.addrs[0].source = FM_SRC_BOOTSTRAP;
	info.addr_count = 1;
	info.rtt_ms = -1;
	assert_int_equal(fm_node_restore_peer(N.nodes[0], N.now, &info), 0);
	run_until(N.now + 60 * 60 * 1000);
	get_peer(0, 0, &info);
	assert_true(info.state != FM_PEER_BANNED);
	assert_true(info.reputation.timeouts == 0);
	assert_string_equal(info.last_error, "connect timed out");
}

static void test_network_back_redials_everyone(void **state)
{
	uint64_t first = 0, all = 0;

	(void)state;
	make_node(0, 1, FED_A);
	make_node(1, 2, FED_A);
	make_node(2, 3, FED_A);
	assert_int_equal(fm_node_add_contact(N.nodes[0], N.now, &N.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	assert_int_equal(fm_node_add_contact(N.nodes[0], N.now, &N.addrs[2],
	                                     FM_SRC_INVITE),
	                 0);
	run_until(N.now + 2000);
	assert_int_equal(connected_peers(0), 2);
	/* a long outage: backoff grows towards its 5-minute cap */
	N.partitioned = 1;
	run_until(N.now + 30 * 60 * 1000);
	assert_int_equal(connected_peers(0), 0);
	N.partitioned = 0;
	while (all == 0 && N.now < 40 * 60 * 1000) {
		run_until(N.now + 100);
		if (first == 0 && connected_peers(0) >= 1)
			first = N.now;
		if (connected_peers(0) == 2)
			all = N.now;
	}
	assert_true(first > 0 && all > 0);
	/* once one session succeeds the others follow within ~1 s, not
	 * after their own (minutes-long) backoff */
	assert_true(all - first <= FM_DIAL_RESTORE_SPREAD_MS + 500);
}

static void test_shutdown_closes_orderly(void **state)
{
	fm_node_stats b;
	fm_peer_info p;
	int r;

	(void)state;
	connect_pair();
	fm_node_shutdown(N.nodes[0], N.now);
	run_until(N.now + 100);
	/* B learns at once, from A's CLOSE, not after an idle timeout */
	assert_int_equal(connected_peers(1), 0);
	fm_node_get_stats(N.nodes[1], &b);
	for (r = 0; r < FM_SESS_ERROR_COUNT; r++)
		assert_int_equal(b.session_errors[r], 0);
	get_peer(1, 0, &p);
	assert_string_equal(p.last_error, "");
	assert_true(p.reputation.timeouts == 0 && p.reputation.failures == 0);
	/* a shut-down node neither redials nor wants a tick */
	assert_true(fm_node_tick(N.nodes[0], N.now + 60000) ==
	            FM_DEADLINE_NONE);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	        T(test_handshake_and_rtt),
	        T(test_outsider_gets_silence),
	        T(test_tampered_frame),
	        T(test_replayed_frame),
	        T(test_reordered_frames),
	        T(test_truncated_stream),
	        T(test_wrong_psk_after_mac),
	        T(test_bad_identity_signature),
	        T(test_unexpected_node_id),
	        T(test_idle_timeout_and_reconnect),
	        T(test_rekey_keeps_session),
	        T(test_simultaneous_dial_keeps_one),
	        T(test_restart_reconnects_from_saved),
	        T(test_reputation_decay_and_ban),
	        T(test_ban_survives_restore),
	        T(test_neutral_prior),
	        T(test_federation_switch),
	        T(test_dial_self_and_dead_address),
	        T(test_shutdown_closes_orderly),
	        T(test_offline_peer_costs_no_reputation),
	        T(test_network_back_redials_everyone),
	};
#undef T

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
