/* test_scheduler: every sampler against the golden pipeline cases, stage by stage.
 *
 * Per tests/data/cases/<case>: timesteps and init_noise_sigma vs case.json, then with the
 * golden UNet outputs in place of the UNet, each iteration under teacher forcing (golden
 * latents in; scale_model_input vs unet_all_inputs, step vs latents_per_step, draws vs
 * scheduler_noise) and a free run from our own noise. Samplers and settings without a case
 * (lms, pndm, dpmpp_2m, img2img per family) are checked against the real diffusers classes.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "json.h"
#include "rng.h"
#include "safetensors.h"
#include "scheduler.h"

/* Tolerance: the scheduler alone is float32 arithmetic in the reference's order; today every
 * value here is bit-identical (the counts are printed). The checks allow max-abs-err <=
 * 2e-6 x max|ref| per teacher-forced step (a couple of float32 roundings; GOLDEN.md: the
 * scheduler is near float32 exact) and 2e-5 x max|ref| after a free run of all steps (errors
 * compound), so a harmless change of rounding does not fail the test. Random draws must be
 * bit-exact (GOLDEN.md), as in test_rng. */
#define TOL_STEP 2e-6
#define TOL_RUN 2e-5

typedef struct golden {
  sd_safetensors *st;
  sd_json *cj; /* case.json */
  char *cj_text;
} golden;

/* A float32 copy of tensor `name` (NULL if absent); *numel gets its size. */
static float *tensor(const golden *g, const char *name, size_t *numel) {
  const sd_st_tensor *t = sd__st_find(g->st, name);
  if (!t) return NULL;
  float *v = malloc((size_t)t->numel * sizeof(float) + 1);
  sd_error err = {0};
  if (!v || sd__st_to_f32(t, v, &err) != SD_OK) {
    fprintf(stderr, "cannot read %s: %s\n", name, err.msg);
    free(v);
    return NULL;
  }
  if (numel) *numel = (size_t)t->numel;
  return v;
}

static int load_json(const char *path, sd_json **out, char **text) {
  size_t len;
  sd_error err = {0};
  if (sd__read_file(path, 1 << 24, text, &len, &err) != SD_OK ||
      sd__json_parse(*text, len, out, &err) != SD_OK) {
    fprintf(stderr, "%s: %s\n", path, err.msg);
    return -1;
  }
  return 0;
}

static double max_abs(const float *a, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
  return m;
}

static size_t bits_differ(const float *a, const float *b, size_t n) {
  size_t d = 0;
  for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return d;
}

static sd__sched_config model_config(void) {
  sd__sched_config cfg;
  sd__sched_config_default(&cfg);
  sd_json *j = NULL;
  char *text = NULL;
  sd_error err = {0};
  CHECK(load_json(SD_TEST_DATA "/models/tiny-sd/scheduler/scheduler_config.json", &j, &text) ==
        0);
  if (j) CHECK_INT(sd__sched_config_from_json(j, &cfg, &err), SD_OK);
  sd__json_free(j);
  free(text);
  return cfg;
}

/* eps = uncond + cfg * (cond - uncond) from one golden unet_all_outputs entry (B rows). */
static void guidance(const float *out, int B, float cfg, float *eps, size_t n) {
  for (size_t k = 0; k < n; k++)
    eps[k] = B == 2 ? out[k] + cfg * (out[n + k] - out[k]) : out[k];
}

