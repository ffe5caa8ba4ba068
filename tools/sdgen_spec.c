/* sdgen_spec.c: the tensor list of a Stable Diffusion 1.x model, derived from its architecture
 * the way diffusers 0.27 / transformers 4.38 name and shape the parameters (CLIPTextModel,
 * UNet2DConditionModel with conv proj_in/proj_out, AutoencoderKL), and the deterministic
 * values of each tensor (PyTorch-like initialisation from a counter-based splitmix64 stream).
 * It knows nothing about files; sdgen_write.c writes what this lists.
 */
#include "sdgen.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sdgen_arch_sd15(sdgen_arch *a) {
  memset(a, 0, sizeof *a);
  a->vocab = 49408;
  a->hidden = 768;
  a->text_layers = 12;
  a->text_heads = 12;
  a->intermediate = 3072;
  a->positions = 77;
  a->unet_in = 4;
  a->unet_out = 4;
  a->levels = 4;
  static const int unet_ch[4] = {320, 640, 1280, 1280};
  static const int vae_ch[4] = {128, 256, 512, 512};
  for (int i = 0; i < 4; i++) {
    a->block_out[i] = unet_ch[i];
    a->down_attn[i] = i < 3;  /* CrossAttnDownBlock2D x3, DownBlock2D */
    a->up_attn[i] = i > 0;    /* UpBlock2D, CrossAttnUpBlock2D x3 */
    a->vae_block_out[i] = vae_ch[i];
  }
  a->layers_per_block = 2;
  a->heads = 8;
  a->cross_dim = 768;
  a->unet_sample_size = 64;
  a->vae_in = 3;
  a->vae_out = 3;
  a->latent = 4;
  a->vae_levels = 4;
  a->vae_layers = 2;
  a->vae_sample_size = 512;
  static const int cn_emb[4] = {16, 32, 96, 256};
  a->cn_cond_channels = 3;
  a->cn_emb_levels = 4;
  for (int i = 0; i < 4; i++) a->cn_emb_out[i] = cn_emb[i];
}

/* ---- values ---------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* splitmix64 output number `i` of the stream starting at state `key` */
static uint64_t stream_at(uint64_t key, uint64_t i) {
  return mix64(key + (i + 1) * 0x9E3779B97F4A7C15ull);
}

/* (0, 1): 53 random bits, never 0 (log in Box-Muller) */
static double unit_open(uint64_t h) { return ((double)(h >> 11) + 0.5) * 0x1p-53; }

void sdgen_fill(const sdgen_tensor *t, int64_t first, int64_t n, float *dst) {
  switch (t->init) {
  case SDGEN_INIT_ONES:
    for (int64_t i = 0; i < n; i++) dst[i] = 1.0f;
    break;
  case SDGEN_INIT_ZEROS:
    memset(dst, 0, (size_t)n * sizeof *dst);
    break;
  case SDGEN_INIT_ARANGE:
    for (int64_t i = 0; i < n; i++) dst[i] = (float)(first + i);
    break;
  case SDGEN_INIT_UNIFORM:
    for (int64_t i = 0; i < n; i++) {
      double u = unit_open(stream_at(t->key, (uint64_t)(first + i)));
      dst[i] = (float)((2.0 * u - 1.0) * t->param);
    }
    break;
  case SDGEN_INIT_NORMAL:
    /* Box-Muller on pairs (2k, 2k+1) drawn from stream numbers 2k and 2k+1 */
    for (int64_t i = 0; i < n; i++) {
      uint64_t e = (uint64_t)(first + i), k = e >> 1;
      double u1 = unit_open(stream_at(t->key, 2 * k));
      double u2 = unit_open(stream_at(t->key, 2 * k + 1));
      double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
      dst[i] = (float)(t->param * r * ((e & 1) ? sin(th) : cos(th)));
    }
    break;
  }
}

/* ---- the list -------------------------------------------------------------------------- */

typedef struct builder {
  sdgen_spec *s;
  sdgen_part part;
  uint64_t seed;
  int failed;
  char prefix[SDGEN_NAME_MAX];
} builder;

static uint64_t fnv1a(const char *s, uint64_t h) {
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
  return h;
}

