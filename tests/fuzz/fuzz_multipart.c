/* fuzz_multipart.c: fuzz target for api/multipart.c and the form path of api/request.c.
 *
 * The first line of the input is the boundary, the rest the body. Parts must lie inside the
 * body and have a name; a successful form is then validated as a generation request (same
 * invariants as fuzz_request.c, briefly). Failures must say why. Any violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"
#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nl = memchr(data, '\n', size < 80 ? size : 80);
  if (!nl) return 0;
  char boundary[80];
  size_t blen = (size_t)(nl - data);
  memcpy(boundary, data, blen);
  boundary[blen] = '\0';
  if (strlen(boundary) != blen) return 0; /* a NUL inside: not a header value */
  const uint8_t *body = nl + 1;
  size_t len = size - blen - 1;
  api_form f;
  api_error e;
  memset(&e, 0, sizeof e);
  api_err k = api_multipart_parse(body, len, boundary, 16, &f, &e);
  if (k == API_OK) {
    if (f.nparts < 0 || f.nparts > 16) abort();
    for (int i = 0; i < f.nparts; i++) {
      const api_part *p = &f.parts[i];
      if (!p->name || !p->name[0]) abort();
      if (p->data < body || p->data + p->len > body + len) abort();
    }
    api_limits lim;
    api_limits_init(&lim);
    lim.max_pixels = 256 * 256;
    lim.native_width = lim.native_height = 64;
    api_gen_request r;
    api_error e2;
    memset(&e2, 0, sizeof e2);
    api_err k2 = api_request_parse_form(&f, &lim, &r, &e2);
    if (k2 == API_OK && (!r.rq.prompt || r.rq.width % 8 || r.rq.steps < 1)) abort();
    if (k2 != API_OK && !e2.message[0]) abort();
    api_gen_request_free(&r);
  } else if (!e.message[0]) {
    abort();
  }
  api_form_free(&f);
  return 0;
}
