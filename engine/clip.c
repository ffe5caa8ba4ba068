/* clip.c: the CLIP text encoder (transformers 4.38 CLIPTextModel, see clip.h).
 *
 * last_hidden_state = final_layer_norm(encoder(token_embedding[ids] + position_embedding[:L]))
 * with pre-LN layers: h += out_proj(attn(layer_norm1(h))); h += fc2(act(fc1(layer_norm2(h)))).
 * The attention matches CLIPAttention: q = q_proj(x) * head_dim^-0.5 (q is scaled before the
 * product, as transformers does), causal mask, softmax, then V. Weights stay in the source
 * (mapped or converted once); activations come from the job arena and are released on return.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"

/* Sanity bounds on config values, so a corrupt config cannot ask for absurd allocations. */
#define CLIP_DIM_MAX (1 << 16)
#define CLIP_VOCAB_MAX (1 << 22)

typedef struct clip_layer {
  const float *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
  const float *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} clip_layer;

struct sd__clip {
  sd__clip_config cfg;
  const float *tok_emb; /* [vocab, D] */
  const float *pos_emb; /* [P, D] */
  const float *final_w, *final_b;
  clip_layer *layers;   /* [cfg.layers] */
};

static sd_status check_config(const sd__clip_config *c, sd_error *err) {
  if (c->vocab_size <= 0 || c->vocab_size > CLIP_VOCAB_MAX || c->hidden <= 0 ||
      c->hidden > CLIP_DIM_MAX || c->layers <= 0 || c->layers > 256 || c->heads <= 0 ||
      c->intermediate <= 0 || c->intermediate > 4 * CLIP_DIM_MAX || c->max_positions <= 0 ||
      c->max_positions > 4096 || !(c->eps > 0.0f && c->eps < 1.0f))
    return sd__err(err, SD_ERR_FORMAT,
                   "text encoder: config out of range (vocab %d, hidden %d, layers %d, heads %d, "
                   "intermediate %d, positions %d, eps %g)",
                   c->vocab_size, c->hidden, c->layers, c->heads, c->intermediate,
                   c->max_positions, (double)c->eps);
  if (c->hidden % c->heads != 0)
    return sd__err(err, SD_ERR_FORMAT, "text encoder: hidden_size %d not divisible by %d heads",
                   c->hidden, c->heads);
  return SD_OK;
}

