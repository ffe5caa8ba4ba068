/* ops_conv.c: 2-D convolution (torch.nn.Conv2d, square kernel, zero padding) as tiled
 * im2col + sgemm.
 *
 * The output pixels of each image are cut into tiles whose width depends on the shapes only
 * (about COL_BYTES of columns); a task builds its tile's column matrix [Ci*k*k, tile] in a
 * per-thread scratch buffer from ctx->arena and multiplies the weight [Co, Ci*k*k] (or a block
 * of its rows, for small images) by it with a single-threaded sgemm. 1x1 stride-1 unpadded
 * convs skip im2col. Tiles never depend on the thread count, so neither do the results.
 * 3x3 stride-1 pad-1 convs of the sizes where it pays go to Winograd F(2x2, 3x3) instead
 * (ops_winograd.c), as a rule on shapes only.
 */
#include <string.h>

#include "ops_impl.h"
#include "ops_winograd.h"

/* Bytes of column buffer per tile (a -D override is for tuning builds only). 1 to 12 MB all
 * measured within noise of each other at SD shapes; 6 MB was marginally best. */
#ifndef COL_BYTES
#define COL_BYTES (6u << 20)
#endif
/* Tile width bounds (output pixels). */
#define TILE_MIN 64
#define TILE_MAX 4096
/* Small images give few pixel tiles; then output channels are split too, into blocks of at
 * least CO_MIN rows, until there are TASKS_MIN tasks (a rule on shapes only). */
#define TASKS_MIN 4
#define CO_MIN 64

/* Pixels per tile: at most what fits COL_BYTES, then evened out over the tiles so the last
 * one is not a sliver (a multiple of 16 for the GEMM kernels). */
static int tile_width(size_t K, int HWo) {
  if (K == 0) K = 1;
  size_t t = COL_BYTES / (K * sizeof(float));
  if (t < TILE_MIN) t = TILE_MIN;
  if (t > TILE_MAX) t = TILE_MAX;
  size_t tiles = ((size_t)HWo + t - 1) / t;
  t = ((size_t)HWo + tiles - 1) / tiles;
  t = (t + 15) / 16 * 16;
  if (t > (size_t)HWo) t = (size_t)HWo;
  return (int)t;
}

/* col[K, T] (row stride T) for output pixels [p0, p0+tn) of image xn [Ci, H, W]. */
static void im2col_tile(const float *xn, int Ci, int H, int W, int k, int s, int p, int Wo,
                        int p0, int tn, int T, float *col) {
  for (int ci = 0; ci < Ci; ci++) {
    const float *xc = xn + (size_t)ci * H * W;
    for (int ky = 0; ky < k; ky++)
      for (int kx = 0; kx < k; kx++) {
        float *row = col + ((size_t)(ci * k + ky) * k + kx) * T;
        int oy = p0 / Wo, ox = p0 % Wo;
        for (int i = 0; i < tn;) {
          /* one run along an output row */
          int run = Wo - ox < tn - i ? Wo - ox : tn - i;
          int iy = oy * s - p + ky;
          float *dst = row + i;
          if (iy < 0 || iy >= H) {
            memset(dst, 0, run * sizeof(float));
          } else {
            const float *src = xc + (size_t)iy * W;
            int ix0 = ox * s - p + kx;
            if (s == 1) {
              /* valid ox range: 0 <= ix0 + j < W */
              int j0 = ix0 < 0 ? -ix0 : 0;
              int j1 = W - ix0 < run ? W - ix0 : run;
              if (j0 > run) j0 = run;
              if (j1 < j0) j1 = j0;
              if (j0 > 0) memset(dst, 0, j0 * sizeof(float));
              if (j1 > j0) memcpy(dst + j0, src + ix0 + j0, (j1 - j0) * sizeof(float));
              if (run > j1) memset(dst + j1, 0, (run - j1) * sizeof(float));
            } else {
              /* valid j: 0 <= ix0 + j*s < W */
              int j0 = ix0 < 0 ? (-ix0 + s - 1) / s : 0;
              int j1 = ix0 < W ? (W - ix0 + s - 1) / s : 0;
              if (j1 > run) j1 = run;
              if (j0 > j1) j0 = j1;
              for (int j = 0; j < j0; j++) dst[j] = 0.0f;
              for (int j = j0; j < j1; j++) dst[j] = src[ix0 + j * s];
              for (int j = j1; j < run; j++) dst[j] = 0.0f;
            }
          }
          i += run;
          ox = 0;
          oy++;
        }
      }
  }
}

