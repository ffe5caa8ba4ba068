/* weights.c: weight sources (weights.h): a model component's view of a safetensors file.
 *
 * Network code asks for "down_blocks.0.resnets.0.conv1.weight" with the shape its config
 * implies; we translate the name to the file's (prefix + optional translator), check the shape
 * (-1 wildcards; trailing 1-sized dims may differ, so a 1x1 conv [O,I,1,1] serves a linear
 * [O,I]), and hand out float32: aligned F32 data in place from the mapping, anything else
 * converted once into a buffer this source owns (big tensors converted by several threads of
 * a pool started for that tensor: loading has no job pool, and starting a few threads costs
 * well under a millisecond next to converting a quarter-million elements or more).
 * A source is used by one thread while the model loads; afterwards its pointers are read-only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"
#include "weights.h"

#define WNAME_MAX 512
/* Below this many elements a conversion is not worth starting threads for. */
#define PARALLEL_MIN (1u << 18)

struct sd__wsrc {
  sd_safetensors *file;
  int own_file;
  char *prefix;
  sd__wname_fn translate;
  void *translate_user;
  float **converted; /* per file tensor index, NULL until converted */
  size_t converted_bytes;
  int threads;
  char label[32];
};

sd_status sd__wsrc_create(sd_safetensors *file, int own_file, const char *prefix,
                          sd__wname_fn translate, void *translate_user, sd__wsrc **out,
                          sd_error *err) {
  *out = NULL;
  sd__wsrc *s = calloc(1, sizeof *s);
  if (!s) goto out_nomem;
  s->prefix = strdup(prefix ? prefix : "");
  s->converted = calloc(file->count ? file->count : 1, sizeof *s->converted);
  if (!s->prefix || !s->converted) goto out_nomem;
  s->file = file;
  s->translate = translate;
  s->translate_user = translate_user;
  snprintf(s->label, sizeof s->label, "weights");
  s->own_file = own_file;
  *out = s;
  return SD_OK;
out_nomem:
  if (s) {
    free(s->prefix);
    free(s->converted);
    free(s);
  }
  return sd__err(err, SD_ERR_NOMEM, "%s: out of memory", file->path);
}

void sd__wsrc_destroy(sd__wsrc *src) {
  if (!src) return;
  if (src->converted)
    for (size_t i = 0; i < src->file->count; i++) free(src->converted[i]);
  free(src->converted);
  free(src->prefix);
  if (src->own_file) sd__st_close(src->file);
  free(src);
}

void sd__wsrc_set_label(sd__wsrc *src, const char *label) {
  snprintf(src->label, sizeof src->label, "%s", label ? label : "weights");
}

void sd__wsrc_set_threads(sd__wsrc *src, int threads) { src->threads = threads; }

const char *sd__wsrc_label(const sd__wsrc *src) { return src->label; }

const sd_safetensors *sd__wsrc_file(const sd__wsrc *src) { return src->file; }

/* The file's name for a component name into out; 0 on success. */
static int file_name(const sd__wsrc *s, const char *name, char *out, size_t cap) {
  size_t pl = strlen(s->prefix);
  if (pl >= cap) return -1;
  memcpy(out, s->prefix, pl);
  if (s->translate) return s->translate(s->translate_user, name, out + pl, cap - pl);
  int n = snprintf(out + pl, cap - pl, "%s", name);
  return (n < 0 || (size_t)n >= cap - pl) ? -1 : 0;
}

static const sd_st_tensor *lookup(const sd__wsrc *s, const char *name, char *fname,
                                  size_t cap) {
  if (file_name(s, name, fname, cap) != 0) {
    snprintf(fname, cap, "(no counterpart)");
    return NULL;
  }
  return sd__st_find(s->file, fname);
}

int sd__wsrc_has(sd__wsrc *src, const char *name) {
  char fname[WNAME_MAX];
  return lookup(src, name, fname, sizeof fname) != NULL;
}

int sd__wsrc_shape(sd__wsrc *src, const char *name, int64_t shape[SD_ST_MAX_DIMS]) {
  char fname[WNAME_MAX];
  const sd_st_tensor *t = lookup(src, name, fname, sizeof fname);
  if (!t) return -1;
  memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
  return t->ndim;
}

