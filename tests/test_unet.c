/* test_unet.c: the UNet (engine/unet.c) against the golden diffusers outputs of every case in
 * tests/data/cases, fed the golden inputs (teacher forcing): step 0 of each case (ControlNet
 * case with its stored residuals), every UNet call of the cases without ControlNet, a
 * non-square latent, 1 vs 2 threads bit for bit, arena reuse across steps, cancellation, and
 * config parsing / shape inference / refusals.
 * Tolerance (GOLDEN.md, "Tolerances"): max-abs-err < 1e-3 x std(reference) per UNet output.
 */
#include <dirent.h>

#include "check.h"
#include "json.h"
#include "safetensors.h"
#include "unet.h"
#include "weights.h"

#define TOL_RATIO 1e-3 /* GOLDEN.md: unet_step0_output max-abs-err < 1e-3 x std(reference) */

static const char *model_dir = SD_TEST_DATA "/models/tiny-sd/unet";

/* A golden tensor as malloc'ed float32 (NULL when absent); numel in *n, shape in t. */
static float *golden(const sd_safetensors *st, const char *name, const sd_st_tensor **t,
                     size_t *n) {
  const sd_st_tensor *x = sd__st_find(st, name);
  if (t) *t = x;
  if (!x) return NULL;
  float *p = malloc((size_t)x->numel * sizeof(float));
  sd_error err = {0};
  CHECK(p != NULL);
  if (!p || sd__st_to_f32(x, p, &err) != SD_OK) {
    fprintf(stderr, "%s: %s\n", name, err.msg);
    CHECK(0);
    free(p);
    return NULL;
  }
  if (n) *n = (size_t)x->numel;
  return p;
}

static int cancel_always(void *user) {
  (void)user;
  return 1;
}

typedef struct fixture {
  sd__unet *u;
  sd__ctx ctx;
} fixture;

/* eps = unet(x) and its error ratio against ref (max-abs / std(ref)). */
static double run_ratio(fixture *f, const float *x, int B, int h, int w, float t,
                        const float *text, const sd__unet_residuals *res, const float *ref,
                        float *eps) {
  sd_error err = {0};
  sd_status st = sd__unet_forward(f->u, &f->ctx, x, B, h, w, t, text, 77, res, eps, &err);
  CHECK_INT(st, SD_OK);
  if (st != SD_OK) {
    fprintf(stderr, "forward: %s\n", err.msg);
    return INFINITY;
  }
  size_t n = (size_t)B * 4 * h * w;
  return check_max_abs(eps, ref, n) / check_std(ref, n);
}

/* Step 0 of one case, and every call when it has no ControlNet. */
static void check_case(fixture *f, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/cases/%s/golden.safetensors", SD_TEST_DATA, name);
  sd_safetensors *st = NULL;
  sd_error err = {0};
  if (sd__st_open(path, &st, &err) != SD_OK) {
    fprintf(stderr, "%s: %s\n", path, err.msg);
    CHECK(0);
    return;
  }
  const sd_st_tensor *tin;
  size_t nin = 0;
  float *x = golden(st, "unet_step0_input", &tin, &nin);
  float *t0 = golden(st, "unet_step0_timestep", NULL, NULL);
  float *ref = golden(st, "unet_step0_output", NULL, NULL);
  float *pos = golden(st, "prompt_embeds", NULL, NULL);
  float *neg = golden(st, "negative_prompt_embeds", NULL, NULL);
  float *text = NULL, *eps = NULL, *all_x = NULL, *all_t = NULL, *all_ref = NULL;
  float *down[32] = {0}, *mid = NULL;
  CHECK(x && t0 && ref && pos);
  if (!x || !t0 || !ref || !pos) goto out;
  const int B = (int)tin->shape[0], h = (int)tin->shape[2], w = (int)tin->shape[3];
  const size_t ntext = 77 * 32;
  CHECK_INT(B, neg ? 2 : 1);
  text = malloc((size_t)B * ntext * sizeof(float));
  eps = malloc(nin * sizeof(float));
  if (!text || !eps) goto out;
  /* CFG order: row 0 negative / unconditional, row 1 prompt */
  if (neg) memcpy(text, neg, ntext * sizeof(float));
  memcpy(text + (B - 1) * ntext, pos, ntext * sizeof(float));

  /* ControlNet residuals of step 0, scaled already */
  sd__unet_residuals res = {0}, *resp = NULL;
  mid = golden(st, "controlnet_step0_mid", NULL, NULL);
  if (mid) {
    char tn[64];
    for (res.count = 0; res.count < 32; res.count++) {
      snprintf(tn, sizeof tn, "controlnet_step0_down%02d", res.count);
      if (!(down[res.count] = golden(st, tn, NULL, NULL))) break;
    }
    res.down = (const float **)down;
    res.mid = mid;
    resp = &res;
  }
  double r = run_ratio(f, x, B, h, w, t0[0], text, resp, ref, eps);
  printf("%-32s step0 B=%d %2dx%-2d t=%5.0f%s  max-abs-err/std = %.3g\n", name, B, w, h,
         (double)t0[0], mid ? " +controlnet" : "", r);
  CHECK_LE(r, TOL_RATIO);
  if (mid) {
    /* Without its residuals the output must be far off: the residual path matters. */
    double r0 = run_ratio(f, x, B, h, w, t0[0], text, NULL, ref, eps);
    printf("%-32s step0 without residuals: %.3g (must be > 100x tolerance)\n", name, r0);
    CHECK(r0 > 100 * TOL_RATIO);
    goto out; /* later calls' residuals are not stored */
  }

  const sd_st_tensor *tall;
  size_t nall = 0;
  all_x = golden(st, "unet_all_inputs", &tall, &nall);
  all_t = golden(st, "unet_all_timesteps", NULL, NULL);
  all_ref = golden(st, "unet_all_outputs", NULL, NULL);
  CHECK(all_x && all_t && all_ref);
  if (!all_x || !all_t || !all_ref) goto out;
  int calls = (int)tall->shape[0];
  double worst = 0;
  for (int k = 0; k < calls; k++) {
    double rk = run_ratio(f, all_x + k * nin, B, h, w, all_t[k], text, NULL, all_ref + k * nin,
                          eps);
    CHECK_LE(rk, TOL_RATIO);
    if (rk > worst) worst = rk;
  }
  printf("%-32s all %d calls: worst max-abs-err/std = %.3g\n", name, calls, worst);
out:
  for (int i = 0; i < 32; i++) free(down[i]);
  free(mid);
  free(all_x);
  free(all_t);
  free(all_ref);
  free(x);
  free(t0);
  free(ref);
  free(pos);
  free(neg);
  free(text);
  free(eps);
  sd__st_close(st);
}

