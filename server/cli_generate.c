/* cli_generate.c: `sdserve generate`: one text-to-image run from the command line.
 *
 * Order matters for a good command-line tool: the whole command line is validated first
 * (exit 2), then the output is opened (a temporary file beside it, so an unwritable path
 * fails before minutes of work, and a reader never sees a half-written PNG), then the model
 * is loaded and the image generated, written with its A1111 `parameters` text, and renamed
 * into place. Progress: a bar on stderr when stderr is a terminal, nothing otherwise.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "infotext.h"
#include "png_io.h"
#include "sd.h"

static const char gen_usage[] =
    "usage: sdserve generate [--model PATH] --prompt TEXT -o OUT.png [options]\n"
    "\n"
    "Generate one image from a text prompt and write it as PNG (with an A1111 'parameters'\n"
    "text chunk describing how it was made).\n"
    "\n"
    "  --model PATH            diffusers folder or single .safetensors checkpoint (default:\n"
    "                          the bundled demo model, 128x128 coloured shapes)\n"
    "  --prompt TEXT           what to draw (required; may be \"\")\n"
    "  --negative-prompt TEXT  what to steer away from (default \"\")\n"
    "  --seed N                0..18446744073709551615, or -1 for random (default 0)\n"
    "  --steps N               denoising steps, 1..1000 (default 20)\n"
    "  --cfg-scale X           classifier-free guidance scale; <= 1 disables it (default 7.5)\n"
    "  --sampler NAME          sampler (default euler_a; the names are listed below)\n"
    "  --width W, --height H   image size, multiples of 8 in 8..4096 (default: the model's)\n"
    "  --threads N             threads, 0 = all cores (default 0; never changes the image)\n"
    "  --tokenizer DIR         tokenizer folder for single-file checkpoints\n"
    "  --init-image PNG        image-to-image: start from this picture (its size, multiples\n"
    "                          of 8; converted to RGB as Pillow's convert(\"RGB\") does)\n"
    "  --strength X            image-to-image: how much to change it, 0..1 (default 0.75)\n"
    "  --controlnet PATH       ControlNet (diffusers folder or .safetensors) to guide with\n"
    "                          (default with --control-image: the model's controlnet/)\n"
    "  --control-image PNG     its control image (e.g. a Canny edge map; resized to the output\n"
    "                          size when different)\n"
    "  --control-scale X       conditioning scale (default 1)\n"
    "  --control-start X, --control-end X\n"
    "                          fraction of the steps it applies to (default 0 and 1)\n"
    "  --control-preprocess P  none (default): the control image is the edge map; canny:\n"
    "                          make it from a photo with OpenCV's Canny (as sdserve canny)\n"
    "  --canny-low L, --canny-high H\n"
    "                          Canny thresholds (default 100 and 200)\n"
    "  -o, --output OUT.png    where to write the image (required)\n"
    "  --verbose               print the engine's log messages on stderr\n"
    "  -h, --help              this help\n"
    "\n"
    "Progress goes to stderr as a bar when stderr is a terminal (nothing otherwise); the last\n"
    "line, on stdout, gives the output path and the time taken. Errors are one line on\n"
    "stderr starting with 'sdserve: error:'; exit status 2 = bad command line, 1 = failure.\n"
    "\n"
    "Samplers: ";

enum {
  O_MODEL, O_PROMPT, O_NEG, O_SEED, O_STEPS, O_CFG, O_SAMPLER, O_WIDTH, O_HEIGHT, O_THREADS,
  O_TOKENIZER, O_OUTPUT, O_VERBOSE, O_HELP, O_INIT, O_STRENGTH, O_CN, O_CN_IMAGE, O_CN_SCALE,
  O_CN_START, O_CN_END, O_CN_PRE, O_CANNY_LOW, O_CANNY_HIGH
};
static const cli_opt gen_opts[] = {
    {"model", 0, 1},   {"prompt", 0, 1},    {"negative-prompt", 0, 1}, {"seed", 0, 1},
    {"steps", 0, 1},   {"cfg-scale", 0, 1}, {"sampler", 0, 1},         {"width", 0, 1},
    {"height", 0, 1},  {"threads", 0, 1},   {"tokenizer", 0, 1},       {"output", 'o', 1},
    {"verbose", 0, 0}, {"help", 'h', 0},    {"init-image", 0, 1},      {"strength", 0, 1},
    {"controlnet", 0, 1}, {"control-image", 0, 1}, {"control-scale", 0, 1},
    {"control-start", 0, 1}, {"control-end", 0, 1}, {"control-preprocess", 0, 1},
    {"canny-low", 0, 1}, {"canny-high", 0, 1}, {NULL, 0, 0}};

/* Set by SIGINT/SIGTERM, polled by the cancel callback: a signal handler can only reach a
 * static flag, which is why this one piece of state is not on the run's struct. */
