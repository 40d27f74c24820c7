/* Local discovery, driver half: sockets and interfaces, no protocol.
 *
 * Why netlink rather than a periodic re-scan alone: a laptop that joins a
 * Wi-Fi network should query at once, not up to 5 s later, and an idle
 * daemon should not wake every 5 s to find nothing changed. An rtnetlink
 * socket subscribed to link and address changes (RTMGRP_LINK,
 * RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR) wakes us only when something
 * changed; we then re-scan with getifaddrs() after FMD_DISC_DEBOUNCE_MS
 * rather than parse the messages, so there is one code path for "what is
 * there now" and a burst of notifications costs one scan. Where netlink
 * cannot be opened, or after it lost messages (ENOBUFS), a scan every
 * FMD_DISC_POLL_MS takes over. */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "disc.h"
#include "log.h"
#include "mdns_sock.h"
#include "net.h"

struct fmd_disc {
	fmd *d;
	fm_addr bound;
	fmd_mdns *mdns; /* NULL: mDNS off */
	int beacon;
	char hostname[FM_HOSTNAME_MAX + 1];
	/* What the core was told, in index order. */
	fmd_iface ifaces[FM_IFACES_MAX];
	size_t iface_count;
	size_t skipped_logged; /* interfaces over FM_IFACES_MAX, last said */
	int nl_fd;
	uv_poll_t nl_poll;
	uv_timer_t scan_timer;
	int nl_open, timer_open;
	int polling; /* no netlink: the timer repeats */
	int started;
	int freed;
	int handles_closing;
	fmd_disc_counters counters;
	uint8_t nl_buf[8192];
};

static int addr_equal(const fm_addr *a, const fm_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	       memcmp(a->ip, b->ip, sizeof(a->ip)) == 0;
}

static int list_equal(const fm_addr *a, size_t na, const fm_addr *b, size_t nb)
{
	size_t i;

	if (na != nb)
		return 0;
	for (i = 0; i < na; i++)
		if (!addr_equal(&a[i], &b[i]))
			return 0;
	return 1;
}

/* Whether the core must hear about a change (the networks kept for the
 * on-link check are ours alone). */
static int fm_iface_equal(const fm_iface *a, const fm_iface *b)
{
	return a->index == b->index && strcmp(a->name, b->name) == 0 &&
	       list_equal(a->addrs, a->addr_count, b->addrs, b->addr_count) &&
	       list_equal(a->broadcast, a->broadcast_count, b->broadcast,
	                  b->broadcast_count);
}

static const fmd_iface *find_iface(const fmd_disc *disc, uint32_t ifindex)
{
	size_t i;

	for (i = 0; i < disc->iface_count; i++)
		if (disc->ifaces[i].fm.index == ifindex)
			return &disc->ifaces[i];
	return NULL;
}

static void describe(const fmd_iface *ifc, char *out, size_t out_len)
{
	char one[FM_ADDR_STR_MAX];
	size_t i, len;

	out[0] = '\0';
	for (i = 0; i < ifc->fm.addr_count; i++) {
		char *colon;

		if (fm_addr_format(&ifc->fm.addrs[i], one, sizeof(one)) != 0)
			continue;
		/* Port 0 means nothing here: show the bare address. */
		colon = strrchr(one, ':');
		if (colon != NULL)
			*colon = '\0';
		len = strlen(out);
		snprintf(out + len, out_len - len, "%s%s", len ? ", " : "",
		         one[0] == '[' ? one + 1 : one);
		len = strlen(out);
		if (len > 0 && out[len - 1] == ']')
			out[len - 1] = '\0';
	}
	if (out[0] == '\0')
		snprintf(out, out_len, "no dialable address");
}

/* Brings the core's interface list in line with a fresh scan. */
static void rescan(fmd_disc *disc)
{
	fmd_iface *now;
	size_t count = 0, skipped = 0;
	size_t i, j, kept = 0;
	fmd *d = disc->d;
	uint64_t t;
	int rc;

	if (d->node == NULL || disc->freed)
		return;
	now = calloc(FM_IFACES_MAX, sizeof(*now));
	if (now == NULL)
		return;
	disc->counters.iface_scans++;
	rc = fmd_iface_scan(&d->cfg, &disc->bound, disc->mdns != NULL,
	                    disc->beacon, now, FM_IFACES_MAX, &count, &skipped);
	if (rc < 0) {
		fmd_log(FM_LOG_WARN, "disc", "cannot list interfaces: %s",
		        strerror(-rc));
		free(now);
		return;
	}
	if (skipped != disc->skipped_logged) {
		if (skipped > 0)
			fmd_log(FM_LOG_WARN, "disc",
			        "%zu suitable interface(s) left out: at most "
			        "%d are used (see [discovery] interfaces)",
			        skipped, FM_IFACES_MAX);
		disc->skipped_logged = skipped;
	}
	t = fmd_now_ms(d);
	/* Gone first, so a renamed or re-created interface frees its slot
	 * in the core before its successor takes one. */
	for (i = 0; i < disc->iface_count; i++) {
		const fmd_iface *old = &disc->ifaces[i];

		for (j = 0; j < count; j++)
			if (now[j].fm.index == old->fm.index &&
			    strcmp(now[j].fm.name, old->fm.name) == 0)
				break;
		if (j < count)
			continue;
		fm_node_iface_remove(d->node, t, old->fm.index);
		if (old->multicast)
			fmd_mdns_leave(disc->mdns, old->fm.index);
		fmd_log(FM_LOG_INFO, "disc", "no longer discovering on %s",
		        old->fm.name);
	}
	for (j = 0; j < count; j++) {
		const fmd_iface *old = NULL;
		char text[FM_IFACE_ADDRS_MAX * (FM_ADDR_STR_MAX + 2)];

		for (i = 0; i < disc->iface_count; i++)
			if (disc->ifaces[i].fm.index == now[j].fm.index &&
			    strcmp(disc->ifaces[i].fm.name, now[j].fm.name) ==
			            0)
				old = &disc->ifaces[i];
		if (old == NULL && now[j].multicast &&
		    fmd_mdns_join(disc->mdns, now[j].fm.index) != 0) {
			/* The beacon may still work there. */
			now[j].multicast = 0;
			fmd_log(FM_LOG_WARN, "disc",
			        "cannot join the mDNS group on %s",
			        now[j].fm.name);
		} else if (old != NULL) {
			now[j].multicast = old->multicast;
		}
		if (old != NULL && fm_iface_equal(&old->fm, &now[j].fm)) {
			now[kept++] = now[j];
			continue;
		}
		rc = fm_node_iface_update(d->node, t, &now[j].fm);
		if (rc < 0) {
			fmd_log(FM_LOG_WARN, "disc",
			        "the node refused interface %s: %s",
			        now[j].fm.name, strerror(-rc));
			if (old == NULL && now[j].multicast)
				fmd_mdns_leave(disc->mdns, now[j].fm.index);
			continue;
		}
		describe(&now[j], text, sizeof(text));
		fmd_log(FM_LOG_INFO, "disc", "%s on %s (%s)%s%s",
		        old == NULL ? "discovering" : "interface changed:",
		        now[j].fm.name, text, now[j].multicast ? ", mDNS" : "",
		        now[j].fm.broadcast_count > 0 && disc->beacon
		                ? ", beacon"
		                : "");
		now[kept++] = now[j];
	}
	memcpy(disc->ifaces, now, kept * sizeof(*now));
	disc->iface_count = kept;
	free(now);
	fmd_net_kick(d);
}

/* ---- interface watching -------------------------------------------------- */

static void on_scan_timer(uv_timer_t *t)
{
	rescan(t->data);
}

static void schedule_scan(fmd_disc *disc, uint64_t delay_ms)
{
	if (!disc->timer_open || disc->freed)
		return;
	/* Debounce: a pending scan is not pushed further back. */
	if (!disc->polling && uv_is_active((uv_handle_t *)&disc->scan_timer))
		return;
	uv_timer_start(&disc->scan_timer, on_scan_timer, delay_ms,
	               disc->polling ? FMD_DISC_POLL_MS : 0);
}

static void start_polling(fmd_disc *disc, const char *why)
{
	if (disc->polling)
		return;
	fmd_log(FM_LOG_INFO, "disc",
	        "%s: re-scanning interfaces every %d ms instead", why,
	        FMD_DISC_POLL_MS);
	disc->polling = 1;
	uv_timer_start(&disc->scan_timer, on_scan_timer, FMD_DISC_POLL_MS,
	               FMD_DISC_POLL_MS);
}

static void on_netlink(uv_poll_t *h, int status, int events)
{
	fmd_disc *disc = h->data;
	int changed = 0;
	int i;

	(void)events;
	if (status < 0)
		return;
	for (i = 0; i < FMD_DISC_NL_BATCH; i++) {
		ssize_t n = recv(disc->nl_fd, disc->nl_buf,
		                 sizeof(disc->nl_buf), MSG_DONTWAIT);

		if (n < 0 && errno == ENOBUFS) {
			/* Messages were lost: what changed is unknown. */
			changed = 1;
			continue;
		}
		if (n <= 0)
			break;
		/* Every message of our groups is a change worth a scan. */
		changed = 1;
	}
	if (changed)
		schedule_scan(disc, FMD_DISC_DEBOUNCE_MS);
}

static int netlink_open(fmd_disc *disc)
{
	struct sockaddr_nl sa;
	int fd;
	int rc;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
	            NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.nl_family = AF_NETLINK;
	sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = uv_poll_init(disc->d->loop, &disc->nl_poll, fd);
	if (rc != 0) {
		close(fd);
		return rc;
	}
	disc->nl_fd = fd;
	disc->nl_poll.data = disc;
	disc->nl_open = 1;
	return uv_poll_start(&disc->nl_poll, UV_READABLE, on_netlink);
}

/* ---- mDNS packets -------------------------------------------------------- */

static void on_mdns(void *ctx, uint32_t ifindex, const fm_addr *from,
                    int to_group, const uint8_t *buf, size_t len)
{
	fmd_disc *disc = ctx;
	fmd *d = disc->d;
	const fmd_iface *ifc;

	if (d->node == NULL || disc->freed)
		return;
	ifc = find_iface(disc, ifindex);
	/* Not an interface we use (the socket may still be joined there for
	 * a moment after it went away). */
	if (ifc == NULL || !ifc->multicast)
		return;
	/* RFC 6762 section 11: a unicast packet must come from the local
	 * link; a multicast one cannot come from anywhere else (224.0.0.251
	 * and ff02::fb are never routed). */
	if (!to_group && !fmd_iface_on_link(ifc, from)) {
		disc->counters.mdns_off_link++;
		return;
	}
	fm_node_recv_mdns(d->node, fmd_now_ms(d), ifindex, from, buf, len);
	fmd_net_kick(d);
}

int fmd_disc_send_mdns(fmd_disc *disc, uint32_t ifindex, const fm_addr *to,
                       const uint8_t *buf, size_t len)
{
	const fmd_iface *ifc;
	int rc;

	if (disc == NULL || disc->mdns == NULL || disc->freed)
		return -ENETDOWN;
	ifc = find_iface(disc, ifindex);
	/* The core may still speak of an interface the scan that is
	 * removing it has not told it about yet. */
	if (ifc == NULL || !ifc->multicast)
		return -ENETUNREACH;
	rc = fmd_mdns_send(disc->mdns, ifindex, to, buf, len);
	if (rc < 0)
		disc->counters.mdns_send_errors++;
	return rc;
}

static int is_loopback(const fm_addr *a)
{
	static const uint8_t v6[16] = {0, 0, 0, 0, 0, 0, 0, 0,
	                               0, 0, 0, 0, 0, 0, 0, 1};

	if (a->family == FM_AF_INET)
		return a->ip[0] == 127;
	return a->family == FM_AF_INET6 && memcmp(a->ip, v6, 16) == 0;
}

/* ---- lifetime ------------------------------------------------------------ */

