/* The Kademlia DHT of the core: how a node finds the rest of a federation
 * beyond its LAN from one bootstrap address, and how it answers "who offers
 * service X". A self-contained module: it owns its routing table, its value
 * store, its lookups and its timers, and talks to the world only through the
 * fm_io it is given (send_datagram, random_bytes, persist, log). node.c
 * hands it the datagrams that start with "FMD1" and calls its tick; nothing
 * here reads a clock or touches a socket.
 *
 * docs/PROTOCOL.md ("DHT (UDP)") specifies every message, docs/DHT.md
 * explains the choices; the short version:
 * - 256-bit IDs (node IDs), XOR distance, 256 k-buckets, k = 20, alpha = 3,
 *   a replacement cache per bucket, and the least-recently-seen entry is
 *   pinged before it is evicted (it stays if it answers).
 * - Datagrams are sealed with XChaCha20-Poly1305 under a key derived from
 *   the federation key: non-members can neither read nor forge, and get
 *   nothing back.
 * - A node enters the routing table only after proving that it holds its
 *   key (a signed answer to a fresh CHALLENGE, or a session the node has
 *   authenticated). Nothing is sent to an address that has not proven
 *   itself beyond what was received from it (QUIC's anti-amplification
 *   rule with a factor of 1). Per-source token buckets, and at most
 *   subnet_max entries per /24 or /48 in a bucket.
 * - Values are signed node records: under the node's ID, and as provider
 *   records under BLAKE2b-256("svc/" || name) for every service the record
 *   lists. They expire after FM_DHT_VALUE_TTL_MS; their owner republishes
 *   them every FM_DHT_REPUBLISH_MS; higher seq wins.
 * - At a join the node looks itself up, then refreshes every bucket
 *   farther than its closest neighbour, so its table fills at once.
 * - An empty table re-bootstraps, with backoff, from every address the DHT
 *   has ever known, and so does a thin one (fewer than
 *   FM_DHT_REBOOTSTRAP_LIVE_MIN live entries) or one whose lookups nobody
 *   answers; the known addresses persist under "dht/table". */
#ifndef FM_CORE_DHT_H
#define FM_CORE_DHT_H

#include <stddef.h>
#include <stdint.h>

#include "fedmesh/fedmesh.h"

/* ---- parameters ------------------------------------------------------- */

#define FM_DHT_ID_BYTES FM_NODE_ID_BYTES
#define FM_DHT_BUCKETS 256     /* one per bit of the ID */
#define FM_DHT_K 20            /* bucket size, replication, lookup result */
#define FM_DHT_ALPHA 3         /* lookup requests in flight */
#define FM_DHT_REPLACEMENTS 10 /* replacement cache per bucket */
/* Nodes are challenged for a full bucket's replacement cache only while
 * it holds fewer than this (sessions may fill it further). */
#define FM_DHT_REPLACEMENTS_CHALLENGE 3
/* An RPC that got no answer after this long is sent again (same txid, so
 * a late answer to an earlier attempt still counts), up to
 * FM_DHT_RPC_ATTEMPTS times in all, then counts as failed: a dead node is
 * given up after 3 s, and one lost datagram costs 1 s, not a failure. */
#define FM_DHT_RPC_TIMEOUT_MS 1000
#define FM_DHT_RPC_ATTEMPTS 3
/* A lookup request older than this stops holding one of the alpha slots,
 * so one slow node does not stall a lookup (its late answer still
 * counts). */
#define FM_DHT_RPC_SLOW_MS 600
#define FM_DHT_RPCS_MAX 512 /* outstanding RPCs */
/* Failed RPCs (each already FM_DHT_RPC_ATTEMPTS sends) after which an
 * entry is stale: replaced as soon as a proven replacement exists, not
 * handed to others, tried last by our own lookups, revived by any answer.
 * Stale entries are not dropped, so an outage cannot empty the table. */
#define FM_DHT_FAILS_MAX 1
/* An entry not heard from for this long is PINGed (BEP 5's "questionable"
 * nodes), at most FM_DHT_CHECKS_MAX at a time: dead entries are found
 * before they are handed to others. */
#define FM_DHT_CHECK_AFTER_MS (15ULL * 60 * 1000)
#define FM_DHT_CHECKS_MAX 4
/* A bucket that no lookup has touched for this long is refreshed by a
 * lookup of a random ID in its range. */
