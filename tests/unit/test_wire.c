/* Tests of the core's codecs: the msgpack structural check, session
 * messages, the handshake payload, signed node records and invites. These
 * parse bytes from untrusted peers and text from users, so besides round
 * trips the tests feed them truncations, allocation bombs, every bit flip of
 * a signed record, non-canonical encodings, typos at every position, and a
 * deterministic fuzz loop (fixed-seed xorshift) that is meant to run under
 * ASan and UBSan. proto/record-vectors.txt and proto/invite-vectors.txt are
 * checked byte for byte, since a second implementation will test against
 * them. */
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

#include <msgpack.h>
#include <sodium.h>

#include "core/wire.h"
#include "fedmesh/fedmesh.h"

#define TEST_BUF_MAX 2048
#define TEST_LINE_MAX 4096
#define TEST_PATH_MAX 1024
#define TEST_INVITE_MAX (FM_INVITE_TEXT_MAX + 64)
#define FUZZ_RANDOM_CASES 200000
#define FUZZ_MUTATION_CASES 200000
#define FUZZ_SEED 0x5eed5eedf00dULL
#define FUZZ_RANDOM_LEN_MAX 96
#define FUZZ_LONG_LEN_MAX 1100
#define RECORD_CONTEXT "fedmesh-record-v1"
#define INVITE_CONTEXT "fedmesh-invite-v1"
/* The longest text fm_addr_format produces: 47 characters. */
#define LONG_V6 "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
	/* xorshift64*: fixed seed, so a failure replays exactly. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static size_t rng_below(size_t n)
{
	return n == 0 ? 0 : (size_t)(rng_next() % n);
}

static void identity_from_fill(fm_identity *id, uint8_t fill)
{
	uint8_t seed[FM_SEED_BYTES];

	memset(seed, fill, sizeof(seed));
	assert_int_equal(fm_identity_from_seed(seed, id), 0);
}

static fm_addr addr_of(const char *text)
{
	fm_addr a;

	assert_int_equal(fm_addr_parse(text, &a), 0);
	return a;
}

static void service_set(fm_service *s, const char *name, uint32_t slots)
{
	memset(s, 0, sizeof(*s));
	assert_true(strlen(name) <= FM_SERVICE_NAME_MAX);
	memcpy(s->name, name, strlen(name));
	s->slots = slots;
}

/* The record of the golden vector: seq 1, two addresses, two services. */
static void record_sample(fm_record *r)
{
	memset(r, 0, sizeof(*r));
	r->seq = 1;
	r->addrs[0] = addr_of("127.0.0.1:7420");
	r->addrs[1] = addr_of("[::1]:7420");
	r->addr_count = 2;
	service_set(&r->services[0], "echo", 4);
	service_set(&r->services[1], "sha256", 2);
	r->service_count = 2;
	r->capacity = 8;
}

/* Signs and encodes the sample record of identity 0x00..00. */
static size_t record_sample_bytes(uint8_t *out, size_t cap, fm_identity *id,
                                  fm_record *rec)
{
	size_t len = 0;

	identity_from_fill(id, 0);
	record_sample(rec);
	assert_int_equal(fm_record_sign(rec, id), 0);
	assert_int_equal(fm_record_encode(rec, out, cap, &len), 0);
	return len;
}

static void record_assert_equal(const fm_record *a, const fm_record *b)
{
	size_t i;

	assert_memory_equal(a->public_key, b->public_key, FM_PUBLIC_KEY_BYTES);
	assert_memory_equal(a->node_id, b->node_id, FM_NODE_ID_BYTES);
	assert_true(a->seq == b->seq);
	assert_int_equal(a->addr_count, b->addr_count);
	for (i = 0; i < a->addr_count; i++) {
		assert_int_equal(a->addrs[i].family, b->addrs[i].family);
		assert_memory_equal(a->addrs[i].ip, b->addrs[i].ip, 16);
		assert_int_equal(a->addrs[i].port, b->addrs[i].port);
	}
	assert_int_equal(a->service_count, b->service_count);
	for (i = 0; i < a->service_count; i++) {
		assert_string_equal(a->services[i].name, b->services[i].name);
		assert_int_equal(a->services[i].slots, b->services[i].slots);
	}
	assert_int_equal(a->capacity, b->capacity);
	assert_memory_equal(a->signature, b->signature, FM_SIGNATURE_BYTES);
}

/* A record with fields outside what fm_record_encode accepts, packed with
 * msgpack-c directly and properly signed, to test that decode's checks do
 * not depend on the signature failing. */
typedef struct raw_record {
	uint64_t version;
	size_t pk_len;
	uint64_t seq;
	const char *addrs[FM_RECORD_ADDRS_MAX + 4];
	size_t addr_count;
	const char *names[FM_RECORD_SERVICES_MAX + 4];
	size_t name_lens[FM_RECORD_SERVICES_MAX + 4]; /* 0: strlen */
	uint64_t slots[FM_RECORD_SERVICES_MAX + 4];
	size_t service_count;
	uint64_t capacity;
} raw_record;

static void raw_record_sample(raw_record *rr)
{
	memset(rr, 0, sizeof(*rr));
	rr->version = 1;
	rr->pk_len = FM_PUBLIC_KEY_BYTES;
	rr->seq = 1;
	rr->addrs[0] = "127.0.0.1:7420";
	rr->addrs[1] = "[::1]:7420";
	rr->addr_count = 2;
	rr->names[0] = "echo";
	rr->slots[0] = 4;
	rr->names[1] = "sha256";
	rr->slots[1] = 2;
	rr->service_count = 2;
	rr->capacity = 8;
}

static size_t raw_record_build(const raw_record *rr, const fm_identity *id,
                               uint8_t *out, size_t cap)
{
	uint8_t sig[FM_SIGNATURE_BYTES];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t i, ctx_len = strlen(RECORD_CONTEXT), len;
	unsigned char *msg;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_str_body(&pk, RECORD_CONTEXT, ctx_len);
	msgpack_pack_array(&pk, 6);
	msgpack_pack_uint64(&pk, rr->version);
	msgpack_pack_bin_with_body(&pk, id->public_key, rr->pk_len);
	msgpack_pack_uint64(&pk, rr->seq);
	msgpack_pack_array(&pk, rr->addr_count);
	for (i = 0; i < rr->addr_count; i++)
		msgpack_pack_str_with_body(&pk, rr->addrs[i],
		                           strlen(rr->addrs[i]));
	msgpack_pack_array(&pk, rr->service_count);
	for (i = 0; i < rr->service_count; i++) {
		size_t n = rr->name_lens[i] ? rr->name_lens[i]
		                            : strlen(rr->names[i]);
		msgpack_pack_array(&pk, 2);
		msgpack_pack_str_with_body(&pk, rr->names[i], n);
		msgpack_pack_uint64(&pk, rr->slots[i]);
	}
	msgpack_pack_uint64(&pk, rr->capacity);
	msg = (unsigned char *)sb.data;
	assert_int_equal(
	        crypto_sign_detached(sig, NULL, msg, sb.size, id->secret_key),
	        0);
	/* Signed record: the 7-element header, the same fields, the
	 * signature. A fixarray header is one byte in both cases. */
	len = sb.size - ctx_len + 2 + FM_SIGNATURE_BYTES;
	assert_true(len <= cap);
	out[0] = 0x97;
	memcpy(out + 1, msg + ctx_len + 1, sb.size - ctx_len - 1);
	out[sb.size - ctx_len] = 0xc4;
	out[sb.size - ctx_len + 1] = FM_SIGNATURE_BYTES;
	memcpy(out + sb.size - ctx_len + 2, sig, sizeof(sig));
	msgpack_sbuffer_destroy(&sb);
	return len;
}

/* Re-signs an encoding whose first hdr_len bytes are the array header and
 * whose last 66 bytes are c4 40 <signature>, as a signer with a
 * non-canonical encoder would. */
static void resign(uint8_t *buf, size_t len, size_t hdr_len,
                   const fm_identity *id)
{
	uint8_t msg[TEST_BUF_MAX];
	size_t ctx_len = strlen(RECORD_CONTEXT);
	size_t body = len - hdr_len - 2 - FM_SIGNATURE_BYTES;

	assert_true(ctx_len + 1 + body <= sizeof(msg));
	assert_int_equal(buf[len - 66], 0xc4);
	memcpy(msg, RECORD_CONTEXT, ctx_len);
	msg[ctx_len] = 0x96;
	memcpy(msg + ctx_len + 1, buf + hdr_len, body);
	assert_int_equal(crypto_sign_detached(buf + len - FM_SIGNATURE_BYTES,
	                                      NULL, msg, ctx_len + 1 + body,
	                                      id->secret_key),
	                 0);
}

/* out = in with in[off, off + del) replaced by ins. */
static size_t splice(const uint8_t *in, size_t len, size_t off, size_t del,
                     const void *ins, size_t ins_len, uint8_t *out)
{
	assert_true(off + del <= len);
	assert_true(len - del + ins_len <= TEST_BUF_MAX);
	memcpy(out, in, off);
	memcpy(out + off, ins, ins_len);
	memcpy(out + off + ins_len, in + off + del, len - off - del);
	return len - del + ins_len;
}

static size_t find(const uint8_t *buf, size_t len, const void *what,
                   size_t what_len)
{
	const uint8_t *p = memmem(buf, len, what, what_len);

	assert_non_null(p);
	return (size_t)(p - buf);
}

/* An independent RFC 4648 base32 encoder (lowercase, no padding), one bit
 * at a time, to build invites the library would refuse to produce. */
static void test_base32(const uint8_t *in, size_t len, char *out)
{
	size_t bits = len * 8, i, o = 0;

	for (i = 0; i < bits; i += 5) {
		unsigned v = 0, j;
		for (j = 0; j < 5; j++) {
			size_t b = i + j;
			unsigned bit = 0;
			if (b < bits)
				bit = (in[b / 8] >> (7 - b % 8)) & 1u;
			v = (v << 1) | bit;
		}
		out[o++] = "abcdefghijklmnopqrstuvwxyz234567"[v];
	}
	out[o] = '\0';
}

/* "fedmesh1" + base32(body || checksum) for an arbitrary body. */
static void invite_from_body(const uint8_t *body, size_t len, char *out)
{
	uint8_t raw[TEST_BUF_MAX];
	uint8_t hash[32];
	crypto_generichash_state st;

	assert_true(len + 4 <= sizeof(raw));
	crypto_generichash_init(&st, NULL, 0, sizeof(hash));
	crypto_generichash_update(&st, (const uint8_t *)INVITE_CONTEXT,
	                          strlen(INVITE_CONTEXT));
	crypto_generichash_update(&st, body, len);
	crypto_generichash_final(&st, hash, sizeof(hash));
	memcpy(raw, body, len);
	memcpy(raw + len, hash, 4);
	memcpy(out, "fedmesh1", 8);
	test_base32(raw, len + 4, out + 8);
}

