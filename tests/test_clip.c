/* test_clip.c: the CLIP text encoder against the golden data. For every case folder in
 * tests/data/cases, the model named by its case.json ("model", default models/tiny-sd) is
 * loaded from text_encoder/{config.json, model.safetensors}; input_ids -> prompt_embeds and
 * neg_input_ids -> negative_prompt_embeds must agree to max-abs-err < 1e-4 (GOLDEN.md,
 * "Tolerances": prompt_embeds). Also: identical bits for 1 and 3 threads, config inference
 * from shapes agreeing with config.json, and the error paths (bad ids, too many tokens, a
 * missing tensor, an unsupported activation).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clip.h"

#define CASES SD_TEST_DATA "/cases"
#define TOL 1e-4

/* Hides one tensor name, to check that loading reports it missing. */
static int hide_name(void *user, const char *name, char *out, size_t cap) {
  if (strcmp(name, (const char *)user) == 0) return 1;
  return snprintf(out, cap, "%s", name) >= (int)cap;
}

static int cancel_yes(void *user) { return ++*(int *)user > 0; }

static sd_json *read_json(const char *path) {
  char *text = NULL;
  size_t len = 0;
  sd_json *j = NULL;
  sd_error err = {SD_OK, {0}};
  if (sd__read_file(path, 1 << 20, &text, &len, &err) != SD_OK ||
      sd__json_parse(text, len, &j, &err) != SD_OK)
    fprintf(stderr, "%s: %s\n", path, err.msg);
  free(text);
  return j;
}

typedef struct model {
  sd_safetensors *st;
  sd__wsrc *src;
  sd__clip *clip;
  sd__clip_config cfg;
} model;

static int model_open(const char *dir, model *m) {
  char path[2048];
  sd_error err = {SD_OK, {0}};
  memset(m, 0, sizeof *m);
  snprintf(path, sizeof path, "%s/text_encoder/config.json", dir);
  sd_json *j = read_json(path);
  CHECK(j != NULL);
  if (!j) return -1;
  CHECK_INT(sd__clip_config_from_json(j, &m->cfg, &err), SD_OK);
  sd__json_free(j);
  snprintf(path, sizeof path, "%s/text_encoder/model.safetensors", dir);
  CHECK_INT(sd__st_open(path, &m->st, &err), SD_OK);
  if (!m->st) return -1;
  CHECK_INT(sd__wsrc_create(m->st, 0, "", NULL, NULL, &m->src, &err), SD_OK);
  if (!m->src) return -1;
  /* shapes alone give everything but heads (and the activation, quick_gelu here) */
  sd__clip_config inf;
  CHECK_INT(sd__clip_config_infer(m->src, &inf, &err), SD_OK);
  CHECK_INT(inf.vocab_size, m->cfg.vocab_size);
  CHECK_INT(inf.hidden, m->cfg.hidden);
  CHECK_INT(inf.layers, m->cfg.layers);
  CHECK_INT(inf.intermediate, m->cfg.intermediate);
  CHECK_INT(inf.max_positions, m->cfg.max_positions);
  CHECK_INT(inf.quick_gelu, m->cfg.quick_gelu);
  CHECK_INT(sd__clip_load(m->src, &m->cfg, &m->clip, &err), SD_OK);
  if (err.status != SD_OK) fprintf(stderr, "load: %s\n", err.msg);
  return m->clip ? 0 : -1;
}

static void model_close(model *m) {
  sd__clip_destroy(m->clip);
  sd__wsrc_destroy(m->src);
  sd__st_close(m->st);
}

/* Compare one (ids, embeds) pair of a golden file; returns the max abs error or -1. */
static double check_pair(const model *m, sd__arena *arena, const sd_safetensors *g,
                         const char *ids_name, const char *emb_name) {
  const sd_st_tensor *ti = sd__st_find(g, ids_name), *te = sd__st_find(g, emb_name);
  if (!ti && !te) return -2; /* no CFG pass in this case */
  CHECK(ti && te);
  if (!ti || !te) return -1;
  int L = (int)ti->numel, D = m->cfg.hidden;
  CHECK_INT(ti->dtype, SD_DTYPE_I64);
  CHECK_INT(te->numel, (int64_t)L * D);
  if (ti->dtype != SD_DTYPE_I64 || te->numel != (int64_t)L * D) return -1;
  int32_t *ids = malloc(L * sizeof *ids);
  float *ref = malloc(te->numel * sizeof(float)), *y1 = malloc(te->numel * sizeof(float));
  float *y3 = malloc(te->numel * sizeof(float));
  for (int i = 0; i < L; i++) {
    int64_t v;
    memcpy(&v, (const char *)ti->data + 8 * i, 8);
    ids[i] = (int32_t)v;
  }
  sd_error err = {SD_OK, {0}};
  CHECK_INT(sd__st_to_f32(te, ref, &err), SD_OK);
  sd__pool *p3 = NULL; /* a pool per call, as a request makes one */
  CHECK_INT(sd__pool_create(3, &p3, NULL), SD_OK);
  sd__ctx c1 = {1, arena, NULL, NULL, NULL}, c3 = {3, arena, NULL, NULL, p3};
  CHECK_INT(sd__clip_forward(m->clip, &c1, ids, L, y1), SD_OK);
  CHECK_INT(sd__clip_forward(m->clip, &c3, ids, L, y3), SD_OK);
  CHECK(memcmp(y1, y3, te->numel * sizeof(float)) == 0);
  sd__pool_destroy(p3);
  double e = check_max_abs(y1, ref, te->numel);
  CHECK_LE(e, TOL);
  free(ids), free(ref), free(y1), free(y3);
  return e;
}

