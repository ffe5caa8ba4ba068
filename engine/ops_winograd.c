/* ops_winograd.c: 3x3 stride-1 pad-1 convolution by Winograd's minimal filtering F(2x2, 3x3)
 * (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks", section 4).
 *
 * Each 2x2 output tile is A^T [(G g G^T) . (B^T d B)] A over its 4x4 input patch d; summed over
 * input channels, the 16 elementwise products become 16 GEMMs U_k[Co, Ci] x V_k[Ci, tiles]
 * (2.25x fewer multiplies than im2col). Weights are transformed per call into ctx->arena, a
 * chunk of output channels at a time (the model stays untouched, memory stays bounded); input
 * tiles are transformed per task into worker scratch. Tasks depend only on the shapes, and
 * vector and scalar paths do the same operations in the same order, so results do not depend
 * on the thread count. Not a general conv: sd__conv2d decides when to call it.
 */
#include <string.h>

#include "ops_impl.h"
#include "ops_winograd.h"

/* Transformed input tiles per task: about V_BYTES of V (16 x Ci x tiles floats). */
#ifndef V_BYTES
#define V_BYTES (4u << 20)
#endif
/* Transformed weights held at once (16 x chunk rows x Ci floats). */
#define U_BYTES (32u << 20)
#define TILES_MIN 64
#define TILES_MAX 1024
/* Output-channel splitting for small images, as in ops_conv.c. */
#define TASKS_MIN 4
#define CO_MIN 64

typedef struct wg_job {
  const float *x, *w, *b;
  float *y, *U, *scratch;
  int Ci, H, W, Co;
  int tw, tiles, T, tpi; /* tiles per row, per image, per task; task blocks per image */
  int c0, cc, cob, cobs; /* current chunk of output channels [c0, c0 + cc) and its blocks */
  size_t V_floats, M_floats, per_worker;
} wg_job;

static int imin(int a, int b) { return a < b ? a : b; }

/* U[k][r][ci] = (G g G^T)_k for rows r of the chunk in [16 t, 16 t + 16); g = w[c0 + r][ci];
 * G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]. Eight input channels at a time (gathered at stride
 * 9), then a scalar tail doing the same operations. */
static void weight_task(void *arg, int t, int worker) {
  const wg_job *J = arg;
  (void)worker;
  const int Ci = J->Ci;
  const size_t plane = (size_t)J->cc * Ci;
  const __m256i idx = _mm256_setr_epi32(0, 9, 18, 27, 36, 45, 54, 63);
  const __m256 half = _mm256_set1_ps(0.5f);
  for (int r = t * 16; r < imin(t * 16 + 16, J->cc); r++) {
    const float *wr = J->w + (size_t)(J->c0 + r) * Ci * 9;
    float *ur = J->U + (size_t)r * Ci;
    int ci = 0;
    for (; ci + 8 <= Ci; ci += 8) {
      __m256 g[9], a[4][3];
      for (int e = 0; e < 9; e++) g[e] = _mm256_i32gather_ps(wr + (size_t)ci * 9 + e, idx, 4);
      for (int c = 0; c < 3; c++) {
        a[0][c] = g[c];
        a[1][c] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_add_ps(g[c], g[3 + c]), g[6 + c]));
        a[2][c] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_sub_ps(g[c], g[3 + c]), g[6 + c]));
        a[3][c] = g[6 + c];
      }
      float *u = ur + ci;
      for (int i = 0; i < 4; i++) {
        __m256 u1 = _mm256_add_ps(_mm256_add_ps(a[i][0], a[i][1]), a[i][2]);
        __m256 u2 = _mm256_add_ps(_mm256_sub_ps(a[i][0], a[i][1]), a[i][2]);
        _mm256_storeu_ps(u + (4 * i + 0) * plane, a[i][0]);
        _mm256_storeu_ps(u + (4 * i + 1) * plane, _mm256_mul_ps(half, u1));
        _mm256_storeu_ps(u + (4 * i + 2) * plane, _mm256_mul_ps(half, u2));
        _mm256_storeu_ps(u + (4 * i + 3) * plane, a[i][2]);
      }
    }
    for (; ci < Ci; ci++) {
      const float *g = wr + (size_t)ci * 9;
      float a[4][3];
      for (int c = 0; c < 3; c++) {
        a[0][c] = g[c];
        a[1][c] = 0.5f * ((g[c] + g[3 + c]) + g[6 + c]);
        a[2][c] = 0.5f * ((g[c] - g[3 + c]) + g[6 + c]);
        a[3][c] = g[6 + c];
      }
      float *u = ur + ci;
      for (int i = 0; i < 4; i++) {
        u[(4 * i + 0) * plane] = a[i][0];
        u[(4 * i + 1) * plane] = 0.5f * ((a[i][0] + a[i][1]) + a[i][2]);
        u[(4 * i + 2) * plane] = 0.5f * ((a[i][0] - a[i][1]) + a[i][2]);
        u[(4 * i + 3) * plane] = a[i][2];
      }
    }
  }
}