#define FM_DHT_REFRESH_MS (60ULL * 60 * 1000)
#define FM_DHT_SELF_LOOKUP_MS (15ULL * 60 * 1000)
#define FM_DHT_RANDOM_WALK_MS (5ULL * 60 * 1000)
#define FM_DHT_MAINT_LOOKUPS_MAX 2      /* maintenance lookups at once */
#define FM_DHT_LOOKUPS_MAX 32           /* lookups at once, all kinds */
#define FM_DHT_LOOKUP_CANDIDATES_MAX 64 /* shortlist of one lookup */
#define FM_DHT_LOOKUP_VALUES_MAX 64     /* records one lookup returns */
#define FM_DHT_LOOKUP_MESSAGES_MAX 256  /* requests one lookup may send */
#define FM_DHT_LOOKUP_TIMEOUT_MS 60000  /* a lookup ends by then */
#define FM_DHT_VALUE_PAGES_MAX 4        /* VALUE pages asked of one node */
/* Values: signed node records and provider records. */
#define FM_DHT_VALUE_TTL_MS (60ULL * 60 * 1000)
#define FM_DHT_REPUBLISH_MS (20ULL * 60 * 1000)
/* After a (re)join or a new record, the owner republishes at 1 min, then
 * doubling up to FM_DHT_REPUBLISH_MS: in a federation that is still
 * growing (everyone joining at once), the k closest nodes to a key change
 * under the first copies, and the records follow them. */
#define FM_DHT_REPUBLISH_FIRST_MS (60ULL * 1000)
#define FM_DHT_STORE_MAX_PER_KEY 128
#define FM_DHT_STORE_MAX_TOTAL 8192
/* The tick sweeps expired values at the first expiry, batched: at least
 * this long after the previous sweep, and no timer at all while nothing is
 * stored (a FIND_VALUE answer also sweeps first). */
#define FM_DHT_STORE_SWEEP_MS 60000
/* Per-source token buckets (an IPv4 /32, an IPv6 /64). */
#define FM_DHT_RATE_PER_SEC 50
#define FM_DHT_RATE_BURST 200
#define FM_DHT_RATE_SOURCES_MAX 512
/* Entries per /24 (IPv4) or /48 (IPv6) in one bucket. */
#define FM_DHT_SUBNET_MAX 2
/* Addresses whose proof state and send credit are remembered. */
#define FM_DHT_ADDRS_MAX 1024
#define FM_DHT_PROVEN_TTL_MS (10ULL * 60 * 1000)
#define FM_DHT_CREDIT_MAX_BYTES (4 * FM_DATAGRAM_MAX_BYTES)
#define FM_DHT_CREDIT_TTL_MS 30000
#define FM_DHT_CHALLENGES_MAX 64 /* CHALLENGEs in flight */
/* Every address ever known (bootstrap, table), for re-bootstrapping. */
#define FM_DHT_KNOWN_MAX 512
#define FM_DHT_BOOTSTRAP_BATCH 32 /* CHALLENGEs per bootstrap round */
#define FM_DHT_BOOTSTRAP_BACKOFF_MIN_MS 1000
#define FM_DHT_BOOTSTRAP_BACKOFF_MAX_MS (5ULL * 60 * 1000)
/* A joined node re-bootstraps too (from the known addresses not in its
 * table, with the same backoff) when it has fewer live entries than this,
 * or after this many lookups in a row that no node answered: a table of a
 * few dead entries, or an island of nodes that know only each other,
 * does not stay cut off. Checked this often while all is well. */
#define FM_DHT_REBOOTSTRAP_LIVE_MIN 4
#define FM_DHT_REBOOTSTRAP_EMPTY_LOOKUPS 3
#define FM_DHT_BOOTSTRAP_CHECK_MS 30000
#define FM_DHT_PERSIST_MS 60000 /* a changed table is saved this often */
#define FM_DHT_PERSIST_KEY "dht/table"
/* [1, [[id, addr, flags], ...]]: headers, then per contact a fixarray,
 * a bin8 ID, a bin8 address and a one-byte flags. */
#define FM_DHT_PERSIST_MAX_BYTES \
	(16 + FM_DHT_KNOWN_MAX * \
	              (1 + 2 + FM_DHT_ID_BYTES + 2 + FM_DHT_ADDR6_BYTES + 1))

