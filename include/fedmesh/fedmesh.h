/* fedmesh protocol core: the public API.
 *
 * The core performs no I/O. Time enters as an argument (now_ms, a monotonic
 * millisecond clock chosen by the driver), randomness and every side effect
 * leave through the ops table struct fm_io. The daemon (src/daemon) and the
 * simulator (sim/) are two drivers of this same API; anything that reads a
 * clock, a socket or a file belongs in a driver, never here.
 *
 * Conventions: functions return 0 or a negative errno-style code (-EINVAL,
 * -ENOMEM, ...); the caller owns memory; every destructor accepts NULL. */
#ifndef FEDMESH_FEDMESH_H
#define FEDMESH_FEDMESH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FM_PUBLIC_KEY_BYTES 32 /* Ed25519 public key */
#define FM_SECRET_KEY_BYTES 64 /* Ed25519 secret key (seed || public key) */
#define FM_SEED_BYTES 32       /* Ed25519 seed */
#define FM_NODE_ID_BYTES 32    /* BLAKE2b-256 of the public key */
#define FM_NODE_ID_HEX_LEN 64  /* hex characters, without the NUL */

/* Largest datagram the core accepts or emits; anything longer is dropped
 * and counted before it is looked at. */
#define FM_DATAGRAM_MAX_BYTES 1400

/* "No deadline": fm_node_tick() returns this when the node has no timer
 * pending, so an idle driver can sleep until I/O arrives. */
#define FM_DEADLINE_NONE UINT64_MAX

enum fm_log_level {
	FM_LOG_ERROR = 0,
	FM_LOG_WARN = 1,
	FM_LOG_INFO = 2,
	FM_LOG_DEBUG = 3,
};

/* A transport address as the core sees it: no struct sockaddr, so the core
 * does not depend on the socket API and the simulator can invent addresses. */
enum fm_addr_family { FM_AF_NONE = 0, FM_AF_INET = 4, FM_AF_INET6 = 6 };

typedef struct fm_addr {
	uint8_t family; /* enum fm_addr_family */
	uint8_t ip[16]; /* IPv4 in the first 4 bytes */
	uint16_t port;  /* host byte order */
} fm_addr;

/* Buffer large enough for "[ipv6]:port" and its NUL. */
#define FM_ADDR_STR_MAX 56

/* Formats addr as "a.b.c.d:port" or "[v6]:port". Returns 0, or -EINVAL. */
int fm_addr_format(const fm_addr *addr, char *out, size_t out_len);
/* Parses "a.b.c.d:port" or "[v6]:port" (numeric only; no name lookup).
 * Returns 0, or -EINVAL. */
int fm_addr_parse(const char *text, fm_addr *out);

/* ---- identity --------------------------------------------------------- */

typedef struct fm_identity {
	uint8_t public_key[FM_PUBLIC_KEY_BYTES];
	uint8_t secret_key[FM_SECRET_KEY_BYTES];
	uint8_t node_id[FM_NODE_ID_BYTES];
} fm_identity;

/* Derives a key pair and node ID from a 32-byte seed. The seed comes from
 * the driver's randomness (fm_io.random_bytes), so a simulation replays. */
int fm_identity_from_seed(const uint8_t seed[FM_SEED_BYTES], fm_identity *out);
/* Checks that secret_key and public_key belong together and recomputes the
 * node ID; used when a driver loads a stored identity. Returns 0 or -EINVAL. */
int fm_identity_check(fm_identity *id);
/* node_id = BLAKE2b-256(public_key). */
void fm_node_id_from_public_key(const uint8_t pk[FM_PUBLIC_KEY_BYTES],
                                uint8_t node_id[FM_NODE_ID_BYTES]);
/* Lowercase hex; out must hold 2 * len + 1 bytes. */
void fm_hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes exactly 2 * out_len hex characters. Returns 0 or -EINVAL. */
int fm_hex_decode(const char *in, uint8_t *out, size_t out_len);
/* Wipes an identity's secret material (sodium_memzero). Accepts NULL. */
void fm_identity_wipe(fm_identity *id);

/* ---- the ops table ------------------------------------------------------ */

/* Every side effect of the core goes through these. A driver fills in what
 * it supports; the core checks optional entries for NULL. ctx is passed back
 * unchanged. */
