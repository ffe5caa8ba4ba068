/* test_controlnet.c: the ControlNet (engine/controlnet.c) against golden case c_controlnet_euler,
 * stage by stage with the golden inputs (teacher forcing): the control image as fed to the net
 * (control.png through the api PNG decoder, / 255), the scaled residuals at step 0 from the
 * golden UNet input, timestep and text embeddings, and the UNet's step-0 output with our
 * residuals. Then the same net as single files built from the folder (original names under
 * "control_model." in F32, bare names in F16), a scale-0 unit giving exactly the image without
 * ControlNet, and nets that do not fit the base model refused with a clear message.
 * Tolerance (GOLDEN.md, "Tolerances"): max-abs-err < 1e-3 x std(reference), the UNet's, for
 * every residual and the step-0 output.
 */
#include <unistd.h>

#include "check.h"
#include "st_write.h"
#include "compvis.h"
#include "controlnet.h"
#include "model.h"
#include "png_io.h"
#include "resize.h"
#include "safetensors.h"

#define TOL_RATIO 1e-3 /* GOLDEN.md: max-abs-err < 1e-3 x std(reference) */
#define CASE SD_TEST_DATA "/cases/c_controlnet_euler"
#define CN_DIR SD_TEST_DATA "/models/tiny-sd/controlnet"

static char tmpdir[64];

static float *golden(const sd_safetensors *st, const char *name, size_t *n) {
  const sd_st_tensor *t = sd__st_find(st, name);
  CHECK(t != NULL);
  if (!t) return NULL;
  float *v = malloc((size_t)t->numel * sizeof(float));
  sd_error err = {0};
  if (!v || sd__st_to_f32(t, v, &err) != SD_OK) {
    CHECK(0);
    free(v);
    return NULL;
  }
  if (n) *n = (size_t)t->numel;
  return v;
}

static double max_abs(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - (double)b[i]));
  return m;
}

static double stdev(const float *a, size_t n) {
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) s += a[i];
  double mean = s / (double)n;
  for (size_t i = 0; i < n; i++) s2 += (a[i] - mean) * (a[i] - mean);
  return sqrt(s2 / (double)n);
}

typedef struct fixture {
  sd_model *m;
  sd_safetensors *gs;
  uint8_t *control; /* control.png, 64 x 64 x 3 */
  int cw, ch;
  float *x, *text, t; /* golden unet_step0_input [2,4,8,8], [neg; pos] embeddings, t0 */
  sd__ctx ctx;
} fixture;

/* Residuals of net cn at step 0 (scale 0.8) into r; returns the worst error ratio against the
 * golden controlnet_step0_* tensors (printing each when verbose). */
static void case_request(sd_request *rq, sd_control_unit *u, const sd_controlnet *cn,
                         const struct fixture *f);

static double step0_residuals(fixture *f, const sd_controlnet *cn, sd__cn_residuals *r,
                              int verbose) {
  sd_error err = {0};
  const sd__unet_config *uc = sd__unet_get_config(f->m->unet);
  CHECK_INT(sd__controlnet_check_base(cn, uc, &err), SD_OK);
  CHECK_INT(sd__cn_residuals_init(r, uc, 2, 8, 8, &err), SD_OK);
  const int H = f->ch, W = f->cw;
  float *cond = malloc(3 * (size_t)H * W * sizeof(float));
  float *hint = malloc((size_t)uc->block_out_channels[0] * 8 * 8 * sizeof(float));
  for (int p = 0; p < H * W; p++)
    for (int c = 0; c < 3; c++) cond[(size_t)c * H * W + p] = (float)f->control[p * 3 + c] / 255.0f;
  CHECK_INT(sd__controlnet_hint(cn, &f->ctx, cond, H, W, hint, &err), SD_OK);
  sd_status st = sd__controlnet_forward(cn, &f->ctx, f->x, 2, 8, 8, f->t, f->text, 77, hint,
                                        0.8f, r, &err);
  if (st != SD_OK) fprintf(stderr, "controlnet forward: %s\n", err.msg);
  CHECK_INT(st, SD_OK);
  double worst = 0;
  for (int k = 0; k <= r->count; k++) {
    char name[64];
    if (k < r->count) snprintf(name, sizeof name, "controlnet_step0_down%02d", k);
    else snprintf(name, sizeof name, "controlnet_step0_mid");
    size_t n = 0;
    float *ref = golden(f->gs, name, &n);
    const float *got = k < r->count ? r->down[k] : r->mid;
    size_t want = k < r->count ? (size_t)2 * r->c[k] * r->hh[k] * r->ww[k]
                               : (size_t)2 * r->mid_c * r->mid_h * r->mid_w;
    CHECK_INT(n, want);
    if (ref && n == want) {
      double ratio = max_abs(got, ref, n) / stdev(ref, n);
      if (verbose) fprintf(stderr, "  %-26s max-abs-err %.3g x std\n", name, ratio);
      worst = fmax(worst, ratio);
    }
    free(ref);
  }
  free(cond);
  free(hint);
  return worst;
}

