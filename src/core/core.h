/* Internal declarations shared by the core's files (fm__ prefix). Nothing
 * here is for the drivers; they use include/fedmesh/fedmesh.h only. */
#ifndef FM_CORE_H
#define FM_CORE_H

#include <stdarg.h>

#include "dht.h"
#include "fedmesh/fedmesh.h"
#include "noise.h"

/* Longest log line the core formats; longer lines are truncated. */
#define FM__LOG_LINE_MAX 512

/* ---- sessions (session.c) ----------------------------------------------- */

/* Noise pattern and prologue of every fedmesh session. */
#define FM__SESSION_PROTOCOL "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"
#define FM__SESSION_PROLOGUE "fedmesh/1"
/* Domain separation strings of the keyed hashes and signatures. */
#define FM__MAC1_LABEL "fedmesh-mac1-v1"
#define FM__BINDING_LABEL "fedmesh-noise-static-v1"
#define FM__MAC1_BYTES 16

/* A frame is a 2-byte big-endian length and that many bytes: a Noise
 * message (the first one prefixed by its mac1). */
#define FM_FRAME_HEADER_BYTES 2
#define FM_FRAME_MAX_BYTES 65535
/* The first handshake message: mac1, the ephemeral key, an empty payload;
 * anything longer is refused before any work is done. */
#define FM__MSG1_MAX_BYTES (FM__MAC1_BYTES + FM__NOISE_DH_LEN + 32)

#define FM_SESSIONS_MAX 256  /* concurrent sessions, any state */
#define FM_HANDSHAKES_MAX 32 /* inbound sessions not yet authenticated */
#define FM_PEERS_MAX 1024    /* peer table entries, contacts included */
#define FM_SESSION_HANDSHAKE_TIMEOUT_MS 10000
#define FM_SESSION_KEEPALIVE_MS 10000
#define FM_SESSION_IDLE_TIMEOUT_MS 35000
#define FM_SESSION_REKEY_MESSAGES (1ULL << 20)
#define FM_SESSION_REKEY_MS (10ULL * 60 * 1000)
#define FM_RTT_EWMA_WEIGHT 0.2 /* weight of a new sample */

/* Reconnects: exponential backoff with +-25 % jitter. */
#define FM_DIAL_BACKOFF_MIN_MS 1000
#define FM_DIAL_BACKOFF_MAX_MS (5 * 60 * 1000)
/* Restored peers are dialled within this window, not all at once. */
#define FM_DIAL_RESTORE_SPREAD_MS 1000
/* After this many dials in a row failed node-wide, the first session that
 * succeeds means the network is back: peers waiting in backoff are redialled
 * (spread over FM_DIAL_RESTORE_SPREAD_MS) instead of after up to 5 min. */
#define FM_DIAL_NETWORK_BACK_FAILURES 3
/* An RTT change alone is handed to fm_io.peer_changed this rarely. */
#define FM_PEER_PERSIST_RTT_MS 60000

/* ---- reputation (peer.c; docs/REPUTATION.md) ---------------------------- */
#define FM_REPUTATION_HALF_LIFE_MS (60ULL * 60 * 1000)
#define FM_REPUTATION_W_SUCCESS 0.5
#define FM_REPUTATION_SUCCESS_CAP 20.0 /* good behaviour cannot bank more */
#define FM_REPUTATION_W_FAILURE 2.0
#define FM_REPUTATION_W_TIMEOUT 1.0
#define FM_REPUTATION_W_INVALID 25.0
#define FM_REPUTATION_BAN_SCORE (-30.0)
#define FM_REPUTATION_BAN_BASE_MS (60ULL * 1000)
#define FM_REPUTATION_BAN_MAX_MS (24ULL * 60 * 60 * 1000)

enum fm__rep_event {
	FM__REP_SUCCESS = 0,
	FM__REP_FAILURE,
	FM__REP_TIMEOUT,
	FM__REP_INVALID,
};

enum fm__session_state {
	FM__SESS_DIALING = 0, /* stream_open issued, not connected yet */
	FM__SESS_HANDSHAKE,   /* Noise messages in flight */
	FM__SESS_OPEN,        /* authenticated transport */
};

struct fm__session {
	uint64_t stream_id;
	uint8_t state; /* enum fm__session_state */
	uint8_t initiator;
	uint8_t has_expected_id;
	uint8_t expected_id[FM_NODE_ID_BYTES];
	uint8_t remote_id[FM_NODE_ID_BYTES]; /* once authenticated */
	int peer;                            /* peer table index or -1 */
	fm_addr remote;
	fm__noise_handshake *hs; /* only during the handshake */
	fm__noise_cipher send, recv;
	uint8_t *rx; /* reassembly buffer, grown on demand */
	size_t rx_len, rx_cap;
	uint64_t created_ms;
	uint64_t last_rx_ms;
	uint64_t next_ping_ms;
	uint64_t ping_seq;
	uint64_t msg1_sent_ms; /* initiator: handshake RTT sample */
	uint64_t sent_since_rekey;
	uint64_t rekey_at_ms;
};

