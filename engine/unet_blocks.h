/* unet_blocks.h: the two building blocks of the SD UNet (and of a ControlNet, which copies the
 * UNet's encoder): diffusers' ResnetBlock2D and Transformer2DModel (continuous input, with
 * BasicTransformerBlocks of self-attention, cross-attention and a GEGLU feed-forward). Weights
 * are borrowed from a weight source; activations come from the job's arena.
 *
 * Legend: B batch, C channels, H x W spatial (HW = H * W), L = HW tokens, Lt text tokens,
 * D text features (cross_attention_dim), T time-embedding features (4 * block_out_channels[0]).
 */
#ifndef SD_UNET_BLOCKS_H
#define SD_UNET_BLOCKS_H

#include "ops.h"
#include "unet.h"
#include "weights.h"

/* Largest supported layers_per_block (SD 1.x: 2) and transformer depth (SDXL: 10). */
#define SD__UNET_MAX_LAYERS 8
#define SD__UNET_MAX_DEPTH 64

/* Validate a config built by hand or by unet_config.c and fill head_dim from heads. */
sd_status sd__unet_config_check(sd__unet_config *cfg, sd_error *err);
/* Config inference shared by the UNet and the ControlNet (unet_config.c): mid attention,
 * cross-attention width, projection kind and depth read from the first attention block
 * `first_down` ("" when the down path has none), heads and norms by SD convention. Needs
 * levels and block_out_channels already set; `what` names the model in messages. */
sd_status sd__unet_config_infer_attention(sd__wsrc *src, const char *first_down,
                                          sd__unet_config *c, const char *what,
                                          sd_error *err);

/* out[dim] = diffusers' get_timestep_embedding(t, dim, flip_sin_to_cos, freq_shift) in float32
 * (sin half then cos half, swapped when flip). Shared with the ControlNet (unet.c). */
void sd__unet_timestep_embedding(float t, int dim, int flip, int shift, float *out);

/* All functions below require a non-NULL err. */

/* ResnetBlock2D (resnet.py), time_embedding_norm "default", output_scale_factor 1. */
typedef struct sd__unet_resnet {
  int cin, cout, groups;
  float eps;
  const float *norm1_w, *norm1_b;   /* [cin] */
  const float *conv1_w, *conv1_b;   /* [cout, cin, 3, 3], [cout] */
  const float *temb_w, *temb_b;     /* time_emb_proj [cout, T], [cout] */
  const float *norm2_w, *norm2_b;   /* [cout] */
  const float *conv2_w, *conv2_b;   /* [cout, cout, 3, 3], [cout] */
  const float *short_w, *short_b;   /* conv_shortcut [cout, cin, 1, 1] when cin != cout, else NULL */
} sd__unet_resnet;

/* One BasicTransformerBlock (attention.py, norm_type "layer_norm", LayerNorm eps 1e-5). */
typedef struct sd__unet_tblock {
  const float *norm1_w, *norm1_b, *norm2_w, *norm2_b, *norm3_w, *norm3_b; /* [C] */
  const float *q1, *k1, *v1;          /* attn1 to_q/to_k/to_v [C, C], no bias */
  const float *o1_w, *o1_b;           /* attn1 to_out.0 [C, C], [C] */
  const float *q2, *k2, *v2;          /* attn2 to_q [C, C]; to_k/to_v [C, D]; no bias */
  const float *o2_w, *o2_b;           /* attn2 to_out.0 */
  const float *ff1_w, *ff1_b;         /* ff.net.0.proj [8C, C], [8C] (GEGLU: value, gate) */
  const float *ff2_w, *ff2_b;         /* ff.net.2 [C, 4C], [C] */
} sd__unet_tblock;

/* Transformer2DModel: GroupNorm(groups, eps 1e-6) -> proj_in -> blocks -> proj_out -> + input.
 * A 1x1-conv projection and a linear one compute the same map (they differ only in whether the
 * NCHW -> tokens permutation comes before or after), so both are stored as [C, C]. */
typedef struct sd__unet_xformer {
  int c, heads, head_dim, groups, cross_dim, nblocks;
  const float *norm_w, *norm_b;
  const float *proj_in_w, *proj_in_b, *proj_out_w, *proj_out_b; /* [C, C], [C] */
  sd__unet_tblock *blocks;                                      /* nblocks, owned */
} sd__unet_xformer;

/* Fill r from `<prefix>.norm1.weight` etc. (prefix like "down_blocks.0.resnets.1"), checking
 * every shape against cin, cout and temb_dim. Borrowed pointers live as long as src. */
sd_status sd__unet_resnet_load(sd__wsrc *src, const char *prefix, int cin, int cout,
                               int temb_dim, int groups, float eps, sd__unet_resnet *r,
                               sd_error *err);

/* out[B, cout, H, W] = resnet(x[B, cin, H, W], temb_act[B, T]) where temb_act is already
 * SiLU(temb). out must not alias x. Scratch from ctx->arena, released before returning. */
sd_status sd__unet_resnet_forward(sd__ctx *ctx, const sd__unet_resnet *r, const float *x, int B,
                                  int H, int W, const float *temb_act, int temb_dim, float *out,
                                  sd_error *err);

/* Fill t from `<prefix>.norm.weight`, `<prefix>.transformer_blocks.{k}...` (nblocks blocks;
 * allocates t->blocks: release with sd__unet_xformer_free). */
sd_status sd__unet_xformer_load(sd__wsrc *src, const char *prefix, int c, int heads,
                                int nblocks, int cross_dim, int groups, sd__unet_xformer *t,
                                sd_error *err);
void sd__unet_xformer_free(sd__unet_xformer *t);

/* In place: x[B, C, H, W] = transformer(x, text[B, Lt, D]). Batch item b attends to its own
 * text rows. Scratch from ctx->arena, released before returning. */
sd_status sd__unet_xformer_forward(sd__ctx *ctx, const sd__unet_xformer *t, float *x, int B,
                                   int H, int W, const float *text, int Lt, sd_error *err);

#endif
