/* Harness: the msgpack codec of session messages and the handshake hello
 * (src/core/wire.c). The input is one decrypted session message: the
 * structural check, the message decoder and the hello decoder all read it.
 * Whatever decodes must encode again, and decode to the same encoding. */
#include <errno.h>
#include <string.h>

#include "core/wire.h"
#include "fuzz.h"

static uint8_t again[FM__WIRE_MSG_MAX_BYTES + 1024];
static uint8_t third[FM__WIRE_MSG_MAX_BYTES + 1024];

static void msg_round_trip(const uint8_t *data, size_t size)
{
	size_t len = 0, len2 = 0;
	fm__msg m, m2;
	int rc;

	memset(&m, 0, sizeof(m));
	rc = fm__msg_decode(data, size, &m);
	if (rc != 0) {
		if (rc != -EBADMSG && rc != -ENOTSUP && rc != -EINVAL)
			fz_fail("wire", "fm__msg_decode: unexpected error");
		return;
	}
	rc = fm__msg_encode(&m, again, sizeof(again), &len);
	if (rc != 0)
		fz_fail("wire", "a decoded message does not encode");
	memset(&m2, 0, sizeof(m2));
	if (fm__msg_decode(again, len, &m2) != 0 || m2.type != m.type)
		fz_fail("wire", "an encoded message does not decode");
	if (fm__msg_encode(&m2, third, sizeof(third), &len2) != 0 ||
	    len2 != len || memcmp(again, third, len) != 0)
		fz_fail("wire", "encode(decode(x)) is not stable");
}

static void hello_round_trip(const uint8_t *data, size_t size)
{
	size_t len = 0;
	fm__hello h, h2;

	if (fm__hello_decode(data, size, &h) != 0)
		return;
	if (fm__hello_encode(&h, again, sizeof(again), &len) != 0)
		fz_fail("wire", "a decoded hello does not encode");
	if (fm__hello_decode(again, len, &h2) != 0 ||
	    memcmp(h.public_key, h2.public_key, sizeof(h.public_key)) != 0 ||
	    memcmp(h.signature, h2.signature, sizeof(h.signature)) != 0 ||
	    h.record_len != h2.record_len ||
	    (h.record_len > 0 &&
	     memcmp(h.record, h2.record, h.record_len) != 0))
		fz_fail("wire", "hello round trip changed a field");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int rc;

	rc = fm__msgpack_check(data, size, FM__WIRE_MSG_DEPTH_MAX,
	                       FM__WIRE_MSG_ITEMS_MAX);
	if (rc != 0 && rc != -EBADMSG)
		fz_fail("wire", "fm__msgpack_check: unexpected error");
	(void)fm__msgpack_check(data, size, FM__MSGPACK_DEPTH_MAX, SIZE_MAX);
	msg_round_trip(data, size);
	hello_round_trip(data, size);
	return 0;
}
