/* The network half of the fedmeshd driver. It owns the peer port (one UDP
 * socket and one TCP listener on the same address and port), a table of
 * TCP streams, and the timer that drives fm_node_tick(); it implements the
 * core's fm_io on top of libuv. No protocol decisions are made here: bytes
 * go to the core as they arrive and leave when the core asks. */
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <net/if.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dht_api.h"
#include "disc.h"
#include "jobs.h"
#include "keyfile.h"
#include "log.h"
#include "net.h"

/* Slots of the stream table: the largest [limits] connections_max. */
#define FMD_NET_STREAMS_MAX FMD_LIMIT_CONNECTIONS_MAX
/* Sources whose connection rate is tracked ([limits]
 * source_handshakes_per_s); when full, the least recently seen entry is
 * reused, so a flood from many addresses costs a fixed table. */
#define FMD_NET_RATE_SOURCES 256
/* A source may connect this many seconds' worth of its rate at once. */
#define FMD_NET_RATE_BURST_S 2
/* A refused connection is logged at most this often (with a count), so
 * a flood does not become a flood of log lines. */
#define FMD_NET_REFUSE_LOG_MS 10000
/* Receive buffer: larger than any datagram we accept so that an oversize
 * one is seen whole and counted instead of silently truncated. */
#define FMD_NET_UDP_BUF_BYTES 65536
#define FMD_NET_TCP_READ_BYTES 65536
#define FMD_NET_TCP_BACKLOG 128
/* Attempts at finding one free port for both UDP and TCP when asked for
 * port 0. */
#define FMD_NET_PORT_TRIES 16
/* Peers read back from the store at start; the core's own table is
 * smaller, so rows past this could not be restored anyway. */
#define FMD_NET_RESTORE_MAX 4096
/* Path of a file in the state directory. */
#define FMD_NET_PATH_MAX (FMD_PATH_MAX + 32)
/* At shutdown, how long the CLOSE frames fm_node_shutdown() queued may
 * take to leave before the sockets close anyway. The mDNS goodbyes need
 * no wait: they are sent synchronously. */
#define FMD_NET_LINGER_MS 500

struct stream {
	uv_tcp_t tcp;
	struct fmd_net *net;
	uint64_t id;
	int slot;
	int closing;
	uint32_t writes;        /* uv_write requests not completed yet */
	int close_when_written; /* the core closed it with writes pending */
	/* Closed here because the peer does not read ([limits]
	 * peer_queue_max): the core is told from the close callback, not
	 * from inside the fm_io call that found it. */
	int overflowed;
};

/* One source address's token bucket, in thousandths of a connection. */
struct rate_source {
	uint8_t key[16]; /* IPv4 address, or an IPv6 /64 */
	uint8_t used;
	uint64_t tokens_milli;
	uint64_t updated_ms;
};

struct fmd_net {
	fmd *d;
	uv_udp_t udp;
	uv_tcp_t listener;
	uv_timer_t timer;
	int udp_open, listener_open, timer_open;
	int stopping;  /* fmd_net_stop() was called */
	int lingering; /* fmd_net_shutdown() was called */
	uint64_t writes_pending;
	int handles_closing; /* close callbacks still to run */
	uint8_t udp_buf[FMD_NET_UDP_BUF_BYTES];
	int udp_buf_busy;
	struct stream *streams[FMD_NET_STREAMS_MAX];
	uint32_t stream_generation;
	char tcp_buf[FMD_NET_TCP_READ_BYTES];
	int tcp_buf_busy;
	struct rate_source rate[FMD_NET_RATE_SOURCES];
	uint64_t refused_logged_ms; /* last "connection refused" log line */
	uint64_t refused_unlogged;  /* refusals since that line */
};

/* Stream IDs carry their slot in the low 16 bits and a generation above,
 * so a stale ID held by the core never reaches a reused slot. */
static uint64_t make_stream_id(struct fmd_net *net, int slot)
{
	net->stream_generation++;
	return ((uint64_t)net->stream_generation << 16) | (uint64_t)slot;
}

static struct stream *find_stream(struct fmd_net *net, uint64_t id)
{
	uint64_t slot = id & 0xffff;
	struct stream *s;

	if (slot >= FMD_NET_STREAMS_MAX)
		return NULL;
	s = net->streams[slot];
	return (s != NULL && s->id == id && !s->closing) ? s : NULL;
}

static void sockaddr_to_fm(const struct sockaddr *sa, fm_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		out->family = FM_AF_INET;
		memcpy(out->ip, &in->sin_addr, 4);
		out->port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		out->family = FM_AF_INET6;
		memcpy(out->ip, &in6->sin6_addr, 16);
		out->port = ntohs(in6->sin6_port);
	}
}

static int fm_to_sockaddr(const fm_addr *a, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == FM_AF_INET) {
		struct sockaddr_in *in = (void *)ss;
		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, a->ip, 4);
		in->sin_port = htons(a->port);
		return 0;
	}
	if (a->family == FM_AF_INET6) {
		struct sockaddr_in6 *in6 = (void *)ss;
		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, a->ip, 16);
		in6->sin6_port = htons(a->port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

static void on_timer(uv_timer_t *timer);

/* After every event the core may have new timers: run what is due and
 * re-arm the one libuv timer for the next deadline (or none). */
static void reschedule(struct fmd_net *net)
{
	uint64_t now;
	uint64_t next;

	/* After fm_node_shutdown() the timer counts down the linger. */
	if (net->lingering || net->d->node == NULL)
		return;
	now = fmd_now_ms(net->d);
	next = fm_node_tick(net->d->node, now);

	if (next == FM_DEADLINE_NONE) {
		uv_timer_stop(&net->timer);
		return;
	}
	uv_timer_start(&net->timer, on_timer, next > now ? next - now : 0, 0);
}

/* ---- fm_io ------------------------------------------------------------ */

static int io_send_datagram(void *ctx, const fm_addr *to, const uint8_t *buf,
                            size_t len)
{
	struct fmd_net *net = ctx;
	struct sockaddr_storage ss;
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
	int rc;

	if (len > FM_DATAGRAM_MAX_BYTES || fm_to_sockaddr(to, &ss) != 0)
		return -EINVAL;
	rc = uv_udp_try_send(&net->udp, &b, 1, (const struct sockaddr *)&ss);
	if (rc < 0) {
		net->d->counters.udp_send_errors++;
		return rc;
	}
	return 0;
}

static void on_stream_closed(uv_handle_t *h)
{
	struct stream *s = h->data;
	struct fmd_net *net = s->net;

	/* net is NULL once fmd_net_stop() detached the stream. */
	if (net != NULL) {
		net->streams[s->slot] = NULL;
		if (s->overflowed && net->d->node != NULL && !net->lingering) {
			fm_node_stream_closed(net->d->node, fmd_now_ms(net->d),
			                      s->id, -ENOBUFS);
			reschedule(net);
		}
	}
	free(s);
}

static void close_stream(struct stream *s, int error, int notify)
{
	struct fmd_net *net = s->net;

	if (s->closing)
		return;
	s->closing = 1;
	/* uv_close() would cancel queued writes: when the core closes a
	 * stream right after its last frame (a CLOSE), the frame leaves
	 * first. */
	if (!notify && error == 0 && s->writes > 0)
		s->close_when_written = 1;
	else
		uv_close((uv_handle_t *)&s->tcp, on_stream_closed);
	if (notify && net->d->node != NULL) {
		fm_node_stream_closed(net->d->node, fmd_now_ms(net->d), s->id,
		                      error);
		reschedule(net);
	}
}

static struct stream *new_stream(struct fmd_net *net)
{
	struct stream *s;
	int slot;

	for (slot = 0; slot < FMD_NET_STREAMS_MAX; slot++)
		if (net->streams[slot] == NULL)
			break;
	if (slot == FMD_NET_STREAMS_MAX)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	if (uv_tcp_init(net->d->loop, &s->tcp) != 0) {
		free(s);
		return NULL;
	}
	/* Frames are small and each is worth sending now: without this,
	 * Nagle holds a job's next message for the peer's delayed ACK
	 * (tens of ms a job). libuv applies it once the socket exists. */
	(void)uv_tcp_nodelay(&s->tcp, 1);
	s->net = net;
	s->slot = slot;
	s->id = make_stream_id(net, slot);
	s->tcp.data = s;
	net->streams[slot] = s;
	return s;
}

static void on_tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct stream *s = h->data;

	(void)suggested;
	*buf = uv_buf_init(s->net->tcp_buf, sizeof(s->net->tcp_buf));
}

