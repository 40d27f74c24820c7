/* The DNS message codec under local discovery (mDNS / DNS-SD, RFC 6762 and
 * 6763, on the RFC 1035 section 4 format). Every mDNS packet on the LAN
 * reaches this parser, from any host, so it is written as a bounded walk
 * over untrusted bytes: no allocation, every read checked against the
 * packet, the section or the RDATA it belongs to.
 *
 * Compression pointers must point strictly before the run of labels they
 * end, and everything read from there must lie before that run too, so each
 * hop moves strictly backwards and a loop cannot be expressed at all;
 * FM__DNS_POINTER_HOPS_MAX and the 255-octet name limit bound the work
 * besides. Pointers into the header are refused. Every real compressor
 * (Avahi, mDNSResponder, this writer) only points at names written earlier,
 * which all satisfy these rules.
 *
 * Labels are binary on the wire, and DNS-SD instance names really are
 * arbitrary UTF-8 that may contain dots and spaces ("Bob's Mac.2"), so
 * rejecting such labels would drop ordinary packets from Apple devices and
 * Avahi. Instead names are escaped in their presentation form, as in RFC
 * 1035 section 5.1 master files: '.' and '\' become "\." and "\\", bytes
 * outside printable ASCII (0x20-0x7e) become "\DDD" (decimal). The writer
 * accepts the same escapes, so parse and write round-trip exactly. A name
 * that is legal on the wire (at most 255 octets) but whose escaped form
 * exceeds FM__DNS_NAME_MAX is not malformed: the question or record holding
 * it is parsed for bounds and not kept, like entries beyond the limits.
 *
 * NSEC (which mDNS uses for negative answers, RFC 6762 section 6.1) is kept
 * raw, but its next-domain name is stored decompressed: mDNSResponder
 * compresses it (RFC 6762 section 18.14 allows it), and a pointer copied out
 * of its packet would be meaningless. */
#include <errno.h>
#include <string.h>

#include "dns.h"

#define DNS_HEADER_LEN 12
#define DNS_QUESTION_FIXED_LEN 4 /* type, class */
#define DNS_RECORD_FIXED_LEN 10  /* type, class, ttl, rdlength */
#define DNS_SRV_FIXED_LEN 6      /* priority, weight, port */
#define DNS_A_LEN 4
#define DNS_AAAA_LEN 16
/* RFC 1035 section 3.1: length bytes, label bytes and the root byte. */
#define DNS_NAME_WIRE_MAX 255
#define DNS_LABEL_TAG_MASK 0xC0
#define DNS_LABEL_TAG_POINTER 0xC0
/* A pointer holds 14 bits of offset: later names cannot be pointed at. */
#define DNS_POINTER_OFFSET_LIMIT 0x4000
#define DNS_TXT_STRING_MAX 255
#define DNS_ESCAPE_DECIMAL_LEN 4 /* "\DDD" */
#define DNS_PRINTABLE_FIRST 0x20
#define DNS_PRINTABLE_LAST 0x7e
#define DNS_COMPRESS_TARGETS_MAX                       \
	(sizeof(((fm__dns_writer *)0)->name_offsets) / \
	 sizeof(((fm__dns_writer *)0)->name_offsets[0]))
/* A name has at most 127 labels (one byte each plus a length byte). */
#define DNS_NAME_LABELS_MAX (DNS_NAME_WIRE_MAX / 2)

/* ---- small helpers ------------------------------------------------------ */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void put16_at(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint8_t ascii_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
}

static int labels_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (ascii_lower(a[i]) != ascii_lower(b[i]))
			return 0;
	return 1;
}

/* ---- names: wire form <-> presentation form ----------------------------- */

/* Reads the name at `pos` into uncompressed wire form (`wire`, at least
 * DNS_NAME_WIRE_MAX bytes). Bytes read in place must lie before `end` (the
 * packet, or the RDATA holding the name); *after is where the in-place part
 * ends. A pointer must point at or after the header and strictly before the
 * run of labels it ends, and that target's own labels must end before the
 * run as well: each hop moves backwards, so loops are impossible. */