/* One case: timesteps, init sigma, draws, teacher forcing and a free run. */
static void run_case(const char *dir, const sd__sched_config *cfg) {
  char path[2048];
  golden g = {0};
  snprintf(path, sizeof path, "%s/case.json", dir);
  if (load_json(path, &g.cj, &g.cj_text) != 0) {
    CHECK(0);
    return;
  }
  snprintf(path, sizeof path, "%s/golden.safetensors", dir);
  sd_error err = {0};
  if (sd__st_open(path, &g.st, &err) != SD_OK) {
    fprintf(stderr, "%s: %s\n", path, err.msg);
    CHECK(0);
    sd__json_free(g.cj);
    free(g.cj_text);
    return;
  }
  const sd_json *in = sd__json_get(g.cj, "inputs");
  const sd_json *sj = sd__json_get(g.cj, "scheduler");
  const char *name = sd__json_str(in, "scheduler", "", "case", &err);
  int steps = sd__json_int(in, "num_inference_steps", 0, "case", &err);
  int seed = sd__json_int(in, "seed", 0, "case", &err);
  double cfg_scale = sd__json_num(in, "guidance_scale", 1.0, "case", &err);
  double strength = sd__json_num(in, "strength", -1.0, "case", &err);
  int B = cfg_scale > 1.0 ? 2 : 1;
  fprintf(stderr, "== %s (%s, %d steps)\n", dir, name, steps);

  sd__sched *s = NULL, *s2 = NULL;
  CHECK_INT(sd__sched_create(name, cfg, steps, &s, &err), SD_OK);
  CHECK_INT(sd__sched_create(name, cfg, steps, &s2, &err), SD_OK);
  if (!s || !s2) goto out;

  /* the full schedule of set_timesteps */
  const sd_json *tj = sd__json_get(sj, "timesteps");
  CHECK_INT(sd__sched_len(s), tj ? (long long)tj->count : -1);
  for (int i = 0; tj && i < sd__sched_len(s) && i < (int)tj->count; i++)
    CHECK_NEAR(sd__sched_timestep(s, i), sd__json_at(tj, (size_t)i)->num, 0.0);
  float init_sigma = (float)sd__json_num(sj, "init_noise_sigma", -1, "case", &err);
  CHECK_NEAR(sd__sched_init_sigma(s), init_sigma, 0.0);

  size_t n = 0, ngot = 0;
  float *lat_steps = tensor(&g, "latents_per_step", &ngot);
  float *ins = tensor(&g, "unet_all_inputs", NULL);
  float *outs = tensor(&g, "unet_all_outputs", NULL);
  float *ts = tensor(&g, "unet_all_timesteps", NULL);
  size_t nsnoise = 0;
  float *snoise = tensor(&g, "scheduler_noise", &nsnoise);
  float *start = NULL, *noise = NULL;
  sd__rng rng;
  sd__rng_seed(&rng, (uint64_t)seed);
  int first = 0;
  if (strength >= 0) {
    /* image-to-image: draw 1 latent_dist_noise, draw 2 noise, then add_noise */
    float *x0 = tensor(&g, "init_latents_scaled", &n);
    float *want = tensor(&g, "noised_latents", NULL);
    noise = malloc(n * sizeof(float));
    start = malloc(n * sizeof(float));
    if (!x0 || !want || !noise || !start) {
      CHECK(0);
      free(x0);
      free(want);
      goto out_free;
    }
    sd__rng_randn(&rng, noise, n); /* latent_dist_noise: checked in test_rng */
    sd__rng_randn(&rng, noise, n);
    first = sd__sched_img2img_start(s, steps, strength);
    CHECK_INT(sd__sched_img2img_start(s2, steps, strength), first);
    const sd_json *im = sd__json_get(g.cj, "img2img");
    int t_start = sd__json_int(im, "t_start", -1, "case", &err);
    CHECK_INT(first, t_start);
    sd__sched_add_noise(s, first, x0, noise, start, n);
    CHECK_INT(bits_differ(start, want, n), 0);
    CHECK_LE(check_max_abs(start, want, n), TOL_STEP * max_abs(want, n));
    free(x0);
    free(want);
  } else {
    start = tensor(&g, "initial_latents", &n);
    float *want_noise = tensor(&g, "initial_noise", NULL);
    noise = malloc(n * sizeof(float));
    if (!start || !want_noise || !noise) {
      CHECK(0);
      free(want_noise);
      goto out_free;
    }
    sd__rng_randn(&rng, noise, n);
    CHECK_INT(bits_differ(noise, want_noise, n), 0);
    /* initial_latents = initial_noise * init_noise_sigma, in float32 */
    float *lat = malloc(n * sizeof(float));
    for (size_t k = 0; lat && k < n; k++) lat[k] = noise[k] * sd__sched_init_sigma(s);
    CHECK(lat && bits_differ(lat, start, n) == 0);
    free(lat);
    free(want_noise);
  }
  int iters = sd__sched_len(s) - first;
  CHECK_INT((long long)ngot, (long long)iters * (long long)n);
  if (!lat_steps || !ins || !outs || !ts || (size_t)iters * n != ngot) goto out_free;

  float *x = malloc(n * sizeof(float)), *xin = malloc(n * sizeof(float));
  float *eps = malloc(n * sizeof(float)), *run = malloc(n * sizeof(float));
  float *tmp = malloc(n * sizeof(float));
  if (!x || !xin || !eps || !run || !tmp) {
    CHECK(0);
    goto out_buf;
  }
  memcpy(run, start, n * sizeof(float));
  double worst_step = 0, worst_in = 0;
  size_t diff_bits = 0;
  int draws = 0;
  for (int i = first; i < sd__sched_len(s); i++) {
    int gi = i - first;
    const float *prev = gi == 0 ? start : lat_steps + (size_t)(gi - 1) * n;
    const float *ref = lat_steps + (size_t)gi * n;
    CHECK_NEAR(sd__sched_timestep(s, i), ts[gi], 0.0);
    /* scale_model_input against every row of the UNet batch */
    sd__sched_scale_input(s, i, prev, xin, n);
    for (int b = 0; b < B; b++) {
      const float *gin = ins + ((size_t)gi * B + b) * n;
      double e = check_max_abs(xin, gin, n) / (max_abs(gin, n) + 1e-30);
      worst_in = e > worst_in ? e : worst_in;
      CHECK_LE(check_max_abs(xin, gin, n), TOL_STEP * max_abs(gin, n));
    }
    guidance(outs + (size_t)gi * B * n, B, (float)cfg_scale, eps, n);
    if (gi == 0) {
      float *np0 = tensor(&g, "noise_pred_step0", NULL);
      CHECK(np0 && bits_differ(np0, eps, n) == 0);
      free(np0);
    }
    /* teacher forcing: golden latents in */
    sd__rng before = rng;
    memcpy(x, prev, n * sizeof(float));
    CHECK_INT(sd__sched_step(s, i, eps, x, n, &rng, &err), SD_OK);
    double e = check_max_abs(x, ref, n);
    CHECK_LE(e, TOL_STEP * max_abs(ref, n));
    worst_step = e / max_abs(ref, n) > worst_step ? e / max_abs(ref, n) : worst_step;
    diff_bits += bits_differ(x, ref, n);
    /* a draw in step(), if any, is exactly one randn(n): the next scheduler_noise entry */
    if (memcmp(&before, &rng, sizeof rng) != 0) {
      sd__rng probe = before;
      sd__rng_randn(&probe, tmp, n);
      CHECK(memcmp(&probe, &rng, sizeof rng) == 0);
      CHECK(snoise && (size_t)(draws + 1) * n <= nsnoise &&
            bits_differ(tmp, snoise + (size_t)draws * n, n) == 0);
      draws++;
    }
    /* free run: our own latents (the model outputs stay golden), the same draws */
    sd__rng fr = before;
    sd__sched_scale_input(s2, i, run, xin, n);
    CHECK_INT(sd__sched_step(s2, i, eps, run, n, &fr, &err), SD_OK);
  }
  const sd_json *nd = sd__json_get(g.cj, "noise_draws_after_initial");
  if (!nd) nd = sd__json_get(g.cj, "noise_draws_in_scheduler");
  CHECK_INT(draws, nd ? (long long)nd->num : -1);
  const float *fin = lat_steps + (size_t)(iters - 1) * n;
  double erun = check_max_abs(run, fin, n);
  CHECK_LE(erun, TOL_RUN * max_abs(fin, n));
  fprintf(stderr,
          "   teacher forcing: worst step err %.3g x max|ref|, %zu of %zu values not "
          "bit-identical; scale_input worst %.3g; free run %.3g x max|ref|, %zu bits differ\n",
          worst_step, diff_bits, (size_t)iters * n, worst_in, erun / max_abs(fin, n),
          bits_differ(run, fin, n));
out_buf:
  free(x);
  free(xin);
  free(eps);
  free(run);
  free(tmp);
out_free:
  free(lat_steps);
  free(ins);
  free(outs);
  free(ts);
  free(snoise);
  free(start);
  free(noise);
out:
  sd__sched_destroy(s);
  sd__sched_destroy(s2);
  sd__st_close(g.st);
  sd__json_free(g.cj);
  free(g.cj_text);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* GOLDEN.md's scheduler table: timesteps and init_noise_sigma for 4 steps. */
static void table_4_steps(const sd__sched_config *cfg) {
  static const struct {
    const char *name;
    int len;
    float ts[8];
    float init; /* printed to 4 decimals in the table */
  } rows[] = {
      {"ddim", 4, {751, 501, 251, 1}, 1.0f},
      {"pndm", 5, {751, 501, 501, 251, 1}, 1.0f},
      {"euler", 4, {751, 501, 251, 1}, 4.2364f},
      {"euler_a", 4, {751, 501, 251, 1}, 4.2364f},
      {"dpmpp_2m", 4, {801, 601, 401, 201}, 1.0f},
      {"dpmpp_2m_karras", 4, {999, 687, 146, 0}, 1.0f},
      {"lms", 4, {751, 501, 251, 1}, 4.2364f},
      {"heun", 7, {751, 501, 501, 251, 251, 1, 1}, 4.2364f},
      {"ddpm", 4, {751, 501, 251, 1}, 1.0f},
  };
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
    sd__sched *s = NULL;
    sd_error err = {0};
    CHECK_INT(sd__sched_create(rows[r].name, cfg, 4, &s, &err), SD_OK);
    if (!s) continue;
    CHECK_INT(sd__sched_len(s), rows[r].len);
    for (int i = 0; i < rows[r].len && i < sd__sched_len(s); i++)
      CHECK_NEAR(sd__sched_timestep(s, i), rows[r].ts[i], 0.0);
    CHECK_NEAR(sd__sched_init_sigma(s), rows[r].init, 5e-5);
    sd__sched_destroy(s);
  }
}