/* Defaults are transformers' CLIPTextConfig defaults, used when a key is absent. */
sd_status sd__clip_config_from_json(const sd_json *j, sd__clip_config *cfg, sd_error *err) {
  const char *what = "text_encoder/config.json";
  sd_error e = {SD_OK, {0}};
  sd__clip_config c;
  c.vocab_size = sd__json_int(j, "vocab_size", 49408, what, &e);
  c.hidden = sd__json_int(j, "hidden_size", 512, what, &e);
  c.layers = sd__json_int(j, "num_hidden_layers", 12, what, &e);
  c.heads = sd__json_int(j, "num_attention_heads", 8, what, &e);
  c.intermediate = sd__json_int(j, "intermediate_size", 2048, what, &e);
  c.max_positions = sd__json_int(j, "max_position_embeddings", 77, what, &e);
  c.eps = (float)sd__json_num(j, "layer_norm_eps", 1e-5, what, &e);
  const char *act = sd__json_str(j, "hidden_act", "quick_gelu", what, &e);
  if (e.status != SD_OK) return sd__err(err, e.status, "%s", e.msg);
  if (strcmp(act, "quick_gelu") == 0)
    c.quick_gelu = 1;
  else if (strcmp(act, "gelu") == 0)
    c.quick_gelu = 0;
  else
    return sd__err(err, SD_ERR_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported", what, act);
  sd_status st = check_config(&c, err);
  if (st != SD_OK) return st;
  *cfg = c;
  return SD_OK;
}

/* Shapes give vocab, hidden, positions, intermediate and the layer count. The head count is
 * not visible in any shape: SD 1.x's CLIP ViT-L/14 (and OpenCLIP ViT-H of SD 2.x) use heads of
 * 64 features, so heads = hidden / 64. The activation is not visible either: quick_gelu (the
 * OpenAI CLIP of SD 1.x), except gelu for hidden 1024 (OpenCLIP ViT-H). eps is 1e-5 in both. */
sd_status sd__clip_config_infer(sd__wsrc *src, sd__clip_config *cfg, sd_error *err) {
  int64_t tok[SD_ST_MAX_DIMS], pos[SD_ST_MAX_DIMS], fc1[SD_ST_MAX_DIMS];
  if (sd__wsrc_shape(src, "text_model.embeddings.token_embedding.weight", tok) != 2 ||
      sd__wsrc_shape(src, "text_model.embeddings.position_embedding.weight", pos) != 2 ||
      sd__wsrc_shape(src, "text_model.encoder.layers.0.mlp.fc1.weight", fc1) != 2)
    return sd__err(err, SD_ERR_MISSING,
                   "text encoder: token/position embedding or layer 0 MLP weight missing");
  sd__clip_config c;
  c.vocab_size = tok[0] > CLIP_VOCAB_MAX ? -1 : (int)tok[0];
  c.hidden = tok[1] > CLIP_DIM_MAX ? -1 : (int)tok[1];
  c.max_positions = pos[0] > 4096 ? -1 : (int)pos[0];
  c.intermediate = fc1[0] > 4 * CLIP_DIM_MAX ? -1 : (int)fc1[0];
  if (pos[1] != tok[1] || fc1[1] != tok[1])
    return sd__err(err, SD_ERR_SHAPE, "text encoder: embedding widths %lld/%lld/%lld differ",
                   (long long)tok[1], (long long)pos[1], (long long)fc1[1]);
  char name[128];
  int n = 0;
  for (; n < 256; n++) {
    snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.q_proj.weight", n);
    if (!sd__wsrc_has(src, name)) break;
  }
  c.layers = n;
  c.heads = c.hidden >= 64 ? c.hidden / 64 : 1;
  c.eps = 1e-5f;
  c.quick_gelu = c.hidden != 1024;
  sd_status st = check_config(&c, err);
  if (st != SD_OK) return st;
  *cfg = c;
  return SD_OK;
}

sd_status sd__clip_load(sd__wsrc *src, const sd__clip_config *cfg, sd__clip **out,
                        sd_error *err) {
  *out = NULL;
  sd_status st = check_config(cfg, err);
  if (st != SD_OK) return st;
  sd__clip *c = calloc(1, sizeof *c);
  if (!c) return sd__err(err, SD_ERR_NOMEM, "text encoder: out of memory");
  c->cfg = *cfg;
  c->layers = calloc((size_t)cfg->layers, sizeof *c->layers);
  if (!c->layers) {
    st = sd__err(err, SD_ERR_NOMEM, "text encoder: out of memory");
    goto out_destroy;
  }
  int64_t D = cfg->hidden, I = cfg->intermediate;
  int64_t s_tok[2] = {cfg->vocab_size, D}, s_pos[2] = {cfg->max_positions, D};
  int64_t s_d[1] = {D}, s_dd[2] = {D, D}, s_i[1] = {I}, s_id[2] = {I, D}, s_di[2] = {D, I};
  c->tok_emb = sd__wsrc_get(src, "text_model.embeddings.token_embedding.weight", 2, s_tok, err);
  c->pos_emb = sd__wsrc_get(src, "text_model.embeddings.position_embedding.weight", 2, s_pos, err);
  c->final_w = sd__wsrc_get(src, "text_model.final_layer_norm.weight", 1, s_d, err);
  c->final_b = sd__wsrc_get(src, "text_model.final_layer_norm.bias", 1, s_d, err);
  if (!c->tok_emb || !c->pos_emb || !c->final_w || !c->final_b) goto out_missing;
#define LW(field, nd, shp, sub) \
  if (!(l->field = sd__wsrc_getf(src, err, nd, shp, "text_model.encoder.layers.%d." sub, i))) \
    goto out_missing;
  for (int i = 0; i < cfg->layers; i++) {
    clip_layer *l = &c->layers[i];
    LW(ln1_w, 1, s_d, "layer_norm1.weight");
    LW(ln1_b, 1, s_d, "layer_norm1.bias");
    LW(q_w, 2, s_dd, "self_attn.q_proj.weight");
    LW(q_b, 1, s_d, "self_attn.q_proj.bias");
    LW(k_w, 2, s_dd, "self_attn.k_proj.weight");
    LW(k_b, 1, s_d, "self_attn.k_proj.bias");
    LW(v_w, 2, s_dd, "self_attn.v_proj.weight");
    LW(v_b, 1, s_d, "self_attn.v_proj.bias");
    LW(o_w, 2, s_dd, "self_attn.out_proj.weight");
    LW(o_b, 1, s_d, "self_attn.out_proj.bias");
    LW(ln2_w, 1, s_d, "layer_norm2.weight");
    LW(ln2_b, 1, s_d, "layer_norm2.bias");
    LW(fc1_w, 2, s_id, "mlp.fc1.weight");
    LW(fc1_b, 1, s_i, "mlp.fc1.bias");
    LW(fc2_w, 2, s_di, "mlp.fc2.weight");
    LW(fc2_b, 1, s_d, "mlp.fc2.bias");
  }
#undef LW
  *out = c;
  return SD_OK;
out_missing:
  /* sd__wsrc_get recorded the specific error (missing tensor or shape) */
  st = err && err->status != SD_OK ? err->status : SD_ERR_MISSING;
out_destroy:
  sd__clip_destroy(c);
  return st;
}

void sd__clip_destroy(sd__clip *c) {
  if (!c) return;
  free(c->layers);
  free(c);
}

const sd__clip_config *sd__clip_get_config(const sd__clip *c) { return &c->cfg; }

/* One pre-LN encoder layer over h[L, D] in place; x, q, k, v, a [L, D] and m [L, I] scratch. */
static sd_status clip_layer_forward(const sd__clip *c, const clip_layer *l, sd__ctx *ctx, int L,
                                    float *h, float *x, float *q, float *k, float *v, float *a,
                                    float *m) {
  const sd__clip_config *cfg = &c->cfg;
  int D = cfg->hidden, I = cfg->intermediate, dh = D / cfg->heads;
  size_t n = (size_t)L * D;
  sd_status st;
  sd__layer_norm(ctx, h, L, D, cfg->eps, l->ln1_w, l->ln1_b, x);
  if ((st = sd__linear(ctx, x, L, D, l->q_w, l->q_b, D, q)) != SD_OK) return st;
  if ((st = sd__linear(ctx, x, L, D, l->k_w, l->k_b, D, k)) != SD_OK) return st;
  if ((st = sd__linear(ctx, x, L, D, l->v_w, l->v_b, D, v)) != SD_OK) return st;
  /* transformers: self.scale = head_dim ** -0.5 (a Python float, applied in float32) */
  sd__scale_inplace(ctx, q, (float)(1.0 / sqrt((double)dh)), n);
  st = sd__attention(ctx, q, D, k, D, v, D, 1, cfg->heads, L, L, dh, 1.0f, 1, a);
  if (st != SD_OK) return st;
  if ((st = sd__linear(ctx, a, L, D, l->o_w, l->o_b, D, x)) != SD_OK) return st;
  sd__add_inplace(ctx, h, x, n);
  sd__layer_norm(ctx, h, L, D, cfg->eps, l->ln2_w, l->ln2_b, x);
  if ((st = sd__linear(ctx, x, L, D, l->fc1_w, l->fc1_b, I, m)) != SD_OK) return st;
  if (cfg->quick_gelu)
    sd__quick_gelu(ctx, m, (size_t)L * I);
  else
    sd__gelu(ctx, m, (size_t)L * I);
  if ((st = sd__linear(ctx, m, L, I, l->fc2_w, l->fc2_b, D, x)) != SD_OK) return st;
  sd__add_inplace(ctx, h, x, n);
  return SD_OK;
}

sd_status sd__clip_forward(const sd__clip *c, sd__ctx *ctx, const int32_t *ids, int L,
                           float *out) {
  const sd__clip_config *cfg = &c->cfg;
  if (L <= 0 || L > cfg->max_positions || !ctx || !ctx->arena) return SD_ERR_INVALID;
  for (int i = 0; i < L; i++)
    if (ids[i] < 0 || ids[i] >= cfg->vocab_size) return SD_ERR_INVALID;
  int D = cfg->hidden, I = cfg->intermediate;
  size_t n = (size_t)L * D;
  sd__arena_mark mark = sd__arena_get_mark(ctx->arena);
  sd_status st = SD_OK;
  float *h = sd__arena_floats(ctx->arena, 6 * n);
  float *m = sd__arena_floats(ctx->arena, (size_t)L * I);
  if (!h || !m) {
    st = SD_ERR_NOMEM;
    goto out_reset;
  }
  float *x = h + n, *q = x + n, *k = q + n, *v = k + n, *a = v + n;
  /* embeddings: token + position (position_ids = arange(L)) */
  for (int i = 0; i < L; i++) {
    const float *te = c->tok_emb + (size_t)ids[i] * D, *pe = c->pos_emb + (size_t)i * D;
    for (int d = 0; d < D; d++) h[(size_t)i * D + d] = te[d] + pe[d];
  }
  for (int li = 0; li < cfg->layers; li++) {
    if (sd__ctx_cancelled(ctx)) {
      st = SD_ERR_CANCELLED;
      goto out_reset;
    }
    st = clip_layer_forward(c, &c->layers[li], ctx, L, h, x, q, k, v, a, m);
    if (st != SD_OK) goto out_reset;
  }
  sd__layer_norm(ctx, h, L, D, cfg->eps, c->final_w, c->final_b, out);
out_reset:
  sd__arena_reset(ctx->arena, mark);
  return st;
}
