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

sd_status sd__vae_config_from_json(const sd_json *j, sd__vae_config *cfg, sd_error *err);
sd_status sd__vae_config_infer(sd__wsrc *src, sd__vae_config *cfg, sd_error *err);

typedef struct sd__vae sd__vae;

sd_status sd__vae_load(sd__wsrc *src, const sd__vae_config *cfg, sd__vae **out, sd_error *err);
void sd__vae_destroy(sd__vae *v);
const sd__vae_config *sd__vae_get_config(const sd__vae *v);

/* image[1, out, 8h, 8w] = decode(z[1, latent, h, w]) where z is already divided by the scaling
 * factor (what diffusers passes to vae.decode). For VQ, quantize first unless
 * force_not_quantize. Range nominally [-1, 1], not clamped. */
sd_status sd__vae_decode(const sd__vae *v, sd__ctx *ctx, const float *z, int h, int w,
                         int force_not_quantize, float *image, sd_error *err);

/* moments[1, 2*latent, H/8, W/8] = quant_conv(encoder(image[1, in, H, W])) for KL (mean then
 * logvar); for VQ, latents[1, latent, H/8, W/8] = quant_conv(encoder(image)). */
sd_status sd__vae_encode(const sd__vae *v, sd__ctx *ctx, const float *image, int H, int W,
                         float *out, sd_error *err);

/* VQ only: idx[h*w] and quant[1, C, h, w] = nearest codebook entries of z[1, C, h, w]
 * (torch.cdist's matrix-product distance, first index on ties). */
sd_status sd__vae_quantize(const sd__vae *v, const float *z, int h, int w, int64_t *idx,
                           float *quant, sd_error *err);

#endif
