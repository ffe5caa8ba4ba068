/* sdgen_single.c: the generated model as one CompVis-named .safetensors file, the layout of
 * the original v1-5-pruned(-emaonly).safetensors: model.diffusion_model.* (UNet),
 * first_stage_model.* (VAE), cond_stage_model.transformer.text_model.* (CLIP, transformers
 * names under a prefix). UNet and VAE names come from the engine's own diffusers -> CompVis
 * translation (engine/compvis.h), so the generator and the loader cannot disagree silently:
 * the loader test reads this file back through the reverse direction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compvis.h"
#include "sdgen.h"

#define ERR_MAX 256

/* The engine's translation maps, filled from the architecture (the loader infers the same
 * from the file's keys). */
typedef struct cv_maps {
  sd__cv_unet_map unet;
  sd__cv_vae_map vae;
} cv_maps;

static void cv_maps_init(const sdgen_arch *a, cv_maps *m) {
  memset(m, 0, sizeof *m);
  m->unet.levels = a->levels;
  m->unet.layers_per_block = a->layers_per_block;
  for (int i = 0; i < a->levels && i < SD_CV_MAX_LEVELS; i++) {
    m->unet.down_attn[i] = a->down_attn[i];
    m->unet.up_attn[i] = a->up_attn[i];
  }
  m->unet.has_decoder = 1;
  m->vae.levels = a->vae_levels;
}

/* CompVis name of a diffusers UNet/VAE tensor (prefix included), 0 on success. */
static int to_compvis(cv_maps *m, sdgen_part part, const char *name, char *out, size_t cap) {
  const char *prefix = part == SDGEN_UNET ? SD_CV_UNET_PREFIX : SD_CV_VAE_PREFIX;
  size_t n = strlen(prefix);
  if (n >= cap) return -1;
  memcpy(out, prefix, n);
  return part == SDGEN_UNET ? sd__cv_unet_name(&m->unet, name, out + n, cap - n)
                            : sd__cv_vae_name(&m->vae, name, out + n, cap - n);
}

/* The VAE mid-block attention projections were 1x1 convolutions in CompVis' code
 * (AttnBlock q, k, v, proj_out); diffusers stores them as linear [C, C]. */
static int vae_attn_weight(const sdgen_tensor *t) {
  return t->part == SDGEN_VAE && t->ndim == 2 && strstr(t->name, "mid_block.attentions.") &&
         strstr(t->name, ".weight");
}

int sdgen_single_spec(const sdgen_arch *a, const sdgen_spec *s, sdgen_spec *out, char *err) {
  sdgen_spec r = {0};
  cv_maps maps;
  memset(out, 0, sizeof *out);
  if (a->levels > SD_CV_MAX_LEVELS) {
    snprintf(err, ERR_MAX, "too many UNet levels for the CompVis layout");
    return -1;
  }
  cv_maps_init(a, &maps);
  r.cap = s->count + 1;
  r.t = malloc(r.cap * sizeof *r.t);
  if (!r.t) {
    snprintf(err, ERR_MAX, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < s->count; i++) {
    sdgen_tensor *t = &r.t[r.count++];
    *t = s->t[i];
    if (t->part == SDGEN_TEXT) {
      int n = snprintf(t->name, sizeof t->name, SD_CV_CLIP_PREFIX "%.160s",
                       s->t[i].name);
      if (n < 0 || (size_t)n >= sizeof t->name || strlen(s->t[i].name) > 160) {
        snprintf(err, ERR_MAX, "tensor name too long: %.100s", s->t[i].name);
        goto out_free;
      }
    } else if (to_compvis(&maps, t->part, s->t[i].name, t->name, sizeof t->name) != 0) {
      snprintf(err, ERR_MAX, "no CompVis name for %s tensor %s",
               t->part == SDGEN_UNET ? "UNet" : "VAE", s->t[i].name);
      goto out_free;
    }
    if (vae_attn_weight(&s->t[i])) {
      t->ndim = 4;
      t->shape[2] = t->shape[3] = 1;
    }
  }
  /* transformers < 4.31 saved the position_ids buffer; SD 1.5's file has it as I64 [1, 77] */
  for (size_t i = 0; i < s->count; i++) {
    const sdgen_tensor *pe = &s->t[i];
    if (pe->part != SDGEN_TEXT || strcmp(pe->name, "text_model.embeddings.position_embedding.weight"))
      continue;
    sdgen_tensor *t = &r.t[r.count++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name,
             SD_CV_CLIP_PREFIX "text_model.embeddings.position_ids");
    t->part = SDGEN_TEXT;
    t->ndim = 2;
    t->shape[0] = 1;
    t->shape[1] = pe->shape[0];
    t->numel = pe->shape[0];
    t->init = SDGEN_INIT_ARANGE;
    break;
  }
  *out = r;
  return 0;
out_free:
  sdgen_spec_free(&r);
  return -1;
}

int sdgen_write_single(const char *path, const sdgen_arch *a, const sdgen_spec *s,
                       sdgen_dtype dt, int threads, int verbose, char *err) {
  sdgen_spec r;
  if (sdgen_single_spec(a, s, &r, err) != 0) return -1;
  int rc = sdgen_write_safetensors(path, &r, 7u, "", dt, threads, verbose, err);
  sdgen_spec_free(&r);
  return rc;
}