static volatile sig_atomic_t g_interrupted;
static void on_signal(int sig) { (void)sig, g_interrupted = 1; }

typedef struct gen_run {
  int tty;
  struct timespec t0;
  int drew;
} gen_run;

static double seconds_since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static void on_progress(void *user, int step, int total, const float *lat, int c, int h,
                        int w) {
  (void)lat, (void)c, (void)h, (void)w;
  gen_run *r = user;
  if (!r->tty || total <= 0) return;
  enum { BAR = 30 };
  char bar[BAR + 1];
  int fill = (int)((long)BAR * step / total);
  for (int i = 0; i < BAR; i++) bar[i] = i < fill ? '#' : '-';
  bar[BAR] = '\0';
  fprintf(stderr, "\r[%s] %d/%d  %.1f s", bar, step, total, seconds_since(&r->t0));
  fflush(stderr);
  r->drew = 1;
}

static int on_cancel(void *user) { return (void)user, g_interrupted != 0; }

static void on_log(void *user, sd_log_level level, const char *msg) {
  (void)user;
  static const char *names[] = {"debug", "info", "warn"};
  fprintf(stderr, "sdserve: %s: %s\n", names[level >= 0 && level <= 2 ? level : 1], msg);
}

static int sampler_known(const char *name) {
  for (const char *const *s = sd_sampler_names; *s; s++)
    if (strcmp(*s, name) == 0) return 1;
  return 0;
}

static void sampler_list(char *buf, size_t cap) {
  size_t k = 0;
  buf[0] = '\0';
  for (const char *const *s = sd_sampler_names; *s && k < cap; s++)
    k += (size_t)snprintf(buf + k, cap - k, "%s%s", s == sd_sampler_names ? "" : ", ", *s);
}

typedef struct gen_args {
  const char *model, *out, *tokenizer, *init_path, *cn_path, *cn_image_path;
  char *cn_default;      /* the model's controlnet/ when --controlnet is not given */
  int seed_random, verbose, have_strength;
  sd_request rq;
  api_png_image init;    /* the decoded --init-image */
  api_png_image cn_img;  /* the decoded --control-image */
  sd_controlnet *cn;     /* the loaded --controlnet */
  sd_control_unit unit;  /* what rq.control points at */
  int canny;             /* --control-preprocess canny */
  float canny_low, canny_high;
  uint8_t *cn_edges;     /* the control image's Canny map, as RGB */
} gen_args;

/* Parse and validate the command line into a. Returns CLI_EXIT_OK, or an exit status after
 * printing help (0) or one error line (2); *done is set when the command should stop. */
