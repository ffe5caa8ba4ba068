/* unet_config.c: the UNet's architecture, from unet/config.json or inferred from tensor shapes.
 *
 * Only what SD 1.x-style UNet2DConditionModel checkpoints use is accepted; every other option
 * diffusers offers (class/addition embeddings, time-conditioning projections, scale-shift time
 * norms, per-level transformer depths, ...) is refused with SD_ERR_UNSUPPORTED and its key named,
 * rather than silently computing a different network. Absent keys take diffusers' defaults.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "unet_blocks.h"

static int present(const sd_json *j, const char *key) {
  const sd_json *v = sd__json_get(j, key);
  return v && v->type != SD_JSON_NULL;
}

/* Key must be absent, null, or equal to the default (numbers, bools or strings). */
static void require_default(const sd_json *j, const char *key, double dnum, const char *dstr,
                            sd_error *err) {
  const sd_json *v = sd__json_get(j, key);
  int ok = 1;
  if (!v || v->type == SD_JSON_NULL) return;
  if (dstr) ok = v->type == SD_JSON_STRING && strcmp(v->str, dstr) == 0;
  else if (v->type == SD_JSON_NUMBER) ok = v->num == dnum;
  else if (v->type == SD_JSON_TRUE || v->type == SD_JSON_FALSE)
    ok = (v->type == SD_JSON_TRUE) == (dnum != 0);
  else ok = 0;
  if (!ok) sd__err(err, SD_ERR_UNSUPPORTED, "unet config: %s has an unsupported value", key);
}

static void require_null(const sd_json *j, const char *key, sd_error *err) {
  if (present(j, key))
    sd__err(err, SD_ERR_UNSUPPORTED, "unet config: %s is not supported (must be null)", key);
}

/* An int or a list of equal ints (diffusers expands an int to one per level). */
static int uniform_int(const sd_json *j, const char *key, int def, int levels, sd_error *err) {
  int vals[SD_UNET_MAX_LEVELS];
  const sd_json *v = sd__json_get(j, key);
  if (!v || v->type == SD_JSON_NULL) return def;
  if (v->type == SD_JSON_NUMBER) return sd__json_int(j, key, def, "unet config", err);
  int n = sd__json_int_array(j, key, vals, SD_UNET_MAX_LEVELS, "unet config", err);
  if (n < 0) return def;
  if (n != levels) {
    sd__err(err, SD_ERR_FORMAT, "unet config: %s has %d entries for %d levels", key, n, levels);
    return def;
  }
  for (int i = 1; i < n; i++)
    if (vals[i] != vals[0]) {
      sd__err(err, SD_ERR_UNSUPPORTED, "unet config: per-level %s is not supported", key);
      return def;
    }
  return vals[0];
}

static int block_types(const sd_json *j, const char *key, const char *attn, const char *plain,
                       int *has_attn, int levels, sd_error *err) {
  static const char *const sd15_down[] = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                          "CrossAttnDownBlock2D", "DownBlock2D"};
  const sd_json *arr = sd__json_get(j, key);
  int down = strstr(key, "down") != NULL;
  if (!arr || arr->type == SD_JSON_NULL) {
    if (levels != 4)
      return sd__err(err, SD_ERR_MISSING, "unet config: %s missing for %d levels", key, levels);
    for (int i = 0; i < 4; i++)
      has_attn[i] = down ? strcmp(sd15_down[i], attn) == 0 : i > 0;
    return SD_OK;
  }
  if (arr->type != SD_JSON_ARRAY || (int)arr->count != levels)
    return sd__err(err, SD_ERR_FORMAT, "unet config: %s must list %d block types", key, levels);
  for (int i = 0; i < levels; i++) {
    const sd_json *e = sd__json_at(arr, (size_t)i);
    if (!e || e->type != SD_JSON_STRING)
      return sd__err(err, SD_ERR_FORMAT, "unet config: %s[%d] is not a string", key, i);
    if (strcmp(e->str, attn) == 0) has_attn[i] = 1;
    else if (strcmp(e->str, plain) == 0) has_attn[i] = 0;
    else
      return sd__err(err, SD_ERR_UNSUPPORTED, "unet config: block type %s is not supported",
                     e->str);
  }
  return SD_OK;
}

