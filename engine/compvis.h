/* compvis.h: original CompVis / LDM checkpoint names for single-file Stable Diffusion models.
 *
 * A single-file SD 1.x checkpoint keeps the UNet under "model.diffusion_model." (openaimodel
 * names: input_blocks / middle_block / output_blocks), the VAE under "first_stage_model."
 * (encoder.down.i.block.j, decoder.up.i reversed, mid.attn_1 with 1x1 convs) and the text
 * encoder under "cond_stage_model.transformer." (transformers names). ControlNet files use
 * "control_model." (or no prefix) with input_hint_block, zero_convs and middle_block_out.
 * The translators here are sd__wname_fn callbacks: diffusers name -> name after the prefix.
 * The mapping follows diffusers' convert_from_ckpt.py (0.27).
 */
#ifndef SD_COMPVIS_H
#define SD_COMPVIS_H

#include "weights.h"

#define SD_CV_UNET_PREFIX "model.diffusion_model."
#define SD_CV_VAE_PREFIX "first_stage_model."
#define SD_CV_CLIP_PREFIX "cond_stage_model.transformer."
#define SD_CV_CONTROL_PREFIX "control_model."
#define SD_CV_MAX_LEVELS 8

/* Layout of an openaimodel UNet (or ControlNet encoder), inferred from its keys. */
typedef struct sd__cv_unet_map {
  int levels;           /* len(channel_mult) */
  int layers_per_block; /* num_res_blocks */
  int down_attn[SD_CV_MAX_LEVELS]; /* input level i has SpatialTransformers */
  int up_attn[SD_CV_MAX_LEVELS];   /* diffusers up block k (deepest first) has them */
  int has_decoder;      /* output_blocks present (a UNet, not a ControlNet) */
  int hint_blocks;      /* ControlNet: conv layers between hint conv_in and conv_out */
} sd__cv_unet_map;

/* Infer the layout from the names in f under prefix (SD_CV_UNET_PREFIX, SD_CV_CONTROL_PREFIX
 * or ""). SD_ERR_FORMAT when the keys do not form a consistent openaimodel UNet. */
sd_status sd__cv_unet_map_init(const sd_safetensors *f, const char *prefix, sd__cv_unet_map *m,
                               sd_error *err);
/* sd__wname_fn over an sd__cv_unet_map: "down_blocks.1.resnets.0.conv1.weight" ->
 * "input_blocks.4.0.in_layers.2.weight" (for layers_per_block 2). Also ControlNet names
 * (controlnet_cond_embedding.*, controlnet_down_blocks.*, controlnet_mid_block.*). */
int sd__cv_unet_name(void *map, const char *name, char *out, size_t cap);

/* The VAE: only the number of levels matters (decoder.up is numbered in reverse). */
typedef struct sd__cv_vae_map {
  int levels;
} sd__cv_vae_map;
sd_status sd__cv_vae_map_init(const sd_safetensors *f, const char *prefix, sd__cv_vae_map *m,
                              sd_error *err);
/* "decoder.up_blocks.0.resnets.1.conv_shortcut.weight" -> "decoder.up.3.block.1.nin_shortcut.weight"
 * (4 levels); mid-block attention group_norm/to_q/to_k/to_v/to_out.0 -> norm/q/k/v/proj_out;
 * names without a CompVis counterpart (quant_conv, quantize.embedding...) pass unchanged. */
int sd__cv_vae_name(void *map, const char *name, char *out, size_t cap);

/* The text encoder: transformers names; older checkpoints lack the "text_model." level. */
typedef struct sd__cv_clip_map {
  int strip_text_model; /* file has prefix + "embeddings..." rather than prefix + "text_model..." */
} sd__cv_clip_map;
void sd__cv_clip_map_init(const sd_safetensors *f, const char *prefix, sd__cv_clip_map *m);
int sd__cv_clip_name(void *map, const char *name, char *out, size_t cap);

/* Whether f has any tensor whose name starts with prefix. */
int sd__cv_has_prefix(const sd_safetensors *f, const char *prefix);

#endif
