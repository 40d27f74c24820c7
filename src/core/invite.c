/* Invites: how a federation key and a few bootstrap addresses travel from
 * one person to another, by chat, mail or a QR code, as one word a user can
 * paste into `fedmesh join` (GUIDE.md, section 4).
 *
 * Text = "fedmesh1" || base32(body || checksum), where
 *   body     = msgpack [1 (version), key:bin32, addrs:[str, ...]]
 *   checksum = first 4 bytes of BLAKE2b-256("fedmesh-invite-v1" || body)
 *   base32   = RFC 4648 alphabet, lowercase, no padding.
 * Base32 because it survives copy-paste, line wrapping by mail clients
 * (surrounding whitespace is trimmed) and case changes (QR alphanumeric
 * mode is uppercase); the checksum catches typos so a mistyped invite fails
 * here and not as a silent failure to connect. The key is a secret, so the
 * text is never logged by this code, and malformed text is simply refused.
 *
 * Decoding is strict: the unused low bits of the last base32 character must
 * be zero (otherwise several texts would decode to the same bytes and a
 * typo there would go unnoticed), and any character outside the alphabet,
 * inside whitespace included, is an error.
 *
 * The length is bounded by FM_INVITE_TEXT_MAX, which leaves 315 bytes for
 * body and checksum: 8 IPv4 addresses always fit, but at most 5 IPv6
 * addresses of the longest textual form do; encoding refuses (-EINVAL) an
 * address list that does not fit. On -ENOSPC, decode sets *addr_count to
 * the number of addresses the invite holds, so the caller can retry. */
#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "core.h"
#include "wire.h"

#define FM__INVITE_PREFIX "fedmesh1"
#define FM__INVITE_PREFIX_LEN (sizeof(FM__INVITE_PREFIX) - 1)
#define FM__INVITE_VERSION 1
#define FM__INVITE_ELEMENTS 3
#define FM__INVITE_CONTEXT "fedmesh-invite-v1"
#define FM__INVITE_CHECKSUM_BYTES 4
/* Bytes that base32 fits into the text after the prefix: 5 bits a char. */
#define FM__INVITE_RAW_MAX \
	(((FM_INVITE_TEXT_MAX - FM__INVITE_PREFIX_LEN) * 5) / 8)
#define FM__INVITE_BODY_MAX (FM__INVITE_RAW_MAX - FM__INVITE_CHECKSUM_BYTES)
/* Nesting: body array > addresses array. */
#define FM__INVITE_DEPTH_MAX 2
#define FM__BASE32_BITS 5

static const char base32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

static void invite_checksum(const uint8_t *body, size_t len,
                            uint8_t out[FM__INVITE_CHECKSUM_BYTES])
{
	uint8_t hash[crypto_generichash_BYTES];
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, sizeof(hash));
	crypto_generichash_update(&st, (const uint8_t *)FM__INVITE_CONTEXT,
	                          sizeof(FM__INVITE_CONTEXT) - 1);
	crypto_generichash_update(&st, body, len);
	crypto_generichash_final(&st, hash, sizeof(hash));
	memcpy(out, hash, FM__INVITE_CHECKSUM_BYTES);
}

/* Characters base32 needs for len bytes, without padding. */
static size_t base32_len(size_t len)
{
	return (len * 8 + FM__BASE32_BITS - 1) / FM__BASE32_BITS;
}

/* out must hold base32_len(len) characters; no NUL is written. */
static void base32_encode(const uint8_t *in, size_t len, char *out)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= FM__BASE32_BITS) {
			bits -= FM__BASE32_BITS;
			out[o++] = base32_alphabet[(acc >> bits) & 0x1f];
		}
	}
	if (bits > 0)
		out[o++] = base32_alphabet[(acc << (FM__BASE32_BITS - bits)) &
		                           0x1f];
}

/* Value of one base32 character, either case; -1 outside the alphabet. */
static int base32_value(char c)
{
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

/* Decodes exactly len characters into at most cap bytes. -EINVAL for a
 * character outside the alphabet, a length no encoder produces, non-zero
 * unused bits, or more than cap bytes. */
static int base32_decode(const char *in, size_t len, uint8_t *out, size_t cap,
                         size_t *out_len)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		int v = base32_value(in[i]);
		if (v < 0)
			return -EINVAL;
		acc = (acc << FM__BASE32_BITS) | (uint32_t)v;
		bits += FM__BASE32_BITS;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -EINVAL;
			out[o++] = (uint8_t)(acc >> bits);
		}
		acc &= (1u << bits) - 1; /* keep only the unread bits */
	}
	/* A whole unused character, or set padding bits: not canonical. */
	if (bits >= FM__BASE32_BITS || acc != 0)
		return -EINVAL;
	*out_len = o;
	return 0;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char to_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

