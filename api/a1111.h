/* a1111.h: AUTOMATIC1111's web UI API (the /sdapi/v1 routes) and its ControlNet extension, as wire
 * formats: an A1111 txt2img/img2img body becomes our native request (then validated by
 * api/request.c exactly as POST /generate is, so both APIs make the same image for the same
 * parameters), and the answers (images + parameters + info, lists, options) are built here.
 *
 * A1111 field names and defaults: every field optional, unknown keys ignored; prompt "",
 * steps 20, cfg_scale 7, sampler_name "Euler a", 512x512, seed -1, batch_size 1, n_iter 1,
 * denoising_strength 0.75 (img2img). Images: raw base64 or data: URLs (PNG). Not HTTP.
 */
#ifndef API_A1111_H
#define API_A1111_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "request.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What an A1111 request adds to the native one. */
typedef struct api_a1111_extra {
  int img2img;               /* /sdapi/v1/img2img */
  int batch_size, n_iter;    /* A1111's; the native batch is their product */
  int save_detected_map[SD_MAX_CONTROL]; /* per native unit: return its Canny map */
  uint8_t *detected_png[SD_MAX_CONTROL];  /* those maps as PNG, made at parse time (the
                                              server frees a job's images when it ends) */
  size_t detected_len[SD_MAX_CONTROL];
  int n_units;               /* enabled ControlNet units (native units) */
  char *params_json;         /* the request with A1111 defaults filled in ("parameters") */
} api_a1111_extra;

/* Parse an A1111 txt2img (img2img = 0) or img2img (1) body of len bytes into *out (a native
 * request validated against lim; free with api_gen_request_free, also after a failure) and
 * *x (free with api_a1111_extra_free). ControlNet units come from
 * alwayson_scripts.controlnet.args (keys in any case; units enabled unless enabled: false;
 * a model "None" skips the unit; image/input_image (or {image, mask}), module canny|none,
 * model (a loaded net's name, " [hash]" ignored), weight, guidance_start/_end (guidance),
 * threshold_a/b = Canny thresholds (-1 = 100/200), resize_mode and control_mode as strings
 * or ints). resize_mode "Just Resize" resizes the whole image; "Crop and Resize" (the
 * extension's default) centre-crops it to the output's aspect first; "Resize and Fill" only
 * when the aspects match. control_mode must be "Balanced"; processor_res, pixel_perfect and
 * lowvram are accepted (Canny runs at the image's own resolution). save_detected_map: true
 * returns the Canny map after the images. Returns API_OK or the error kind with *e filled. */
api_err api_a1111_parse(const char *body, size_t len, int img2img, const api_limits *lim,
                        api_gen_request *out, api_a1111_extra *x, api_error *e);

void api_a1111_extra_free(api_a1111_extra *x);

/* One generated image as the server hands it back. */
typedef struct api_a1111_image {
  const uint8_t *png;
  size_t len;
  uint64_t seed;
} api_a1111_image;

/* The txt2img/img2img answer {images, parameters, info} as malloc'ed JSON text: images are
 * base64 PNGs (the detected maps of units with save_detected_map follow the generated ones),
 * info is a JSON string with seed, all_seeds, infotexts, ... model_name names the model. NULL
 * when out of memory. */
char *api_a1111_response(const api_gen_request *r, const api_a1111_extra *x,
                         const api_a1111_image *imgs, int n, const char *model_name);

/* Lists, as malloc'ed JSON text (NULL when out of memory). */
char *api_a1111_samplers_json(void);
char *api_a1111_schedulers_json(void);
char *api_a1111_sd_models_json(const char *model_name, const char *model_path);
/* controlnet/model_list {"model_list": [...]} and controlnet/module_list. */
char *api_a1111_cn_models_json(const api_controlnet_ref *nets, int n);
char *api_a1111_cn_modules_json(void);

/* Map an A1111 sampler label ("Euler a", "DPM++ 2M Karras", "k_euler_a", or our own name)
 * plus an optional scheduler ("Automatic" or "Normal": the sampler's own schedule; "Karras";
 * NULL) to an engine sampler name; NULL if unknown. */
const char *api_a1111_sampler(const char *label, const char *scheduler);

/* GET /sdapi/v1/options: A1111 defaults overlaid with the stored (posted) options JSON
 * (NULL = none); sd_model_checkpoint always names model_name. Malloc'ed, NULL on no memory. */
char *api_a1111_options_json(const char *model_name, const char *stored);

/* POST /sdapi/v1/options: merge the body's object into stored (NULL = empty) into *merged
 * (malloc'ed). API_OK, or API_ERR_BAD_JSON / API_ERR_NOMEM with *e set. */
api_err api_a1111_options_merge(const char *stored, const char *body, size_t len, char **merged,
                                api_error *e);

/* GET /sdapi/v1/progress: progress step/steps of the running job, job_count queued + running
 * (0 when idle, then progress is 0), eta from the elapsed seconds, an optional preview PNG as
 * base64. Malloc'ed, NULL on no memory. */
char *api_a1111_progress_json(int job_count, int step, int steps, double elapsed_s,
                              const char *preview_b64);

#ifdef __cplusplus
}
#endif
#endif