static void refuse_unsupported(const sd_json *j, sd_error *err) {
  const char *cls = sd__json_str(j, "_class_name", NULL, "unet config", err);
  if (cls && strcmp(cls, "UNet2DConditionModel") != 0)
    sd__err(err, SD_ERR_UNSUPPORTED, "unet config: class %s is not supported", cls);
  static const char *const must_be_null[] = {
      "class_embed_type", "num_class_embeds", "addition_embed_type", "addition_time_embed_dim",
      "encoder_hid_dim", "encoder_hid_dim_type", "time_cond_proj_dim", "time_embedding_dim",
      "time_embedding_act_fn", "timestep_post_act", "cross_attention_norm",
      "reverse_transformer_layers_per_block", "projection_class_embeddings_input_dim"};
  for (size_t i = 0; i < sizeof must_be_null / sizeof *must_be_null; i++)
    require_null(j, must_be_null[i], err);
  require_default(j, "center_input_sample", 0, NULL, err);
  require_default(j, "dual_cross_attention", 0, NULL, err);
  require_default(j, "class_embeddings_concat", 0, NULL, err);
  require_default(j, "resnet_skip_time_act", 0, NULL, err);
  require_default(j, "resnet_out_scale_factor", 1, NULL, err);
  require_default(j, "mid_block_scale_factor", 1, NULL, err);
  require_default(j, "conv_in_kernel", 3, NULL, err);
  require_default(j, "conv_out_kernel", 3, NULL, err);
  require_default(j, "downsample_padding", 1, NULL, err);
  require_default(j, "act_fn", 0, "silu", err);
  require_default(j, "resnet_time_scale_shift", 0, "default", err);
  require_default(j, "time_embedding_type", 0, "positional", err);
  require_default(j, "attention_type", 0, "default", err);
  /* only_cross_attention: false, or a list of falses */
  const sd_json *oca = sd__json_get(j, "only_cross_attention");
  if (oca && oca->type == SD_JSON_ARRAY) {
    for (const sd_json *e = oca->child; e; e = e->next)
      if (e->type != SD_JSON_FALSE)
        sd__err(err, SD_ERR_UNSUPPORTED, "unet config: only_cross_attention is not supported");
  } else {
    require_default(j, "only_cross_attention", 0, NULL, err);
  }
  /* upcast_attention only changes half-precision runs; in float32 it is the identity. */
}

sd_status sd__unet_config_check(sd__unet_config *c, sd_error *err) {
  if (c->levels < 1 || c->levels > SD_UNET_MAX_LEVELS)
    return sd__err(err, SD_ERR_UNSUPPORTED, "unet: %d levels (1..%d supported)", c->levels,
                   SD_UNET_MAX_LEVELS);
  if (c->in_channels < 1 || c->out_channels < 1 || c->in_channels > 64 || c->out_channels > 64)
    return sd__err(err, SD_ERR_FORMAT, "unet: %d input / %d output channels", c->in_channels,
                   c->out_channels);
  if (c->layers_per_block < 1 || c->layers_per_block > SD__UNET_MAX_LAYERS)
    return sd__err(err, SD_ERR_UNSUPPORTED, "unet: layers_per_block %d (1..%d supported)",
                   c->layers_per_block, SD__UNET_MAX_LAYERS);
  if (c->transformer_layers < 1 || c->transformer_layers > SD__UNET_MAX_DEPTH)
    return sd__err(err, SD_ERR_UNSUPPORTED, "unet: transformer_layers_per_block %d",
                   c->transformer_layers);
  if (c->norm_groups < 1 || !(c->norm_eps > 0) || !isfinite(c->norm_eps))
    return sd__err(err, SD_ERR_FORMAT, "unet: norm_num_groups %d, norm_eps %g", c->norm_groups,
                   (double)c->norm_eps);
  if (c->cross_attention_dim < 1 || c->cross_attention_dim > 16384)
    return sd__err(err, SD_ERR_FORMAT, "unet: cross_attention_dim %d", c->cross_attention_dim);
  int c0 = c->block_out_channels[0];
  if (c0 < 2 || c0 % 2 != 0)
    return sd__err(err, SD_ERR_UNSUPPORTED, "unet: block_out_channels[0] = %d must be even", c0);
  for (int i = 0; i < c->levels; i++) {
    int ch = c->block_out_channels[i];
    if (ch < 1 || ch > 16384 || ch % c->norm_groups != 0)
      return sd__err(err, SD_ERR_FORMAT, "unet: level %d has %d channels (groups %d)", i, ch,
                     c->norm_groups);
    /* The up path's concatenations (ch + skip channels) must also split into the groups;
     * they do when every level's channels do. */
    if (c->heads[i] < 1 || ch % c->heads[i] != 0)
      return sd__err(err, SD_ERR_UNSUPPORTED, "unet: level %d: %d channels, %d heads", i, ch,
                     c->heads[i]);
    c->head_dim[i] = ch / c->heads[i];
  }
  return SD_OK;
}

