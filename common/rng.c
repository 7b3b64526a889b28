/* common/rng.c — xoshiro256** seeded through splitmix64. */
#include "common/rng.h"

#include <math.h>

uint64_t mp_hash64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void mp_rng_seed(mp_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        x += 0x9e3779b97f4a7c15ULL;
        r->s[i] = mp_hash64(x);
    }
}

void mp_rng_derive(mp_rng *r, uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t h = mp_hash64(seed);
    h = mp_hash64(h ^ (a * 0xd6e8feb86659fd93ULL));
    h = mp_hash64(h ^ (b * 0xa0761d6478bd642fULL));
    h = mp_hash64(h ^ (c * 0xe7037ed1a0b428dbULL));
    mp_rng_seed(r, h);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mp_rng_u64(mp_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

uint32_t mp_rng_below(mp_rng *r, uint32_t n)
{
    /* Lemire's multiply-shift with rejection: unbiased. */
    uint64_t m = (uint64_t)(uint32_t)(mp_rng_u64(r) >> 32) * n;
    uint32_t lo = (uint32_t)m;
    if (lo < n) {
        uint32_t t = -n % n;
        while (lo < t) {
            m = (uint64_t)(uint32_t)(mp_rng_u64(r) >> 32) * n;
            lo = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

double mp_rng_uniform(mp_rng *r) { return (mp_rng_u64(r) >> 11) * 0x1.0p-53; }

float mp_rng_uniformf(mp_rng *r, float lo, float hi) { return lo + (hi - lo) * (float)mp_rng_uniform(r); }

double mp_rng_normal(mp_rng *r)
{
    /* Box–Muller; one value per call keeps the stream position simple to reason about. */
    double u1 = mp_rng_uniform(r), u2 = mp_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void mp_rng_shuffle_u32(mp_rng *r, uint32_t *a, uint32_t n)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = mp_rng_below(r, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