static void on_tcp_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
	struct stream *s = h->data;

	/* Shutting down: the node has said goodbye and hears nothing more. */
	if (s->net == NULL || s->net->lingering)
		return;
	if (nread < 0) {
		/* A stream the core closed already, waiting for its last
		 * writes: the peer is gone, so they never will leave. */
		if (s->close_when_written) {
			s->close_when_written = 0;
			if (!uv_is_closing((uv_handle_t *)&s->tcp))
				uv_close((uv_handle_t *)&s->tcp,
				         on_stream_closed);
			return;
		}
		close_stream(s, nread == UV_EOF ? 0 : (int)nread, 1);
		return;
	}
	if (nread > 0 && !s->closing) {
		fm_node_stream_data(s->net->d->node, fmd_now_ms(s->net->d),
		                    s->id, (const uint8_t *)buf->base,
		                    (size_t)nread);
		reschedule(s->net);
	}
}

static void on_connected(uv_connect_t *req, int status)
{
	struct stream *s = req->data;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	fm_addr remote;

	free(req);
	if (s->closing)
		return;
	if (status != 0) {
		close_stream(s, status, 1);
		return;
	}
	memset(&remote, 0, sizeof(remote));
	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0)
		sockaddr_to_fm((struct sockaddr *)&ss, &remote);
	uv_read_start((uv_stream_t *)&s->tcp, on_tcp_alloc, on_tcp_read);
	fm_node_stream_opened(s->net->d->node, fmd_now_ms(s->net->d), s->id,
	                      &remote, 0);
	reschedule(s->net);
}

static int io_stream_open(void *ctx, const fm_addr *to, uint64_t *stream_id)
{
	struct fmd_net *net = ctx;
	struct sockaddr_storage ss;
	uv_connect_t *req;
	struct stream *s;
	int rc;

	if (fm_to_sockaddr(to, &ss) != 0)
		return -EINVAL;
	req = malloc(sizeof(*req));
	if (req == NULL)
		return -ENOMEM;
	s = new_stream(net);
	if (s == NULL) {
		free(req);
		return -EMFILE;
	}
	req->data = s;
	rc = uv_tcp_connect(req, &s->tcp, (const struct sockaddr *)&ss,
	                    on_connected);
	if (rc != 0) {
		free(req);
		close_stream(s, rc, 0);
		return rc;
	}
	*stream_id = s->id;
	return 0;
}

struct write_req {
	uv_write_t req;
	char data[];
};

static void linger_check(struct fmd_net *net);

static void on_written(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct stream *s = req->handle->data;
	struct fmd_net *net = s->net; /* NULL once fmd_net_stop() ran */

	free(w);
	s->writes--;
	if (net != NULL)
		net->writes_pending--;
	if (s->close_when_written && s->writes == 0) {
		s->close_when_written = 0;
		if (!uv_is_closing((uv_handle_t *)&s->tcp))
			uv_close((uv_handle_t *)&s->tcp, on_stream_closed);
	} else if (status != 0 && !s->closing) {
		close_stream(s, status, 1);
	}
	if (net != NULL)
		linger_check(net);
}

static int io_stream_send(void *ctx, uint64_t stream_id, const uint8_t *buf,
                          size_t len)
{
	struct fmd_net *net = ctx;
	struct stream *s = find_stream(net, stream_id);
	struct write_req *w;
	uv_buf_t b;
	int rc;

	if (s == NULL)
		return -ENOTCONN;
	/* What the kernel did not take waits in libuv's queue; a peer that
	 * stops reading would make it grow without end. */
	if (uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) + len >
	    net->d->cfg.limits.peer_queue_max_bytes) {
		net->d->counters.peer_queue_overflows++;
		fmd_log(FM_LOG_WARN, "net",
		        "closing a connection whose peer does not read: over "
		        "%" PRIu64 " bytes queued ([limits] peer_queue_max)",
		        net->d->cfg.limits.peer_queue_max_bytes);
		s->overflowed = 1;
		s->closing = 1;
		uv_close((uv_handle_t *)&s->tcp, on_stream_closed);
		return -ENOBUFS;
	}
	w = malloc(sizeof(*w) + len);
	if (w == NULL)
		return -ENOMEM;
	memcpy(w->data, buf, len);
	b = uv_buf_init(w->data, (unsigned)len);
	rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_written);
	if (rc != 0) {
		free(w);
		return rc;
	}
	s->writes++;
	net->writes_pending++;
	return 0;
}

static void io_stream_close(void *ctx, uint64_t stream_id)
{
	struct stream *s = find_stream(ctx, stream_id);

	/* The core asked for it, so it is not told again. */
	if (s != NULL)
		close_stream(s, 0, 0);
}

static void io_random_bytes(void *ctx, uint8_t *buf, size_t len)
{
	(void)ctx;
	randombytes_buf(buf, len);
}

