/* Tests of the Kademlia DHT (src/core/dht.c). Two harnesses:
 *
 * - A capturing fm_io: one DHT whose datagrams are kept in a list, so a
 *   test can open them, look at them and answer as any node it likes
 *   (the table rules, proofs, anti-amplification, rate limits, storage).
 * - A small datagram network on a virtual clock (a binary heap of
 *   deliveries and timers, latency and loss from a fixed-seed xorshift):
 *   a few hundred DHTs that bootstrap from one address, then look up
 *   random targets and services, before and after 10 % of them die. The
 *   simulator's approach in miniature; a failing run replays exactly. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four above first. */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/dht.h"
#include "fedmesh/fedmesh.h"

#define TEST_SENT_MAX 4096
#define TEST_FED_FILL 0x42
#define TEST_SELF_FILL 0x01
#define TEST_PORT 7420
#define TEST_T0 1000000ULL
#define FUZZ_CASES 20000
#define NET_NODES 300
#define NET_PROVIDERS 30 /* a few VALUE pages */
#define NET_DEAD_PERCENT 10
#define NET_LOSS_PER_MILLE 10
#define NET_LAT_MIN_MS 10
#define NET_LAT_MAX_MS 80
#define NET_JOIN_SPREAD_MS 100
#define NET_SETTLE_MS (10ULL * 60 * 1000)
#define NET_LOOKUP_WAIT_MS (120ULL * 1000)
#define NET_SERVICE "echo"
#define SMALL_NET_NODES 40

/* ---- shared helpers ------------------------------------------------------ */

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static void fill_random(uint64_t *s, uint8_t *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(xorshift(s) >> 56);
}

static fm_addr addr_of(const char *text)
{
	fm_addr a;

	assert_int_equal(fm_addr_parse(text, &a), 0);
	return a;
}

static fm_addr addr4(int a, int b, int c, int d)
{
	char text[FM_ADDR_STR_MAX];

	snprintf(text, sizeof(text), "%d.%d.%d.%d:%d", a, b, c, d, TEST_PORT);
	return addr_of(text);
}

static int addr_same(const fm_addr *a, const fm_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	       memcmp(a->ip, b->ip, a->family == FM_AF_INET ? 4 : 16) == 0;
}

static void identity_of(uint32_t n, fm_identity *id)
{
	uint8_t seed[FM_SEED_BYTES];

	memset(seed, 0x5a, sizeof(seed));
	memcpy(seed, &n, sizeof(n));
	assert_int_equal(fm_identity_from_seed(seed, id), 0);
}

/* An ID in bucket b of self (b < 224): shares b bits, differs at bit b,
 * and carries n in its last four bytes. */
static void fake_id(const uint8_t *self, int b, uint32_t n, uint8_t *out)
{
	memcpy(out, self, FM_NODE_ID_BYTES);
	out[b / 8] ^= (uint8_t)(0x80u >> (b % 8));
	out[28] = (uint8_t)(n >> 24);
	out[29] = (uint8_t)(n >> 16);
	out[30] = (uint8_t)(n >> 8);
	out[31] = (uint8_t)n;
}

static void make_record(const fm_identity *id, const fm_addr *addr,
                        uint64_t seq, const char *service, fm_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	rec->seq = seq;
	rec->addrs[0] = *addr;
	rec->addr_count = 1;
	if (service != NULL) {
		snprintf(rec->services[0].name, sizeof(rec->services[0].name),
		         "%s", service);
		rec->services[0].slots = 1;
		rec->service_count = 1;
		rec->capacity = 1;
	}
	assert_int_equal(fm_record_sign(rec, id), 0);
}

/* ---- the capturing harness ----------------------------------------------- */

struct sent {
	fm_addr to;
	size_t len;
	uint8_t buf[FM_DATAGRAM_MAX_BYTES];
};

struct cap {
	uint64_t rng;
	struct sent *sent;
	size_t n;
	uint8_t seal_key[32];
	fm_identity id;
	fm__dht *dht;
	uint8_t body[FM_DHT_BODY_MAX_BYTES]; /* the last taken body */
	size_t taken_len;                    /* its datagram's size */
	uint8_t persisted[FM_DHT_PERSIST_MAX_BYTES];
	size_t persisted_len;
	int persist_calls;
	uint64_t bytes_to[4]; /* bytes sent to watch[i] */
	fm_addr watch[4];
	size_t watch_count;
};

static int cap_send(void *ctx, const fm_addr *to, const uint8_t *buf,
                    size_t len)
{
	struct cap *c = ctx;
	size_t i;

	assert_true(len <= FM_DATAGRAM_MAX_BYTES);
	for (i = 0; i < c->watch_count; i++)
		if (addr_same(&c->watch[i], to))
			c->bytes_to[i] += len;
	assert_true(c->n < TEST_SENT_MAX);
	c->sent[c->n].to = *to;
	c->sent[c->n].len = len;
	memcpy(c->sent[c->n].buf, buf, len);
	c->n++;
	return 0;
}

static void cap_random(void *ctx, uint8_t *buf, size_t len)
{
	fill_random(&((struct cap *)ctx)->rng, buf, len);
}

static int cap_persist(void *ctx, const char *key, const uint8_t *val,
                       size_t len)
{
	struct cap *c = ctx;

	assert_string_equal(key, FM_DHT_PERSIST_KEY);
	assert_true(len <= sizeof(c->persisted));
	memcpy(c->persisted, val, len);
	c->persisted_len = len;
	c->persist_calls++;
	return 0;
}

static fm_io cap_io(struct cap *c)
{
	fm_io io;

	memset(&io, 0, sizeof(io));
	io.ctx = c;
	io.send_datagram = cap_send;
	io.random_bytes = cap_random;
	io.persist = cap_persist;
	return io;
}

static void fed_key(uint8_t fill, uint8_t key[FM_FEDERATION_KEY_BYTES])
{
	memset(key, fill, FM_FEDERATION_KEY_BYTES);
}

/* A DHT on the capturing harness; cfg may be NULL for the defaults. */
static struct cap *cap_new(const fm__dht_config *base)
{
	struct cap *c = calloc(1, sizeof(*c));
	fm__dht_config cfg;
	fm_io io;

	assert_non_null(c);
	c->sent = calloc(TEST_SENT_MAX, sizeof(*c->sent));
	assert_non_null(c->sent);
	c->rng = 0x1234567887654321ULL;
	if (base != NULL)
		cfg = *base;
	else
		memset(&cfg, 0, sizeof(cfg));
	identity_of(TEST_SELF_FILL, &c->id);
	cfg.identity = c->id;
	fed_key(TEST_FED_FILL, cfg.federation_key);
	fm__dht_derive_key(cfg.federation_key, c->seal_key);
	io = cap_io(c);
	assert_int_equal(fm__dht_new(&cfg, &io, TEST_T0, &c->dht), 0);
	return c;
}

static void cap_free(struct cap *c)
{
	fm__dht_free(c->dht);
	free(c->sent);
	free(c);
}

static void cap_watch(struct cap *c, const fm_addr *a)
{
	assert_true(c->watch_count < 4);
	c->watch[c->watch_count++] = *a;
}

/* Takes the first datagram sent to `to` (NULL: anywhere) whose type is
 * `type` (0: any) and decodes it into m (pointers into c->body). */
static int take(struct cap *c, const fm_addr *to, int type, fm__dht_msg *m)
{
	size_t i, blen;

	for (i = 0; i < c->n; i++) {
		struct sent *s = &c->sent[i];
		if (to != NULL && !addr_same(&s->to, to))
			continue;
		assert_int_equal(fm__dht_open(c->seal_key, s->buf, s->len,
		                              c->body, sizeof(c->body), &blen),
		                 0);
		assert_int_equal(fm__dht_msg_decode(c->body, blen, m), 0);
		if (type != 0 && m->type != type)
			continue;
		c->taken_len = s->len;
		memmove(&c->sent[i], &c->sent[i + 1],
		        (c->n - i - 1) * sizeof(c->sent[0]));
		c->n--;
		/* decode again: the pointers must point into c->body */
		return 1;
	}
	return 0;
}

static size_t count_sent(struct cap *c, const fm_addr *to, int type)
{
	uint8_t body[FM_DHT_BODY_MAX_BYTES];
	fm__dht_msg *m = malloc(sizeof(*m));
	size_t i, n = 0, blen;

	assert_non_null(m);
	for (i = 0; i < c->n; i++) {
		if (to != NULL && !addr_same(&c->sent[i].to, to))
			continue;
		assert_int_equal(fm__dht_open(c->seal_key, c->sent[i].buf,
		                              c->sent[i].len, body,
		                              sizeof(body), &blen),
		                 0);
		assert_int_equal(fm__dht_msg_decode(body, blen, m), 0);
		if (type == 0 || m->type == type)
			n++;
	}
	free(m);
	return n;
}

/* Seals m (from sender) under key and returns the datagram in out. */
static size_t seal_msg(const uint8_t *key, fm__dht_msg *m,
                       const uint8_t *sender, size_t pad_total, uint8_t *out)
{
	uint8_t body[FM_DHT_BODY_MAX_BYTES];
	uint8_t nonce[FM_DHT_NONCE_BYTES];
	size_t blen, len;

	memcpy(m->sender, sender, FM_NODE_ID_BYTES);
	m->pad_len = 0;
	assert_int_equal(fm__dht_msg_encode(m, body, sizeof(body), &blen), 0);
	if (pad_total >= blen + FM_DHT_SEAL_OVERHEAD + 2) {
		/* the pad element: a 2-byte bin8 or 3-byte bin16 header */
		size_t avail = pad_total - blen - FM_DHT_SEAL_OVERHEAD;
		m->pad_len = avail - 2 <= 255 ? avail - 2 : avail - 3;
		assert_int_equal(
		        fm__dht_msg_encode(m, body, sizeof(body), &blen), 0);
	}
	randombytes_buf(nonce, sizeof(nonce));
	assert_int_equal(fm__dht_seal(key, nonce, body, blen, out,
	                              FM_DATAGRAM_MAX_BYTES, &len),
	                 0);
	return len;
}

/* Delivers m from (sender, from) to the DHT; returns the datagram size. */
static size_t inject(struct cap *c, uint64_t now, const fm_addr *from,
                     fm__dht_msg *m, const uint8_t *sender, size_t pad_total)
{
	uint8_t dgram[FM_DATAGRAM_MAX_BYTES];
	size_t len = seal_msg(c->seal_key, m, sender, pad_total, dgram);

	fm__dht_recv(c->dht, now, from, dgram, len);
	return len;
}

static void msg_init(fm__dht_msg *m, uint8_t type, uint64_t *rng)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	fill_random(rng, m->txid, sizeof(m->txid));
}

static void answer_to(fm__dht_msg *m, const fm__dht_msg *q, uint8_t type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	memcpy(m->txid, q->txid, sizeof(m->txid));
}

/* Answers a CHALLENGE as id would (at the address the challenger saw). */
static void prove(const fm__dht_msg *q, const fm_identity *id, fm__dht_msg *a)
{
	uint8_t msg[64];
	size_t n = sizeof(FM_DHT_PROOF_LABEL) - 1, alen;

	answer_to(a, q, FM__DHT_PROOF);
	memcpy(msg, FM_DHT_PROOF_LABEL, n);
	memcpy(msg + n, q->nonce, sizeof(q->nonce));
	n += sizeof(q->nonce);
	assert_int_equal(fm__dht_addr_encode(&q->observed, msg + n, &alen), 0);
	n += alen;
	memcpy(a->public_key, id->public_key, sizeof(a->public_key));
	crypto_sign_detached(a->signature, NULL, msg, n, id->secret_key);
}

static fm__dht_stats stats_of(const fm__dht *dht)
{
	fm__dht_stats s;

	fm__dht_get_stats(dht, &s);
	return s;
}

static int in_table(const fm__dht *dht, const uint8_t *id)
{
	fm__dht_contact c[1];

	return fm__dht_closest(dht, id, c, 1) == 1 &&
	       memcmp(c[0].id, id, FM_NODE_ID_BYTES) == 0;
}

/* ---- IDs, codec, sealing ------------------------------------------------- */