static int read_name(const uint8_t *pkt, size_t pos, size_t end, size_t *after,
                     uint8_t *wire, size_t *wire_len)
{
	size_t p = pos, limit = end, run_start = pos, n = 0;
	unsigned hops = 0;
	int jumped = 0;

	for (;;) {
		uint8_t len;

		if (p >= limit)
			return -EBADMSG;
		len = pkt[p];
		if ((len & DNS_LABEL_TAG_MASK) == DNS_LABEL_TAG_POINTER) {
			size_t target;

			if (limit - p < 2)
				return -EBADMSG;
			target = ((size_t)(len & ~DNS_LABEL_TAG_MASK) << 8) |
			         pkt[p + 1];
			if (!jumped)
				*after = p + 2;
			if (target < DNS_HEADER_LEN || target >= run_start)
				return -EBADMSG;
			if (++hops > FM__DNS_POINTER_HOPS_MAX)
				return -EBADMSG;
			jumped = 1;
			limit = run_start;
			run_start = target;
			p = target;
			continue;
		}
		/* 0x40 and 0x80: extended label types (RFC 6891 retired
		 * them); also covers every length over 63. */
		if (len & DNS_LABEL_TAG_MASK)
			return -EBADMSG;
		if ((size_t)len + 1 > limit - p)
			return -EBADMSG;
		if (n + 1 + len > DNS_NAME_WIRE_MAX)
			return -EBADMSG;
		memcpy(wire + n, pkt + p, (size_t)len + 1);
		n += (size_t)len + 1;
		p += (size_t)len + 1;
		if (len == 0)
			break;
	}
	if (!jumped)
		*after = p;
	*wire_len = n;
	return 0;
}

/* Wire form -> dotted, escaped text (no trailing dot; the root is "").
 * -ENAMETOOLONG when the escaped text exceeds FM__DNS_NAME_MAX. */
