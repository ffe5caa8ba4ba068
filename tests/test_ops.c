/* test_ops.c: every kernel of engine/ops.h against a plain double-precision reference loop on
 * small odd-sized inputs (non-square, channel counts not multiples of 8, stride 2, padding,
 * k = 1 and 3, several tiles), then bit-identity of each kernel's output across 1, 2 and 3
 * threads. Tolerances: float32 rounding relative to the sum of |terms| of each output (1e-5,
 * far above rounding, far below any indexing mistake); activations 2e-6 x (|ref| + 1), since
 * the erf form 1 + erf(x) itself cancels for negative x (as in torch). Winograd F(2x2, 3x3)
 * is held to the same 1e-5 (its transforms add at most 9 terms of bounded coefficients; it
 * measured 4e-8..2e-7, like im2col).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops.h"
#include "ops_winograd.h"

static uint32_t rng_state = 12345u;
static float frand(void) { /* uniform in [-2, 2) */
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)((rng_state >> 8) * (1.0 / 16777216.0) * 4.0 - 2.0);
}
static float *rand_buf(size_t n) {
  float *p = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = frand();
  return p;
}

static sd__arena *arena;
static sd__pool *pools[4]; /* by thread count; pools[1] is NULL: serial */
static sd__ctx mkctx(int threads) {
  sd__ctx c = {threads, arena, NULL, NULL, pools[threads]};
  return c;
}

/* max over i of |y - ref| / (scale[i] + 1e-6) */
static double rel_err(const float *y, const double *ref, const double *scale, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)y[i] - ref[i]) / (scale[i] + 1e-6);
    if (e > m || e != e) m = e;
  }
  return m;
}

/* ---- linear ---- */
static void test_linear(int rows, int in, int out, int bias) {
  float *x = rand_buf((size_t)rows * in), *w = rand_buf((size_t)out * in), *b = rand_buf(out);
  float *y = malloc((size_t)rows * out * sizeof(float)), *y2 = malloc((size_t)rows * out * 4);
  double *ref = malloc((size_t)rows * out * 8), *sc = malloc((size_t)rows * out * 8);
  for (int r = 0; r < rows; r++)
    for (int o = 0; o < out; o++) {
      double s = bias ? b[o] : 0, a = bias ? fabs(b[o]) : 0;
      for (int i = 0; i < in; i++) {
        s += (double)x[(size_t)r * in + i] * w[(size_t)o * in + i];
        a += fabs((double)x[(size_t)r * in + i] * w[(size_t)o * in + i]);
      }
      ref[(size_t)r * out + o] = s;
      sc[(size_t)r * out + o] = a;
    }
  for (int t = 1; t <= 3; t++) {
    sd__ctx c = mkctx(t);
    CHECK_INT(sd__linear(&c, x, rows, in, w, bias ? b : NULL, out, t == 1 ? y : y2), SD_OK);
    if (t == 1) {
      double e = rel_err(y, ref, sc, (size_t)rows * out);
      printf("linear %dx%d->%d bias %d: rel err %.3g\n", rows, in, out, bias, e);
      CHECK_LE(e, 1e-5);
    } else {
      CHECK(memcmp(y, y2, (size_t)rows * out * sizeof(float)) == 0);
    }
  }
  free(x), free(w), free(b), free(y), free(y2), free(ref), free(sc);
}

