/* vae_run.c: the autoencoder's forward passes (decode, encode), diffusers 0.27.2 semantics;
 * the layout and weights are bound in vae.c.
 *
 * Memory: a pass takes three ping-pong activation buffers from ctx->arena, each sized for the
 * largest activation of that pass, plus small attention scratch above them; all of it is
 * released on return. Kernels tile their own im2col. For SD 1.x at 512x512 the decoder's
 * largest tensor is the 256-channel 512x512 upsample output (256 MiB), so about 0.8 GiB.
 * Legend: C channels, H x W spatial (image side), h x w latent side, f = 2^(levels-1).
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "vae_impl.h"

/* The three activation buffers: x holds the current activation, s1 and s2 are free. */
typedef struct vae_bufs {
  float *x, *s1, *s2;
} vae_bufs;

/* newx (one of s1, s2) becomes the current activation; the old one becomes free. */
static void vae_rotate(vae_bufs *b, float *newx) {
  if (newx == b->s1) {
    b->s1 = b->x;
  } else {
    b->s2 = b->x;
  }
  b->x = newx;
}

static sd_status vae_cancelled(sd__ctx *ctx, sd_error *err) {
  if (sd__ctx_cancelled(ctx)) return sd__err(err, SD_ERR_CANCELLED, "vae: cancelled");
  return SD_OK;
}

/* y[co, Ho, Wo] = conv(x[ci, H, W]) with stride s and symmetric zero padding p. */
static sd_status vae_conv_run(sd__ctx *ctx, const vae_conv *c, const float *x, int H, int W,
                              int s, int p, float *y, sd_error *err) {
  sd_status st = sd__conv2d(ctx, x, 1, c->ci, H, W, c->w, c->b, c->co, c->k, s, p, y);
  if (st != SD_OK)
    return sd__err(err, st, "vae: %dx%d conv %d->%d at %dx%d failed", c->k, c->k, c->ci, c->co,
                   H, W);
  return SD_OK;
}

/* ResnetBlock2D (temb None, output_scale_factor 1):
 * out = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))). x[cin, H, W] in b->x;
 * the output [cout, H, W] replaces it. */
static sd_status vae_resnet_run(sd__ctx *ctx, int G, const vae_resnet *r, vae_bufs *b, int H,
                                int W, sd_error *err) {
  const int HW = H * W;
  float *x = b->x, *t1 = b->s1, *t2 = b->s2;
  sd__group_norm(ctx, x, 1, r->cin, HW, G, VAE_EPS, r->norm1.g, r->norm1.b, 1, t1);
  sd_status st = vae_conv_run(ctx, &r->conv1, t1, H, W, 1, 1, t2, err);
  if (st == SD_OK) st = vae_cancelled(ctx, err); /* a conv at 512x512 takes about a second */
  if (st != SD_OK) return st;
  sd__group_norm(ctx, t2, 1, r->cout, HW, G, VAE_EPS, r->norm2.g, r->norm2.b, 1, t2);
  st = vae_conv_run(ctx, &r->conv2, t2, H, W, 1, 1, t1, err);
  if (st != SD_OK) return st;
  if (r->has_shortcut) {
    st = vae_conv_run(ctx, &r->shortcut, x, H, W, 1, 0, t2, err);
    if (st != SD_OK) return st;
    sd__add_inplace(ctx, t1, t2, (size_t)r->cout * (size_t)HW);
  } else {
    sd__add_inplace(ctx, t1, x, (size_t)r->cout * (size_t)HW);
  }
  vae_rotate(b, t1);
  return vae_cancelled(ctx, err);
}

/* Attention with group_norm and residual_connection, one head of dim C (AttnProcessor):
 * t = norm(x) as rows [HW, C]; x += to_out(softmax(q k^T / sqrt(C)) v). x[C, HW] in b->x,
 * updated in place; q, k, v and the attention output are arena scratch released on return. */
