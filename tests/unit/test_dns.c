/* Tests of the DNS message codec under mDNS / DNS-SD discovery. The parser
 * reads every multicast packet on the LAN, from any host, so besides round
 * trips of the packets fedmesh itself sends (a DNS-SD response, a QU query
 * with known answers) the tests parse packets laid out the way Avahi and
 * mDNSResponder send them (compressed NSEC next-domain names, HINFO,
 * reverse PTRs), every malformed shape the parser must refuse (truncation
 * at every length, forward, self and looping pointers, pointers into the
 * header, oversize labels and names, RDATA that does not match its type,
 * lying counts), and a deterministic mutation fuzz loop (fixed-seed
 * xorshift) meant to run under ASan and UBSan, which also checks that
 * whatever parses writes back and re-parses to the same thing. */
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

#include "core/dns.h"

#define TEST_BUF_MAX 1024
#define HEADER_LEN 12
#define FUZZ_CASES 200000
#define FUZZ_SEED 0x5eed0d15c0ffeeULL
#define FUZZ_MUTATIONS_MAX 4
#define FUZZ_GROW_MAX 16
#define TYPE_HINFO 13
#define TYPE_PRIVATE 0xff00 /* RFC 6895 private use: always "unknown" */
#define TTL_HOST 120
#define TTL_SERVICE 4500

#define ID_HEX \
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define FED_HEX "fedcba9876543210"

/* ---- helpers ------------------------------------------------------------ */

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

static fm__dns_message *msg_new(void)
{
	fm__dns_message *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	return m;
}

static void rec_init(fm__dns_record *r, const char *name, uint16_t type,
                     uint16_t class_, uint32_t ttl, uint8_t section)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->type = type;
	r->class_ = class_;
	r->ttl = ttl;
	r->section = section;
}

static void add_txt(fm__dns_record *r, const char *s)
{
	snprintf(r->rd.txt.strings[r->rd.txt.count],
	         sizeof(r->rd.txt.strings[0]), "%s", s);
	r->rd.txt.count++;
}

/* The records of a full DNS-SD response for one fedmesh instance. */
static size_t dnssd_records(fm__dns_record *r)
{
	static const uint8_t v6[16] = {0xfe, 0x80, 0,    0,    0,    0,
	                               0,    0,    0x02, 0x11, 0x22, 0xff,
	                               0xfe, 0x33, 0x44, 0x55};

	rec_init(&r[0], "_fedmesh._udp.local", FM__DNS_PTR, FM__DNS_CLASS_IN,
	         TTL_SERVICE, FM__DNS_ANSWER);
	snprintf(r[0].rd.ptr, sizeof(r[0].rd.ptr), "inst._fedmesh._udp.local");
	rec_init(&r[1], "inst._fedmesh._udp.local", FM__DNS_SRV,
	         FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP, TTL_HOST,
	         FM__DNS_ANSWER);
	r[1].rd.srv.priority = 0;
	r[1].rd.srv.weight = 0;
	r[1].rd.srv.port = 4242;
	snprintf(r[1].rd.srv.target, sizeof(r[1].rd.srv.target), "host.local");
	rec_init(&r[2], "inst._fedmesh._udp.local", FM__DNS_TXT,
	         FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP, TTL_SERVICE,
	         FM__DNS_ANSWER);
	add_txt(&r[2], "v=1");
	add_txt(&r[2], "id=" ID_HEX);
	add_txt(&r[2], "fed=" FED_HEX);
	rec_init(&r[3], "host.local", FM__DNS_A,
	         FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP, TTL_HOST,
	         FM__DNS_ADDITIONAL);
	memcpy(r[3].rd.a, "\xc0\xa8\x01\x0a", 4);
	rec_init(&r[4], "host.local", FM__DNS_AAAA,
	         FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP, TTL_HOST,
	         FM__DNS_ADDITIONAL);
	memcpy(r[4].rd.aaaa, v6, sizeof(v6));
	return 5;
}

static size_t write_records(uint8_t *buf, size_t cap, uint16_t flags,
                            const fm__dns_record *r, size_t n)
{
	fm__dns_writer w;
	size_t i, len = 0;

	fm__dns_writer_init(&w, buf, cap, 0, flags);
	for (i = 0; i < n; i++)
		assert_int_equal(fm__dns_add_record(&w, &r[i]), 0);
	assert_int_equal(fm__dns_finish(&w, &len), 0);
	return len;
}

static size_t build_response(uint8_t *buf, size_t cap)
{
	fm__dns_record r[5];
	size_t n = dnssd_records(r);

	return write_records(buf, cap, FM__DNS_FLAG_QR | FM__DNS_FLAG_AA, r, n);
}

static size_t build_query(uint8_t *buf, size_t cap)
{
	fm__dns_writer w;
	fm__dns_record r;
	size_t len = 0;

	fm__dns_writer_init(&w, buf, cap, 0, 0);
	assert_int_equal(
	        fm__dns_add_question(&w, "_fedmesh._udp.local", FM__DNS_PTR,
	                             FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP),
	        0);
	rec_init(&r, "_fedmesh._udp.local", FM__DNS_PTR, FM__DNS_CLASS_IN,
	         TTL_SERVICE, FM__DNS_ANSWER);
	snprintf(r.rd.ptr, sizeof(r.rd.ptr), "peerA._fedmesh._udp.local");
	assert_int_equal(fm__dns_add_record(&w, &r), 0);
	snprintf(r.rd.ptr, sizeof(r.rd.ptr), "peerB._fedmesh._udp.local");
	assert_int_equal(fm__dns_add_record(&w, &r), 0);
	assert_int_equal(fm__dns_finish(&w, &len), 0);
	return len;
}

/* Wire length of a plain (unescaped, non-root) dotted name. */
static size_t plain_wire_len(const char *name)
{
	return strlen(name) + 2;
}

static int parse_copy(const uint8_t *pkt, size_t len, fm__dns_message *m)
{
	/* An exact-size heap copy, so ASan sees any read past the end. */
	uint8_t *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	if (len > 0)
		memcpy(copy, pkt, len);
	rc = fm__dns_parse(copy, len, m);
	free(copy);
	return rc;
}

static void expect_bad(const uint8_t *pkt, size_t len)
{
	fm__dns_message *m = msg_new();

	assert_int_equal(parse_copy(pkt, len, m), -EBADMSG);
	assert_int_equal(m->question_count, 0);
	assert_int_equal(m->record_count, 0);
	free(m);
}

static void expect_every_prefix_bad(const uint8_t *pkt, size_t len)
{
	fm__dns_message *m = msg_new();
	size_t cut;

	assert_int_equal(parse_copy(pkt, len, m), 0);
	for (cut = 0; cut < len; cut++)
		assert_int_equal(parse_copy(pkt, cut, m), -EBADMSG);
	free(m);
}

static size_t header(uint8_t *p, uint16_t flags, uint16_t qd, uint16_t an,
                     uint16_t ns, uint16_t ar)
{
	uint16_t v[6] = {0, flags, qd, an, ns, ar};
	size_t i;

	for (i = 0; i < 6; i++) {
		p[2 * i] = (uint8_t)(v[i] >> 8);
		p[2 * i + 1] = (uint8_t)v[i];
	}
	return HEADER_LEN;
}

static size_t put_bytes(uint8_t *p, const void *src, size_t n)
{
	memcpy(p, src, n);
	return n;
}

