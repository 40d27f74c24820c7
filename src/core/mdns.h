/* Local discovery inside the core: mDNS / DNS-SD (mdns.c) and the encrypted
 * UDP beacon (beacon.c), sharing one per-node state (struct fm__disc) and
 * one per-interface state (struct fm__disc_iface). Both mechanisms only
 * feed addresses to the peer table; membership is proven by the session
 * handshake, never by what discovery saw. Every limit below is named so the
 * memory of a node with discovery on is known in advance: one
 * struct fm__disc, plus one struct fm__disc_iface per interface the driver
 * reports (at most FM_IFACES_MAX). */
#ifndef FM_CORE_MDNS_H
#define FM_CORE_MDNS_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "dns.h"

/* ---- mDNS timing (RFC 6762) ------------------------------------------- */
#define FM_MDNS_TTL_HOST_S 120        /* A, AAAA, SRV (RFC 6762 section 10) */
#define FM_MDNS_TTL_SERVICE_S 4500    /* PTR, TXT */
#define FM_MDNS_TTL_LEGACY_MAX_S 10   /* replies to legacy unicast queries */
#define FM_MDNS_PROBE_WAIT_MAX_MS 250 /* random delay before the 1st probe */
#define FM_MDNS_PROBE_COUNT 3
#define FM_MDNS_PROBE_INTERVAL_MS 250
#define FM_MDNS_ANNOUNCE_COUNT 2
#define FM_MDNS_ANNOUNCE_INTERVAL_MS 1000
/* Shared answers (PTR) wait a random 20-120 ms so answers of many
 * responders do not collide (RFC 6762 section 6). */
#define FM_MDNS_SHARED_DELAY_MIN_MS 20
#define FM_MDNS_SHARED_DELAY_MAX_MS 120
/* At most one multicast of a record per second per interface; answers to
 * probes may repeat after 250 ms (RFC 6762 section 6). */
#define FM_MDNS_RECORD_INTERVAL_MS 1000
#define FM_MDNS_PROBE_ANSWER_INTERVAL_MS 250
/* Querier: first query 20-120 ms after an interface appears, then 1 s,
 * 2 s, 4 s ... apart up to one hour (RFC 6762 section 5.2). */
#define FM_MDNS_QUERY_DELAY_MIN_MS 20
#define FM_MDNS_QUERY_DELAY_MAX_MS 120
#define FM_MDNS_QUERY_FIRST_INTERVAL_MS 1000
#define FM_MDNS_QUERY_MAX_INTERVAL_MS (60u * 60 * 1000)
/* Resolving an instance whose SRV, TXT or address is missing: 1 s, 2 s,
 * ... up to a minute, while its PTR lives. */
#define FM_MDNS_RESOLVE_FIRST_INTERVAL_MS 1000
#define FM_MDNS_RESOLVE_MAX_INTERVAL_MS 60000
/* A goodbye (TTL 0) or a cache-flush leaves the record one more second
 * (RFC 6762 sections 10.1 and 10.2). */
#define FM_MDNS_GOODBYE_EXPIRE_MS 1000
#define FM_MDNS_FLUSH_GRACE_MS 1000
/* More than 15 conflicts in 10 s: wait 5 s before each probe (RFC 6762
 * section 8.1), so two misbehaving hosts cannot make us flood the link. */
#define FM_MDNS_CONFLICT_BURST 15
#define FM_MDNS_CONFLICT_WINDOW_MS 10000
#define FM_MDNS_CONFLICT_BACKOFF_MS 5000
#define FM_MDNS_RENAME_MAX 9999 /* " (9999)" is as far as we count */

/* ---- mDNS sizes --------------------------------------------------------- */
#define FM_MDNS_INSTANCES_MAX 32 /* cached fedmesh instances per interface */
#define FM_MDNS_HOSTS_MAX 32     /* cached SRV targets per interface */
#define FM_MDNS_HOST_ADDRS_MAX 8 /* addresses kept per cached host */
#define FM_MDNS_NAME_MAX 127     /* longer names are not ours: ignored */
#define FM_MDNS_LABEL_MAX 63     /* our instance label, suffix included */
#define FM_MDNS_TX_MAX 1400      /* largest packet we build */
/* Room one more known-answer PTR needs in a query, with margin; a query
 * that would overflow carries fewer known answers. */
#define FM_MDNS_KNOWN_ANSWER_ROOM 120
#define FM_MDNS_TXT_VERSION "v=1"
#define FM_MDNS_META_QUERY "_services._dns-sd._udp.local"
#define FM_MDNS_INSTANCE_PREFIX "fedmesh-"
#define FM_MDNS_INSTANCE_ID_HEX 12 /* hex digits of the node ID in it */