static int io_persist(void *ctx, const char *key, const uint8_t *val,
                      size_t len)
{
	struct fmd_net *net = ctx;
	char name[128];
	char *hex;
	int rc;

	if (snprintf(name, sizeof(name), "core/%s", key) >= (int)sizeof(name))
		return -ENAMETOOLONG;
	hex = malloc(2 * len + 1);
	if (hex == NULL)
		return -ENOMEM;
	fm_hex_encode(val, len, hex);
	rc = fmd_store_setting_set(net->d->store, name, hex);
	free(hex);
	return rc;
}

static void io_log(void *ctx, enum fm_log_level level, const char *subsystem,
                   const char *msg)
{
	(void)ctx;
	fmd_log(level, subsystem, "%s", msg);
}

static void io_peer_changed(void *ctx, const fm_peer_info *peer, int forgotten)
{
	struct fmd_net *net = ctx;
	char id[FM_NODE_ID_HEX_LEN + 1];

	/* Timestamps of state changes, for debugging (and bench/discovery.sh,
	 * which times discovery from them). */
	if (net->d->cfg.log_level >= FM_LOG_DEBUG) {
		fm_hex_encode(peer->node_id, FM_NODE_ID_BYTES, id);
		fmd_log_ids(
		        FM_LOG_DEBUG, "net", id, NULL,
		        "peer %.16s %s (source %s)", id,
		        forgotten ? "forgotten"
		                  : fm_peer_state_name(
		                            (enum fm_peer_state)peer->state),
		        fm_addr_source_name((enum fm_addr_source)peer->source));
	}
	fmd_peers_save(net->d, peer, forgotten);
}

static int io_send_mdns(void *ctx, uint32_t ifindex, const fm_addr *to,
                        const uint8_t *buf, size_t len)
{
	struct fmd_net *net = ctx;

	return fmd_disc_send_mdns(net->d->disc, ifindex, to, buf, len);
}

/* ---- sockets --------------------------------------------------------- */

static void on_timer(uv_timer_t *timer)
{
	reschedule(timer->data);
}

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct fmd_net *net = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)net->udp_buf, sizeof(net->udp_buf));
}

static void on_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
	struct fmd_net *net = h->data;
	fm_addr addr;
	size_t len = nread > 0 ? (size_t)nread : 0;

	if (nread < 0 || from == NULL || net->lingering)
		return;
	/* A datagram cut by the kernel is oversize by definition. */
	if (flags & UV_UDP_PARTIAL)
		len = FMD_NET_UDP_BUF_BYTES + 1;
	sockaddr_to_fm(from, &addr);
	fm_node_recv_datagram(net->d->node, fmd_now_ms(net->d), &addr,
	                      (const uint8_t *)buf->base, len);
	reschedule(net);
}

static int streams_open(const struct fmd_net *net)
{
	int i, n = 0;

	for (i = 0; i < FMD_NET_STREAMS_MAX; i++)
		n += net->streams[i] != NULL;
	return n;
}

/* Takes one connection from the source's token bucket ([limits]
 * source_handshakes_per_s, burst FMD_NET_RATE_BURST_S seconds' worth).
 * Returns 0 when the source may connect, -EAGAIN when it is over. */
static int rate_take(struct fmd_net *net, const fm_addr *from, uint64_t now_ms)
{
	const uint64_t rate = net->d->cfg.limits.source_handshakes_per_s;
	const uint64_t cap_milli = rate * FMD_NET_RATE_BURST_S * 1000;
	struct rate_source *r = NULL, *lru = &net->rate[0];
	uint8_t key[16];
	size_t i;

	memset(key, 0, sizeof(key));
	/* An IPv6 host usually holds a whole /64: count it as one source. */
	memcpy(key, from->ip, from->family == FM_AF_INET6 ? 8 : 4);
	key[15] = (uint8_t)from->family;
	for (i = 0; i < FMD_NET_RATE_SOURCES; i++) {
		struct rate_source *e = &net->rate[i];
		if (e->used && memcmp(e->key, key, sizeof(key)) == 0) {
			r = e;
			break;
		}
		if (!e->used || (lru->used && e->updated_ms < lru->updated_ms))
			lru = e;
	}
	if (r == NULL) {
		r = lru;
		memcpy(r->key, key, sizeof(key));
		r->used = 1;
		r->tokens_milli = cap_milli;
		r->updated_ms = now_ms;
	}
	/* Refill: rate tokens a second, i.e. rate thousandths a ms. */
	if (now_ms > r->updated_ms) {
		r->tokens_milli += (now_ms - r->updated_ms) * rate;
		if (r->tokens_milli > cap_milli)
			r->tokens_milli = cap_milli;
	}
	r->updated_ms = now_ms;
	if (r->tokens_milli < 1000)
		return -EAGAIN;
	r->tokens_milli -= 1000;
	return 0;
}

/* Accepts a connection only to close it, so the backlog does not fill
 * with it; counts and (rate-limited) logs why. */
static void refuse_connection(struct fmd_net *net, uv_stream_t *listener,
                              uv_tcp_t *accepted, const char *why)
{
	uint64_t now = fmd_now_ms(net->d);

	if (accepted == NULL) {
		uv_tcp_t *tmp = malloc(sizeof(*tmp));
		if (tmp == NULL)
			return;
		if (uv_tcp_init(net->d->loop, tmp) != 0) {
			free(tmp);
			return;
		}
		/* Initialised: it must go through uv_close() either way. */
		(void)uv_accept(listener, (uv_stream_t *)tmp);
		uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
	}
	net->refused_unlogged++;
	if (net->refused_logged_ms == 0 ||
	    now - net->refused_logged_ms >= FMD_NET_REFUSE_LOG_MS) {
		fmd_log(FM_LOG_WARN, "net",
		        "connection refused: %s (%" PRIu64
		        " refused since the last such line)",
		        why, net->refused_unlogged);
		net->refused_logged_ms = now;
		net->refused_unlogged = 0;
	}
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct fmd_net *net = listener->data;
	const fmd_limits_config *lim = &net->d->cfg.limits;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	struct stream *s;
	fm_addr remote;

	if (status != 0)
		return;
	if (streams_open(net) >= (int)lim->connections_max ||
	    (s = new_stream(net)) == NULL) {
		net->d->counters.connections_refused[FMD_REFUSED_LIMIT]++;
		refuse_connection(net, listener, NULL,
		                  "[limits] connections_max reached");
		return;
	}
	if (uv_accept(listener, (uv_stream_t *)&s->tcp) != 0) {
		close_stream(s, 0, 0);
		return;
	}
	memset(&remote, 0, sizeof(remote));
	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0)
		sockaddr_to_fm((struct sockaddr *)&ss, &remote);
	if (rate_take(net, &remote, fmd_now_ms(net->d)) != 0) {
		net->d->counters.connections_refused[FMD_REFUSED_RATE]++;
		close_stream(s, 0, 0);
		refuse_connection(net, listener, &s->tcp,
		                  "[limits] source_handshakes_per_s exceeded");
		return;
	}
	uv_read_start((uv_stream_t *)&s->tcp, on_tcp_alloc, on_tcp_read);
	fm_node_stream_opened(net->d->node, fmd_now_ms(net->d), s->id, &remote,
	                      1);
	reschedule(net);
}