/* Labels of the given lengths ('a' bytes), then the root byte. */
static size_t put_labels(uint8_t *p, const size_t *lens, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		p[o++] = (uint8_t)lens[i];
		memset(p + o, 'a', lens[i]);
		o += lens[i];
	}
	p[o++] = 0;
	return o;
}

static size_t put_qtail(uint8_t *p)
{
	/* type A, class IN */
	return put_bytes(p, "\x00\x01\x00\x01", 4);
}

/* A record of `type` owned by the root name with the given RDATA. */
static size_t put_rr(uint8_t *p, uint16_t type, uint16_t rdlen,
                     const void *rdata, size_t rdata_len)
{
	size_t o = 0;

	p[o++] = 0;
	p[o++] = (uint8_t)(type >> 8);
	p[o++] = (uint8_t)type;
	o += put_bytes(p + o, "\x00\x01\x00\x00\x00\x78", 6);
	p[o++] = (uint8_t)(rdlen >> 8);
	p[o++] = (uint8_t)rdlen;
	if (rdata_len > 0)
		o += put_bytes(p + o, rdata, rdata_len);
	return o;
}

/* ---- packets written by hand -------------------------------------------- */

/* A query laid out as mDNSResponder sends one: two questions sharing
 * "_udp.local" by a pointer, the first asking for a unicast reply (QU,
 * RFC 6762 section 5.4), and a known answer (section 7.1) whose owner and
 * RDATA both point back at the first question. */
static const uint8_t hand_query[] = {
        0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        /* 12: _fedmesh._udp.local */
        0x08, '_', 'f', 'e', 'd', 'm', 'e', 's', 'h', 0x04, '_', 'u', 'd', 'p',
        0x05, 'l', 'o', 'c', 'a', 'l', 0x00,
        /* 33: PTR, IN | QU */
        0x00, 0x0c, 0x80, 0x01,
        /* 37: _services._dns-sd + pointer to 21 ("_udp.local") */
        0x09, '_', 's', 'e', 'r', 'v', 'i', 'c', 'e', 's', 0x07, '_', 'd', 'n',
        's', '-', 's', 'd', 0xc0, 0x15,
        /* 57: PTR, IN */
        0x00, 0x0c, 0x00, 0x01,
        /* 61: known answer, owner -> 12, PTR IN, TTL 4500, RDLENGTH 8 */
        0xc0, 0x0c, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x11, 0x94, 0x00, 0x08,
        /* 73: peer1 + pointer to 12 */
        0x05, 'p', 'e', 'e', 'r', '1', 0xc0, 0x0c};

/* A response laid out as mDNSResponder sends one to a browse: the PTR
 * answer, then SRV, TXT, A, AAAA and two NSEC records in the additional
 * section (RFC 6762 section 6.1), every NSEC next-domain name compressed,
 * as macOS does. */
static const uint8_t hand_apple[] = {
        0x00, 0x00, 0x84, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06,
        /* 12: _fedmesh._udp.local PTR IN 4500 */
        0x08, '_', 'f', 'e', 'd', 'm', 'e', 's', 'h', 0x04, '_', 'u', 'd', 'p',
        0x05, 'l', 'o', 'c', 'a', 'l', 0x00, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00,
        0x11, 0x94, 0x00, 0x08,
        /* 43: alpha + pointer to 12 */
        0x05, 'a', 'l', 'p', 'h', 'a', 0xc0, 0x0c,
        /* 51: SRV, owner -> 43, cache flush, 120 s, RDLENGTH 14 */
        0xc0, 0x2b, 0x00, 0x21, 0x80, 0x01, 0x00, 0x00, 0x00, 0x78, 0x00, 0x0e,
        /* 63: priority 0, weight 0, port 4242; 69: alpha + pointer to 26 */
        0x00, 0x00, 0x00, 0x00, 0x10, 0x92, 0x05, 'a', 'l', 'p', 'h', 'a', 0xc0,
        0x1a,
        /* 77: TXT, owner -> 43, RDLENGTH 10 */
        0xc0, 0x2b, 0x00, 0x10, 0x80, 0x01, 0x00, 0x00, 0x11, 0x94, 0x00, 0x0a,
        0x03, 'v', '=', '1', 0x05, 'k', '=', 'a', ' ', 'b',
        /* 99: A, owner -> 69 (alpha.local), 192.168.1.23 */
        0xc0, 0x45, 0x00, 0x01, 0x80, 0x01, 0x00, 0x00, 0x00, 0x78, 0x00, 0x04,
        0xc0, 0xa8, 0x01, 0x17,
        /* 115: AAAA, owner -> 69, fe80::1c2a:3bff:fe4d:5e6f */
        0xc0, 0x45, 0x00, 0x1c, 0x80, 0x01, 0x00, 0x00, 0x00, 0x78, 0x00, 0x10,
        0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1c, 0x2a, 0x3b, 0xff,
        0xfe, 0x4d, 0x5e, 0x6f,
        /* 143: NSEC for the instance: next name -> 43, bitmap TXT SRV */
        0xc0, 0x2b, 0x00, 0x2f, 0x80, 0x01, 0x00, 0x00, 0x11, 0x94, 0x00, 0x09,
        0xc0, 0x2b, 0x00, 0x05, 0x00, 0x00, 0x80, 0x00, 0x40,
        /* 164: NSEC for the host: next name -> 69, bitmap A AAAA */
        0xc0, 0x45, 0x00, 0x2f, 0x80, 0x01, 0x00, 0x00, 0x00, 0x78, 0x00, 0x08,
        0xc0, 0x45, 0x00, 0x04, 0x40, 0x00, 0x00, 0x08};

/* A host announcement laid out as Avahi sends one at start: A, HINFO (a
 * type the codec keeps raw) and the reverse PTR pointing back at the host
 * name, all with cache flush. */
static const uint8_t hand_avahi[] = {
        0x00, 0x00, 0x84, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00,
        /* 12: beta.local A 10.0.0.5 */
        0x04, 'b', 'e', 't', 'a', 0x05, 'l', 'o', 'c', 'a', 'l', 0x00, 0x00,
        0x01, 0x80, 0x01, 0x00, 0x00, 0x00, 0x78, 0x00, 0x04, 0x0a, 0x00, 0x00,
        0x05,
        /* 38: HINFO, owner -> 12, "X86_64" "LINUX" */
        0xc0, 0x0c, 0x00, 0x0d, 0x80, 0x01, 0x00, 0x00, 0x00, 0x78, 0x00, 0x0d,
        0x06, 'X', '8', '6', '_', '6', '4', 0x05, 'L', 'I', 'N', 'U', 'X',
        /* 63: 5.0.0.10.in-addr.arpa PTR -> 12 */
        0x01, '5', 0x01, '0', 0x01, '0', 0x02, '1', '0', 0x07, 'i', 'n', '-',
        'a', 'd', 'd', 'r', 0x04, 'a', 'r', 'p', 'a', 0x00, 0x00, 0x0c, 0x80,
        0x01, 0x00, 0x00, 0x00, 0x78, 0x00, 0x02, 0xc0, 0x0c};

/* ---- round trips -------------------------------------------------------- */