/* Federation tag in TXT "fed=": the first FM_MDNS_TAG_BYTES of
 * BLAKE2b-256(key = federation key, FM_MDNS_TAG_LABEL || node ID). */
#define FM_MDNS_TAG_LABEL "fedmesh-mdns-tag-v1"
#define FM_MDNS_TAG_BYTES 8

/* ---- beacon (beacon.c) -------------------------------------------------- */
#define FM_BEACON_MAGIC "FMB1"
#define FM_BEACON_MAGIC_BYTES 4
#define FM_BEACON_KEY_LABEL "fedmesh-beacon-v1"
#define FM_BEACON_NONCE_BYTES 24
#define FM_BEACON_PLAIN_BYTES (FM_NODE_ID_BYTES + 2 + 1)
#define FM_BEACON_TAG_BYTES 16
#define FM_BEACON_BYTES                                  \
	(FM_BEACON_MAGIC_BYTES + FM_BEACON_NONCE_BYTES + \
	 FM_BEACON_PLAIN_BYTES + FM_BEACON_TAG_BYTES)
#define FM_BEACON_FLAG_REPLY 1
#define FM_BEACON_INTERVAL_MS 30000
#define FM_BEACON_JITTER_PERCENT 10
#define FM_BEACON_REPLY_MIN_MS 5000 /* per sender address */
#define FM_BEACON_SENDERS_MAX 32    /* senders remembered for that limit */

/* ---- shared ------------------------------------------------------------- */
/* Node IDs whose discovery was counted (peers_discovered, foreign_seen);
 * when full the oldest entry is reused, so a node may be counted again. */
#define FM_DISC_SEEN_MAX 256
/* A discovered member is handed to the peer table at most this often;
 * between times, reconnects follow the peer table's own backoff. */
#define FM_DISC_CONTACT_MIN_MS 10000

enum fm__mdns_state {
	FM__MDNS_IDLE = 0,   /* not advertising (mDNS off, or no port) */
	FM__MDNS_PROBING,    /* checking our instance name is free */
	FM__MDNS_ANNOUNCING, /* the name is ours; unsolicited responses */
	FM__MDNS_READY,      /* answering queries */
};

/* Our records on an interface, by bit number in the masks below. */
enum {
	FM__MDNS_R_META = 0, /* _services._dns-sd._udp PTR _fedmesh._udp */
	FM__MDNS_R_PTR,      /* _fedmesh._udp PTR <instance> */
	FM__MDNS_R_SRV,
	FM__MDNS_R_TXT,
	FM__MDNS_R_ADDR0, /* + i: A or AAAA of the interface's address i */
	FM__MDNS_RECORDS = FM__MDNS_R_ADDR0 + FM_IFACE_ADDRS_MAX
};

/* A fedmesh instance seen on the link, assembled from its PTR, SRV, TXT
 * and its target's addresses. */
struct fm__mdns_instance {
	uint8_t used;
	uint8_t has_srv;
	uint8_t has_txt;
	uint8_t txt_ok; /* v=1 and a well-formed id and fed */
	uint8_t member; /* the fed tag is our federation's for that id */
	uint8_t acted;  /* handed to the peer table since it appeared */
	char name[FM_MDNS_NAME_MAX + 1];
	char target[FM_MDNS_NAME_MAX + 1];
	uint16_t port;
	uint8_t id[FM_NODE_ID_BYTES];
	uint8_t tag[FM_MDNS_TAG_BYTES];
	fm_addr acted_addr;
	uint32_t ptr_ttl_s;
	uint64_t ptr_expires_ms;
	uint64_t srv_received_ms, srv_expires_ms;
	uint64_t txt_received_ms, txt_expires_ms;
	uint64_t resolve_at_ms; /* FM_DEADLINE_NONE: nothing to resolve */
	uint32_t resolve_interval_ms;
};

struct fm__mdns_host_addr {
	fm_addr addr;
	uint64_t received_ms, expires_ms;
};

/* Addresses of a name some cached instance's SRV points at. */
struct fm__mdns_host {
	uint8_t used;
	uint8_t count;
	char name[FM_MDNS_NAME_MAX + 1];
	struct fm__mdns_host_addr addrs[FM_MDNS_HOST_ADDRS_MAX];
};