static void test_errors(const model *m, sd__arena *arena) {
  sd__ctx c = {1, arena, NULL, NULL, NULL};
  int L = m->cfg.max_positions;
  int32_t *ids = calloc(L + 1, sizeof *ids);
  float *y = malloc((size_t)(L + 1) * m->cfg.hidden * sizeof(float));
  CHECK_INT(sd__clip_forward(m->clip, &c, ids, L + 1, y), SD_ERR_INVALID);
  ids[3] = m->cfg.vocab_size;
  CHECK_INT(sd__clip_forward(m->clip, &c, ids, L, y), SD_ERR_INVALID);
  ids[3] = -1;
  CHECK_INT(sd__clip_forward(m->clip, &c, ids, L, y), SD_ERR_INVALID);
  ids[3] = 0;
  CHECK_INT(sd__clip_forward(m->clip, &c, ids, 5, y), SD_OK); /* shorter than 77 is fine */
  int calls = 0;
  sd__ctx cc = {1, arena, cancel_yes, &calls, NULL};
  CHECK_INT(sd__clip_forward(m->clip, &cc, ids, L, y), SD_ERR_CANCELLED);
  CHECK_INT(calls, 1); /* asked before the first layer */
  free(ids), free(y);

  /* a missing tensor is reported by name */
  const char *hidden = "text_model.encoder.layers.1.mlp.fc2.bias";
  sd__wsrc *src = NULL;
  sd__clip *clip = NULL;
  sd_error err = {SD_OK, {0}};
  CHECK_INT(sd__wsrc_create(m->st, 0, "", hide_name, (void *)hidden, &src, &err), SD_OK);
  CHECK_INT(sd__clip_load(src, &m->cfg, &clip, &err), SD_ERR_MISSING);
  CHECK(clip == NULL);
  CHECK(strstr(err.msg, "fc2.bias") != NULL);
  sd__wsrc_destroy(src);

  /* activations by name; anything else is refused */
  const char *ok = "{\"hidden_size\": 64, \"num_attention_heads\": 2, \"hidden_act\": \"gelu\"}";
  const char *bad = "{\"hidden_act\": \"relu\"}";
  sd_json *j = NULL;
  sd__clip_config cfg;
  err.status = SD_OK;
  CHECK_INT(sd__json_parse(ok, strlen(ok), &j, &err), SD_OK);
  CHECK_INT(sd__clip_config_from_json(j, &cfg, &err), SD_OK);
  CHECK_INT(cfg.quick_gelu, 0);
  CHECK_INT(cfg.heads, 2);
  CHECK_INT(cfg.vocab_size, 49408); /* transformers' default */
  sd__json_free(j);
  CHECK_INT(sd__json_parse(bad, strlen(bad), &j, &err), SD_OK);
  CHECK_INT(sd__clip_config_from_json(j, &cfg, &err), SD_ERR_UNSUPPORTED);
  sd__json_free(j);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  sd__arena *arena = sd__arena_create(1 << 20);
  DIR *d = opendir(CASES);
  CHECK(d != NULL);
  if (!d || !arena) return check_exit();
  char *names[64];
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) && n < 64)
    if (de->d_name[0] != '.') names[n++] = strdup(de->d_name);
  closedir(d);
  qsort(names, n, sizeof *names, cmp_str);
  int compared = 0, tested_errors = 0;
  double worst = 0;
  for (int i = 0; i < n; i++) {
    char path[1024], mdir[1024];
    snprintf(path, sizeof path, "%s/%s/case.json", CASES, names[i]);
    sd_json *cj = read_json(path);
    CHECK(cj != NULL);
    const char *mname = sd__json_str(cj, "model", "models/tiny-sd", "case.json", NULL);
    snprintf(mdir, sizeof mdir, "%s/%s", SD_TEST_DATA, mname);
    sd__json_free(cj);
    snprintf(path, sizeof path, "%s/%s/golden.safetensors", CASES, names[i]);
    sd_safetensors *g = NULL;
    sd_error err = {SD_OK, {0}};
    CHECK_INT(sd__st_open(path, &g, &err), SD_OK);
    model m;
    if (g && model_open(mdir, &m) == 0) {
      double e1 = check_pair(&m, arena, g, "input_ids", "prompt_embeds");
      double e2 = check_pair(&m, arena, g, "neg_input_ids", "negative_prompt_embeds");
      printf("%-32s prompt_embeds max-abs-err %.3g, negative %.3g%s\n", names[i], e1, e2,
             e2 == -2 ? " (no CFG pass)" : "");
      compared += (e1 >= 0) + (e2 >= 0);
      if (e1 > worst) worst = e1;
      if (e2 > worst) worst = e2;
      if (!tested_errors) {
        test_errors(&m, arena);
        tested_errors = 1;
      }
    }
    if (g) model_close(&m);
    sd__st_close(g);
    free(names[i]);
  }
  printf("%d embeddings compared, worst max-abs-err %.3g (tolerance %g)\n", compared, worst,
         TOL);
  CHECK(compared >= 8);
  sd__arena_destroy(arena);
  return check_exit();
}
