/* The Kademlia DHT (dht.h says what it is for; docs/PROTOCOL.md specifies
 * the messages, docs/DHT.md the design). Why it is built the way it is:
 *
 * - One struct per DHT, no globals, time passed in: a simulator runs
 *   thousands of these in one process and a failing run replays from its
 *   seed (jech/dht's structure, without its globals and wall clock).
 * - Liveness is learned only from answers to our own requests (their txid
 *   holds 48 random bits and the request's slot), never from requests,
 *   whose source can be forged:
 *   a spoofed request cannot keep a dead entry alive.
 * - A routing-table entry costs its node an Ed25519 signature over a fresh
 *   nonce and the address we reached it at (CHALLENGE/PROOF), or an
 *   authenticated session: a member cannot fill tables with IDs it does
 *   not hold, which is what eclipse attacks on open DHTs start with.
 * - Anti-amplification is QUIC's rule with a factor of 1: to an address
 *   that has not proven it receives what we send (by echoing one of our
 *   txids, or by a PROOF), we send at most as many bytes as it sent us.
 *   Answers are truncated to fit and flagged, and a node asking a node
 *   that does not know it yet pads its request to the size of a full
 *   answer, so a lookup costs no extra round trip.
 * - A full bucket keeps its old entries as long as they answer (Kademlia's
 *   preference for long-lived nodes, which churn studies bear out); a new
 *   node waits in the replacement cache until the least-recently-seen
 *   entry fails a PING.
 * - Failing entries are not thrown away when nothing can replace them: a
 *   network outage would otherwise empty the table. When no entry is
 *   live, the DHT re-bootstraps, with backoff, from every address it has
 *   ever known, and that list survives restarts ("dht/table"). */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "dht.h"
#include "wire.h"

/* What the design rests on: a full NODES answer and a CHALLENGE fit the
 * credit of one padded request; counts fit their uint8_t fields. */
_Static_assert(FM_DHT_NODES_MAX_BYTES + FM_DHT_PROOF_BYTES <=
                       FM_DATAGRAM_MAX_BYTES,
               "a padded request must pay for a full answer and a challenge");
_Static_assert(FM_DHT_K + FM_DHT_REPLACEMENTS <= UINT8_MAX &&
                       FM_DHT_MSG_VALUES_MAX <= UINT8_MAX,
               "bucket and message counts are uint8_t");
_Static_assert(FM_RECORD_MAX_BYTES <= UINT16_MAX, "value lengths are 16-bit");
_Static_assert(FM_DHT_ID_BYTES == 32, "id_equal compares four words");

/* Nesting of a body: body > contacts/values > one contact/value. */
#define FM__DHT_MSG_DEPTH_MAX 3
#define FM__DHT_MSG_ITEMS_MAX 128
/* Elements of each body, type included, without the optional padding. */
#define FM__DHT_HEADER_ELEMENTS 3
/* Tables that grow on demand start this small. */
#define FM__DHT_GROW_MIN 16
/* How long a requester's proof of our address is assumed to last at the
 * other end: half of what we grant, to stay on the safe side. */
#define FM__DHT_ME_PROVEN_MS (FM_DHT_PROVEN_TTL_MS / 2)
/* A maintenance lookup that could not start (all slots busy) is retried
 * after this long. */
#define FM__DHT_RETRY_MS 1000
#define FM__DHT_LOG_MAX 256

/* ---- state --------------------------------------------------------------- */

struct dht_entry {
	uint8_t id[FM_DHT_ID_BYTES];
	fm_addr addr;
	uint8_t fails;         /* consecutive failed RPCs */
	uint8_t checking;      /* a liveness check is in flight */
	uint64_t last_seen_ms; /* last answer to one of our requests */
	uint64_t checked_ms;   /* last liveness check sent */
};

/* Entries e[0..count) are the bucket; e[FM_DHT_K + i] for i < repl_count
 * the replacement cache, oldest first. Allocated at the first use, since
 * most of the 256 buckets stay empty, with room for
 * FM_DHT_REPLACEMENTS_CHALLENGE replacements (what most caches hold),
 * grown to FM_DHT_REPLACEMENTS when more come (repl_add). */
struct dht_bucket {
	struct dht_entry *e;
	uint8_t slots; /* entries allocated at e */
	uint8_t count;
	uint8_t repl_count;
	uint8_t lrs_ping;    /* a liveness PING of the LRS entry is in flight */
	uint8_t refresh_now; /* refresh at once (the join) */
	uint64_t touched_ms;
};

struct dht_addr_state {
	fm_addr addr;
	uint32_t credit; /* bytes we may still send it while unproven */
	uint64_t proven_until_ms;    /* it proved to us that it receives */
	uint64_t me_proven_until_ms; /* we (probably) proved it to them */
	uint64_t credit_until_ms;
	uint8_t used; /* the slot holds a state (recency: addr_lru) */
};

struct dht_rate {
	uint8_t family;
	uint8_t prefix[8];
	uint8_t used;
	double tokens;
	uint64_t updated_ms;
};

struct dht_known {
	uint8_t id[FM_DHT_ID_BYTES];
	fm_addr addr;
	uint8_t has_id;
	uint8_t pinned; /* a bootstrap address: never forgotten */
	uint64_t last_ok_ms;
};

enum rpc_purpose {
	RPC_LOOKUP = 0,
	RPC_LRS_PING,
	RPC_CHECK, /* liveness of an entry not heard from for a while */
	RPC_CHALLENGE,
	RPC_STORE,
};

struct dht_rpc {
	uint8_t used;
	uint8_t type; /* the request's type */
	uint8_t purpose;
	uint8_t attempts;
	uint8_t padded;
	uint8_t has_id;
	uint8_t has_cursor;
	uint8_t txid[FM_DHT_TXID_BYTES];
	uint8_t id[FM_DHT_ID_BYTES];
	uint8_t key[FM_DHT_ID_BYTES];
	uint8_t cursor[FM_DHT_ID_BYTES];
	uint8_t nonce[FM_DHT_CHALLENGE_NONCE_BYTES];
	fm_addr addr;
	uint64_t sent_ms;
	int lookup; /* slot, with lookup_gen, for RPC_LOOKUP */
	uint32_t lookup_gen;
	int bucket; /* RPC_LRS_PING */
};

enum cand_state { C_NEW = 0, C_INFLIGHT, C_ANSWERED, C_FAILED };

struct dht_cand {
	uint8_t id[FM_DHT_ID_BYTES];
	fm_addr addr;
	uint8_t state;
	uint8_t hop;
	uint8_t pages;
	uint64_t sent_ms;
};

struct dht_lookup {
	uint8_t kind; /* enum fm__dht_lookup_kind */
	uint8_t maint;
	uint8_t publish; /* STORE our record at the result */
	uint8_t self;    /* the self-lookup */
	uint8_t found;   /* RECORD: the record arrived */
	uint8_t refresh; /* a bucket refresh or random walk: see refresh_contact
	                  */
	int16_t refresh_bucket;
	uint16_t refresh_answers; /* NODES answers received */
	uint16_t refresh_hits;    /* contacts of refresh_bucket seen */
	uint16_t refresh_room;    /* challenges it may still send */
	uint32_t gen;
	uint8_t target[FM_DHT_ID_BYTES];
	char service[FM_SERVICE_NAME_MAX + 1];
	struct dht_cand cands[FM_DHT_LOOKUP_CANDIDATES_MAX];
	uint32_t cand_count;
	fm_record *records;
	uint32_t record_count;
	uint32_t record_cap;
	uint32_t value_hop;
	uint32_t messages;
	uint64_t started_ms;
	fm__dht_lookup_cb cb;
	void *ctx;
};

struct dht_value {
	uint8_t key[FM_DHT_ID_BYTES];
	uint8_t node_id[FM_DHT_ID_BYTES];
	uint64_t seq;
	uint64_t expires_ms;
	uint8_t *bytes;
	uint16_t len;
};

/* See "hash index" below. Slots fit 15 bits: at most FM_DHT_ADDRS_MAX
 * address states, FM_DHT_RATE_SOURCES_MAX sources, 256 * 32 entry codes. */
struct dht_hidx {
	int16_t *v; /* slot numbers, -1 for empty */
	uint32_t cap;
	uint32_t n;
};

/* Recency order of the slots of an array (address states, rate sources)
 * that is filled from slot 0 up and then reuses its least recently used
 * slot: see lru_slot. */
struct dht_lru_link {
	int16_t prev, next;
};

struct dht_lru {
	struct dht_lru_link *link; /* link_cap <= the array's slots */
	size_t link_cap;
	size_t n;           /* slots 0 .. n - 1 are in use */
	int16_t head, tail; /* least and most recently used; -1 */
};

struct fm__dht {
	fm_io io;
	fm_identity identity;
	uint8_t seal_key[32];
	uint8_t has_record;
	fm_record record;
	uint8_t record_bytes[FM_RECORD_MAX_BYTES];
	size_t record_len;
	uint8_t subnet_max;
	uint8_t cap_private;
	uint8_t rate_loopback;
	double rate_per_ms;
	double rate_burst;
	uint64_t now_ms;

	struct dht_bucket buckets[FM_DHT_BUCKETS];
	uint32_t table_size;
	int depth;         /* deepest non-empty bucket, -1 when empty */
	int refresh_depth; /* bucket of the closest neighbour at the join */
	uint32_t checks;   /* liveness checks in flight */

	struct dht_addr_state *addrs;
	size_t addr_cap;
	struct dht_hidx addr_idx; /* address -> addrs slot */
	struct dht_lru addr_lru;
	struct dht_rate *rates;
	size_t rate_cap;
	struct dht_hidx rate_idx; /* source prefix -> rates slot */
	struct dht_lru rate_lru;
	struct dht_hidx tab_idx; /* address -> table entry (bucket * 32 + i) */
	struct dht_known *known;
	size_t known_count;
	size_t known_cap;
	size_t known_cursor;
	struct dht_rpc *rpcs;
	size_t rpc_cap;
	size_t rpc_used;
	struct dht_lookup *lookups[FM_DHT_LOOKUPS_MAX];
	uint32_t lookup_gen;
	struct dht_value *values;
	size_t value_count;
	size_t value_cap;

	uint8_t joined; /* the table had a live entry at the last check */
	uint8_t publish_pending;
	uint8_t dirty;
	uint64_t bootstrap_backoff_ms;
	uint64_t next_bootstrap_ms;
	uint64_t next_self_ms;
	uint64_t next_walk_ms;
	uint64_t next_republish_ms;
	uint64_t republish_interval_ms;
	uint64_t next_sweep_ms;
	uint64_t swept_ms; /* the last store sweep */
	uint64_t next_persist_ms;
	/* Deadlines cached between ticks so that a tick after a datagram does
	 * not walk everything: the earliest RPC timeout, lookup deadline and
	 * table deadline (bucket refresh, liveness check) may be earlier than
	 * recorded (a wasted walk), never later. 0: walk at the next tick. */
	uint64_t rpc_wake_ms;
	uint64_t lookup_wake_ms;
	uint64_t table_wake_ms;
	uint64_t check_wake_ms;  /* no liveness check is due before */
	uint8_t refresh_pending; /* refresh every bucket after the self-lookup
	                          */
	uint32_t lookups_empty;  /* lookups in a row that no node answered */
	fm__dht_stats stats;
};

/* ---- small helpers ------------------------------------------------------- */