static void add(builder *b, sdgen_init init, float param, int ndim, const int64_t *shape,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void add(builder *b, sdgen_init init, float param, int ndim, const int64_t *shape,
                const char *fmt, ...) {
  sdgen_spec *s = b->s;
  if (b->failed) return;
  if (s->count == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 512;
    sdgen_tensor *t = realloc(s->t, cap * sizeof *t);
    if (!t) {
      b->failed = 1;
      return;
    }
    s->t = t;
    s->cap = cap;
  }
  sdgen_tensor *t = &s->t[s->count++];
  memset(t, 0, sizeof *t);
  int len = snprintf(t->name, sizeof t->name, "%s", b->prefix);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->name + len, sizeof t->name - (size_t)len, fmt, ap);
  va_end(ap);
  t->part = b->part;
  t->ndim = ndim;
  t->numel = 1;
  for (int i = 0; i < ndim; i++) {
    t->shape[i] = shape[i];
    t->numel *= shape[i];
  }
  t->init = init;
  t->param = param;
  uint64_t h = fnv1a(t->name, 0xCBF29CE484222325ull ^ (uint64_t)(t->part + 1));
  t->key = mix64(b->seed ^ mix64(h));
}

/* weight [out, in(, k, k)] and bias [out] sharing the bound 1/sqrt(fan_in) like nn.Linear and
 * nn.Conv2d's defaults; k = 0 for a linear layer */
static void dense(builder *b, const char *name, int out, int in, int k, int bias) {
  int64_t fan_in = (int64_t)in * (k ? k * k : 1);
  float bound = (float)(1.0 / sqrt((double)fan_in));
  int64_t w[4] = {out, in, k, k}, bb[1] = {out};
  add(b, SDGEN_INIT_UNIFORM, bound, k ? 4 : 2, w, "%s.weight", name);
  if (bias) add(b, SDGEN_INIT_UNIFORM, bound, 1, bb, "%s.bias", name);
}

static void norm(builder *b, const char *name, int c) {
  int64_t sh[1] = {c};
  add(b, SDGEN_INIT_ONES, 0, 1, sh, "%s.weight", name);
  add(b, SDGEN_INIT_ZEROS, 0, 1, sh, "%s.bias", name);
}

static void with_prefix(builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void with_prefix(builder *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->prefix, sizeof b->prefix, fmt, ap);
  va_end(ap);
}

/* ---- CLIP text model ---- */

static void text_model(builder *b, const sdgen_arch *a) {
  int D = a->hidden, I = a->intermediate;
  int64_t tok[2] = {a->vocab, D}, pos[2] = {a->positions, D};
  with_prefix(b, "text_model.");
  add(b, SDGEN_INIT_NORMAL, 0.02f, 2, tok, "embeddings.token_embedding.weight");
  add(b, SDGEN_INIT_NORMAL, 0.02f, 2, pos, "embeddings.position_embedding.weight");
  for (int l = 0; l < a->text_layers; l++) {
    with_prefix(b, "text_model.encoder.layers.%d.", l);
    dense(b, "self_attn.k_proj", D, D, 0, 1);
    dense(b, "self_attn.v_proj", D, D, 0, 1);
    dense(b, "self_attn.q_proj", D, D, 0, 1);
    dense(b, "self_attn.out_proj", D, D, 0, 1);
    norm(b, "layer_norm1", D);
    dense(b, "mlp.fc1", I, D, 0, 1);
    dense(b, "mlp.fc2", D, I, 0, 1);
    norm(b, "layer_norm2", D);
  }
  with_prefix(b, "text_model.");
  norm(b, "final_layer_norm", D);
}

/* ---- UNet ---- */

/* ResnetBlock2D: in -> out channels, with (temb > 0) or without a time projection */
static void resnet(builder *b, int in, int out, int temb) {
  norm(b, "norm1", in);
  dense(b, "conv1", out, in, 3, 1);
  if (temb) dense(b, "time_emb_proj", out, temb, 0, 1);
  norm(b, "norm2", out);
  dense(b, "conv2", out, out, 3, 1);
  if (in != out) dense(b, "conv_shortcut", out, in, 1, 1);
}

/* Transformer2DModel with one BasicTransformerBlock, conv proj_in/proj_out, GEGLU FF */
static void transformer(builder *b, int C, int cross) {
  char base[SDGEN_NAME_MAX];
  snprintf(base, sizeof base, "%s", b->prefix);
  norm(b, "norm", C);
  dense(b, "proj_in", C, C, 1, 1);
  with_prefix(b, "%stransformer_blocks.0.", base);
  dense(b, "attn1.to_q", C, C, 0, 0);
  dense(b, "attn1.to_k", C, C, 0, 0);
  dense(b, "attn1.to_v", C, C, 0, 0);
  dense(b, "attn1.to_out.0", C, C, 0, 1);
  norm(b, "norm1", C);
  dense(b, "attn2.to_q", C, C, 0, 0);
  dense(b, "attn2.to_k", C, cross, 0, 0);
  dense(b, "attn2.to_v", C, cross, 0, 0);
  dense(b, "attn2.to_out.0", C, C, 0, 1);
  norm(b, "norm2", C);
  dense(b, "ff.net.0.proj", 8 * C, C, 0, 1);
  dense(b, "ff.net.2", C, 4 * C, 0, 1);
  norm(b, "norm3", C);
  with_prefix(b, "%s", base);
  dense(b, "proj_out", C, C, 1, 1);
}

