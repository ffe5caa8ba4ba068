/* vae.h: the autoencoders of latent diffusion: diffusers' AutoencoderKL (what Stable
 * Diffusion ships) and VQModel (the LDM paper's VQ-regularised variant: the decoder input goes
 * through nearest-codebook quantisation). Encoder and decoder share one config. */
#ifndef SD_VAE_H
#define SD_VAE_H

#include "json.h"
#include "ops.h"
#include "weights.h"

#define SD_VAE_MAX_LEVELS 8

typedef struct sd__vae_config {
  int is_vq;                /* VQModel */
  int in_channels, out_channels, latent_channels;
  int levels;
  int block_out_channels[SD_VAE_MAX_LEVELS];
  int layers_per_block;
  int norm_groups;
  float scaling_factor;     /* 0.18215 for SD1.x KL, 1.0 for LDM VQ */
  int num_vq_embeddings, vq_embed_dim; /* VQ only */
  int mid_attention;        /* mid block has attention (default 1) */
  int sample_size;
} sd__vae_config;

/* Fill cfg from a diffusers vae/config.json (AutoencoderKL or VQModel, each class's own
 * constructor defaults). SD_ERR_UNSUPPORTED for other classes, block types, act_fn,
 * norm_type "spatial" or lookup_from_codebook; SD_ERR_FORMAT for malformed values. */
sd_status sd__vae_config_from_json(const sd_json *j, sd__vae_config *cfg, sd_error *err);
/* Fill cfg from tensor shapes (single-file checkpoints): channels and levels from the
 * decoder, VQ when quantize.embedding.weight exists. norm_groups is assumed 32 and
 * scaling_factor 0.18215 (KL) or 1.0 (VQ): neither can be read from weights. */
sd_status sd__vae_config_infer(sd__wsrc *src, sd__vae_config *cfg, sd_error *err);

typedef struct sd__vae sd__vae;

/* Bind every weight (shapes checked against cfg) into a new *out; the weights stay in src,
 * which must outlive the vae. The encoder is optional (absent encoder.conv_in.weight), but a
 * partial one is an error. Free with sd__vae_destroy (NULL accepted). */
sd_status sd__vae_load(sd__wsrc *src, const sd__vae_config *cfg, sd__vae **out, sd_error *err);
void sd__vae_destroy(sd__vae *v);
const sd__vae_config *sd__vae_get_config(const sd__vae *v);

/* image[1, out, 8h, 8w] = decode(z[1, latent, h, w]) where z is already divided by the scaling
 * factor (what diffusers passes to vae.decode). For VQ, quantize first unless
 * force_not_quantize (z then has vq_embed_dim channels). Range nominally [-1, 1], not clamped.
 * 8 is 2^(levels-1). Scratch from ctx->arena (released on return, see
 * sd__vae_workspace_bytes); polls ctx->cancel after every block (SD_ERR_CANCELLED). */
sd_status sd__vae_decode(const sd__vae *v, sd__ctx *ctx, const float *z, int h, int w,
                         int force_not_quantize, float *image, sd_error *err);

/* moments[1, 2*latent, H/8, W/8] = quant_conv(encoder(image[1, in, H, W])) for KL (mean then
 * logvar); for VQ, latents[1, vq_embed_dim, H/8, W/8] = quant_conv(encoder(image)) (no
 * distribution: the latent itself). H, W multiples of 8; SD_ERR_MISSING without encoder
 * weights. Memory and cancellation as sd__vae_decode. */
sd_status sd__vae_encode(const sd__vae *v, sd__ctx *ctx, const float *image, int H, int W,
                         float *out, sd_error *err);

/* VQ only: idx[h*w] and quant[1, C, h, w] = nearest codebook entries of z[1, C, h, w]
 * (torch.cdist's matrix-product distance, first index on ties). */
sd_status sd__vae_quantize(const sd__vae *v, const float *z, int h, int w, int64_t *idx,
                           float *quant, sd_error *err);

/* The decoder's input: out[1, latent, h, w] = post_quant_conv(z'), where z' = quantize(z) for
 * VQ when quantize is nonzero, else z (z[1, C, h, w], C = vq_embed_dim for VQ, latent for
 * KL). The first stage of sd__vae_decode, exposed for stage tests. */
sd_status sd__vae_post_quant(const sd__vae *v, sd__ctx *ctx, const float *z, int h, int w,
                             int quantize, float *out, sd_error *err);

/* Bytes of ctx->arena one call takes for its activations and attention scratch, not counting
 * the kernels' own im2col tiles: sd__vae_decode of an h x w latent (encode 0), or
 * sd__vae_encode of an h x w image (encode 1). 0 when the size is out of range. For sizing a
 * job's arena before it starts (SD 1.x decode at 512x512: about 0.8 GB). */
size_t sd__vae_workspace_bytes(const sd__vae_config *cfg, int h, int w, int encode);

#endif