static void dht_log(const fm__dht *dht, enum fm_log_level level,
                    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void dht_log(const fm__dht *dht, enum fm_log_level level,
                    const char *fmt, ...)
{
	char line[FM__DHT_LOG_MAX];
	va_list ap;

	if (dht->io.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	dht->io.log(dht->io.ctx, level, "dht", line);
}

static void rand_bytes(const fm__dht *dht, uint8_t *buf, size_t len)
{
	dht->io.random_bytes(dht->io.ctx, buf, len);
}

static uint64_t rand_u64(const fm__dht *dht)
{
	uint8_t b[8];
	uint64_t v = 0;
	size_t i;

	rand_bytes(dht, b, sizeof(b));
	for (i = 0; i < sizeof(b); i++)
		v = (v << 8) | b[i];
	return v;
}

/* +-25 % so that nodes started together do not stay in step. */
static uint64_t jitter(const fm__dht *dht, uint64_t ms)
{
	return ms * 3 / 4 + rand_u64(dht) % (ms / 2 + 1);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Grows *arr (of *cap elements of size elem) towards max; -ENOSPC at max. */
static int grow(void **arr, size_t *cap, size_t elem, size_t max)
{
	/* By half: arrays that end up a few hundred long (address states,
	 * rate sources, known addresses) waste less than when doubled. */
	size_t n = *cap == 0 ? FM__DHT_GROW_MIN : *cap + *cap / 2;
	void *p;

	if (*cap >= max)
		return -ENOSPC;
	if (n > max)
		n = max;
	p = realloc(*arr, n * elem);
	if (p == NULL)
		return -ENOMEM;
	memset((uint8_t *)p + *cap * elem, 0, (n - *cap) * elem);
	*arr = p;
	*cap = n;
	return 0;
}

static void lru_clear(struct dht_lru *l)
{
	l->n = 0;
	l->head = l->tail = -1;
}

static void lru_push(struct dht_lru *l, int16_t slot)
{
	l->link[slot].prev = l->tail;
	l->link[slot].next = -1;
	if (l->tail >= 0)
		l->link[l->tail].next = slot;
	else
		l->head = slot;
	l->tail = slot;
}

/* Makes slot the most recently used. */
static void lru_touch(struct dht_lru *l, int16_t slot)
{
	struct dht_lru_link *k = &l->link[slot];

	if (l->tail == slot)
		return;
	if (k->prev >= 0)
		l->link[k->prev].next = k->next;
	else
		l->head = k->next;
	l->link[k->next].prev = k->prev; /* not the tail: next >= 0 */
	lru_push(l, slot);
}

/* The slot of *arr (elements of elem bytes, *cap of them, at most max) a
 * new key goes to: the next unused one, growing the array when it is
 * full, else the least recently used one (the caller forgets what it
 * held: its `used` flag is set). The slot becomes the most recently
 * used. -1 when nothing can be had. */
static int lru_slot(struct dht_lru *l, void **arr, size_t *cap, size_t elem,
                    size_t max)
{
	int16_t slot;

	if (l->n == l->link_cap) {
		if (*cap == l->link_cap && *cap < max)
			(void)grow(arr, cap, elem, max); /* else: reuse */
		if (*cap > l->link_cap) {
			void *p = realloc(l->link, *cap * sizeof(*l->link));
			if (p != NULL) {
				l->link = p;
				l->link_cap = *cap;
			}
		}
	}
	if (l->n < l->link_cap) {
		slot = (int16_t)l->n++;
		lru_push(l, slot);
		return slot;
	}
	if (l->head < 0)
		return -1;
	slot = l->head;
	lru_touch(l, slot);
	return slot;
}

/* IDs are compared often (shortlists, buckets): 8 bytes at a time, with no
 * call. */
static int id_equal(const uint8_t *a, const uint8_t *b)
{
	uint64_t x[4], y[4];

	memcpy(x, a, sizeof(x));
	memcpy(y, b, sizeof(y));
	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) |
	        (x[3] ^ y[3])) == 0;
}

/* ---- hash index ------------------------------------------------------------
 * An open-addressing index (linear probing, backward-shift deletion) from
 * a key to a slot of an array the caller owns: address states, rate
 * buckets, table entries. The caller hashes the key and says whether a
 * slot holds it; the index stores slot numbers only. */

typedef uint32_t (*hidx_hash_fn)(const fm__dht *dht, int32_t slot);
typedef int (*hidx_eq_fn)(const fm__dht *dht, int32_t slot, const void *key);

static uint32_t hash_bytes(uint32_t h, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u; /* FNV-1a */
	/* MurmurHash3's finalizer: every bit reaches the low ones, which
	 * are the ones the index uses. */
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	return h ^ (h >> 16);
}

static uint32_t hash_addr(const fm_addr *a)
{
	uint8_t port[2] = {(uint8_t)(a->port >> 8), (uint8_t)a->port};
	uint32_t h = hash_bytes(2166136261u ^ a->family, port, 2);

	return hash_bytes(h, a->ip, a->family == FM_AF_INET ? 4 : 16);
}

/* Position of the key in the index, or -1. */
static int32_t hidx_find(const fm__dht *dht, const struct dht_hidx *h,
                         uint32_t hash, hidx_eq_fn eq, const void *key)
{
	uint32_t i;

	if (h->cap == 0)
		return -1;
	for (i = hash & (h->cap - 1); h->v[i] >= 0; i = (i + 1) & (h->cap - 1))
		if (eq(dht, h->v[i], key))
			return (int32_t)i;
	return -1;
}

/* Position of slot itself (which is in the index under hash). */
static int32_t hidx_pos_of(const struct dht_hidx *h, uint32_t hash,
                           int32_t slot)
{
	uint32_t i = hash & (h->cap - 1);

	while (h->v[i] != slot)
		i = (i + 1) & (h->cap - 1);
	return (int32_t)i;
}

static void hidx_put(struct dht_hidx *h, uint32_t hash, int32_t slot)
{
	uint32_t i = hash & (h->cap - 1);

	while (h->v[i] >= 0)
		i = (i + 1) & (h->cap - 1);
	h->v[i] = (int16_t)slot;
	h->n++;
}

/* Adds slot (not in the index yet); -ENOMEM leaves the index as it was. */
static int hidx_add(const fm__dht *dht, struct dht_hidx *h, uint32_t hash,
                    int32_t slot, hidx_hash_fn hf)
{
	if ((h->n + 1) * 2 > h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : FM__DHT_GROW_MIN * 2, i;
		struct dht_hidx g = {malloc(cap * sizeof(int16_t)), cap, 0};
		if (g.v == NULL)
			return -ENOMEM;
		for (i = 0; i < cap; i++)
			g.v[i] = -1;
		for (i = 0; i < h->cap; i++)
			if (h->v[i] >= 0)
				hidx_put(&g, hf(dht, h->v[i]), h->v[i]);
		free(h->v);
		*h = g;
	}
	hidx_put(h, hash, slot);
	return 0;
}

/* Removes the entry at position pos, shifting back the entries of its
 * probe run so that every one stays reachable. */
static void hidx_del_at(const fm__dht *dht, struct dht_hidx *h, int32_t pos,
                        hidx_hash_fn hf)
{
	uint32_t mask = h->cap - 1, i = (uint32_t)pos, j = i, home;

	for (;;) {
		j = (j + 1) & mask;
		if (h->v[j] < 0)
			break;
		home = hf(dht, h->v[j]) & mask;
		/* v[j] may move to i when its home is not in (i, j]. */
		if ((j > i && (home <= i || home > j)) ||
		    (j < i && (home <= i && home > j))) {
			h->v[i] = h->v[j];
			i = j;
		}
	}
	h->v[i] = -1;
	h->n--;
}

static void hidx_clear(struct dht_hidx *h)
{
	uint32_t i;

	for (i = 0; i < h->cap; i++)
		h->v[i] = -1;
	h->n = 0;
}

static void hidx_free(struct dht_hidx *h)
{
	free(h->v);
	memset(h, 0, sizeof(*h));
}

/* ---- IDs ----------------------------------------------------------------- */

void fm__dht_xor(const uint8_t a[FM_DHT_ID_BYTES],
                 const uint8_t b[FM_DHT_ID_BYTES], uint8_t out[FM_DHT_ID_BYTES])
{
	size_t i;

	for (i = 0; i < FM_DHT_ID_BYTES; i++)
		out[i] = a[i] ^ b[i];
}

int fm__dht_bucket_index(const uint8_t self[FM_DHT_ID_BYTES],
                         const uint8_t id[FM_DHT_ID_BYTES])
{
	int i, bit;

	for (i = 0; i < FM_DHT_ID_BYTES; i++) {
		uint8_t x = self[i] ^ id[i];
		if (x == 0)
			continue;
		for (bit = 0; (x & 0x80) == 0; bit++)
			x = (uint8_t)(x << 1);
		return i * 8 + bit;
	}
	return -1;
}

int fm__dht_distance_cmp(const uint8_t target[FM_DHT_ID_BYTES],
                         const uint8_t a[FM_DHT_ID_BYTES],
                         const uint8_t b[FM_DHT_ID_BYTES])
{
	size_t i;

	for (i = 0; i < FM_DHT_ID_BYTES; i++) {
		uint8_t x = a[i] ^ target[i], y = b[i] ^ target[i];
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

/* A random ID in bucket b of self: the first b bits shared, bit b
 * different, the rest random. */
static void random_id_in_bucket(const fm__dht *dht, int b,
                                uint8_t out[FM_DHT_ID_BYTES])
{
	uint8_t r[FM_DHT_ID_BYTES];
	int byte = b / 8;
	uint8_t mask = (uint8_t)(0x80u >> (b % 8));
	uint8_t low = (uint8_t)(mask - 1); /* the bits after bit b */
	int i;

	rand_bytes(dht, r, sizeof(r));
	memcpy(out, dht->identity.node_id, FM_DHT_ID_BYTES);
	out[byte] = (uint8_t)(((out[byte] ^ mask) & (uint8_t)~low) |
	                      (r[byte] & low));
	for (i = byte + 1; i < FM_DHT_ID_BYTES; i++)
		out[i] = r[i];
}

static int service_name_ok(const char *name, size_t len)
{
	size_t i;

	if (len < 1 || len > FM_SERVICE_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

int fm__dht_service_key(const char *name, uint8_t key[FM_DHT_ID_BYTES])
{
	crypto_generichash_state st;
	size_t len;

	if (name == NULL || key == NULL)
		return -EINVAL;
	len = strnlen(name, FM_SERVICE_NAME_MAX + 1);
	if (len < 1 || len > FM_SERVICE_NAME_MAX)
		return -EINVAL;
	crypto_generichash_init(&st, NULL, 0, FM_DHT_ID_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)FM_DHT_SVC_PREFIX,
	                          sizeof(FM_DHT_SVC_PREFIX) - 1);
	crypto_generichash_update(&st, (const uint8_t *)name, len);
	crypto_generichash_final(&st, key, FM_DHT_ID_BYTES);
	return 0;
}

/* ---- addresses ----------------------------------------------------------- */

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0,    0,
                                             0, 0, 0, 0, 0xff, 0xff};

/* ::ffff:a.b.c.d becomes a.b.c.d, so that one host has one form (subnet
 * caps, rate limits and proofs compare addresses). */
static fm_addr addr_normalize(const fm_addr *a)
{
	fm_addr n;

	memset(&n, 0, sizeof(n));
	n.family = a->family;
	n.port = a->port;
	if (a->family == FM_AF_INET6 &&
	    memcmp(a->ip, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
		n.family = FM_AF_INET;
		memcpy(n.ip, a->ip + 12, 4);
	} else if (a->family == FM_AF_INET) {
		memcpy(n.ip, a->ip, 4);
	} else if (a->family == FM_AF_INET6) {
		memcpy(n.ip, a->ip, 16);
	}
	return n;
}

static int addr_equal(const fm_addr *a, const fm_addr *b)
{
	size_t n = a->family == FM_AF_INET ? 4 : 16;

	return a->family == b->family && a->port == b->port &&
	       memcmp(a->ip, b->ip, n) == 0;
}

static int addr_is_loopback(const fm_addr *a)
{
	static const uint8_t v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0,
	                                        0, 0, 0, 0, 0, 0, 0, 1};

	if (a->family == FM_AF_INET)
		return a->ip[0] == 127;
	return a->family == FM_AF_INET6 &&
	       memcmp(a->ip, v6_loopback, sizeof(v6_loopback)) == 0;
}

int fm__dht_addr_is_private(const fm_addr *a)
{
	const uint8_t *ip;

	if (a == NULL)
		return 0;
	if (addr_is_loopback(a))
		return 1;
	ip = a->ip;
	if (a->family == FM_AF_INET)
		return ip[0] == 10 || (ip[0] == 172 && (ip[1] & 0xf0) == 16) ||
		       (ip[0] == 192 && ip[1] == 168) ||
		       (ip[0] == 169 && ip[1] == 254) ||
		       (ip[0] == 100 && (ip[1] & 0xc0) == 64);
	if (a->family == FM_AF_INET6)
		return (ip[0] & 0xfe) == 0xfc ||
		       (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80);
	return 0;
}

/* An address worth sending to: a family, a port, not unspecified, not
 * multicast or broadcast. */
static int addr_usable(const fm_addr *a)
{
	static const uint8_t zero[16];

	if (a->port == 0)
		return 0;
	if (a->family == FM_AF_INET)
		return memcmp(a->ip, zero, 4) != 0 && a->ip[0] < 224;
	if (a->family == FM_AF_INET6)
		return memcmp(a->ip, zero, 16) != 0 && a->ip[0] != 0xff;
	return 0;
}

/* Same /24 (IPv4) or /48 (IPv6). */
static int same_subnet(const fm_addr *a, const fm_addr *b)
{
	if (a->family != b->family)
		return 0;
	return memcmp(a->ip, b->ip, a->family == FM_AF_INET ? 3 : 6) == 0;
}

int fm__dht_addr_encode(const fm_addr *a, uint8_t out[FM_DHT_ADDR6_BYTES],
                        size_t *len)
{
	fm_addr n;
	size_t ip_len;

	if (a == NULL || out == NULL || len == NULL ||
	    (a->family != FM_AF_INET && a->family != FM_AF_INET6))
		return -EINVAL;
	n = addr_normalize(a);
	ip_len = n.family == FM_AF_INET ? 4 : 16;
	memcpy(out, n.ip, ip_len);
	out[ip_len] = (uint8_t)(n.port >> 8);
	out[ip_len + 1] = (uint8_t)(n.port & 0xff);
	*len = ip_len + 2;
	return 0;
}

int fm__dht_addr_decode(const uint8_t *buf, size_t len, fm_addr *out)
{
	fm_addr a;
	size_t ip_len;

	if (buf == NULL || out == NULL)
		return -EINVAL;
	memset(&a, 0, sizeof(a));
	if (len == FM_DHT_ADDR4_BYTES)
		a.family = FM_AF_INET;
	else if (len == FM_DHT_ADDR6_BYTES)
		a.family = FM_AF_INET6;
	else
		return -EBADMSG;
	ip_len = len - 2;
	memcpy(a.ip, buf, ip_len);
	a.port = (uint16_t)((buf[ip_len] << 8) | buf[ip_len + 1]);
	if (a.port == 0)
		return -EBADMSG;
	*out = addr_normalize(&a);
	return 0;
}

/* ---- codec --------------------------------------------------------------- */

static int is_request(uint8_t type)
{
	return type == FM__DHT_PING || type == FM__DHT_FIND_NODE ||
	       type == FM__DHT_FIND_VALUE || type == FM__DHT_STORE ||
	       type == FM__DHT_CHALLENGE;
}

/* Elements of a body of this type, without padding; 0 when unknown. */
static size_t type_elements(uint64_t type)
{
	switch (type) {
	case FM__DHT_PING:
	case FM__DHT_PONG:
		return 3;
	case FM__DHT_FIND_NODE:
	case FM__DHT_STORED:
		return 4;
	case FM__DHT_NODES:
	case FM__DHT_FIND_VALUE:
	case FM__DHT_VALUE:
	case FM__DHT_CHALLENGE:
	case FM__DHT_PROOF:
		return 5;
	case FM__DHT_STORE:
		return 6;
	default:
		return 0;
	}
}

static void write_addr(fm__mp_writer *w, const fm_addr *a, int *rc)
{
	uint8_t buf[FM_DHT_ADDR6_BYTES];
	size_t len;

	if (fm__dht_addr_encode(a, buf, &len) != 0) {
		*rc = -EINVAL;
		return;
	}
	fm__mp_write_bin(w, buf, len);
}

int fm__dht_msg_encode(const fm__dht_msg *m, uint8_t *out, size_t cap,
                       size_t *len)
{
	static const uint8_t zeros[FM_DHT_BODY_MAX_BYTES];
	size_t elements, i;
	fm__mp_writer w;
	int rc = 0;

	if (m == NULL || out == NULL || len == NULL)
		return -EINVAL;
	elements = type_elements(m->type);
	if (elements == 0 || (m->pad_len > 0 && !is_request(m->type)) ||
	    m->pad_len > sizeof(zeros))
		return -EINVAL;
	fm__mp_writer_init(&w, out, cap);
	fm__mp_write_array(&w, elements + (m->pad_len > 0 ? 1 : 0));
	fm__mp_write_uint(&w, m->type);
	fm__mp_write_bin(&w, m->txid, sizeof(m->txid));
	fm__mp_write_bin(&w, m->sender, sizeof(m->sender));
	switch (m->type) {
	case FM__DHT_FIND_NODE:
		fm__mp_write_bin(&w, m->key, sizeof(m->key));
		break;
	case FM__DHT_NODES:
		if (m->contact_count > FM_DHT_K)
			return -EINVAL;
		fm__mp_write_array(&w, m->contact_count);
		for (i = 0; i < m->contact_count; i++) {
			fm__mp_write_array(&w, 2);
			fm__mp_write_bin(&w, m->contacts[i].id,
			                 FM_DHT_ID_BYTES);
			write_addr(&w, &m->contacts[i].addr, &rc);
		}
		fm__mp_write_uint(&w, m->flags);
		break;
	case FM__DHT_FIND_VALUE:
		fm__mp_write_bin(&w, m->key, sizeof(m->key));
		fm__mp_write_bin(&w, m->cursor,
		                 m->has_cursor ? sizeof(m->cursor) : 0);
		break;
	case FM__DHT_VALUE:
		if (m->value_count > FM_DHT_MSG_VALUES_MAX)
			return -EINVAL;
		fm__mp_write_array(&w, m->value_count);
		for (i = 0; i < m->value_count; i++) {
			const fm__dht_value_ref *v = &m->values[i];
			if (v->record == NULL ||
			    v->record_len > FM_RECORD_MAX_BYTES)
				return -EINVAL;
			fm__mp_write_array(&w, 2);
			fm__mp_write_bin(&w, v->record, v->record_len);
			fm__mp_write_uint(&w, v->ttl_ms);
		}
		fm__mp_write_uint(&w, m->flags);
		break;
	case FM__DHT_STORE:
		if (m->record == NULL || m->record_len > FM_RECORD_MAX_BYTES)
			return -EINVAL;
		fm__mp_write_bin(&w, m->key, sizeof(m->key));
		fm__mp_write_bin(&w, m->record, m->record_len);
		fm__mp_write_uint(&w, m->ttl_ms);
		break;
	case FM__DHT_STORED:
		fm__mp_write_uint(&w, m->status);
		break;
	case FM__DHT_CHALLENGE:
		fm__mp_write_bin(&w, m->nonce, sizeof(m->nonce));
		write_addr(&w, &m->observed, &rc);
		break;
	case FM__DHT_PROOF:
		fm__mp_write_bin(&w, m->public_key, sizeof(m->public_key));
		fm__mp_write_bin(&w, m->signature, sizeof(m->signature));
		break;
	default: /* PING, PONG: the header only */
		break;
	}
	if (rc != 0)
		return rc;
	if (m->pad_len > 0)
		fm__mp_write_bin(&w, zeros, m->pad_len);
	return fm__mp_writer_finish(&w, len);
}

static int read_fixed_bin(fm__mp_reader *r, uint8_t *out, size_t want)
{
	const uint8_t *p;
	size_t n;

	if (fm__mp_read_bin(r, &p, &n) != 0 || n != want)
		return -EBADMSG;
	memcpy(out, p, n);
	return 0;
}

static int read_addr(fm__mp_reader *r, fm_addr *out)
{
	const uint8_t *p;
	size_t n;

	if (fm__mp_read_bin(r, &p, &n) != 0 ||
	    fm__dht_addr_decode(p, n, out) != 0)
		return -EBADMSG;
	return 0;
}

static int read_flags(fm__mp_reader *r, uint8_t *out)
{
	uint64_t v;

	if (fm__mp_read_uint(r, &v) != 0 || v > UINT8_MAX)
		return -EBADMSG;
	*out = (uint8_t)v;
	return 0;
}

static int decode_fields(fm__mp_reader *r, fm__dht_msg *m)
{
	const uint8_t *p;
	size_t n, i;
	uint64_t v;

	switch (m->type) {
	case FM__DHT_FIND_NODE:
		return read_fixed_bin(r, m->key, sizeof(m->key));
	case FM__DHT_NODES:
		if (fm__mp_read_array(r, &n) != 0 || n > FM_DHT_K)
			return -EBADMSG;
		for (i = 0; i < n; i++) {
			size_t fields;
			if (fm__mp_read_array(r, &fields) != 0 || fields != 2 ||
			    read_fixed_bin(r, m->contacts[i].id,
			                   FM_DHT_ID_BYTES) != 0 ||
			    read_addr(r, &m->contacts[i].addr) != 0)
				return -EBADMSG;
		}
		m->contact_count = (uint8_t)n;
		return read_flags(r, &m->flags);
	case FM__DHT_FIND_VALUE:
		if (read_fixed_bin(r, m->key, sizeof(m->key)) != 0 ||
		    fm__mp_read_bin(r, &p, &n) != 0 ||
		    (n != 0 && n != FM_DHT_ID_BYTES))
			return -EBADMSG;
		m->has_cursor = n != 0;
		if (n != 0)
			memcpy(m->cursor, p, n);
		return 0;
	case FM__DHT_VALUE:
		if (fm__mp_read_array(r, &n) != 0 || n > FM_DHT_MSG_VALUES_MAX)
			return -EBADMSG;
		for (i = 0; i < n; i++) {
			fm__dht_value_ref *val = &m->values[i];
			size_t fields;
			if (fm__mp_read_array(r, &fields) != 0 || fields != 2 ||
			    fm__mp_read_bin(r, &val->record,
			                    &val->record_len) != 0 ||
			    val->record_len > FM_RECORD_MAX_BYTES ||
			    fm__mp_read_uint(r, &val->ttl_ms) != 0)
				return -EBADMSG;
		}
		m->value_count = (uint8_t)n;
		return read_flags(r, &m->flags);
	case FM__DHT_STORE:
		if (read_fixed_bin(r, m->key, sizeof(m->key)) != 0 ||
		    fm__mp_read_bin(r, &m->record, &m->record_len) != 0 ||
		    m->record_len > FM_RECORD_MAX_BYTES ||
		    fm__mp_read_uint(r, &m->ttl_ms) != 0)
			return -EBADMSG;
		return 0;
	case FM__DHT_STORED:
		if (fm__mp_read_uint(r, &v) != 0 || v > UINT8_MAX)
			return -EBADMSG;
		m->status = (uint8_t)v;
		return 0;
	case FM__DHT_CHALLENGE:
		if (read_fixed_bin(r, m->nonce, sizeof(m->nonce)) != 0 ||
		    read_addr(r, &m->observed) != 0)
			return -EBADMSG;
		return 0;
	case FM__DHT_PROOF:
		if (read_fixed_bin(r, m->public_key, sizeof(m->public_key)) !=
		            0 ||
		    read_fixed_bin(r, m->signature, sizeof(m->signature)) != 0)
			return -EBADMSG;
		return 0;
	default:
		return 0;
	}
}

int fm__dht_msg_decode(const uint8_t *buf, size_t len, fm__dht_msg *out)
{
	fm__mp_reader r;
	uint64_t type;
	size_t n, elements;
	int rc;

	if (out == NULL || (buf == NULL && len > 0))
		return -EINVAL;
	if (len > FM_DHT_BODY_MAX_BYTES ||
	    fm__msgpack_check(buf, len, FM__DHT_MSG_DEPTH_MAX,
	                      FM__DHT_MSG_ITEMS_MAX) != 0)
		return -EBADMSG;
	memset(out, 0, sizeof(*out));
	fm__mp_reader_init(&r, buf, len);
	if (fm__mp_read_array(&r, &n) != 0 || n < FM__DHT_HEADER_ELEMENTS ||
	    fm__mp_read_uint(&r, &type) != 0 ||
	    read_fixed_bin(&r, out->txid, sizeof(out->txid)) != 0 ||
	    read_fixed_bin(&r, out->sender, sizeof(out->sender)) != 0)
		return -EBADMSG;
	elements = type_elements(type);
	if (elements == 0)
		return -ENOTSUP;
	out->type = (uint8_t)type;
	if (n != elements && !(is_request(out->type) && n == elements + 1))
		return -EBADMSG;
	rc = decode_fields(&r, out);
	if (rc != 0)
		return rc;
	if (n == elements + 1) {
		const uint8_t *pad;
		if (fm__mp_read_bin(&r, &pad, &out->pad_len) != 0)
			return -EBADMSG;
	}
	return fm__mp_reader_end(&r);
}

/* ---- sealing ------------------------------------------------------------- */

void fm__dht_derive_key(const uint8_t federation_key[FM_FEDERATION_KEY_BYTES],
                        uint8_t out[32])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, (const uint8_t *)FM_DHT_KEY_LABEL,
	                          sizeof(FM_DHT_KEY_LABEL) - 1);
	crypto_generichash_update(&st, federation_key, FM_FEDERATION_KEY_BYTES);
	crypto_generichash_final(&st, out, 32);
}

int fm__dht_is_datagram(const uint8_t *buf, size_t len)
{
	return buf != NULL && len >= FM_DHT_MAGIC_BYTES &&
	       memcmp(buf, FM_DHT_MAGIC, FM_DHT_MAGIC_BYTES) == 0;
}

int fm__dht_seal(const uint8_t key[32], const uint8_t nonce[FM_DHT_NONCE_BYTES],
                 const uint8_t *body, size_t body_len, uint8_t *out, size_t cap,
                 size_t *len)
{
	unsigned long long clen;

	if (key == NULL || nonce == NULL || out == NULL || len == NULL ||
	    (body == NULL && body_len > 0))
		return -EINVAL;
	if (body_len > FM_DHT_BODY_MAX_BYTES ||
	    cap < FM_DHT_SEAL_OVERHEAD + body_len)
		return -ENOSPC;
	memcpy(out, FM_DHT_MAGIC, FM_DHT_MAGIC_BYTES);
	memcpy(out + FM_DHT_MAGIC_BYTES, nonce, FM_DHT_NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	        out + FM_DHT_MAGIC_BYTES + FM_DHT_NONCE_BYTES, &clen, body,
	        body_len, (const uint8_t *)FM_DHT_MAGIC, FM_DHT_MAGIC_BYTES,
	        NULL, nonce, key);
	*len = FM_DHT_MAGIC_BYTES + FM_DHT_NONCE_BYTES + (size_t)clen;
	return 0;
}

int fm__dht_open(const uint8_t key[32], const uint8_t *buf, size_t len,
                 uint8_t *body, size_t cap, size_t *body_len)
{
	const size_t head = FM_DHT_MAGIC_BYTES + FM_DHT_NONCE_BYTES;
	unsigned long long mlen;

	if (key == NULL || body == NULL || body_len == NULL)
		return -EINVAL;
	if (!fm__dht_is_datagram(buf, len) || len < FM_DHT_SEAL_OVERHEAD ||
	    len > FM_DATAGRAM_MAX_BYTES || cap < len - FM_DHT_SEAL_OVERHEAD)
		return -EBADMSG;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
	            body, &mlen, NULL, buf + head, len - head,
	            (const uint8_t *)FM_DHT_MAGIC, FM_DHT_MAGIC_BYTES,
	            buf + FM_DHT_MAGIC_BYTES, key) != 0)
		return -EBADMSG;
	*body_len = (size_t)mlen;
	return 0;
}

