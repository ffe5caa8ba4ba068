/* vae_impl.h: the autoencoder's private layout, shared by vae.c (configuration, weight
 * binding, quantizer) and vae_run.c (forward passes). Not for other modules: use vae.h.
 * Every pointer is borrowed from the weight source; shapes were checked when bound.
 */
#ifndef SD_VAE_IMPL_H
#define SD_VAE_IMPL_H

#include "vae.h"

#define VAE_MAX_LAYERS 8       /* resnets per encoder block (the decoder has one more) */
#define VAE_MAX_LATENT 8192    /* latent side bound, keeps every size product in range */
#define VAE_EPS 1e-6f          /* every GroupNorm of the VAE (resnets, attention, outputs) */

typedef struct vae_conv {
  const float *w, *b; /* [co, ci, k, k], [co] */
  int co, ci, k;
} vae_conv;

typedef struct vae_norm {
  const float *g, *b; /* [c] */
  int c;
} vae_norm;

/* ResnetBlock2D without time embedding. */
typedef struct vae_resnet {
  int cin, cout, has_shortcut;
  vae_norm norm1, norm2;
  vae_conv conv1, conv2, shortcut; /* shortcut 1x1 only when cin != cout */
} vae_resnet;

/* Attention(C, heads 1, dim_head C, group_norm, residual): q, k, v, out linears [C, C]. */
typedef struct vae_attn {
  int c;
  vae_norm norm;
  const float *w[4], *b[4]; /* to_q, to_k, to_v, to_out.0 */
} vae_attn;

/* UNetMidBlock2D: resnet, attention (optional), resnet. */
typedef struct vae_mid {
  vae_resnet res[2];
  vae_attn attn;
  int has_attn;
} vae_mid;

typedef struct vae_encoder {
  vae_conv conv_in;
  vae_resnet res[SD_VAE_MAX_LEVELS][VAE_MAX_LAYERS];
  vae_conv down[SD_VAE_MAX_LEVELS]; /* all but the last level */
  vae_mid mid;
  vae_norm norm_out;
  vae_conv conv_out, quant_conv;
} vae_encoder;

/* Upsample2D (nearest 2x, then a 3x3 conv) folded into one 2x2 conv on the small input: output
 * phase (a, b) of pixel (2i+a, 2j+b) only sees input rows {i-1, i} (a = 0) or {i, i+1} (a = 1),
 * and likewise for columns, so its 3x3 taps sum into 2x2. w [4*co, ci, 2, 2] stacks the phases
 * p = 2a+b; 16 instead of 36 multiply-adds per input pixel and channel pair. Owned. */
typedef struct vae_upconv {
  float *w, *b; /* [4*co, ci, 2, 2], [4*co] */
  int co, ci;
} vae_upconv;

typedef struct vae_decoder {
  vae_conv post_quant_conv, conv_in;
  vae_mid mid;
  vae_resnet res[SD_VAE_MAX_LEVELS][VAE_MAX_LAYERS + 1];
  vae_conv up[SD_VAE_MAX_LEVELS];     /* all but the last level */
  vae_upconv up4[SD_VAE_MAX_LEVELS];  /* the same, folded (what decode runs) */
  vae_norm norm_out;
  vae_conv conv_out;
} vae_decoder;

struct sd__vae {
  sd__vae_config cfg;
  int has_encoder;
  vae_encoder enc;
  vae_decoder dec;
  const float *codebook; /* VQ: [num_vq_embeddings, vq_embed_dim] */
};

#endif
