/* sd.h: the public interface of the sdserve engine.
 *
 * The engine turns a text prompt into an image with a Stable Diffusion 1.x style latent
 * diffusion model on the CPU, matching diffusers numerically. It is pure computation: it
 * never prints (it calls the log callback you give it), never reads the environment, never
 * exits. Every call returns an sd_status; failures also leave a one-line message.
 *
 * Typical use:
 *
 *     sd_model *m; char err[SD_ERRMSG_MAX];
 *     if (sd_model_load("models/demo", NULL, &m, err) != SD_OK) { puts(err); ... }
 *     sd_request rq; sd_request_init(&rq);
 *     rq.prompt = "a red circle"; rq.seed = 42;
 *     sd_image img;
 *     if (sd_generate(m, &rq, &img, err) == SD_OK) { ... img.rgb ...; sd_image_free(&img); }
 *     sd_model_destroy(m);
 *
 * A loaded sd_model is immutable and may be shared by any number of threads calling
 * sd_generate at once; each call owns all of its working memory.
 */
#ifndef SD_H
#define SD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SD_ERRMSG_MAX 512

/* Status codes. SD_OK is zero, every error is negative. sd_status_str names them. */
typedef enum sd_status {
  SD_OK = 0,
  SD_ERR_NOMEM = -1,       /* an allocation failed */
  SD_ERR_IO = -2,          /* a file could not be opened, read or mapped */
  SD_ERR_FORMAT = -3,      /* malformed bytes: safetensors, JSON, PNG, tokenizer files */
  SD_ERR_UNSUPPORTED = -4, /* well-formed but not supported (pickle .ckpt, dtype, layer kind) */
  SD_ERR_MISSING = -5,     /* a required tensor, file or config key is absent */
  SD_ERR_SHAPE = -6,       /* a tensor has a shape the architecture does not allow */
  SD_ERR_INVALID = -7,     /* a request parameter is out of range or unknown */
  SD_ERR_CANCELLED = -8,   /* the request's cancel callback asked to stop */
  SD_ERR_LIMIT = -9,       /* input larger than a configured limit */
  SD_ERR_INTERNAL = -10    /* a broken invariant: a bug in the engine */
} sd_status;

/* Static name of a status, e.g. "invalid argument". Never NULL. */
const char *sd_status_str(sd_status st);

/* Log levels for sd_log_fn. */
typedef enum sd_log_level { SD_LOG_DEBUG = 0, SD_LOG_INFO = 1, SD_LOG_WARN = 2 } sd_log_level;
typedef void (*sd_log_fn)(void *user, sd_log_level level, const char *msg);

/* ---- model ------------------------------------------------------------------------------ */

typedef struct sd_model sd_model;

typedef struct sd_load_options {
  const char *tokenizer_dir; /* tokenizer for single-file checkpoints; NULL = look beside it */
  int threads;               /* threads used while converting weights; 0 = all cores */
  sd_log_fn log;             /* may be NULL */
  void *log_user;
} sd_load_options;

void sd_load_options_init(sd_load_options *opt);

/* Load a model from a diffusers folder (model_index.json + parts) or a single CompVis-named
 * .safetensors file. opt may be NULL for defaults. On success *out owns the model (free with
 * sd_model_destroy). On failure *out is NULL and err (SD_ERRMSG_MAX bytes, may be NULL) holds
 * one line saying what is wrong and with which file. */
sd_status sd_model_load(const char *path, const sd_load_options *opt, sd_model **out, char *err);

/* Free a model. Accepts NULL. No sd_generate may be running on it. */
void sd_model_destroy(sd_model *m);

/* Facts about a loaded model, for logs and the API. */
typedef struct sd_model_info {
  const char *name;        /* folder or file base name */
  int native_width;        /* sample size x 8, e.g. 512 for SD1.5 */
  int native_height;
  int latent_channels;
  int text_hidden;         /* text encoder width (768 for SD1.x) */
  const char *vae_kind;    /* "kl" or "vq" */
} sd_model_info;
void sd_model_get_info(const sd_model *m, sd_model_info *info);

/* ---- ControlNet ------------------------------------------------------------------------- */

typedef struct sd_controlnet sd_controlnet;

/* Load a ControlNet from a diffusers folder (config.json + diffusion_pytorch_model.safetensors)
 * or a single .safetensors file (diffusers names, or the original names bare or under
 * "control_model."; F32, F16 or BF16). opt may be NULL (only threads and log are used). On
 * success *out owns the net (free with sd_controlnet_destroy); it is immutable and may be
 * shared by concurrent requests, with any model whose UNet it fits (checked per request).
 * On failure *out is NULL and err (SD_ERRMSG_MAX bytes, may be NULL) names the file. */