static void test_folder(fixture *f) {
  char msg[SD_ERRMSG_MAX];
  sd_controlnet *cn = NULL;
  sd_status st = sd_controlnet_load(CN_DIR, NULL, &cn, msg);
  if (st != SD_OK) fprintf(stderr, "load: %s\n", msg);
  CHECK_INT(st, SD_OK);
  if (!cn) return;
  const sd__controlnet_config *c = sd__controlnet_get_config(cn);
  /* config.json: conditioning_embedding_out_channels (16, 32, 96, 256) */
  CHECK_INT(c->nemb, 4);
  CHECK_INT(c->emb_channels[0], 16);
  CHECK_INT(c->emb_channels[3], 256);
  CHECK_INT(c->unet.levels, 2);

  /* the control image as fed to the net: uint8 / 255, repeated for the CFG batch */
  size_t n = 0;
  float *ref_cond = golden(f->gs, "controlnet_cond", &n);
  CHECK_INT(n, 2 * 3 * (size_t)f->cw * f->ch);
  if (ref_cond && n == 2 * 3 * (size_t)f->cw * f->ch) {
    size_t bad = 0, hw = (size_t)f->cw * f->ch;
    for (size_t b = 0; b < 2; b++)
      for (size_t p = 0; p < hw; p++)
        for (size_t ch = 0; ch < 3; ch++)
          bad += ref_cond[(b * 3 + ch) * hw + p] != (float)f->control[p * 3 + ch] / 255.0f;
    CHECK_INT(bad, 0);
  }
  free(ref_cond);

  sd__cn_residuals r;
  double worst = step0_residuals(f, cn, &r, 1);
  fprintf(stderr, "folder: residuals worst %.3g x std (tolerance %g)\n", worst, TOL_RATIO);
  CHECK_LE(worst, TOL_RATIO);

  /* the UNet's step-0 output with our residuals */
  float *ref = golden(f->gs, "unet_step0_output", &n);
  float *eps = malloc(2 * 4 * 8 * 8 * sizeof(float));
  const float *down[SD__CN_MAX_SKIPS];
  sd__unet_residuals view;
  sd__cn_residuals_view(&r, down, &view);
  sd_error err = {0};
  CHECK_INT(sd__unet_forward(f->m->unet, &f->ctx, f->x, 2, 8, 8, f->t, f->text, 77, &view, eps,
                             &err), SD_OK);
  if (ref) {
    double ratio = max_abs(eps, ref, n) / stdev(ref, n);
    fprintf(stderr, "unet_step0_output with our residuals: %.3g x std\n", ratio);
    CHECK_LE(ratio, TOL_RATIO);
  }
  free(ref);
  free(eps);
  sd__cn_residuals_free(&r);
  sd_controlnet_destroy(cn);
}

/* Several nets are summed into one set of accumulators (MultiControlNetModel): two units at
 * 0.4 give bit for bit one unit at 0.8 (fl(0.4 z) + fl(0.4 z) = 2 fl(0.4 z) = fl(0.8 z)), and
 * the same holds for whole images through the pipeline. */
