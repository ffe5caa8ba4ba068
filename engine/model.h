/* model.h: what a loaded sd_model holds. Loading (model.c) fills it from a diffusers folder or
 * a single CompVis-named safetensors file; generation (pipeline.c) reads it and never writes. */
#ifndef SD_MODEL_H
#define SD_MODEL_H

#include "clip.h"
#include "compvis.h"
#include "scheduler.h"
#include "tokenizer.h"
#include "unet.h"
#include "vae.h"

#define SD_MODEL_MAX_FILES 8

struct sd_model {
  char *name;
  sd__tokenizer *tok;
  sd__clip *clip;
  sd__unet *unet;
  sd__vae *vae;
  sd__sched_config sched;
  /* Weight sources stay open: F32 weights are used in place from the mappings. */
  sd__wsrc *sources[SD_MODEL_MAX_FILES];
  int nsources;
  sd_log_fn log;
  void *log_user;
  /* Name translators of a single-file checkpoint (the sources point at them). */
  sd__cv_unet_map cv_unet;
  sd__cv_vae_map cv_vae;
  sd__cv_clip_map cv_clip;
};

/* Optional copies of intermediate results of a generation, for the golden tests: each non-NULL
 * pointer must hold the named number of floats. */
typedef struct sd__trace {
  float *final_latents; /* [C * h * w] latents after the last sampler step */
  float *image;         /* [3 * H * W] VAE output, NCHW, before clamping and rounding */
} sd__trace;

/* sd_generate with a trace (may be NULL) and the error record kept. */
sd_status sd__generate(const sd_model *m, const sd_request *rq, sd_image *out, sd__trace *trace,
                       sd_error *err);

/* Log through the model's callback (no-op without one). */
void sd__model_log(const sd_model *m, sd_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
