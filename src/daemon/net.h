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

#endif
