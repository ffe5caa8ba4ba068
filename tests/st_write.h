/* st_write.h: a minimal safetensors writer for tests that build model files (single-file
 * checkpoints from the golden folders, corrupt variants). Header then data, tensors in the
 * order given, header padded with spaces to a multiple of 8 as the format's writers do. */
#ifndef SD_TEST_ST_WRITE_H
#define SD_TEST_ST_WRITE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct wtensor {
  char name[256];
  const char *dtype; /* "F32", "F16", ... */
  int ndim;
  int64_t shape[8];
  const void *data;
  size_t nbytes;
} wtensor;

/* Write n tensors to path; 0 on success, -1 when the file cannot be written. */
static int write_st(const char *path, const wtensor *t, size_t n) {
  size_t cap = 1 << 20, len = 0, off = 0;
  char *h = malloc(cap);
  len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
  for (size_t i = 0; i < n; i++) {
    len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name,
                            t[i].dtype);
    for (int d = 0; d < t[i].ndim; d++)
      len += (size_t)snprintf(h + len, cap - len, d ? ",%lld" : "%lld", (long long)t[i].shape[d]);
    len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off,
                            off + t[i].nbytes);
    off += t[i].nbytes;
  }
  len += (size_t)snprintf(h + len, cap - len, "}");
  while (len % 8) h[len++] = ' ';
  FILE *f = fopen(path, "wb");
  if (!f) {
    free(h);
    return -1;
  }
  uint64_t hl = len;
  fwrite(&hl, 8, 1, f);
  fwrite(h, 1, len, f);
  for (size_t i = 0; i < n; i++) fwrite(t[i].data, 1, t[i].nbytes, f);
  fclose(f);
  free(h);
  return 0;
}

#endif
