/* unet.c: diffusers' UNet2DConditionModel (0.27.2) for SD 1.x: weights and the forward pass.
 *
 * DESIGN. The forward pass follows unet_2d_condition.py: sinusoidal time embedding + MLP,
 * conv_in, down blocks whose every output is kept as a skip connection, the mid block, up blocks
 * that concatenate the skips back in reverse order, GroupNorm + SiLU + conv_out. The batch (2
 * with classifier-free guidance) runs as one pass so every GEMM is as large as possible. Memory
 * comes from the job's arena in stack order: first two "ping-pong" buffers sized for the largest
 * mid/up-path activation, then the skips, pushed as the down path produces them. The up path
 * consumes the skips from the top of the stack and releases each one as soon as its resnet has
 * read it, while the running activation alternates between the ping-pong buffers. Each block's
 * scratch is released as it returns, and everything goes back to the caller's arena mark before
 * returning, so every step reuses the same memory.
 * ControlNet residuals are added to the skips just before the up path consumes them and to the
 * mid block output (diffusers adds them to copies; the skips are not needed otherwise).
 * Block math is in unet_blocks.c, configs in unet_config.c.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torchmath.h"
#include "unet.h"
#include "unet_blocks.h"

#define UNET_MAX_RES (SD__UNET_MAX_LAYERS + 1)
/* conv_in + layers per level + a downsampler per level but the last */
#define UNET_MAX_SKIPS (1 + SD_UNET_MAX_LEVELS * (SD__UNET_MAX_LAYERS + 1))

typedef struct unet_level {
  int nres;
  sd__unet_resnet res[UNET_MAX_RES];
  sd__unet_xformer attn[UNET_MAX_RES]; /* used when the level has attention */
  const float *resample_w, *resample_b; /* downsamplers.0.conv / upsamplers.0.conv, or NULL */
} unet_level;

struct sd__unet {
  sd__unet_config cfg;
  int temb_dim; /* 4 * block_out_channels[0] */
  const float *time1_w, *time1_b, *time2_w, *time2_b;
  const float *conv_in_w, *conv_in_b;
  unet_level down[SD_UNET_MAX_LEVELS], up[SD_UNET_MAX_LEVELS]; /* up[] in up-block order */
  int mid_nres;
  sd__unet_resnet mid_res[2];
  sd__unet_xformer mid_attn;
  const float *norm_out_w, *norm_out_b, *conv_out_w, *conv_out_b;
};

/* ---- loading ---- */

static const float *get_weight(sd__wsrc *src, sd_error *err, const char *name, int64_t d0,
                         int64_t d1, int64_t k) {
  int64_t shape[4] = {d0, d1, k, k};
  int ndim = d1 < 0 ? 1 : k < 0 ? 2 : 4;
  return sd__wsrc_get(src, name, ndim, shape, err);
}

static void load_level_attn(sd__wsrc *src, const sd__unet_config *c, const char *kind, int idx,
                            int r, int ch, int heads, sd__unet_xformer *t, sd_error *err) {
  char name[96];
  snprintf(name, sizeof name, "%s.%d.attentions.%d", kind, idx, r);
  sd__unet_xformer_load(src, name, ch, heads, c->transformer_layers, c->cross_attention_dim,
                        c->norm_groups, t, err);
}

static void load_down(sd__unet *u, sd__wsrc *src, sd_error *err) {
  const sd__unet_config *c = &u->cfg;
  char name[96];
  int ch = c->block_out_channels[0];
  for (int i = 0; i < c->levels && err->status == SD_OK; i++) {
    unet_level *lv = &u->down[i];
    int co = c->block_out_channels[i];
    lv->nres = c->layers_per_block;
    for (int j = 0; j < lv->nres && err->status == SD_OK; j++) {
      snprintf(name, sizeof name, "down_blocks.%d.resnets.%d", i, j);
      sd__unet_resnet_load(src, name, j == 0 ? ch : co, co, u->temb_dim, c->norm_groups,
                           c->norm_eps, &lv->res[j], err);
      if (c->down_has_attn[i])
        load_level_attn(src, c, "down_blocks", i, j, co, c->heads[i], &lv->attn[j], err);
    }
    if (i < c->levels - 1) {
      snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv.weight", i);
      lv->resample_w = get_weight(src, err, name, co, co, 3);
      snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv.bias", i);
      lv->resample_b = get_weight(src, err, name, co, -1, -1);
    }
    ch = co;
  }
}

