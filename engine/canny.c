/* canny.c: cv2.Canny on 3-channel RGB, bit for bit (OpenCV 4.6, aperture 3, L1 gradient).
 *
 * 1. Per channel, 3x3 Sobel with replicated borders (dx = [-1 0 1] x [1 2 1]^T, dy its
 *    transpose), in int. Per pixel the channel with the largest |dx| + |dy| wins (first on
 *    ties) and gives m, dx, dy.
 * 2. Non-maximum suppression with OpenCV's integer tangent tests (magnitudes outside the image
 *    are 0); only m > low is a candidate, m > high a strong one.
 * 3. Hysteresis: a candidate is an edge when its 8-connected group of candidates holds a
 *    strong pixel (a stack walk from the strong pixels).
 * Thresholds are floored to ints and swapped when low > high, as OpenCV does.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "canny.h"

#define TG22 13573 /* tan(22.5 degrees) * 2^15 */

enum { MAP_CAND = 0, MAP_NONE = 1, MAP_EDGE = 2 };

static int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Step 1: mag/dx/dy [h, w] of the winning channel. */
static void gradients(const uint8_t *rgb, int w, int h, int *mag, int *dxo, int *dyo) {
  for (int y = 0; y < h; y++) {
    const uint8_t *r0 = rgb + (size_t)clampi(y - 1, 0, h - 1) * w * 3;
    const uint8_t *r1 = rgb + (size_t)y * w * 3;
    const uint8_t *r2 = rgb + (size_t)clampi(y + 1, 0, h - 1) * w * 3;
    for (int x = 0; x < w; x++) {
      int xl = clampi(x - 1, 0, w - 1) * 3, xc = x * 3, xr = clampi(x + 1, 0, w - 1) * 3;
      int best = -1, bdx = 0, bdy = 0;
      for (int c = 0; c < 3; c++) {
        int dx = (r0[xr + c] - r0[xl + c]) + 2 * (r1[xr + c] - r1[xl + c]) + (r2[xr + c] - r2[xl + c]);
        int dy = (r2[xl + c] + 2 * r2[xc + c] + r2[xr + c]) - (r0[xl + c] + 2 * r0[xc + c] + r0[xr + c]);
        int m = abs(dx) + abs(dy);
        if (m > best) best = m, bdx = dx, bdy = dy;
      }
      size_t i = (size_t)y * w + x;
      mag[i] = best;
      dxo[i] = bdx;
      dyo[i] = bdy;
    }
  }
}

static int mag_at(const int *mag, int w, int h, int x, int y) {
  return x < 0 || y < 0 || x >= w || y >= h ? 0 : mag[(size_t)y * w + x];
}

sd_status sd__canny(const uint8_t *rgb, int w, int h, double low, double high, uint8_t *edges,
                    sd_error *err) {
  if (!rgb || !edges || w < 1 || h < 1 || w > 65536 || h > 65536 || (size_t)w * h > (1u << 28))
    return sd__err(err, SD_ERR_INVALID, "canny: image %dx%d", w, h);
  if (!isfinite(low) || !isfinite(high) || low < 0 || high < 0 || low > 1e6 || high > 1e6)
    return sd__err(err, SD_ERR_INVALID, "canny: thresholds %g and %g must be in 0..1e6", low,
                   high);
  if (low > high) {
    double t = low;
    low = high;
    high = t;
  }
  const int lo = (int)floor(low), hi = (int)floor(high);
  size_t n = (size_t)w * h;
  int *mag = malloc(n * sizeof(int)), *dx = malloc(n * sizeof(int)), *dy = malloc(n * sizeof(int));
  uint8_t *map = malloc(n);
  size_t *stack = malloc(n * sizeof(size_t)), top = 0;
  sd_status st = SD_OK;
  if (!mag || !dx || !dy || !map || !stack) {
    st = sd__err(err, SD_ERR_NOMEM, "canny: out of memory for %dx%d", w, h);
    goto out_free;
  }
  gradients(rgb, w, h, mag, dx, dy);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t i = (size_t)y * w + x;
      int m = mag[i], keep = 0;
      map[i] = MAP_NONE;
      if (m <= lo) continue;
      long xs = labs(dx[i]), ys = labs(dy[i]);
      long tg22x = xs * TG22, ys15 = ys << 15;
      if (ys15 < tg22x) {
        keep = m > mag_at(mag, w, h, x - 1, y) && m >= mag_at(mag, w, h, x + 1, y);
      } else if (ys15 > tg22x + (xs << 16)) {
        keep = m > mag_at(mag, w, h, x, y - 1) && m >= mag_at(mag, w, h, x, y + 1);
      } else {
        int s = (dx[i] ^ dy[i]) < 0 ? -1 : 1;
        keep = m > mag_at(mag, w, h, x - s, y - 1) && m > mag_at(mag, w, h, x + s, y + 1);
      }
      if (!keep) continue;
      if (m > hi) {
        map[i] = MAP_EDGE;
        stack[top++] = i;
      } else {
        map[i] = MAP_CAND;
      }
    }
  while (top) {
    size_t i = stack[--top];
    int y = (int)(i / (size_t)w), x = (int)(i % (size_t)w);
    for (int yy = y - 1; yy <= y + 1; yy++)
      for (int xx = x - 1; xx <= x + 1; xx++) {
        if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
        size_t k = (size_t)yy * w + xx;
        if (map[k] == MAP_CAND) {
          map[k] = MAP_EDGE;
          stack[top++] = k;
        }
      }
  }
  for (size_t i = 0; i < n; i++) edges[i] = map[i] == MAP_EDGE ? 255 : 0;
out_free:
  free(mag);
  free(dx);
  free(dy);
  free(map);
  free(stack);
  return st;
}

sd_status sd_canny(const uint8_t *rgb, int w, int h, double low, double high, uint8_t *edges) {
  return sd__canny(rgb, w, h, low, high, edges, NULL);
}
