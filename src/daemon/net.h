/* fedmeshd's network driver: the peer port (UDP and TCP on the same
 * address), a libuv timer that drives fm_node_tick(), and the fm_io ops that
 * turn the core's requests into libuv calls. */
#ifndef FMD_NET_H
#define FMD_NET_H

#include <stddef.h>

#include "daemon.h"

typedef struct fmd_net fmd_net;

/* Binds d->cfg.listen for UDP and TCP (port 0: any free port, the same one
 * for both when possible), fills d->listen_udp / d->listen_tcp, creates the
 * core node (d->node) wired to these sockets and starts its timer. */
int fmd_net_start(fmd *d, fmd_net **out, char *err, size_t err_len);
/* Closes sockets and the timer; frees the node. Accepts NULL. */
void fmd_net_stop(fmd_net *net);
/* Orderly stop (SIGTERM): stops accepting connections and datagrams,
 * calls fm_node_shutdown() (mDNS goodbyes, CLOSE on every session),
 * closes the discovery sockets, then lets queued writes leave for at most
 * FMD_NET_LINGER_MS before calling fmd_net_stop() itself. The caller
 * forgets net after this call. Accepts NULL. */
void fmd_net_shutdown(fmd_net *net);

/* After a call into the core from outside the network driver (the API):
 * runs what is due and re-arms the timer. A no-op without d->net. */
void fmd_net_kick(fmd *d);
/* The daemon of an fm_io ctx (the network driver): for ops implemented
 * outside net.c (jobs.c). */
fmd *fmd_net_daemon(void *io_ctx);

/* ---- the node's record ------------------------------------------------- */

/* What the node advertises, in this order of preference: --advertise; the
 * bound peer address when it is not a wildcard; the addresses of the up,
 * non-loopback interfaces (getifaddrs) with the bound port; loopback.
 * Returns 0 and at most max addresses in out/count. */
int fmd_advertise_addrs(const fmd *d, const fm_addr *bound, fm_addr *out,
                        size_t max, size_t *count);

/* ---- peer persistence -------------------------------------------------- */

/* The core's peer entry as a store row and back. The core's last_seen_ms
 * is on the node's monotonic clock, the store's on the Unix clock; both
 * conversions go through d->started_mono_ms / d->started_unix_ms. Restoring
 * fails (-EINVAL, -EBADMSG, -EPERM) for a row whose ID or signed record is
 * not valid. */
int64_t fmd_unix_from_node_ms(const fmd *d, uint64_t node_ms);
int fmd_peer_row_from_info(const fmd *d, const fm_peer_info *info,
                           fmd_peer_row *row);
int fmd_peer_info_from_row(const fmd *d, const fmd_peer_row *row,
                           fm_peer_info *info);
/* fm_io.peer_changed: upserts the peer's row, or deletes it when the core
 * forgot the peer. Failures are logged, never fatal. */
void fmd_peers_save(fmd *d, const fm_peer_info *info, int forgotten);
/* Hands every stored peer to fm_node_restore_peer(); rows that cannot be
 * restored are skipped with a warning. Returns the number restored or a
 * negative errno when the store cannot be read. */
int fmd_peers_restore(fmd *d);

/* ---- federation membership ------------------------------------------------
 */

/* Settings key of the persistent bootstrap contacts (a JSON array of
 * "ADDR:PORT" strings): the addresses of the last invite joined. */
#define FMD_SETTING_BOOTSTRAP "bootstrap"
/* Longest value of that setting. */
#define FMD_BOOTSTRAP_SETTING_MAX 1024

/* fm_node_add_contact() for the stored invite addresses (FM_SRC_INVITE)
 * and for --bootstrap (FM_SRC_BOOTSTRAP). Returns the number added. */
int fmd_contacts_add(fmd *d);

/* Joins the federation of an invite: writes STATE_DIR/federation.key,
 * and, when the key differs from the current one, clears the peer table
 * and switches the node (d->node may be NULL before the node exists);
 * stores the invite's addresses as the bootstrap contacts and, with a
 * node, contacts them now. addrs/count receive those addresses (at most
 * FM_INVITE_ADDRS_MAX). -EINVAL with a message in err for a bad invite;
 * another negative errno when the key cannot be written. */
int fmd_federation_join(fmd *d, const char *invite, fm_addr *addrs,
                        size_t *count, char *err, size_t err_len);

#endif
