/* The simulator's cryptography: a verification cache and a cost model
 * (sim.h; `[dht] verify_cache`, `[dht] crypto`).
 *
 * fedmesh-sim defines crypto_sign_detached, crypto_sign_verify_detached
 * and crypto_aead_xchacha20poly1305_ietf_encrypt/_decrypt itself. The
 * unmodified core, linked statically into the same executable, calls
 * these instead of libsodium's (the executable's definitions come
 * first); with both features off they call what libsodium's generic
 * functions call (crypto_sign_ed25519_detached,
 * crypto_sign_ed25519_verify_detached, and the _detached forms of the
 * AEAD, whose tag libsodium's combined form appends to the ciphertext).
 * The daemon does not link this file.
 *
 * The verification cache. Verifying a signature costs about three times
 * as much as making one (86 us against 31 us with libsodium 1.0.18 on the
 * benchmark machine), and a simulated federation verifies the same
 * signatures over and over: every DHT PROOF that a node signs is verified
 * once by its challenger, and every signed node record is verified by
 * each of the ~20 nodes that store it at every republish and by every
 * lookup that fetches it. In one process, the simulator already knows
 * which signatures are valid: it made them. Signing records
 * BLAKE2b-128(public key || signature || message) of the result in a
 * direct-mapped table, and so does every verification that succeeds; a
 * verification whose triple is in the table returns success without the
 * curve arithmetic. Anything else -- a forged, altered or unknown
 * signature -- is verified by libsodium as before, so every answer is the
 * one libsodium would give: a signature made with secret key sk verifies
 * under sk's public half (Ed25519's correctness; every simulated key pair
 * comes from crypto_sign_seed_keypair), and a collision of the 128-bit
 * digest is not a practical concern. The table forgets (overwrites)
 * entries freely: a miss costs a real verification, never a wrong answer.
 *
 * Modeled cryptography (`crypto = modeled`). What a simulated federation
 * spends its CPU on is mostly cryptography whose only observable effect
 * on the protocol is which inputs are accepted: every DHT datagram is
 * sealed and opened (XChaCha20-Poly1305), every table entry costs its
 * node an Ed25519 signature (a PROOF). The model keeps exactly that
 * effect and drops the cost:
 *
 * - A signature by secret key sk = seed || pk over m is the 64-byte
 *   BLAKE2b-512 of m keyed with the seed (deterministic, like Ed25519).
 *   The signer's public key is remembered with its seed. A signature
 *   verifies under pk when pk is remembered and the signature is that
 *   digest; otherwise libsodium verifies it (a real signature, made
 *   before the model was on, still verifies; anything forged fails as it
 *   would). Only the holder of the seed -- a node of the simulation --
 *   can make a signature that verifies, which is what the core relies on.
 * - A seal copies the plaintext and appends a 16-byte tag made of a
 *   64-bit multiply-xorshift hash of (nonce, associated data, plaintext)
 *   keyed by the key. An open recomputes it; a datagram from another
 *   federation key, or altered, or random bytes, fails to open (a false
 *   accept has probability 2^-64, and the simulation's adversaries, which
 *   send random or captured bytes, do not search for one).
 *   Sizes are those of the real AEAD, so every datagram has its real
 *   length.
 *
 * Neither consumes randomness, and the core's decisions never depend on
 * the bytes of a signature or a ciphertext, only on whether they verify:
 * the results are byte-identical with `crypto = real` (tests/sim-dht.sh
 * checks it); only `host` differs (docs/SIMULATION.md). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define SLOT_BYTES 16
#define SLOTS_MIN (1u << 16)
#define SLOTS_MAX (1u << 24)
#define SLOTS_PER_NODE 64

static struct {
	int on;
	struct fms_sim *sim;
	uint8_t (*slots)[SLOT_BYTES];
	size_t mask;
} cache;

/* Modeled signatures: public key -> seed of every key that signed
 * (open addressing, grown at half full). */
struct signer {
	uint8_t pk[crypto_sign_PUBLICKEYBYTES];
	uint8_t seed[crypto_sign_SEEDBYTES];
	uint8_t used;
};

static struct {
	int on;
	struct fms_sim *sim;
	struct signer *signers;
	size_t cap, count; /* cap: a power of two, or 0 */
} model;

static void digest(const unsigned char *pk, const unsigned char *sig,
                   const unsigned char *m, unsigned long long mlen,
                   uint8_t out[SLOT_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, SLOT_BYTES);
	crypto_generichash_update(&st, pk, crypto_sign_PUBLICKEYBYTES);
	crypto_generichash_update(&st, sig, crypto_sign_BYTES);
	crypto_generichash_update(&st, m, mlen);
	crypto_generichash_final(&st, out, SLOT_BYTES);
}

static size_t slot_of(const uint8_t d[SLOT_BYTES])
{
	uint64_t v;

	memcpy(&v, d, sizeof(v));
	return (size_t)v & cache.mask;
}