static void bound_name(void *handle, int is_udp, char *out, size_t out_len)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	fm_addr a;
	int rc;

	rc = is_udp ? uv_udp_getsockname(handle, (struct sockaddr *)&ss, &len)
	            : uv_tcp_getsockname(handle, (struct sockaddr *)&ss, &len);
	if (rc != 0 || (sockaddr_to_fm((struct sockaddr *)&ss, &a),
	                fm_addr_format(&a, out, out_len)) != 0)
		snprintf(out, out_len, "?");
}

/* net's handles live inside net, so net may only be freed once libuv has
 * finished closing every one of them, in whatever order it does that. */
static void on_handle_closed(uv_handle_t *h)
{
	struct fmd_net *net = h->data;

	net->handles_closing--;
	if (net->stopping && net->handles_closing == 0)
		free(net);
}

static void close_handle(uv_handle_t *h, int *open_flag)
{
	struct fmd_net *net = h->data;

	if (*open_flag) {
		net->handles_closing++;
		uv_close(h, on_handle_closed);
		*open_flag = 0;
	}
}

/* Binds a plain socket; returns the fd or a negative errno. */
static int bind_socket(int type, const struct sockaddr_storage *ss)
{
	socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                          : sizeof(struct sockaddr_in);
	int one = 1;
	int fd;

	fd = socket(ss->ss_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* TCP: rebind at once after a restart, as libuv itself would. */
	if (type == SOCK_STREAM)
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		                 sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static uint16_t fd_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	fm_addr a;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	sockaddr_to_fm((struct sockaddr *)&ss, &a);
	return a.port;
}

/* Binds UDP then TCP to the same port. With port 0 the kernel picks the
 * UDP port and TCP may find it taken; then both are retried. Plain sockets
 * are used for the probing because a libuv handle cannot be reused until
 * its close callback has run. */
static int bind_both(struct fmd_net *net, const fm_addr *want, char *err,
                     size_t err_len)
{
	struct sockaddr_storage ss;
	fm_addr a = *want;
	int udp_fd = -1, tcp_fd = -1;
	int tries;
	int rc = 0;

	for (tries = 0; tries < FMD_NET_PORT_TRIES; tries++) {
		a.port = want->port;
		fm_to_sockaddr(&a, &ss);
		udp_fd = bind_socket(SOCK_DGRAM, &ss);
		if (udp_fd < 0) {
			snprintf(err, err_len, "cannot bind UDP %s: %s",
			         net->d->cfg.listen, strerror(-udp_fd));
			return udp_fd;
		}
		a.port = fd_port(udp_fd);
		fm_to_sockaddr(&a, &ss);
		tcp_fd = bind_socket(SOCK_STREAM, &ss);
		if (tcp_fd >= 0)
			break;
		rc = tcp_fd;
		close(udp_fd);
		udp_fd = -1;
		if (want->port != 0 || rc != -EADDRINUSE)
			break;
	}
	if (tcp_fd < 0) {
		snprintf(err, err_len, "cannot bind TCP %s: %s",
		         net->d->cfg.listen, strerror(-rc));
		return rc;
	}
	uv_udp_init(net->d->loop, &net->udp);
	net->udp.data = net;
	net->udp_open = 1;
	uv_tcp_init(net->d->loop, &net->listener);
	net->listener.data = net;
	net->listener_open = 1;
	rc = uv_udp_open(&net->udp, udp_fd);
	if (rc != 0) {
		close(udp_fd);
		close(tcp_fd);
		goto fail;
	}
	rc = uv_tcp_open(&net->listener, tcp_fd);
	if (rc != 0) {
		close(tcp_fd);
		goto fail;
	}
	rc = uv_listen((uv_stream_t *)&net->listener, FMD_NET_TCP_BACKLOG,
	               on_connection);
	if (rc == 0)
		return 0;
fail:
	snprintf(err, err_len, "cannot listen on %s: %s", net->d->cfg.listen,
	         uv_strerror(rc));
	return rc;
}

/* The TCP listener's address: what peers dial. */
static int bound_addr(struct fmd_net *net, fm_addr *out)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	int rc;

	rc = uv_tcp_getsockname(&net->listener, (struct sockaddr *)&ss, &len);
	if (rc != 0)
		return rc;
	sockaddr_to_fm((struct sockaddr *)&ss, out);
	return out->family == FM_AF_NONE ? -EAFNOSUPPORT : 0;
}

static void log_advertised(const fm_addr *addrs, size_t count)
{
	char list[FM_RECORD_ADDRS_MAX * (FM_ADDR_STR_MAX + 2)] = "";
	char one[FM_ADDR_STR_MAX];
	size_t i;

	for (i = 0; i < count; i++) {
		if (fm_addr_format(&addrs[i], one, sizeof(one)) != 0)
			continue;
		if (list[0] != '\0')
			strcat(list, ", ");
		strcat(list, one);
	}
	fmd_log(FM_LOG_INFO, "net", "advertising %s",
	        list[0] != '\0' ? list : "no address");
}

void fmd_net_kick(fmd *d)
{
	if (d != NULL && d->net != NULL && d->node != NULL)
		reschedule(d->net);
}

fmd *fmd_net_daemon(void *io_ctx)
{
	return ((struct fmd_net *)io_ctx)->d;
}

/* ---- advertised addresses ------------------------------------------------ */

/* Interfaces whose addresses mean nothing to another machine: container
 * and VM bridges and their veth ends. */
static int interface_is_virtual(const char *name)
{
	static const char *const prefixes[] = {"docker", "veth", "br-",
	                                       "virbr"};
	size_t i;

	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
			return 1;
	return 0;
}

/* Link-local addresses need a scope (IPv6) or only reach the local link
 * by accident (IPv4 169.254/16): not worth advertising. */
static int addr_is_link_local(const fm_addr *a)
{
	if (a->family == FM_AF_INET)
		return a->ip[0] == 169 && a->ip[1] == 254;
	if (a->family == FM_AF_INET6)
		return a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80;
	return 0;
}

static int addr_list_add(fm_addr *out, size_t max, size_t *count,
                         const fm_addr *a)
{
	size_t i;

	for (i = 0; i < *count; i++)
		if (memcmp(&out[i], a, sizeof(*a)) == 0)
			return 0;
	if (*count >= max)
		return -ENOSPC;
	out[(*count)++] = *a;
	return 0;
}

/* The up, non-loopback interfaces' addresses with the bound port. An IPv6
 * wildcard socket also accepts IPv4 (Linux's default bindv6only = 0), so
 * it advertises both families. */