/* time_embedding, conv_in, down_blocks and mid_block: shared by the UNet and the ControlNet */
static void unet_encoder(builder *b, const sdgen_arch *a) {
  int n = a->levels, c0 = a->block_out[0], temb = 4 * c0, L = a->layers_per_block;
  with_prefix(b, "%s", "");
  dense(b, "time_embedding.linear_1", temb, c0, 0, 1);
  dense(b, "time_embedding.linear_2", temb, temb, 0, 1);
  dense(b, "conv_in", c0, a->unet_in, 3, 1);
  int prev = c0;
  for (int i = 0; i < n; i++) {
    int out = a->block_out[i];
    for (int j = 0; j < L; j++) {
      with_prefix(b, "down_blocks.%d.resnets.%d.", i, j);
      resnet(b, j == 0 ? prev : out, out, temb);
      if (a->down_attn[i]) {
        with_prefix(b, "down_blocks.%d.attentions.%d.", i, j);
        transformer(b, out, a->cross_dim);
      }
    }
    if (i < n - 1) {
      with_prefix(b, "down_blocks.%d.downsamplers.0.", i);
      dense(b, "conv", out, out, 3, 1);
    }
    prev = out;
  }
  int cm = a->block_out[n - 1];
  with_prefix(b, "mid_block.resnets.0.");
  resnet(b, cm, cm, temb);
  with_prefix(b, "mid_block.attentions.0.");
  transformer(b, cm, a->cross_dim);
  with_prefix(b, "mid_block.resnets.1.");
  resnet(b, cm, cm, temb);
}

static void unet(builder *b, const sdgen_arch *a) {
  int n = a->levels, c0 = a->block_out[0], temb = 4 * c0, L = a->layers_per_block;
  unet_encoder(b, a);
  int prev;
  /* up block i works at rev[i] channels; its resnet j takes the previous output (j == 0:
   * the block below's output) concatenated with a skip: rev[i] for all but the last, which
   * takes the next shallower level's width (the skip from that level's downsampler/input) */
  int rev[SDGEN_MAX_LEVELS];
  for (int i = 0; i < n; i++) rev[i] = a->block_out[n - 1 - i];
  prev = rev[0];
  for (int i = 0; i < n; i++) {
    int out = rev[i], input = rev[i + 1 < n ? i + 1 : n - 1];
    for (int j = 0; j <= L; j++) {
      int skip = j == L ? input : out, rin = j == 0 ? prev : out;
      with_prefix(b, "up_blocks.%d.resnets.%d.", i, j);
      resnet(b, rin + skip, out, temb);
      if (a->up_attn[i]) {
        with_prefix(b, "up_blocks.%d.attentions.%d.", i, j);
        transformer(b, out, a->cross_dim);
      }
    }
    if (i < n - 1) {
      with_prefix(b, "up_blocks.%d.upsamplers.0.", i);
      dense(b, "conv", out, out, 3, 1);
    }
    prev = out;
  }
  with_prefix(b, "%s", "");
  norm(b, "conv_norm_out", c0);
  dense(b, "conv_out", a->unet_out, c0, 3, 1);
}

/* ---- ControlNet ---- */

/* ControlNetModel (diffusers 0.27 controlnet.py): the UNet's encoder, the hint encoder
 * (ControlNetConditioningEmbedding: conv_in, then per step a 3x3 conv keeping the width and a
 * stride-2 3x3 conv widening it, conv_out to block_out[0]), one 1x1 conv per skip tensor
 * (conv_in's output, each resnet's, each downsampler's) and one after the mid block. */
static void controlnet(builder *b, const sdgen_arch *a) {
  int n = a->levels, L = a->layers_per_block, ne = a->cn_emb_levels, k = 0;
  unet_encoder(b, a);
  with_prefix(b, "controlnet_cond_embedding.");
  dense(b, "conv_in", a->cn_emb_out[0], a->cn_cond_channels, 3, 1);
  for (int i = 0; i + 1 < ne; i++) {
    char name[64];
    snprintf(name, sizeof name, "blocks.%d", 2 * i);
    dense(b, name, a->cn_emb_out[i], a->cn_emb_out[i], 3, 1);
    snprintf(name, sizeof name, "blocks.%d", 2 * i + 1);
    dense(b, name, a->cn_emb_out[i + 1], a->cn_emb_out[i], 3, 1);
  }
  dense(b, "conv_out", a->block_out[0], a->cn_emb_out[ne - 1], 3, 1);
  with_prefix(b, "%s", "");
  char name[64];
  snprintf(name, sizeof name, "controlnet_down_blocks.%d", k++);
  dense(b, name, a->block_out[0], a->block_out[0], 1, 1);
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < L + (i < n - 1); j++) {
      snprintf(name, sizeof name, "controlnet_down_blocks.%d", k++);
      dense(b, name, a->block_out[i], a->block_out[i], 1, 1);
    }
  }
  dense(b, "controlnet_mid_block", a->block_out[n - 1], a->block_out[n - 1], 1, 1);
}