static void test_xor_and_bucket(void **state)
{
	uint8_t self[32], id[32], a[32], b[32], x[32], key[32], want[32];
	int i;

	(void)state;
	memset(self, 0, sizeof(self));
	memcpy(id, self, sizeof(id));
	assert_int_equal(fm__dht_bucket_index(self, id), -1);
	id[0] = 0x80;
	assert_int_equal(fm__dht_bucket_index(self, id), 0);
	id[0] = 0x40;
	assert_int_equal(fm__dht_bucket_index(self, id), 1);
	id[0] = 0x01;
	assert_int_equal(fm__dht_bucket_index(self, id), 7);
	memset(id, 0, sizeof(id));
	id[31] = 0x01;
	assert_int_equal(fm__dht_bucket_index(self, id), 255);
	/* Every bucket index, from a non-zero self. */
	memset(self, 0xa5, sizeof(self));
	for (i = 0; i < 224; i++) {
		fake_id(self, i, 7, id);
		assert_int_equal(fm__dht_bucket_index(self, id), i);
		assert_int_equal(fm__dht_bucket_index(id, self), i);
	}
	/* XOR distance: symmetric, zero only to itself, ordered bytewise. */
	memset(a, 0x11, sizeof(a));
	memset(b, 0x22, sizeof(b));
	fm__dht_xor(a, b, x);
	for (i = 0; i < 32; i++)
		assert_int_equal(x[i], 0x33);
	fm__dht_xor(b, a, id);
	assert_memory_equal(x, id, sizeof(x));
	memset(id, 0x11, sizeof(id));
	assert_int_equal(fm__dht_distance_cmp(a, a, id), 0);
	id[31] ^= 1; /* distance 1 */
	memcpy(x, a, sizeof(x));
	x[31] ^= 2; /* distance 2 */
	assert_true(fm__dht_distance_cmp(a, id, x) < 0);
	assert_true(fm__dht_distance_cmp(a, x, id) > 0);
	x[31] ^= 2;
	x[0] ^= 1; /* a high bit beats every low bit */
	assert_true(fm__dht_distance_cmp(a, id, x) < 0);
	/* The provider key is BLAKE2b-256("svc/" || name). */
	assert_int_equal(fm__dht_service_key("echo", key), 0);
	crypto_generichash(want, sizeof(want), (const uint8_t *)"svc/echo", 8,
	                   NULL, 0);
	assert_memory_equal(key, want, sizeof(key));
	assert_int_equal(fm__dht_service_key("", key), -EINVAL);
}

