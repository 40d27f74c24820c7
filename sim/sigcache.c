/* Ed25519 verification cache (sim.h, `[dht] verify_cache`).
 *
 * Verifying a signature costs about three times as much as making one
 * (86 us against 31 us with libsodium 1.0.18 on the benchmark machine),
 * and a simulated federation verifies the same signatures over and over:
 * every DHT PROOF that a node signs is verified once by its challenger,
 * and every signed node record is verified by each of the ~20 nodes that
 * store it at every republish and by every lookup that fetches it. In one
 * process, the simulator already knows which signatures are valid: it
 * made them.
 *
 * So fedmesh-sim defines crypto_sign_detached and
 * crypto_sign_verify_detached itself. The unmodified core, linked
 * statically into the same executable, calls these instead of
 * libsodium's (the executable's definitions come first); they call
 * libsodium's crypto_sign_ed25519_detached and
 * crypto_sign_ed25519_verify_detached, which are what libsodium's own
 * generic functions call. Signing records BLAKE2b-128(public key ||
 * signature || message) of the result in a direct-mapped table, and so
 * does every verification that succeeds; a verification whose triple is
 * in the table returns success without the curve arithmetic. Anything
 * else -- a forged, altered or unknown signature -- is verified by
 * libsodium as before, so every answer is the one libsodium would give:
 * a signature made with secret key sk verifies under sk's public half
 * (Ed25519's correctness; every simulated key pair comes from
 * crypto_sign_seed_keypair), and a collision of the 128-bit digest is not
 * a practical concern. Results are byte-identical with and without the
 * cache (tests/sim-dht.sh checks it); only the wall time changes.
 *
 * The cache is global to the process and on only while a simulation that
 * asked for it exists. The table forgets (overwrites) entries freely: a
 * miss costs a real verification, never a wrong answer. */
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
}

int crypto_sign_detached(unsigned char *sig, unsigned long long *siglen_p,
                         const unsigned char *m, unsigned long long mlen,
                         const unsigned char *sk)
{
	int rc = crypto_sign_ed25519_detached(sig, siglen_p, m, mlen, sk);
	uint8_t d[SLOT_BYTES];

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
	uint8_t d[SLOT_BYTES];
	size_t s;
	int rc;

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
