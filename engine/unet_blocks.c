/* unet_blocks.c: ResnetBlock2D and Transformer2DModel as diffusers 0.27.2 computes them for
 * SD 1.x (see unet_blocks.h). Each forward takes its scratch from the job's arena and gives it
 * back before returning, so a caller sees only its own output buffers grow the arena. Attention
 * is the AttnProcessor path torch 1.13 takes: softmax(scale * q k^T) v with scale dh^-0.5.
 * Not here: the UNet wiring (unet.c), configs (unet_config.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "unet_blocks.h"

/* Transformer2DModel hard-codes its GroupNorm eps; BasicTransformerBlock's LayerNorms keep
 * the default norm_eps (the UNet's norm_eps is not passed down). */
#define XF_GROUPNORM_EPS 1e-6f
#define XF_LAYERNORM_EPS 1e-5f
/* Feed-forward rows per chunk: large enough for efficient GEMMs, small enough that the
 * [rows, 12C] hidden scratch stays near the size of one activation at SD 1.5's 512x512. */
#ifndef XF_FF_CHUNK_ROWS
#define XF_FF_CHUNK_ROWS 2048
#endif

/* ---- loading ---- */

static const float *get1(sd__wsrc *src, sd_error *err, const char *pre, const char *name,
                         int64_t d0) {
  int64_t shape[1] = {d0};
  return sd__wsrc_getf(src, err, 1, shape, "%s.%s", pre, name);
}

static const float *get2(sd__wsrc *src, sd_error *err, const char *pre, const char *name,
                         int64_t d0, int64_t d1) {
  int64_t shape[2] = {d0, d1};
  return sd__wsrc_getf(src, err, 2, shape, "%s.%s", pre, name);
}

static const float *get4(sd__wsrc *src, sd_error *err, const char *pre, const char *name,
                         int64_t d0, int64_t d1, int64_t k) {
  int64_t shape[4] = {d0, d1, k, k};
  return sd__wsrc_getf(src, err, 4, shape, "%s.%s", pre, name);
}

sd_status sd__unet_resnet_load(sd__wsrc *src, const char *p, int cin, int cout, int temb_dim,
                               int groups, float eps, sd__unet_resnet *r, sd_error *err) {
  r->cin = cin;
  r->cout = cout;
  r->groups = groups;
  r->eps = eps;
  r->norm1_w = get1(src, err, p, "norm1.weight", cin);
  r->norm1_b = get1(src, err, p, "norm1.bias", cin);
  r->conv1_w = get4(src, err, p, "conv1.weight", cout, cin, 3);
  r->conv1_b = get1(src, err, p, "conv1.bias", cout);
  r->temb_w = get2(src, err, p, "time_emb_proj.weight", cout, temb_dim);
  r->temb_b = get1(src, err, p, "time_emb_proj.bias", cout);
  r->norm2_w = get1(src, err, p, "norm2.weight", cout);
  r->norm2_b = get1(src, err, p, "norm2.bias", cout);
  r->conv2_w = get4(src, err, p, "conv2.weight", cout, cout, 3);
  r->conv2_b = get1(src, err, p, "conv2.bias", cout);
  r->short_w = r->short_b = NULL;
  if (cin != cout) {
    r->short_w = get4(src, err, p, "conv_shortcut.weight", cout, cin, 1);
    r->short_b = get1(src, err, p, "conv_shortcut.bias", cout);
  }
  return err->status;
}

static void tblock_load(sd__wsrc *src, const char *p, int c, int d, sd__unet_tblock *b,
                        sd_error *err) {
  b->norm1_w = get1(src, err, p, "norm1.weight", c);
  b->norm1_b = get1(src, err, p, "norm1.bias", c);
  b->norm2_w = get1(src, err, p, "norm2.weight", c);
  b->norm2_b = get1(src, err, p, "norm2.bias", c);
  b->norm3_w = get1(src, err, p, "norm3.weight", c);
  b->norm3_b = get1(src, err, p, "norm3.bias", c);
  b->q1 = get2(src, err, p, "attn1.to_q.weight", c, c);
  b->k1 = get2(src, err, p, "attn1.to_k.weight", c, c);
  b->v1 = get2(src, err, p, "attn1.to_v.weight", c, c);
  b->o1_w = get2(src, err, p, "attn1.to_out.0.weight", c, c);
  b->o1_b = get1(src, err, p, "attn1.to_out.0.bias", c);
  b->q2 = get2(src, err, p, "attn2.to_q.weight", c, c);
  b->k2 = get2(src, err, p, "attn2.to_k.weight", c, d);
  b->v2 = get2(src, err, p, "attn2.to_v.weight", c, d);
  b->o2_w = get2(src, err, p, "attn2.to_out.0.weight", c, c);
  b->o2_b = get1(src, err, p, "attn2.to_out.0.bias", c);
  b->ff1_w = get2(src, err, p, "ff.net.0.proj.weight", 8 * (int64_t)c, c);
  b->ff1_b = get1(src, err, p, "ff.net.0.proj.bias", 8 * (int64_t)c);
  b->ff2_w = get2(src, err, p, "ff.net.2.weight", c, 4 * (int64_t)c);
  b->ff2_b = get1(src, err, p, "ff.net.2.bias", c);
}

