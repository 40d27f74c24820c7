/* Session handshakes per second on one core.
 *
 * Two real fm_node cores (fm_node_new, public API only) are wired together
 * by an in-memory stream pair: what one core sends is queued and handed to
 * the other with fm_node_stream_data() once the sender has returned (no
 * re-entry into a core from its own callback). Every iteration node A
 * re-dials B (fm_node_add_contact on B's known address makes the dial due
 * now, fm_node_tick performs it), and the complete Noise_XXpsk3 handshake
 * runs through the cores: mac1, two ephemerals, every DH of XX on both
 * sides, both identity-binding signatures and both signed records verified,
 * then the first keepalive ping/pong each way. The driver then closes the
 * stream on both ends (fm_node_stream_closed) and the next iteration
 * starts. Randomness is libsodium's randombytes_buf, as in the daemon.
 *
 * Completed handshakes are counted by the cores themselves
 * (fm_node_get_stats().handshakes_completed, on both nodes) and divided by
 * the wall time of the loop, taken with clock_gettime(CLOCK_MONOTONIC) here
 * in the benchmark; the core never reads a clock.
 *
 * Build (from the repository root):
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -Isrc \
 *       bench/handshake.c src/core/[a-z]*.c -lsodium -lmsgpackc -lm \
 *       -o /tmp/bench-handshake
 * Run: /tmp/bench-handshake [--iterations N] [--warmup N]
 *                           [--primitive-reps N]
 * Output: key=value lines (machine, parameters, results), then the cost of
 * the handshake's public-key primitives timed alone, for comparison. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "fedmesh/fedmesh.h"
#include "machine.h"

#define QUEUE_EVENTS 64
#define QUEUE_BYTES (256 * 1024)
#define ENDS_MAX 4

enum ev_type { EV_OPENED, EV_DATA, EV_CLOSED };

struct event {
	enum ev_type type;
	int end; /* the receiving end */
	size_t off, len;
};

/* One end of an in-memory stream: node index and the core's stream ID. */
struct end {
	int node;
	int other;
	int open;
	int incoming;
	uint64_t id;
};

struct bench {
	fm_node *nodes[2];
	fm_addr addrs[2];
	int ctx_node[2];
	struct end ends[ENDS_MAX];
	int end_count;
	uint64_t next_stream_id;
	struct event events[QUEUE_EVENTS];
	int ev_head, ev_tail;
	uint8_t bytes[QUEUE_BYTES]; /* payloads of queued data events */
	size_t bytes_used;
	uint64_t now_ms; /* the virtual clock handed to the cores */
};

static struct bench B;

static void fail(const char *what)
{
	fprintf(stderr, "handshake bench: %s\n", what);
	exit(1);
}

static void push(enum ev_type type, int end, const uint8_t *data, size_t len)
{
	struct event *e = &B.events[B.ev_tail];

	if ((B.ev_tail + 1) % QUEUE_EVENTS == B.ev_head)
		fail("event queue full");
	if (len > QUEUE_BYTES - B.bytes_used)
		fail("byte queue full");
	e->type = type;
	e->end = end;
	e->off = B.bytes_used;
	e->len = len;
	if (len > 0)
		memcpy(B.bytes + B.bytes_used, data, len);
	B.bytes_used += len;
	B.ev_tail = (B.ev_tail + 1) % QUEUE_EVENTS;
}

static int find_end(int node, uint64_t id)
{
	int i;

	for (i = 0; i < B.end_count; i++)
		if (B.ends[i].node == node && B.ends[i].id == id)
			return i;
	return -1;
}

static int io_send_datagram(void *ctx, const fm_addr *to, const uint8_t *buf,
                            size_t len)
{
	(void)ctx, (void)to, (void)buf, (void)len;
	return 0;
}

static void io_random(void *ctx, uint8_t *buf, size_t len)
{
	(void)ctx;
	randombytes_buf(buf, len);
}

static int io_stream_open(void *ctx, const fm_addr *to, uint64_t *id)
{
	int node = *(int *)ctx;
	int target = -1, i, a, b;

	for (i = 0; i < 2; i++)
		if (i != node && memcmp(&B.addrs[i], to, sizeof(*to)) == 0)
			target = i;
	if (target < 0 || B.end_count + 2 > ENDS_MAX)
		return -ECONNREFUSED;
	a = B.end_count++;
	b = B.end_count++;
	B.ends[a] = (struct end){node, b, 1, 0, ++B.next_stream_id};
	B.ends[b] = (struct end){target, a, 1, 1, ++B.next_stream_id};
	*id = B.ends[a].id;
	/* Like a TCP connect: the listener sees the connection first. */
	push(EV_OPENED, b, NULL, 0);
	push(EV_OPENED, a, NULL, 0);
	return 0;
}

