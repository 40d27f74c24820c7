/* Sessions, peer table and reputation, end to end inside one process:
 * several cores wired through memnet's in-memory streams on a virtual clock
 * (memnet.h). Each test can hold back, alter, replay or reorder frames
 * between the cores. Linked with the core and libsodium/msgpack-c only. */
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
#include "memnet.h"

/* What each node persisted through fm_io.peer_changed (its peer store). */
struct store {
	fm_peer_info saved[MEMNET_NODES_MAX][8];
	int saved_count[MEMNET_NODES_MAX];
};

static struct store S;

static void io_peer_changed(void *c, const fm_peer_info *p, int forgotten)
{
	int node = memnet_node_of(c);
	int i, n = S.saved_count[node];

	for (i = 0; i < n; i++)
		if (memcmp(S.saved[node][i].node_id, p->node_id, 32) == 0)
			break;
	if (forgotten) {
		if (i < n) {
			S.saved[node][i] = S.saved[node][n - 1];
			S.saved_count[node]--;
		}
		return;
	}
	if (i == n) {
		assert_true(n < 8);
		S.saved_count[node]++;
	}
	S.saved[node][i] = *p;
}

static void make_node(int i, uint8_t seed, const uint8_t fedkey[32])
{
	fm_node_config cfg;
	fm_io io;

	memnet_node_prepare(i, seed, fedkey, &cfg, &io);
	io.peer_changed = io_peer_changed;
	memnet_node_start(i, &cfg, &io);
}

static int setup(void **state)
{
	(void)state;
	memset(&S, 0, sizeof(S));
	memnet_reset();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	memnet_free();
	return 0;
}

static const uint8_t FED_A[32] = {1, 2, 3};
static const uint8_t FED_B[32] = {9, 9, 9};

static void get_peer(int node, int index, fm_peer_info *info)
{
	assert_int_equal(fm_node_peer_get(M.nodes[node], (size_t)index, info),
	                 0);
}