static void load_mid(sd__unet *u, sd__wsrc *src, sd_error *err) {
  const sd__unet_config *c = &u->cfg;
  int ch = c->block_out_channels[c->levels - 1];
  u->mid_nres = c->mid_has_attn ? 2 : 1;
  for (int j = 0; j < u->mid_nres && err->status == SD_OK; j++) {
    char name[64];
    snprintf(name, sizeof name, "mid_block.resnets.%d", j);
    sd__unet_resnet_load(src, name, ch, ch, u->temb_dim, c->norm_groups, c->norm_eps,
                         &u->mid_res[j], err);
  }
  if (c->mid_has_attn && err->status == SD_OK)
    sd__unet_xformer_load(src, "mid_block.attentions.0", ch, c->heads[c->levels - 1],
                          c->transformer_layers, c->cross_attention_dim, c->norm_groups,
                          &u->mid_attn, err);
}

/* Up block ui works at down level d = levels-1-ui. Resnet j takes the running activation
 * (prev_output_channel for j = 0, else the block's own channels) concatenated with a skip:
 * the level's own channels, except the last, whose skip comes from the level above (its
 * downsampler, or conv_in at level 0). */
static void load_up(sd__unet *u, sd__wsrc *src, sd_error *err) {
  const sd__unet_config *c = &u->cfg;
  const int L = c->levels;
  char name[96];
  for (int ui = 0; ui < L && err->status == SD_OK; ui++) {
    int d = L - 1 - ui;
    int co = c->block_out_channels[d];
    int prev = c->block_out_channels[ui == 0 ? L - 1 : d + 1];
    int above = c->block_out_channels[d > 0 ? d - 1 : 0];
    unet_level *lv = &u->up[ui];
    lv->nres = c->layers_per_block + 1;
    for (int j = 0; j < lv->nres && err->status == SD_OK; j++) {
      int skip = j == lv->nres - 1 ? above : co;
      snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", ui, j);
      sd__unet_resnet_load(src, name, (j == 0 ? prev : co) + skip, co, u->temb_dim,
                           c->norm_groups, c->norm_eps, &lv->res[j], err);
      if (c->up_has_attn[ui])
        load_level_attn(src, c, "up_blocks", ui, j, co, c->heads[d], &lv->attn[j], err);
    }
    if (ui < L - 1) {
      snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv.weight", ui);
      lv->resample_w = get_weight(src, err, name, co, co, 3);
      snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv.bias", ui);
      lv->resample_b = get_weight(src, err, name, co, -1, -1);
    }
  }
}

