/* vae.c: the autoencoders of latent diffusion, matching diffusers 0.27.2: AutoencoderKL
 * (Encoder / Decoder in autoencoders/vae.py, DownEncoderBlock2D, UpDecoderBlock2D and
 * UNetMidBlock2D from unet_2d_blocks.py, ResnetBlock2D without time embedding) and VQModel
 * (the same encoder and decoder around a nearest-codebook VectorQuantizer).
 *
 * This file holds the configuration (from vae/config.json or inferred from tensor shapes),
 * weight binding and the quantizer; vae_run.c holds the forward passes. Weights are borrowed
 * from the sd__wsrc, which must outlive the sd__vae. Only norm_type "group" is supported.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vae_impl.h"

/* ---- configuration ---- */

static void vae_config_defaults(sd__vae_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->in_channels = 3;
  cfg->out_channels = 3;
  cfg->latent_channels = 4;
  cfg->levels = 4;
  cfg->block_out_channels[0] = 128;
  cfg->block_out_channels[1] = 256;
  cfg->block_out_channels[2] = 512;
  cfg->block_out_channels[3] = 512;
  cfg->layers_per_block = 2;
  cfg->norm_groups = 32;
  cfg->scaling_factor = 0.18215f;
  cfg->mid_attention = 1;
  cfg->sample_size = 512;
}

/* The checks every config must pass, whatever its origin (a sanity bound, not a model
 * limit: the largest released SD VAEs use 512 channels and 2-3 layers per block). */
static sd_status vae_config_check(const sd__vae_config *c, sd_error *err) {
  if (c->levels < 1 || c->levels > SD_VAE_MAX_LEVELS)
    return sd__err(err, SD_ERR_UNSUPPORTED, "vae: %d blocks (1..%d supported)", c->levels,
                   SD_VAE_MAX_LEVELS);
  if (c->in_channels < 1 || c->out_channels < 1 || c->latent_channels < 1 ||
      c->in_channels > 64 || c->out_channels > 64 || c->latent_channels > 1024)
    return sd__err(err, SD_ERR_UNSUPPORTED, "vae: channels in %d out %d latent %d",
                   c->in_channels, c->out_channels, c->latent_channels);
  if (c->layers_per_block < 1 || c->layers_per_block > VAE_MAX_LAYERS)
    return sd__err(err, SD_ERR_UNSUPPORTED, "vae: layers_per_block %d (1..%d supported)",
                   c->layers_per_block, VAE_MAX_LAYERS);
  if (c->norm_groups < 1)
    return sd__err(err, SD_ERR_FORMAT, "vae: norm_num_groups %d", c->norm_groups);
  for (int i = 0; i < c->levels; i++) {
    int ch = c->block_out_channels[i];
    if (ch < 1 || ch > 8192 || ch % c->norm_groups != 0)
      return sd__err(err, SD_ERR_UNSUPPORTED,
                     "vae: block_out_channels[%d] = %d (must be a positive multiple of "
                     "norm_num_groups %d)", i, ch, c->norm_groups);
  }
  if (!(c->scaling_factor > 0.0f) || !isfinite(c->scaling_factor))
    return sd__err(err, SD_ERR_FORMAT, "vae: scaling_factor %g", (double)c->scaling_factor);
  if (c->is_vq && (c->num_vq_embeddings < 1 || c->vq_embed_dim < 1 || c->vq_embed_dim > 1024))
    return sd__err(err, SD_ERR_FORMAT, "vae: VQ codebook %d x %d", c->num_vq_embeddings,
                   c->vq_embed_dim);
  return SD_OK;
}

/* Every entry of a string array must equal want (absent arrays pass); the count must match
 * the number of levels when present. */
static sd_status vae_check_block_types(const sd_json *j, const char *key, const char *want,
                                       int levels, sd_error *err) {
  const sd_json *a = sd__json_get(j, key);
  if (!a || a->type == SD_JSON_NULL) return SD_OK;
  if (a->type != SD_JSON_ARRAY)
    return sd__err(err, SD_ERR_FORMAT, "vae config: %s is not an array", key);
  if ((int)a->count != levels)
    return sd__err(err, SD_ERR_FORMAT, "vae config: %s has %zu entries for %d blocks", key,
                   a->count, levels);
  for (const sd_json *e = a->child; e; e = e->next)
    if (e->type != SD_JSON_STRING || strcmp(e->str, want) != 0)
      return sd__err(err, SD_ERR_UNSUPPORTED, "vae config: %s entry %s (only %s supported)",
                     key, e->type == SD_JSON_STRING ? e->str : "(not a string)", want);
  return SD_OK;
}