static void test_response_round_trip(void **state)
{
	uint8_t buf[TEST_BUF_MAX];
	fm__dns_record r[5];
	fm__dns_message *m = msg_new();
	size_t n = dnssd_records(r), len, i;

	(void)state;
	len = build_response(buf, sizeof(buf));
	assert_int_equal(fm__dns_parse(buf, len, m), 0);
	assert_int_equal(m->flags, FM__DNS_FLAG_QR | FM__DNS_FLAG_AA);
	assert_int_equal(m->qdcount, 0);
	assert_int_equal(m->ancount, 3);
	assert_int_equal(m->nscount, 0);
	assert_int_equal(m->arcount, 2);
	assert_int_equal(m->record_count, n);
	for (i = 0; i < n; i++)
		assert_memory_equal(&m->records[i], &r[i], sizeof(r[i]));
	assert_string_equal(m->records[2].rd.txt.strings[1], "id=" ID_HEX);
	assert_int_equal(m->records[1].rd.srv.port, 4242);
	free(m);
}

static void test_query_round_trip(void **state)
{
	uint8_t buf[TEST_BUF_MAX];
	fm__dns_message *m = msg_new();
	size_t len;

	(void)state;
	len = build_query(buf, sizeof(buf));
	assert_int_equal(fm__dns_parse(buf, len, m), 0);
	assert_int_equal(m->flags, 0);
	assert_int_equal(m->question_count, 1);
	assert_string_equal(m->questions[0].name, "_fedmesh._udp.local");
	assert_int_equal(m->questions[0].type, FM__DNS_PTR);
	assert_int_equal(m->questions[0].class_,
	                 FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP);
	assert_int_equal(m->record_count, 2);
	assert_int_equal(m->records[0].section, FM__DNS_ANSWER);
	assert_int_equal(m->records[0].class_, FM__DNS_CLASS_IN);
	assert_int_equal(m->records[0].ttl, TTL_SERVICE);
	assert_string_equal(m->records[0].name, "_fedmesh._udp.local");
	assert_string_equal(m->records[0].rd.ptr, "peerA._fedmesh._udp.local");
	assert_string_equal(m->records[1].rd.ptr, "peerB._fedmesh._udp.local");
	/* The known answers' owner is a pointer to the question's name. */
	assert_int_equal(buf[HEADER_LEN + 21 + 4], 0xc0);
	assert_int_equal(buf[HEADER_LEN + 21 + 4 + 1], HEADER_LEN);
	free(m);
}

static void test_compression(void **state)
{
	uint8_t buf[TEST_BUF_MAX];
	fm__dns_record r[5];
	size_t n = dnssd_records(r), len, plain = HEADER_LEN, i;

	(void)state;
	for (i = 0; i < n; i++) {
		size_t rd = 0, k;

		switch (r[i].type) {
		case FM__DNS_PTR:
			rd = plain_wire_len(r[i].rd.ptr);
			break;
		case FM__DNS_SRV:
			rd = 6 + plain_wire_len(r[i].rd.srv.target);
			break;
		case FM__DNS_TXT:
			for (k = 0; k < r[i].rd.txt.count; k++)
				rd += 1 + strlen(r[i].rd.txt.strings[k]);
			break;
		case FM__DNS_A:
			rd = 4;
			break;
		default:
			rd = 16;
			break;
		}
		plain += plain_wire_len(r[i].name) + 10 + rd;
	}
	len = build_response(buf, sizeof(buf));
	assert_int_equal(plain, 316);
	assert_true(len < plain);
	/* Every repeated suffix becomes a pointer: the service type once in
	 * full, "inst" and "host" once each, every later owner 2 bytes. */
	assert_int_equal(len, 224);
}

static void test_escaped_names(void **state)
{
	/* A DNS-SD instance name with a dot, a backslash, a space and UTF-8,
	 * as Apple devices publish them. */
	static const char inst[] = "My Printer\\.2 \\\\ caf\\195\\169"
	                           "._fedmesh._udp.local";
	static const uint8_t label[] = "\x14My Printer.2 \\ caf\xc3\xa9";
	uint8_t buf[TEST_BUF_MAX];
	fm__dns_record r;
	fm__dns_message *m = msg_new();
	size_t len;

	(void)state;
	rec_init(&r, "_fedmesh._udp.local", FM__DNS_PTR, FM__DNS_CLASS_IN,
	         TTL_SERVICE, FM__DNS_ANSWER);
	snprintf(r.rd.ptr, sizeof(r.rd.ptr), "%s", inst);
	len = write_records(buf, sizeof(buf), FM__DNS_FLAG_QR, &r, 1);
	assert_non_null(memmem(buf, len, label, sizeof(label) - 1));
	assert_int_equal(fm__dns_parse(buf, len, m), 0);
	assert_int_equal(m->record_count, 1);
	assert_string_equal(m->records[0].rd.ptr, inst);
	assert_memory_equal(&m->records[0], &r, sizeof(r));
	free(m);
}

static void test_name_equal(void **state)
{
	(void)state;
	assert_true(fm__dns_name_equal("_FedMesh._UDP.Local",
	                               "_fedmesh._udp.local"));
	assert_true(fm__dns_name_equal("host.local.", "HOST.local"));
	assert_true(fm__dns_name_equal("", "."));
	assert_true(fm__dns_name_equal("\\065b.local", "ab.LOCAL"));
	assert_true(fm__dns_name_equal("a\\.b.local", "A\\.B.local"));
	assert_false(fm__dns_name_equal("a\\.b.local", "a.b.local"));
	assert_false(fm__dns_name_equal("host.local", "host.local.x"));
	assert_false(fm__dns_name_equal("host.local", "hosts.local"));
	/* Only ASCII folds: é (c3 a9) and É (c3 89) differ. */
	assert_false(fm__dns_name_equal("caf\\195\\169", "caf\\195\\137"));
	/* Invalid names are equal to nothing, themselves included. */
	assert_false(fm__dns_name_equal("a..b", "a..b"));
	assert_false(fm__dns_name_equal("a\\2", "a\\2"));
	assert_false(fm__dns_name_equal(NULL, "a"));
	assert_false(fm__dns_name_equal("a", NULL));
}

/* ---- packets from other implementations --------------------------------- */

static void test_hand_query(void **state)
{
	fm__dns_message *m = msg_new();

	(void)state;
	assert_int_equal(sizeof(hand_query), 81);
	assert_int_equal(fm__dns_parse(hand_query, sizeof(hand_query), m), 0);
	assert_int_equal(m->question_count, 2);
	assert_string_equal(m->questions[0].name, "_fedmesh._udp.local");
	assert_int_equal(m->questions[0].class_,
	                 FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP);
	assert_string_equal(m->questions[1].name,
	                    "_services._dns-sd._udp.local");
	assert_int_equal(m->questions[1].type, FM__DNS_PTR);
	assert_int_equal(m->questions[1].class_, FM__DNS_CLASS_IN);
	assert_int_equal(m->record_count, 1);
	assert_string_equal(m->records[0].name, "_fedmesh._udp.local");
	assert_string_equal(m->records[0].rd.ptr, "peer1._fedmesh._udp.local");
	assert_int_equal(m->records[0].ttl, TTL_SERVICE);
	free(m);
}

