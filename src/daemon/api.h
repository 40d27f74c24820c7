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

/* Parses the body of POST /v1/join (the fuzz harness calls it too): a
 * JSON object with a string "invite". Returns 0 with the document in *root
 * (json_decref it) and *invite pointing into it, or -EINVAL with the
 * client's error message in msg. */
struct json_t;
int fmd_api_join_parse(const char *body, size_t body_len, struct json_t **root,
                       const char **invite, char *msg, size_t msg_len);

#endif