static sd_status vae_attn_run(sd__ctx *ctx, int G, const vae_attn *a, vae_bufs *b, int HW,
                              sd_error *err) {
  const int C = a->c;
  const size_t n = (size_t)C * (size_t)HW;
  sd__arena_mark mark = sd__arena_get_mark(ctx->arena);
  sd_status st = SD_OK;
  float *t = b->s1, *rows = b->s2; /* both hold E >= C * HW floats */
  float *q = sd__arena_floats(ctx->arena, n), *k = sd__arena_floats(ctx->arena, n);
  float *v = sd__arena_floats(ctx->arena, n), *o = sd__arena_floats(ctx->arena, n);
  if (!q || !k || !v || !o) {
    st = sd__err(err, SD_ERR_NOMEM, "vae: out of memory for attention over %d tokens", HW);
    goto out_reset;
  }
  sd__group_norm(ctx, b->x, 1, C, HW, G, VAE_EPS, a->norm.g, a->norm.b, 0, t);
  sd__nchw_to_nhwc(ctx, t, 1, C, HW, rows);
  float *qkv[3] = {q, k, v};
  for (int i = 0; i < 3 && st == SD_OK; i++)
    st = sd__linear(ctx, rows, HW, C, a->w[i], a->b[i], C, qkv[i]);
  /* diffusers: scale = dim_head ** -0.5 (a Python float), applied to q k^T in float32. */
  if (st == SD_OK)
    st = sd__attention(ctx, q, C, k, C, v, C, 1, 1, HW, HW, C, (float)pow((double)C, -0.5), 0,
                       o);
  if (st == SD_OK) st = sd__linear(ctx, o, HW, C, a->w[3], a->b[3], C, rows);
  if (st != SD_OK) {
    st = sd__err(err, st, "vae: mid-block attention (C %d, %d tokens) failed", C, HW);
    goto out_reset;
  }
  sd__nhwc_to_nchw(ctx, rows, 1, C, HW, t);
  sd__add_inplace(ctx, b->x, t, n); /* residual; rescale_output_factor 1 */
out_reset:
  sd__arena_reset(ctx->arena, mark);
  return st;
}

/* A per-channel copy of x [C, ...] into y [C, ...] (one pool task per channel). */
typedef struct vae_chan_job {
  const float *x;
  float *y;
  int C, H, W;
} vae_chan_job;

/* Channel o of the upsampler's interleave: y4 (x) [4 C, H+1, W+1] -> out (y) [C, 2H, 2W]. */
static void vae_interleave_task(void *arg, int o, int worker) {
  const vae_chan_job *J = arg;
  const float *y4 = J->x;
  float *out = J->y;
  const int co = J->C, H = J->H, W = J->W;
  const size_t Wy = (size_t)W + 1, plane = ((size_t)H + 1) * Wy, Wo = 2 * (size_t)W;
  for (int i = 0; i < H; i++)
    for (int a = 0; a < 2; a++) {
      const float *e = y4 + ((size_t)(2 * a) * co + o) * plane + (size_t)(i + a) * Wy;
      const float *f = y4 + ((size_t)(2 * a + 1) * co + o) * plane + (size_t)(i + a) * Wy + 1;
      float *row = out + (size_t)o * 4 * (size_t)H * (size_t)W + (size_t)(2 * i + a) * Wo;
      for (int j = 0; j < W; j++) {
        row[2 * j] = e[j];
        row[2 * j + 1] = f[j];
      }
    }
}

/* Upsample2D: out[co, 2H, 2W] = conv3x3(nearest2x(x[ci, H, W])), computed as the folded 2x2
 * conv (vae_upconv) into y4[4 co, H+1, W+1] with padding 1, then interleaved: output pixel
 * (2i+a, 2j+b) is phase p = 2a+b at y4 position (i+a, j+b). */
static sd_status vae_upconv_run(sd__ctx *ctx, const vae_upconv *u, const float *x, int H, int W,
                                float *y4, float *out, sd_error *err) {
  const int co = u->co;
  sd_status st = sd__conv2d(ctx, x, 1, u->ci, H, W, u->w, u->b, 4 * co, 2, 1, 1, y4);
  if (st != SD_OK)
    return sd__err(err, st, "vae: upsampler conv %d->%d at %dx%d failed", u->ci, co, H, W);
  vae_chan_job J = {y4, out, co, H, W};
  sd__pool_for(ctx->pool, co, vae_interleave_task, &J);
  return SD_OK;
}