static void connect_pair(void)
{
	make_node(0, 1, FED_A);
	make_node(1, 2, FED_A);
	assert_int_equal(fm_node_add_contact(M.nodes[0], M.now, &M.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	memnet_run_until(M.now + 2000);
}

static void test_handshake_and_rtt(void **state)
{
	fm_peer_info p;
	fm_node_stats st;
	uint8_t id1[32], id0[32];

	(void)state;
	connect_pair();
	assert_int_equal(memnet_connected_peers(0), 1);
	assert_int_equal(memnet_connected_peers(1), 1);
	assert_int_equal(fm_node_peer_count(M.nodes[0]), 1);
	memnet_node_id(1, id1);
	memnet_node_id(0, id0);
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
	assert_true(fm__peer_dialable(&M.nodes[1]->peers[0]));
	fm_node_get_stats(M.nodes[0], &st);
	assert_int_equal(st.handshakes_completed, 1);
	/* keepalives keep it up for a long while */
	memnet_run_until(M.now + 5 * 60 * 1000);
	assert_int_equal(memnet_connected_peers(0), 1);
	assert_int_equal(memnet_connected_peers(1), 1);
	fm_node_get_stats(M.nodes[1], &st);
	assert_int_equal(st.handshakes_completed, 1);
	assert_true(st.frames_received > 50);
	/* both sides persisted the other */
	assert_int_equal(S.saved_count[0], 1);
	assert_int_equal(S.saved_count[1], 1);
}

static void test_outsider_gets_silence(void **state)
{
	fm_node_stats st;
	int e;

	(void)state;
	make_node(0, 1, FED_A);
	make_node(1, 2, FED_B); /* another federation */
	assert_int_equal(fm_node_add_contact(M.nodes[0], M.now, &M.addrs[1],
	                                     FM_SRC_BOOTSTRAP),
	                 0);
	memnet_run_until(M.now + 3000);
	assert_int_equal(memnet_connected_peers(0), 0);
	assert_int_equal(memnet_connected_peers(1), 0);
	assert_int_equal(fm_node_peer_count(M.nodes[0]), 0);
	assert_int_equal(fm_node_peer_count(M.nodes[1]), 0);
	/* not one byte from the responder, on any stream */
	for (e = 0; e < M.end_count; e++)
		if (M.ends[e].node == 1)
			assert_int_equal(M.ends[e].bytes_sent, 0);
	fm_node_get_stats(M.nodes[1], &st);
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
	M.hold = 1;
	memnet_run_until(M.now + 10001); /* A's next keepalive is held back */
	M.hold = 0;
	assert_true(M.held_count >= 1);
	M.held[0].data[M.held[0].len - 1] ^= 0x01;
	memnet_push(MEMNET_DATA, M.held[0].end, M.held[0].data, M.held[0].len);
	memnet_run_until(M.now + 10);
	fm_node_get_stats(M.nodes[1], &st);
	fm_node_get_stats(M.nodes[0], &st);
	{
		fm_node_stats a, b;
		fm_node_get_stats(M.nodes[0], &a);
		fm_node_get_stats(M.nodes[1], &b);
		assert_int_equal(a.session_errors[FM_SESS_BAD_FRAME] +
		                         b.session_errors[FM_SESS_BAD_FRAME],
		                 1);
	}
	/* the receiver penalised the sender */
	get_peer(M.ends[M.held[0].end].node, 0, &p);
	assert_true(p.reputation.invalid > 0.9);
	assert_true(p.score < 0);
}

static void test_replayed_frame(void **state)
{
	fm_node_stats a, b;
	int receiver, i;

	(void)state;
	connect_pair();
	M.hold = 1;
	memnet_run_until(M.now + 10001);
	M.hold = 0;
	assert_true(M.held_count >= 1);
	receiver = M.ends[M.held[0].end].node;
	/* deliver everything in order, then the first frame once more: only
	 * the replay may fail, at its receiver */
	for (i = 0; i < M.held_count; i++)
		memnet_push(MEMNET_DATA, M.held[i].end, M.held[i].data,
		            M.held[i].len);
	memnet_push(MEMNET_DATA, M.held[0].end, M.held[0].data, M.held[0].len);
	memnet_run_until(M.now + 10);
	fm_node_get_stats(M.nodes[receiver], &b);
	fm_node_get_stats(M.nodes[1 - receiver], &a);
	assert_int_equal(b.session_errors[FM_SESS_BAD_FRAME], 1);
	assert_int_equal(a.session_errors[FM_SESS_BAD_FRAME], 0);
	assert_true(fm_node_peer_count(M.nodes[receiver]) == 1);
}

static void test_reordered_frames(void **state)
{
	fm_node_stats a, b;
	int i, from;

	(void)state;
	connect_pair();
	M.hold = 1;
	/* two keepalive rounds: collect frames, then swap two of one side */
	memnet_run_until(M.now + 20002);
	M.hold = 0;
	assert_true(M.held_count >= 2);
	from = -1;
	for (i = 1; i < M.held_count; i++)
		if (M.held[i].end == M.held[0].end) {
			from = i;
			break;
		}
	assert_true(from > 0);
	memnet_push(MEMNET_DATA, M.held[from].end, M.held[from].data,
	            M.held[from].len);
	memnet_push(MEMNET_DATA, M.held[0].end, M.held[0].data, M.held[0].len);
	memnet_run_until(M.now + 10);
	fm_node_get_stats(M.nodes[0], &a);
	fm_node_get_stats(M.nodes[1], &b);
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
	a = M.end_count++;
	b = M.end_count++;
	M.ends[a] = (struct memnet_end){-1, b, 1, 0, 5000, 0};
	M.ends[b] = (struct memnet_end){0, a, 1, 1, 5001, 0};
	memnet_push(MEMNET_OPENED, b, NULL, 0);
	memset(junk, 0x41, sizeof(junk));
	junk[0] = 0;
	junk[1] = 60; /* announces 60 bytes, sends 38 */
	memnet_push(MEMNET_DATA, b, junk, sizeof(junk));
	memnet_push(MEMNET_CLOSED, b, NULL, 0);
	memnet_run_until(M.now + 100);
	fm_node_get_stats(M.nodes[0], &st);
	assert_int_equal(st.streams_closed, 1);
	assert_int_equal(M.ends[b].bytes_sent, 0);
	/* an announced frame beyond the first-message limit is refused at
	 * once, without waiting for its bytes */
	a = M.end_count++;
	b = M.end_count++;
	M.ends[a] = (struct memnet_end){-1, b, 1, 0, 6000, 0};
	M.ends[b] = (struct memnet_end){0, a, 1, 1, 6001, 0};
	memnet_push(MEMNET_OPENED, b, NULL, 0);
	junk[0] = 0xff;
	junk[1] = 0xff;
	memnet_push(MEMNET_DATA, b, junk, 2);
	memnet_run_until(M.now + 100);
	fm_node_get_stats(M.nodes[0], &st);
	assert_int_equal(st.session_errors[FM_SESS_BAD_MAC], 1);
	assert_int_equal(M.ends[b].open, 0);
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
	M.nodes[1]->federation_key[0] ^= 0xff;
	assert_int_equal(fm_node_add_contact(M.nodes[0], M.now, &M.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	memnet_run_until(M.now + 500);
	fm_node_get_stats(M.nodes[1], &st);
	assert_true(st.session_errors[FM_SESS_BAD_HANDSHAKE] >= 1);
	assert_int_equal(memnet_connected_peers(0), 0);
	assert_int_equal(memnet_connected_peers(1), 0);
}

static void test_bad_identity_signature(void **state)
{
	fm_node_stats st;

	(void)state;
	make_node(0, 1, FED_A);
	make_node(1, 2, FED_A);
	M.nodes[1]->binding_sig[10] ^= 0x04; /* B's proof no longer verifies */
	assert_int_equal(fm_node_add_contact(M.nodes[0], M.now, &M.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	memnet_run_until(M.now + 500);
	fm_node_get_stats(M.nodes[0], &st);
	assert_true(st.session_errors[FM_SESS_BAD_IDENTITY] >= 1);
	assert_int_equal(memnet_connected_peers(0), 0);
	assert_int_equal(fm_node_peer_count(M.nodes[0]), 0);
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
	info.addrs[0].addr = M.addrs[1];
	info.addrs[0].source = FM_SRC_BOOTSTRAP;
	info.addr_count = 1;
	info.rtt_ms = -1;
	assert_int_equal(fm_node_restore_peer(M.nodes[0], M.now, &info), 0);
	memnet_run_until(M.now + 60000);
	fm_node_get_stats(M.nodes[0], &st);
	/* B is a valid member, just not X: the address is stale for X, which
	 * is neither penalised nor dialled there again */
	assert_int_equal(st.session_errors[FM_SESS_WRONG_NODE], 1);
	assert_int_equal(st.session_errors[FM_SESS_BAD_IDENTITY], 0);
	assert_int_equal(memnet_connected_peers(0), 0);
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
	M.partitioned = 1;
	memnet_run_until(M.now + FM_SESSION_IDLE_TIMEOUT_MS + 1000);
	assert_int_equal(memnet_connected_peers(0), 0);
	assert_int_equal(memnet_connected_peers(1), 0);
	get_peer(0, 0, &p);
	assert_true(p.state == FM_PEER_BACKOFF ||
	            p.state == FM_PEER_CONNECTING);
	assert_true(p.reputation.timeouts > 0.9);
	assert_true(p.last_error[0] != '\0');
	M.partitioned = 0;
	memnet_run_until(M.now + 10 * 60 * 1000);
	assert_int_equal(memnet_connected_peers(0), 1);
	assert_int_equal(memnet_connected_peers(1), 1);
}

static void test_rekey_keeps_session(void **state)
{
	fm_node_stats a, b;

	(void)state;
	connect_pair();
	memnet_run_until(M.now + FM_SESSION_REKEY_MS * 2 + 1000);
	fm_node_get_stats(M.nodes[0], &a);
	fm_node_get_stats(M.nodes[1], &b);
	assert_true(a.rekeys >= 2);
	assert_true(b.rekeys >= 2);
	assert_int_equal(a.session_errors[FM_SESS_BAD_FRAME], 0);
	assert_int_equal(b.session_errors[FM_SESS_BAD_FRAME], 0);
	assert_int_equal(a.handshakes_completed, 1);
	assert_int_equal(memnet_connected_peers(0), 1);
}

static void test_simultaneous_dial_keeps_one(void **state)
{
	int open_ends = 0, e;

	(void)state;
	make_node(0, 1, FED_A);
	make_node(1, 2, FED_A);
	assert_int_equal(fm_node_add_contact(M.nodes[0], M.now, &M.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	assert_int_equal(fm_node_add_contact(M.nodes[1], M.now, &M.addrs[0],
	                                     FM_SRC_INVITE),
	                 0);
	memnet_run_until(M.now + 60000);
	assert_int_equal(memnet_connected_peers(0), 1);
	assert_int_equal(memnet_connected_peers(1), 1);
	assert_int_equal(fm_node_peer_count(M.nodes[0]), 1);
	assert_int_equal(fm_node_peer_count(M.nodes[1]), 1);
	for (e = 0; e < M.end_count; e++)
		open_ends += M.ends[e].open;
	assert_int_equal(open_ends, 2); /* one stream, two ends */
}

static void test_restart_reconnects_from_saved(void **state)
{
	fm_peer_info saved;

	(void)state;
	connect_pair();
	assert_int_equal(S.saved_count[1], 1);
	saved = S.saved[1][0];
	/* B restarts with the same identity and only its saved peer table */
	fm_node_free(M.nodes[1]);
	M.nodes[1] = NULL;
	memnet_run_until(M.now + 1000);
	make_node(1, 2, FED_A);
	assert_int_equal(fm_node_restore_peer(M.nodes[1], M.now, &saved), 0);
	memnet_run_until(M.now + 5000);
	assert_int_equal(memnet_connected_peers(1), 1);
	assert_int_equal(memnet_connected_peers(0), 1);
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
	p = &M.nodes[0]->peers[0];
	/* decay: a failure is worth half as much after one half-life */
	fm__peer_reputation(M.nodes[0], M.now, 0, FM__REP_FAILURE);
	before = p->info.reputation.failures;
	memnet_run_until(M.now + FM_REPUTATION_HALF_LIFE_MS);
	get_peer(0, 0, &info);
	assert_true(info.reputation.failures > before / 2 - 0.01 &&
	            info.reputation.failures < before / 2 + 0.01);
	/* invalid messages ban: two are enough */
	fm__peer_reputation(M.nodes[0], M.now, 0, FM__REP_INVALID);
	get_peer(0, 0, &info);
	assert_int_equal(info.state, FM_PEER_CONNECTED);
	fm__peer_reputation(M.nodes[0], M.now, 0, FM__REP_INVALID);
	get_peer(0, 0, &info);
	assert_int_equal(info.state, FM_PEER_BANNED);
	assert_int_equal(info.reputation.bans, 1);
	first_ban = info.reputation.ban_remaining_ms;
	assert_int_equal(first_ban, FM_REPUTATION_BAN_BASE_MS);
	assert_int_equal(memnet_connected_peers(0), 0);
	fm_node_get_stats(M.nodes[0], &st);
	assert_int_equal(st.peers_banned, 1);
	/* A never dials a banned peer; B's reconnects are refused */
	memnet_run_until(M.now + FM_REPUTATION_BAN_BASE_MS - 1000);
	assert_int_equal(memnet_connected_peers(0), 0);
	/* after the ban the peer may come back ... */
	memnet_run_until(M.now + 30000);
	get_peer(0, 0, &info);
	assert_true(info.state != FM_PEER_BANNED);
	/* ... and the next offence bans twice as long */
	fm__peer_reputation(M.nodes[0], M.now, 0, FM__REP_INVALID);
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
	fm__peer_reputation(M.nodes[0], M.now, 0, FM__REP_INVALID);
	fm__peer_reputation(M.nodes[0], M.now, 0, FM__REP_INVALID);
	assert_int_equal(S.saved_count[0], 1);
	saved = S.saved[0][0];
	assert_true(saved.reputation.ban_remaining_ms > 0);
	assert_true(saved.reputation.invalid > 1.9);
	/* A restarts: the ban and the counters are back, nothing laundered */
	fm_node_free(M.nodes[0]);
	M.nodes[0] = NULL;
	make_node(0, 1, FED_A);
	assert_int_equal(fm_node_restore_peer(M.nodes[0], M.now, &saved), 0);
	memnet_run_until(M.now + 10000);
	get_peer(0, 0, &info);
	assert_int_equal(info.state, FM_PEER_BANNED);
	assert_true(info.score < FM_REPUTATION_BAN_SCORE);
	assert_int_equal(memnet_connected_peers(0), 0);
	fm_node_get_stats(M.nodes[0], &st);
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
	fm_node_set_federation(M.nodes[0], M.now, FED_B);
	memnet_run_until(M.now + 5000);
	assert_int_equal(memnet_connected_peers(0), 0);
	assert_int_equal(fm_node_peer_count(M.nodes[0]), 0);
	assert_int_equal(S.saved_count[0], 0); /* forgotten in the store */
	/* joining B's federation too brings them back together */
	fm_node_set_federation(M.nodes[1], M.now, FED_B);
	assert_int_equal(fm_node_add_contact(M.nodes[0], M.now, &M.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	memnet_run_until(M.now + 5000);
	assert_int_equal(memnet_connected_peers(0), 1);
}

static void test_dial_self_and_dead_address(void **state)
{
	fm_addr nowhere;
	fm_peer_info info;
	int attempts = 0, e;

	(void)state;
	make_node(0, 1, FED_A);
	assert_int_equal(fm_node_add_contact(M.nodes[0], M.now, &M.addrs[0],
	                                     FM_SRC_BOOTSTRAP),
	                 0);
	assert_int_equal(fm_addr_parse("10.9.9.9:7420", &nowhere), 0);
	assert_int_equal(fm_node_add_contact(M.nodes[0], M.now, &nowhere,
	                                     FM_SRC_BOOTSTRAP),
	                 0);
	memnet_run_until(M.now + 60000);
	assert_int_equal(memnet_connected_peers(0), 0);
	assert_int_equal(fm_node_peer_count(M.nodes[0]), 0);
	assert_int_equal(fm_node_peer_get(M.nodes[0], 0, &info), -ENOENT);
	/* exponential backoff: a minute of failures is a handful of dials */
	for (e = 0; e < M.end_count; e++)
		if (M.ends[e].node == 0 && !M.ends[e].incoming)
			attempts++;
	assert_true(attempts <= 2 * 8);
	assert_int_equal(fm_node_add_contact(M.nodes[0], M.now, &nowhere,
	                                     FM_SRC_INBOUND),
	                 -EINVAL);
}

static void test_offline_peer_costs_no_reputation(void **state)
{
	fm_peer_info info;

	(void)state;
	make_node(0, 1, FED_A);
	M.blackhole = 1;
	/* a known peer whose host is gone: every connect hangs */
	memset(&info, 0, sizeof(info));
	memset(info.node_id, 0x55, 32);
	assert_int_equal(fm_addr_parse("10.9.9.9:7420", &info.addrs[0].addr),
	                 0);
	info.addrs[0].source = FM_SRC_BOOTSTRAP;
	info.addr_count = 1;
	info.rtt_ms = -1;
	assert_int_equal(fm_node_restore_peer(M.nodes[0], M.now, &info), 0);
	memnet_run_until(M.now + 60 * 60 * 1000);
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
	assert_int_equal(fm_node_add_contact(M.nodes[0], M.now, &M.addrs[1],
	                                     FM_SRC_INVITE),
	                 0);
	assert_int_equal(fm_node_add_contact(M.nodes[0], M.now, &M.addrs[2],
	                                     FM_SRC_INVITE),
	                 0);
	memnet_run_until(M.now + 2000);
	assert_int_equal(memnet_connected_peers(0), 2);
	/* a long outage: backoff grows towards its 5-minute cap */
	M.partitioned = 1;
	memnet_run_until(M.now + 30 * 60 * 1000);
	assert_int_equal(memnet_connected_peers(0), 0);
	M.partitioned = 0;
	while (all == 0 && M.now < 40 * 60 * 1000) {
		memnet_run_until(M.now + 100);
		if (first == 0 && memnet_connected_peers(0) >= 1)
			first = M.now;
		if (memnet_connected_peers(0) == 2)
			all = M.now;
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
	fm_node_shutdown(M.nodes[0], M.now);
	memnet_run_until(M.now + 100);
	/* B learns at once, from A's CLOSE, not after an idle timeout */
	assert_int_equal(memnet_connected_peers(1), 0);
	fm_node_get_stats(M.nodes[1], &b);
	for (r = 0; r < FM_SESS_ERROR_COUNT; r++)
		assert_int_equal(b.session_errors[r], 0);
	get_peer(1, 0, &p);
	assert_string_equal(p.last_error, "");
	assert_true(p.reputation.timeouts == 0 && p.reputation.failures == 0);
	/* a shut-down node neither redials nor wants a tick */
	assert_true(fm_node_tick(M.nodes[0], M.now + 60000) ==
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
