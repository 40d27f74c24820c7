/* The msgpack codec of session messages and of the handshake payload, and
 * the reader/writer under it (see wire.h for the formats).
 *
 * Why decoding does not use msgpack-c's unpacker: msgpack-c 4.0.0 sizes its
 * allocations from counts in the input before it has seen the bytes (a
 * 5-byte array32 header makes it try ~96 GB, msgpack-c issue 1013; the
 * streaming unpacker's reserve_buffer can overflow, issue 1181). A guard in
 * front of it would have to walk the whole format anyway, and once it has,
 * decoding the few shapes fedmesh uses is a short cursor that allocates
 * nothing and hands out pointers into the caller's buffer, which is what the
 * callers want (a record inside a message is passed on, not copied). So
 * every decoder here runs fm__msgpack_check() first, a stack-bounded walk
 * that proves the bytes are one complete object within depth and item
 * limits, then reads with fm__mp_reader, whose every read is bounds-checked
 * on its own as well. Encoding does use msgpack-c: its packer is
 * header-inline, always picks the shortest form (which the canonical record
 * encoding relies on) and writes through a callback, here one that fills a
 * fixed buffer and fails instead of growing. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

/* msgpack-c's packer byte-swaps with ntohs/ntohl (msgpack/sysdep.h). glibc
 * inlines those only when optimising; in an -O0 build they would be calls
 * into libc that the core's import allowlist (tests/core-purity.sh) does not
 * list. Point them at pure local functions before the packer is expanded.
 * Each reads its argument's bytes as big-endian, which is ntohs/ntohl (and
 * htons/htonl) on any host. */
static inline uint16_t fm__be16(uint16_t x)
{
	uint8_t b[2];

	memcpy(b, &x, sizeof(b));
	return (uint16_t)((b[0] << 8) | b[1]);
}

static inline uint32_t fm__be32(uint32_t x)
{
	uint8_t b[4];

	memcpy(b, &x, sizeof(b));
	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) |
	       ((uint32_t)b[2] << 8) | b[3];
}

#undef ntohs
#undef ntohl
#define ntohs(x) fm__be16(x)
#define ntohl(x) fm__be32(x)
#include <msgpack.h>

#include "core.h"
#include "wire.h"

/* ---- structural check ---------------------------------------------------- */

static uint64_t load_be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* What one msgpack header says about the object it starts. */
typedef struct mp_head {
	size_t len_bytes;  /* big-endian length or count after the tag */
	uint64_t fixed;    /* payload bytes known from the tag alone */
	int counted;       /* the length field counts payload bytes */
	int container;     /* array or map: len/count gives elements */
	uint64_t elements; /* fix container: element count */
	int map;           /* elements come in key/value pairs */
} mp_head;