/* ---- conv2d ---- */
#define WINO_TOL 1e-5
/* wino: call the Winograd kernel directly (k = 3, s = 1, p = 1 only) instead of sd__conv2d. */
static void conv_case(int N, int Ci, int H, int W, int Co, int k, int s, int p, int bias,
                      int wino) {
  int Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
  size_t ny = (size_t)N * Co * Ho * Wo;
  float *x = rand_buf((size_t)N * Ci * H * W), *w = rand_buf((size_t)Co * Ci * k * k);
  float *b = rand_buf(Co), *y = malloc(ny * 4), *y2 = malloc(ny * 4);
  double *ref = malloc(ny * 8), *sc = malloc(ny * 8);
  for (int n = 0; n < N; n++)
    for (int co = 0; co < Co; co++)
      for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox++) {
          double sum = bias ? b[co] : 0, a = bias ? fabs(b[co]) : 0;
          for (int ci = 0; ci < Ci; ci++)
            for (int ky = 0; ky < k; ky++)
              for (int kx = 0; kx < k; kx++) {
                int iy = oy * s - p + ky, ix = ox * s - p + kx;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                double t = (double)x[(((size_t)n * Ci + ci) * H + iy) * W + ix] *
                           w[(((size_t)co * Ci + ci) * k + ky) * k + kx];
                sum += t;
                a += fabs(t);
              }
          size_t o = (((size_t)n * Co + co) * Ho + oy) * Wo + ox;
          ref[o] = sum;
          sc[o] = a;
        }
  for (int t = 1; t <= 3; t++) {
    sd__ctx c = mkctx(t);
    for (size_t i = 0; i < ny; i++) (t == 1 ? y : y2)[i] = NAN; /* every output is written */
    float *out = t == 1 ? y : y2;
    if (wino)
      CHECK_INT(sd__conv3x3_winograd(&c, x, N, Ci, H, W, w, bias ? b : NULL, Co, out), SD_OK);
    else
      CHECK_INT(sd__conv2d(&c, x, N, Ci, H, W, w, bias ? b : NULL, Co, k, s, p, out), SD_OK);
    if (t == 1) {
      double e = rel_err(y, ref, sc, ny);
      printf("conv%s N%d Ci%d %dx%d Co%d k%d s%d p%d bias %d: rel err %.3g\n",
             wino ? " winograd" : "", N, Ci, H, W, Co, k, s, p, bias, e);
      int routed = k == 3 && s == 1 && p == 1 && sd__conv3x3_winograd_pays(N, Ci, H, W, Co);
      CHECK_LE(e, wino || routed ? WINO_TOL : 1e-5);
    } else {
      CHECK(memcmp(y, y2, ny * sizeof(float)) == 0);
    }
  }
  free(x), free(w), free(b), free(y), free(y2), free(ref), free(sc);
}

static void test_conv(int N, int Ci, int H, int W, int Co, int k, int s, int p, int bias) {
  conv_case(N, Ci, H, W, Co, k, s, p, bias, 0);
}
static void test_winograd(int N, int Ci, int H, int W, int Co, int bias) {
  conv_case(N, Ci, H, W, Co, 3, 1, 1, bias, 1);
}

/* ---- group norm / layer norm ---- */
static void test_group_norm(int N, int C, int HW, int G, int silu, int alias) {
  size_t n = (size_t)N * C * HW;
  float *x = rand_buf(n), *g = rand_buf(C), *bt = rand_buf(C);
  for (size_t i = 0; i < n; i++) x[i] += 3.0f; /* a non-zero mean */
  float *y = malloc(n * 4), *y2 = malloc(n * 4);
  double *ref = malloc(n * 8), *sc = malloc(n * 8);
  int cpg = C / G;
  for (int b = 0; b < N; b++)
    for (int gr = 0; gr < G; gr++) {
      size_t off = ((size_t)b * C + (size_t)gr * cpg) * HW, m = (size_t)cpg * HW;
      double mean = 0, var = 0;
      for (size_t i = 0; i < m; i++) mean += x[off + i];
      mean /= m;
      for (size_t i = 0; i < m; i++) var += (x[off + i] - mean) * (x[off + i] - mean);
      var /= m;
      for (size_t i = 0; i < m; i++) {
        int ch = gr * cpg + (int)(i / HW);
        double v = (x[off + i] - mean) / sqrt(var + 1e-5) * g[ch] + bt[ch];
        if (silu) v = v / (1 + exp(-v));
        ref[off + i] = v;
        sc[off + i] = 1.0 + fabs(v);
      }
    }
  for (int t = 1; t <= 3; t++) {
    sd__ctx c = mkctx(t);
    float *dst = t == 1 ? y : y2;
    const float *src = x;
    if (alias) {
      memcpy(dst, x, n * 4);
      src = dst;
    }
    sd__group_norm(&c, src, N, C, HW, G, 1e-5f, g, bt, silu, dst);
    if (t == 1) {
      double e = rel_err(y, ref, sc, n);
      printf("group_norm N%d C%d HW%d G%d silu %d alias %d: err %.3g\n", N, C, HW, G, silu,
             alias, e);
      CHECK_LE(e, 2e-6);
    } else {
      CHECK(memcmp(y, y2, n * 4) == 0);
    }
  }
  free(x), free(g), free(bt), free(y), free(y2), free(ref), free(sc);
}

