/* ops.h: the numerical kernels the networks are built from.
 *
 * Layout legend: N batch, C channels, H x W spatial (NCHW, W fastest, like PyTorch and the
 * checkpoints); for token sequences B batch, L tokens, D features ([B, L, D], D fastest).
 * Weights are float32 in their checkpoint layout: conv [Co, Ci, kh, kw], linear [out, in].
 *
 * Every kernel takes the job context for its thread count and scratch memory. Results never
 * depend on the thread count: each output element is computed by one thread in a fixed order,
 * reductions included. Outputs may alias inputs only where a kernel says so.
 *
 * Threading: each kernel splits its work into tasks fixed by the shapes and runs them on the
 * job's thread pool ctx->pool (pool.h; NULL runs everything on the calling thread). BLAS
 * calls are made inside those tasks and run single-threaded (the kernels themselves set
 * openblas_set_num_threads(1), process-wide, before BLAS work), so callers configure nothing.
 * Scratch (im2col and attention tiles) comes from ctx->arena and is released before return.
 */
#ifndef SD_OPS_H
#define SD_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "internal.h"
#include "pool.h"

/* Per-job execution context. */
typedef struct sd__ctx {
  int threads;         /* >= 1 */
  sd__arena *arena;    /* activations and scratch of this job */
  sd_cancel_fn cancel; /* may be NULL */
  void *user;
  sd__pool *pool;      /* the job's threads (sd__pool_threads == threads); NULL = serial */
} sd__ctx;

/* Nonzero if the job's cancel callback asks to stop. */
int sd__ctx_cancelled(const sd__ctx *ctx);

/* ---- dense algebra ---- */

/* y[rows, out] = x[rows, in] * w[out, in]^T (+ b[out] if b). y must not alias x. */
sd_status sd__linear(sd__ctx *ctx, const float *x, int rows, int in, const float *w,
                     const float *b, int out, float *y);

/* y[N, Co, Ho, Wo] = conv2d(x[N, Ci, H, W], w[Co, Ci, k, k]) + b[Co] (b may be NULL), square
 * kernel k, stride s, zero padding p on every side (Ho = (H + 2p - k) / s + 1). Tiled im2col +
 * sgemm (never a full im2col buffer); 1x1 stride-1 convs are a plain GEMM. y must not alias x. */
sd_status sd__conv2d(sd__ctx *ctx, const float *x, int N, int Ci, int H, int W, const float *w,
                     const float *b, int Co, int k, int s, int p, float *y);

/* ---- normalisation and activations ---- */

/* GroupNorm over x[N, C, HW] with G groups (C % G == 0), eps, affine gamma/beta [C]; if silu,
 * y = silu(norm(x)) in the same pass (torch.nn.GroupNorm then SiLU). y may alias x. */
void sd__group_norm(sd__ctx *ctx, const float *x, int N, int C, int HW, int G, float eps,
                    const float *gamma, const float *beta, int silu, float *y);

/* LayerNorm over the last dim of x[rows, D] (torch.nn.LayerNorm). y may alias x. */
void sd__layer_norm(sd__ctx *ctx, const float *x, int rows, int D, float eps, const float *gamma,
                    const float *beta, float *y);

/* In place over n floats: x * sigmoid(x); exact GELU (erf form, torch default);
 * CLIP's quick_gelu x * sigmoid(1.702 x). */
void sd__silu(sd__ctx *ctx, float *x, size_t n);
void sd__gelu(sd__ctx *ctx, float *x, size_t n);
void sd__quick_gelu(sd__ctx *ctx, float *x, size_t n);

/* GEGLU tail: h[rows, 2F] -> y[rows, F] = h[:, :F] * gelu(h[:, F:]) (diffusers GEGLU). */
void sd__geglu(sd__ctx *ctx, const float *h, int rows, int F, float *y);

/* ---- attention ---- */

/* Multi-head scaled dot-product attention, tiled with an online softmax (never the full
 * score matrix). q [B, Lq, *] rows of stride q_stride, k and v [B, Lk, *] with strides
 * k_stride / v_stride; head h of a row is the `dh` floats at offset h*dh. out [B, Lq, heads*dh]
 * (row stride heads*dh). scale multiplies q.k (usually 1/sqrt(dh)). causal masks key j > query i
 * (CLIP text encoder). out must not alias q, k, v. */
sd_status sd__attention(sd__ctx *ctx, const float *q, int q_stride, const float *k, int k_stride,
                        const float *v, int v_stride, int B, int heads, int Lq, int Lk, int dh,
                        float scale, int causal, float *out);

/* ---- shape and elementwise helpers ---- */

/* y[N, C, 2H, 2W] = nearest-neighbour 2x upsampling of x[N, C, H, W]. */
void sd__upsample2x(sd__ctx *ctx, const float *x, int N, int C, int H, int W, float *y);

/* [N, C, HW] <-> [N, HW, C] */
void sd__nchw_to_nhwc(sd__ctx *ctx, const float *x, int N, int C, int HW, float *y);
void sd__nhwc_to_nchw(sd__ctx *ctx, const float *x, int N, int C, int HW, float *y);

/* y[i] += x[i]; y[i] = a[i] + b[i]; x[i] *= s */
void sd__add_inplace(sd__ctx *ctx, float *y, const float *x, size_t n);
void sd__add(sd__ctx *ctx, const float *a, const float *b, float *y, size_t n);
void sd__scale_inplace(sd__ctx *ctx, float *x, float s, size_t n);

/* x[N, C, HW] += bias[N, C] broadcast over HW (ResNet time embedding). */
void sd__add_channel_bias(sd__ctx *ctx, float *x, const float *bias, int N, int C, int HW);

/* Concatenate along channels: y[N, Ca+Cb, HW] = cat(a[N, Ca, HW], b[N, Cb, HW]). */
void sd__concat_channels(sd__ctx *ctx, const float *a, int Ca, const float *b, int Cb, int N,
                         int HW, float *y);

#endif