/* Runs the golden cases do not cover (lms, pndm, dpmpp_2m, other step counts, image-to-image
 * for every sampler family), against values produced interactively with the real diffusers
 * 0.27.2 scheduler classes (from_config(tiny-sd scheduler_config.json, GOLDEN.md overrides))
 * under torch 1.13.1 + scipy 1.10.1, with this loop:
 *   text-to-image: g = torch.Generator().manual_seed(42); noise = torch.randn((1,4,8,8),
 *     generator=g); s.set_timesteps(steps); lat = noise * s.init_noise_sigma; for i, t in
 *     enumerate(s.timesteps): s.scale_model_input(lat, t); o = case a's unet_all_outputs[i % 4];
 *     eps = o[0] + 7.5 * (o[1] - o[0]); lat = s.step(eps, t, lat, generator=g) (generator
 *     only for ddpm/euler/euler_a).
 *   image-to-image: StableDiffusionImg2ImgPipeline.get_timesteps(steps, strength) (with
 *     set_begin_index), g = manual_seed(11), one randn((1,4,8,8)) discarded, noise = the
 *     next; lat = s.add_noise(case g's init_latents_scaled, noise, timesteps[:1]); then the
 *     same loop over the remaining timesteps with case g's unet_all_outputs[i % 6].
 * want[] holds the float32 bits of the final latents at flat indices 0, 37, 64, 101, 128, 170,
 * 200, 255. Expected bit-identical; checked to TOL_RUN x max|want| (free-run tolerance). */