/* Threads must not change a bit; the arena must not grow after the first step; a cancel
 * request stops the pass. Uses the non-square case b (latent 16 x 12, B = 2). */
static void check_determinism(fixture *f) {
  char path[512];
  snprintf(path, sizeof path, "%s/cases/b_euler_a_cat_128x96/golden.safetensors",
           SD_TEST_DATA);
  sd_safetensors *st = NULL;
  sd_error err = {0};
  CHECK_INT(sd__st_open(path, &st, &err), SD_OK);
  if (!st) return;
  size_t n = 0;
  float *x = golden(st, "unet_step0_input", NULL, &n);
  float *pos = golden(st, "prompt_embeds", NULL, NULL);
  float *neg = golden(st, "negative_prompt_embeds", NULL, NULL);
  float *text = malloc(2 * 77 * 32 * sizeof(float));
  float *e1 = malloc(n * sizeof(float)), *e2 = malloc(n * sizeof(float));
  if (!x || !pos || !neg || !text || !e1 || !e2) {
    CHECK(0);
    goto out;
  }
  memcpy(text, neg, 77 * 32 * sizeof(float));
  memcpy(text + 77 * 32, pos, 77 * 32 * sizeof(float));
  const int h = 12, w = 16;
  CHECK_INT(n, 2 * 4 * h * w);
  sd__pool *pool2 = f->ctx.pool;
  f->ctx.threads = 1, f->ctx.pool = NULL;
  CHECK_INT(sd__unet_forward(f->u, &f->ctx, x, 2, h, w, 751, text, 77, NULL, e1, &err), SD_OK);
  sd__arena_mark m = sd__arena_get_mark(f->ctx.arena);
  size_t reserved = sd__arena_reserved(f->ctx.arena);
  f->ctx.threads = 2, f->ctx.pool = pool2;
  CHECK(pool2 != NULL);
  CHECK_INT(sd__unet_forward(f->u, &f->ctx, x, 2, h, w, 751, text, 77, NULL, e2, &err), SD_OK);
  CHECK(memcmp(e1, e2, n * sizeof(float)) == 0);
  printf("1 vs 2 threads: %s\n", memcmp(e1, e2, n * sizeof(float)) ? "DIFFER" : "identical bits");
  /* stack discipline: the arena is back at its mark, and a second step reserved nothing */
  sd__arena_mark m2 = sd__arena_get_mark(f->ctx.arena);
  CHECK(m2.chunk == m.chunk && m2.used == m.used);
  CHECK_INT(sd__arena_reserved(f->ctx.arena), reserved);
  printf("arena: %zu bytes reserved, peak %zu\n", reserved, sd__arena_peak(f->ctx.arena));

  /* cancellation */
  sd_error cerr = {0};
  f->ctx.cancel = cancel_always;
  CHECK_INT(sd__unet_forward(f->u, &f->ctx, x, 2, h, w, 751, text, 77, NULL, e2, &cerr),
            SD_ERR_CANCELLED);
  f->ctx.cancel = NULL;
  m2 = sd__arena_get_mark(f->ctx.arena);
  CHECK(m2.chunk == m.chunk && m2.used == m.used);

  /* bad sizes and residual counts are refused */
  sd_error ierr = {0};
  CHECK_INT(sd__unet_forward(f->u, &f->ctx, x, 2, 7, w, 751, text, 77, NULL, e2, &ierr),
            SD_ERR_INVALID);
  const float *none[1] = {x};
  sd__unet_residuals bad = {1, none, NULL};
  sd_error rerr = {0};
  CHECK_INT(sd__unet_forward(f->u, &f->ctx, x, 2, h, w, 751, text, 77, &bad, e2, &rerr),
            SD_ERR_INVALID);
out:
  free(x);
  free(pos);
  free(neg);
  free(text);
  free(e1);
  free(e2);
  sd__st_close(st);
}

