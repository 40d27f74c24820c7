/* The local HTTP API of fedmeshd (libmicrohttpd + jansson). MHD runs inside
 * the libuv loop (its epoll fd is watched with uv_poll), so handlers run on
 * the loop thread and read daemon state without locks. */
#ifndef FMD_API_H
#define FMD_API_H

#include <stddef.h>

#include "daemon.h"

typedef struct fmd_api fmd_api;

/* Largest request body accepted (413 beyond). */
#define FMD_API_BODY_MAX_BYTES (64 * 1024)
/* Bearer token: 32 random bytes as 64 hex characters. */
#define FMD_API_TOKEN_HEX_LEN 64

/* Binds addr ("127.0.0.1:7421", port 0 = any) and starts serving on d->loop.
 * token is copied. On success d->api_addr holds the bound address. */
int fmd_api_start(fmd *d, const char *addr, const char *token, fmd_api **out,
                  char *err, size_t err_len);
/* Stops serving and frees. Accepts NULL. Call before uv_loop_close(). */
void fmd_api_stop(fmd_api *api);

/* Host header check against DNS rebinding: localhost, 127.0.0.1 or [::1],
 * each with or without ":port". Returns 1 when allowed. */
int fmd_api_host_allowed(const char *host);

#endif