static void test_codec(void **state)
{
	uint8_t body[FM_DHT_BODY_MAX_BYTES], rec_bytes[FM_RECORD_MAX_BYTES];
	uint64_t rng = 99;
	fm__dht_msg *m = calloc(1, sizeof(*m)), *d = calloc(1, sizeof(*d));
	fm_identity id;
	fm_record rec;
	size_t len, rlen, i;

	(void)state;
	assert_non_null(m);
	assert_non_null(d);
	/* Sizes the design rests on. */
	assert_true(FM_DHT_NODES_MAX_BYTES + FM_DHT_PROOF_BYTES <=
	            FM_DATAGRAM_MAX_BYTES);
	assert_int_equal(FM_DHT_PROOF_BYTES, 190);
	/* NODES with k IPv6 contacts, the largest. */
	msg_init(m, FM__DHT_NODES, &rng);
	for (i = 0; i < FM_DHT_K; i++) {
		fill_random(&rng, m->contacts[i].id, FM_NODE_ID_BYTES);
		m->contacts[i].addr = addr_of(
		        "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
	}
	m->contact_count = FM_DHT_K;
	m->flags = FM__DHT_F_TRUNCATED;
	assert_int_equal(fm__dht_msg_encode(m, body, sizeof(body), &len), 0);
	assert_int_equal(len + FM_DHT_SEAL_OVERHEAD, FM_DHT_NODES_MAX_BYTES);
	assert_int_equal(fm__dht_msg_decode(body, len, d), 0);
	assert_int_equal(d->type, FM__DHT_NODES);
	assert_int_equal(d->contact_count, FM_DHT_K);
	assert_int_equal(d->flags, FM__DHT_F_TRUNCATED);
	assert_memory_equal(d->contacts[7].id, m->contacts[7].id, 32);
	assert_true(addr_same(&d->contacts[7].addr, &m->contacts[7].addr));
	/* Answers take no padding; a trailing element is malformed. */
	m->pad_len = 10;
	assert_int_equal(fm__dht_msg_encode(m, body, sizeof(body), &len),
	                 -EINVAL);
	/* A request may carry padding. */
	msg_init(m, FM__DHT_FIND_VALUE, &rng);
	fill_random(&rng, m->key, 32);
	m->has_cursor = 1;
	fill_random(&rng, m->cursor, 32);
	m->pad_len = 300;
	assert_int_equal(fm__dht_msg_encode(m, body, sizeof(body), &len), 0);
	assert_int_equal(fm__dht_msg_decode(body, len, d), 0);
	assert_int_equal(d->pad_len, 300);
	assert_true(d->has_cursor);
	assert_memory_equal(d->cursor, m->cursor, 32);
	/* STORE and VALUE carry records. */
	identity_of(77, &id);
	make_record(&id, &(fm_addr){FM_AF_INET, {1, 2, 3, 4}, 5}, 3, "echo",
	            &rec);
	assert_int_equal(
	        fm_record_encode(&rec, rec_bytes, sizeof(rec_bytes), &rlen), 0);
	msg_init(m, FM__DHT_VALUE, &rng);
	m->values[0].record = rec_bytes;
	m->values[0].record_len = rlen;
	m->values[0].ttl_ms = 1234;
	m->value_count = 1;
	m->flags = FM__DHT_F_MORE;
	assert_int_equal(fm__dht_msg_encode(m, body, sizeof(body), &len), 0);
	assert_int_equal(fm__dht_msg_decode(body, len, d), 0);
	assert_int_equal(d->value_count, 1);
	assert_int_equal(d->values[0].ttl_ms, 1234);
	assert_int_equal(d->values[0].record_len, rlen);
	assert_memory_equal(d->values[0].record, rec_bytes, rlen);
	/* CHALLENGE and PROOF. */
	msg_init(m, FM__DHT_CHALLENGE, &rng);
	fill_random(&rng, m->nonce, sizeof(m->nonce));
	m->observed = addr_of("[::ffff:1.2.3.4]:99");
	assert_int_equal(fm__dht_msg_encode(m, body, sizeof(body), &len), 0);
	assert_int_equal(fm__dht_msg_decode(body, len, d), 0);
	/* a v4-mapped address travels in its IPv4 form */
	assert_true(addr_same(&d->observed, &(fm_addr){0}) == 0);
	assert_int_equal(d->observed.family, FM_AF_INET);
	msg_init(m, FM__DHT_PROOF, &rng);
	assert_int_equal(fm__dht_msg_encode(m, body, sizeof(body), &len), 0);
	assert_int_equal(len + FM_DHT_SEAL_OVERHEAD, FM_DHT_PROOF_BYTES);
	/* Unknown types are recognised as such; trailing bytes are not. */
	msg_init(m, FM__DHT_PING, &rng);
	assert_int_equal(fm__dht_msg_encode(m, body, sizeof(body), &len), 0);
	body[1] = 0x7f; /* type 127 */
	assert_int_equal(fm__dht_msg_decode(body, len, d), -ENOTSUP);
	body[1] = FM__DHT_PING;
	body[len] = 0xc0;
	assert_int_equal(fm__dht_msg_decode(body, len + 1, d), -EBADMSG);
	/* Truncations never decode. */
	msg_init(m, FM__DHT_STORE, &rng);
	m->record = rec_bytes;
	m->record_len = rlen;
	m->ttl_ms = 5;
	assert_int_equal(fm__dht_msg_encode(m, body, sizeof(body), &len), 0);
	for (i = 0; i < len; i++)
		assert_int_not_equal(fm__dht_msg_decode(body, i, d), 0);
	free(m);
	free(d);
}

static void test_codec_fuzz(void **state)
{
	uint8_t body[FM_DHT_BODY_MAX_BYTES], buf[FM_DHT_BODY_MAX_BYTES];
	uint64_t rng = 0xfeedULL;
	fm__dht_msg *m = calloc(1, sizeof(*m));
	struct cap *c = cap_new(NULL);
	fm_addr from = addr4(8, 8, 8, 8);
	size_t len, i, n;
	int k;

	(void)state;
	assert_non_null(m);
	msg_init(m, FM__DHT_NODES, &rng);
	m->contact_count = 3;
	for (i = 0; i < 3; i++)
		m->contacts[i].addr = addr4(1, 2, 3, (int)i + 1);
	assert_int_equal(fm__dht_msg_encode(m, body, sizeof(body), &len), 0);
	for (k = 0; k < FUZZ_CASES; k++) {
		uint8_t nonce[FM_DHT_NONCE_BYTES], dgram[FM_DATAGRAM_MAX_BYTES];
		size_t dlen;
		if (k % 2 == 0) {
			/* a valid body with a few bytes changed */
			memcpy(buf, body, len);
			n = len;
			for (i = 0; i < 1 + (size_t)(xorshift(&rng) % 4); i++)
				buf[xorshift(&rng) % n] =
				        (uint8_t)xorshift(&rng);
		} else {
			n = (size_t)(xorshift(&rng) % 200);
			fill_random(&rng, buf, n);
			if (n > 0)
				buf[0] = (uint8_t)(0x93 + xorshift(&rng) % 5);
		}
		(void)fm__dht_msg_decode(buf, n, m);
		/* Sealed garbage through the whole receive path too. */
		fill_random(&rng, nonce, sizeof(nonce));
		assert_int_equal(fm__dht_seal(c->seal_key, nonce, buf, n, dgram,
		                              sizeof(dgram), &dlen),
		                 0);
		fm__dht_recv(c->dht, TEST_T0 + (uint64_t)k, &from, dgram, dlen);
	}
	assert_true(stats_of(c->dht).dropped[FM__DHT_DROP_MALFORMED] > 0);
	free(m);
	cap_free(c);
}

static void test_sealing(void **state)
{
	uint8_t dgram[FM_DATAGRAM_MAX_BYTES], other[32], okey[32];
	struct cap *c = cap_new(NULL);
	/* loopback: exempt from the rate limit, which would otherwise count
	 * most of these datagrams */
	fm_addr from = addr_of("127.0.0.1:7421");
	uint8_t sender[32];
	uint64_t rng = 5;
	fm__dht_msg m, a;
	size_t len, i;
	int bit;

	(void)state;
	memset(sender, 0x77, sizeof(sender));
	/* A member's PING is answered. */
	msg_init(&m, FM__DHT_PING, &rng);
	inject(c, TEST_T0, &from, &m, sender, 0);
	assert_true(take(c, &from, FM__DHT_PONG, &a));
	assert_memory_equal(a.txid, m.txid, sizeof(m.txid));
	/* Every single flipped bit: dropped, counted, unanswered. */
	msg_init(&m, FM__DHT_PING, &rng);
	len = seal_msg(c->seal_key, &m, sender, 0, dgram);
	for (i = 0; i < len; i++)
		for (bit = 0; bit < 8; bit++) {
			dgram[i] ^= (uint8_t)(1u << bit);
			fm__dht_recv(c->dht, TEST_T0 + 1, &from, dgram, len);
			dgram[i] ^= (uint8_t)(1u << bit);
		}
	assert_int_equal(c->n, 0);
	/* Flips in the magic are not DHT datagrams at all; every other flip
	 * fails authentication. Both are counted as bad_seal here. */
	assert_int_equal(stats_of(c->dht).dropped[FM__DHT_DROP_BAD_SEAL],
	                 len * 8);
	/* Truncated, or sealed for another federation: dropped. */
	fm__dht_recv(c->dht, TEST_T0 + 2, &from, dgram, len - 1);
	fed_key(0x43, other);
	fm__dht_derive_key(other, okey);
	msg_init(&m, FM__DHT_PING, &rng);
	len = seal_msg(okey, &m, sender, 0, dgram);
	fm__dht_recv(c->dht, TEST_T0 + 3, &from, dgram, len);
	assert_int_equal(c->n, 0);
	assert_int_equal(stats_of(c->dht).dropped[FM__DHT_DROP_BAD_SEAL],
	                 len * 8 + 2);
	/* Our own ID in a datagram: dropped. */
	msg_init(&m, FM__DHT_PING, &rng);
	inject(c, TEST_T0 + 4, &from, &m, c->id.node_id, 0);
	assert_int_equal(c->n, 0);
	assert_int_equal(stats_of(c->dht).dropped[FM__DHT_DROP_SELF], 1);
	/* An answer nobody asked for: dropped. */
	msg_init(&m, FM__DHT_PONG, &rng);
	inject(c, TEST_T0 + 5, &from, &m, sender, 0);
	assert_int_equal(stats_of(c->dht).dropped[FM__DHT_DROP_UNMATCHED], 1);
	/* The key really is BLAKE2b-256("fedmesh-dht-v1" || key). */
	{
		uint8_t in[14 + 32], want[32];
		memcpy(in, "fedmesh-dht-v1", 14);
		memset(in + 14, TEST_FED_FILL, 32);
		crypto_generichash(want, 32, in, sizeof(in), NULL, 0);
		assert_memory_equal(want, c->seal_key, 32);
	}
	cap_free(c);
}

/* ---- the routing table --------------------------------------------------- */

/* A replacement cache starts small (most hold a few nodes) and grows to
 * FM_DHT_REPLACEMENTS, oldest dropped beyond; what it holds survives the
 * growth, and the newest takes the place of an entry that dies. */
static void test_replacement_cache_grows(void **state)
{
	struct cap *c = cap_new(NULL);
	uint8_t ids[FM_DHT_K][32], r[FM_DHT_REPLACEMENTS + 2][32];
	fm_addr a;
	uint64_t t = TEST_T0;
	fm__dht_msg q;
	int i;

	(void)state;
	for (i = 0; i < FM_DHT_K; i++) {
		fake_id(c->id.node_id, 0, (uint32_t)i + 1, ids[i]);
		a = addr4(1, (uint8_t)i, 1, 1);
		assert_int_equal(fm__dht_add_proven(c->dht, t++, ids[i], &a),
		                 0);
	}
	for (i = 0; i < FM_DHT_REPLACEMENTS + 2; i++) {
		fake_id(c->id.node_id, 0, (uint32_t)i + 100, r[i]);
		a = addr4(2, (uint8_t)i, 1, 1);
		assert_int_equal(fm__dht_add_proven(c->dht, t++, r[i], &a), 0);
		assert_int_equal(stats_of(c->dht).replacements,
		                 i < FM_DHT_REPLACEMENTS ? i + 1
		                                         : FM_DHT_REPLACEMENTS);
	}
	/* The first entry's liveness PING (sent at the first newcomer) goes
	 * unanswered: the newest replacement takes its place. */
	a = addr4(1, 0, 1, 1);
	assert_true(take(c, &a, FM__DHT_PING, &q));
	for (i = 1; i <= FM_DHT_RPC_ATTEMPTS; i++)
		fm__dht_tick(c->dht, t + (uint64_t)i * FM_DHT_RPC_TIMEOUT_MS);
	assert_false(in_table(c->dht, ids[0]));
	assert_true(in_table(c->dht, r[FM_DHT_REPLACEMENTS + 1]));
	assert_int_equal(stats_of(c->dht).replacements,
	                 FM_DHT_REPLACEMENTS - 1);
	cap_free(c);
}

static void test_insert_evict_replacement(void **state)
{
	struct cap *c = cap_new(NULL);
	uint8_t ids[FM_DHT_K][32], x[32], y[32];
	fm_addr addrs[FM_DHT_K], ax = addr4(1, 100, 1, 1),
	                         ay = addr4(1, 101, 1, 1);
	fm__dht_stats s;
	fm__dht_msg q, a;
	uint64_t t = TEST_T0;
	int i;

	(void)state;
	for (i = 0; i < FM_DHT_K; i++) {
		fake_id(c->id.node_id, 0, (uint32_t)i + 1, ids[i]);
		addrs[i] = addr4(1, i, 1, 1);
		assert_int_equal(
		        fm__dht_add_proven(c->dht, t++, ids[i], &addrs[i]), 0);
	}
	s = stats_of(c->dht);
	assert_int_equal(s.table_size, FM_DHT_K);
	assert_int_equal(s.bucket_fill[0], FM_DHT_K);
	/* The 21st: into the replacement cache, and the least recently seen
	 * entry (the first) is asked whether it lives. */
	fake_id(c->id.node_id, 0, 100, x);
	assert_int_equal(fm__dht_add_proven(c->dht, t, x, &ax), 0);
	s = stats_of(c->dht);
	assert_int_equal(s.table_size, FM_DHT_K);
	assert_int_equal(s.replacements, 1);
	assert_int_equal(s.lrs_pings, 1);
	assert_false(in_table(c->dht, x));
	assert_true(take(c, &addrs[0], FM__DHT_PING, &q));
	/* Another node answering for it (or from elsewhere) is ignored. */
	answer_to(&a, &q, FM__DHT_PONG);
	inject(c, t + 50, &addrs[0], &a, ids[1], 0);
	inject(c, t + 50, &addrs[2], &a, ids[0], 0);
	assert_int_equal(stats_of(c->dht).dropped[FM__DHT_DROP_MISMATCH], 2);
	/* It answers: it stays, the newcomer waits. */
	answer_to(&a, &q, FM__DHT_PONG);
	inject(c, t + 100, &addrs[0], &a, ids[0], 0);
	assert_true(in_table(c->dht, ids[0]));
	assert_false(in_table(c->dht, x));
	assert_int_equal(stats_of(c->dht).evictions, 0);
	/* The 22nd: now the second entry is the least recently seen. */
	fake_id(c->id.node_id, 0, 101, y);
	assert_int_equal(fm__dht_add_proven(c->dht, t + 200, y, &ay), 0);
	assert_true(take(c, &addrs[1], FM__DHT_PING, &q));
	assert_int_equal(stats_of(c->dht).replacements, 2);
	/* It does not answer (nor its retries): evicted, and the newest
	 * replacement takes its place. */
	for (i = 1; i < FM_DHT_RPC_ATTEMPTS; i++) {
		fm__dht_tick(c->dht,
		             t + 200 + (uint64_t)i * FM_DHT_RPC_TIMEOUT_MS);
		assert_true(take(c, &addrs[1], FM__DHT_PING, &q)); /* retry */
		assert_true(in_table(c->dht, ids[1]));
	}
	fm__dht_tick(c->dht, t + 200 +
	                             (uint64_t)FM_DHT_RPC_ATTEMPTS *
	                                     FM_DHT_RPC_TIMEOUT_MS);
	s = stats_of(c->dht);
	assert_false(in_table(c->dht, ids[1]));
	assert_true(in_table(c->dht, y));
	assert_false(in_table(c->dht, x));
	assert_int_equal(s.table_size, FM_DHT_K);
	assert_int_equal(s.evictions, 1);
	assert_int_equal(s.replacements, 1);
	/* The same ID at a second address is one node, not two; a second
	 * ID at a taken address is refused. */
	assert_int_equal(fm__dht_add_proven(c->dht, t + 300, y, &ax), 0);
	assert_int_equal(stats_of(c->dht).table_size, FM_DHT_K);
	fake_id(c->id.node_id, 1, 5, x);
	assert_int_equal(fm__dht_add_proven(c->dht, t + 300, x, &ax), -EEXIST);
	cap_free(c);
}

/* A table whose every entry stops answering keeps its entries (stale) and
 * re-bootstraps, with growing intervals, from every address it knows; one
 * proof brings it back. */
static void test_empty_table_rebootstraps(void **state)
{
	struct cap *c = cap_new(NULL);
	fm_identity ids[3];
	fm_addr addrs[3];
	fm__dht_stats s;
	fm__dht_msg q, a;
	uint64_t t = TEST_T0, first_round = 0, second_round = 0;
	uint64_t boots = 0;
	int i, rounds = 0;

	(void)state;
	for (i = 0; i < 3; i++) {
		identity_of(100 + (uint32_t)i, &ids[i]);
		addrs[i] = addr4(2, i, 0, 1);
		assert_int_equal(fm__dht_add_proven(c->dht, t, ids[i].node_id,
		                                    &addrs[i]),
		                 0);
	}
	assert_int_equal(stats_of(c->dht).table_live, 3);
	/* Nobody answers for ten minutes of maintenance. */
	for (; t < TEST_T0 + 10ULL * 60 * 1000; t += 250) {
		fm__dht_tick(c->dht, t);
		s = stats_of(c->dht);
		if (s.bootstraps > boots) {
			boots = s.bootstraps;
			rounds++;
			if (rounds == 1)
				first_round = t;
			else if (rounds == 2)
				second_round = t;
			else if (rounds == 3)
				/* intervals grow: 1 s, then 2 s (+-25 %) */
				assert_true(t - second_round >
				            second_round - first_round);
		}
		c->n = 0; /* nothing is ever answered */
	}
	s = stats_of(c->dht);
	assert_int_equal(s.table_size, 3);
	assert_int_equal(s.table_live, 0);
	assert_true(rounds >= 4);
	assert_true(s.last_bootstrap_ms > TEST_T0);
	/* The next round challenges every known address; the first node to
	 * prove itself revives its entry. */
	fm__dht_tick(c->dht, t + FM_DHT_BOOTSTRAP_BACKOFF_MAX_MS * 2);
	assert_int_equal(count_sent(c, NULL, FM__DHT_CHALLENGE), 3);
	assert_true(take(c, &addrs[2], FM__DHT_CHALLENGE, &q));
	prove(&q, &ids[2], &a);
	inject(c, t + FM_DHT_BOOTSTRAP_BACKOFF_MAX_MS * 2 + 50, &addrs[2], &a,
	       ids[2].node_id, 0);
	s = stats_of(c->dht);
	assert_int_equal(s.proofs_ok, 1);
	assert_int_equal(s.table_live, 1);
	cap_free(c);
}

/* An ID in bucket b of self with random bits after bit b. */
static void random_id_in(const uint8_t *self, int b, uint64_t *rng,
                         uint8_t *out)
{
	uint8_t r[FM_NODE_ID_BYTES];
	uint8_t mask = (uint8_t)(0xffu >> (b % 8 + 1));
	int i;

	fill_random(rng, r, sizeof(r));
	memcpy(out, self, FM_NODE_ID_BYTES);
	out[b / 8] ^= (uint8_t)(0x80u >> (b % 8));
	out[b / 8] = (uint8_t)((out[b / 8] & ~mask) | (r[b / 8] & mask));
	for (i = b / 8 + 1; i < FM_NODE_ID_BYTES; i++)
		out[i] = r[i];
}

struct ranked {
	uint8_t id[FM_NODE_ID_BYTES];
	int stale;
};

static const uint8_t *rank_target;

static int rank_order(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;

	if (x->stale != y->stale)
		return x->stale - y->stale;
	return fm__dht_distance_cmp(rank_target, x->id, y->id);
}

#define CLOSEST_BUCKETS 40
#define CLOSEST_ENTRIES 600

/* The closest set, found by walking the buckets outward from the
 * target's, equals a brute-force sort of the whole table (live entries
 * before stale ones, then by distance) for every size asked, for random
 * targets, our own ID, and targets next to entries. */
static void test_closest_matches_sort(void **state)
{
	struct cap *c = cap_new(NULL);
	struct ranked *all = calloc(CLOSEST_ENTRIES, sizeof(*all));
	fm__dht_contact *out = calloc(CLOSEST_ENTRIES, sizeof(*out));
	fm_addr *addrs = calloc(CLOSEST_ENTRIES, sizeof(*addrs));
	const size_t maxes[] = {1,
	                        2,
	                        3,
	                        FM_DHT_K - 1,
	                        FM_DHT_K,
	                        2 * FM_DHT_K + 1,
	                        CLOSEST_ENTRIES};
	uint8_t target[FM_NODE_ID_BYTES];
	uint64_t rng = 7, t = TEST_T0, last_send = 0;
	size_t n = 0, i, k, m, got, stale = 0;
	int b, trial;

	(void)state;
	assert_non_null(all);
	assert_non_null(out);
	assert_non_null(addrs);
	/* Up to 19 entries per bucket (no replacement cache, so no entry is
	 * ever replaced), in distinct public /24s. */
	for (b = 0; b < CLOSEST_BUCKETS; b++)
		for (k = 0; k < (size_t)(1 + (b * 7) % 19); k++) {
			random_id_in(c->id.node_id, b, &rng, all[n].id);
			addrs[n] = addr4(3, (int)(n >> 8), (int)(n & 0xff), 1);
			assert_int_equal(fm__dht_add_proven(c->dht, t,
			                                    all[n].id,
			                                    &addrs[n]),
			                 0);
			n++;
		}
	assert_int_equal(stats_of(c->dht).table_size, n);
	/* The join's lookups go unanswered: every entry asked goes stale,
	 * the others stay live. */
	for (; t < TEST_T0 + 60000; t += 100) {
		fm__dht_tick(c->dht, t);
		for (i = 0; i < c->n; i++)
			for (k = 0; k < n; k++)
				if (addr_same(&c->sent[i].to, &addrs[k]) &&
				    !all[k].stale) {
					all[k].stale = 1;
					stale++;
				}
		if (c->n > 0)
			last_send = t;
		c->n = 0;
	}
	assert_true(last_send + FM_DHT_RPC_ATTEMPTS * FM_DHT_RPC_TIMEOUT_MS <
	            t);
	assert_int_equal(stats_of(c->dht).table_live, n - stale);
	assert_true(stale > 0 && stale < n);
	for (trial = 0; trial < 300; trial++) {
		if (trial == 0)
			memcpy(target, c->id.node_id, sizeof(target));
		else if (trial % 3 == 0)
			fill_random(&rng, target, sizeof(target));
		else if (trial % 3 == 1)
			random_id_in(c->id.node_id, trial % 45, &rng, target);
		else {
			memcpy(target, all[(size_t)trial % n].id,
			       sizeof(target));
			target[31] ^= (uint8_t)trial;
		}
		rank_target = target;
		qsort(all, n, sizeof(*all), rank_order);
		for (m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
			size_t want = maxes[m] < n ? maxes[m] : n;
			got = fm__dht_closest(c->dht, target, out, maxes[m]);
			assert_int_equal(got, want);
			for (i = 0; i < got; i++)
				assert_memory_equal(out[i].id, all[i].id,
				                    FM_NODE_ID_BYTES);
		}
	}
	free(addrs);
	free(out);
	free(all);
	cap_free(c);
}

/* A node that has fewer than FM_DHT_REBOOTSTRAP_LIVE_MIN live entries
 * keeps re-bootstrapping, with growing intervals, from the known
 * addresses that are not in its table; with enough live entries it does
 * not. */
static void test_rebootstrap_below_threshold(void **state)
{
	struct cap *c = cap_new(NULL);
	fm_addr boots[5], a;
	fm_identity ids[FM_DHT_REBOOTSTRAP_LIVE_MIN + 1];
	uint64_t t = TEST_T0, rounds[8];
	size_t i, nrounds = 0, challenges[5] = {0};
	fm__dht_msg q, r;
	fm__dht_stats s;

	(void)state;
	for (i = 0; i < 5; i++)
		boots[i] = addr4(4, (int)i, 0, 1);
	assert_int_equal(fm__dht_bootstrap(c->dht, t, boots, 5), 0);
	assert_int_equal(count_sent(c, NULL, FM__DHT_CHALLENGE), 5);
	c->n = 0;
	/* One node proves itself (a session): joined, but one live entry. */
	identity_of(500, &ids[0]);
	a = addr4(5, 0, 0, 1);
	assert_int_equal(fm__dht_add_proven(c->dht, t, ids[0].node_id, &a), 0);
	for (t = TEST_T0 + 100; t < TEST_T0 + 40000 && nrounds < 8; t += 100) {
		uint64_t before = stats_of(c->dht).bootstraps;
		fm__dht_tick(c->dht, t);
		if (stats_of(c->dht).bootstraps > before) {
			rounds[nrounds++] = t;
		}
		for (i = 0; i < 5; i++)
			challenges[i] +=
			        count_sent(c, &boots[i], FM__DHT_CHALLENGE);
		/* The one entry answers everything, with no contacts. */
		while (take(c, &a, 0, &q)) {
			if (q.type == FM__DHT_PING)
				answer_to(&r, &q, FM__DHT_PONG);
			else if (q.type == FM__DHT_FIND_NODE ||
			         q.type == FM__DHT_FIND_VALUE)
				answer_to(&r, &q, FM__DHT_NODES);
			else
				continue;
			inject(c, t + 20, &a, &r, ids[0].node_id, 0);
		}
		c->n = 0;
	}
	assert_true(nrounds >= 4);
	/* Beyond the first CHALLENGE and its resends, rounds challenged
	 * every bootstrap address again. */
	for (i = 0; i < 5; i++)
		assert_true(challenges[i] >= 2 * FM_DHT_RPC_ATTEMPTS);
	for (i = 2; i < nrounds; i++)
		assert_true(rounds[i] - rounds[i - 1] >
		            rounds[i - 1] - rounds[i - 2]);
	s = stats_of(c->dht);
	assert_int_equal(s.table_live, 1);
	cap_free(c);

	/* Enough live entries: no round, however long it runs. */
	c = cap_new(NULL);
	assert_int_equal(fm__dht_bootstrap(c->dht, TEST_T0, boots, 1), 0);
	c->n = 0;
	for (i = 0; i <= FM_DHT_REBOOTSTRAP_LIVE_MIN; i++) {
		identity_of(600 + (uint32_t)i, &ids[i]);
		a = addr4(6, (int)i, 0, 1);
		assert_int_equal(
		        fm__dht_add_proven(c->dht, TEST_T0, ids[i].node_id, &a),
		        0);
	}
	for (t = TEST_T0 + 100; t < TEST_T0 + 20ULL * 60 * 1000; t += 100) {
		fm__dht_tick(c->dht, t);
		/* The first CHALLENGE and its resends, then nothing. */
		if (t > TEST_T0 + FM_DHT_RPC_ATTEMPTS * FM_DHT_RPC_TIMEOUT_MS)
			assert_int_equal(
			        count_sent(c, &boots[0], FM__DHT_CHALLENGE), 0);
		/* Every entry answers everything. */
		for (i = 0; i <= FM_DHT_REBOOTSTRAP_LIVE_MIN; i++) {
			a = addr4(6, (int)i, 0, 1);
			while (take(c, &a, 0, &q)) {
				if (q.type == FM__DHT_PING)
					answer_to(&r, &q, FM__DHT_PONG);
				else if (q.type == FM__DHT_FIND_NODE ||
				         q.type == FM__DHT_FIND_VALUE)
					answer_to(&r, &q, FM__DHT_NODES);
				else
					continue;
				inject(c, t + 20, &a, &r, ids[i].node_id, 0);
			}
		}
		c->n = 0;
	}
	s = stats_of(c->dht);
	assert_int_equal(s.table_live, FM_DHT_REBOOTSTRAP_LIVE_MIN + 1);
	assert_int_equal(s.bootstraps, 1);
	cap_free(c);
}

static void test_subnet_caps(void **state)
{
	fm__dht_config cfg;
	struct cap *c = cap_new(NULL);
	uint8_t id[32];
	fm_addr a;
	uint32_t n = 1;
	int i;

	(void)state;
	/* Two per /24 in a bucket; the third is refused and counted. */
	for (i = 1; i <= 3; i++) {
		fake_id(c->id.node_id, 0, n++, id);
		a = addr4(3, 3, 3, i);
		assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a),
		                 i <= 2 ? 0 : -EPERM);
	}
	assert_int_equal(stats_of(c->dht).subnet_refused, 1);
	/* Another bucket has its own allowance. */
	fake_id(c->id.node_id, 1, n++, id);
	a = addr4(3, 3, 3, 9);
	assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a), 0);
	/* Private and loopback ranges are exempt by default. */
	for (i = 1; i <= 5; i++) {
		fake_id(c->id.node_id, 0, n++, id);
		a = addr4(10, 0, 0, i);
		assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a),
		                 0);
		fake_id(c->id.node_id, 0, n++, id);
		a = addr4(127, 0, 0, i);
		assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a),
		                 0);
		fake_id(c->id.node_id, 0, n++, id);
		a = addr4(192, 168, 1, i);
		assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a),
		                 0);
	}
	/* IPv6: per /48. */
	fake_id(c->id.node_id, 2, n++, id);
	a = addr_of("[2001:db8:1::1]:7420");
	assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a), 0);
	fake_id(c->id.node_id, 2, n++, id);
	a = addr_of("[2001:db8:1:2::1]:7420");
	assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a), 0);
	fake_id(c->id.node_id, 2, n++, id);
	a = addr_of("[2001:db8:1:ffff::1]:7420");
	assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a), -EPERM);
	fake_id(c->id.node_id, 2, n++, id);
	a = addr_of("[2001:db8:2::1]:7420");
	assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a), 0);
	fake_id(c->id.node_id, 2, n++, id);
	a = addr_of("[fd00::1]:7420"); /* ULA: exempt */
	assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a), 0);
	assert_true(fm__dht_addr_is_private(&a));
	cap_free(c);

	/* Configured: private ranges capped too, three per subnet. */
	memset(&cfg, 0, sizeof(cfg));
	cfg.subnet_cap_private = 1;
	cfg.subnet_max = 3;
	c = cap_new(&cfg);
	for (i = 1; i <= 4; i++) {
		fake_id(c->id.node_id, 0, n++, id);
		a = addr4(10, 0, 0, i);
		assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a),
		                 i <= 3 ? 0 : -EPERM);
	}
	cap_free(c);
}