static sd_status parse_config(const char *text, sd__unet_config *cfg) {
  sd_json *j = NULL;
  sd_error err = {0};
  sd_status st = sd__json_parse(text, strlen(text), &j, &err);
  if (st == SD_OK) st = sd__unet_config_from_json(j, cfg, &err);
  sd__json_free(j);
  return st;
}

/* Options SD 1.x does not use are refused, not ignored. */
static void check_config_refusals(void) {
  sd__unet_config c;
  CHECK_INT(parse_config("{\"block_out_channels\":[32,64],\"attention_head_dim\":8,"
                         "\"down_block_types\":[\"CrossAttnDownBlock2D\",\"DownBlock2D\"],"
                         "\"up_block_types\":[\"UpBlock2D\",\"CrossAttnUpBlock2D\"]}",
                         &c),
            SD_OK);
  CHECK_INT(c.levels, 2);
  CHECK_INT(c.layers_per_block, 2);       /* diffusers default */
  CHECK_INT(c.cross_attention_dim, 1280); /* diffusers default */
  CHECK_INT(c.head_dim[1], 8);
  CHECK_INT(parse_config("{\"class_embed_type\":\"timestep\"}", &c), SD_ERR_UNSUPPORTED);
  CHECK_INT(parse_config("{\"transformer_layers_per_block\":[1,2,10,10]}", &c),
            SD_ERR_UNSUPPORTED);
  CHECK_INT(parse_config("{\"resnet_time_scale_shift\":\"scale_shift\"}", &c),
            SD_ERR_UNSUPPORTED);
  CHECK_INT(parse_config("{\"time_cond_proj_dim\":256}", &c), SD_ERR_UNSUPPORTED);
  CHECK_INT(parse_config("{\"addition_embed_type\":\"text_time\"}", &c), SD_ERR_UNSUPPORTED);
  CHECK_INT(parse_config("{\"down_block_types\":[\"SimpleCrossAttnDownBlock2D\","
                         "\"DownBlock2D\",\"DownBlock2D\",\"DownBlock2D\"]}",
                         &c),
            SD_ERR_UNSUPPORTED);
  CHECK_INT(parse_config("{\"attention_head_dim\":[5,10,20]}", &c), SD_ERR_FORMAT);
  /* SD 2.x style per-level heads are accepted */
  CHECK_INT(parse_config("{\"attention_head_dim\":[5,10,20,20],\"use_linear_projection\":true,"
                         "\"cross_attention_dim\":1024}",
                         &c),
            SD_OK);
  CHECK_INT(c.heads[0], 5);
  CHECK_INT(c.head_dim[0], 64);
  CHECK_INT(c.head_dim[3], 64);
}

static int cmp_name(const void *a, const void *b) { return strcmp(a, b); }

