/* ops_winograd.h: 3x3 stride-1 pad-1 convolution by Winograd F(2x2, 3x3) (ops_winograd.c).
 *
 * Internal to the kernels: sd__conv2d (ops_conv.c) routes the shapes where it pays here; the
 * kernel tests call it directly on small odd shapes. Not part of ops.h's contract.
 */
#ifndef SD_OPS_WINOGRAD_H
#define SD_OPS_WINOGRAD_H

#include "ops.h"

/* y[N, Co, H, W] = conv2d(x[N, Ci, H, W], w[Co, Ci, 3, 3], stride 1, zero padding 1) + b[Co]
 * (b may be NULL), same result up to float rounding as sd__conv2d with k = 3, s = 1, p = 1,
 * and bit-identical for any thread count. Transformed weights and tiles live in ctx->arena
 * (released before return). y must not alias x. SD_ERR_INVALID without an arena or for
 * H, W < 1 or Ci < 1; SD_ERR_NOMEM / SD_ERR_LIMIT when scratch cannot be had. */
sd_status sd__conv3x3_winograd(sd__ctx *ctx, const float *x, int N, int Ci, int H, int W,
                               const float *w, const float *b, int Co, float *y);

/* Nonzero when Winograd is expected to be faster than im2col for this 3x3 s1 p1 shape (a rule
 * on shapes only, from measurements on SD shapes). */
int sd__conv3x3_winograd_pays(int N, int Ci, int H, int W, int Co);

#endif
