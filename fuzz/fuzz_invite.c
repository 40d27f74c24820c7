/* Harness: invite strings (src/core/invite.c), the text a user pastes
 * into `fedmesh join`. The first byte picks what the rest is:
 *   odd   the text itself (cut at a NUL, as a C string would be);
 *   even  the msgpack body of an invite, to which the harness appends the
 *         checksum and which it writes as "fedmesh1" + base32, so that the
 *         fuzzer reaches the body decoder past the checksum.
 * What decodes must encode to an invite that decodes to the same key and
 * addresses. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fuzz.h"

/* Longer than any invite, so the length limit itself is exercised. */
#define INPUT_MAX (4 * FM_INVITE_TEXT_MAX)

/* invite.c's framing, from docs/PROTOCOL.md ("Invites"). */
#define PREFIX "fedmesh1"
#define CONTEXT "fedmesh-invite-v1"
#define CHECKSUM_BYTES 4

/* Writes PREFIX || base32(body || checksum) into text (INPUT_MAX + 1). */
static void frame_body(const uint8_t *body, size_t len, char *text)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
	uint8_t raw[INPUT_MAX];
	uint8_t hash[crypto_generichash_BYTES];
	crypto_generichash_state st;
	size_t i, out = sizeof(PREFIX) - 1, bits = 0;
	uint32_t acc = 0;

	/* Room for the prefix and 8 characters per 5 bytes. */
	if (len > (INPUT_MAX - sizeof(PREFIX)) * 5 / 8 - CHECKSUM_BYTES - 1)
		len = (INPUT_MAX - sizeof(PREFIX)) * 5 / 8 - CHECKSUM_BYTES - 1;
	memcpy(raw, body, len);
	crypto_generichash_init(&st, NULL, 0, sizeof(hash));
	crypto_generichash_update(&st, (const uint8_t *)CONTEXT,
	                          sizeof(CONTEXT) - 1);
	crypto_generichash_update(&st, raw, len);
	crypto_generichash_final(&st, hash, sizeof(hash));
	memcpy(raw + len, hash, CHECKSUM_BYTES);
	len += CHECKSUM_BYTES;
	memcpy(text, PREFIX, sizeof(PREFIX) - 1);
	for (i = 0; i < len; i++) {
		acc = (acc << 8) | raw[i];
		bits += 8;
		while (bits >= 5) {
			text[out++] = alphabet[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		text[out++] = alphabet[(acc << (5 - bits)) & 31];
	text[out] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t key[FM_FEDERATION_KEY_BYTES], key2[FM_FEDERATION_KEY_BYTES];
	fm_addr addrs[FM_INVITE_ADDRS_MAX], addrs2[FM_INVITE_ADDRS_MAX];
	char text[INPUT_MAX + 1];
	char out[FM_INVITE_TEXT_MAX + 1];
	size_t count = 0, count2 = 0, i;
	int rc;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		size--;
		if (size > INPUT_MAX)
			size = INPUT_MAX;
		memcpy(text, data + 1, size);
		text[size] = '\0';
	} else {
		frame_body(data + 1, size - 1, text);
	}
	rc = fm_invite_decode(text, key, addrs, FM_INVITE_ADDRS_MAX, &count);
	if (rc != 0) {
		if (rc != -EINVAL && rc != -ENOSPC)
			fz_fail("invite", "fm_invite_decode: unexpected error");
		return 0;
	}
	if (count > FM_INVITE_ADDRS_MAX)
		fz_fail("invite", "more addresses than asked for");
	/* Fewer slots than addresses must still be safe. */
	(void)fm_invite_decode(text, key2, addrs2, 1, &count2);
	if (fm_invite_encode(key, addrs, count, out, sizeof(out)) != 0)
		fz_fail("invite", "a decoded invite does not encode");
	if (fm_invite_decode(out, key2, addrs2, FM_INVITE_ADDRS_MAX, &count2) !=
	            0 ||
	    count2 != count || memcmp(key, key2, sizeof(key)) != 0)
		fz_fail("invite", "round trip changed the key or count");
	for (i = 0; i < count; i++) {
		char a[FM_ADDR_STR_MAX], b[FM_ADDR_STR_MAX];
		if (fm_addr_format(&addrs[i], a, sizeof(a)) != 0 ||
		    fm_addr_format(&addrs2[i], b, sizeof(b)) != 0 ||
		    strcmp(a, b) != 0)
			fz_fail("invite", "round trip changed an address");
	}
	return 0;
}