static void test_hand_apple(void **state)
{
	static const uint8_t next[] = "\x05"
	                              "alpha"
	                              "\x08_fedmesh\x04_udp\x05local";
	static const uint8_t v6[16] = {0xfe, 0x80, 0,    0,    0,    0,
	                               0,    0,    0x1c, 0x2a, 0x3b, 0xff,
	                               0xfe, 0x4d, 0x5e, 0x6f};
	fm__dns_message *m = msg_new();
	const fm__dns_record *r = m->records;

	(void)state;
	assert_int_equal(sizeof(hand_apple), 184);
	assert_int_equal(fm__dns_parse(hand_apple, sizeof(hand_apple), m), 0);
	assert_int_equal(m->flags, FM__DNS_FLAG_QR | FM__DNS_FLAG_AA);
	assert_int_equal(m->record_count, 7);
	assert_int_equal(r[0].section, FM__DNS_ANSWER);
	assert_string_equal(r[0].rd.ptr, "alpha._fedmesh._udp.local");
	assert_int_equal(r[1].type, FM__DNS_SRV);
	assert_int_equal(r[1].section, FM__DNS_ADDITIONAL);
	assert_int_equal(r[1].class_, FM__DNS_CLASS_IN | FM__DNS_CLASS_TOP);
	assert_string_equal(r[1].name, "alpha._fedmesh._udp.local");
	assert_int_equal(r[1].rd.srv.port, 4242);
	assert_string_equal(r[1].rd.srv.target, "alpha.local");
	assert_int_equal(r[2].rd.txt.count, 2);
	assert_string_equal(r[2].rd.txt.strings[0], "v=1");
	assert_string_equal(r[2].rd.txt.strings[1], "k=a b");
	assert_int_equal(r[2].rd.txt.truncated, 0);
	assert_string_equal(r[3].name, "alpha.local");
	assert_memory_equal(r[3].rd.a, "\xc0\xa8\x01\x17", 4);
	assert_memory_equal(r[4].rd.aaaa, v6, 16);
	/* NSEC kept raw, its next-domain name decompressed. */
	assert_int_equal(r[5].type, FM__DNS_NSEC);
	assert_string_equal(r[5].name, "alpha._fedmesh._udp.local");
	assert_int_equal(r[5].rd.raw.len, sizeof(next) + 7);
	assert_memory_equal(r[5].rd.raw.data, next, sizeof(next));
	assert_memory_equal(r[5].rd.raw.data + sizeof(next),
	                    "\x00\x05\x00\x00\x80\x00\x40", 7);
	assert_int_equal(r[5].rd.raw.truncated, 0);
	assert_string_equal(r[6].name, "alpha.local");
	assert_int_equal(r[6].rd.raw.len, 13 + 6);
	assert_memory_equal(r[6].rd.raw.data,
	                    "\x05"
	                    "alpha\x05local",
	                    13);
	free(m);
}

static void test_hand_avahi(void **state)
{
	fm__dns_message *m = msg_new();
	const fm__dns_record *r = m->records;

	(void)state;
	assert_int_equal(sizeof(hand_avahi), 98);
	assert_int_equal(fm__dns_parse(hand_avahi, sizeof(hand_avahi), m), 0);
	assert_int_equal(m->record_count, 3);
	assert_string_equal(r[0].name, "beta.local");
	assert_memory_equal(r[0].rd.a, "\x0a\x00\x00\x05", 4);
	assert_int_equal(r[1].type, TYPE_HINFO);
	assert_int_equal(r[1].rd.raw.len, 13);
	assert_memory_equal(r[1].rd.raw.data, "\x06X86_64\x05LINUX", 13);
	assert_string_equal(r[2].name, "5.0.0.10.in-addr.arpa");
	assert_string_equal(r[2].rd.ptr, "beta.local");
	free(m);
}

static void test_writer_keeps_raw_and_nsec(void **state)
{
	/* Parsed records of every kind write back and re-parse the same. */
	const uint8_t *pkts[] = {hand_query, hand_apple, hand_avahi};
	const size_t lens[] = {sizeof(hand_query), sizeof(hand_apple),
	                       sizeof(hand_avahi)};
	uint8_t buf[TEST_BUF_MAX];
	fm__dns_message *a = msg_new(), *b = msg_new();
	size_t p, i, len;

	(void)state;
	for (p = 0; p < 3; p++) {
		fm__dns_writer w;

		assert_int_equal(fm__dns_parse(pkts[p], lens[p], a), 0);
		fm__dns_writer_init(&w, buf, sizeof(buf), a->id, a->flags);
		for (i = 0; i < a->question_count; i++)
			assert_int_equal(
			        fm__dns_add_question(&w, a->questions[i].name,
			                             a->questions[i].type,
			                             a->questions[i].class_),
			        0);
		for (i = 0; i < a->record_count; i++)
			assert_int_equal(fm__dns_add_record(&w, &a->records[i]),
			                 0);
		assert_int_equal(fm__dns_finish(&w, &len), 0);
		assert_int_equal(fm__dns_parse(buf, len, b), 0);
		assert_int_equal(b->question_count, a->question_count);
		assert_int_equal(b->record_count, a->record_count);
		assert_memory_equal(b->questions, a->questions,
		                    sizeof(a->questions));
		assert_memory_equal(b->records, a->records,
		                    sizeof(a->records[0]) * a->record_count);
	}
	free(a);
	free(b);
}

/* ---- the writer's limits ------------------------------------------------ */

static void test_writer_errors(void **state)
{
	uint8_t buf[TEST_BUF_MAX];
	char long_label[FM__DNS_LABEL_MAX + 8];
	fm__dns_writer w;
	fm__dns_record r;

	(void)state;
	memset(long_label, 'a', FM__DNS_LABEL_MAX + 1);
	long_label[FM__DNS_LABEL_MAX + 1] = '\0';
	fm__dns_writer_init(&w, buf, sizeof(buf), 0, 0);
	assert_int_equal(fm__dns_add_question(&w, "a..b", 1, 1), -EINVAL);
	assert_int_equal(fm__dns_add_question(&w, ".a", 1, 1), -EINVAL);
	assert_int_equal(fm__dns_add_question(&w, "a\\25", 1, 1), -EINVAL);
	assert_int_equal(fm__dns_add_question(&w, "a\\256", 1, 1), -EINVAL);
	assert_int_equal(fm__dns_add_question(&w, "a\\", 1, 1), -EINVAL);
	assert_int_equal(fm__dns_add_question(&w, long_label, 1, 1), -EINVAL);
	long_label[FM__DNS_LABEL_MAX] = '\0';
	assert_int_equal(fm__dns_add_question(&w, long_label, 1, 1), 0);
	assert_int_equal(w.len, HEADER_LEN + 1 + FM__DNS_LABEL_MAX + 1 + 4);

	rec_init(&r, "x.local", FM__DNS_A, 1, 1, FM__DNS_ADDITIONAL);
	assert_int_equal(fm__dns_add_record(&w, &r), 0);
	/* Sections in order, questions first. */
	r.section = FM__DNS_ANSWER;
	assert_int_equal(fm__dns_add_record(&w, &r), -EINVAL);
	r.section = 3;
	assert_int_equal(fm__dns_add_record(&w, &r), -EINVAL);
	assert_int_equal(fm__dns_add_question(&w, "x.local", 1, 1), -EINVAL);
	/* A cut copy is not written. */
	rec_init(&r, "x.local", FM__DNS_TXT, 1, 1, FM__DNS_ADDITIONAL);
	add_txt(&r, "a");
	r.rd.txt.truncated = 1;
	assert_int_equal(fm__dns_add_record(&w, &r), -EINVAL);
	rec_init(&r, "x.local", TYPE_PRIVATE, 1, 1, FM__DNS_ADDITIONAL);
	r.rd.raw.len = 3;
	r.rd.raw.truncated = 1;
	assert_int_equal(fm__dns_add_record(&w, &r), -EINVAL);
	r.rd.raw.truncated = 0;
	r.rd.raw.len = FM__DNS_RDATA_MAX + 1;
	assert_int_equal(fm__dns_add_record(&w, &r), -EINVAL);
	/* None of the refused entries left a byte behind. */
	assert_int_equal(w.len, HEADER_LEN + 1 + FM__DNS_LABEL_MAX + 1 + 4 + 9 +
	                                10 + 4);
	assert_int_equal(w.overflow, 0);
}

