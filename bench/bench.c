/* bench.c: times the engine's networks on a full-size model (tools/sdgen's random SD 1.5).
 *
 *   bench MODEL [--threads N] [--size S] [--repeat R] [--only LIST] [--tokenizer DIR]
 *         [--controlnet PATH]
 *
 * LIST is comma-separated from: text (CLIP, 77 tokens), unet (one eval, B=1, at 256 and at
 * --size), step (one CFG denoising step: UNet at B=2 plus the guidance mix, at --size), vae
 * (decode to --size), enc (encode from --size), gen (a whole sd_generate request of --steps
 * CFG steps, default 2, at --size), cnstep (one CFG step with the --controlnet net against one
 * without, interleaved A B A B in this process over max(2, --repeat) rounds, the hint encoded
 * once outside the timed part as the pipeline does; prints both and their ratio).
 * Default: text,unet,step,vae. Each line gives seconds per call (min and mean over --repeat),
 * effective GFLOP/s from fixed work counts of SD 1.5 (only at the sizes they were counted for,
 * and only for a model with SD 1.5's widths), the output's mean/std (a non-finite value fails
 * the run) and the peak RSS so far (getrusage). For one peak RSS per configuration, run
 * one --only per process. Not a test: it asserts nothing but finiteness.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "controlnet.h"
#include "model.h"
#include "rng.h"
#include "sd.h"

/* GFLOP (2 x multiply-adds) per call, counted for SD 1.5; 0 = not counted at that size */
static double unet_gflop(int size) { return size == 512 ? 803.3 : size == 256 ? 180.1 : 0; }
static double vae_dec_gflop(int size) { return size == 512 ? 2514.5 : 0; }
static double vae_enc_gflop(int size) { return size == 512 ? 1117.0 : 0; }

typedef struct bench {
  sd_model *m;
  sd__ctx ctx;
  int repeat;
  float *text;  /* [2, 77, hidden]: the prompt's embedding, then the empty prompt's */
  int hidden;
  int failed;
  int sd15;     /* the UNet and VAE have SD 1.5's widths: the work counts apply */
} bench;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process (all threads): with the machine shared, wall time alone
 * mixes our speed with the others' load; cpu / wall shows the share we got. */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

static float *randn(size_t n, uint64_t seed) {
  float *x = malloc(n * sizeof *x);
  if (!x) return NULL;
  sd__rng r;
  sd__rng_seed(&r, seed);
  sd__rng_randn(&r, x, n);
  return x;
}

/* One result line; out (n floats) is checked for finiteness and summarised. */
static void report(bench *b, const char *what, int size, int batch, const double *t,
                   const double *cpu, int reps, double gflop, const float *out, size_t n) {
  double mn = t[0], sum = 0, s = 0, s2 = 0, cpu_sum = 0;
  size_t bad = 0;
  for (int i = 0; i < reps; i++) {
    mn = t[i] < mn ? t[i] : mn;
    sum += t[i];
    cpu_sum += cpu[i];
  }
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(out[i])) {
      bad++;
      continue;
    }
    s += out[i];
    s2 += (double)out[i] * out[i];
  }
  double mean = s / (double)n, sd = sqrt(fmax(s2 / (double)n - mean * mean, 0));
  char gf[32] = "-";
  if (gflop > 0 && b->sd15) snprintf(gf, sizeof gf, "%.1f", gflop / mn);
  printf("%-5s %4dx%-4d B=%d  min %8.3f s  mean %8.3f s  GFLOP/s %6s  cpu %8.3f s (%3.0f%%)"
         "  out mean %+.3e std %.3e  peak RSS %.0f MB\n",
         what, size, size, batch, mn, sum / reps, gf, cpu_sum / reps, 100 * cpu_sum / sum, mean,
         sd, peak_rss_mb());
  if (bad) {
    printf("      %zu non-finite outputs\n", bad);
    b->failed = 1;
  }
  fflush(stdout);
}

static int fail_status(bench *b, const char *what, sd_status st, const char *msg) {
  fprintf(stderr, "bench: %s: %s (%s)\n", what, msg, sd_status_str(st));
  b->failed = 1;
  return -1;
}