/* An invite body packed with msgpack-c: [version, key, addrs...]. */
static size_t invite_body(uint8_t *out, uint64_t version, size_t elements,
                          size_t key_len, const char *const *addrs,
                          size_t addr_count)
{
	static const uint8_t key[64] = {7};
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t i, len;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, elements);
	msgpack_pack_uint64(&pk, version);
	msgpack_pack_bin_with_body(&pk, key, key_len);
	msgpack_pack_array(&pk, addr_count);
	for (i = 0; i < addr_count; i++)
		msgpack_pack_str_with_body(&pk, addrs[i], strlen(addrs[i]));
	for (i = 3; i < elements; i++)
		msgpack_pack_nil(&pk);
	len = sb.size;
	assert_true(len <= TEST_BUF_MAX);
	memcpy(out, sb.data, len);
	msgpack_sbuffer_destroy(&sb);
	return len;
}

static const char *test_srcdir(void)
{
	const char *s = getenv("top_srcdir");

	return s != NULL && s[0] != '\0' ? s : ".";
}

static FILE *open_vectors(const char *name)
{
	char path[TEST_PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/proto/%s", test_srcdir(), name);
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	return f;
}

/* Next vector line (comments and blank lines skipped), newline removed. */
static int next_line(FILE *f, char *line, size_t cap)
{
	while (fgets(line, (int)cap, f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] != '\0' && line[0] != '#')
			return 1;
	}
	return 0;
}

/* ---- the structural check -------------------------------------------- */

/* One array holding every msgpack format once. */
static const uint8_t every_format[] = {
        0xdc, 0x00, 42, /* array 16 of 42 elements */
        0x00, 0x7f, 0xe0, 0xff, 0xc0, 0xc2, 0xc3, 0xcc, 0xff, 0xcd, 0xff, 0xff,
        0xce, 1,    2,    3,    4,    0xcf, 1,    2,    3,    4,    5,    6,
        7,    8,    0xd0, 0x80, 0xd1, 0x80, 0x00, 0xd2, 0x80, 0,    0,    0,
        0xd3, 0x80, 0,    0,    0,    0,    0,    0,    0,    0xca, 0x3f, 0x80,
        0,    0,    0xcb, 0x3f, 0xf0, 0,    0,    0,    0,    0,    0,    0xa0,
        0xa3, 'a',  'b',  'c',  0xd9, 2,    'h',  'i',  0xda, 0,    1,    'x',
        0xdb, 0,    0,    0,    1,    'y',  0xc4, 0,    0xc5, 0,    1,    'z',
        0xc6, 0,    0,    0,    0,    0x80, 0x81, 1,    2,    0xde, 0,    1,
        0xa1, 'k',  0x90, 0xdf, 0,    0,    0,    0,    0xdc, 0,    1,    1,
        0xdd, 0,    0,    0,    0,    0xd4, 1,    0xaa, 0xd5, 1,    0xaa, 0xbb,
        0xd6, 1,    1,    2,    3,    4,    0xd7, 1,    1,    2,    3,    4,
        5,    6,    7,    8,    0xd8, 1,    1,    2,    3,    4,    5,    6,
        7,    8,    9,    10,   11,   12,   13,   14,   15,   16,   0xc7, 3,
        5,    1,    2,    3,    0xc8, 0,    1,    5,    1,    0xc9, 0,    0,
        0,    0,    5,    0x9f, 1,    2,    3,    4,    5,    6,    7,    8,
        9,    10,   11,   12,   13,   14,   15,   0x8f, 0,    0,    1,    1,
        2,    2,    3,    3,    4,    4,    5,    5,    6,    6,    7,    7,
        8,    8,    9,    9,    10,   10,   11,   11,   12,   12,   13,   13,
        14,   14,   0xbf, 'a',  'a',  'a',  'a',  'a',  'a',  'a',  'a',  'a',
        'a',  'a',  'a',  'a',  'a',  'a',  'a',  'a',  'a',  'a',  'a',  'a',
        'a',  'a',  'a',  'a',  'a',  'a',  'a',  'a',  'a',  'a',
};

/* msgpack-c must agree that bytes our check accepts are one object. */
static void assert_msgpack_c_accepts(const uint8_t *buf, size_t len)
{
	msgpack_unpacked u;
	size_t off = 0;
	msgpack_unpack_return ret;

	msgpack_unpacked_init(&u);
	ret = msgpack_unpack_next(&u, (const char *)buf, len, &off);
	msgpack_unpacked_destroy(&u);
	assert_int_equal(ret, MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(off, len);
}

static void test_check_accepts_every_format(void **state)
{
	size_t i;

	(void)state;
	/* Depth 3: the array holds {"k": []}. 253 bytes, 93 objects. */
	assert_int_equal(
	        fm__msgpack_check(every_format, sizeof(every_format), 3, 93),
	        0);
	assert_msgpack_c_accepts(every_format, sizeof(every_format));
	/* Every proper prefix is incomplete. */
	for (i = 0; i < sizeof(every_format); i++)
		assert_int_equal(fm__msgpack_check(every_format, i, 3, 1000),
		                 -EBADMSG);
	/* One nested level too few, one item too few. */
	assert_int_equal(
	        fm__msgpack_check(every_format, sizeof(every_format), 2, 1000),
	        -EBADMSG);
	assert_int_equal(
	        fm__msgpack_check(every_format, sizeof(every_format), 3, 92),
	        -EBADMSG);
	/* Scalars at the top level. */
	assert_int_equal(fm__msgpack_check((const uint8_t *)"\x2a", 1, 0, 1),
	                 0);
	assert_int_equal(fm__msgpack_check((const uint8_t *)"\xc0", 1, 0, 1),
	                 0);
	assert_int_equal(fm__msgpack_check((const uint8_t *)"\x90", 1, 0, 1),
	                 -EBADMSG);
	assert_int_equal(fm__msgpack_check((const uint8_t *)"\x90", 1, 1, 1),
	                 0);
}

static void test_check_rejects_bombs(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
	        {"", 0},
	        {"\xdd\xff\xff\xff\xff", 5},     /* array 32, 4G elements */
	        {"\xdf\xff\xff\xff\xff", 5},     /* map 32 */
	        {"\xdb\xff\xff\xff\xff", 5},     /* str 32 */
	        {"\xc6\xff\xff\xff\xff", 5},     /* bin 32 */
	        {"\xc9\xff\xff\xff\xff\x01", 6}, /* ext 32 */
	        {"\xdc\xff\xff", 3},             /* array 16 */
	        {"\xde\xff\xff", 3},             /* map 16 */
	        {"\x91\xdd\xff\xff\xff\xff", 6}, /* nested */
	        {"\xdd\x00\x00\x00\x05\x01\x01\x01\x01", 9},
	        {"\xde\x00\x02\x01\x01\x01", 6}, /* map needs 4 elements */
	        {"\x92\x92\x01\x01", 4},         /* owed 3 elements, 2 bytes */
	        {"\xd9\x05\x61\x61", 4},         /* str 8 past the end */
	        {"\xc4\x01", 2},                 /* bin 8 past the end */
	        {"\xcf\x01\x02", 3},             /* uint 64 truncated */
	        {"\xd8\x01\x02", 3},             /* fixext 16 truncated */
	        {"\xc7\x01\x05", 3},             /* ext 8 missing data */
	        {"\xc1", 1},                     /* never used */
	        {"\x91\xc1", 2},
	        {"\x01\x01", 2}, /* trailing bytes */
	        {"\x90\x00", 2},
	        {"\x92\x01\x02\x03", 4},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const uint8_t *b = (const uint8_t *)bad[i].bytes;
		fm__msg m;
		fm__hello h;
		fm_record r;
		if (fm__msgpack_check(b, bad[i].len, 8, 1u << 20) != -EBADMSG)
			fail_msg("case %zu accepted", i);
		assert_int_equal(fm__msg_decode(b, bad[i].len, &m), -EBADMSG);
		assert_int_equal(fm__hello_decode(b, bad[i].len, &h), -EBADMSG);
		assert_int_equal(fm_record_decode(b, bad[i].len, &r), -EBADMSG);
	}
	assert_int_equal(fm__msgpack_check(NULL, 0, 1, 1), -EBADMSG);
	assert_int_equal(fm__msgpack_check(NULL, 1, 1, 1), -EINVAL);
	assert_int_equal(fm__msgpack_check((const uint8_t *)"\x01", 1,
	                                   FM__MSGPACK_DEPTH_MAX + 1, 1),
	                 -EINVAL);
}

static void test_check_depth_and_items(void **state)
{
	static uint8_t deep[100000];
	uint8_t buf[FM__MSGPACK_DEPTH_MAX + 1];
	unsigned d;
	size_t n;

	(void)state;
	for (d = 1; d <= FM__MSGPACK_DEPTH_MAX; d++) {
		memset(buf, 0x91, d);
		buf[d] = 0x01;
		assert_int_equal(fm__msgpack_check(buf, d + 1, d, 1000), 0);
		assert_int_equal(fm__msgpack_check(buf, d + 1, d - 1, 1000),
		                 -EBADMSG);
	}
	/* Maps count as depth too. */
	assert_int_equal(
	        fm__msgpack_check((const uint8_t *)"\x81\x01\x81\x01\x02", 5, 2,
	                          100),
	        0);
	assert_int_equal(
	        fm__msgpack_check((const uint8_t *)"\x81\x01\x81\x01\x02", 5, 1,
	                          100),
	        -EBADMSG);
	/* A deep nesting bomb fails fast, without recursion. */
	memset(deep, 0x91, sizeof(deep));
	assert_int_equal(fm__msgpack_check(deep, sizeof(deep),
	                                   FM__MSGPACK_DEPTH_MAX, SIZE_MAX),
	                 -EBADMSG);
	/* Items: an array of n fixints is n + 1 objects. */
	for (n = 0; n < 15; n++) {
		memset(buf, 0x01, sizeof(buf));
		buf[0] = (uint8_t)(0x90 | n);
		assert_int_equal(fm__msgpack_check(buf, n + 1, 1, n + 1), 0);
		assert_int_equal(fm__msgpack_check(buf, n + 1, 1, n), -EBADMSG);
	}
	/* A map's keys and values both count. */
	assert_int_equal(
	        fm__msgpack_check((const uint8_t *)"\x81\x01\x02", 3, 1, 3), 0);
	assert_int_equal(
	        fm__msgpack_check((const uint8_t *)"\x81\x01\x02", 3, 1, 2),
	        -EBADMSG);
}

/* ---- session messages ---------------------------------------------------- */

