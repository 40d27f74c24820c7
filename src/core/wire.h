/* The msgpack codec of what nodes say to each other inside a session: the
 * session messages ([type, ...] arrays), the handshake payload ("hello")
 * and the small reader/writer that record.c and invite.c share.
 *
 * Everything here reads untrusted bytes, so nothing here allocates: a
 * bounded structural check (fm__msgpack_check) runs first and a
 * bounds-checked cursor (fm__mp_reader) decodes, each pointer it hands out
 * pointing into the caller's buffer. msgpack-c is used for writing only, and
 * only its header-inline packer, writing into a fixed buffer (wire.c says
 * why its unpacker is not used).
 *
 * Errors (negative errno): -EINVAL bad arguments or a value that cannot be
 * encoded; -ENOSPC the output buffer is too small; -EMSGSIZE the encoding
 * would exceed the message's named maximum; -EBADMSG malformed input (wrong
 * types, missing or extra elements, trailing bytes, over a limit);
 * -ENOTSUP a well-formed message of a type or version this code does not
 * know (the caller ignores it: that is how newer peers stay compatible). */
#ifndef FM_CORE_WIRE_H
#define FM_CORE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "fedmesh/fedmesh.h"

/* Largest session message: a Noise transport message (65535 bytes) minus
 * its 16-byte Poly1305 tag. */
#define FM__WIRE_MSG_MAX_BYTES 65519
/* Nesting and object count a session message may use. Today's messages are
 * flat arrays; the head room is for the DHT and job messages to come. */
#define FM__WIRE_MSG_DEPTH_MAX 8
#define FM__WIRE_MSG_ITEMS_MAX 1024
/* Hard ceiling of fm__msgpack_check's max_depth (the size of its stack). */
#define FM__MSGPACK_DEPTH_MAX 32
/* Longest CLOSE reason (and JOB_REFUSE reason), in bytes, without the NUL. */
#define FM__WIRE_REASON_MAX 64
/* Job messages (docs/PROTOCOL.md, "Jobs"). Input and output travel in
 * chunks of at most FM_JOB_CHUNK_BYTES, so that the largest job message
 * (a JOB_RESULT: chunk, job ID, error text and headers) stays well inside
 * FM__WIRE_MSG_MAX_BYTES and every frame fits the 65,535-byte Noise limit. */
#define FM_JOB_CHUNK_BYTES 60000
/* Longest error text of a JOB_RESULT, in bytes, without the NUL. */
#define FM__WIRE_JOB_ERROR_MAX (FM_JOB_ERROR_MAX - 1)

/* ---- structural check ---------------------------------------------------- */

/* Walks buf without allocating and returns 0 only if it holds exactly one
 * complete msgpack object with no trailing bytes, every length and count fits
 * in the bytes that remain (each pending element needs at least one byte),
 * containers nest at most max_depth deep (a scalar is depth 0, [1] is depth
 * 1) and there are at most max_items objects in all (every scalar, array,
 * map, key and value counts one). -EBADMSG otherwise; -EINVAL when
 * max_depth > FM__MSGPACK_DEPTH_MAX or buf is NULL with len > 0. */
int fm__msgpack_check(const uint8_t *buf, size_t len, unsigned max_depth,
                      size_t max_items);

/* ---- reader: a bounds-checked cursor over checked bytes --------------------
 */

typedef struct fm__mp_reader {
	const uint8_t *buf;
	size_t len;
	size_t pos;
} fm__mp_reader;

void fm__mp_reader_init(fm__mp_reader *r, const uint8_t *buf, size_t len);
/* Each reads one object of its type or returns -EBADMSG (wrong type,
 * truncated, or a count larger than the bytes left). Integers may come in
 * any width, signed formats included when non-negative; callers that need
 * canonical bytes re-encode and compare (record.c). */
int fm__mp_read_array(fm__mp_reader *r, size_t *count);
int fm__mp_read_uint(fm__mp_reader *r, uint64_t *value);
/* A signed integer in any msgpack integer format (a uint above INT64_MAX is
 * -EBADMSG). */
int fm__mp_read_int(fm__mp_reader *r, int64_t *value);
int fm__mp_read_bin(fm__mp_reader *r, const uint8_t **data, size_t *len);
int fm__mp_read_str(fm__mp_reader *r, const char **data, size_t *len);
/* 0 when every byte was consumed, -EBADMSG when bytes remain. */
int fm__mp_reader_end(const fm__mp_reader *r);

/* ---- writer: msgpack-c's packer into a fixed buffer
 * -------------------------- */

/* Writes are void and the first overflow is sticky, so an encoder writes
 * its fields straight through and checks once, at fm__mp_writer_finish().
 * Integers, lengths and counts always take their shortest form. */
typedef struct fm__mp_writer {
	uint8_t *buf;
	size_t cap;
	size_t len;
	int overflow;
} fm__mp_writer;

void fm__mp_writer_init(fm__mp_writer *w, uint8_t *buf, size_t cap);
void fm__mp_write_array(fm__mp_writer *w, size_t count);
void fm__mp_write_uint(fm__mp_writer *w, uint64_t value);
void fm__mp_write_int(fm__mp_writer *w, int64_t value);
void fm__mp_write_bin(fm__mp_writer *w, const uint8_t *data, size_t len);
void fm__mp_write_str(fm__mp_writer *w, const char *data, size_t len);
/* 0 and *len = bytes written, or -ENOSPC when anything did not fit. */
int fm__mp_writer_finish(const fm__mp_writer *w, size_t *len);

