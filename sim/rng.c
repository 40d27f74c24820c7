/* The simulator's random streams and the distributions it draws from (see
 * rng.h). Everything here is a pure function of the stream state, so a
 * simulation replays from its seed. */
#include <math.h>
#include <string.h>

#include "rng.h"

void fms_rng_seed(struct fms_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (0xd1b54a32d192ed03ULL * (stream + 1));
	int i;

	/* splitmix64 spreads any seed, 0 included, over the whole state;
	 * an all-zero state (the one xoshiro cannot leave) cannot occur. */
	for (i = 0; i < 4; i++)
		r->s[i] = fms_splitmix64(&x);
}

uint64_t fms_rng_below(struct fms_rng *r, uint64_t n)
{
	unsigned __int128 m;
	uint64_t lo, t;

	m = (unsigned __int128)fms_rng_next(r) * n;
	lo = (uint64_t)m;
	if (lo < n) {
		t = (0 - n) % n;
		while (lo < t) {
			m = (unsigned __int128)fms_rng_next(r) * n;
			lo = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

void fms_rng_bytes(struct fms_rng *r, uint8_t *buf, size_t len)
{
	while (len >= 8) {
		uint64_t v = fms_rng_next(r);
		memcpy(buf, &v, 8);
		buf += 8;
		len -= 8;
	}
	if (len > 0) {
		uint64_t v = fms_rng_next(r);
		memcpy(buf, &v, len);
	}
}

double fms_rng_exp(struct fms_rng *r, double mean)
{
	return -mean * log1p(-fms_rng_double(r));
}

double fms_rng_normal(struct fms_rng *r)
{
	/* 1 - u is in (0, 1]: log never sees 0. */
	double u1 = 1.0 - fms_rng_double(r);
	double u2 = fms_rng_double(r);

	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double fms_rng_lognormal(struct fms_rng *r, double mu, double sigma)
{
	return exp(mu + sigma * fms_rng_normal(r));
}

double fms_rng_weibull(struct fms_rng *r, double k, double lambda)
{
	return lambda * pow(-log1p(-fms_rng_double(r)), 1.0 / k);
}