sd_status sd__vae_config_from_json(const sd_json *j, sd__vae_config *cfg, sd_error *err) {
  sd_error e = {0};
  const char *w = "vae/config.json";
  vae_config_defaults(cfg);
  if (!j || j->type != SD_JSON_OBJECT)
    return sd__err(err, SD_ERR_FORMAT, "vae config: not a JSON object");

  const char *cls = sd__json_str(j, "_class_name", "AutoencoderKL", w, &e);
  if (cls && strcmp(cls, "VQModel") == 0) {
    cfg->is_vq = 1;
  } else if (cls && strcmp(cls, "AutoencoderKL") != 0) {
    return sd__err(err, SD_ERR_UNSUPPORTED, "vae config: class %s (AutoencoderKL and VQModel "
                   "are supported)", cls);
  }
  /* diffusers' constructor defaults differ between the two classes. */
  int def_latent = cfg->is_vq ? 3 : 4;
  cfg->in_channels = sd__json_int(j, "in_channels", 3, w, &e);
  cfg->out_channels = sd__json_int(j, "out_channels", 3, w, &e);
  cfg->latent_channels = sd__json_int(j, "latent_channels", def_latent, w, &e);
  cfg->layers_per_block = sd__json_int(j, "layers_per_block", 1, w, &e);
  cfg->norm_groups = sd__json_int(j, "norm_num_groups", 32, w, &e);
  cfg->sample_size = sd__json_int(j, "sample_size", 32, w, &e);
  cfg->scaling_factor = (float)sd__json_num(j, "scaling_factor", 0.18215, w, &e);
  cfg->mid_attention = sd__json_bool(j, "mid_block_add_attention", 1, w, &e);
  int n = sd__json_int_array(j, "block_out_channels", cfg->block_out_channels,
                             SD_VAE_MAX_LEVELS, w, &e);
  if (n == 0) {
    cfg->block_out_channels[0] = 64; /* diffusers' default (64,) */
    n = 1;
  }
  cfg->levels = n;
  /* Later diffusers releases can drop the 1x1 convs; SD 1.x and LDM files always have them. */
  if (!sd__json_bool(j, "use_quant_conv", 1, w, &e) ||
      !sd__json_bool(j, "use_post_quant_conv", 1, w, &e))
    sd__err(&e, SD_ERR_UNSUPPORTED, "vae config: use_quant_conv / use_post_quant_conv false");
  const char *act = sd__json_str(j, "act_fn", "silu", w, &e);
  if (e.status == SD_OK && act && strcmp(act, "silu") != 0)
    sd__err(&e, SD_ERR_UNSUPPORTED, "vae config: act_fn %s (only silu)", act);
  if (cfg->is_vq) {
    cfg->num_vq_embeddings = sd__json_int(j, "num_vq_embeddings", 256, w, &e);
    cfg->vq_embed_dim = sd__json_int(j, "vq_embed_dim", cfg->latent_channels, w, &e);
    const char *norm = sd__json_str(j, "norm_type", "group", w, &e);
    if (e.status == SD_OK && norm && strcmp(norm, "group") != 0)
      sd__err(&e, SD_ERR_UNSUPPORTED, "vae config: norm_type %s (only \"group\")", norm);
    /* With lookup_from_codebook, force_not_quantize would treat the decoder input as
     * codebook indices: a path no SD pipeline takes. */
    if (sd__json_bool(j, "lookup_from_codebook", 0, w, &e) && e.status == SD_OK)
      sd__err(&e, SD_ERR_UNSUPPORTED, "vae config: lookup_from_codebook is not supported");
  }
  if (e.status == SD_OK)
    vae_check_block_types(j, "down_block_types", "DownEncoderBlock2D", cfg->levels, &e);
  if (e.status == SD_OK)
    vae_check_block_types(j, "up_block_types", "UpDecoderBlock2D", cfg->levels, &e);
  if (e.status == SD_OK) vae_config_check(cfg, &e);
  if (e.status != SD_OK) return sd__err(err, e.status, "%s", e.msg);
  return SD_OK;
}