static const size_t ref_idx[8] = {0, 37, 64, 101, 128, 170, 200, 255};
static const struct {
  const char *name;
  int steps;
  double strength; /* < 0: text-to-image */
  uint32_t want[8];
} refs[] = {
    {"lms", 12, -1, {0x419e5c5f, 0xc0a3c6cf, 0x41577bae, 0x40b5badd, 0x41800156, 0x40f74e04,
                     0x40ba7208, 0x3e7a44ed}},
    {"pndm", 12, -1, {0x419d0234, 0xc09d7b86, 0x4154bbdf, 0x40992a86, 0x417d785a, 0x411029be,
                      0x40babaaa, 0xbcac507f}},
    {"dpmpp_2m", 12, -1, {0x419cb1bf, 0xc0a28983, 0x4155c743, 0x40a9bb3c, 0x417d8ac7,
                          0x410439ce, 0x40ba542f, 0x3df089fa}},
    {"euler", 7, -1, {0x4168fb6d, 0xc07e30a3, 0x4120a00c, 0x40975654, 0x413d90e7, 0x40a08e98,
                      0x40897353, 0x3ea696e8}},
    {"heun", 5, -1, {0x413608df, 0xc03fae86, 0x40f98ad1, 0x404dffc0, 0x4113eab2, 0x40951949,
                     0x4058394d, 0x3dee377d}},
    {"ddpm", 9, -1, {0x413ad232, 0xc0ceef4e, 0x41392f8d, 0xc02a8751, 0x412e2d39, 0x40a36479,
                     0x40b2cc43, 0x40963b6f}},
    {"dpmpp_2m_karras", 16, -1, {0x41febdea, 0xc102ad99, 0x41ad55cc, 0x4103b340, 0x41cdb8ad,
                                 0x415fafcf, 0x4117c8b4, 0x3d81d8b9}},
    {"euler_a", 3, -1, {0x40ca3a70, 0xc00dc13b, 0x40a4fdbc, 0x3feef652, 0x40c197ec, 0x3fe00dc9,
                        0x405add8b, 0x3f29cf31}},
    /* 999 steps: scipy's QAGS subdivides some LMS coefficient integrals */
    {"lms", 999, -1, {0x42002a62, 0xc0fdc598, 0x41ac7915, 0x4104fd0e, 0x41ce388a, 0x41582b9f,
                      0x41160c99, 0x3e32d5fa}},
    {"lms", 3, -1, {0x40d83b4e, 0xbff6bd71, 0x409787ae, 0x401c0121, 0x40b269fe, 0x4006fbe4,
                    0x3fff939f, 0x3e7177ac}},
    {"euler_a", 10, 0.5, {0xbf99757a, 0xbf4f38ef, 0xbf58b8b9, 0xc004da67, 0x3f952938,
                          0xbdd96687, 0xbf156a9a, 0x3f4efded}},
    {"heun", 6, 0.7, {0xc00a1c1f, 0xbf819e55, 0xbdc3a1ee, 0xc00f0aa9, 0x4003f0d0, 0xbee993d1,
                      0x3dd076f8, 0x3e687af0}},
    {"pndm", 10, 0.6, {0xc0201917, 0xbf8ea7b3, 0xbd46428d, 0xc011c81f, 0x40173b23, 0xbf0424be,
                       0x3e4d99fb, 0x3e97bdb2}},
    {"dpmpp_2m", 8, 0.6, {0xbfe6664c, 0xbf6edc13, 0xbe0684d3, 0xbff43f4a, 0x3fdbea0e,
                          0xbed51a05, 0x3daefe69, 0x3e517c20}},
    {"lms", 8, 0.5, {0xbfb4c2e0, 0xbf42988c, 0xbe1435c9, 0xbfde8b40, 0x3fb49910, 0xbe98b265,
                     0xbcbba978, 0x3df3f7f2}},
    {"ddpm", 10, 0.29, {0xbed71e46, 0xbe4806a4, 0xbe2501c7, 0xbf505b02, 0x3e9d7ece, 0xbcc3a2d5,
                        0xbc39b332, 0x3ccb7287}},
    {"euler", 7, 1.0, {0xc1096665, 0xc06e3508, 0x3f2a1324, 0xc1090fcb, 0x410f616f, 0xc015f38c,
                       0xbdada0fc, 0x3f2eb094}},
};