typedef struct fm_io {
	void *ctx;
	/* Send one datagram. Best effort, like UDP: a lost datagram is not an
	 * error. Returns 0 or a negative errno. Required. */
	int (*send_datagram)(void *ctx, const fm_addr *to, const uint8_t *buf,
	                     size_t len);
	/* Open a reliable, ordered byte stream to `to`. The driver picks the
	 * stream ID and reports the outcome later through
	 * fm_node_stream_opened() or fm_node_stream_closed(). */
	int (*stream_open)(void *ctx, const fm_addr *to, uint64_t *stream_id);
	int (*stream_send)(void *ctx, uint64_t stream_id, const uint8_t *buf,
	                   size_t len);
	void (*stream_close)(void *ctx, uint64_t stream_id);
	/* Fill buf with len unpredictable bytes (the simulator: from its seed).
	 * Required. */
	void (*random_bytes)(void *ctx, uint8_t *buf, size_t len);
	/* Durable key/value state of the core (routing table, peer records).
	 * Returns 0 once the value is durable, or a negative errno. Optional.
	 */
	int (*persist)(void *ctx, const char *key, const uint8_t *val,
	               size_t len);
	/* Run a job locally on behalf of the core. Optional until jobs land. */
	int (*job_execute)(void *ctx, const char *job_id, const char *service,
	                   const uint8_t *input, size_t input_len);
	/* Log a line. subsystem is a short static string ("node", "dht"). */
	void (*log)(void *ctx, enum fm_log_level level, const char *subsystem,
	            const char *msg);
} fm_io;

/* ---- the node ------------------------------------------------------------ */

typedef struct fm_node fm_node;

typedef struct fm_node_config {
	fm_identity identity; /* copied into the node */
} fm_node_config;

/* Why an inbound datagram was not accepted; one counter each. */
enum fm_drop_reason {
	FM_DROP_OVERSIZE = 0,    /* longer than FM_DATAGRAM_MAX_BYTES */
	FM_DROP_UNAUTHENTICATED, /* not sealed for our federation */
	FM_DROP_REASON_COUNT
};

typedef struct fm_node_stats {
	uint64_t datagrams_received;
	uint64_t datagrams_dropped[FM_DROP_REASON_COUNT];
	uint64_t stream_bytes_received;
	uint64_t streams_opened;
	uint64_t streams_closed;
	uint64_t ticks;
} fm_node_stats;

typedef struct fm_node_status {
	uint8_t node_id[FM_NODE_ID_BYTES];
	uint32_t peers_connected;
	uint64_t started_ms; /* now_ms passed to fm_node_new() */
} fm_node_status;

/* Creates a node. io is copied; io->ctx must outlive the node. */
int fm_node_new(const fm_node_config *cfg, const fm_io *io, uint64_t now_ms,
                fm_node **out);
void fm_node_free(fm_node *node);

/* A datagram arrived from `from`. Untrusted input: never fails, never
 * crashes; what cannot be accepted is dropped and counted. */
void fm_node_recv_datagram(fm_node *node, uint64_t now_ms, const fm_addr *from,
                           const uint8_t *buf, size_t len);

/* Stream events from the driver. incoming != 0 when the peer dialled us. */
void fm_node_stream_opened(fm_node *node, uint64_t now_ms, uint64_t stream_id,
                           const fm_addr *remote, int incoming);
void fm_node_stream_data(fm_node *node, uint64_t now_ms, uint64_t stream_id,
                         const uint8_t *buf, size_t len);
/* The stream is gone (closed by the peer, failed to open, or reset); error
 * is 0 or a negative errno. The stream ID is not used again by the core. */
void fm_node_stream_closed(fm_node *node, uint64_t now_ms, uint64_t stream_id,
                           int error);

/* Runs due timers. Returns the absolute now_ms at which it wants to be
 * called next, or FM_DEADLINE_NONE. */
uint64_t fm_node_tick(fm_node *node, uint64_t now_ms);

void fm_node_get_status(const fm_node *node, fm_node_status *out);
void fm_node_get_stats(const fm_node *node, fm_node_stats *out);
const char *fm_drop_reason_name(enum fm_drop_reason reason);

/* Version of the core, "MAJOR.MINOR.PATCH". */
const char *fm_version(void);

#ifdef __cplusplus
}
#endif

#endif /* FEDMESH_FEDMESH_H */