static int wire_to_text(const uint8_t *wire, char *out)
{
	size_t i = 0, o = 0;

	while (wire[i] != 0) {
		size_t len = wire[i++], k;

		if (o > 0) {
			if (o + 1 > FM__DNS_NAME_MAX)
				return -ENAMETOOLONG;
			out[o++] = '.';
		}
		for (k = 0; k < len; k++) {
			uint8_t b = wire[i + k];

			if (b == '.' || b == '\\') {
				if (o + 2 > FM__DNS_NAME_MAX)
					return -ENAMETOOLONG;
				out[o++] = '\\';
				out[o++] = (char)b;
			} else if (b < DNS_PRINTABLE_FIRST ||
			           b > DNS_PRINTABLE_LAST) {
				if (o + DNS_ESCAPE_DECIMAL_LEN >
				    FM__DNS_NAME_MAX)
					return -ENAMETOOLONG;
				out[o++] = '\\';
				out[o++] = (char)('0' + b / 100);
				out[o++] = (char)('0' + b / 10 % 10);
				out[o++] = (char)('0' + b % 10);
			} else {
				if (o + 1 > FM__DNS_NAME_MAX)
					return -ENAMETOOLONG;
				out[o++] = (char)b;
			}
		}
		i += len;
	}
	out[o] = '\0';
	return 0;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Dotted, escaped text -> wire form (`wire`: DNS_NAME_WIRE_MAX bytes). ""
 * and "." are the root; one trailing dot is allowed. -EINVAL for an empty
 * label, a label over 63 bytes, a name over 255 octets or a bad escape. */
static int text_to_wire(const char *text, uint8_t *wire, size_t *wire_len)
{
	const char *s = text;
	size_t n = 1, label_at = 0;

	if (text == NULL)
		return -EINVAL;
	if (s[0] == '\0' || (s[0] == '.' && s[1] == '\0')) {
		wire[0] = 0;
		*wire_len = 1;
		return 0;
	}
	for (;;) {
		uint8_t b;

		if (*s == '\0' || *s == '.') {
			size_t label_len = n - label_at - 1;

			if (label_len == 0)
				return -EINVAL;
			wire[label_at] = (uint8_t)label_len;
			if (*s == '\0' || s[1] == '\0')
				break;
			s++;
			if (n >= DNS_NAME_WIRE_MAX)
				return -EINVAL;
			label_at = n++;
			continue;
		}
		if (*s == '\\') {
			if (is_digit(s[1])) {
				unsigned v;

				if (!is_digit(s[2]) || !is_digit(s[3]))
					return -EINVAL;
				v = (unsigned)(s[1] - '0') * 100 +
				    (unsigned)(s[2] - '0') * 10 +
				    (unsigned)(s[3] - '0');
				if (v > UINT8_MAX)
					return -EINVAL;
				b = (uint8_t)v;
				s += DNS_ESCAPE_DECIMAL_LEN;
			} else if (s[1] == '\0') {
				return -EINVAL;
			} else {
				b = (uint8_t)s[1];
				s += 2;
			}
		} else {
			b = (uint8_t)*s++;
		}
		if (n - label_at - 1 >= FM__DNS_LABEL_MAX ||
		    n >= DNS_NAME_WIRE_MAX)
			return -EINVAL;
		wire[n++] = b;
	}
	if (n >= DNS_NAME_WIRE_MAX)
		return -EINVAL;
	wire[n++] = 0;
	*wire_len = n;
	return 0;
}

int fm__dns_name_equal(const char *a, const char *b)
{
	uint8_t wa[DNS_NAME_WIRE_MAX], wb[DNS_NAME_WIRE_MAX];
	size_t la, lb;

	if (text_to_wire(a, wa, &la) != 0 || text_to_wire(b, wb, &lb) != 0)
		return 0;
	/* Length bytes are at most 63, below 'A', so folding them is a
	 * no-op and the whole wire form can be compared at once. */
	return la == lb && labels_equal(wa, wb, la);
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct dns_cursor {
	const uint8_t *pkt;
	size_t len;
	size_t pos;
} dns_cursor;

static int parse_question(dns_cursor *c, fm__dns_message *out)
{
	uint8_t wire[DNS_NAME_WIRE_MAX];
	size_t wire_len, after;
	fm__dns_question *q;
	int rc;

	rc = read_name(c->pkt, c->pos, c->len, &after, wire, &wire_len);
	if (rc != 0)
		return rc;
	if (c->len - after < DNS_QUESTION_FIXED_LEN)
		return -EBADMSG;
	c->pos = after + DNS_QUESTION_FIXED_LEN;
	if (out->question_count >= FM__DNS_QUESTIONS_MAX)
		return 0;
	q = &out->questions[out->question_count];
	memset(q, 0, sizeof(*q));
	if (wire_to_text(wire, q->name) != 0)
		return 0; /* legal, but not representable: not kept */
	q->type = get16(c->pkt + after);
	q->class_ = get16(c->pkt + after + 2);
	out->question_count++;
	return 0;
}

/* A name filling RDATA from `pos` to `end` exactly (PTR), or starting
 * there (`exact` = 0: NSEC). `text` may be NULL (record not kept); *fits is
 * cleared when the name has no presentation form within the limit. */
static int rdata_name(const dns_cursor *c, size_t pos, size_t end, int exact,
                      size_t *after, uint8_t *wire, size_t *wire_len,
                      char *text, int *fits)
{
	int rc = read_name(c->pkt, pos, end, after, wire, wire_len);

	if (rc != 0)
		return rc;
	if (exact && *after != end)
		return -EBADMSG;
	if (text != NULL && wire_to_text(wire, text) != 0)
		*fits = 0;
	return 0;
}

static int parse_txt(const dns_cursor *c, size_t pos, size_t end,
                     fm__dns_record *rec)
{
	if (pos == end) {
		/* RFC 6763 section 6.1: an empty TXT record is the same as
		 * one holding a single empty string. */
		if (rec != NULL)
			rec->rd.txt.count = 1;
		return 0;
	}
	while (pos < end) {
		size_t len = c->pkt[pos];

		/* Strings must fill RDLENGTH exactly: one running past it is
		 * malformed, whatever the bytes after it hold. */
		if (len > end - pos - 1)
			return -EBADMSG;
		if (rec != NULL) {
			if (rec->rd.txt.count < FM__DNS_TXT_STRINGS_MAX) {
				char *dst =
				        rec->rd.txt.strings[rec->rd.txt.count];
				const uint8_t *src = c->pkt + pos + 1;
				const uint8_t *nul = memchr(src, 0, len);
				size_t keep = nul ? (size_t)(nul - src) : len;

				memcpy(dst, src, keep);
				dst[keep] = '\0';
				if (nul != NULL)
					rec->rd.txt.truncated = 1;
				rec->rd.txt.count++;
			} else {
				rec->rd.txt.truncated = 1;
			}
		}
		pos += len + 1;
	}
	return 0;
}

static void raw_append(fm__dns_record *rec, const uint8_t *src, size_t len)
{
	size_t room = FM__DNS_RDATA_MAX - rec->rd.raw.len;
	size_t n = len < room ? len : room;

	memcpy(rec->rd.raw.data + rec->rd.raw.len, src, n);
	rec->rd.raw.len = (uint16_t)(rec->rd.raw.len + n);
	if (n < len)
		rec->rd.raw.truncated = 1;
}

/* Checks RDATA against its type's layout and, when `rec` is not NULL,
 * copies it out. */
static int parse_rdata(const dns_cursor *c, uint16_t type, size_t pos,
                       size_t end, fm__dns_record *rec, int *fits)
{
	uint8_t wire[DNS_NAME_WIRE_MAX];
	size_t wire_len, after, len = end - pos;

	switch (type) {
	case FM__DNS_A:
		if (len != DNS_A_LEN)
			return -EBADMSG;
		if (rec != NULL)
			memcpy(rec->rd.a, c->pkt + pos, DNS_A_LEN);
		return 0;
	case FM__DNS_AAAA:
		if (len != DNS_AAAA_LEN)
			return -EBADMSG;
		if (rec != NULL)
			memcpy(rec->rd.aaaa, c->pkt + pos, DNS_AAAA_LEN);
		return 0;
	case FM__DNS_PTR:
		return rdata_name(c, pos, end, 1, &after, wire, &wire_len,
		                  rec ? rec->rd.ptr : NULL, fits);
	case FM__DNS_SRV:
		if (len <= DNS_SRV_FIXED_LEN)
			return -EBADMSG;
		if (rec != NULL) {
			rec->rd.srv.priority = get16(c->pkt + pos);
			rec->rd.srv.weight = get16(c->pkt + pos + 2);
			rec->rd.srv.port = get16(c->pkt + pos + 4);
		}
		return rdata_name(c, pos + DNS_SRV_FIXED_LEN, end, 1, &after,
		                  wire, &wire_len,
		                  rec ? rec->rd.srv.target : NULL, fits);
	case FM__DNS_TXT:
		return parse_txt(c, pos, end, rec);
	case FM__DNS_NSEC: {
		int rc = rdata_name(c, pos, end, 0, &after, wire, &wire_len,
		                    NULL, fits);

		if (rc != 0)
			return rc;
		if (rec != NULL) {
			raw_append(rec, wire, wire_len);
			raw_append(rec, c->pkt + after, end - after);
		}
		return 0;
	}
	default:
		if (rec != NULL)
			raw_append(rec, c->pkt + pos, len);
		return 0;
	}
}

static int parse_record(dns_cursor *c, uint8_t section, fm__dns_message *out)
{
	uint8_t wire[DNS_NAME_WIRE_MAX];
	size_t wire_len, after, rd_pos, rd_len;
	fm__dns_record *rec = NULL;
	const uint8_t *f;
	uint16_t type;
	int rc, fits = 1;

	rc = read_name(c->pkt, c->pos, c->len, &after, wire, &wire_len);
	if (rc != 0)
		return rc;
	if (c->len - after < DNS_RECORD_FIXED_LEN)
		return -EBADMSG;
	f = c->pkt + after;
	type = get16(f);
	rd_pos = after + DNS_RECORD_FIXED_LEN;
	rd_len = get16(f + 8);
	if (rd_len > c->len - rd_pos)
		return -EBADMSG;
	if (out->record_count < FM__DNS_RECORDS_MAX) {
		rec = &out->records[out->record_count];
		memset(rec, 0, sizeof(*rec));
		rec->type = type;
		rec->class_ = get16(f + 2);
		rec->ttl = get32(f + 4);
		rec->section = section;
		if (wire_to_text(wire, rec->name) != 0)
			fits = 0;
	}
	rc = parse_rdata(c, type, rd_pos, rd_pos + rd_len, rec, &fits);
	if (rc != 0)
		return rc;
	c->pos = rd_pos + rd_len;
	if (rec != NULL && fits)
		out->record_count++;
	return 0;
}

int fm__dns_parse(const uint8_t *pkt, size_t len, fm__dns_message *out)
{
	static const uint8_t sections[] = {FM__DNS_ANSWER, FM__DNS_AUTHORITY,
	                                   FM__DNS_ADDITIONAL};
	dns_cursor c = {pkt, len, DNS_HEADER_LEN};
	uint16_t counts[3];
	size_t s;
	unsigned i;
	int rc = 0;

	if (out == NULL || (pkt == NULL && len > 0))
		return -EINVAL;
	out->id = out->flags = 0;
	out->qdcount = out->ancount = out->nscount = out->arcount = 0;
	out->question_count = out->record_count = 0;
	if (len > FM__DNS_PACKET_MAX)
		return -EMSGSIZE;
	if (len < DNS_HEADER_LEN)
		return -EBADMSG;
	out->id = get16(pkt);
	out->flags = get16(pkt + 2);
	out->qdcount = get16(pkt + 4);
	out->ancount = counts[0] = get16(pkt + 6);
	out->nscount = counts[1] = get16(pkt + 8);
	out->arcount = counts[2] = get16(pkt + 10);

	/* Counts are only claims: every loop stops at the first entry that
	 * does not fit, so 65535 of them cost no more than the bytes do. */
	for (i = 0; i < out->qdcount; i++) {
		rc = parse_question(&c, out);
		if (rc != 0)
			goto fail;
	}
	for (s = 0; s < sizeof(sections); s++) {
		for (i = 0; i < counts[s]; i++) {
			rc = parse_record(&c, sections[s], out);
			if (rc != 0)
				goto fail;
		}
	}
	/* Bytes after the last record are ignored, as most resolvers do. */
	return 0;

fail:
	out->question_count = out->record_count = 0;
	return rc;
}

/* ---- writing ------------------------------------------------------------ */

void fm__dns_writer_init(fm__dns_writer *w, uint8_t *buf, size_t cap,
                         uint16_t id, uint16_t flags)
{
	memset(w, 0, sizeof(*w));
	w->buf = buf;
	w->cap = cap < FM__DNS_PACKET_MAX ? cap : FM__DNS_PACKET_MAX;
	if (buf == NULL || w->cap < DNS_HEADER_LEN) {
		w->cap = 0;
		w->overflow = 1;
		return;
	}
	memset(buf, 0, DNS_HEADER_LEN);
	put16_at(buf, id);
	put16_at(buf + 2, flags);
	w->len = DNS_HEADER_LEN;
}

static int put(fm__dns_writer *w, const void *src, size_t n)
{
	if (w->len > w->cap || n > w->cap - w->len)
		return -ENOSPC;
	if (n > 0)
		memcpy(w->buf + w->len, src, n);
	w->len += n;
	return 0;
}

static int put16(fm__dns_writer *w, uint16_t v)
{
	uint8_t b[2];

	put16_at(b, v);
	return put(w, b, sizeof(b));
}

static int put32(fm__dns_writer *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16),
	                (uint8_t)(v >> 8), (uint8_t)v};

	return put(w, b, sizeof(b));
}