static void test_layer_norm(int rows, int D) {
  size_t n = (size_t)rows * D;
  float *x = rand_buf(n), *g = rand_buf(D), *bt = rand_buf(D);
  float *y = malloc(n * 4), *y2 = malloc(n * 4);
  double *ref = malloc(n * 8), *sc = malloc(n * 8);
  for (int r = 0; r < rows; r++) {
    double mean = 0, var = 0;
    for (int i = 0; i < D; i++) mean += x[(size_t)r * D + i];
    mean /= D;
    for (int i = 0; i < D; i++) var += pow(x[(size_t)r * D + i] - mean, 2);
    var /= D;
    for (int i = 0; i < D; i++) {
      ref[(size_t)r * D + i] = (x[(size_t)r * D + i] - mean) / sqrt(var + 1e-5) * g[i] + bt[i];
      sc[(size_t)r * D + i] = 1.0 + fabs(ref[(size_t)r * D + i]);
    }
  }
  for (int t = 1; t <= 3; t++) {
    sd__ctx c = mkctx(t);
    sd__layer_norm(&c, x, rows, D, 1e-5f, g, bt, t == 1 ? y : y2);
    if (t == 1) {
      double e = rel_err(y, ref, sc, n);
      printf("layer_norm %dx%d: err %.3g\n", rows, D, e);
      CHECK_LE(e, 2e-6);
    } else {
      CHECK(memcmp(y, y2, n * 4) == 0);
    }
  }
  free(x), free(g), free(bt), free(y), free(y2), free(ref), free(sc);
}

/* ---- activations ---- */
typedef void (*act_fn)(sd__ctx *, float *, size_t);
static double ref_silu(double x) { return x / (1 + exp(-x)); }
static double ref_gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double ref_qgelu(double x) { return x / (1 + exp(-1.702 * x)); }

static void test_act(const char *name, act_fn fn, double (*ref)(double), size_t n) {
  float *x = rand_buf(n), *y = malloc(n * 4), *y2 = malloc(n * 4);
  for (size_t i = 0; i < n; i++) x[i] *= 5.0f; /* [-10, 10) */
  x[0] = -100.0f, x[1] = 100.0f, x[2] = 0.0f;
  double e = 0;
  for (int t = 1; t <= 3; t++) {
    sd__ctx c = mkctx(t);
    float *d = t == 1 ? y : y2;
    memcpy(d, x, n * 4);
    fn(&c, d, n);
    if (t > 1) CHECK(memcmp(y, y2, n * 4) == 0);
  }
  for (size_t i = 0; i < n; i++) {
    double r = ref(x[i]), d = fabs(y[i] - r) / (fabs(r) + 1.0);
    if (d > e || d != d) e = d;
  }
  printf("%s n=%zu: rel err %.3g\n", name, n, e);
  CHECK_LE(e, 2e-6);
  free(x), free(y), free(y2);
}

static void test_geglu(int rows, int F) {
  size_t n = (size_t)rows * F;
  float *h = rand_buf(2 * n), *y = malloc(n * 4), *y2 = malloc(n * 4);
  for (int t = 1; t <= 3; t++) {
    sd__ctx c = mkctx(t);
    sd__geglu(&c, h, rows, F, t == 1 ? y : y2);
    if (t > 1) CHECK(memcmp(y, y2, n * 4) == 0);
  }
  double e = 0;
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < F; i++) {
      double ref = h[(size_t)r * 2 * F + i] * ref_gelu(h[(size_t)r * 2 * F + F + i]);
      double d = fabs(y[(size_t)r * F + i] - ref) / (fabs(ref) + 1.0);
      if (d > e || d != d) e = d;
    }
  printf("geglu %dx%d: rel err %.3g\n", rows, F, e);
  CHECK_LE(e, 2e-6);
  free(h), free(y), free(y2);
}

