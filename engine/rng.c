/* rng.c: torch 1.13's CPU generator and torch.randn, bit for bit (see rng.h).
 *
 * MT19937 (the standard engine, seeded with the low 32 bits) feeds two normal paths, exactly as
 * aten/src/ATen/native/cpu/DistributionTemplates.h does: float tensors of >= 16 elements use the
 * AVX2 Box-Muller over blocks of 16 with the Cephes-style polynomials of avx_mathfun.h, with
 * every multiply-add the compiler fused in torch's build written here as an explicit FMA
 * (the project builds with -ffp-contract=off); smaller tensors use at::normal_distribution<double>
 * with its cached second value. This file does not know about tensors or shapes.
 */
#include "rng.h"

#include <immintrin.h>
#include <math.h>

#if !defined(__AVX2__) || !defined(__FMA__)
#error "rng.c reproduces torch's AVX2 kernel and needs -mavx2 -mfma (cpu_flags x86-64-v3)"
#endif

#define MT_N 624
#define MT_M 397

/* init_genrand of the reference MT19937: only the low 32 bits of the seed count, and seeding
 * forgets any cached normal value (torch's manual_seed does the same). */
void sd__rng_seed(sd__rng *r, uint64_t seed) {
  r->mt[0] = (uint32_t)seed;
  for (int j = 1; j < MT_N; j++)
    r->mt[j] = 1812433253u * (r->mt[j - 1] ^ (r->mt[j - 1] >> 30)) + (uint32_t)j;
  r->mti = MT_N;
  r->has_next_normal = 0;
  r->next_normal = 0.0;
}

/* Regenerate all 624 words (the standard twist). */
static void mt_twist(sd__rng *r) {
  uint32_t *mt = r->mt;
  for (int k = 0; k < MT_N; k++) {
    uint32_t y = (mt[k] & 0x80000000u) | (mt[(k + 1) % MT_N] & 0x7fffffffu);
    uint32_t v = mt[(k + MT_M) % MT_N] ^ (y >> 1);
    if (y & 1u) v ^= 0x9908b0dfu;
    mt[k] = v;
  }
  r->mti = 0;
}