static void msg_round_trip(const fm__msg *m)
{
	uint8_t buf[TEST_BUF_MAX], again[TEST_BUF_MAX];
	size_t len, len2;
	fm__msg d;

	assert_int_equal(fm__msg_encode(m, buf, sizeof(buf), &len), 0);
	assert_int_equal(fm__msg_decode(buf, len, &d), 0);
	assert_int_equal(d.type, m->type);
	switch (m->type) {
	case FM__MSG_PING:
	case FM__MSG_PONG:
		assert_true(d.seq == m->seq);
		assert_true(d.time_ms == m->time_ms);
		break;
	case FM__MSG_RECORD:
		assert_int_equal(d.record_len, m->record_len);
		if (m->record_len > 0)
			assert_memory_equal(d.record, m->record, m->record_len);
		/* Zero copy: the record points into the message. */
		assert_true(d.record >= buf &&
		            d.record + d.record_len <= buf + len);
		break;
	case FM__MSG_CLOSE:
		assert_string_equal(d.reason, m->reason);
		break;
	default:
		break;
	}
	assert_int_equal(fm__msg_encode(&d, again, sizeof(again), &len2), 0);
	assert_int_equal(len2, len);
	assert_memory_equal(again, buf, len);
	/* Every proper prefix is refused, by the check and by the decoder. */
	for (len2 = 0; len2 < len; len2++) {
		assert_int_equal(fm__msgpack_check(buf, len2, 8, 1024),
		                 -EBADMSG);
		assert_int_equal(fm__msg_decode(buf, len2, &d), -EBADMSG);
	}
}

static void test_msg_round_trip(void **state)
{
	static uint8_t big[FM_RECORD_MAX_BYTES];
	uint8_t rec_bytes[FM_RECORD_MAX_BYTES];
	fm_identity id;
	fm_record rec;
	fm__msg m;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_PING;
	msg_round_trip(&m);
	m.seq = UINT64_MAX;
	m.time_ms = (uint64_t)1 << 40;
	msg_round_trip(&m);
	m.type = FM__MSG_PONG;
	m.seq = 300;
	m.time_ms = 70000;
	msg_round_trip(&m);

	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_RECORD;
	m.record_len =
	        record_sample_bytes(rec_bytes, sizeof(rec_bytes), &id, &rec);
	m.record = rec_bytes;
	msg_round_trip(&m);
	m.record_len = 0;
	m.record = NULL;
	msg_round_trip(&m);
	memset(big, 0xab, sizeof(big));
	m.record = big;
	m.record_len = sizeof(big);
	msg_round_trip(&m);

	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_REKEY;
	msg_round_trip(&m);

	m.type = FM__MSG_CLOSE;
	msg_round_trip(&m);
	strcpy(m.reason, "bye");
	msg_round_trip(&m);
	memset(m.reason, 'x', FM__WIRE_REASON_MAX);
	m.reason[FM__WIRE_REASON_MAX] = '\0';
	msg_round_trip(&m);
}

static void assert_encodes_to(const fm__msg *m, const char *hex)
{
	uint8_t buf[64];
	char text[2 * sizeof(buf) + 1];
	size_t len;

	assert_int_equal(fm__msg_encode(m, buf, sizeof(buf), &len), 0);
	fm_hex_encode(buf, len, text);
	assert_string_equal(text, hex);
}

static void test_msg_known_bytes(void **state)
{
	static const uint8_t rec[2] = {0xaa, 0xbb};
	fm__msg m;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_PING;
	m.seq = 1;
	m.time_ms = 2;
	assert_encodes_to(&m, "93010102");
	m.type = FM__MSG_PONG;
	m.seq = 128;
	m.time_ms = 65536;
	assert_encodes_to(&m, "9302cc80ce00010000");
	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_RECORD;
	m.record = rec;
	m.record_len = sizeof(rec);
	assert_encodes_to(&m, "9203c402aabb");
	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_REKEY;
	assert_encodes_to(&m, "9104");
	m.type = FM__MSG_CLOSE;
	strcpy(m.reason, "bye");
	assert_encodes_to(&m, "9205a3627965");
}

static void test_msg_rejects(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
	        {"\x01", 1}, /* not an array */
	        {"\xa3"
	         "abc",
	         4},                         /* a string */
	        {"\x81\x01\x02", 3},         /* a map */
	        {"\x90", 1},                 /* no type */
	        {"\x92\xa1\x61\x01", 4},     /* type is a string */
	        {"\x91\xff", 2},             /* type is negative */
	        {"\x91\xc0", 2},             /* type is nil */
	        {"\x94\x01\x01\x02\x03", 5}, /* PING, extra element */
	        {"\x92\x01\x01", 3},         /* PING, missing one */
	        {"\x92\x04\xc0", 3},         /* REKEY, extra element */
	        {"\x93\x01\xa1\x31\x02", 5}, /* seq is a string */
	        {"\x93\x01\xd0\xff\x02", 5}, /* seq is negative */
	        {"\x93\x01\xcb\x3f\xf0\0\0\0\0\0\0\x02", 12}, /* a float */
	        {"\x93\x01\x01\x02\x00", 5},     /* trailing byte */
	        {"\x92\x03\xa1\x61", 4},         /* record is a string */
	        {"\x92\x03\xc0", 3},             /* record is nil */
	        {"\x92\x05\xc4\x01\x61", 5},     /* reason is bin */
	        {"\x92\x05\xa3\x61\x00\x62", 6}, /* NUL in reason */
	        {"\x91\x05", 2},                 /* CLOSE without reason */
	};
	uint8_t buf[FM__WIRE_MSG_MAX_BYTES + 1];
	size_t i;
	fm__msg m;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (fm__msg_decode((const uint8_t *)bad[i].bytes, bad[i].len,
		                   &m) != -EBADMSG)
			fail_msg("case %zu not rejected", i);
	/* A non-negative number in a signed format is still a number. */
	assert_int_equal(
	        fm__msg_decode((const uint8_t *)"\x93\x01\xd0\x05\x02", 5, &m),
	        0);
	assert_true(m.seq == 5 && m.time_ms == 2);
	/* Record over FM_RECORD_MAX_BYTES: bin 16 of 1025 bytes. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, "\x92\x03\xc5\x04\x01", 5);
	assert_int_equal(fm__msg_decode(buf, 5 + FM_RECORD_MAX_BYTES + 1, &m),
	                 -EBADMSG);
	assert_int_equal(fm__msg_decode(buf, 5 + FM_RECORD_MAX_BYTES, &m),
	                 -EBADMSG); /* one byte short */
	/* Reason of 65 bytes. */
	memcpy(buf, "\x92\x05\xd9\x41", 4);
	memset(buf + 4, 'r', 65);
	assert_int_equal(fm__msg_decode(buf, 4 + 65, &m), -EBADMSG);
	buf[3] = 0x40;
	assert_int_equal(fm__msg_decode(buf, 4 + 64, &m), 0);
	assert_int_equal(strlen(m.reason), 64);
	/* Longer than any session message may be, though well-formed. */
	memcpy(buf, "\x92\x03\xc5\xff\xeb", 5);
	assert_int_equal(5 + 0xffeb, sizeof(buf));
	assert_int_equal(fm__msg_decode(buf, sizeof(buf), &m), -EBADMSG);
	assert_int_equal(fm__msg_decode(NULL, 0, &m), -EBADMSG);
	assert_int_equal(fm__msg_decode(buf, 4, NULL), -EINVAL);
}

static void test_msg_unknown_type(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		int rc;
	} cases[] = {
	        {"\x91\x63", 2, -ENOTSUP},                 /* [99] */
	        {"\x93\xcd\x01\x2c\x01\x02", 6, -ENOTSUP}, /* type 300 */
	        {"\x92\x00\xc0", 3, -ENOTSUP},             /* type 0 */
	        {"\x93\x40\x91\x91\x01\x81\x01\x02", 8, -ENOTSUP},
	        {"\x93\x40\x91\x91\x01\x81\x01", 7, -EBADMSG}, /* truncated */
	        {"\x91\x63\x00", 3, -EBADMSG},                 /* trailing */
	        {"\x91\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 10, -ENOTSUP},
	};
	size_t i;
	fm__msg m;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (fm__msg_decode((const uint8_t *)cases[i].bytes,
		                   cases[i].len, &m) != cases[i].rc)
			fail_msg("case %zu", i);
}

static void test_msg_encode_errors(void **state)
{
	uint8_t buf[TEST_BUF_MAX];
	size_t len, need, cap;
	fm__msg m;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.type = 0;
	assert_int_equal(fm__msg_encode(&m, buf, sizeof(buf), &len), -EINVAL);
	m.type = 99;
	assert_int_equal(fm__msg_encode(&m, buf, sizeof(buf), &len), -EINVAL);
	m.type = FM__MSG_RECORD;
	m.record = buf;
	m.record_len = FM_RECORD_MAX_BYTES + 1;
	assert_int_equal(fm__msg_encode(&m, buf, sizeof(buf), &len), -EINVAL);
	m.record = NULL;
	m.record_len = 5;
	assert_int_equal(fm__msg_encode(&m, buf, sizeof(buf), &len), -EINVAL);
	m.type = FM__MSG_CLOSE;
	memset(m.reason, 'x', sizeof(m.reason)); /* no NUL */
	assert_int_equal(fm__msg_encode(&m, buf, sizeof(buf), &len), -EINVAL);
	assert_int_equal(fm__msg_encode(NULL, buf, sizeof(buf), &len), -EINVAL);
	assert_int_equal(fm__msg_encode(&m, NULL, sizeof(buf), &len), -EINVAL);
	/* Too small a buffer: -ENOSPC at every size below the need. */
	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_PING;
	m.seq = UINT64_MAX;
	m.time_ms = UINT64_MAX;
	assert_int_equal(fm__msg_encode(&m, buf, sizeof(buf), &need), 0);
	assert_int_equal(need, 1 + 1 + 9 + 9);
	for (cap = 0; cap < need; cap++)
		assert_int_equal(fm__msg_encode(&m, buf, cap, &len), -ENOSPC);
	assert_int_equal(fm__msg_encode(&m, buf, need, &len), 0);
	assert_int_equal(len, need);
}

/* ---- handshake payload --------------------------------------------------- */

