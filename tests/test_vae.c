/* test_vae.c: the autoencoders (engine/vae.c, vae_run.c) against the golden data of
 * tests/data (GOLDEN.md), stage by stage with golden inputs (teacher forcing):
 * - config: vae/config.json and inference from tensor shapes agree, for KL and VQ;
 * - KL decoder: every tiny-sd case's vae_decoder_input -> image;
 * - KL encoder: case g's init_image -> vae_encoder_moments;
 * - VQ (tiny-ldm-vq, case v): indices, quantized latent, post_quant_conv output, direct
 *   latent with and without quantization, and the full decode;
 * - the same weights under CompVis single-file names (first_stage_model., 1x1-conv attention
 *   weights [C, C, 1, 1]) infer the same config and decode and encode bit-identically;
 * - a file without encoder weights decodes and refuses to encode; configs and shapes that do
 *   not fit are refused with their status;
 * - 1 vs 2 threads bit-identical, cancellation, bad sizes, arena use against the estimate.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>

#include "check.h"
#include "compvis.h"
#include "vae.h"

/* GOLDEN.md, "Tolerances": final image clamp(image/2+0.5, 0, 1) mean-abs-err < 2e-3 and
 * PSNR > 45 dB; vae_encoder_moments max-abs-err < 5e-3 x std(reference); indices exact. */
#define IMG_MAE_TOL 2e-3
#define IMG_PSNR_MIN 45.0
#define MOMENTS_TOL_STD 5e-3
/* Tighter bounds that catch structural slips the tolerances above let through (measured: no
 * mid attention gives mae ~1e-3, GroupNorm eps 1e-5 instead of 1e-6 gives 5.5e-6 / 103 dB).
 * GOLDEN.md's float64 re-runs land within mae 1.8e-6 / PSNR 111 dB of these references and
 * moments within 9.2e-4 x std (case g's reference ran channels-last GroupNorm), so any
 * faithful implementation meets them. */
#define IMG_MAE_STRICT 2e-6
#define IMG_PSNR_STRICT 110.0
#define MOMENTS_STRICT_STD 2e-3

typedef struct vae_model {
  sd__wsrc *src;
  sd__vae *vae;
  sd__vae_config cfg;
} vae_model;

static sd__arena *g_arena;

static sd__pool *g_pool2; /* the 2-thread runs' pool */
static sd__ctx make_ctx(int threads) {
  CHECK(threads == 1 || threads == 2);
  sd__ctx ctx = {threads, g_arena, NULL, NULL, threads == 2 ? g_pool2 : NULL};
  return ctx;
}

/* A golden tensor as float32 (malloc'ed), its element count in *n, shape in shape[]. */
static float *golden_f32(const sd_safetensors *st, const char *name, size_t *n,
                         int64_t shape[SD_ST_MAX_DIMS], int *ndim) {
  const sd_st_tensor *t = sd__st_find(st, name);
  if (!t) {
    fprintf(stderr, "golden tensor %s missing\n", name);
    return NULL;
  }
  float *p = malloc((size_t)t->numel * sizeof(float));
  sd_error err = {0};
  if (!p || sd__st_to_f32(t, p, &err) != SD_OK) {
    fprintf(stderr, "golden tensor %s: %s\n", name, err.msg);
    free(p);
    return NULL;
  }
  *n = (size_t)t->numel;
  if (shape) memcpy(shape, t->shape, sizeof t->shape);
  if (ndim) *ndim = t->ndim;
  return p;
}

static int64_t *golden_i64(const sd_safetensors *st, const char *name, size_t *n) {
  const sd_st_tensor *t = sd__st_find(st, name);
  if (!t || t->dtype != SD_DTYPE_I64) return NULL;
  int64_t *p = malloc(t->nbytes);
  if (p) memcpy(p, t->data, t->nbytes); /* the mapping may be unaligned */
  *n = (size_t)t->numel;
  return p;
}

static char *join(const char *a, const char *b) {
  char *p = sd__path_join(a, b);
  if (!p) abort();
  return p;
}

static sd_json *read_json(const char *path) {
  char *text = NULL;
  size_t len = 0;
  sd_json *j = NULL;
  sd_error err = {0};
  if (sd__read_file(path, 1 << 20, &text, &len, &err) == SD_OK)
    sd__json_parse(text, len, &j, &err);
  if (!j) fprintf(stderr, "%s: %s\n", path, err.msg);
  free(text);
  return j;
}