sd_status sd__unet_load(sd__wsrc *src, const sd__unet_config *cfg, sd__unet **out,
                        sd_error *err) {
  sd_error local = {0};
  if (!err) err = &local;
  *out = NULL;
  sd__unet *u = calloc(1, sizeof *u);
  if (!u) return sd__err(err, SD_ERR_NOMEM, "unet: out of memory");
  u->cfg = *cfg;
  if (sd__unet_config_check(&u->cfg, err) != SD_OK) goto out_destroy;
  const sd__unet_config *c = &u->cfg;
  const int c0 = c->block_out_channels[0];
  u->temb_dim = 4 * c0;
  u->time1_w = get_weight(src, err, "time_embedding.linear_1.weight", u->temb_dim, c0, -1);
  u->time1_b = get_weight(src, err, "time_embedding.linear_1.bias", u->temb_dim, -1, -1);
  u->time2_w = get_weight(src, err, "time_embedding.linear_2.weight", u->temb_dim, u->temb_dim, -1);
  u->time2_b = get_weight(src, err, "time_embedding.linear_2.bias", u->temb_dim, -1, -1);
  u->conv_in_w = get_weight(src, err, "conv_in.weight", c0, c->in_channels, 3);
  u->conv_in_b = get_weight(src, err, "conv_in.bias", c0, -1, -1);
  u->norm_out_w = get_weight(src, err, "conv_norm_out.weight", c0, -1, -1);
  u->norm_out_b = get_weight(src, err, "conv_norm_out.bias", c0, -1, -1);
  u->conv_out_w = get_weight(src, err, "conv_out.weight", c->out_channels, c0, 3);
  u->conv_out_b = get_weight(src, err, "conv_out.bias", c->out_channels, -1, -1);
  if (err->status == SD_OK) load_down(u, src, err);
  if (err->status == SD_OK) load_mid(u, src, err);
  if (err->status == SD_OK) load_up(u, src, err);
  if (err->status != SD_OK) goto out_destroy;
  *out = u;
  return SD_OK;
out_destroy:
  sd__unet_destroy(u);
  return err->status;
}

void sd__unet_destroy(sd__unet *u) {
  if (!u) return;
  for (int i = 0; i < SD_UNET_MAX_LEVELS; i++)
    for (int j = 0; j < UNET_MAX_RES; j++) {
      sd__unet_xformer_free(&u->down[i].attn[j]);
      sd__unet_xformer_free(&u->up[i].attn[j]);
    }
  sd__unet_xformer_free(&u->mid_attn);
  free(u);
}

const sd__unet_config *sd__unet_get_config(const sd__unet *u) { return &u->cfg; }

/* ---- forward ---- */

/* get_timestep_embedding(t, dim, flip_sin_to_cos, freq_shift) in float32, as torch evaluates
 * it: exponent = fl(-ln 10000) * i / (half - shift) (true division, checked bit for bit);
 * emb = t * exp(exponent); (sin, cos), or (cos, sin) when flipped. sin/cos are evaluated in
 * double and rounded, within an ulp of torch's SLEEF kernels (an ulp of a value <= 1). */
void sd__unet_timestep_embedding(float t, int dim, int flip, int shift, float *out) {
  const int half = dim / 2;
  const float neg_log = (float)-log(10000.0);
  const float denom = (float)(half - shift);
  for (int i = 0; i < half; i++) {
    float e = (neg_log * (float)i) / denom;
    float a = t * sd__torch_expf(e);
    float s = (float)sin((double)a), c = (float)cos((double)a);
    out[i] = flip ? c : s;
    out[half + i] = flip ? s : c;
  }
}

typedef struct skip_stack {
  int n;
  float *x[UNET_MAX_SKIPS];
  sd__arena_mark mark[UNET_MAX_SKIPS]; /* the arena before x[i]: releasing it frees x[i] */
  int c[UNET_MAX_SKIPS], h[UNET_MAX_SKIPS], w[UNET_MAX_SKIPS];
} skip_stack;

static float *act(sd__ctx *ctx, int B, int C, int H, int W, sd_error *err) {
  size_t n = (size_t)B * (size_t)C * (size_t)H * (size_t)W;
  float *p = sd__arena_floats(ctx->arena, n);
  if (!p) sd__err(err, SD_ERR_NOMEM, "unet: out of memory for a %dx%dx%dx%d activation", B, C,
                  H, W);
  return p;
}

static sd_status check_cancel(sd__ctx *ctx, sd_error *err) {
  return sd__ctx_cancelled(ctx) ? sd__err(err, SD_ERR_CANCELLED, "cancelled") : SD_OK;
}

static sd_status conv_status(sd_status st, const char *what, sd_error *err) {
  if (st != SD_OK) sd__err(err, st, "unet: %s failed (%s)", what, sd_status_str(st));
  return st;
}