static int run_text(bench *b) {
  int32_t ids[77];
  char err[SD_ERRMSG_MAX];
  double t[64], c[64];
  sd_status st = sd_model_tokenize(b->m, "a photograph of an astronaut riding a horse", ids, err);
  if (st != SD_OK) return fail_status(b, "tokenize", st, err);
  for (int r = 0; r < b->repeat; r++) {
    double t0 = now(), c0 = cpu_now();
    st = sd__clip_forward(b->m->clip, &b->ctx, ids, 77, b->text);
    t[r] = now() - t0;
    c[r] = cpu_now() - c0;
    if (st != SD_OK) return fail_status(b, "text encoder", st, "forward failed");
  }
  report(b, "text", 77, 1, t, c, b->repeat, 0, b->text, (size_t)77 * b->hidden);
  return 0;
}

/* The text conditioning for the UNet: the prompt (run_text's) and the empty prompt. */
static int encode_prompts(bench *b) {
  int32_t ids[77];
  char err[SD_ERRMSG_MAX];
  const char *prompts[2] = {"a photograph of an astronaut riding a horse", ""};
  for (int i = 0; i < 2; i++) {
    sd_status st = sd_model_tokenize(b->m, prompts[i], ids, err);
    if (st != SD_OK) return fail_status(b, "tokenize", st, err);
    st = sd__clip_forward(b->m->clip, &b->ctx, ids, 77, b->text + (size_t)i * 77 * b->hidden);
    if (st != SD_OK) return fail_status(b, "text encoder", st, "forward failed");
  }
  return 0;
}

/* B=1: one UNet eval. cfg: B=2 (cond, uncond) and the guidance mix, as one sampler step. */
static int run_unet(bench *b, int size, int cfg) {
  const sd__unet_config *uc = sd__unet_get_config(b->m->unet);
  int B = cfg ? 2 : 1, h = size / 8, w = size / 8, C = uc->in_channels;
  size_t per = (size_t)C * h * w;
  float *x1 = randn(per, 1), *x = malloc(B * per * sizeof *x);
  float *eps = malloc(B * per * sizeof *eps), *guided = malloc(per * sizeof *guided);
  double t[64], c[64];
  sd_error err = {0};
  int rc = -1;
  if (!x1 || !x || !eps || !guided) {
    fail_status(b, "unet", SD_ERR_NOMEM, "out of memory");
    goto out_free;
  }
  for (int i = 0; i < B; i++) memcpy(x + i * per, x1, per * sizeof *x);
  for (int r = 0; r < b->repeat; r++) {
    double t0 = now(), c0 = cpu_now();
    sd_status st = sd__unet_forward(b->m->unet, &b->ctx, x, B, h, w, 981.0f, b->text, 77, NULL,
                                    eps, &err);
    if (st != SD_OK) {
      fail_status(b, "unet", st, err.msg);
      goto out_free;
    }
    if (cfg)
      for (size_t i = 0; i < per; i++) guided[i] = eps[per + i] + 7.5f * (eps[i] - eps[per + i]);
    t[r] = now() - t0;
    c[r] = cpu_now() - c0;
  }
  report(b, cfg ? "step" : "unet", size, B, t, c, b->repeat, B * unet_gflop(size),
         cfg ? guided : eps, per);
  rc = 0;
out_free:
  free(x1);
  free(x);
  free(eps);
  free(guided);
  return rc;
}

/* One CFG step (UNet B=2 + guidance mix), with the ControlNet's forward pass (x, t, text and
 * the hint; residuals zeroed first) before the UNet when r is not NULL: the pipeline's step. */
