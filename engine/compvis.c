/* compvis.c: diffusers-name -> CompVis-name translators for single-file checkpoints.
 *
 * openaimodel numbers its UNet blocks flatly: input_blocks.0 is conv_in, then for each level
 * i and layer j input_blocks.1+i*(lpb+1)+j = [ResBlock, SpatialTransformer?], with the
 * downsampler alone at input_blocks.(i+1)*(lpb+1); output_blocks.k*(lpb+1)+j = [ResBlock,
 * SpatialTransformer?, Upsample?] for diffusers up block k, layer j (the upsampler in the last
 * layer, at index 1 or 2). The layout is inferred from the keys, never assumed. See
 * diffusers' convert_from_ckpt.py for the reverse direction. Names are parsed, not pattern-
 * replaced, so a name that has no counterpart is refused instead of mistranslated.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compvis.h"

/* ---- small parsing helpers over a cursor ---- */

static int eat(const char **p, const char *lit) {
  size_t n = strlen(lit);
  if (strncmp(*p, lit, n) != 0) return 0;
  *p += n;
  return 1;
}

/* A decimal index followed by '.', e.g. "12." */
static int eat_index(const char **p, int *v) {
  const char *s = *p;
  if (*s < '0' || *s > '9') return 0;
  long x = 0;
  while (*s >= '0' && *s <= '9') {
    x = x * 10 + (*s - '0');
    if (x > 100000) return 0;
    s++;
  }
  if (*s != '.') return 0;
  *v = (int)x;
  *p = s + 1;
  return 1;
}

