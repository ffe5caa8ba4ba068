/* controlnet_config.c: a ControlNet's architecture, from its config.json (ControlNetModel keys,
 * diffusers 0.27 defaults for absent ones) or inferred from tensor shapes (single files, after
 * name translation). Options diffusers offers beyond SD 1.x/2.x ControlNets (class or addition
 * embeddings, pooled "global" conditions, other activations...) are refused by name rather than
 * computed differently. The encoder part is an sd__unet_config checked by the UNet's own rules.
 * Not here: weights and the forward pass (controlnet.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "controlnet.h"

static void need_null(const sd_json *j, const char *key, sd_error *err) {
  const sd_json *v = sd__json_get(j, key);
  if (v && v->type != SD_JSON_NULL)
    sd__err(err, SD_ERR_UNSUPPORTED, "controlnet config: %s is not supported (must be null)",
            key);
}

static void need_value(const sd_json *j, const char *key, double num, const char *str,
                       sd_error *err) {
  const sd_json *v = sd__json_get(j, key);
  if (!v || v->type == SD_JSON_NULL) return;
  int ok = str ? v->type == SD_JSON_STRING && strcmp(v->str, str) == 0
               : (v->type == SD_JSON_NUMBER && v->num == num) ||
                     (v->type == SD_JSON_FALSE && num == 0) ||
                     (v->type == SD_JSON_TRUE && num == 1);
  if (!ok) sd__err(err, SD_ERR_UNSUPPORTED, "controlnet config: %s has an unsupported value", key);
}

/* An int, or a list of n equal ints. */
static int same_int(const sd_json *j, const char *key, int def, int n, sd_error *err) {
  const sd_json *v = sd__json_get(j, key);
  if (!v || v->type == SD_JSON_NULL) return def;
  if (v->type == SD_JSON_NUMBER) return sd__json_int(j, key, def, "controlnet config", err);
  int vals[SD_UNET_MAX_LEVELS];
  int m = sd__json_int_array(j, key, vals, SD_UNET_MAX_LEVELS, "controlnet config", err);
  if (m != n) {
    sd__err(err, SD_ERR_FORMAT, "controlnet config: %s has %d entries for %d levels", key, m, n);
    return def;
  }
  for (int i = 1; i < n; i++)
    if (vals[i] != vals[0])
      sd__err(err, SD_ERR_UNSUPPORTED, "controlnet config: per-level %s is not supported", key);
  return vals[0];
}

static void check_emb(sd__controlnet_config *c, sd_error *err) {
  if (c->nemb < 1 || c->nemb > SD__CN_MAX_EMB || c->cond_channels < 1 || c->cond_channels > 16)
    sd__err(err, SD_ERR_UNSUPPORTED, "controlnet: %d conditioning embedding levels, %d channels",
            c->nemb, c->cond_channels);
  for (int i = 0; i < c->nemb && err->status == SD_OK; i++)
    if (c->emb_channels[i] < 1 || c->emb_channels[i] > 16384)
      sd__err(err, SD_ERR_FORMAT, "controlnet: conditioning channels %d", c->emb_channels[i]);
}