/* UNetMidBlock2D: resnet, attention, resnet at [C, H, W] in b->x. */
static sd_status vae_mid_run(sd__ctx *ctx, int G, const vae_mid *m, vae_bufs *b, int H, int W,
                             sd_error *err) {
  sd_status st = vae_resnet_run(ctx, G, &m->res[0], b, H, W, err);
  if (st == SD_OK && m->has_attn) st = vae_attn_run(ctx, G, &m->attn, b, H * W, err);
  if (st == SD_OK) st = vae_cancelled(ctx, err);
  if (st == SD_OK) st = vae_resnet_run(ctx, G, &m->res[1], b, H, W, err);
  return st;
}

/* *E = max(*E, c * H * W); returns nonzero on overflow. */
static int vae_grow(size_t *E, size_t c, size_t H, size_t W) {
  size_t n;
  if (sd__mul_size(c, H, &n) || sd__mul_size(n, W, &n)) return 1;
  if (n > *E) *E = n;
  return 0;
}

/* The largest activation (in floats) the decoder holds in one buffer for a [*, h, w] latent:
 * it mirrors the loop of sd__vae_decode. */
static int vae_decoder_elems(const sd__vae_config *c, int h, int w, size_t *E) {
  int L = c->levels, bad = 0;
  size_t H = (size_t)h, W = (size_t)w;
  int prev = c->block_out_channels[L - 1];
  *E = 0;
  bad |= vae_grow(E, (size_t)c->latent_channels, H, W);
  bad |= vae_grow(E, (size_t)prev, H, W);
  for (int i = 0; i < L; i++) {
    int ch = c->block_out_channels[L - 1 - i];
    bad |= vae_grow(E, (size_t)(prev > ch ? prev : ch), H, W);
    if (i < L - 1) {
      bad |= vae_grow(E, 4 * (size_t)ch, H + 1, W + 1); /* the folded upsampler's phases */
      H *= 2;
      W *= 2;
      bad |= vae_grow(E, (size_t)ch, H, W);
    }
    prev = ch;
  }
  /* The kernels take a plane size H*W as int. */
  return bad || H * W > (size_t)INT_MAX;
}

/* The same for the encoder over an [in, H, W] image (including the padded downsample input). */
static int vae_encoder_elems(const sd__vae_config *c, int Hi, int Wi, size_t *E) {
  int L = c->levels, bad = 0;
  size_t H = (size_t)Hi, W = (size_t)Wi;
  int prev = c->block_out_channels[0];
  *E = 0;
  bad |= vae_grow(E, (size_t)prev, H, W);
  for (int i = 0; i < L; i++) {
    int ch = c->block_out_channels[i];
    bad |= vae_grow(E, (size_t)(prev > ch ? prev : ch), H, W);
    if (i < L - 1) {
      bad |= vae_grow(E, (size_t)ch, H + 1, W + 1);
      H = (H + 1 - 3) / 2 + 1;
      W = (W + 1 - 3) / 2 + 1;
    }
    prev = ch;
  }
  bad |= vae_grow(E, (size_t)(2 * c->latent_channels), H, W);
  return bad || (size_t)Hi * (size_t)Wi > (size_t)INT_MAX;
}

static sd_status vae_bufs_alloc(sd__arena *a, size_t E, vae_bufs *b, sd_error *err) {
  b->x = sd__arena_floats(a, E);
  b->s1 = sd__arena_floats(a, E);
  b->s2 = sd__arena_floats(a, E);
  if (!b->x || !b->s1 || !b->s2)
    return sd__err(err, SD_ERR_NOMEM, "vae: out of memory for 3 x %zu MiB of activations",
                   E * sizeof(float) >> 20);
  return SD_OK;
}