/* Load <model>/vae through the component's config.json; check shape inference agrees. */
static int model_load(const char *model_rel, vae_model *m) {
  char *mdir = join(SD_TEST_DATA, model_rel), *vdir = join(mdir, "vae");
  char *cfgp = join(vdir, "config.json"), *wp = join(vdir, "diffusion_pytorch_model.safetensors");
  sd_error err = {0};
  sd_safetensors *st = NULL;
  int ok = 0;
  memset(m, 0, sizeof *m);
  sd_json *j = read_json(cfgp);
  if (!j || sd__vae_config_from_json(j, &m->cfg, &err) != SD_OK) goto out;
  if (sd__st_open(wp, &st, &err) != SD_OK) goto out;
  if (sd__wsrc_create(st, 1, "", NULL, NULL, &m->src, &err) != SD_OK) {
    sd__st_close(st);
    goto out;
  }
  sd__vae_config inf;
  CHECK_INT(sd__vae_config_infer(m->src, &inf, &err), SD_OK);
  CHECK_INT(inf.is_vq, m->cfg.is_vq);
  CHECK_INT(inf.levels, m->cfg.levels);
  for (int i = 0; i < inf.levels && i < SD_VAE_MAX_LEVELS; i++)
    CHECK_INT(inf.block_out_channels[i], m->cfg.block_out_channels[i]);
  CHECK_INT(inf.layers_per_block, m->cfg.layers_per_block);
  CHECK_INT(inf.latent_channels, m->cfg.latent_channels);
  CHECK_INT(inf.in_channels, m->cfg.in_channels);
  CHECK_INT(inf.out_channels, m->cfg.out_channels);
  CHECK_INT(inf.mid_attention, m->cfg.mid_attention);
  CHECK_INT(inf.num_vq_embeddings, m->cfg.num_vq_embeddings);
  CHECK_INT(inf.vq_embed_dim, m->cfg.vq_embed_dim);
  CHECK(inf.scaling_factor == m->cfg.scaling_factor);
  if (sd__vae_load(m->src, &m->cfg, &m->vae, &err) != SD_OK) goto out;
  ok = 1;
out:
  if (!ok) fprintf(stderr, "%s: %s\n", model_rel, err.msg);
  sd__json_free(j);
  free(mdir), free(vdir), free(cfgp), free(wp);
  return ok;
}

static void model_free(vae_model *m) {
  sd__vae_destroy(m->vae);
  sd__wsrc_destroy(m->src);
}

/* Mean-abs-err and PSNR (peak 1) of clamp(x/2 + 0.5, 0, 1) between two images. */
static void image_metrics(const float *a, const float *b, size_t n, double *mae, double *psnr) {
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) {
    double x = a[i] / 2.0f + 0.5f, y = b[i] / 2.0f + 0.5f;
    x = x < 0 ? 0 : x > 1 ? 1 : x;
    y = y < 0 ? 0 : y > 1 ? 1 : y;
    if (a[i] != a[i]) x = 1e9; /* NaN must fail */
    s += fabs(x - y);
    s2 += (x - y) * (x - y);
  }
  *mae = s / (double)n;
  *psnr = s2 > 0 ? 10.0 * log10((double)n / s2) : INFINITY;
}

static void check_image(const char *what, const float *got, const float *ref, size_t n) {
  double mae, psnr;
  image_metrics(got, ref, n, &mae, &psnr);
  printf("%-44s image mae %.3g psnr %.1f dB\n", what, mae, psnr);
  CHECK_LE(mae, IMG_MAE_TOL);
  CHECK(psnr > IMG_PSNR_MIN);
  CHECK_LE(mae, IMG_MAE_STRICT);
  CHECK(psnr > IMG_PSNR_STRICT);
}