static void reference_runs(const sd__sched_config *cfg) {
  char path[1024];
  golden ga = {0}, gg = {0};
  sd_error err = {0};
  snprintf(path, sizeof path, "%s/cases/a_ddim_red_circle/golden.safetensors", SD_TEST_DATA);
  CHECK_INT(sd__st_open(path, &ga.st, &err), SD_OK);
  snprintf(path, sizeof path, "%s/cases/g_img2img_ddim_blue_square/golden.safetensors",
           SD_TEST_DATA);
  CHECK_INT(sd__st_open(path, &gg.st, &err), SD_OK);
  size_t n = 256;
  float *outs_a = ga.st ? tensor(&ga, "unet_all_outputs", NULL) : NULL;
  float *outs_g = gg.st ? tensor(&gg, "unet_all_outputs", NULL) : NULL;
  float *x0 = gg.st ? tensor(&gg, "init_latents_scaled", NULL) : NULL;
  float *x = malloc(n * sizeof(float)), *xin = malloc(n * sizeof(float));
  float *eps = malloc(n * sizeof(float)), *noise = malloc(n * sizeof(float));
  CHECK(outs_a && outs_g && x0 && x && xin && eps && noise);
  for (size_t r = 0; outs_a && outs_g && x0 && x && xin && eps && noise &&
                     r < sizeof refs / sizeof refs[0];
       r++) {
    sd__sched *s = NULL;
    CHECK_INT(sd__sched_create(refs[r].name, cfg, refs[r].steps, &s, &err), SD_OK);
    if (!s) continue;
    sd__rng rng;
    int first = 0;
    const float *outs = outs_a;
    int nouts = 4;
    if (refs[r].strength < 0) {
      sd__rng_seed(&rng, 42);
      sd__rng_randn(&rng, noise, n);
      for (size_t k = 0; k < n; k++) x[k] = noise[k] * sd__sched_init_sigma(s);
    } else {
      sd__rng_seed(&rng, 11);
      sd__rng_randn(&rng, noise, n);
      sd__rng_randn(&rng, noise, n);
      first = sd__sched_img2img_start(s, refs[r].steps, refs[r].strength);
      sd__sched_add_noise(s, first, x0, noise, x, n);
      outs = outs_g;
      nouts = 6;
    }
    for (int i = first; i < sd__sched_len(s); i++) {
      sd__sched_scale_input(s, i, x, xin, n);
      guidance(outs + (size_t)((i - first) % nouts) * 2 * n, 2, 7.5f, eps, n);
      CHECK_INT(sd__sched_step(s, i, eps, x, n, &rng, &err), SD_OK);
    }
    float got[8], want[8];
    for (int k = 0; k < 8; k++) {
      got[k] = x[ref_idx[k]];
      memcpy(&want[k], &refs[r].want[k], 4);
    }
    size_t d = bits_differ(got, want, 8);
    fprintf(stderr, "   reference %s %d steps%s: %zu of 8 values not bit-identical, err %.3g\n",
            refs[r].name, refs[r].steps, refs[r].strength < 0 ? "" : " img2img", d,
            check_max_abs(got, want, 8));
    CHECK_LE(check_max_abs(got, want, 8), TOL_RUN * max_abs(want, 8));
    sd__sched_destroy(s);
  }
  free(outs_a);
  free(outs_g);
  free(x0);
  free(x);
  free(xin);
  free(eps);
  free(noise);
  sd__st_close(ga.st);
  sd__st_close(gg.st);
}