/* ---- attention ---- */
static void test_attention(int B, int heads, int Lq, int Lk, int dh, int causal) {
  int qs = heads * dh + 3, ks = heads * dh + 5, vs = heads * dh + 1, os = heads * dh;
  float *q = rand_buf((size_t)B * Lq * qs), *k = rand_buf((size_t)B * Lk * ks);
  float *v = rand_buf((size_t)B * Lk * vs);
  size_t no = (size_t)B * Lq * os;
  float *y = malloc(no * 4), *y2 = malloc(no * 4);
  double *ref = malloc(no * 8), *sc = malloc(no * 8), *p = malloc((size_t)Lk * 8);
  float scale = 1.0f / sqrtf((float)dh);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < heads; h++)
      for (int i = 0; i < Lq; i++) {
        double mx = -INFINITY, sum = 0;
        int nk = causal ? (i + 1 < Lk ? i + 1 : Lk) : Lk;
        for (int j = 0; j < nk; j++) {
          double s = 0;
          for (int d = 0; d < dh; d++)
            s += (double)q[((size_t)b * Lq + i) * qs + h * dh + d] *
                 k[((size_t)b * Lk + j) * ks + h * dh + d];
          p[j] = s * scale;
          if (p[j] > mx) mx = p[j];
        }
        for (int j = 0; j < nk; j++) sum += p[j] = exp(p[j] - mx);
        for (int d = 0; d < dh; d++) {
          double o = 0, a = 0;
          for (int j = 0; j < nk; j++) {
            double vv = v[((size_t)b * Lk + j) * vs + h * dh + d];
            o += p[j] / sum * vv;
            a += p[j] / sum * fabs(vv);
          }
          ref[((size_t)b * Lq + i) * os + h * dh + d] = o;
          sc[((size_t)b * Lq + i) * os + h * dh + d] = a;
        }
      }
  for (int t = 1; t <= 3; t++) {
    sd__ctx c = mkctx(t);
    CHECK_INT(sd__attention(&c, q, qs, k, ks, v, vs, B, heads, Lq, Lk, dh, scale, causal,
                            t == 1 ? y : y2),
              SD_OK);
    if (t == 1) {
      double e = rel_err(y, ref, sc, no);
      printf("attention B%d h%d Lq%d Lk%d dh%d causal %d: rel err %.3g\n", B, heads, Lq, Lk,
             dh, causal, e);
      CHECK_LE(e, 1e-5);
    } else {
      CHECK(memcmp(y, y2, no * 4) == 0);
    }
  }
  free(q), free(k), free(v), free(y), free(y2), free(ref), free(sc), free(p);
}