/* temb_act[B, T] = SiLU(linear_2(SiLU(linear_1(emb(t))))), the SiLU every resnet applies first
 * (the same row for every batch item). */
static sd_status time_embed(const sd__unet *u, sd__ctx *ctx, float t, int B, float *temb_act,
                            sd_error *err) {
  const int c0 = u->cfg.block_out_channels[0], T = u->temb_dim;
  sd__arena_mark m = sd__arena_get_mark(ctx->arena);
  sd_status st;
  float *e = sd__arena_floats(ctx->arena, (size_t)c0 + (size_t)T);
  if (!e) {
    st = sd__err(err, SD_ERR_NOMEM, "unet: out of memory");
    goto out_reset;
  }
  float *h = e + c0;
  sd__unet_timestep_embedding(t, c0, u->cfg.flip_sin_to_cos, u->cfg.freq_shift, e);
  st = sd__linear(ctx, e, 1, c0, u->time1_w, u->time1_b, T, h);
  if (st != SD_OK) goto out_op;
  sd__silu(ctx, h, (size_t)T);
  st = sd__linear(ctx, h, 1, T, u->time2_w, u->time2_b, T, temb_act);
  if (st != SD_OK) goto out_op;
  sd__silu(ctx, temb_act, (size_t)T);
  for (int b = 1; b < B; b++) memcpy(temb_act + (size_t)b * T, temb_act, (size_t)T * sizeof(float));
  goto out_reset;
out_op:
  conv_status(st, "time embedding", err);
out_reset:
  sd__arena_reset(ctx->arena, m);
  return st;
}

/* The down path: conv_in, then every level's resnets (+ transformers) and downsampler, each
 * output pushed as a skip. The last skip is the mid block's input. */
static sd_status down_path(const sd__unet *u, sd__ctx *ctx, const float *x, int B, int H, int W,
                           const float *temb, const float *text, int Lt, skip_stack *sk,
                           sd_error *err) {
  const sd__unet_config *c = &u->cfg;
  int ch = c->block_out_channels[0];
  sk->n = 0;
  sk->mark[0] = sd__arena_get_mark(ctx->arena);
  float *cur = act(ctx, B, ch, H, W, err);
  if (!cur) return err->status;
  sd_status st = sd__conv2d(ctx, x, B, c->in_channels, H, W, u->conv_in_w, u->conv_in_b, ch, 3,
                            1, 1, cur);
  if (conv_status(st, "conv_in", err) != SD_OK) return st;
  /* the mark of the next skip is taken before its buffer is allocated */
#define PUSH(p, C_)                                                                           \
  do {                                                                                        \
    sk->x[sk->n] = (p), sk->c[sk->n] = (C_), sk->h[sk->n] = H, sk->w[sk->n] = W, sk->n++;     \
    sk->mark[sk->n] = sd__arena_get_mark(ctx->arena);                                         \
  } while (0)
  PUSH(cur, ch);
  for (int i = 0; i < c->levels; i++) {
    const unet_level *lv = &u->down[i];
    int co = c->block_out_channels[i];
    for (int j = 0; j < lv->nres; j++) {
      if (check_cancel(ctx, err) != SD_OK) return err->status;
      float *o = act(ctx, B, co, H, W, err);
      if (!o) return err->status;
      st = sd__unet_resnet_forward(ctx, &lv->res[j], cur, B, H, W, temb, u->temb_dim, o, err);
      if (st == SD_OK && c->down_has_attn[i])
        st = sd__unet_xformer_forward(ctx, &lv->attn[j], o, B, H, W, text, Lt, err);
      if (st != SD_OK) return st;
      cur = o;
      PUSH(cur, co);
    }
    if (lv->resample_w) {
      float *o = act(ctx, B, co, H / 2, W / 2, err);
      if (!o) return err->status;
      st = sd__conv2d(ctx, cur, B, co, H, W, lv->resample_w, lv->resample_b, co, 3, 2, 1, o);
      if (conv_status(st, "downsampler", err) != SD_OK) return st;
      H /= 2;
      W /= 2;
      cur = o;
      PUSH(cur, co);
    }
  }
#undef PUSH
  return SD_OK;
}