/* Whether the name written at `off` equals the wire-form `suffix`, byte
 * for byte: names compare without case, but a pointer to a name that
 * differs in case would change the case of what is written (found by
 * fuzz/fuzz_dns.c; DNS-SD instance names are shown to users). Reads stay
 * inside what was written. */
static int written_name_equals(const fm__dns_writer *w, size_t off,
                               const uint8_t *suffix)
{
	size_t p = off;
	unsigned hops = 0;

	for (;;) {
		uint8_t len;

		if (p >= w->len)
			return 0;
		len = w->buf[p];
		if ((len & DNS_LABEL_TAG_MASK) == DNS_LABEL_TAG_POINTER) {
			size_t target;

			if (p + 1 >= w->len ||
			    ++hops > FM__DNS_POINTER_HOPS_MAX)
				return 0;
			target = ((size_t)(len & ~DNS_LABEL_TAG_MASK) << 8) |
			         w->buf[p + 1];
			if (target >= p)
				return 0;
			p = target;
			continue;
		}
		if (len != *suffix)
			return 0;
		if (len == 0)
			return 1;
		if ((size_t)len + 1 > w->len - p ||
		    memcmp(w->buf + p + 1, suffix + 1, len) != 0)
			return 0;
		p += (size_t)len + 1;
		suffix += (size_t)len + 1;
	}
}