static int io_stream_send(void *ctx, uint64_t id, const uint8_t *buf,
                          size_t len)
{
	int e = find_end(*(int *)ctx, id);

	if (e < 0 || !B.ends[e].open)
		return -ENOTCONN;
	push(EV_DATA, B.ends[e].other, buf, len);
	return 0;
}

static void io_stream_close(void *ctx, uint64_t id)
{
	int e = find_end(*(int *)ctx, id);

	if (e < 0 || !B.ends[e].open)
		return;
	B.ends[e].open = 0;
	if (B.ends[B.ends[e].other].open)
		push(EV_CLOSED, B.ends[e].other, NULL, 0);
}

static void make_node(int i, uint8_t seed_byte, const uint8_t fedkey[32])
{
	fm_node_config cfg;
	uint8_t seed[FM_SEED_BYTES];
	char text[32];
	fm_io io;

	memset(&cfg, 0, sizeof(cfg));
	memset(seed, seed_byte, sizeof(seed));
	if (fm_identity_from_seed(seed, &cfg.identity) != 0)
		fail("fm_identity_from_seed");
	memcpy(cfg.federation_key, fedkey, FM_FEDERATION_KEY_BYTES);
	snprintf(text, sizeof(text), "10.0.0.%d:7420", i + 1);
	if (fm_addr_parse(text, &B.addrs[i]) != 0)
		fail("fm_addr_parse");
	cfg.record_seq = 1;
	cfg.advertise[0] = B.addrs[i];
	cfg.advertise_count = 1;
	memset(&io, 0, sizeof(io));
	B.ctx_node[i] = i;
	io.ctx = &B.ctx_node[i];
	io.send_datagram = io_send_datagram;
	io.random_bytes = io_random;
	io.stream_open = io_stream_open;
	io.stream_send = io_stream_send;
	io.stream_close = io_stream_close;
	if (fm_node_new(&cfg, &io, B.now_ms, &B.nodes[i]) != 0)
		fail("fm_node_new");
}

static void deliver(const struct event *e)
{
	struct end *end = &B.ends[e->end];
	fm_node *node = B.nodes[end->node];

	if (e->type == EV_OPENED) {
		fm_node_stream_opened(node, B.now_ms, end->id,
		                      &B.addrs[B.ends[end->other].node],
		                      end->incoming);
	} else if (e->type == EV_DATA && end->open) {
		fm_node_stream_data(node, B.now_ms, end->id, B.bytes + e->off,
		                    e->len);
	} else if (e->type == EV_CLOSED && end->open) {
		end->open = 0;
		fm_node_stream_closed(node, B.now_ms, end->id, 0);
	}
}

static void drain(void)
{
	while (B.ev_head != B.ev_tail) {
		struct event e = B.events[B.ev_head];
		B.ev_head = (B.ev_head + 1) % QUEUE_EVENTS;
		deliver(&e);
	}
	B.bytes_used = 0;
}

static uint64_t completed(int node)
{
	fm_node_stats st;

	fm_node_get_stats(B.nodes[node], &st);
	return st.handshakes_completed;
}

/* One full handshake: dial, run the cores until quiet, close both ends. */
static void one_handshake(void)
{
	uint64_t before = completed(0);
	int i;

	B.now_ms++;
	if (fm_node_add_contact(B.nodes[0], B.now_ms, &B.addrs[1],
	                        FM_SRC_INVITE) != 0)
		fail("fm_node_add_contact");
	fm_node_tick(B.nodes[0], B.now_ms); /* the dial is due now */
	drain();
	if (completed(0) != before + 1) {
		fm_node_stats st;
		int k;
		fm_node_get_stats(B.nodes[0], &st);
		for (k = 0; k < FM_SESS_ERROR_COUNT; k++)
			if (st.session_errors[k] != 0)
				fprintf(stderr, "node A %s=%llu\n",
				        fm_session_error_name(
				                (enum fm_session_error)k),
				        (unsigned long long)
				                st.session_errors[k]);
		fail("a handshake did not complete");
	}
	/* The driver closes the connection: both cores see it go. */
	for (i = 0; i < B.end_count; i++) {
		if (!B.ends[i].open)
			continue;
		B.ends[i].open = 0;
		fm_node_stream_closed(B.nodes[B.ends[i].node], B.now_ms,
		                      B.ends[i].id, 0);
	}
	drain();
	B.end_count = 0;
}