/* ---- session messages ---------------------------------------------------- */

/* A session message is a msgpack array whose first element is its type.
 * Numbers are never reused; adding a type is one entry in wire.c's table. */
enum fm__msg_type {
	FM__MSG_PING = 1,   /* [1, seq:uint, time_ms:uint] */
	FM__MSG_PONG = 2,   /* [2, seq:uint, time_ms:uint], echoing a PING */
	FM__MSG_RECORD = 3, /* [3, record:bin (<= FM_RECORD_MAX_BYTES)] */
	FM__MSG_REKEY = 4,  /* [4] */
	FM__MSG_CLOSE = 5,  /* [5, reason:str (<= FM__WIRE_REASON_MAX bytes)] */
	/* Jobs (16-31; jobs.c). id: 1-64 bytes of [A-Za-z0-9._-]; chunk: bin
	 * of at most FM_JOB_CHUNK_BYTES. */
	FM__MSG_JOB_REQUEST = 16, /* [16, id, service:str, timeout_ms:uint,
	                             total_len:uint, chunk] */
	FM__MSG_JOB_DATA = 17,    /* [17, id, offset:uint, chunk (non-empty)] */
	FM__MSG_JOB_ACCEPT = 18,  /* [18, id, offset:uint (input bytes held)] */
	FM__MSG_JOB_REFUSE = 19,  /* [19, id, reason:str] */
	FM__MSG_JOB_RUNNING = 20, /* [20, id] */
	FM__MSG_JOB_RESULT = 21,  /* [21, id, state:uint, exit_status:int,
	                             total_len:uint, chunk, error:str] */
	FM__MSG_JOB_RESULT_DATA = 22, /* [22, id, offset:uint, chunk] */
	FM__MSG_JOB_CANCEL = 23,      /* [23, id] */
	FM__MSG_JOB_QUERY = 24,       /* [24, id] */
	FM__MSG_JOB_ACK = 25,         /* [25, id] */
};

/* 1 for the job message types (the ones jobs.c handles). */
#define FM__MSG_IS_JOB(t) ((t) >= FM__MSG_JOB_REQUEST && (t) <= FM__MSG_JOB_ACK)

typedef struct fm__msg {
	uint8_t type; /* enum fm__msg_type */
	uint64_t seq;
	uint64_t time_ms;
	const uint8_t *record; /* decode: points into the input buffer */
	size_t record_len;
	char reason[FM__WIRE_REASON_MAX +
	            1]; /* NUL-terminated; no NUL inside */
	/* Job messages: the fields their type uses (wire.h's table above). */
	char job_id[FM_JOB_ID_MAX + 1];
	char service[FM_SERVICE_NAME_MAX + 1];
	uint64_t timeout_ms;
	uint64_t total_len; /* input (REQUEST) or output (RESULT) bytes */
	uint64_t offset;    /* DATA, RESULT_DATA: where chunk goes; ACCEPT */
	uint8_t state;      /* RESULT: DONE, FAILED, TIMED_OUT or CANCELLED */
	int32_t exit_status;
	const uint8_t *chunk; /* decode: points into the input buffer */
	size_t chunk_len;
	char error[FM__WIRE_JOB_ERROR_MAX + 1]; /* RESULT; no NUL inside */
} fm__msg;

/* 1 when id[0..len) is a valid job ID: 1 to FM_JOB_ID_MAX bytes of
 * [A-Za-z0-9._-] (so it never contains ':', which the core uses to tell
 * served jobs from its own, see jobs.h). */
int fm__job_id_ok(const char *id, size_t len);

/* Encodes m (the fields its type uses) into out. -EINVAL for an unknown
 * type or a field over its limit, -ENOSPC when cap is too small, -EMSGSIZE
 * over FM__WIRE_MSG_MAX_BYTES. */
int fm__msg_encode(const fm__msg *m, uint8_t *out, size_t cap, size_t *len);
/* Decodes one message (the whole of buf). -EBADMSG when malformed, -ENOTSUP
 * for a well-formed array whose type is unknown (out->type is then not
 * meaningful). The reason is untrusted text: escape it before showing it. */
int fm__msg_decode(const uint8_t *buf, size_t len, fm__msg *out);

/* ---- handshake payload --------------------------------------------------- */

/* Carried in Noise handshake messages 2 and 3:
 * [1 (version), ed25519_public_key:bin32, binding_signature:bin64,
 *  record:bin (<= FM_RECORD_MAX_BYTES)]. What the signature signs is the
 * session layer's business; this is only its codec. */
#define FM__HELLO_VERSION 1
/* Array and version (2), bin8 key (2 + 32), bin8 signature (2 + 64), bin16
 * record (3 + FM_RECORD_MAX_BYTES). */
#define FM__HELLO_MAX_BYTES                                         \
	(2 + (2 + FM_PUBLIC_KEY_BYTES) + (2 + FM_SIGNATURE_BYTES) + \
	 (3 + FM_RECORD_MAX_BYTES))

typedef struct fm__hello {
	uint8_t public_key[FM_PUBLIC_KEY_BYTES];
	uint8_t signature[FM_SIGNATURE_BYTES];
	const uint8_t *record; /* decode: points into the input buffer */
	size_t record_len;
} fm__hello;

/* Same errors as fm__msg_encode/decode; -ENOTSUP for a well-formed array
 * whose version is not FM__HELLO_VERSION. */
int fm__hello_encode(const fm__hello *h, uint8_t *out, size_t cap, size_t *len);
int fm__hello_decode(const uint8_t *buf, size_t len, fm__hello *out);

#endif