/* Writes a name, replacing its longest suffix already in the packet with a
 * pointer, then remembers where its new labels start so later names can
 * point at them (only once complete, so a name never points into itself). */
static int write_name(fm__dns_writer *w, const uint8_t *wire)
{
	uint16_t fresh[DNS_NAME_LABELS_MAX];
	size_t i = 0, k, nfresh = 0;
	int rc;

	while (wire[i] != 0) {
		for (k = 0; k < w->name_count; k++) {
			uint16_t off = w->name_offsets[k];

			if (written_name_equals(w, off, wire + i))
				break;
		}
		if (k < w->name_count) {
			uint16_t ptr = (uint16_t)(w->name_offsets[k] |
			                          (DNS_LABEL_TAG_POINTER << 8));

			rc = put16(w, ptr);
			goto done;
		}
		if (w->len < DNS_POINTER_OFFSET_LIMIT)
			fresh[nfresh++] = (uint16_t)w->len;
		rc = put(w, wire + i, (size_t)wire[i] + 1);
		if (rc != 0)
			return rc;
		i += (size_t)wire[i] + 1;
	}
	rc = put(w, wire + i, 1);
done:
	if (rc != 0)
		return rc;
	for (k = 0; k < nfresh && w->name_count < DNS_COMPRESS_TARGETS_MAX; k++)
		w->name_offsets[w->name_count++] = fresh[k];
	return 0;
}