static void interface_addrs(const fm_addr *bound, fm_addr *out, size_t max,
                            size_t *count)
{
	struct ifaddrs *list = NULL;
	struct ifaddrs *ifa;
	fm_addr a;

	if (getifaddrs(&list) != 0)
		return;
	for (ifa = list; ifa != NULL; ifa = ifa->ifa_next) {
		if (ifa->ifa_addr == NULL || !(ifa->ifa_flags & IFF_UP) ||
		    (ifa->ifa_flags & IFF_LOOPBACK) ||
		    interface_is_virtual(ifa->ifa_name))
			continue;
		if (ifa->ifa_addr->sa_family == AF_INET6 &&
		    bound->family != FM_AF_INET6)
			continue;
		if (ifa->ifa_addr->sa_family != AF_INET &&
		    ifa->ifa_addr->sa_family != AF_INET6)
			continue;
		sockaddr_to_fm(ifa->ifa_addr, &a);
		if (addr_is_link_local(&a))
			continue;
		a.port = bound->port;
		if (addr_list_add(out, max, count, &a) != 0)
			break;
	}
	freeifaddrs(list);
}

int fmd_advertise_addrs(const fmd *d, const fm_addr *bound, fm_addr *out,
                        size_t max, size_t *count)
{
	fm_addr a;
	size_t i;

	*count = 0;
	if (d->cfg.advertise_count > 0) {
		for (i = 0; i < d->cfg.advertise_count && *count < max; i++) {
			if (fm_addr_parse(d->cfg.advertise[i], &a) != 0)
				return -EINVAL;
			addr_list_add(out, max, count, &a);
		}
		return 0;
	}
	if (!fmd_addr_is_wildcard(bound)) {
		out[(*count)++] = *bound;
		return 0;
	}
	interface_addrs(bound, out, max, count);
	if (*count > 0)
		return 0;
	/* No network at all: this host's own other daemons can still use
	 * the invite. */
	memset(&a, 0, sizeof(a));
	a.family = bound->family;
	a.port = bound->port;
	if (a.family == FM_AF_INET) {
		a.ip[0] = 127;
		a.ip[3] = 1;
	} else {
		a.ip[15] = 1;
	}
	out[(*count)++] = a;
	return 0;
}

/* ---- peer persistence ------------------------------------------------------
 */

/* The node's monotonic clock to Unix ms and back; 0 means "never" both
 * ways, and a time that maps to or before the clock's origin is "never"
 * too. */
int64_t fmd_unix_from_node_ms(const fmd *d, uint64_t node_ms)
{
	if (node_ms == 0)
		return 0;
	return d->started_unix_ms +
	       ((int64_t)node_ms - (int64_t)d->started_mono_ms);
}

static uint64_t node_ms_from_unix(const fmd *d, int64_t unix_ms)
{
	int64_t node_ms;

	if (unix_ms <= 0)
		return 0;
	/* A time after our start is a clock that stepped back since: take
	 * it as "now" rather than as the future. */
	if (unix_ms > d->started_unix_ms)
		unix_ms = d->started_unix_ms;
	node_ms = (int64_t)d->started_mono_ms + (unix_ms - d->started_unix_ms);
	return node_ms > 0 ? (uint64_t)node_ms : 0;
}

static int addresses_to_json(const fm_peer_info *info, char *out,
                             size_t out_len)
{
	char addr[FM_ADDR_STR_MAX];
	json_t *list = json_array();
	size_t len;
	size_t i;
	int rc = 0;

	if (list == NULL)
		return -ENOMEM;
	for (i = 0; i < info->addr_count && i < FM_PEER_ADDRS_MAX; i++) {
		if (fm_addr_format(&info->addrs[i].addr, addr, sizeof(addr)) !=
		    0)
			continue;
		if (json_array_append_new(
		            list, json_pack("{s:s,s:s}", "addr", addr, "source",
		                            fm_addr_source_name(
		                                    (enum fm_addr_source)info
		                                            ->addrs[i]
		                                            .source))) != 0) {
			rc = -ENOMEM;
			goto cleanup;
		}
	}
	len = json_dumpb(list, out, out_len - 1, JSON_COMPACT);
	if (len == 0 || len >= out_len) {
		rc = -ENOSPC;
		goto cleanup;
	}
	out[len] = '\0';
cleanup:
	json_decref(list);
	return rc;
}

int fmd_peer_row_from_info(const fmd *d, const fm_peer_info *info,
                           fmd_peer_row *row)
{
	size_t len;
	int rc;

	memset(row, 0, sizeof(*row));
	fm_hex_encode(info->node_id, FM_NODE_ID_BYTES, row->node_id);
	rc = addresses_to_json(info, row->addresses_json,
	                       sizeof(row->addresses_json));
	if (rc < 0)
		return rc;
	snprintf(row->source, sizeof(row->source), "%s",
	         fm_addr_source_name((enum fm_addr_source)info->source));
	snprintf(row->state, sizeof(row->state), "%s",
	         fm_peer_state_name((enum fm_peer_state)info->state));
	row->rtt_ms = info->rtt_ms;
	row->score = isfinite(info->score) ? info->score : 0.0;
	row->last_seen_unix_ms = fmd_unix_from_node_ms(d, info->last_seen_ms);
	len = strnlen(info->last_error, sizeof(info->last_error));
	if (len >= sizeof(row->last_error))
		len = sizeof(row->last_error) - 1;
	memcpy(row->last_error, info->last_error, len);
	row->last_error[len] = '\0';
	if (info->has_record) {
		rc = fm_record_encode(&info->record, row->record,
		                      sizeof(row->record), &row->record_len);
		if (rc < 0)
			return rc;
	}
	row->reputation.invalid = info->reputation.invalid;
	row->reputation.failures = info->reputation.failures;
	row->reputation.timeouts = info->reputation.timeouts;
	row->reputation.successes = info->reputation.successes;
	row->reputation.bans = info->reputation.bans;
	row->reputation.ban_remaining_ms =
	        info->reputation.ban_remaining_ms > INT64_MAX
	                ? INT64_MAX
	                : (int64_t)info->reputation.ban_remaining_ms;
	return 0;
}

/* addresses_json back into the peer's address list; entries that do not
 * parse are skipped (the list is a cache, the record is the truth). */
static void addresses_from_json(const char *text, size_t text_max,
                                fm_peer_info *info)
{
	json_error_t jerr;
	json_t *list;
	json_t *entry;
	enum fm_addr_source source;
	size_t i;

	list = json_loadb(text, strnlen(text, text_max), 0, &jerr);
	for (i = 0;
	     i < json_array_size(list) && info->addr_count < FM_PEER_ADDRS_MAX;
	     i++) {
		fm_peer_addr *pa = &info->addrs[info->addr_count];
		const char *addr;
		const char *src;

		entry = json_array_get(list, i);
		addr = json_string_value(json_object_get(entry, "addr"));
		src = json_string_value(json_object_get(entry, "source"));
		if (addr == NULL || fm_addr_parse(addr, &pa->addr) != 0)
			continue;
		if (src == NULL || fm_addr_source_parse(src, &source) != 0)
			source = FM_SRC_RECORD;
		pa->source = (uint8_t)source;
		info->addr_count++;
	}
	json_decref(list);
}