static void test_sum(fixture *f) {
  char msg[SD_ERRMSG_MAX];
  sd_controlnet *cn = NULL;
  CHECK_INT(sd_controlnet_load(CN_DIR, NULL, &cn, msg), SD_OK);
  if (!cn) return;
  sd_error err = {0};
  const sd__unet_config *uc = sd__unet_get_config(f->m->unet);
  sd__cn_residuals one, two;
  CHECK_INT(sd__cn_residuals_init(&one, uc, 2, 8, 8, &err), SD_OK);
  CHECK_INT(sd__cn_residuals_init(&two, uc, 2, 8, 8, &err), SD_OK);
  float *cond = malloc(3 * 64 * 64 * sizeof(float)), *hint = malloc(32 * 8 * 8 * sizeof(float));
  for (int p = 0; p < 64 * 64; p++)
    for (int c = 0; c < 3; c++) cond[c * 64 * 64 + p] = (float)f->control[p * 3 + c] / 255.0f;
  CHECK_INT(sd__controlnet_hint(cn, &f->ctx, cond, 64, 64, hint, &err), SD_OK);
  CHECK_INT(sd__controlnet_forward(cn, &f->ctx, f->x, 2, 8, 8, f->t, f->text, 77, hint, 0.8f,
                                   &one, &err), SD_OK);
  for (int k = 0; k < 2; k++)
    CHECK_INT(sd__controlnet_forward(cn, &f->ctx, f->x, 2, 8, 8, f->t, f->text, 77, hint, 0.4f,
                                     &two, &err), SD_OK);
  CHECK_INT(one.floats, two.floats);
  CHECK(memcmp(one.buf, two.buf, one.floats * sizeof(float)) == 0);
  sd__cn_residuals_free(&one);
  sd__cn_residuals_free(&two);
  free(cond);
  free(hint);

  /* the same through sd_generate, and a control image of another size resized as PIL does:
   * giving the 64x64 Lanczos resize of a 96x80 image, or the 96x80 image itself, is the same */
  sd_request rq;
  sd_control_unit u[2];
  sd_image a, b;
  case_request(&rq, &u[0], cn, f);
  CHECK_INT(sd_generate(f->m, &rq, &a, msg), SD_OK);
  u[0].scale = 0.4f;
  u[1] = u[0];
  rq.control = u;
  rq.ncontrol = 2;
  CHECK_INT(sd_generate(f->m, &rq, &b, msg), SD_OK);
  if (a.rgb && b.rgb) CHECK(memcmp(a.rgb, b.rgb, 64 * 64 * 3) == 0);
  sd_image_free(&a);
  sd_image_free(&b);
  uint8_t *big = malloc(96 * 80 * 3), *small = malloc(64 * 64 * 3);
  for (int i = 0; i < 96 * 80 * 3; i++) big[i] = (uint8_t)((i * 2654435761u) >> 24);
  CHECK_INT(sd__resize_lanczos_rgb(big, 96, 80, small, 64, 64, &err), SD_OK);
  rq.ncontrol = 1;
  u[0].scale = 0.8f;
  u[0].rgb = big;
  u[0].width = 96;
  u[0].height = 80;
  CHECK_INT(sd_generate(f->m, &rq, &a, msg), SD_OK);
  u[0].rgb = small;
  u[0].width = u[0].height = 64;
  CHECK_INT(sd_generate(f->m, &rq, &b, msg), SD_OK);
  if (a.rgb && b.rgb) CHECK(memcmp(a.rgb, b.rgb, 64 * 64 * 3) == 0);
  sd_image_free(&a);
  sd_image_free(&b);
  free(big);
  free(small);
  sd_controlnet_destroy(cn);
}

/* ---- single files built from the folder ---- */

/* Rewrite the folder's weights: original names under prefix (through compvis.c's translator)
 * or diffusers names when prefix is NULL; F16 when half. When cross > 0, every attn2.to_k /
 * to_v is replaced by a [C, cross] tensor (a net for another text encoder). */
