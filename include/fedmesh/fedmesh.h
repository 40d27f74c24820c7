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

/* ---- federation membership ------------------------------------------- */

#define FM_FEDERATION_KEY_BYTES 32

/* An invite carries the federation key and up to FM_INVITE_ADDRS_MAX
 * bootstrap addresses, as one copy-paste-safe word:
 * "fedmesh1" followed by lowercase base32 of a versioned body and a
 * checksum (docs/PROTOCOL.md, "Invites"). */
#define FM_INVITE_ADDRS_MAX 8
#define FM_INVITE_TEXT_MAX 512 /* longest invite accepted or produced */

/* Writes the invite, NUL-terminated, into out. -ENOSPC when out_len is too
 * small, -EINVAL for a bad argument or more than FM_INVITE_ADDRS_MAX
 * addresses. */
int fm_invite_encode(const uint8_t key[FM_FEDERATION_KEY_BYTES],
                     const fm_addr *addrs, size_t addr_count, char *out,
                     size_t out_len);
/* Parses an invite; surrounding whitespace is ignored. -EINVAL for anything
 * malformed (wrong prefix, bad base32, bad checksum, unknown version,
 * oversize). *addr_count receives the number of addresses (at most max). */
int fm_invite_decode(const char *text, uint8_t key[FM_FEDERATION_KEY_BYTES],
                     fm_addr *addrs, size_t max, size_t *addr_count);

/* ---- signed node records ------------------------------------------------ */

#define FM_RECORD_ADDRS_MAX 8
#define FM_RECORD_SERVICES_MAX 16
#define FM_SERVICE_NAME_MAX 32 /* bytes, [a-z0-9_.-] */
#define FM_SIGNATURE_BYTES 64
#define FM_RECORD_MAX_BYTES 1024 /* encoded, signature included */

typedef struct fm_service {
	char name[FM_SERVICE_NAME_MAX + 1];
	uint32_t slots; /* concurrent jobs this node runs for the service */
} fm_service;

/* What a node says about itself: who it is, where it listens, what it
 * offers. Higher seq supersedes lower; the signature covers every field. */
typedef struct fm_record {
	uint8_t public_key[FM_PUBLIC_KEY_BYTES];
	uint8_t node_id[FM_NODE_ID_BYTES]; /* derived, not encoded */
	uint64_t seq;
	fm_addr addrs[FM_RECORD_ADDRS_MAX];
	uint8_t addr_count;
	fm_service services[FM_RECORD_SERVICES_MAX];
	uint8_t service_count;
	uint32_t capacity; /* total concurrent job slots */
	uint8_t signature[FM_SIGNATURE_BYTES];
} fm_record;

/* Sets public_key and node_id from id and signs the record. */
int fm_record_sign(fm_record *rec, const fm_identity *id);
/* Canonical msgpack encoding (docs/PROTOCOL.md, "Node records"). */
int fm_record_encode(const fm_record *rec, uint8_t *out, size_t out_len,
                     size_t *written);
/* Decodes and verifies. -EBADMSG when malformed or over a limit, -EPERM
 * when the signature does not verify. Untrusted input: bounded, never
 * crashes. */
int fm_record_decode(const uint8_t *buf, size_t len, fm_record *out);
/* 1 when a is a record of the same node with a higher seq than b. */
int fm_record_supersedes(const fm_record *a, const fm_record *b);

/* ---- local discovery (mDNS / DNS-SD and the beacon) ------------------------
 */

#define FM_MDNS_SERVICE "_fedmesh._udp.local"
#define FM_MDNS_PORT 5353
#define FM_IFACES_MAX 16
#define FM_IFACE_NAME_MAX 15
#define FM_IFACE_ADDRS_MAX 8
#define FM_HOSTNAME_MAX 63

/* A network interface the driver found suitable (up, multicast, not
 * excluded). Addresses carry port 0. */
typedef struct fm_iface {
	uint32_t index;
	char name[FM_IFACE_NAME_MAX + 1];
	fm_addr addrs[FM_IFACE_ADDRS_MAX];
	uint8_t addr_count;
	/* IPv4 broadcast addresses, for the beacon */
	fm_addr broadcast[FM_IFACE_ADDRS_MAX];
	uint8_t broadcast_count;
} fm_iface;

/* ---- peers and reputation ------------------------------------------------ */

