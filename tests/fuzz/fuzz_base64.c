/* fuzz_base64.c: fuzz target for api/base64.c.
 *
 * Decodes the input under a small cap; a success must re-encode to a string that decodes to
 * the same bytes, and a failure must leave no buffer and say why. Then the input as raw bytes
 * must survive encode -> decode unchanged. Any violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *out = NULL;
  size_t n = 0;
  char err[SD_ERRMSG_MAX] = "";
  sd_status st = api_base64_decode((const char *)data, size, 4096, &out, &n, err);
  if (st == SD_OK) {
    if (!out || n > 4096 || n > size) abort();
    size_t elen;
    char *enc = api_base64_encode(out, n, &elen);
    uint8_t *back = NULL;
    size_t bn = 0;
    if (!enc || api_base64_decode(enc, elen, 4096, &back, &bn, NULL) != SD_OK || bn != n ||
        memcmp(back, out, n) != 0)
      abort();
    free(enc);
    free(back);
    free(out);
  } else if (out || n || !err[0]) {
    abort();
  }
  size_t elen;
  char *enc = api_base64_encode(data, size, &elen);
  if (!enc || elen != api_base64_encoded_len(size) || strlen(enc) != elen) abort();
  out = NULL;
  if (api_base64_decode(enc, elen, size, &out, &n, NULL) != SD_OK || n != size ||
      memcmp(out, data, size) != 0)
    abort();
  free(out);
  free(enc);
  return 0;
}