static void test_hello_round_trip(void **state)
{
	uint8_t rec_bytes[FM_RECORD_MAX_BYTES];
	uint8_t buf[FM__HELLO_MAX_BYTES], again[FM__HELLO_MAX_BYTES];
	static uint8_t big[FM_RECORD_MAX_BYTES];
	size_t len, len2, i, cut;
	fm_identity id;
	fm_record rec, back;
	fm__hello h, d;

	(void)state;
	memset(&h, 0, sizeof(h));
	h.record_len =
	        record_sample_bytes(rec_bytes, sizeof(rec_bytes), &id, &rec);
	h.record = rec_bytes;
	memcpy(h.public_key, id.public_key, sizeof(h.public_key));
	for (i = 0; i < sizeof(h.signature); i++)
		h.signature[i] = (uint8_t)i;
	assert_int_equal(fm__hello_encode(&h, buf, sizeof(buf), &len), 0);
	assert_int_equal(buf[0], 0x94);
	assert_int_equal(buf[1], FM__HELLO_VERSION);
	assert_int_equal(fm__hello_decode(buf, len, &d), 0);
	assert_memory_equal(d.public_key, h.public_key, sizeof(h.public_key));
	assert_memory_equal(d.signature, h.signature, sizeof(h.signature));
	assert_int_equal(d.record_len, h.record_len);
	assert_memory_equal(d.record, rec_bytes, h.record_len);
	assert_int_equal(fm_record_decode(d.record, d.record_len, &back), 0);
	record_assert_equal(&back, &rec);
	assert_int_equal(fm__hello_encode(&d, again, sizeof(again), &len2), 0);
	assert_int_equal(len2, len);
	assert_memory_equal(again, buf, len);
	for (cut = 0; cut < len; cut++) {
		assert_int_equal(fm__hello_decode(buf, cut, &d), -EBADMSG);
		assert_int_equal(fm__msgpack_check(buf, cut, 8, 1024),
		                 -EBADMSG);
	}
	for (cut = 0; cut < len; cut++)
		assert_int_equal(fm__hello_encode(&h, buf, cut, &len2),
		                 -ENOSPC);
	/* The largest hello fits FM__HELLO_MAX_BYTES exactly. */
	memset(big, 1, sizeof(big));
	h.record = big;
	h.record_len = sizeof(big);
	assert_int_equal(fm__hello_encode(&h, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, FM__HELLO_MAX_BYTES);
	assert_int_equal(fm__hello_decode(buf, len, &d), 0);
	h.record_len = FM_RECORD_MAX_BYTES + 1;
	assert_int_equal(fm__hello_encode(&h, buf, sizeof(buf), &len), -EINVAL);
	h.record = NULL;
	h.record_len = 0;
	assert_int_equal(fm__hello_encode(&h, buf, sizeof(buf), &len), 0);
	assert_int_equal(fm__hello_decode(buf, len, &d), 0);
	assert_int_equal(d.record_len, 0);
}

static void test_hello_rejects(void **state)
{
	uint8_t buf[TEST_BUF_MAX], bad[TEST_BUF_MAX];
	size_t len, n;
	fm__hello h, d;

	(void)state;
	memset(&h, 0x11, sizeof(h));
	h.record = (const uint8_t *)"rec";
	h.record_len = 3;
	assert_int_equal(fm__hello_encode(&h, buf, sizeof(buf), &len), 0);
	/* 94 01 c4 20 <32> c4 40 <64> c4 03 "rec" */
	assert_int_equal(len, 2 + 34 + 66 + 5);
	/* Unknown version, any shape: -ENOTSUP. */
	memcpy(bad, buf, len);
	bad[1] = 2;
	assert_int_equal(fm__hello_decode(bad, len, &d), -ENOTSUP);
	assert_int_equal(fm__hello_decode((const uint8_t *)"\x91\x02", 2, &d),
	                 -ENOTSUP);
	assert_int_equal(fm__hello_decode((const uint8_t *)"\x90", 1, &d),
	                 -EBADMSG);
	assert_int_equal(
	        fm__hello_decode((const uint8_t *)"\x91\xa1\x31", 3, &d),
	        -EBADMSG);
	/* Key of 31 bytes. */
	n = splice(buf, len, 3, 2, "\x1f", 1, bad);
	assert_int_equal(fm__hello_decode(bad, n, &d), -EBADMSG);
	/* Signature of 63 bytes. */
	n = splice(buf, len, 2 + 34 + 1, 2, "\x3f", 1, bad);
	assert_int_equal(fm__hello_decode(bad, n, &d), -EBADMSG);
	/* Three elements; five elements. */
	n = splice(buf, len, 0, 1, "\x93", 1, bad);
	assert_int_equal(fm__hello_decode(bad, n - 5, &d), -EBADMSG);
	n = splice(buf, len, 0, 1, "\x95", 1, bad);
	bad[n++] = 0xc0;
	assert_int_equal(fm__hello_decode(bad, n, &d), -EBADMSG);
	/* Trailing byte. */
	memcpy(bad, buf, len);
	bad[len] = 0;
	assert_int_equal(fm__hello_decode(bad, len + 1, &d), -EBADMSG);
	/* Record as a string. */
	memcpy(bad, buf, len);
	bad[len - 5] = 0xa3;
	n = splice(bad, len, len - 4, 1, "", 0, bad + TEST_BUF_MAX / 2);
	assert_int_equal(fm__hello_decode(bad + TEST_BUF_MAX / 2, n, &d),
	                 -EBADMSG);
	/* Record over FM_RECORD_MAX_BYTES. */
	memcpy(bad, buf, len - 5);
	memcpy(bad + len - 5, "\xc5\x04\x01", 3);
	memset(bad + len - 2, 0, FM_RECORD_MAX_BYTES + 1);
	assert_int_equal(
	        fm__hello_decode(bad, len - 2 + FM_RECORD_MAX_BYTES + 1, &d),
	        -EBADMSG);
}

/* ---- signed node records ------------------------------------------------ */

static void test_record_round_trip(void **state)
{
	uint8_t buf[FM_RECORD_MAX_BYTES], again[FM_RECORD_MAX_BYTES];
	size_t len, len2;
	fm_identity id;
	fm_record rec, d;

	(void)state;
	len = record_sample_bytes(buf, sizeof(buf), &id, &rec);
	assert_memory_equal(rec.public_key, id.public_key, FM_PUBLIC_KEY_BYTES);
	assert_memory_equal(rec.node_id, id.node_id, FM_NODE_ID_BYTES);
	assert_int_equal(buf[0], 0x97);
	assert_int_equal(fm_record_decode(buf, len, &d), 0);
	record_assert_equal(&d, &rec);
	assert_int_equal(fm_record_encode(&d, again, sizeof(again), &len2), 0);
	assert_int_equal(len2, len);
	assert_memory_equal(again, buf, len);
	/* Every proper prefix is malformed. */
	for (len2 = 0; len2 < len; len2++)
		assert_int_equal(fm_record_decode(buf, len2, &d), -EBADMSG);
	/* Empty lists and extreme numbers. */
	memset(&rec, 0, sizeof(rec));
	rec.seq = UINT64_MAX;
	rec.capacity = UINT32_MAX;
	assert_int_equal(fm_record_sign(&rec, &id), 0);
	assert_int_equal(fm_record_encode(&rec, buf, sizeof(buf), &len), 0);
	assert_int_equal(fm_record_decode(buf, len, &d), 0);
	record_assert_equal(&d, &rec);
	/* Re-signing with another identity changes key, node ID and bytes. */
	identity_from_fill(&id, 7);
	assert_int_equal(fm_record_sign(&rec, &id), 0);
	assert_memory_equal(rec.node_id, id.node_id, FM_NODE_ID_BYTES);
	assert_int_equal(fm_record_encode(&rec, buf, sizeof(buf), &len), 0);
	assert_int_equal(fm_record_decode(buf, len, &d), 0);
	record_assert_equal(&d, &rec);
	/* A field changed after signing: encodes, but does not verify. */
	rec.capacity--;
	assert_int_equal(fm_record_encode(&rec, buf, sizeof(buf), &len), 0);
	assert_int_equal(fm_record_decode(buf, len, &d), -EPERM);
}

static void test_record_bit_flips(void **state)
{
	uint8_t buf[FM_RECORD_MAX_BYTES], flipped[FM_RECORD_MAX_BYTES];
	size_t len, bit;
	fm_identity id;
	fm_record rec, d;
	int perm = 0, bad = 0;

	(void)state;
	len = record_sample_bytes(buf, sizeof(buf), &id, &rec);
	for (bit = 0; bit < len * 8; bit++) {
		int rc;
		memcpy(flipped, buf, len);
		flipped[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		rc = fm_record_decode(flipped, len, &d);
		if (rc == -EPERM)
			perm++;
		else if (rc == -EBADMSG)
			bad++;
		else
			fail_msg("bit %zu: rc %d", bit, rc);
	}
	/* Both outcomes occur: the checks are not all one. */
	assert_true(perm > 0 && bad > 0);
}

static void test_record_non_canonical(void **state)
{
	static const struct {
		const char *from;
		size_t from_len;
		const char *to;
		size_t to_len;
	} edits[] = {
	        /* IPv6 not in its shortest form */
	        {"\xaa[::1]:7420", 11, "\xb6[0:0:0:0:0:0:0:1]:7420", 23},
	        /* a port with a leading zero */
	        {"\xae"
	         "127.0.0.1:7420",
	         15,
	         "\xaf"
	         "127.0.0.1:07420",
	         16},
	        /* a short string as str 8 */
	        {"\xa4"
	         "echo",
	         5,
	         "\xd9\x04"
	         "echo",
	         6},
	        /* slots as uint 8 */
	        {"\xa6"
	         "sha256\x02",
	         8,
	         "\xa6"
	         "sha256\xcc\x02",
	         9},
	        /* slots in a signed format */
	        {"\xa4"
	         "echo\x04",
	         6,
	         "\xa4"
	         "echo\xd0\x04",
	         7},
	        /* the services array as array 16 */
	        {"\x92\x92", 2, "\xdc\x00\x02\x92", 4},
	        /* the public key as bin 16 */
	        {"\x01\xc4\x20", 3, "\x01\xc5\x00\x20", 4},
	};
	uint8_t buf[FM_RECORD_MAX_BYTES], out[TEST_BUF_MAX];
	size_t len, n, i, off;
	fm_identity id;
	fm_record rec, d;

	(void)state;
	len = record_sample_bytes(buf, sizeof(buf), &id, &rec);
	/* The re-signing helper leaves a canonical record valid. */
	memcpy(out, buf, len);
	resign(out, len, 1, &id);
	assert_int_equal(fm_record_decode(out, len, &d), 0);
	/* seq: byte 36 (97 01 c4 20 <32 bytes>). */
	assert_int_equal(buf[36], 0x01);
	n = splice(buf, len, 36, 1, "\xcc\x01", 2, out);
	resign(out, n, 1, &id);
	assert_int_equal(fm_record_decode(out, n, &d), -EBADMSG);
	for (i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		off = find(buf, len, edits[i].from, edits[i].from_len);
		n = splice(buf, len, off, edits[i].from_len, edits[i].to,
		           edits[i].to_len, out);
		resign(out, n, 1, &id);
		if (fm_record_decode(out, n, &d) != -EBADMSG)
			fail_msg("edit %zu accepted", i);
	}
	/* The record array as array 16. */
	n = splice(buf, len, 0, 1, "\xdc\x00\x07", 3, out);
	resign(out, n, 3, &id);
	assert_int_equal(fm_record_decode(out, n, &d), -EBADMSG);
	/* Capacity (the byte before c4 40 <signature>) in a signed format. */
	assert_int_equal(buf[len - 67], 8);
	n = splice(buf, len, len - 67, 1, "\xd0\x08", 2, out);
	resign(out, n, 1, &id);
	assert_int_equal(fm_record_decode(out, n, &d), -EBADMSG);
	/* The signature as bin 16: signed bytes unchanged, so only the
	 * canonical check can catch it. */
	n = splice(buf, len, len - 66, 2, "\xc5\x00\x40", 3, out);
	assert_int_equal(fm_record_decode(out, n, &d), -EBADMSG);
	/* An extra element. */
	memcpy(out, buf, len);
	out[0] = 0x98;
	out[len] = 0xc0;
	assert_int_equal(fm_record_decode(out, len + 1, &d), -EBADMSG);
}

static void assert_raw_rejected(const raw_record *rr, const fm_identity *id,
                                const char *what)
{
	uint8_t buf[TEST_BUF_MAX];
	size_t len = raw_record_build(rr, id, buf, sizeof(buf));
	fm_record d;
	int rc = fm_record_decode(buf, len, &d);

	if (rc != -EBADMSG)
		fail_msg("%s: rc %d", what, rc);
}

static void test_record_limits(void **state)
{
	static const char *const bad_names[] = {
	        "Echo",
	        "a b",
	        "sha/256",
	        "x\xc3\xa9",
	        "tab\t",
	        "UPPER",
	        "123456789012345678901234567890123", /* 33 bytes */
	};
	uint8_t buf[TEST_BUF_MAX], enc[FM_RECORD_MAX_BYTES];
	char names[FM_RECORD_SERVICES_MAX + 1][8];
	char long_names[FM_RECORD_SERVICES_MAX][FM_SERVICE_NAME_MAX + 1];
	size_t len, enc_len, i;
	fm_identity id;
	fm_record rec, d;
	raw_record rr;

	(void)state;
	identity_from_fill(&id, 0);
	/* The raw builder agrees with fm_record_encode. */
	raw_record_sample(&rr);
	len = raw_record_build(&rr, &id, buf, sizeof(buf));
	record_sample_bytes(enc, sizeof(enc), &id, &rec);
	assert_int_equal(fm_record_encode(&rec, enc, sizeof(enc), &enc_len), 0);
	assert_int_equal(len, enc_len);
	assert_memory_equal(buf, enc, len);
	assert_int_equal(fm_record_decode(buf, len, &d), 0);

	/* Limits: exactly the maximum is fine, one more is not. */
	raw_record_sample(&rr);
	for (i = 0; i < FM_RECORD_ADDRS_MAX + 1; i++)
		rr.addrs[i] = "10.0.0.1:1";
	rr.addr_count = FM_RECORD_ADDRS_MAX;
	len = raw_record_build(&rr, &id, buf, sizeof(buf));
	assert_int_equal(fm_record_decode(buf, len, &d), 0);
	assert_int_equal(d.addr_count, FM_RECORD_ADDRS_MAX);
	rr.addr_count = FM_RECORD_ADDRS_MAX + 1;
	assert_raw_rejected(&rr, &id, "9 addresses");

	raw_record_sample(&rr);
	for (i = 0; i < FM_RECORD_SERVICES_MAX + 1; i++) {
		snprintf(names[i], sizeof(names[i]), "s%zu", i);
		rr.names[i] = names[i];
		rr.slots[i] = i;
	}
	rr.service_count = FM_RECORD_SERVICES_MAX;
	len = raw_record_build(&rr, &id, buf, sizeof(buf));
	assert_int_equal(fm_record_decode(buf, len, &d), 0);
	assert_int_equal(d.service_count, FM_RECORD_SERVICES_MAX);
	rr.service_count = FM_RECORD_SERVICES_MAX + 1;
	assert_raw_rejected(&rr, &id, "17 services");

	/* Service names. */
	for (i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		raw_record_sample(&rr);
		rr.names[0] = bad_names[i];
		assert_raw_rejected(&rr, &id, bad_names[i]);
	}
	raw_record_sample(&rr);
	rr.names[0] = "";
	assert_raw_rejected(&rr, &id, "empty name");
	rr.names[0] = "a\0b";
	rr.name_lens[0] = 3;
	assert_raw_rejected(&rr, &id, "NUL in name");
	raw_record_sample(&rr);
	rr.names[1] = "echo";
	assert_raw_rejected(&rr, &id, "repeated name");
	raw_record_sample(&rr);
	rr.names[0] = "a-z_0.9";
	rr.names[1] = "12345678901234567890123456789012"; /* 32 bytes */
	len = raw_record_build(&rr, &id, buf, sizeof(buf));
	assert_int_equal(fm_record_decode(buf, len, &d), 0);

	/* Numbers and fields. */
	raw_record_sample(&rr);
	rr.slots[0] = (uint64_t)UINT32_MAX + 1;
	assert_raw_rejected(&rr, &id, "slots over 32 bits");
	raw_record_sample(&rr);
	rr.capacity = (uint64_t)UINT32_MAX + 1;
	assert_raw_rejected(&rr, &id, "capacity over 32 bits");
	raw_record_sample(&rr);
	rr.version = 2;
	assert_raw_rejected(&rr, &id, "version 2");
	raw_record_sample(&rr);
	rr.pk_len = 31;
	assert_raw_rejected(&rr, &id, "31-byte key");
	raw_record_sample(&rr);
	rr.addrs[0] = "localhost:7420";
	assert_raw_rejected(&rr, &id, "host name");
	rr.addrs[0] = "10.0.0.1";
	assert_raw_rejected(&rr, &id, "no port");
	rr.addrs[0] = "10.0.0.1:65536";
	assert_raw_rejected(&rr, &id, "port too large");
	rr.addrs[0] = "";
	assert_raw_rejected(&rr, &id, "empty address");

	/* Over FM_RECORD_MAX_BYTES, though every count is within limits. */
	raw_record_sample(&rr);
	for (i = 0; i < FM_RECORD_ADDRS_MAX; i++)
		rr.addrs[i] = LONG_V6;
	rr.addr_count = FM_RECORD_ADDRS_MAX;
	for (i = 0; i < FM_RECORD_SERVICES_MAX; i++) {
		/* 32-byte names, all different. */
		memset(long_names[i], 'n', FM_SERVICE_NAME_MAX);
		long_names[i][0] = (char)('a' + i);
		long_names[i][FM_SERVICE_NAME_MAX] = '\0';
		rr.names[i] = long_names[i];
		rr.slots[i] = 1;
	}
	rr.service_count = FM_RECORD_SERVICES_MAX;
	len = raw_record_build(&rr, &id, buf, sizeof(buf));
	assert_true(len > FM_RECORD_MAX_BYTES);
	assert_int_equal(fm_record_decode(buf, len, &d), -EBADMSG);
}

static void test_record_encode_errors(void **state)
{
	uint8_t buf[FM_RECORD_MAX_BYTES];
	size_t len, need, i;
	fm_identity id, other;
	fm_record rec, before;

	(void)state;
	identity_from_fill(&id, 0);
	record_sample(&rec);
	rec.addr_count = FM_RECORD_ADDRS_MAX + 1;
	assert_int_equal(fm_record_sign(&rec, &id), -EINVAL);
	assert_int_equal(fm_record_encode(&rec, buf, sizeof(buf), &len),
	                 -EINVAL);
	record_sample(&rec);
	rec.service_count = FM_RECORD_SERVICES_MAX + 1;
	assert_int_equal(fm_record_sign(&rec, &id), -EINVAL);
	record_sample(&rec);
	strcpy(rec.services[0].name, "Bad");
	assert_int_equal(fm_record_sign(&rec, &id), -EINVAL);
	record_sample(&rec);
	rec.services[0].name[0] = '\0';
	assert_int_equal(fm_record_sign(&rec, &id), -EINVAL);
	record_sample(&rec);
	memset(rec.services[0].name, 'a', sizeof(rec.services[0].name));
	assert_int_equal(fm_record_sign(&rec, &id), -EINVAL); /* no NUL */
	record_sample(&rec);
	strcpy(rec.services[1].name, "echo");
	assert_int_equal(fm_record_sign(&rec, &id), -EINVAL); /* repeated */
	record_sample(&rec);
	rec.addrs[0].family = FM_AF_NONE;
	assert_int_equal(fm_record_sign(&rec, &id), -EINVAL);
	/* An identity whose halves do not match. */
	record_sample(&rec);
	identity_from_fill(&other, 1);
	memcpy(other.public_key, id.public_key, FM_PUBLIC_KEY_BYTES);
	assert_int_equal(fm_record_sign(&rec, &other), -EINVAL);
	/* Counts within limits but over FM_RECORD_MAX_BYTES: refused, and the
	 * record is left as it was. */
	memset(&rec, 0, sizeof(rec));
	for (i = 0; i < FM_RECORD_ADDRS_MAX; i++)
		rec.addrs[i] = addr_of(LONG_V6);
	rec.addr_count = FM_RECORD_ADDRS_MAX;
	for (i = 0; i < FM_RECORD_SERVICES_MAX; i++) {
		memset(rec.services[i].name, 'n', FM_SERVICE_NAME_MAX);
		rec.services[i].name[0] = (char)('a' + i);
	}
	rec.service_count = FM_RECORD_SERVICES_MAX;
	before = rec;
	assert_int_equal(fm_record_sign(&rec, &id), -EMSGSIZE);
	assert_memory_equal(&rec, &before, sizeof(rec));
	assert_int_equal(fm_record_encode(&rec, buf, sizeof(buf), &len),
	                 -EMSGSIZE);
	/* Buffer too small: -ENOSPC below the need, fine at it. */
	record_sample_bytes(buf, sizeof(buf), &id, &rec);
	assert_int_equal(fm_record_encode(&rec, buf, sizeof(buf), &need), 0);
	for (len = 0; len < need; len++)
		assert_int_equal(fm_record_encode(&rec, buf, len, &i), -ENOSPC);
	assert_int_equal(fm_record_encode(&rec, buf, need, &len), 0);
	assert_int_equal(fm_record_sign(NULL, &id), -EINVAL);
	assert_int_equal(fm_record_sign(&rec, NULL), -EINVAL);
	assert_int_equal(fm_record_decode(buf, len, NULL), -EINVAL);
	assert_int_equal(fm_record_decode(NULL, 0, &rec), -EBADMSG);
}

static void test_record_supersedes(void **state)
{
	fm_identity a_id, b_id;
	fm_record a, b;

	(void)state;
	identity_from_fill(&a_id, 1);
	identity_from_fill(&b_id, 2);
	record_sample(&a);
	record_sample(&b);
	a.seq = 5;
	b.seq = 4;
	assert_int_equal(fm_record_sign(&a, &a_id), 0);
	assert_int_equal(fm_record_sign(&b, &a_id), 0);
	assert_int_equal(fm_record_supersedes(&a, &b), 1);
	assert_int_equal(fm_record_supersedes(&b, &a), 0);
	assert_int_equal(fm_record_supersedes(&a, &a), 0); /* equal seq */
	b.seq = 5;
	assert_int_equal(fm_record_supersedes(&a, &b), 0);
	/* Another node's record never supersedes, whatever its seq. */
	b.seq = 1000;
	assert_int_equal(fm_record_sign(&b, &b_id), 0);
	assert_int_equal(fm_record_supersedes(&b, &a), 0);
	assert_int_equal(fm_record_supersedes(&a, &b), 0);
	assert_int_equal(fm_record_supersedes(NULL, &a), 0);
	assert_int_equal(fm_record_supersedes(&a, NULL), 0);
}

/* ---- invites ------------------------------------------------------------- */

static void invite_key(uint8_t key[FM_FEDERATION_KEY_BYTES])
{
	size_t i;

	for (i = 0; i < FM_FEDERATION_KEY_BYTES; i++)
		key[i] = (uint8_t)i;
}

static void invite_round_trip(const char *const *texts, size_t n)
{
	uint8_t key[FM_FEDERATION_KEY_BYTES], got[FM_FEDERATION_KEY_BYTES];
	fm_addr addrs[FM_INVITE_ADDRS_MAX], back[FM_INVITE_ADDRS_MAX];
	char text[TEST_INVITE_MAX];
	size_t i, count = 99;

	invite_key(key);
	for (i = 0; i < n; i++)
		addrs[i] = addr_of(texts[i]);
	assert_int_equal(fm_invite_encode(key, addrs, n, text, sizeof(text)),
	                 0);
	assert_true(strncmp(text, "fedmesh1", 8) == 0);
	assert_true(strlen(text) <= FM_INVITE_TEXT_MAX);
	assert_int_equal(strspn(text + 8, "abcdefghijklmnopqrstuvwxyz234567"),
	                 strlen(text) - 8);
	assert_int_equal(
	        fm_invite_decode(text, got, back, FM_INVITE_ADDRS_MAX, &count),
	        0);
	assert_memory_equal(got, key, sizeof(key));
	assert_int_equal(count, n);
	for (i = 0; i < n; i++) {
		char s[FM_ADDR_STR_MAX];
		assert_int_equal(fm_addr_format(&back[i], s, sizeof(s)), 0);
		assert_string_equal(s, texts[i]);
	}
}

static void test_invite_round_trip(void **state)
{
	static const char *const one[] = {"192.0.2.1:7420"};
	static const char *const eight[] = {
	        "192.0.2.1:7420",  "[2001:db8::1]:7420",    "10.0.0.255:1",
	        "[::1]:65535",     "255.255.255.255:65535", "[fe80::1]:7420",
	        "198.51.100.7:80", "[2001:db8:0:1::a]:443",
	};
	static const char *const five_long[] = {LONG_V6, LONG_V6, LONG_V6,
	                                        LONG_V6, LONG_V6};

	(void)state;
	invite_round_trip(NULL, 0);
	invite_round_trip(one, 1);
	invite_round_trip(eight, 8);
	invite_round_trip(five_long, 5);
}

static void test_invite_typos(void **state)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567018";
	uint8_t key[FM_FEDERATION_KEY_BYTES], got[FM_FEDERATION_KEY_BYTES];
	fm_addr addr = addr_of("192.0.2.1:7420"), back[FM_INVITE_ADDRS_MAX];
	char text[TEST_INVITE_MAX], typo[TEST_INVITE_MAX];
	size_t i, j, len, count;

	(void)state;
	invite_key(key);
	assert_int_equal(fm_invite_encode(key, &addr, 1, text, sizeof(text)),
	                 0);
	len = strlen(text);
	for (i = 0; i < len; i++) {
		for (j = 0; j < sizeof(alphabet) - 1; j++) {
			if (alphabet[j] == text[i])
				continue;
			memcpy(typo, text, len + 1);
			typo[i] = alphabet[j];
			if (fm_invite_decode(typo, got, back, 8, &count) !=
			    -EINVAL)
				fail_msg("typo '%c' at %zu accepted",
				         alphabet[j], i);
		}
		/* Swapped neighbours. */
		if (i + 1 < len && text[i] != text[i + 1]) {
			memcpy(typo, text, len + 1);
			typo[i] = text[i + 1];
			typo[i + 1] = text[i];
			assert_int_equal(
			        fm_invite_decode(typo, got, back, 8, &count),
			        -EINVAL);
		}
		/* A character left out. */
		memcpy(typo, text, i);
		memcpy(typo + i, text + i + 1, len - i);
		assert_int_equal(fm_invite_decode(typo, got, back, 8, &count),
		                 -EINVAL);
	}
	/* One character too many. */
	memcpy(typo, text, len);
	memcpy(typo + len, "a", 2);
	assert_int_equal(fm_invite_decode(typo, got, back, 8, &count), -EINVAL);
}

static void test_invite_case_and_space(void **state)
{
	uint8_t key[FM_FEDERATION_KEY_BYTES], got[FM_FEDERATION_KEY_BYTES];
	fm_addr addr = addr_of("[2001:db8::7]:7420"), back[1];
	char text[TEST_INVITE_MAX], other[2 * TEST_INVITE_MAX];
	size_t i, len, count;

	(void)state;
	invite_key(key);
	assert_int_equal(fm_invite_encode(key, &addr, 1, text, sizeof(text)),
	                 0);
	len = strlen(text);
	/* Uppercase (QR alphanumeric mode) and mixed case. */
	for (i = 0; i <= len; i++)
		other[i] = (text[i] >= 'a' && text[i] <= 'z')
		                   ? (char)(text[i] - 'a' + 'A')
		                   : text[i];
	assert_int_equal(fm_invite_decode(other, got, back, 1, &count), 0);
	assert_memory_equal(got, key, sizeof(key));
	for (i = 0; i < len; i += 2)
		other[i] = text[i];
	assert_int_equal(fm_invite_decode(other, got, back, 1, &count), 0);
	/* Surrounding whitespace, even beyond FM_INVITE_TEXT_MAX in total. */
	snprintf(other, sizeof(other), " \t\r\n%s\n\r\t ", text);
	assert_int_equal(fm_invite_decode(other, got, back, 1, &count), 0);
	memset(other, ' ', FM_INVITE_TEXT_MAX);
	memcpy(other + FM_INVITE_TEXT_MAX, text, len + 1);
	assert_int_equal(fm_invite_decode(other, got, back, 1, &count), 0);
	/* Whitespace inside, or of another kind, is an error. */
	snprintf(other, sizeof(other), "%.20s %s", text, text + 20);
	assert_int_equal(fm_invite_decode(other, got, back, 1, &count),
	                 -EINVAL);
	snprintf(other, sizeof(other), "%.20s\n%s", text, text + 20);
	assert_int_equal(fm_invite_decode(other, got, back, 1, &count),
	                 -EINVAL);
	snprintf(other, sizeof(other), "\v%s", text);
	assert_int_equal(fm_invite_decode(other, got, back, 1, &count),
	                 -EINVAL);
	snprintf(other, sizeof(other), "%s=", text); /* padding */
	assert_int_equal(fm_invite_decode(other, got, back, 1, &count),
	                 -EINVAL);
}

static void test_invite_rejects(void **state)
{
	static const char *const nine[] = {
	        "1.2.3.4:1", "1.2.3.4:2", "1.2.3.4:3", "1.2.3.4:4", "1.2.3.4:5",
	        "1.2.3.4:6", "1.2.3.4:7", "1.2.3.4:8", "1.2.3.4:9",
	};
	static const char *const bad_addr[] = {"example.com:7420"};
	uint8_t key[FM_FEDERATION_KEY_BYTES], got[FM_FEDERATION_KEY_BYTES];
	uint8_t body[TEST_BUF_MAX];
	fm_addr addrs[FM_INVITE_ADDRS_MAX];
	char text[TEST_INVITE_MAX * 2];
	size_t len, count;
	int v;

	(void)state;
	invite_key(key);
	/* The hand-built invite machinery makes valid invites too. */
	len = invite_body(body, 1, 3, 32, nine, 8);
	invite_from_body(body, len, text);
	assert_int_equal(fm_invite_decode(text, got, addrs, 8, &count), 0);
	assert_int_equal(count, 8);
	/* Nine addresses: -EINVAL even when the caller has room. */
	len = invite_body(body, 1, 3, 32, nine, 9);
	invite_from_body(body, len, text);
	assert_int_equal(fm_invite_decode(text, got, addrs, 8, &count),
	                 -EINVAL);
	/* Other versions, shapes and keys. */
	len = invite_body(body, 2, 3, 32, nine, 1);
	invite_from_body(body, len, text);
	assert_int_equal(fm_invite_decode(text, got, addrs, 8, &count),
	                 -EINVAL);
	len = invite_body(body, 1, 4, 32, nine, 1);
	invite_from_body(body, len, text);
	assert_int_equal(fm_invite_decode(text, got, addrs, 8, &count),
	                 -EINVAL);
	len = invite_body(body, 1, 3, 31, nine, 1);
	invite_from_body(body, len, text);
	assert_int_equal(fm_invite_decode(text, got, addrs, 8, &count),
	                 -EINVAL);
	len = invite_body(body, 1, 3, 32, bad_addr, 1);
	invite_from_body(body, len, text);
	assert_int_equal(fm_invite_decode(text, got, addrs, 8, &count),
	                 -EINVAL);
	len = invite_body(body, 1, 3, 32, nine, 1);
	body[len++] = 0xc0; /* trailing byte */
	invite_from_body(body, len, text);
	assert_int_equal(fm_invite_decode(text, got, addrs, 8, &count),
	                 -EINVAL);
	invite_from_body(body, 0, text); /* empty body */
	assert_int_equal(fm_invite_decode(text, got, addrs, 8, &count),
	                 -EINVAL);
	/* More addresses than the caller's max: -ENOSPC with the count. */
	len = invite_body(body, 1, 3, 32, nine, 3);
	invite_from_body(body, len, text);
	count = 0;
	assert_int_equal(fm_invite_decode(text, got, addrs, 2, &count),
	                 -ENOSPC);
	assert_int_equal(count, 3);
	assert_int_equal(fm_invite_decode(text, got, NULL, 0, &count), -ENOSPC);
	assert_int_equal(fm_invite_decode(text, got, addrs, 3, &count), 0);
	/* A key-only invite needs no room for addresses. */
	assert_int_equal(fm_invite_encode(key, NULL, 0, text, sizeof(text)), 0);
	assert_int_equal(fm_invite_decode(text, got, NULL, 0, &count), 0);
	assert_int_equal(count, 0);
	/* Unused bits of the last character set: same bytes, refused.
	 * 41 bytes = 328 bits in 66 characters, 2 bits unused. */
	len = strlen(text);
	assert_int_equal(len, 8 + 66);
	v = text[len - 1] >= 'a' ? text[len - 1] - 'a'
	                         : text[len - 1] - '2' + 26;
	assert_int_equal(v & 3, 0);
	text[len - 1] = "abcdefghijklmnopqrstuvwxyz234567"[v | 1];
	assert_int_equal(fm_invite_decode(text, got, NULL, 0, &count), -EINVAL);
	/* Prefixes, alphabet, length. */
	assert_int_equal(fm_invite_decode("", got, NULL, 0, &count), -EINVAL);
	assert_int_equal(fm_invite_decode("   ", got, NULL, 0, &count),
	                 -EINVAL);
	assert_int_equal(fm_invite_decode("fedmesh1", got, NULL, 0, &count),
	                 -EINVAL);
	assert_int_equal(fm_invite_encode(key, NULL, 0, text, sizeof(text)), 0);
	text[7] = '2';
	assert_int_equal(fm_invite_decode(text, got, NULL, 0, &count), -EINVAL);
	assert_int_equal(fm_invite_decode(text + 1, got, NULL, 0, &count),
	                 -EINVAL);
	memset(text, 'a', FM_INVITE_TEXT_MAX + 1);
	memcpy(text, "fedmesh1", 8);
	text[FM_INVITE_TEXT_MAX + 1] = '\0';
	assert_int_equal(fm_invite_decode(text, got, NULL, 0, &count), -EINVAL);
	text[FM_INVITE_TEXT_MAX] = '\0';
	assert_int_equal(fm_invite_decode(text, got, NULL, 0, &count), -EINVAL);
	assert_int_equal(fm_invite_decode(NULL, got, NULL, 0, &count), -EINVAL);
	assert_int_equal(fm_invite_decode("x", NULL, NULL, 0, &count), -EINVAL);
	assert_int_equal(fm_invite_decode("x", got, NULL, 1, &count), -EINVAL);
	assert_int_equal(fm_invite_decode("x", got, NULL, 0, NULL), -EINVAL);
}

static void test_invite_encode_errors(void **state)
{
	uint8_t key[FM_FEDERATION_KEY_BYTES];
	fm_addr addrs[FM_INVITE_ADDRS_MAX + 1];
	char text[TEST_INVITE_MAX];
	size_t i, need;

	(void)state;
	invite_key(key);
	for (i = 0; i < FM_INVITE_ADDRS_MAX + 1; i++)
		addrs[i] = addr_of("192.0.2.1:7420");
	assert_int_equal(fm_invite_encode(key, addrs, FM_INVITE_ADDRS_MAX + 1,
	                                  text, sizeof(text)),
	                 -EINVAL);
	assert_int_equal(fm_invite_encode(key, addrs, FM_INVITE_ADDRS_MAX, text,
	                                  sizeof(text)),
	                 0);
	/* Eight addresses of the longest form do not fit 512 characters;
	 * five do, six do not. */
	for (i = 0; i < FM_INVITE_ADDRS_MAX; i++)
		addrs[i] = addr_of(LONG_V6);
	assert_int_equal(fm_invite_encode(key, addrs, 8, text, sizeof(text)),
	                 -EINVAL);
	assert_int_equal(fm_invite_encode(key, addrs, 6, text, sizeof(text)),
	                 -EINVAL);
	assert_int_equal(fm_invite_encode(key, addrs, 5, text, sizeof(text)),
	                 0);
	assert_true(strlen(text) <= FM_INVITE_TEXT_MAX);
	/* Output buffer sizes. */
	need = strlen(text) + 1;
	for (i = 0; i < need; i++)
		assert_int_equal(fm_invite_encode(key, addrs, 5, text, i),
		                 -ENOSPC);
	assert_int_equal(fm_invite_encode(key, addrs, 5, text, need), 0);
	addrs[0].family = FM_AF_NONE;
	assert_int_equal(fm_invite_encode(key, addrs, 1, text, sizeof(text)),
	                 -EINVAL);
	assert_int_equal(fm_invite_encode(NULL, addrs, 0, text, sizeof(text)),
	                 -EINVAL);
	assert_int_equal(fm_invite_encode(key, NULL, 1, text, sizeof(text)),
	                 -EINVAL);
	assert_int_equal(fm_invite_encode(key, NULL, 0, NULL, 10), -EINVAL);
}

/* ---- golden vectors ------------------------------------------------------ */

/* Splits "a,b,c" (or "-" for none) in place. */
static size_t split_list(char *s, char **items, size_t max)
{
	size_t n = 0;
	char *save = NULL, *tok;

	if (strcmp(s, "-") == 0)
		return 0;
	for (tok = strtok_r(s, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		assert_true(n < max);
		items[n++] = tok;
	}
	return n;
}

static void test_record_vectors(void **state)
{
	char line[TEST_LINE_MAX], hex[2 * FM_RECORD_MAX_BYTES + 1];
	uint8_t seed[FM_SEED_BYTES], enc[FM_RECORD_MAX_BYTES];
	uint8_t want[FM_RECORD_MAX_BYTES];
	FILE *f = open_vectors("record-vectors.txt");
	int vectors = 0;

	(void)state;
	while (next_line(f, line, sizeof(line))) {
		char *field[6], *items[FM_RECORD_SERVICES_MAX], *save = NULL;
		size_t n = 0, i, len, want_len;
		fm_identity id;
		fm_record rec, d;
		for (field[n] = strtok_r(line, " ", &save); field[n] != NULL;
		     field[n] = strtok_r(NULL, " ", &save))
			if (++n == 6)
				break;
		assert_int_equal(n, 6);
		assert_int_equal(fm_hex_decode(field[0], seed, sizeof(seed)),
		                 0);
		assert_int_equal(fm_identity_from_seed(seed, &id), 0);
		memset(&rec, 0, sizeof(rec));
		rec.seq = strtoull(field[1], NULL, 10);
		n = split_list(field[2], items, FM_RECORD_ADDRS_MAX);
		for (i = 0; i < n; i++)
			rec.addrs[i] = addr_of(items[i]);
		rec.addr_count = (uint8_t)n;
		n = split_list(field[3], items, FM_RECORD_SERVICES_MAX);
		for (i = 0; i < n; i++) {
			char *colon = strrchr(items[i], ':');
			assert_non_null(colon);
			*colon = '\0';
			service_set(&rec.services[i], items[i],
			            (uint32_t)strtoul(colon + 1, NULL, 10));
		}
		rec.service_count = (uint8_t)n;
		rec.capacity = (uint32_t)strtoul(field[4], NULL, 10);
		assert_int_equal(fm_record_sign(&rec, &id), 0);
		assert_int_equal(fm_record_encode(&rec, enc, sizeof(enc), &len),
		                 0);
		fm_hex_encode(enc, len, hex);
		assert_string_equal(hex, field[5]);
		/* And the vector's bytes decode to the same record. */
		want_len = strlen(field[5]) / 2;
		assert_int_equal(fm_hex_decode(field[5], want, want_len), 0);
		assert_int_equal(fm_record_decode(want, want_len, &d), 0);
		record_assert_equal(&d, &rec);
		assert_memory_equal(d.node_id, id.node_id, FM_NODE_ID_BYTES);
		vectors++;
	}
	fclose(f);
	assert_true(vectors >= 1);
}

static void test_invite_vectors(void **state)
{
	char line[TEST_LINE_MAX], text[TEST_INVITE_MAX];
	uint8_t key[FM_FEDERATION_KEY_BYTES], got[FM_FEDERATION_KEY_BYTES];
	FILE *f = open_vectors("invite-vectors.txt");
	int vectors = 0;

	(void)state;
	while (next_line(f, line, sizeof(line))) {
		char *field[3], *items[FM_INVITE_ADDRS_MAX], *save = NULL;
		fm_addr addrs[FM_INVITE_ADDRS_MAX], back[FM_INVITE_ADDRS_MAX];
		size_t n = 0, i, count;
		for (field[n] = strtok_r(line, " ", &save); field[n] != NULL;
		     field[n] = strtok_r(NULL, " ", &save))
			if (++n == 3)
				break;
		assert_int_equal(n, 3);
		assert_int_equal(fm_hex_decode(field[0], key, sizeof(key)), 0);
		n = split_list(field[1], items, FM_INVITE_ADDRS_MAX);
		for (i = 0; i < n; i++)
			addrs[i] = addr_of(items[i]);
		assert_int_equal(
		        fm_invite_encode(key, addrs, n, text, sizeof(text)), 0);
		assert_string_equal(text, field[2]);
		assert_int_equal(fm_invite_decode(field[2], got, back,
		                                  FM_INVITE_ADDRS_MAX, &count),
		                 0);
		assert_memory_equal(got, key, sizeof(key));
		assert_int_equal(count, n);
		for (i = 0; i < n; i++)
			assert_memory_equal(&back[i], &addrs[i],
			                    sizeof(fm_addr));
		vectors++;
	}
	fclose(f);
	assert_true(vectors >= 2);
}

/* ---- fuzz ---------------------------------------------------------------- */

/* How far fuzz inputs got, so that a fuzz loop that stops reaching the
 * decoders' depths fails instead of passing vacuously. */
static struct {
	uint64_t checked, msgs, unknown, hellos, forged, invites;
} reached;

/* Runs every decoder on buf and checks what each may return. A decoded
 * message or hello must re-encode and decode to the same; a record must be
 * byte for byte the one valid record (valid_record), since nothing else
 * carries a valid signature. */
static void fuzz_one(const uint8_t *buf, size_t len, const uint8_t *valid,
                     size_t valid_len, uint64_t iteration)
{
	uint8_t again[FM__WIRE_MSG_MAX_BYTES];
	size_t again_len;
	fm__msg m, m2;
	fm__hello h, h2;
	fm_record r;
	int rc;

	rc = fm__msgpack_check(buf, len, 16, SIZE_MAX);
	if (rc == 0) {
		assert_msgpack_c_accepts(buf, len);
		reached.checked++;
	} else if (rc != -EBADMSG)
		fail_msg("iteration %llu: check rc %d",
		         (unsigned long long)iteration, rc);

	rc = fm__msg_decode(buf, len, &m);
	reached.unknown += rc == -ENOTSUP;
	if (rc == 0) {
		reached.msgs++;
		assert_int_equal(
		        fm__msg_encode(&m, again, sizeof(again), &again_len),
		        0);
		assert_int_equal(fm__msg_decode(again, again_len, &m2), 0);
		assert_int_equal(m2.type, m.type);
		assert_true(m2.seq == m.seq && m2.time_ms == m.time_ms);
		assert_int_equal(m2.record_len, m.record_len);
		if (m.record_len > 0)
			assert_memory_equal(m2.record, m.record, m.record_len);
		assert_string_equal(m2.reason, m.reason);
	} else if (rc != -EBADMSG && rc != -ENOTSUP) {
		fail_msg("iteration %llu: msg rc %d",
		         (unsigned long long)iteration, rc);
	}

	rc = fm__hello_decode(buf, len, &h);
	if (rc == 0) {
		reached.hellos++;
		assert_int_equal(
		        fm__hello_encode(&h, again, sizeof(again), &again_len),
		        0);
		assert_int_equal(fm__hello_decode(again, again_len, &h2), 0);
		assert_memory_equal(&h2.public_key, &h.public_key,
		                    sizeof(h.public_key));
		assert_memory_equal(&h2.signature, &h.signature,
		                    sizeof(h.signature));
		assert_int_equal(h2.record_len, h.record_len);
	} else if (rc != -EBADMSG && rc != -ENOTSUP) {
		fail_msg("iteration %llu: hello rc %d",
		         (unsigned long long)iteration, rc);
	}

	rc = fm_record_decode(buf, len, &r);
	reached.forged += rc == -EPERM;
	if (rc == 0) {
		if (len != valid_len || memcmp(buf, valid, len) != 0)
			fail_msg("iteration %llu: a forged record decoded",
			         (unsigned long long)iteration);
	} else if (rc != -EBADMSG && rc != -EPERM) {
		fail_msg("iteration %llu: record rc %d",
		         (unsigned long long)iteration, rc);
	}
}

static void fuzz_invite(const char *text, uint64_t iteration)
{
	uint8_t key[FM_FEDERATION_KEY_BYTES];
	fm_addr addrs[FM_INVITE_ADDRS_MAX];
	size_t count;
	int rc = fm_invite_decode(text, key, addrs, 2, &count);

	if (rc == 0 || rc == -ENOSPC)
		reached.invites++;
	if (rc == 0)
		assert_true(count <= 2);
	else if (rc == -ENOSPC)
		assert_true(count > 2 && count <= FM_INVITE_ADDRS_MAX);
	else if (rc != -EINVAL)
		fail_msg("iteration %llu: invite rc %d",
		         (unsigned long long)iteration, rc);
}

static void reached_report(const char *what)
{
	print_message("# %s: %llu well-formed, %llu messages, %llu unknown "
	              "types, %llu hellos, %llu bad signatures, %llu invites\n",
	              what, (unsigned long long)reached.checked,
	              (unsigned long long)reached.msgs,
	              (unsigned long long)reached.unknown,
	              (unsigned long long)reached.hellos,
	              (unsigned long long)reached.forged,
	              (unsigned long long)reached.invites);
}

static void test_fuzz_random(void **state)
{
	static const char chars[] =
	        "abcdefghijklmnopqrstuvwxyz234567ABCXYZ0189 \t\r\n=-_.:[]";
	uint8_t rec[FM_RECORD_MAX_BYTES], buf[FUZZ_LONG_LEN_MAX];
	char text[TEST_INVITE_MAX + 8];
	size_t rec_len, len, i;
	fm_identity id;
	fm_record r;
	uint64_t it;

	(void)state;
	rec_len = record_sample_bytes(rec, sizeof(rec), &id, &r);
	memset(&reached, 0, sizeof(reached));
	rng_state = FUZZ_SEED;
	for (it = 0; it < FUZZ_RANDOM_CASES; it++) {
		uint64_t shape = rng_next();
		len = (shape & 15) == 0 ? rng_below(FUZZ_LONG_LEN_MAX + 1)
		                        : rng_below(FUZZ_RANDOM_LEN_MAX + 1);
		for (i = 0; i < len; i++)
			buf[i] = (uint8_t)rng_next();
		/* Half the buffers start like a message: [type, ...]. */
		if (len >= 2 && (shape & 16)) {
			buf[0] = (uint8_t)(0x90 | rng_below(8));
			buf[1] = (uint8_t)rng_below(8);
		}
		fuzz_one(buf, len, rec, rec_len, it);

		len = rng_below(sizeof(text) - 1);
		for (i = 0; i < len; i++)
			text[i] = chars[rng_below(sizeof(chars) - 1)];
		if (len >= 8 && (shape & 32))
			memcpy(text, "fedmesh1", 8);
		text[len] = '\0';
		fuzz_invite(text, it);
	}
	reached_report("random");
	assert_true(reached.checked > 0 && reached.msgs > 0 &&
	            reached.unknown > 0);
}

/* Applies 1 to 4 random edits: bit flips, byte changes to values that
 * matter to msgpack, insertions, deletions, truncation, duplication. */
static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
	static const uint8_t interesting[] = {
	        0x00, 0x7f, 0x80, 0x90, 0xc0, 0xc1, 0xc4, 0xc6, 0xcc,
	        0xcf, 0xd0, 0xd9, 0xdb, 0xdc, 0xdd, 0xdf, 0xff};
	size_t edits = 1 + rng_below(4), e;

	for (e = 0; e < edits; e++) {
		size_t pos = rng_below(len), n;
		switch (rng_below(7)) {
		case 0:
			if (len > 0)
				buf[pos] ^= (uint8_t)(1u << rng_below(8));
			break;
		case 1:
			if (len > 0)
				buf[pos] = (uint8_t)rng_next();
			break;
		case 2:
			if (len > 0)
				buf[pos] = interesting[rng_below(
				        sizeof(interesting))];
			break;
		case 3:
			if (len < cap) {
				memmove(buf + pos + 1, buf + pos, len - pos);
				buf[pos] = (uint8_t)rng_next();
				len++;
			}
			break;
		case 4:
			if (len > 0) {
				memmove(buf + pos, buf + pos + 1,
				        len - pos - 1);
				len--;
			}
			break;
		case 5:
			len = rng_below(len + 1);
			break;
		default:
			n = rng_below(len - pos + 1);
			if (len + n <= cap) {
				memmove(buf + pos + n, buf + pos, len - pos);
				len += n;
			}
			break;
		}
	}
	return len;
}

static void test_fuzz_mutations(void **state)
{
	uint8_t rec[FM_RECORD_MAX_BYTES];
	uint8_t seeds[7][FM__HELLO_MAX_BYTES];
	size_t seed_len[7], rec_len, len, n_seeds = 0, i;
	uint8_t buf[FM__HELLO_MAX_BYTES * 2];
	char invite[TEST_INVITE_MAX * 2], base[TEST_INVITE_MAX];
	uint8_t key[FM_FEDERATION_KEY_BYTES];
	fm_addr addrs[3];
	fm_identity id;
	fm_record r;
	fm__msg m;
	fm__hello h;
	uint64_t it;

	(void)state;
	rec_len = record_sample_bytes(rec, sizeof(rec), &id, &r);
	memcpy(seeds[n_seeds], rec, rec_len);
	seed_len[n_seeds++] = rec_len;
	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_PING;
	m.seq = 12345678901ULL;
	m.time_ms = 77;
	assert_int_equal(fm__msg_encode(&m, seeds[n_seeds], FM__HELLO_MAX_BYTES,
	                                &seed_len[n_seeds]),
	                 0);
	n_seeds++;
	m.type = FM__MSG_PONG;
	assert_int_equal(fm__msg_encode(&m, seeds[n_seeds], FM__HELLO_MAX_BYTES,
	                                &seed_len[n_seeds]),
	                 0);
	n_seeds++;
	m.type = FM__MSG_RECORD;
	m.record = rec;
	m.record_len = rec_len;
	assert_int_equal(fm__msg_encode(&m, seeds[n_seeds], FM__HELLO_MAX_BYTES,
	                                &seed_len[n_seeds]),
	                 0);
	n_seeds++;
	m.type = FM__MSG_CLOSE;
	strcpy(m.reason, "shutting down");
	assert_int_equal(fm__msg_encode(&m, seeds[n_seeds], FM__HELLO_MAX_BYTES,
	                                &seed_len[n_seeds]),
	                 0);
	n_seeds++;
	m.type = FM__MSG_REKEY;
	assert_int_equal(fm__msg_encode(&m, seeds[n_seeds], FM__HELLO_MAX_BYTES,
	                                &seed_len[n_seeds]),
	                 0);
	n_seeds++;
	memcpy(h.public_key, id.public_key, sizeof(h.public_key));
	memset(h.signature, 0x5a, sizeof(h.signature));
	h.record = rec;
	h.record_len = rec_len;
	assert_int_equal(fm__hello_encode(&h, seeds[n_seeds],
	                                  FM__HELLO_MAX_BYTES,
	                                  &seed_len[n_seeds]),
	                 0);
	n_seeds++;

	invite_key(key);
	addrs[0] = addr_of("192.0.2.1:7420");
	addrs[1] = addr_of("[2001:db8::1]:7420");
	addrs[2] = addr_of("10.1.2.3:1");
	assert_int_equal(fm_invite_encode(key, addrs, 3, base, sizeof(base)),
	                 0);

	memset(&reached, 0, sizeof(reached));
	rng_state = FUZZ_SEED ^ 0xa5a5a5a5a5a5a5a5ULL;
	for (it = 0; it < FUZZ_MUTATION_CASES; it++) {
		size_t s = rng_below(n_seeds);
		memcpy(buf, seeds[s], seed_len[s]);
		len = mutate(buf, seed_len[s], sizeof(buf));
		fuzz_one(buf, len, rec, rec_len, it);

		len = strlen(base);
		memcpy(invite, base, len);
		len = mutate((uint8_t *)invite, len, sizeof(invite) - 1);
		for (i = 0; i < len; i++)
			if (invite[i] == '\0')
				invite[i] = 'a';
		invite[len] = '\0';
		fuzz_invite(invite, it);
	}
	reached_report("mutations");
	assert_true(reached.msgs > 0 && reached.unknown > 0 &&
	            reached.hellos > 0 && reached.forged > 0 &&
	            reached.invites > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_check_accepts_every_format),
	        cmocka_unit_test(test_check_rejects_bombs),
	        cmocka_unit_test(test_check_depth_and_items),
	        cmocka_unit_test(test_msg_round_trip),
	        cmocka_unit_test(test_msg_known_bytes),
	        cmocka_unit_test(test_msg_rejects),
	        cmocka_unit_test(test_msg_unknown_type),
	        cmocka_unit_test(test_msg_encode_errors),
	        cmocka_unit_test(test_hello_round_trip),
	        cmocka_unit_test(test_hello_rejects),
	        cmocka_unit_test(test_record_round_trip),
	        cmocka_unit_test(test_record_bit_flips),
	        cmocka_unit_test(test_record_non_canonical),
	        cmocka_unit_test(test_record_limits),
	        cmocka_unit_test(test_record_encode_errors),
	        cmocka_unit_test(test_record_supersedes),
	        cmocka_unit_test(test_invite_round_trip),
	        cmocka_unit_test(test_invite_typos),
	        cmocka_unit_test(test_invite_case_and_space),
	        cmocka_unit_test(test_invite_rejects),
	        cmocka_unit_test(test_invite_encode_errors),
	        cmocka_unit_test(test_record_vectors),
	        cmocka_unit_test(test_invite_vectors),
	        cmocka_unit_test(test_fuzz_random),
	        cmocka_unit_test(test_fuzz_mutations),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
