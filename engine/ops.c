/* ops.c: dense layers, normalisation, activations and the small elementwise/shape kernels
 * (see ops.h). Convolution lives in ops_conv.c, attention in ops_attn.c.
 *
 * Threading: OpenMP over fixed-size blocks (rows, groups, 16 Ki-element chunks) whose
 * boundaries depend only on the shapes, never on ctx->threads, and each block is computed by
 * one thread in a fixed order, so results are bit-identical for any thread count. Statistics
 * (GroupNorm, LayerNorm) accumulate sum and sum of squares in double in one pass.
 */
#include <math.h>
#include <string.h>

#include "ops_impl.h"

/* Elementwise work is cut into chunks of this many floats (a multiple of 8, so only the very
 * last chunk has a scalar tail). */
#define EW_CHUNK 16384
/* Below this many floats, a parallel region costs more than it saves. */
#define EW_PARALLEL_MIN 65536

int sd__ctx_cancelled(const sd__ctx *ctx) {
  return ctx && ctx->cancel && ctx->cancel(ctx->user);
}

/* ---- dense algebra ---- */

/* GEMM tasks cover at most LIN_ROWS rows of x by LIN_COLS outputs, evened out over the tiles
 * (multiples of 16). Fixed by the shapes, so every element of y is the same BLAS dot product
 * whatever the thread count; small enough that a 77-token text encoder still splits. */
#define LIN_ROWS 256
#define LIN_COLS 256

static int even_tile(int n, int max) {
  int tiles = (n + max - 1) / max;
  int t = (n + tiles - 1) / tiles;
  t = (t + 15) / 16 * 16;
  return t < n ? t : n;
}

sd_status sd__linear(sd__ctx *ctx, const float *x, int rows, int in, const float *w,
                     const float *b, int out, float *y) {
  if (rows <= 0 || out <= 0) return SD_OK;
  sd__blas_single();
  int tr = even_tile(rows, LIN_ROWS), tc = even_tile(out, LIN_COLS);
  int rt = (rows + tr - 1) / tr, ct = (out + tc - 1) / tc;
  int tasks = rt * ct;
#pragma omp parallel for num_threads(sd__nthreads(ctx)) schedule(dynamic, 1) if (tasks > 1)
  for (int t = 0; t < tasks; t++) {
    int r0 = (t / ct) * tr, c0 = (t % ct) * tc;
    int nr = rows - r0 < tr ? rows - r0 : tr;
    int nc = out - c0 < tc ? out - c0 : tc;
    float *yt = y + (size_t)r0 * out + c0;
    if (b) {
      for (int r = 0; r < nr; r++) memcpy(yt + (size_t)r * out, b + c0, nc * sizeof(float));
    }
    if (in == 0) {
      if (!b)
        for (int r = 0; r < nr; r++) memset(yt + (size_t)r * out, 0, nc * sizeof(float));
      continue;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nc, in, 1.0f,
                x + (size_t)r0 * in, in, w + (size_t)c0 * in, in, b ? 1.0f : 0.0f, yt, out);
  }
  return SD_OK;
}

/* ---- statistics ---- */

/* Mean and biased variance of n floats in one pass: sum and sum of squares in double over
 * eight fixed lanes (var = E[x^2] - mean^2 loses only ~1e-16 x mean^2/var in double, far
 * below float32 resolution for activations). */
static void moments(const float *x, size_t n, double *mean_out, double *var_out) {
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    s0 = _mm256_add_pd(s0, lo);
    s1 = _mm256_add_pd(s1, hi);
    q0 = _mm256_fmadd_pd(lo, lo, q0);
    q1 = _mm256_fmadd_pd(hi, hi, q1);
  }
  double a[4], b[4], c[4], d[4];
  _mm256_storeu_pd(a, s0), _mm256_storeu_pd(b, s1), _mm256_storeu_pd(c, q0);
  _mm256_storeu_pd(d, q1);
  double s = ((a[0] + b[0]) + (a[1] + b[1])) + ((a[2] + b[2]) + (a[3] + b[3]));
  double q = ((c[0] + d[0]) + (c[1] + d[1])) + ((c[2] + d[2]) + (c[3] + d[3]));
  for (; i < n; i++) {
    s += x[i];
    q += (double)x[i] * x[i];
  }
  double mean = n ? s / (double)n : 0.0;
  double var = n ? q / (double)n - mean * mean : 0.0;
  *mean_out = mean;
  *var_out = var > 0.0 ? var : 0.0;
}

