/* Session throughput against raw TCP, both on a loopback connection, as a
 * ratio measured in one run.
 *
 * One process, a real 127.0.0.1 TCP connection (listener bound to port 0),
 * a sender thread and a receiver (the main thread), default socket options
 * on both ends (as the daemon leaves them). Each mode gets a fresh
 * connection and moves the same number of payload bytes:
 *
 * raw      the sender write()s 64 KiB buffers; the receiver read()s into a
 *          64 KiB buffer (the daemon's read size) and discards.
 * session  first a real Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b handshake
 *          between two in-process handshake states (noise.h: init, three
 *          messages, split), then the session layer's per-frame work:
 *          the sender cuts the payload into 65,519-byte plaintexts (the
 *          Noise maximum), encrypts each with fm__noise_encrypt (implicit
 *          counter) into a frame behind its 2-byte big-endian length and
 *          write()s the frame; the receiver read()s 64 KiB at a time,
 *          reassembles frames into a frame buffer as fm_node_stream_data
 *          does, decrypts each in place with fm__noise_decrypt and fails
 *          the run on any authentication error or short frame.
 *
 * The clock runs from just before the sender starts to the receiver's EOF
 * (the sender shuts its side down after the last byte). MBps is payload
 * bytes / 10^6 / seconds; ratio = session_MBps / raw_MBps. CPU seconds
 * (getrusage, both threads) are printed per mode too.
 *
 * Build (from the repository root):
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -Isrc \
 *       bench/throughput.c src/core/[a-z]*.c -lsodium -lmsgpackc -lm \
 *       -lpthread -o /tmp/bench-throughput
 * Run: /tmp/bench-throughput [--bytes B] [--seconds D] [--aead-frames N]
 * Output: key=value lines (machine, parameters, results), then the AEAD
 * alone on one thread (no socket), for comparison. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/core.h"
#include "core/noise.h"
#include "machine.h"

#define RAW_CHUNK 65536
#define READ_BYTES 65536
#define FRAME_CAP (FM_FRAME_HEADER_BYTES + FM_FRAME_MAX_BYTES)

enum mode { MODE_RAW, MODE_SESSION };

struct sender {
	int fd;
	enum mode mode;
	uint64_t bytes;  /* payload to send; 0: until the deadline */
	double deadline; /* monotonic seconds; 0: none */
	fm__noise_cipher *cipher;
	uint64_t sent;   /* payload bytes sent */
	uint64_t frames; /* session frames sent */
	int error;
};

static void fail(const char *what)
{
	fprintf(stderr, "throughput bench: %s (%s)\n", what,
	        errno != 0 ? strerror(errno) : "no errno");
	exit(1);
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* How much of the next chunk to send, or 0 when done. */
static size_t next_chunk(const struct sender *s, size_t max)
{
	if (s->bytes > 0) {
		uint64_t left = s->bytes - s->sent;
		return left < max ? (size_t)left : max;
	}
	return bench_now_s() < s->deadline ? max : 0;
}

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	/* Raw writes all of it; the session sends its first 65,519 bytes. */
	static uint8_t plain[RAW_CHUNK];
	static uint8_t frame[FRAME_CAP];
	size_t n;

	randombytes_buf(plain, sizeof(plain));
	if (s->mode == MODE_RAW) {
		while ((n = next_chunk(s, RAW_CHUNK)) > 0) {
			if (write_all(s->fd, plain, n) != 0) {
				s->error = errno;
				break;
			}
			s->sent += n;
		}
	} else {
		while ((n = next_chunk(s, FM__NOISE_MAX_PLAINTEXT)) > 0) {
			size_t ct_len = 0;
			if (fm__noise_encrypt(s->cipher, NULL, 0, plain, n,
			                      frame + FM_FRAME_HEADER_BYTES,
			                      sizeof(frame) -
			                              FM_FRAME_HEADER_BYTES,
			                      &ct_len) != 0) {
				s->error = EBADMSG;
				break;
			}
			frame[0] = (uint8_t)(ct_len >> 8);
			frame[1] = (uint8_t)ct_len;
			if (write_all(s->fd, frame,
			              FM_FRAME_HEADER_BYTES + ct_len) != 0) {
				s->error = errno;
				break;
			}
			s->sent += n;
			s->frames++;
		}
	}
	shutdown(s->fd, SHUT_WR);
	return NULL;
}