static int build_file(const char *out, const char *prefix, int half, int cross) {
  sd_error err = {0};
  sd_safetensors *src = NULL;
  if (sd__st_open(CN_DIR "/diffusion_pytorch_model.safetensors", &src, &err) != SD_OK) return -1;
  /* tiny-sd's layout: 2 levels, 1 layer each, attention at level 0, 6 hint convs */
  sd__cv_unet_map map = {.levels = 2, .layers_per_block = 1, .down_attn = {1, 0},
                         .hint_blocks = 6};
  wtensor *t = calloc(src->count, sizeof *t);
  int rc = 0;
  for (size_t i = 0; i < src->count && rc == 0; i++) {
    const sd_st_tensor *s = &src->tensors[i];
    char mapped[160];
    if (prefix) {
      if (sd__cv_unet_name(&map, s->name, mapped, sizeof mapped) != 0) {
        fprintf(stderr, "no original name for %s\n", s->name);
        rc = -1;
        break;
      }
      snprintf(t[i].name, sizeof t[i].name, "%s%s", prefix, mapped);
    } else {
      snprintf(t[i].name, sizeof t[i].name, "%s", s->name);
    }
    t[i].ndim = s->ndim;
    memcpy(t[i].shape, s->shape, sizeof s->shape);
    size_t numel = (size_t)s->numel;
    if (cross > 0 && (strstr(s->name, "attn2.to_k.") || strstr(s->name, "attn2.to_v."))) {
      t[i].shape[1] = cross;
      numel = (size_t)s->shape[0] * (size_t)cross;
    }
    float *v = calloc(numel, sizeof(float));
    if (numel == (size_t)s->numel) sd__st_to_f32(s, v, &err);
    else
      for (size_t k = 0; k < numel; k++) v[k] = 0.01f * (float)((k * 7919) % 201 - 100) / 100.0f;
    if (half) {
      uint16_t *hv = malloc(numel * 2);
      for (size_t k = 0; k < numel; k++) hv[k] = sd__f32_to_f16(v[k]);
      free(v);
      t[i].data = hv;
      t[i].nbytes = numel * 2;
      t[i].dtype = "F16";
    } else {
      t[i].data = v;
      t[i].nbytes = numel * 4;
      t[i].dtype = "F32";
    }
  }
  if (rc == 0) rc = write_st(out, t, src->count);
  for (size_t i = 0; i < src->count; i++) free((void *)t[i].data);
  free(t);
  sd__st_close(src);
  return rc;
}

static void test_single_files(fixture *f) {
  char path[128], msg[SD_ERRMSG_MAX];
  sd__cn_residuals r;
  /* original names under control_model., F32: the same weights, so the same bits */
  snprintf(path, sizeof path, "%s/control_tiny.safetensors", tmpdir);
  CHECK_INT(build_file(path, SD_CV_CONTROL_PREFIX, 0, 0), 0);
  sd_controlnet *cn = NULL;
  sd_status st = sd_controlnet_load(path, NULL, &cn, msg);
  if (st != SD_OK) fprintf(stderr, "single file: %s\n", msg);
  CHECK_INT(st, SD_OK);
  if (cn) {
    const sd__controlnet_config *c = sd__controlnet_get_config(cn);
    CHECK_INT(c->nemb, 4); /* from shapes: conditioning channels 16, 32, 96, 256 */
    CHECK_INT(c->emb_channels[1], 32);
    CHECK_INT(c->emb_channels[2], 96);
    CHECK_INT(c->emb_channels[3], 256);
    CHECK_INT(c->unet.cross_attention_dim, 32);
    CHECK(c->unet.down_has_attn[0] && !c->unet.down_has_attn[1]);
    double worst = step0_residuals(f, cn, &r, 0);
    fprintf(stderr, "single file (control_model., F32): residuals %.3g x std\n", worst);
    CHECK_LE(worst, TOL_RATIO);
    sd__cn_residuals_free(&r);
    sd_controlnet_destroy(cn);
  }
  /* original names without a prefix, F16 */
  snprintf(path, sizeof path, "%s/bare_fp16.safetensors", tmpdir);
  CHECK_INT(build_file(path, "", 1, 0), 0);
  cn = NULL;
  st = sd_controlnet_load(path, NULL, &cn, msg);
  if (st != SD_OK) fprintf(stderr, "bare fp16: %s\n", msg);
  CHECK_INT(st, SD_OK);
  if (cn) {
    /* F16 weights: each rounded by up to 2^-11 relative, so a looser bound than the golden
     * tolerance (measured about 1e-3 x std); it still fails for a wrong layer or name. */
    double worst = step0_residuals(f, cn, &r, 0);
    fprintf(stderr, "single file (bare, F16): residuals %.3g x std (bound 2e-2)\n", worst);
    CHECK_LE(worst, 2e-2);
    sd__cn_residuals_free(&r);
    sd_controlnet_destroy(cn);
  }
  /* not a ControlNet at all: the UNet's weights */
  cn = NULL;
  st = sd_controlnet_load(SD_TEST_DATA "/models/tiny-sd/unet/diffusion_pytorch_model.safetensors",
                          NULL, &cn, msg);
  CHECK_INT(st, SD_ERR_FORMAT);
  CHECK(cn == NULL);
  CHECK(strstr(msg, "not a ControlNet") != NULL);
}