/* Even and odd elements of the 16 floats lo:hi. */
static inline void deinterleave(__m256 lo, __m256 hi, __m256 *ev, __m256 *od) {
  __m256 e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
  __m256 o = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
  *ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
  *od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* V[k][ci][j] = (B^T d B)_k for tiles q0 + j, j < tn, of image xn [Ci, H, W] (row stride T).
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. prow: 4 zero-padded input rows (4 x PW). */
static void input_tiles(const wg_job *J, const float *xn, int q0, int tn, float *V,
                        float *prow) {
  const int Ci = J->Ci, H = J->H, W = J->W, tw = J->tw, PW = 2 * J->tw + 8;
  const size_t plane = (size_t)Ci * J->T;
  for (int ci = 0; ci < Ci; ci++) {
    const float *xc = xn + (size_t)ci * H * W;
    for (int j = 0; j < tn;) {
      int ty = (q0 + j) / tw, tx = (q0 + j) % tw, run = imin(tw - tx, tn - j);
      /* prow[r][c] = x[2 ty - 1 + r][c - 1], zero outside the image */
      for (int r = 0; r < 4; r++) {
        int iy = 2 * ty - 1 + r;
        float *pr = prow + (size_t)r * PW;
        if (iy < 0 || iy >= H) {
          memset(pr, 0, PW * sizeof(float));
        } else {
          pr[0] = 0.0f;
          memcpy(pr + 1, xc + (size_t)iy * W, W * sizeof(float));
          memset(pr + 1 + W, 0, (PW - 1 - W) * sizeof(float));
        }
      }
      float *v = V + (size_t)ci * J->T + j;
      int i = 0;
      for (; i + 8 <= run; i += 8) { /* 8 tiles; reads up to column 2 (tx + i) + 17 < PW */
        int c = 2 * (tx + i);
        __m256 e[4][4];
        for (int r = 0; r < 4; r++) {
          const float *pr = prow + (size_t)r * PW + c;
          __m256 d0, d1, d2, d3;
          deinterleave(_mm256_loadu_ps(pr), _mm256_loadu_ps(pr + 8), &d0, &d1);
          deinterleave(_mm256_loadu_ps(pr + 2), _mm256_loadu_ps(pr + 10), &d2, &d3);
          e[r][0] = _mm256_sub_ps(d0, d2);
          e[r][1] = _mm256_add_ps(d1, d2);
          e[r][2] = _mm256_sub_ps(d2, d1);
          e[r][3] = _mm256_sub_ps(d1, d3);
        }
        for (int q = 0; q < 4; q++) {
          _mm256_storeu_ps(v + (0 + q) * plane + i, _mm256_sub_ps(e[0][q], e[2][q]));
          _mm256_storeu_ps(v + (4 + q) * plane + i, _mm256_add_ps(e[1][q], e[2][q]));
          _mm256_storeu_ps(v + (8 + q) * plane + i, _mm256_sub_ps(e[2][q], e[1][q]));
          _mm256_storeu_ps(v + (12 + q) * plane + i, _mm256_sub_ps(e[1][q], e[3][q]));
        }
      }
      for (; i < run; i++) { /* the same operations, one tile */
        int c = 2 * (tx + i);
        float e[4][4];
        for (int r = 0; r < 4; r++) {
          const float *d = prow + (size_t)r * PW + c;
          e[r][0] = d[0] - d[2];
          e[r][1] = d[1] + d[2];
          e[r][2] = d[2] - d[1];
          e[r][3] = d[1] - d[3];
        }
        for (int q = 0; q < 4; q++) {
          v[(0 + q) * plane + i] = e[0][q] - e[2][q];
          v[(4 + q) * plane + i] = e[1][q] + e[2][q];
          v[(8 + q) * plane + i] = e[2][q] - e[1][q];
          v[(12 + q) * plane + i] = e[1][q] - e[3][q];
        }
      }
      j += run;
    }
  }
}

/* y tiles = A^T m A + bias, A^T = [1 1 1 0; 0 1 -1 -1], for nc channels from M[k][co][j]
 * (row stride T, plane nc x T) into yc [nc, H, W], clipped at the bottom and right edges. */
static void output_tiles(const wg_job *J, const float *M, int nc, int q0, int tn, float *yc,
                         const float *b) {
  const int H = J->H, W = J->W, tw = J->tw, T = J->T;
  const size_t plane = (size_t)nc * T;
  for (int co = 0; co < nc; co++) {
    const float *m = M + (size_t)co * T;
    const float bias = b ? b[co] : 0.0f;
    float *yo = yc + (size_t)co * H * W;
    for (int j = 0; j < tn;) {
      int ty = (q0 + j) / tw, tx = (q0 + j) % tw, run = imin(tw - tx, tn - j);
      float *row0 = yo + (size_t)(2 * ty) * W, *row1 = 2 * ty + 1 < H ? row0 + W : NULL;
      int i = 0;
      for (; i + 8 <= run && 2 * (tx + i + 7) + 1 < W; i += 8) {
        const float *mj = m + j + i;
        __m256 t0[4], t1[4], bv = _mm256_set1_ps(bias);
        for (int q = 0; q < 4; q++) {
          __m256 m0 = _mm256_loadu_ps(mj + (0 + q) * plane);
          __m256 m1 = _mm256_loadu_ps(mj + (4 + q) * plane);
          __m256 m2 = _mm256_loadu_ps(mj + (8 + q) * plane);
          __m256 m3 = _mm256_loadu_ps(mj + (12 + q) * plane);
          t0[q] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
          t1[q] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
        }
        __m256 *ts[2] = {t0, t1};
        float *rows[2] = {row0, row1};
        for (int a = 0; a < 2; a++) {
          if (!rows[a]) break;
          __m256 *t = ts[a];
          __m256 y0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(t[0], t[1]), t[2]), bv);
          __m256 y1 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(t[1], t[2]), t[3]), bv);
          __m256 lo = _mm256_unpacklo_ps(y0, y1), hi = _mm256_unpackhi_ps(y0, y1);
          float *dst = rows[a] + 2 * (tx + i);
          _mm256_storeu_ps(dst, _mm256_permute2f128_ps(lo, hi, 0x20));
          _mm256_storeu_ps(dst + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
        }
      }
      for (; i < run; i++) { /* the same operations, one tile */
        const float *mj = m + j + i;
        float t[2][4];
        for (int q = 0; q < 4; q++) {
          float m0 = mj[(0 + q) * plane], m1 = mj[(4 + q) * plane];
          float m2 = mj[(8 + q) * plane], m3 = mj[(12 + q) * plane];
          t[0][q] = (m0 + m1) + m2;
          t[1][q] = (m1 - m2) - m3;
        }
        int ox = 2 * (tx + i);
        float *rows[2] = {row0, row1};
        for (int a = 0; a < 2; a++) {
          if (!rows[a]) break;
          rows[a][ox] = ((t[a][0] + t[a][1]) + t[a][2]) + bias;
          if (ox + 1 < W) rows[a][ox + 1] = ((t[a][1] - t[a][2]) - t[a][3]) + bias;
        }
      }
      j += run;
    }
  }
}

