/* The daemon's side of the core's Kademlia DHT: restoring the routing table
 * the core persisted, and the HTTP routes that show it and ask it.
 *
 *   GET /v1/dht            table size, per-bucket fill, lookup statistics,
 *                          last bootstrap, datagram counters
 *   GET /v1/find/SERVICE   providers of SERVICE (a DHT lookup; the
 *                          connection is suspended until it ends, at most
 *                          FMD_DHT_FIND_WAIT_MS, then 504)
 *
 * api.c dispatches both here after its Host and token checks. */
#ifndef FMD_DHT_API_H
#define FMD_DHT_API_H

#include <stddef.h>

#include <microhttpd.h>

#include "api.h"
#include "daemon.h"

#define FMD_API_DHT_PATH "/v1/dht"
#define FMD_API_FIND_PATH "/v1/find"
/* Longest a GET /v1/find waits for the lookup (the core's own bound is
 * 60 s, far longer than a person or a script should wait). */
#define FMD_DHT_FIND_WAIT_MS 10000
/* Settings key of the table the core persists (fm_io.persist "dht/table",
 * stored by net.c as "core/<key>" in hex). */
#define FMD_DHT_TABLE_SETTING "core/dht/table"
/* Largest stored table read back: the core's is under 29 kB (512
 * addresses); anything larger is not what it wrote. */
#define FMD_DHT_TABLE_MAX_BYTES (64 * 1024)

/* After fm_node_new(): hands the stored table to fm_node_dht_restore(),
 * so a restart rejoins without a bootstrap address. Returns 0 (also when
 * nothing is stored or the DHT is disabled), or a negative errno; failures
 * are logged, never fatal. */
int fmd_dht_restore(fmd *d);

/* 1 when url is /v1/dht, /v1/find or below /v1/find/. */
int fmd_api_dht_match(const char *url);
/* Handles one request; *state is this module's per-request state (NULL at
 * first), kept across a suspension, freed by fmd_api_dht_request_done(). */
enum MHD_Result fmd_api_dht_request(fmd_api *api, fmd *d,
                                    struct MHD_Connection *conn,
                                    const char *method, const char *url,
                                    void **state);
void fmd_api_dht_request_done(void *state);
/* Before MHD stops: every suspended find is resumed and answered 503. */
void fmd_api_dht_stop(fmd *d);

/* Appends the DHT metrics (Prometheus text) to buf, which holds len bytes
 * of cap. Returns the new length, or -ENOSPC when they do not fit. */
int fmd_dht_metrics(const fmd *d, char *buf, size_t len, size_t cap);

#endif