/* At most FM_DHT_RATE_SOURCES_MAX sources are tracked: a new one takes the
 * place of the source seen longest ago, whose bucket is forgotten (it
 * starts full again), while a source seen since keeps its empty bucket. */
static void test_rate_sources_lru(void **state)
{
	fm__dht_config cfg;
	struct cap *c;
	fm_addr a = addr4(4, 4, 4, 4), b = addr4(4, 4, 4, 5),
	        late = addr4(5, 5, 5, 5), f;
	uint8_t sender[32];
	uint64_t rng = 12;
	fm__dht_msg m;
	int i;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.rate_per_sec = 1;
	cfg.rate_burst = 2;
	c = cap_new(&cfg);
	memset(sender, 0x67, sizeof(sender));
	for (i = 0; i < 3; i++) {
		msg_init(&m, FM__DHT_PING, &rng);
		inject(c, TEST_T0, &a, &m, sender, 0);
		msg_init(&m, FM__DHT_PING, &rng);
		inject(c, TEST_T0 + 1, &b, &m, sender, 0);
	}
	assert_int_equal(count_sent(c, &a, FM__DHT_PONG), 2);
	assert_int_equal(count_sent(c, &b, FM__DHT_PONG), 2);
	/* a is seen again (and dropped): b is now the oldest source. */
	msg_init(&m, FM__DHT_PING, &rng);
	inject(c, TEST_T0 + 2, &a, &m, sender, 0);
	for (i = 0; i < FM_DHT_RATE_SOURCES_MAX - 2; i++) {
		f = addr4(6, 6, (uint8_t)(i / 256), (uint8_t)(i % 256));
		msg_init(&m, FM__DHT_PING, &rng);
		inject(c, TEST_T0 + 3, &f, &m, sender, 0);
	}
	assert_int_equal(stats_of(c->dht).dropped[FM__DHT_DROP_RATE_LIMITED],
	                 3);
	/* One source too many: b's bucket goes, a's stays. */
	msg_init(&m, FM__DHT_PING, &rng);
	inject(c, TEST_T0 + 4, &late, &m, sender, 0);
	assert_int_equal(count_sent(c, &late, FM__DHT_PONG), 1);
	msg_init(&m, FM__DHT_PING, &rng);
	inject(c, TEST_T0 + 5, &a, &m, sender, 0);
	assert_int_equal(count_sent(c, &a, FM__DHT_PONG), 2);
	/* b comes back as a new source (a full bucket), in place of the
	 * first filler. */
	msg_init(&m, FM__DHT_PING, &rng);
	inject(c, TEST_T0 + 5, &b, &m, sender, 0);
	assert_int_equal(count_sent(c, &b, FM__DHT_PONG), 3);
	assert_int_equal(stats_of(c->dht).dropped[FM__DHT_DROP_RATE_LIMITED],
	                 4);
	cap_free(c);
}

static void test_rate_limits(void **state)
{
	fm__dht_config cfg;
	struct cap *c;
	fm_addr a = addr4(4, 4, 4, 4), a2 = addr_of("4.4.4.4:9"),
	        b = addr4(4, 4, 4, 5), v6a = addr_of("[2001:db8::1]:7420"),
	        v6b = addr_of("[2001:db8::2]:7420"),
	        v6c = addr_of("[2001:db8:0:1::1]:7420"),
	        lo = addr_of("127.0.0.1:7421");
	uint8_t sender[32];
	uint64_t rng = 11;
	fm__dht_msg m;
	int i;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.rate_per_sec = 10;
	cfg.rate_burst = 20;
	c = cap_new(&cfg);
	memset(sender, 0x66, sizeof(sender));
	for (i = 0; i < 30; i++) {
		msg_init(&m, FM__DHT_PING, &rng);
		inject(c, TEST_T0, &a, &m, sender, 0);
	}
	assert_int_equal(count_sent(c, &a, FM__DHT_PONG), 20);
	assert_int_equal(stats_of(c->dht).dropped[FM__DHT_DROP_RATE_LIMITED],
	                 10);
	/* Another port of the same address shares the bucket; another
	 * address does not. */
	msg_init(&m, FM__DHT_PING, &rng);
	inject(c, TEST_T0, &a2, &m, sender, 0);
	assert_int_equal(count_sent(c, &a2, FM__DHT_PONG), 0);
	msg_init(&m, FM__DHT_PING, &rng);
	inject(c, TEST_T0, &b, &m, sender, 0);
	assert_int_equal(count_sent(c, &b, FM__DHT_PONG), 1);
	/* Tokens come back at the configured rate. */
	for (i = 0; i < 15; i++) {
		msg_init(&m, FM__DHT_PING, &rng);
		inject(c, TEST_T0 + 1000, &a, &m, sender, 0);
	}
	assert_int_equal(count_sent(c, &a, FM__DHT_PONG), 30);
	/* IPv6: one bucket per /64. */
	for (i = 0; i < 20; i++) {
		msg_init(&m, FM__DHT_PING, &rng);
		inject(c, TEST_T0, i % 2 ? &v6a : &v6b, &m, sender, 0);
	}
	msg_init(&m, FM__DHT_PING, &rng);
	inject(c, TEST_T0, &v6a, &m, sender, 0);
	msg_init(&m, FM__DHT_PING, &rng);
	inject(c, TEST_T0, &v6c, &m, sender, 0);
	assert_int_equal(count_sent(c, &v6a, FM__DHT_PONG) +
	                         count_sent(c, &v6b, FM__DHT_PONG),
	                 20);
	assert_int_equal(count_sent(c, &v6c, FM__DHT_PONG), 1);
	/* Loopback is exempt by default. */
	for (i = 0; i < 50; i++) {
		msg_init(&m, FM__DHT_PING, &rng);
		inject(c, TEST_T0, &lo, &m, sender, 0);
	}
	assert_int_equal(count_sent(c, &lo, FM__DHT_PONG), 50);
	cap_free(c);
}