/* Classifies a tag; -EBADMSG for 0xc1, the one byte msgpack never uses. */
static int mp_classify(uint8_t tag, mp_head *h)
{
	memset(h, 0, sizeof(*h));
	if (tag <= 0x7f || tag >= 0xe0)
		return 0; /* positive or negative fixint */
	if (tag <= 0x8f) {
		h->container = 1;
		h->map = 1;
		h->elements = tag & 0x0fu;
		return 0;
	}
	if (tag <= 0x9f) {
		h->container = 1;
		h->elements = tag & 0x0fu;
		return 0;
	}
	if (tag <= 0xbf) {
		h->fixed = tag & 0x1fu; /* fixstr */
		return 0;
	}
	switch (tag) {
	case 0xc0: /* nil */
	case 0xc2: /* false */
	case 0xc3: /* true */
		return 0;
	case 0xc4: /* bin 8 */
	case 0xd9: /* str 8 */
		h->len_bytes = 1;
		h->counted = 1;
		return 0;
	case 0xc5: /* bin 16 */
	case 0xda: /* str 16 */
		h->len_bytes = 2;
		h->counted = 1;
		return 0;
	case 0xc6: /* bin 32 */
	case 0xdb: /* str 32 */
		h->len_bytes = 4;
		h->counted = 1;
		return 0;
	case 0xc7: /* ext 8, 16, 32: length, then a type byte, then data */
	case 0xc8:
	case 0xc9:
		h->len_bytes = tag == 0xc7 ? 1 : tag == 0xc8 ? 2 : 4;
		h->counted = 1;
		h->fixed = 1;
		return 0;
	case 0xca: /* float 32 */
	case 0xce: /* uint 32 */
	case 0xd2: /* int 32 */
		h->fixed = 4;
		return 0;
	case 0xcb: /* float 64 */
	case 0xcf: /* uint 64 */
	case 0xd3: /* int 64 */
		h->fixed = 8;
		return 0;
	case 0xcc: /* uint 8 */
	case 0xd0: /* int 8 */
		h->fixed = 1;
		return 0;
	case 0xcd: /* uint 16 */
	case 0xd1: /* int 16 */
		h->fixed = 2;
		return 0;
	case 0xd4: /* fixext 1, 2, 4, 8, 16: a type byte, then data */
	case 0xd5:
	case 0xd6:
	case 0xd7:
	case 0xd8:
		h->fixed = 1 + (1u << (tag - 0xd4));
		return 0;
	case 0xdc: /* array 16, 32; map 16, 32 */
	case 0xdd:
	case 0xde:
	case 0xdf:
		h->container = 1;
		h->map = tag >= 0xde;
		h->len_bytes = (tag == 0xdc || tag == 0xde) ? 2 : 4;
		return 0;
	default:
		return -EBADMSG;
	}
}

int fm__msgpack_check(const uint8_t *buf, size_t len, unsigned max_depth,
                      size_t max_items)
{
	/* left[d]: elements still to read in the container open at depth d;
	 * depth 0 is the top level, which holds exactly one object. */
	uint64_t left[FM__MSGPACK_DEPTH_MAX + 1];
	uint64_t pending = 1; /* left[0] + ... + left[depth] */
	uint64_t items = 0;
	unsigned depth = 0;
	size_t pos = 0;

	if ((buf == NULL && len > 0) || max_depth > FM__MSGPACK_DEPTH_MAX)
		return -EINVAL;
	left[0] = 1;
	while (pending > 0) {
		mp_head h;
		uint64_t n;
		size_t rest;

		while (left[depth] == 0)
			depth--; /* pending > 0, so some open level has one */
		if (pos >= len || mp_classify(buf[pos], &h) != 0)
			return -EBADMSG;
		left[depth]--;
		pending--;
		if (++items > max_items)
			return -EBADMSG;
		pos++;
		rest = len - pos;
		if (h.len_bytes > rest)
			return -EBADMSG;
		n = load_be(buf + pos, h.len_bytes);
		pos += h.len_bytes;
		rest -= h.len_bytes;
		if (!h.container) {
			uint64_t body = h.fixed + (h.counted ? n : 0);
			if (body > rest)
				return -EBADMSG;
			pos += (size_t)body;
			continue;
		}
		if (h.len_bytes == 0)
			n = h.elements;
		if (h.map)
			n *= 2; /* n < 2^32, no overflow */
		if (depth >= max_depth)
			return -EBADMSG;
		/* Every element still owed needs at least one byte, and counts
		 * as one item: a huge count fails here, at its header. */
		pending += n;
		if (pending > rest || pending > max_items - items)
			return -EBADMSG;
		depth++;
		left[depth] = n;
	}
	return pos == len ? 0 : -EBADMSG;
}

/* ---- reader -------------------------------------------------------------- */

void fm__mp_reader_init(fm__mp_reader *r, const uint8_t *buf, size_t len)
{
	r->buf = buf;
	r->len = buf != NULL ? len : 0;
	r->pos = 0;
}

static size_t reader_left(const fm__mp_reader *r)
{
	return r->len - r->pos;
}

