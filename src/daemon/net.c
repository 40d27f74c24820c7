/* The network half of the fedmeshd driver. It owns the peer port (one UDP
 * socket and one TCP listener on the same address and port), a table of
 * TCP streams, and the timer that drives fm_node_tick(); it implements the
 * core's fm_io on top of libuv. No protocol decisions are made here: bytes
 * go to the core as they arrive and leave when the core asks. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"

/* Concurrent TCP streams; a connection beyond this is closed at once. */
#define FMD_NET_STREAMS_MAX 1024
/* Receive buffer: larger than any datagram we accept so that an oversize
 * one is seen whole and counted instead of silently truncated. */
#define FMD_NET_UDP_BUF_BYTES 65536
#define FMD_NET_TCP_READ_BYTES 65536
#define FMD_NET_TCP_BACKLOG 128
/* Attempts at finding one free port for both UDP and TCP when asked for
 * port 0. */
#define FMD_NET_PORT_TRIES 16

struct stream {
	uv_tcp_t tcp;
	struct fmd_net *net;
	uint64_t id;
	int slot;
	int closing;
};

struct fmd_net {
	fmd *d;
	uv_udp_t udp;
	uv_tcp_t listener;
	uv_timer_t timer;
	int udp_open, listener_open, timer_open;
	int stopping;        /* fmd_net_stop() was called */
	int handles_closing; /* close callbacks still to run */
	uint8_t udp_buf[FMD_NET_UDP_BUF_BYTES];
	int udp_buf_busy;
	struct stream *streams[FMD_NET_STREAMS_MAX];
	uint32_t stream_generation;
	char tcp_buf[FMD_NET_TCP_READ_BYTES];
	int tcp_buf_busy;
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
	uint64_t now = fmd_now_ms(net->d);
	uint64_t next = fm_node_tick(net->d->node, now);

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

	/* net is NULL once fmd_net_stop() detached the stream. */
	if (s->net != NULL)
		s->net->streams[s->slot] = NULL;
	free(s);
}

static void close_stream(struct stream *s, int error, int notify)
{
	struct fmd_net *net = s->net;

	if (s->closing)
		return;
	s->closing = 1;
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

	if (nread < 0) {
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

static void on_written(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct stream *s = req->handle->data;

	if (status != 0 && !s->closing)
		close_stream(s, status, 1);
	free(w);
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
	w = malloc(sizeof(*w) + len);
	if (w == NULL)
		return -ENOMEM;
	memcpy(w->data, buf, len);
	b = uv_buf_init(w->data, (unsigned)len);
	rc = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_written);
	if (rc != 0)
		free(w);
	return rc;
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

	if (nread < 0 || from == NULL)
		return;
	/* A datagram cut by the kernel is oversize by definition. */
	if (flags & UV_UDP_PARTIAL)
		len = FMD_NET_UDP_BUF_BYTES + 1;
	sockaddr_to_fm(from, &addr);
	fm_node_recv_datagram(net->d->node, fmd_now_ms(net->d), &addr,
	                      (const uint8_t *)buf->base, len);
	reschedule(net);
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct fmd_net *net = listener->data;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	struct stream *s;
	fm_addr remote;

	if (status != 0)
		return;
	s = new_stream(net);
	if (s == NULL) {
		/* Accept and drop, so the backlog does not fill with it. */
		uv_tcp_t *tmp = malloc(sizeof(*tmp));
		if (tmp != NULL && uv_tcp_init(net->d->loop, tmp) == 0 &&
		    uv_accept(listener, (uv_stream_t *)tmp) == 0)
			uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
		else
			free(tmp);
		fmd_log(FM_LOG_WARN, "net",
		        "connection refused: %d streams open",
		        FMD_NET_STREAMS_MAX);
		return;
	}
	if (uv_accept(listener, (uv_stream_t *)&s->tcp) != 0) {
		close_stream(s, 0, 0);
		return;
	}
	memset(&remote, 0, sizeof(remote));
	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0)
		sockaddr_to_fm((struct sockaddr *)&ss, &remote);
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

int fmd_net_start(fmd *d, fmd_net **out, char *err, size_t err_len)
{
	fm_node_config ncfg;
	struct fmd_net *net;
	fm_addr want;
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
	memset(&ncfg, 0, sizeof(ncfg));
	ncfg.identity = d->identity;
	rc = fm_node_new(&ncfg, &io, fmd_now_ms(d), &d->node);
	sodium_memzero(&ncfg, sizeof(ncfg));
	if (rc != 0) {
		snprintf(err, err_len, "cannot create node: %s", strerror(-rc));
		goto fail;
	}
	uv_timer_init(d->loop, &net->timer);
	net->timer.data = net;
	net->timer_open = 1;
	rc = uv_udp_recv_start(&net->udp, on_udp_alloc, on_udp_recv);
	if (rc != 0) {
		snprintf(err, err_len, "cannot receive on UDP: %s",
		         uv_strerror(rc));
		goto fail;
	}
	reschedule(net);
	*out = net;
	return 0;
fail:
	fmd_net_stop(net);
	return rc;
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
		net->streams[i]->net = NULL;
		net->streams[i] = NULL;
	}
	net->stopping = 1;
	close_handle((uv_handle_t *)&net->udp, &net->udp_open);
	close_handle((uv_handle_t *)&net->listener, &net->listener_open);
	close_handle((uv_handle_t *)&net->timer, &net->timer_open);
	fm_node_free(net->d->node);
	net->d->node = NULL;
	if (net->handles_closing == 0)
		free(net);
}