int fmd_peer_info_from_row(const fmd *d, const fmd_peer_row *row,
                           fm_peer_info *info)
{
	enum fm_addr_source source;
	size_t len;
	int rc;

	memset(info, 0, sizeof(*info));
	if (strnlen(row->node_id, sizeof(row->node_id)) != FM_NODE_ID_HEX_LEN ||
	    fm_hex_decode(row->node_id, info->node_id, FM_NODE_ID_BYTES) != 0)
		return -EINVAL;
	if (row->record_len > 0) {
		rc = fm_record_decode(row->record, row->record_len,
		                      &info->record);
		if (rc < 0)
			return rc;
		/* A valid record of another node under this ID is as bad
		 * as a forged one. */
		if (sodium_memcmp(info->record.node_id, info->node_id,
		                  FM_NODE_ID_BYTES) != 0)
			return -EBADMSG;
		info->has_record = 1;
	}
	addresses_from_json(row->addresses_json, sizeof(row->addresses_json),
	                    info);
	if (fm_addr_source_parse(row->source, &source) != 0)
		source = FM_SRC_RECORD;
	info->source = (uint8_t)source;
	/* No session survives a restart: the core decides what to do with
	 * the peer, and only a ban (from the reputation) carries over. */
	info->state =
	        strcmp(row->state, fm_peer_state_name(FM_PEER_BANNED)) == 0
	                ? FM_PEER_BANNED
	                : FM_PEER_IDLE;
	info->rtt_ms = isfinite(row->rtt_ms) ? row->rtt_ms : -1.0;
	info->last_seen_ms = node_ms_from_unix(d, row->last_seen_unix_ms);
	len = strnlen(row->last_error, sizeof(row->last_error));
	if (len >= sizeof(info->last_error))
		len = sizeof(info->last_error) - 1;
	memcpy(info->last_error, row->last_error, len);
	info->last_error[len] = '\0';
	info->reputation.invalid = row->reputation.invalid;
	info->reputation.failures = row->reputation.failures;
	info->reputation.timeouts = row->reputation.timeouts;
	info->reputation.successes = row->reputation.successes;
	info->reputation.bans =
	        row->reputation.bans < 0
	                ? 0
	                : (row->reputation.bans > UINT32_MAX
	                           ? UINT32_MAX
	                           : (uint32_t)row->reputation.bans);
	info->reputation.ban_remaining_ms =
	        row->reputation.ban_remaining_ms < 0
	                ? 0
	                : (uint64_t)row->reputation.ban_remaining_ms;
	info->score = fm_reputation_score(&info->reputation);
	return 0;
}

void fmd_peers_save(fmd *d, const fm_peer_info *info, int forgotten)
{
	char node_id[FM_NODE_ID_HEX_LEN + 1];
	fmd_peer_row *row;
	int rc;

	if (d->store == NULL || info == NULL)
		return;
	if (forgotten) {
		fm_hex_encode(info->node_id, FM_NODE_ID_BYTES, node_id);
		rc = fmd_store_peer_delete(d->store, node_id);
		if (rc < 0 && rc != -ENOENT)
			fmd_log(FM_LOG_WARN, "store",
			        "cannot forget peer %.16s: %s", node_id,
			        strerror(-rc));
		return;
	}
	/* A row is a few kB: not for the stack of a callback. */
	row = malloc(sizeof(*row));
	if (row == NULL) {
		fmd_log(FM_LOG_WARN, "store", "cannot save a peer: %s",
		        strerror(ENOMEM));
		return;
	}
	rc = fmd_peer_row_from_info(d, info, row);
	if (rc == 0)
		rc = fmd_store_peer_upsert(d->store, row);
	if (rc < 0) {
		fm_hex_encode(info->node_id, FM_NODE_ID_BYTES, node_id);
		fmd_log(FM_LOG_WARN, "store", "cannot save peer %.16s: %s",
		        node_id, strerror(-rc));
	}
	free(row);
}

typedef struct restore_walk {
	const fmd *d;
	fm_peer_info *infos;
	size_t count;
	size_t cap;
	size_t skipped;
} restore_walk;

/* Collects first, restores after the walk: the core answers a restore
 * with peer_changed, which writes to the table being read. */
static int restore_collect(void *ctx, const fmd_peer_row *row)
{
	restore_walk *w = ctx;
	fm_peer_info *grown;
	int rc;

	if (w->count == w->cap) {
		size_t cap = w->cap != 0 ? 2 * w->cap : 16;

		if (w->cap >= FMD_NET_RESTORE_MAX)
			return 1;
		if (cap > FMD_NET_RESTORE_MAX)
			cap = FMD_NET_RESTORE_MAX;
		grown = realloc(w->infos, cap * sizeof(*grown));
		if (grown == NULL)
			return -ENOMEM;
		w->infos = grown;
		w->cap = cap;
	}
	rc = fmd_peer_info_from_row(w->d, row, &w->infos[w->count]);
	if (rc < 0) {
		w->skipped++;
		fmd_log(FM_LOG_WARN, "store", "skipping stored peer %.16s: %s",
		        row->node_id,
		        rc == -EPERM ? "its record's signature does not verify"
		                     : "its row is malformed");
		return 0;
	}
	w->count++;
	return 0;
}

int fmd_peers_restore(fmd *d)
{
	restore_walk w = {.d = d};
	size_t restored = 0;
	size_t i;
	int rc;

	if (d->store == NULL || d->node == NULL)
		return -EINVAL;
	rc = fmd_store_peers_foreach(d->store, restore_collect, &w);
	if (rc < 0)
		goto cleanup;
	if (rc == 1)
		fmd_log(FM_LOG_WARN, "store",
		        "more than %d stored peers; restoring the first",
		        FMD_NET_RESTORE_MAX);
	for (i = 0; i < w.count; i++) {
		rc = fm_node_restore_peer(d->node, fmd_now_ms(d), &w.infos[i]);
		if (rc < 0) {
			fmd_log(FM_LOG_WARN, "net",
			        "cannot restore a stored peer: %s",
			        strerror(-rc));
			continue;
		}
		restored++;
	}
	if (w.count + w.skipped > 0)
		fmd_log(FM_LOG_INFO, "net", "restored %zu stored peer(s)",
		        restored);
	rc = (int)restored;
cleanup:
	free(w.infos);
	return rc;
}

/* ---- federation membership ------------------------------------------------
 */