sd_status sd__vae_post_quant(const sd__vae *v, sd__ctx *ctx, const float *z, int h, int w,
                             int quantize, float *out, sd_error *err) {
  const sd__vae_config *c = &v->cfg;
  if (!ctx || !ctx->arena || ctx->threads < 1)
    return sd__err(err, SD_ERR_INTERNAL, "vae: post_quant without an arena");
  if (h < 1 || w < 1 || h > VAE_MAX_LATENT || w > VAE_MAX_LATENT)
    return sd__err(err, SD_ERR_INVALID, "vae: latent size %dx%d", h, w);
  sd__arena_mark mark = sd__arena_get_mark(ctx->arena);
  sd_status st = SD_OK;
  const float *zin = z;
  if (c->is_vq && quantize) {
    size_t hw = (size_t)h * (size_t)w;
    float *q = sd__arena_floats(ctx->arena, (size_t)c->vq_embed_dim * hw);
    int64_t *idx = sd__arena_alloc(ctx->arena, hw * sizeof(int64_t));
    if (!q || !idx) {
      st = sd__err(err, SD_ERR_NOMEM, "vae: out of memory for quantization");
      goto out_reset;
    }
    st = sd__vae_quantize(v, z, h, w, idx, q, err);
    zin = q;
  }
  if (st == SD_OK) st = vae_conv_run(ctx, &v->dec.post_quant_conv, zin, h, w, 1, 0, out, err);
out_reset:
  sd__arena_reset(ctx->arena, mark);
  return st;
}

sd_status sd__vae_decode(const sd__vae *v, sd__ctx *ctx, const float *z, int h, int w,
                         int force_not_quantize, float *image, sd_error *err) {
  const sd__vae_config *c = &v->cfg;
  const vae_decoder *d = &v->dec;
  const int L = c->levels, G = c->norm_groups;
  if (!ctx || !ctx->arena || ctx->threads < 1)
    return sd__err(err, SD_ERR_INTERNAL, "vae: decode without an arena");
  if (h < 1 || w < 1 || h > VAE_MAX_LATENT || w > VAE_MAX_LATENT)
    return sd__err(err, SD_ERR_INVALID, "vae: latent size %dx%d", h, w);
  size_t E;
  if (vae_decoder_elems(c, h, w, &E))
    return sd__err(err, SD_ERR_LIMIT, "vae: latent %dx%d is too large to decode", h, w);

  sd__arena_mark mark = sd__arena_get_mark(ctx->arena);
  vae_bufs b;
  sd_status st = vae_bufs_alloc(ctx->arena, E, &b, err);
  if (st != SD_OK) goto out_reset;

  st = sd__vae_post_quant(v, ctx, z, h, w, !force_not_quantize, b.s1, err);
  if (st == SD_OK) st = vae_conv_run(ctx, &d->conv_in, b.s1, h, w, 1, 1, b.x, err);
  if (st == SD_OK) st = vae_mid_run(ctx, G, &d->mid, &b, h, w, err);
  int H = h, W = w;
  for (int i = 0; i < L && st == SD_OK; i++) {
    for (int j = 0; j < c->layers_per_block + 1 && st == SD_OK; j++)
      st = vae_resnet_run(ctx, G, &d->res[i][j], &b, H, W, err);
    if (st == SD_OK && i < L - 1) { /* Upsample2D: nearest 2x, then 3x3 conv */
      st = vae_upconv_run(ctx, &d->up4[i], b.x, H, W, b.s1, b.s2, err);
      H *= 2;
      W *= 2;
      vae_rotate(&b, b.s2);
    }
  }
  if (st != SD_OK) goto out_reset;
  sd__group_norm(ctx, b.x, 1, d->norm_out.c, H * W, G, VAE_EPS, d->norm_out.g, d->norm_out.b, 1,
                 b.x);
  st = vae_conv_run(ctx, &d->conv_out, b.x, H, W, 1, 1, image, err);

out_reset:
  sd__arena_reset(ctx->arena, mark);
  return st;
}

/* y[C, H+1, W+1] = x[C, H, W] with one zero row below and one zero column to the right:
 * Downsample2D's F.pad(x, (0, 1, 0, 1)) before its stride-2 unpadded conv. */
static void vae_pad_task(void *arg, int ch, int worker) {
  const vae_chan_job *J = arg;
  const float *x = J->x;
  float *y = J->y;
  const int H = J->H, W = J->W;
  const size_t Wp = (size_t)W + 1, plane = ((size_t)H + 1) * Wp;
  const float *src = x + (size_t)ch * (size_t)H * (size_t)W;
  float *dst = y + (size_t)ch * plane;
  for (int i = 0; i < H; i++) {
    memcpy(dst + (size_t)i * Wp, src + (size_t)i * (size_t)W, (size_t)W * sizeof(float));
    dst[(size_t)i * Wp + (size_t)W] = 0.0f;
  }
  memset(dst + (size_t)H * Wp, 0, Wp * sizeof(float));
}