/* ---- address state: proofs and credit ------------------------------------ */

static uint32_t addr_slot_hash(const fm__dht *dht, int32_t slot)
{
	return hash_addr(&dht->addrs[slot].addr);
}

static int addr_slot_eq(const fm__dht *dht, int32_t slot, const void *key)
{
	return addr_equal(&dht->addrs[slot].addr, key);
}

static struct dht_addr_state *addr_find(fm__dht *dht, const fm_addr *a)
{
	int32_t pos =
	        hidx_find(dht, &dht->addr_idx, hash_addr(a), addr_slot_eq, a);

	return pos < 0 ? NULL : &dht->addrs[dht->addr_idx.v[pos]];
}

/* Finds or makes the state of a; when the table is full the least recently
 * used entry goes (it loses its proof or credit: the safe direction). */
static struct dht_addr_state *addr_get(fm__dht *dht, const fm_addr *a)
{
	struct dht_addr_state *s = addr_find(dht, a);
	int victim;

	if (s == NULL) {
		victim = lru_slot(&dht->addr_lru, (void **)&dht->addrs,
		                  &dht->addr_cap, sizeof(*dht->addrs),
		                  FM_DHT_ADDRS_MAX);
		if (victim < 0)
			return NULL;
		s = &dht->addrs[victim];
		if (s->used)
			hidx_del_at(dht, &dht->addr_idx,
			            hidx_pos_of(&dht->addr_idx,
			                        hash_addr(&s->addr),
			                        (int32_t)victim),
			            addr_slot_hash);
		memset(s, 0, sizeof(*s));
		s->addr = *a;
		if (hidx_add(dht, &dht->addr_idx, hash_addr(a), (int32_t)victim,
		             addr_slot_hash) != 0)
			return NULL;
		s->used = 1;
	} else {
		lru_touch(&dht->addr_lru, (int16_t)(s - dht->addrs));
	}
	return s;
}

static int addr_proven(fm__dht *dht, uint64_t now, const fm_addr *a)
{
	struct dht_addr_state *s = addr_find(dht, a);

	return s != NULL && s->proven_until_ms > now;
}

static void addr_set_proven(fm__dht *dht, uint64_t now, const fm_addr *a)
{
	struct dht_addr_state *s = addr_get(dht, a);

	if (s != NULL)
		s->proven_until_ms = now + FM_DHT_PROVEN_TTL_MS;
}

/* Bytes we may send to a in answer to what it sent: everything when it is
 * proven, else what is left of its credit. */
static size_t answer_limit(fm__dht *dht, uint64_t now, const fm_addr *a)
{
	struct dht_addr_state *s = addr_find(dht, a);

	if (s != NULL && s->proven_until_ms > now)
		return FM_DATAGRAM_MAX_BYTES;
	if (s == NULL || s->credit_until_ms <= now)
		return 0;
	return s->credit < FM_DATAGRAM_MAX_BYTES ? s->credit
	                                         : FM_DATAGRAM_MAX_BYTES;
}

static void credit_add(fm__dht *dht, uint64_t now, const fm_addr *a, size_t len)
{
	struct dht_addr_state *s;

	if (addr_proven(dht, now, a))
		return;
	s = addr_get(dht, a);
	if (s == NULL)
		return;
	if (s->credit_until_ms <= now)
		s->credit = 0;
	s->credit += (uint32_t)len;
	if (s->credit > FM_DHT_CREDIT_MAX_BYTES)
		s->credit = FM_DHT_CREDIT_MAX_BYTES;
	s->credit_until_ms = now + FM_DHT_CREDIT_TTL_MS;
}

static void credit_charge(fm__dht *dht, uint64_t now, const fm_addr *a,
                          size_t len)
{
	struct dht_addr_state *s = addr_find(dht, a);

	if (s == NULL || s->proven_until_ms > now)
		return;
	s->credit = s->credit > len ? s->credit - (uint32_t)len : 0;
}

static int me_proven(fm__dht *dht, uint64_t now, const fm_addr *a)
{
	struct dht_addr_state *s = addr_find(dht, a);

	return s != NULL && s->me_proven_until_ms > now;
}

/* ---- rate limits --------------------------------------------------------- */

/* A token bucket per IPv4 address or IPv6 /64. Loopback is exempt unless
 * configured otherwise (tests and one-host federations). */
static size_t rate_prefix_len(uint8_t family)
{
	return family == FM_AF_INET ? 4 : 8;
}

static uint32_t rate_key_hash(uint8_t family, const uint8_t *prefix)
{
	return hash_bytes(2166136261u ^ family, prefix,
	                  rate_prefix_len(family));
}

static uint32_t rate_slot_hash(const fm__dht *dht, int32_t slot)
{
	return rate_key_hash(dht->rates[slot].family, dht->rates[slot].prefix);
}

static int rate_slot_eq(const fm__dht *dht, int32_t slot, const void *key)
{
	const fm_addr *a = key;
	const struct dht_rate *r = &dht->rates[slot];

	return r->family == a->family &&
	       memcmp(r->prefix, a->ip, rate_prefix_len(a->family)) == 0;
}

static int rate_allow(fm__dht *dht, uint64_t now, const fm_addr *a)
{
	struct dht_rate *r = NULL;
	size_t plen = rate_prefix_len(a->family);
	int32_t pos;
	int victim;

	if (!dht->rate_loopback && addr_is_loopback(a))
		return 1;
	pos = hidx_find(dht, &dht->rate_idx, rate_key_hash(a->family, a->ip),
	                rate_slot_eq, a);
	if (pos >= 0) {
		r = &dht->rates[dht->rate_idx.v[pos]];
		lru_touch(&dht->rate_lru, dht->rate_idx.v[pos]);
	} else {
		/* A new source: a free slot, else the one seen longest ago. */
		victim = lru_slot(&dht->rate_lru, (void **)&dht->rates,
		                  &dht->rate_cap, sizeof(*dht->rates),
		                  FM_DHT_RATE_SOURCES_MAX);
		if (victim < 0)
			return 1;
		r = &dht->rates[victim];
		if (r->used)
			hidx_del_at(dht, &dht->rate_idx,
			            hidx_pos_of(&dht->rate_idx,
			                        rate_slot_hash(dht,
			                                       (int32_t)victim),
			                        (int32_t)victim),
			            rate_slot_hash);
		memset(r, 0, sizeof(*r));
		r->family = a->family;
		memcpy(r->prefix, a->ip, plen);
		if (hidx_add(dht, &dht->rate_idx,
		             rate_key_hash(a->family, a->ip), (int32_t)victim,
		             rate_slot_hash) != 0)
			return 1;
		r->used = 1;
		r->tokens = dht->rate_burst;
		r->updated_ms = now;
	}
	if (now > r->updated_ms) {
		r->tokens += (double)(now - r->updated_ms) * dht->rate_per_ms;
		if (r->tokens > dht->rate_burst)
			r->tokens = dht->rate_burst;
		r->updated_ms = now;
	}
	if (r->tokens < 1.0)
		return 0;
	r->tokens -= 1.0;
	return 1;
}

/* ---- sending ------------------------------------------------------------- */

/* Encodes m with our ID as sender, seals and sends it. Returns the
 * datagram's size, or a negative errno (nothing sent). */
static int send_msg(fm__dht *dht, const fm_addr *to, fm__dht_msg *m)
{
	uint8_t body[FM_DHT_BODY_MAX_BYTES];
	uint8_t dgram[FM_DATAGRAM_MAX_BYTES];
	uint8_t nonce[FM_DHT_NONCE_BYTES];
	size_t body_len, len;
	int rc;

	memcpy(m->sender, dht->identity.node_id, FM_DHT_ID_BYTES);
	rc = fm__dht_msg_encode(m, body, sizeof(body), &body_len);
	if (rc != 0)
		return rc;
	rand_bytes(dht, nonce, sizeof(nonce));
	rc = fm__dht_seal(dht->seal_key, nonce, body, body_len, dgram,
	                  sizeof(dgram), &len);
	if (rc != 0)
		return rc;
	dht->io.send_datagram(dht->io.ctx, to, dgram, len);
	dht->stats.datagrams_sent++;
	return (int)len;
}

/* Sealed size of m as it stands (no padding added). */
static size_t sealed_size(const fm__dht *dht, fm__dht_msg *m)
{
	uint8_t body[FM_DHT_BODY_MAX_BYTES];
	size_t len;

	memcpy(m->sender, dht->identity.node_id, FM_DHT_ID_BYTES);
	if (fm__dht_msg_encode(m, body, sizeof(body), &len) != 0)
		return SIZE_MAX;
	return len + FM_DHT_SEAL_OVERHEAD;
}

/* Sets m->pad_len so that the sealed request is as close to target bytes
 * as the encoding allows without exceeding it (a bin header is 2 or 3
 * bytes; one size, 258 bytes of padding, cannot be hit exactly). */
static void pad_to(const fm__dht *dht, fm__dht_msg *m, size_t target)
{
	size_t base, avail;

	m->pad_len = 0;
	base = sealed_size(dht, m);
	if (base == SIZE_MAX || base + 2 > target)
		return;
	avail = target - base; /* the pad element, header included */
	if (avail - 2 <= UINT8_MAX)
		m->pad_len = avail - 2;
	else if (avail - 3 > UINT8_MAX)
		m->pad_len = avail - 3;
	else
		m->pad_len = UINT8_MAX;
}

/* Sends an answer to a request from `to`, within the anti-amplification
 * limit (the caller has shaped m to fit `limit`). */
static void send_answer(fm__dht *dht, uint64_t now, const fm_addr *to,
                        fm__dht_msg *m)
{
	struct dht_addr_state *s;
	int len = send_msg(dht, to, m);

	if (len < 0)
		return;
	credit_charge(dht, now, to, (size_t)len);
	/* Our answer echoes their txid from this address: they now hold
	 * proof that we receive here. */
	s = addr_get(dht, to);
	if (s != NULL)
		s->me_proven_until_ms = now + FM__DHT_ME_PROVEN_MS;
}

/* ---- the routing table --------------------------------------------------- */

static int bucket_alloc(struct dht_bucket *b)
{
	if (b->e != NULL)
		return 0;
	b->e = calloc(FM_DHT_K + FM_DHT_REPLACEMENTS_CHALLENGE, sizeof(*b->e));
	if (b->e == NULL)
		return -ENOMEM;
	b->slots = FM_DHT_K + FM_DHT_REPLACEMENTS_CHALLENGE;
	return 0;
}

static int bucket_find(const struct dht_bucket *b, const uint8_t *id)
{
	int i;

	for (i = 0; i < b->count; i++)
		if (id_equal(b->e[i].id, id))
			return i;
	return -1;
}

static int repl_find(const struct dht_bucket *b, const uint8_t *id)
{
	int i;

	for (i = 0; i < b->repl_count; i++)
		if (id_equal(b->e[FM_DHT_K + i].id, id))
			return i;
	return -1;
}

/* Table entries are indexed by address (tab_idx) as bucket * 32 + i:
 * entries never move within their bucket. */
#define FM__DHT_TAB_CODE(b, i) ((int32_t)(b)*32 + (int32_t)(i))
_Static_assert(FM_DHT_K <= 32, "entry codes hold an index below 32");
_Static_assert(FM_DHT_BUCKETS * 32 <= INT16_MAX &&
                       FM_DHT_ADDRS_MAX <= INT16_MAX &&
                       FM_DHT_RATE_SOURCES_MAX <= INT16_MAX,
               "hash index slots are int16_t");

static const struct dht_entry *tab_entry(const fm__dht *dht, int32_t code)
{
	return &dht->buckets[code / 32].e[code % 32];
}

static uint32_t tab_slot_hash(const fm__dht *dht, int32_t code)
{
	return hash_addr(&tab_entry(dht, code)->addr);
}

static int tab_slot_eq(const fm__dht *dht, int32_t code, const void *key)
{
	return addr_equal(&tab_entry(dht, code)->addr, key);
}

/* Entry i of bucket b got its address / is about to lose it. */
static void tab_index_add(fm__dht *dht, int b, int i)
{
	(void)hidx_add(dht, &dht->tab_idx,
	               hash_addr(&dht->buckets[b].e[i].addr),
	               FM__DHT_TAB_CODE(b, i), tab_slot_hash);
}

static void tab_index_del(fm__dht *dht, int b, int i)
{
	int32_t code = FM__DHT_TAB_CODE(b, i);
	int32_t pos = hidx_find(dht, &dht->tab_idx,
	                        hash_addr(&dht->buckets[b].e[i].addr),
	                        tab_slot_eq, &dht->buckets[b].e[i].addr);

	if (pos >= 0 && dht->tab_idx.v[pos] == code)
		hidx_del_at(dht, &dht->tab_idx, pos, tab_slot_hash);
}

/* Whether an entry of any bucket has address a (one ID per address). */
static int table_has_addr(const fm__dht *dht, const fm_addr *a)
{
	return hidx_find(dht, &dht->tab_idx, hash_addr(a), tab_slot_eq, a) >= 0;
}

static struct dht_entry *table_find(fm__dht *dht, const uint8_t *id)
{
	int b = fm__dht_bucket_index(dht->identity.node_id, id), i;

	if (b < 0 || dht->buckets[b].e == NULL)
		return NULL;
	i = bucket_find(&dht->buckets[b], id);
	return i >= 0 ? &dht->buckets[b].e[i] : NULL;
}

/* 1 when addr may join the entries first[0..n) (skipping index skip):
 * fewer than subnet_max of them share its /24 or /48, unless the range is
 * exempt. */
static int subnet_ok(const fm__dht *dht, const struct dht_entry *first, int n,
                     int skip, const fm_addr *addr)
{
	int i, same = 0;

	if (!dht->cap_private && fm__dht_addr_is_private(addr))
		return 1;
	for (i = 0; i < n; i++)
		if (i != skip && same_subnet(&first[i].addr, addr))
			same++;
	return same < dht->subnet_max;
}

static uint32_t table_live(const fm__dht *dht)
{
	uint32_t live = 0;
	int b, i;

	for (b = 0; b < FM_DHT_BUCKETS; b++)
		for (i = 0; i < dht->buckets[b].count; i++)
			if (dht->buckets[b].e[i].fails < FM_DHT_FAILS_MAX)
				live++;
	return live;
}

static void known_add(fm__dht *dht, uint64_t now, const uint8_t *id,
                      const fm_addr *addr, int pinned, int ok);

static void check_joined_as(fm__dht *dht, uint64_t now, int live);

/* Called whenever the table may have gone from no live entry to one: the
 * node has (re)joined, so it looks itself up and publishes; or from some
 * to none: it re-bootstraps. */
static void check_joined(fm__dht *dht, uint64_t now)
{
	int live = table_live(dht) > 0;

	check_joined_as(dht, now, live);
}

/* An entry has just become live (or entered live). */
static void check_joined_live(fm__dht *dht, uint64_t now)
{
	if (!dht->joined)
		check_joined_as(dht, now, 1);
}

static void check_joined_as(fm__dht *dht, uint64_t now, int live)
{

	if (live && !dht->joined) {
		/* A self-lookup, then a refresh of every bucket farther than
		 * our closest neighbour (lookup_finish): the table fills at
		 * once rather than over the hours of FM_DHT_REFRESH_MS. */
		dht->next_self_ms = now;
		dht->refresh_pending = 1;
		dht->lookups_empty = 0;
		dht->publish_pending = 1;
		dht->bootstrap_backoff_ms = FM_DHT_BOOTSTRAP_BACKOFF_MIN_MS;
		dht_log(dht, FM_LOG_INFO, "joined: %u entries",
		        (unsigned)dht->table_size);
	} else if (!live && dht->joined) {
		dht->next_bootstrap_ms = now;
		dht_log(dht, FM_LOG_WARN,
		        "no live entry left: re-bootstrapping");
	}
	dht->joined = (uint8_t)live;
}

