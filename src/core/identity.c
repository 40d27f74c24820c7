/* Node identity: an Ed25519 key pair (libsodium crypto_sign) and the node ID,
 * BLAKE2b-256 of the public key. Keys are derived from a seed handed in by
 * the driver so that the simulator's nodes are reproducible from its seed;
 * reading or writing key files is the daemon's business (keyfile.c). */
#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "core.h"

void fm_node_id_from_public_key(const uint8_t pk[FM_PUBLIC_KEY_BYTES],
                                uint8_t node_id[FM_NODE_ID_BYTES])
{
	crypto_generichash(node_id, FM_NODE_ID_BYTES, pk, FM_PUBLIC_KEY_BYTES,
	                   NULL, 0);
}

int fm_identity_from_seed(const uint8_t seed[FM_SEED_BYTES], fm_identity *out)
{
	if (seed == NULL || out == NULL)
		return -EINVAL;
	if (crypto_sign_seed_keypair(out->public_key, out->secret_key, seed) !=
	    0)
		return -EINVAL;
	fm_node_id_from_public_key(out->public_key, out->node_id);
	return 0;
}

int fm_identity_check(fm_identity *id)
{
	uint8_t pk[FM_PUBLIC_KEY_BYTES];
	uint8_t seed[FM_SEED_BYTES];
	uint8_t sk[FM_SECRET_KEY_BYTES];
	int rc = 0;

	if (id == NULL)
		return -EINVAL;
	/* The secret key embeds its seed; re-deriving the pair from it proves
	 * the stored public key belongs to the stored secret key. */
	if (crypto_sign_ed25519_sk_to_seed(seed, id->secret_key) != 0 ||
	    crypto_sign_seed_keypair(pk, sk, seed) != 0) {
		rc = -EINVAL;
		goto cleanup;
	}
	if (sodium_memcmp(pk, id->public_key, sizeof(pk)) != 0 ||
	    sodium_memcmp(sk, id->secret_key, sizeof(sk)) != 0) {
		rc = -EINVAL;
		goto cleanup;
	}
	fm_node_id_from_public_key(id->public_key, id->node_id);
cleanup:
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(sk, sizeof(sk));
	return rc;
}

void fm_identity_wipe(fm_identity *id)
{
	if (id != NULL)
		sodium_memzero(id, sizeof(*id));
}

void fm_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int fm_hex_decode(const char *in, uint8_t *out, size_t out_len)
{
	size_t i;

	if (in == NULL || out == NULL)
		return -EINVAL;
	for (i = 0; i < out_len; i++) {
		int hi, lo;
		if (in[2 * i] == '\0')
			return -EINVAL;
		hi = hex_value(in[2 * i]);
		lo = hex_value(in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)((hi << 4) | lo);
	}
	return in[2 * out_len] == '\0' ? 0 : -EINVAL;
}