/* Reads an n-byte big-endian number that follows the tag. */
static int reader_be(fm__mp_reader *r, size_t n, uint64_t *v)
{
	if (n > reader_left(r))
		return -EBADMSG;
	*v = load_be(r->buf + r->pos, n);
	r->pos += n;
	return 0;
}

static int reader_tag(fm__mp_reader *r, uint8_t *tag)
{
	if (reader_left(r) < 1)
		return -EBADMSG;
	*tag = r->buf[r->pos++];
	return 0;
}

int fm__mp_read_array(fm__mp_reader *r, size_t *count)
{
	uint8_t tag;
	uint64_t n;

	if (reader_tag(r, &tag) != 0)
		return -EBADMSG;
	if (tag >= 0x90 && tag <= 0x9f)
		n = tag & 0x0fu;
	else if (tag == 0xdc || tag == 0xdd) {
		if (reader_be(r, tag == 0xdc ? 2 : 4, &n) != 0)
			return -EBADMSG;
	} else
		return -EBADMSG;
	if (n > reader_left(r))
		return -EBADMSG;
	*count = (size_t)n;
	return 0;
}

int fm__mp_read_uint(fm__mp_reader *r, uint64_t *value)
{
	static const size_t widths[4] = {1, 2, 4, 8};
	uint8_t tag;
	uint64_t v;

	if (reader_tag(r, &tag) != 0)
		return -EBADMSG;
	if (tag <= 0x7f) {
		*value = tag;
		return 0;
	}
	if (tag >= 0xcc && tag <= 0xcf) {
		if (reader_be(r, widths[tag - 0xcc], &v) != 0)
			return -EBADMSG;
		*value = v;
		return 0;
	}
	if (tag >= 0xd0 && tag <= 0xd3) {
		/* A signed format holding a non-negative value: some encoders
		 * write small numbers this way. The sign bit of its width must
		 * be clear. */
		size_t width = widths[tag - 0xd0];
		if (reader_be(r, width, &v) != 0 || (v >> (8 * width - 1)) != 0)
			return -EBADMSG;
		*value = v;
		return 0;
	}
	return -EBADMSG;
}

int fm__mp_read_int(fm__mp_reader *r, int64_t *value)
{
	static const size_t widths[4] = {1, 2, 4, 8};
	uint8_t tag;
	uint64_t v;
	size_t width;

	if (r->pos >= r->len)
		return -EBADMSG;
	tag = r->buf[r->pos];
	if (tag <= 0x7f || (tag >= 0xcc && tag <= 0xcf)) {
		if (fm__mp_read_uint(r, &v) != 0 || v > (uint64_t)INT64_MAX)
			return -EBADMSG;
		*value = (int64_t)v;
		return 0;
	}
	r->pos++;
	if (tag >= 0xe0) { /* negative fixint */
		*value = (int64_t)tag - 256;
		return 0;
	}
	if (tag < 0xd0 || tag > 0xd3)
		return -EBADMSG;
	width = widths[tag - 0xd0];
	if (reader_be(r, width, &v) != 0)
		return -EBADMSG;
	/* Sign-extend from the format's width, without shifting into the
	 * sign bit of a signed type. */
	if (width < 8 && (v >> (8 * width - 1)) != 0)
		v |= ~(uint64_t)0 << (8 * width);
	memcpy(value, &v, sizeof(*value));
	return 0;
}

static int read_sized(fm__mp_reader *r, uint8_t tag, uint8_t fix_lo,
                      uint8_t fix_hi, uint8_t tag8, const uint8_t **data,
                      size_t *len)
{
	uint64_t n;

	if (fix_lo != 0 && tag >= fix_lo && tag <= fix_hi)
		n = (uint64_t)(tag - fix_lo);
	else if (tag == tag8 || tag == tag8 + 1 || tag == tag8 + 2) {
		size_t width = (size_t)1 << (tag - tag8);
		if (reader_be(r, width, &n) != 0)
			return -EBADMSG;
	} else
		return -EBADMSG;
	if (n > reader_left(r))
		return -EBADMSG;
	*data = r->buf + r->pos;
	*len = (size_t)n;
	r->pos += (size_t)n;
	return 0;
}

