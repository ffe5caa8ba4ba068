/* resize.c: Pillow's Image.resize(size, Image.LANCZOS) for 8-bit RGB, bit for bit (Pillow 9.4,
 * src/libImaging/Resample.c), which is how diffusers' VaeImageProcessor resizes a ControlNet
 * control image to the output size.
 *
 * The algorithm: per output pixel, a window of the Lanczos-3 kernel (support 3, stretched by
 * the scale when shrinking) centred at in0 + (x + 0.5) * scale; the double weights are
 * normalised to sum 1, then converted to fixed point with PRECISION_BITS = 22 fractional bits
 * (rounded half away from zero); each channel is an int sum starting from half an LSB, shifted
 * back and clamped to 0..255. Horizontal pass first (only on the rows the vertical pass reads),
 * then vertical. A pass whose size does not change is skipped, as in Pillow.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "resize.h"

#define PRECISION_BITS (32 - 8 - 2)
#define LANCZOS_SUPPORT 3.0

static double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return sin(x) / x;
}

static double lanczos(double x) {
  if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3.0);
  return 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for in_size -> out_size over the box
 * [0, in_size): bounds[2 * out_size] = (first input, count), coefficients kk[out_size * ksize]
 * in fixed point. Returns ksize, or 0 when out of memory. */
static int coeffs(int in_size, int out_size, int **boundsp, int32_t **kkp) {
  double scale = (double)((float)in_size - 0.0f) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = LANCZOS_SUPPORT * filterscale;
  int ksize = (int)ceil(support) * 2 + 1;
  double *pre = malloc((size_t)out_size * (size_t)ksize * sizeof(double));
  int *bounds = malloc((size_t)out_size * 2 * sizeof(int));
  int32_t *kk = malloc((size_t)out_size * (size_t)ksize * sizeof(int32_t));
  if (!pre || !bounds || !kk) {
    free(pre);
    free(bounds);
    free(kk);
    return 0;
  }
  for (int xx = 0; xx < out_size; xx++) {
    double center = 0.0 + (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double *k = &pre[(size_t)xx * ksize];
    int x;
    for (x = 0; x < xmax; x++) {
      double w = lanczos((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (x = 0; x < xmax; x++)
      if (ww != 0.0) k[x] /= ww;
    for (; x < ksize; x++) k[x] = 0;
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  for (size_t i = 0; i < (size_t)out_size * ksize; i++)
    kk[i] = pre[i] < 0 ? (int32_t)(-0.5 + pre[i] * (1 << PRECISION_BITS))
                       : (int32_t)(0.5 + pre[i] * (1 << PRECISION_BITS));
  free(pre);
  *boundsp = bounds;
  *kkp = kk;
  return ksize;
}

static uint8_t clip8(int32_t v) {
  v >>= PRECISION_BITS; /* arithmetic shift: floor, as Pillow's lookup index */
  return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

/* out[rows, ow, 3] from in rows [y0, y0 + rows) of in[.., iw, 3]. */
static void horizontal(const uint8_t *in, int iw, int y0, int rows, uint8_t *out, int ow,
                       int ksize, const int *bounds, const int32_t *kk) {
  for (int yy = 0; yy < rows; yy++) {
    const uint8_t *row = in + (size_t)(y0 + yy) * iw * 3;
    for (int xx = 0; xx < ow; xx++) {
      int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
      const int32_t *k = &kk[(size_t)xx * ksize];
      int32_t s[3] = {1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1),
                      1 << (PRECISION_BITS - 1)};
      for (int x = 0; x < xmax; x++)
        for (int c = 0; c < 3; c++) s[c] += row[(size_t)(x + xmin) * 3 + c] * k[x];
      for (int c = 0; c < 3; c++) out[((size_t)yy * ow + xx) * 3 + c] = clip8(s[c]);
    }
  }
}

/* out[oh, w, 3] from in[.., w, 3], bounds relative to in's first row. */
static void vertical(const uint8_t *in, int w, uint8_t *out, int oh, int ksize,
                     const int *bounds, const int32_t *kk) {
  for (int yy = 0; yy < oh; yy++) {
    int ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1];
    const int32_t *k = &kk[(size_t)yy * ksize];
    for (int xx = 0; xx < w; xx++) {
      int32_t s[3] = {1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1),
                      1 << (PRECISION_BITS - 1)};
      for (int y = 0; y < ymax; y++)
        for (int c = 0; c < 3; c++) s[c] += in[((size_t)(y + ymin) * w + xx) * 3 + c] * k[y];
      for (int c = 0; c < 3; c++) out[((size_t)yy * w + xx) * 3 + c] = clip8(s[c]);
    }
  }
}

sd_status sd__resize_lanczos_rgb(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh,
                                 sd_error *err) {
  if (sw < 1 || sh < 1 || dw < 1 || dh < 1 || sw > 65536 || sh > 65536 || dw > 65536 ||
      dh > 65536)
    return sd__err(err, SD_ERR_INVALID, "resize: %dx%d -> %dx%d is out of range", sw, sh, dw, dh);
  if (sw == dw && sh == dh) { /* Image.resize returns a copy */
    memcpy(dst, src, (size_t)sw * sh * 3);
    return SD_OK;
  }
  sd_status st = SD_OK;
  int *bh = NULL, *bv = NULL;
  int32_t *kh = NULL, *kv = NULL;
  uint8_t *tmp = NULL;
  int ksh = coeffs(sw, dw, &bh, &kh), ksv = coeffs(sh, dh, &bv, &kv);
  if (!ksh || !ksv) {
    st = sd__err(err, SD_ERR_NOMEM, "resize: out of memory");
    goto out_free;
  }
  /* rows the vertical pass reads */
  int first = bv[0], last = bv[dh * 2 - 2] + bv[dh * 2 - 1];
  if (sw == dw) { /* vertical only */
    vertical(src, sw, dst, dh, ksv, bv, kv);
  } else if (sh == dh) { /* horizontal only */
    horizontal(src, sw, 0, sh, dst, dw, ksh, bh, kh);
  } else {
    tmp = malloc((size_t)dw * (size_t)(last - first) * 3);
    if (!tmp) {
      st = sd__err(err, SD_ERR_NOMEM, "resize: out of memory");
      goto out_free;
    }
    horizontal(src, sw, first, last - first, tmp, dw, ksh, bh, kh);
    for (int i = 0; i < dh; i++) bv[i * 2] -= first;
    vertical(tmp, dw, dst, dh, ksv, bv, kv);
  }
out_free:
  free(tmp);
  free(bh);
  free(bv);
  free(kh);
  free(kv);
  return st;
}