void fms_sigcache_enable(struct fms_sim *sim, int on)
{
	size_t slots = SLOTS_MIN;

	if (!on && sim != NULL && cache.sim != sim)
		return; /* another simulation's cache */
	free(cache.slots);
	memset(&cache, 0, sizeof(cache));
	if (!on || sim == NULL)
		return;
	while (slots < SLOTS_MAX &&
	       slots < (size_t)sim->sc.nodes * SLOTS_PER_NODE)
		slots *= 2;
	cache.slots = calloc(slots, SLOT_BYTES);
	if (cache.slots == NULL)
		return; /* no cache: every verification is done */
	cache.mask = slots - 1;
	cache.sim = sim;
	cache.on = 1;
}

void fms_sigcache_free(void)
{
	fms_sigcache_enable(NULL, 0);
	fms_crypto_model_enable(NULL, 0);
}

void fms_crypto_model_enable(struct fms_sim *sim, int on)
{
	if (!on && sim != NULL && model.sim != sim)
		return; /* another simulation's model */
	free(model.signers);
	memset(&model, 0, sizeof(model));
	if (!on || sim == NULL)
		return;
	model.sim = sim;
	model.on = 1;
}

static size_t signer_slot(const uint8_t *pk, size_t cap)
{
	uint64_t v;

	memcpy(&v, pk, sizeof(v)); /* public keys are uniform enough */
	return (size_t)v & (cap - 1);
}

static const struct signer *signer_find(const uint8_t *pk)
{
	size_t i;

	if (model.cap == 0)
		return NULL;
	for (i = signer_slot(pk, model.cap); model.signers[i].used;
	     i = (i + 1) & (model.cap - 1))
		if (memcmp(model.signers[i].pk, pk,
		           sizeof(model.signers[i].pk)) == 0)
			return &model.signers[i];
	return NULL;
}

static void signer_put(struct signer *tab, size_t cap, const uint8_t *pk,
                       const uint8_t *seed)
{
	size_t i = signer_slot(pk, cap);

	while (tab[i].used)
		i = (i + 1) & (cap - 1);
	memcpy(tab[i].pk, pk, sizeof(tab[i].pk));
	memcpy(tab[i].seed, seed, sizeof(tab[i].seed));
	tab[i].used = 1;
}

/* 0, or -1 when the table cannot grow (the caller signs for real). */
static int signer_add(const uint8_t *sk)
{
	const uint8_t *seed = sk, *pk = sk + crypto_sign_SEEDBYTES;
	struct signer *tab;
	size_t cap, i;

	if (signer_find(pk) != NULL)
		return 0;
	if ((model.count + 1) * 2 > model.cap) {
		cap = model.cap ? model.cap * 2 : 1024;
		tab = calloc(cap, sizeof(*tab));
		if (tab == NULL)
			return -1;
		for (i = 0; i < model.cap; i++)
			if (model.signers[i].used)
				signer_put(tab, cap, model.signers[i].pk,
				           model.signers[i].seed);
		free(model.signers);
		model.signers = tab;
		model.cap = cap;
	}
	signer_put(model.signers, model.cap, pk, seed);
	model.count++;
	return 0;
}

static void model_sign(uint8_t sig[crypto_sign_BYTES], const uint8_t *m,
                       unsigned long long mlen, const uint8_t *seed)
{
	crypto_generichash(sig, crypto_sign_BYTES, m, mlen, seed,
	                   crypto_sign_SEEDBYTES);
}

int crypto_sign_detached(unsigned char *sig, unsigned long long *siglen_p,
                         const unsigned char *m, unsigned long long mlen,
                         const unsigned char *sk)
{
	uint8_t d[SLOT_BYTES];
	int rc;

	if (model.on && signer_add(sk) == 0) {
		model.sim->m.sign_calls++;
		model_sign(sig, m, mlen, sk);
		if (siglen_p != NULL)
			*siglen_p = crypto_sign_BYTES;
		return 0;
	}
	rc = crypto_sign_ed25519_detached(sig, siglen_p, m, mlen, sk);

	if (rc == 0 && cache.on) {
		cache.sim->m.sign_calls++;
		/* sk = seed || public key */
		digest(sk + crypto_sign_SEEDBYTES, sig, m, mlen, d);
		memcpy(cache.slots[slot_of(d)], d, SLOT_BYTES);
	}
	return rc;
}