struct fm__peer {
	fm_peer_info info;
	uint8_t id_known; /* 0: a contact, an address not yet authenticated */
	int session;      /* session index or -1 */
	uint32_t dial_failures;
	uint32_t dial_cursor; /* which address to try next */
	uint64_t next_dial_ms;
	uint64_t ban_until_ms;
	uint64_t rep_updated_ms; /* when the counters were last decayed */
	uint64_t persisted_ms;   /* last fm_io.peer_changed for this entry */
};

struct fm__disc; /* local discovery, mdns.h */
struct fm__jobs; /* jobs and the work they run for peers, jobs.h */

struct fm_node {
	fm_io io;
	fm_identity identity;
	uint8_t x25519_secret[FM__NOISE_DH_LEN]; /* Noise static key */
	uint8_t x25519_public[FM__NOISE_DH_LEN];
	uint8_t binding_sig[FM_SIGNATURE_BYTES]; /* identity signs the above */
	uint8_t federation_key[FM_FEDERATION_KEY_BYTES];
	uint8_t mac1_key[32];
	fm_record record;
	uint8_t record_bytes[FM_RECORD_MAX_BYTES];
	size_t record_len;
	uint64_t started_ms;
	uint64_t last_now_ms;
	struct fm__session *sessions[FM_SESSIONS_MAX];
	int sessions_used; /* non-NULL slots of sessions[] */
	struct fm__peer *peers;
	size_t peer_count;
	size_t peer_cap;
	uint32_t dial_failures_in_row; /* node-wide, reset by a success */
	struct fm__disc *disc; /* NULL when mDNS and the beacon are off */
	fm__dht *dht;          /* NULL when cfg.dht_disabled */
	uint8_t shut_down;     /* fm_node_shutdown() ran */
	/* cfg.handshakes_max, 0 replaced by FM_HANDSHAKES_MAX (session.c) */
	uint16_t handshakes_max;
	struct fm__jobs *jobs;
	fm_node_stats stats;
};

void fm__log(const fm_node *node, enum fm_log_level level,
             const char *subsystem, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* session.c */
int fm__session_keys_init(fm_node *node);
void fm__session_set_federation(fm_node *node);
int fm__session_dial(fm_node *node, uint64_t now_ms, int peer);
void fm__session_close(fm_node *node, uint64_t now_ms, int index,
                       enum fm_session_error why, int notify_driver);
void fm__session_close_all(fm_node *node, uint64_t now_ms, const char *reason);
uint64_t fm__session_tick(fm_node *node, uint64_t now_ms);
void fm__sessions_free(fm_node *node);
struct fm__msg;
/* Sends one message on open session `index` (job messages up to
 * FM__WIRE_MSG_MAX_BYTES). -ENOTCONN when it is not open. */
int fm__session_send(fm_node *node, int index, const struct fm__msg *m);

/* record.c: 1..FM_SERVICE_NAME_MAX bytes of [a-z0-9_.-]. */
int fm__service_name_ok(const char *name, size_t len);

/* peer.c */
int fm__peer_find(const fm_node *node, const uint8_t id[FM_NODE_ID_BYTES]);
int fm__peer_find_addr(const fm_node *node, const fm_addr *addr);
int fm__peer_new(fm_node *node, uint64_t now_ms);
void fm__peer_forget(fm_node *node, int index);
void fm__peer_forget_all(fm_node *node);
int fm__peer_add_addr(struct fm__peer *p, const fm_addr *addr,
                      enum fm_addr_source source);
int fm__peer_dialable(const struct fm__peer *p);
/* Forgets one address of a peer (it turned out to be stale). */
void fm__peer_remove_addr(struct fm__peer *p, const fm_addr *addr);
void fm__peer_changed(fm_node *node, uint64_t now_ms, int index);
void fm__peer_set_error(struct fm__peer *p, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Records an event; may ban the peer (closing its session). */
void fm__peer_reputation(fm_node *node, uint64_t now_ms, int index,
                         enum fm__rep_event ev);
void fm__peer_schedule_dial(fm_node *node, uint64_t now_ms, int index,
                            int failed);
void fm__peer_record_rtt(struct fm__peer *p, double sample_ms);
uint64_t fm__peer_tick(fm_node *node, uint64_t now_ms);
/* Connectivity is back: redial every peer waiting in backoff soon. */
void fm__peer_network_back(fm_node *node, uint64_t now_ms);
uint64_t fm__random_u64(const fm_node *node);
int fm__addr_equal(const fm_addr *a, const fm_addr *b);

#endif