sd_status sd__unet_config_from_json(const sd_json *j, sd__unet_config *c, sd_error *err) {
  static const int sd15_channels[4] = {320, 640, 1280, 1280};
  sd_error local = {0};
  if (!err) err = &local;
  memset(c, 0, sizeof *c);
  if (!j || j->type != SD_JSON_OBJECT)
    return sd__err(err, SD_ERR_FORMAT, "unet config: not a JSON object");
  refuse_unsupported(j, err);
  c->in_channels = sd__json_int(j, "in_channels", 4, "unet config", err);
  c->out_channels = sd__json_int(j, "out_channels", 4, "unet config", err);
  int n = sd__json_int_array(j, "block_out_channels", c->block_out_channels, SD_UNET_MAX_LEVELS,
                             "unet config", err);
  if (n == 0) {
    memcpy(c->block_out_channels, sd15_channels, sizeof sd15_channels);
    n = 4;
  }
  if (err->status != SD_OK) return err->status;
  c->levels = n;
  block_types(j, "down_block_types", "CrossAttnDownBlock2D", "DownBlock2D", c->down_has_attn,
              n, err);
  block_types(j, "up_block_types", "CrossAttnUpBlock2D", "UpBlock2D", c->up_has_attn, n, err);
  const char *mid = sd__json_str(j, "mid_block_type", "UNetMidBlock2DCrossAttn", "unet config",
                                 err);
  if (!present(j, "mid_block_type") && sd__json_get(j, "mid_block_type"))
    sd__err(err, SD_ERR_UNSUPPORTED, "unet config: a UNet without a mid block is not supported");
  else if (strcmp(mid, "UNetMidBlock2DCrossAttn") == 0) c->mid_has_attn = 1;
  else if (strcmp(mid, "UNetMidBlock2D") == 0) c->mid_has_attn = 0; /* one resnet, no attn */
  else sd__err(err, SD_ERR_UNSUPPORTED, "unet config: mid block %s is not supported", mid);
  c->layers_per_block = uniform_int(j, "layers_per_block", 2, n, err);
  c->cross_attention_dim = uniform_int(j, "cross_attention_dim", 1280, n, err);
  const sd_json *tl = sd__json_get(j, "transformer_layers_per_block");
  if (tl && tl->type == SD_JSON_ARRAY)
    sd__err(err, SD_ERR_UNSUPPORTED,
            "unet config: a list for transformer_layers_per_block is not supported");
  c->transformer_layers = sd__json_int(j, "transformer_layers_per_block", 1, "unet config", err);
  if (present(j, "norm_num_groups") || !sd__json_get(j, "norm_num_groups"))
    c->norm_groups = sd__json_int(j, "norm_num_groups", 32, "unet config", err);
  else
    sd__err(err, SD_ERR_UNSUPPORTED, "unet config: norm_num_groups null is not supported");
  c->norm_eps = (float)sd__json_num(j, "norm_eps", 1e-5, "unet config", err);
  c->use_linear_projection = sd__json_bool(j, "use_linear_projection", 0, "unet config", err);
  c->flip_sin_to_cos = sd__json_bool(j, "flip_sin_to_cos", 1, "unet config", err);
  c->freq_shift = sd__json_int(j, "freq_shift", 0, "unet config", err);
  c->sample_size = sd__json_int(j, "sample_size", 64, "unet config", err);
  /* In SD 1.x configs attention_head_dim is really the number of heads (diffusers passes it
   * as num_attention_heads when that is null). diffusers 0.27 refuses a non-null
   * num_attention_heads outright; we accept it with its literal meaning. */
  const char *hkey = present(j, "num_attention_heads") ? "num_attention_heads"
                                                        : "attention_head_dim";
  if (!present(j, hkey)) {
    for (int i = 0; i < n; i++) c->heads[i] = 8;
  } else {
    const sd_json *hv = sd__json_get(j, hkey);
    if (hv->type == SD_JSON_NUMBER) {
      int h = sd__json_int(j, hkey, 8, "unet config", err);
      for (int i = 0; i < n; i++) c->heads[i] = h;
    } else {
      int m = sd__json_int_array(j, hkey, c->heads, SD_UNET_MAX_LEVELS, "unet config", err);
      if (m >= 0 && m != n)
        sd__err(err, SD_ERR_FORMAT, "unet config: %s has %d entries for %d levels", hkey, m, n);
    }
  }
  if (err->status != SD_OK) return err->status;
  return sd__unet_config_check(c, err);
}

/* ---- inference from tensor shapes ---- */

/* The parts of an inferred config that the down path and mid block decide, shared with the
 * ControlNet's inference: mid-block attention, cross-attention width, projection kind and
 * transformer depth from the first attention block (`first`, "" when there is none), then the
 * SD defaults for what shapes cannot tell. */