static void vae_pad_br(sd__ctx *ctx, const float *x, int C, int H, int W, float *y) {
  vae_chan_job J = {x, y, C, H, W};
  sd__pool_for(ctx->pool, C, vae_pad_task, &J);
}

sd_status sd__vae_encode(const sd__vae *v, sd__ctx *ctx, const float *image, int H, int W,
                         float *out, sd_error *err) {
  const sd__vae_config *c = &v->cfg;
  const vae_encoder *e = &v->enc;
  const int L = c->levels, G = c->norm_groups, f = 1 << (L - 1);
  if (!ctx || !ctx->arena || ctx->threads < 1)
    return sd__err(err, SD_ERR_INTERNAL, "vae: encode without an arena");
  if (!v->has_encoder)
    return sd__err(err, SD_ERR_MISSING, "vae: this model has no encoder weights");
  if (H < f || W < f || H % f != 0 || W % f != 0 || H / f > VAE_MAX_LATENT ||
      W / f > VAE_MAX_LATENT)
    return sd__err(err, SD_ERR_INVALID, "vae: image %dx%d is not a positive multiple of %d",
                   W, H, f);
  size_t E;
  if (vae_encoder_elems(c, H, W, &E))
    return sd__err(err, SD_ERR_LIMIT, "vae: image %dx%d is too large to encode", W, H);

  sd__arena_mark mark = sd__arena_get_mark(ctx->arena);
  vae_bufs b;
  sd_status st = vae_bufs_alloc(ctx->arena, E, &b, err);
  if (st == SD_OK) st = vae_conv_run(ctx, &e->conv_in, image, H, W, 1, 1, b.x, err);
  for (int i = 0; i < L && st == SD_OK; i++) {
    for (int j = 0; j < c->layers_per_block && st == SD_OK; j++)
      st = vae_resnet_run(ctx, G, &e->res[i][j], &b, H, W, err);
    if (st == SD_OK && i < L - 1) { /* Downsample2D: pad (0, 1, 0, 1), 3x3 conv stride 2 */
      vae_pad_br(ctx, b.x, e->down[i].ci, H, W, b.s1);
      st = vae_conv_run(ctx, &e->down[i], b.s1, H + 1, W + 1, 2, 0, b.s2, err);
      H = (H + 1 - 3) / 2 + 1;
      W = (W + 1 - 3) / 2 + 1;
      vae_rotate(&b, b.s2);
    }
  }
  if (st == SD_OK) st = vae_mid_run(ctx, G, &e->mid, &b, H, W, err);
  if (st != SD_OK) goto out_reset;
  sd__group_norm(ctx, b.x, 1, e->norm_out.c, H * W, G, VAE_EPS, e->norm_out.g, e->norm_out.b, 1,
                 b.x);
  st = vae_conv_run(ctx, &e->conv_out, b.x, H, W, 1, 1, b.s1, err);
  if (st == SD_OK) st = vae_conv_run(ctx, &e->quant_conv, b.s1, H, W, 1, 0, out, err);

out_reset:
  sd__arena_reset(ctx->arena, mark);
  return st;
}

size_t sd__vae_workspace_bytes(const sd__vae_config *c, int h, int w, int encode) {
  size_t E, total, top = (size_t)c->block_out_channels[c->levels - 1];
  int f = 1 << (c->levels - 1);
  if (h < 1 || w < 1) return 0;
  if (encode ? (h % f != 0 || w % f != 0 || vae_encoder_elems(c, h, w, &E))
             : (h > VAE_MAX_LATENT || w > VAE_MAX_LATENT || vae_decoder_elems(c, h, w, &E)))
    return 0;
  size_t hw = encode ? (size_t)(h / f) * (size_t)(w / f) : (size_t)h * (size_t)w;
  /* Each arena block is rounded up to 64 bytes: count one extra line per block. */
  total = 3 * (E * sizeof(float) + 64);
  if (c->mid_attention) total += 4 * (top * hw * sizeof(float) + 64);
  if (c->is_vq && !encode) total += (size_t)c->vq_embed_dim * hw * sizeof(float) +
                                    hw * sizeof(int64_t) + 128;
  return total;
}