sd_status sd__unet_xformer_load(sd__wsrc *src, const char *p, int c, int heads, int nblocks,
                                int cross_dim, int groups, sd__unet_xformer *t, sd_error *err) {
  t->c = c;
  t->heads = heads;
  t->head_dim = heads > 0 ? c / heads : 0;
  t->groups = groups;
  t->cross_dim = cross_dim;
  t->nblocks = 0;
  t->blocks = NULL;
  if (heads <= 0 || c % heads != 0 || nblocks <= 0)
    return sd__err(err, SD_ERR_UNSUPPORTED, "%s: %d channels, %d heads, %d blocks", p, c, heads,
                   nblocks);
  t->norm_w = get1(src, err, p, "norm.weight", c);
  t->norm_b = get1(src, err, p, "norm.bias", c);
  /* [C, C, 1, 1] conv weights are accepted as [C, C] by the weight source. */
  t->proj_in_w = get2(src, err, p, "proj_in.weight", c, c);
  t->proj_in_b = get1(src, err, p, "proj_in.bias", c);
  t->proj_out_w = get2(src, err, p, "proj_out.weight", c, c);
  t->proj_out_b = get1(src, err, p, "proj_out.bias", c);
  if (err->status != SD_OK) return err->status;
  t->blocks = calloc((size_t)nblocks, sizeof *t->blocks);
  if (!t->blocks) return sd__err(err, SD_ERR_NOMEM, "%s: out of memory", p);
  t->nblocks = nblocks;
  char name[256];
  for (int k = 0; k < nblocks && err->status == SD_OK; k++) {
    snprintf(name, sizeof name, "%s.transformer_blocks.%d", p, k);
    tblock_load(src, name, c, cross_dim, &t->blocks[k], err);
  }
  return err->status;
}

void sd__unet_xformer_free(sd__unet_xformer *t) {
  if (!t) return;
  free(t->blocks);
  t->blocks = NULL;
  t->nblocks = 0;
}

/* ---- forward ---- */

static float *scratch(sd__ctx *ctx, size_t a, size_t b, size_t c, sd_error *err) {
  size_t n;
  float *p = NULL;
  if (!sd__mul_size(a, b, &n) && !sd__mul_size(n, c, &n)) p = sd__arena_floats(ctx->arena, n);
  if (!p) sd__err(err, SD_ERR_NOMEM, "unet: out of memory for activations (%zu x %zu x %zu)", a,
                  b, c);
  return p;
}

static sd_status op_failed(sd_status st, const char *what, sd_error *err) {
  return sd__err(err, st, "unet: %s failed (%s)", what, sd_status_str(st));
}

