/* fuzz_safetensors.c: fuzz target for the safetensors reader (engine/safetensors.c).
 *
 * Opens the input as an in-memory file; on success checks every promise of the header
 * validation (sorted unique names, ranges inside the buffer, nbytes = numel x dtype size) and
 * converts every float tensor to float32 (reading every data byte), so ASan catches any range
 * the validator let through. Built by driver.c (gcc, meson test) or by run.sh for libFuzzer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A private copy so reads past the end hit ASan's redzone, not the caller's bytes. */
  uint8_t *copy = malloc(size ? size : 1);
  if (!copy) return 0;
  memcpy(copy, data, size);
  sd_safetensors *st = NULL;
  sd_error e = {0};
  if (sd__st_open_memory(copy, size, "fuzz", &st, &e) != SD_OK) {
    if (st || e.msg[0] == '\0') abort();
    free(copy);
    return 0;
  }
  for (size_t i = 0; i < st->count; i++) {
    const sd_st_tensor *t = &st->tensors[i];
    if (i && strcmp(st->tensors[i - 1].name, t->name) >= 0) abort();
    if (sd__st_find(st, t->name) != t) abort();
    const uint8_t *p = t->data;
    if (p < copy || p + t->nbytes > copy + size) abort();
    if ((size_t)t->numel * sd__dtype_size(t->dtype) != t->nbytes) abort();
    if (t->ndim < 0 || t->ndim > SD_ST_MAX_DIMS) abort();
    float *f = malloc((size_t)t->numel * sizeof(float) + 1);
    if (f) {
      sd__st_to_f32(t, f, &e);
      free(f);
    }
  }
  sd__st_close(st);
  free(copy);
  return 0;
}
