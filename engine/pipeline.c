/* pipeline.c: one generation request from prompt to 8-bit image, in diffusers' order.
 *
 * Text-to-image follows StableDiffusionPipeline: tokenize, encode the prompt (and the
 * negative prompt when CFG is on), draw the initial noise from a CPU torch generator seeded with
 * the request's seed, run the sampler's loop with one batch-2 UNet pass per evaluation
 * (row 0 unconditional, row 1 conditional), decode latents / scaling_factor with the VAE and
 * round to 8 bits. Image-to-image follows StableDiffusionImg2ImgPipeline (golden case g): the
 * encoder's latent distribution is sampled with the first draw, the noise added at the first
 * timestep run is the second draw. Everything a request needs lives in its own arena.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "controlnet.h"
#include "model.h"
#include "resize.h"

/* sd_generate refuses requests beyond these, whatever the caller's own limits are. */
#define SD_MAX_SIDE 4096
#define SD_MAX_STEPS 1000

void sd_request_init(sd_request *rq) {
  memset(rq, 0, sizeof *rq);
  rq->prompt = "";
  rq->negative_prompt = "";
  rq->steps = 20;
  rq->cfg_scale = 7.5f;
  rq->sampler = "euler_a";
  rq->strength = 0.75f;
}

void sd_image_free(sd_image *img) {
  if (!img) return;
  free(img->rgb);
  img->rgb = NULL;
  img->width = img->height = 0;
}

const char *sd_sampler_label(const char *name) {
  static const char *const table[][2] = {
      {"ddim", "DDIM"},          {"ddpm", "DDPM"},
      {"euler", "Euler"},        {"euler_a", "Euler a"},
      {"heun", "Heun"},          {"lms", "LMS"},
      {"dpmpp_2m", "DPM++ 2M"},  {"dpmpp_2m_karras", "DPM++ 2M Karras"},
      {"pndm", "PLMS"},
  };
  if (!name) return NULL;
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(table[i][0], name) == 0) return table[i][1];
  return NULL;
}

static int default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (n > 256 ? 256 : (int)n);
}

/* Everything one request allocates; released in one place. */
typedef struct job {
  const sd_model *m;
  const sd_request *rq;
  sd__ctx ctx;
  sd__sched *sched;
  sd__rng rng;
  int W, H, h, w, C; /* image size, latent size and channels */
  int cfg;           /* 1 when the unconditional pass runs (batch 2) */
  int B;
  float *text;       /* [B, 77, D]: row 0 unconditional when cfg */
  float *latents;    /* [1, C, h, w] */
  /* ControlNet units with a nonzero scale, their hints [c0, h, w] (computed once) and
   * guidance windows as the doubles diffusers compares with; the shared accumulators */
  int ncn;
  const sd_control_unit *cu[SD_MAX_CONTROL];
  float *hint[SD_MAX_CONTROL];
  double cstart[SD_MAX_CONTROL], cend[SD_MAX_CONTROL];
  sd__cn_residuals res;
} job;

/* The double a user most likely typed for f (0.1f -> 0.1): diffusers compares step fractions
 * with Python floats, and float32 0.1 is not 0.1. */
static double typed_double(float f) {
  char buf[32];
  for (int p = 1; p <= 9; p++) {
    snprintf(buf, sizeof buf, "%.*g", p, (double)f);
    double d = strtod(buf, NULL);
    if ((float)d == f) return d;
  }
  return (double)f;
}