static int state_file(const fmd *d, const char *name, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s", d->cfg.state_dir, name);

	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

static void contact_add(fmd *d, const fm_addr *addr, enum fm_addr_source source)
{
	char text[FM_ADDR_STR_MAX] = "?";
	int rc;

	rc = fm_node_add_contact(d->node, fmd_now_ms(d), addr, source);
	if (rc < 0) {
		(void)fm_addr_format(addr, text, sizeof(text));
		fmd_log(FM_LOG_WARN, "net", "cannot add %s contact %s: %s",
		        fm_addr_source_name(source), text, strerror(-rc));
	}
}

int fmd_contacts_add(fmd *d)
{
	char text[FMD_BOOTSTRAP_SETTING_MAX];
	json_error_t jerr;
	json_t *list = NULL;
	fm_addr addr;
	int added = 0;
	size_t i;
	int rc;

	if (d->node == NULL)
		return -EINVAL;
	rc = d->store != NULL
	             ? fmd_store_setting_get(d->store, FMD_SETTING_BOOTSTRAP,
	                                     text, sizeof(text))
	             : -ENOENT;
	if (rc == 0)
		list = json_loads(text, 0, &jerr);
	else if (rc != -ENOENT)
		fmd_log(FM_LOG_WARN, "store",
		        "cannot read the bootstrap addresses: %s",
		        strerror(-rc));
	for (i = 0; i < json_array_size(list); i++) {
		const char *a = json_string_value(json_array_get(list, i));

		if (a == NULL || fm_addr_parse(a, &addr) != 0) {
			fmd_log(FM_LOG_WARN, "store",
			        "ignoring a malformed stored bootstrap "
			        "address");
			continue;
		}
		contact_add(d, &addr, FM_SRC_INVITE);
		added++;
	}
	json_decref(list);
	for (i = 0; i < d->cfg.bootstrap_count; i++) {
		/* config.c checked the syntax already. */
		if (fm_addr_parse(d->cfg.bootstrap[i], &addr) != 0)
			continue;
		contact_add(d, &addr, FM_SRC_BOOTSTRAP);
		added++;
	}
	return added;
}

static int bootstrap_setting_save(fmd *d, const fm_addr *addrs, size_t count)
{
	char text[FMD_BOOTSTRAP_SETTING_MAX];
	char one[FM_ADDR_STR_MAX];
	json_t *list = json_array();
	size_t len;
	size_t i;
	int rc = 0;

	if (list == NULL)
		return -ENOMEM;
	for (i = 0; i < count; i++) {
		if (fm_addr_format(&addrs[i], one, sizeof(one)) != 0)
			continue;
		if (json_array_append_new(list, json_string(one)) != 0) {
			rc = -ENOMEM;
			goto cleanup;
		}
	}
	len = json_dumpb(list, text, sizeof(text) - 1, JSON_COMPACT);
	if (len == 0 || len >= sizeof(text)) {
		rc = -ENOSPC;
		goto cleanup;
	}
	text[len] = '\0';
	rc = fmd_store_setting_set(d->store, FMD_SETTING_BOOTSTRAP, text);
cleanup:
	json_decref(list);
	return rc;
}

int fmd_federation_join(fmd *d, const char *invite, fm_addr *addrs,
                        size_t *count, char *err, size_t err_len)
{
	uint8_t key[FM_FEDERATION_KEY_BYTES];
	char path[FMD_NET_PATH_MAX];
	size_t n = 0;
	size_t i;
	int same;
	int rc;

	*count = 0;
	if (err_len > 0)
		err[0] = '\0';
	rc = fm_invite_decode(invite, key, addrs, FM_INVITE_ADDRS_MAX, &n);
	if (rc < 0) {
		snprintf(err, err_len,
		         "not a valid fedmesh invite: it must be the whole "
		         "'fedmesh1...' word that 'fedmesh invite' printed; "
		         "a missing or mistyped character breaks its "
		         "checksum");
		rc = -EINVAL;
		goto cleanup;
	}
	rc = state_file(d, FMD_FEDERATION_KEY_FILE, path, sizeof(path));
	if (rc == 0)
		rc = fmd_federation_key_write(path, key, err, err_len);
	if (rc < 0) {
		if (err[0] == '\0')
			snprintf(err, err_len,
			         "cannot write the federation key: %s",
			         strerror(-rc));
		/* -EINVAL is reserved for "bad invite". */
		if (rc == -EINVAL)
			rc = -EIO;
		goto cleanup;
	}
	/* Joining the federation one is in already changes nothing but the
	 * contacts: dropping the peers would launder their reputations. */
	same = sodium_memcmp(key, d->federation_key, sizeof(key)) == 0;
	memcpy(d->federation_key, key, sizeof(key));
	if (d->store != NULL) {
		if (!same) {
			rc = fmd_store_peers_clear(d->store);
			if (rc < 0)
				fmd_log(FM_LOG_WARN, "store",
				        "cannot clear the old federation's "
				        "peers: %s",
				        strerror(-rc));
			/* Nor are its DHT addresses worth challenging. */
			(void)fmd_store_setting_set(d->store,
			                            FMD_DHT_TABLE_SETTING, "");
		}
		rc = bootstrap_setting_save(d, addrs, n);
		if (rc < 0)
			fmd_log(FM_LOG_WARN, "store",
			        "cannot save the invite's addresses: %s",
			        strerror(-rc));
	}
	if (d->node != NULL) {
		if (!same)
			fm_node_set_federation(d->node, fmd_now_ms(d), key);
		for (i = 0; i < n; i++)
			contact_add(d, &addrs[i], FM_SRC_INVITE);
		fmd_net_kick(d);
	}
	fmd_log(FM_LOG_INFO, "main",
	        "%s federation; %zu bootstrap address(es)%s",
	        same ? "already a member of this" : "joined a new", n,
	        n == 0 ? ": peers will be found by local discovery" : "");
	*count = n;
	rc = 0;
cleanup:
	sodium_memzero(key, sizeof(key));
	return rc;
}

int fmd_net_start(fmd *d, fmd_net **out, char *err, size_t err_len)
{
	fm_node_config ncfg;
	struct fmd_net *net;
	size_t advertise_count = 0;
	fm_addr want;
	fm_addr bound;
	fm_io io;
	int rc;

	if (fm_addr_parse(d->cfg.listen, &want) != 0) {
		snprintf(err, err_len, "invalid listen address %s",
		         d->cfg.listen);
		return -EINVAL;
	}
	net = calloc(1, sizeof(*net));
	if (net == NULL) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	net->d = d;
	rc = bind_both(net, &want, err, err_len);
	if (rc != 0)
		goto fail;
	bound_name(&net->udp, 1, d->listen_udp, sizeof(d->listen_udp));
	bound_name(&net->listener, 0, d->listen_tcp, sizeof(d->listen_tcp));

	memset(&io, 0, sizeof(io));
	io.ctx = net;
	io.send_datagram = io_send_datagram;
	io.stream_open = io_stream_open;
	io.stream_send = io_stream_send;
	io.stream_close = io_stream_close;
	io.random_bytes = io_random_bytes;
	io.persist = io_persist;
	io.log = io_log;
	io.peer_changed = io_peer_changed;
	memset(&ncfg, 0, sizeof(ncfg));
	ncfg.identity = d->identity;
	memcpy(ncfg.federation_key, d->federation_key,
	       sizeof(ncfg.federation_key));
	/* The start time in Unix ms grows across restarts, so the record of
	 * this run supersedes the last one's. */
	ncfg.record_seq =
	        d->started_unix_ms > 0 ? (uint64_t)d->started_unix_ms : 1;
	rc = bound_addr(net, &bound);
	if (rc == 0)
		rc = fmd_advertise_addrs(d, &bound, ncfg.advertise,
		                         FM_RECORD_ADDRS_MAX, &advertise_count);
	if (rc != 0) {
		snprintf(err, err_len, "cannot find addresses to advertise: %s",
		         strerror(-rc));
		goto fail;
	}
	ncfg.advertise_count = (uint8_t)advertise_count;
	log_advertised(ncfg.advertise, advertise_count);
	/* Local discovery: the mDNS sockets open before the node exists, so
	 * that its config can say whether mDNS runs. The beacon needs the
	 * peer UDP socket to send to broadcast addresses. */
	rc = fmd_disc_new(d, &bound, &d->disc);
	if (rc != 0) {
		snprintf(err, err_len, "cannot start local discovery: %s",
		         strerror(-rc));
		goto fail;
	}
	if (d->cfg.beacon) {
		rc = uv_udp_set_broadcast(&net->udp, 1);
		if (rc != 0)
			fmd_log(FM_LOG_WARN, "net",
			        "no SO_BROADCAST on the peer port (%s): the "
			        "beacon cannot be sent",
			        uv_strerror(rc));
	}
	io.send_mdns = io_send_mdns;
	ncfg.mdns_enabled = (uint8_t)fmd_disc_mdns_on(d->disc);
	ncfg.beacon_enabled = (uint8_t)fmd_disc_beacon_on(d->disc);
	ncfg.peer_port = bound.port;
	snprintf(ncfg.hostname, sizeof(ncfg.hostname), "%s",
	         fmd_disc_hostname(d->disc));
	/* Jobs: the executor's ops, the services offered and local ones. */
	fmd_jobs_attach(d, &io, &ncfg);
	ncfg.dht_disabled = (uint8_t)!d->cfg.dht;
	ncfg.dht_subnet_max = (uint8_t)d->cfg.dht_subnet_max;
	ncfg.handshakes_max = (uint16_t)d->cfg.limits.handshakes_max;
	rc = fm_node_new(&ncfg, &io, fmd_now_ms(d), &d->node);
	sodium_memzero(&ncfg, sizeof(ncfg));
	if (rc != 0) {
		snprintf(err, err_len, "cannot create node: %s", strerror(-rc));
		goto fail;
	}
	d->net = net;
	/* Stored peers first, so a known peer is dialled by its record's
	 * addresses before a contact for the same place is added. */
	rc = fmd_peers_restore(d);
	if (rc < 0)
		fmd_log(FM_LOG_WARN, "net", "cannot read stored peers: %s",
		        strerror(-rc));
	fmd_contacts_add(d);
	/* The DHT table of the last run: rejoin without a bootstrap. */
	fmd_dht_restore(d);
	uv_timer_init(d->loop, &net->timer);
	net->timer.data = net;
	net->timer_open = 1;
	rc = uv_udp_recv_start(&net->udp, on_udp_alloc, on_udp_recv);
	if (rc != 0) {
		snprintf(err, err_len, "cannot receive on UDP: %s",
		         uv_strerror(rc));
		goto fail;
	}
	/* Interfaces last: reporting them re-arms the timer. */
	fmd_disc_start(d->disc);
	reschedule(net);
	*out = net;
	return 0;
fail:
	fmd_net_stop(net);
	return rc;
}

static void on_linger_timer(uv_timer_t *timer)
{
	struct fmd_net *net = timer->data;

	if (net->writes_pending > 0)
		fmd_log(FM_LOG_DEBUG, "net",
		        "%" PRIu64 " write(s) still queued at exit",
		        net->writes_pending);
	fmd_net_stop(net);
}

/* The last queued write completed: no reason to wait longer. */
static void linger_check(struct fmd_net *net)
{
	if (net->lingering && !net->stopping && net->writes_pending == 0 &&
	    net->timer_open)
		uv_timer_start(&net->timer, on_linger_timer, 0, 0);
}

void fmd_net_shutdown(fmd_net *net)
{
	fmd *d;

	if (net == NULL || net->lingering || net->stopping)
		return;
	d = net->d;
	net->lingering = 1;
	/* Nothing new comes in: no connections, no datagrams. */
	close_handle((uv_handle_t *)&net->listener, &net->listener_open);
	if (net->udp_open)
		uv_udp_recv_stop(&net->udp);
	if (net->timer_open)
		uv_timer_stop(&net->timer);
	if (d->node != NULL)
		fm_node_shutdown(d->node, fmd_now_ms(d));
	/* The goodbyes are out (sendmsg is synchronous): the mDNS sockets
	 * and the interface watch can go. */
	fmd_disc_free(d->disc);
	d->disc = NULL;
	if (!net->timer_open) {
		fmd_net_stop(net);
		return;
	}
	uv_timer_start(&net->timer, on_linger_timer,
	               net->writes_pending > 0 ? FMD_NET_LINGER_MS : 0, 0);
}

void fmd_net_stop(fmd_net *net)
{
	int i;

	if (net == NULL)
		return;
	/* libuv runs close callbacks in no order we may rely on, so streams
	 * are detached from net before net can be freed. */
	for (i = 0; i < FMD_NET_STREAMS_MAX; i++) {
		if (net->streams[i] == NULL)
			continue;
		close_stream(net->streams[i], 0, 0);
		/* Writes still queued are cancelled now. */
		if (!uv_is_closing((uv_handle_t *)&net->streams[i]->tcp))
			uv_close((uv_handle_t *)&net->streams[i]->tcp,
			         on_stream_closed);
		net->streams[i]->close_when_written = 0;
		net->streams[i]->net = NULL;
		net->streams[i] = NULL;
	}
	net->stopping = 1;
	fmd_disc_free(net->d->disc);
	net->d->disc = NULL;
	close_handle((uv_handle_t *)&net->udp, &net->udp_open);
	close_handle((uv_handle_t *)&net->listener, &net->listener_open);
	close_handle((uv_handle_t *)&net->timer, &net->timer_open);
	fm_node_free(net->d->node);
	net->d->node = NULL;
	if (net->d->net == net)
		net->d->net = NULL;
	if (net->handles_closing == 0)
		free(net);
}