int crypto_sign_verify_detached(const unsigned char *sig,
                                const unsigned char *m, unsigned long long mlen,
                                const unsigned char *pk)
{
	uint8_t d[SLOT_BYTES], want[crypto_sign_BYTES];
	const struct signer *signer;
	size_t s;
	int rc;

	if (model.on && (signer = signer_find(pk)) != NULL) {
		model.sim->m.verify_calls++;
		model_sign(want, m, mlen, signer->seed);
		if (memcmp(want, sig, sizeof(want)) == 0)
			return 0;
		/* not the model's: libsodium decides (below) */
	}
	if (!cache.on)
		return crypto_sign_ed25519_verify_detached(sig, m, mlen, pk);
	cache.sim->m.verify_calls++;
	digest(pk, sig, m, mlen, d);
	s = slot_of(d);
	if (memcmp(cache.slots[s], d, SLOT_BYTES) == 0) {
		cache.sim->m.verify_hits++;
		return 0;
	}
	rc = crypto_sign_ed25519_verify_detached(sig, m, mlen, pk);
	if (rc == 0)
		memcpy(cache.slots[s], d, SLOT_BYTES);
	return rc;
}

/* ---- the DHT's AEAD ------------------------------------------------------ */

#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

static uint64_t mix(uint64_t h, uint64_t w)
{
	h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 29);
}

/* Four independent lanes over 32-byte blocks (they run in parallel in
 * the CPU), then the tail word by word. */
static uint64_t hash_bytes(uint64_t h, const uint8_t *p, size_t n)
{
	uint64_t w[4], l0 = h, l1 = ~h, l2 = h ^ 0xc2b2ae3d27d4eb4fULL,
	               l3 = h ^ 0x165667b19e3779f9ULL;

	for (; n >= 32; p += 32, n -= 32) {
		memcpy(w, p, 32);
		l0 = mix(l0, w[0]);
		l1 = mix(l1, w[1]);
		l2 = mix(l2, w[2]);
		l3 = mix(l3, w[3]);
	}
	h = mix(mix(l0, l1), mix(l2, l3));
	for (; n >= 8; p += 8, n -= 8) {
		memcpy(w, p, 8);
		h = mix(h, w[0]);
	}
	w[0] = (uint64_t)n << 56;
	if (n > 0)
		memcpy(w, p, n); /* the length stays in the top byte */
	return mix(h, w[0]);
}

/* A 64-bit keyed hash, spread over the tag's 16 bytes: a random or
 * altered datagram passes with probability 2^-64. */
static void model_tag(uint8_t tag[TAG_BYTES], const uint8_t *m, size_t mlen,
                      const uint8_t *ad, size_t adlen, const uint8_t *npub,
                      const uint8_t *k)
{
	uint64_t h, k0, k1, k2, k3;

	memcpy(&k0, k, 8);
	memcpy(&k1, k + 8, 8);
	memcpy(&k2, k + 16, 8);
	memcpy(&k3, k + 24, 8);
	h = mix(mix(k0, k1), mix(k2, k3) ^ (uint64_t)mlen);
	h = hash_bytes(h, npub, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	h = hash_bytes(h, ad, adlen);
	h = hash_bytes(h, m, mlen);
	memcpy(tag, &h, 8);
	h = mix(h, k0 ^ k3);
	memcpy(tag + 8, &h, 8);
}

int crypto_aead_xchacha20poly1305_ietf_encrypt(
        unsigned char *c, unsigned long long *clen_p, const unsigned char *m,
        unsigned long long mlen, const unsigned char *ad,
        unsigned long long adlen, const unsigned char *nsec,
        const unsigned char *npub, const unsigned char *k)
{
	uint8_t tag[TAG_BYTES];

	if (!model.on) {
		/* libsodium's combined form: the tag after the ciphertext */
		if (crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
		            c, c + mlen, NULL, m, mlen, ad, adlen, nsec, npub,
		            k) != 0)
			return -1;
	} else {
		model_tag(tag, m, (size_t)mlen, ad, (size_t)adlen, npub, k);
		memmove(c, m, (size_t)mlen);
		memcpy(c + mlen, tag, sizeof(tag));
	}
	if (clen_p != NULL)
		*clen_p = mlen + TAG_BYTES;
	return 0;
}

int crypto_aead_xchacha20poly1305_ietf_decrypt(
        unsigned char *m, unsigned long long *mlen_p, unsigned char *nsec,
        const unsigned char *c, unsigned long long clen,
        const unsigned char *ad, unsigned long long adlen,
        const unsigned char *npub, const unsigned char *k)
{
	uint8_t tag[TAG_BYTES];
	unsigned long long mlen;

	if (mlen_p != NULL)
		*mlen_p = 0;
	if (clen < TAG_BYTES)
		return -1;
	mlen = clen - TAG_BYTES;
	if (!model.on) {
		if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
		            m, nsec, c, mlen, c + mlen, ad, adlen, npub, k) !=
		    0)
			return -1;
	} else {
		model_tag(tag, c, (size_t)mlen, ad, (size_t)adlen, npub, k);
		if (memcmp(tag, c + mlen, sizeof(tag)) != 0)
			return -1;
		if (m != NULL)
			memmove(m, c, (size_t)mlen);
	}
	if (mlen_p != NULL)
		*mlen_p = mlen;
	return 0;
}