/* Where an address came from. */
enum fm_addr_source {
	FM_SRC_BOOTSTRAP = 0, /* --bootstrap, config */
	FM_SRC_INVITE,        /* an invite's addresses */
	FM_SRC_MDNS,
	FM_SRC_BEACON,
	FM_SRC_DHT,
	FM_SRC_RECORD,  /* advertised in the peer's signed record */
	FM_SRC_INBOUND, /* the peer connected to us from there */
	FM_SRC_COUNT
};

enum fm_peer_state {
	FM_PEER_IDLE = 0,   /* known, no session, nothing scheduled */
	FM_PEER_CONNECTING, /* dialling or handshaking */
	FM_PEER_CONNECTED,  /* a session is up */
	FM_PEER_BACKOFF,    /* waiting before the next dial */
	FM_PEER_BANNED,     /* reputation fell below the ban threshold */
	FM_PEER_STATE_COUNT
};

#define FM_PEER_ADDRS_MAX 8
#define FM_PEER_ERROR_MAX 64

typedef struct fm_peer_addr {
	fm_addr addr;
	uint8_t source; /* enum fm_addr_source */
} fm_peer_addr;

/* Reputation counters (docs/REPUTATION.md). Each decays exponentially with
 * half-life FM_REPUTATION_HALF_LIFE_MS; the score is a weighted sum. */
typedef struct fm_reputation {
	double invalid;   /* invalid or forged messages: heavy penalty */
	double failures;  /* failed handshakes and broken sessions */
	double timeouts;  /* handshake, keepalive and idle timeouts */
	double successes; /* completed handshakes and answered keepalives */
	uint32_t bans;    /* bans so far; the next lasts twice as long */
	uint64_t ban_remaining_ms; /* 0 when not banned */
} fm_reputation;

typedef struct fm_peer_info {
	uint8_t node_id[FM_NODE_ID_BYTES];
	int has_record;
	fm_record record;
	fm_peer_addr addrs[FM_PEER_ADDRS_MAX];
	uint8_t addr_count;
	uint8_t source; /* how we first learned of it */
	uint8_t state;  /* enum fm_peer_state */
	double rtt_ms;  /* EWMA of keepalive RTTs; negative when unmeasured */
	uint64_t last_seen_ms; /* node clock of the last authenticated frame;
	                          0 = never */
	char last_error[FM_PEER_ERROR_MAX];
	double score;
	fm_reputation reputation;
} fm_peer_info;

const char *fm_addr_source_name(enum fm_addr_source source);
/* Parses a source name; -EINVAL when unknown. */
int fm_addr_source_parse(const char *name, enum fm_addr_source *out);
const char *fm_peer_state_name(enum fm_peer_state state);
/* The score of a set of counters: 0 for a new peer, negative for
 * misbehaviour (see docs/REPUTATION.md). */
double fm_reputation_score(const fm_reputation *rep);

/* ---- jobs
 * -------------------------------------------------------------------- */

#define FM_JOB_ID_MAX 64 /* bytes of [A-Za-z0-9._-] */
/* Protocol ceilings; the daemon configures its own, lower, caps. */
#define FM_JOB_INPUT_MAX (16u * 1024 * 1024)
#define FM_JOB_OUTPUT_MAX (16u * 1024 * 1024)
#define FM_JOB_ATTEMPTS_MAX 8
#define FM_JOB_ERROR_MAX 256

enum fm_job_state {
	FM_JOB_QUEUED = 0,
	FM_JOB_DISPATCHED, /* sent to a node, not yet running there */
	FM_JOB_RUNNING,
	FM_JOB_DONE,
	FM_JOB_FAILED,
	FM_JOB_TIMED_OUT,
	FM_JOB_CANCELLED,
	FM_JOB_STATE_COUNT
};

typedef struct fm_job_spec {
	char id[FM_JOB_ID_MAX + 1];
	char service[FM_SERVICE_NAME_MAX + 1];
	const uint8_t *input; /* copied by the core */
	size_t input_len;
	uint64_t timeout_ms; /* whole job, all attempts */
	uint8_t idempotent;  /* may be hedged on a second node */
} fm_job_spec;

typedef struct fm_job_attempt {
	uint8_t node_id[FM_NODE_ID_BYTES];
	uint64_t start_ms; /* node clock */
	uint64_t end_ms;   /* 0 while running */
	uint8_t outcome;   /* enum fm_job_state: RUNNING while unfinished */
	char error[64];
} fm_job_attempt;

typedef struct fm_job_update {
	const char *id;
	enum fm_job_state state;
	const uint8_t *ran_on; /* node ID of the node that ran it, or NULL */
	const uint8_t *output; /* final states only */
	size_t output_len;
	int exit_status;
	const char *error; /* failed: why, and what was tried */
	const fm_job_attempt *attempts;
	size_t attempt_count;
} fm_job_update;