static void test_writer_empty_txt(void **state)
{
	uint8_t buf[TEST_BUF_MAX];
	fm__dns_record r;
	fm__dns_message *m = msg_new();
	size_t len;

	(void)state;
	/* Count 0 is written as one empty string, never an empty RDATA. */
	rec_init(&r, "x.local", FM__DNS_TXT, 1, 1, FM__DNS_ANSWER);
	len = write_records(buf, sizeof(buf), 0, &r, 1);
	assert_int_equal(buf[len - 3], 0);
	assert_int_equal(buf[len - 2], 1);
	assert_int_equal(buf[len - 1], 0);
	assert_int_equal(fm__dns_parse(buf, len, m), 0);
	assert_int_equal(m->records[0].rd.txt.count, 1);
	assert_string_equal(m->records[0].rd.txt.strings[0], "");
	free(m);
}

static void test_writer_overflow(void **state)
{
	enum { CAP = 100, CANARY = 32 };
	uint8_t buf[CAP + CANARY], canary[CANARY];
	fm__dns_record r[5];
	fm__dns_writer w;
	fm__dns_message *m = msg_new();
	size_t n = dnssd_records(r), i, len = 0, fitted = 0;
	int rc;

	(void)state;
	memset(canary, 0xa5, sizeof(canary));
	memset(buf, 0xa5, sizeof(buf));
	fm__dns_writer_init(&w, buf, CAP, 7, FM__DNS_FLAG_QR);
	for (i = 0; i < n; i++) {
		rc = fm__dns_add_record(&w, &r[i]);
		assert_true(rc == 0 || rc == -ENOSPC);
		fitted += rc == 0;
		assert_true(w.len <= CAP);
	}
	assert_true(fitted > 0 && fitted < n);
	assert_int_equal(fm__dns_finish(&w, &len), -ENOSPC);
	assert_memory_equal(buf + CAP, canary, CANARY);
	/* What fit is still a whole, well-formed packet. */
	assert_int_equal(fm__dns_parse(buf, len, m), 0);
	assert_int_equal(m->record_count, fitted);

	/* A buffer smaller than the header. */
	memset(buf, 0xa5, sizeof(buf));
	fm__dns_writer_init(&w, buf, HEADER_LEN - 1, 0, 0);
	assert_int_equal(fm__dns_add_question(&w, "a.local", 1, 1), -ENOSPC);
	assert_int_equal(fm__dns_finish(&w, &len), -ENOSPC);
	assert_memory_equal(buf, canary, CANARY);
	free(m);
}

/* The largest packet accepted, written with the writer (whose capacity is
 * clamped to FM__DNS_PACKET_MAX), then one byte more. */
static void test_packet_max(void **state)
{
	uint8_t *buf = malloc(FM__DNS_PACKET_MAX + 64);
	fm__dns_message *m = msg_new();
	fm__dns_writer w;
	fm__dns_record r;
	size_t len = 0, added = 0;

	(void)state;
	assert_non_null(buf);
	fm__dns_writer_init(&w, buf, FM__DNS_PACKET_MAX + 64, 0, 0);
	rec_init(&r, "", TYPE_PRIVATE, 1, 0, FM__DNS_ANSWER);
	r.rd.raw.len = FM__DNS_RDATA_MAX;
	memset(r.rd.raw.data, 0x5a, FM__DNS_RDATA_MAX);
	while (fm__dns_add_record(&w, &r) == 0)
		added++;
	/* Fill the rest exactly: 11 bytes of record around the RDATA. */
	w.overflow = 0;
	r.rd.raw.len = (uint16_t)(FM__DNS_PACKET_MAX - w.len - 11);
	assert_int_equal(fm__dns_add_record(&w, &r), 0);
	added++;
	assert_int_equal(fm__dns_finish(&w, &len), 0);
	assert_int_equal(len, FM__DNS_PACKET_MAX);
	assert_int_equal(parse_copy(buf, len, m), 0);
	assert_int_equal(m->ancount, added);
	assert_int_equal(m->record_count, added);
	buf[len] = 0;
	assert_int_equal(parse_copy(buf, len + 1, m), -EMSGSIZE);
	free(buf);
	free(m);
}

/* ---- limits of what is kept --------------------------------------------- */

static void test_counts_beyond_kept(void **state)
{
	enum {
		QUESTIONS = FM__DNS_QUESTIONS_MAX + 4,
		RECORDS = FM__DNS_RECORDS_MAX + 8
	};
	uint8_t buf[TEST_BUF_MAX];
	fm__dns_message *m = msg_new();
	fm__dns_writer w;
	fm__dns_record r;
	size_t len = 0, i;

	(void)state;
	fm__dns_writer_init(&w, buf, sizeof(buf), 0, 0);
	for (i = 0; i < QUESTIONS; i++)
		assert_int_equal(fm__dns_add_question(&w, "q.local", 1, 1), 0);
	rec_init(&r, "h.local", FM__DNS_A, 1, 1, FM__DNS_ANSWER);
	for (i = 0; i < RECORDS; i++) {
		r.rd.a[3] = (uint8_t)i;
		assert_int_equal(fm__dns_add_record(&w, &r), 0);
	}
	/* The last one, beyond the kept limit, is a private type. */
	rec_init(&r, "h.local", TYPE_PRIVATE, 1, 1, FM__DNS_ANSWER);
	r.rd.raw.len = 5;
	assert_int_equal(fm__dns_add_record(&w, &r), 0);
	assert_int_equal(fm__dns_finish(&w, &len), 0);
	assert_int_equal(fm__dns_parse(buf, len, m), 0);
	assert_int_equal(m->qdcount, QUESTIONS);
	assert_int_equal(m->question_count, FM__DNS_QUESTIONS_MAX);
	assert_int_equal(m->ancount, RECORDS + 1);
	assert_int_equal(m->record_count, FM__DNS_RECORDS_MAX);
	assert_int_equal(m->records[FM__DNS_RECORDS_MAX - 1].rd.a[3],
	                 FM__DNS_RECORDS_MAX - 1);
	/* Skipped records are still checked: turn the last into an A record
	 * with 5 bytes of RDATA. */
	buf[len - 5 - 10 + 1] = FM__DNS_A;
	buf[len - 5 - 10] = 0;
	expect_bad(buf, len);
	free(m);
}