static int write_text_name(fm__dns_writer *w, const char *text)
{
	uint8_t wire[DNS_NAME_WIRE_MAX];
	size_t wire_len;
	int rc = text_to_wire(text, wire, &wire_len);

	return rc != 0 ? rc : write_name(w, wire);
}

/* Undoes a partly written entry, so the packet always ends on a whole
 * question or record; -ENOSPC also marks the writer as overflowed. */
static int entry_failed(fm__dns_writer *w, size_t len, uint8_t name_count,
                        int rc)
{
	w->len = len;
	w->name_count = name_count;
	if (rc == -ENOSPC)
		w->overflow = 1;
	return rc;
}

int fm__dns_add_question(fm__dns_writer *w, const char *name, uint16_t type,
                         uint16_t class_)
{
	size_t len0 = w->len;
	uint8_t names0 = w->name_count;
	int rc;

	if (w->ancount || w->nscount || w->arcount)
		return -EINVAL;
	if (w->qdcount == UINT16_MAX)
		return entry_failed(w, len0, names0, -ENOSPC);
	rc = write_text_name(w, name);
	if (rc == 0)
		rc = put16(w, type);
	if (rc == 0)
		rc = put16(w, class_);
	if (rc != 0)
		return entry_failed(w, len0, names0, rc);
	w->qdcount++;
	return 0;
}