static int parse_args(int argc, char **argv, gen_args *a, int *done) {
  cli_parser p = {.argc = argc, .argv = argv, .i = 1, .opts = gen_opts, .cmd = "generate"};
  int have_prompt = 0, o;
  const char *v;
  *done = 1;
  while ((o = cli_next(&p, &v)) != CLI_END) {
    int bad = 0;
    switch (o) {
    case CLI_BAD: return CLI_EXIT_USAGE;
    case CLI_POSITIONAL:
      cli_error("generate: unexpected argument '%s' (the prompt goes after --prompt)", v);
      return CLI_EXIT_USAGE;
    case O_HELP: {
      char names[256];
      sampler_list(names, sizeof names);
      printf("%s%s\n", gen_usage, names);
      return CLI_EXIT_OK;
    }
    case O_MODEL: a->model = v; break;
    case O_PROMPT: a->rq.prompt = v, have_prompt = 1; break;
    case O_NEG: a->rq.negative_prompt = v; break;
    case O_SEED: bad = cli_parse_seed("seed", v, &a->rq.seed, &a->seed_random); break;
    case O_STEPS: bad = cli_parse_int("steps", v, 1, 1000, &a->rq.steps); break;
    case O_CFG: bad = cli_parse_float("cfg-scale", v, &a->rq.cfg_scale); break;
    case O_SAMPLER: a->rq.sampler = v; break;
    case O_WIDTH: bad = cli_parse_int("width", v, 8, 4096, &a->rq.width); break;
    case O_HEIGHT: bad = cli_parse_int("height", v, 8, 4096, &a->rq.height); break;
    case O_THREADS: bad = cli_parse_int("threads", v, 0, 1024, &a->rq.threads); break;
    case O_TOKENIZER: a->tokenizer = v; break;
    case O_OUTPUT: a->out = v; break;
    case O_VERBOSE: a->verbose = 1; break;
    case O_INIT: a->init_path = v; break;
    case O_CN: a->cn_path = v; break;
    case O_CN_IMAGE: a->cn_image_path = v; break;
    case O_CN_SCALE: bad = cli_parse_float("control-scale", v, &a->unit.scale); break;
    case O_CN_START: bad = cli_parse_float("control-start", v, &a->unit.start); break;
    case O_CN_END: bad = cli_parse_float("control-end", v, &a->unit.end); break;
    case O_CN_PRE:
      if (strcmp(v, "canny") == 0) {
        a->canny = 1;
      } else if (strcmp(v, "none") != 0) {
        cli_error("--control-preprocess: unknown preprocessor '%s' (valid: none, canny)", v);
        bad = 1;
      }
      break;
    case O_CANNY_LOW: bad = cli_parse_float("canny-low", v, &a->canny_low); break;
    case O_CANNY_HIGH: bad = cli_parse_float("canny-high", v, &a->canny_high); break;
    case O_STRENGTH:
      bad = cli_parse_float("strength", v, &a->rq.strength);
      if (!bad && !(a->rq.strength >= 0.0f && a->rq.strength <= 1.0f)) {
        cli_error("--strength: %s is out of range (0..1)", v);
        bad = 1;
      }
      a->have_strength = 1;
      break;
    }
    if (bad) return CLI_EXIT_USAGE;
  }
  if (a->rq.width % 8 || a->rq.height % 8) {
    int bad_w = a->rq.width % 8 != 0;
    cli_error("generate: --%s %d is not a multiple of 8", bad_w ? "width" : "height",
              bad_w ? a->rq.width : a->rq.height);
    return CLI_EXIT_USAGE;
  }
  if (!sampler_known(a->rq.sampler)) {
    char names[512];
    sampler_list(names, sizeof names);
    cli_error("generate: unknown sampler '%s' (valid: %s)", a->rq.sampler, names);
    return CLI_EXIT_USAGE;
  }
  if (!a->model) {
    const char *tried;
    if (!(a->model = cli_default_model(&tried))) {
      cli_error("generate: no --model PATH given and the bundled demo model is not at %s",
                tried);
      return CLI_EXIT_USAGE;
    }
  }
  if (!have_prompt) {
    cli_error("generate: --prompt TEXT is required (use --prompt \"\" for an empty prompt)");
    return CLI_EXIT_USAGE;
  }
  if (!a->out) {
    cli_error("generate: -o OUT.png is required");
    return CLI_EXIT_USAGE;
  }
  if (a->have_strength && !a->init_path) {
    cli_error("generate: --strength only applies with --init-image");
    return CLI_EXIT_USAGE;
  }
  if (a->cn_image_path && !a->cn_path &&
      !(a->cn_path = a->cn_default = cli_model_controlnet(a->model))) {
    cli_error("generate: --control-image needs --controlnet (the model has no controlnet/)");
    return CLI_EXIT_USAGE;
  }
  if (a->cn_path && !a->cn_image_path) {
    cli_error("generate: --controlnet needs --control-image");
    return CLI_EXIT_USAGE;
  }
  if (a->canny && !a->cn_path) {
    cli_error("generate: --control-preprocess needs --controlnet and --control-image");
    return CLI_EXIT_USAGE;
  }
  if (!(a->canny_low >= 0.0f && a->canny_low <= 100000.0f && a->canny_high >= 0.0f &&
        a->canny_high <= 100000.0f)) {
    cli_error("generate: --canny-low and --canny-high must be between 0 and 100000");
    return CLI_EXIT_USAGE;
  }
  if (!(a->unit.start >= 0.0f && a->unit.start < a->unit.end && a->unit.end <= 1.0f)) {
    cli_error("generate: --control-start and --control-end must satisfy 0 <= start < end "
              "<= 1 (got %g and %g)", (double)a->unit.start, (double)a->unit.end);
    return CLI_EXIT_USAGE;
  }
  *done = 0;
  return CLI_EXIT_OK;
}