static void test_txt_limits(void **state)
{
	uint8_t pkt[TEST_BUF_MAX], rd[TEST_BUF_MAX];
	fm__dns_message *m = msg_new();
	size_t o, n = 0, i;

	(void)state;
	/* A NUL inside a string: cut there, flagged. */
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_TXT, 8,
	            "\x03"
	            "a\0b\x03"
	            "cde",
	            8);
	assert_int_equal(fm__dns_parse(pkt, o, m), 0);
	assert_int_equal(m->records[0].rd.txt.count, 2);
	assert_string_equal(m->records[0].rd.txt.strings[0], "a");
	assert_string_equal(m->records[0].rd.txt.strings[1], "cde");
	assert_int_equal(m->records[0].rd.txt.truncated, 1);
	/* More strings than kept: the first ones, flagged. */
	for (i = 0; i < FM__DNS_TXT_STRINGS_MAX + 4; i++) {
		rd[n++] = 1;
		rd[n++] = (uint8_t)('a' + i);
	}
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_TXT, (uint16_t)n, rd, n);
	assert_int_equal(fm__dns_parse(pkt, o, m), 0);
	assert_int_equal(m->records[0].rd.txt.count, FM__DNS_TXT_STRINGS_MAX);
	assert_int_equal(m->records[0].rd.txt.truncated, 1);
	/* An empty TXT RDATA is one empty string. */
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_TXT, 0, NULL, 0);
	assert_int_equal(fm__dns_parse(pkt, o, m), 0);
	assert_int_equal(m->records[0].rd.txt.count, 1);
	assert_string_equal(m->records[0].rd.txt.strings[0], "");
	/* A 255-byte string is kept whole. */
	rd[0] = 255;
	memset(rd + 1, 'z', 255);
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_TXT, 256, rd, 256);
	assert_int_equal(fm__dns_parse(pkt, o, m), 0);
	assert_int_equal(strlen(m->records[0].rd.txt.strings[0]), 255);
	free(m);
}

static void test_raw_truncated(void **state)
{
	enum { BIG = FM__DNS_RDATA_MAX + 88 };
	uint8_t pkt[HEADER_LEN + 11 + BIG], rd[BIG];
	fm__dns_message *m = msg_new();
	size_t o, i;

	(void)state;
	for (i = 0; i < BIG; i++)
		rd[i] = (uint8_t)i;
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, TYPE_PRIVATE, BIG, rd, BIG);
	assert_int_equal(fm__dns_parse(pkt, o, m), 0);
	assert_int_equal(m->records[0].rd.raw.len, FM__DNS_RDATA_MAX);
	assert_int_equal(m->records[0].rd.raw.truncated, 1);
	assert_memory_equal(m->records[0].rd.raw.data, rd, FM__DNS_RDATA_MAX);
	/* Its RDLENGTH must still fit the packet. */
	expect_bad(pkt, o - 1);
	free(m);
}

static void test_name_limits(void **state)
{
	const size_t ok63[] = {FM__DNS_LABEL_MAX};
	const size_t bad64[] = {FM__DNS_LABEL_MAX + 1};
	/* 3 * 64 + 62 + 1 = 255 octets; one more byte is 256. */
	const size_t ok255[] = {63, 63, 63, 61};
	const size_t bad256[] = {63, 63, 63, 62};
	uint8_t pkt[TEST_BUF_MAX];
	fm__dns_message *m = msg_new();
	size_t o;

	(void)state;
	o = header(pkt, 0, 1, 0, 0, 0);
	o += put_labels(pkt + o, ok63, 1);
	o += put_qtail(pkt + o);
	assert_int_equal(fm__dns_parse(pkt, o, m), 0);
	assert_int_equal(strlen(m->questions[0].name), FM__DNS_LABEL_MAX);

	o = header(pkt, 0, 1, 0, 0, 0);
	o += put_labels(pkt + o, bad64, 1);
	o += put_qtail(pkt + o);
	expect_bad(pkt, o);

	o = header(pkt, 0, 1, 0, 0, 0);
	o += put_labels(pkt + o, ok255, 4);
	o += put_qtail(pkt + o);
	assert_int_equal(fm__dns_parse(pkt, o, m), 0);
	assert_int_equal(strlen(m->questions[0].name), 253);
	/* The writer takes it back, and nothing longer. */
	{
		uint8_t out[TEST_BUF_MAX];
		char longer[FM__DNS_NAME_MAX + 8];
		fm__dns_writer w;

		fm__dns_writer_init(&w, out, sizeof(out), 0, 0);
		assert_int_equal(
		        fm__dns_add_question(&w, m->questions[0].name, 1, 1),
		        0);
		snprintf(longer, sizeof(longer), "%sa", m->questions[0].name);
		assert_int_equal(fm__dns_add_question(&w, longer, 1, 1),
		                 -EINVAL);
	}

	o = header(pkt, 0, 1, 0, 0, 0);
	o += put_labels(pkt + o, bad256, 4);
	o += put_qtail(pkt + o);
	expect_bad(pkt, o);

	/* Over 255 only once a pointer is followed: x + the 255 above. */
	o = header(pkt, 0, 2, 0, 0, 0);
	o += put_labels(pkt + o, ok255, 4);
	o += put_qtail(pkt + o);
	o += put_bytes(pkt + o, "\x01x\xc0\x0c", 4);
	o += put_qtail(pkt + o);
	expect_bad(pkt, o);

	/* Extended label types 01 and 10 are refused. */
	o = header(pkt, 0, 1, 0, 0, 0);
	o += put_bytes(pkt + o, "\x80\x01\x00", 3);
	o += put_qtail(pkt + o);
	expect_bad(pkt, o);
	free(m);
}

static void test_name_too_long_to_escape(void **state)
{
	/* 255 octets on the wire, every byte escaped as \DDD: legal, but
	 * with no presentation form within FM__DNS_NAME_MAX. The question
	 * and the record holding it are skipped, the rest is kept. */
	uint8_t pkt[TEST_BUF_MAX];
	fm__dns_message *m = msg_new();
	size_t o, i, lens[4] = {63, 63, 63, 61}, at;

	(void)state;
	o = header(pkt, 0, 2, 2, 0, 0);
	at = o;
	o += put_labels(pkt + o, lens, 4);
	for (i = at; i < o; i++)
		if (pkt[i] == 'a')
			pkt[i] = 0x01;
	o += put_qtail(pkt + o);
	o += put_bytes(pkt + o, "\x01q\x00", 3);
	o += put_qtail(pkt + o);
	/* A record owned by it, then a PTR record pointing to it. */
	o += put_bytes(pkt + o, "\xc0\x0c", 2);
	o += put_bytes(pkt + o, "\x00\x01\x00\x01\x00\x00\x00\x78\x00\x04", 10);
	o += put_bytes(pkt + o, "\x01\x02\x03\x04", 4);
	o += put_bytes(pkt + o, "\x01r\x00", 3);
	o += put_bytes(pkt + o, "\x00\x0c\x00\x01\x00\x00\x00\x78\x00\x02", 10);
	o += put_bytes(pkt + o, "\xc0\x0c", 2);
	assert_int_equal(fm__dns_parse(pkt, o, m), 0);
	assert_int_equal(m->question_count, 1);
	assert_string_equal(m->questions[0].name, "q");
	assert_int_equal(m->record_count, 0);
	free(m);
}

/* ---- malformed packets -------------------------------------------------- */

