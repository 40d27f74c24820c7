/* fedmesh-flood: hostile traffic for the integration tests (flood.sh,
 * limits.sh). A shell loop cannot send 100,000 datagrams in a few seconds
 * or hold hundreds of connections open and tell which of them the daemon
 * closed; this small program can. Loopback use only: it sends to the
 * address it is given and nowhere else.
 *
 *   fedmesh-flood udp HOST PORT COUNT SEED
 *       COUNT datagrams: random bytes of random length (some over the
 *       largest datagram the node accepts), and mutations of the beacon
 *       and DHT headers (valid-looking prefixes, garbage after them).
 *       Prints "sent N".
 *   fedmesh-flood tcp HOST PORT COUNT MODE HOLD_MS GAP_MS SEED
 *       opens COUNT connections GAP_MS apart; MODE garbage sends random
 *       bytes (and frame headers announcing large frames) on each, silent
 *       sends nothing, mixed alternates. Holds them HOLD_MS, then prints
 *       "open N closed N failed N" and one character per connection in
 *       order: 'o' still open, 'c' closed by the daemon, 'f' connect failed.
 *
 * FEDMESH_FLOOD_SOURCE=ADDR binds the sockets to that source address first
 * (e.g. 127.0.0.2), so a test can flood from addresses its daemons do not
 * use among themselves.
 *
 * Exit status 0 when it ran, 2 on a usage error, 1 on a local failure. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Largest datagram sent: over the node's FM_DATAGRAM_MAX_BYTES (1400) so
 * the oversize path is exercised too. */
#define FLOOD_DATAGRAM_MAX_BYTES 2048
/* Garbage written on one connection, at most. */
#define FLOOD_GARBAGE_MAX_BYTES 4096
/* Connections held at once, at most (file descriptors). */
#define FLOOD_CONNECTIONS_MAX 4000
/* A datagram the kernel would not queue is retried after this long. */
#define FLOOD_UDP_RETRY_MS 1

static uint64_t rng_state;

/* xorshift64*: reproducible from the seed, good enough for garbage. */
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static void fill_random(uint8_t *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)rng();
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int parse_u(const char *text, unsigned long max, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(text, &end, 10);
	return errno != 0 || end == text || *end != '\0' || *out > max ? -1 : 0;
}

static int make_addr(const char *host, const char *port_text,
                     struct sockaddr_in *sa)
{
	unsigned long port;

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1 ||
	    parse_u(port_text, 65535, &port) != 0 || port == 0)
		return -1;
	sa->sin_port = htons((uint16_t)port);
	return 0;
}

/* One hostile datagram: what kind is drawn from the generator. */
static size_t make_datagram(uint8_t *buf)
{
	size_t len;

	switch (rng() % 4) {
	case 0: /* anything, any length */
		len = (size_t)(rng() % (FLOOD_DATAGRAM_MAX_BYTES + 1));
		fill_random(buf, len);
		return len;
	case 1: /* a beacon's magic, then garbage */
		len = 4 + (size_t)(rng() % 400);
		fill_random(buf, len);
		memcpy(buf, "FMB1", 4);
		return len;
	case 2: /* tiny: 0 to 8 bytes */
		len = (size_t)(rng() % 9);
		fill_random(buf, len);
		return len;
	default: /* DHT-sized, one flipped byte from a fixed pattern */
		len = 64 + (size_t)(rng() % 1200);
		memset(buf, 0xa5, len);
		buf[rng() % len] ^= (uint8_t)(1 + rng() % 255);
		return len;
	}
}

/* Binds fd to $FEDMESH_FLOOD_SOURCE when it is set. */
static int bind_source(int fd)
{
	const char *src = getenv("FEDMESH_FLOOD_SOURCE");
	struct sockaddr_in sa;

	if (src == NULL || src[0] == '\0')
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (inet_pton(AF_INET, src, &sa.sin_addr) != 1) {
		fprintf(stderr, "FEDMESH_FLOOD_SOURCE: not an IPv4 address\n");
		return -1;
	}
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
		perror("bind");
		return -1;
	}
	return 0;
}

static int flood_udp(const struct sockaddr_in *sa, unsigned long count)
{
	uint8_t buf[FLOOD_DATAGRAM_MAX_BYTES];
	unsigned long sent = 0;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0) {
		perror("socket");
		return 1;
	}
	if (bind_source(fd) != 0) {
		close(fd);
		return 1;
	}
	while (sent < count) {
		size_t len = make_datagram(buf);
		ssize_t n;

		do {
			n = sendto(fd, buf, len, 0, (const struct sockaddr *)sa,
			           sizeof(*sa));
			/* The loopback queue is full: let the daemon read. */
			if (n < 0 && (errno == ENOBUFS || errno == EAGAIN))
				sleep_ms(FLOOD_UDP_RETRY_MS);
		} while (n < 0 && (errno == ENOBUFS || errno == EAGAIN ||
		                   errno == EINTR));
		/* ECONNREFUSED: an ICMP error from an earlier datagram (the
		 * daemon is gone); the test notices that by itself. */
		if (n < 0 && errno != ECONNREFUSED) {
			perror("sendto");
			close(fd);
			return 1;
		}
		sent++;
	}
	close(fd);
	printf("sent %lu\n", sent);
	return 0;
}