int fm__mp_read_bin(fm__mp_reader *r, const uint8_t **data, size_t *len)
{
	uint8_t tag;

	if (reader_tag(r, &tag) != 0)
		return -EBADMSG;
	return read_sized(r, tag, 0, 0, 0xc4, data, len);
}

int fm__mp_read_str(fm__mp_reader *r, const char **data, size_t *len)
{
	const uint8_t *p;
	uint8_t tag;
	int rc;

	if (reader_tag(r, &tag) != 0)
		return -EBADMSG;
	rc = read_sized(r, tag, 0xa0, 0xbf, 0xd9, &p, len);
	if (rc == 0)
		*data = (const char *)p;
	return rc;
}

int fm__mp_reader_end(const fm__mp_reader *r)
{
	return r->pos == r->len ? 0 : -EBADMSG;
}

/* ---- writer -------------------------------------------------------------- */

static int writer_append(void *data, const char *buf, size_t len)
{
	fm__mp_writer *w = data;

	if (w->overflow || len > w->cap - w->len) {
		w->overflow = 1;
		return -1;
	}
	if (len > 0) {
		memcpy(w->buf + w->len, buf, len);
		w->len += len;
	}
	return 0;
}

void fm__mp_writer_init(fm__mp_writer *w, uint8_t *buf, size_t cap)
{
	w->buf = buf;
	w->cap = buf != NULL ? cap : 0;
	w->len = 0;
	w->overflow = 0;
}

void fm__mp_write_array(fm__mp_writer *w, size_t count)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, w, writer_append);
	(void)msgpack_pack_array(&pk, count);
}

void fm__mp_write_uint(fm__mp_writer *w, uint64_t value)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, w, writer_append);
	(void)msgpack_pack_uint64(&pk, value);
}

void fm__mp_write_int(fm__mp_writer *w, int64_t value)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, w, writer_append);
	(void)msgpack_pack_int64(&pk, value);
}

void fm__mp_write_bin(fm__mp_writer *w, const uint8_t *data, size_t len)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, w, writer_append);
	(void)msgpack_pack_bin_with_body(&pk, data, len);
}

void fm__mp_write_str(fm__mp_writer *w, const char *data, size_t len)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, w, writer_append);
	(void)msgpack_pack_str_with_body(&pk, data, len);
}

int fm__mp_writer_finish(const fm__mp_writer *w, size_t *len)
{
	if (w->overflow)
		return -ENOSPC;
	*len = w->len;
	return 0;
}

/* ---- session messages ---------------------------------------------------- */

/* One row per message type: its array length (type included) and the
 * functions that write and read the elements after the type. A type with no
 * fields has NULL functions. */
typedef struct msg_kind {
	uint8_t type;
	uint8_t elements;
	int (*encode)(const fm__msg *m, fm__mp_writer *w);
	int (*decode)(fm__mp_reader *r, fm__msg *out);
} msg_kind;

static int ping_encode(const fm__msg *m, fm__mp_writer *w)
{
	fm__mp_write_uint(w, m->seq);
	fm__mp_write_uint(w, m->time_ms);
	return 0;
}

static int ping_decode(fm__mp_reader *r, fm__msg *out)
{
	if (fm__mp_read_uint(r, &out->seq) != 0 ||
	    fm__mp_read_uint(r, &out->time_ms) != 0)
		return -EBADMSG;
	return 0;
}

static int record_encode(const fm__msg *m, fm__mp_writer *w)
{
	if (m->record_len > FM_RECORD_MAX_BYTES ||
	    (m->record == NULL && m->record_len > 0))
		return -EINVAL;
	fm__mp_write_bin(w, m->record, m->record_len);
	return 0;
}