/* silu on 8 lanes: x / (1 + exp(-x)). */
static inline __m256 silu8(__m256 x) {
  __m256 e = sd__exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* y[i] = (x[i] - m) * s + t over n floats, optionally followed by silu. */
static void affine_row(const float *x, size_t n, float m, float s, float t, int silu,
                       float *y) {
  __m256 vm = _mm256_set1_ps(m), vs = _mm256_set1_ps(s), vt = _mm256_set1_ps(t);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vs), vt);
    if (silu) v = silu8(v);
    _mm256_storeu_ps(y + i, v);
  }
  if (i < n) {
    float buf[8] = {0};
    memcpy(buf, x + i, (n - i) * sizeof(float));
    __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(buf), vm), vs), vt);
    if (silu) v = silu8(v);
    _mm256_storeu_ps(buf, v);
    memcpy(y + i, buf, (n - i) * sizeof(float));
  }
}

/* torch.nn.GroupNorm (biased variance, eps inside the square root), then optionally SiLU.
 * x, y [N, C, HW]; one task per (n, group), stats then output, by one thread. */
void sd__group_norm(sd__ctx *ctx, const float *x, int N, int C, int HW, int G, float eps,
                    const float *gamma, const float *beta, int silu, float *y) {
  int cpg = C / G, tasks = N * G;
  size_t gsz = (size_t)cpg * HW;
#pragma omp parallel for num_threads(sd__nthreads(ctx)) schedule(dynamic, 1) \
    if (tasks > 1 && (size_t)tasks * gsz >= EW_PARALLEL_MIN)
  for (int t = 0; t < tasks; t++) {
    int n = t / G, g = t % G;
    size_t off = ((size_t)n * C + (size_t)g * cpg) * HW;
    double mean, var;
    moments(x + off, gsz, &mean, &var);
    double rstd = 1.0 / sqrt(var + (double)eps);
    for (int c = 0; c < cpg; c++) {
      int ch = g * cpg + c;
      float s = (float)(rstd * (gamma ? gamma[ch] : 1.0f));
      affine_row(x + off + (size_t)c * HW, HW, (float)mean, s, beta ? beta[ch] : 0.0f, silu,
                 y + off + (size_t)c * HW);
    }
  }
}

/* torch.nn.LayerNorm over the last dim: x, y [rows, D]. */
void sd__layer_norm(sd__ctx *ctx, const float *x, int rows, int D, float eps, const float *gamma,
                    const float *beta, float *y) {
#pragma omp parallel for num_threads(sd__nthreads(ctx)) schedule(static) \
    if ((size_t)rows * D >= EW_PARALLEL_MIN)
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * D;
    float *yr = y + (size_t)r * D;
    double mean, var;
    moments(xr, D, &mean, &var);
    float m = (float)mean, rs = (float)(1.0 / sqrt(var + (double)eps));
    for (int i = 0; i < D; i++) {
      float v = (xr[i] - m) * rs;
      yr[i] = v * (gamma ? gamma[i] : 1.0f) + (beta ? beta[i] : 0.0f);
    }
  }
}

/* ---- activations ---- */

typedef void (*chunk_fn)(float *x, size_t n);

/* Apply fn over n floats in EW_CHUNK pieces (boundaries independent of the thread count). */
static void ew_apply(sd__ctx *ctx, float *x, size_t n, chunk_fn fn) {
  size_t chunks = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for num_threads(sd__nthreads(ctx)) schedule(static) if (n >= EW_PARALLEL_MIN)
  for (size_t c = 0; c < chunks; c++) {
    size_t off = c * EW_CHUNK, len = n - off < EW_CHUNK ? n - off : EW_CHUNK;
    fn(x + off, len);
  }
}

static void silu_chunk(float *x, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, silu8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    float buf[8] = {0};
    memcpy(buf, x + i, (n - i) * sizeof(float));
    _mm256_storeu_ps(buf, silu8(_mm256_loadu_ps(buf)));
    memcpy(x + i, buf, (n - i) * sizeof(float));
  }
}