/* Validate the ControlNet units against the model and keep the ones that act. */
static sd_status check_control(const sd_model *m, const sd_request *rq, job *j, int down,
                               sd_error *err) {
  if (rq->ncontrol < 0 || rq->ncontrol > SD_MAX_CONTROL || (rq->ncontrol && !rq->control))
    return sd__err(err, SD_ERR_INVALID, "between 0 and %d ControlNet units are allowed (got %d)",
                   SD_MAX_CONTROL, rq->ncontrol);
  for (int k = 0; k < rq->ncontrol; k++) {
    const sd_control_unit *u = &rq->control[k];
    if (!u->net || !u->rgb)
      return sd__err(err, SD_ERR_INVALID, "ControlNet unit %d has no %s", k,
                     u->net ? "control image" : "ControlNet");
    if (u->width < 1 || u->height < 1 || u->width > SD_MAX_SIDE || u->height > SD_MAX_SIDE)
      return sd__err(err, SD_ERR_INVALID, "ControlNet unit %d: control image %dx%d (1 to %d)", k,
                     u->width, u->height, SD_MAX_SIDE);
    if (!isfinite(u->scale))
      return sd__err(err, SD_ERR_INVALID, "ControlNet unit %d: scale must be finite", k);
    if (!(u->start >= 0.0f && u->end <= 1.0f && u->start < u->end))
      return sd__err(err, SD_ERR_INVALID,
                     "ControlNet unit %d: guidance start %g and end %g must satisfy 0 <= start < "
                     "end <= 1", k, (double)u->start, (double)u->end);
    sd_status st = sd__controlnet_check_base(u->net, sd__unet_get_config(m->unet), err);
    if (st != SD_OK) return st;
    if (sd__controlnet_hint_scale(u->net) != down)
      return sd__err(err, SD_ERR_INVALID,
                     "controlnet %s does not fit this model: its hint encoder downsamples %d "
                     "times, the autoencoder %d times", sd__controlnet_name(u->net),
                     sd__controlnet_hint_scale(u->net), down);
    if (u->scale == 0.0f) continue; /* adds exactly nothing: skip it */
    j->cu[j->ncn] = u;
    j->cstart[j->ncn] = typed_double(u->start);
    j->cend[j->ncn] = typed_double(u->end);
    j->ncn++;
  }
  return SD_OK;
}

static sd_status check_request(const sd_model *m, const sd_request *rq, job *j, sd_error *err) {
  const sd__unet_config *uc = sd__unet_get_config(m->unet);
  const sd__vae_config *vc = sd__vae_get_config(m->vae);
  int native = uc->sample_size > 0 ? uc->sample_size * 8 : 512;
  j->W = rq->width ? rq->width : native;
  j->H = rq->height ? rq->height : native;
  int down = 1 << (vc->levels - 1); /* the VAE's downsampling factor: 8 for SD */
  int unet_mult = 1 << (uc->levels - 1);
  if (j->W < 8 || j->H < 8 || j->W > SD_MAX_SIDE || j->H > SD_MAX_SIDE)
    return sd__err(err, SD_ERR_INVALID, "width and height must be between 8 and %d (got %dx%d)",
                   SD_MAX_SIDE, j->W, j->H);
  if (j->W % (down * unet_mult) || j->H % (down * unet_mult))
    return sd__err(err, SD_ERR_INVALID,
                   "width and height must be multiples of %d for this model (got %dx%d)",
                   down * unet_mult, j->W, j->H);
  if (rq->steps < 1 || rq->steps > SD_MAX_STEPS)
    return sd__err(err, SD_ERR_INVALID, "steps must be between 1 and %d (got %d)", SD_MAX_STEPS,
                   rq->steps);
  if (!isfinite(rq->cfg_scale))
    return sd__err(err, SD_ERR_INVALID, "cfg scale must be a finite number");
  if (rq->init_rgb && !(rq->strength >= 0.0f && rq->strength <= 1.0f))
    return sd__err(err, SD_ERR_INVALID, "strength must be between 0 and 1");
  if (rq->init_rgb && vc->is_vq)
    return sd__err(err, SD_ERR_UNSUPPORTED,
                   "image-to-image needs a KL autoencoder; this model's is VQ");
  j->h = j->H / down;
  j->w = j->W / down;
  j->C = uc->in_channels;
  j->cfg = rq->cfg_scale > 1.0f;
  j->B = j->cfg ? 2 : 1;
  return check_control(m, rq, j, down, err);
}

/* text[B, 77, D]: negative prompt embeddings in row 0 when CFG is on, then the prompt's. */
static sd_status encode_text(job *j, sd_error *err) {
  const sd__clip_config *cc = sd__clip_get_config(j->m->clip);
  size_t per = (size_t)SD_TOKENS * (size_t)cc->hidden;
  j->text = malloc((size_t)j->B * per * sizeof(float));
  if (!j->text) return sd__err(err, SD_ERR_NOMEM, "out of memory for text embeddings");
  const char *texts[2] = {j->rq->negative_prompt ? j->rq->negative_prompt : "",
                          j->rq->prompt ? j->rq->prompt : ""};
  for (int b = 0; b < j->B; b++) {
    const char *t = j->cfg ? texts[b] : texts[1];
    int32_t ids[SD_TOKENS];
    sd_status st = sd__tokenize_sd(j->m->tok, t, ids, NULL, err);
    if (st != SD_OK) return st;
    sd__arena_mark mk = sd__arena_get_mark(j->ctx.arena);
    st = sd__clip_forward(j->m->clip, &j->ctx, ids, SD_TOKENS, j->text + (size_t)b * per);
    sd__arena_reset(j->ctx.arena, mk);
    if (st != SD_OK) return sd__err(err, st, "text encoder failed: %s", sd_status_str(st));
  }
  return SD_OK;
}