/* ---- wire ------------------------------------------------------------- */

#define FM_DHT_MAGIC "FMD1"
#define FM_DHT_MAGIC_BYTES 4
#define FM_DHT_NONCE_BYTES 24 /* XChaCha20-Poly1305 */
#define FM_DHT_TAG_BYTES 16
#define FM_DHT_SEAL_OVERHEAD \
	(FM_DHT_MAGIC_BYTES + FM_DHT_NONCE_BYTES + FM_DHT_TAG_BYTES)
#define FM_DHT_BODY_MAX_BYTES (FM_DATAGRAM_MAX_BYTES - FM_DHT_SEAL_OVERHEAD)
#define FM_DHT_KEY_LABEL "fedmesh-dht-v1"
#define FM_DHT_PROOF_LABEL "fedmesh-dht-proof-v1"
#define FM_DHT_SVC_PREFIX "svc/"
#define FM_DHT_TXID_BYTES 8
#define FM_DHT_CHALLENGE_NONCE_BYTES 16
#define FM_DHT_ADDR4_BYTES 6     /* compact address: IPv4, port */
#define FM_DHT_ADDR6_BYTES 18    /* IPv6, port */
#define FM_DHT_MSG_VALUES_MAX 16 /* records in one VALUE */
/* Sealed size of a PROOF, which is what a CHALLENGE is padded to so that
 * the PROOF is never larger than the CHALLENGE that asked for it:
 * [10, txid, sender, public_key, signature]. */
#define FM_DHT_PROOF_BYTES                                        \
	(FM_DHT_SEAL_OVERHEAD + 1 + 1 + (2 + FM_DHT_TXID_BYTES) + \
	 (2 + FM_DHT_ID_BYTES) + (2 + FM_PUBLIC_KEY_BYTES) +      \
	 (2 + FM_SIGNATURE_BYTES))
/* Largest NODES: k IPv6 contacts (fixarray, bin8 ID, bin8 address). */
#define FM_DHT_NODES_MAX_BYTES                                               \
	(FM_DHT_SEAL_OVERHEAD + 1 + 1 + (2 + FM_DHT_TXID_BYTES) +            \
	 (2 + FM_DHT_ID_BYTES) + 3 +                                         \
	 FM_DHT_K * (1 + (2 + FM_DHT_ID_BYTES) + (2 + FM_DHT_ADDR6_BYTES)) + \
	 1)

enum fm__dht_type {
	FM__DHT_PING = 1,
	FM__DHT_PONG = 2,
	FM__DHT_FIND_NODE = 3,
	FM__DHT_NODES = 4,
	FM__DHT_FIND_VALUE = 5,
	FM__DHT_VALUE = 6,
	FM__DHT_STORE = 7,
	FM__DHT_STORED = 8,
	FM__DHT_CHALLENGE = 9,
	FM__DHT_PROOF = 10,
};

/* NODES and VALUE flags. */
#define FM__DHT_F_TRUNCATED 1u /* cut to the request's size: ask padded */
#define FM__DHT_F_MORE 2u      /* VALUE: more records after the last one */

/* STORED status. */
enum fm__dht_store_status {
	FM__DHT_STORE_OK = 0,
	FM__DHT_STORE_INVALID = 1, /* bad record, or not one for this key */
	FM__DHT_STORE_FULL = 2,    /* a storage limit */
	FM__DHT_STORE_OLDER = 3,   /* a higher seq of that node is stored */
};

typedef struct fm__dht_contact {
	uint8_t id[FM_DHT_ID_BYTES];
	fm_addr addr;
} fm__dht_contact;

typedef struct fm__dht_value_ref {
	const uint8_t *record; /* points into the decoded buffer */
	size_t record_len;
	uint64_t ttl_ms;
} fm__dht_value_ref;

/* One DHT message, decoded or to encode; which fields count depends on
 * type (docs/PROTOCOL.md, "Messages" under "DHT (UDP)"). */
