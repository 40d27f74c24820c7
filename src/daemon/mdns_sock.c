/* mDNS sockets on libuv. uv_udp cannot say which interface a datagram
 * arrived on, and mDNS is per interface (RFC 6762 section 11, answers go
 * back out of the interface the query came in on), so the sockets are
 * plain ones read with recvmsg() and IP_PKTINFO / IPV6_PKTINFO, watched by
 * a uv_poll_t each.
 *
 * Sharing port 5353: avahi-daemon (and other responders) bind the same
 * port. Every socket bound to it must set SO_REUSEADDR (avahi does, and so
 * do we); we also set SO_REUSEPORT as avahi does. Multicast reaches every
 * socket; a unicast packet to port 5353 reaches only one of them, which is
 * why the core should prefer multicast answers (RFC 6762 section 5.4).
 *
 * Sending per interface: the packet carries IP_PKTINFO / IPV6_PKTINFO
 * with the interface index, which for multicast overrides
 * IP_MULTICAST_IF / IPV6_MULTICAST_IF on Linux: one sendmsg(), no socket
 * state to set and restore around it. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "mdns_sock.h"

static const uint8_t group_v4[4] = {224, 0, 0, 251};
static const uint8_t group_v6[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0,
                                     0,    0,    0, 0, 0, 0, 0, 0xfb};

struct mdns_sock {
	struct fmd_mdns *m;
	int family; /* AF_INET or AF_INET6 */
	int fd;
	uv_poll_t poll;
	int poll_open;
};

struct fmd_mdns {
	struct mdns_sock s4, s6;
	fmd_mdns_recv_cb cb;
	void *ctx;
	int handles_closing;
	int closed; /* fmd_mdns_close() was called */
	fmd_mdns_stats stats;
	uint8_t buf[FMD_MDNS_RX_BYTES];
};

static int set_int(int fd, int level, int name, int value)
{
	return setsockopt(fd, level, name, &value, sizeof(value)) == 0 ? 0
	                                                               : -errno;
}

/* A bound, configured socket of one family, or -errno. */
static int open_socket(int family)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;
	int rc;

	fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&ss, 0, sizeof(ss));
	if ((rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1)) != 0)
		goto fail;
#ifdef SO_REUSEPORT
	/* Optional: SO_REUSEADDR alone is what sharing requires. */
	(void)set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
#endif
	if (family == AF_INET) {
		struct sockaddr_in *in = (void *)&ss;

		/* RFC 6762 section 11: IP TTL 255 on every mDNS packet. */
		if ((rc = set_int(fd, IPPROTO_IP, IP_PKTINFO, 1)) != 0 ||
		    (rc = set_int(fd, IPPROTO_IP, IP_MULTICAST_TTL, 255)) !=
		            0 ||
		    (rc = set_int(fd, IPPROTO_IP, IP_TTL, 255)) != 0 ||
		    (rc = set_int(fd, IPPROTO_IP, IP_MULTICAST_LOOP, 1)) != 0)
			goto fail;
#ifdef IP_MULTICAST_ALL
		/* Only the groups this socket joined, on the interfaces it
		 * joined them on: not every group any process joined. */
		(void)set_int(fd, IPPROTO_IP, IP_MULTICAST_ALL, 0);
#endif
		in->sin_family = AF_INET;
		in->sin_port = htons(FM_MDNS_PORT);
		len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (void *)&ss;

		if ((rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1)) != 0 ||
		    (rc = set_int(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)) !=
		            0 ||
		    (rc = set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS,
		                  255)) != 0 ||
		    (rc = set_int(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 255)) !=
		            0 ||
		    (rc = set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, 1)) !=
		            0)
			goto fail;
#ifdef IPV6_MULTICAST_ALL
		(void)set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0);
#endif
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(FM_MDNS_PORT);
		len = sizeof(*in6);
	}
	if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
		rc = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return rc;
}

static void from_sockaddr(const struct sockaddr_storage *ss, fm_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;

		out->family = FM_AF_INET;
		memcpy(out->ip, &in->sin_addr, 4);
		out->port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;

		out->family = FM_AF_INET6;
		memcpy(out->ip, &in6->sin6_addr, 16);
		out->port = ntohs(in6->sin6_port);
	}
}