/* One tempered 32-bit output. */
uint32_t sd__rng_u32(sd__rng *r) {
  if (r->mti >= MT_N) mt_twist(r);
  uint32_t y = r->mt[r->mti++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

/* at::uniform_real_distribution<float>(0, 1): 24 random bits, exact in float. */
static float uniform_f32(sd__rng *r) {
  return (float)(sd__rng_u32(r) & 0xFFFFFFu) * (1.0f / 16777216.0f);
}

/* at::uniform_real_distribution<double>(0, 1): 53 bits of random64(), whose first 32-bit
 * draw is the high word. */
static double uniform_f64(sd__rng *r) {
  uint64_t hi = sd__rng_u32(r);
  uint64_t lo = sd__rng_u32(r);
  uint64_t v = (hi << 32) | lo;
  return (double)(v & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* at::normal_distribution<double>(0, 1): Box-Muller on u1 then u2, returning r cos(theta)
 * and keeping r sin(theta) for the next call. */
static double normal_f64(sd__rng *r) {
  if (r->has_next_normal) {
    r->has_next_normal = 0;
    return r->next_normal;
  }
  double u1 = uniform_f64(r);
  double u2 = uniform_f64(r);
  double rad = sqrt(-2.0 * log(1.0 - u2));
  double theta = 2.0 * M_PI * u1;
  r->next_normal = rad * sin(theta);
  r->has_next_normal = 1;
  return rad * cos(theta);
}

/* ---- avx_mathfun (float32 Cephes polynomials, 8 lanes) ----------------------------------- */

#define PS(v) _mm256_set1_ps(v)
#define PI32(v) _mm256_set1_epi32(v)

/* Natural log of 8 floats (inputs here are in (0, 1]). Same operation order as torch's
 * log256_ps; the multiply-adds GCC fused in torch's build are explicit FMAs. */
static __m256 log8(__m256 x) {
  const __m256 one = PS(1.0f);
  x = _mm256_max_ps(x, _mm256_castsi256_ps(PI32(0x00800000)));
  __m256i imm0 = _mm256_srli_epi32(_mm256_castps_si256(x), 23);
  x = _mm256_and_ps(x, _mm256_castsi256_ps(PI32(~0x7f800000)));
  x = _mm256_or_ps(x, PS(0.5f));
  imm0 = _mm256_sub_epi32(imm0, PI32(0x7f));
  __m256 e = _mm256_cvtepi32_ps(imm0);
  e = _mm256_add_ps(e, one);
  __m256 mask = _mm256_cmp_ps(x, PS(0.707106781186547524f), _CMP_LT_OS);
  __m256 tmp = _mm256_and_ps(x, mask);
  x = _mm256_sub_ps(x, one);
  e = _mm256_sub_ps(e, _mm256_and_ps(one, mask));
  x = _mm256_add_ps(x, tmp);
  __m256 z = _mm256_mul_ps(x, x);
  __m256 y = PS(7.0376836292E-2f);
  y = _mm256_fmadd_ps(y, x, PS(-1.1514610310E-1f));
  y = _mm256_fmadd_ps(y, x, PS(1.1676998740E-1f));
  y = _mm256_fmadd_ps(y, x, PS(-1.2420140846E-1f));
  y = _mm256_fmadd_ps(y, x, PS(1.4249322787E-1f));
  y = _mm256_fmadd_ps(y, x, PS(-1.6668057665E-1f));
  y = _mm256_fmadd_ps(y, x, PS(2.0000714765E-1f));
  y = _mm256_fmadd_ps(y, x, PS(-2.4999993993E-1f));
  y = _mm256_fmadd_ps(y, x, PS(3.3333331174E-1f));
  y = _mm256_mul_ps(y, x);
  /* y*z + e*q1: the first product is the one fused */
  y = _mm256_fmadd_ps(y, z, _mm256_mul_ps(e, PS(-2.12194440e-4f)));
  /* y - z*0.5 */
  y = _mm256_fnmadd_ps(z, PS(0.5f), y);
  x = _mm256_add_ps(x, y);
  x = _mm256_fmadd_ps(e, PS(0.693359375f), x);
  return x;
}

/* sin and cos of 8 non-negative floats, torch's sincos256_ps. */
static void sincos8(__m256 x, __m256 *s, __m256 *c) {
  __m256 sign_sin = _mm256_and_ps(x, _mm256_castsi256_ps(PI32((int)0x80000000)));
  x = _mm256_and_ps(x, _mm256_castsi256_ps(PI32(~(int)0x80000000)));
  __m256 y = _mm256_mul_ps(x, PS(1.27323954473516f));
  __m256i j = _mm256_cvttps_epi32(y);
  j = _mm256_add_epi32(j, PI32(1));
  j = _mm256_and_si256(j, PI32(~1));
  y = _mm256_cvtepi32_ps(j);
  __m256i swap = _mm256_slli_epi32(_mm256_and_si256(j, PI32(4)), 29);
  __m256i pm = _mm256_cmpeq_epi32(_mm256_and_si256(j, PI32(2)), PI32(0));
  __m256 poly_mask = _mm256_castsi256_ps(pm);
  x = _mm256_fmadd_ps(y, PS(-0.78515625f), x);
  x = _mm256_fmadd_ps(y, PS(-2.4187564849853515625e-4f), x);
  x = _mm256_fmadd_ps(y, PS(-3.77489497744594108e-8f), x);
  __m256i jc = _mm256_sub_epi32(j, PI32(2));
  jc = _mm256_slli_epi32(_mm256_andnot_si256(jc, PI32(4)), 29);
  __m256 sign_cos = _mm256_castsi256_ps(jc);
  sign_sin = _mm256_xor_ps(sign_sin, _mm256_castsi256_ps(swap));

  __m256 z = _mm256_mul_ps(x, x);
  __m256 yc = PS(2.443315711809948E-005f);
  yc = _mm256_fmadd_ps(yc, z, PS(-1.388731625493765E-003f));
  yc = _mm256_fmadd_ps(yc, z, PS(4.166664568298827E-002f));
  yc = _mm256_mul_ps(yc, z);
  /* yc*z - z*0.5: the first product is the one fused */
  yc = _mm256_fmsub_ps(yc, z, _mm256_mul_ps(z, PS(0.5f)));
  yc = _mm256_add_ps(yc, PS(1.0f));

  __m256 ys = PS(-1.9515295891E-4f);
  ys = _mm256_fmadd_ps(ys, z, PS(8.3321608736E-3f));
  ys = _mm256_fmadd_ps(ys, z, PS(-1.6666654611E-1f));
  ys = _mm256_mul_ps(ys, z);
  ys = _mm256_fmadd_ps(ys, x, x);

  __m256 ysin2 = _mm256_and_ps(poly_mask, ys);
  __m256 ysin1 = _mm256_andnot_ps(poly_mask, yc);
  ys = _mm256_sub_ps(ys, ysin2);
  yc = _mm256_sub_ps(yc, ysin1);
  *s = _mm256_xor_ps(_mm256_add_ps(ysin1, ysin2), sign_sin);
  *c = _mm256_xor_ps(_mm256_add_ps(yc, ys), sign_cos);
}

/* normal_fill_16_AVX2: data[0..16) holds uniforms; becomes 16 normals (mean 0, std 1). */
static void normal_fill16(float *data) {
  __m256 u1 = _mm256_sub_ps(PS(1.0f), _mm256_loadu_ps(data));
  __m256 u2 = _mm256_loadu_ps(data + 8);
  __m256 radius = _mm256_sqrt_ps(_mm256_mul_ps(PS(-2.0f), log8(u1)));
  __m256 theta = _mm256_mul_ps(PS((float)(2.0 * M_PI)), u2);
  __m256 s, c;
  sincos8(theta, &s, &c);
  /* torch stores n * std + mean fused; with std 1 and mean 0 that only turns -0 into +0 */
  _mm256_storeu_ps(data, _mm256_fmadd_ps(_mm256_mul_ps(radius, c), PS(1.0f), PS(0.0f)));
  _mm256_storeu_ps(data + 8, _mm256_fmadd_ps(_mm256_mul_ps(radius, s), PS(1.0f), PS(0.0f)));
}

void sd__rng_randn(sd__rng *r, float *out, size_t n) {
  if (n < 16) {
    for (size_t i = 0; i < n; i++) out[i] = (float)normal_f64(r);
    return;
  }
  for (size_t i = 0; i < n; i++) out[i] = uniform_f32(r);
  for (size_t i = 0; i + 16 <= n; i += 16) normal_fill16(out + i);
  if (n % 16 != 0) {
    /* torch redraws the last 16 positions and transforms them again */
    float *tail = out + n - 16;
    for (int i = 0; i < 16; i++) tail[i] = uniform_f32(r);
    normal_fill16(tail);
  }
}