/* Fill the [Co, tn] tile of yn (row stride ld) with the bias, or zero. */
static void bias_tile(float *yt, int Co, int tn, size_t ld, const float *b) {
  for (int co = 0; co < Co; co++) {
    float *r = yt + (size_t)co * ld;
    if (b)
      for (int j = 0; j < tn; j++) r[j] = b[co];
    else
      memset(r, 0, tn * sizeof(float));
  }
}

typedef struct conv_job {
  const float *x, *w, *b;
  float *y, *scratch; /* scratch: K x T floats per worker (im2col only) */
  int N, Ci, H, W, Co, k, s, p, Wo, HWo, T, tpi, cob, cobs, direct;
} conv_job;

/* Task t: output rows [c0, c0 + cobs) of pixel tile pt = t / cob (image pt / tpi). */
static void conv_task(void *arg, int t, int worker) {
  const conv_job *J = arg;
  const float *x = J->x, *w = J->w, *b = J->b;
  float *y = J->y, *scratch = J->scratch;
  const int Ci = J->Ci, H = J->H, W = J->W, Co = J->Co, k = J->k, s = J->s, p = J->p;
  const int Wo = J->Wo, T = J->T, tpi = J->tpi, cob = J->cob, cobs = J->cobs;
  const int direct = J->direct;
  const size_t HWo = (size_t)J->HWo, K = (size_t)Ci * k * k;
  int c0 = (t % cob) * cobs, pt = t / cob;
  int n = pt / tpi, p0 = (pt % tpi) * T;
  int tn = (int)(HWo - p0 < (size_t)T ? HWo - p0 : (size_t)T);
  int nc = Co - c0 < cobs ? Co - c0 : cobs;
  const float *xn = x + (size_t)n * Ci * H * W, *wt = w + (size_t)c0 * K;
  float *yt = y + ((size_t)n * Co + c0) * HWo + p0;
  bias_tile(yt, nc, tn, HWo, b ? b + c0 : NULL);
  if (K == 0) return;
  if (direct) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nc, tn, (int)K, 1.0f, wt, (int)K,
                xn + p0, (int)HWo, 1.0f, yt, (int)HWo);
  } else {
    float *col = scratch + (size_t)worker * K * T;
    im2col_tile(xn, Ci, H, W, k, s, p, Wo, p0, tn, T, col);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nc, tn, (int)K, 1.0f, wt, (int)K,
                col, T, 1.0f, yt, (int)HWo);
  }
}

sd_status sd__conv2d(sd__ctx *ctx, const float *x, int N, int Ci, int H, int W, const float *w,
                     const float *b, int Co, int k, int s, int p, float *y) {
  if (k <= 0 || s <= 0 || p < 0 || H + 2 * p < k || W + 2 * p < k) return SD_ERR_INVALID;
  if (N <= 0 || Co <= 0) return SD_OK;
  if (k == 3 && s == 1 && p == 1 && sd__conv3x3_winograd_pays(N, Ci, H, W, Co))
    return sd__conv3x3_winograd(ctx, x, N, Ci, H, W, w, b, Co, y);
  int Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
  size_t HWo = (size_t)Ho * Wo, K = (size_t)Ci * k * k;
  int direct = (k == 1 && s == 1 && p == 0);
  int T = tile_width(K, (int)HWo);
  int tpi = (int)((HWo + T - 1) / T); /* tiles per image */
  int cob = 1;                        /* output-channel blocks */
  if (N * tpi < TASKS_MIN) {
    cob = (TASKS_MIN + N * tpi - 1) / (N * tpi);
    if (cob > Co / CO_MIN) cob = Co / CO_MIN > 1 ? Co / CO_MIN : 1;
  }
  int cobs = (Co + cob - 1) / cob; /* rows per block */
  cobs = (cobs + 15) / 16 * 16;
  cob = (Co + cobs - 1) / cobs;
  int tasks = N * tpi * cob;
  int nt = sd__nthreads(ctx);
  if (nt > tasks) nt = tasks;
  sd__blas_single();

  sd__arena_mark mark = {0};
  float *scratch = NULL;
  if (!direct) {
    if (!ctx || !ctx->arena) return SD_ERR_INVALID;
    mark = sd__arena_get_mark(ctx->arena);
    size_t per, all;
    if (sd__mul_size(K, (size_t)T, &per) || sd__mul_size(per, (size_t)nt, &all))
      return SD_ERR_LIMIT;
    scratch = sd__arena_floats(ctx->arena, all);
    if (!scratch) return SD_ERR_NOMEM;
  }

  conv_job J = {x, w, b, y, scratch, N, Ci, H, W, Co, k, s, p, Wo, (int)HWo, T, tpi, cob, cobs,
                direct};
  sd__par_for(ctx, nt > 1, tasks, conv_task, &J);
  if (!direct) sd__arena_reset(ctx->arena, mark);
  return SD_OK;
}
