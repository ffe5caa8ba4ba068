/* request.h: the native JSON request of POST /generate and POST /jobs, parsed and fully
 * validated into an engine request (api layer: cJSON + libpng, no HTTP).
 *
 * Body fields (all optional but prompt):
 *   prompt, negative_prompt   strings (UTF-8, no NUL, at most max_prompt_chars code points)
 *   seed                      -1 = random, or an integer 0..2^53 as a JSON number, or any
 *                             0..18446744073709551615 as a decimal string (JSON numbers are
 *                             doubles: larger ones would be silently rounded)
 *   steps, cfg_scale, width, height, sampler (alias: scheduler), batch_size, stream
 *   init_image + strength     img2img: base64 PNG or data: URL, its size must be the output size
 *   control                   one unit object, or an array of them (several ControlNets):
 *                             {image, model?, preprocess "none"|"canny", low_threshold,
 *                              high_threshold, scale, start, end}; "model" names a loaded
 *                             ControlNet (optional when exactly one is loaded; otherwise units
 *                             without it take the nets in load order)
 * Numbers are checked on valuedouble (finite, integral where an integer is meant, in range:
 * FACTS.md cJSON notes); duplicate keys, "\u0000" escapes and unknown fields are refused.
 */
#ifndef API_REQUEST_H
#define API_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "png_io.h"
#include "sd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A loaded ControlNet a request may name. */
typedef struct api_controlnet_ref {
  const char *name;
  const sd_controlnet *net;
} api_controlnet_ref;

/* What a request is validated against: server limits and the loaded model. */
typedef struct api_limits {
  long long max_pixels;     /* width x height */
  int max_steps;
  int max_prompt_chars;     /* UTF-8 code points, per prompt */
  int max_batch;
  size_t max_image_bytes;   /* decoded size of one PNG image */
  int native_width, native_height; /* the model's default size */
  const api_controlnet_ref *controlnets;
  int n_controlnets;
} api_limits;

/* Defaults: 1024*1024 pixels, 150 steps, 4000 chars, batch 4, 16 MiB images, 512x512, no
 * ControlNets. */
void api_limits_init(api_limits *lim);

/* A validated request. rq points into the struct's own memory: do not copy the struct
 * after parsing (move it by pointer). */
typedef struct api_gen_request {
  sd_request rq;             /* ready for sd_generate, except progress/cancel/user */
  int seed_random;           /* "seed": -1 (or absent): the caller picks rq.seed */
  int batch_size;            /* images; image i uses seed rq.seed + i */
  int stream;                /* "stream": true */
  char *prompt, *negative_prompt, *sampler;
  api_png_image init;        /* decoded init_image */
  api_png_image control_img[SD_MAX_CONTROL];
  uint8_t *canny[SD_MAX_CONTROL];  /* preprocessed control images (RGB), or NULL */
  sd_control_unit units[SD_MAX_CONTROL];
  const char *control_names[SD_MAX_CONTROL]; /* names of the nets used, for the infotext */
  char preprocess[SD_MAX_CONTROL][8];
  int had_init;              /* set by api_gen_request_drop_images when init_image was given */
} api_gen_request;

/* Raw PNG bytes supplied outside the JSON (multipart file parts); NULL fields = none.
 * A raw image replaces the corresponding JSON "image" field. */
typedef struct api_raw_images {
  const uint8_t *init;
  size_t init_len;
  const uint8_t *control[SD_MAX_CONTROL];
  size_t control_len[SD_MAX_CONTROL];
} api_raw_images;

/* Parse and validate len bytes of JSON into *out (initialised here; free with
 * api_gen_request_free, also after a failure). Returns API_OK, or the error kind with *e
 * filled (400 for syntax/types/images, 422 for values and limits). */
api_err api_request_parse(const char *body, size_t len, const api_limits *lim,
                          api_gen_request *out, api_error *e);

/* The same from an already parsed cJSON object (opaque here to keep cJSON.h out of this
 * header), with optional raw images; used by the multipart path. */
api_err api_request_from_cjson(const void *cjson_object, const api_raw_images *raw,
                               const api_limits *lim, api_gen_request *out, api_error *e);

/* The same from a multipart/form-data body (parts from api_multipart_parse): an optional
 * part "request" holds a JSON object; other text parts set top-level fields (prompt,
 * negative_prompt, sampler, scheduler as text, the others as JSON values: "steps" = "20");
 * file parts "init_image" and "control_image" (or "control_image_N" for unit N) carry raw
 * PNG bytes. A field given both ways takes the text part. */
struct api_form;
api_err api_request_parse_form(const struct api_form *form, const api_limits *lim,
                               api_gen_request *out, api_error *e);

/* Free the decoded images (init, control, Canny maps) of a request that has run, keeping
 * everything api_request_params_json reports. rq is no longer fit for sd_generate. */
void api_gen_request_drop_images(api_gen_request *r);

/* Free what a parse allocated and zero the struct. Accepts a zeroed struct. */
void api_gen_request_free(api_gen_request *r);

/* The parameters of a request as a JSON object text (prompt, negative_prompt, seed as a
 * number, steps, cfg_scale, sampler, width, height, ...), malloc'ed; NULL on no memory. */
char *api_request_params_json(const api_gen_request *r, uint64_t seed, int width, int height);

/* Whether s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
int api_utf8_valid(const char *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif
