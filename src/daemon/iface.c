/* Interface policy and scanning for local discovery. Which interfaces a
 * node looks for peers on is a user-visible policy (docs/DISCOVERY.md,
 * "Interface policy"), so it lives in one place, as pure functions of the
 * configuration and of what getifaddrs() reports. */
#include <errno.h>
#include <fnmatch.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iface.h"

static const char *const skip_default[] = {"docker*", "veth*", "br-*",
                                           "tun*",    "tap*",  "wg*"};

static int matches_any(const char (*list)[FMD_IFACE_PATTERN_MAX + 1],
                       size_t count, const char *name)
{
	size_t i;

	for (i = 0; i < count; i++)
		if (fnmatch(list[i], name, 0) == 0)
			return 1;
	return 0;
}

int fmd_iface_allowed(const fmd_config *cfg, const char *name)
{
	size_t i;

	if (name == NULL || name[0] == '\0')
		return 0;
	if (matches_any(cfg->ifaces_exclude, cfg->ifaces_exclude_count, name))
		return 0;
	if (cfg->ifaces_include_count > 0)
		return matches_any(cfg->ifaces_include,
		                   cfg->ifaces_include_count, name);
	for (i = 0; i < sizeof(skip_default) / sizeof(skip_default[0]); i++)
		if (fnmatch(skip_default[i], name, 0) == 0)
			return 0;
	return 1;
}

static int is_v6_link_local(const fm_addr *a)
{
	return a->family == FM_AF_INET6 && a->ip[0] == 0xfe &&
	       (a->ip[1] & 0xc0) == 0x80;
}

static int is_wildcard(const fm_addr *a)
{
	static const uint8_t zero[16];

	return memcmp(a->ip, zero, a->family == FM_AF_INET ? 4 : 16) == 0;
}

int fmd_iface_addr_dialable(const fm_addr *bound, const fm_addr *a)
{
	if (is_v6_link_local(a))
		return 0;
	if (bound->family == FM_AF_INET6 && is_wildcard(bound))
		return a->family == FM_AF_INET || a->family == FM_AF_INET6;
	if (bound->family == FM_AF_INET && is_wildcard(bound))
		return a->family == FM_AF_INET;
	return a->family == bound->family &&
	       memcmp(a->ip, bound->ip, a->family == FM_AF_INET ? 4 : 16) == 0;
}

static void to_fm(const struct sockaddr *sa, fm_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		out->family = FM_AF_INET;
		memcpy(out->ip,
		       &((const struct sockaddr_in *)(const void *)sa)
		                ->sin_addr,
		       4);
	} else if (sa->sa_family == AF_INET6) {
		out->family = FM_AF_INET6;
		memcpy(out->ip,
		       &((const struct sockaddr_in6 *)(const void *)sa)
		                ->sin6_addr,
		       16);
	}
}

static uint8_t prefix_of(const struct sockaddr *mask, size_t bytes)
{
	const uint8_t *m;
	uint8_t n = 0;
	size_t i;

	if (mask == NULL)
		return (uint8_t)(bytes * 8);
	m = mask->sa_family == AF_INET
	            ? (const uint8_t *)&(
	                      (const struct sockaddr_in *)(const void *)mask)
	                      ->sin_addr
	            : (const uint8_t *)&(
	                      (const struct sockaddr_in6 *)(const void *)mask)
	                      ->sin6_addr;
	for (i = 0; i < bytes; i++) {
		uint8_t b = m[i];

		while (b & 0x80) {
			n++;
			b = (uint8_t)(b << 1);
		}
		if (m[i] != 0xff)
			break;
	}
	return n;
}

static int addr_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(fm_addr));
}

static int iface_cmp(const void *a, const void *b)
{
	const fmd_iface *x = a, *y = b;

	return x->fm.index < y->fm.index ? -1 : x->fm.index > y->fm.index;
}

static int list_add(fm_addr *list, uint8_t *count, size_t max, const fm_addr *a)
{
	size_t i;

	for (i = 0; i < *count; i++)
		if (memcmp(&list[i], a, sizeof(*a)) == 0)
			return 0;
	if (*count >= max)
		return -ENOSPC;
	list[(*count)++] = *a;
	return 0;
}

/* The entry of interface ifa in out, created when allowed. getifaddrs
 * lists IPv4 aliases as "eth0:1": they belong to eth0. */
static fmd_iface *entry_for(const fmd_config *cfg, const struct ifaddrs *ifa,
                            int want_mdns, int want_beacon, fmd_iface *out,
                            size_t max, size_t *count, size_t *skipped,
                            char (*seen_skipped)[IF_NAMESIZE], size_t *n_seen)
{
	char name[IF_NAMESIZE];
	size_t len = strcspn(ifa->ifa_name, ":");
	unsigned flags = ifa->ifa_flags;
	unsigned index;
	size_t i;

	if (len == 0 || len >= sizeof(name))
		return NULL;
	memcpy(name, ifa->ifa_name, len);
	name[len] = '\0';
	for (i = 0; i < *count; i++)
		if (strcmp(out[i].fm.name, name) == 0)
			return &out[i];
	if (!(flags & IFF_UP) || !(flags & IFF_RUNNING) ||
	    (flags & IFF_LOOPBACK) || !fmd_iface_allowed(cfg, name))
		return NULL;
	if (!((want_mdns && (flags & IFF_MULTICAST)) ||
	      (want_beacon && (flags & IFF_BROADCAST))))
		return NULL;
	if (*count >= max) {
		/* Count each interface left out once, not per address. */
		for (i = 0; i < *n_seen; i++)
			if (strcmp(seen_skipped[i], name) == 0)
				return NULL;
		if (*n_seen < FM_IFACES_MAX)
			memcpy(seen_skipped[(*n_seen)++], name, len + 1);
		(*skipped)++;
		return NULL;
	}
	index = if_nametoindex(name);
	if (index == 0)
		return NULL;
	memset(&out[*count], 0, sizeof(out[*count]));
	out[*count].fm.index = index;
	memcpy(out[*count].fm.name, name,
	       len < sizeof(out[*count].fm.name)
	               ? len + 1
	               : sizeof(out[*count].fm.name) - 1);
	out[*count].flags = flags;
	out[*count].multicast = want_mdns && (flags & IFF_MULTICAST) ? 1 : 0;
	return &out[(*count)++];
}

