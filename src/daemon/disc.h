/* Local discovery in fedmeshd: the driver half. It owns the mDNS sockets
 * (mdns_sock.c), watches the host's interfaces (netlink, or a 5 s re-scan
 * where netlink is unavailable) and tells the core which interfaces to use
 * (fm_node_iface_update / fm_node_iface_remove). The beacon needs nothing
 * of its own: it travels on the peer UDP socket (net.c). The protocol is
 * in the core (src/core/mdns.c, beacon.c); see docs/DISCOVERY.md. */
#ifndef FMD_DISC_H
#define FMD_DISC_H

#include <stddef.h>
#include <stdint.h>

#include "daemon.h"
#include "iface.h"

/* Interface re-scan when netlink cannot be used; and the delay between a
 * netlink notification and the scan it triggers, so that a burst of
 * changes (an address and its route, DAD) costs one scan. */
#define FMD_DISC_POLL_MS 5000
#define FMD_DISC_DEBOUNCE_MS 100
/* Netlink messages read per readiness event. */
#define FMD_DISC_NL_BATCH 64

typedef struct fmd_disc fmd_disc;

typedef struct fmd_disc_counters {
	uint64_t iface_scans;
	uint64_t mdns_send_errors;
	uint64_t mdns_off_link; /* unicast packets from off-link sources */
} fmd_disc_counters;

/* Opens what discovery needs before the node exists (so the node's config
 * can say whether mDNS runs): the mDNS sockets when d->cfg.mdns. bound is
 * the peer address (what the interfaces' addresses are filtered by). A
 * failure to open the mDNS sockets is logged and leaves mDNS off; returns
 * -ENOMEM only. */
int fmd_disc_new(fmd *d, const fm_addr *bound, fmd_disc **out);
/* 1 when mDNS sockets are open / the beacon is on. */
int fmd_disc_mdns_on(const fmd_disc *disc);
int fmd_disc_beacon_on(const fmd_disc *disc);
/* Once d->node exists: scans the interfaces, reports them to the node and
 * starts watching for changes. */
int fmd_disc_start(fmd_disc *disc);
/* Closes sockets and watchers; the node is not told (it is being freed).
 * Accepts NULL. */
void fmd_disc_free(fmd_disc *disc);

/* fm_io.send_mdns. */
int fmd_disc_send_mdns(fmd_disc *disc, uint32_t ifindex, const fm_addr *to,
                       const uint8_t *buf, size_t len);

/* The interfaces in use, in index order; index < count. */
size_t fmd_disc_iface_count(const fmd_disc *disc);
const fmd_iface *fmd_disc_iface_get(const fmd_disc *disc, size_t index);
/* The mDNS host label the node was given. */
const char *fmd_disc_hostname(const fmd_disc *disc);
void fmd_disc_get_counters(const fmd_disc *disc, fmd_disc_counters *out);

#endif
