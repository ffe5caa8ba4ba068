/* openai.h: the OpenAI Images API (POST /v1/images/generations) as a wire format: the body
 * becomes a native request validated by api/request.c; answers, OpenAI-shaped errors and the
 * streaming events (image_generation.partial_image / .completed) are built here. Not HTTP.
 *
 * Body: prompt (required), n (1..max_batch), size "WxH" or "auto", response_format
 * "b64_json" (default) | "url", stream, partial_images (0..3); our extras at top level: seed,
 * negative_prompt, steps, cfg_scale, sampler (alias scheduler). model, quality, style, user,
 * background, moderation, output_compression are accepted and ignored; output_format must be
 * "png" when given. Unknown keys are ignored, as OpenAI-compatible servers do.
 */
#ifndef API_OPENAI_H
#define API_OPENAI_H

#include <stddef.h>

#include "errors.h"
#include "request.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct api_openai_extra {
  int n;              /* images */
  int want_url;       /* response_format "url" */
  int stream;         /* "stream": true */
  int partial_images; /* 0..3 partial images in the stream */
  char size[32];      /* "WxH" of the images */
} api_openai_extra;

/* Parse len bytes of JSON into *out (validated against lim; free with
 * api_gen_request_free, also after a failure) and *x. API_OK, or the kind with *e set. */
api_err api_openai_parse(const char *body, size_t len, const api_limits *lim,
                         api_gen_request *out, api_openai_extra *x, api_error *e);

/* {"error": {"message", "type", "param", "code"}}: type is "invalid_request_error" for 4xx,
 * "server_error" for 5xx; code is our wire code (api_err_code). Malloc'ed, NULL on no memory. */
char *api_openai_error_json(api_err kind, const char *message, const char *param);

/* The response {created, data: [{b64_json} | {url}], output_format, size}: items[i] is the
 * base64 PNG or the URL of image i. Malloc'ed, NULL on no memory. */
char *api_openai_response(const api_openai_extra *x, long long created,
                          const char *const *items, int n);

/* Data of one stream event: partial (index >= 0: partial_image_index) or completed
 * (index < 0), with the base64 PNG b64. Malloc'ed, NULL on no memory. */
char *api_openai_event_json(const api_openai_extra *x, long long created, const char *b64,
                            int index);

#ifdef __cplusplus
}
#endif
#endif