/* ---- shape and elementwise helpers (exact) ---- */
static void test_shapes(void) {
  sd__ctx c1 = mkctx(1), c3 = mkctx(3);
  int N = 2, C = 3, H = 5, W = 7;
  size_t n = (size_t)N * C * H * W;
  float *x = rand_buf(n), *y = malloc(4 * n * 4), *z = malloc(n * 4), *z2 = malloc(n * 4);
  sd__upsample2x(&c3, x, N, C, H, W, y);
  int bad = 0;
  for (int p = 0; p < N * C; p++)
    for (int i = 0; i < 2 * H; i++)
      for (int j = 0; j < 2 * W; j++)
        bad += y[((size_t)p * 2 * H + i) * 2 * W + j] != x[((size_t)p * H + i / 2) * W + j / 2];
  CHECK_INT(bad, 0);

  int HW = 1300; /* more than one 32x32 transpose block each way */
  float *a = rand_buf((size_t)N * 37 * HW), *t1 = malloc((size_t)N * 37 * HW * 4);
  float *t2 = malloc((size_t)N * 37 * HW * 4);
  sd__nchw_to_nhwc(&c3, a, N, 37, HW, t1);
  bad = 0;
  for (int b = 0; b < N; b++)
    for (int ch = 0; ch < 37; ch++)
      for (int i = 0; i < HW; i++)
        bad += t1[((size_t)b * HW + i) * 37 + ch] != a[((size_t)b * 37 + ch) * HW + i];
  CHECK_INT(bad, 0);
  sd__nhwc_to_nchw(&c1, t1, N, 37, HW, t2);
  CHECK(memcmp(a, t2, (size_t)N * 37 * HW * 4) == 0);

  float *b = rand_buf(n);
  sd__add(&c3, x, b, z, n);
  memcpy(z2, x, n * 4);
  sd__add_inplace(&c1, z2, b, n);
  bad = 0;
  for (size_t i = 0; i < n; i++) bad += z[i] != x[i] + b[i] || z2[i] != z[i];
  CHECK_INT(bad, 0);
  memcpy(z, x, n * 4);
  sd__scale_inplace(&c3, z, 0.37f, n);
  bad = 0;
  for (size_t i = 0; i < n; i++) bad += z[i] != x[i] * 0.37f;
  CHECK_INT(bad, 0);
  float *bias = rand_buf((size_t)N * C);
  memcpy(z, x, n * 4);
  sd__add_channel_bias(&c3, z, bias, N, C, H * W);
  bad = 0;
  for (size_t i = 0; i < n; i++) bad += z[i] != x[i] + bias[i / (H * W)];
  CHECK_INT(bad, 0);
  float *cat = malloc(2 * n * 4);
  sd__concat_channels(&c3, x, C, b, C, N, H * W, cat);
  bad = 0;
  for (int bb = 0; bb < N; bb++)
    for (int ch = 0; ch < 2 * C; ch++)
      for (int i = 0; i < H * W; i++) {
        float want = ch < C ? x[((size_t)bb * C + ch) * H * W + i]
                            : b[((size_t)bb * C + ch - C) * H * W + i];
        bad += cat[((size_t)bb * 2 * C + ch) * H * W + i] != want;
      }
  CHECK_INT(bad, 0);
  free(x), free(y), free(z), free(z2), free(a), free(t1), free(t2), free(b), free(bias),
      free(cat);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0); /* keep results and failures in order */
  arena = sd__arena_create(1 << 20);
  CHECK(arena != NULL);
  for (int t = 2; t < 4; t++) CHECK_INT(sd__pool_create(t, &pools[t], NULL), SD_OK);
  if (!arena || !pools[2] || !pools[3]) return check_exit();

  test_linear(5, 19, 13, 1);
  test_linear(300, 23, 1100, 1); /* several row and column tiles */
  test_linear(77, 32, 37, 0);

  test_conv(2, 5, 7, 9, 6, 3, 1, 1, 1);  /* 3x3 pad 1 */
  test_conv(1, 5, 7, 9, 6, 3, 2, 1, 1);  /* stride 2 (downsampler) */
  test_conv(2, 3, 8, 6, 4, 3, 2, 0, 0);  /* stride 2, no padding, no bias */
  test_conv(2, 11, 5, 13, 7, 1, 1, 0, 1); /* 1x1: plain GEMM */
  test_conv(1, 11, 6, 5, 3, 1, 2, 0, 1); /* 1x1 stride 2: im2col */
  test_conv(1, 3, 6, 5, 3, 3, 1, 0, 1);  /* valid 3x3 */
  test_conv(1, 7, 6, 5, 9, 2, 1, 1, 1);  /* even kernel, output larger than input */
  test_conv(2, 3, 5, 1, 4, 3, 1, 1, 1);  /* one pixel wide: runs of a single pixel */
  test_conv(1, 700, 13, 11, 5, 3, 1, 1, 1); /* tiles that cut output rows */
  test_conv(2, 600, 15, 17, 3, 3, 2, 1, 1);
  test_conv(1, 5, 7, 9, 130, 3, 1, 1, 1); /* one pixel tile: output channels split */
  test_conv(1, 6, 4, 3, 200, 1, 1, 0, 0); /* the same for a 1x1 conv */
  /* Winograd F(2x2, 3x3): odd sizes (partial tiles at the bottom and right), 8-tile vector
   * groups with tails, tile blocks cutting tile rows, output channels split and chunked. */
  test_winograd(2, 5, 7, 9, 6, 1);
  test_winograd(1, 3, 1, 1, 4, 1);     /* a single pixel */
  test_winograd(2, 7, 2, 40, 5, 0);    /* one tile row: two vector groups + tail, no bias */
  test_winograd(1, 9, 33, 35, 19, 1);  /* 17 x 18 tiles */
  test_winograd(1, 300, 37, 41, 7, 1); /* two tile blocks per image, cut mid-row */
  test_winograd(1, 5, 7, 9, 130, 1);   /* output channels split into blocks */
  test_winograd(1, 1100, 5, 6, 600, 1); /* transformed weights in two chunks */
  test_conv(2, 70, 24, 23, 66, 3, 1, 1, 1); /* sd__conv2d routes this shape to Winograd */

  test_group_norm(2, 12, 35, 4, 0, 0);
  test_group_norm(2, 12, 35, 4, 1, 1);
  test_group_norm(2, 32, 1201, 8, 1, 0); /* big enough to run in parallel */
  test_layer_norm(5, 37);
  test_layer_norm(700, 101);

  test_act("silu", sd__silu, ref_silu, 100003);
  test_act("gelu", sd__gelu, ref_gelu, 100003);
  test_act("quick_gelu", sd__quick_gelu, ref_qgelu, 100003);
  test_act("silu small", sd__silu, ref_silu, 13);
  test_geglu(3, 37);
  test_geglu(301, 257);

  test_attention(2, 3, 150, 300, 5, 0); /* several query and key tiles */
  test_attention(1, 2, 77, 77, 8, 1);  /* CLIP-like causal */
  test_attention(1, 2, 300, 300, 4, 1); /* causal across key tiles */
  test_attention(2, 2, 9, 77, 40, 0);  /* cross-attention shape */
  test_shapes();

  for (int t = 2; t < 4; t++) sd__pool_destroy(pools[t]);
  sd__arena_destroy(arena);
  return check_exit();
}