int fmd_disc_new(fmd *d, const fm_addr *bound, fmd_disc **out)
{
	char err[256] = "";
	fmd_disc *disc;
	int rc;

	disc = calloc(1, sizeof(*disc));
	if (disc == NULL)
		return -ENOMEM;
	disc->d = d;
	disc->bound = *bound;
	disc->nl_fd = -1;
	disc->beacon = d->cfg.beacon;
	fmd_iface_hostname(&d->cfg, NULL, d->node_id_hex, disc->hostname);
	/* Nobody on the LAN can reach a node that listens on loopback
	 * only: nothing to announce, and no reason to hold port 5353. */
	if (is_loopback(bound) && (d->cfg.mdns || d->cfg.beacon)) {
		fmd_log(FM_LOG_INFO, "disc",
		        "local discovery is off: the peer port listens on "
		        "loopback only");
		disc->beacon = 0;
		*out = disc;
		return 0;
	}
	if (d->cfg.mdns) {
		rc = fmd_mdns_open(d->loop, on_mdns, disc, &disc->mdns, err,
		                   sizeof(err));
		if (rc < 0) {
			disc->mdns = NULL;
			fmd_log(FM_LOG_WARN, "disc", "mDNS is off: %s", err);
		}
	}
	*out = disc;
	return 0;
}

int fmd_disc_mdns_on(const fmd_disc *disc)
{
	return disc != NULL && disc->mdns != NULL;
}

int fmd_disc_beacon_on(const fmd_disc *disc)
{
	return disc != NULL && disc->beacon;
}

int fmd_disc_start(fmd_disc *disc)
{
	int rc;

	if (disc->mdns == NULL && !disc->beacon)
		return 0;
	uv_timer_init(disc->d->loop, &disc->scan_timer);
	disc->scan_timer.data = disc;
	disc->timer_open = 1;
	rc = netlink_open(disc);
	if (rc != 0) {
		char why[128];

		snprintf(why, sizeof(why),
		         "cannot watch interfaces with netlink (%s)",
		         rc < 0 && rc > -4096 ? strerror(-rc) : "error");
		start_polling(disc, why);
	}
	disc->started = 1;
	fmd_log(FM_LOG_INFO, "disc",
	        "local discovery: mDNS %s, beacon %s, "
	        "host name %s.local",
	        disc->mdns != NULL ? "on" : "off", disc->beacon ? "on" : "off",
	        disc->hostname);
	rescan(disc);
	return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
	fmd_disc *disc = h->data;

	if (h == (uv_handle_t *)&disc->nl_poll && disc->nl_fd >= 0) {
		close(disc->nl_fd);
		disc->nl_fd = -1;
	}
	if (--disc->handles_closing == 0)
		free(disc);
}

void fmd_disc_free(fmd_disc *disc)
{
	size_t i;

	if (disc == NULL || disc->freed)
		return;
	disc->freed = 1;
	for (i = 0; i < disc->iface_count; i++)
		if (disc->ifaces[i].multicast)
			fmd_mdns_leave(disc->mdns, disc->ifaces[i].fm.index);
	fmd_mdns_close(disc->mdns);
	disc->mdns = NULL;
	if (disc->nl_open) {
		disc->nl_open = 0;
		disc->handles_closing++;
		uv_close((uv_handle_t *)&disc->nl_poll, on_handle_closed);
	} else if (disc->nl_fd >= 0) {
		close(disc->nl_fd);
		disc->nl_fd = -1;
	}
	if (disc->timer_open) {
		disc->timer_open = 0;
		disc->handles_closing++;
		uv_close((uv_handle_t *)&disc->scan_timer, on_handle_closed);
	}
	if (disc->handles_closing == 0)
		free(disc);
}

size_t fmd_disc_iface_count(const fmd_disc *disc)
{
	return disc != NULL ? disc->iface_count : 0;
}

const fmd_iface *fmd_disc_iface_get(const fmd_disc *disc, size_t index)
{
	return disc != NULL && index < disc->iface_count ? &disc->ifaces[index]
	                                                 : NULL;
}

const char *fmd_disc_hostname(const fmd_disc *disc)
{
	return disc != NULL ? disc->hostname : "";
}

void fmd_disc_get_counters(const fmd_disc *disc, fmd_disc_counters *out)
{
	if (disc == NULL)
		memset(out, 0, sizeof(*out));
	else
		*out = disc->counters;
}
