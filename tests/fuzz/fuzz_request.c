/* fuzz_request.c: fuzz target for the native JSON request parser (api/request.c) on top of
 * cJSON, base64 and the bounded PNG decoder.
 *
 * A success must produce an engine request inside the limits (prompt present and within the
 * length cap, size multiple of 8 and within max_pixels, steps and batch in range, a known
 * sampler); a failure must carry a message and map to 400, 413 or 422 (or 503 for memory).
 * Everything is freed on both paths (LeakSanitizer checks). Any violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  api_limits lim;
  api_limits_init(&lim);
  lim.max_steps = 50;
  lim.max_pixels = 256 * 256;
  lim.max_prompt_chars = 300;
  lim.max_image_bytes = 1 << 20;
  lim.native_width = 64;
  lim.native_height = 64;
  api_gen_request r;
  api_error e;
  memset(&e, 0, sizeof e);
  api_err k = api_request_parse((const char *)data, size, &lim, &r, &e);
  if (k == API_OK) {
    const sd_request *q = &r.rq;
    if (!q->prompt || !q->negative_prompt || !q->sampler) abort();
    if (strlen(q->prompt) > 4 * (size_t)lim.max_prompt_chars) abort();
    if (q->width % 8 || q->height % 8 || q->width <= 0 || q->height <= 0) abort();
    if ((long long)q->width * q->height > lim.max_pixels) abort();
    if (q->steps < 1 || q->steps > lim.max_steps) abort();
    if (r.batch_size < 1 || r.batch_size > lim.max_batch) abort();
    if (!(q->cfg_scale >= 0 && q->cfg_scale <= 100)) abort();
    if (q->ncontrol != 0) abort(); /* no ControlNet is loaded */
    int known = 0;
    for (const char *const *s = sd_sampler_names; *s; s++) known |= !strcmp(*s, q->sampler);
    if (!known) abort();
    char *pj = api_request_params_json(&r, q->seed, q->width, q->height);
    if (!pj) abort();
    free(pj);
  } else {
    int http = api_err_http_status(k);
    if (e.kind != k || !e.message[0]) abort();
    if (http != 400 && http != 413 && http != 422 && http != 503) abort();
  }
  api_gen_request_free(&r);
  return 0;
}