size_t sd__wsrc_converted_bytes(const sd__wsrc *src) { return src->converted_bytes; }

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, cap - k, "[");
  for (int i = 0; i < ndim && k < cap; i++)
    k += (size_t)snprintf(buf + k, cap - k, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* Stored shape vs asked shape: equal where asked >= 0, and any extra trailing dims (on either
 * side) equal to 1. */
static int shape_ok(const sd_st_tensor *t, int ndim, const int64_t *shape) {
  int common = t->ndim < ndim ? t->ndim : ndim;
  for (int i = 0; i < common; i++)
    if (shape[i] >= 0 && shape[i] != t->shape[i]) return 0;
  for (int i = common; i < t->ndim; i++)
    if (t->shape[i] != 1) return 0;
  for (int i = common; i < ndim; i++)
    if (shape[i] != 1 && shape[i] != -1) return 0;
  return 1;
}

/* Elements per conversion task. */
#define CONVERT_BLOCK ((size_t)1 << 16)

typedef struct convert_job {
  const sd_st_tensor *t;
  float *dst;
} convert_job;

static void convert_task(void *arg, int b, int worker) {
  const convert_job *J = arg;
  size_t n = (size_t)J->t->numel, first = (size_t)b * CONVERT_BLOCK;
  size_t cnt = n - first < CONVERT_BLOCK ? n - first : CONVERT_BLOCK;
  sd__st_convert_span(J->t, J->dst + first, first, cnt);
}

/* The float32 copy replaces the file's bytes for good: hand their pages back so a half-precision
 * model is not resident twice (F16 file pages + F32 copies). The mapping is private and
 * read-only, so a later touch would only read the file again. */
static void release_pages(const sd__wsrc *s, const sd_st_tensor *t) {
  if (!s->file->map || t->nbytes == 0) return;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t lo = ((uintptr_t)t->data + page - 1) & ~(page - 1);
  uintptr_t hi = ((uintptr_t)t->data + t->nbytes) & ~(page - 1);
  if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

static void convert(const sd__wsrc *s, const sd_st_tensor *t, float *dst) {
  size_t n = (size_t)t->numel;
  int threads = s->threads;
  if (threads <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    threads = c < 1 ? 1 : (c > 64 ? 64 : (int)c);
  }
  sd__pool *pool = NULL;
  sd_error ignored = {0};
  /* Without a pool (threads 1, a small tensor, or threads failed to start) the same
   * conversion runs on this thread: the pool only changes who converts which block. */
  if (n >= PARALLEL_MIN && threads > 1) sd__pool_create(threads, &pool, &ignored);
  convert_job J = {t, dst};
  sd__pool_for(pool, (int)((n + CONVERT_BLOCK - 1) / CONVERT_BLOCK), convert_task, &J);
  sd__pool_destroy(pool);
}

const float *sd__wsrc_get(sd__wsrc *src, const char *name, int ndim, int64_t *shape,
                          sd_error *err) {
  char fname[WNAME_MAX], want[160], have[160];
  const sd_st_tensor *t = lookup(src, name, fname, sizeof fname);
  if (!t) {
    sd__err(err, SD_ERR_MISSING, "%s: tensor %s (file name %s) is missing from %s", src->label,
            name, fname, src->file->path);
    return NULL;
  }
  if (!shape_ok(t, ndim, shape)) {
    fmt_shape(have, sizeof have, t->ndim, t->shape);
    fmt_shape(want, sizeof want, ndim, shape);
    sd__err(err, SD_ERR_SHAPE,
            "%s: tensor %s (file name %s in %s) has shape %s but the config needs %s", src->label,
            name, fname, src->file->path, have, want);
    return NULL;
  }
  for (int i = 0; i < ndim; i++) shape[i] = i < t->ndim ? t->shape[i] : 1;
  size_t idx = (size_t)(t - src->file->tensors);
  if (src->converted[idx]) return src->converted[idx];
  if (t->dtype == SD_DTYPE_F32 && ((uintptr_t)t->data & 3) == 0) return (const float *)t->data;
  if (t->dtype != SD_DTYPE_F32 && t->dtype != SD_DTYPE_F16 && t->dtype != SD_DTYPE_BF16 &&
      t->dtype != SD_DTYPE_F64) {
    sd__err(err, SD_ERR_UNSUPPORTED, "%s: tensor %s (file name %s) in %s has dtype %s, not a float type",
            src->label, name, fname, src->file->path, sd__dtype_name(t->dtype));
    return NULL;
  }
  size_t bytes;
  float *buf = NULL;
  if (!sd__mul_size((size_t)t->numel, sizeof(float), &bytes))
    buf = aligned_alloc(64, bytes ? (bytes + 63) & ~(size_t)63 : 64);
  if (!buf) {
    sd__err(err, SD_ERR_NOMEM, "%s: cannot allocate %zu bytes for tensor %s", src->label, bytes,
            name);
    return NULL;
  }
  convert(src, t, buf);
  src->converted[idx] = buf;
  src->converted_bytes += bytes;
  release_pages(src, t);
  return buf;
}

int sd__wsrc_shapef(sd__wsrc *src, int64_t shape[SD_ST_MAX_DIMS], const char *fmt, ...) {
  char name[WNAME_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  return sd__wsrc_shape(src, name, shape);
}

const float *sd__wsrc_getf(sd__wsrc *src, sd_error *err, int ndim, int64_t *shape,
                           const char *fmt, ...) {
  char name[WNAME_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof name) {
    sd__err(err, SD_ERR_INTERNAL, "%s: tensor name too long", src->label);
    return NULL;
  }
  return sd__wsrc_get(src, name, ndim, shape, err);
}

int sd__is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int sd__is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}