static int record_decode(fm__mp_reader *r, fm__msg *out)
{
	if (fm__mp_read_bin(r, &out->record, &out->record_len) != 0 ||
	    out->record_len > FM_RECORD_MAX_BYTES)
		return -EBADMSG;
	return 0;
}

static int close_encode(const fm__msg *m, fm__mp_writer *w)
{
	size_t n = strnlen(m->reason, sizeof(m->reason));

	if (n > FM__WIRE_REASON_MAX)
		return -EINVAL; /* not NUL-terminated */
	fm__mp_write_str(w, m->reason, n);
	return 0;
}

static int close_decode(fm__mp_reader *r, fm__msg *out)
{
	const char *s;
	size_t n;

	/* A NUL inside would silently cut the C string short. */
	if (fm__mp_read_str(r, &s, &n) != 0 || n > FM__WIRE_REASON_MAX ||
	    memchr(s, '\0', n) != NULL)
		return -EBADMSG;
	memcpy(out->reason, s, n);
	out->reason[n] = '\0';
	return 0;
}

/* ---- job messages ---------------------------------------------------------
 * Every field is checked here against the protocol's limits, on the way in
 * and on the way out alike, so that whatever decodes also encodes; whether
 * a message fits the state of a job is jobs.c's business. */

int fm__job_id_ok(const char *id, size_t len)
{
	size_t i;

	if (id == NULL || len < 1 || len > FM_JOB_ID_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return 0;
	}
	return 1;
}

/* Writes a NUL-terminated field of at most max bytes; -EINVAL when it is
 * longer (not terminated within its array) or fails check. */
static int write_text(fm__mp_writer *w, const char *text, size_t size,
                      int (*check)(const char *, size_t))
{
	size_t n = strnlen(text, size);

	if (n >= size || (check != NULL && !check(text, n)))
		return -EINVAL;
	fm__mp_write_str(w, text, n);
	return 0;
}

/* Reads a string into out (size bytes with the NUL); -EBADMSG when it is
 * too long, holds a NUL, or fails check. */
