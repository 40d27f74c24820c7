/* DNS message codec for mDNS / DNS-SD (RFC 1035 section 4, RFC 6762,
 * RFC 6763). Every packet from the network is untrusted: parsing is bounded
 * (FM__DNS_PACKET_MAX, record and name limits), compression pointers may
 * only point backwards (so loops are impossible), and anything malformed is
 * reported, never trusted. Unknown record types are kept as raw bytes so a
 * responder can skip them. No allocation: parsed names and RDATA are copied
 * into fixed-size fields of the message struct. */
#ifndef FM_CORE_DNS_H
#define FM_CORE_DNS_H

#include <stddef.h>
#include <stdint.h>

/* mDNS packets may reach 9000 bytes (RFC 6762 section 17); we never need
 * more and never accept more. */
#define FM__DNS_PACKET_MAX 9000
#define FM__DNS_NAME_MAX 255 /* presentation form, without the NUL */
#define FM__DNS_LABEL_MAX 63
#define FM__DNS_QUESTIONS_MAX 16 /* more are ignored, not an error */
#define FM__DNS_RECORDS_MAX 32   /* answers + authority + additional kept */
#define FM__DNS_RDATA_MAX 512    /* larger RDATA is kept truncated, flagged */
#define FM__DNS_TXT_STRINGS_MAX 16
#define FM__DNS_POINTER_HOPS_MAX 64

enum fm__dns_type {
	FM__DNS_A = 1,
	FM__DNS_PTR = 12,
	FM__DNS_TXT = 16,
	FM__DNS_AAAA = 28,
	FM__DNS_SRV = 33,
	FM__DNS_NSEC = 47,
	FM__DNS_ANY = 255,
};

#define FM__DNS_CLASS_IN 1
/* mDNS: top bit of a question's class = unicast response wanted (QU); of a
 * record's class = cache flush (the record set is unique). */
#define FM__DNS_CLASS_TOP 0x8000
#define FM__DNS_FLAG_QR 0x8000 /* response */
#define FM__DNS_FLAG_AA 0x0400
#define FM__DNS_FLAG_TC 0x0200

enum fm__dns_section {
	FM__DNS_ANSWER = 0,
	FM__DNS_AUTHORITY,
	FM__DNS_ADDITIONAL,
};

/* Names are in presentation form: dotted, no trailing dot (the root is ""),
 * case preserved, and escaped as in RFC 1035 section 5.1 master files: a
 * '.' or '\' inside a label is "\." or "\\", a byte outside 0x20-0x7e is
 * "\DDD" (three decimal digits). DNS-SD instance names may hold dots and
 * UTF-8 ("My Printer\.2 caf\195\169"); the writer takes the same escapes,
 * so a parsed name written back gives the same bytes. */
typedef struct fm__dns_question {
	char name[FM__DNS_NAME_MAX + 1]; /* dotted, escaped, case kept */
	uint16_t type;
	uint16_t class_; /* with FM__DNS_CLASS_TOP when QU */
} fm__dns_question;

typedef struct fm__dns_record {
	char name[FM__DNS_NAME_MAX + 1];
	uint16_t type;
	uint16_t class_; /* with FM__DNS_CLASS_TOP when cache-flush */
	uint32_t ttl;
	uint8_t section; /* enum fm__dns_section */
	union {
		uint8_t a[4];
		uint8_t aaaa[16];
		char ptr[FM__DNS_NAME_MAX + 1];
		struct {
			uint16_t priority, weight, port;
			char target[FM__DNS_NAME_MAX + 1];
		} srv;
		struct {
			/* each string without its length byte; NUL-terminated
			 * copies (a TXT string may hold a NUL: then it is
			 * cut there and `truncated` is set; so it is when
			 * there are more than FM__DNS_TXT_STRINGS_MAX). An
			 * empty RDATA parses as one empty string (RFC 6763
			 * section 6.1); writing count 0 writes that too. */
			char strings[FM__DNS_TXT_STRINGS_MAX][256];
			uint8_t count;
			uint8_t truncated;
		} txt;
		struct {
			uint8_t data[FM__DNS_RDATA_MAX];
			uint16_t len; /* bytes kept in data */
			uint8_t truncated;
		} raw; /* unknown types, and NSEC (whose next-domain name
		          is stored decompressed, in wire form) */
	} rd;
} fm__dns_record;

typedef struct fm__dns_message {
	uint16_t id;
	uint16_t flags;
	uint16_t qdcount, ancount, nscount, arcount; /* as in the header */
	fm__dns_question questions[FM__DNS_QUESTIONS_MAX];
	uint8_t question_count; /* kept (<= FM__DNS_QUESTIONS_MAX) */
	fm__dns_record records[FM__DNS_RECORDS_MAX];
	uint8_t record_count; /* kept */
} fm__dns_message;

/* Parses a packet. 0 on success; -EBADMSG for a malformed packet (short
 * header, a name or record running past the end, a forward or looping
 * compression pointer, a label over 63 bytes, a name over 255, RDATA that
 * does not match its type's layout); -EMSGSIZE beyond FM__DNS_PACKET_MAX.
 * Questions and records beyond the limits are skipped (parsed for bounds,
 * not kept), and so are those with a name that is legal on the wire (255
 * octets) but longer than FM__DNS_NAME_MAX once escaped. Bytes after the
 * last record are ignored. The struct is large: callers keep it off small
 * stacks. */
int fm__dns_parse(const uint8_t *pkt, size_t len, fm__dns_message *out);

/* Builds packets with name compression. `cap` is clamped to
 * FM__DNS_PACKET_MAX. Each add_* call writes a whole entry or nothing:
 * -EINVAL for a bad name (see the escapes above), an entry out of order, or
 * a truncated TXT/raw record (a cut copy is not the record); -ENOSPC when it
 * does not fit, which also marks the writer overflowed. */
typedef struct fm__dns_writer {
	uint8_t *buf;
	size_t cap;
	size_t len;
	int overflow;
	/* offsets of names already written, for compression */
	uint16_t name_offsets[64];
	uint8_t name_count;
	uint16_t qdcount, ancount, nscount, arcount;
} fm__dns_writer;

void fm__dns_writer_init(fm__dns_writer *w, uint8_t *buf, size_t cap,
                         uint16_t id, uint16_t flags);
/* Questions must all be added before any record; records in section order
 * (answers, then authority, then additional). */
int fm__dns_add_question(fm__dns_writer *w, const char *name, uint16_t type,
                         uint16_t class_);
int fm__dns_add_record(fm__dns_writer *w, const fm__dns_record *rec);
/* Patches the counts into the header and sets *len; -ENOSPC if anything
 * overflowed (the packet up to *len still holds every entry that fit). */
int fm__dns_finish(fm__dns_writer *w, size_t *len);

/* Case-insensitive comparison of two dotted names (ASCII only, as DNS),
 * escapes decoded, one trailing dot ignored. 1 if equal, else 0; a name
 * that is not valid is equal to nothing. */
int fm__dns_name_equal(const char *a, const char *b);

#endif
