/* scheduler.h: the samplers, each reproducing a diffusers scheduler built with
 * from_config(model's scheduler_config.json, overrides):
 *
 *   ddim            DDIMScheduler (eta 0)
 *   ddpm            DDPMScheduler
 *   euler           EulerDiscreteScheduler
 *   euler_a         EulerAncestralDiscreteScheduler
 *   heun            HeunDiscreteScheduler
 *   lms             LMSDiscreteScheduler
 *   dpmpp_2m        DPMSolverMultistepScheduler (dpmsolver++, order 2)
 *   dpmpp_2m_karras the same with Karras sigmas
 *   pndm            PNDMScheduler (skip_prk_steps)
 *
 * The denoising loop is the same for all of them: for i in 0..len-1, the model input is
 * sd__sched_scale_input(latents, i), the model is evaluated at sd__sched_timestep(i), and
 * sd__sched_step(i) updates the latents. Heun's and PNDM's repeated timesteps are entries
 * of that list, as in diffusers.
 */
#ifndef SD_SCHEDULER_H
#define SD_SCHEDULER_H

#include "internal.h"
#include "json.h"
#include "rng.h"

/* The model's scheduler_config.json (keys the samplers use). */
typedef struct sd__sched_config {
  int num_train_timesteps;   /* 1000 */
  double beta_start;         /* 0.00085 */
  double beta_end;           /* 0.012 */
  char beta_schedule[32];    /* "scaled_linear" | "linear" */
  int steps_offset;          /* 1 */
  char timestep_spacing[16]; /* "leading" | "trailing" | "linspace" */
  int set_alpha_to_one;      /* 0 */
  char prediction_type[16];  /* "epsilon" | "v_prediction" */
  int clip_sample;
  double clip_sample_range;
} sd__sched_config;

/* SD 1.5's values. */
void sd__sched_config_default(sd__sched_config *cfg);
/* Read scheduler_config.json (missing keys keep the defaults). */
sd_status sd__sched_config_from_json(const sd_json *j, sd__sched_config *cfg, sd_error *err);

typedef struct sd__sched sd__sched;

/* Whether `name` is a known sampler. */
int sd__sched_known(const char *name);

/* A sampler for `steps` inference steps. Unknown name: SD_ERR_INVALID listing the names. */
sd_status sd__sched_create(const char *name, const sd__sched_config *cfg, int steps,
                           sd__sched **out, sd_error *err);
void sd__sched_destroy(sd__sched *s);

/* Length of the loop (model evaluations), e.g. 2N-1 for heun, N+1 for pndm. */
int sd__sched_len(const sd__sched *s);
/* The timestep passed to the model at iteration i (float, may be fractional). */
float sd__sched_timestep(const sd__sched *s, int i);
/* Scale of the initial noise (init_noise_sigma). */
float sd__sched_init_sigma(const sd__sched *s);

/* model_in[n] = scale_model_input(latents, i). */
void sd__sched_scale_input(const sd__sched *s, int i, const float *latents, float *model_in,
                           size_t n);

/* One step: latents[n] <- scheduler.step(eps, t_i, latents). Draws from rng exactly when
 * diffusers draws from its generator. */
sd_status sd__sched_step(sd__sched *s, int i, const float *eps, float *latents, size_t n,
                         sd__rng *rng, sd_error *err);

/* Image-to-image: run only the last `init_timestep` entries as diffusers'
 * StableDiffusionImg2ImgPipeline does for `strength` (see golden README); returns the first
 * loop index to run. noised[n] = add_noise(x0, noise, first timestep run). */
int sd__sched_img2img_start(sd__sched *s, int steps, double strength);
void sd__sched_add_noise(const sd__sched *s, int first_index, const float *x0,
                         const float *noise, float *noised, size_t n);

#endif
