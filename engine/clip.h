/* clip.h: the CLIP text transformer (transformers' CLIPTextModel): token + position
 * embeddings, pre-LN encoder layers with causal self-attention and an MLP (quick_gelu or gelu),
 * final LayerNorm. Output is last_hidden_state [77, hidden]. */
#ifndef SD_CLIP_H
#define SD_CLIP_H

#include "json.h"
#include "ops.h"
#include "weights.h"

typedef struct sd__clip_config {
  int vocab_size;   /* 49408 for SD1.x */
  int hidden;       /* 768 */
  int layers;       /* 12 */
  int heads;        /* 12 */
  int intermediate; /* 3072 */
  int max_positions; /* 77 */
  float eps;        /* 1e-5 */
  int quick_gelu;   /* 1: quick_gelu, 0: gelu */
} sd__clip_config;

/* From text_encoder/config.json. */
sd_status sd__clip_config_from_json(const sd_json *j, sd__clip_config *cfg, sd_error *err);
/* From tensor shapes (single-file checkpoints); names as in transformers, relative to the
 * text model ("text_model.embeddings.token_embedding.weight"...). */
sd_status sd__clip_config_infer(sd__wsrc *src, sd__clip_config *cfg, sd_error *err);

typedef struct sd__clip sd__clip;

sd_status sd__clip_load(sd__wsrc *src, const sd__clip_config *cfg, sd__clip **out,
                        sd_error *err);
void sd__clip_destroy(sd__clip *c);
const sd__clip_config *sd__clip_get_config(const sd__clip *c);

/* out[L, hidden] = last_hidden_state for ids[L] (L <= max_positions). Scratch from ctx. */
sd_status sd__clip_forward(const sd__clip *c, sd__ctx *ctx, const int32_t *ids, int L,
                           float *out);

#endif