/* Decode a [1, C, h, w] golden latent; returns the malloc'ed [1, out, f h, f w] image. */
static float *decode(vae_model *m, int threads, const float *z, int h, int w, int force,
                     size_t *n_out) {
  int f = 1 << (m->cfg.levels - 1);
  size_t n = (size_t)m->cfg.out_channels * (size_t)(f * h) * (size_t)(f * w);
  float *img = malloc(n * sizeof(float));
  sd__ctx ctx = make_ctx(threads);
  sd_error err = {0};
  sd_status st = sd__vae_decode(m->vae, &ctx, z, h, w, force, img, &err);
  CHECK_INT(st, SD_OK);
  if (st != SD_OK) {
    fprintf(stderr, "decode: %s\n", err.msg);
    free(img);
    return NULL;
  }
  *n_out = n;
  return img;
}

/* Golden vae_decoder_input -> image for one case folder; case b also 1 vs 2 threads. */
static void test_decoder_case(vae_model *kl, vae_model *vq, const char *name) {
  char *cdir = join(SD_TEST_DATA "/cases", name), *cj = join(cdir, "case.json");
  char *gp = join(cdir, "golden.safetensors");
  sd_json *j = read_json(cj);
  sd_safetensors *st = NULL;
  sd_error err = {0};
  float *z = NULL, *ref = NULL, *img = NULL;
  CHECK(j != NULL);
  const char *model = j ? sd__json_str(j, "model", "", "case.json", &err) : "";
  vae_model *m = strcmp(model, "models/tiny-ldm-vq") == 0 ? vq : kl;
  CHECK_INT(sd__st_open(gp, &st, &err), SD_OK);
  if (!st) goto out;
  size_t nz, nref, n;
  int64_t zs[SD_ST_MAX_DIMS];
  z = golden_f32(st, "vae_decoder_input", &nz, zs, NULL);
  ref = golden_f32(st, "image", &nref, NULL, NULL);
  CHECK(z && ref);
  if (!z || !ref) goto out;
  img = decode(m, 1, z, (int)zs[2], (int)zs[3], 0, &n);
  CHECK_INT(n, nref);
  if (img && n == nref) check_image(name, img, ref, n);
  if (img && strncmp(name, "b_", 2) == 0) {
    float *img2 = decode(m, 2, z, (int)zs[2], (int)zs[3], 0, &n);
    CHECK(img2 && memcmp(img, img2, n * sizeof(float)) == 0);
    printf("%-44s 2 threads bit-identical: %s\n", name,
           img2 && memcmp(img, img2, n * sizeof(float)) == 0 ? "yes" : "NO");
    free(img2);
  }
out:
  free(z), free(ref), free(img);
  sd__st_close(st);
  sd__json_free(j);
  free(cdir), free(cj), free(gp);
}

static void test_decoder_all(vae_model *kl, vae_model *vq) {
  DIR *d = opendir(SD_TEST_DATA "/cases");
  CHECK(d != NULL);
  if (!d) return;
  char names[32][256];
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) && n < 32;)
    if (e->d_name[0] != '.') snprintf(names[n++], sizeof names[0], "%s", e->d_name);
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
  CHECK(n >= 8); /* a..g and v */
  for (int i = 0; i < n; i++) test_decoder_case(kl, vq, names[i]);
}

/* Case g: golden init_image -> vae_encoder_moments; 1 vs 2 threads bit-identical. */
static void test_encoder(vae_model *kl) {
  sd_safetensors *st = NULL;
  sd_error err = {0};
  CHECK_INT(sd__st_open(SD_TEST_DATA "/cases/g_img2img_ddim_blue_square/golden.safetensors", &st,
                        &err), SD_OK);
  if (!st) return;
  size_t nx, nref;
  int64_t xs[SD_ST_MAX_DIMS], rs[SD_ST_MAX_DIMS];
  float *x = golden_f32(st, "init_image", &nx, xs, NULL);
  float *ref = golden_f32(st, "vae_encoder_moments", &nref, rs, NULL);
  CHECK(x && ref);
  if (x && ref) {
    float *out1 = malloc(nref * sizeof(float)), *out2 = malloc(nref * sizeof(float));
    CHECK_INT(rs[1], 2 * kl->cfg.latent_channels);
    sd__ctx c1 = make_ctx(1), c2 = make_ctx(2);
    CHECK_INT(sd__vae_encode(kl->vae, &c1, x, (int)xs[2], (int)xs[3], out1, &err), SD_OK);
    CHECK_INT(sd__vae_encode(kl->vae, &c2, x, (int)xs[2], (int)xs[3], out2, &err), SD_OK);
    double e = check_max_abs(out1, ref, nref), sd = check_std(ref, nref);
    printf("%-44s moments max-abs-err %.3g = %.3g x std\n", "encoder g", e, e / sd);
    CHECK_LE(e, MOMENTS_TOL_STD * sd);
    CHECK_LE(e, MOMENTS_STRICT_STD * sd);
    CHECK(memcmp(out1, out2, nref * sizeof(float)) == 0);
    free(out1), free(out2);
  }
  free(x), free(ref);
  sd__st_close(st);
}