static void entry_set(struct dht_entry *e, uint64_t now, const uint8_t *id,
                      const fm_addr *addr)
{
	memset(e, 0, sizeof(*e));
	memcpy(e->id, id, FM_DHT_ID_BYTES);
	e->addr = *addr;
	e->last_seen_ms = now;
}

static void repl_remove(struct dht_bucket *b, int i)
{
	memmove(&b->e[FM_DHT_K + i], &b->e[FM_DHT_K + i + 1],
	        (size_t)(b->repl_count - i - 1) * sizeof(*b->e));
	b->repl_count--;
}

/* Adds a proven node to the replacement cache (newest last). */
static void repl_add(fm__dht *dht, struct dht_bucket *b, uint64_t now,
                     const uint8_t *id, const fm_addr *addr)
{
	int i = repl_find(b, id);

	if (i >= 0)
		repl_remove(b, i);
	if (!subnet_ok(dht, &b->e[FM_DHT_K], b->repl_count, -1, addr))
		return;
	if (FM_DHT_K + b->repl_count == b->slots &&
	    b->slots < FM_DHT_K + FM_DHT_REPLACEMENTS) {
		struct dht_entry *e = realloc(
		        b->e, (FM_DHT_K + FM_DHT_REPLACEMENTS) * sizeof(*e));
		if (e != NULL) {
			b->e = e;
			b->slots = FM_DHT_K + FM_DHT_REPLACEMENTS;
		}
	}
	if (FM_DHT_K + b->repl_count == b->slots)
		repl_remove(b, 0); /* the oldest goes */
	entry_set(&b->e[FM_DHT_K + b->repl_count], now, id, addr);
	b->repl_count++;
}

/* Replaces entry i of bucket b with the newest replacement that fits the
 * subnet cap and whose address is not taken. Returns 1 when replaced. */
static int promote(fm__dht *dht, int bi, int i, uint64_t now)
{
	struct dht_bucket *b = &dht->buckets[bi];
	int r;

	for (r = b->repl_count - 1; r >= 0; r--) {
		struct dht_entry *c = &b->e[FM_DHT_K + r];
		if (!subnet_ok(dht, b->e, b->count, i, &c->addr) ||
		    table_has_addr(dht, &c->addr))
			continue;
		tab_index_del(dht, bi, i);
		b->e[i] = *c;
		b->e[i].fails = 0;
		tab_index_add(dht, bi, i);
		dht->table_wake_ms = 0;
		dht->check_wake_ms = 0; /* it may be due already */
		repl_remove(b, r);
		dht->stats.evictions++;
		dht->stats.inserts++;
		dht->dirty = 1;
		known_add(dht, now, b->e[i].id, &b->e[i].addr, 0, 1);
		return 1;
	}
	return 0;
}

static int send_lrs_ping(fm__dht *dht, uint64_t now, int bi);

/* A node proved its key at addr (or a session did): into the bucket, into
 * the replacement cache, or nowhere. Returns 0 when in the table, 1 when
 * in the replacement cache, or a negative errno when refused. */
static int table_offer(fm__dht *dht, uint64_t now, const uint8_t *id,
                       const fm_addr *addr)
{
	int bi = fm__dht_bucket_index(dht->identity.node_id, id), i;
	struct dht_bucket *b;
	int other;

	if (bi < 0 || !addr_usable(addr))
		return -EINVAL;
	b = &dht->buckets[bi];
	if (bucket_alloc(b) != 0)
		return -ENOMEM;
	other = table_has_addr(dht, addr);
	i = bucket_find(b, id);
	if (i >= 0) {
		struct dht_entry *e = &b->e[i];
		if (!addr_equal(&e->addr, addr)) {
			/* It moved, and proved it at the new address. */
			if (other || !subnet_ok(dht, b->e, b->count, i, addr)) {
				dht->stats.subnet_refused += !other;
				return -EPERM;
			}
			tab_index_del(dht, bi, i);
			e->addr = *addr;
			tab_index_add(dht, bi, i);
			dht->dirty = 1;
		}
		e->last_seen_ms = now;
		e->fails = 0;
		check_joined_live(dht, now);
		return 0;
	}
	if (other)
		return -EEXIST; /* one ID per address */
	if (!subnet_ok(dht, b->e, b->count, -1, addr)) {
		dht->stats.subnet_refused++;
		return -EPERM;
	}
	if (b->count < FM_DHT_K) {
		entry_set(&b->e[b->count], now, id, addr);
		tab_index_add(dht, bi, b->count++);
		if (bi > dht->depth)
			dht->depth = bi;
		dht->table_wake_ms = 0;
		dht->check_wake_ms = min_u64(dht->check_wake_ms,
		                             now + FM_DHT_CHECK_AFTER_MS);
		dht->table_size++;
		dht->stats.inserts++;
		dht->dirty = 1;
		known_add(dht, now, id, addr, 0, 1);
		i = repl_find(b, id);
		if (i >= 0)
			repl_remove(b, i);
		check_joined_live(dht, now);
		return 0;
	}
	/* Full. A stale entry gives way at once; otherwise the newcomer
	 * waits while the least-recently-seen entry is asked if it lives. */
	for (i = 0; i < b->count; i++) {
		if (b->e[i].fails >= FM_DHT_FAILS_MAX) {
			tab_index_del(dht, bi, i);
			entry_set(&b->e[i], now, id, addr);
			tab_index_add(dht, bi, i);
			dht->table_wake_ms = 0;
			dht->check_wake_ms =
			        min_u64(dht->check_wake_ms,
			                now + FM_DHT_CHECK_AFTER_MS);
			dht->stats.evictions++;
			dht->stats.inserts++;
			dht->dirty = 1;
			known_add(dht, now, id, addr, 0, 1);
			check_joined_live(dht, now);
			return 0;
		}
	}
	repl_add(dht, b, now, id, addr);
	if (!b->lrs_ping)
		send_lrs_ping(dht, now, bi);
	return 1;
}

/* An RPC to (id, addr) failed. */
static void entry_failed(fm__dht *dht, uint64_t now, const uint8_t *id,
                         const fm_addr *addr)
{
	int bi = fm__dht_bucket_index(dht->identity.node_id, id), i;
	struct dht_bucket *b;

	if (bi < 0)
		return;
	b = &dht->buckets[bi];
	if (b->e == NULL || (i = bucket_find(b, id)) < 0 ||
	    !addr_equal(&b->e[i].addr, addr))
		return;
	if (b->e[i].fails < UINT8_MAX)
		b->e[i].fails++;
	if (b->e[i].fails >= FM_DHT_FAILS_MAX) {
		promote(dht, bi, i, now);
		check_joined(dht, now);
	}
}

/* A valid answer from (id, addr): the entry is alive. */
static void entry_seen(fm__dht *dht, uint64_t now, const uint8_t *id,
                       const fm_addr *addr)
{
	struct dht_entry *e = table_find(dht, id);

	if (e == NULL || !addr_equal(&e->addr, addr))
		return;
	e->last_seen_ms = now;
	if (e->fails != 0) {
		e->fails = 0;
		check_joined_live(dht, now);
	}
}

/* The closest set being built: entries with the first 8 bytes of their
 * distance to the target, so that most comparisons are one integer
 * comparison. */
struct closest_item {
	uint64_t d; /* big-endian first 8 bytes of id ^ target */
	const struct dht_entry *e;
};

static uint64_t dist_prefix(const uint8_t *target, const uint8_t *id)
{
	uint64_t d = 0;
	int i;

	for (i = 0; i < 8; i++)
		d = (d << 8) | (uint8_t)(target[i] ^ id[i]);
	return d;
}

static int item_cmp(const uint8_t *target, const struct closest_item *a,
                    const struct closest_item *b)
{
	if (a->d != b->d)
		return a->d < b->d ? -1 : 1;
	return fm__dht_distance_cmp(target, a->e->id, b->e->id);
}

/* Inserts e into out[0..*n) (at most max, nearest first). */
static void closest_insert(const uint8_t *target, const struct dht_entry *e,
                           struct closest_item *out, size_t *n, size_t max)
{
	struct closest_item it = {dist_prefix(target, e->id), e};
	size_t j;

	if (*n == max && item_cmp(target, &it, &out[*n - 1]) >= 0)
		return;
	j = *n < max ? (*n)++ : max - 1;
	while (j > 0 && item_cmp(target, &it, &out[j - 1]) < 0) {
		out[j] = out[j - 1];
		j--;
	}
	out[j] = it;
}

/* Adds the entries of bucket b that pass the filter (stale: the stale
 * ones, else the live ones). */
static void closest_bucket(const fm__dht *dht, int b, const uint8_t *target,
                           const uint8_t *exclude, int stale,
                           struct closest_item *out, size_t *n, size_t max)
{
	const struct dht_bucket *bk = &dht->buckets[b];
	int i;

	for (i = 0; i < bk->count; i++) {
		const struct dht_entry *e = &bk->e[i];
		if ((e->fails >= FM_DHT_FAILS_MAX) != stale ||
		    (exclude != NULL && id_equal(e->id, exclude)))
			continue;
		closest_insert(target, e, out, n, max);
	}
}

/* Walks the buckets in order of distance to target: with j the bucket
 * target would fall in, every entry of bucket j is closer to target than
 * any entry of a bucket i > j (those differ from target at bit j), and
 * those are closer than any of bucket j - 1, j - 2, ... 0 in turn (an
 * entry of bucket i < j differs from target first at bit i). So the walk
 * takes bucket j, then the buckets beyond j together, then j - 1 down to
 * 0, and stops after the group that filled max. */
static void closest_walk(const fm__dht *dht, const uint8_t *target,
                         const uint8_t *exclude, int stale,
                         struct closest_item *out, size_t *n, size_t max)
{
	int j = fm__dht_bucket_index(dht->identity.node_id, target), b;
	int depth = dht->depth;

	if (j >= 0) {
		closest_bucket(dht, j, target, exclude, stale, out, n, max);
		if (*n == max)
			return;
	}
	/* Beyond j (all of them when target is our ID): one group. */
	for (b = j + 1; b <= depth; b++)
		closest_bucket(dht, b, target, exclude, stale, out, n, max);
	for (b = j - 1; b >= 0 && *n < max; b--)
		closest_bucket(dht, b, target, exclude, stale, out, n, max);
}

/* Up to max entries closest to target, nearest first, live ones before
 * stale ones. exclude: an ID to leave out (the asker); live_only: leave
 * stale entries out. */
static size_t table_closest(const fm__dht *dht, const uint8_t *target,
                            const uint8_t *exclude, int live_only,
                            struct dht_entry *out, size_t max)
{
	struct closest_item stack[2 * FM_DHT_K], *items = stack;
	size_t n = 0, i;

	if (max == 0)
		return 0;
	if (max > sizeof(stack) / sizeof(stack[0])) {
		items = malloc(max * sizeof(*items));
		if (items == NULL)
			return 0;
	}
	closest_walk(dht, target, exclude, 0, items, &n, max);
	if (n < max && !live_only) {
		size_t m = 0;
		closest_walk(dht, target, exclude, 1, items + n, &m, max - n);
		n += m;
	}
	for (i = 0; i < n; i++)
		out[i] = *items[i].e;
	if (items != stack)
		free(items);
	return n;
}

size_t fm__dht_closest(const fm__dht *dht,
                       const uint8_t target[FM_DHT_ID_BYTES],
                       fm__dht_contact *out, size_t max)
{
	struct dht_entry *tmp;
	size_t n, i;

	if (dht == NULL || target == NULL || out == NULL || max == 0)
		return 0;
	if (max > dht->table_size)
		max = dht->table_size;
	tmp = malloc((max ? max : 1) * sizeof(*tmp));
	if (tmp == NULL)
		return 0;
	n = table_closest(dht, target, NULL, 0, tmp, max);
	for (i = 0; i < n; i++) {
		memcpy(out[i].id, tmp[i].id, FM_DHT_ID_BYTES);
		out[i].addr = tmp[i].addr;
	}
	free(tmp);
	return n;
}

/* ---- known addresses ----------------------------------------------------- */

static void known_add(fm__dht *dht, uint64_t now, const uint8_t *id,
                      const fm_addr *addr, int pinned, int ok)
{
	struct dht_known *k = NULL;
	size_t i;

	if (id != NULL && id_equal(id, dht->identity.node_id))
		return;
	for (i = 0; i < dht->known_count; i++)
		if (addr_equal(&dht->known[i].addr, addr)) {
			k = &dht->known[i];
			break;
		}
	if (k == NULL) {
		if (dht->known_count == dht->known_cap &&
		    grow((void **)&dht->known, &dht->known_cap,
		         sizeof(*dht->known), FM_DHT_KNOWN_MAX) != 0) {
			/* Full: the unpinned entry heard from longest ago. */
			for (i = 0; i < dht->known_count; i++)
				if (!dht->known[i].pinned &&
				    (k == NULL ||
				     dht->known[i].last_ok_ms < k->last_ok_ms))
					k = &dht->known[i];
			if (k == NULL)
				return;
		} else {
			k = &dht->known[dht->known_count++];
		}
		memset(k, 0, sizeof(*k));
		k->addr = *addr;
	}
	if (id != NULL) {
		memcpy(k->id, id, FM_DHT_ID_BYTES);
		k->has_id = 1;
	}
	k->pinned |= (uint8_t)(pinned != 0);
	if (ok)
		k->last_ok_ms = now;
	dht->dirty = 1;
}

/* ---- RPCs ---------------------------------------------------------------- */

/* A txid is 6 random bytes and the request's slot (big-endian): an answer
 * finds its request without a search, and two requests in flight never
 * share a txid. The random part keeps it unpredictable. */
static int rpc_find(const fm__dht *dht, const uint8_t *txid)
{
	size_t i = (size_t)txid[FM_DHT_TXID_BYTES - 2] << 8 |
	           txid[FM_DHT_TXID_BYTES - 1];

	if (i < dht->rpc_cap && dht->rpcs[i].used &&
	    memcmp(dht->rpcs[i].txid, txid, FM_DHT_TXID_BYTES) == 0)
		return (int)i;
	return -1;
}

static int rpc_count_challenges(const fm__dht *dht, const fm_addr *to,
                                int *to_addr)
{
	int n = 0;
	size_t i;

	*to_addr = 0;
	for (i = 0; i < dht->rpc_cap; i++) {
		const struct dht_rpc *r = &dht->rpcs[i];
		if (!r->used || r->purpose != RPC_CHALLENGE)
			continue;
		n++;
		if (to != NULL && addr_equal(&r->addr, to))
			*to_addr = 1;
	}
	return n;
}

/* A free RPC slot with a fresh txid, or -ENOSPC. */
static int rpc_new(fm__dht *dht, uint8_t type, uint8_t purpose,
                   const uint8_t *id, const fm_addr *addr)
{
	struct dht_rpc *r;
	size_t i;

	for (i = 0; i < dht->rpc_cap; i++)
		if (!dht->rpcs[i].used)
			break;
	if (i == dht->rpc_cap && grow((void **)&dht->rpcs, &dht->rpc_cap,
	                              sizeof(*dht->rpcs), FM_DHT_RPCS_MAX) != 0)
		return -ENOSPC;
	r = &dht->rpcs[i];
	memset(r, 0, sizeof(*r));
	rand_bytes(dht, r->txid, sizeof(r->txid));
	r->txid[FM_DHT_TXID_BYTES - 2] = (uint8_t)(i >> 8);
	r->txid[FM_DHT_TXID_BYTES - 1] = (uint8_t)i;
	r->used = 1;
	r->type = type;
	r->purpose = purpose;
	r->addr = *addr;
	r->lookup = -1;
	r->bucket = -1;
	if (id != NULL) {
		memcpy(r->id, id, FM_DHT_ID_BYTES);
		r->has_id = 1;
	}
	dht->rpc_used++;
	return (int)i;
}

static void rpc_free(fm__dht *dht, int i)
{
	dht->rpcs[i].used = 0;
	dht->rpc_used--;
}

/* (Re)sends request i as recorded in its slot. */
static int rpc_transmit(fm__dht *dht, uint64_t now, int i)
{
	struct dht_rpc *r = &dht->rpcs[i];
	fm__dht_msg m;
	int len;

	memset(&m, 0, sizeof(m));
	m.type = r->type;
	memcpy(m.txid, r->txid, sizeof(m.txid));
	switch (r->type) {
	case FM__DHT_FIND_NODE:
	case FM__DHT_FIND_VALUE:
		memcpy(m.key, r->key, sizeof(m.key));
		m.has_cursor = r->has_cursor;
		memcpy(m.cursor, r->cursor, sizeof(m.cursor));
		/* A node that may not know our address yet answers only as
		 * much as we send: ask at the size of a full answer. */
		if (r->padded || !me_proven(dht, now, &r->addr)) {
			r->padded = 1;
			pad_to(dht, &m, FM_DATAGRAM_MAX_BYTES);
		}
		break;
	case FM__DHT_STORE:
		if (!dht->has_record)
			return -ENOENT;
		memcpy(m.key, r->key, sizeof(m.key));
		m.record = dht->record_bytes;
		m.record_len = dht->record_len;
		m.ttl_ms = FM_DHT_VALUE_TTL_MS;
		break;
	case FM__DHT_CHALLENGE:
		memcpy(m.nonce, r->nonce, sizeof(m.nonce));
		m.observed = r->addr;
		/* Large enough that the PROOF is no larger. */
		pad_to(dht, &m, FM_DHT_PROOF_BYTES);
		break;
	default:
		break;
	}
	len = send_msg(dht, &r->addr, &m);
	if (len < 0)
		return len;
	r->sent_ms = now;
	r->attempts++;
	dht->rpc_wake_ms =
	        min_u64(dht->rpc_wake_ms, now + FM_DHT_RPC_TIMEOUT_MS);
	return 0;
}

/* Sends a CHALLENGE to addr (id: the node expected there, or NULL). */
static int send_challenge(fm__dht *dht, uint64_t now, const uint8_t *id,
                          const fm_addr *addr)
{
	int to_addr, i, rc;

	if (rpc_count_challenges(dht, addr, &to_addr) >= FM_DHT_CHALLENGES_MAX)
		return -EBUSY;
	if (to_addr)
		return -EALREADY;
	i = rpc_new(dht, FM__DHT_CHALLENGE, RPC_CHALLENGE, id, addr);
	if (i < 0)
		return i;
	rand_bytes(dht, dht->rpcs[i].nonce, sizeof(dht->rpcs[i].nonce));
	rc = rpc_transmit(dht, now, i);
	if (rc != 0) {
		rpc_free(dht, i);
		return rc;
	}
	dht->stats.challenges_sent++;
	return 0;
}

