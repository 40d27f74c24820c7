/* The daemon's shared context. fedmeshd is a thin driver: it turns libuv
 * events into calls on the protocol core (fm_node) and the core's ops into
 * libuv requests. This struct is what the API, the store and the event loop
 * share; it lives for the whole process. */
#ifndef FMD_DAEMON_H
#define FMD_DAEMON_H

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "fedmesh/fedmesh.h"
#include "store.h"

struct fmd_api;
struct fmd_disc;
struct fmd_net;
struct fmd_jobs;

/* Counters of the daemon itself (the core keeps its own, fm_node_stats). */
/* Why an inbound connection was closed before the core saw it. */
enum fmd_refused_reason {
	FMD_REFUSED_LIMIT = 0, /* [limits] connections_max */
	FMD_REFUSED_RATE,      /* [limits] source_handshakes_per_s */
	FMD_REFUSED_REASON_COUNT
};

typedef struct fmd_counters {
	uint64_t http_requests[6];    /* index = status / 100 (1xx..5xx) */
	uint64_t http_unauthorized;   /* 401 answers */
	uint64_t http_forbidden_host; /* 403 answers to a foreign Host */
	uint64_t udp_send_errors;
	uint64_t connections_refused[FMD_REFUSED_REASON_COUNT];
	uint64_t peer_queue_overflows; /* [limits] peer_queue_max */
} fmd_counters;

typedef struct fmd {
	uv_loop_t *loop;
	fmd_config cfg;
	fm_identity identity;
	fm_node *node;
	fmd_store *store;
	struct fmd_api *api;
	struct fmd_net *net; /* NULL when no peer port is open (unit tests) */
	/* Local discovery (disc.c); NULL when the network is not running. */
	struct fmd_disc *disc;
	/* The job executor and the durable queue (jobs.c); NULL until
	 * fmd_jobs_new(). */
	struct fmd_jobs *jobs;
	/* The federation's pre-shared key, as in STATE_DIR/federation.key.
	 * Kept here because the core does not hand it back: the only way out
	 * of the process is inside an invite. */
	uint8_t federation_key[FM_FEDERATION_KEY_BYTES];
	uint64_t started_mono_ms; /* uv_now() at start */
	int64_t started_unix_ms;
	char node_id_hex[FM_NODE_ID_HEX_LEN + 1];
	/* Bound addresses, after port 0 was resolved. */
	char listen_udp[FM_ADDR_STR_MAX];
	char listen_tcp[FM_ADDR_STR_MAX];
	char api_addr[FM_ADDR_STR_MAX];
	fmd_counters counters;
} fmd;

/* Monotonic milliseconds on the loop's clock (what the core gets as now_ms). */
uint64_t fmd_now_ms(const fmd *d);

#endif