sd_status sd__controlnet_config_from_json(const sd_json *j, sd__controlnet_config *cfg,
                                          sd_error *err) {
  static const int sd15[4] = {320, 640, 1280, 1280}, emb15[4] = {16, 32, 96, 256};
  sd__unet_config *c = &cfg->unet;
  memset(cfg, 0, sizeof *cfg);
  if (!j || j->type != SD_JSON_OBJECT)
    return sd__err(err, SD_ERR_FORMAT, "controlnet config: not a JSON object");
  const char *cls = sd__json_str(j, "_class_name", "ControlNetModel", "controlnet config", err);
  if (cls && strcmp(cls, "ControlNetModel") != 0)
    return sd__err(err, SD_ERR_UNSUPPORTED, "controlnet config: class %s is not a ControlNetModel",
                   cls);
  static const char *const nulls[] = {"class_embed_type", "num_class_embeds",
                                      "addition_embed_type", "addition_time_embed_dim",
                                      "encoder_hid_dim", "encoder_hid_dim_type",
                                      "projection_class_embeddings_input_dim"};
  for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++) need_null(j, nulls[i], err);
  need_value(j, "act_fn", 0, "silu", err);
  need_value(j, "resnet_time_scale_shift", 0, "default", err);
  need_value(j, "downsample_padding", 1, NULL, err);
  need_value(j, "mid_block_scale_factor", 1, NULL, err);
  need_value(j, "global_pool_conditions", 0, NULL, err);
  need_value(j, "only_cross_attention", 0, NULL, err);
  int n = sd__json_int_array(j, "block_out_channels", c->block_out_channels, SD_UNET_MAX_LEVELS,
                             "controlnet config", err);
  if (n == 0) memcpy(c->block_out_channels, sd15, sizeof sd15), n = 4;
  if (err->status != SD_OK) return err->status;
  c->levels = n;
  const sd_json *types = sd__json_get(j, "down_block_types");
  if (types && types->type == SD_JSON_ARRAY) {
    if ((int)types->count != n)
      return sd__err(err, SD_ERR_FORMAT, "controlnet config: down_block_types must list %d", n);
    for (int i = 0; i < n; i++) {
      const sd_json *e = sd__json_at(types, (size_t)i);
      if (e && e->type == SD_JSON_STRING && strcmp(e->str, "CrossAttnDownBlock2D") == 0)
        c->down_has_attn[i] = 1;
      else if (!e || e->type != SD_JSON_STRING || strcmp(e->str, "DownBlock2D") != 0)
        return sd__err(err, SD_ERR_UNSUPPORTED, "controlnet config: down block type %d", i);
    }
  } else {
    for (int i = 0; i < n; i++) c->down_has_attn[i] = i < n - 1;
  }
  const char *mid = sd__json_str(j, "mid_block_type", "UNetMidBlock2DCrossAttn",
                                 "controlnet config", err);
  if (mid && strcmp(mid, "UNetMidBlock2DCrossAttn") == 0) c->mid_has_attn = 1;
  else if (mid && strcmp(mid, "UNetMidBlock2D") != 0)
    sd__err(err, SD_ERR_UNSUPPORTED, "controlnet config: mid block %s is not supported", mid);
  c->in_channels = sd__json_int(j, "in_channels", 4, "controlnet config", err);
  c->out_channels = c->in_channels;
  c->layers_per_block = same_int(j, "layers_per_block", 2, n, err);
  c->cross_attention_dim = same_int(j, "cross_attention_dim", 1280, n, err);
  c->transformer_layers = same_int(j, "transformer_layers_per_block", 1, n, err);
  c->norm_groups = sd__json_int(j, "norm_num_groups", 32, "controlnet config", err);
  c->norm_eps = (float)sd__json_num(j, "norm_eps", 1e-5, "controlnet config", err);
  c->use_linear_projection = sd__json_bool(j, "use_linear_projection", 0, "controlnet config",
                                           err);
  c->flip_sin_to_cos = sd__json_bool(j, "flip_sin_to_cos", 1, "controlnet config", err);
  c->freq_shift = sd__json_int(j, "freq_shift", 0, "controlnet config", err);
  c->sample_size = 64;
  /* as in the UNet: num_attention_heads or (SD 1.x's misnamed) attention_head_dim = heads */
  const sd_json *nh = sd__json_get(j, "num_attention_heads");
  const char *hkey = nh && nh->type != SD_JSON_NULL ? "num_attention_heads" : "attention_head_dim";
  const sd_json *hv = sd__json_get(j, hkey);
  if (hv && hv->type == SD_JSON_ARRAY) {
    int m = sd__json_int_array(j, hkey, c->heads, SD_UNET_MAX_LEVELS, "controlnet config", err);
    if (m >= 0 && m != n)
      sd__err(err, SD_ERR_FORMAT, "controlnet config: %s has %d entries for %d levels", hkey, m,
              n);
  } else {
    int h = sd__json_int(j, hkey, 8, "controlnet config", err);
    for (int i = 0; i < n; i++) c->heads[i] = h;
  }
  cfg->cond_channels = sd__json_int(j, "conditioning_channels", 3, "controlnet config", err);
  int ne = sd__json_int_array(j, "conditioning_embedding_out_channels", cfg->emb_channels,
                              SD__CN_MAX_EMB, "controlnet config", err);
  if (ne == 0) memcpy(cfg->emb_channels, emb15, sizeof emb15), ne = 4;
  cfg->nemb = ne;
  const char *order = sd__json_str(j, "controlnet_conditioning_channel_order", "rgb",
                                   "controlnet config", err);
  if (order && strcmp(order, "bgr") == 0) cfg->bgr = 1;
  else if (order && strcmp(order, "rgb") != 0)
    sd__err(err, SD_ERR_UNSUPPORTED, "controlnet config: channel order %s", order);
  if (err->status != SD_OK) return err->status;
  check_emb(cfg, err);
  if (err->status != SD_OK) return err->status;
  return sd__unet_config_check(c, err);
}

