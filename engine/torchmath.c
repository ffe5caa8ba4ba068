/* torchmath.c: float32 exp and log exactly as torch 1.13's AVX2 CPU kernels evaluate them.
 *
 * torch.exp / torch.log on float32 use SLEEF 3.5's expf_u10 / logf_u1 (FMA variant), which are
 * within an ulp of exact but not always correctly rounded; where the reference multiplies that
 * last bit (the UNet's time embedding scales exp by t up to 999; DPM-Solver takes logs of
 * sigmas), glibc's expf/logf would drift from diffusers. Same operations and constants as
 * SLEEF's xexpf and xlogf_u1 (double-float arithmetic), written with explicit fmaf.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "torchmath.h"

static float f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

float sd__torch_expf(float d) {
  int q = (int)nearbyintf(d * 1.442695040888963407359924681001892137426645954152985934f);
  float s = fmaf((float)q, -0.693145751953125f, d);
  s = fmaf((float)q, -1.428606765330187045e-06f, s);
  float u = 0.000198527617612853646278381f;
  u = fmaf(u, s, 0.00139304355252534151077271f);
  u = fmaf(u, s, 0.00833336077630519866943359f);
  u = fmaf(u, s, 0.0416664853692054748535156f);
  u = fmaf(u, s, 0.166666671633720397949219f);
  u = fmaf(u, s, 0.5f);
  u = 1.0f + fmaf(s * s, u, s);
  /* ldexp in two halves */
  u = (u * f32_from_bits((uint32_t)((q >> 1) + 0x7f) << 23)) *
      f32_from_bits((uint32_t)((q - (q >> 1)) + 0x7f) << 23);
  if (d < -104.0f) u = 0.0f;
  if (d > 100.0f) u = INFINITY;
  return u;
}

float sd__torch_logf(float d) {
  int tiny = d < FLT_MIN;
  if (tiny) d = d * 18446744073709551616.0f; /* 2^64 */
  int e = (int)((f32_bits(d * (1.0f / 0.75f)) >> 23) & 0xff) - 0x7f;
  float m = f32_from_bits(f32_bits(d) + ((uint32_t)(-e) << 23));
  if (tiny) e -= 64;
  float ef = (float)e;
  /* s = ln2 (as a float pair) * e */
  float sx = 0.69314718246459960938f * ef;
  float sy = fmaf(-1.904654323148236017e-09f, ef, fmaf(0.69314718246459960938f, ef, -sx));
  /* x = (m - 1) / (m + 1) in double-float */
  float nx = -1.0f + m, nv = nx - -1.0f, ny = (-1.0f - (nx - nv)) + (m - nv);
  float dx = 1.0f + m, dv = dx - 1.0f, dy = (1.0f - (dx - dv)) + (m - dv);
  float t = 1.0f / dx, xx = nx * t, u = fmaf(t, nx, -xx);
  float v = fmaf(-dy, t, fmaf(-dx, t, 1.0f));
  float xy = fmaf(xx, v, fmaf(ny, t, u));
  float x2 = xx * xx;
  float p = 0.3027294874f;
  p = fmaf(p, x2, 0.3996108174f);
  p = fmaf(p, x2, 0.6666694880f);
  float cx = xx * 2.0f, cy = xy * 2.0f;
  float hx = sx + cx, hy = (((sx - hx) + cx) + sy) + cy;
  float w = (x2 * xx) * p;
  float rx = hx + w, ry = ((hx - rx) + w) + hy;
  float r = rx + ry;
  if (isinf(d) && d > 0) r = INFINITY;
  if (d < 0 || isnan(d)) r = NAN;
  if (d == 0) r = -INFINITY;
  return r;
}

