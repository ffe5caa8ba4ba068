/* controlnet.c: diffusers' ControlNetModel (0.27.2): loading and the forward pass.
 *
 * A ControlNet is the UNet's encoder (conv_in, down blocks, mid block) plus a hint encoder
 * (ControlNetConditioningEmbedding: conv_in, pairs of 3x3 convs the second of which halves
 * the size, conv_out) whose output is added to conv_in's, and a 1x1 zero convolution per skip
 * tensor and for the mid output. The blocks are the UNet's own code (unet_blocks.h). The
 * architecture comes from config.json (folders) or tensor shapes (single files, whose
 * original names go through compvis.c's translator). The hint is computed once per request by
 * the pipeline; each evaluation adds scale * zero_conv(...) into shared accumulators, which is
 * how diffusers' MultiControlNetModel sums several nets. Not here: configs
 * (controlnet_config.c), when a net runs (pipeline.c).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compvis.h"
#include "controlnet.h"
#include "unet_blocks.h"

#define CN_CONFIG_MAX_BYTES (1u << 20)
#define CN_MAX_RES SD__UNET_MAX_LAYERS

typedef struct cn_level {
  int nres;
  sd__unet_resnet res[CN_MAX_RES];
  sd__unet_xformer attn[CN_MAX_RES];
  const float *down_w, *down_b; /* downsamplers.0.conv, NULL at the last level */
} cn_level;

struct sd_controlnet {
  char *name;
  sd__controlnet_config cfg;
  sd__wsrc *src;
  sd__cv_unet_map cv; /* translator state for original-named files */
  int temb_dim, nskips;
  const float *time1_w, *time1_b, *time2_w, *time2_b;
  const float *conv_in_w, *conv_in_b;
  const float *hint_in_w, *hint_in_b, *hint_out_w, *hint_out_b;
  const float *hint_w[2 * SD__CN_MAX_EMB], *hint_b[2 * SD__CN_MAX_EMB];
  cn_level down[SD_UNET_MAX_LEVELS];
  int mid_nres;
  sd__unet_resnet mid_res[2];
  sd__unet_xformer mid_attn;
  const float *zero_w[SD__CN_MAX_SKIPS], *zero_b[SD__CN_MAX_SKIPS];
  const float *mid_zero_w, *mid_zero_b;
};

void sd_control_unit_init(sd_control_unit *u) {
  memset(u, 0, sizeof *u);
  u->scale = 1.0f;
  u->start = 0.0f;
  u->end = 1.0f;
}

const sd__controlnet_config *sd__controlnet_get_config(const sd_controlnet *cn) {
  return &cn->cfg;
}
const char *sd__controlnet_name(const sd_controlnet *cn) { return cn->name; }
int sd__controlnet_hint_scale(const sd_controlnet *cn) { return 1 << (cn->cfg.nemb - 1); }

sd_status sd__controlnet_check_base(const sd_controlnet *cn, const sd__unet_config *b,
                                    sd_error *err) {
  const sd__unet_config *c = &cn->cfg.unet;
  const char *nm = cn->name;
  if (c->cross_attention_dim != b->cross_attention_dim)
    return sd__err(err, SD_ERR_INVALID,
                   "controlnet %s does not fit this model: cross-attention dim %d, the model's "
                   "text is %d wide", nm, c->cross_attention_dim, b->cross_attention_dim);
  if (c->in_channels != b->in_channels)
    return sd__err(err, SD_ERR_INVALID,
                   "controlnet %s does not fit this model: %d input channels, the UNet has %d",
                   nm, c->in_channels, b->in_channels);
  if (c->levels != b->levels || c->layers_per_block != b->layers_per_block)
    return sd__err(err, SD_ERR_INVALID,
                   "controlnet %s does not fit this model: %d levels x %d layers, the UNet has "
                   "%d x %d", nm, c->levels, c->layers_per_block, b->levels,
                   b->layers_per_block);
  for (int i = 0; i < c->levels; i++)
    if (c->block_out_channels[i] != b->block_out_channels[i])
      return sd__err(err, SD_ERR_INVALID,
                     "controlnet %s does not fit this model: level %d has %d channels, the "
                     "UNet's %d", nm, i, c->block_out_channels[i], b->block_out_channels[i]);
  return SD_OK;
}

