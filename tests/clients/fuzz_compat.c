/* fuzz_compat.c: fuzz target for the A1111 and OpenAI body parsers (api/a1111.c,
 * api/openai.c) on top of the native request validation. The first byte picks the format
 * (txt2img, img2img, OpenAI, options merge), the rest is the body. A success must be a
 * request within the limits and an answer that builds; a failure must carry a message and a
 * kind that maps to 4xx (or 503 for memory). Everything is freed on both paths (LeakSanitizer
 * checks). Any violation aborts. Run by tests/fuzz/driver.c over tests/clients/fuzz_corpus.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "a1111.h"
#include "openai.h"

static void check_request(const api_gen_request *r, const api_limits *lim) {
  const sd_request *q = &r->rq;
  if (!q->prompt || !q->negative_prompt || !q->sampler) abort();
  if (q->width % 8 || q->height % 8 || q->width <= 0 || q->height <= 0) abort();
  if ((long long)q->width * q->height > lim->max_pixels) abort();
  if (q->steps < 1 || q->steps > lim->max_steps) abort();
  if (r->batch_size < 1 || r->batch_size > lim->max_batch) abort();
  if (q->ncontrol != 0) abort(); /* no ControlNet is loaded */
}

static void check_error(api_err k, const api_error *e) {
  int st = api_err_http_status(k);
  if (!e->message[0] || !((st >= 400 && st < 500) || k == API_ERR_NOMEM)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  api_limits lim;
  api_limits_init(&lim);
  lim.max_steps = 50;
  lim.max_pixels = 128 * 128;
  lim.max_prompt_chars = 300;
  lim.max_image_bytes = 1 << 20;
  lim.native_width = 64;
  lim.native_height = 64;
  const char *body = (const char *)data + 1;
  size_t len = size - 1;
  api_gen_request r;
  api_error e;
  memset(&e, 0, sizeof e);
  int mode = data[0] % 4;
  if (mode <= 1) {
    api_a1111_extra x;
    api_err k = api_a1111_parse(body, len, mode, &lim, &r, &x, &e);
    if (k == API_OK) {
      check_request(&r, &lim);
      if (!x.params_json || x.batch_size * x.n_iter != r.batch_size) abort();
      char *resp = api_a1111_response(&r, &x, NULL, 0, "m");
      if (!resp) abort();
      free(resp);
    } else {
      check_error(k, &e);
    }
    api_gen_request_free(&r);
    api_a1111_extra_free(&x);
  } else if (mode == 2) {
    api_openai_extra x;
    api_err k = api_openai_parse(body, len, &lim, &r, &x, &e);
    if (k == API_OK) {
      check_request(&r, &lim);
      if (x.n != r.batch_size || x.partial_images < 0 || x.partial_images > 3) abort();
    } else {
      check_error(k, &e);
    }
    api_gen_request_free(&r);
  } else {
    char *merged = NULL;
    api_err k = api_a1111_options_merge("{\"a\":1}", body, len, &merged, &e);
    if ((k == API_OK) != (merged != NULL)) abort();
    char *opts = api_a1111_options_json("m", merged);
    if (k == API_OK && !opts) abort();
    free(opts);
    free(merged);
  }
  return 0;
}