/* Case v: the quantizer and the VQ decode paths, each from golden inputs. */
static void test_vq(vae_model *vq) {
  sd_safetensors *st = NULL;
  sd_error err = {0};
  CHECK_INT(sd__st_open(SD_TEST_DATA "/cases/v_vq_ddim_red_circle/golden.safetensors", &st,
                        &err), SD_OK);
  if (!st) return;
  size_t nz, nq, npq, ni, ndl, ndi, nimg, nimg2, ndq;
  int64_t zs[SD_ST_MAX_DIMS], ds[SD_ST_MAX_DIMS];
  float *z = golden_f32(st, "vq_prequant_latents", &nz, zs, NULL);
  float *qref = golden_f32(st, "vq_quantized", &nq, NULL, NULL);
  float *pqref = golden_f32(st, "vq_post_quant_conv_output", &npq, NULL, NULL);
  int64_t *iref = golden_i64(st, "vq_indices", &ni);
  float *dl = golden_f32(st, "vq_direct_latent", &ndl, ds, NULL);
  int64_t *diref = golden_i64(st, "vq_direct_indices", &ndi);
  float *dqref = golden_f32(st, "vq_direct_quantized", &ndq, NULL, NULL);
  float *dimg = golden_f32(st, "vq_direct_image", &nimg, NULL, NULL);
  float *dimg2 = golden_f32(st, "vq_direct_image_not_quantized", &nimg2, NULL, NULL);
  CHECK(z && qref && pqref && iref && dl && diref && dqref && dimg && dimg2);
  if (!(z && qref && pqref && iref && dl && diref && dqref && dimg && dimg2)) goto out;
  int h = (int)zs[2], w = (int)zs[3];
  CHECK_INT(ni, (size_t)h * w);
  int64_t *idx = calloc(ni, sizeof(int64_t));
  float *q = calloc(nz, sizeof(float)), *pq = calloc(nz, sizeof(float));
  CHECK_INT(sd__vae_quantize(vq->vae, z, h, w, idx, q, &err), SD_OK);
  size_t wrong = 0;
  for (size_t i = 0; i < ni; i++) wrong += idx[i] != iref[i];
  printf("%-44s %zu of %zu indices differ\n", "vq quantize v", wrong, ni);
  CHECK_INT(wrong, 0); /* GOLDEN.md: indices exact */
  /* quant = z + (e - z): the same two float32 operations on the same inputs, so exact. */
  double qe = check_max_abs(q, qref, nz);
  printf("%-44s quantized max-abs-err %.3g\n", "vq quantize v", qe);
  CHECK(qe == 0.0);
  /* post_quant_conv is a 1x1 conv: a dot product of vq_embed_dim (4) float32 terms plus a
   * bias, whose summation order may differ from torch's sgemm: a few ulp of the largest
   * term. GOLDEN.md gives no tolerance for this stage; 1e-5 x max|ref| is our bound (the
   * float64 re-run puts the whole image within 1.9e-7). */
  sd__ctx ctx = make_ctx(1);
  CHECK_INT(sd__vae_post_quant(vq->vae, &ctx, z, h, w, 1, pq, &err), SD_OK);
  double amax = 0;
  for (size_t i = 0; i < npq; i++) amax = fmax(amax, fabs(pqref[i]));
  double pe = check_max_abs(pq, pqref, npq);
  printf("%-44s post_quant_conv max-abs-err %.3g (max|ref| %.3g)\n", "vq post_quant v", pe,
         amax);
  CHECK_INT(npq, nz);
  CHECK_LE(pe, 1e-5 * amax);
  /* decode(vq_quantized, force_not_quantize) must equal decode(vq_prequant_latents) bit for
   * bit: the quantizer is the only difference between the two paths. */
  size_t n1, n2;
  float *img_q = decode(vq, 1, z, h, w, 0, &n1);
  float *img_f = decode(vq, 1, qref, h, w, 1, &n2);
  CHECK(img_q && img_f && n1 == n2 && memcmp(img_q, img_f, n1 * sizeof(float)) == 0);
  free(img_q), free(img_f);

  /* Direct check: a fixed 6x10 latent (non-square, 60 rows > 25: matrix-product cdist). */
  int dh = (int)ds[2], dw = (int)ds[3];
  int64_t *didx = calloc(ndi, sizeof(int64_t));
  float *dq = calloc(ndl, sizeof(float));
  CHECK_INT(sd__vae_quantize(vq->vae, dl, dh, dw, didx, dq, &err), SD_OK);
  wrong = 0;
  for (size_t i = 0; i < ndi; i++) wrong += didx[i] != diref[i];
  printf("%-44s %zu of %zu indices differ\n", "vq quantize direct", wrong, ndi);
  CHECK_INT(wrong, 0);
  CHECK(check_max_abs(dq, dqref, ndq) == 0.0);
  size_t n;
  float *im = decode(vq, 1, dl, dh, dw, 0, &n);
  CHECK_INT(n, nimg);
  if (im && n == nimg) check_image("vq direct (quantized)", im, dimg, n);
  free(im);
  im = decode(vq, 2, dl, dh, dw, 1, &n);
  CHECK_INT(n, nimg2);
  if (im && n == nimg2) check_image("vq direct (force_not_quantize, 2 threads)", im, dimg2, n);
  free(im);
  free(idx), free(q), free(pq), free(didx), free(dq);
out:
  free(z), free(qref), free(pqref), free(iref), free(dl), free(diref), free(dqref), free(dimg),
      free(dimg2);
  sd__st_close(st);
}