/* ---- proofs and anti-amplification --------------------------------------- */

static void test_challenge_proof(void **state)
{
	uint8_t msg[64];
	struct cap *c = cap_new(NULL);
	fm_identity f, g;
	fm_addr fa = addr4(5, 5, 5, 5), ga = addr4(6, 6, 6, 6);
	uint64_t rng = 3;
	fm__dht_msg q, a;
	size_t n, alen;

	(void)state;
	identity_of(500, &f);
	identity_of(501, &g);
	/* A candidate is challenged and enters only with a valid proof. */
	assert_int_equal(fm__dht_add_candidate(c->dht, TEST_T0, f.node_id, &fa),
	                 0);
	assert_true(take(c, &fa, FM__DHT_CHALLENGE, &q));
	assert_true(c->taken_len >= FM_DHT_PROOF_BYTES - 1);
	assert_true(addr_same(&q.observed, &fa));
	/* Signed by another key: refused. */
	prove(&q, &g, &a);
	inject(c, TEST_T0 + 10, &fa, &a, g.node_id, 0);
	assert_false(in_table(c->dht, g.node_id));
	/* (that answer came from the wrong ID for the txid: a mismatch) */
	assert_int_equal(stats_of(c->dht).dropped[FM__DHT_DROP_MISMATCH], 1);
	/* The right key over the wrong address: refused. */
	q.observed = addr4(5, 5, 5, 6);
	prove(&q, &f, &a);
	inject(c, TEST_T0 + 20, &fa, &a, f.node_id, 0);
	assert_int_equal(stats_of(c->dht).proofs_bad, 1);
	assert_false(in_table(c->dht, f.node_id));
	/* The real thing. */
	assert_int_equal(
	        fm__dht_add_candidate(c->dht, TEST_T0 + 30, f.node_id, &fa), 0);
	assert_true(take(c, &fa, FM__DHT_CHALLENGE, &q));
	prove(&q, &f, &a);
	inject(c, TEST_T0 + 40, &fa, &a, f.node_id, 0);
	assert_int_equal(stats_of(c->dht).proofs_ok, 1);
	assert_true(in_table(c->dht, f.node_id));
	/* A proof from another address than the one challenged: ignored. */
	assert_int_equal(fm__dht_add_candidate(c->dht, TEST_T0 + 50, NULL, &ga),
	                 0);
	assert_true(take(c, &ga, FM__DHT_CHALLENGE, &q));
	prove(&q, &g, &a);
	inject(c, TEST_T0 + 60, &fa, &a, g.node_id, 0);
	assert_false(in_table(c->dht, g.node_id));
	/* The DHT as prover: a padded CHALLENGE gets a PROOF that verifies
	 * over label || nonce || the address the challenger saw. */
	msg_init(&q, FM__DHT_CHALLENGE, &rng);
	fill_random(&rng, q.nonce, sizeof(q.nonce));
	q.observed = addr_of("[2001:db8::7]:7420");
	inject(c, TEST_T0 + 70, &ga, &q, g.node_id, FM_DHT_PROOF_BYTES);
	assert_true(take(c, &ga, FM__DHT_PROOF, &a));
	assert_memory_equal(a.public_key, c->id.public_key, 32);
	n = sizeof(FM_DHT_PROOF_LABEL) - 1;
	memcpy(msg, FM_DHT_PROOF_LABEL, n);
	memcpy(msg + n, q.nonce, sizeof(q.nonce));
	n += sizeof(q.nonce);
	assert_int_equal(fm__dht_addr_encode(&q.observed, msg + n, &alen), 0);
	n += alen;
	assert_int_equal(crypto_sign_verify_detached(a.signature, msg, n,
	                                             c->id.public_key),
	                 0);
	cap_free(c);
}

static void test_anti_amplification(void **state)
{
	struct cap *c = cap_new(NULL);
	fm_identity x;
	fm_addr xa = addr4(9, 9, 9, 9), za = addr4(9, 9, 8, 8);
	uint8_t id[32], zid[32];
	uint64_t rng = 17, received = 0, t = TEST_T0;
	size_t req;
	fm__dht_msg q, a, ch;
	int i;

	(void)state;
	for (i = 0; i < FM_DHT_K; i++) {
		fake_id(c->id.node_id, i % 8, (uint32_t)i + 1, id);
		fm_addr ea = addr4(7, i, 0, 1);
		assert_int_equal(fm__dht_add_proven(c->dht, t, id, &ea), 0);
	}
	identity_of(900, &x);
	cap_watch(c, &xa);
	c->n = 0;
	/* A small FIND_NODE from an unproven address: the answer is cut to
	 * the request's size and says so. */
	msg_init(&q, FM__DHT_FIND_NODE, &rng);
	fill_random(&rng, q.key, 32);
	req = inject(c, t, &xa, &q, x.node_id, 0);
	received += req;
	assert_true(take(c, &xa, FM__DHT_NODES, &a));
	assert_true(c->taken_len <= req);
	assert_true(a.flags & FM__DHT_F_TRUNCATED);
	assert_true(a.contact_count < FM_DHT_K);
	assert_int_equal(stats_of(c->dht).answers_truncated, 1);
	/* Padded to a full datagram: a full answer, and room left for the
	 * CHALLENGE that may bring it into the table. */
	msg_init(&q, FM__DHT_FIND_NODE, &rng);
	fill_random(&rng, q.key, 32);
	req = inject(c, t + 1, &xa, &q, x.node_id, FM_DATAGRAM_MAX_BYTES);
	received += req;
	assert_true(req <= FM_DATAGRAM_MAX_BYTES && req + 3 >= 1390);
	assert_true(take(c, &xa, FM__DHT_NODES, &a));
	assert_int_equal(a.contact_count, FM_DHT_K);
	assert_int_equal(a.flags, 0);
	assert_true(c->bytes_to[0] <= received);
	assert_true(take(c, &xa, FM__DHT_CHALLENGE, &ch));
	assert_true(c->bytes_to[0] <= received);
	/* A CHALLENGE too small to pay for its PROOF gets nothing. */
	memset(zid, 0x3c, sizeof(zid));
	msg_init(&q, FM__DHT_CHALLENGE, &rng);
	q.observed = za;
	inject(c, t + 2, &za, &q, zid, 0);
	assert_int_equal(count_sent(c, &za, 0), 0);
	assert_int_equal(stats_of(c->dht).dropped[FM__DHT_DROP_NO_CREDIT], 1);
	/* X answers the CHALLENGE: proven (and in the table), so from then
	 * on a small request gets the whole answer. */
	prove(&ch, &x, &a);
	inject(c, t + 3, &xa, &a, x.node_id, 0);
	assert_true(in_table(c->dht, x.node_id));
	c->n = 0;
	msg_init(&q, FM__DHT_FIND_NODE, &rng);
	fill_random(&rng, q.key, 32);
	req = inject(c, t + 5000, &xa, &q, x.node_id, 0);
	assert_true(take(c, &xa, FM__DHT_NODES, &a));
	assert_true(c->taken_len > req);
	assert_int_equal(a.flags, 0);
	assert_int_equal(a.contact_count, FM_DHT_K); /* itself left out */
	cap_free(c);
}

/* ---- values -------------------------------------------------------------- */

static void store(struct cap *c, uint64_t now, const fm_addr *from,
                  const uint8_t *key, const fm_record *rec, uint64_t ttl,
                  int want_status)
{
	uint8_t bytes[FM_RECORD_MAX_BYTES], sender[32];
	uint64_t rng = now;
	fm__dht_msg m, a;
	size_t len;

	memset(sender, 0x99, sizeof(sender));
	assert_int_equal(fm_record_encode(rec, bytes, sizeof(bytes), &len), 0);
	msg_init(&m, FM__DHT_STORE, &rng);
	memcpy(m.key, key, 32);
	m.record = bytes;
	m.record_len = len;
	m.ttl_ms = ttl;
	inject(c, now, from, &m, sender, 0);
	assert_true(take(c, from, FM__DHT_STORED, &a));
	assert_int_equal(a.status, want_status);
}

/* FIND_VALUE(key) from a proven asker: the records' seqs, or -1 for a
 * NODES answer. */
static int find_value(struct cap *c, uint64_t now, const fm_addr *from,
                      const uint8_t *key, uint64_t *seqs, size_t max)
{
	uint8_t sender[32];
	uint64_t rng = now ^ 0xabc;
	fm__dht_msg q, *a = malloc(sizeof(*a));
	int n, i;

	assert_non_null(a);
	memset(sender, 0x98, sizeof(sender));
	msg_init(&q, FM__DHT_FIND_VALUE, &rng);
	memcpy(q.key, key, 32);
	inject(c, now, from, &q, sender, FM_DATAGRAM_MAX_BYTES);
	if (take(c, from, FM__DHT_NODES, a)) {
		free(a);
		return -1;
	}
	assert_true(take(c, from, FM__DHT_VALUE, a));
	n = a->value_count;
	for (i = 0; i < n && (size_t)i < max; i++) {
		fm_record r;
		assert_int_equal(fm_record_decode(a->values[i].record,
		                                  a->values[i].record_len, &r),
		                 0);
		seqs[i] = r.seq;
	}
	free(a);
	return n;
}

static void test_store_rules(void **state)
{
	struct cap *c = cap_new(NULL);
	fm_identity n1, n2;
	fm_addr from = addr4(11, 0, 0, 1), na = addr4(12, 0, 0, 1);
	uint8_t key_echo[32], key_other[32];
	uint64_t seqs[FM_DHT_MSG_VALUES_MAX], t = TEST_T0;
	fm_record r;

	(void)state;
	identity_of(1001, &n1);
	identity_of(1002, &n2);
	assert_int_equal(fm__dht_service_key("echo", key_echo), 0);
	assert_int_equal(fm__dht_service_key("other", key_other), 0);
	/* Nothing stored: a FIND_VALUE is answered with NODES. */
	assert_int_equal(find_value(c, t, &from, n1.node_id, seqs, 4), -1);
	/* Under the node's ID and under its services' keys only. */
	make_record(&n1, &na, 5, "echo", &r);
	store(c, t, &from, n1.node_id, &r, FM_DHT_VALUE_TTL_MS,
	      FM__DHT_STORE_OK);
	store(c, t, &from, key_echo, &r, FM_DHT_VALUE_TTL_MS, FM__DHT_STORE_OK);
	store(c, t, &from, key_other, &r, FM_DHT_VALUE_TTL_MS,
	      FM__DHT_STORE_INVALID);
	store(c, t, &from, n2.node_id, &r, FM_DHT_VALUE_TTL_MS,
	      FM__DHT_STORE_INVALID);
	assert_int_equal(find_value(c, t + 1, &from, n1.node_id, seqs, 4), 1);
	assert_int_equal(seqs[0], 5);
	/* Higher seq wins; lower is refused; the same record refreshes. */
	make_record(&n1, &na, 4, "echo", &r);
	store(c, t + 2, &from, n1.node_id, &r, FM_DHT_VALUE_TTL_MS,
	      FM__DHT_STORE_OLDER);
	make_record(&n1, &na, 6, "echo", &r);
	store(c, t + 3, &from, n1.node_id, &r, FM_DHT_VALUE_TTL_MS,
	      FM__DHT_STORE_OK);
	store(c, t + 4, &from, n1.node_id, &r, FM_DHT_VALUE_TTL_MS,
	      FM__DHT_STORE_OK);
	assert_int_equal(find_value(c, t + 5, &from, n1.node_id, seqs, 4), 1);
	assert_int_equal(seqs[0], 6);
	/* A forged record: refused. */
	r.capacity++;
	store(c, t + 6, &from, n1.node_id, &r, FM_DHT_VALUE_TTL_MS,
	      FM__DHT_STORE_INVALID);
	/* Two providers of echo. */
	make_record(&n2, &na, 1, "echo", &r);
	store(c, t + 7, &from, key_echo, &r, 1000, FM__DHT_STORE_OK);
	assert_int_equal(find_value(c, t + 8, &from, key_echo, seqs, 4), 2);
	/* Expiry: n2's short TTL runs out first; a TTL beyond the limit is
	 * clamped to FM_DHT_VALUE_TTL_MS. */
	assert_int_equal(find_value(c, t + 7 + 1000, &from, key_echo, seqs, 4),
	                 1);
	assert_int_equal(seqs[0], 5);
	make_record(&n2, &na, 2, "echo", &r);
	store(c, t + 2000, &from, n2.node_id, &r, 100 * FM_DHT_VALUE_TTL_MS,
	      FM__DHT_STORE_OK);
	assert_int_equal(find_value(c, t + 2000 + FM_DHT_VALUE_TTL_MS - 1,
	                            &from, n2.node_id, seqs, 4),
	                 1);
	assert_int_equal(find_value(c, t + 2000 + FM_DHT_VALUE_TTL_MS, &from,
	                            n2.node_id, seqs, 4),
	                 -1);
	assert_int_equal(stats_of(c->dht).values_stored, 0);
	cap_free(c);
}