int main(void) {
  sd_error err = {0};
  char *json = NULL;
  size_t len = 0;
  sd_json *j = NULL;
  sd_safetensors *file = NULL;
  sd__wsrc *src = NULL;
  sd__unet_config cfg, inferred;
  fixture f = {0};

  char cpath[512];
  snprintf(cpath, sizeof cpath, "%s/config.json", model_dir);
  CHECK_INT(sd__read_file(cpath, 1 << 20, &json, &len, &err), SD_OK);
  if (json) CHECK_INT(sd__json_parse(json, len, &j, &err), SD_OK);
  if (j) CHECK_INT(sd__unet_config_from_json(j, &cfg, &err), SD_OK);
  if (err.status != SD_OK) {
    fprintf(stderr, "config: %s\n", err.msg);
    goto out;
  }
  /* tiny-sd (GOLDEN.md): (32, 64), CrossAttnDown + Down / Up + CrossAttnUp, 8 heads */
  CHECK_INT(cfg.levels, 2);
  CHECK_INT(cfg.block_out_channels[1], 64);
  CHECK_INT(cfg.down_has_attn[0] * 10 + cfg.down_has_attn[1], 10);
  CHECK_INT(cfg.up_has_attn[0] * 10 + cfg.up_has_attn[1], 1);
  CHECK_INT(cfg.heads[0], 8);
  CHECK_INT(cfg.head_dim[0], 4);
  CHECK_INT(cfg.head_dim[1], 8);

  char wpath[512];
  snprintf(wpath, sizeof wpath, "%s/diffusion_pytorch_model.safetensors", model_dir);
  CHECK_INT(sd__st_open(wpath, &file, &err), SD_OK);
  if (file) CHECK_INT(sd__wsrc_create(file, 1, "", NULL, NULL, &src, &err), SD_OK);
  if (!src) {
    fprintf(stderr, "weights: %s\n", err.msg);
    sd__st_close(file);
    goto out;
  }
  /* Shape inference must agree with the config on everything shapes determine. */
  CHECK_INT(sd__unet_config_infer(src, &inferred, &err), SD_OK);
  CHECK_INT(inferred.levels, cfg.levels);
  CHECK_INT(inferred.in_channels, cfg.in_channels);
  CHECK_INT(inferred.out_channels, cfg.out_channels);
  CHECK_INT(inferred.layers_per_block, cfg.layers_per_block);
  CHECK_INT(inferred.mid_has_attn, cfg.mid_has_attn);
  CHECK_INT(inferred.transformer_layers, cfg.transformer_layers);
  CHECK_INT(inferred.cross_attention_dim, cfg.cross_attention_dim);
  CHECK_INT(inferred.use_linear_projection, cfg.use_linear_projection);
  for (int i = 0; i < cfg.levels; i++) {
    CHECK_INT(inferred.block_out_channels[i], cfg.block_out_channels[i]);
    CHECK_INT(inferred.down_has_attn[i], cfg.down_has_attn[i]);
    CHECK_INT(inferred.up_has_attn[i], cfg.up_has_attn[i]);
    CHECK_INT(inferred.heads[i], cfg.heads[i]); /* SD 1.x's 8, assumed by inference */
  }

  /* A config that does not fit the weights is refused at load, naming the tensor. */
  {
    sd__unet_config wrong = cfg;
    sd__unet *bad = NULL;
    sd_error e1 = {0}, e2 = {0};
    wrong.layers_per_block = 2;
    CHECK_INT(sd__unet_load(src, &wrong, &bad, &e1), SD_ERR_MISSING);
    CHECK(bad == NULL && strstr(e1.msg, "down_blocks.0.resnets.1") != NULL);
    wrong = cfg;
    wrong.cross_attention_dim = 16;
    CHECK_INT(sd__unet_load(src, &wrong, &bad, &e2), SD_ERR_SHAPE);
    CHECK(bad == NULL && strstr(e2.msg, "attn2.to_k") != NULL);
    printf("refused: %s\nrefused: %s\n", e1.msg, e2.msg);
  }
  CHECK_INT(sd__unet_load(src, &cfg, &f.u, &err), SD_OK);
  if (!f.u) {
    fprintf(stderr, "load: %s\n", err.msg);
    goto out;
  }
  f.ctx.threads = 2;
  CHECK_INT(sd__pool_create(2, &f.ctx.pool, NULL), SD_OK);
  f.ctx.arena = sd__arena_create(1 << 20);
  CHECK(f.ctx.arena != NULL);
  if (!f.ctx.arena) goto out;

  DIR *d = opendir(SD_TEST_DATA "/cases");
  CHECK(d != NULL);
  int ncases = 0;
  char names[16][256];
  for (struct dirent *e; d && (e = readdir(d)) && ncases < 16;)
    if (e->d_name[0] != '.') snprintf(names[ncases++], sizeof names[0], "%s", e->d_name);
  if (d) closedir(d);
  qsort(names, (size_t)ncases, sizeof names[0], cmp_name);
  CHECK(ncases >= 6);
  for (int i = 0; i < ncases; i++) check_case(&f, names[i]);
  check_determinism(&f);
  check_config_refusals();
out:
  sd__unet_destroy(f.u);
  sd__arena_destroy(f.ctx.arena);
  sd__pool_destroy(f.ctx.pool);
  sd__wsrc_destroy(src);
  sd__json_free(j);
  free(json);
  fflush(stdout);
  return check_exit();
}