static int cancel_after(void *user) {
  int *left = user;
  return --*left < 0;
}

/* Errors: cancellation mid-decode, sizes the encoder cannot take; the arena is released. */
static void test_errors(vae_model *kl) {
  float z[4 * 8 * 6] = {0}, *img = malloc(3 * 64 * 48 * sizeof(float));
  int left = 3;
  sd__ctx ctx = {1, g_arena, cancel_after, &left, NULL};
  sd_error err = {0};
  sd__arena_mark before = sd__arena_get_mark(g_arena);
  CHECK_INT(sd__vae_decode(kl->vae, &ctx, z, 8, 6, 0, img, &err), SD_ERR_CANCELLED);
  sd__arena_mark after = sd__arena_get_mark(g_arena);
  CHECK(before.chunk == after.chunk && before.used == after.used);
  sd_error e2 = {0};
  sd__ctx c1 = make_ctx(1);
  CHECK_INT(sd__vae_encode(kl->vae, &c1, img, 60, 48, z, &e2), SD_ERR_INVALID);
  sd_error e3 = {0};
  CHECK_INT(sd__vae_decode(kl->vae, &c1, z, 0, 6, 0, img, &e3), SD_ERR_INVALID);
  sd_error e4 = {0};
  int64_t idx[48];
  CHECK_INT(sd__vae_quantize(kl->vae, z, 8, 6, idx, NULL, &e4), SD_ERR_INVALID);
  free(img);
}

/* The arena estimate covers what a decode really takes (plus the kernels' tiles), and the
 * SD 1.x decoder at 512x512 stays well under 2 GB of activations. */
static void test_memory(vae_model *kl) {
  size_t est = sd__vae_workspace_bytes(&kl->cfg, 12, 16, 0);
  sd__arena *a = sd__arena_create(1 << 20);
  sd__ctx ctx = {1, a, NULL, NULL, NULL};
  float *z = calloc(4 * 12 * 16, sizeof(float)), *img = malloc(3 * 96 * 128 * sizeof(float));
  sd_error err = {0};
  CHECK_INT(sd__vae_decode(kl->vae, &ctx, z, 12, 16, 0, img, &err), SD_OK);
  size_t peak = sd__arena_peak(a);
  printf("%-44s arena peak %zu bytes, estimate %zu\n", "decode 96x128", peak, est);
  CHECK(peak >= est);
  CHECK(peak <= 2 * est); /* the kernels' tiles on top are bounded */
  sd__vae_config sd15 = kl->cfg;
  int ch[4] = {128, 256, 512, 512};
  memcpy(sd15.block_out_channels, ch, sizeof ch);
  sd15.layers_per_block = 2;
  size_t big = sd__vae_workspace_bytes(&sd15, 64, 64, 0);
  printf("%-44s %.0f MiB\n", "SD 1.x decode 512x512 workspace", big / 1048576.0);
  CHECK(big > 0 && big < (size_t)1 << 30);
  free(z), free(img);
  sd__arena_destroy(a);
}