struct fm__disc_iface {
	fm_iface iface;
	uint8_t has_v4, has_v6;
	/* responder */
	uint8_t state; /* enum fm__mdns_state */
	uint8_t step;  /* probes or announcements sent in this state */
	uint64_t step_at_ms;
	uint32_t name_number; /* 1: plain name; n >= 2: " (n)" appended */
	char instance[FM_MDNS_NAME_MAX + 1]; /* full instance name */
	uint32_t conflicts;
	uint64_t conflict_window_ms;
	uint32_t pending; /* records awaiting a delayed multicast answer */
	uint64_t pending_at_ms;
	uint8_t pending_probe; /* the delayed answer answers a probe */
	uint64_t last_mcast_ms[FM__MDNS_RECORDS]; /* FM_DEADLINE_NONE: never */
	/* querier */
	uint64_t query_at_ms;
	uint32_t query_interval_ms;
	uint32_t queries_sent;
	struct fm__mdns_instance instances[FM_MDNS_INSTANCES_MAX];
	struct fm__mdns_host hosts[FM_MDNS_HOSTS_MAX];
	/* beacon */
	uint64_t beacon_at_ms;
};

struct fm__disc_seen {
	uint8_t used;
	uint8_t member;  /* counted in peers_discovered */
	uint8_t foreign; /* counted in foreign_seen */
	uint8_t contacted;
	uint8_t id[FM_NODE_ID_BYTES];
	uint64_t contact_ms;
};

/* Reply rate limiting is per (address, node ID): a new node that took
 * over a departed node's address still gets its reply at once. */
struct fm__beacon_sender {
	uint8_t used;
	fm_addr addr;
	uint8_t id[FM_NODE_ID_BYTES];
	uint64_t reply_ms;
};

struct fm__disc {
	uint8_t mdns_enabled; /* and the driver has send_mdns */
	uint8_t beacon_enabled;
	uint8_t stopped; /* fm_node_shutdown() ran: send nothing more */
	uint16_t peer_port;
	char host_name[FM_MDNS_NAME_MAX + 1];      /* "<hostname>.local" */
	char instance_base[FM_MDNS_LABEL_MAX + 1]; /* "fedmesh-<12 hex>" */
	char tag_hex[2 * FM_MDNS_TAG_BYTES + 1];   /* ours, for TXT */
	uint8_t beacon_key[32];
	struct fm__disc_iface *ifaces[FM_IFACES_MAX];
	struct fm__disc_seen seen[FM_DISC_SEEN_MAX];
	size_t seen_next;
	struct fm__beacon_sender senders[FM_BEACON_SENDERS_MAX];
	fm__dns_message *rx; /* parse buffer: too large for a stack */
};

/* mdns.c: the discovery state and the node's entry points. */
int fm__disc_new(fm_node *node, const fm_node_config *cfg);
void fm__disc_free(fm_node *node);
void fm__disc_set_federation(fm_node *node, uint64_t now_ms);
int fm__disc_iface_update(fm_node *node, uint64_t now_ms,
                          const fm_iface *iface);
void fm__disc_iface_remove(fm_node *node, uint64_t now_ms, uint32_t ifindex);
void fm__mdns_recv(fm_node *node, uint64_t now_ms, uint32_t ifindex,
                   const fm_addr *from, const uint8_t *buf, size_t len);
void fm__disc_shutdown(fm_node *node, uint64_t now_ms);
uint64_t fm__disc_tick(fm_node *node, uint64_t now_ms);
/* The federation tag of node_id under the node's federation key. */
void fm__mdns_tag(const fm_node *node, const uint8_t id[FM_NODE_ID_BYTES],
                  uint8_t tag[FM_MDNS_TAG_BYTES]);
/* A member of our federation claims to be at addr: count it, and hand it
 * to the peer table unless it is us, connected, being dialled, banned or
 * was handed over less than FM_DISC_CONTACT_MIN_MS ago. urgent: call
 * fm_node_add_contact even for an address the table knows (which cuts its
 * backoff short: the node just (re)appeared); otherwise a known address is
 * left to the table's own schedule. */
void fm__disc_member(fm_node *node, uint64_t now_ms,
                     const uint8_t id[FM_NODE_ID_BYTES], const fm_addr *addr,
                     enum fm_addr_source source, int urgent);
/* A fedmesh node of another federation: counted once, never dialled. */
void fm__disc_foreign(fm_node *node, const uint8_t id[FM_NODE_ID_BYTES]);

/* beacon.c */
void fm__beacon_set_federation(fm_node *node);
/* 1 when buf starts with the beacon magic. */
int fm__beacon_is(const uint8_t *buf, size_t len);
void fm__beacon_recv(fm_node *node, uint64_t now_ms, const fm_addr *from,
                     const uint8_t *buf, size_t len);
/* Broadcasts an announce on the interface's broadcast addresses. */
void fm__beacon_announce(fm_node *node, struct fm__disc_iface *ifc);
/* Seals a beacon into out (FM_BEACON_BYTES). */
void fm__beacon_seal(const fm_node *node, uint8_t flags,
                     uint8_t out[FM_BEACON_BYTES]);

#endif