/* Edges: one step for every sampler, and strength 0 (nothing runs, the latents pass). */
static void edges(const sd__sched_config *cfg) {
  for (const char *const *p = sd_sampler_names; *p; p++) {
    sd__sched *s = NULL;
    sd_error err = {0};
    CHECK_INT(sd__sched_create(*p, cfg, 1, &s, &err), SD_OK);
    if (!s) continue;
    CHECK_INT(sd__sched_len(s), 1);
    float x[48], xin[48], eps[48];
    sd__rng rng;
    sd__rng_seed(&rng, 3);
    sd__rng_randn(&rng, x, 48);
    sd__rng_randn(&rng, eps, 48);
    sd__sched_scale_input(s, 0, x, xin, 48);
    CHECK_INT(sd__sched_step(s, 0, eps, x, 48, &rng, &err), SD_OK);
    int finite = 1;
    for (int k = 0; k < 48; k++) finite &= isfinite(x[k]) != 0;
    CHECK(finite);
    /* a second size in the same run is refused */
    if (strcmp(*p, "ddim") == 0)
      CHECK_INT(sd__sched_step(s, 0, eps, x, 47, &rng, &err), SD_ERR_INVALID);
    float y[48];
    int first = sd__sched_img2img_start(s, 1, 0.0);
    CHECK_INT(first, sd__sched_len(s));
    sd__sched_add_noise(s, first, x, eps, y, 48);
    CHECK(memcmp(x, y, sizeof y) == 0);
    sd__sched_destroy(s);
  }
  sd__sched_destroy(NULL);
}

