/* ops_impl.h: private helpers shared by the kernel files (ops.c, ops_conv.c, ops_attn.c).
 *
 * Not an interface: only the kernel files include it. Holds the threading policy (OpenBLAS
 * runs single-threaded; every kernel runs tasks whose size never depends on the thread count
 * on the job's pool) and an AVX2 exp used by softmax and the activations.
 */
#ifndef SD_OPS_IMPL_H
#define SD_OPS_IMPL_H

#include <cblas.h>
#include <immintrin.h>

#include "ops.h"

/* Every BLAS call of the engine is made from inside a pool task on one tile, so OpenBLAS
 * itself must run single-threaded (the pthreads build would otherwise serialise concurrent
 * calls and fight the pool's threads for the cores). Called before each kernel's
 * BLAS work because the setting is process-wide and a tool may have changed it. */
static inline void sd__blas_single(void) {
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

/* Threads that may run a kernel's tasks at once (per-worker scratch is sized by it). */
static inline int sd__nthreads(const sd__ctx *ctx) {
  return ctx ? sd__pool_threads(ctx->pool) : 1;
}

/* fn(arg, t, worker) for t in [0, ntasks) on the job's pool when par, else in order on the
 * calling thread (small work, where waking helpers costs more than it saves). */
static inline void sd__par_for(const sd__ctx *ctx, int par, int ntasks, sd__pool_fn fn,
                               void *arg) {
  sd__pool_for(par && ctx ? ctx->pool : NULL, ntasks, fn, arg);
}

/* exp on 8 floats: Cephes-style range reduction x = n ln2 + r and a degree-6 polynomial
 * (about 1 ulp on [-87, 88]); inputs below -87.3 give ~1e-38 rather than 0, which is
 * negligible in every sum it feeds. */
static inline __m256 sd__exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365478515625f);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127));
  e = _mm256_slli_epi32(e, 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* The same function on one float (for loop tails), so a value's result never depends on
 * whether it fell in a vector or in a tail. */
static inline float sd__exp1(float x) {
  float buf[8] = {x};
  _mm256_storeu_ps(buf, sd__exp8(_mm256_loadu_ps(buf)));
  return buf[0];
}

#endif
