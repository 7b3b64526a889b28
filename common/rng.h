/* common/rng.h — explicit, seedable RNG state (xoshiro256**), one per purpose.
 * Never rand(): every stream is derived from (seed, purpose, epoch, index) so runs are
 * reproducible byte for byte with one thread and a fixed seed. An mp_rng belongs to its caller
 * (no global state, nothing allocated): one per thread and purpose, never shared. */
#ifndef MP_RNG_H
#define MP_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } mp_rng;

void mp_rng_seed(mp_rng *r, uint64_t seed);
/* A stream derived from a seed and up to three indices (purpose, epoch, item...). */
void mp_rng_derive(mp_rng *r, uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
uint64_t mp_rng_u64(mp_rng *r);
uint32_t mp_rng_below(mp_rng *r, uint32_t n); /* uniform in [0, n) */
double mp_rng_uniform(mp_rng *r);             /* [0, 1) */
float mp_rng_uniformf(mp_rng *r, float lo, float hi);
double mp_rng_normal(mp_rng *r);              /* standard normal */
void mp_rng_shuffle_u32(mp_rng *r, uint32_t *a, uint32_t n);
uint64_t mp_hash64(uint64_t x);               /* splitmix64 finaliser */

#endif