typedef struct fm__dht_msg {
	uint8_t type; /* enum fm__dht_type */
	uint8_t txid[FM_DHT_TXID_BYTES];
	uint8_t sender[FM_DHT_ID_BYTES];
	uint8_t key[FM_DHT_ID_BYTES]; /* FIND_NODE target, FIND_VALUE, STORE */
	uint8_t has_cursor;           /* FIND_VALUE */
	uint8_t cursor[FM_DHT_ID_BYTES];
	uint8_t flags;  /* NODES, VALUE */
	uint8_t status; /* STORED */
	fm__dht_contact contacts[FM_DHT_K];
	uint8_t contact_count;
	fm__dht_value_ref values[FM_DHT_MSG_VALUES_MAX];
	uint8_t value_count;
	const uint8_t *record; /* STORE */
	size_t record_len;
	uint64_t ttl_ms;                             /* STORE */
	uint8_t nonce[FM_DHT_CHALLENGE_NONCE_BYTES]; /* CHALLENGE */
	fm_addr observed; /* CHALLENGE: the receiver as the sender sees it */
	uint8_t public_key[FM_PUBLIC_KEY_BYTES]; /* PROOF */
	uint8_t signature[FM_SIGNATURE_BYTES];   /* PROOF */
	size_t pad_len; /* requests: padding bytes (encode: wanted) */
} fm__dht_msg;

/* Codec. encode: -EINVAL for a bad field, -ENOSPC when it does not fit cap.
 * decode: -EBADMSG when malformed, -ENOTSUP for a well-formed body of an
 * unknown type. */
int fm__dht_msg_encode(const fm__dht_msg *m, uint8_t *out, size_t cap,
                       size_t *len);
int fm__dht_msg_decode(const uint8_t *buf, size_t len, fm__dht_msg *out);
/* Compact address: 6 bytes (IPv4) or 18 (IPv6), port big-endian. */
int fm__dht_addr_encode(const fm_addr *a, uint8_t out[FM_DHT_ADDR6_BYTES],
                        size_t *len);
int fm__dht_addr_decode(const uint8_t *buf, size_t len, fm_addr *out);

/* Sealing: "FMD1" || nonce || XChaCha20-Poly1305(key, nonce, ad = "FMD1",
 * body). */
void fm__dht_derive_key(const uint8_t federation_key[FM_FEDERATION_KEY_BYTES],
                        uint8_t out[32]);
int fm__dht_seal(const uint8_t key[32], const uint8_t nonce[FM_DHT_NONCE_BYTES],
                 const uint8_t *body, size_t body_len, uint8_t *out, size_t cap,
                 size_t *len);
/* -EBADMSG when the datagram is not one sealed under key. */
int fm__dht_open(const uint8_t key[32], const uint8_t *buf, size_t len,
                 uint8_t *body, size_t cap, size_t *body_len);
/* 1 when buf starts with "FMD1": node.c hands such datagrams to the DHT. */
int fm__dht_is_datagram(const uint8_t *buf, size_t len);

/* ---- IDs ---------------------------------------------------------------- */

/* Bucket of id seen from self: the number of leading bits they share
 * (0: the far half of the ID space; 255: the nearest). -1 when id == self.
 */
int fm__dht_bucket_index(const uint8_t self[FM_DHT_ID_BYTES],
                         const uint8_t id[FM_DHT_ID_BYTES]);
/* <0, 0, >0 as a is closer to target than b, as close, farther. */
int fm__dht_distance_cmp(const uint8_t target[FM_DHT_ID_BYTES],
                         const uint8_t a[FM_DHT_ID_BYTES],
                         const uint8_t b[FM_DHT_ID_BYTES]);
void fm__dht_xor(const uint8_t a[FM_DHT_ID_BYTES],
                 const uint8_t b[FM_DHT_ID_BYTES],
                 uint8_t out[FM_DHT_ID_BYTES]);
/* BLAKE2b-256("svc/" || name): the key of a service's provider records.
 * -EINVAL for a name that is not 1..FM_SERVICE_NAME_MAX bytes. */
int fm__dht_service_key(const char *name, uint8_t key[FM_DHT_ID_BYTES]);
/* 1 for loopback, RFC 1918, CGNAT, link-local and IPv6 ULA/link-local. */
int fm__dht_addr_is_private(const fm_addr *a);

/* ---- the DHT ------------------------------------------------------------ */

typedef struct fm__dht fm__dht;