/* Config and load errors: each refused with its status, never a crash. */
static sd_status config_status(const char *text) {
  sd_json *j = NULL;
  sd_error err = {0};
  sd__vae_config cfg;
  if (sd__json_parse(text, strlen(text), &j, &err) != SD_OK) return SD_ERR_INTERNAL;
  sd_status st = sd__vae_config_from_json(j, &cfg, &err);
  sd__json_free(j);
  return st;
}

static void test_config_errors(vae_model *kl) {
  CHECK_INT(config_status("{\"_class_name\":\"AutoencoderKL\",\"block_out_channels\":[32,64]}"),
            SD_OK);
  CHECK_INT(config_status("{\"_class_name\":\"AutoencoderTiny\"}"), SD_ERR_UNSUPPORTED);
  CHECK_INT(config_status("{\"_class_name\":\"VQModel\",\"norm_type\":\"spatial\"}"),
            SD_ERR_UNSUPPORTED);
  CHECK_INT(config_status("{\"block_out_channels\":[32,48]}"), SD_ERR_UNSUPPORTED);
  CHECK_INT(config_status("{\"block_out_channels\":[32,64],\"down_block_types\":"
                          "[\"DownEncoderBlock2D\"]}"), SD_ERR_FORMAT);
  CHECK_INT(config_status("{\"act_fn\":\"gelu\"}"), SD_ERR_UNSUPPORTED);
  CHECK_INT(config_status("{\"layers_per_block\":1.5}"), SD_ERR_FORMAT);
  CHECK_INT(config_status("[]"), SD_ERR_FORMAT);
  /* A config that does not fit the weights: the message names the tensor. */
  sd__vae_config cfg = kl->cfg;
  sd__vae *v = NULL;
  sd_error err = {0};
  cfg.is_vq = 1, cfg.num_vq_embeddings = 64, cfg.vq_embed_dim = 4;
  /* A VQ encoder ends in latent (not 2 x latent) channels: the first mismatch found. */
  CHECK_INT(sd__vae_load(kl->src, &cfg, &v, &err), SD_ERR_SHAPE);
  CHECK(v == NULL && strstr(err.msg, "encoder.conv_out.weight") != NULL);
  fprintf(stderr, "expected load error: %s\n", err.msg);
  cfg = kl->cfg;
  cfg.latent_channels = 8;
  sd_error e2 = {0};
  CHECK_INT(sd__vae_load(kl->src, &cfg, &v, &e2), SD_ERR_SHAPE);
  CHECK(v == NULL);
}

/* ---- CompVis layout: tiny-sd's VAE rewritten as a single-file checkpoint in memory ---- */

typedef struct membuf {
  char *p;
  size_t len, cap;
} membuf;