/* Output channels of a conv weight [O, I, k, k] (shape[1] when want_in), or -1. */
static int vae_conv_dim(sd__wsrc *src, const char *name, int want_in) {
  int64_t s[SD_ST_MAX_DIMS];
  int nd = sd__wsrc_shape(src, name, s);
  if (nd < 2 || s[want_in ? 1 : 0] < 1 || s[want_in ? 1 : 0] > 1 << 20) return -1;
  return (int)s[want_in ? 1 : 0];
}

sd_status sd__vae_config_infer(sd__wsrc *src, sd__vae_config *cfg, sd_error *err) {
  char name[128];
  vae_config_defaults(cfg);
  cfg->latent_channels = vae_conv_dim(src, "decoder.conv_in.weight", 1);
  if (cfg->latent_channels < 1)
    return sd__err(err, SD_ERR_MISSING, "vae: decoder.conv_in.weight is missing");
  cfg->out_channels = vae_conv_dim(src, "decoder.conv_out.weight", 0);
  if (cfg->out_channels < 1)
    return sd__err(err, SD_ERR_MISSING, "vae: decoder.conv_out.weight is missing");
  int in = vae_conv_dim(src, "encoder.conv_in.weight", 1);
  cfg->in_channels = in > 0 ? in : cfg->out_channels;

  /* Decoder up block i has output channels block_out_channels[levels - 1 - i]. */
  int levels = 0;
  for (; levels <= SD_VAE_MAX_LEVELS; levels++) {
    snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.0.conv1.weight", levels);
    if (!sd__wsrc_has(src, name)) break;
  }
  if (levels < 1 || levels > SD_VAE_MAX_LEVELS)
    return sd__err(err, levels < 1 ? SD_ERR_MISSING : SD_ERR_UNSUPPORTED,
                   "vae: %d decoder up blocks (1..%d supported)", levels, SD_VAE_MAX_LEVELS);
  cfg->levels = levels;
  for (int i = 0; i < levels; i++) {
    snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.0.conv1.weight", i);
    cfg->block_out_channels[levels - 1 - i] = vae_conv_dim(src, name, 0);
  }
  int r = 0;
  for (; r <= VAE_MAX_LAYERS + 1; r++) {
    snprintf(name, sizeof name, "decoder.up_blocks.0.resnets.%d.conv1.weight", r);
    if (!sd__wsrc_has(src, name)) break;
  }
  cfg->layers_per_block = r - 1;
  cfg->mid_attention = sd__wsrc_has(src, "decoder.mid_block.attentions.0.to_q.weight");

  int64_t s[SD_ST_MAX_DIMS];
  if (sd__wsrc_shape(src, "quantize.embedding.weight", s) == 2) {
    cfg->is_vq = 1;
    cfg->num_vq_embeddings = s[0] > INT32_MAX ? -1 : (int)s[0];
    cfg->vq_embed_dim = s[1] > INT32_MAX ? -1 : (int)s[1];
    cfg->scaling_factor = 1.0f; /* LDM's LatentDiffusion default scale_factor */
  } else {
    cfg->scaling_factor = 0.18215f; /* SD 1.x; cannot be read from the weights */
  }
  return vae_config_check(cfg, err);
}

/* ---- weight binding ---- */