static int write_txt(fm__dns_writer *w, const fm__dns_record *rec)
{
	uint8_t i;
	int rc = 0;

	if (rec->rd.txt.truncated ||
	    rec->rd.txt.count > FM__DNS_TXT_STRINGS_MAX)
		return -EINVAL;
	if (rec->rd.txt.count == 0) {
		/* RFC 6763 section 6.1: never an empty TXT record. */
		uint8_t zero = 0;

		return put(w, &zero, 1);
	}
	for (i = 0; i < rec->rd.txt.count && rc == 0; i++) {
		const char *s = rec->rd.txt.strings[i];
		size_t len = strnlen(s, sizeof(rec->rd.txt.strings[i]));
		uint8_t len_byte = (uint8_t)len;

		if (len > DNS_TXT_STRING_MAX)
			return -EINVAL;
		rc = put(w, &len_byte, 1);
		if (rc == 0)
			rc = put(w, s, len);
	}
	return rc;
}

static int write_rdata(fm__dns_writer *w, const fm__dns_record *rec)
{
	int rc;

	switch (rec->type) {
	case FM__DNS_A:
		return put(w, rec->rd.a, DNS_A_LEN);
	case FM__DNS_AAAA:
		return put(w, rec->rd.aaaa, DNS_AAAA_LEN);
	case FM__DNS_PTR:
		return write_text_name(w, rec->rd.ptr);
	case FM__DNS_SRV:
		rc = put16(w, rec->rd.srv.priority);
		if (rc == 0)
			rc = put16(w, rec->rd.srv.weight);
		if (rc == 0)
			rc = put16(w, rec->rd.srv.port);
		return rc != 0 ? rc : write_text_name(w, rec->rd.srv.target);
	case FM__DNS_TXT:
		return write_txt(w, rec);
	default:
		/* A cut copy is not the record it came from. */
		if (rec->rd.raw.truncated ||
		    rec->rd.raw.len > FM__DNS_RDATA_MAX)
			return -EINVAL;
		return put(w, rec->rd.raw.data, rec->rd.raw.len);
	}
}

int fm__dns_add_record(fm__dns_writer *w, const fm__dns_record *rec)
{
	uint16_t *counts[] = {&w->ancount, &w->nscount, &w->arcount};
	size_t len0 = w->len, rdlen_at, later;
	uint8_t names0 = w->name_count;
	int rc;

	if (rec == NULL || rec->section > FM__DNS_ADDITIONAL)
		return -EINVAL;
	for (later = (size_t)rec->section + 1; later < 3; later++)
		if (*counts[later] != 0)
			return -EINVAL; /* sections must come in order */
	if (*counts[rec->section] == UINT16_MAX)
		return entry_failed(w, len0, names0, -ENOSPC);
	rc = write_text_name(w, rec->name);
	if (rc == 0)
		rc = put16(w, rec->type);
	if (rc == 0)
		rc = put16(w, rec->class_);
	if (rc == 0)
		rc = put32(w, rec->ttl);
	rdlen_at = w->len;
	if (rc == 0)
		rc = put16(w, 0);
	if (rc == 0)
		rc = write_rdata(w, rec);
	if (rc != 0)
		return entry_failed(w, len0, names0, rc);
	/* w->cap <= FM__DNS_PACKET_MAX, so RDLENGTH fits 16 bits. */
	put16_at(w->buf + rdlen_at, (uint16_t)(w->len - rdlen_at - 2));
	(*counts[rec->section])++;
	return 0;
}

int fm__dns_finish(fm__dns_writer *w, size_t *len)
{
	if (w->cap >= DNS_HEADER_LEN) {
		put16_at(w->buf + 4, w->qdcount);
		put16_at(w->buf + 6, w->ancount);
		put16_at(w->buf + 8, w->nscount);
		put16_at(w->buf + 10, w->arcount);
	}
	if (len != NULL)
		*len = w->len;
	return w->overflow ? -ENOSPC : 0;
}