/* erf on 8 lanes: Abramowitz & Stegun 7.1.26, erf(a) = 1 - t (p1 + p2 t + ... + p5 t^4)
 * exp(-a^2) with t = 1 / (1 + p a), |error| <= 1.5e-7 (about 1 ulp of 1 + erf). This is, as
 * far as we know, also the formula of torch's AVX2 Vectorized<float>::erf behind F.gelu. */
static inline __m256 erf8(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  __m256 s = _mm256_and_ps(x, sign), a = _mm256_andnot_ps(sign, x);
  __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a, one));
  __m256 r = _mm256_fmadd_ps(_mm256_set1_ps(1.061405429f), t, _mm256_set1_ps(-1.453152027f));
  r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(1.421413741f));
  r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(-0.284496736f));
  r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(0.254829592f));
  __m256 e = sd__exp8(_mm256_xor_ps(sign, _mm256_mul_ps(x, x)));
  __m256 y = _mm256_fnmadd_ps(_mm256_mul_ps(e, t), r, one);
  return _mm256_xor_ps(y, s);
}

/* Exact-form GELU, (x / 2) (1 + erf(x / sqrt 2)) (torch's default approximate='none'). */
static inline __m256 gelu8(__m256 x) {
  __m256 e = erf8(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
  return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)),
                       _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

static void gelu_chunk(float *x, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    float buf[8] = {0};
    memcpy(buf, x + i, (n - i) * sizeof(float));
    _mm256_storeu_ps(buf, gelu8(_mm256_loadu_ps(buf)));
    memcpy(x + i, buf, (n - i) * sizeof(float));
  }
}

/* transformers' quick_gelu: x * sigmoid(1.702 x). */
static void quick_gelu_chunk(float *x, size_t n) {
  const __m256 k = _mm256_set1_ps(-1.702f), one = _mm256_set1_ps(1.0f);
  size_t i = 0;
  float buf[8] = {0};
  for (; i < n; i += 8) {
    size_t len = n - i < 8 ? n - i : 8;
    float *p = x + i;
    if (len < 8) {
      memcpy(buf, p, len * sizeof(float));
      p = buf;
    }
    __m256 v = _mm256_loadu_ps(p);
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, sd__exp8(_mm256_mul_ps(v, k))));
    _mm256_storeu_ps(p, _mm256_mul_ps(v, s));
    if (len < 8) memcpy(x + i, buf, len * sizeof(float));
  }
}

void sd__silu(sd__ctx *ctx, float *x, size_t n) { ew_apply(ctx, x, n, silu_chunk); }
void sd__gelu(sd__ctx *ctx, float *x, size_t n) { ew_apply(ctx, x, n, gelu_chunk); }
void sd__quick_gelu(sd__ctx *ctx, float *x, size_t n) { ew_apply(ctx, x, n, quick_gelu_chunk); }

/* diffusers GEGLU: h[rows, 2F] = [a | g] -> y[rows, F] = a * gelu(g). */
void sd__geglu(sd__ctx *ctx, const float *h, int rows, int F, float *y) {
#pragma omp parallel for num_threads(sd__nthreads(ctx)) schedule(static) \
    if ((size_t)rows * F >= EW_PARALLEL_MIN)
  for (int r = 0; r < rows; r++) {
    const float *a = h + (size_t)r * 2 * F, *g = a + F;
    float *yr = y + (size_t)r * F;
    int i = 0;
    for (; i + 8 <= F; i += 8)
      _mm256_storeu_ps(yr + i,
                       _mm256_mul_ps(_mm256_loadu_ps(a + i), gelu8(_mm256_loadu_ps(g + i))));
    if (i < F) {
      float ba[8] = {0}, bg[8] = {0};
      memcpy(ba, a + i, (F - i) * sizeof(float));
      memcpy(bg, g + i, (F - i) * sizeof(float));
      _mm256_storeu_ps(ba, _mm256_mul_ps(_mm256_loadu_ps(ba), gelu8(_mm256_loadu_ps(bg))));
      memcpy(yr + i, ba, (F - i) * sizeof(float));
    }
  }
}