static void test_store_limits(void **state)
{
	struct cap *c = cap_new(NULL);
	fm_addr from = addr4(11, 0, 0, 1), na = addr4(12, 0, 0, 1);
	uint8_t key[32];
	fm_identity n;
	fm_record r;
	uint32_t i;

	(void)state;
	assert_int_equal(fm__dht_service_key("echo", key), 0);
	for (i = 0; i < FM_DHT_STORE_MAX_PER_KEY; i++) {
		identity_of(2000 + i, &n);
		make_record(&n, &na, 1, "echo", &r);
		store(c, TEST_T0, &from, key, &r, 60000, FM__DHT_STORE_OK);
	}
	/* Full: a record that would not outlive the others is refused... */
	identity_of(3000, &n);
	make_record(&n, &na, 1, "echo", &r);
	store(c, TEST_T0, &from, key, &r, 60000, FM__DHT_STORE_FULL);
	/* ...one that would takes the place of the one closest to expiry. */
	store(c, TEST_T0, &from, key, &r, 120000, FM__DHT_STORE_OK);
	assert_int_equal(stats_of(c->dht).values_stored,
	                 FM_DHT_STORE_MAX_PER_KEY);
	cap_free(c);
}

/* The store is swept when a value expires, not on a fixed timer: a node
 * that holds nothing and knows nobody has no deadline at all (an idle
 * daemon sleeps), and one holding a value wakes when it expires, but not
 * sooner than FM_DHT_STORE_SWEEP_MS after the last sweep (short TTLs do
 * not add wakeups). */
static void test_sweep_deadline(void **state)
{
	struct cap *c = cap_new(NULL);
	fm_addr from = addr4(11, 0, 0, 1), na = addr4(12, 0, 0, 1);
	const uint64_t ttl = 10ULL * 60 * 1000;
	uint8_t key[32];
	fm_identity n;
	fm_record r;

	(void)state;
	assert_true(fm__dht_tick(c->dht, TEST_T0) == FM_DEADLINE_NONE);
	assert_int_equal(fm__dht_service_key("echo", key), 0);
	identity_of(2000, &n);
	make_record(&n, &na, 1, "echo", &r);
	store(c, TEST_T0, &from, key, &r, ttl, FM__DHT_STORE_OK);
	assert_true(fm__dht_tick(c->dht, TEST_T0 + 1) == TEST_T0 + ttl);
	/* Not before: nothing is swept, nothing wakes it in between. */
	assert_true(fm__dht_tick(c->dht, TEST_T0 + ttl - 1) == TEST_T0 + ttl);
	assert_int_equal(stats_of(c->dht).values_stored, 1);
	/* At the expiry the value goes, and with it the deadline. */
	assert_true(fm__dht_tick(c->dht, TEST_T0 + ttl) == FM_DEADLINE_NONE);
	assert_int_equal(stats_of(c->dht).values_stored, 0);
	/* A value that lives 1 s, stored just after that sweep, is swept with
	 * the next batch. */
	store(c, TEST_T0 + ttl, &from, key, &r, 1000, FM__DHT_STORE_OK);
	assert_true(fm__dht_tick(c->dht, TEST_T0 + ttl + 1) ==
	            TEST_T0 + ttl + FM_DHT_STORE_SWEEP_MS);
	assert_true(
	        fm__dht_tick(c->dht, TEST_T0 + ttl + FM_DHT_STORE_SWEEP_MS) ==
	        FM_DEADLINE_NONE);
	assert_int_equal(stats_of(c->dht).values_stored, 0);
	cap_free(c);
}

/* Many providers: VALUE pages, each within a datagram, resumed from the
 * last node ID; every record exactly once. */
static void test_value_paging(void **state)
{
	struct cap *c = cap_new(NULL);
	fm_addr from = addr4(11, 0, 0, 1), na = addr4(12, 0, 0, 1);
	uint8_t key[32], cursor[32], seen[40][32], sender[32];
	uint64_t rng = 21;
	fm__dht_msg q, *a = malloc(sizeof(*a));
	size_t got = 0, pages = 0, i, j;
	fm_identity n;
	fm_record r;
	int more = 1, has_cursor = 0;

	(void)state;
	assert_non_null(a);
	memset(sender, 0x97, sizeof(sender));
	memset(cursor, 0, sizeof(cursor));
	assert_int_equal(fm__dht_service_key("echo", key), 0);
	for (i = 0; i < 40; i++) {
		identity_of(4000 + (uint32_t)i, &n);
		make_record(&n, &na, 1, "echo", &r);
		store(c, TEST_T0, &from, key, &r, 60000, FM__DHT_STORE_OK);
	}
	while (more) {
		msg_init(&q, FM__DHT_FIND_VALUE, &rng);
		memcpy(q.key, key, 32);
		q.has_cursor = (uint8_t)has_cursor;
		memcpy(q.cursor, cursor, 32);
		inject(c, TEST_T0 + 1, &from, &q, sender,
		       FM_DATAGRAM_MAX_BYTES);
		assert_true(take(c, &from, FM__DHT_VALUE, a));
		assert_true(c->taken_len <= FM_DATAGRAM_MAX_BYTES);
		assert_false(a->flags & FM__DHT_F_TRUNCATED);
		assert_true(a->value_count > 0);
		pages++;
		for (i = 0; i < a->value_count; i++) {
			assert_int_equal(
			        fm_record_decode(a->values[i].record,
			                         a->values[i].record_len, &r),
			        0);
			for (j = 0; j < got; j++)
				assert_memory_not_equal(seen[j], r.node_id, 32);
			assert_true(got < 40);
			memcpy(seen[got++], r.node_id, 32);
			memcpy(cursor, r.node_id, 32);
			assert_true(a->values[i].ttl_ms <= 60000);
		}
		has_cursor = 1;
		more = (a->flags & FM__DHT_F_MORE) != 0;
	}
	assert_int_equal(got, 40);
	assert_true(pages >= 4);
	free(a);
	cap_free(c);
}

/* ---- lookups with a scripted network ------------------------------------- */

struct lk {
	int done;
	int status;
	size_t closest_count;
	fm__dht_contact closest[FM_DHT_K];
	size_t record_count;
	uint8_t record_ids[FM_DHT_LOOKUP_VALUES_MAX][32];
	uint64_t record_seq[FM_DHT_LOOKUP_VALUES_MAX];
	uint32_t hops;
	uint32_t messages;
	uint64_t duration_ms;
};

static void lk_done(void *ctx, const fm__dht_result *res)
{
	struct lk *l = ctx;
	size_t i;

	l->done++;
	l->status = res->status;
	l->closest_count = res->closest_count;
	if (res->closest_count > 0) /* NULL when empty */
		memcpy(l->closest, res->closest,
		       res->closest_count * sizeof(res->closest[0]));
	l->record_count = res->record_count;
	for (i = 0; i < res->record_count; i++) {
		memcpy(l->record_ids[i], res->records[i].node_id, 32);
		l->record_seq[i] = res->records[i].seq;
	}
	l->hops = res->hops;
	l->messages = res->messages;
	l->duration_ms = res->duration_ms;
}

/* Another federation: everything of the old one goes, lookups end with
 * -ECANCELED, the old key no longer opens anything. */
static void test_set_federation(void **state)
{
	uint8_t key2[32], dgram[FM_DATAGRAM_MAX_BYTES], sender[32], id[32];
	struct cap *c = cap_new(NULL);
	fm_addr from = addr4(8, 1, 1, 1), a1 = addr4(18, 0, 0, 1);
	uint64_t rng = 8;
	struct lk l;
	fm__dht_msg m;
	size_t len;

	(void)state;
	memset(&l, 0, sizeof(l));
	memset(sender, 0x55, sizeof(sender));
	fake_id(c->id.node_id, 0, 1, id);
	assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a1), 0);
	assert_int_equal(fm__dht_find_node(c->dht, TEST_T0, id, lk_done, &l),
	                 0);
	msg_init(&m, FM__DHT_PING, &rng);
	len = seal_msg(c->seal_key, &m, sender, 0, dgram);
	fed_key(0x44, key2);
	fm__dht_set_federation(c->dht, TEST_T0 + 1, key2);
	assert_int_equal(l.done, 1);
	assert_int_equal(l.status, -ECANCELED);
	assert_int_equal(stats_of(c->dht).table_size, 0);
	assert_int_equal(stats_of(c->dht).known_addrs, 0);
	c->n = 0;
	fm__dht_recv(c->dht, TEST_T0 + 2, &from, dgram, len);
	assert_int_equal(c->n, 0);
	assert_int_equal(stats_of(c->dht).dropped[FM__DHT_DROP_BAD_SEAL], 1);
	/* the new key works */
	fm__dht_derive_key(key2, c->seal_key);
	msg_init(&m, FM__DHT_PING, &rng);
	inject(c, TEST_T0 + 3, &from, &m, sender, 0);
	assert_int_equal(count_sent(c, &from, FM__DHT_PONG), 1);
	cap_free(c);
}

/* Every seed dead: the lookup ends, once, after each seed has had its
 * attempts, and says it found nothing. */
static void test_lookup_all_dead(void **state)
{
	struct cap *c = cap_new(NULL);
	struct lk l;
	uint8_t id[32], target[32];
	uint64_t t = TEST_T0;
	int i;

	(void)state;
	memset(&l, 0, sizeof(l));
	for (i = 0; i < 5; i++) {
		fake_id(c->id.node_id, i, 1, id);
		fm_addr a = addr4(13, i, 0, 1);
		assert_int_equal(fm__dht_add_proven(c->dht, t, id, &a), 0);
	}
	memset(target, 0xee, sizeof(target));
	assert_int_equal(fm__dht_find_node(c->dht, t, target, lk_done, &l), 0);
	assert_int_equal(count_sent(c, NULL, FM__DHT_FIND_NODE), FM_DHT_ALPHA);
	for (; t < TEST_T0 + 60000 && !l.done; t += 100)
		fm__dht_tick(c->dht, t);
	assert_int_equal(l.done, 1);
	assert_int_equal(l.status, -ENOENT);
	assert_int_equal(l.closest_count, 0);
	assert_int_equal(l.messages, 5 * FM_DHT_RPC_ATTEMPTS);
	/* Slow requests release their slots: all five were asked within
	 * the first timeout. */
	assert_true(l.duration_ms <=
	            (FM_DHT_RPC_ATTEMPTS + 1) * FM_DHT_RPC_TIMEOUT_MS);
	for (; t < TEST_T0 + 120000; t += 1000)
		fm__dht_tick(c->dht, t);
	assert_int_equal(l.done, 1);
	/* An empty table cannot look anything up. */
	cap_free(c);
	c = cap_new(NULL);
	assert_int_equal(fm__dht_find_node(c->dht, t, target, lk_done, &l),
	                 -ENOTCONN);
	cap_free(c);
}

/* Scripted: the seed answers with closer nodes, which answer with
 * nothing new; the lookup stops when the k closest have answered, and its
 * hops count the chain. */