sd_status sd__controlnet_config_infer(sd__wsrc *src, sd__controlnet_config *cfg, sd_error *err) {
  sd__unet_config *c = &cfg->unet;
  int64_t s[SD_ST_MAX_DIMS];
  memset(cfg, 0, sizeof *cfg);
  if (sd__wsrc_shapef(src, s, "conv_in.weight") != 4 || s[2] != 3 || s[3] != 3)
    return sd__err(err, SD_ERR_MISSING, "controlnet: conv_in.weight missing or not 3x3");
  c->in_channels = c->out_channels = (int)s[1];
  int L = 0;
  while (L < SD_UNET_MAX_LEVELS &&
         sd__wsrc_shapef(src, s, "down_blocks.%d.resnets.0.conv1.weight", L) == 4)
    c->block_out_channels[L++] = (int)s[0];
  if (L == 0) return sd__err(err, SD_ERR_MISSING, "controlnet: no down_blocks.0.resnets.0");
  c->levels = L;
  while (c->layers_per_block < SD__UNET_MAX_LAYERS &&
         sd__wsrc_shapef(src, s, "down_blocks.0.resnets.%d.conv1.weight", c->layers_per_block) == 4)
    c->layers_per_block++;
  char first[64] = "";
  for (int i = 0; i < L; i++) {
    c->down_has_attn[i] = sd__wsrc_shapef(src, s, "down_blocks.%d.attentions.0.norm.weight", i) == 1;
    if (!first[0] && c->down_has_attn[i])
      snprintf(first, sizeof first, "down_blocks.%d.attentions.0", i);
  }
  sd_status st = sd__unet_config_infer_attention(src, first, c, "controlnet", err);
  if (st != SD_OK) return st;
  /* hint encoder: conv_in [e0, cond, 3, 3], blocks 2k [e_k, e_k], 2k+1 [e_k+1, e_k] */
  if (sd__wsrc_shapef(src, s, "controlnet_cond_embedding.conv_in.weight") != 4)
    return sd__err(err, SD_ERR_MISSING, "controlnet: controlnet_cond_embedding.conv_in missing");
  cfg->cond_channels = (int)s[1];
  cfg->emb_channels[0] = (int)s[0];
  int nb = 0;
  while (nb < 2 * SD__CN_MAX_EMB &&
         sd__wsrc_shapef(src, s, "controlnet_cond_embedding.blocks.%d.weight", nb) == 4) {
    if (nb % 2 == 1) cfg->emb_channels[nb / 2 + 1] = (int)s[0];
    nb++;
  }
  if (nb % 2 || nb / 2 + 1 > SD__CN_MAX_EMB)
    return sd__err(err, SD_ERR_SHAPE, "controlnet: %d hint encoder blocks (must be even)", nb);
  cfg->nemb = nb / 2 + 1;
  check_emb(cfg, err);
  if (err->status != SD_OK) return err->status;
  return sd__unet_config_check(c, err);
}