/* Image-to-image start: latents = add_noise(0.18215 * sample(encode(init)), noise) at the
 * first timestep run; returns the first loop index in *first. */
static sd_status encode_init(job *j, int *first, sd_error *err) {
  const sd__vae_config *vc = sd__vae_get_config(j->m->vae);
  size_t npix = (size_t)j->W * (size_t)j->H, n = (size_t)j->C * j->h * j->w;
  sd__arena_mark mk = sd__arena_get_mark(j->ctx.arena);
  sd_status st = SD_OK;
  float *img = sd__arena_floats(j->ctx.arena, 3 * npix);
  float *mom = sd__arena_floats(j->ctx.arena, 2 * n);
  float *noise = sd__arena_floats(j->ctx.arena, n);
  if (!img || !mom || !noise) {
    st = sd__err(err, SD_ERR_NOMEM, "out of memory for the init image");
    goto out_reset;
  }
  /* VaeImageProcessor: uint8 / 255 in float32, then 2x - 1, RGB planes. */
  for (size_t p = 0; p < npix; p++)
    for (int c = 0; c < 3; c++) {
      float v = (float)j->rq->init_rgb[p * 3 + c] / 255.0f;
      img[(size_t)c * npix + p] = 2.0f * v - 1.0f;
    }
  st = sd__vae_encode(j->m->vae, &j->ctx, img, j->H, j->W, mom, err);
  if (st != SD_OK) goto out_reset;
  /* latent_dist.sample(generator): mean + std * randn, std = exp(0.5 * clamp(logvar)). */
  sd__rng_randn(&j->rng, noise, n);
  for (size_t i = 0; i < n; i++) {
    float logvar = mom[n + i];
    logvar = logvar < -30.0f ? -30.0f : (logvar > 20.0f ? 20.0f : logvar);
    float sd = expf(0.5f * logvar);
    float sampled = mom[i] + sd * noise[i];
    mom[i] = vc->scaling_factor * sampled;
  }
  sd__rng_randn(&j->rng, noise, n);
  *first = sd__sched_img2img_start(j->sched, j->rq->steps, j->rq->strength);
  sd__sched_add_noise(j->sched, *first, mom, noise, j->latents, n);
out_reset:
  sd__arena_reset(j->ctx.arena, mk);
  return st;
}

/* Each acting unit's hint from its control image: resized to W x H as PIL's Lanczos does
 * when the sizes differ, uint8 / 255 in float32 RGB planes, then the hint encoder. */
static sd_status prepare_control(job *j, sd_error *err) {
  if (!j->ncn) return SD_OK;
  const int c0 = sd__unet_get_config(j->m->unet)->block_out_channels[0];
  size_t npix = (size_t)j->W * (size_t)j->H;
  sd_status st = sd__cn_residuals_init(&j->res, sd__unet_get_config(j->m->unet), j->B, j->h,
                                       j->w, err);
  for (int k = 0; k < j->ncn && st == SD_OK; k++) {
    const sd_control_unit *u = j->cu[k];
    sd__arena_mark mk = sd__arena_get_mark(j->ctx.arena);
    const uint8_t *rgb = u->rgb;
    float *img = sd__arena_floats(j->ctx.arena, 3 * npix);
    uint8_t *sized = NULL;
    j->hint[k] = malloc((size_t)c0 * j->h * j->w * sizeof(float));
    if (!img || !j->hint[k]) st = sd__err(err, SD_ERR_NOMEM, "out of memory for a control image");
    if (st == SD_OK && (u->width != j->W || u->height != j->H)) {
      sized = sd__arena_alloc(j->ctx.arena, 3 * npix);
      st = sized ? sd__resize_lanczos_rgb(u->rgb, u->width, u->height, sized, j->W, j->H, err)
                 : sd__err(err, SD_ERR_NOMEM, "out of memory for a control image");
      rgb = sized;
    }
    if (st == SD_OK) {
      for (size_t p = 0; p < npix; p++)
        for (int c = 0; c < 3; c++) img[(size_t)c * npix + p] = (float)rgb[p * 3 + c] / 255.0f;
      st = sd__controlnet_hint(u->net, &j->ctx, img, j->H, j->W, j->hint[k], err);
    }
    sd__arena_reset(j->ctx.arena, mk);
  }
  return st;
}