static void test_lookup_termination(void **state)
{
	struct cap *c = cap_new(NULL);
	uint8_t seed_id[32], target[32];
	uint8_t ids[FM_DHT_K + 5][32];
	fm_addr seed_a = addr4(14, 0, 0, 1), addrs[FM_DHT_K + 5];
	fm__dht_msg q, *a = malloc(sizeof(*a));
	struct lk l;
	uint64_t t = TEST_T0;
	size_t i, answered = 0, rounds = 0;

	(void)state;
	assert_non_null(a);
	memset(&l, 0, sizeof(l));
	memset(target, 0, sizeof(target));
	target[0] = (uint8_t)(c->id.node_id[0] ^ 0x80);
	fake_id(c->id.node_id, 0, 0xffffff, seed_id);
	assert_int_equal(fm__dht_add_proven(c->dht, t, seed_id, &seed_a), 0);
	/* 25 nodes near the target, at increasing distances. */
	for (i = 0; i < FM_DHT_K + 5; i++) {
		memcpy(ids[i], target, 32);
		ids[i][30] = (uint8_t)(i + 1);
		addrs[i] = addr4(15, (int)i, 0, 1);
	}
	assert_int_equal(fm__dht_find_node(c->dht, t, target, lk_done, &l), 0);
	assert_true(take(c, &seed_a, FM__DHT_FIND_NODE, &q));
	assert_true(q.pad_len > 0); /* the seed may not know us: padded */
	answer_to(a, &q, FM__DHT_NODES);
	for (i = 0; i < FM_DHT_K; i++) {
		memcpy(a->contacts[i].id, ids[i], 32);
		a->contacts[i].addr = addrs[i];
	}
	a->contact_count = FM_DHT_K;
	inject(c, t + 10, &seed_a, a, seed_id, 0);
	/* Each asked node answers with the last five (farther) nodes. */
	while (!l.done && rounds++ < 100) {
		size_t k;
		int progressed = 0;
		for (k = 0; k < FM_DHT_K + 5; k++) {
			if (!take(c, &addrs[k], FM__DHT_FIND_NODE, &q))
				continue;
			answer_to(a, &q, FM__DHT_NODES);
			for (i = 0; i < 5; i++) {
				memcpy(a->contacts[i].id, ids[FM_DHT_K + i],
				       32);
				a->contacts[i].addr = addrs[FM_DHT_K + i];
			}
			a->contact_count = 5;
			inject(c, t + 20, &addrs[k], a, ids[k], 0);
			answered++;
			progressed = 1;
		}
		if (!progressed)
			fm__dht_tick(c->dht, t += 100);
	}
	assert_int_equal(l.done, 1);
	assert_int_equal(l.status, 0);
	/* The 20 closest of the 26 nodes seen: the 20 scripted ones, in
	 * order; the five farther ones were never needed. */
	assert_int_equal(l.closest_count, FM_DHT_K);
	for (i = 0; i < FM_DHT_K; i++)
		assert_memory_equal(l.closest[i].id, ids[i], 32);
	assert_int_equal(answered, FM_DHT_K);
	assert_int_equal(l.messages, 1 + FM_DHT_K);
	assert_int_equal(l.hops, 2);
	free(a);
	cap_free(c);
}

/* The table's subnet cap holds in a lookup's shortlist: of 18 contacts in
 * one public /24, nearest to the target of all, only subnet_max are ever
 * asked; the nodes of other subnets are asked as well. */
static void test_lookup_subnet_cap(void **state)
{
	struct cap *c = cap_new(NULL);
	uint8_t seed_id[32], target[32], ids[FM_DHT_K][32];
	fm_addr seed_a = addr4(14, 0, 0, 1), addrs[FM_DHT_K];
	fm__dht_msg q, *a = malloc(sizeof(*a));
	struct lk l;
	uint64_t t = TEST_T0;
	size_t i, rounds = 0, asked_shared = 0, asked_other = 0;

	(void)state;
	assert_non_null(a);
	memset(&l, 0, sizeof(l));
	memset(target, 0, sizeof(target));
	target[0] = (uint8_t)(c->id.node_id[0] ^ 0x80);
	fake_id(c->id.node_id, 0, 0xffffff, seed_id);
	assert_int_equal(fm__dht_add_proven(c->dht, t, seed_id, &seed_a), 0);
	for (i = 0; i < FM_DHT_K; i++) {
		memcpy(ids[i], target, 32);
		ids[i][30] = (uint8_t)(i + 1);
		addrs[i] = i < 18 ? addr4(16, 0, 0, (int)i + 1)
		                  : addr4(17, (int)i, 0, 1);
	}
	assert_int_equal(fm__dht_find_node(c->dht, t, target, lk_done, &l), 0);
	assert_true(take(c, &seed_a, FM__DHT_FIND_NODE, &q));
	answer_to(a, &q, FM__DHT_NODES);
	for (i = 0; i < FM_DHT_K; i++) {
		memcpy(a->contacts[i].id, ids[i], 32);
		a->contacts[i].addr = addrs[i];
	}
	a->contact_count = FM_DHT_K;
	inject(c, t + 10, &seed_a, a, seed_id, 0);
	/* Every asked node names all 20 again. */
	while (!l.done && rounds++ < 100) {
		int progressed = 0;
		size_t k;
		for (k = 0; k < FM_DHT_K; k++) {
			if (!take(c, &addrs[k], FM__DHT_FIND_NODE, &q))
				continue;
			if (k < 18)
				asked_shared++;
			else
				asked_other++;
			answer_to(a, &q, FM__DHT_NODES);
			for (i = 0; i < FM_DHT_K; i++) {
				memcpy(a->contacts[i].id, ids[i], 32);
				a->contacts[i].addr = addrs[i];
			}
			a->contact_count = FM_DHT_K;
			inject(c, t + 20, &addrs[k], a, ids[k], 0);
			progressed = 1;
		}
		if (!progressed)
			fm__dht_tick(c->dht, t += 100);
	}
	assert_int_equal(l.done, 1);
	assert_int_equal(asked_shared, FM_DHT_SUBNET_MAX);
	assert_int_equal(asked_other, 2);
	assert_int_equal(l.closest_count, 1 + FM_DHT_SUBNET_MAX + 2);
	free(a);
	cap_free(c);
}

/* ---- persistence --------------------------------------------------------- */

static void test_persist_restore(void **state)
{
	struct cap *c = cap_new(NULL), *d;
	fm_addr boot = addr4(16, 0, 0, 1);
	uint8_t id[32];
	int i;

	(void)state;
	assert_int_equal(fm__dht_bootstrap(c->dht, TEST_T0, &boot, 1), 0);
	assert_int_equal(count_sent(c, &boot, FM__DHT_CHALLENGE), 1);
	for (i = 0; i < 10; i++) {
		fake_id(c->id.node_id, i, 1, id);
		fm_addr a = addr4(17, i, 0, 1);
		assert_int_equal(fm__dht_add_proven(c->dht, TEST_T0, id, &a),
		                 0);
	}
	/* The tick hands a changed table to fm_io.persist. */
	fm__dht_tick(c->dht, TEST_T0 + FM_DHT_PERSIST_MS);
	assert_int_equal(c->persist_calls, 1);
	assert_true(c->persisted_len > 0);
	/* A new instance (a restart) takes it back and challenges every
	 * address, without being given any. */
	d = cap_new(NULL);
	assert_int_equal(fm__dht_restore(d->dht, TEST_T0, c->persisted,
	                                 c->persisted_len),
	                 0);
	assert_int_equal(stats_of(d->dht).known_addrs, 11);
	fm__dht_tick(d->dht, TEST_T0 + 1);
	assert_int_equal(count_sent(d, NULL, FM__DHT_CHALLENGE), 11);
	/* Damaged state is refused whole, not half-read. */
	cap_free(d);
	d = cap_new(NULL);
	assert_int_equal(fm__dht_restore(d->dht, TEST_T0, c->persisted,
	                                 c->persisted_len - 1),
	                 -EBADMSG);
	assert_int_equal(fm__dht_restore(d->dht, TEST_T0, c->persisted, 3),
	                 -EBADMSG);
	/* the last contact's address made unusable (port 0) */
	c->persisted[c->persisted_len - 2] = 0;
	c->persisted[c->persisted_len - 3] = 0;
	assert_int_equal(fm__dht_restore(d->dht, TEST_T0, c->persisted,
	                                 c->persisted_len),
	                 -EBADMSG);
	assert_int_equal(stats_of(d->dht).known_addrs, 0);
	cap_free(d);
	cap_free(c);
}

/* ---- an in-process network ----------------------------------------------- */

struct pkt {
	fm_addr from;
	size_t len;
	uint8_t data[FM_DATAGRAM_MAX_BYTES];
};

struct ev {
	uint64_t at;
	uint64_t seq;
	int node;
	uint32_t version; /* timers: the node's version when armed */
	struct pkt *p;    /* NULL for a timer */
};

struct net;

struct tnode {
	struct net *net;
	int index;
	int dead;
	uint32_t version;
	fm_identity id;
	fm_record rec;
	fm_addr addr;
	fm__dht *dht;
};

struct net {
	uint64_t now;
	uint64_t rng;
	struct ev *heap;
	size_t heap_n, heap_cap;
	uint64_t seq;
	struct tnode *nodes;
	size_t count;
	unsigned loss_per_mille;
	uint64_t sent, lost;
};

static int ev_less(const struct ev *a, const struct ev *b)
{
	return a->at != b->at ? a->at < b->at : a->seq < b->seq;
}

static void heap_push(struct net *n, struct ev e)
{
	size_t i;

	if (n->heap_n == n->heap_cap) {
		n->heap_cap = n->heap_cap ? n->heap_cap * 2 : 1024;
		n->heap = realloc(n->heap, n->heap_cap * sizeof(*n->heap));
		assert_non_null(n->heap);
	}
	e.seq = n->seq++;
	i = n->heap_n++;
	while (i > 0 && ev_less(&e, &n->heap[(i - 1) / 2])) {
		n->heap[i] = n->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	n->heap[i] = e;
}

static struct ev heap_pop(struct net *n)
{
	struct ev top = n->heap[0], last = n->heap[--n->heap_n];
	size_t i = 0;

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct ev *best = &last;
		if (l < n->heap_n && ev_less(&n->heap[l], best)) {
			m = l;
			best = &n->heap[l];
		}
		if (r < n->heap_n && ev_less(&n->heap[r], best))
			m = r;
		if (m == i)
			break;
		n->heap[i] = n->heap[m];
		i = m;
	}
	if (n->heap_n > 0)
		n->heap[i] = last;
	return top;
}

static fm_addr net_addr(int i)
{
	return addr4(20, i >> 8, i & 0xff, 1);
}

static int net_index(const struct net *n, const fm_addr *a)
{
	int i;

	if (a->family != FM_AF_INET || a->ip[0] != 20 || a->ip[3] != 1 ||
	    a->port != TEST_PORT)
		return -1;
	i = a->ip[1] * 256 + a->ip[2];
	return (size_t)i < n->count ? i : -1;
}

static int net_send(void *ctx, const fm_addr *to, const uint8_t *buf,
                    size_t len)
{
	struct tnode *t = ctx;
	struct net *n = t->net;
	struct ev e;
	int dst = net_index(n, to);

	assert_true(len <= FM_DATAGRAM_MAX_BYTES);
	n->sent++;
	if (dst < 0)
		return 0;
	if (xorshift(&n->rng) % 1000 < n->loss_per_mille) {
		n->lost++;
		return 0;
	}
	memset(&e, 0, sizeof(e));
	e.p = malloc(sizeof(*e.p));
	assert_non_null(e.p);
	e.p->from = t->addr;
	e.p->len = len;
	memcpy(e.p->data, buf, len);
	e.node = dst;
	e.at = n->now + NET_LAT_MIN_MS +
	       xorshift(&n->rng) % (NET_LAT_MAX_MS - NET_LAT_MIN_MS + 1);
	heap_push(n, e);
	return 0;
}

static void net_random(void *ctx, uint8_t *buf, size_t len)
{
	fill_random(&((struct tnode *)ctx)->net->rng, buf, len);
}

/* Runs the node's timers and arms the next one. */
static void net_tick(struct tnode *t)
{
	struct net *n = t->net;
	uint64_t d = fm__dht_tick(t->dht, n->now);
	struct ev e;

	/* A deadline at now would mean something due was not done. */
	assert_true(d > n->now);
	t->version++;
	if (d == FM_DEADLINE_NONE)
		return;
	memset(&e, 0, sizeof(e));
	e.at = d;
	e.node = t->index;
	e.version = t->version;
	heap_push(n, e);
}

static void net_run(struct net *n, uint64_t until)
{
	while (n->heap_n > 0 && n->heap[0].at <= until) {
		struct ev e = heap_pop(n);
		struct tnode *t = &n->nodes[e.node];
		if (e.at > n->now)
			n->now = e.at;
		if (e.p != NULL) {
			if (!t->dead) {
				fm__dht_recv(t->dht, n->now, &e.p->from,
				             e.p->data, e.p->len);
				net_tick(t);
			}
			free(e.p);
		} else if (!t->dead && e.version == t->version) {
			net_tick(t);
		}
	}
	if (until > n->now)
		n->now = until;
}

static struct net *net_new(size_t count, int providers)
{
	struct net *n = calloc(1, sizeof(*n));
	size_t i;

	assert_non_null(n);
	n->rng = 0xdeadbeefcafef00dULL;
	n->now = TEST_T0;
	n->count = count;
	n->loss_per_mille = NET_LOSS_PER_MILLE;
	n->nodes = calloc(count, sizeof(*n->nodes));
	assert_non_null(n->nodes);
	for (i = 0; i < count; i++) {
		struct tnode *t = &n->nodes[i];
		fm__dht_config cfg;
		fm_io io;
		memset(&cfg, 0, sizeof(cfg));
		memset(&io, 0, sizeof(io));
		t->net = n;
		t->index = (int)i;
		t->addr = net_addr((int)i);
		identity_of(10000 + (uint32_t)i, &t->id);
		make_record(&t->id, &t->addr, 1,
		            (int)i < providers ? NET_SERVICE : NULL, &t->rec);
		cfg.identity = t->id;
		fed_key(TEST_FED_FILL, cfg.federation_key);
		cfg.record = &t->rec;
		io.ctx = t;
		io.send_datagram = net_send;
		io.random_bytes = net_random;
		assert_int_equal(fm__dht_new(&cfg, &io, n->now, &t->dht), 0);
	}
	return n;
}