typedef struct fm__dht_config {
	fm_identity identity; /* copied; wiped on free */
	uint8_t federation_key[FM_FEDERATION_KEY_BYTES];
	/* The node's signed record, published under its ID and under the key
	 * of every service it lists. NULL: publish nothing. */
	const fm_record *record;
	/* 0 means the default for each of these. */
	uint8_t subnet_max;          /* FM_DHT_SUBNET_MAX */
	uint8_t subnet_cap_private;  /* 1: cap private ranges too */
	uint8_t rate_limit_loopback; /* 1: rate-limit loopback too */
	uint32_t rate_per_sec;       /* FM_DHT_RATE_PER_SEC */
	uint32_t rate_burst;         /* FM_DHT_RATE_BURST */
} fm__dht_config;

enum fm__dht_drop {
	FM__DHT_DROP_BAD_SEAL = 0, /* not sealed for this federation */
	FM__DHT_DROP_MALFORMED,    /* opened, but the body is malformed */
	FM__DHT_DROP_UNKNOWN_TYPE,
	FM__DHT_DROP_RATE_LIMITED,
	FM__DHT_DROP_SELF,      /* claims our own ID */
	FM__DHT_DROP_UNMATCHED, /* an answer to nothing we asked */
	FM__DHT_DROP_MISMATCH,  /* an answer from the wrong address or ID */
	FM__DHT_DROP_NO_CREDIT, /* an answer not sent: anti-amplification */
	FM__DHT_DROP_COUNT
};

const char *fm__dht_drop_name(enum fm__dht_drop d);

typedef struct fm__dht_stats {
	uint32_t table_size; /* entries in the buckets */
	uint32_t table_live; /* of which not stale */
	uint32_t replacements;
	uint8_t bucket_fill[FM_DHT_BUCKETS];
	uint32_t known_addrs;
	uint32_t values_stored;
	/* Completed lookups of every kind, maintenance included. hops: the
	 * longest chain of answers that led to the result (1 = answered by a
	 * node from our own table); messages: requests sent. */
	uint64_t lookups;
	uint64_t lookups_succeeded;
	uint64_t lookup_hops_sum;     /* over succeeded lookups */
	uint64_t lookup_messages_sum; /* over all lookups */
	uint64_t last_bootstrap_ms;   /* node clock; 0 = never */
	uint64_t bootstraps;          /* bootstrap rounds */
	uint64_t datagrams_received;
	uint64_t datagrams_sent;
	uint64_t dropped[FM__DHT_DROP_COUNT];
	uint64_t answers_truncated;
	uint64_t rpc_timeouts;
	uint64_t challenges_sent;
	uint64_t proofs_sent;
	uint64_t proofs_ok;
	uint64_t proofs_bad;
	uint64_t inserts;
	uint64_t evictions;
	uint64_t lrs_pings;
	uint64_t subnet_refused;
	uint64_t stores_received;
	uint64_t stores_accepted;
	uint64_t stores_sent;
	uint64_t stores_acked;
} fm__dht_stats;

enum fm__dht_lookup_kind {
	FM__DHT_LOOKUP_NODES = 0, /* FIND_NODE: the k closest to a target */
	FM__DHT_LOOKUP_RECORD,    /* FIND_VALUE: a node's signed record */
	FM__DHT_LOOKUP_SERVICE,   /* FIND_VALUE: the providers of a service */
};

/* What a lookup found. status: 0 success, -ENOENT nothing found (no node
 * answered, or no value), -ECANCELED the DHT was reset or freed. closest:
 * the k closest nodes that answered, nearest first. records: NODES: none;
 * RECORD: the record (highest seq seen); SERVICE: the providers, one
 * record per node, highest seq. Pointers are valid during the callback
 * only, and may be NULL when their count is 0. */
typedef struct fm__dht_result {
	int status;
	uint8_t kind; /* enum fm__dht_lookup_kind */
	uint8_t target[FM_DHT_ID_BYTES];
	const fm__dht_contact *closest;
	size_t closest_count;
	const fm_record *records;
	size_t record_count;
	uint32_t hops;
	uint32_t messages;
	uint64_t duration_ms;
} fm__dht_result;

typedef void (*fm__dht_lookup_cb)(void *ctx, const fm__dht_result *res);

/* Creates a DHT. io is copied (send_datagram and random_bytes required;
 * persist and log optional); io->ctx must outlive the DHT. */