static int emit(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int emit(char *out, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, cap, fmt, ap);
  va_end(ap);
  return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

int sd__cv_has_prefix(const sd_safetensors *f, const char *prefix) {
  size_t n = strlen(prefix);
  for (size_t i = 0; i < f->count; i++)
    if (strncmp(f->tensors[i].name, prefix, n) == 0) return 1;
  return 0;
}

static int has(const sd_safetensors *f, const char *prefix, const char *fmt, int a, int b) {
  char name[256];
  int n = snprintf(name, sizeof name, "%s", prefix);
  snprintf(name + n, sizeof name - (size_t)n, fmt, a, b);
  return sd__st_find(f, name) != NULL;
}

/* ---- UNet / ControlNet ---- */

/* ResBlock parameter names: diffusers -> openaimodel. */
static const char *resnet_part(const char **p) {
  static const struct {
    const char *diff, *cv;
  } parts[] = {{"norm1.", "in_layers.0."},     {"conv1.", "in_layers.2."},
               {"time_emb_proj.", "emb_layers.1."}, {"norm2.", "out_layers.0."},
               {"conv2.", "out_layers.3."},    {"conv_shortcut.", "skip_connection."}};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    if (eat(p, parts[i].diff)) return parts[i].cv;
  return NULL;
}

sd_status sd__cv_unet_map_init(const sd_safetensors *f, const char *prefix, sd__cv_unet_map *m,
                               sd_error *err) {
  memset(m, 0, sizeof *m);
  size_t pl = strlen(prefix);
  int max_in = -1, max_out = -1, first_op = -1, max_hint = -1;
  for (size_t i = 0; i < f->count; i++) {
    const char *s = f->tensors[i].name;
    if (strncmp(s, prefix, pl) != 0) continue;
    s += pl;
    int n, k;
    if (eat(&s, "input_blocks.") && eat_index(&s, &n)) {
      if (n > max_in) max_in = n;
      if (eat_index(&s, &k) && eat(&s, "op.") && (first_op < 0 || n < first_op)) first_op = n;
    } else if (eat(&s, "output_blocks.") && eat_index(&s, &n)) {
      if (n > max_out) max_out = n;
    } else if (eat(&s, "input_hint_block.") && eat_index(&s, &n)) {
      if (n > max_hint) max_hint = n;
    }
  }
  int n_in = max_in + 1, n_out = max_out + 1;
  if (n_in < 2)
    return sd__err(err, SD_ERR_FORMAT, "%s: no UNet input_blocks under \"%s\"", f->path, prefix);
  int lpb, levels;
  if (first_op > 0) {
    lpb = first_op - 1;
    levels = n_in / (lpb + 1);
  } else { /* a single level: no downsampler */
    lpb = n_in - 1;
    levels = 1;
  }
  if (lpb < 1 || levels < 1 || levels > SD_CV_MAX_LEVELS || n_in != levels * (lpb + 1) ||
      (n_out != 0 && n_out != levels * (lpb + 1)))
    return sd__err(err, SD_ERR_FORMAT,
                   "%s: UNet blocks under \"%s\" do not form a regular layout (%d input blocks, "
                   "%d output blocks, first downsampler at %d)",
                   f->path, prefix, n_in, n_out, first_op);
  m->levels = levels;
  m->layers_per_block = lpb;
  m->has_decoder = n_out > 0;
  for (int i = 0; i < levels; i++) {
    m->down_attn[i] = has(f, prefix, "input_blocks.%d.1.proj_in.weight", 1 + i * (lpb + 1), 0);
    if (m->has_decoder)
      m->up_attn[i] = has(f, prefix, "output_blocks.%d.1.proj_in.weight", i * (lpb + 1), 0);
    /* every non-final level downsamples */
    if (i < levels - 1 && !has(f, prefix, "input_blocks.%d.0.op.weight", (i + 1) * (lpb + 1), 0))
      return sd__err(err, SD_ERR_FORMAT, "%s: UNet level %d under \"%s\" has no downsampler",
                     f->path, i, prefix);
  }
  /* hint block: conv_in at 0, then convs at 2, 4, ..., conv_out last (SiLUs between) */
  if (max_hint >= 2) m->hint_blocks = (max_hint - 2) / 2;
  return SD_OK;
}

int sd__cv_unet_name(void *user, const char *name, char *out, size_t cap) {
  const sd__cv_unet_map *m = user;
  const int L = m->levels, lpb = m->layers_per_block;
  const char *p = name;
  const char *part;
  int i, j, z;
  if (eat(&p, "time_embedding.linear_1.")) return emit(out, cap, "time_embed.0.%s", p);
  if (eat(&p, "time_embedding.linear_2.")) return emit(out, cap, "time_embed.2.%s", p);
  if (eat(&p, "class_embedding.linear_1.")) return emit(out, cap, "label_emb.0.0.%s", p);
  if (eat(&p, "class_embedding.linear_2.")) return emit(out, cap, "label_emb.0.2.%s", p);
  if (eat(&p, "conv_in.")) return emit(out, cap, "input_blocks.0.0.%s", p);
  if (eat(&p, "conv_norm_out.")) return m->has_decoder ? emit(out, cap, "out.0.%s", p) : -1;
  if (eat(&p, "conv_out.")) return m->has_decoder ? emit(out, cap, "out.2.%s", p) : -1;
  if (eat(&p, "down_blocks.")) {
    if (!eat_index(&p, &i) || i >= L) return -1;
    if (eat(&p, "resnets.")) {
      if (!eat_index(&p, &j) || j >= lpb || !(part = resnet_part(&p))) return -1;
      return emit(out, cap, "input_blocks.%d.0.%s%s", 1 + i * (lpb + 1) + j, part, p);
    }
    if (eat(&p, "attentions.")) {
      if (!eat_index(&p, &j) || j >= lpb || !m->down_attn[i]) return -1;
      return emit(out, cap, "input_blocks.%d.1.%s", 1 + i * (lpb + 1) + j, p);
    }
    if (eat(&p, "downsamplers.0.conv.")) {
      if (i >= L - 1) return -1;
      return emit(out, cap, "input_blocks.%d.0.op.%s", (i + 1) * (lpb + 1), p);
    }
    return -1;
  }
  if (eat(&p, "mid_block.")) {
    if (eat(&p, "attentions.0.")) return emit(out, cap, "middle_block.1.%s", p);
    if (eat(&p, "resnets.") && eat_index(&p, &j) && j <= 1 && (part = resnet_part(&p)))
      return emit(out, cap, "middle_block.%d.%s%s", 2 * j, part, p);
    return -1;
  }
  if (eat(&p, "up_blocks.")) {
    if (!m->has_decoder || !eat_index(&p, &i) || i >= L) return -1;
    if (eat(&p, "resnets.")) {
      if (!eat_index(&p, &j) || j > lpb || !(part = resnet_part(&p))) return -1;
      return emit(out, cap, "output_blocks.%d.0.%s%s", i * (lpb + 1) + j, part, p);
    }
    if (eat(&p, "attentions.")) {
      if (!eat_index(&p, &j) || j > lpb || !m->up_attn[i]) return -1;
      return emit(out, cap, "output_blocks.%d.1.%s", i * (lpb + 1) + j, p);
    }
    if (eat(&p, "upsamplers.0.conv.")) {
      if (i >= L - 1) return -1;
      return emit(out, cap, "output_blocks.%d.%d.conv.%s", i * (lpb + 1) + lpb,
                  m->up_attn[i] ? 2 : 1, p);
    }
    return -1;
  }
  /* ControlNet */
  if (eat(&p, "controlnet_cond_embedding.")) {
    if (eat(&p, "conv_in.")) return emit(out, cap, "input_hint_block.0.%s", p);
    if (eat(&p, "conv_out.")) return emit(out, cap, "input_hint_block.%d.%s", 2 + 2 * m->hint_blocks, p);
    if (eat(&p, "blocks.") && eat_index(&p, &j) && j < m->hint_blocks)
      return emit(out, cap, "input_hint_block.%d.%s", 2 + 2 * j, p);
    return -1;
  }
  if (eat(&p, "controlnet_down_blocks.")) {
    if (!eat_index(&p, &z) || z >= L * (lpb + 1)) return -1;
    return emit(out, cap, "zero_convs.%d.0.%s", z, p);
  }
  if (eat(&p, "controlnet_mid_block.")) return emit(out, cap, "middle_block_out.0.%s", p);
  return -1;
}

/* ---- VAE ---- */

sd_status sd__cv_vae_map_init(const sd_safetensors *f, const char *prefix, sd__cv_vae_map *m,
                              sd_error *err) {
  memset(m, 0, sizeof *m);
  size_t pl = strlen(prefix);
  int max_down = -1, max_up = -1, n;
  for (size_t i = 0; i < f->count; i++) {
    const char *s = f->tensors[i].name;
    if (strncmp(s, prefix, pl) != 0) continue;
    s += pl;
    if (eat(&s, "encoder.down.") && eat_index(&s, &n) && n > max_down) max_down = n;
    s = f->tensors[i].name + pl;
    if (eat(&s, "decoder.up.") && eat_index(&s, &n) && n > max_up) max_up = n;
  }
  /* The decoder alone decides the reversed numbering; the encoder must agree when present. */
  if (max_up < 0 || max_up + 1 > SD_CV_MAX_LEVELS || (max_down >= 0 && max_down != max_up))
    return sd__err(err, SD_ERR_FORMAT,
                   "%s: VAE under \"%s\" has %d encoder and %d decoder levels", f->path, prefix,
                   max_down + 1, max_up + 1);
  m->levels = max_up + 1;
  return SD_OK;
}

/* Mid-block attention parameter names: diffusers -> CompVis AttnBlock. */
static const char *attn_part(const char **p) {
  static const struct {
    const char *diff, *cv;
  } parts[] = {{"group_norm.", "norm."}, {"to_q.", "q."}, {"to_k.", "k."}, {"to_v.", "v."},
               {"to_out.0.", "proj_out."}};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    if (eat(p, parts[i].diff)) return parts[i].cv;
  return NULL;
}

/* A VAE ResnetBlock's rest-of-name: only the shortcut is renamed. */
static int vae_resnet(char *out, size_t cap, const char *head, const char *p) {
  if (eat(&p, "conv_shortcut.")) return emit(out, cap, "%snin_shortcut.%s", head, p);
  return emit(out, cap, "%s%s", head, p);
}

int sd__cv_vae_name(void *user, const char *name, char *out, size_t cap) {
  const sd__cv_vae_map *m = user;
  const char *p = name;
  char head[96];
  const char *coder = NULL;
  int i, j;
  if (eat(&p, "encoder.")) coder = "encoder";
  else if (eat(&p, "decoder.")) coder = "decoder";
  if (!coder) return emit(out, cap, "%s", name); /* quant_conv, post_quant_conv, quantize.* */
  if (eat(&p, "conv_norm_out.")) return emit(out, cap, "%s.norm_out.%s", coder, p);
  if (eat(&p, "mid_block.")) {
    if (eat(&p, "resnets.")) {
      if (!eat_index(&p, &j) || j > 1) return -1;
      snprintf(head, sizeof head, "%s.mid.block_%d.", coder, j + 1);
      return vae_resnet(out, cap, head, p);
    }
    const char *part;
    if (eat(&p, "attentions.0.") && (part = attn_part(&p)))
      return emit(out, cap, "%s.mid.attn_1.%s%s", coder, part, p);
    return -1;
  }
  if (coder[0] == 'e' && eat(&p, "down_blocks.")) {
    if (!eat_index(&p, &i) || i >= m->levels) return -1;
    if (eat(&p, "downsamplers.0.conv.")) return emit(out, cap, "encoder.down.%d.downsample.conv.%s", i, p);
    if (!eat(&p, "resnets.") || !eat_index(&p, &j)) return -1;
    snprintf(head, sizeof head, "encoder.down.%d.block.%d.", i, j);
    return vae_resnet(out, cap, head, p);
  }
  if (coder[0] == 'd' && eat(&p, "up_blocks.")) {
    if (!eat_index(&p, &i) || i >= m->levels) return -1;
    int cv = m->levels - 1 - i;
    if (eat(&p, "upsamplers.0.conv.")) return emit(out, cap, "decoder.up.%d.upsample.conv.%s", cv, p);
    if (!eat(&p, "resnets.") || !eat_index(&p, &j)) return -1;
    snprintf(head, sizeof head, "decoder.up.%d.block.%d.", cv, j);
    return vae_resnet(out, cap, head, p);
  }
  if (eat(&p, "down_blocks.") || eat(&p, "up_blocks.")) return -1;
  return emit(out, cap, "%s.%s", coder, p); /* conv_in, conv_out */
}

/* ---- text encoder ---- */

void sd__cv_clip_map_init(const sd_safetensors *f, const char *prefix, sd__cv_clip_map *m) {
  char with[256];
  snprintf(with, sizeof with, "%stext_model.", prefix);
  m->strip_text_model = !sd__cv_has_prefix(f, with);
}

int sd__cv_clip_name(void *user, const char *name, char *out, size_t cap) {
  const sd__cv_clip_map *m = user;
  const char *p = name;
  if (m->strip_text_model) eat(&p, "text_model.");
  return emit(out, cap, "%s", p);
}