sd_status sd__unet_resnet_forward(sd__ctx *ctx, const sd__unet_resnet *r, const float *x, int B,
                                  int H, int W, const float *temb_act, int temb_dim, float *out,
                                  sd_error *err) {
  const int HW = H * W, ci = r->cin, co = r->cout;
  sd__arena_mark m = sd__arena_get_mark(ctx->arena);
  sd_status st = SD_OK;
  float *t = scratch(ctx, (size_t)B, (size_t)ci, (size_t)HW, err);
  float *h = scratch(ctx, (size_t)B, (size_t)co, (size_t)HW, err);
  float *tb = scratch(ctx, (size_t)B, (size_t)co, 1, err);
  if (!t || !h || !tb) {
    st = err->status;
    goto out_reset;
  }
  /* h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb)) */
  sd__group_norm(ctx, x, B, ci, HW, r->groups, r->eps, r->norm1_w, r->norm1_b, 1, t);
  st = sd__conv2d(ctx, t, B, ci, H, W, r->conv1_w, r->conv1_b, co, 3, 1, 1, h);
  if (st != SD_OK) goto out_op;
  st = sd__linear(ctx, temb_act, B, temb_dim, r->temb_w, r->temb_b, co, tb);
  if (st != SD_OK) goto out_op;
  sd__add_channel_bias(ctx, h, tb, B, co, HW);
  /* out = conv2(silu(norm2(h))) (dropout is the identity at inference) */
  sd__group_norm(ctx, h, B, co, HW, r->groups, r->eps, r->norm2_w, r->norm2_b, 1, h);
  st = sd__conv2d(ctx, h, B, co, H, W, r->conv2_w, r->conv2_b, co, 3, 1, 1, out);
  if (st != SD_OK) goto out_op;
  /* out = shortcut(x) + out; h is free again and holds the 1x1 shortcut. */
  if (r->short_w) {
    st = sd__conv2d(ctx, x, B, ci, H, W, r->short_w, r->short_b, co, 1, 1, 0, h);
    if (st != SD_OK) goto out_op;
    sd__add_inplace(ctx, out, h, (size_t)B * co * HW);
  } else {
    sd__add_inplace(ctx, out, x, (size_t)B * co * HW);
  }
  goto out_reset;
out_op:
  op_failed(st, "resnet convolution", err);
out_reset:
  sd__arena_reset(ctx->arena, m);
  return st;
}

/* One attention: out[B*Lq, C] = to_out(attn(q = nrm Wq^T, k = kv_in Wk^T, v = kv_in Wv^T)).
 * kv_in is [B, Lk, kv_dim]: the normalised tokens (self) or the text (cross). q, k, v, a are
 * caller scratch of B*Lq*C, B*Lk*C, B*Lk*C, B*Lq*C floats. */
static sd_status attend(sd__ctx *ctx, const sd__unet_xformer *t, const float *nrm, int B, int Lq,
                        const float *kv_in, int Lk, int kv_dim, const float *wq,
                        const float *wk, const float *wv, const float *wo, const float *bo,
                        float *q, float *k, float *v, float *a, float *out) {
  const int C = t->c;
  /* torch: attn.scale = dim_head ** -0.5 (a Python double), used as baddbmm's alpha. */
  const float scale = (float)pow((double)t->head_dim, -0.5);
  sd_status st = sd__linear(ctx, nrm, B * Lq, C, wq, NULL, C, q);
  if (st == SD_OK) st = sd__linear(ctx, kv_in, B * Lk, kv_dim, wk, NULL, C, k);
  if (st == SD_OK) st = sd__linear(ctx, kv_in, B * Lk, kv_dim, wv, NULL, C, v);
  if (st == SD_OK)
    st = sd__attention(ctx, q, C, k, C, v, C, B, t->heads, Lq, Lk, t->head_dim, scale, 0, a);
  if (st == SD_OK) st = sd__linear(ctx, a, B * Lq, C, wo, bo, C, out);
  return st;
}