static int send_lrs_ping(fm__dht *dht, uint64_t now, int bi)
{
	struct dht_bucket *b = &dht->buckets[bi];
	int lrs = 0, i, r;

	for (i = 1; i < b->count; i++)
		if (b->e[i].last_seen_ms < b->e[lrs].last_seen_ms)
			lrs = i;
	r = rpc_new(dht, FM__DHT_PING, RPC_LRS_PING, b->e[lrs].id,
	            &b->e[lrs].addr);
	if (r < 0)
		return r;
	dht->rpcs[r].bucket = bi;
	if (rpc_transmit(dht, now, r) != 0) {
		rpc_free(dht, r);
		return -EIO;
	}
	b->lrs_ping = 1;
	dht->stats.lrs_pings++;
	return 0;
}

/* A liveness check of entry i of bucket bi. */
static void send_check(fm__dht *dht, uint64_t now, int bi, int i)
{
	struct dht_entry *e = &dht->buckets[bi].e[i];
	int r = rpc_new(dht, FM__DHT_PING, RPC_CHECK, e->id, &e->addr);

	e->checked_ms = now;
	if (r < 0)
		return;
	if (rpc_transmit(dht, now, r) != 0) {
		rpc_free(dht, r);
		return;
	}
	e->checking = 1;
	dht->checks++;
}

static void check_done(fm__dht *dht, const struct dht_rpc *r)
{
	struct dht_entry *e = table_find(dht, r->id);

	if (dht->checks > 0)
		dht->checks--;
	if (e != NULL)
		e->checking = 0;
	dht->table_wake_ms = 0;
	dht->check_wake_ms = 0;
}

/* When entry e is next due for a liveness check. */
static uint64_t check_due(const struct dht_entry *e)
{
	uint64_t last = e->last_seen_ms > e->checked_ms ? e->last_seen_ms
	                                                : e->checked_ms;

	return last + FM_DHT_CHECK_AFTER_MS;
}

/* Whether (id, addr), not in the table, is worth a CHALLENGE: its bucket or
 * the bucket's replacement cache has room for it and its subnet. */
static int wants(fm__dht *dht, const uint8_t *id, const fm_addr *addr)
{
	int bi = fm__dht_bucket_index(dht->identity.node_id, id);
	const struct dht_bucket *b;

	if (bi < 0 || !addr_usable(addr) || table_find(dht, id) != NULL ||
	    table_has_addr(dht, addr))
		return 0;
	b = &dht->buckets[bi];
	if (b->e == NULL)
		return 1;
	if (!subnet_ok(dht, b->e, b->count, -1, addr))
		return 0;
	if (b->count < FM_DHT_K)
		return 1;
	/* A full bucket: a few proven replacements are enough to replace
	 * what fails (each proof costs the other node a signature); more
	 * come as the cache empties. */
	return repl_find(b, id) < 0 &&
	       b->repl_count < FM_DHT_REPLACEMENTS_CHALLENGE;
}

/* ---- the value store ----------------------------------------------------- */

/* Order of the store: key, then node ID. */
static int value_cmp(const uint8_t *key, const uint8_t *node_id,
                     const struct dht_value *v)
{
	int c = memcmp(key, v->key, FM_DHT_ID_BYTES);

	return c != 0 ? c : memcmp(node_id, v->node_id, FM_DHT_ID_BYTES);
}