static void mb_put(membuf *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void mb_printf(membuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mb_printf(membuf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp) abort();
  mb_put(b, tmp, (size_t)n);
}

/* A safetensors image of every tensor of src under "first_stage_model." + its CompVis name,
 * with the mid-block attention linears stored as [C, C, 1, 1] as the original files do
 * (compvis), or under its own name; without the encoder* tensors when no_encoder. */
static char *st_image(const sd_safetensors *src, int compvis, int no_encoder, size_t *len) {
  sd__cv_vae_map map = {4};
  membuf hdr = {0}, data = {0};
  mb_printf(&hdr, "{");
  for (size_t i = 0; i < src->count; i++) {
    const sd_st_tensor *t = &src->tensors[i];
    char cv[256];
    if (no_encoder && strncmp(t->name, "encoder.", 8) == 0) continue;
    if (!compvis) snprintf(cv, sizeof cv, "%s", t->name);
    else if (sd__cv_vae_name(&map, t->name, cv, sizeof cv) != 0) abort();
    int attn = compvis && strstr(t->name, "attentions.0.to_") && t->ndim == 2;
    mb_printf(&hdr, "%s\"%s%s\":{\"dtype\":\"F32\",\"shape\":[", data.len ? "," : "",
              compvis ? SD_CV_VAE_PREFIX : "", cv);
    for (int d = 0; d < t->ndim; d++) mb_printf(&hdr, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    mb_printf(&hdr, "%s],\"data_offsets\":[%zu,%zu]}", attn ? ",1,1" : "", data.len,
              data.len + t->nbytes);
    mb_put(&data, t->data, t->nbytes);
  }
  mb_printf(&hdr, "}");
  while (hdr.len % 8) mb_put(&hdr, " ", 1);
  membuf out = {0};
  uint64_t hl = hdr.len;
  unsigned char le[8];
  for (int k = 0; k < 8; k++) le[k] = (unsigned char)(hl >> (8 * k));
  mb_put(&out, le, 8);
  mb_put(&out, hdr.p, hdr.len);
  mb_put(&out, data.p, data.len);
  free(hdr.p), free(data.p);
  *len = out.len;
  return out.p;
}

static void test_compvis(vae_model *kl) {
  char *wp = join(SD_TEST_DATA, "models/tiny-sd/vae/diffusion_pytorch_model.safetensors");
  sd_safetensors *orig = NULL, *cvf = NULL, *gold = NULL;
  sd__wsrc *src = NULL;
  sd__vae *cv = NULL;
  sd_error err = {0};
  size_t len = 0;
  char *img = NULL;
  float *z = NULL, *x = NULL;
  CHECK_INT(sd__st_open(wp, &orig, &err), SD_OK);
  if (!orig) goto out;
  img = st_image(orig, 1, 0, &len);
  CHECK_INT(sd__st_open_memory(img, len, "compvis-vae", &cvf, &err), SD_OK);
  if (!cvf) goto out;
  sd__cv_vae_map map;
  CHECK_INT(sd__cv_vae_map_init(cvf, SD_CV_VAE_PREFIX, &map, &err), SD_OK);
  CHECK_INT(map.levels, 4);
  CHECK_INT(sd__wsrc_create(cvf, 1, SD_CV_VAE_PREFIX, sd__cv_vae_name, &map, &src, &err), SD_OK);
  if (!src) {
    sd__st_close(cvf);
    goto out;
  }
  sd__vae_config cfg;
  CHECK_INT(sd__vae_config_infer(src, &cfg, &err), SD_OK);
  CHECK(memcmp(cfg.block_out_channels, kl->cfg.block_out_channels, sizeof cfg.block_out_channels)
        == 0);
  CHECK_INT(cfg.layers_per_block, kl->cfg.layers_per_block);
  CHECK_INT(cfg.mid_attention, 1);
  CHECK_INT(sd__vae_load(src, &cfg, &cv, &err), SD_OK);
  if (!cv) {
    fprintf(stderr, "compvis load: %s\n", err.msg);
    goto out;
  }
  CHECK_INT(sd__st_open(SD_TEST_DATA "/cases/g_img2img_ddim_blue_square/golden.safetensors",
                        &gold, &err), SD_OK);
  if (!gold) goto out;
  size_t nz, nx, n1, n2;
  int64_t zs[SD_ST_MAX_DIMS], xs[SD_ST_MAX_DIMS];
  z = golden_f32(gold, "vae_decoder_input", &nz, zs, NULL);
  x = golden_f32(gold, "init_image", &nx, xs, NULL);
  CHECK(z && x);
  if (!z || !x) goto out;
  vae_model m = {src, cv, cfg};
  float *a = decode(kl, 1, z, (int)zs[2], (int)zs[3], 0, &n1);
  float *b = decode(&m, 1, z, (int)zs[2], (int)zs[3], 0, &n2);
  int same = a && b && n1 == n2 && memcmp(a, b, n1 * sizeof(float)) == 0;
  printf("%-44s decode bit-identical: %s\n", "compvis names", same ? "yes" : "NO");
  CHECK(same);
  free(a), free(b);
  size_t nm = (size_t)2 * kl->cfg.latent_channels * (size_t)(zs[2] * zs[3]);
  float *ea = malloc(nm * sizeof(float)), *eb = malloc(nm * sizeof(float));
  sd__ctx ctx = make_ctx(1);
  CHECK_INT(sd__vae_encode(kl->vae, &ctx, x, (int)xs[2], (int)xs[3], ea, &err), SD_OK);
  CHECK_INT(sd__vae_encode(cv, &ctx, x, (int)xs[2], (int)xs[3], eb, &err), SD_OK);
  CHECK(memcmp(ea, eb, nm * sizeof(float)) == 0);
  free(ea), free(eb);
out:
  if (err.status) fprintf(stderr, "compvis: %s\n", err.msg);
  free(z), free(x);
  sd__vae_destroy(cv);
  sd__wsrc_destroy(src);
  sd__st_close(gold);
  sd__st_close(orig);
  free(img);
  free(wp);
}

/* A VAE without encoder weights loads and decodes; encode is refused with SD_ERR_MISSING. */
static void test_no_encoder(vae_model *kl) {
  char *wp = join(SD_TEST_DATA, "models/tiny-sd/vae/diffusion_pytorch_model.safetensors");
  sd_safetensors *orig = NULL, *f = NULL;
  sd__wsrc *src = NULL;
  sd__vae *v = NULL;
  sd_error err = {0};
  size_t len = 0;
  char *img = NULL;
  CHECK_INT(sd__st_open(wp, &orig, &err), SD_OK);
  if (!orig) goto out;
  img = st_image(orig, 0, 1, &len);
  CHECK_INT(sd__st_open_memory(img, len, "no-encoder", &f, &err), SD_OK);
  if (!f) goto out;
  CHECK_INT(sd__wsrc_create(f, 1, "", NULL, NULL, &src, &err), SD_OK);
  if (!src) {
    sd__st_close(f);
    goto out;
  }
  CHECK_INT(sd__vae_load(src, &kl->cfg, &v, &err), SD_OK);
  if (!v) goto out;
  float z[4 * 4 * 6], *x = calloc(3 * 32 * 48, sizeof(float));
  for (int i = 0; i < 4 * 4 * 6; i++) z[i] = (float)((i * 7) % 11) / 5.0f - 1.0f;
  vae_model m = {src, v, kl->cfg};
  size_t n1, n2;
  float *a = decode(kl, 1, z, 4, 6, 0, &n1), *b = decode(&m, 1, z, 4, 6, 0, &n2);
  CHECK(a && b && n1 == n2 && memcmp(a, b, n1 * sizeof(float)) == 0);
  sd__ctx ctx = make_ctx(1);
  sd_error e2 = {0};
  CHECK_INT(sd__vae_encode(v, &ctx, x, 32, 48, z, &e2), SD_ERR_MISSING);
  free(a), free(b), free(x);
out:
  sd__vae_destroy(v);
  sd__wsrc_destroy(src);
  sd__st_close(orig);
  free(img);
  free(wp);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep results and failures in order */
  g_arena = sd__arena_create(16 << 20);
  CHECK_INT(sd__pool_create(2, &g_pool2, NULL), SD_OK);
  vae_model kl, vq;
  int ok_kl = model_load("models/tiny-sd", &kl), ok_vq = model_load("models/tiny-ldm-vq", &vq);
  CHECK(ok_kl && ok_vq);
  if (ok_kl && ok_vq) {
    CHECK_INT(kl.cfg.is_vq, 0);
    CHECK(kl.cfg.scaling_factor == 0.18215f);
    CHECK_INT(vq.cfg.is_vq, 1);
    CHECK(vq.cfg.scaling_factor == 1.0f);
    test_decoder_all(&kl, &vq);
    test_encoder(&kl);
    test_vq(&vq);
    test_errors(&kl);
    test_memory(&kl);
    test_compvis(&kl);
    test_config_errors(&kl);
    test_no_encoder(&kl);
  }
  if (ok_kl) model_free(&kl);
  if (ok_vq) model_free(&vq);
  sd__pool_destroy(g_pool2);
  sd__arena_destroy(g_arena);
  return check_exit();
}