/* ---- shape and elementwise helpers ---- */

void sd__upsample2x(sd__ctx *ctx, const float *x, int N, int C, int H, int W, float *y) {
  int planes = N * C;
#pragma omp parallel for num_threads(sd__nthreads(ctx)) schedule(static) \
    if ((size_t)planes * H * W >= EW_PARALLEL_MIN / 4)
  for (int pl = 0; pl < planes; pl++) {
    const float *xp = x + (size_t)pl * H * W;
    float *yp = y + (size_t)pl * 4 * H * W;
    for (int i = 0; i < H; i++) {
      float *r0 = yp + (size_t)(2 * i) * 2 * W;
      for (int j = 0; j < W; j++) r0[2 * j] = r0[2 * j + 1] = xp[(size_t)i * W + j];
      memcpy(r0 + 2 * W, r0, 2 * (size_t)W * sizeof(float));
    }
  }
}

/* Transpose each of N [R, S] matrices into [S, R], in 32x32 blocks. */
static void transpose_batched(sd__ctx *ctx, const float *x, int N, int R, int S, float *y) {
  const int B = 32;
  int rb = (R + B - 1) / B, sb = (S + B - 1) / B;
  long tasks = (long)N * rb * sb;
#pragma omp parallel for num_threads(sd__nthreads(ctx)) schedule(static) \
    if ((size_t)N * R * S >= EW_PARALLEL_MIN)
  for (long t = 0; t < tasks; t++) {
    int n = (int)(t / ((long)rb * sb)), rem = (int)(t % ((long)rb * sb));
    int r0 = (rem / sb) * B, s0 = (rem % sb) * B;
    const float *xn = x + (size_t)n * R * S;
    float *yn = y + (size_t)n * R * S;
    int r1 = r0 + B < R ? r0 + B : R, s1 = s0 + B < S ? s0 + B : S;
    for (int r = r0; r < r1; r++)
      for (int s = s0; s < s1; s++) yn[(size_t)s * R + r] = xn[(size_t)r * S + s];
  }
}

void sd__nchw_to_nhwc(sd__ctx *ctx, const float *x, int N, int C, int HW, float *y) {
  transpose_batched(ctx, x, N, C, HW, y);
}

void sd__nhwc_to_nchw(sd__ctx *ctx, const float *x, int N, int C, int HW, float *y) {
  transpose_batched(ctx, x, N, HW, C, y);
}

void sd__add_inplace(sd__ctx *ctx, float *y, const float *x, size_t n) {
#pragma omp parallel for num_threads(sd__nthreads(ctx)) schedule(static) if (n >= EW_PARALLEL_MIN)
  for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void sd__add(sd__ctx *ctx, const float *a, const float *b, float *y, size_t n) {
#pragma omp parallel for num_threads(sd__nthreads(ctx)) schedule(static) if (n >= EW_PARALLEL_MIN)
  for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void sd__scale_inplace(sd__ctx *ctx, float *x, float s, size_t n) {
#pragma omp parallel for num_threads(sd__nthreads(ctx)) schedule(static) if (n >= EW_PARALLEL_MIN)
  for (size_t i = 0; i < n; i++) x[i] *= s;
}

void sd__add_channel_bias(sd__ctx *ctx, float *x, const float *bias, int N, int C, int HW) {
  int planes = N * C;
#pragma omp parallel for num_threads(sd__nthreads(ctx)) schedule(static) \
    if ((size_t)planes * HW >= EW_PARALLEL_MIN)
  for (int pl = 0; pl < planes; pl++) {
    float b = bias[pl];
    float *xp = x + (size_t)pl * HW;
    for (int i = 0; i < HW; i++) xp[i] += b;
  }
}

void sd__concat_channels(sd__ctx *ctx, const float *a, int Ca, const float *b, int Cb, int N,
                         int HW, float *y) {
  for (int n = 0; n < N; n++) {
    float *yn = y + (size_t)n * (Ca + Cb) * HW;
    memcpy(yn, a + (size_t)n * Ca * HW, (size_t)Ca * HW * sizeof(float));
    memcpy(yn + (size_t)Ca * HW, b + (size_t)n * Cb * HW, (size_t)Cb * HW * sizeof(float));
  }
}
