/* The mDNS sockets of fedmeshd: one IPv4 socket on 224.0.0.251:5353 and
 * one IPv6 socket on [ff02::fb]:5353, shared with other responders on the
 * host (avahi-daemon) through SO_REUSEADDR/SO_REUSEPORT, joined to the
 * group per interface, telling which interface each packet arrived on.
 * Bytes only: the protocol is in the core (src/core/mdns.c). */
#ifndef FMD_MDNS_SOCK_H
#define FMD_MDNS_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "fedmesh/fedmesh.h"

/* Receive buffer: RFC 6762 section 17 allows packets up to 9000 bytes on
 * jumbo-frame links; anything that fits a UDP datagram is read whole so
 * the core sees (and counts) an oversize packet rather than a truncated
 * one. */
#define FMD_MDNS_RX_BYTES 65536
/* Packets read per readiness event before yielding to the loop, so a
 * flood on 5353 cannot starve the API or the sessions. */
#define FMD_MDNS_RX_BATCH 64

typedef struct fmd_mdns fmd_mdns;

/* A packet arrived on interface ifindex from `from`; to_group is 1 when it
 * was sent to the multicast group, 0 for unicast to this host. */
typedef void (*fmd_mdns_recv_cb)(void *ctx, uint32_t ifindex,
                                 const fm_addr *from, int to_group,
                                 const uint8_t *buf, size_t len);

typedef struct fmd_mdns_stats {
	uint64_t send_errors;
	uint64_t recv_errors;
	uint64_t joins_failed;
} fmd_mdns_stats;

/* Opens and binds both sockets and starts receiving on loop. A family
 * that cannot be opened (no IPv6 in the kernel, say) is left out with a
 * warning; -errno when neither can, with a message in err. */
int fmd_mdns_open(uv_loop_t *loop, fmd_mdns_recv_cb cb, void *ctx,
                  fmd_mdns **out, char *err, size_t err_len);
/* Closes the sockets; the memory goes once libuv has released the
 * handles. Accepts NULL. */
void fmd_mdns_close(fmd_mdns *m);

/* Joins (leaves) 224.0.0.251 and ff02::fb on interface ifindex, for each
 * open family. join returns 0 when at least one family joined. */
int fmd_mdns_join(fmd_mdns *m, uint32_t ifindex);
void fmd_mdns_leave(fmd_mdns *m, uint32_t ifindex);

/* Sends one packet out of interface ifindex, to the group or unicast to
 * one address (IPv6 link-local destinations get ifindex as their scope).
 * Returns 0 or a negative errno. */
int fmd_mdns_send(fmd_mdns *m, uint32_t ifindex, const fm_addr *to,
                  const uint8_t *buf, size_t len);

int fmd_mdns_has_v4(const fmd_mdns *m);
int fmd_mdns_has_v6(const fmd_mdns *m);
void fmd_mdns_get_stats(const fmd_mdns *m, fmd_mdns_stats *out);

#endif