static void test_truncation_everywhere(void **state)
{
	uint8_t buf[TEST_BUF_MAX];
	size_t len;

	(void)state;
	len = build_response(buf, sizeof(buf));
	expect_every_prefix_bad(buf, len);
	len = build_query(buf, sizeof(buf));
	expect_every_prefix_bad(buf, len);
	expect_every_prefix_bad(hand_query, sizeof(hand_query));
	expect_every_prefix_bad(hand_apple, sizeof(hand_apple));
	expect_every_prefix_bad(hand_avahi, sizeof(hand_avahi));
}

static void test_bad_pointers(void **state)
{
	uint8_t pkt[TEST_BUF_MAX];
	size_t o, k;

	(void)state;
	/* Forward: 12 points at 16. */
	o = header(pkt, 0, 1, 0, 0, 0);
	o += put_bytes(pkt + o, "\xc0\x10\x00\x01\x00\x01", 6);
	expect_bad(pkt, o);
	/* Self: 12 points at 12. */
	o = header(pkt, 0, 1, 0, 0, 0);
	o += put_bytes(pkt + o, "\xc0\x0c", 2);
	o += put_qtail(pkt + o);
	expect_bad(pkt, o);
	/* Backwards from the pointer but into its own name: "a" then a
	 * pointer to that "a", which would repeat forever. */
	o = header(pkt, 0, 1, 0, 0, 0);
	o += put_bytes(pkt + o,
	               "\x01"
	               "a\xc0\x0c",
	               4);
	o += put_qtail(pkt + o);
	expect_bad(pkt, o);
	/* A loop between two names: 12 -> 20 -> 12. */
	o = header(pkt, 0, 2, 0, 0, 0);
	o += put_bytes(pkt + o,
	               "\x01"
	               "a\xc0\x14",
	               4);
	o += put_qtail(pkt + o);
	o += put_bytes(pkt + o, "\xc0\x0c", 2);
	o += put_qtail(pkt + o);
	assert_int_equal(o, 26);
	expect_bad(pkt, o);
	/* Into the header, at 0 and at 4. */
	for (k = 0; k < HEADER_LEN; k += 4) {
		o = header(pkt, 0, 1, 0, 0, 0);
		pkt[o++] = 0xc0;
		pkt[o++] = (uint8_t)k;
		o += put_qtail(pkt + o);
		expect_bad(pkt, o);
	}
	/* A pointer whose second byte is missing. */
	o = header(pkt, 0, 1, 0, 0, 0);
	pkt[o++] = 0xc0;
	expect_bad(pkt, o);
	/* In RDATA, a PTR pointing at its own RDATA. */
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_PTR, 2, "\xc0\x17", 2);
	assert_int_equal(o, 25);
	expect_bad(pkt, o);
	/* Backwards from the pointer, into the middle of its own name, where
	 * the bytes happen to end the name: no loop, and a parser that only
	 * asks "before the pointer?" accepts it. PTR RDATA at 23 is the
	 * label {00 'A'}, then a pointer at 26 to 24. */
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_PTR, 5,
	            "\x02\x00"
	            "A\xc0\x18",
	            5);
	expect_bad(pkt, o);
	/* A target before the name, whose label runs on into the name that
	 * points there: the TTL's last byte (at 20) is 4, so the "label"
	 * spans RDLENGTH and the pointer itself, and a 0 after the record
	 * would end it. */
	o = header(pkt, 0, 0, 1, 0, 0);
	pkt[o++] = 0;
	o += put_bytes(pkt + o, "\x00\x0c\x00\x01\x00\x00\x00\x04\x00\x02", 10);
	o += put_bytes(pkt + o, "\xc0\x14", 2);
	pkt[o++] = 0; /* trailing byte, ignored by itself */
	expect_bad(pkt, o);
}

static void test_pointer_hops(void **state)
{
	/* Question 0 is "a"; question k points at question k-1's name, so
	 * its name takes k hops. */
	uint8_t pkt[TEST_BUF_MAX];
	fm__dns_message *m = msg_new();
	size_t o, k, prev;
	uint16_t qd;

	(void)state;
	for (qd = FM__DNS_POINTER_HOPS_MAX + 1;
	     qd <= FM__DNS_POINTER_HOPS_MAX + 2; qd++) {
		o = header(pkt, 0, qd, 0, 0, 0);
		prev = o;
		o += put_bytes(pkt + o,
		               "\x01"
		               "a\x00",
		               3);
		o += put_qtail(pkt + o);
		for (k = 1; k < qd; k++) {
			size_t here = o;

			pkt[o++] = (uint8_t)(0xc0 | (prev >> 8));
			pkt[o++] = (uint8_t)prev;
			o += put_qtail(pkt + o);
			prev = here;
		}
		if (qd == FM__DNS_POINTER_HOPS_MAX + 1) {
			assert_int_equal(fm__dns_parse(pkt, o, m), 0);
			assert_string_equal(m->questions[15].name, "a");
		} else {
			expect_bad(pkt, o);
		}
	}
	free(m);
}

static void test_bad_rdata(void **state)
{
	uint8_t pkt[TEST_BUF_MAX];
	size_t o;

	(void)state;
	/* RDLENGTH 16 with 4 bytes left. */
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_A, 16, "\x01\x02\x03\x04", 4);
	expect_bad(pkt, o);
	/* A with 5 and 3 bytes, AAAA with 15. */
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_A, 5, "\x01\x02\x03\x04\x05", 5);
	expect_bad(pkt, o);
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_A, 3, "\x01\x02\x03", 3);
	expect_bad(pkt, o);
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_AAAA, 15, "0123456789abcde", 15);
	expect_bad(pkt, o);
	/* TXT strings not filling RDLENGTH: a last string claiming 5 bytes
	 * with none left, and one claiming past RDLENGTH into bytes that do
	 * exist in the packet. */
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_TXT, 5,
	            "\x03"
	            "abc\x05",
	            5);
	expect_bad(pkt, o);
	o = header(pkt, 0, 0, 2, 0, 0);
	o += put_rr(pkt + o, FM__DNS_TXT, 3,
	            "\x03"
	            "ab",
	            3);
	o += put_rr(pkt + o, FM__DNS_A, 4, "\x01\x02\x03\x04", 4);
	expect_bad(pkt, o);
	/* PTR with a byte after its name; SRV without a name; NSEC empty. */
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_PTR, 4, "\x01x\x00\x00", 4);
	expect_bad(pkt, o);
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_SRV, 6, "\x00\x00\x00\x00\x10\x92", 6);
	expect_bad(pkt, o);
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, FM__DNS_NSEC, 0, NULL, 0);
	expect_bad(pkt, o);
	/* A PTR name running past RDLENGTH into the next record. */
	o = header(pkt, 0, 0, 2, 0, 0);
	o += put_rr(pkt + o, FM__DNS_PTR, 2, "\x01x", 2);
	o += put_rr(pkt + o, FM__DNS_A, 4, "\x01\x02\x03\x04", 4);
	expect_bad(pkt, o);
	/* An unknown type whose RDLENGTH runs past the end. */
	o = header(pkt, 0, 0, 1, 0, 0);
	o += put_rr(pkt + o, TYPE_PRIVATE, 9, "\x01\x02\x03\x04", 4);
	expect_bad(pkt, o);
}