/* A connected pair over loopback: *tx for the sender, *rx the receiver. */
static void tcp_pair(int *tx, int *rx)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int lfd;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 1) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &len) != 0)
		fail("listen on 127.0.0.1:0");
	*tx = socket(AF_INET, SOCK_STREAM, 0);
	if (*tx < 0 || connect(*tx, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		fail("connect");
	*rx = accept(lfd, NULL, NULL);
	if (*rx < 0)
		fail("accept");
	close(lfd);
}

/* A complete XXpsk3 handshake between two in-process parties, as the
 * session layer runs it (same protocol name, prologue and PSK position). */
static void handshake(fm__noise_cipher *i_send, fm__noise_cipher *r_recv)
{
	static fm__noise_handshake hi, hr;
	uint8_t is[32], rs[32], ie[32], re[32], psk[32];
	uint8_t msg[512], payload[512], hash_i[64], hash_r[64];
	fm__noise_cipher i_recv, r_send;
	size_t mlen = 0, plen = 0;
	const uint8_t *prologue = (const uint8_t *)FM__SESSION_PROLOGUE;
	size_t prologue_len = sizeof(FM__SESSION_PROLOGUE) - 1;

	randombytes_buf(is, sizeof(is));
	randombytes_buf(rs, sizeof(rs));
	randombytes_buf(ie, sizeof(ie));
	randombytes_buf(re, sizeof(re));
	randombytes_buf(psk, sizeof(psk));
	if (fm__noise_handshake_init(&hi, FM__SESSION_PROTOCOL, 1, prologue,
	                             prologue_len, is, NULL, psk, 1, ie) != 0 ||
	    fm__noise_handshake_init(&hr, FM__SESSION_PROTOCOL, 0, prologue,
	                             prologue_len, rs, NULL, psk, 1, re) != 0)
		fail("handshake init");
	/* -> e; <- e, ee, s, es; -> s, se, psk */
	if (fm__noise_write_message(&hi, NULL, 0, msg, sizeof(msg), &mlen) ||
	    fm__noise_read_message(&hr, msg, mlen, payload, sizeof(payload),
	                           &plen) ||
	    fm__noise_write_message(&hr, NULL, 0, msg, sizeof(msg), &mlen) ||
	    fm__noise_read_message(&hi, msg, mlen, payload, sizeof(payload),
	                           &plen) ||
	    fm__noise_write_message(&hi, NULL, 0, msg, sizeof(msg), &mlen) ||
	    fm__noise_read_message(&hr, msg, mlen, payload, sizeof(payload),
	                           &plen))
		fail("handshake messages");
	if (!fm__noise_handshake_done(&hi) || !fm__noise_handshake_done(&hr) ||
	    fm__noise_handshake_hash(&hi, hash_i) != 0 ||
	    fm__noise_handshake_hash(&hr, hash_r) != 0 ||
	    memcmp(hash_i, hash_r, sizeof(hash_i)) != 0)
		fail("handshake did not agree");
	if (fm__noise_split(&hi, i_send, &i_recv) != 0 ||
	    fm__noise_split(&hr, &r_send, r_recv) != 0)
		fail("split");
	fm__noise_wipe_handshake(&hi);
	fm__noise_wipe_handshake(&hr);
	fm__noise_wipe_cipher(&i_recv);
	fm__noise_wipe_cipher(&r_send);
}

struct result {
	double secs;
	double cpu;
	uint64_t payload;
	uint64_t wire;
	uint64_t frames;
};

static struct result run(enum mode mode, uint64_t bytes, double seconds)
{
	static uint8_t buf[READ_BYTES];
	static uint8_t rx[FRAME_CAP];
	fm__noise_cipher send, recv;
	struct sender s;
	struct result r;
	pthread_t th;
	size_t rx_len = 0;
	double t0, c0;
	int tx, rfd;

	memset(&s, 0, sizeof(s));
	memset(&r, 0, sizeof(r));
	if (mode == MODE_SESSION)
		handshake(&send, &recv);
	tcp_pair(&tx, &rfd);
	s.fd = tx;
	s.mode = mode;
	s.bytes = bytes;
	s.cipher = &send;
	c0 = cpu_s();
	t0 = bench_now_s();
	if (seconds > 0)
		s.deadline = t0 + seconds;
	if (pthread_create(&th, NULL, sender_main, &s) != 0)
		fail("pthread_create");
	for (;;) {
		ssize_t n = read(rfd, buf, sizeof(buf));
		size_t off = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail("read");
		if (n == 0)
			break;
		r.wire += (uint64_t)n;
		if (mode == MODE_RAW) {
			r.payload += (uint64_t)n;
			continue;
		}
		/* Reassembly as in fm_node_stream_data: header, then body. */
		while (off < (size_t)n) {
			size_t need = FM_FRAME_HEADER_BYTES, take, flen;
			size_t plain_len = 0;

			if (rx_len >= FM_FRAME_HEADER_BYTES)
				need += ((size_t)rx[0] << 8) | rx[1];
			take = need - rx_len;
			if (take > (size_t)n - off)
				take = (size_t)n - off;
			memcpy(rx + rx_len, buf + off, take);
			rx_len += take;
			off += take;
			if (rx_len < FM_FRAME_HEADER_BYTES)
				break;
			flen = ((size_t)rx[0] << 8) | rx[1];
			if (rx_len < FM_FRAME_HEADER_BYTES + flen)
				continue;
			if (fm__noise_decrypt(&recv, NULL, 0,
			                      rx + FM_FRAME_HEADER_BYTES, flen,
			                      rx + FM_FRAME_HEADER_BYTES, flen,
			                      &plain_len) != 0) {
				errno = 0;
				fail("a frame failed to decrypt");
			}
			r.payload += plain_len;
			r.frames++;
			rx_len = 0;
		}
	}
	r.secs = bench_now_s() - t0;
	pthread_join(th, NULL);
	r.cpu = cpu_s() - c0;
	close(tx);
	close(rfd);
	errno = s.error;
	if (s.error != 0)
		fail("sender");
	if (rx_len != 0 || r.payload != s.sent ||
	    (mode == MODE_SESSION && r.frames != s.frames)) {
		errno = 0;
		fail("receiver did not get exactly what was sent");
	}
	if (mode == MODE_SESSION) {
		fm__noise_wipe_cipher(&send);
		fm__noise_wipe_cipher(&recv);
	}
	return r;
}

/* The AEAD alone on one thread, no socket: how fast one core seals and
 * opens 65,519-byte plaintexts with the functions the session layer uses.
 * Decryption opens the last sealed frame again and again (with its nonce,
 * through fm__noise_decrypt_with_nonce) into a separate buffer. */
static void time_aead(unsigned long frames)
{
	static uint8_t plain[FM__NOISE_MAX_PLAINTEXT];
	static uint8_t out[FM__NOISE_MAX_PLAINTEXT];
	static uint8_t ct[FM__NOISE_MAX_MESSAGE];
	fm__noise_cipher send, recv;
	size_t ct_len = 0, out_len = 0;
	unsigned long n;
	double t, enc, dec;
	int bad = 0;

	randombytes_buf(plain, sizeof(plain));
	handshake(&send, &recv);
	t = bench_now_s();
	for (n = 0; n < frames; n++)
		bad |= fm__noise_encrypt(&send, NULL, 0, plain, sizeof(plain),
		                         ct, sizeof(ct), &ct_len);
	enc = bench_now_s() - t;
	t = bench_now_s();
	for (n = 0; n < frames; n++)
		bad |= fm__noise_decrypt_with_nonce(&recv, frames - 1, NULL, 0,
		                                    ct, ct_len, out,
		                                    sizeof(out), &out_len);
	dec = bench_now_s() - t;
	if (bad != 0 || out_len != sizeof(plain) ||
	    memcmp(out, plain, sizeof(plain)) != 0) {
		errno = 0;
		fail("AEAD self-check failed");
	}
	printf("aead_frames=%lu\n", frames);
	printf("aead_encrypt_MBps=%.1f\n",
	       (double)frames * FM__NOISE_MAX_PLAINTEXT / 1e6 / enc);
	printf("aead_decrypt_MBps=%.1f\n",
	       (double)frames * FM__NOISE_MAX_PLAINTEXT / 1e6 / dec);
	fm__noise_wipe_cipher(&send);
	fm__noise_wipe_cipher(&recv);
}

static void print_result(const char *name, const struct result *r)
{
	printf("%s_payload_bytes=%llu\n", name, (unsigned long long)r->payload);
	printf("%s_wire_bytes=%llu\n", name, (unsigned long long)r->wire);
	if (r->frames > 0)
		printf("%s_frames=%llu\n", name, (unsigned long long)r->frames);
	printf("%s_s=%.6f\n", name, r->secs);
	printf("%s_cpu_s=%.3f\n", name, r->cpu);
	printf("%s_MBps=%.1f\n", name, (double)r->payload / 1e6 / r->secs);
}

int main(int argc, char **argv)
{
	uint64_t bytes = 2ULL << 30;
	double seconds = 0;
	unsigned long aead_frames = 4096;
	struct result raw, sess;
	int i;

	for (i = 1; i < argc; i++) {
		char *end = NULL;
		errno = 0;
		if (strcmp(argv[i], "--bytes") == 0 && i + 1 < argc) {
			bytes = strtoull(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || argv[i][0] == '-')
				fail("bad --bytes");
		} else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
			seconds = strtod(argv[++i], &end);
			if (errno != 0 || *end != '\0' || seconds <= 0)
				fail("bad --seconds");
			bytes = 0;
		} else if (strcmp(argv[i], "--aead-frames") == 0 &&
		           i + 1 < argc) {
			aead_frames = strtoul(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || argv[i][0] == '-')
				fail("bad --aead-frames");
		} else {
			fprintf(stderr,
			        "usage: %s [--bytes B (2147483648)] "
			        "[--seconds D (instead of --bytes)] "
			        "[--aead-frames N (4096, 0: skip)]\n",
			        argv[0]);
			return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0
			                                                   : 2;
		}
	}
	if (bytes == 0 && seconds <= 0) {
		errno = 0;
		fail("--bytes must be at least 1");
	}
	if (sodium_init() < 0)
		fail("sodium_init");

	bench_print_machine();
	printf("bench=throughput\n");
	printf("protocol=Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b\n");
	printf("transport=tcp 127.0.0.1\n");
	if (bytes > 0)
		printf("bytes=%llu\n", (unsigned long long)bytes);
	else
		printf("seconds=%.3f\n", seconds);
	printf("raw_write_bytes=%d\n", RAW_CHUNK);
	printf("session_plaintext_bytes=%d\n", FM__NOISE_MAX_PLAINTEXT);
	printf("read_bytes=%d\n", READ_BYTES);
	fflush(stdout);

	raw = run(MODE_RAW, bytes, seconds);
	print_result("raw", &raw);
	fflush(stdout);
	sess = run(MODE_SESSION, bytes, seconds);
	print_result("session", &sess);
	printf("ratio=%.3f\n", ((double)sess.payload / sess.secs) /
	                               ((double)raw.payload / raw.secs));
	if (aead_frames > 0)
		time_aead(aead_frames);
	return 0;
}