/* Floats of the largest activation the mid block and up path hold between blocks. */
static size_t pingpong_floats(const sd__unet_config *c, int B, int h, int w) {
  size_t best = 0;
  for (int d = 0; d < c->levels; d++) {
    size_t n = (size_t)B * c->block_out_channels[d] * (size_t)(h >> d) * (size_t)(w >> d);
    /* an upsampler at level d writes its own channels at level d-1's size */
    if (d > 0) n *= 4;
    if (n > best) best = n;
  }
  return best;
}

/* Mid block, then the up path; leaves the last up block's output in *outp. */
static sd_status mid_up_path(const sd__unet *u, sd__ctx *ctx, int B, const float *temb,
                             const float *text, int Lt, const sd__unet_residuals *res,
                             skip_stack *sk, float *pp[2], float **outp, sd_error *err) {
  const sd__unet_config *c = &u->cfg;
  const float *in = sk->x[sk->n - 1];
  int ch = sk->c[sk->n - 1], H = sk->h[sk->n - 1], W = sk->w[sk->n - 1];
  int cur = 0; /* index of the ping-pong buffer holding the running activation */
  sd_status st;
  if (check_cancel(ctx, err) != SD_OK) return err->status;
  st = sd__unet_resnet_forward(ctx, &u->mid_res[0], in, B, H, W, temb, u->temb_dim, pp[0], err);
  if (st == SD_OK && c->mid_has_attn) {
    st = sd__unet_xformer_forward(ctx, &u->mid_attn, pp[0], B, H, W, text, Lt, err);
    if (st == SD_OK)
      st = sd__unet_resnet_forward(ctx, &u->mid_res[1], pp[0], B, H, W, temb, u->temb_dim,
                                   pp[1], err);
    cur = 1;
  }
  if (st != SD_OK) return st;
  if (res && res->mid) sd__add_inplace(ctx, pp[cur], res->mid, (size_t)B * ch * H * W);
  for (int ui = 0; ui < c->levels; ui++) {
    const unet_level *lv = &u->up[ui];
    int co = c->block_out_channels[c->levels - 1 - ui];
    for (int j = 0; j < lv->nres; j++) {
      if (check_cancel(ctx, err) != SD_OK) return err->status;
      int s = --sk->n;
      if (sk->h[s] != H || sk->w[s] != W || ch + sk->c[s] != lv->res[j].cin)
        return sd__err(err, SD_ERR_INTERNAL, "unet: skip %d does not fit up block %d", s, ui);
      size_t hw = (size_t)H * W;
      if (res) sd__add_inplace(ctx, sk->x[s], res->down[s], (size_t)B * sk->c[s] * hw);
      float *cat = act(ctx, B, lv->res[j].cin, H, W, err);
      if (!cat) return err->status;
      sd__concat_channels(ctx, pp[cur], ch, sk->x[s], sk->c[s], B, (int)hw, cat);
      st = sd__unet_resnet_forward(ctx, &lv->res[j], cat, B, H, W, temb, u->temb_dim,
                                   pp[!cur], err);
      /* skip s is the top of the stack: release it with the concatenation above it */
      sd__arena_reset(ctx->arena, sk->mark[s]);
      if (st == SD_OK && c->up_has_attn[ui])
        st = sd__unet_xformer_forward(ctx, &lv->attn[j], pp[!cur], B, H, W, text, Lt, err);
      if (st != SD_OK) return st;
      cur = !cur;
      ch = co;
    }
    if (lv->resample_w) {
      sd__arena_mark m = sd__arena_get_mark(ctx->arena);
      float *up = act(ctx, B, ch, 2 * H, 2 * W, err);
      if (!up) return err->status;
      sd__upsample2x(ctx, pp[cur], B, ch, H, W, up);
      H *= 2;
      W *= 2;
      st = sd__conv2d(ctx, up, B, ch, H, W, lv->resample_w, lv->resample_b, ch, 3, 1, 1,
                      pp[!cur]);
      sd__arena_reset(ctx->arena, m);
      if (conv_status(st, "upsampler", err) != SD_OK) return st;
      cur = !cur;
    }
  }
  *outp = pp[cur];
  return SD_OK;
}