static void test_bad_counts_and_sizes(void **state)
{
	uint8_t pkt[FM__DNS_PACKET_MAX + 1];
	fm__dns_message *m = msg_new();
	size_t o;

	(void)state;
	/* 4 x 65535 entries claimed in 30 bytes. */
	memset(pkt, 0, sizeof(pkt));
	header(pkt, 0, 0xffff, 0xffff, 0xffff, 0xffff);
	expect_bad(pkt, 30);
	/* ... and records claimed that are not there. */
	o = header(pkt, 0, 0, 0, 0, 1);
	expect_bad(pkt, o);
	/* Short headers; the empty packet; an empty valid one. */
	expect_bad(pkt, 0);
	expect_bad(pkt, HEADER_LEN - 1);
	o = header(pkt, 0, 0, 0, 0, 0);
	assert_int_equal(fm__dns_parse(pkt, o, m), 0);
	/* Oversize, even if well-formed. */
	assert_int_equal(parse_copy(pkt, FM__DNS_PACKET_MAX + 1, m), -EMSGSIZE);
	assert_int_equal(fm__dns_parse(pkt, SIZE_MAX, m), -EMSGSIZE);
	assert_int_equal(fm__dns_parse(NULL, 0, m), -EBADMSG);
	assert_int_equal(fm__dns_parse(NULL, 5, m), -EINVAL);
	assert_int_equal(fm__dns_parse(pkt, o, NULL), -EINVAL);
	free(m);
}

/* ---- fuzz --------------------------------------------------------------- */

static int record_truncated(const fm__dns_record *r)
{
	switch (r->type) {
	case FM__DNS_A:
	case FM__DNS_AAAA:
	case FM__DNS_PTR:
	case FM__DNS_SRV:
		return 0;
	case FM__DNS_TXT:
		return r->rd.txt.truncated;
	default:
		return r->rd.raw.truncated;
	}
}

/* Whatever parses must write back, and that must parse to the same. */
static void check_rewrite(const fm__dns_message *a, fm__dns_message *b)
{
	static uint8_t buf[FM__DNS_PACKET_MAX];
	fm__dns_writer w;
	size_t i, len = 0;
	int rc;

	for (i = 0; i < a->record_count; i++)
		if (record_truncated(&a->records[i]))
			return;
	fm__dns_writer_init(&w, buf, sizeof(buf), a->id, a->flags);
	for (i = 0; i < a->question_count; i++) {
		rc = fm__dns_add_question(&w, a->questions[i].name,
		                          a->questions[i].type,
		                          a->questions[i].class_);
		assert_true(rc == 0 || rc == -ENOSPC);
	}
	for (i = 0; i < a->record_count; i++) {
		rc = fm__dns_add_record(&w, &a->records[i]);
		assert_true(rc == 0 || rc == -ENOSPC);
	}
	if (fm__dns_finish(&w, &len) != 0)
		return;
	assert_int_equal(fm__dns_parse(buf, len, b), 0);
	assert_int_equal(b->question_count, a->question_count);
	assert_int_equal(b->record_count, a->record_count);
	for (i = 0; i < a->question_count; i++)
		assert_memory_equal(&b->questions[i], &a->questions[i],
		                    sizeof(a->questions[i]));
	for (i = 0; i < a->record_count; i++)
		assert_memory_equal(&b->records[i], &a->records[i],
		                    sizeof(a->records[i]));
}

static void mutate(uint8_t *p, size_t *len, size_t cap)
{
	static const uint8_t interesting[] = {0x00, 0x01, 0x0c, 0x3f, 0x40,
	                                      0x7f, 0x80, 0xc0, 0xff};
	size_t i = rng_below(*len);

	if (*len == 0)
		return;
	switch (rng_below(7)) {
	case 0: /* one bit */
		p[i] ^= (uint8_t)(1u << rng_below(8));
		break;
	case 1: /* one byte */
		p[i] = (uint8_t)rng_next();
		break;
	case 2: /* a boundary value, often a length or a pointer tag */
		p[i] = interesting[rng_below(sizeof(interesting))];
		break;
	case 3: /* a pointer at a random earlier place */
		if (i + 1 < *len) {
			size_t to = rng_below(i + 1);

			p[i] = (uint8_t)(0xc0 | (to >> 8));
			p[i + 1] = (uint8_t)to;
		}
		break;
	case 4: /* cut */
		*len = i;
		break;
	case 5: /* insert a byte */
		if (*len < cap) {
			memmove(p + i + 1, p + i, *len - i);
			p[i] = (uint8_t)rng_next();
			(*len)++;
		}
		break;
	default: /* a count in the header */
		if (*len >= HEADER_LEN)
			p[4 + 2 * rng_below(4) + 1] = (uint8_t)rng_below(40);
		break;
	}
}

static void test_fuzz_mutations(void **state)
{
	uint8_t response[TEST_BUF_MAX], query[TEST_BUF_MAX];
	uint8_t work[TEST_BUF_MAX + FUZZ_GROW_MAX];
	const uint8_t *base[5];
	size_t base_len[5], nbase = 0, i, parsed = 0;
	fm__dns_message *a = msg_new(), *b = msg_new();

	(void)state;
	base[nbase] = response;
	base_len[nbase++] = build_response(response, sizeof(response));
	base[nbase] = query;
	base_len[nbase++] = build_query(query, sizeof(query));
	base[nbase] = hand_query;
	base_len[nbase++] = sizeof(hand_query);
	base[nbase] = hand_apple;
	base_len[nbase++] = sizeof(hand_apple);
	base[nbase] = hand_avahi;
	base_len[nbase++] = sizeof(hand_avahi);

	rng_state = FUZZ_SEED;
	for (i = 0; i < FUZZ_CASES; i++) {
		size_t k = rng_below(nbase), len = base_len[k], n, cap;
		int rc;

		cap = len + FUZZ_GROW_MAX;
		memcpy(work, base[k], len);
		for (n = 1 + rng_below(FUZZ_MUTATIONS_MAX); n > 0; n--)
			mutate(work, &len, cap);
		rc = parse_copy(work, len, a);
		assert_true(rc == 0 || rc == -EBADMSG);
		if (rc == 0) {
			parsed++;
			check_rewrite(a, b);
		}
	}
	/* The loop must exercise both outcomes to mean anything. */
	assert_true(parsed > FUZZ_CASES / 20);
	assert_true(parsed < FUZZ_CASES);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_response_round_trip),
	        cmocka_unit_test(test_query_round_trip),
	        cmocka_unit_test(test_compression),
	        cmocka_unit_test(test_escaped_names),
	        cmocka_unit_test(test_name_equal),
	        cmocka_unit_test(test_hand_query),
	        cmocka_unit_test(test_hand_apple),
	        cmocka_unit_test(test_hand_avahi),
	        cmocka_unit_test(test_writer_keeps_raw_and_nsec),
	        cmocka_unit_test(test_writer_errors),
	        cmocka_unit_test(test_writer_empty_txt),
	        cmocka_unit_test(test_writer_overflow),
	        cmocka_unit_test(test_packet_max),
	        cmocka_unit_test(test_counts_beyond_kept),
	        cmocka_unit_test(test_txt_limits),
	        cmocka_unit_test(test_raw_truncated),
	        cmocka_unit_test(test_name_limits),
	        cmocka_unit_test(test_name_too_long_to_escape),
	        cmocka_unit_test(test_truncation_everywhere),
	        cmocka_unit_test(test_bad_pointers),
	        cmocka_unit_test(test_pointer_hops),
	        cmocka_unit_test(test_bad_rdata),
	        cmocka_unit_test(test_bad_counts_and_sizes),
	        cmocka_unit_test(test_fuzz_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