/* Run the units whose window covers loop iteration i of len on the UNet's input; *active
 * says whether any residual was added (diffusers' controlnet_keep: a unit acts unless
 * i / len < start or (i + 1) / len > end, counting the iterations actually run). */
static sd_status run_control(job *j, int i, int len, const float *x_in, float t, int *active,
                             sd_error *err) {
  *active = 0;
  for (int k = 0; k < j->ncn; k++) {
    double a = (double)i / len, b = (double)(i + 1) / len;
    if (a < j->cstart[k] || b > j->cend[k]) continue;
    if (!*active) sd__cn_residuals_zero(&j->res);
    *active = 1;
    sd_status st = sd__controlnet_forward(j->cu[k]->net, &j->ctx, x_in, j->B, j->h, j->w, t,
                                          j->text, SD_TOKENS, j->hint[k], j->cu[k]->scale,
                                          &j->res, err);
    if (st != SD_OK) return st;
  }
  return SD_OK;
}

/* The denoising loop from loop index `first` to the end. */
static sd_status denoise(job *j, int first, sd_error *err) {
  size_t n = (size_t)j->C * j->h * j->w;
  int len = sd__sched_len(j->sched);
  float *x_in = malloc((size_t)j->B * n * sizeof(float));
  float *eps = malloc((size_t)j->B * n * sizeof(float));
  sd_status st = SD_OK;
  if (!x_in || !eps) {
    st = sd__err(err, SD_ERR_NOMEM, "out of memory for the sampler");
    goto out_free;
  }
  for (int i = first; i < len; i++) {
    if (sd__ctx_cancelled(&j->ctx)) {
      st = sd__err(err, SD_ERR_CANCELLED, "cancelled at step %d of %d", i - first, len - first);
      goto out_free;
    }
    sd__sched_scale_input(j->sched, i, j->latents, x_in, n);
    if (j->B == 2) memcpy(x_in + n, x_in, n * sizeof(float));
    float t = sd__sched_timestep(j->sched, i);
    int active = 0;
    const float *down[SD__CN_MAX_SKIPS];
    sd__unet_residuals view;
    st = run_control(j, i - first, len - first, x_in, t, &active, err);
    if (st != SD_OK) goto out_free;
    if (active) sd__cn_residuals_view(&j->res, down, &view);
    st = sd__unet_forward(j->m->unet, &j->ctx, x_in, j->B, j->h, j->w, t, j->text, SD_TOKENS,
                          active ? &view : NULL, eps, err);
    if (st != SD_OK) goto out_free;
    if (j->cfg) {
      /* noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond) */
      float s = j->rq->cfg_scale;
      for (size_t k = 0; k < n; k++) eps[k] = eps[k] + s * (eps[n + k] - eps[k]);
    }
    st = sd__sched_step(j->sched, i, eps, j->latents, n, &j->rng, err);
    if (st != SD_OK) goto out_free;
    if (j->rq->progress)
      j->rq->progress(j->rq->user, i - first + 1, len - first, j->latents, j->C, j->h, j->w);
  }
out_free:
  free(x_in);
  free(eps);
  return st;
}