/* Task t: output-channel block t % cob of the chunk, over tile block t / cob. */
static void tile_task(void *arg, int t, int worker) {
  const wg_job *J = arg;
  const int Ci = J->Ci, T = J->T, pt = t / J->cob;
  const int n = pt / J->tpi, q0 = (pt % J->tpi) * T, tn = imin(T, J->tiles - q0);
  const int r0 = (t % J->cob) * J->cobs, nc = imin(J->cobs, J->cc - r0);
  float *V = J->scratch + (size_t)worker * J->per_worker, *M = V + J->V_floats;
  float *prow = M + J->M_floats;
  const size_t HW = (size_t)J->H * J->W;
  input_tiles(J, J->x + (size_t)n * Ci * HW, q0, tn, V, prow);
  const size_t uplane = (size_t)J->cc * Ci, vplane = (size_t)Ci * T, mplane = (size_t)nc * T;
  for (int k = 0; k < 16; k++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nc, tn, Ci, 1.0f,
                J->U + k * uplane + (size_t)r0 * Ci, Ci, V + k * vplane, T, 0.0f, M + k * mplane,
                T);
  int c = J->c0 + r0;
  output_tiles(J, M, nc, q0, tn, J->y + ((size_t)n * J->Co + c) * HW, J->b ? J->b + c : NULL);
}

/* Output-channel blocks of a chunk of cc rows (shapes only): *cob blocks of *cobs rows. */
static void co_blocks(int blocks_of_tiles, int cc, int *cob, int *cobs) {
  int nb = 1;
  if (blocks_of_tiles < TASKS_MIN) {
    nb = (TASKS_MIN + blocks_of_tiles - 1) / blocks_of_tiles;
    if (nb > cc / CO_MIN) nb = cc / CO_MIN > 1 ? cc / CO_MIN : 1;
  }
  int s = (cc + nb - 1) / nb;
  s = (s + 15) / 16 * 16;
  *cobs = s;
  *cob = (cc + s - 1) / s;
}

