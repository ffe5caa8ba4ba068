/* safetensors.c: read-only .safetensors files over mmap, validated before any tensor is exposed.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON, then the data section. Each
 * header entry gives dtype, shape and [begin, end) offsets into the data section; we check
 * them all (sizes overflow-checked, ranges inside the data, no overlaps, unique names) and keep
 * the tensors sorted by name for binary search. Pickle/zip checkpoints (.ckpt) are recognised
 * by their first bytes and refused with a hint on converting them. Also the half-precision
 * conversions (F16C for bulk work, exact scalar code for single values).
 */
#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "safetensors.h"

#define ST_MAX_HEADER (100u * 1024u * 1024u)

typedef struct st_priv {
  sd_json *header;
} st_priv;

static const struct {
  const char *name;
  size_t size;
} dtypes[] = {
    [SD_DTYPE_F32] = {"F32", 4}, [SD_DTYPE_F16] = {"F16", 2}, [SD_DTYPE_BF16] = {"BF16", 2},
    [SD_DTYPE_F64] = {"F64", 8}, [SD_DTYPE_I64] = {"I64", 8}, [SD_DTYPE_I32] = {"I32", 4},
    [SD_DTYPE_I16] = {"I16", 2}, [SD_DTYPE_I8] = {"I8", 1},   [SD_DTYPE_U8] = {"U8", 1},
    [SD_DTYPE_BOOL] = {"BOOL", 1},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

size_t sd__dtype_size(sd_dtype dt) {
  return (unsigned)dt < N_DTYPES ? dtypes[dt].size : 0;
}

const char *sd__dtype_name(sd_dtype dt) {
  return (unsigned)dt < N_DTYPES ? dtypes[dt].name : "?";
}

/* ---- half precision ---- */

float sd__f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
  if (exp == 0x1F) {
    /* inf; NaN keeps its payload and is made quiet, as the F16C instruction does */
    bits = sign | 0x7F800000u | (man << 13) | (man ? 0x400000u : 0);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {
    /* subnormal: value = man * 2^-24, exact in float32 */
    float f = (float)man * 0x1p-24f;
    memcpy(&bits, &f, 4);
    bits |= sign;
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

float sd__bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t sd__f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t exp = (x >> 23) & 0xFF, man = x & 0x7FFFFF;
  if (exp == 0xFF) /* inf stays inf; NaN stays a quiet NaN keeping the top payload bits */
    return (uint16_t)(sign | 0x7C00 | (man ? 0x200 | (man >> 13) : 0));
  int e = (int)exp - 127 + 15;
  if (e >= 0x1F) return (uint16_t)(sign | 0x7C00);
  if (e <= 0) {
    if (e < -10) return sign; /* below half the smallest subnormal: rounds to zero */
    man |= 0x800000;
    int shift = 14 - e; /* 14..24 */
    uint32_t r = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++; /* may carry into inf: correct */
  return (uint16_t)(sign | r);
}

/* Convert count elements of a float dtype starting at element `first`. */
sd_status sd__st_convert_span(const sd_st_tensor *t, float *dst, size_t first, size_t count) {
  const unsigned char *src = (const unsigned char *)t->data;
  switch (t->dtype) {
  case SD_DTYPE_F32:
    memcpy(dst, src + first * 4, count * 4);
    return SD_OK;
  case SD_DTYPE_F16: {
    size_t i = 0;
    src += first * 2;
#ifdef __F16C__
    for (; i + 8 <= count; i += 8) {
      __m128i h = _mm_loadu_si128((const __m128i *)(src + i * 2));
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
#endif
    for (; i < count; i++) {
      uint16_t h;
      memcpy(&h, src + i * 2, 2);
      dst[i] = sd__f16_to_f32(h);
    }
    return SD_OK;
  }
  case SD_DTYPE_BF16:
    src += first * 2;
    for (size_t i = 0; i < count; i++) {
      uint16_t h;
      memcpy(&h, src + i * 2, 2);
      dst[i] = sd__bf16_to_f32(h);
    }
    return SD_OK;
  case SD_DTYPE_F64:
    src += first * 8;
    for (size_t i = 0; i < count; i++) {
      double d;
      memcpy(&d, src + i * 8, 8);
      dst[i] = (float)d;
    }
    return SD_OK;
  default:
    return SD_ERR_UNSUPPORTED;
  }
}

sd_status sd__st_to_f32(const sd_st_tensor *t, float *dst, sd_error *err) {
  if (sd__st_convert_span(t, dst, 0, (size_t)t->numel) != SD_OK)
    return sd__err(err, SD_ERR_UNSUPPORTED, "tensor %s has dtype %s, which is not a float type",
                   t->name, sd__dtype_name(t->dtype));
  return SD_OK;
}

/* ---- header validation ---- */

static int dtype_from_name(const char *s) {
  for (size_t i = 0; i < N_DTYPES; i++)
    if (strcmp(dtypes[i].name, s) == 0) return (int)i;
  return -1;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int as_u53(const sd_json *v, uint64_t *out) {
  if (!v || v->type != SD_JSON_NUMBER || !(v->num >= 0) || v->num != floor(v->num) ||
      v->num >= 9007199254740992.0)
    return -1;
  *out = (uint64_t)v->num;
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const sd_st_tensor *)a)->name, ((const sd_st_tensor *)b)->name);
}

typedef struct range {
  size_t begin, end;
  const char *name;
} range;

static int by_begin(const void *a, const void *b) {
  const range *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static sd_status parse_entry(const char *path, const sd_json *e, const unsigned char *data,
                             size_t data_size, sd_st_tensor *t, sd_error *err) {
  const char *name = e->key;
  if (e->type != SD_JSON_OBJECT)
    return sd__err(err, SD_ERR_FORMAT, "%s: header entry \"%s\" is not an object", path, name);
  const sd_json *dt = sd__json_get(e, "dtype"), *shape = sd__json_get(e, "shape"),
                *offs = sd__json_get(e, "data_offsets");
  if (!dt || dt->type != SD_JSON_STRING)
    return sd__err(err, SD_ERR_FORMAT, "%s: tensor \"%s\" has no dtype string", path, name);
  int d = dtype_from_name(dt->str);
  if (d < 0)
    return sd__err(err, SD_ERR_UNSUPPORTED, "%s: tensor \"%s\" has unknown dtype \"%s\"", path,
                   name, dt->str);
  if (!shape || shape->type != SD_JSON_ARRAY)
    return sd__err(err, SD_ERR_FORMAT, "%s: tensor \"%s\" has no shape list", path, name);
  if (shape->count > SD_ST_MAX_DIMS)
    return sd__err(err, SD_ERR_UNSUPPORTED, "%s: tensor \"%s\" has %zu dimensions (max %d)",
                   path, name, shape->count, SD_ST_MAX_DIMS);
  size_t numel = 1;
  int nd = 0;
  for (const sd_json *s = shape->child; s; s = s->next) {
    uint64_t v;
    if (as_u53(s, &v) != 0)
      return sd__err(err, SD_ERR_FORMAT, "%s: tensor \"%s\" has a bad shape entry", path, name);
    if (v > (uint64_t)INT64_MAX || sd__mul_size(numel, (size_t)v, &numel) || numel > INT64_MAX)
      return sd__err(err, SD_ERR_FORMAT, "%s: tensor \"%s\" has an overflowing shape", path,
                     name);
    t->shape[nd++] = (int64_t)v;
  }
  uint64_t b, en;
  if (!offs || offs->type != SD_JSON_ARRAY || offs->count != 2 ||
      as_u53(sd__json_at(offs, 0), &b) != 0 || as_u53(sd__json_at(offs, 1), &en) != 0)
    return sd__err(err, SD_ERR_FORMAT, "%s: tensor \"%s\" needs data_offsets [begin, end]",
                   path, name);
  size_t nbytes;
  if (sd__mul_size(numel, dtypes[d].size, &nbytes))
    return sd__err(err, SD_ERR_FORMAT, "%s: tensor \"%s\" is too large", path, name);
  if (b > en || en > data_size)
    return sd__err(err, SD_ERR_FORMAT,
                   "%s: tensor \"%s\" has offsets [%llu, %llu] outside the %zu-byte data section",
                   path, name, (unsigned long long)b, (unsigned long long)en, data_size);
  if (en - b != nbytes)
    return sd__err(err, SD_ERR_FORMAT,
                   "%s: tensor \"%s\": %zu elements of %s need %zu bytes but its range has %llu",
                   path, name, numel, dtypes[d].name, nbytes, (unsigned long long)(en - b));
  t->name = name;
  t->dtype = (sd_dtype)d;
  t->ndim = nd;
  t->numel = (int64_t)numel;
  t->data = data + b;
  t->nbytes = nbytes;
  return SD_OK;
}

static sd_status check_metadata(const char *path, const sd_json *m, sd_error *err) {
  if (m->type != SD_JSON_OBJECT)
    return sd__err(err, SD_ERR_FORMAT, "%s: __metadata__ is not an object", path);
  for (const sd_json *c = m->child; c; c = c->next)
    if (c->type != SD_JSON_STRING)
      return sd__err(err, SD_ERR_FORMAT, "%s: __metadata__ value \"%s\" is not a string", path,
                     c->key);
  return SD_OK;
}

/* Validate header + data of `bytes` and fill st (tensors, priv). */
static sd_status st_parse(sd_safetensors *st, const unsigned char *bytes, size_t size,
                          sd_error *err) {
  const char *path = st->path;
  sd_status rc;
  range *ranges = NULL;
  if (size < 8)
    return sd__err(err, SD_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file",
                   path, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
  if (n > ST_MAX_HEADER)
    return sd__err(err, SD_ERR_FORMAT, "%s: header length %llu is more than the 100 MB allowed",
                   path, (unsigned long long)n);
  if (n > size - 8)
    return sd__err(err, SD_ERR_FORMAT,
                   "%s: header length %llu goes past the end of the %zu-byte file (truncated?)",
                   path, (unsigned long long)n, size);
  st_priv *pv = calloc(1, sizeof *pv);
  if (!pv) return sd__err(err, SD_ERR_NOMEM, "%s: out of memory", path);
  st->priv = pv;
  sd_error jerr = {0};
  if (sd__json_parse((const char *)bytes + 8, (size_t)n, &pv->header, &jerr) != SD_OK)
    return sd__err(err, jerr.status == SD_ERR_NOMEM ? SD_ERR_NOMEM : SD_ERR_FORMAT,
                   "%s: header: %s", path, jerr.msg);
  const sd_json *h = pv->header;
  if (h->type != SD_JSON_OBJECT)
    return sd__err(err, SD_ERR_FORMAT, "%s: header is not a JSON object", path);
  const unsigned char *data = bytes + 8 + n;
  size_t data_size = size - 8 - (size_t)n;
  size_t count = 0;
  for (const sd_json *e = h->child; e; e = e->next) {
    if (strcmp(e->key, "__metadata__") == 0) {
      if ((rc = check_metadata(path, e, err)) != SD_OK) return rc;
    } else {
      count++;
    }
  }
  st->tensors = calloc(count ? count : 1, sizeof *st->tensors);
  ranges = calloc(count ? count : 1, sizeof *ranges);
  if (!st->tensors || !ranges) {
    rc = sd__err(err, SD_ERR_NOMEM, "%s: out of memory", path);
    goto out_free_ranges;
  }
  size_t k = 0;
  for (const sd_json *e = h->child; e; e = e->next) {
    if (strcmp(e->key, "__metadata__") == 0) continue;
    if ((rc = parse_entry(path, e, data, data_size, &st->tensors[k], err)) != SD_OK)
      goto out_free_ranges;
    size_t b = (size_t)((const unsigned char *)st->tensors[k].data - data);
    ranges[k] = (range){b, b + st->tensors[k].nbytes, st->tensors[k].name};
    k++;
  }
  st->count = count;
  qsort(st->tensors, count, sizeof *st->tensors, by_name);
  for (size_t i = 1; i < count; i++)
    if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0) {
      rc = sd__err(err, SD_ERR_FORMAT, "%s: tensor \"%s\" appears twice in the header", path,
                   st->tensors[i].name);
      goto out_free_ranges;
    }
  /* Empty tensors occupy nothing and cannot overlap. */
  qsort(ranges, count, sizeof *ranges, by_begin);
  size_t prev_end = 0;
  const char *prev = NULL;
  for (size_t i = 0; i < count; i++) {
    if (ranges[i].begin == ranges[i].end) continue;
    if (prev && ranges[i].begin < prev_end) {
      rc = sd__err(err, SD_ERR_FORMAT, "%s: tensors \"%s\" and \"%s\" overlap in the data", path,
                   prev, ranges[i].name);
      goto out_free_ranges;
    }
    prev_end = ranges[i].end;
    prev = ranges[i].name;
  }
  rc = SD_OK;
out_free_ranges:
  free(ranges);
  return rc;
}

void sd__st_close(sd_safetensors *st) {
  if (!st) return;
  st_priv *pv = st->priv;
  if (pv) {
    sd__json_free(pv->header);
    free(pv);
  }
  if (st->map) munmap(st->map, st->map_size);
  free(st->tensors);
  free((char *)st->path);
  free(st);
}

static sd_safetensors *st_new(const char *name, sd_error *err) {
  sd_safetensors *st = calloc(1, sizeof *st);
  char *p = strdup(name ? name : "(memory)");
  if (!st || !p) {
    free(st);
    free(p);
    sd__err(err, SD_ERR_NOMEM, "out of memory opening %s", name ? name : "(memory)");
    return NULL;
  }
  st->path = p;
  return st;
}

sd_status sd__st_open_memory(const void *data, size_t len, const char *name,
                             sd_safetensors **out, sd_error *err) {
  *out = NULL;
  sd_safetensors *st = st_new(name, err);
  if (!st) return SD_ERR_NOMEM;
  sd_status rc = st_parse(st, data, len, err);
  if (rc != SD_OK) {
    sd__st_close(st);
    return rc;
  }
  *out = st;
  return SD_OK;
}

/* Pickle protocol 2+ starts with PROTO (0x80) and the version; torch's zip format with PK\3\4. */
static int looks_like_pickle(const unsigned char *b, size_t n) {
  if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) return 1;
  if (n >= 4 && memcmp(b, "PK\x03\x04", 4) == 0) return 1;
  return 0;
}

sd_status sd__st_open(const char *path, sd_safetensors **out, sd_error *err) {
  *out = NULL;
  sd_status rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sd__err(err, SD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  sd_safetensors *st = st_new(path, err);
  if (!st) {
    rc = SD_ERR_NOMEM;
    goto out_close_fd;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    rc = sd__err(err, SD_ERR_IO, "%s: not a regular file", path);
    goto out_free_st;
  }
  size_t size = (size_t)sb.st_size;
  unsigned char head[8] = {0};
  ssize_t got = pread(fd, head, sizeof head, 0);
  if (got < 0) {
    rc = sd__err(err, SD_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    goto out_free_st;
  }
  if (looks_like_pickle(head, (size_t)got)) {
    rc = sd__err(err, SD_ERR_UNSUPPORTED,
                 "%s is a pickled PyTorch checkpoint (.ckpt), which sdserve does not load (it "
                 "can run code); convert it to .safetensors first, e.g. python -c \"import "
                 "torch, safetensors.torch as s; sd = torch.load('in.ckpt', map_location='cpu'); "
                 "s.save_file({k: v.clone().contiguous() for k, v in sd.get('state_dict', sd).items() if "
                 "hasattr(v, 'contiguous')}, 'out.safetensors')\"",
                 path);
    goto out_free_st;
  }
  if (size < 8) {
    rc = sd__err(err, SD_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", path,
                 size);
    goto out_free_st;
  }
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    rc = sd__err(err, SD_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    goto out_free_st;
  }
  st->map = map;
  st->map_size = size;
  rc = st_parse(st, map, size, err);
  if (rc != SD_OK) goto out_free_st;
  close(fd);
  *out = st;
  return SD_OK;
out_free_st:
  sd__st_close(st);
out_close_fd:
  close(fd);
  return rc;
}

const sd_st_tensor *sd__st_find(const sd_safetensors *st, const char *name) {
  if (!st || !name) return NULL;
  size_t lo = 0, hi = st->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(st->tensors[mid].name, name);
    if (c == 0) return &st->tensors[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}