/* One datagram: 1 when one was read, 0 when the socket is drained. */
static int recv_one(struct mdns_sock *s)
{
	struct fmd_mdns *m = s->m;
	struct sockaddr_storage ss;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(struct in_pktinfo)) +
		         CMSG_SPACE(sizeof(struct in6_pktinfo))];
	} control;
	struct iovec iov = {.iov_base = m->buf, .iov_len = sizeof(m->buf)};
	struct msghdr msg;
	struct cmsghdr *c;
	uint32_t ifindex = 0;
	int to_group = 0;
	fm_addr from;
	ssize_t n;

	memset(&msg, 0, sizeof(msg));
	msg.msg_name = &ss;
	msg.msg_namelen = sizeof(ss);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.buf;
	msg.msg_controllen = sizeof(control.buf);
	n = recvmsg(s->fd, &msg, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == EINTR)
			return 1;
		/* ICMP errors of earlier sends surface here; not fatal. */
		m->stats.recv_errors++;
		return 1;
	}
	for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			ifindex = (uint32_t)pi.ipi_ifindex;
			to_group = memcmp(&pi.ipi_addr, group_v4, 4) == 0;
		} else if (c->cmsg_level == IPPROTO_IPV6 &&
		           c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			ifindex = pi.ipi6_ifindex;
			to_group = memcmp(&pi.ipi6_addr, group_v6, 16) == 0;
		}
	}
	/* Without the interface the packet cannot be answered correctly. */
	if (ifindex == 0 || (msg.msg_flags & MSG_TRUNC)) {
		m->stats.recv_errors++;
		return 1;
	}
	from_sockaddr(&ss, &from);
	if (from.family == FM_AF_NONE)
		return 1;
	m->cb(m->ctx, ifindex, &from, to_group, m->buf, (size_t)n);
	return 1;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	struct mdns_sock *s = h->data;
	int i;

	(void)events;
	if (status < 0) {
		fmd_log(FM_LOG_WARN, "mdns", "poll error: %s",
		        uv_strerror(status));
		return;
	}
	for (i = 0; i < FMD_MDNS_RX_BATCH && !s->m->closed; i++)
		if (!recv_one(s))
			break;
}

static int start_sock(uv_loop_t *loop, struct fmd_mdns *m, struct mdns_sock *s,
                      int family)
{
	int rc;

	s->m = m;
	s->family = family;
	s->fd = open_socket(family);
	if (s->fd < 0)
		return s->fd;
	rc = uv_poll_init(loop, &s->poll, s->fd);
	if (rc != 0) {
		close(s->fd);
		s->fd = -1;
		return rc;
	}
	s->poll.data = s;
	s->poll_open = 1;
	rc = uv_poll_start(&s->poll, UV_READABLE, on_readable);
	return rc;
}

static void on_poll_closed(uv_handle_t *h)
{
	struct mdns_sock *s = h->data;
	struct fmd_mdns *m = s->m;

	close(s->fd);
	s->fd = -1;
	if (--m->handles_closing == 0 && m->closed)
		free(m);
}

static void close_sock(struct mdns_sock *s)
{
	if (s->poll_open) {
		s->poll_open = 0;
		s->m->handles_closing++;
		uv_close((uv_handle_t *)&s->poll, on_poll_closed);
	} else if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
}

int fmd_mdns_open(uv_loop_t *loop, fmd_mdns_recv_cb cb, void *ctx,
                  fmd_mdns **out, char *err, size_t err_len)
{
	struct fmd_mdns *m;
	int rc4, rc6;

	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	m->cb = cb;
	m->ctx = ctx;
	m->s4.fd = m->s6.fd = -1;
	rc4 = start_sock(loop, m, &m->s4, AF_INET);
	if (rc4 != 0) {
		close_sock(&m->s4);
		fmd_log(FM_LOG_WARN, "mdns", "no IPv4 mDNS socket: %s",
		        strerror(-rc4));
	}
	rc6 = start_sock(loop, m, &m->s6, AF_INET6);
	if (rc6 != 0) {
		close_sock(&m->s6);
		/* A host without IPv6 is normal: only worth a debug line. */
		fmd_log(rc6 == -EAFNOSUPPORT ? FM_LOG_DEBUG : FM_LOG_WARN,
		        "mdns", "no IPv6 mDNS socket: %s", strerror(-rc6));
	}
	if (rc4 != 0 && rc6 != 0) {
		snprintf(err, err_len, "cannot bind UDP port %d: %s",
		         FM_MDNS_PORT, strerror(-rc4));
		fmd_mdns_close(m);
		return rc4;
	}
	*out = m;
	return 0;
}

void fmd_mdns_close(fmd_mdns *m)
{
	if (m == NULL || m->closed)
		return;
	m->closed = 1;
	close_sock(&m->s4);
	close_sock(&m->s6);
	if (m->handles_closing == 0)
		free(m);
}

