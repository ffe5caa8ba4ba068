/* controlnet.h: diffusers' ControlNetModel (0.27) for SD 1.x: a trainable copy of the UNet's
 * encoder (conv_in, down blocks, mid block) steered by a hint image through a small conv
 * encoder (ControlNetConditioningEmbedding). Every skip tensor of the copy and its mid output
 * go through a 1x1 "zero convolution" and are added, times a conditioning scale, to the UNet's
 * skips and mid output (sd__unet_residuals). The block code is the UNet's (unet_blocks.h).
 *
 * Legend: B batch, C channels, h x w latent size, H x W image size (H = h * 2^(nemb-1)).
 */
#ifndef SD_CONTROLNET_H
#define SD_CONTROLNET_H

#include "json.h"
#include "ops.h"
#include "unet_blocks.h"
#include "weights.h"

#define SD__CN_MAX_EMB 8 /* entries of conditioning_embedding_out_channels */
/* conv_in + (layers + downsampler) per level */
#define SD__CN_MAX_SKIPS (1 + SD_UNET_MAX_LEVELS * (SD__UNET_MAX_LAYERS + 1))

typedef struct sd__controlnet_config {
  sd__unet_config unet;        /* the encoder copy; out_channels and up_has_attn unused */
  int cond_channels;           /* conditioning_channels (3: RGB) */
  int nemb;                    /* len(conditioning_embedding_out_channels) */
  int emb_channels[SD__CN_MAX_EMB];
  int bgr;                     /* controlnet_conditioning_channel_order "bgr" */
} sd__controlnet_config;

/* From the ControlNet's config.json (ControlNetModel keys; unsupported options refused). */
sd_status sd__controlnet_config_from_json(const sd_json *j, sd__controlnet_config *cfg,
                                          sd_error *err);
/* From tensor shapes (diffusers names, after translation). Heads: 8 per level (SD 1.x), or
 * 64-channel heads for SD 2.x-style nets (linear projections, 1024-d text). */
sd_status sd__controlnet_config_infer(sd__wsrc *src, sd__controlnet_config *cfg, sd_error *err);

/* The loaded net (the public handle of sd.h). */
const sd__controlnet_config *sd__controlnet_get_config(const sd_controlnet *cn);
/* File or folder base name, for messages. */
const char *sd__controlnet_name(const sd_controlnet *cn);

/* Whether the net fits a base UNet: same in_channels, levels, block channels, layers per block
 * and cross_attention_dim. SD_ERR_INVALID with a message naming the first difference. */
sd_status sd__controlnet_check_base(const sd_controlnet *cn, const sd__unet_config *base,
                                    sd_error *err);

/* Latent size the hint encoder produces for an H x W hint: H / 2^(nemb-1); -1 when H or W is
 * not divisible. */
int sd__controlnet_hint_scale(const sd_controlnet *cn);

/* hint[c0, H/f, W/f] = ControlNetConditioningEmbedding(cond[cond_channels, H, W]) for one image
 * (cond: RGB planes, uint8 / 255 as diffusers' control image processor gives them; a "bgr" net
 * gets the channels flipped here). Scratch from ctx's arena, released before returning. */
sd_status sd__controlnet_hint(const sd_controlnet *cn, sd__ctx *ctx, const float *cond, int H,
                              int W, float *hint, sd_error *err);

/* Residual accumulators for one UNet evaluation: one tensor per skip connection of the base
 * UNet's encoder, plus the mid block's, batch B, for latents h x w. One malloc'ed block. */
typedef struct sd__cn_residuals {
  int count;                        /* skip tensors */
  int B, c[SD__CN_MAX_SKIPS], hh[SD__CN_MAX_SKIPS], ww[SD__CN_MAX_SKIPS];
  float *down[SD__CN_MAX_SKIPS];
  float *mid;
  int mid_c, mid_h, mid_w;
  size_t floats;                    /* total floats in buf */
  float *buf;
} sd__cn_residuals;

/* Lay out and allocate the accumulators for a UNet config (zeroed). Free with
 * sd__cn_residuals_free. */
sd_status sd__cn_residuals_init(sd__cn_residuals *r, const sd__unet_config *c, int B, int h,
                                int w, sd_error *err);
void sd__cn_residuals_free(sd__cn_residuals *r);
void sd__cn_residuals_zero(sd__cn_residuals *r);
/* The view sd__unet_forward takes (down must hold r->count pointers). */
void sd__cn_residuals_view(const sd__cn_residuals *r, const float **down,
                           sd__unet_residuals *view);

/* Run the net on x[B, in, h, w] at timestep t with text[B, Lt, D] and the hint of
 * sd__controlnet_hint (hint[c0, h, w], the same for every batch row), and add
 * scale * (zero-conv outputs) to the accumulators r (laid out for the same B, h, w).
 * Scratch from ctx's arena, released before returning. */
sd_status sd__controlnet_forward(const sd_controlnet *cn, sd__ctx *ctx, const float *x, int B,
                                 int h, int w, float t, const float *text, int Lt,
                                 const float *hint, float scale, sd__cn_residuals *r,
                                 sd_error *err);

#endif