sd_status sd__conv3x3_winograd(sd__ctx *ctx, const float *x, int N, int Ci, int H, int W,
                               const float *w, const float *b, int Co, float *y) {
  if (H < 1 || W < 1 || Ci < 1) return SD_ERR_INVALID;
  if (N <= 0 || Co <= 0) return SD_OK;
  if (!ctx || !ctx->arena) return SD_ERR_INVALID;
  const int th = (H + 1) / 2, tw = (W + 1) / 2;
  if ((size_t)th * tw > (size_t)1 << 30) return SD_ERR_LIMIT;
  const int tiles = th * tw;
  /* tiles per task: about V_BYTES of V, evened out over the blocks, a multiple of 16 */
  size_t t = V_BYTES / ((size_t)16 * Ci * sizeof(float));
  if (t < TILES_MIN) t = TILES_MIN;
  if (t > TILES_MAX) t = TILES_MAX;
  size_t nblk = ((size_t)tiles + t - 1) / t;
  t = ((size_t)tiles + nblk - 1) / nblk;
  t = (t + 15) / 16 * 16;
  const int T = (int)t, tpi = (int)(((size_t)tiles + T - 1) / T);
  /* chunk rows: at most U_BYTES of transformed weights, evened out, a multiple of 16 */
  size_t cmax = U_BYTES / ((size_t)16 * Ci * sizeof(float));
  cmax = cmax < 16 ? 16 : cmax / 16 * 16;
  int nch = (int)(((size_t)Co + cmax - 1) / cmax);
  int cc = (Co + nch - 1) / nch;
  cc = (cc + 15) / 16 * 16;
  if (cc > Co) cc = Co;
  int cob, cobs; /* the first (largest) chunk's blocks size the scratch */
  co_blocks(N * tpi, cc, &cob, &cobs);
  const size_t V_floats = (size_t)16 * Ci * T, M_floats = (size_t)16 * cobs * T;
  size_t per = V_floats + M_floats + (size_t)4 * (2 * tw + 8);
  per = (per + 15) / 16 * 16; /* 64-byte aligned per worker */
  int nt = sd__nthreads(ctx);
  if ((long long)nt > (long long)N * tpi * cob) nt = N * tpi * cob;
  size_t all, ufl;
  if (sd__mul_size(per, (size_t)nt, &all) || sd__mul_size((size_t)16 * Ci, (size_t)cc, &ufl))
    return SD_ERR_LIMIT;
  sd__blas_single();
  sd__arena_mark mark = sd__arena_get_mark(ctx->arena);
  float *U = sd__arena_floats(ctx->arena, ufl), *scratch = sd__arena_floats(ctx->arena, all);
  if (!U || !scratch) {
    sd__arena_reset(ctx->arena, mark);
    return SD_ERR_NOMEM;
  }
  wg_job J = {.x = x, .w = w, .b = b, .y = y, .U = U, .scratch = scratch, .Ci = Ci, .H = H,
              .W = W, .Co = Co, .tw = tw, .tiles = tiles, .T = T, .tpi = tpi,
              .V_floats = V_floats, .M_floats = M_floats, .per_worker = per};
  for (int c0 = 0; c0 < Co; c0 += cc) {
    J.c0 = c0;
    J.cc = imin(cc, Co - c0);
    J.cobs = cobs; /* one block size for every chunk: the scratch is sized by it */
    J.cob = (J.cc + cobs - 1) / cobs;
    int wtasks = (J.cc + 15) / 16;
    sd__par_for(ctx, wtasks > 1, wtasks, weight_task, &J);
    sd__par_for(ctx, 1, N * tpi * J.cob, tile_task, &J);
  }
  sd__arena_reset(ctx->arena, mark);
  return SD_OK;
}

/* Measured against im2col at SD 1.5 shapes, 2 threads (A/B in one process): 1.6-1.9x at
 * 64..512 px, 1.2-1.5x at 32x32 and at 16x16 with N = 2; 0.9-1.0x at 16x16 with N = 1 and
 * 0.25-0.6x at 8x8 (the per-call weight transform and narrow GEMMs dominate). Below 64
 * channels the gain is sub-millisecond; routing the tiny test models' 32-channel layers also
 * moved one PNG pixel of tests/test_cli's case g past its count limit (image error unchanged). */
int sd__conv3x3_winograd_pays(int N, int Ci, int H, int W, int Co) {
  return Ci >= 64 && Co >= 64 && (long long)N * H * W >= 512;
}