static int read_text(fm__mp_reader *r, char *out, size_t size,
                     int (*check)(const char *, size_t))
{
	const char *s;
	size_t n;

	if (fm__mp_read_str(r, &s, &n) != 0 || n >= size ||
	    memchr(s, '\0', n) != NULL || (check != NULL && !check(s, n)))
		return -EBADMSG;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

static int job_id_write(const fm__msg *m, fm__mp_writer *w)
{
	return write_text(w, m->job_id, sizeof(m->job_id), fm__job_id_ok);
}

static int job_id_read(fm__mp_reader *r, fm__msg *out)
{
	return read_text(r, out->job_id, sizeof(out->job_id), fm__job_id_ok);
}

static int chunk_write(const fm__msg *m, fm__mp_writer *w, int nonempty)
{
	if (m->chunk_len > FM_JOB_CHUNK_BYTES ||
	    (m->chunk == NULL && m->chunk_len > 0) ||
	    (nonempty && m->chunk_len == 0))
		return -EINVAL;
	fm__mp_write_bin(w, m->chunk, m->chunk_len);
	return 0;
}

static int chunk_read(fm__mp_reader *r, fm__msg *out, int nonempty)
{
	if (fm__mp_read_bin(r, &out->chunk, &out->chunk_len) != 0 ||
	    out->chunk_len > FM_JOB_CHUNK_BYTES ||
	    (nonempty && out->chunk_len == 0))
		return -EBADMSG;
	return 0;
}

/* A job message with the ID only: RUNNING, CANCEL, QUERY, ACK. */
static int job_only_encode(const fm__msg *m, fm__mp_writer *w)
{
	return job_id_write(m, w);
}

static int job_only_decode(fm__mp_reader *r, fm__msg *out)
{
	return job_id_read(r, out);
}

static int job_request_ok(const fm__msg *m)
{
	return m->total_len <= FM_JOB_INPUT_MAX && m->chunk_len <= m->total_len;
}

static int job_request_encode(const fm__msg *m, fm__mp_writer *w)
{
	if (!job_request_ok(m) || job_id_write(m, w) != 0 ||
	    write_text(w, m->service, sizeof(m->service),
	               fm__service_name_ok) != 0)
		return -EINVAL;
	fm__mp_write_uint(w, m->timeout_ms);
	fm__mp_write_uint(w, m->total_len);
	return chunk_write(m, w, 0);
}

static int job_request_decode(fm__mp_reader *r, fm__msg *out)
{
	if (job_id_read(r, out) != 0 ||
	    read_text(r, out->service, sizeof(out->service),
	              fm__service_name_ok) != 0 ||
	    fm__mp_read_uint(r, &out->timeout_ms) != 0 ||
	    fm__mp_read_uint(r, &out->total_len) != 0 ||
	    chunk_read(r, out, 0) != 0 || !job_request_ok(out))
		return -EBADMSG;
	return 0;
}

/* DATA and RESULT_DATA: a non-empty chunk at offset, within the ceiling. */
static int job_data_ok(const fm__msg *m, uint64_t ceiling)
{
	return m->offset <= ceiling && m->chunk_len <= ceiling - m->offset;
}

static int job_data_encode_max(const fm__msg *m, fm__mp_writer *w,
                               uint64_t ceiling)
{
	if (!job_data_ok(m, ceiling) || job_id_write(m, w) != 0)
		return -EINVAL;
	fm__mp_write_uint(w, m->offset);
	return chunk_write(m, w, 1);
}

static int job_data_decode_max(fm__mp_reader *r, fm__msg *out, uint64_t ceiling)
{
	if (job_id_read(r, out) != 0 ||
	    fm__mp_read_uint(r, &out->offset) != 0 ||
	    chunk_read(r, out, 1) != 0 || !job_data_ok(out, ceiling))
		return -EBADMSG;
	return 0;
}

static int job_data_encode(const fm__msg *m, fm__mp_writer *w)
{
	return job_data_encode_max(m, w, FM_JOB_INPUT_MAX);
}

static int job_data_decode(fm__mp_reader *r, fm__msg *out)
{
	return job_data_decode_max(r, out, FM_JOB_INPUT_MAX);
}

static int job_result_data_encode(const fm__msg *m, fm__mp_writer *w)
{
	return job_data_encode_max(m, w, FM_JOB_OUTPUT_MAX);
}

static int job_result_data_decode(fm__mp_reader *r, fm__msg *out)
{
	return job_data_decode_max(r, out, FM_JOB_OUTPUT_MAX);
}

static int job_accept_encode(const fm__msg *m, fm__mp_writer *w)
{
	if (m->offset > FM_JOB_INPUT_MAX || job_id_write(m, w) != 0)
		return -EINVAL;
	fm__mp_write_uint(w, m->offset);
	return 0;
}

static int job_accept_decode(fm__mp_reader *r, fm__msg *out)
{
	if (job_id_read(r, out) != 0 ||
	    fm__mp_read_uint(r, &out->offset) != 0 ||
	    out->offset > FM_JOB_INPUT_MAX)
		return -EBADMSG;
	return 0;
}

static int job_refuse_encode(const fm__msg *m, fm__mp_writer *w)
{
	if (job_id_write(m, w) != 0)
		return -EINVAL;
	return write_text(w, m->reason, sizeof(m->reason), NULL);
}

static int job_refuse_decode(fm__mp_reader *r, fm__msg *out)
{
	if (job_id_read(r, out) != 0 ||
	    read_text(r, out->reason, sizeof(out->reason), NULL) != 0)
		return -EBADMSG;
	return 0;
}

static int job_result_ok(const fm__msg *m)
{
	return (m->state == FM_JOB_DONE || m->state == FM_JOB_FAILED ||
	        m->state == FM_JOB_TIMED_OUT || m->state == FM_JOB_CANCELLED) &&
	       m->total_len <= FM_JOB_OUTPUT_MAX &&
	       m->chunk_len <= m->total_len;
}

static int job_result_encode(const fm__msg *m, fm__mp_writer *w)
{
	if (!job_result_ok(m) || job_id_write(m, w) != 0)
		return -EINVAL;
	fm__mp_write_uint(w, m->state);
	fm__mp_write_int(w, m->exit_status);
	fm__mp_write_uint(w, m->total_len);
	if (chunk_write(m, w, 0) != 0)
		return -EINVAL;
	return write_text(w, m->error, sizeof(m->error), NULL);
}

static int job_result_decode(fm__mp_reader *r, fm__msg *out)
{
	uint64_t state;
	int64_t status;

	if (job_id_read(r, out) != 0 || fm__mp_read_uint(r, &state) != 0 ||
	    state > UINT8_MAX || fm__mp_read_int(r, &status) != 0 ||
	    status < INT32_MIN || status > INT32_MAX ||
	    fm__mp_read_uint(r, &out->total_len) != 0 ||
	    chunk_read(r, out, 0) != 0 ||
	    read_text(r, out->error, sizeof(out->error), NULL) != 0)
		return -EBADMSG;
	out->state = (uint8_t)state;
	out->exit_status = (int32_t)status;
	return job_result_ok(out) ? 0 : -EBADMSG;
}

static const msg_kind msg_kinds[] = {
        {FM__MSG_PING, 3, ping_encode, ping_decode},
        {FM__MSG_PONG, 3, ping_encode, ping_decode},
        {FM__MSG_RECORD, 2, record_encode, record_decode},
        {FM__MSG_REKEY, 1, NULL, NULL},
        {FM__MSG_CLOSE, 2, close_encode, close_decode},
        {FM__MSG_JOB_REQUEST, 6, job_request_encode, job_request_decode},
        {FM__MSG_JOB_DATA, 4, job_data_encode, job_data_decode},
        {FM__MSG_JOB_ACCEPT, 3, job_accept_encode, job_accept_decode},
        {FM__MSG_JOB_REFUSE, 3, job_refuse_encode, job_refuse_decode},
        {FM__MSG_JOB_RUNNING, 2, job_only_encode, job_only_decode},
        {FM__MSG_JOB_RESULT, 7, job_result_encode, job_result_decode},
        {FM__MSG_JOB_RESULT_DATA, 4, job_result_data_encode,
         job_result_data_decode},
        {FM__MSG_JOB_CANCEL, 2, job_only_encode, job_only_decode},
        {FM__MSG_JOB_QUERY, 2, job_only_encode, job_only_decode},
        {FM__MSG_JOB_ACK, 2, job_only_encode, job_only_decode},
};

static const msg_kind *msg_kind_find(uint64_t type)
{
	size_t i;

	for (i = 0; i < sizeof(msg_kinds) / sizeof(msg_kinds[0]); i++)
		if (msg_kinds[i].type == type)
			return &msg_kinds[i];
	return NULL;
}

int fm__msg_encode(const fm__msg *m, uint8_t *out, size_t cap, size_t *len)
{
	const msg_kind *kind;
	fm__mp_writer w;
	size_t limit =
	        cap < FM__WIRE_MSG_MAX_BYTES ? cap : FM__WIRE_MSG_MAX_BYTES;
	int rc;

	if (m == NULL || out == NULL || len == NULL)
		return -EINVAL;
	kind = msg_kind_find(m->type);
	if (kind == NULL)
		return -EINVAL;
	fm__mp_writer_init(&w, out, limit);
	fm__mp_write_array(&w, kind->elements);
	fm__mp_write_uint(&w, kind->type);
	if (kind->encode != NULL && (rc = kind->encode(m, &w)) != 0)
		return rc;
	if (fm__mp_writer_finish(&w, len) != 0)
		return limit < cap ? -EMSGSIZE : -ENOSPC;
	return 0;
}

int fm__msg_decode(const uint8_t *buf, size_t len, fm__msg *out)
{
	const msg_kind *kind;
	fm__mp_reader r;
	fm__msg m;
	uint64_t type;
	size_t n;
	int rc;

	if (out == NULL || (buf == NULL && len > 0))
		return -EINVAL;
	if (len > FM__WIRE_MSG_MAX_BYTES ||
	    fm__msgpack_check(buf, len, FM__WIRE_MSG_DEPTH_MAX,
	                      FM__WIRE_MSG_ITEMS_MAX) != 0)
		return -EBADMSG;
	fm__mp_reader_init(&r, buf, len);
	if (fm__mp_read_array(&r, &n) != 0 || n < 1 ||
	    fm__mp_read_uint(&r, &type) != 0)
		return -EBADMSG;
	kind = msg_kind_find(type);
	if (kind == NULL)
		return -ENOTSUP;
	if (n != kind->elements)
		return -EBADMSG;
	memset(&m, 0, sizeof(m));
	m.type = kind->type;
	if (kind->decode != NULL && (rc = kind->decode(&r, &m)) != 0)
		return rc;
	if (fm__mp_reader_end(&r) != 0)
		return -EBADMSG;
	*out = m;
	return 0;
}

/* ---- handshake payload --------------------------------------------------- */

#define FM__HELLO_ELEMENTS 4

int fm__hello_encode(const fm__hello *h, uint8_t *out, size_t cap, size_t *len)
{
	fm__mp_writer w;

	if (h == NULL || out == NULL || len == NULL ||
	    h->record_len > FM_RECORD_MAX_BYTES ||
	    (h->record == NULL && h->record_len > 0))
		return -EINVAL;
	fm__mp_writer_init(&w, out, cap);
	fm__mp_write_array(&w, FM__HELLO_ELEMENTS);
	fm__mp_write_uint(&w, FM__HELLO_VERSION);
	fm__mp_write_bin(&w, h->public_key, sizeof(h->public_key));
	fm__mp_write_bin(&w, h->signature, sizeof(h->signature));
	fm__mp_write_bin(&w, h->record, h->record_len);
	return fm__mp_writer_finish(&w, len);
}

int fm__hello_decode(const uint8_t *buf, size_t len, fm__hello *out)
{
	const uint8_t *pk, *sig;
	size_t pk_len, sig_len, n;
	uint64_t version;
	fm__mp_reader r;
	fm__hello h;

	if (out == NULL || (buf == NULL && len > 0))
		return -EINVAL;
	/* The generic message limits first, so that a later version, which
	 * may be larger, is recognised as such (-ENOTSUP); version 1's own
	 * sizes are enforced once the version is known. */
	if (len > FM__WIRE_MSG_MAX_BYTES ||
	    fm__msgpack_check(buf, len, FM__WIRE_MSG_DEPTH_MAX,
	                      FM__WIRE_MSG_ITEMS_MAX) != 0)
		return -EBADMSG;
	fm__mp_reader_init(&r, buf, len);
	if (fm__mp_read_array(&r, &n) != 0 || n < 1 ||
	    fm__mp_read_uint(&r, &version) != 0)
		return -EBADMSG;
	if (version != FM__HELLO_VERSION)
		return -ENOTSUP;
	memset(&h, 0, sizeof(h));
	if (len > FM__HELLO_MAX_BYTES || n != FM__HELLO_ELEMENTS ||
	    fm__mp_read_bin(&r, &pk, &pk_len) != 0 ||
	    pk_len != sizeof(h.public_key) ||
	    fm__mp_read_bin(&r, &sig, &sig_len) != 0 ||
	    sig_len != sizeof(h.signature) ||
	    fm__mp_read_bin(&r, &h.record, &h.record_len) != 0 ||
	    h.record_len > FM_RECORD_MAX_BYTES || fm__mp_reader_end(&r) != 0)
		return -EBADMSG;
	memcpy(h.public_key, pk, pk_len);
	memcpy(h.signature, sig, sig_len);
	*out = h;
	return 0;
}