sd_status sd__unet_config_infer_attention(sd__wsrc *src, const char *first_down,
                                          sd__unet_config *c, const char *what,
                                          sd_error *err) {
  int64_t s[SD_ST_MAX_DIMS];
  char first[128];
  snprintf(first, sizeof first, "%s", first_down);
  c->mid_has_attn = sd__wsrc_shapef(src, s, "mid_block.attentions.0.norm.weight") == 1;
  if (!first[0] && c->mid_has_attn) snprintf(first, sizeof first, "mid_block.attentions.0");
  c->cross_attention_dim = 768; /* SD 1.x, when nothing attends */
  c->transformer_layers = 1;
  if (first[0]) {
    if (sd__wsrc_shapef(src, s, "%s.transformer_blocks.0.attn2.to_k.weight", first) != 2)
      return sd__err(err, SD_ERR_MISSING, "%s: %s has no attn2.to_k", what, first);
    c->cross_attention_dim = (int)s[1];
    c->use_linear_projection = sd__wsrc_shapef(src, s, "%s.proj_in.weight", first) == 2;
    c->transformer_layers = 0;
    while (c->transformer_layers < SD__UNET_MAX_DEPTH &&
           sd__wsrc_shapef(src, s, "%s.transformer_blocks.%d.norm1.weight", first,
                    c->transformer_layers) == 1)
      c->transformer_layers++;
  }
  /* Not inferable from shapes: the head count. SD 1.x uses 8 heads at every level; SD 2.x
   * (linear projections, 1024-d text) uses 64-channel heads. GroupNorm settings and the time
   * embedding are the SD defaults. */
  int sd2 = c->use_linear_projection && c->cross_attention_dim == 1024;
  for (int i = 0; i < c->levels; i++) c->heads[i] = sd2 ? c->block_out_channels[i] / 64 : 8;
  c->norm_groups = 32;
  c->norm_eps = 1e-5f;
  c->flip_sin_to_cos = 1;
  c->freq_shift = 0;
  c->sample_size = 64;
  return SD_OK;
}

sd_status sd__unet_config_infer(sd__wsrc *src, sd__unet_config *c, sd_error *err) {
  int64_t s[SD_ST_MAX_DIMS];
  sd_error local = {0};
  if (!err) err = &local;
  memset(c, 0, sizeof *c);
  if (sd__wsrc_shapef(src, s, "conv_in.weight") != 4)
    return sd__err(err, SD_ERR_MISSING, "unet: conv_in.weight missing or not 4-d");
  if (s[2] != 3 || s[3] != 3)
    return sd__err(err, SD_ERR_UNSUPPORTED, "unet: conv_in kernel %lldx%lld", (long long)s[2],
                   (long long)s[3]);
  c->in_channels = (int)s[1];
  if (sd__wsrc_shapef(src, s, "conv_out.weight") != 4)
    return sd__err(err, SD_ERR_MISSING, "unet: conv_out.weight missing or not 4-d");
  c->out_channels = (int)s[0];
  int L = 0;
  while (L < SD_UNET_MAX_LEVELS &&
         sd__wsrc_shapef(src, s, "down_blocks.%d.resnets.0.conv1.weight", L) == 4) {
    c->block_out_channels[L] = (int)s[0];
    L++;
  }
  if (L == 0) return sd__err(err, SD_ERR_MISSING, "unet: no down_blocks.0.resnets.0 found");
  c->levels = L;
  while (c->layers_per_block < SD__UNET_MAX_LAYERS &&
         sd__wsrc_shapef(src, s, "down_blocks.0.resnets.%d.conv1.weight", c->layers_per_block) == 4)
    c->layers_per_block++;
  /* The attention-dependent facts come from the first transformer found. */
  char first[64] = "";
  for (int i = 0; i < L; i++) {
    c->down_has_attn[i] = sd__wsrc_shapef(src, s, "down_blocks.%d.attentions.0.norm.weight", i) == 1;
    c->up_has_attn[i] = sd__wsrc_shapef(src, s, "up_blocks.%d.attentions.0.norm.weight", i) == 1;
    if (!first[0] && c->down_has_attn[i])
      snprintf(first, sizeof first, "down_blocks.%d.attentions.0", i);
  }
  if (sd__wsrc_shapef(src, s, "up_blocks.%d.resnets.0.conv1.weight", L - 1) != 4 ||
      sd__wsrc_shapef(src, s, "up_blocks.%d.resnets.0.conv1.weight", L) == 4)
    return sd__err(err, SD_ERR_SHAPE, "unet: up_blocks do not match %d down levels", L);
  sd_status st = sd__unet_config_infer_attention(src, first, c, "unet", err);
  if (st != SD_OK) return st;
  return sd__unet_config_check(c, err);
}
