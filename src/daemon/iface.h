/* The host's network interfaces as local discovery sees them: which ones it
 * may use (the interface policy of docs/DISCOVERY.md) and what the core is
 * told about each (struct fm_iface). Pure functions over getifaddrs(), kept
 * apart from the sockets so the policy can be unit tested. */
#ifndef FMD_IFACE_H
#define FMD_IFACE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "fedmesh/fedmesh.h"

/* Networks remembered per interface for the on-link check of unicast
 * mDNS packets (RFC 6762 section 11). */
#define FMD_IFACE_NETS_MAX 16

typedef struct fmd_iface {
	fm_iface fm;                      /* what fm_node_iface_update() gets */
	unsigned flags;                   /* IFF_* */
	uint8_t multicast;                /* IFF_MULTICAST: mDNS may run here */
	fm_addr nets[FMD_IFACE_NETS_MAX]; /* every address, port 0 */
	uint8_t prefix_len[FMD_IFACE_NETS_MAX];
	uint8_t net_count;
} fmd_iface;

/* The name prefixes skipped unless the include list names them: container
 * and VM bridges and their veth ends, tunnels and VPNs, where a LAN peer
 * cannot be (or should not be looked for). */
#define FMD_IFACE_SKIP_DEFAULT "docker*, veth*, br-*, tun*, tap*, wg*"

/* 1 when the policy of cfg lets discovery use the interface NAME:
 * loopback is never used (the caller checks IFF_LOOPBACK); with an
 * include list only matching names, otherwise every name but the default
 * skip list; never a name matching the exclude list. Patterns are
 * fnmatch(3) wildcards. */
int fmd_iface_allowed(const fmd_config *cfg, const char *name);

/* Which of an interface's addresses peers can dial, given the bound peer
 * address: with an IPv4 wildcard its IPv4 addresses, with an IPv6 wildcard
 * (dual stack) all of them, with a specific address only that one. IPv6
 * link-local addresses never qualify: fm_addr has no scope ID, so nobody
 * could dial them. */
int fmd_iface_addr_dialable(const fm_addr *bound, const fm_addr *a);

/* Scans the interfaces (getifaddrs) and fills out with those discovery may
 * use: up and running, not loopback, allowed by the policy, multicast
 * (for mDNS, when want_mdns) or broadcast (for the beacon, when
 * want_beacon), and with at least one dialable address or broadcast
 * address. Sorted by index, addresses sorted, so two scans of an unchanged
 * host compare equal with memcmp. Returns 0 or a negative errno; more than
 * max suitable interfaces is not an error (the rest are left out, and
 * *skipped counts them). */
int fmd_iface_scan(const fmd_config *cfg, const fm_addr *bound, int want_mdns,
                   int want_beacon, fmd_iface *out, size_t max, size_t *count,
                   size_t *skipped);

/* 1 when src is on one of the interface's networks (or is an IPv6
 * link-local address, which is on-link wherever it arrives). */
int fmd_iface_on_link(const fmd_iface *ifc, const fm_addr *src);

/* The mDNS host label: cfg->mdns_hostname when set, else the first label
 * of the system host name with anything but [A-Za-z0-9-] replaced by '-',
 * cut to leave room for '-' and the first 8 hex digits of the node ID,
 * which are appended: a name no other responder (avahi-daemon publishing
 * the plain host name, or another machine with the same host name) claims.
 * out holds FM_HOSTNAME_MAX + 1 bytes. system_name may be NULL (then
 * gethostname() is asked). */
void fmd_iface_hostname(const fmd_config *cfg, const char *system_name,
                        const char *node_id_hex, char *out);

#endif