sd_status sd_controlnet_load(const char *path, const sd_load_options *opt, sd_controlnet **out,
                             char *err);

/* Free a ControlNet. Accepts NULL. No request may be using it. */
void sd_controlnet_destroy(sd_controlnet *cn);

/* One ControlNet applied to a request (diffusers' StableDiffusionControlNetPipeline; several
 * units are summed like its MultiControlNetModel). */
typedef struct sd_control_unit {
  const sd_controlnet *net;
  const uint8_t *rgb;   /* control image, height x width x 3 uint8 RGB (e.g. a Canny map) */
  int width, height;    /* of rgb; resized to the output size (PIL Lanczos) when different */
  float scale;          /* controlnet_conditioning_scale; 0 = as if the unit were absent */
  float start, end;     /* control_guidance_start / _end, fractions of the steps (0 and 1) */
} sd_control_unit;

/* At most this many units per request. */
#define SD_MAX_CONTROL 8

/* Fill a unit with the defaults: scale 1, start 0, end 1, no net or image. */
void sd_control_unit_init(sd_control_unit *u);

/* OpenCV's cv2.Canny(rgb, low, high) (aperture 3, L1 gradient) on a 3-channel image: edges
 * (w x h bytes, caller-allocated) become 255 on edges, 0 elsewhere. Errors: SD_ERR_INVALID
 * (size or thresholds), SD_ERR_NOMEM. */
sd_status sd_canny(const uint8_t *rgb, int w, int h, double low, double high, uint8_t *edges);

/* ---- samplers --------------------------------------------------------------------------- */

/* Names accepted in sd_request.sampler, NULL-terminated. */
extern const char *const sd_sampler_names[];

/* The name A1111 shows for a sampler ("euler_a" -> "Euler a", "pndm" -> "PLMS"), for
 * infotexts; NULL for an unknown name. */
const char *sd_sampler_label(const char *name);

/* ---- generation ------------------------------------------------------------------------- */

/* Progress: called after each denoising iteration (step counts from 1 to total).
 * latents may be used for a preview; they are (1, C, h, w) float32, valid during the call. */
typedef void (*sd_progress_fn)(void *user, int step, int total, const float *latents, int c,
                               int h, int w);
/* Cancel: polled between iterations (and inside long stages); nonzero stops the request
 * with SD_ERR_CANCELLED. */
typedef int (*sd_cancel_fn)(void *user);

typedef struct sd_request {
  const char *prompt;          /* UTF-8; NULL = "" */
  const char *negative_prompt; /* UTF-8; NULL = "" */
  uint64_t seed;               /* like torch.manual_seed */
  int steps;                   /* 1..1000 */
  float cfg_scale;             /* <= 1 disables the unconditional pass */
  const char *sampler;         /* one of sd_sampler_names; unknown names are an error */
  int width, height;           /* multiples of 8; 0 = the model's native size */
  int threads;                 /* 0 = all cores; never changes the result */
  /* image-to-image: init_rgb is height x width x 3 uint8 (the request's size), NULL = none */
  const uint8_t *init_rgb;
  float strength;              /* 0..1, fraction of the schedule to run over the init image */
  const sd_control_unit *control; /* ncontrol ControlNet units (not copied), NULL = none */
  int ncontrol;                /* 0..SD_MAX_CONTROL */
  sd_progress_fn progress;     /* may be NULL */
  sd_cancel_fn cancel;         /* may be NULL */
  void *user;                  /* passed to progress and cancel */
} sd_request;

/* Defaults: prompt "", seed 0, 20 steps, cfg 7.5, sampler "euler_a", native size,
 * strength 0.75. */
void sd_request_init(sd_request *rq);

/* An 8-bit RGB image, row-major, width x height x 3 bytes. */
typedef struct sd_image {
  int width, height;
  uint8_t *rgb;
} sd_image;

void sd_image_free(sd_image *img);

/* Run one request. On success out->rgb is malloc'ed (free with sd_image_free). On failure out
 * is zeroed, err holds one line, and nothing else changed. Thread-safe for a shared model. */
sd_status sd_generate(const sd_model *m, const sd_request *rq, sd_image *out, char *err);

/* Tokenize with the vocab.json + merges.txt of a tokenizer folder, without a model: the 77 SD
 * input ids as sd_model_tokenize gives them. */
sd_status sd_tokenize_dir(const char *dir, const char *text, int32_t ids[77], char *err);

/* Turn text into the 77 input ids of the model's tokenizer ([BOS] ids[:75] [EOS] padded with
 * EOS). */
sd_status sd_model_tokenize(const sd_model *m, const char *text, int32_t ids[77], char *err);

#ifdef __cplusplus
}
#endif
#endif