/* tok[B*L, C] += attn1, attn2, ff of one BasicTransformerBlock (pre-LayerNorm residuals). */
static sd_status tblock_forward(sd__ctx *ctx, const sd__unet_xformer *t,
                                const sd__unet_tblock *b, float *tok, int B, int L,
                                const float *text, int Lt, sd_error *err) {
  const int C = t->c;
  const size_t rows = (size_t)B * L, n = rows * C;
  const int Lk = L > Lt ? L : Lt;
  sd__arena_mark m = sd__arena_get_mark(ctx->arena);
  sd_status st = SD_OK;
  float *nrm = scratch(ctx, rows, (size_t)C, 1, err);
  float *q = scratch(ctx, rows, (size_t)C, 1, err);
  float *k = scratch(ctx, (size_t)B * Lk, (size_t)C, 1, err);
  float *v = scratch(ctx, (size_t)B * Lk, (size_t)C, 1, err);
  float *a = scratch(ctx, rows, (size_t)C, 1, err);
  float *o = scratch(ctx, rows, (size_t)C, 1, err);
  if (!nrm || !q || !k || !v || !a || !o) {
    st = err->status;
    goto out_reset;
  }
  /* self-attention */
  sd__layer_norm(ctx, tok, (int)rows, C, XF_LAYERNORM_EPS, b->norm1_w, b->norm1_b, nrm);
  st = attend(ctx, t, nrm, B, L, nrm, L, C, b->q1, b->k1, b->v1, b->o1_w, b->o1_b, q, k, v, a, o);
  if (st != SD_OK) goto out_op;
  sd__add_inplace(ctx, tok, o, n);
  /* cross-attention over this item's text rows */
  sd__layer_norm(ctx, tok, (int)rows, C, XF_LAYERNORM_EPS, b->norm2_w, b->norm2_b, nrm);
  st = attend(ctx, t, nrm, B, L, text, Lt, t->cross_dim, b->q2, b->k2, b->v2, b->o2_w, b->o2_b,
              q, k, v, a, o);
  if (st != SD_OK) goto out_op;
  sd__add_inplace(ctx, tok, o, n);
  /* GEGLU feed-forward: [rows, 8C] -> [rows, 4C] -> [rows, C] */
  sd__layer_norm(ctx, tok, (int)rows, C, XF_LAYERNORM_EPS, b->norm3_w, b->norm3_b, nrm);
  {
    /* Rows are independent: run the 12x-wide hidden layer in row chunks to bound its scratch */
    const size_t chunk = rows < XF_FF_CHUNK_ROWS ? rows : XF_FF_CHUNK_ROWS;
    float *ffh = scratch(ctx, chunk, (size_t)C, 8, err);
    float *ffg = scratch(ctx, chunk, (size_t)C, 4, err);
    if (!ffh || !ffg) {
      st = err->status;
      goto out_reset;
    }
    for (size_t r0 = 0; r0 < rows; r0 += chunk) {
      int nr = (int)(rows - r0 < chunk ? rows - r0 : chunk);
      st = sd__linear(ctx, nrm + r0 * C, nr, C, b->ff1_w, b->ff1_b, 8 * C, ffh);
      if (st != SD_OK) goto out_op;
      sd__geglu(ctx, ffh, nr, 4 * C, ffg);
      st = sd__linear(ctx, ffg, nr, 4 * C, b->ff2_w, b->ff2_b, C, o + r0 * C);
      if (st != SD_OK) goto out_op;
    }
    sd__add_inplace(ctx, tok, o, n);
  }
  goto out_reset;
out_op:
  op_failed(st, "transformer block", err);
out_reset:
  sd__arena_reset(ctx->arena, m);
  return st;
}

sd_status sd__unet_xformer_forward(sd__ctx *ctx, const sd__unet_xformer *t, float *x, int B,
                                   int H, int W, const float *text, int Lt, sd_error *err) {
  const int C = t->c, L = H * W;
  const size_t n = (size_t)B * C * L;
  sd__arena_mark m = sd__arena_get_mark(ctx->arena);
  sd_status st = SD_OK;
  float *a = scratch(ctx, (size_t)B, (size_t)C, (size_t)L, err);
  float *tok = scratch(ctx, (size_t)B, (size_t)C, (size_t)L, err);
  if (!a || !tok) {
    st = err->status;
    goto out_reset;
  }
  /* tokens [B*L, C] = proj_in(permute(norm(x))) */
  sd__group_norm(ctx, x, B, C, L, t->groups, XF_GROUPNORM_EPS, t->norm_w, t->norm_b, 0, tok);
  sd__nchw_to_nhwc(ctx, tok, B, C, L, a);
  st = sd__linear(ctx, a, B * L, C, t->proj_in_w, t->proj_in_b, C, tok);
  if (st != SD_OK) goto out_op;
  for (int k = 0; k < t->nblocks; k++) {
    if (sd__ctx_cancelled(ctx)) {
      st = sd__err(err, SD_ERR_CANCELLED, "cancelled");
      goto out_reset;
    }
    st = tblock_forward(ctx, t, &t->blocks[k], tok, B, L, text, Lt, err);
    if (st != SD_OK) goto out_reset;
  }
  /* x = permute_back(proj_out(tokens)) + x */
  st = sd__linear(ctx, tok, B * L, C, t->proj_out_w, t->proj_out_b, C, a);
  if (st != SD_OK) goto out_op;
  sd__nhwc_to_nchw(ctx, a, B, C, L, tok);
  sd__add_inplace(ctx, x, tok, n);
  goto out_reset;
out_op:
  op_failed(st, "transformer projection", err);
out_reset:
  sd__arena_reset(ctx->arena, m);
  return st;
}