/* The public-key operations a handshake is made of, timed alone (mean of
 * reps calls each), to show how close the handshake is to its floor. */
static void time_primitives(unsigned long reps)
{
	uint8_t sk[32], pk[32], out[32], esk[64], epk[32], sig[64], msg[64];
	double t, dh, base, verify;
	unsigned long n;
	int bad = 0;

	randombytes_buf(sk, sizeof(sk));
	randombytes_buf(msg, sizeof(msg));
	crypto_scalarmult_base(pk, sk);
	crypto_sign_keypair(epk, esk);
	crypto_sign_detached(sig, NULL, msg, sizeof(msg), esk);
	t = bench_now_s();
	for (n = 0; n < reps; n++)
		bad |= crypto_scalarmult(out, sk, pk);
	dh = (bench_now_s() - t) * 1e6 / (double)reps;
	t = bench_now_s();
	for (n = 0; n < reps; n++)
		bad |= crypto_scalarmult_base(out, sk);
	base = (bench_now_s() - t) * 1e6 / (double)reps;
	t = bench_now_s();
	for (n = 0; n < reps; n++)
		bad |= crypto_sign_verify_detached(sig, msg, sizeof(msg), epk);
	verify = (bench_now_s() - t) * 1e6 / (double)reps;
	if (bad != 0)
		fail("a primitive failed");
	printf("primitive_reps=%lu\n", reps);
	printf("x25519_us=%.2f\n", dh);
	printf("x25519_base_us=%.2f\n", base);
	printf("ed25519_verify_us=%.2f\n", verify);
	/* Per handshake, both sides together, as the core does it today:
	 * 6 DH (ee, es, se on each side), 4 base-point multiplications (each
	 * side's ephemeral and, in fm__noise_handshake_init, its static
	 * public key again), 4 verifications (each side checks the peer's
	 * key-binding signature and its signed record). */
	printf("floor_us_per_handshake=%.2f\n", 6 * dh + 4 * base + 4 * verify);
}

static unsigned long parse_count(const char *s, const char *opt)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
		fail(opt);
	return v;
}

int main(int argc, char **argv)
{
	static const uint8_t fedkey[32] = {0x66, 0x65, 0x64};
	unsigned long iterations = 2000, warmup = 50, reps = 2000, n;
	uint64_t a0, b0, a1, b1;
	double t0, t1, secs;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
			iterations = parse_count(argv[++i], "bad --iterations");
		else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc)
			warmup = parse_count(argv[++i], "bad --warmup");
		else if (strcmp(argv[i], "--primitive-reps") == 0 &&
		         i + 1 < argc)
			reps = parse_count(argv[++i], "bad --primitive-reps");
		else {
			fprintf(stderr,
			        "usage: %s [--iterations N (2000)] "
			        "[--warmup N (50)] [--primitive-reps N (2000, "
			        "0: skip)]\n",
			        argv[0]);
			return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0
			                                                   : 2;
		}
	}
	if (iterations == 0)
		fail("--iterations must be at least 1");
	if (sodium_init() < 0)
		fail("sodium_init");

	B.now_ms = 1000;
	make_node(0, 1, fedkey);
	make_node(1, 2, fedkey);

	bench_print_machine();
	printf("bench=handshake\n");
	printf("protocol=Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b\n");
	printf("iterations=%lu\n", iterations);
	printf("warmup=%lu\n", warmup);

	for (n = 0; n < warmup; n++)
		one_handshake();
	a0 = completed(0);
	b0 = completed(1);
	t0 = bench_now_s();
	for (n = 0; n < iterations; n++)
		one_handshake();
	t1 = bench_now_s();
	a1 = completed(0) - a0;
	b1 = completed(1) - b0;
	secs = t1 - t0;
	if (a1 != iterations || b1 != iterations)
		fail("handshake count mismatch between the nodes");

	printf("handshakes_completed_initiator=%llu\n", (unsigned long long)a1);
	printf("handshakes_completed_responder=%llu\n", (unsigned long long)b1);
	printf("wall_s=%.6f\n", secs);
	printf("handshakes_per_s=%.1f\n", (double)a1 / secs);
	printf("us_per_handshake=%.2f\n", secs * 1e6 / (double)a1);
	if (reps > 0)
		time_primitives(reps);

	fm_node_free(B.nodes[0]);
	fm_node_free(B.nodes[1]);
	return 0;
}