int sdgen_spec_build_controlnet(const sdgen_arch *a, uint64_t seed, sdgen_spec *out) {
  memset(out, 0, sizeof *out);
  builder b = {.s = out, .seed = seed, .part = SDGEN_CONTROLNET};
  controlnet(&b, a);
  if (b.failed) {
    sdgen_spec_free(out);
    return -1;
  }
  return 0;
}

/* ---- VAE ---- */

/* UNetMidBlock2D: resnet, single-head attention (diffusers' Attention with biases), resnet */
static void vae_mid(builder *b, const char *side, int C) {
  with_prefix(b, "%s.mid_block.resnets.0.", side);
  resnet(b, C, C, 0);
  with_prefix(b, "%s.mid_block.attentions.0.", side);
  norm(b, "group_norm", C);
  dense(b, "to_q", C, C, 0, 1);
  dense(b, "to_k", C, C, 0, 1);
  dense(b, "to_v", C, C, 0, 1);
  dense(b, "to_out.0", C, C, 0, 1);
  with_prefix(b, "%s.mid_block.resnets.1.", side);
  resnet(b, C, C, 0);
}

static void vae(builder *b, const sdgen_arch *a) {
  int n = a->vae_levels, L = a->vae_layers, c0 = a->vae_block_out[0];
  int cl = a->vae_block_out[n - 1], z = a->latent;
  with_prefix(b, "encoder.");
  dense(b, "conv_in", c0, a->vae_in, 3, 1);
  int prev = c0;
  for (int i = 0; i < n; i++) {
    int out = a->vae_block_out[i];
    for (int j = 0; j < L; j++) {
      with_prefix(b, "encoder.down_blocks.%d.resnets.%d.", i, j);
      resnet(b, j == 0 ? prev : out, out, 0);
    }
    if (i < n - 1) {
      with_prefix(b, "encoder.down_blocks.%d.downsamplers.0.", i);
      dense(b, "conv", out, out, 3, 1);
    }
    prev = out;
  }
  vae_mid(b, "encoder", cl);
  with_prefix(b, "encoder.");
  norm(b, "conv_norm_out", cl);
  dense(b, "conv_out", 2 * z, cl, 3, 1);

  with_prefix(b, "decoder.");
  dense(b, "conv_in", cl, z, 3, 1);
  vae_mid(b, "decoder", cl);
  prev = cl;
  for (int i = 0; i < n; i++) {
    int out = a->vae_block_out[n - 1 - i];
    for (int j = 0; j <= L; j++) {
      with_prefix(b, "decoder.up_blocks.%d.resnets.%d.", i, j);
      resnet(b, j == 0 ? prev : out, out, 0);
    }
    if (i < n - 1) {
      with_prefix(b, "decoder.up_blocks.%d.upsamplers.0.", i);
      dense(b, "conv", out, out, 3, 1);
    }
    prev = out;
  }
  with_prefix(b, "decoder.");
  norm(b, "conv_norm_out", c0);
  dense(b, "conv_out", a->vae_out, c0, 3, 1);
  with_prefix(b, "%s", "");
  dense(b, "quant_conv", 2 * z, 2 * z, 1, 1);
  dense(b, "post_quant_conv", z, z, 1, 1);
}

int sdgen_spec_build(const sdgen_arch *a, uint64_t seed, sdgen_spec *out) {
  memset(out, 0, sizeof *out);
  builder b = {.s = out, .seed = seed};
  b.part = SDGEN_TEXT;
  text_model(&b, a);
  b.part = SDGEN_UNET;
  unet(&b, a);
  b.part = SDGEN_VAE;
  vae(&b, a);
  if (b.failed) {
    sdgen_spec_free(out);
    return -1;
  }
  return 0;
}

void sdgen_spec_free(sdgen_spec *s) {
  if (!s) return;
  free(s->t);
  memset(s, 0, sizeof *s);
}

int64_t sdgen_spec_params(const sdgen_spec *s, sdgen_part part) {
  int64_t n = 0;
  for (size_t i = 0; i < s->count; i++)
    if (s->t[i].part == part && s->t[i].init != SDGEN_INIT_ARANGE) n += s->t[i].numel;
  return n;
}