int fmd_iface_scan(const fmd_config *cfg, const fm_addr *bound, int want_mdns,
                   int want_beacon, fmd_iface *out, size_t max, size_t *count,
                   size_t *skipped)
{
	char seen_skipped[FM_IFACES_MAX][IF_NAMESIZE];
	size_t n_seen = 0;
	struct ifaddrs *list = NULL;
	struct ifaddrs *ifa;
	size_t i, kept;

	*count = 0;
	*skipped = 0;
	if (getifaddrs(&list) != 0)
		return -errno;
	for (ifa = list; ifa != NULL; ifa = ifa->ifa_next) {
		fmd_iface *e;
		fm_addr a;
		int family;

		if (ifa->ifa_addr == NULL)
			continue;
		family = ifa->ifa_addr->sa_family;
		if (family != AF_INET && family != AF_INET6)
			continue;
		e = entry_for(cfg, ifa, want_mdns, want_beacon, out, max, count,
		              skipped, seen_skipped, &n_seen);
		if (e == NULL)
			continue;
		to_fm(ifa->ifa_addr, &a);
		if (e->net_count < FMD_IFACE_NETS_MAX) {
			e->nets[e->net_count] = a;
			e->prefix_len[e->net_count] = prefix_of(
			        ifa->ifa_netmask, family == AF_INET ? 4 : 16);
			e->net_count++;
		}
		if (fmd_iface_addr_dialable(bound, &a))
			(void)list_add(e->fm.addrs, &e->fm.addr_count,
			               FM_IFACE_ADDRS_MAX, &a);
		if (want_beacon && family == AF_INET &&
		    (ifa->ifa_flags & IFF_BROADCAST) &&
		    ifa->ifa_broadaddr != NULL &&
		    ifa->ifa_broadaddr->sa_family == AF_INET &&
		    is_wildcard(bound)) {
			fm_addr b;

			to_fm(ifa->ifa_broadaddr, &b);
			if (!is_wildcard(&b))
				(void)list_add(e->fm.broadcast,
				               &e->fm.broadcast_count,
				               FM_IFACE_ADDRS_MAX, &b);
		}
	}
	freeifaddrs(list);
	/* Nothing to publish and nowhere to broadcast: not worth a slot. */
	for (i = 0, kept = 0; i < *count; i++) {
		if (out[i].fm.addr_count == 0 && out[i].fm.broadcast_count == 0)
			continue;
		if (kept != i)
			out[kept] = out[i];
		kept++;
	}
	*count = kept;
	for (i = 0; i < *count; i++) {
		qsort(out[i].fm.addrs, out[i].fm.addr_count, sizeof(fm_addr),
		      addr_cmp);
		qsort(out[i].fm.broadcast, out[i].fm.broadcast_count,
		      sizeof(fm_addr), addr_cmp);
	}
	qsort(out, *count, sizeof(*out), iface_cmp);
	return 0;
}

int fmd_iface_on_link(const fmd_iface *ifc, const fm_addr *src)
{
	size_t i, bytes;

	if (is_v6_link_local(src))
		return 1;
	bytes = src->family == FM_AF_INET ? 4 : 16;
	for (i = 0; i < ifc->net_count; i++) {
		const fm_addr *n = &ifc->nets[i];
		unsigned bits = ifc->prefix_len[i];
		size_t full = bits / 8;

		if (n->family != src->family || bits > bytes * 8)
			continue;
		if (memcmp(n->ip, src->ip, full) != 0)
			continue;
		if (bits % 8 != 0) {
			uint8_t mask = (uint8_t)(0xff << (8 - bits % 8));

			if ((n->ip[full] & mask) != (src->ip[full] & mask))
				continue;
		}
		return 1;
	}
	return 0;
}

static int host_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-';
}

void fmd_iface_hostname(const fmd_config *cfg, const char *system_name,
                        const char *node_id_hex, char *out)
{
	/* '-' and 8 hex digits of the node ID */
	const size_t suffix = 9;
	char sys[256] = "";
	size_t i, n = 0;

	if (cfg->mdns_hostname[0] != '\0') {
		snprintf(out, FM_HOSTNAME_MAX + 1, "%s", cfg->mdns_hostname);
		return;
	}
	if (system_name == NULL) {
		if (gethostname(sys, sizeof(sys) - 1) != 0)
			sys[0] = '\0';
		sys[sizeof(sys) - 1] = '\0';
		system_name = sys;
	}
	for (i = 0; system_name[i] != '\0' && system_name[i] != '.' &&
	            n < FM_HOSTNAME_MAX - suffix;
	     i++) {
		char c = host_char_ok(system_name[i]) ? system_name[i] : '-';

		/* No leading '-', and no runs of them. */
		if (c == '-' && (n == 0 || out[n - 1] == '-'))
			continue;
		out[n++] = c;
	}
	while (n > 0 && out[n - 1] == '-')
		n--;
	if (n == 0) {
		memcpy(out, "fedmesh", 7);
		n = 7;
	}
	snprintf(out + n, FM_HOSTNAME_MAX + 1 - n, "-%.8s",
	         node_id_hex != NULL ? node_id_hex : "00000000");
}
