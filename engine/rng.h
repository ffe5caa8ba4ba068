/* rng.h: torch's CPU random generator, reproduced bit for bit (torch 1.13, x86-64 AVX2 build).
 *
 * torch.manual_seed(s) then torch.randn(shape) of float32 gives the same bits as sd__rng_seed
 * then sd__rng_randn(numel): MT19937 seeded with the low 32 bits of the seed, 16-wide
 * Box-Muller with the AVX2 polynomial log/sin/cos for n >= 16, the double-precision path for
 * n < 16. Successive calls continue one stream, as draws from one torch.Generator do.
 */
#ifndef SD_RNG_H
#define SD_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct sd__rng {
  uint32_t mt[624];
  int mti;
  int has_next_normal; /* cached second value of the double Box-Muller path */
  double next_normal;
} sd__rng;

void sd__rng_seed(sd__rng *r, uint64_t seed);
uint32_t sd__rng_u32(sd__rng *r);
/* torch.randn(n) as float32 from this generator. */
void sd__rng_randn(sd__rng *r, float *out, size_t n);

#endif