static sd_status cfg_step(bench *b, const sd_controlnet *cn, const float *hint,
                          sd__cn_residuals *r, const float *x, int h, int w, float *eps,
                          float *guided, size_t per, sd_error *err) {
  const float *down[SD__CN_MAX_SKIPS];
  sd__unet_residuals view;
  if (r) {
    sd__cn_residuals_zero(r);
    sd_status st = sd__controlnet_forward(cn, &b->ctx, x, 2, h, w, 981.0f, b->text, 77, hint,
                                          1.0f, r, err);
    if (st != SD_OK) return st;
    sd__cn_residuals_view(r, down, &view);
  }
  sd_status st = sd__unet_forward(b->m->unet, &b->ctx, x, 2, h, w, 981.0f, b->text, 77,
                                  r ? &view : NULL, eps, err);
  for (size_t i = 0; st == SD_OK && i < per; i++)
    guided[i] = eps[per + i] + 7.5f * (eps[i] - eps[per + i]);
  return st;
}

/* cnstep: A = plain CFG step, B = CFG step with the ControlNet, interleaved A B A B. */
static int run_cnstep(bench *b, const sd_controlnet *cn, int size) {
  const sd__unet_config *uc = sd__unet_get_config(b->m->unet);
  int h = size / 8, w = size / 8, C = uc->in_channels, c0 = uc->block_out_channels[0];
  int rounds = b->repeat < 2 ? 2 : b->repeat;
  size_t per = (size_t)C * h * w, npix = (size_t)size * size;
  float *x1 = randn(per, 1), *x = malloc(2 * per * sizeof *x), *eps = malloc(2 * per * sizeof *eps);
  float *guided = malloc(2 * per * sizeof *guided), *img = malloc(3 * npix * sizeof *img);
  float *hint = malloc((size_t)c0 * h * w * sizeof *hint);
  double ta[64], ca[64], tb[64], cb[64];
  sd__cn_residuals res = {0};
  sd_error err = {0};
  int rc = -1;
  if (!x1 || !x || !eps || !guided || !img || !hint) {
    fail_status(b, "cnstep", SD_ERR_NOMEM, "out of memory");
    goto out_free;
  }
  sd_status st = sd__controlnet_check_base(cn, uc, &err);
  if (st == SD_OK) st = sd__cn_residuals_init(&res, uc, 2, h, w, &err);
  if (st != SD_OK) {
    fail_status(b, "cnstep", st, err.msg);
    goto out_free;
  }
  memcpy(x, x1, per * sizeof *x);
  memcpy(x + per, x1, per * sizeof *x);
  /* a hard-edged control image (stripes and a disc, 0 or 1 like a Canny map) */
  for (int y = 0; y < size; y++)
    for (int xx = 0; xx < size; xx++) {
      int dx = xx - size / 2, dy = y - size / 3;
      float v = ((xx / 16) % 5 == 0 || dx * dx + dy * dy < size * size / 16) ? 1.0f : 0.0f;
      for (int c = 0; c < 3; c++) img[(size_t)c * npix + (size_t)y * size + xx] = v;
    }
  double t0 = now(), c0t = cpu_now();
  st = sd__controlnet_hint(cn, &b->ctx, img, size, size, hint, &err);
  double thint = now() - t0, chint = cpu_now() - c0t;
  if (st != SD_OK) {
    fail_status(b, "cnstep hint", st, err.msg);
    goto out_free;
  }
  report(b, "hint", size, 1, &thint, &chint, 1, 0, hint, (size_t)c0 * h * w);
  for (int r = 0; r < rounds; r++) {
    for (int with = 0; with < 2; with++) {
      double s0 = now(), s1 = cpu_now();
      st = cfg_step(b, cn, hint, with ? &res : NULL, x, h, w, eps, guided + with * per, per,
                    &err);
      (with ? tb : ta)[r] = now() - s0;
      (with ? cb : ca)[r] = cpu_now() - s1;
      if (st != SD_OK) {
        fail_status(b, with ? "cnstep" : "step", st, err.msg);
        goto out_free;
      }
      printf("  round %d %-6s %8.3f s  cpu %8.3f s  load ", r + 1, with ? "cnstep" : "step",
             (with ? tb : ta)[r], (with ? cb : ca)[r]);
      double l1 = -1, l5 = -1, l15 = -1; /* load averages: how shared the machine was */
      FILE *la = fopen("/proc/loadavg", "r");
      if (la) {
        if (fscanf(la, "%lf %lf %lf", &l1, &l5, &l15) != 3) l1 = l5 = l15 = -1;
        fclose(la);
      }
      printf("%.2f %.2f %.2f\n", l1, l5, l15);
      fflush(stdout);
    }
  }
  report(b, "step", size, 2, ta, ca, rounds, 2 * unet_gflop(size), guided, per);
  report(b, "cnstep", size, 2, tb, cb, rounds, 0, guided + per, per);
  double ma = ta[0], mb = tb[0];
  for (int r = 1; r < rounds; r++) {
    ma = ta[r] < ma ? ta[r] : ma;
    mb = tb[r] < mb ? tb[r] : mb;
  }
  printf("cnstep/step ratio (min over %d interleaved rounds): %.3f\n", rounds, mb / ma);
  rc = 0;
out_free:
  sd__cn_residuals_free(&res);
  free(x1);
  free(x);
  free(eps);
  free(guided);
  free(img);
  free(hint);
  return rc;
}