/* image = decode(latents / scaling_factor), then round(255 * clamp(image / 2 + 0.5, 0, 1)). */
static sd_status decode(job *j, sd_image *out, sd__trace *trace, sd_error *err) {
  const sd__vae_config *vc = sd__vae_get_config(j->m->vae);
  size_t n = (size_t)j->C * j->h * j->w, npix = (size_t)j->W * (size_t)j->H;
  sd__arena_mark mk = sd__arena_get_mark(j->ctx.arena);
  sd_status st = SD_OK;
  float *z = sd__arena_floats(j->ctx.arena, n);
  float *img = sd__arena_floats(j->ctx.arena, 3 * npix);
  uint8_t *rgb = malloc(3 * npix);
  if (!z || !img || !rgb) {
    st = sd__err(err, SD_ERR_NOMEM, "out of memory for decoding %dx%d", j->W, j->H);
    goto out_reset;
  }
  for (size_t i = 0; i < n; i++) z[i] = j->latents[i] / vc->scaling_factor;
  st = sd__vae_decode(j->m->vae, &j->ctx, z, j->h, j->w, 0, img, err);
  if (st != SD_OK) goto out_reset;
  if (trace && trace->image) memcpy(trace->image, img, 3 * npix * sizeof(float));
  for (size_t p = 0; p < npix; p++)
    for (int c = 0; c < 3; c++) {
      float v = img[(size_t)c * npix + p] / 2.0f + 0.5f;
      v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
      rgb[p * 3 + c] = (uint8_t)rintf(v * 255.0f); /* numpy round: ties to even */
    }
  out->width = j->W;
  out->height = j->H;
  out->rgb = rgb;
  rgb = NULL;
out_reset:
  free(rgb);
  sd__arena_reset(j->ctx.arena, mk);
  return st;
}

sd_status sd_generate(const sd_model *m, const sd_request *rq, sd_image *out, char *errbuf) {
  sd_error err = {0};
  sd_status st = sd__generate(m, rq, out, NULL, &err);
  sd__err_export(&err, errbuf);
  return st;
}

sd_status sd__generate(const sd_model *m, const sd_request *rq, sd_image *out, sd__trace *trace,
                       sd_error *errp) {
  sd_error local = {0};
  sd_error *err = errp ? errp : &local;
  job j;
  memset(&j, 0, sizeof j);
  memset(out, 0, sizeof *out);
  j.m = m;
  j.rq = rq;
  sd_status st = check_request(m, rq, &j, err);
  if (st != SD_OK) goto out;
  const char *sampler = rq->sampler ? rq->sampler : "euler_a";
  st = sd__sched_create(sampler, &m->sched, rq->steps, &j.sched, err);
  if (st != SD_OK) goto out;
  j.ctx.threads = rq->threads > 0 ? rq->threads : default_threads();
  j.ctx.cancel = rq->cancel;
  j.ctx.user = rq->user;
  j.ctx.arena = sd__arena_create((size_t)64 << 20);
  size_t n = (size_t)j.C * j.h * j.w;
  j.latents = malloc(n * sizeof(float));
  if (!j.ctx.arena || !j.latents) {
    st = sd__err(err, SD_ERR_NOMEM, "out of memory starting the request");
    goto out;
  }
  /* The job's threads: helpers sleep between kernels (pool.h); BLAS runs single-threaded
   * inside the pool's tasks (ops_impl.h), so no process-wide thread setting is touched. */
  st = sd__pool_create(j.ctx.threads, &j.ctx.pool, err);
  if (st != SD_OK) goto out;
  st = encode_text(&j, err);
  if (st == SD_OK) st = prepare_control(&j, err);
  if (st != SD_OK) goto out;
  sd__rng_seed(&j.rng, rq->seed);
  int first = 0;
  if (rq->init_rgb) {
    st = encode_init(&j, &first, err);
  } else {
    float sigma = sd__sched_init_sigma(j.sched);
    sd__rng_randn(&j.rng, j.latents, n);
    for (size_t i = 0; i < n; i++) j.latents[i] *= sigma;
  }
  if (st != SD_OK) goto out;
  st = denoise(&j, first, err);
  if (st != SD_OK) goto out;
  if (sd__ctx_cancelled(&j.ctx)) {
    st = sd__err(err, SD_ERR_CANCELLED, "cancelled before decoding");
    goto out;
  }
  if (trace && trace->final_latents) memcpy(trace->final_latents, j.latents, n * sizeof(float));
  st = decode(&j, out, trace, err);
out:
  for (int k = 0; k < j.ncn; k++) free(j.hint[k]);
  sd__cn_residuals_free(&j.res);
  free(j.latents);
  free(j.text);
  sd__pool_destroy(j.ctx.pool);
  sd__arena_destroy(j.ctx.arena);
  sd__sched_destroy(j.sched);
  return st;
}