const char *fm_job_state_name(enum fm_job_state state);

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
	/* Run a job here: the core chose this node (a local submission or a
	 * peer's request). The driver runs it without blocking and reports the
	 * end with fm_node_job_finished(). Returns 0, or a negative errno when
	 * it cannot start (-ENOENT: no such service). Required for jobs. */
	int (*job_execute)(void *ctx, const char *job_id, const char *service,
	                   const uint8_t *input, size_t input_len,
	                   uint64_t timeout_ms);
	/* Stop a job started with job_execute (cancelled, or timed out). The
	 * driver still calls fm_node_job_finished() for it. Optional. */
	void (*job_kill)(void *ctx, const char *job_id);
	/* Progress of a job submitted on this node (state changes, attempts,
	 * and the final result). Optional. */
	void (*job_update)(void *ctx, const struct fm_job_update *update);
	/* Log a line. subsystem is a short static string ("node", "dht"). */
	void (*log)(void *ctx, enum fm_log_level level, const char *subsystem,
	            const char *msg);
	/* A peer's entry changed (state, address, record, RTT, reputation) or
	 * was forgotten (forgotten != 0). The driver persists it so a restart
	 * reconnects and keeps reputations. Optional. */
	void (*peer_changed)(void *ctx, const struct fm_peer_info *peer,
	                     int forgotten);
	/* Send an mDNS packet out of interface ifindex: to the group
	 * (224.0.0.251:5353 or [ff02::fb]:5353) or, for unicast replies, to
	 * one address. Optional: without it the node does no mDNS. */
	int (*send_mdns)(void *ctx, uint32_t ifindex, const fm_addr *to,
	                 const uint8_t *buf, size_t len);
} fm_io;

/* ---- the node ------------------------------------------------------------ */

typedef struct fm_node fm_node;

#define FM_NODE_SERVICES_MAX FM_RECORD_SERVICES_MAX

/* How a node chooses where its own jobs run (docs/ROUTING.md). P2C is the
 * production router; the others exist so that fedmesh-sim can compare
 * them on the same scenario. */
enum fm_job_strategy {
	FM_JOB_ROUTE_P2C = 0, /* Peak-EWMA power of two choices (default) */
	FM_JOB_ROUTE_RANDOM,
	FM_JOB_ROUTE_ROUND_ROBIN,
	FM_JOB_ROUTE_LEAST_PENDING,
};
#define FM_JOB_ROUTE_COUNT 4

typedef struct fm_node_config {
	fm_identity identity; /* copied into the node */
	uint8_t federation_key[FM_FEDERATION_KEY_BYTES];
	/* What the node's signed record says. seq must grow across restarts
	 * (the daemon uses its start time in Unix milliseconds). */
	uint64_t record_seq;
	fm_addr advertise[FM_RECORD_ADDRS_MAX];
	uint8_t advertise_count;
	fm_service services[FM_NODE_SERVICES_MAX]; /* offered to peers */
	uint8_t service_count;
	uint32_t capacity;
	/* Services this node runs for its own jobs but never for peers (exec
	 * services the operator did not offer). */
	fm_service local_services[FM_NODE_SERVICES_MAX];
	uint8_t local_service_count;
	/* Local discovery. peer_port is the TCP port sessions listen on (SRV
	 * records, beacons); hostname is this host's name without ".local". */
	uint8_t mdns_enabled;
	uint8_t beacon_enabled;
	uint16_t peer_port;
	char hostname[FM_HOSTNAME_MAX + 1];
	/* The Kademlia DHT (on unless disabled). subnet_max: table entries per
	 * /24 (IPv4) or /48 (IPv6) per bucket; 0 = the default. */
	uint8_t dht_disabled;
	uint8_t dht_subnet_max;
	/* enum fm_job_strategy; 0 (P2C) unless comparing. */
	uint8_t job_strategy;
	/* Inbound sessions not yet authenticated held at once; beyond it the
	 * oldest is closed. 0 = FM_HANDSHAKES_MAX, at most FM_SESSIONS_MAX. */
	uint16_t handshakes_max;
} fm_node_config;

/* Why an inbound datagram was not accepted; one counter each. */
enum fm_drop_reason {
	FM_DROP_OVERSIZE = 0,    /* longer than FM_DATAGRAM_MAX_BYTES */
	FM_DROP_UNAUTHENTICATED, /* not sealed for our federation */
	FM_DROP_REASON_COUNT
};