static int run_vae(bench *b, int size, int encode) {
  const sd__vae_config *vc = sd__vae_get_config(b->m->vae);
  int h = size / 8, w = size / 8;
  size_t nz = (size_t)vc->latent_channels * h * w, nimg = (size_t)3 * size * size;
  size_t nout = encode ? 2 * nz : nimg;
  float *in = randn(encode ? nimg : nz, 2), *out = malloc(nout * sizeof *out);
  double t[64], c[64];
  sd_error err = {0};
  int rc = -1;
  if (!in || !out) {
    fail_status(b, "vae", SD_ERR_NOMEM, "out of memory");
    goto out_free;
  }
  for (int r = 0; r < b->repeat; r++) {
    double t0 = now(), c0 = cpu_now();
    sd_status st = encode ? sd__vae_encode(b->m->vae, &b->ctx, in, size, size, out, &err)
                          : sd__vae_decode(b->m->vae, &b->ctx, in, h, w, 0, out, &err);
    t[r] = now() - t0;
    c[r] = cpu_now() - c0;
    if (st != SD_OK) {
      fail_status(b, "vae", st, err.msg);
      goto out_free;
    }
  }
  report(b, encode ? "enc" : "vae", size, 1, t, c, b->repeat,
         encode ? vae_enc_gflop(size) : vae_dec_gflop(size), out, nout);
  rc = 0;
out_free:
  free(in);
  free(out);
  return rc;
}

/* The whole request through the public API: text, `steps` CFG steps (euler_a), decode. */
static int run_generate(bench *b, int size, int steps) {
  sd_request rq;
  sd_image img = {0};
  char err[SD_ERRMSG_MAX];
  double t[64], c[64];
  sd_request_init(&rq);
  rq.prompt = "a photograph of an astronaut riding a horse";
  rq.seed = 42;
  rq.steps = steps;
  rq.width = rq.height = size;
  rq.threads = b->ctx.threads;
  for (int r = 0; r < b->repeat; r++) {
    double t0 = now(), c0 = cpu_now();
    sd_status st = sd_generate(b->m, &rq, &img, err);
    t[r] = now() - t0;
    c[r] = cpu_now() - c0;
    if (st != SD_OK) return fail_status(b, "generate", st, err);
    if (r + 1 < b->repeat) sd_image_free(&img);
  }
  size_t n = (size_t)3 * size * size;
  float *f = malloc(n * sizeof *f); /* the 8-bit image as floats, for report's statistics */
  char what[16];
  snprintf(what, sizeof what, "gen%d", steps);
  if (f) {
    for (size_t i = 0; i < n; i++) f[i] = img.rgb[i];
    report(b, what, size, 1, t, c, b->repeat, 0, f, n);
  }
  int ok = f != NULL;
  free(f);
  sd_image_free(&img);
  return ok ? 0 : fail_status(b, "generate", SD_ERR_NOMEM, "out of memory");
}

static int wants(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
    if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
  return 0;
}

static void usage(void) {
  fprintf(stderr, "usage: bench MODEL [--threads N] [--size S] [--repeat R] "
                  "[--only text,unet,step,vae,enc,gen,cnstep] [--steps N] [--tokenizer DIR] "
                  "[--controlnet PATH]\n");
}