int fm__dht_new(const fm__dht_config *cfg, const fm_io *io, uint64_t now_ms,
                fm__dht **out);
/* Pending lookups complete with -ECANCELED first. Accepts NULL. */
void fm__dht_free(fm__dht *dht);

/* A datagram that starts with "FMD1" (fm__dht_is_datagram). Untrusted:
 * whatever is not accepted is dropped and counted, never answered. */
void fm__dht_recv(fm__dht *dht, uint64_t now_ms, const fm_addr *from,
                  const uint8_t *buf, size_t len);
/* Runs due timers; returns the next deadline or FM_DEADLINE_NONE. */
uint64_t fm__dht_tick(fm__dht *dht, uint64_t now_ms);

/* Addresses to join through (invite, --bootstrap, persisted contacts):
 * remembered among the known addresses (pinned: never forgotten) and
 * challenged now. */
int fm__dht_bootstrap(fm__dht *dht, uint64_t now_ms, const fm_addr *addrs,
                      size_t count);
/* A node the caller has authenticated (an established session) at an
 * address it dialled: no CHALLENGE needed. It enters its bucket, or, when
 * the bucket is full, the replacement cache (and the bucket's
 * least-recently-seen entry is PINGed). -EPERM over the subnet cap,
 * -EEXIST when another ID holds the address. */
int fm__dht_add_proven(fm__dht *dht, uint64_t now_ms,
                       const uint8_t id[FM_DHT_ID_BYTES], const fm_addr *addr);
/* An address that may be a node (id may be NULL when unknown): challenged,
 * and enters the table if it proves its key. 0 also when the table has no
 * room for it (nothing sent); -EALREADY when a CHALLENGE to it is in
 * flight, -EBUSY when FM_DHT_CHALLENGES_MAX are. */
int fm__dht_add_candidate(fm__dht *dht, uint64_t now_ms, const uint8_t *id,
                          const fm_addr *addr);

/* The node's record changed (new addresses, services): republished now.
 * NULL stops publishing. */
int fm__dht_set_record(fm__dht *dht, uint64_t now_ms, const fm_record *rec);
/* Another federation: the table, the store, the known addresses and every
 * lookup (completed with -ECANCELED) are dropped. */
void fm__dht_set_federation(fm__dht *dht, uint64_t now_ms,
                            const uint8_t key[FM_FEDERATION_KEY_BYTES]);

/* Lookups. Each returns 0 and calls cb exactly once later (from recv or
 * tick), or returns -ENOTCONN when the table is empty (a bootstrap is
 * scheduled), -EBUSY when FM_DHT_LOOKUPS_MAX are running, -EINVAL. */
int fm__dht_find_node(fm__dht *dht, uint64_t now_ms,
                      const uint8_t target[FM_DHT_ID_BYTES],
                      fm__dht_lookup_cb cb, void *ctx);
int fm__dht_find_record(fm__dht *dht, uint64_t now_ms,
                        const uint8_t node_id[FM_DHT_ID_BYTES],
                        fm__dht_lookup_cb cb, void *ctx);
int fm__dht_find_service(fm__dht *dht, uint64_t now_ms, const char *name,
                         fm__dht_lookup_cb cb, void *ctx);

/* The table's entries closest to target (stale ones last), nearest first.
 * Returns how many were written. */
size_t fm__dht_closest(const fm__dht *dht,
                       const uint8_t target[FM_DHT_ID_BYTES],
                       fm__dht_contact *out, size_t max);
void fm__dht_get_stats(const fm__dht *dht, fm__dht_stats *out);

/* The known addresses and table as "dht/table" stores them (docs/DHT.md,
 * "Joining, re-joining, persistence"). fm__dht_save writes them;
 * fm__dht_persist hands them to fm_io.persist (also done by the tick every
 * FM_DHT_PERSIST_MS while something changed); fm__dht_restore, after a restart,
 * takes them back and challenges them, so the node rejoins without a bootstrap
 * address. */
int fm__dht_save(const fm__dht *dht, uint8_t *out, size_t cap, size_t *len);
int fm__dht_persist(fm__dht *dht, uint64_t now_ms);
int fm__dht_restore(fm__dht *dht, uint64_t now_ms, const uint8_t *buf,
                    size_t len);

#endif