/* A tensor of the component with an exact shape (trailing dims 0 are unused). */
static const float *vae_w(sd__wsrc *src, sd_error *err, int ndim, int64_t d0, int64_t d1,
                          int64_t d2, int64_t d3, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
static const float *vae_w(sd__wsrc *src, sd_error *err, int ndim, int64_t d0, int64_t d1,
                          int64_t d2, int64_t d3, const char *fmt, ...) {
  char name[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof name) {
    sd__err(err, SD_ERR_INTERNAL, "vae: tensor name too long");
    return NULL;
  }
  int64_t shape[4] = {d0, d1, d2, d3};
  return sd__wsrc_get(src, name, ndim, shape, err);
}

static int vae_bind_conv(sd__wsrc *src, sd_error *err, const char *pre, vae_conv *c, int co,
                         int ci, int k) {
  c->co = co;
  c->ci = ci;
  c->k = k;
  c->w = vae_w(src, err, 4, co, ci, k, k, "%s.weight", pre);
  c->b = vae_w(src, err, 1, co, 0, 0, 0, "%s.bias", pre);
  return c->w && c->b;
}

static int vae_bind_norm(sd__wsrc *src, sd_error *err, const char *pre, vae_norm *n, int c) {
  n->c = c;
  n->g = vae_w(src, err, 1, c, 0, 0, 0, "%s.weight", pre);
  n->b = vae_w(src, err, 1, c, 0, 0, 0, "%s.bias", pre);
  return n->g && n->b;
}

/* ResnetBlock2D(cin -> cout), temb None: 1x1 conv_shortcut exactly when cin != cout. */
static int vae_bind_resnet(sd__wsrc *src, sd_error *err, const char *pre, vae_resnet *r,
                           int cin, int cout) {
  char p[160];
  int ok = 1;
  r->cin = cin;
  r->cout = cout;
  snprintf(p, sizeof p, "%s.norm1", pre);
  ok = ok && vae_bind_norm(src, err, p, &r->norm1, cin);
  snprintf(p, sizeof p, "%s.conv1", pre);
  ok = ok && vae_bind_conv(src, err, p, &r->conv1, cout, cin, 3);
  snprintf(p, sizeof p, "%s.norm2", pre);
  ok = ok && vae_bind_norm(src, err, p, &r->norm2, cout);
  snprintf(p, sizeof p, "%s.conv2", pre);
  ok = ok && vae_bind_conv(src, err, p, &r->conv2, cout, cout, 3);
  r->has_shortcut = cin != cout;
  if (r->has_shortcut) {
    snprintf(p, sizeof p, "%s.conv_shortcut", pre);
    ok = ok && vae_bind_conv(src, err, p, &r->shortcut, cout, cin, 1);
  }
  return ok;
}

/* The mid-block Attention: one head of dim C; [C, C, 1, 1] weights are accepted as [C, C]. */
static int vae_bind_attn(sd__wsrc *src, sd_error *err, const char *pre, vae_attn *a, int c) {
  char p[160];
  a->c = c;
  snprintf(p, sizeof p, "%s.group_norm", pre);
  int ok = vae_bind_norm(src, err, p, &a->norm, c);
  static const char *const lin[4] = {"to_q", "to_k", "to_v", "to_out.0"};
  for (int i = 0; i < 4 && ok; i++) {
    a->w[i] = vae_w(src, err, 2, c, c, 0, 0, "%s.%s.weight", pre, lin[i]);
    a->b[i] = vae_w(src, err, 1, c, 0, 0, 0, "%s.%s.bias", pre, lin[i]);
    ok = a->w[i] && a->b[i];
  }
  return ok;
}

static int vae_bind_mid(sd__wsrc *src, sd_error *err, const char *pre, vae_mid *m, int c,
                        int attention) {
  char p[128];
  snprintf(p, sizeof p, "%s.resnets.0", pre);
  int ok = vae_bind_resnet(src, err, p, &m->res[0], c, c);
  snprintf(p, sizeof p, "%s.resnets.1", pre);
  ok = ok && vae_bind_resnet(src, err, p, &m->res[1], c, c);
  m->has_attn = attention;
  if (attention) {
    snprintf(p, sizeof p, "%s.attentions.0", pre);
    ok = ok && vae_bind_attn(src, err, p, &m->attn, c);
  }
  return ok;
}

static int vae_bind_encoder(sd__wsrc *src, sd_error *err, sd__vae *v) {
  const sd__vae_config *c = &v->cfg;
  vae_encoder *e = &v->enc;
  char p[96];
  int L = c->levels, ok;
  ok = vae_bind_conv(src, err, "encoder.conv_in", &e->conv_in, c->block_out_channels[0],
                     c->in_channels, 3);
  int prev = c->block_out_channels[0];
  for (int i = 0; i < L && ok; i++) {
    int ch = c->block_out_channels[i];
    for (int j = 0; j < c->layers_per_block && ok; j++) {
      snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
      ok = vae_bind_resnet(src, err, p, &e->res[i][j], j == 0 ? prev : ch, ch);
    }
    if (ok && i < L - 1) {
      snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
      ok = vae_bind_conv(src, err, p, &e->down[i], ch, ch, 3);
    }
    prev = ch;
  }
  int top = c->block_out_channels[L - 1];
  ok = ok && vae_bind_mid(src, err, "encoder.mid_block", &e->mid, top, c->mid_attention);
  ok = ok && vae_bind_norm(src, err, "encoder.conv_norm_out", &e->norm_out, top);
  /* KL: double_z doubles the encoder output (mean and logvar); VQ: latent channels. */
  int zc = c->is_vq ? c->latent_channels : 2 * c->latent_channels;
  int qc = c->is_vq ? c->vq_embed_dim : 2 * c->latent_channels;
  ok = ok && vae_bind_conv(src, err, "encoder.conv_out", &e->conv_out, zc, top, 3);
  ok = ok && vae_bind_conv(src, err, "quant_conv", &e->quant_conv, qc, zc, 1);
  return ok;
}

static int vae_bind_decoder(sd__wsrc *src, sd_error *err, sd__vae *v) {
  const sd__vae_config *c = &v->cfg;
  vae_decoder *d = &v->dec;
  char p[96];
  int L = c->levels, ok;
  int top = c->block_out_channels[L - 1];
  int zc = c->is_vq ? c->vq_embed_dim : c->latent_channels;
  ok = vae_bind_conv(src, err, "post_quant_conv", &d->post_quant_conv, c->latent_channels, zc,
                     1);
  ok = ok && vae_bind_conv(src, err, "decoder.conv_in", &d->conv_in, top, c->latent_channels, 3);
  ok = ok && vae_bind_mid(src, err, "decoder.mid_block", &d->mid, top, c->mid_attention);
  int prev = top;
  for (int i = 0; i < L && ok; i++) {
    int ch = c->block_out_channels[L - 1 - i];
    for (int j = 0; j < c->layers_per_block + 1 && ok; j++) {
      snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
      ok = vae_bind_resnet(src, err, p, &d->res[i][j], j == 0 ? prev : ch, ch);
    }
    if (ok && i < L - 1) {
      snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
      ok = vae_bind_conv(src, err, p, &d->up[i], ch, ch, 3);
    }
    prev = ch;
  }
  int bottom = c->block_out_channels[0];
  ok = ok && vae_bind_norm(src, err, "decoder.conv_norm_out", &d->norm_out, bottom);
  ok = ok && vae_bind_conv(src, err, "decoder.conv_out", &d->conv_out, c->out_channels, bottom,
                           3);
  return ok;
}

/* Fold Upsample2D's 3x3 conv into the phase-stacked 2x2 conv of vae_upconv. Each folded tap
 * is summed in double and rounded once. */
static int vae_fold_upsample(const vae_conv *c, vae_upconv *u) {
  /* kernel rows (or columns) feeding tap t of phase a: bit k set = kernel index k */
  static const int taps[2][2] = {{1, 6}, {3, 4}};
  const int co = c->co, ci = c->ci;
  u->co = co;
  u->ci = ci;
  u->w = malloc((size_t)16 * co * ci * sizeof(float));
  u->b = malloc((size_t)4 * co * sizeof(float));
  if (!u->w || !u->b) return 0;
  for (int p = 0; p < 4; p++) {
    int a = p >> 1, bph = p & 1;
    for (int o = 0; o < co; o++) {
      u->b[p * co + o] = c->b[o];
      for (int i = 0; i < ci; i++) {
        const float *k3 = c->w + ((size_t)o * ci + i) * 9;
        float *k2 = u->w + (((size_t)p * co + o) * ci + i) * 4;
        for (int ty = 0; ty < 2; ty++)
          for (int tx = 0; tx < 2; tx++) {
            double s = 0.0;
            for (int ky = 0; ky < 3; ky++)
              for (int kx = 0; kx < 3; kx++)
                if ((taps[a][ty] >> ky & 1) && (taps[bph][tx] >> kx & 1)) s += k3[ky * 3 + kx];
            k2[ty * 2 + tx] = (float)s;
          }
      }
    }
  }
  return 1;
}

sd_status sd__vae_load(sd__wsrc *src, const sd__vae_config *cfg, sd__vae **out,
                       sd_error *err) {
  sd_error e = {0};
  *out = NULL;
  sd_status st = vae_config_check(cfg, err);
  if (st != SD_OK) return st;
  sd__vae *v = calloc(1, sizeof *v);
  if (!v) return sd__err(err, SD_ERR_NOMEM, "vae: out of memory");
  v->cfg = *cfg;
  if (!vae_bind_decoder(src, &e, v)) goto out_free;
  for (int i = 0; i < cfg->levels - 1; i++)
    if (!vae_fold_upsample(&v->dec.up[i], &v->dec.up4[i])) {
      sd__err(&e, SD_ERR_NOMEM, "vae: out of memory for the upsampler weights");
      goto out_free;
    }
  /* The encoder is optional (image-to-image needs it); a partial encoder is an error. */
  v->has_encoder = sd__wsrc_has(src, "encoder.conv_in.weight");
  if (v->has_encoder && !vae_bind_encoder(src, &e, v)) goto out_free;
  if (cfg->is_vq) {
    int64_t shape[2] = {cfg->num_vq_embeddings, cfg->vq_embed_dim};
    v->codebook = sd__wsrc_get(src, "quantize.embedding.weight", 2, shape, &e);
    if (!v->codebook) goto out_free;
  }
  *out = v;
  return SD_OK;

out_free:
  sd__vae_destroy(v);
  return sd__err(err, e.status ? e.status : SD_ERR_INTERNAL, "%s", e.msg);
}

void sd__vae_destroy(sd__vae *v) {
  if (!v) return;
  for (int i = 0; i < SD_VAE_MAX_LEVELS; i++) {
    free(v->dec.up4[i].w);
    free(v->dec.up4[i].b);
  }
  free(v);
}

const sd__vae_config *sd__vae_get_config(const sd__vae *v) { return &v->cfg; }

/* ---- the quantizer ---- */

/* VectorQuantizer.forward: each latent pixel (a row of C values, NCHW read across channels)
 * takes the codebook entry nearest by torch.cdist. torch 1.13 switches cdist to its
 * matrix-product form when either side has more than 25 rows: the distance is then the dot of
 * [-2 z, |z|^2, 1] with [e, 1, |e|^2], clamped at 0, square-rooted, all in float32. Otherwise
 * it sums (z - e)^2 directly. Ties (sqrt can merge close values) go to the first index. The
 * output is the straight-through form z + (e - z), which can differ from e in the last bit. */
sd_status sd__vae_quantize(const sd__vae *v, const float *z, int h, int w, int64_t *idx,
                           float *quant, sd_error *err) {
  const sd__vae_config *c = &v->cfg;
  if (!c->is_vq || !v->codebook)
    return sd__err(err, SD_ERR_INVALID, "vae: quantize on a model without a codebook");
  if (h < 1 || w < 1 || h > VAE_MAX_LATENT || w > VAE_MAX_LATENT)
    return sd__err(err, SD_ERR_INVALID, "vae: latent size %dx%d", h, w);
  const int C = c->vq_embed_dim, n = c->num_vq_embeddings;
  const size_t hw = (size_t)h * (size_t)w;
  const int use_mm = hw > 25 || n > 25;
  float zr[1024];
  for (size_t p = 0; p < hw; p++) {
    float zn = 0.0f;
    for (int k = 0; k < C; k++) {
      zr[k] = z[(size_t)k * hw + p];
      zn += zr[k] * zr[k];
    }
    int64_t best = 0;
    float bestd = INFINITY;
    for (int j = 0; j < n; j++) {
      const float *e = v->codebook + (size_t)j * (size_t)C;
      float d = 0.0f;
      if (use_mm) {
        float en = 0.0f;
        for (int k = 0; k < C; k++) en += e[k] * e[k];
        for (int k = 0; k < C; k++) d += (-2.0f * zr[k]) * e[k];
        d += zn;
        d += en;
        d = d > 0.0f ? d : 0.0f;
      } else {
        for (int k = 0; k < C; k++) {
          float t = zr[k] - e[k];
          d += t * t;
        }
      }
      d = sqrtf(d);
      if (d < bestd) { /* strict: the first index wins ties */
        bestd = d;
        best = j;
      }
    }
    if (idx) idx[p] = best;
    if (quant) {
      const float *e = v->codebook + (size_t)best * (size_t)C;
      for (int k = 0; k < C; k++) quant[(size_t)k * hw + p] = zr[k] + (e[k] - zr[k]);
    }
  }
  return SD_OK;
}