int main(int argc, char **argv) {
  const char *path = NULL, *only = "text,unet,step,vae", *tokenizer = NULL, *cnpath = NULL;
  int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), size = 512, repeat = 1, steps = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v && !strcmp(a, "--threads")) threads = atoi(v), i++;
    else if (v && !strcmp(a, "--size")) size = atoi(v), i++;
    else if (v && !strcmp(a, "--repeat")) repeat = atoi(v), i++;
    else if (v && !strcmp(a, "--only")) only = v, i++;
    else if (v && !strcmp(a, "--tokenizer")) tokenizer = v, i++;
    else if (v && !strcmp(a, "--steps")) steps = atoi(v), i++;
    else if (v && !strcmp(a, "--controlnet")) cnpath = v, i++;
    else if (a[0] != '-' && !path) path = a;
    else {
      usage();
      return 2;
    }
  }
  if (!path || threads < 1 || size < 64 || size % 64 || repeat < 1 || repeat > 64 ||
      steps < 1 || steps > 1000 || (wants(only, "cnstep") && !cnpath)) {
    usage();
    return 2;
  }
  bench b = {.repeat = repeat};
  sd_controlnet *cn = NULL;
  char err[SD_ERRMSG_MAX];
  sd_load_options opt;
  sd_load_options_init(&opt);
  opt.threads = threads;
  opt.tokenizer_dir = tokenizer;
  double t0 = now();
  sd_status st = sd_model_load(path, &opt, &b.m, err);
  if (st != SD_OK) {
    fprintf(stderr, "bench: %s\n", err);
    return 1;
  }
  printf("model %s loaded in %.1f s, peak RSS %.0f MB, %d threads\n", path, now() - t0,
         peak_rss_mb(), threads);
  if (cnpath) {
    t0 = now();
    st = sd_controlnet_load(cnpath, &opt, &cn, err);
    if (st != SD_OK) {
      fprintf(stderr, "bench: %s\n", err);
      sd_model_destroy(b.m);
      return 1;
    }
    printf("controlnet %s loaded in %.1f s, peak RSS %.0f MB\n", cnpath, now() - t0,
           peak_rss_mb());
  }
  b.hidden = sd__clip_get_config(b.m->clip)->hidden;
  {
    const sd__unet_config *uc = sd__unet_get_config(b.m->unet);
    const sd__vae_config *vc = sd__vae_get_config(b.m->vae);
    b.sd15 = uc->levels == 4 && uc->block_out_channels[0] == 320 &&
             uc->block_out_channels[3] == 1280 && uc->cross_attention_dim == 768 &&
             vc->levels == 4 && vc->block_out_channels[0] == 128 &&
             vc->block_out_channels[3] == 512;
  }
  b.ctx.threads = threads;
  b.ctx.arena = sd__arena_create((size_t)64 << 20);
  b.text = malloc((size_t)2 * 77 * b.hidden * sizeof *b.text);
  openblas_set_num_threads(threads);
  if (sd__pool_create(threads, &b.ctx.pool, NULL) != SD_OK || !b.ctx.arena || !b.text) {
    fprintf(stderr, "bench: out of memory\n");
    b.failed = 1;
    goto out;
  }
  if (wants(only, "text")) run_text(&b);
  if ((wants(only, "unet") || wants(only, "step") || wants(only, "cnstep")) &&
      encode_prompts(&b) != 0)
    goto out;
  if (wants(only, "unet") && size != 256) run_unet(&b, 256, 0);
  if (wants(only, "unet")) run_unet(&b, size, 0);
  if (wants(only, "step")) run_unet(&b, size, 1);
  if (wants(only, "vae")) run_vae(&b, size, 0);
  if (wants(only, "enc")) run_vae(&b, size, 1);
  if (wants(only, "gen")) run_generate(&b, size, steps);
  if (wants(only, "cnstep")) run_cnstep(&b, cn, size);
out:
  free(b.text);
  sd__pool_destroy(b.ctx.pool);
  sd__arena_destroy(b.ctx.arena);
  sd_model_destroy(b.m);
  sd_controlnet_destroy(cn);
  return b.failed ? 1 : 0;
}
