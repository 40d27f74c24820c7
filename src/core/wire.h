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
/* Longest CLOSE reason, in bytes, without the NUL. */
#define FM__WIRE_REASON_MAX 64

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
};

typedef struct fm__msg {
	uint8_t type; /* enum fm__msg_type */
	uint64_t seq;
	uint64_t time_ms;
	const uint8_t *record; /* decode: points into the input buffer */
	size_t record_len;
	char reason[FM__WIRE_REASON_MAX +
	            1]; /* NUL-terminated; no NUL inside */
} fm__msg;

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