/* Writes garbage on a connection: random bytes, or a frame header that
 * announces a large frame and never delivers it. Errors are ignored: the
 * daemon may already have closed it. */
static void send_garbage(int fd)
{
	uint8_t buf[FLOOD_GARBAGE_MAX_BYTES];
	size_t len = 1 + (size_t)(rng() % sizeof(buf));

	fill_random(buf, len);
	if (rng() % 2 == 0) {
		buf[0] = 0xff;
		buf[1] = 0xff;
		len = len < 64 ? len : 64;
	}
	(void)send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Whether the daemon closed the connection: EOF or an error on read. */
static int peer_closed(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	uint8_t buf[256];
	ssize_t n;

	if (poll(&p, 1, 0) <= 0)
		return 0;
	if (p.revents & (POLLERR | POLLHUP))
		return 1;
	n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static int flood_tcp(const struct sockaddr_in *sa, unsigned long count,
                     const char *mode, unsigned long hold_ms,
                     unsigned long gap_ms)
{
	int *fds = calloc(count ? count : 1, sizeof(*fds));
	char *state = calloc(count + 1, 1);
	unsigned long i, open_n = 0, closed_n = 0, failed_n = 0;
	int rc = 1;

	if (fds == NULL || state == NULL)
		goto cleanup;
	for (i = 0; i < count; i++) {
		int garbage = strcmp(mode, "garbage") == 0 ||
		              (strcmp(mode, "mixed") == 0 && i % 2 == 0);

		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[i] < 0) {
			perror("socket");
			goto cleanup;
		}
		if (bind_source(fds[i]) != 0) {
			close(fds[i]);
			fds[i] = -1;
			goto cleanup;
		}
		if (connect(fds[i], (const struct sockaddr *)sa, sizeof(*sa)) !=
		    0) {
			close(fds[i]);
			fds[i] = -1;
			state[i] = 'f';
			continue;
		}
		if (garbage)
			send_garbage(fds[i]);
		if (gap_ms > 0)
			sleep_ms((long)gap_ms);
	}
	sleep_ms((long)hold_ms);
	for (i = 0; i < count; i++) {
		if (fds[i] < 0) {
			failed_n++;
			continue;
		}
		if (peer_closed(fds[i])) {
			state[i] = 'c';
			closed_n++;
		} else {
			state[i] = 'o';
			open_n++;
		}
		close(fds[i]);
	}
	printf("open %lu closed %lu failed %lu\n%s\n", open_n, closed_n,
	       failed_n, state);
	rc = 0;
cleanup:
	free(fds);
	free(state);
	return rc;
}

static int usage(void)
{
	fprintf(stderr, "usage: fedmesh-flood udp HOST PORT COUNT SEED\n"
	                "       fedmesh-flood tcp HOST PORT COUNT "
	                "garbage|silent|mixed HOLD_MS GAP_MS SEED\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa;
	unsigned long count, seed, hold_ms, gap_ms;

	if (argc == 6 && strcmp(argv[1], "udp") == 0) {
		if (make_addr(argv[2], argv[3], &sa) != 0 ||
		    parse_u(argv[4], 100000000UL, &count) != 0 ||
		    parse_u(argv[5], ~0UL, &seed) != 0)
			return usage();
		rng_state = seed | 1;
		return flood_udp(&sa, count);
	}
	if (argc == 9 && strcmp(argv[1], "tcp") == 0) {
		if (make_addr(argv[2], argv[3], &sa) != 0 ||
		    parse_u(argv[4], FLOOD_CONNECTIONS_MAX, &count) != 0 ||
		    (strcmp(argv[5], "garbage") != 0 &&
		     strcmp(argv[5], "silent") != 0 &&
		     strcmp(argv[5], "mixed") != 0) ||
		    parse_u(argv[6], 600000, &hold_ms) != 0 ||
		    parse_u(argv[7], 10000, &gap_ms) != 0 ||
		    parse_u(argv[8], ~0UL, &seed) != 0)
			return usage();
		rng_state = seed | 1;
		return flood_tcp(&sa, count, argv[5], hold_ms, gap_ms);
	}
	return usage();
}