static void errors(const sd__sched_config *cfg) {
  sd__sched *s = (sd__sched *)1;
  sd_error err = {0};
  CHECK_INT(sd__sched_create("k_dpm_fast", cfg, 10, &s, &err), SD_ERR_INVALID);
  CHECK(s == NULL);
  CHECK(strstr(err.msg, "k_dpm_fast") && strstr(err.msg, "dpmpp_2m_karras") &&
        strstr(err.msg, "pndm"));
  sd_error err2 = {0};
  CHECK_INT(sd__sched_create(NULL, cfg, 10, &s, &err2), SD_ERR_INVALID);
  sd_error err3 = {0};
  CHECK_INT(sd__sched_create("euler", cfg, 0, &s, &err3), SD_ERR_INVALID);
  sd_error err4 = {0};
  CHECK_INT(sd__sched_create("euler", cfg, cfg->num_train_timesteps + 1, &s, &err4),
            SD_ERR_INVALID);
  int k = 0;
  for (const char *const *p = sd_sampler_names; *p; p++, k++) CHECK(sd__sched_known(*p));
  CHECK_INT(k, 9);
  CHECK(!sd__sched_known("euler a"));
  CHECK(!sd__sched_known(NULL));
  /* a config asking for something the samplers do not implement is refused */
  const char *bad = "{\"beta_schedule\": \"sigmoid\"}";
  sd_json *j = NULL;
  sd_error err5 = {0};
  sd__sched_config c2;
  sd__sched_config_default(&c2);
  CHECK_INT(sd__json_parse(bad, strlen(bad), &j, &err5), SD_OK);
  CHECK_INT(sd__sched_config_from_json(j, &c2, &err5), SD_ERR_UNSUPPORTED);
  sd__json_free(j);
  const char *wrong = "{\"steps_offset\": \"one\"}";
  sd_error err6 = {0};
  CHECK_INT(sd__json_parse(wrong, strlen(wrong), &j, &err6), SD_OK);
  CHECK_INT(sd__sched_config_from_json(j, &c2, &err6), SD_ERR_FORMAT);
  sd__json_free(j);
}

int main(void) {
  sd__sched_config cfg = model_config();
  CHECK_INT(cfg.num_train_timesteps, 1000);
  CHECK_STR(cfg.beta_schedule, "scaled_linear");
  CHECK_INT(cfg.steps_offset, 1);

  DIR *d = opendir(SD_TEST_DATA "/cases");
  CHECK(d != NULL);
  char *names[64];
  int count = 0;
  for (struct dirent *e; d && (e = readdir(d)) && count < 64;)
    if (e->d_name[0] != '.') names[count++] = strdup(e->d_name);
  if (d) closedir(d);
  qsort(names, (size_t)count, sizeof names[0], cmp_str);
  CHECK(count >= 8);
  for (int i = 0; i < count; i++) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/cases/%s", SD_TEST_DATA, names[i]);
    run_case(dir, &cfg);
    free(names[i]);
  }
  table_4_steps(&cfg);
  reference_runs(&cfg);
  edges(&cfg);
  errors(&cfg);
  return check_exit();
}
