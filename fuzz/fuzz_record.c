/* Harness: signed node records (src/core/record.c), which arrive in
 * handshakes, RECORD messages and DHT values, and the address text they
 * and invites carry (src/core/addr.c). The first byte picks what the rest
 * is:
 *   even  an encoded record: decoded and verified; one that is accepted
 *         must encode to exactly the input (the canonical form);
 *   odd   an address text ("a.b.c.d:port", "[v6]:port", cut at a NUL):
 *         what parses must format and parse back to the same address. */
#include <errno.h>
#include <string.h>

#include "fuzz.h"

static void record(const uint8_t *data, size_t size)
{
	uint8_t out[FM_RECORD_MAX_BYTES];
	fm_record rec;
	size_t len = 0;
	int rc;

	rc = fm_record_decode(data, size, &rec);
	if (rc == -EBADMSG || rc == -EPERM)
		return;
	if (rc != 0)
		fz_fail("record", "fm_record_decode: unexpected error");
	if (rec.addr_count > FM_RECORD_ADDRS_MAX ||
	    rec.service_count > FM_RECORD_SERVICES_MAX)
		fz_fail("record", "more entries than the limits");
	if (fm_record_encode(&rec, out, sizeof(out), &len) != 0 ||
	    len != size || memcmp(out, data, size) != 0)
		fz_fail("record", "an accepted record is not canonical");
	if (fm_record_supersedes(&rec, &rec))
		fz_fail("record", "a record supersedes itself");
}

static void address(const uint8_t *data, size_t size)
{
	char text[2 * FM_ADDR_STR_MAX], out[FM_ADDR_STR_MAX];
	fm_addr a, b;

	if (size >= sizeof(text))
		size = sizeof(text) - 1;
	memcpy(text, data, size);
	text[size] = '\0';
	if (fm_addr_parse(text, &a) != 0)
		return;
	if (fm_addr_format(&a, out, sizeof(out)) != 0 ||
	    fm_addr_parse(out, &b) != 0 || a.family != b.family ||
	    a.port != b.port || memcmp(a.ip, b.ip, sizeof(a.ip)) != 0)
		fz_fail("record", "address round trip changed the address");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		address(data + 1, size - 1);
	else
		record(data + 1, size - 1);
	return 0;
}