/* Why a session ended or a frame was refused; one counter each. */
enum fm_session_error {
	FM_SESS_BAD_MAC = 0,   /* first message not keyed by our federation */
	FM_SESS_BAD_HANDSHAKE, /* Noise failure: wrong PSK, tampering */
	FM_SESS_BAD_IDENTITY,  /* binding signature or node ID mismatch */
	FM_SESS_BAD_FRAME,     /* transport frame failed to decrypt */
	FM_SESS_BAD_MESSAGE,   /* decrypted but malformed */
	FM_SESS_BAD_RECORD,    /* record malformed or forged */
	FM_SESS_OVERSIZE,      /* frame over FM_FRAME_MAX_BYTES */
	FM_SESS_HANDSHAKE_TIMEOUT,
	FM_SESS_IDLE_TIMEOUT,
	FM_SESS_LIMIT,      /* too many sessions or handshakes */
	FM_SESS_BANNED,     /* peer is banned */
	FM_SESS_DUPLICATE,  /* a second session to the same peer */
	FM_SESS_SELF,       /* we dialled ourselves */
	FM_SESS_WRONG_NODE, /* another member answers at a known peer's
	                       address: the address is stale */
	FM_SESS_ERROR_COUNT
};

typedef struct fm_node_stats {
	uint64_t datagrams_received;
	uint64_t datagrams_dropped[FM_DROP_REASON_COUNT];
	uint64_t stream_bytes_received;
	uint64_t streams_opened;
	uint64_t streams_closed;
	uint64_t ticks;
	uint64_t handshakes_completed;
	uint64_t session_errors[FM_SESS_ERROR_COUNT];
	uint64_t frames_sent;
	uint64_t frames_received;
	uint64_t rekeys;
	uint64_t records_accepted;
	uint64_t peers_banned;
	uint64_t mdns_received;
	uint64_t mdns_sent;
	uint64_t mdns_malformed;
	uint64_t beacons_sent;
	uint64_t beacons_received;
	uint64_t beacons_invalid;
	uint64_t peers_discovered; /* members found by mDNS or beacon */
	uint64_t jobs_submitted;
	uint64_t jobs_by_state[FM_JOB_STATE_COUNT]; /* final states */
	uint64_t job_attempts;
	uint64_t job_retries;
	uint64_t job_ejections;
	uint64_t jobs_ran_local;    /* submitted here, ran here */
	uint64_t jobs_ran_remote;   /* submitted here, ran on a peer */
	uint64_t jobs_served;       /* peers' jobs run here */
	uint64_t jobs_deduplicated; /* a repeated request answered from cache */
	uint64_t foreign_seen;      /* fedmesh nodes of other federations */
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
const char *fm_session_error_name(enum fm_session_error err);

/* Switches the node to another federation: every session and every peer of
 * the old one is dropped (forgotten through fm_io.peer_changed). */
void fm_node_set_federation(fm_node *node, uint64_t now_ms,
                            const uint8_t key[FM_FEDERATION_KEY_BYTES]);
/* Remembers an address to connect to, of a node not known yet, and dials
 * it (now, or after backoff). -ENOSPC when the peer table is full. */
int fm_node_add_contact(fm_node *node, uint64_t now_ms, const fm_addr *addr,
                        enum fm_addr_source source);
/* Restores a peer the driver persisted. Its reputation (and any ban) carry
 * over; it is dialled when it has a dialable address and is not banned. */
int fm_node_restore_peer(fm_node *node, uint64_t now_ms,
                         const fm_peer_info *info);
/* Peers with a known node ID, in table order; index < fm_node_peer_count().
 * Returns 0, or -ENOENT past the end. */
size_t fm_node_peer_count(const fm_node *node);
int fm_node_peer_get(const fm_node *node, size_t index, fm_peer_info *out);
/* This node's current signed record. */
void fm_node_get_record(const fm_node *node, fm_record *out);

/* Interfaces for local discovery. update adds or changes one (the node
 * probes, announces and queries on it); remove forgets it. */
int fm_node_iface_update(fm_node *node, uint64_t now_ms, const fm_iface *iface);
void fm_node_iface_remove(fm_node *node, uint64_t now_ms, uint32_t ifindex);
/* An mDNS packet arrived on interface ifindex. Untrusted input. */
void fm_node_recv_mdns(fm_node *node, uint64_t now_ms, uint32_t ifindex,
                       const fm_addr *from, const uint8_t *buf, size_t len);
/* Orderly shutdown: mDNS goodbyes (TTL 0) on every interface, CLOSE on
 * every session. The node stays valid; free it afterwards. */
void fm_node_shutdown(fm_node *node, uint64_t now_ms);

/* ---- the DHT
 * ------------------------------------------------------------------ */

#define FM_DHT_BUCKET_COUNT 256

typedef struct fm_dht_stats {
	uint8_t enabled;
	uint32_t table_size; /* routing table entries */
	uint32_t table_live; /* of which not stale */
	uint8_t bucket_fill[FM_DHT_BUCKET_COUNT];
	uint32_t known_addrs; /* addresses kept for re-bootstrapping */
	uint32_t values_stored;
	uint64_t lookups; /* completed, maintenance included */
	uint64_t lookups_succeeded;
	uint64_t lookup_hops_sum;     /* over succeeded lookups */
	uint64_t lookup_messages_sum; /* over all lookups */
	uint64_t last_bootstrap_ms;   /* node clock; 0 = never */
	uint64_t bootstraps;
	uint64_t datagrams_received;
	uint64_t datagrams_sent;
	uint64_t datagrams_dropped;
	uint64_t rpc_timeouts;
} fm_dht_stats;

/* status: 0, or a negative errno (-ETIMEDOUT, -ENOENT, -ECANCELED). The
 * records are valid only during the call. Called once, from inside
 * fm_node_recv_datagram() or fm_node_tick(). */
typedef void (*fm_find_cb)(void *ctx, int status, const fm_record *records,
                           size_t count, uint32_t hops);

void fm_node_dht_stats(const fm_node *node, fm_dht_stats *out);
/* Who offers service `name`: providers' signed records from the DHT.
 * -ENOTCONN with an empty routing table, -EBUSY with too many lookups
 * running, -ENOTSUP when the DHT is disabled. */
int fm_node_find_service(fm_node *node, uint64_t now_ms, const char *name,
                         fm_find_cb cb, void *ctx);
int fm_node_find_record(fm_node *node, uint64_t now_ms,
                        const uint8_t id[FM_NODE_ID_BYTES], fm_find_cb cb,
                        void *ctx);
/* The same lookups, reporting what they cost as well. messages: requests
 * the lookup sent (resends and VALUE pages included); duration_ms: from
 * the call to the result, on the node clock. */
typedef struct fm_find_result {
	int status; /* as for fm_find_cb */
	const fm_record *records;
	size_t count;
	uint32_t hops;
	uint32_t messages;
	uint64_t duration_ms;
} fm_find_result;
typedef void (*fm_find_result_cb)(void *ctx, const fm_find_result *res);
int fm_node_find_service_ex(fm_node *node, uint64_t now_ms, const char *name,
                            fm_find_result_cb cb, void *ctx);
int fm_node_find_record_ex(fm_node *node, uint64_t now_ms,
                           const uint8_t id[FM_NODE_ID_BYTES],
                           fm_find_result_cb cb, void *ctx);
/* Joins the DHT through these addresses (an invite, --bootstrap) without
 * a session: they are kept among the DHT's known addresses (pinned) and
 * challenged at once; a node enters the table when it proves its key.
 * -ENOTSUP when the DHT is disabled, -EINVAL for an unusable address. */
int fm_node_dht_bootstrap(fm_node *node, uint64_t now_ms, const fm_addr *addrs,
                          size_t n);
/* Restores the routing table the core saved through fm_io.persist under
 * "dht/table"; every address is challenged again before use. */
int fm_node_dht_restore(fm_node *node, uint64_t now_ms, const uint8_t *buf,
                        size_t len);

/* Jobs. submit routes the job (this node or a peer offering the service,
 * with failover) and reports through fm_io.job_update. -EEXIST when a job
 * with that ID is active here; -EINVAL for a bad spec. */
int fm_node_job_submit(fm_node *node, uint64_t now_ms, const fm_job_spec *spec);
/* -ENOENT when no such active job. */
int fm_node_job_cancel(fm_node *node, uint64_t now_ms, const char *id);
/* The driver finished a job the core started with fm_io.job_execute. */
void fm_node_job_finished(fm_node *node, uint64_t now_ms, const char *job_id,
                          enum fm_job_state state, int exit_status,
                          const uint8_t *output, size_t output_len,
                          const char *error);

/* Version of the core, "MAJOR.MINOR.PATCH". */
const char *fm_version(void);

#ifdef __cplusplus
}
#endif

#endif /* FEDMESH_FEDMESH_H */
