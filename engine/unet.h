/* unet.h: diffusers' UNet2DConditionModel as Stable Diffusion 1.x uses it: sinusoidal time
 * embedding + MLP, conv_in, down blocks (ResNet + Transformer2D with self- and cross-attention
 * and GEGLU, downsampling), a cross-attention mid block, up blocks with skip connections and
 * upsampling, GroupNorm + SiLU + conv_out. Sized entirely by its config. */
#ifndef SD_UNET_H
#define SD_UNET_H

#include "json.h"
#include "ops.h"
#include "weights.h"

#define SD_UNET_MAX_LEVELS 8

typedef struct sd__unet_config {
  int in_channels, out_channels;
  int levels;                               /* len(block_out_channels) */
  int block_out_channels[SD_UNET_MAX_LEVELS];
  int down_has_attn[SD_UNET_MAX_LEVELS];    /* CrossAttnDownBlock2D vs DownBlock2D */
  int up_has_attn[SD_UNET_MAX_LEVELS];      /* in up-block order (deepest first) */
  int mid_has_attn;                         /* UNetMidBlock2DCrossAttn (else no mid attention) */
  int layers_per_block;
  int heads[SD_UNET_MAX_LEVELS];            /* attention heads per level */
  int head_dim[SD_UNET_MAX_LEVELS];         /* channels per head per level */
  int transformer_layers;                   /* transformer_layers_per_block */
  int cross_attention_dim;
  int norm_groups;
  float norm_eps;
  int use_linear_projection;
  int flip_sin_to_cos, freq_shift;
  int sample_size;
} sd__unet_config;

/* From unet/config.json (attention_head_dim as int or list is the number of heads in SD1.x,
 * as diffusers treats it when num_attention_heads is null). */
sd_status sd__unet_config_from_json(const sd_json *j, sd__unet_config *cfg, sd_error *err);
/* From tensor shapes (diffusers names after translation). */
sd_status sd__unet_config_infer(sd__wsrc *src, sd__unet_config *cfg, sd_error *err);

typedef struct sd__unet sd__unet;

/* Build the UNet over src's tensors (diffusers names), each checked against the shape cfg
 * implies; the weights are borrowed, so src must outlive the UNet. On failure *out is NULL and
 * err names the first missing or misshapen tensor (SD_ERR_MISSING / SD_ERR_SHAPE), or the
 * config problem (SD_ERR_UNSUPPORTED / SD_ERR_FORMAT). Free with sd__unet_destroy (NULL ok). */
sd_status sd__unet_load(sd__wsrc *src, const sd__unet_config *cfg, sd__unet **out,
                        sd_error *err);
void sd__unet_destroy(sd__unet *u);
const sd__unet_config *sd__unet_get_config(const sd__unet *u);

/* Extra residuals added to the skip connections and the mid block (ControlNet); NULL = none.
 * down[i] has the shape of the i-th skip tensor, mid the mid block output. */
typedef struct sd__unet_residuals {
  int count;           /* number of down residuals (must equal the number of skips) */
  const float **down;
  const float *mid;
} sd__unet_residuals;

/* eps[B, out, h, w] = unet(x[B, in, h, w], t, text[B, Lt, cross_dim]). h and w divisible by
 * 2^(levels-1). Activations come from ctx's arena (reset before returning). Batch item b
 * attends to text rows [b*Lt, (b+1)*Lt); the whole batch runs as one pass. res->down[i] are in
 * diffusers' down_block_res_samples order (conv_in output first). The result does not depend
 * on ctx->threads. Errors: SD_ERR_INVALID (sizes, residual count), SD_ERR_LIMIT (h*w*B above
 * 2^24), SD_ERR_NOMEM (arena), SD_ERR_CANCELLED (ctx->cancel, polled between blocks). */
sd_status sd__unet_forward(const sd__unet *u, sd__ctx *ctx, const float *x, int B, int h, int w,
                           float t, const float *text, int Lt, const sd__unet_residuals *res,
                           float *eps, sd_error *err);

#endif
