/* status.c: status names, the error record and small file helpers shared by the engine. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *sd_status_str(sd_status st) {
  switch (st) {
  case SD_OK: return "ok";
  case SD_ERR_NOMEM: return "out of memory";
  case SD_ERR_IO: return "i/o error";
  case SD_ERR_FORMAT: return "malformed input";
  case SD_ERR_UNSUPPORTED: return "unsupported";
  case SD_ERR_MISSING: return "missing";
  case SD_ERR_SHAPE: return "wrong shape";
  case SD_ERR_INVALID: return "invalid argument";
  case SD_ERR_CANCELLED: return "cancelled";
  case SD_ERR_LIMIT: return "limit exceeded";
  case SD_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

sd_status sd__err(sd_error *err, sd_status st, const char *fmt, ...) {
  if (!err) return st;
  if (err->status != SD_OK) return err->status;
  err->status = st;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return st;
}

void sd__err_export(const sd_error *err, char *buf) {
  if (!buf) return;
  if (!err || err->status == SD_OK) {
    buf[0] = '\0';
    return;
  }
  snprintf(buf, SD_ERRMSG_MAX, "%s", err->msg[0] ? err->msg : sd_status_str(err->status));
}

sd_status sd__read_file(const char *path, size_t max_bytes, char **data, size_t *len,
                        sd_error *err) {
  *data = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return sd__err(err, SD_ERR_IO, "%s: %s", path, strerror(errno));
  sd_status st = SD_OK;
  char *buf = NULL;
  if (fseek(f, 0, SEEK_END) != 0) {
    st = sd__err(err, SD_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    goto out_close;
  }
  long size = ftell(f);
  if (size < 0) {
    st = sd__err(err, SD_ERR_IO, "%s: cannot size: %s", path, strerror(errno));
    goto out_close;
  }
  if ((size_t)size > max_bytes) {
    st = sd__err(err, SD_ERR_LIMIT, "%s: %ld bytes is more than the %zu allowed", path, size,
                 max_bytes);
    goto out_close;
  }
  rewind(f);
  buf = malloc((size_t)size + 1);
  if (!buf) {
    st = sd__err(err, SD_ERR_NOMEM, "%s: cannot allocate %ld bytes", path, size);
    goto out_close;
  }
  if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
    st = sd__err(err, SD_ERR_IO, "%s: short read", path);
    free(buf);
    goto out_close;
  }
  buf[size] = '\0';
  *data = buf;
  *len = (size_t)size;
out_close:
  fclose(f);
  return st;
}

char *sd__path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  size_t k = a;
  if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
  memcpy(p + k, name, b + 1);
  return p;
}