static void net_free(struct net *n)
{
	size_t i;

	for (i = 0; i < n->count; i++)
		fm__dht_free(n->nodes[i].dht);
	for (i = 0; i < n->heap_n; i++)
		free(n->heap[i].p);
	free(n->heap);
	free(n->nodes);
	free(n);
}

/* Every node but the first joins through the first, a few at a time. */
static void net_join(struct net *n)
{
	fm_addr boot = n->nodes[0].addr;
	size_t i;

	net_tick(&n->nodes[0]);
	for (i = 1; i < n->count; i++) {
		net_run(n, n->now + NET_JOIN_SPREAD_MS);
		assert_int_equal(
		        fm__dht_bootstrap(n->nodes[i].dht, n->now, &boot, 1),
		        0);
		net_tick(&n->nodes[i]);
	}
	net_run(n, n->now + NET_SETTLE_MS);
}

/* The k live nodes closest to target, asker left out. */
static size_t truth(const struct net *n, const uint8_t *target, int asker,
                    uint8_t out[FM_DHT_K][32])
{
	size_t i, cnt = 0, j;

	for (i = 0; i < n->count; i++) {
		const uint8_t *id = n->nodes[i].id.node_id;
		if ((int)i == asker || n->nodes[i].dead)
			continue;
		if (cnt == FM_DHT_K &&
		    fm__dht_distance_cmp(target, id, out[cnt - 1]) >= 0)
			continue;
		j = cnt < FM_DHT_K ? cnt++ : FM_DHT_K - 1;
		while (j > 0 &&
		       fm__dht_distance_cmp(target, id, out[j - 1]) < 0) {
			memcpy(out[j], out[j - 1], 32);
			j--;
		}
		memcpy(out[j], id, 32);
	}
	return cnt;
}

/* Every live node looks up one random target at once; returns how many
 * found exactly the true k closest. */
static size_t net_lookups(struct net *n, size_t *succeeded, double *hops_mean,
                          double *msgs_mean)
{
	struct lk *ls = calloc(n->count, sizeof(*ls));
	uint8_t(*targets)[32] = calloc(n->count, 32);
	uint8_t want[FM_DHT_K][32];
	size_t i, exact = 0, k, live = 0;
	uint64_t hops = 0, msgs = 0;

	assert_non_null(ls);
	assert_non_null(targets);
	*succeeded = 0;
	for (i = 0; i < n->count; i++) {
		if (n->nodes[i].dead)
			continue;
		fill_random(&n->rng, targets[i], 32);
		assert_int_equal(fm__dht_find_node(n->nodes[i].dht, n->now,
		                                   targets[i], lk_done, &ls[i]),
		                 0);
		net_tick(&n->nodes[i]);
	}
	net_run(n, n->now + NET_LOOKUP_WAIT_MS);
	for (i = 0; i < n->count; i++) {
		size_t cnt;
		if (n->nodes[i].dead)
			continue;
		live++;
		assert_int_equal(ls[i].done, 1);
		if (ls[i].status != 0)
			continue;
		(*succeeded)++;
		hops += ls[i].hops;
		msgs += ls[i].messages;
		cnt = truth(n, targets[i], (int)i, want);
		if (ls[i].closest_count != cnt)
			continue;
		for (k = 0; k < cnt; k++)
			if (memcmp(ls[i].closest[k].id, want[k], 32) != 0)
				break;
		exact += k == cnt;
	}
	*hops_mean = *succeeded ? (double)hops / (double)*succeeded : 0;
	*msgs_mean = *succeeded ? (double)msgs / (double)*succeeded : 0;
	free(ls);
	free(targets);
	(void)live;
	return exact;
}

static size_t live_count(const struct net *n)
{
	size_t i, live = 0;

	for (i = 0; i < n->count; i++)
		live += !n->nodes[i].dead;
	return live;
}

#define REFRESH_NET_NODES 160

/* Joining refreshes every bucket farther than the closest neighbour: the
 * last nodes to join, right after their join, hold in each such bucket
 * all the nodes of its range, or k of them (Kademlia's join). */
static void test_join_refresh_fills_table(void **state)
{
	struct net *n = net_new(REFRESH_NET_NODES, 0);
	fm_addr boot = n->nodes[0].addr;
	size_t i, j, want_sum = 0, have_sum = 0;
	uint64_t lookups = 0, messages = 0;

	(void)state;
	net_tick(&n->nodes[0]);
	for (i = 1; i < n->count; i++) {
		net_run(n, n->now + NET_JOIN_SPREAD_MS);
		assert_int_equal(
		        fm__dht_bootstrap(n->nodes[i].dht, n->now, &boot, 1),
		        0);
		net_tick(&n->nodes[i]);
	}
	/* Less than the random walk's interval: only the join's lookups. */
	net_run(n, n->now + 30000);
	for (i = n->count - 10; i < n->count; i++) {
		size_t in_range[FM_DHT_BUCKETS] = {0};
		fm__dht_stats s = stats_of(n->nodes[i].dht);
		int closest = -1, b;
		lookups += s.lookups;
		messages += s.lookup_messages_sum;
		for (j = 0; j < n->count; j++) {
			if (j == i)
				continue;
			b = fm__dht_bucket_index(n->nodes[i].id.node_id,
			                         n->nodes[j].id.node_id);
			in_range[b]++;
			if (b > closest)
				closest = b;
		}
		for (b = 0; b < closest; b++) {
			size_t want =
			        in_range[b] < FM_DHT_K ? in_range[b] : FM_DHT_K;
			want_sum += want;
			have_sum += s.bucket_fill[b];
			assert_true(s.bucket_fill[b] <= want);
		}
	}
	print_message("# join refresh: %zu of %zu possible entries in the "
	              "buckets farther than the closest neighbour; %.1f "
	              "requests per join lookup (%llu lookups)\n",
	              have_sum, want_sum, (double)messages / (double)lookups,
	              (unsigned long long)lookups);
	/* 1 % of the datagrams are lost: allow a few misses. */
	assert_true(have_sum * 100 >= want_sum * 95);
	/* A refresh challenges the contacts of its bucket that answers bring
	 * and ends once alpha answers brought k of them (or its bucket is
	 * full) instead of asking on until the k closest to a random ID have
	 * answered: 16.9 requests per lookup here, 21.1 when refreshes ran
	 * to the end. */
	assert_true(messages * 10 <= lookups * 190);
	net_free(n);
}

static void test_network_small(void **state)
{
	struct net *n = net_new(SMALL_NET_NODES, 0);
	size_t ok, exact, i;
	double hops, msgs;
	fm__dht_stats s;

	(void)state;
	net_join(n);
	for (i = 0; i < n->count; i++) {
		s = stats_of(n->nodes[i].dht);
		/* 40 nodes in distinct /24s: everyone knows nearly everyone */
		assert_true(s.table_size >= 30);
		assert_int_equal(s.dropped[FM__DHT_DROP_BAD_SEAL], 0);
	}
	exact = net_lookups(n, &ok, &hops, &msgs);
	assert_int_equal(ok, n->count);
	assert_int_equal(exact, n->count);
	net_free(n);
}

static void test_network(void **state)
{
	struct net *n = net_new(NET_NODES, NET_PROVIDERS);
	size_t ok, exact, i, live, dead = 0, table = 0;
	double hops, msgs;
	fm__dht_stats s;
	struct lk *ls;

	(void)state;
	net_join(n);
	for (i = 0; i < n->count; i++) {
		s = stats_of(n->nodes[i].dht);
		table += s.table_size;
		assert_true(s.table_live > 0);
	}
	/* Random targets: every lookup finds the true k closest. */
	exact = net_lookups(n, &ok, &hops, &msgs);
	print_message("# %d nodes: mean table %.1f, lookups %zu/%zu ok, %zu "
	              "exact, hops %.2f, messages %.1f, loss %.1f%%\n",
	              NET_NODES, (double)table / NET_NODES, ok, n->count, exact,
	              hops, msgs, 100.0 * (double)n->lost / (double)n->sent);
	assert_int_equal(ok, n->count);
	assert_int_equal(exact, n->count);
	/* "Who offers echo?": every provider, from any node. */
	ls = calloc(n->count, sizeof(*ls));
	assert_non_null(ls);
	for (i = NET_PROVIDERS; i < n->count; i += 7) {
		assert_int_equal(fm__dht_find_service(n->nodes[i].dht, n->now,
		                                      NET_SERVICE, lk_done,
		                                      &ls[i]),
		                 0);
		net_tick(&n->nodes[i]);
	}
	net_run(n, n->now + NET_LOOKUP_WAIT_MS);
	for (i = NET_PROVIDERS; i < n->count; i += 7) {
		size_t k, j;
		assert_int_equal(ls[i].done, 1);
		assert_int_equal(ls[i].status, 0);
		assert_int_equal(ls[i].record_count, NET_PROVIDERS);
		for (k = 0; k < NET_PROVIDERS; k++) {
			for (j = 0; j < ls[i].record_count; j++)
				if (memcmp(ls[i].record_ids[j],
				           n->nodes[k].id.node_id, 32) == 0)
					break;
			assert_true(j < ls[i].record_count);
		}
	}
	/* A node record by node ID. */
	memset(&ls[0], 0, sizeof(ls[0]));
	assert_int_equal(fm__dht_find_record(n->nodes[1].dht, n->now,
	                                     n->nodes[200].id.node_id, lk_done,
	                                     &ls[0]),
	                 0);
	net_tick(&n->nodes[1]);
	net_run(n, n->now + NET_LOOKUP_WAIT_MS);
	assert_int_equal(ls[0].done, 1);
	assert_int_equal(ls[0].status, 0);
	assert_int_equal(ls[0].record_count, 1);
	assert_memory_equal(ls[0].record_ids[0], n->nodes[200].id.node_id, 32);
	free(ls);
	/* 10 % of the nodes die at once; lookups still succeed and find the
	 * k closest of the living. */
	for (i = 0; i < n->count; i++)
		if (xorshift(&n->rng) % 100 < NET_DEAD_PERCENT && i != 0) {
			n->nodes[i].dead = 1;
			dead++;
		}
	live = live_count(n);
	exact = net_lookups(n, &ok, &hops, &msgs);
	print_message("# %zu dead, at once: lookups %zu/%zu ok, %zu exact, "
	              "hops %.2f, messages %.1f\n",
	              dead, ok, live, exact, hops, msgs);
	assert_int_equal(ok, live);
	/* At once, the answerers' k closest still include dead entries, so
	 * the live nodes ranked just beyond k are not handed out: many
	 * lookups are exact, the others miss only those. With the tables
	 * filled at the join (every bucket refreshed), the nodes near a
	 * target hold much the same k closest, dead ones included, so fewer
	 * lookups learn the live nodes ranked just beyond k than with the
	 * thinner tables of random joins (about half here, 9/10 before)... */
	assert_true(exact * 100 >= live * 40);
	/* ...and once liveness checks have found the dead (15 min), all. */
	net_run(n, n->now + FM_DHT_CHECK_AFTER_MS + 5ULL * 60 * 1000);
	exact = net_lookups(n, &ok, &hops, &msgs);
	print_message("# %zu dead, 20 min later: lookups %zu/%zu ok, %zu "
	              "exact, hops %.2f, messages %.1f\n",
	              dead, ok, live, exact, hops, msgs);
	assert_int_equal(ok, live);
	assert_int_equal(exact, live);
	net_free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_xor_and_bucket),
	        cmocka_unit_test(test_codec),
	        cmocka_unit_test(test_codec_fuzz),
	        cmocka_unit_test(test_sealing),
	        cmocka_unit_test(test_insert_evict_replacement),
	        cmocka_unit_test(test_replacement_cache_grows),
	        cmocka_unit_test(test_empty_table_rebootstraps),
	        cmocka_unit_test(test_closest_matches_sort),
	        cmocka_unit_test(test_rebootstrap_below_threshold),
	        cmocka_unit_test(test_sweep_deadline),
	        cmocka_unit_test(test_subnet_caps),
	        cmocka_unit_test(test_rate_limits),
	        cmocka_unit_test(test_rate_sources_lru),
	        cmocka_unit_test(test_challenge_proof),
	        cmocka_unit_test(test_anti_amplification),
	        cmocka_unit_test(test_store_rules),
	        cmocka_unit_test(test_store_limits),
	        cmocka_unit_test(test_value_paging),
	        cmocka_unit_test(test_set_federation),
	        cmocka_unit_test(test_lookup_all_dead),
	        cmocka_unit_test(test_lookup_termination),
	        cmocka_unit_test(test_lookup_subnet_cap),
	        cmocka_unit_test(test_persist_restore),
	        cmocka_unit_test(test_join_refresh_fills_table),
	        cmocka_unit_test(test_network_small),
	        cmocka_unit_test(test_network),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
