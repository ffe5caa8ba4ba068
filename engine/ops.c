/* ops.c: dense layers, normalisation, activations and the small elementwise/shape kernels
 * (see ops.h). Convolution lives in ops_conv.c, attention in ops_attn.c.
 *
 * Threading: pool tasks over fixed-size blocks (rows, groups, 16 Ki-element chunks) whose
 * boundaries depend only on the shapes, never on the thread count, and each block is computed
 * by one thread in a fixed order, so results are bit-identical for any thread count. Statistics
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

/* Rows (or planes) of `len` floats per task so a task holds about EW_CHUNK floats. */
static int rows_per_task(size_t len) {
  size_t r = len ? EW_CHUNK / len : 1;
  return r < 1 ? 1 : (r > 4096 ? 4096 : (int)r);
}

/* The task count of n items in groups of per. */
static int ntasks_of(size_t n, size_t per) { return (int)((n + per - 1) / per); }

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

typedef struct linear_job {
  const float *x, *w, *b;
  float *y;
  int rows, in, out, tr, tc, ct;
} linear_job;

/* One [tr, tc] tile of y. */
static void linear_task(void *arg, int t, int worker) {
  const linear_job *J = arg;
  const float *x = J->x, *w = J->w, *b = J->b;
  float *y = J->y;
  int rows = J->rows, in = J->in, out = J->out, tr = J->tr, tc = J->tc, ct = J->ct;
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
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nc, in, 1.0f,
              x + (size_t)r0 * in, in, w + (size_t)c0 * in, in, b ? 1.0f : 0.0f, yt, out);
}

