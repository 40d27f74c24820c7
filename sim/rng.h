/* Deterministic randomness for the simulator: xoshiro256** (Blackman and
 * Vigna, 2018) seeded through splitmix64. A run draws from several
 * independent streams (the network model, the scenario, one per node) so
 * that its result depends only on the seed and the build, and so that a
 * change in one consumer does not reshuffle the others. Never used for
 * anything secret: simulated keys are reproducible on purpose. */
#ifndef FMS_RNG_H
#define FMS_RNG_H

#include <stddef.h>
#include <stdint.h>

struct fms_rng {
	uint64_t s[4];
};

/* Stream numbers: node streams are FMS_RNG_STREAM_NODE + node index. */
#define FMS_RNG_STREAM_NET 1
#define FMS_RNG_STREAM_SCENARIO 2
#define FMS_RNG_STREAM_IDENTITY 3
#define FMS_RNG_STREAM_NODE 16

static inline uint64_t fms_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t fms_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t fms_rng_next(struct fms_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = fms_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = fms_rotl(s[3], 45);
	return result;
}

/* Uniform in [0, 1), 53 bits. */
static inline double fms_rng_double(struct fms_rng *r)
{
	return (double)(fms_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Seeds stream `stream` of run `seed`. */
void fms_rng_seed(struct fms_rng *r, uint64_t seed, uint64_t stream);
/* Uniform in [0, n); n > 0. Unbiased (Lemire's multiply and reject). */
uint64_t fms_rng_below(struct fms_rng *r, uint64_t n);
void fms_rng_bytes(struct fms_rng *r, uint8_t *buf, size_t len);
/* Exponential with the given mean. */
double fms_rng_exp(struct fms_rng *r, double mean);
/* Standard normal (Box-Muller, one draw per call). */
double fms_rng_normal(struct fms_rng *r);
/* exp(N(mu, sigma^2)). */
double fms_rng_lognormal(struct fms_rng *r, double mu, double sigma);
/* Weibull with shape k and scale lambda. */
double fms_rng_weibull(struct fms_rng *r, double k, double lambda);

#endif