/* ---- loading ---- */

static const float *cn_get(sd__wsrc *src, sd_error *err, int64_t d0, int64_t d1, int64_t k,
                         const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static const float *cn_get(sd__wsrc *src, sd_error *err, int64_t d0, int64_t d1, int64_t k,
                         const char *fmt, ...) {
  if (err->status != SD_OK) return NULL;
  char name[192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  int64_t shape[4] = {d0, d1, k, k};
  return sd__wsrc_get(src, name, d1 < 0 ? 1 : 4, shape, err);
}

static void bind_hint(sd_controlnet *cn, sd_error *err) {
  const sd__controlnet_config *c = &cn->cfg;
  sd__wsrc *s = cn->src;
  const int *e = c->emb_channels;
  const char *p = "controlnet_cond_embedding";
  cn->hint_in_w = cn_get(s, err, e[0], c->cond_channels, 3, "%s.conv_in.weight", p);
  cn->hint_in_b = cn_get(s, err, e[0], -1, -1, "%s.conv_in.bias", p);
  for (int k = 0; k < 2 * (c->nemb - 1); k++) {
    int ci = e[k / 2], co = k % 2 ? e[k / 2 + 1] : e[k / 2];
    cn->hint_w[k] = cn_get(s, err, co, ci, 3, "%s.blocks.%d.weight", p, k);
    cn->hint_b[k] = cn_get(s, err, co, -1, -1, "%s.blocks.%d.bias", p, k);
  }
  int c0 = c->unet.block_out_channels[0];
  cn->hint_out_w = cn_get(s, err, c0, e[c->nemb - 1], 3, "%s.conv_out.weight", p);
  cn->hint_out_b = cn_get(s, err, c0, -1, -1, "%s.conv_out.bias", p);
}

static void bind_encoder(sd_controlnet *cn, sd_error *err) {
  const sd__unet_config *c = &cn->cfg.unet;
  sd__wsrc *s = cn->src;
  char name[96];
  int c0 = c->block_out_channels[0], ch = c0, z = 0;
  cn->temb_dim = 4 * c0;
  cn->time1_b = cn_get(s, err, cn->temb_dim, -1, -1, "time_embedding.linear_1.bias");
  cn->time2_b = cn_get(s, err, cn->temb_dim, -1, -1, "time_embedding.linear_2.bias");
  /* the linear weights are 2-d (getw asks 1-d or 4-d) */
  if (err->status == SD_OK) {
    int64_t s1[2] = {cn->temb_dim, c0}, s2[2] = {cn->temb_dim, cn->temb_dim};
    cn->time1_w = sd__wsrc_get(s, "time_embedding.linear_1.weight", 2, s1, err);
    cn->time2_w = sd__wsrc_get(s, "time_embedding.linear_2.weight", 2, s2, err);
  }
  cn->conv_in_w = cn_get(s, err, c0, c->in_channels, 3, "conv_in.weight");
  cn->conv_in_b = cn_get(s, err, c0, -1, -1, "conv_in.bias");
  cn->zero_w[z] = cn_get(s, err, c0, c0, 1, "controlnet_down_blocks.%d.weight", z);
  cn->zero_b[z] = cn_get(s, err, c0, -1, -1, "controlnet_down_blocks.%d.bias", z);
  z++;
  for (int i = 0; i < c->levels && err->status == SD_OK; i++) {
    cn_level *lv = &cn->down[i];
    int co = c->block_out_channels[i];
    lv->nres = c->layers_per_block;
    for (int j = 0; j < lv->nres && err->status == SD_OK; j++) {
      snprintf(name, sizeof name, "down_blocks.%d.resnets.%d", i, j);
      sd__unet_resnet_load(s, name, j == 0 ? ch : co, co, cn->temb_dim, c->norm_groups,
                           c->norm_eps, &lv->res[j], err);
      if (c->down_has_attn[i] && err->status == SD_OK) {
        snprintf(name, sizeof name, "down_blocks.%d.attentions.%d", i, j);
        sd__unet_xformer_load(s, name, co, c->heads[i], c->transformer_layers,
                              c->cross_attention_dim, c->norm_groups, &lv->attn[j], err);
      }
      cn->zero_w[z] = cn_get(s, err, co, co, 1, "controlnet_down_blocks.%d.weight", z);
      cn->zero_b[z] = cn_get(s, err, co, -1, -1, "controlnet_down_blocks.%d.bias", z);
      z++;
    }
    if (i < c->levels - 1) {
      lv->down_w = cn_get(s, err, co, co, 3, "down_blocks.%d.downsamplers.0.conv.weight", i);
      lv->down_b = cn_get(s, err, co, -1, -1, "down_blocks.%d.downsamplers.0.conv.bias", i);
      cn->zero_w[z] = cn_get(s, err, co, co, 1, "controlnet_down_blocks.%d.weight", z);
      cn->zero_b[z] = cn_get(s, err, co, -1, -1, "controlnet_down_blocks.%d.bias", z);
      z++;
    }
    ch = co;
  }
  cn->nskips = z;
  cn->mid_nres = c->mid_has_attn ? 2 : 1;
  for (int j = 0; j < cn->mid_nres && err->status == SD_OK; j++) {
    snprintf(name, sizeof name, "mid_block.resnets.%d", j);
    sd__unet_resnet_load(s, name, ch, ch, cn->temb_dim, c->norm_groups, c->norm_eps,
                         &cn->mid_res[j], err);
  }
  if (c->mid_has_attn && err->status == SD_OK)
    sd__unet_xformer_load(s, "mid_block.attentions.0", ch, c->heads[c->levels - 1],
                          c->transformer_layers, c->cross_attention_dim, c->norm_groups,
                          &cn->mid_attn, err);
  cn->mid_zero_w = cn_get(s, err, ch, ch, 1, "controlnet_mid_block.weight");
  cn->mid_zero_b = cn_get(s, err, ch, -1, -1, "controlnet_mid_block.bias");
}

void sd_controlnet_destroy(sd_controlnet *cn) {
  if (!cn) return;
  for (int i = 0; i < SD_UNET_MAX_LEVELS; i++)
    for (int j = 0; j < CN_MAX_RES; j++) sd__unet_xformer_free(&cn->down[i].attn[j]);
  sd__unet_xformer_free(&cn->mid_attn);
  sd__wsrc_destroy(cn->src);
  free(cn->name);
  free(cn);
}

static char *base_name(const char *path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  size_t b = n;
  while (b > 0 && path[b - 1] != '/') b--;
  return strndup(path + b, n - b);
}

/* A diffusers folder: config.json + the weights (fp32 name first, then the fp16 variant). */
static sd_status open_folder(sd_controlnet *cn, const char *dir, sd_error *err) {
  static const char *const names[] = {"diffusion_pytorch_model.safetensors",
                                      "diffusion_pytorch_model.fp16.safetensors"};
  sd_status st;
  char *text = NULL, *wpath = NULL;
  size_t len;
  sd_json *j = NULL;
  sd_safetensors *f = NULL;
  char *cpath = sd__path_join(dir, "config.json");
  if (!cpath) return sd__err(err, SD_ERR_NOMEM, "out of memory");
  if (!sd__is_file(cpath)) {
    st = sd__err(err, SD_ERR_MISSING, "%s: not a ControlNet folder (no config.json)", dir);
    goto out_free;
  }
  if ((st = sd__read_file(cpath, CN_CONFIG_MAX_BYTES, &text, &len, err)) != SD_OK ||
      (st = sd__json_parse(text, len, &j, err)) != SD_OK ||
      (st = sd__controlnet_config_from_json(j, &cn->cfg, err)) != SD_OK)
    goto out_free;
  for (size_t i = 0; i < sizeof names / sizeof *names && !f; i++) {
    free(wpath);
    if (!(wpath = sd__path_join(dir, names[i]))) {
      st = sd__err(err, SD_ERR_NOMEM, "out of memory");
      goto out_free;
    }
    if (sd__is_file(wpath) && (st = sd__st_open(wpath, &f, err)) != SD_OK) goto out_free;
  }
  if (!f) {
    st = sd__err(err, SD_ERR_MISSING, "%s: no %s", dir, names[0]);
    goto out_free;
  }
  st = sd__wsrc_create(f, 1, "", NULL, NULL, &cn->src, err);
  if (st != SD_OK) sd__st_close(f);
out_free:
  if (st != SD_OK && !strstr(err->msg, dir)) {
    sd_error e2 = {0};
    sd__err(&e2, st, "%s: %s", cpath, err->msg);
    *err = e2;
  }
  sd__json_free(j);
  free(text);
  free(cpath);
  free(wpath);
  return st;
}

/* A single file: diffusers names, or the original ones under "control_model." or bare. */
static sd_status open_file(sd_controlnet *cn, const char *path, sd_error *err) {
  sd_safetensors *f;
  sd_status st = sd__st_open(path, &f, err);
  if (st != SD_OK) return st;
  const char *prefix = "";
  sd__wname_fn fn = NULL;
  if (!sd__st_find(f, "controlnet_cond_embedding.conv_in.weight")) {
    if (sd__cv_has_prefix(f, SD_CV_CONTROL_PREFIX "input_hint_block.")) prefix = SD_CV_CONTROL_PREFIX;
    else if (!sd__cv_has_prefix(f, "input_hint_block.")) {
      sd__st_close(f);
      return sd__err(err, SD_ERR_FORMAT, "%s: not a ControlNet (no hint encoder tensors)", path);
    }
    if ((st = sd__cv_unet_map_init(f, prefix, &cn->cv, err)) != SD_OK) {
      sd__st_close(f);
      return st;
    }
    fn = sd__cv_unet_name;
  }
  st = sd__wsrc_create(f, 1, prefix, fn, fn ? &cn->cv : NULL, &cn->src, err);
  if (st != SD_OK) {
    sd__st_close(f);
    return st;
  }
  return sd__controlnet_config_infer(cn->src, &cn->cfg, err);
}

sd_status sd_controlnet_load(const char *path, const sd_load_options *opt, sd_controlnet **out,
                             char *errbuf) {
  sd_error err = {0};
  sd_status st;
  *out = NULL;
  sd_controlnet *cn = calloc(1, sizeof *cn);
  if (!cn || !path || !(cn->name = base_name(path))) {
    st = sd__err(&err, path ? SD_ERR_NOMEM : SD_ERR_INVALID, "controlnet: %s",
                 path ? "out of memory" : "no path");
    goto out_destroy;
  }
  st = sd__is_dir(path) ? open_folder(cn, path, &err) : open_file(cn, path, &err);
  if (st != SD_OK) goto out_destroy;
  sd__wsrc_set_label(cn->src, "controlnet");
  if (opt) sd__wsrc_set_threads(cn->src, opt->threads);
  bind_hint(cn, &err);
  bind_encoder(cn, &err);
  if ((st = err.status) != SD_OK) goto out_destroy;
  if (opt && opt->log) {
    char msg[256];
    snprintf(msg, sizeof msg, "controlnet %s: %d levels, hint encoder %d levels", cn->name,
             cn->cfg.unet.levels, cn->cfg.nemb);
    opt->log(opt->log_user, SD_LOG_INFO, msg);
  }
  *out = cn;
  sd__err_export(&err, errbuf);
  return SD_OK;
out_destroy:
  if (!strstr(err.msg, path ? path : "")) {
    sd_error e2 = {0};
    sd__err(&e2, st, "%s: %s", path ? path : "(null)", err.msg);
    err = e2;
  }
  sd__err_export(&err, errbuf);
  sd_controlnet_destroy(cn);
  return st;
}

/* ---- residual accumulators ---- */

sd_status sd__cn_residuals_init(sd__cn_residuals *r, const sd__unet_config *c, int B, int h,
                                int w, sd_error *err) {
  memset(r, 0, sizeof *r);
  int H = h, W = w, k = 0;
  r->B = B;
  r->c[k] = c->block_out_channels[0], r->hh[k] = H, r->ww[k] = W, k++;
  for (int i = 0; i < c->levels; i++) {
    for (int j = 0; j < c->layers_per_block; j++)
      r->c[k] = c->block_out_channels[i], r->hh[k] = H, r->ww[k] = W, k++;
    if (i < c->levels - 1) {
      H /= 2, W /= 2;
      r->c[k] = c->block_out_channels[i], r->hh[k] = H, r->ww[k] = W, k++;
    }
  }
  r->count = k;
  r->mid_c = c->block_out_channels[c->levels - 1], r->mid_h = H, r->mid_w = W;
  size_t total = (size_t)r->mid_c * H * W;
  for (int i = 0; i < k; i++) total += (size_t)r->c[i] * r->hh[i] * r->ww[i];
  total *= (size_t)B;
  r->buf = calloc(total, sizeof(float));
  if (!r->buf) return sd__err(err, SD_ERR_NOMEM, "out of memory for ControlNet residuals");
  r->floats = total;
  float *p = r->buf;
  for (int i = 0; i < k; i++) {
    r->down[i] = p;
    p += (size_t)B * r->c[i] * r->hh[i] * r->ww[i];
  }
  r->mid = p;
  return SD_OK;
}

void sd__cn_residuals_free(sd__cn_residuals *r) {
  free(r->buf);
  memset(r, 0, sizeof *r);
}

void sd__cn_residuals_zero(sd__cn_residuals *r) {
  memset(r->buf, 0, r->floats * sizeof(float));
}

void sd__cn_residuals_view(const sd__cn_residuals *r, const float **down,
                           sd__unet_residuals *view) {
  for (int i = 0; i < r->count; i++) down[i] = r->down[i];
  view->count = r->count;
  view->down = down;
  view->mid = r->mid;
}

/* ---- forward ---- */

static float *act(sd__ctx *ctx, size_t n, sd_error *err) {
  float *p = sd__arena_floats(ctx->arena, n);
  if (!p) sd__err(err, SD_ERR_NOMEM, "controlnet: out of memory for activations");
  return p;
}

static sd_status op_status(sd_status st, const char *what, sd_error *err) {
  if (st != SD_OK) sd__err(err, st, "controlnet: %s failed (%s)", what, sd_status_str(st));
  return st;
}

sd_status sd__controlnet_hint(const sd_controlnet *cn, sd__ctx *ctx, const float *cond, int H,
                              int W, float *hint, sd_error *err) {
  const sd__controlnet_config *c = &cn->cfg;
  const int f = sd__controlnet_hint_scale(cn), nc = c->cond_channels;
  if (H < f || W < f || H % f || W % f)
    return sd__err(err, SD_ERR_INVALID, "controlnet: hint %dx%d is not a multiple of %d", W, H,
                   f);
  sd__arena_mark m = sd__arena_get_mark(ctx->arena);
  sd_status st = SD_OK;
  size_t hw = (size_t)H * W, most = (size_t)nc;
  for (int i = 0; i < c->nemb; i++)
    if ((size_t)c->emb_channels[i] > most) most = (size_t)c->emb_channels[i];
  float *a = act(ctx, most * hw, err), *b = act(ctx, most * hw, err);
  if (!a || !b) {
    st = err->status;
    goto out_reset;
  }
  /* a "bgr" net sees the channels reversed (torch.flip(cond, dims=[1])) */
  for (int ch = 0; ch < nc; ch++)
    memcpy(a + (size_t)ch * hw, cond + (size_t)(c->bgr ? nc - 1 - ch : ch) * hw,
           hw * sizeof(float));
  int ci = nc, h = H, w = W;
  st = sd__conv2d(ctx, a, 1, ci, h, w, cn->hint_in_w, cn->hint_in_b, c->emb_channels[0], 3, 1,
                  1, b);
  if (op_status(st, "hint conv_in", err) != SD_OK) goto out_reset;
  ci = c->emb_channels[0];
  sd__silu(ctx, b, (size_t)ci * h * w);
  for (int k = 0; k < 2 * (c->nemb - 1); k++) {
    int co = k % 2 ? c->emb_channels[k / 2 + 1] : c->emb_channels[k / 2], s = k % 2 ? 2 : 1;
    st = sd__conv2d(ctx, b, 1, ci, h, w, cn->hint_w[k], cn->hint_b[k], co, 3, s, 1, a);
    if (op_status(st, "hint block", err) != SD_OK) goto out_reset;
    h = (h - 1) / s + 1, w = (w - 1) / s + 1, ci = co;
    sd__silu(ctx, a, (size_t)ci * h * w);
    float *t = a;
    a = b, b = t;
  }
  st = sd__conv2d(ctx, b, 1, ci, h, w, cn->hint_out_w, cn->hint_out_b,
                  c->unet.block_out_channels[0], 3, 1, 1, hint);
  op_status(st, "hint conv_out", err);
out_reset:
  sd__arena_reset(ctx->arena, m);
  return st;
}

/* r_k += scale * zero_conv_k(x[B, C, H, W]) */
static sd_status add_zero(sd__ctx *ctx, const float *x, int B, int C, int H, int W,
                          const float *zw, const float *zb, float scale, float *acc,
                          sd_error *err) {
  sd__arena_mark m = sd__arena_get_mark(ctx->arena);
  size_t n = (size_t)B * C * H * W;
  float *t = act(ctx, n, err);
  sd_status st = t ? sd__conv2d(ctx, x, B, C, H, W, zw, zb, C, 1, 1, 0, t) : err->status;
  if (t && op_status(st, "zero convolution", err) == SD_OK) {
    sd__scale_inplace(ctx, t, scale, n);
    sd__add_inplace(ctx, acc, t, n);
  }
  sd__arena_reset(ctx->arena, m);
  return st;
}

/* temb_act[B, T] = SiLU(linear_2(SiLU(linear_1(emb(t))))), as the UNet computes it. */
static sd_status time_embed(const sd_controlnet *cn, sd__ctx *ctx, float t, int B, float *temb,
                            sd_error *err) {
  const sd__unet_config *c = &cn->cfg.unet;
  const int c0 = c->block_out_channels[0], T = cn->temb_dim;
  sd__arena_mark m = sd__arena_get_mark(ctx->arena);
  float *e = act(ctx, (size_t)c0 + (size_t)T, err);
  sd_status st = err->status;
  if (e) {
    sd__unet_timestep_embedding(t, c0, c->flip_sin_to_cos, c->freq_shift, e);
    st = sd__linear(ctx, e, 1, c0, cn->time1_w, cn->time1_b, T, e + c0);
    if (st == SD_OK) {
      sd__silu(ctx, e + c0, (size_t)T);
      st = sd__linear(ctx, e + c0, 1, T, cn->time2_w, cn->time2_b, T, temb);
    }
    if (op_status(st, "time embedding", err) == SD_OK) {
      sd__silu(ctx, temb, (size_t)T);
      for (int b = 1; b < B; b++) memcpy(temb + (size_t)b * T, temb, (size_t)T * sizeof(float));
    }
  }
  sd__arena_reset(ctx->arena, m);
  return st;
}

sd_status sd__controlnet_forward(const sd_controlnet *cn, sd__ctx *ctx, const float *x, int B,
                                 int h, int w, float t, const float *text, int Lt,
                                 const float *hint, float scale, sd__cn_residuals *r,
                                 sd_error *err) {
  const sd__unet_config *c = &cn->cfg.unet;
  if (r->count != cn->nskips || r->B != B || r->hh[0] != h || r->ww[0] != w)
    return sd__err(err, SD_ERR_INTERNAL, "controlnet: residual layout does not fit the net");
  if (r->c[0] != c->block_out_channels[0] || r->mid_c != c->block_out_channels[c->levels - 1])
    return sd__err(err, SD_ERR_INTERNAL, "controlnet: residual channels do not fit the net");
  sd__arena_mark m0 = sd__arena_get_mark(ctx->arena);
  sd_status st;
  size_t most = 0;
  for (int k = 0; k < r->count; k++) {
    size_t n = (size_t)B * r->c[k] * r->hh[k] * r->ww[k];
    if (n > most) most = n;
  }
  float *temb = act(ctx, (size_t)B * cn->temb_dim, err);
  float *pp[2] = {act(ctx, most, err), act(ctx, most, err)};
  if (!temb || !pp[0] || !pp[1]) {
    st = err->status;
    goto out_reset;
  }
  if ((st = time_embed(cn, ctx, t, B, temb, err)) != SD_OK) goto out_reset;
  int c0 = c->block_out_channels[0], H = h, W = w, cur = 0, z = 0;
  st = sd__conv2d(ctx, x, B, c->in_channels, h, w, cn->conv_in_w, cn->conv_in_b, c0, 3, 1, 1,
                  pp[0]);
  if (op_status(st, "conv_in", err) != SD_OK) goto out_reset;
  size_t plane = (size_t)c0 * h * w;
  for (int b = 0; b < B; b++) sd__add_inplace(ctx, pp[0] + (size_t)b * plane, hint, plane);
  st = add_zero(ctx, pp[0], B, c0, H, W, cn->zero_w[z], cn->zero_b[z], scale, r->down[z], err);
  z++;
  int ch = c0;
  for (int i = 0; i < c->levels && st == SD_OK; i++) {
    const cn_level *lv = &cn->down[i];
    int co = c->block_out_channels[i];
    for (int j = 0; j < lv->nres && st == SD_OK; j++) {
      if (sd__ctx_cancelled(ctx)) {
        st = sd__err(err, SD_ERR_CANCELLED, "cancelled");
        goto out_reset;
      }
      st = sd__unet_resnet_forward(ctx, &lv->res[j], pp[cur], B, H, W, temb, cn->temb_dim,
                                   pp[!cur], err);
      if (st == SD_OK && c->down_has_attn[i])
        st = sd__unet_xformer_forward(ctx, &lv->attn[j], pp[!cur], B, H, W, text, Lt, err);
      cur = !cur;
      if (st == SD_OK)
        st = add_zero(ctx, pp[cur], B, co, H, W, cn->zero_w[z], cn->zero_b[z], scale,
                      r->down[z], err);
      z++;
    }
    ch = co;
    if (st == SD_OK && lv->down_w) {
      st = sd__conv2d(ctx, pp[cur], B, co, H, W, lv->down_w, lv->down_b, co, 3, 2, 1, pp[!cur]);
      if (op_status(st, "downsampler", err) != SD_OK) goto out_reset;
      H /= 2, W /= 2, cur = !cur;
      st = add_zero(ctx, pp[cur], B, co, H, W, cn->zero_w[z], cn->zero_b[z], scale, r->down[z],
                    err);
      z++;
    }
  }
  if (st != SD_OK) goto out_reset;
  st = sd__unet_resnet_forward(ctx, &cn->mid_res[0], pp[cur], B, H, W, temb, cn->temb_dim,
                               pp[!cur], err);
  cur = !cur;
  if (st == SD_OK && c->mid_has_attn) {
    st = sd__unet_xformer_forward(ctx, &cn->mid_attn, pp[cur], B, H, W, text, Lt, err);
    if (st == SD_OK)
      st = sd__unet_resnet_forward(ctx, &cn->mid_res[1], pp[cur], B, H, W, temb, cn->temb_dim,
                                   pp[!cur], err);
    cur = !cur;
  }
  if (st == SD_OK)
    st = add_zero(ctx, pp[cur], B, ch, H, W, cn->mid_zero_w, cn->mid_zero_b, scale, r->mid, err);
out_reset:
  sd__arena_reset(ctx->arena, m0);
  return st;
}