/* Decode --init-image into a->init and point the request at it. Sizes are never changed:
 * the image must be the requested size (or set it), in multiples of 8. 0, or -1 after
 * printing the error. */
static int load_init(gen_args *a) {
  char err[SD_ERRMSG_MAX];
  api_png_limits lim;
  api_png_limits_init(&lim);
  if (api_png_decode_file(a->init_path, &lim, &a->init, err) != SD_OK) {
    cli_error("--init-image %s: %s", a->init_path, err);
    return -1;
  }
  int w = a->init.width, h = a->init.height;
  if (w % 8 || h % 8) {
    cli_error("--init-image %s is %dx%d: width and height must be multiples of 8 (sdserve "
              "does not resize)", a->init_path, w, h);
    return -1;
  }
  if ((a->rq.width && a->rq.width != w) || (a->rq.height && a->rq.height != h)) {
    cli_error("--init-image %s is %dx%d but --width/--height ask for %dx%d (sdserve does not "
              "resize)", a->init_path, w, h, a->rq.width ? a->rq.width : w,
              a->rq.height ? a->rq.height : h);
    return -1;
  }
  a->rq.width = w;
  a->rq.height = h;
  a->rq.init_rgb = a->init.rgb;
  return 0;
}

/* Load --controlnet and decode --control-image into a->unit, and attach it to the request.
 * 0, or -1 after printing the error. */
static int load_control(gen_args *a, const sd_load_options *lo) {
  char err[SD_ERRMSG_MAX];
  api_png_limits lim;
  api_png_limits_init(&lim);
  if (api_png_decode_file(a->cn_image_path, &lim, &a->cn_img, err) != SD_OK) {
    cli_error("--control-image %s: %s", a->cn_image_path, err);
    return -1;
  }
  if (sd_controlnet_load(a->cn_path, lo, &a->cn, err) != SD_OK) {
    cli_error("%s", err);
    return -1;
  }
  if (a->canny) {
    /* The annotators' map: cv2.Canny on the RGB image, stacked to three channels. */
    size_t npix = (size_t)a->cn_img.width * (size_t)a->cn_img.height;
    a->cn_edges = malloc(3 * npix);
    if (!a->cn_edges) {
      cli_error("out of memory for the control image's edges");
      return -1;
    }
    uint8_t *edges = a->cn_edges + 2 * npix; /* spread to RGB in place below */
    if (sd_canny(a->cn_img.rgb, a->cn_img.width, a->cn_img.height, a->canny_low,
                 a->canny_high, edges) != SD_OK) {
      cli_error("--control-image %s: cannot compute its edges", a->cn_image_path);
      return -1;
    }
    for (size_t i = 0; i < npix; i++)
      a->cn_edges[3 * i] = a->cn_edges[3 * i + 1] = a->cn_edges[3 * i + 2] = edges[i];
  }
  a->unit.net = a->cn;
  a->unit.rgb = a->canny ? a->cn_edges : a->cn_img.rgb;
  a->unit.width = a->cn_img.width;
  a->unit.height = a->cn_img.height;
  a->rq.control = &a->unit;
  a->rq.ncontrol = 1;
  return 0;
}