sd_status sd__linear(sd__ctx *ctx, const float *x, int rows, int in, const float *w,
                     const float *b, int out, float *y) {
  if (rows <= 0 || out <= 0) return SD_OK;
  sd__blas_single();
  int tr = even_tile(rows, LIN_ROWS), tc = even_tile(out, LIN_COLS);
  int rt = (rows + tr - 1) / tr, ct = (out + tc - 1) / tc;
  linear_job J = {x, w, b, y, rows, in, out, tr, tc, ct};
  sd__par_for(ctx, 1, rt * ct, linear_task, &J);
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

typedef struct gn_job {
  const float *x, *gamma, *beta;
  float *y;
  int C, HW, G, silu;
  float eps;
} gn_job;

/* Group t % G of image t / G: statistics, then the normalised output. */
static void gn_task(void *arg, int t, int worker) {
  const gn_job *J = arg;
  const float *x = J->x, *gamma = J->gamma, *beta = J->beta;
  float *y = J->y;
  int C = J->C, HW = J->HW, G = J->G, silu = J->silu, cpg = C / G;
  float eps = J->eps;
  size_t gsz = (size_t)cpg * HW;
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

/* torch.nn.GroupNorm (biased variance, eps inside the square root), then optionally SiLU.
 * x, y [N, C, HW]; one task per (n, group), stats then output, by one thread. */
void sd__group_norm(sd__ctx *ctx, const float *x, int N, int C, int HW, int G, float eps,
                    const float *gamma, const float *beta, int silu, float *y) {
  int tasks = N * G;
  size_t gsz = (size_t)(C / G) * HW;
  gn_job J = {x, gamma, beta, y, C, HW, G, silu, eps};
  sd__par_for(ctx, (size_t)tasks * gsz >= EW_PARALLEL_MIN, tasks, gn_task, &J);
}

typedef struct ln_job {
  const float *x, *gamma, *beta;
  float *y;
  int rows, D, per;
  float eps;
} ln_job;

/* Rows [t per, (t + 1) per) of x. */
static void ln_task(void *arg, int t, int worker) {
  const ln_job *J = arg;
  const float *x = J->x, *gamma = J->gamma, *beta = J->beta;
  float *y = J->y;
  int D = J->D, r1 = (t + 1) * J->per < J->rows ? (t + 1) * J->per : J->rows;
  float eps = J->eps;
  for (int r = t * J->per; r < r1; r++) {
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

/* torch.nn.LayerNorm over the last dim: x, y [rows, D]. */
void sd__layer_norm(sd__ctx *ctx, const float *x, int rows, int D, float eps, const float *gamma,
                    const float *beta, float *y) {
  if (rows <= 0) return;
  ln_job J = {x, gamma, beta, y, rows, D, rows_per_task((size_t)D), eps};
  sd__par_for(ctx, (size_t)rows * D >= EW_PARALLEL_MIN, ntasks_of((size_t)rows, (size_t)J.per),
              ln_task, &J);
}

/* ---- activations ---- */

typedef void (*chunk_fn)(float *x, size_t n);

typedef struct ew_job {
  float *x;
  size_t n;
  chunk_fn fn;
} ew_job;

static void ew_task(void *arg, int c, int worker) {
  const ew_job *J = arg;
  size_t off = (size_t)c * EW_CHUNK, len = J->n - off < EW_CHUNK ? J->n - off : EW_CHUNK;
  J->fn(J->x + off, len);
}

/* Apply fn over n floats in EW_CHUNK pieces (boundaries independent of the thread count). */
static void ew_apply(sd__ctx *ctx, float *x, size_t n, chunk_fn fn) {
  ew_job J = {x, n, fn};
  sd__par_for(ctx, n >= EW_PARALLEL_MIN, ntasks_of(n, EW_CHUNK), ew_task, &J);
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
typedef struct geglu_job {
  const float *h;
  float *y;
  int rows, F, per;
} geglu_job;

/* Rows [t per, (t + 1) per). */
static void geglu_task(void *arg, int t, int worker) {
  const geglu_job *J = arg;
  const float *h = J->h;
  float *y = J->y;
  int F = J->F, r1 = (t + 1) * J->per < J->rows ? (t + 1) * J->per : J->rows;
  for (int r = t * J->per; r < r1; r++) {
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

void sd__geglu(sd__ctx *ctx, const float *h, int rows, int F, float *y) {
  if (rows <= 0) return;
  geglu_job J = {h, y, rows, F, rows_per_task((size_t)F)};
  sd__par_for(ctx, (size_t)rows * F >= EW_PARALLEL_MIN, ntasks_of((size_t)rows, (size_t)J.per),
              geglu_task, &J);
}

/* ---- shape and elementwise helpers ---- */

typedef struct plane_job {
  const float *x;
  float *y;
  const float *bias;
  int planes, H, W, per;
} plane_job;

/* Planes [t per, (t + 1) per) of the upsampling. */
static void upsample_task(void *arg, int t, int worker) {
  const plane_job *J = arg;
  const float *x = J->x;
  float *y = J->y;
  int H = J->H, W = J->W, p1 = (t + 1) * J->per < J->planes ? (t + 1) * J->per : J->planes;
  for (int pl = t * J->per; pl < p1; pl++) {
    const float *xp = x + (size_t)pl * H * W;
    float *yp = y + (size_t)pl * 4 * H * W;
    for (int i = 0; i < H; i++) {
      float *r0 = yp + (size_t)(2 * i) * 2 * W;
      for (int j = 0; j < W; j++) r0[2 * j] = r0[2 * j + 1] = xp[(size_t)i * W + j];
      memcpy(r0 + 2 * W, r0, 2 * (size_t)W * sizeof(float));
    }
  }
}

void sd__upsample2x(sd__ctx *ctx, const float *x, int N, int C, int H, int W, float *y) {
  int planes = N * C;
  if (planes <= 0) return;
  plane_job J = {x, y, NULL, planes, H, W, rows_per_task((size_t)H * W * 4)};
  sd__par_for(ctx, (size_t)planes * H * W >= EW_PARALLEL_MIN / 4,
              ntasks_of((size_t)planes, (size_t)J.per), upsample_task, &J);
}

/* 32x32 transpose blocks per task (16 Ki floats). */
#define TR_BLOCKS 16

typedef struct tr_job {
  const float *x;
  float *y;
  int R, S, rb, sb;
  long blocks;
} tr_job;

/* Blocks [c TR_BLOCKS, (c + 1) TR_BLOCKS) of the transposition. */
static void tr_task(void *arg, int c, int worker) {
  const tr_job *J = arg;
  const int B = 32;
  const float *x = J->x;
  float *y = J->y;
  int R = J->R, S = J->S, rb = J->rb, sb = J->sb;
  long t1 = ((long)c + 1) * TR_BLOCKS < J->blocks ? ((long)c + 1) * TR_BLOCKS : J->blocks;
  for (long t = (long)c * TR_BLOCKS; t < t1; t++) {
    int n = (int)(t / ((long)rb * sb)), rem = (int)(t % ((long)rb * sb));
    int r0 = (rem / sb) * B, s0 = (rem % sb) * B;
    const float *xn = x + (size_t)n * R * S;
    float *yn = y + (size_t)n * R * S;
    int r1 = r0 + B < R ? r0 + B : R, s1 = s0 + B < S ? s0 + B : S;
    for (int r = r0; r < r1; r++)
      for (int s = s0; s < s1; s++) yn[(size_t)s * R + r] = xn[(size_t)r * S + s];
  }
}

/* Transpose each of N [R, S] matrices into [S, R], in 32x32 blocks. */
static void transpose_batched(sd__ctx *ctx, const float *x, int N, int R, int S, float *y) {
  const int B = 32;
  int rb = (R + B - 1) / B, sb = (S + B - 1) / B;
  tr_job J = {x, y, R, S, rb, sb, (long)N * rb * sb};
  if (J.blocks <= 0) return;
  sd__par_for(ctx, (size_t)N * R * S >= EW_PARALLEL_MIN, ntasks_of((size_t)J.blocks, TR_BLOCKS),
              tr_task, &J);
}

void sd__nchw_to_nhwc(sd__ctx *ctx, const float *x, int N, int C, int HW, float *y) {
  transpose_batched(ctx, x, N, C, HW, y);
}

void sd__nhwc_to_nchw(sd__ctx *ctx, const float *x, int N, int C, int HW, float *y) {
  transpose_batched(ctx, x, N, HW, C, y);
}

/* y = a + b (b NULL: y = s a) elementwise, one EW_CHUNK per task; y may be a. */
typedef struct add_job {
  const float *a, *b;
  float *y;
  float s;
  size_t n;
} add_job;

static void add_task(void *arg, int c, int worker) {
  const add_job *J = arg;
  size_t i0 = (size_t)c * EW_CHUNK, i1 = J->n - i0 < EW_CHUNK ? J->n : i0 + EW_CHUNK;
  const float *a = J->a, *b = J->b;
  float *y = J->y;
  if (b)
    for (size_t i = i0; i < i1; i++) y[i] = a[i] + b[i];
  else
    for (size_t i = i0; i < i1; i++) y[i] = a[i] * J->s;
}

void sd__add_inplace(sd__ctx *ctx, float *y, const float *x, size_t n) {
  add_job J = {y, x, y, 0.0f, n};
  sd__par_for(ctx, n >= EW_PARALLEL_MIN, ntasks_of(n, EW_CHUNK), add_task, &J);
}

void sd__add(sd__ctx *ctx, const float *a, const float *b, float *y, size_t n) {
  add_job J = {a, b, y, 0.0f, n};
  sd__par_for(ctx, n >= EW_PARALLEL_MIN, ntasks_of(n, EW_CHUNK), add_task, &J);
}

void sd__scale_inplace(sd__ctx *ctx, float *x, float s, size_t n) {
  add_job J = {x, NULL, x, s, n};
  sd__par_for(ctx, n >= EW_PARALLEL_MIN, ntasks_of(n, EW_CHUNK), add_task, &J);
}

/* Planes [t per, (t + 1) per) plus their bias. */
static void bias_task(void *arg, int t, int worker) {
  const plane_job *J = arg;
  int HW = J->H * J->W, p1 = (t + 1) * J->per < J->planes ? (t + 1) * J->per : J->planes;
  for (int pl = t * J->per; pl < p1; pl++) {
    float b = J->bias[pl];
    float *xp = J->y + (size_t)pl * HW;
    for (int i = 0; i < HW; i++) xp[i] += b;
  }
}

void sd__add_channel_bias(sd__ctx *ctx, float *x, const float *bias, int N, int C, int HW) {
  int planes = N * C;
  if (planes <= 0) return;
  plane_job J = {NULL, x, bias, planes, 1, HW, rows_per_task((size_t)HW)};
  sd__par_for(ctx, (size_t)planes * HW >= EW_PARALLEL_MIN,
              ntasks_of((size_t)planes, (size_t)J.per), bias_task, &J);
}

void sd__concat_channels(sd__ctx *ctx, const float *a, int Ca, const float *b, int Cb, int N,
                         int HW, float *y) {
  for (int n = 0; n < N; n++) {
    float *yn = y + (size_t)n * (Ca + Cb) * HW;
    memcpy(yn, a + (size_t)n * Ca * HW, (size_t)Ca * HW * sizeof(float));
    memcpy(yn + (size_t)Ca * HW, b + (size_t)n * Cb * HW, (size_t)Cb * HW * sizeof(float));
  }
}