static int membership(struct fmd_mdns *m, uint32_t ifindex, int join)
{
	int joined = 0;

	if (m->s4.fd >= 0) {
		struct ip_mreqn mr;

		memset(&mr, 0, sizeof(mr));
		memcpy(&mr.imr_multiaddr, group_v4, 4);
		mr.imr_ifindex = (int)ifindex;
		if (setsockopt(m->s4.fd, IPPROTO_IP,
		               join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP,
		               &mr, sizeof(mr)) == 0 ||
		    (join && errno == EADDRINUSE))
			joined = 1;
		else if (join)
			fmd_log(FM_LOG_DEBUG, "mdns",
			        "cannot join 224.0.0.251 on interface %u: %s",
			        ifindex, strerror(errno));
	}
	if (m->s6.fd >= 0) {
		struct ipv6_mreq mr;

		memset(&mr, 0, sizeof(mr));
		memcpy(&mr.ipv6mr_multiaddr, group_v6, 16);
		mr.ipv6mr_interface = ifindex;
		if (setsockopt(m->s6.fd, IPPROTO_IPV6,
		               join ? IPV6_JOIN_GROUP : IPV6_LEAVE_GROUP, &mr,
		               sizeof(mr)) == 0 ||
		    (join && errno == EADDRINUSE))
			joined = 1;
		else if (join)
			fmd_log(FM_LOG_DEBUG, "mdns",
			        "cannot join ff02::fb on interface %u: %s",
			        ifindex, strerror(errno));
	}
	return joined;
}

int fmd_mdns_join(fmd_mdns *m, uint32_t ifindex)
{
	if (m == NULL || m->closed)
		return -EBADF;
	if (membership(m, ifindex, 1))
		return 0;
	m->stats.joins_failed++;
	return -EADDRNOTAVAIL;
}

void fmd_mdns_leave(fmd_mdns *m, uint32_t ifindex)
{
	/* The kernel drops the membership itself when the interface goes
	 * away, so a failure here is expected then and not reported. */
	if (m != NULL && !m->closed)
		(void)membership(m, ifindex, 0);
}

int fmd_mdns_send(fmd_mdns *m, uint32_t ifindex, const fm_addr *to,
                  const uint8_t *buf, size_t len)
{
	struct sockaddr_storage ss;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
	} control;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr msg;
	struct cmsghdr *c;
	int fd;

	if (m == NULL || m->closed || to == NULL || ifindex == 0)
		return -EINVAL;
	memset(&ss, 0, sizeof(ss));
	memset(&control, 0, sizeof(control));
	memset(&msg, 0, sizeof(msg));
	msg.msg_name = &ss;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.buf;
	c = (struct cmsghdr *)(void *)control.buf;
	if (to->family == FM_AF_INET) {
		struct sockaddr_in *in = (void *)&ss;
		struct in_pktinfo pi;

		fd = m->s4.fd;
		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, to->ip, 4);
		in->sin_port = htons(to->port);
		msg.msg_namelen = sizeof(*in);
		memset(&pi, 0, sizeof(pi));
		pi.ipi_ifindex = (int)ifindex;
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		msg.msg_controllen = CMSG_SPACE(sizeof(pi));
	} else if (to->family == FM_AF_INET6) {
		struct sockaddr_in6 *in6 = (void *)&ss;
		struct in6_pktinfo pi;

		fd = m->s6.fd;
		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, to->ip, 16);
		in6->sin6_port = htons(to->port);
		/* Link-local and link-scope multicast need the scope. */
		if ((to->ip[0] == 0xfe && (to->ip[1] & 0xc0) == 0x80) ||
		    (to->ip[0] == 0xff && (to->ip[1] & 0x0f) == 0x02))
			in6->sin6_scope_id = ifindex;
		msg.msg_namelen = sizeof(*in6);
		memset(&pi, 0, sizeof(pi));
		pi.ipi6_ifindex = ifindex;
		c->cmsg_level = IPPROTO_IPV6;
		c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		msg.msg_controllen = CMSG_SPACE(sizeof(pi));
	} else {
		return -EAFNOSUPPORT;
	}
	if (fd < 0)
		return -EAFNOSUPPORT;
	/* Non-blocking: a full socket buffer loses the packet, as UDP may;
	 * mDNS repeats what matters. */
	if (sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		m->stats.send_errors++;
		return -errno;
	}
	return 0;
}

int fmd_mdns_has_v4(const fmd_mdns *m)
{
	return m != NULL && m->s4.fd >= 0;
}

int fmd_mdns_has_v6(const fmd_mdns *m)
{
	return m != NULL && m->s6.fd >= 0;
}

void fmd_mdns_get_stats(const fmd_mdns *m, fmd_mdns_stats *out)
{
	if (m == NULL)
		memset(out, 0, sizeof(*out));
	else
		*out = m->stats;
}