/* config.json parsing: defaults, channel order, refusals by name; missing inputs. */
static void test_config(void) {
  static const struct {
    const char *json;
    sd_status want;
    const char *key; /* named in the message */
  } cases[] = {
      {"{\"_class_name\":\"ControlNetModel\"}", SD_OK, NULL},
      {"{\"_class_name\":\"UNet2DConditionModel\"}", SD_ERR_UNSUPPORTED, "UNet2DConditionModel"},
      {"{\"global_pool_conditions\":true}", SD_ERR_UNSUPPORTED, "global_pool_conditions"},
      {"{\"class_embed_type\":\"timestep\"}", SD_ERR_UNSUPPORTED, "class_embed_type"},
      {"{\"controlnet_conditioning_channel_order\":\"bgr\"}", SD_OK, NULL},
      {"{\"controlnet_conditioning_channel_order\":\"rbg\"}", SD_ERR_UNSUPPORTED, "rbg"},
      {"{\"block_out_channels\":[32,64],\"down_block_types\":[\"DownBlock2D\"]}", SD_ERR_FORMAT,
       "down_block_types"},
      {"{\"conditioning_embedding_out_channels\":[16,0]}", SD_ERR_FORMAT, "conditioning"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    sd_error err = {0};
    sd_json *j = NULL;
    CHECK_INT(sd__json_parse(cases[i].json, strlen(cases[i].json), &j, &err), SD_OK);
    sd__controlnet_config c;
    sd_status st = sd__controlnet_config_from_json(j, &c, &err);
    if (st != cases[i].want) fprintf(stderr, "config %s: %s\n", cases[i].json, err.msg);
    CHECK_INT(st, cases[i].want);
    if (cases[i].key) CHECK(strstr(err.msg, cases[i].key) != NULL);
    if (st == SD_OK) { /* SD 1.5's ControlNet by default */
      CHECK_INT(c.unet.levels, 4);
      CHECK_INT(c.unet.block_out_channels[3], 1280);
      CHECK_INT(c.unet.cross_attention_dim, 1280);
      CHECK_INT(c.nemb, 4);
      CHECK_INT(c.emb_channels[3], 256);
      CHECK_INT(c.bgr, strstr(cases[i].json, "bgr") != NULL);
    }
    sd__json_free(j);
  }
  char msg[SD_ERRMSG_MAX];
  sd_controlnet *cn = (sd_controlnet *)1;
  CHECK(sd_controlnet_load("/nonexistent/cn.safetensors", NULL, &cn, msg) != SD_OK);
  CHECK(cn == NULL);
  CHECK(strstr(msg, "/nonexistent/cn.safetensors") != NULL);
  CHECK_INT(sd_controlnet_load(SD_TEST_DATA "/models/tiny-sd", NULL, &cn, msg), SD_ERR_MISSING);
  CHECK(strstr(msg, "config.json") != NULL);
}

/* The request that golden case c makes (scale 0.8, control.png). */
static void case_request(sd_request *rq, sd_control_unit *u, const sd_controlnet *cn,
                         const fixture *f) {
  sd_request_init(rq);
  rq->prompt = "a white ring and a square, line art";
  rq->negative_prompt = "";
  rq->seed = 5;
  rq->steps = 4;
  rq->cfg_scale = 7.5f;
  rq->sampler = "euler";
  rq->width = rq->height = 64;
  rq->threads = 2;
  sd_control_unit_init(u);
  u->net = cn;
  u->rgb = f->control;
  u->width = f->cw;
  u->height = f->ch;
  u->scale = 0.8f;
  rq->control = u;
  rq->ncontrol = 1;
}

static void test_scale_zero_and_refusal(fixture *f) {
  char msg[SD_ERRMSG_MAX];
  sd_controlnet *cn = NULL;
  CHECK_INT(sd_controlnet_load(CN_DIR, NULL, &cn, msg), SD_OK);
  if (!cn) return;
  sd_request rq;
  sd_control_unit u;
  sd_image plain, zero, with;
  case_request(&rq, &u, cn, f);
  rq.control = NULL;
  rq.ncontrol = 0;
  CHECK_INT(sd_generate(f->m, &rq, &plain, msg), SD_OK);
  rq.control = &u;
  rq.ncontrol = 1;
  u.scale = 0.0f;
  CHECK_INT(sd_generate(f->m, &rq, &zero, msg), SD_OK);
  u.scale = 0.8f;
  CHECK_INT(sd_generate(f->m, &rq, &with, msg), SD_OK);
  if (plain.rgb && zero.rgb && with.rgb) {
    CHECK(memcmp(plain.rgb, zero.rgb, 64 * 64 * 3) == 0); /* scale 0 == no ControlNet */
    CHECK(memcmp(plain.rgb, with.rgb, 64 * 64 * 3) != 0); /* and the net does something */
  }
  sd_image_free(&plain);
  sd_image_free(&zero);
  sd_image_free(&with);

  /* a guidance window that no step satisfies (start 0.9 of 4 steps: i / 4 < 0.9 for every
   * i): also exactly the plain image; the window 0.5..1 acts on steps 2 and 3 only */
  u.start = 0.9f;
  u.end = 1.0f;
  CHECK_INT(sd_generate(f->m, &rq, &zero, msg), SD_OK);
  rq.control = NULL;
  rq.ncontrol = 0;
  CHECK_INT(sd_generate(f->m, &rq, &plain, msg), SD_OK);
  rq.control = &u;
  rq.ncontrol = 1;
  u.start = 0.5f;
  CHECK_INT(sd_generate(f->m, &rq, &with, msg), SD_OK);
  if (plain.rgb && zero.rgb && with.rgb) {
    CHECK(memcmp(plain.rgb, zero.rgb, 64 * 64 * 3) == 0);
    CHECK(memcmp(plain.rgb, with.rgb, 64 * 64 * 3) != 0);
  }
  sd_image_free(&zero);
  sd_image_free(&plain);
  sd_image_free(&with);
  u.start = 0.0f;

  /* bad unit parameters */
  u.scale = NAN;
  CHECK_INT(sd_generate(f->m, &rq, &zero, msg), SD_ERR_INVALID);
  u.scale = 0.8f;
  u.start = 0.7f;
  u.end = 0.2f;
  CHECK_INT(sd_generate(f->m, &rq, &zero, msg), SD_ERR_INVALID);
  u.start = 0.0f;
  u.end = 1.0f;
  u.net = NULL;
  CHECK_INT(sd_generate(f->m, &rq, &zero, msg), SD_ERR_INVALID);
  u.net = cn;
  rq.ncontrol = SD_MAX_CONTROL + 1;
  CHECK_INT(sd_generate(f->m, &rq, &zero, msg), SD_ERR_INVALID);
  rq.ncontrol = 1;

  /* a net built for another text encoder (cross-attention 48 wide) is refused with a message
   * naming the difference, before any work */
  char path[128];
  snprintf(path, sizeof path, "%s/cross48.safetensors", tmpdir);
  CHECK_INT(build_file(path, NULL, 0, 48), 0);
  sd_controlnet *bad = NULL;
  sd_status st = sd_controlnet_load(path, NULL, &bad, msg);
  if (st != SD_OK) fprintf(stderr, "cross48: %s\n", msg);
  CHECK_INT(st, SD_OK);
  if (bad) {
    CHECK_INT(sd__controlnet_get_config(bad)->unet.cross_attention_dim, 48);
    u.net = bad;
    st = sd_generate(f->m, &rq, &zero, msg);
    CHECK_INT(st, SD_ERR_INVALID);
    fprintf(stderr, "mismatched net: %s\n", msg);
    CHECK(strstr(msg, "does not fit") != NULL && strstr(msg, "cross-attention") != NULL);
    CHECK(zero.rgb == NULL);
    sd_controlnet_destroy(bad);
  }
  /* a base with other block channels, checked directly */
  sd__unet_config other = *sd__unet_get_config(f->m->unet);
  other.block_out_channels[1] = 96;
  sd_error err = {0};
  CHECK_INT(sd__controlnet_check_base(cn, &other, &err), SD_ERR_INVALID);
  CHECK(strstr(err.msg, "level 1") != NULL);
  sd_controlnet_destroy(cn);
}

static int fixture_init(fixture *f) {
  char msg[SD_ERRMSG_MAX];
  sd_error err = {0};
  memset(f, 0, sizeof *f);
  if (sd_model_load(SD_TEST_DATA "/models/tiny-sd", NULL, &f->m, msg) != SD_OK) {
    fprintf(stderr, "model: %s\n", msg);
    return -1;
  }
  if (sd__st_open(CASE "/golden.safetensors", &f->gs, &err) != SD_OK) return -1;
  api_png_image img;
  if (api_png_decode_file(CASE "/control.png", NULL, &img, msg) != SD_OK) {
    fprintf(stderr, "control.png: %s\n", msg);
    return -1;
  }
  f->control = img.rgb;
  f->cw = img.width;
  f->ch = img.height;
  img.rgb = NULL;
  api_png_image_free(&img);
  size_t n;
  f->x = golden(f->gs, "unet_step0_input", &n);
  float *neg = golden(f->gs, "negative_prompt_embeds", &n);
  float *pos = golden(f->gs, "prompt_embeds", &n);
  float *t = golden(f->gs, "unet_step0_timestep", NULL);
  if (!f->x || !neg || !pos || !t) return -1;
  f->text = malloc(2 * n * sizeof(float));
  memcpy(f->text, neg, n * sizeof(float));
  memcpy(f->text + n, pos, n * sizeof(float));
  f->t = t[0];
  free(neg);
  free(pos);
  free(t);
  f->ctx.threads = 2;
  f->ctx.arena = sd__arena_create((size_t)8 << 20);
  if (sd__pool_create(2, &f->ctx.pool, NULL) != SD_OK) return -1;
  return f->ctx.arena ? 0 : -1;
}

int main(void) {
  fixture f;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/test_controlnet.XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  test_config();
  int ok = fixture_init(&f) == 0;
  CHECK(ok);
  if (ok) {
    test_folder(&f);
    test_single_files(&f);
    test_sum(&f);
    test_scale_zero_and_refusal(&f);
  }
  sd__arena_destroy(f.ctx.arena);
  sd__pool_destroy(f.ctx.pool);
  free(f.x);
  free(f.text);
  free(f.control);
  sd__st_close(f.gs);
  sd_model_destroy(f.m);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return check_exit();
}