int cli_generate(int argc, char **argv) {
  gen_args a = {0};
  a.canny_low = 100.0f;
  a.canny_high = 200.0f;
  sd_request_init(&a.rq);
  sd_control_unit_init(&a.unit);
  int done, rc = parse_args(argc, argv, &a, &done);
  if (done) {
    free(a.cn_default);
    return rc;
  }

  char err[SD_ERRMSG_MAX], *tmp = NULL, *info = NULL;
  sd_model *m = NULL;
  sd_image img = {0};
  rc = CLI_EXIT_FAIL;
  FILE *f = cli_open_output(a.out, &tmp);
  if (!f) return CLI_EXIT_FAIL;
  if (a.seed_random) fprintf(stderr, "sdserve: seed %llu (random)\n",
                             (unsigned long long)a.rq.seed);

  if (a.init_path && load_init(&a) != 0) goto out_unlink;

  gen_run run = {.tty = isatty(STDERR_FILENO)};
  clock_gettime(CLOCK_MONOTONIC, &run.t0);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  sd_load_options lo;
  sd_load_options_init(&lo);
  lo.tokenizer_dir = a.tokenizer;
  lo.threads = a.rq.threads;
  if (a.verbose) lo.log = on_log;
  if (sd_model_load(a.model, &lo, &m, err) != SD_OK) {
    cli_error("%s", err);
    goto out_unlink;
  }
  if (a.cn_path && load_control(&a, &lo) != 0) goto out_unlink;
  if (g_interrupted) { /* Ctrl-C during the load: no need to start */
    cli_error("interrupted");
    rc = 130;
    goto out_unlink;
  }
  a.rq.progress = on_progress;
  a.rq.cancel = on_cancel;
  a.rq.user = &run;
  sd_status st = sd_generate(m, &a.rq, &img, err);
  if (run.drew) fputc('\n', stderr);
  if (st != SD_OK) {
    if (st == SD_ERR_CANCELLED) rc = 130;
    cli_error("%s", st == SD_ERR_CANCELLED ? "interrupted" : err);
    goto out_unlink;
  }
  sd_model_info mi;
  sd_model_get_info(m, &mi);
  char *cn_label = a.cn_path ? api_model_label(a.cn_path) : NULL;
  const char *cn_names[1] = {cn_label};
  info = api_infotext_ex(&a.rq, img.width, img.height, mi.name, cn_names);
  free(cn_label);
  if (!info) {
    cli_error("out of memory");
    goto out_unlink;
  }
  int closed = 0;
  api_png_text text = {"parameters", info};
  if (cli_write_png(f, tmp, a.out, img.rgb, img.width, img.height, &text, 1, &closed) != 0) {
    if (closed) f = NULL;
    goto out_unlink;
  }
  printf("wrote %s (%dx%d, seed %llu, %s, %d steps) in %.2f s\n", a.out, img.width,
         img.height, (unsigned long long)a.rq.seed, a.rq.sampler, a.rq.steps,
         seconds_since(&run.t0));
  rc = CLI_EXIT_OK;
  goto out_free;

out_unlink:
  if (f) fclose(f);
  unlink(tmp);
out_free:
  free(info);
  free(tmp);
  api_png_image_free(&a.init);
  api_png_image_free(&a.cn_img);
  free(a.cn_edges);
  sd_controlnet_destroy(a.cn);
  free(a.cn_default);
  if (img.rgb) sd_image_free(&img);
  sd_model_destroy(m);
  return rc;
}
