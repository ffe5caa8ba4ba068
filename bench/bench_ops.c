/* bench_ops.c: effective GFLOP/s of the heavy kernels at Stable Diffusion 1.5 shapes (3x3
 * convs of the UNet and the VAE decoder, a 1x1 conv, self-attention over 4096 tokens with
 * 8 heads of 40, cross-attention over 77 tokens) and the time of GroupNorm+SiLU.
 *
 * Not a test (timing depends on the machine and its load). Usage:
 *   bench_ops [threads] [reps] [conv|attn|norm]
 * (defaults: 2 threads, best of 3, everything). FLOPs count multiply and add separately.
 * "per core" divides by the CPU time of all threads, so it stays meaningful when other
 * processes share the machine (wall-clock GFLOP/s then drops, per-core mostly does not).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops.h"

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

/* Best wall time of reps runs, and the CPU time (all threads) of that run. */
typedef struct timing {
  double wall, cpu;
} timing;
#define TIME_BEST(tm, reps, call)                              \
  do {                                                         \
    (tm).wall = 1e30, (tm).cpu = 0;                            \
    for (int r_ = 0; r_ < (reps); r_++) {                      \
      double w0_ = now(), c0_ = cpu_now();                     \
      call;                                                    \
      double w_ = now() - w0_, c_ = cpu_now() - c0_;           \
      if (w_ < (tm).wall) (tm).wall = w_, (tm).cpu = c_;       \
    }                                                          \
  } while (0)

static float *rnd(size_t n) {
  float *p = malloc(n * sizeof(float));
  uint32_t s = 1;
  for (size_t i = 0; i < n && p; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = (float)((s >> 8) * (1.0 / 16777216.0) - 0.5);
  }
  return p;
}

static void bench_conv(sd__ctx *ctx, int reps, int Ci, int Co, int H, int W, int k, int s) {
  int p = k / 2, Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
  float *x = rnd((size_t)Ci * H * W), *w = rnd((size_t)Co * Ci * k * k), *b = rnd(Co);
  float *y = malloc((size_t)Co * Ho * Wo * sizeof(float));
  timing tm;
  TIME_BEST(tm, reps, sd__conv2d(ctx, x, 1, Ci, H, W, w, b, Co, k, s, p, y));
  double gf = 2.0 * Co * Ci * k * k * (double)Ho * Wo * 1e-9;
  printf("conv%dx%d s%d %4d->%4d %4dx%-4d  %8.2f ms  %6.1f GFLOP/s  (per core %5.1f)\n", k, k,
         s, Ci, Co, H, W, tm.wall * 1e3, gf / tm.wall, gf / tm.cpu);
  free(x), free(w), free(b), free(y);
}

static void bench_attn(sd__ctx *ctx, int reps, int Lq, int Lk, int heads, int dh) {
  int D = heads * dh;
  float *q = rnd((size_t)Lq * D), *k = rnd((size_t)Lk * D), *v = rnd((size_t)Lk * D);
  float *o = malloc((size_t)Lq * D * sizeof(float));
  timing tm;
  TIME_BEST(tm, reps, sd__attention(ctx, q, D, k, D, v, D, 1, heads, Lq, Lk, dh,
                                    1.0f / sqrtf((float)dh), 0, o));
  double gf = 4.0 * Lq * (double)Lk * dh * heads * 1e-9;
  printf("attention Lq %4d Lk %4d heads %d dh %3d  %8.2f ms  %6.1f GFLOP/s  (per core %5.1f)\n",
         Lq, Lk, heads, dh, tm.wall * 1e3, gf / tm.wall, gf / tm.cpu);
  free(q), free(k), free(v), free(o);
}

static void bench_gn(sd__ctx *ctx, int reps, int C, int H, int W) {
  size_t n = (size_t)C * H * W;
  float *x = rnd(n), *g = rnd(C), *b = rnd(C), *y = malloc(n * sizeof(float));
  timing tm;
  TIME_BEST(tm, reps, sd__group_norm(ctx, x, 1, C, H * W, 32, 1e-6f, g, b, 1, y));
  printf("group_norm+silu %4d x %dx%d  %8.2f ms  %6.2f GB/s (read twice, written once)\n", C,
         H, W, tm.wall * 1e3, 3.0 * n * 4 / tm.wall * 1e-9);
  free(x), free(g), free(b), free(y);
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 3;
  if (threads < 1) threads = 1;
  if (reps < 1) reps = 1;
  sd__arena *arena = sd__arena_create(64u << 20);
  sd__pool *pool = NULL;
  if (!arena || sd__pool_create(threads, &pool, NULL) != SD_OK) return 1;
  sd__ctx ctx = {threads, arena, NULL, NULL, pool};
  const char *only = argc > 3 ? argv[3] : "";
  int conv = !*only || !strcmp(only, "conv"), attn = !*only || !strcmp(only, "attn");
  int norm = !*only || !strcmp(only, "norm");
  printf("threads %d, best of %d\n", threads, reps);
  if (conv) {
    bench_conv(&ctx, reps, 320, 320, 64, 64, 3, 1);
    bench_conv(&ctx, reps, 640, 640, 32, 32, 3, 1);
    bench_conv(&ctx, reps, 1280, 1280, 16, 16, 3, 1);
    bench_conv(&ctx, reps, 320, 320, 64, 64, 3, 2);
    bench_conv(&ctx, reps, 320, 320, 64, 64, 1, 1);
    bench_conv(&ctx, reps, 512, 512, 128, 128, 3, 1);
    bench_conv(&ctx, reps, 256, 256, 256, 256, 3, 1);
    bench_conv(&ctx, reps, 128, 128, 512, 512, 3, 1);
  }
  if (attn) {
    bench_attn(&ctx, reps, 4096, 4096, 8, 40);
    bench_attn(&ctx, reps, 4096, 77, 8, 40);
    bench_attn(&ctx, reps, 1024, 1024, 8, 80);
    bench_attn(&ctx, reps, 4096, 4096, 1, 512);
  }
  if (norm) {
    bench_gn(&ctx, reps, 320, 64, 64);
    bench_gn(&ctx, reps, 512, 128, 128);
  }
  sd__pool_destroy(pool);
  sd__arena_destroy(arena);
  return 0;
}