int fm_invite_encode(const uint8_t key[FM_FEDERATION_KEY_BYTES],
                     const fm_addr *addrs, size_t addr_count, char *out,
                     size_t out_len)
{
	uint8_t raw[FM__INVITE_RAW_MAX];
	fm__mp_writer w;
	size_t body_len, text_len, i;

	if (key == NULL || out == NULL || addr_count > FM_INVITE_ADDRS_MAX ||
	    (addrs == NULL && addr_count > 0))
		return -EINVAL;
	fm__mp_writer_init(&w, raw, FM__INVITE_BODY_MAX);
	fm__mp_write_array(&w, FM__INVITE_ELEMENTS);
	fm__mp_write_uint(&w, FM__INVITE_VERSION);
	fm__mp_write_bin(&w, key, FM_FEDERATION_KEY_BYTES);
	fm__mp_write_array(&w, addr_count);
	for (i = 0; i < addr_count; i++) {
		char text[FM_ADDR_STR_MAX];
		if (fm_addr_format(&addrs[i], text, sizeof(text)) != 0)
			return -EINVAL;
		fm__mp_write_str(&w, text, strlen(text));
	}
	/* Too long for FM_INVITE_TEXT_MAX: no buffer would help. */
	if (fm__mp_writer_finish(&w, &body_len) != 0)
		return -EINVAL;
	invite_checksum(raw, body_len, raw + body_len);
	text_len = FM__INVITE_PREFIX_LEN +
	           base32_len(body_len + FM__INVITE_CHECKSUM_BYTES);
	if (out_len < text_len + 1) {
		sodium_memzero(raw, sizeof(raw));
		return -ENOSPC;
	}
	memcpy(out, FM__INVITE_PREFIX, FM__INVITE_PREFIX_LEN);
	base32_encode(raw, body_len + FM__INVITE_CHECKSUM_BYTES,
	              out + FM__INVITE_PREFIX_LEN);
	out[text_len] = '\0';
	sodium_memzero(raw, sizeof(raw));
	return 0;
}

/* Parses a checked body into key and addrs (room for FM_INVITE_ADDRS_MAX). */
static int invite_body_parse(const uint8_t *body, size_t len,
                             uint8_t key[FM_FEDERATION_KEY_BYTES],
                             fm_addr *addrs, size_t *count)
{
	const uint8_t *k;
	size_t n, k_len, i;
	uint64_t version;
	fm__mp_reader r;

	if (fm__msgpack_check(body, len, FM__INVITE_DEPTH_MAX, len) != 0)
		return -EINVAL;
	fm__mp_reader_init(&r, body, len);
	if (fm__mp_read_array(&r, &n) != 0 || n < 1 ||
	    fm__mp_read_uint(&r, &version) != 0 ||
	    version != FM__INVITE_VERSION || n != FM__INVITE_ELEMENTS ||
	    fm__mp_read_bin(&r, &k, &k_len) != 0 ||
	    k_len != FM_FEDERATION_KEY_BYTES ||
	    fm__mp_read_array(&r, &n) != 0 || n > FM_INVITE_ADDRS_MAX)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		char text[FM_ADDR_STR_MAX];
		const char *s;
		size_t s_len;
		if (fm__mp_read_str(&r, &s, &s_len) != 0 ||
		    s_len >= sizeof(text) || memchr(s, '\0', s_len) != NULL)
			return -EINVAL;
		memcpy(text, s, s_len);
		text[s_len] = '\0';
		if (fm_addr_parse(text, &addrs[i]) != 0)
			return -EINVAL;
	}
	if (fm__mp_reader_end(&r) != 0)
		return -EINVAL;
	memcpy(key, k, FM_FEDERATION_KEY_BYTES);
	*count = n;
	return 0;
}

int fm_invite_decode(const char *text, uint8_t key[FM_FEDERATION_KEY_BYTES],
                     fm_addr *addrs, size_t max, size_t *addr_count)
{
	uint8_t raw[FM__INVITE_RAW_MAX];
	uint8_t sum[FM__INVITE_CHECKSUM_BYTES];
	uint8_t k[FM_FEDERATION_KEY_BYTES];
	fm_addr found[FM_INVITE_ADDRS_MAX];
	size_t start, end, raw_len, body_len, count, i;
	int rc = -EINVAL;

	if (text == NULL || key == NULL || addr_count == NULL ||
	    (addrs == NULL && max > 0))
		return -EINVAL;
	start = 0;
	end = strlen(text);
	while (start < end && is_space(text[start]))
		start++;
	while (end > start && is_space(text[end - 1]))
		end--;
	if (end - start > FM_INVITE_TEXT_MAX ||
	    end - start < FM__INVITE_PREFIX_LEN)
		return -EINVAL;
	for (i = 0; i < FM__INVITE_PREFIX_LEN; i++)
		if (to_lower(text[start + i]) != FM__INVITE_PREFIX[i])
			return -EINVAL;
	start += FM__INVITE_PREFIX_LEN;
	if (base32_decode(text + start, end - start, raw, sizeof(raw),
	                  &raw_len) != 0 ||
	    raw_len <= FM__INVITE_CHECKSUM_BYTES)
		goto cleanup;
	body_len = raw_len - FM__INVITE_CHECKSUM_BYTES;
	invite_checksum(raw, body_len, sum);
	if (sodium_memcmp(sum, raw + body_len, sizeof(sum)) != 0)
		goto cleanup;
	if (invite_body_parse(raw, body_len, k, found, &count) != 0)
		goto cleanup;
	if (count > max) {
		*addr_count = count;
		rc = -ENOSPC;
		goto cleanup;
	}
	memcpy(key, k, sizeof(k));
	for (i = 0; i < count; i++)
		addrs[i] = found[i];
	*addr_count = count;
	rc = 0;
cleanup:
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(k, sizeof(k));
	return rc;
}