/* First index whose (key, node_id) is >= the given one. */
static size_t value_lower(const fm__dht *dht, const uint8_t *key,
                          const uint8_t *node_id)
{
	size_t lo = 0, hi = dht->value_count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (value_cmp(key, node_id, &dht->values[mid]) > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void value_remove(fm__dht *dht, size_t i)
{
	free(dht->values[i].bytes);
	memmove(&dht->values[i], &dht->values[i + 1],
	        (dht->value_count - i - 1) * sizeof(*dht->values));
	dht->value_count--;
}

/* 1 when rec belongs under key: it is the node's own key, or the key of a
 * service it lists. */
static int record_matches_key(const fm_record *rec, const uint8_t *key)
{
	uint8_t k[FM_DHT_ID_BYTES];
	uint8_t i;

	if (id_equal(rec->node_id, key))
		return 1;
	for (i = 0; i < rec->service_count; i++)
		if (fm__dht_service_key(rec->services[i].name, k) == 0 &&
		    id_equal(k, key))
			return 1;
	return 0;
}

/* When to sweep for a value that expires at `expires`: then, but at
 * least FM_DHT_STORE_SWEEP_MS after the last sweep, so that expiries are
 * batched even when STOREs carry short TTLs. FM_DEADLINE_NONE stays. */
static uint64_t sweep_at(const fm__dht *dht, uint64_t expires)
{
	uint64_t batch = dht->swept_ms + FM_DHT_STORE_SWEEP_MS;

	return expires > batch ? expires : batch;
}

/* Stores a signed record under key (enum fm__dht_store_status). */
static int store_put(fm__dht *dht, uint64_t now, const uint8_t *key,
                     const uint8_t *bytes, size_t len, uint64_t ttl_ms)
{
	static const uint8_t zero[FM_DHT_ID_BYTES];
	fm_record rec;
	size_t i, first, n, soonest;
	struct dht_value *v;
	uint8_t *copy;

	if (ttl_ms == 0 || len == 0 || len > FM_RECORD_MAX_BYTES ||
	    fm_record_decode(bytes, len, &rec) != 0 ||
	    !record_matches_key(&rec, key))
		return FM__DHT_STORE_INVALID;
	if (ttl_ms > FM_DHT_VALUE_TTL_MS)
		ttl_ms = FM_DHT_VALUE_TTL_MS;
	i = value_lower(dht, key, rec.node_id);
	if (i < dht->value_count &&
	    value_cmp(key, rec.node_id, &dht->values[i]) == 0) {
		v = &dht->values[i];
		if (rec.seq < v->seq ||
		    (rec.seq == v->seq &&
		     (len != v->len || memcmp(bytes, v->bytes, len) != 0)))
			return FM__DHT_STORE_OLDER; /* the first of a seq wins
			                             */
		if (rec.seq > v->seq) {
			copy = malloc(len);
			if (copy == NULL)
				return FM__DHT_STORE_FULL;
			memcpy(copy, bytes, len);
			free(v->bytes);
			v->bytes = copy;
			v->len = (uint16_t)len;
			v->seq = rec.seq;
		}
		if (now + ttl_ms > v->expires_ms)
			v->expires_ms = now + ttl_ms;
		return FM__DHT_STORE_OK;
	}
	/* A new node under this key: within the per-key limit, a record that
	 * lives longer pushes out the one closest to expiry. */
	first = value_lower(dht, key, zero);
	for (n = 0, soonest = first; first + n < dht->value_count &&
	                             id_equal(dht->values[first + n].key, key);
	     n++)
		if (dht->values[first + n].expires_ms <
		    dht->values[soonest].expires_ms)
			soonest = first + n;
	if (n >= FM_DHT_STORE_MAX_PER_KEY) {
		if (dht->values[soonest].expires_ms >= now + ttl_ms)
			return FM__DHT_STORE_FULL;
		value_remove(dht, soonest);
		if (soonest < i)
			i--;
	}
	if (dht->value_count >= FM_DHT_STORE_MAX_TOTAL)
		return FM__DHT_STORE_FULL;
	if (dht->value_count == dht->value_cap &&
	    grow((void **)&dht->values, &dht->value_cap, sizeof(*dht->values),
	         FM_DHT_STORE_MAX_TOTAL) != 0)
		return FM__DHT_STORE_FULL;
	copy = malloc(len);
	if (copy == NULL)
		return FM__DHT_STORE_FULL;
	memcpy(copy, bytes, len);
	memmove(&dht->values[i + 1], &dht->values[i],
	        (dht->value_count - i) * sizeof(*dht->values));
	v = &dht->values[i];
	memcpy(v->key, key, FM_DHT_ID_BYTES);
	memcpy(v->node_id, rec.node_id, FM_DHT_ID_BYTES);
	v->seq = rec.seq;
	v->expires_ms = now + ttl_ms;
	v->bytes = copy;
	v->len = (uint16_t)len;
	dht->value_count++;
	dht->next_sweep_ms =
	        min_u64(dht->next_sweep_ms, sweep_at(dht, v->expires_ms));
	return FM__DHT_STORE_OK;
}

/* Removes the expired values and times the next sweep: at the first
 * expiry, but at least FM_DHT_STORE_SWEEP_MS from now, and never while the
 * store holds nothing (an idle node is not woken to sweep it). */
static void store_sweep(fm__dht *dht, uint64_t now)
{
	uint64_t first = FM_DEADLINE_NONE;
	size_t i = 0;

	while (i < dht->value_count) {
		if (dht->values[i].expires_ms <= now) {
			value_remove(dht, i);
		} else {
			first = min_u64(first, dht->values[i].expires_ms);
			i++;
		}
	}
	dht->swept_ms = now;
	dht->next_sweep_ms = sweep_at(dht, first);
}

/* Our own record, stored here under each of its keys (we answer for it
 * like any storer would). */
static void store_own(fm__dht *dht, uint64_t now)
{
	uint8_t key[FM_DHT_ID_BYTES];
	uint8_t i;

	if (!dht->has_record)
		return;
	store_put(dht, now, dht->identity.node_id, dht->record_bytes,
	          dht->record_len, FM_DHT_VALUE_TTL_MS);
	for (i = 0; i < dht->record.service_count; i++)
		if (fm__dht_service_key(dht->record.services[i].name, key) == 0)
			store_put(dht, now, key, dht->record_bytes,
			          dht->record_len, FM_DHT_VALUE_TTL_MS);
}

/* ---- lookups ------------------------------------------------------------- */

static struct dht_lookup *lookup_get(fm__dht *dht, int slot, uint32_t gen)
{
	struct dht_lookup *l;

	if (slot < 0 || slot >= FM_DHT_LOOKUPS_MAX)
		return NULL;
	l = dht->lookups[slot];
	return l != NULL && l->gen == gen ? l : NULL;
}

static int cand_find(const struct dht_lookup *l, const uint8_t *id)
{
	uint32_t i;

	for (i = 0; i < l->cand_count; i++)
		if (id_equal(l->cands[i].id, id))
			return (int)i;
	return -1;
}

/* The subnet cap of the table applies to a lookup's shortlist too: at
 * most subnet_max candidates (not failed) of one /24 or /48, unless the
 * range is exempt. Otherwise nodes of one subnet, given IDs near a key
 * and named by liars, would take every place among the k closest and end
 * the lookup before it meets the honest nodes near the key. */
static int cand_subnet_ok(const fm__dht *dht, const struct dht_lookup *l,
                          const fm_addr *addr)
{
	uint32_t i;
	int same = 0;

	if (!dht->cap_private && fm__dht_addr_is_private(addr))
		return 1;
	for (i = 0; i < l->cand_count; i++)
		if (l->cands[i].state != C_FAILED &&
		    same_subnet(&l->cands[i].addr, addr))
			same++;
	return same < dht->subnet_max;
}

/* Adds a candidate in distance order; returns 1 when it was there already.
 * When the shortlist is full, the
 * farthest candidate not in flight makes room for a closer one. */
static int cand_add(fm__dht *dht, struct dht_lookup *l, const uint8_t *id,
                    const fm_addr *addr, uint32_t hop)
{
	int i = cand_find(l, id), j;

	if (i >= 0) {
		if (hop < l->cands[i].hop)
			l->cands[i].hop = (uint8_t)hop;
		return 1;
	}
	if (id_equal(id, dht->identity.node_id) || !addr_usable(addr) ||
	    !cand_subnet_ok(dht, l, addr))
		return 0;
	if (l->cand_count == FM_DHT_LOOKUP_CANDIDATES_MAX) {
		for (j = (int)l->cand_count - 1; j >= 0; j--)
			if (l->cands[j].state != C_INFLIGHT)
				break;
		if (j < 0 ||
		    fm__dht_distance_cmp(l->target, id, l->cands[j].id) >= 0)
			return 0;
		memmove(&l->cands[j], &l->cands[j + 1],
		        (l->cand_count - (uint32_t)j - 1) *
		                sizeof(l->cands[0]));
		l->cand_count--;
	}
	for (j = (int)l->cand_count;
	     j > 0 &&
	     fm__dht_distance_cmp(l->target, id, l->cands[j - 1].id) < 0;
	     j--)
		l->cands[j] = l->cands[j - 1];
	memset(&l->cands[j], 0, sizeof(l->cands[j]));
	memcpy(l->cands[j].id, id, FM_DHT_ID_BYTES);
	l->cands[j].addr = *addr;
	l->cands[j].hop = (uint8_t)(hop < UINT8_MAX ? hop : UINT8_MAX);
	l->cands[j].state = C_NEW;
	l->cand_count++;
	return 0;
}

static void lookup_finish(fm__dht *dht, int slot, uint64_t now);

/* Sends a lookup request to candidate ci (a fresh RPC). */
static int lookup_send(fm__dht *dht, int slot, int ci, uint64_t now,
                       const uint8_t *cursor, int padded)
{
	struct dht_lookup *l = dht->lookups[slot];
	struct dht_cand *c = &l->cands[ci];
	int r = rpc_new(dht,
	                l->kind == FM__DHT_LOOKUP_NODES ? FM__DHT_FIND_NODE
	                                                : FM__DHT_FIND_VALUE,
	                RPC_LOOKUP, c->id, &c->addr);

	if (r < 0)
		return r;
	memcpy(dht->rpcs[r].key, l->target, FM_DHT_ID_BYTES);
	dht->rpcs[r].lookup = slot;
	dht->rpcs[r].lookup_gen = l->gen;
	dht->rpcs[r].padded = (uint8_t)padded;
	if (cursor != NULL) {
		dht->rpcs[r].has_cursor = 1;
		memcpy(dht->rpcs[r].cursor, cursor, FM_DHT_ID_BYTES);
	}
	if (rpc_transmit(dht, now, r) != 0) {
		rpc_free(dht, r);
		return -EIO;
	}
	c->state = C_INFLIGHT;
	c->sent_ms = now;
	l->messages++;
	dht->lookup_wake_ms =
	        min_u64(dht->lookup_wake_ms, now + FM_DHT_RPC_SLOW_MS);
	return 0;
}

/* Drives a lookup: finishes it when the k closest candidates that have not
 * failed have all answered (or nothing is left to ask), otherwise keeps
 * alpha requests in flight to the closest candidates not asked yet. */
/* A refresh ends once alpha answers have brought k contacts of its
 * bucket, or its bucket holds k nodes after an answer, instead of asking
 * on until the k closest to a random ID have answered. */
static int refresh_done(const fm__dht *dht, const struct dht_lookup *l)
{
	if (!l->refresh || l->refresh_answers == 0 || l->refresh_bucket < 0)
		return 0;
	return (l->refresh_answers >= FM_DHT_ALPHA &&
	        l->refresh_hits >= FM_DHT_K) ||
	       dht->buckets[l->refresh_bucket].count >= FM_DHT_K;
}

static void lookup_step(fm__dht *dht, int slot, uint64_t now)
{
	struct dht_lookup *l = dht->lookups[slot];
	uint32_t i, seen, active;
	int pending, next;

	for (;;) {
		/* A service lookup that holds as many records as it can
		 * return has nothing left to learn but newer seqs. */
		if (l->found ||
		    (l->kind == FM__DHT_LOOKUP_SERVICE &&
		     l->record_count >= l->record_cap) ||
		    refresh_done(dht, l) ||
		    l->messages >= FM_DHT_LOOKUP_MESSAGES_MAX ||
		    now >= l->started_ms + FM_DHT_LOOKUP_TIMEOUT_MS)
			break;
		seen = 0;
		active = 0;
		pending = 0;
		next = -1;
		for (i = 0; i < l->cand_count; i++) {
			const struct dht_cand *c = &l->cands[i];
			if (c->state == C_INFLIGHT &&
			    now < c->sent_ms + FM_DHT_RPC_SLOW_MS)
				active++;
			if (c->state == C_FAILED || seen >= FM_DHT_K)
				continue;
			seen++;
			if (c->state == C_INFLIGHT)
				pending = 1;
			else if (c->state == C_NEW && next < 0)
				next = (int)i;
		}
		if (next < 0 && !pending)
			break; /* the k closest have answered */
		if (next < 0 || active >= FM_DHT_ALPHA)
			return; /* wait for answers or timeouts */
		if (lookup_send(dht, slot, next, now, NULL, 0) != 0)
			l->cands[next].state = C_FAILED;
	}
	lookup_finish(dht, slot, now);
}

static void lookup_free(struct dht_lookup *l)
{
	if (l == NULL)
		return;
	free(l->records);
	free(l);
}

static void publish_to(fm__dht *dht, uint64_t now, const uint8_t *key,
                       const struct dht_cand *c)
{
	int r = rpc_new(dht, FM__DHT_STORE, RPC_STORE, c->id, &c->addr);

	if (r < 0)
		return;
	memcpy(dht->rpcs[r].key, key, FM_DHT_ID_BYTES);
	if (rpc_transmit(dht, now, r) != 0) {
		rpc_free(dht, r);
		return;
	}
	dht->stats.stores_sent++;
}

static void start_republish(fm__dht *dht, uint64_t now);

static void refresh_all(fm__dht *dht, uint64_t now, const uint8_t *closest);

static void lookup_finish(fm__dht *dht, int slot, uint64_t now)
{
	struct dht_lookup *l = dht->lookups[slot];
	fm__dht_contact closest[FM_DHT_K];
	fm__dht_result res;
	uint32_t i, hops = 0;
	size_t n = 0;

	for (i = 0; i < l->cand_count && n < FM_DHT_K; i++) {
		const struct dht_cand *c = &l->cands[i];
		if (c->state != C_ANSWERED)
			continue;
		memcpy(closest[n].id, c->id, FM_DHT_ID_BYTES);
		closest[n].addr = c->addr;
		n++;
		if (c->hop > hops)
			hops = c->hop;
		if (l->publish)
			publish_to(dht, now, l->target, c);
	}
	memset(&res, 0, sizeof(res));
	res.kind = l->kind;
	memcpy(res.target, l->target, FM_DHT_ID_BYTES);
	res.closest = closest;
	res.closest_count = n;
	res.records = l->records;
	res.record_count = l->record_count;
	res.messages = l->messages;
	res.duration_ms = now - l->started_ms;
	if (l->kind == FM__DHT_LOOKUP_RECORD)
		hops = l->value_hop;
	res.hops = hops;
	if (l->kind == FM__DHT_LOOKUP_NODES)
		res.status = n > 0 ? 0 : -ENOENT;
	else
		res.status = l->record_count > 0 ? 0 : -ENOENT;
	dht->stats.lookups++;
	dht->stats.lookup_messages_sum += l->messages;
	if (res.status == 0) {
		dht->stats.lookups_succeeded++;
		dht->stats.lookup_hops_sum += res.hops;
	}
	/* The slot stays taken during the callback (records point into it);
	 * late answers no longer match its generation. */
	l->gen = 0;
	if (l->cb != NULL)
		l->cb(l->ctx, &res);
	if (l->kind == FM__DHT_LOOKUP_NODES)
		dht->lookups_empty = n > 0 ? 0 : dht->lookups_empty + 1;
	else if (n > 0)
		dht->lookups_empty = 0;
	else
		dht->lookups_empty++;
	if (l->self && dht->refresh_pending && n > 0) {
		dht->refresh_pending = 0;
		refresh_all(dht, now, closest[0].id);
	}
	if (l->self && dht->publish_pending) {
		dht->publish_pending = 0;
		dht->next_republish_ms = now;
		dht->republish_interval_ms = FM_DHT_REPUBLISH_FIRST_MS;
	}
	dht->lookups[slot] = NULL;
	lookup_free(l);
}

static int lookup_start(fm__dht *dht, uint64_t now, uint8_t kind,
                        const uint8_t *target, const char *service,
                        fm__dht_lookup_cb cb, void *ctx, int maint)
{
	struct dht_entry seeds[FM_DHT_K];
	struct dht_lookup *l;
	size_t n, i;
	int slot, bi, maint_count = 0;

	if (dht->table_size == 0) {
		if (dht->next_bootstrap_ms > now)
			dht->next_bootstrap_ms = now;
		return -ENOTCONN;
	}
	for (i = 0; i < FM_DHT_LOOKUPS_MAX; i++)
		if (dht->lookups[i] != NULL)
			maint_count += dht->lookups[i]->maint;
	if (maint && maint_count >= FM_DHT_MAINT_LOOKUPS_MAX)
		return -EBUSY;
	for (slot = 0; slot < FM_DHT_LOOKUPS_MAX; slot++)
		if (dht->lookups[slot] == NULL)
			break;
	if (slot == FM_DHT_LOOKUPS_MAX)
		return -EBUSY;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	if (kind != FM__DHT_LOOKUP_NODES) {
		l->record_cap = kind == FM__DHT_LOOKUP_RECORD
		                        ? 1
		                        : FM_DHT_LOOKUP_VALUES_MAX;
		l->records = calloc(l->record_cap, sizeof(*l->records));
		if (l->records == NULL) {
			free(l);
			return -ENOMEM;
		}
	}
	l->kind = kind;
	l->maint = (uint8_t)(maint != 0);
	l->gen = ++dht->lookup_gen == 0 ? ++dht->lookup_gen : dht->lookup_gen;
	memcpy(l->target, target, FM_DHT_ID_BYTES);
	if (service != NULL)
		memcpy(l->service, service,
		       strnlen(service, FM_SERVICE_NAME_MAX));
	l->started_ms = now;
	l->cb = cb;
	l->ctx = ctx;
	dht->lookup_wake_ms =
	        min_u64(dht->lookup_wake_ms, now + FM_DHT_LOOKUP_TIMEOUT_MS);
	n = table_closest(dht, target, NULL, 0, seeds, FM_DHT_K);
	for (i = 0; i < n; i++)
		cand_add(dht, l, seeds[i].id, &seeds[i].addr, 1);
	bi = fm__dht_bucket_index(dht->identity.node_id, target);
	if (bi >= 0)
		dht->buckets[bi].touched_ms = now;
	dht->lookups[slot] = l;
	return slot;
}

/* Adds the records of a VALUE that belong to the lookup's key. Returns the
 * node ID of the last record in the message (the next page's cursor). */
static int lookup_take_values(struct dht_lookup *l, const fm__dht_msg *m,
                              uint32_t hop, uint8_t *cursor)
{
	int have_cursor = 0;
	uint8_t i, s;
	uint32_t j;

	for (i = 0; i < m->value_count; i++) {
		fm_record rec;
		int ok = 0;
		if (fm_record_decode(m->values[i].record,
		                     m->values[i].record_len, &rec) != 0)
			continue;
		memcpy(cursor, rec.node_id, FM_DHT_ID_BYTES);
		have_cursor = 1;
		if (l->kind == FM__DHT_LOOKUP_RECORD) {
			ok = id_equal(rec.node_id, l->target);
		} else {
			/* l->target is the key of l->service. */
			for (s = 0; s < rec.service_count && !ok; s++)
				ok = strcmp(rec.services[s].name, l->service) ==
				     0;
		}
		if (!ok)
			continue;
		for (j = 0; j < l->record_count; j++)
			if (id_equal(l->records[j].node_id, rec.node_id))
				break;
		if (j < l->record_count) {
			if (rec.seq > l->records[j].seq)
				l->records[j] = rec;
			continue;
		}
		if (l->record_count == l->record_cap)
			continue;
		l->records[l->record_count++] = rec;
		if (l->kind == FM__DHT_LOOKUP_RECORD) {
			l->found = 1;
			l->value_hop = hop;
		}
	}
	return have_cursor;
}

/* A refresh (of a bucket, or a random walk) looks up a random ID only to
 * meet nodes of that ID's bucket: it challenges the contacts of that
 * bucket the answers bring, when the table wants them (a contact enters
 * the table only with its PROOF, as any other), as many as the bucket and
 * the challenged part of its replacement cache had room for when it
 * began (each PROOF costs its node a signature). */
static void refresh_contact(fm__dht *dht, uint64_t now, struct dht_lookup *l,
                            const fm__dht_contact *c)
{
	if (fm__dht_bucket_index(dht->identity.node_id, c->id) !=
	    l->refresh_bucket)
		return;
	if (l->refresh_hits < UINT16_MAX)
		l->refresh_hits++;
	if (l->refresh_room > 0 && wants(dht, c->id, &c->addr) &&
	    send_challenge(dht, now, c->id, &c->addr) == 0)
		l->refresh_room--;
}

/* An answer to lookup request r. */
static void lookup_on_answer(fm__dht *dht, uint64_t now,
                             const struct dht_rpc *r, const fm__dht_msg *m)
{
	struct dht_lookup *l = lookup_get(dht, r->lookup, r->lookup_gen);
	uint8_t cursor[FM_DHT_ID_BYTES];
	struct dht_cand *c;
	int ci;
	uint8_t i;

	if (l == NULL || (ci = cand_find(l, m->sender)) < 0)
		return;
	c = &l->cands[ci];
	if ((m->flags & FM__DHT_F_TRUNCATED) && !r->padded) {
		/* It does not know our address yet: ask again, padded. */
		struct dht_addr_state *s = addr_find(dht, &r->addr);
		if (s != NULL)
			s->me_proven_until_ms = 0;
		if (lookup_send(dht, r->lookup, ci, now,
		                r->has_cursor ? r->cursor : NULL, 1) == 0)
			goto step;
	}
	if (m->type == FM__DHT_NODES) {
		/* cand_add moves candidates around: c is not used after. */
		uint32_t hop = (uint32_t)c->hop + 1;
		c->state = C_ANSWERED;
		if (l->refresh && l->refresh_answers < UINT16_MAX)
			l->refresh_answers++;
		for (i = 0; i < m->contact_count; i++)
			if (!cand_add(dht, l, m->contacts[i].id,
			              &m->contacts[i].addr, hop) &&
			    l->refresh)
				/* A contact it did not have as a candidate. */
				refresh_contact(dht, now, l, &m->contacts[i]);
		goto step;
	}
	/* VALUE: take the records; fetch the next page if there is one. */
	if (lookup_take_values(l, m, c->hop, cursor) &&
	    (m->flags & FM__DHT_F_MORE) && !l->found &&
	    l->record_count < l->record_cap &&
	    c->pages + 1 < FM_DHT_VALUE_PAGES_MAX) {
		c->pages++;
		if (lookup_send(dht, r->lookup, ci, now, cursor, 0) == 0)
			goto step;
	}
	c->state = C_ANSWERED;
step:
	lookup_step(dht, r->lookup, now);
}

static void lookup_on_failure(fm__dht *dht, uint64_t now,
                              const struct dht_rpc *r)
{
	struct dht_lookup *l = lookup_get(dht, r->lookup, r->lookup_gen);
	int ci;

	if (l == NULL || (ci = cand_find(l, r->id)) < 0)
		return;
	/* A node that answered a first page and then went quiet still
	 * counts as answered. */
	l->cands[ci].state = l->cands[ci].pages > 0 ? C_ANSWERED : C_FAILED;
	lookup_step(dht, r->lookup, now);
}

/* Starts a lookup and its first requests; returns 0 or a negative errno. */
static int lookup_begin(fm__dht *dht, uint64_t now, uint8_t kind,
                        const uint8_t *target, const char *service,
                        fm__dht_lookup_cb cb, void *ctx, int maint, int publish,
                        int self)
{
	int slot =
	        lookup_start(dht, now, kind, target, service, cb, ctx, maint);

	if (slot < 0)
		return slot;
	dht->lookups[slot]->publish = (uint8_t)publish;
	dht->lookups[slot]->self = (uint8_t)self;
	lookup_step(dht, slot, now);
	return 0;
}

/* A maintenance lookup of target that ends as refresh_done says. */
static int refresh_begin(fm__dht *dht, uint64_t now, const uint8_t *target)
{
	int slot = lookup_start(dht, now, FM__DHT_LOOKUP_NODES, target, NULL,
	                        NULL, NULL, 1);

	struct dht_lookup *l;
	int bi, room;

	if (slot < 0)
		return slot;
	l = dht->lookups[slot];
	bi = fm__dht_bucket_index(dht->identity.node_id, target);
	l->refresh = 1;
	l->refresh_bucket = (int16_t)bi;
	room = FM_DHT_K + FM_DHT_REPLACEMENTS_CHALLENGE;
	if (bi >= 0)
		room -= dht->buckets[bi].count + dht->buckets[bi].repl_count;
	l->refresh_room = (uint16_t)(room > 0 ? room : 0);
	lookup_step(dht, slot, now);
	return 0;
}

static void start_republish(fm__dht *dht, uint64_t now)
{
	uint8_t key[FM_DHT_ID_BYTES];
	uint8_t i;

	store_own(dht, now);
	if (!dht->has_record)
		return;
	lookup_begin(dht, now, FM__DHT_LOOKUP_NODES, dht->identity.node_id,
	             NULL, NULL, NULL, 0, 1, 0);
	for (i = 0; i < dht->record.service_count; i++)
		if (fm__dht_service_key(dht->record.services[i].name, key) == 0)
			lookup_begin(dht, now, FM__DHT_LOOKUP_NODES, key, NULL,
			             NULL, NULL, 0, 1, 0);
}

/* ---- requests ------------------------------------------------------------ */

/* Sets up an answer to request q. */
static void answer_init(const fm__dht_msg *q, uint8_t type, fm__dht_msg *a)
{
	memset(a, 0, sizeof(*a));
	a->type = type;
	memcpy(a->txid, q->txid, sizeof(a->txid));
}

static void answer_nodes(fm__dht *dht, uint64_t now, const fm_addr *from,
                         const fm__dht_msg *q, const uint8_t *target,
                         size_t limit)
{
	struct dht_entry near[FM_DHT_K];
	fm__dht_msg *a = malloc(sizeof(*a));
	size_t n, i;

	if (a == NULL)
		return;
	answer_init(q, FM__DHT_NODES, a);
	n = table_closest(dht, target, q->sender, 1, near, FM_DHT_K);
	/* The node asked for itself, proven but waiting in a replacement
	 * cache (its bucket full, with sybils near its ID, say), goes
	 * first: a record lookup then reaches it, and it holds its own
	 * record. */
	if ((n == 0 || !id_equal(near[0].id, target)) &&
	    !id_equal(target, q->sender)) {
		int bi = fm__dht_bucket_index(dht->identity.node_id, target), r;
		const struct dht_bucket *b = bi >= 0 ? &dht->buckets[bi] : NULL;
		if (b != NULL && b->e != NULL &&
		    (r = repl_find(b, target)) >= 0) {
			if (n == FM_DHT_K)
				n--;
			memmove(&near[1], &near[0], n * sizeof(near[0]));
			near[0] = b->e[FM_DHT_K + r];
			n++;
		}
	}
	for (i = 0; i < n; i++) {
		memcpy(a->contacts[i].id, near[i].id, FM_DHT_ID_BYTES);
		a->contacts[i].addr = near[i].addr;
	}
	a->contact_count = (uint8_t)n;
	while (sealed_size(dht, a) > limit) {
		if (a->contact_count == 0) {
			dht->stats.dropped[FM__DHT_DROP_NO_CREDIT]++;
			free(a);
			return;
		}
		a->contact_count--;
		a->flags = FM__DHT_F_TRUNCATED;
	}
	if (a->flags & FM__DHT_F_TRUNCATED)
		dht->stats.answers_truncated++;
	send_answer(dht, now, from, a);
	free(a);
}

/* How many of the values from index first fit a VALUE of at most limit
 * sealed bytes. */
static size_t values_fit(fm__dht *dht, fm__dht_msg *a, uint64_t now,
                         size_t first, size_t avail, size_t limit)
{
	size_t n = 0;

	a->value_count = 0;
	while (n < avail && n < FM_DHT_MSG_VALUES_MAX) {
		const struct dht_value *v = &dht->values[first + n];
		a->values[n].record = v->bytes;
		a->values[n].record_len = v->len;
		a->values[n].ttl_ms = v->expires_ms - now;
		a->value_count = (uint8_t)(n + 1);
		if (sealed_size(dht, a) > limit)
			break;
		n++;
	}
	a->value_count = (uint8_t)n;
	return n;
}

static void answer_find_value(fm__dht *dht, uint64_t now, const fm_addr *from,
                              const fm__dht_msg *q, size_t limit)
{
	static const uint8_t zero[FM_DHT_ID_BYTES];
	fm__dht_msg *a;
	size_t first, avail = 0, full, fit;

	store_sweep(dht, now);
	first = value_lower(dht, q->key, q->has_cursor ? q->cursor : zero);
	if (q->has_cursor && first < dht->value_count &&
	    value_cmp(q->key, q->cursor, &dht->values[first]) == 0)
		first++; /* the cursor is the last record already sent */
	while (first + avail < dht->value_count &&
	       id_equal(dht->values[first + avail].key, q->key))
		avail++;
	if (avail == 0 && !q->has_cursor) {
		answer_nodes(dht, now, from, q, q->key, limit);
		return;
	}
	a = malloc(sizeof(*a));
	if (a == NULL)
		return;
	answer_init(q, FM__DHT_VALUE, a);
	full = values_fit(dht, a, now, first, avail, FM_DATAGRAM_MAX_BYTES);
	fit = limit < FM_DATAGRAM_MAX_BYTES
	              ? values_fit(dht, a, now, first, avail, limit)
	              : full;
	if (fit < full)
		a->flags |= FM__DHT_F_TRUNCATED;
	if (fit < avail)
		a->flags |= FM__DHT_F_MORE;
	if (sealed_size(dht, a) > limit) {
		dht->stats.dropped[FM__DHT_DROP_NO_CREDIT]++;
		free(a);
		return;
	}
	if (a->flags & FM__DHT_F_TRUNCATED)
		dht->stats.answers_truncated++;
	send_answer(dht, now, from, a);
	free(a);
}

/* The bytes a PROOF signs: label || nonce || compact address. */
static size_t proof_message(const uint8_t *nonce, const fm_addr *addr,
                            uint8_t *out)
{
	size_t alen = 0, n = sizeof(FM_DHT_PROOF_LABEL) - 1;

	memcpy(out, FM_DHT_PROOF_LABEL, n);
	memcpy(out + n, nonce, FM_DHT_CHALLENGE_NONCE_BYTES);
	n += FM_DHT_CHALLENGE_NONCE_BYTES;
	if (fm__dht_addr_encode(addr, out + n, &alen) != 0)
		return 0;
	return n + alen;
}

#define FM__DHT_PROOF_MSG_MAX                                            \
	(sizeof(FM_DHT_PROOF_LABEL) - 1 + FM_DHT_CHALLENGE_NONCE_BYTES + \
	 FM_DHT_ADDR6_BYTES)

static void answer_challenge(fm__dht *dht, uint64_t now, const fm_addr *from,
                             const fm__dht_msg *q, size_t limit)
{
	uint8_t signed_msg[FM__DHT_PROOF_MSG_MAX];
	size_t n = proof_message(q->nonce, &q->observed, signed_msg);
	fm__dht_msg a;

	if (n == 0)
		return;
	answer_init(q, FM__DHT_PROOF, &a);
	memcpy(a.public_key, dht->identity.public_key, sizeof(a.public_key));
	crypto_sign_detached(a.signature, NULL, signed_msg, n,
	                     dht->identity.secret_key);
	if (sealed_size(dht, &a) > limit) {
		dht->stats.dropped[FM__DHT_DROP_NO_CREDIT]++;
		return;
	}
	send_answer(dht, now, from, &a);
	dht->stats.proofs_sent++;
}

static void handle_request(fm__dht *dht, uint64_t now, const fm_addr *from,
                           const fm__dht_msg *q)
{
	size_t limit = answer_limit(dht, now, from);
	fm__dht_msg a;

	switch (q->type) {
	case FM__DHT_PING:
		answer_init(q, FM__DHT_PONG, &a);
		if (sealed_size(dht, &a) > limit) {
			dht->stats.dropped[FM__DHT_DROP_NO_CREDIT]++;
			break;
		}
		send_answer(dht, now, from, &a);
		break;
	case FM__DHT_FIND_NODE:
		answer_nodes(dht, now, from, q, q->key, limit);
		break;
	case FM__DHT_FIND_VALUE:
		answer_find_value(dht, now, from, q, limit);
		break;
	case FM__DHT_STORE:
		dht->stats.stores_received++;
		answer_init(q, FM__DHT_STORED, &a);
		a.status = (uint8_t)store_put(dht, now, q->key, q->record,
		                              q->record_len, q->ttl_ms);
		if (a.status == FM__DHT_STORE_OK)
			dht->stats.stores_accepted++;
		if (sealed_size(dht, &a) > limit) {
			dht->stats.dropped[FM__DHT_DROP_NO_CREDIT]++;
			break;
		}
		send_answer(dht, now, from, &a);
		break;
	case FM__DHT_CHALLENGE:
		answer_challenge(dht, now, from, q, limit);
		break;
	default:
		break;
	}
	/* A node that asks us something may belong in our table: it has to
	 * prove its key first, and the CHALLENGE is paid from its credit. */
	if (q->type != FM__DHT_CHALLENGE && wants(dht, q->sender, from) &&
	    (addr_proven(dht, now, from) ||
	     answer_limit(dht, now, from) >= FM_DHT_PROOF_BYTES)) {
		if (send_challenge(dht, now, q->sender, from) == 0)
			credit_charge(dht, now, from, FM_DHT_PROOF_BYTES);
	}
}

/* ---- answers ------------------------------------------------------------- */

static int answer_type_ok(uint8_t request, uint8_t answer)
{
	switch (request) {
	case FM__DHT_PING:
		return answer == FM__DHT_PONG;
	case FM__DHT_FIND_NODE:
		return answer == FM__DHT_NODES;
	case FM__DHT_FIND_VALUE:
		return answer == FM__DHT_VALUE || answer == FM__DHT_NODES;
	case FM__DHT_STORE:
		return answer == FM__DHT_STORED;
	case FM__DHT_CHALLENGE:
		return answer == FM__DHT_PROOF;
	default:
		return 0;
	}
}

static void on_proof(fm__dht *dht, uint64_t now, const struct dht_rpc *r,
                     const fm__dht_msg *m)
{
	uint8_t signed_msg[FM__DHT_PROOF_MSG_MAX];
	uint8_t id[FM_DHT_ID_BYTES];
	size_t n;

	fm_node_id_from_public_key(m->public_key, id);
	n = proof_message(r->nonce, &r->addr, signed_msg);
	if (!id_equal(id, m->sender) || (r->has_id && !id_equal(id, r->id)) ||
	    n == 0 ||
	    crypto_sign_verify_detached(m->signature, signed_msg, n,
	                                m->public_key) != 0) {
		dht->stats.proofs_bad++;
		return;
	}
	dht->stats.proofs_ok++;
	table_offer(dht, now, id, &r->addr);
}

static void handle_answer(fm__dht *dht, uint64_t now, const fm_addr *from,
                          const fm__dht_msg *m)
{
	int i = rpc_find(dht, m->txid);
	struct dht_rpc r;

	if (i < 0) {
		dht->stats.dropped[FM__DHT_DROP_UNMATCHED]++;
		return;
	}
	r = dht->rpcs[i];
	if (!addr_equal(&r.addr, from) ||
	    (r.has_id && !id_equal(r.id, m->sender)) ||
	    !answer_type_ok(r.type, m->type)) {
		dht->stats.dropped[FM__DHT_DROP_MISMATCH]++;
		return;
	}
	rpc_free(dht, i);
	/* Our txid came back from where we sent it: that address receives. */
	addr_set_proven(dht, now, from);
	entry_seen(dht, now, m->sender, from);
	switch (r.purpose) {
	case RPC_LOOKUP:
		lookup_on_answer(dht, now, &r, m);
		break;
	case RPC_LRS_PING:
		if (r.bucket >= 0)
			dht->buckets[r.bucket].lrs_ping = 0;
		break;
	case RPC_CHECK:
		check_done(dht, &r);
		break;
	case RPC_CHALLENGE:
		on_proof(dht, now, &r, m);
		return;
	case RPC_STORE:
		if (m->status == FM__DHT_STORE_OK)
			dht->stats.stores_acked++;
		break;
	default:
		break;
	}
	if (wants(dht, m->sender, from))
		send_challenge(dht, now, m->sender, from);
}

/* An RPC got no answer after all its attempts. */
static void rpc_failed(fm__dht *dht, uint64_t now, const struct dht_rpc *r)
{
	dht->stats.rpc_timeouts++;
	if (r->has_id)
		entry_failed(dht, now, r->id, &r->addr);
	switch (r->purpose) {
	case RPC_LOOKUP:
		lookup_on_failure(dht, now, r);
		break;
	case RPC_CHECK:
		check_done(dht, r);
		break;
	case RPC_LRS_PING: {
		/* The liveness check failed: the newest replacement takes
		 * the place of the least-recently-seen entry. */
		struct dht_bucket *b = &dht->buckets[r->bucket];
		int i;
		b->lrs_ping = 0;
		if (b->e != NULL && (i = bucket_find(b, r->id)) >= 0 &&
		    addr_equal(&b->e[i].addr, &r->addr) &&
		    !promote(dht, r->bucket, i, now) &&
		    b->e[i].fails < FM_DHT_FAILS_MAX)
			b->e[i].fails = FM_DHT_FAILS_MAX;
		check_joined(dht, now);
		break;
	}
	default:
		break;
	}
}

void fm__dht_recv(fm__dht *dht, uint64_t now_ms, const fm_addr *from,
                  const uint8_t *buf, size_t len)
{
	uint8_t body[FM_DHT_BODY_MAX_BYTES];
	fm__dht_msg *m;
	size_t body_len;
	fm_addr src;
	int rc;

	if (dht == NULL || from == NULL)
		return;
	if (now_ms > dht->now_ms)
		dht->now_ms = now_ms;
	now_ms = dht->now_ms;
	dht->stats.datagrams_received++;
	src = addr_normalize(from);
	if (!rate_allow(dht, now_ms, &src)) {
		dht->stats.dropped[FM__DHT_DROP_RATE_LIMITED]++;
		return;
	}
	if (fm__dht_open(dht->seal_key, buf, len, body, sizeof(body),
	                 &body_len) != 0) {
		dht->stats.dropped[FM__DHT_DROP_BAD_SEAL]++;
		return;
	}
	m = malloc(sizeof(*m));
	if (m == NULL)
		return;
	rc = fm__dht_msg_decode(body, body_len, m);
	if (rc != 0) {
		dht->stats.dropped[rc == -ENOTSUP ? FM__DHT_DROP_UNKNOWN_TYPE
		                                  : FM__DHT_DROP_MALFORMED]++;
	} else if (id_equal(m->sender, dht->identity.node_id)) {
		dht->stats.dropped[FM__DHT_DROP_SELF]++;
	} else if (is_request(m->type)) {
		credit_add(dht, now_ms, &src, len);
		handle_request(dht, now_ms, &src, m);
	} else {
		handle_answer(dht, now_ms, &src, m);
	}
	free(m);
}

/* ---- timers -------------------------------------------------------------- */

/* A bootstrap round: a CHALLENGE to up to FM_DHT_BOOTSTRAP_BATCH known
 * addresses, cycling through all of them; when the node is joined (a thin
 * table, or lookups nobody answers), only to those not in the table. */
static void bootstrap_round(fm__dht *dht, uint64_t now)
{
	size_t i, sent = 0;

	for (i = 0; i < dht->known_count && sent < FM_DHT_BOOTSTRAP_BATCH;
	     i++) {
		struct dht_known *k;
		if (dht->known_cursor >= dht->known_count)
			dht->known_cursor = 0;
		k = &dht->known[dht->known_cursor++];
		if (dht->joined && table_has_addr(dht, &k->addr))
			continue;
		if (send_challenge(dht, now, k->has_id ? k->id : NULL,
		                   &k->addr) == 0)
			sent++;
	}
	if (!dht->joined || sent > 0) {
		dht->stats.bootstraps++;
		dht->stats.last_bootstrap_ms = now;
		dht_log(dht, FM_LOG_INFO,
		        "bootstrap: %zu of %zu known addresses", sent,
		        dht->known_count);
	}
	if (dht->joined && sent > 0) {
		/* Whoever proves itself is in the table by the time the
		 * self-lookup and the refresh of every bucket run. */
		dht->refresh_pending = 1;
		dht->next_self_ms = now + FM_DHT_RPC_TIMEOUT_MS;
	}
	dht->next_bootstrap_ms = now + jitter(dht, dht->bootstrap_backoff_ms);
	dht->bootstrap_backoff_ms *= 2;
	if (dht->bootstrap_backoff_ms > FM_DHT_BOOTSTRAP_BACKOFF_MAX_MS)
		dht->bootstrap_backoff_ms = FM_DHT_BOOTSTRAP_BACKOFF_MAX_MS;
}

/* Whether the node should re-bootstrap: no live entry, fewer than
 * FM_DHT_REBOOTSTRAP_LIVE_MIN, or FM_DHT_REBOOTSTRAP_EMPTY_LOOKUPS lookups
 * in a row that no node answered (a table of dead entries or an island). */
static int needs_bootstrap(const fm__dht *dht)
{
	return !dht->joined ||
	       dht->lookups_empty >= FM_DHT_REBOOTSTRAP_EMPTY_LOOKUPS ||
	       table_live(dht) < FM_DHT_REBOOTSTRAP_LIVE_MIN;
}

/* Index of the deepest non-empty bucket: buckets beyond it are covered by
 * the self-lookup, so only buckets up to it (or up to that of the closest
 * neighbour the last join's self-lookup found) are refreshed. */
static int table_depth(const fm__dht *dht)
{
	return dht->depth > dht->refresh_depth ? dht->depth
	                                       : dht->refresh_depth;
}

/* After the self-lookup at a join (Kademlia's join, libp2p's and
 * BitTorrent's table fill): every bucket farther than our closest
 * neighbour, the nearest node that answered the self-lookup, is due for a
 * refresh now. Its proof may still be on its way, so the buckets to
 * refresh come from the lookup, not from the table. */
static void refresh_all(fm__dht *dht, uint64_t now, const uint8_t *closest)
{
	int depth = fm__dht_bucket_index(dht->identity.node_id, closest), b;

	if (depth > dht->refresh_depth)
		dht->refresh_depth = depth;
	(void)now;
	for (b = 0; b < depth; b++)
		dht->buckets[b].refresh_now = 1;
	dht->table_wake_ms = 0;
}

/* Bucket refreshes and liveness checks: walks the table, so only when
 * something in it is due (table_wake_ms). Returns the table's next
 * deadline. */
static uint64_t maintain_table(fm__dht *dht, uint64_t now)
{
	uint8_t target[FM_DHT_ID_BYTES];
	uint64_t next = FM_DEADLINE_NONE;
	int depth = table_depth(dht), b, busy = 0;

	for (b = 0; b <= depth; b++) {
		struct dht_bucket *bk = &dht->buckets[b];
		if (!bk->refresh_now &&
		    now < bk->touched_ms + FM_DHT_REFRESH_MS)
			continue;
		bk->refresh_now = 0;
		random_id_in_bucket(dht, b, target);
		if (busy || refresh_begin(dht, now, target) != 0) {
			/* Busy: this bucket and the next due ones are tried
			 * again a little later (unsigned arithmetic: touched
			 * + FM_DHT_REFRESH_MS is now + FM__DHT_RETRY_MS). */
			busy = 1;
			bk->touched_ms =
			        now - FM_DHT_REFRESH_MS + FM__DHT_RETRY_MS;
			continue;
		}
		bk->touched_ms = now;
	}
	/* Liveness checks: the entries are walked only when one may be due
	 * (check_wake_ms is a lower bound: an entry's due time only moves
	 * later, and whatever adds an entry lowers it). */
	if (now >= dht->check_wake_ms) {
		uint64_t due = FM_DEADLINE_NONE;
		for (b = 0; b <= depth; b++) {
			struct dht_bucket *bk = &dht->buckets[b];
			int i;
			for (i = 0; i < bk->count; i++) {
				struct dht_entry *e = &bk->e[i];
				if (e->checking)
					continue;
				if (now >= check_due(e) &&
				    dht->checks < FM_DHT_CHECKS_MAX)
					send_check(dht, now, b, i);
				if (!e->checking)
					due = min_u64(due, check_due(e));
			}
		}
		/* At the limit, check_done resets it. */
		dht->check_wake_ms = dht->checks >= FM_DHT_CHECKS_MAX
		                             ? FM_DEADLINE_NONE
		                             : due;
	}
	/* The next deadline: lookups above may have changed the table. */
	depth = table_depth(dht);
	for (b = 0; b <= depth; b++) {
		const struct dht_bucket *bk = &dht->buckets[b];
		next = min_u64(next,
		               bk->refresh_now
		                       ? now
		                       : bk->touched_ms + FM_DHT_REFRESH_MS);
	}
	next = min_u64(next, dht->check_wake_ms);
	return next;
}

static void maintain(fm__dht *dht, uint64_t now)
{
	uint8_t target[FM_DHT_ID_BYTES];
	int rc;

	if (dht->known_count > 0 && now >= dht->next_bootstrap_ms) {
		if (needs_bootstrap(dht)) {
			bootstrap_round(dht, now);
		} else {
			dht->bootstrap_backoff_ms =
			        FM_DHT_BOOTSTRAP_BACKOFF_MIN_MS;
			dht->next_bootstrap_ms =
			        now + FM_DHT_BOOTSTRAP_CHECK_MS;
		}
	}
	if (dht->table_size == 0)
		return;
	if (now >= dht->next_self_ms) {
		rc = lookup_begin(dht, now, FM__DHT_LOOKUP_NODES,
		                  dht->identity.node_id, NULL, NULL, NULL, 1, 0,
		                  1);
		dht->next_self_ms =
		        now + (rc == 0 ? jitter(dht, FM_DHT_SELF_LOOKUP_MS)
		                       : FM__DHT_RETRY_MS);
	}
	if (now >= dht->next_republish_ms && dht->has_record) {
		start_republish(dht, now);
		dht->next_republish_ms =
		        now + jitter(dht, dht->republish_interval_ms);
		dht->republish_interval_ms *= 2;
		if (dht->republish_interval_ms > FM_DHT_REPUBLISH_MS)
			dht->republish_interval_ms = FM_DHT_REPUBLISH_MS;
	}
	if (now >= dht->table_wake_ms) {
		dht->table_wake_ms = FM_DEADLINE_NONE;
		/* Lookups started in there may lower it again. */
		dht->table_wake_ms =
		        min_u64(dht->table_wake_ms, maintain_table(dht, now));
	}
	if (now >= dht->next_walk_ms) {
		rand_bytes(dht, target, sizeof(target));
		rc = refresh_begin(dht, now, target);
		dht->next_walk_ms =
		        now + (rc == 0 ? jitter(dht, FM_DHT_RANDOM_WALK_MS)
		                       : FM__DHT_RETRY_MS);
	}
}

/* RPC timeouts: resend, then give up. Returns the next timeout. */
static uint64_t rpc_timeouts(fm__dht *dht, uint64_t now)
{
	uint64_t next = FM_DEADLINE_NONE;
	size_t i;

	for (i = 0; i < dht->rpc_cap; i++) {
		struct dht_rpc r;
		if (!dht->rpcs[i].used ||
		    now < dht->rpcs[i].sent_ms + FM_DHT_RPC_TIMEOUT_MS)
			continue;
		if (dht->rpcs[i].attempts < FM_DHT_RPC_ATTEMPTS) {
			struct dht_lookup *l =
			        lookup_get(dht, dht->rpcs[i].lookup,
			                   dht->rpcs[i].lookup_gen);
			if (rpc_transmit(dht, now, (int)i) == 0) {
				if (l != NULL)
					l->messages++;
				continue;
			}
		}
		r = dht->rpcs[i];
		rpc_free(dht, (int)i);
		rpc_failed(dht, now, &r);
	}
	/* rpc_failed may have started RPCs anywhere in the array. */
	for (i = 0; i < dht->rpc_cap; i++)
		if (dht->rpcs[i].used)
			next = min_u64(next, dht->rpcs[i].sent_ms +
			                             FM_DHT_RPC_TIMEOUT_MS);
	return next;
}

/* Steps every lookup (slots freed by slow requests, the time limit).
 * Returns the lookups' next deadline. */
static uint64_t lookup_timers(fm__dht *dht, uint64_t now)
{
	uint64_t next = FM_DEADLINE_NONE;
	uint32_t j;
	int b;

	for (b = 0; b < FM_DHT_LOOKUPS_MAX; b++)
		if (dht->lookups[b] != NULL)
			lookup_step(dht, b, now);
	for (b = 0; b < FM_DHT_LOOKUPS_MAX; b++) {
		const struct dht_lookup *l = dht->lookups[b];
		if (l == NULL)
			continue;
		next = min_u64(next, l->started_ms + FM_DHT_LOOKUP_TIMEOUT_MS);
		for (j = 0; j < l->cand_count; j++)
			if (l->cands[j].state == C_INFLIGHT &&
			    l->cands[j].sent_ms + FM_DHT_RPC_SLOW_MS > now)
				next = min_u64(next,
				               l->cands[j].sent_ms +
				                       FM_DHT_RPC_SLOW_MS);
	}
	return next;
}

uint64_t fm__dht_tick(fm__dht *dht, uint64_t now_ms)
{
	uint64_t next = FM_DEADLINE_NONE, now, t;

	if (dht == NULL)
		return FM_DEADLINE_NONE;
	if (now_ms > dht->now_ms)
		dht->now_ms = now_ms;
	now = dht->now_ms;
	/* Each part walks its state only when its cached deadline is due;
	 * whatever adds an earlier deadline between ticks lowers the cache
	 * (rpc_transmit, lookup_start, lookup_send, table changes). */
	if (now >= dht->rpc_wake_ms) {
		dht->rpc_wake_ms = FM_DEADLINE_NONE;
		t = rpc_timeouts(dht, now);
		dht->rpc_wake_ms = min_u64(dht->rpc_wake_ms, t);
	}
	if (now >= dht->lookup_wake_ms) {
		dht->lookup_wake_ms = FM_DEADLINE_NONE;
		t = lookup_timers(dht, now);
		dht->lookup_wake_ms = min_u64(dht->lookup_wake_ms, t);
	}
	maintain(dht, now);
	if (now >= dht->next_sweep_ms)
		store_sweep(dht, now);
	if (dht->dirty && dht->io.persist != NULL &&
	    now >= dht->next_persist_ms)
		fm__dht_persist(dht, now);

	/* The next deadline. */
	next = min_u64(dht->rpc_wake_ms, dht->lookup_wake_ms);
	if (dht->known_count > 0)
		next = min_u64(next, dht->next_bootstrap_ms);
	if (dht->table_size > 0) {
		next = min_u64(next, dht->next_self_ms);
		next = min_u64(next, dht->next_walk_ms);
		if (dht->has_record)
			next = min_u64(next, dht->next_republish_ms);
		next = min_u64(next, dht->table_wake_ms);
	}
	if (dht->value_count > 0)
		next = min_u64(next, dht->next_sweep_ms);
	if (dht->dirty && dht->io.persist != NULL)
		next = min_u64(next, dht->next_persist_ms);
	return next < now ? now : next;
}

/* ---- public entry points ------------------------------------------------- */

static int set_record(fm__dht *dht, const fm_record *rec)
{
	if (rec == NULL) {
		dht->has_record = 0;
		return 0;
	}
	if (!id_equal(rec->node_id, dht->identity.node_id) ||
	    fm_record_encode(rec, dht->record_bytes, sizeof(dht->record_bytes),
	                     &dht->record_len) != 0)
		return -EINVAL;
	dht->record = *rec;
	dht->has_record = 1;
	return 0;
}

static void reset_timers(fm__dht *dht, uint64_t now)
{
	int b;

	dht->joined = 0;
	dht->publish_pending = 0;
	dht->bootstrap_backoff_ms = FM_DHT_BOOTSTRAP_BACKOFF_MIN_MS;
	dht->next_bootstrap_ms = now;
	dht->next_self_ms = now;
	dht->next_walk_ms = now + jitter(dht, FM_DHT_RANDOM_WALK_MS);
	dht->next_republish_ms = now + FM_DHT_REPUBLISH_MS;
	dht->republish_interval_ms = FM_DHT_REPUBLISH_MS;
	store_sweep(dht, now); /* times the sweep: none for an empty store */
	dht->next_persist_ms = now + FM_DHT_PERSIST_MS;
	dht->rpc_wake_ms = 0;
	dht->lookup_wake_ms = 0;
	dht->table_wake_ms = 0;
	dht->check_wake_ms = 0;
	dht->refresh_pending = 0;
	dht->lookups_empty = 0;
	for (b = 0; b < FM_DHT_BUCKETS; b++)
		dht->buckets[b].touched_ms = now;
}

int fm__dht_new(const fm__dht_config *cfg, const fm_io *io, uint64_t now_ms,
                fm__dht **out)
{
	fm__dht *dht;

	if (cfg == NULL || io == NULL || out == NULL ||
	    io->send_datagram == NULL || io->random_bytes == NULL)
		return -EINVAL;
	*out = NULL;
	dht = calloc(1, sizeof(*dht));
	if (dht == NULL)
		return -ENOMEM;
	lru_clear(&dht->addr_lru);
	lru_clear(&dht->rate_lru);
	dht->io = *io;
	dht->identity = cfg->identity;
	if (fm_identity_check(&dht->identity) != 0 ||
	    set_record(dht, cfg->record) != 0) {
		fm__dht_free(dht);
		return -EINVAL;
	}
	fm__dht_derive_key(cfg->federation_key, dht->seal_key);
	dht->subnet_max = cfg->subnet_max ? cfg->subnet_max : FM_DHT_SUBNET_MAX;
	dht->cap_private = cfg->subnet_cap_private;
	dht->rate_loopback = cfg->rate_limit_loopback;
	dht->rate_per_ms =
	        (cfg->rate_per_sec ? cfg->rate_per_sec : FM_DHT_RATE_PER_SEC) /
	        1000.0;
	dht->rate_burst = cfg->rate_burst ? cfg->rate_burst : FM_DHT_RATE_BURST;
	dht->now_ms = now_ms;
	dht->depth = -1;
	dht->refresh_depth = -1;
	reset_timers(dht, now_ms);
	dht->dirty = 0;
	store_own(dht, now_ms);
	*out = dht;
	return 0;
}

/* Drops every lookup (callbacks get -ECANCELED), RPC, entry, value and
 * address state. */
static void clear_all(fm__dht *dht, uint64_t now, int keep_known)
{
	fm__dht_result res;
	size_t i;
	int b;

	for (b = 0; b < FM_DHT_LOOKUPS_MAX; b++) {
		struct dht_lookup *l = dht->lookups[b];
		if (l == NULL)
			continue;
		dht->lookups[b] = NULL;
		if (l->cb != NULL) {
			memset(&res, 0, sizeof(res));
			res.status = -ECANCELED;
			res.kind = l->kind;
			memcpy(res.target, l->target, FM_DHT_ID_BYTES);
			res.messages = l->messages;
			res.duration_ms = now - l->started_ms;
			l->cb(l->ctx, &res);
		}
		lookup_free(l);
	}
	for (b = 0; b < FM_DHT_BUCKETS; b++) {
		free(dht->buckets[b].e);
		memset(&dht->buckets[b], 0, sizeof(dht->buckets[b]));
	}
	dht->table_size = 0;
	dht->depth = -1;
	dht->refresh_depth = -1;
	dht->checks = 0;
	dht->check_wake_ms = 0;
	hidx_clear(&dht->tab_idx);
	for (i = 0; i < dht->value_count; i++)
		free(dht->values[i].bytes);
	dht->value_count = 0;
	for (i = 0; i < dht->rpc_cap; i++)
		dht->rpcs[i].used = 0;
	dht->rpc_used = 0;
	if (dht->addrs != NULL)
		memset(dht->addrs, 0, dht->addr_cap * sizeof(*dht->addrs));
	if (dht->rates != NULL)
		memset(dht->rates, 0, dht->rate_cap * sizeof(*dht->rates));
	hidx_clear(&dht->addr_idx);
	hidx_clear(&dht->rate_idx);
	lru_clear(&dht->addr_lru);
	lru_clear(&dht->rate_lru);
	if (!keep_known) {
		dht->known_count = 0;
		dht->known_cursor = 0;
	}
}

void fm__dht_free(fm__dht *dht)
{
	if (dht == NULL)
		return;
	clear_all(dht, dht->now_ms, 0);
	free(dht->values);
	free(dht->rpcs);
	free(dht->addrs);
	free(dht->rates);
	free(dht->addr_lru.link);
	free(dht->rate_lru.link);
	free(dht->known);
	hidx_free(&dht->addr_idx);
	hidx_free(&dht->rate_idx);
	hidx_free(&dht->tab_idx);
	sodium_memzero(dht->seal_key, sizeof(dht->seal_key));
	fm_identity_wipe(&dht->identity);
	free(dht);
}

void fm__dht_set_federation(fm__dht *dht, uint64_t now_ms,
                            const uint8_t key[FM_FEDERATION_KEY_BYTES])
{
	if (dht == NULL || key == NULL)
		return;
	if (now_ms > dht->now_ms)
		dht->now_ms = now_ms;
	clear_all(dht, dht->now_ms, 0);
	fm__dht_derive_key(key, dht->seal_key);
	reset_timers(dht, dht->now_ms);
	store_own(dht, dht->now_ms);
	dht->dirty = 1;
}

int fm__dht_set_record(fm__dht *dht, uint64_t now_ms, const fm_record *rec)
{
	int rc;

	if (dht == NULL)
		return -EINVAL;
	if (now_ms > dht->now_ms)
		dht->now_ms = now_ms;
	rc = set_record(dht, rec);
	if (rc != 0)
		return rc;
	store_own(dht, dht->now_ms);
	dht->next_republish_ms = dht->now_ms;
	dht->republish_interval_ms = FM_DHT_REPUBLISH_FIRST_MS;
	return 0;
}

int fm__dht_bootstrap(fm__dht *dht, uint64_t now_ms, const fm_addr *addrs,
                      size_t count)
{
	size_t i;

	if (dht == NULL || (addrs == NULL && count > 0))
		return -EINVAL;
	if (now_ms > dht->now_ms)
		dht->now_ms = now_ms;
	for (i = 0; i < count; i++) {
		fm_addr a = addr_normalize(&addrs[i]);
		if (!addr_usable(&a))
			return -EINVAL;
		known_add(dht, dht->now_ms, NULL, &a, 1, 0);
		send_challenge(dht, dht->now_ms, NULL, &a);
	}
	dht->stats.bootstraps++;
	dht->stats.last_bootstrap_ms = dht->now_ms;
	dht->bootstrap_backoff_ms = FM_DHT_BOOTSTRAP_BACKOFF_MIN_MS;
	dht->next_bootstrap_ms =
	        dht->now_ms + jitter(dht, dht->bootstrap_backoff_ms);
	return 0;
}

int fm__dht_add_proven(fm__dht *dht, uint64_t now_ms,
                       const uint8_t id[FM_DHT_ID_BYTES], const fm_addr *addr)
{
	fm_addr a;
	int rc;

	if (dht == NULL || id == NULL || addr == NULL)
		return -EINVAL;
	if (now_ms > dht->now_ms)
		dht->now_ms = now_ms;
	a = addr_normalize(addr);
	rc = table_offer(dht, dht->now_ms, id, &a);
	if (rc >= 0)
		addr_set_proven(dht, dht->now_ms, &a);
	return rc < 0 ? rc : 0;
}

int fm__dht_add_candidate(fm__dht *dht, uint64_t now_ms, const uint8_t *id,
                          const fm_addr *addr)
{
	fm_addr a;

	if (dht == NULL || addr == NULL)
		return -EINVAL;
	if (now_ms > dht->now_ms)
		dht->now_ms = now_ms;
	a = addr_normalize(addr);
	if (!addr_usable(&a) ||
	    (id != NULL && id_equal(id, dht->identity.node_id)))
		return -EINVAL;
	if (id != NULL && !wants(dht, id, &a))
		return 0;
	return send_challenge(dht, dht->now_ms, id, &a);
}

int fm__dht_find_node(fm__dht *dht, uint64_t now_ms,
                      const uint8_t target[FM_DHT_ID_BYTES],
                      fm__dht_lookup_cb cb, void *ctx)
{
	if (dht == NULL || target == NULL || cb == NULL)
		return -EINVAL;
	if (now_ms > dht->now_ms)
		dht->now_ms = now_ms;
	return lookup_begin(dht, dht->now_ms, FM__DHT_LOOKUP_NODES, target,
	                    NULL, cb, ctx, 0, 0, 0);
}

int fm__dht_find_record(fm__dht *dht, uint64_t now_ms,
                        const uint8_t node_id[FM_DHT_ID_BYTES],
                        fm__dht_lookup_cb cb, void *ctx)
{
	if (dht == NULL || node_id == NULL || cb == NULL)
		return -EINVAL;
	if (now_ms > dht->now_ms)
		dht->now_ms = now_ms;
	return lookup_begin(dht, dht->now_ms, FM__DHT_LOOKUP_RECORD, node_id,
	                    NULL, cb, ctx, 0, 0, 0);
}

int fm__dht_find_service(fm__dht *dht, uint64_t now_ms, const char *name,
                         fm__dht_lookup_cb cb, void *ctx)
{
	uint8_t key[FM_DHT_ID_BYTES];

	if (dht == NULL || name == NULL || cb == NULL ||
	    !service_name_ok(name, strnlen(name, FM_SERVICE_NAME_MAX + 1)) ||
	    fm__dht_service_key(name, key) != 0)
		return -EINVAL;
	if (now_ms > dht->now_ms)
		dht->now_ms = now_ms;
	return lookup_begin(dht, dht->now_ms, FM__DHT_LOOKUP_SERVICE, key, name,
	                    cb, ctx, 0, 0, 0);
}

void fm__dht_get_stats(const fm__dht *dht, fm__dht_stats *out)
{
	int b;

	if (dht == NULL || out == NULL)
		return;
	*out = dht->stats;
	out->table_size = dht->table_size;
	out->table_live = table_live(dht);
	out->replacements = 0;
	for (b = 0; b < FM_DHT_BUCKETS; b++) {
		out->bucket_fill[b] = dht->buckets[b].count;
		out->replacements += dht->buckets[b].repl_count;
	}
	out->known_addrs = (uint32_t)dht->known_count;
	out->values_stored = (uint32_t)dht->value_count;
}

const char *fm__dht_drop_name(enum fm__dht_drop d)
{
	static const char *const names[FM__DHT_DROP_COUNT] = {
	        "bad_seal", "malformed", "unknown_type", "rate_limited",
	        "self",     "unmatched", "mismatch",     "no_credit",
	};

	return (unsigned)d < FM__DHT_DROP_COUNT ? names[d] : "unknown";
}

/* ---- persistence --------------------------------------------------------- */

#define FM__DHT_PERSIST_VERSION 1
#define FM__DHT_PERSIST_PINNED 1u
#define FM__DHT_PERSIST_TABLE 2u

static void write_contact(fm__mp_writer *w, const uint8_t *id,
                          const fm_addr *addr, unsigned flags)
{
	uint8_t abuf[FM_DHT_ADDR6_BYTES];
	size_t alen;

	if (fm__dht_addr_encode(addr, abuf, &alen) != 0)
		return;
	fm__mp_write_array(w, 3);
	fm__mp_write_bin(w, id, id != NULL ? FM_DHT_ID_BYTES : 0);
	fm__mp_write_bin(w, abuf, alen);
	fm__mp_write_uint(w, flags);
}

static int known_pinned(const fm__dht *dht, const fm_addr *addr)
{
	size_t i;

	for (i = 0; i < dht->known_count; i++)
		if (addr_equal(&dht->known[i].addr, addr))
			return dht->known[i].pinned;
	return 0;
}

/* Walks what is saved, in order: table entries first (they are the ones
 * to rejoin through), then the other known addresses; at most
 * FM_DHT_KNOWN_MAX in all. Writes them when w is not NULL; returns how
 * many. */
static size_t save_walk(const fm__dht *dht, fm__mp_writer *w)
{
	size_t n = 0, i;
	int b, j;

	for (b = FM_DHT_BUCKETS - 1; b >= 0; b--)
		for (j = 0; j < dht->buckets[b].count && n < FM_DHT_KNOWN_MAX;
		     j++) {
			const struct dht_entry *e = &dht->buckets[b].e[j];
			unsigned flags = FM__DHT_PERSIST_TABLE;
			if (known_pinned(dht, &e->addr))
				flags |= FM__DHT_PERSIST_PINNED;
			if (w != NULL)
				write_contact(w, e->id, &e->addr, flags);
			n++;
		}
	for (i = 0; i < dht->known_count && n < FM_DHT_KNOWN_MAX; i++) {
		const struct dht_known *k = &dht->known[i];
		if (table_has_addr(dht, &k->addr))
			continue;
		if (w != NULL)
			write_contact(w, k->has_id ? k->id : NULL, &k->addr,
			              k->pinned ? FM__DHT_PERSIST_PINNED : 0);
		n++;
	}
	return n;
}

int fm__dht_save(const fm__dht *dht, uint8_t *out, size_t cap, size_t *len)
{
	fm__mp_writer w;

	if (dht == NULL || out == NULL || len == NULL)
		return -EINVAL;
	fm__mp_writer_init(&w, out, cap);
	fm__mp_write_array(&w, 2);
	fm__mp_write_uint(&w, FM__DHT_PERSIST_VERSION);
	fm__mp_write_array(&w, save_walk(dht, NULL));
	save_walk(dht, &w);
	return fm__mp_writer_finish(&w, len);
}

int fm__dht_persist(fm__dht *dht, uint64_t now_ms)
{
	uint8_t *buf;
	size_t len;
	int rc;

	if (dht == NULL)
		return -EINVAL;
	if (dht->io.persist == NULL)
		return -ENOTSUP;
	buf = malloc(FM_DHT_PERSIST_MAX_BYTES);
	if (buf == NULL)
		return -ENOMEM;
	rc = fm__dht_save(dht, buf, FM_DHT_PERSIST_MAX_BYTES, &len);
	if (rc == 0)
		rc = dht->io.persist(dht->io.ctx, FM_DHT_PERSIST_KEY, buf, len);
	free(buf);
	if (rc == 0)
		dht->dirty = 0;
	dht->next_persist_ms = now_ms + FM_DHT_PERSIST_MS;
	return rc;
}

/* Reads the saved contacts; with take == 0 only checks them, so that a
 * damaged value is refused whole rather than half-read. */
static int restore_walk(fm__dht *dht, const uint8_t *buf, size_t len, int take)
{
	fm__mp_reader r;
	uint64_t version, flags;
	size_t n, i, fields;

	fm__mp_reader_init(&r, buf, len);
	if (fm__mp_read_array(&r, &n) != 0 || n != 2 ||
	    fm__mp_read_uint(&r, &version) != 0 ||
	    version != FM__DHT_PERSIST_VERSION ||
	    fm__mp_read_array(&r, &n) != 0 || n > FM_DHT_KNOWN_MAX)
		return -EBADMSG;
	for (i = 0; i < n; i++) {
		const uint8_t *id, *abuf;
		size_t id_len, alen;
		fm_addr a;
		if (fm__mp_read_array(&r, &fields) != 0 || fields != 3 ||
		    fm__mp_read_bin(&r, &id, &id_len) != 0 ||
		    (id_len != 0 && id_len != FM_DHT_ID_BYTES) ||
		    fm__mp_read_bin(&r, &abuf, &alen) != 0 ||
		    fm__dht_addr_decode(abuf, alen, &a) != 0 ||
		    !addr_usable(&a) || fm__mp_read_uint(&r, &flags) != 0)
			return -EBADMSG;
		/* Back among the known addresses, to be proven again: while
		 * we were down an address may have changed hands. */
		if (take)
			known_add(dht, dht->now_ms, id_len ? id : NULL, &a,
			          (flags & FM__DHT_PERSIST_PINNED) != 0, 0);
	}
	return fm__mp_reader_end(&r);
}

int fm__dht_restore(fm__dht *dht, uint64_t now_ms, const uint8_t *buf,
                    size_t len)
{
	int rc;

	if (dht == NULL || (buf == NULL && len > 0))
		return -EINVAL;
	if (len > FM_DHT_PERSIST_MAX_BYTES ||
	    fm__msgpack_check(buf, len, 3, 8 + 4 * FM_DHT_KNOWN_MAX) != 0)
		return -EBADMSG;
	rc = restore_walk(dht, buf, len, 0);
	if (rc != 0)
		return rc;
	if (now_ms > dht->now_ms)
		dht->now_ms = now_ms;
	restore_walk(dht, buf, len, 1);
	dht->bootstrap_backoff_ms = FM_DHT_BOOTSTRAP_BACKOFF_MIN_MS;
	dht->next_bootstrap_ms = dht->now_ms;
	return 0;
}