static int count_skips(const sd__unet_config *c) {
  return 1 + c->levels * c->layers_per_block + (c->levels - 1);
}

sd_status sd__unet_forward(const sd__unet *u, sd__ctx *ctx, const float *x, int B, int h, int w,
                           float t, const float *text, int Lt, const sd__unet_residuals *res,
                           float *eps, sd_error *err) {
  sd_error local = {0};
  if (!err) err = &local;
  const sd__unet_config *c = &u->cfg;
  const int f = 1 << (c->levels - 1), c0 = c->block_out_channels[0];
  if (B < 1 || B > 64 || h < 1 || w < 1 || h % f || w % f || Lt < 1 || Lt > 4096)
    return sd__err(err, SD_ERR_INVALID,
                   "unet: batch %d, latent %dx%d (multiples of %d), %d text tokens", B, w, h, f,
                   Lt);
  if ((size_t)h * (size_t)w > ((size_t)1 << 24) / (size_t)B)
    return sd__err(err, SD_ERR_LIMIT, "unet: latent %dx%d x batch %d is too large", w, h, B);
  if (!isfinite(t)) return sd__err(err, SD_ERR_INVALID, "unet: timestep is not finite");
  if (res && (res->count != count_skips(c) || !res->down))
    return sd__err(err, SD_ERR_INVALID, "unet: %d residuals given, %d skip connections",
                   res->count, count_skips(c));
  for (int i = 0; res && i < res->count; i++)
    if (!res->down[i]) return sd__err(err, SD_ERR_INVALID, "unet: residual %d is NULL", i);
  sd__arena_mark m0 = sd__arena_get_mark(ctx->arena);
  skip_stack *sk = NULL;
  float *pp[2], *out = NULL;
  sd_status st;
  float *temb = sd__arena_floats(ctx->arena, (size_t)B * u->temb_dim);
  sk = sd__arena_alloc(ctx->arena, sizeof *sk);
  if (!temb || !sk) {
    st = sd__err(err, SD_ERR_NOMEM, "unet: out of memory");
    goto out_reset;
  }
  size_t npp = pingpong_floats(c, B, h, w);
  pp[0] = sd__arena_floats(ctx->arena, npp);
  pp[1] = sd__arena_floats(ctx->arena, npp);
  if (!pp[0] || !pp[1]) {
    st = sd__err(err, SD_ERR_NOMEM, "unet: out of memory for activations");
    goto out_reset;
  }
  st = time_embed(u, ctx, t, B, temb, err);
  if (st == SD_OK) st = down_path(u, ctx, x, B, h, w, temb, text, Lt, sk, err);
  if (st != SD_OK) goto out_reset;
  st = mid_up_path(u, ctx, B, temb, text, Lt, res, sk, pp, &out, err);
  if (st != SD_OK) goto out_reset;
  /* conv_out(SiLU(conv_norm_out(h))), normalised in place in its ping-pong buffer */
  sd__group_norm(ctx, out, B, c0, h * w, c->norm_groups, c->norm_eps, u->norm_out_w,
                 u->norm_out_b, 1, out);
  st = sd__conv2d(ctx, out, B, c0, h, w, u->conv_out_w, u->conv_out_b, c->out_channels, 3, 1, 1,
                  eps);
  conv_status(st, "conv_out", err);
out_reset:
  sd__arena_reset(ctx->arena, m0);
  return st;
}
