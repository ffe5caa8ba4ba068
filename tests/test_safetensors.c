/* test_safetensors.c: the safetensors reader (engine/safetensors.c) and weight sources
 * (engine/weights.c). A tiny writer in this file builds files in a temp dir: round trips of
 * every float dtype; every kind of corruption refused with the right status; pickle and zip
 * checkpoints refused with a conversion hint; half-precision conversion exact for all 65536
 * halves (checked against an independent formula); weight-source shape rules and conversion. */
#include <math.h>
#include <stdarg.h>
#include <unistd.h>

#include "check.h"
#include "safetensors.h"
#include "weights.h"

static char tmpdir[64];

/* Bytes of a safetensors file: 8-byte LE header length, the header text, then data. */
static unsigned char *build(const char *header, const void *data, size_t dlen, size_t *len) {
  size_t hl = strlen(header);
  *len = 8 + hl + dlen;
  unsigned char *b = malloc(*len + 1);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, header, hl);
  if (dlen) memcpy(b + 8 + hl, data, dlen);
  return b;
}

static void write_bytes(const char *path, const void *b, size_t len) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK_INT(fwrite(b, 1, len, f), len);
  fclose(f);
}

/* Open header+data from memory and from a file; both must give the same status. */
static sd_status open_both(const char *header, const void *data, size_t dlen, char *msg) {
  size_t len;
  unsigned char *b = build(header, data, dlen, &len);
  sd_safetensors *st = NULL;
  sd_error e1 = {0}, e2 = {0};
  sd_status s1 = sd__st_open_memory(b, len, "mem", &st, &e1);
  sd__st_close(st);
  char path[128];
  snprintf(path, sizeof path, "%s/t.safetensors", tmpdir);
  write_bytes(path, b, len);
  st = NULL;
  sd_status s2 = sd__st_open(path, &st, &e2);
  if (s2 == SD_OK) CHECK(st != NULL);
  else CHECK(st == NULL && strstr(e2.msg, path) != NULL); /* messages name the file */
  sd__st_close(st);
  CHECK_INT(s1, s2);
  if (msg) snprintf(msg, SD_ERRMSG_MAX, "%s", e2.msg);
  free(b);
  return s2;
}

static void test_round_trip(void) {
  /* F32 [2,3], F16 [3], BF16 [1,2,1], F64 [2], I64 [2], empty F32 [0,4]. Values chosen so
   * each dtype represents them exactly. */
  float f32[6] = {1.5f, -2.25f, 0.0f, 1e-3f, 65504.0f, -0.0f};
  uint16_t f16[3] = {0x3C00 /* 1 */, 0xC000 /* -2 */, 0x0001 /* 2^-24 */};
  uint16_t bf16[2] = {0x3FC0 /* 1.5 */, 0xC2F7 /* -123.5 */};
  double f64[2] = {0.25, -1e10};
  int64_t i64[2] = {-1, 77};
  unsigned char data[24 + 6 + 4 + 16 + 16];
  size_t o = 0;
  memcpy(data + o, f32, 24), o += 24;
  memcpy(data + o, f16, 6), o += 6;
  memcpy(data + o, bf16, 4), o += 4;
  memcpy(data + o, f64, 16), o += 16;
  memcpy(data + o, i64, 16), o += 16;
  const char *header =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"w.f64\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[34,50]},"
      "\"a.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
      "\"m.bf16\":{\"dtype\":\"BF16\",\"shape\":[1,2,1],\"data_offsets\":[30,34]},"
      "\"b.f16\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[24,30]},"
      "\"z.i64\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[50,66]},"
      "\"e.empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[66,66]}}";
  size_t len;
  unsigned char *b = build(header, data, sizeof data, &len);
  char path[128];
  snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
  write_bytes(path, b, len);
  free(b);
  sd_safetensors *st = NULL;
  sd_error e = {0};
  CHECK_INT(sd__st_open(path, &st, &e), SD_OK);
  if (!st) {
    fprintf(stderr, "%s\n", e.msg);
    return;
  }
  CHECK_INT(st->count, 6);
  for (size_t i = 1; i < st->count; i++) CHECK(strcmp(st->tensors[i - 1].name, st->tensors[i].name) < 0);
  float out[8];
  const sd_st_tensor *t = sd__st_find(st, "a.f32");
  CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->numel == 6);
  CHECK_INT(sd__st_to_f32(t, out, &e), SD_OK);
  CHECK(memcmp(out, f32, 24) == 0);
  t = sd__st_find(st, "b.f16");
  CHECK_INT(sd__st_to_f32(t, out, &e), SD_OK);
  CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0x1p-24f);
  t = sd__st_find(st, "m.bf16");
  CHECK(t && t->ndim == 3 && t->shape[2] == 1);
  CHECK_INT(sd__st_to_f32(t, out, &e), SD_OK);
  CHECK(out[0] == 1.5f && out[1] == -123.5f);
  t = sd__st_find(st, "w.f64");
  CHECK_INT(sd__st_to_f32(t, out, &e), SD_OK);
  CHECK(out[0] == 0.25f && out[1] == -1e10f);
  t = sd__st_find(st, "z.i64");
  CHECK(t && t->dtype == SD_DTYPE_I64 && memcmp(t->data, i64, 16) == 0);
  CHECK_INT(sd__st_to_f32(t, out, &e), SD_ERR_UNSUPPORTED);
  t = sd__st_find(st, "e.empty");
  CHECK(t && t->numel == 0 && t->nbytes == 0);
  CHECK(sd__st_find(st, "__metadata__") == NULL);
  CHECK(sd__st_find(st, "a.f3") == NULL);
  CHECK(sd__st_find(st, "zz") == NULL);
  sd__st_close(st);
  sd__st_close(NULL);
}

static void expect(const char *what, const char *header, size_t dlen, sd_status want,
                   const char *needle) {
  static unsigned char zeros[4096];
  char msg[SD_ERRMSG_MAX];
  sd_status st = open_both(header, zeros, dlen, msg);
  if (st != want) fprintf(stderr, "  case '%s': got %d (%s)\n", what, st, msg);
  CHECK_INT(st, want);
  if (needle && !strstr(msg, needle)) {
    fprintf(stderr, "  case '%s': message lacks \"%s\": %s\n", what, needle, msg);
    CHECK(0);
  }
}

static void test_corruptions(void) {
  const char *T = "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
  char h[512];
  snprintf(h, sizeof h, "{%s}", T);
  expect("valid", h, 8, SD_OK, NULL);
  expect("valid with trailing header spaces", "{}    ", 0, SD_OK, NULL);
  expect("bad JSON", "{\"t\":", 0, SD_ERR_FORMAT, "header");
  expect("header not object", "[1,2]", 0, SD_ERR_FORMAT, NULL);
  expect("unknown dtype", "{\"t\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
         SD_ERR_UNSUPPORTED, "F8");
  expect("dtype not string", "{\"t\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         SD_ERR_FORMAT, NULL);
  expect("missing shape", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8,
         SD_ERR_FORMAT, NULL);
  expect("negative dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
         SD_ERR_FORMAT, NULL);
  expect("fractional dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}",
         8, SD_ERR_FORMAT, NULL);
  expect("9 dims",
         "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
         SD_ERR_UNSUPPORTED, NULL);
  expect("size mismatch", "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
         SD_ERR_FORMAT, "need");
  expect("F16 size mismatch", "{\"t\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         8, SD_ERR_FORMAT, NULL);
  expect("overflowing shape",
         "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}",
         8, SD_ERR_FORMAT, NULL);
  expect("numel*size overflow",
         "{\"t\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8,
         SD_ERR_FORMAT, NULL);
  expect("offsets past data", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         8, SD_ERR_FORMAT, "outside");
  expect("begin > end", "{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
         SD_ERR_FORMAT, NULL);
  expect("one offset", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
         SD_ERR_FORMAT, NULL);
  expect("huge offset",
         "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1e300,1e300]}}", 8,
         SD_ERR_FORMAT, NULL);
  expect("overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, SD_ERR_FORMAT, "overlap");
  expect("same range",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         8, SD_ERR_FORMAT, "overlap");
  expect("adjacent ranges are fine",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         12, SD_OK, NULL);
  expect("duplicate names",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, SD_ERR_FORMAT, "twice");
  expect("metadata not strings", "{\"__metadata__\":{\"a\":1}}", 0, SD_ERR_FORMAT, NULL);
  expect("entry not object", "{\"t\":[1]}", 0, SD_ERR_FORMAT, NULL);

  /* Raw length-prefix problems, written by hand. */
  char path[128];
  snprintf(path, sizeof path, "%s/raw.safetensors", tmpdir);
  struct {
    const char *what;
    unsigned char bytes[16];
    size_t len;
    sd_status want;
  } raw[] = {
      {"empty file", {0}, 0, SD_ERR_FORMAT},
      {"truncated length", {2, 0, 0}, 3, SD_ERR_FORMAT},
      {"header beyond file", {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'}, 10, SD_ERR_FORMAT},
      {"header length 2^63", {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'}, 10, SD_ERR_FORMAT},
      {"header > 100 MB", {0, 0, 0, 0x10, 0, 0, 0, 0, '{', '}'}, 10, SD_ERR_FORMAT},
      {"pickle protocol 2", {0x80, 0x02, 0x7d, 0x71}, 4, SD_ERR_UNSUPPORTED},
      {"zip (torch.save)", {'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0}, 10, SD_ERR_UNSUPPORTED},
  };
  for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
    write_bytes(path, raw[i].bytes, raw[i].len);
    sd_safetensors *st = NULL;
    sd_error e = {0};
    sd_status s = sd__st_open(path, &st, &e);
    if (s != raw[i].want) fprintf(stderr, "  raw case '%s': got %d (%s)\n", raw[i].what, s, e.msg);
    CHECK_INT(s, raw[i].want);
    CHECK(st == NULL);
    if (raw[i].want == SD_ERR_UNSUPPORTED) CHECK(strstr(e.msg, "safetensors") != NULL);
  }
  sd_safetensors *st = NULL;
  sd_error e = {0};
  CHECK_INT(sd__st_open("/nonexistent/x.safetensors", &st, &e), SD_ERR_IO);
  CHECK(strstr(e.msg, "/nonexistent/x.safetensors") != NULL);
}

/* Independent reference for half -> float: sign * 2^(e-15) * (1 + m/1024), in double. */
static double half_ref(uint16_t h) {
  int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v;
  if (e == 31) v = m ? NAN : INFINITY;
  else if (e == 0) v = ldexp(m, -24);
  else v = ldexp(1024 + m, e - 25);
  return s ? -v : v;
}

static void test_half(void) {
  int bad_dec = 0, bad_rt = 0, bad_bulk = 0;
  uint16_t all[65536];
  for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
  float bulk[65536];
  sd_st_tensor t = {.name = "all", .dtype = SD_DTYPE_F16, .ndim = 1, .shape = {65536},
                    .numel = 65536, .data = all, .nbytes = sizeof all};
  sd_error e = {0};
  CHECK_INT(sd__st_to_f32(&t, bulk, &e), SD_OK); /* the F16C path */
  for (uint32_t i = 0; i < 65536; i++) {
    float f = sd__f16_to_f32((uint16_t)i);
    double r = half_ref((uint16_t)i);
    if (isnan(r) ? !isnan(f) : ((double)f != r || !signbit(f) != !signbit(r))) bad_dec++;
    uint32_t fb, bb;
    memcpy(&fb, &f, 4);
    memcpy(&bb, &bulk[i], 4);
    if (fb != bb) bad_bulk++;
    if (!isnan(r) && sd__f32_to_f16(f) != i) bad_rt++;
  }
  CHECK_INT(bad_dec, 0);
  CHECK_INT(bad_bulk, 0);
  CHECK_INT(bad_rt, 0);
  /* Narrowing rounds to nearest even, overflows to inf, underflows to zero / subnormals. */
  CHECK_INT(sd__f32_to_f16(1.0f + 0x1p-11f), 0x3C00);           /* tie -> even (down) */
  CHECK_INT(sd__f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);       /* tie -> even (up) */
  CHECK_INT(sd__f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01); /* above tie */
  CHECK_INT(sd__f32_to_f16(65520.0f), 0x7C00);                  /* rounds up to inf */
  CHECK_INT(sd__f32_to_f16(65519.0f), 0x7BFF);
  CHECK_INT(sd__f32_to_f16(0x1p-25f), 0x0000);                  /* tie with 0 -> 0 */
  CHECK_INT(sd__f32_to_f16(0x1p-25f * 1.5f), 0x0001);
  CHECK_INT(sd__f32_to_f16(0x1p-14f - 0x1p-25f), 0x0400);       /* rounds into normals */
  CHECK_INT(sd__f32_to_f16(-INFINITY), 0xFC00);
  CHECK_INT(sd__f32_to_f16(1e-30f), 0);
  CHECK((sd__f32_to_f16(NAN) & 0x7FFF) > 0x7C00);
  CHECK(sd__bf16_to_f32(0x3F80) == 1.0f);
  CHECK(isnan(sd__bf16_to_f32(0x7FC0)));
}

/* Weight sources: shapes, wildcards, trailing 1s, conversion and messages. */
static int rename_fn(void *user, const char *name, char *out, size_t cap) {
  if (strcmp(name, "linear.weight") == 0) {
    snprintf(out, cap, "%s", (const char *)user);
    return 0;
  }
  return 1;
}

static void test_wsrc(void) {
  /* conv [2,3,1,1] F32 at offset 4 (unaligned-to-64 but aligned-to-4 in the data section) and
   * at offset 2 via F16. The header is padded so the data section starts 4-aligned. */
  float w[6] = {1, 2, 3, 4, 5, 6};
  uint16_t h[6];
  for (int i = 0; i < 6; i++) h[i] = sd__f32_to_f16(w[i]);
  unsigned char data[4 + 24 + 12 + 24];
  memset(data, 0, sizeof data);
  memcpy(data + 4, w, 24);
  memcpy(data + 28, h, 12);
  memcpy(data + 40, w, 24);
  char header[512];
  snprintf(header, sizeof header,
           "{\"p.conv.weight\":{\"dtype\":\"F32\",\"shape\":[2,3,1,1],\"data_offsets\":[4,28]},"
           "\"p.half.weight\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[28,40]},"
           "\"p.odd\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[40,64]}}");
  size_t hl = strlen(header);
  while ((8 + hl) % 4 != 1) header[hl++] = ' '; /* data starts at an odd address: unaligned */
  header[hl] = '\0';
  size_t len;
  unsigned char *b = build(header, data, sizeof data, &len);
  sd_safetensors *st = NULL;
  sd_error e = {0};
  CHECK_INT(sd__st_open_memory(b, len, "w.safetensors", &st, &e), SD_OK);
  if (!st) return;
  sd__wsrc *src = NULL;
  CHECK_INT(sd__wsrc_create(st, 1, "p.", NULL, NULL, &src, &e), SD_OK);
  sd__wsrc_set_label(src, "unet");
  int64_t s4[4] = {2, 3, 1, 1}, s2[2] = {2, -1}, bad[2] = {3, 2};
  const float *p = sd__wsrc_get(src, "conv.weight", 4, s4, &e);
  CHECK(p && p[5] == 6.0f);
  p = sd__wsrc_get(src, "conv.weight", 2, s2, &e); /* 1x1 conv asked as linear */
  CHECK(p && p[0] == 1.0f && p[5] == 6.0f);
  CHECK_INT(s2[1], 3); /* wildcard filled */
  int64_t s4b[4] = {2, 3, 1, 1};
  p = sd__wsrc_get(src, "half.weight", 4, s4b, &e); /* linear asked as 1x1 conv */
  CHECK(p && p[1] == 2.0f && p[5] == 6.0f);
  CHECK_INT(sd__wsrc_converted_bytes(src), 24 + 24); /* unaligned F32 copied, F16 converted */
  const float *again = sd__wsrc_get(src, "half.weight", 4, s4b, &e);
  CHECK(again == p); /* converted once */
  CHECK_INT(sd__wsrc_converted_bytes(src), 48);
  int64_t s1[1] = {6};
  p = sd__wsrc_getf(src, &e, 1, s1, "%s", "odd");
  CHECK(p && ((uintptr_t)p & 3) == 0 && p[3] == 4.0f);
  CHECK_INT(e.status, SD_OK);
  CHECK(sd__wsrc_has(src, "odd") && !sd__wsrc_has(src, "p.odd"));
  int64_t shp[SD_ST_MAX_DIMS];
  CHECK_INT(sd__wsrc_shape(src, "conv.weight", shp), 4);
  CHECK_INT(sd__wsrc_shape(src, "nope", shp), -1);

  CHECK(sd__wsrc_get(src, "conv.weight", 2, bad, &e) == NULL);
  CHECK_INT(e.status, SD_ERR_SHAPE);
  CHECK(strstr(e.msg, "unet: tensor conv.weight (file name p.conv.weight in w.safetensors) has "
                      "shape [2, 3, 1, 1] but the config needs [3, 2]") != NULL);
  e = (sd_error){0};
  int64_t s3[3] = {2, 3, 2};
  CHECK(sd__wsrc_get(src, "conv.weight", 3, s3, &e) == NULL);
  CHECK_INT(e.status, SD_ERR_SHAPE);
  e = (sd_error){0};
  CHECK(sd__wsrc_get(src, "missing.bias", 1, s1, &e) == NULL);
  CHECK_INT(e.status, SD_ERR_MISSING);
  CHECK(strstr(e.msg, "p.missing.bias") && strstr(e.msg, "w.safetensors"));
  sd__wsrc_destroy(src); /* owns st */

  /* A translator maps names; untranslatable names are missing. */
  CHECK_INT(sd__st_open_memory(b, len, "w.safetensors", &st, &e), SD_OK);
  CHECK_INT(sd__wsrc_create(st, 0, "p.", rename_fn, "odd", &src, &e), SD_OK);
  int64_t s6[1] = {-1};
  p = sd__wsrc_get(src, "linear.weight", 1, s6, &e);
  CHECK(p && s6[0] == 6 && p[5] == 6.0f);
  CHECK(!sd__wsrc_has(src, "odd"));
  sd__wsrc_destroy(src);
  sd__st_close(st); /* not owned by the source */
  sd__wsrc_destroy(NULL);
  free(b);
}

/* A big F16 tensor converted by several threads equals the scalar conversion. */
static void test_parallel_convert(void) {
  size_t n = (1u << 20) + 37;
  uint16_t *h = malloc(n * 2);
  for (size_t i = 0; i < n; i++) h[i] = (uint16_t)((i * 2654435761u) >> 7);
  char header[160];
  snprintf(header, sizeof header, "{\"big\":{\"dtype\":\"F16\",\"shape\":[%zu],\"data_offsets\":[0,%zu]}}", n, n * 2);
  size_t len;
  unsigned char *b = build(header, h, n * 2, &len);
  sd_safetensors *st = NULL;
  sd_error e = {0};
  sd__wsrc *src = NULL;
  CHECK_INT(sd__st_open_memory(b, len, "big", &st, &e), SD_OK);
  CHECK_INT(sd__wsrc_create(st, 1, "", NULL, NULL, &src, &e), SD_OK);
  sd__wsrc_set_threads(src, 2);
  int64_t s[1] = {(int64_t)n};
  const float *p = sd__wsrc_get(src, "big", 1, s, &e);
  CHECK(p != NULL);
  size_t bad = 0;
  for (size_t i = 0; p && i < n; i++) {
    float r = sd__f16_to_f32(h[i]);
    if (memcmp(&r, &p[i], 4) != 0) bad++;
  }
  CHECK_INT(bad, 0);
  sd__wsrc_destroy(src);
  free(b);
  free(h);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/sd_test_st_XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  test_round_trip();
  test_corruptions();
  test_half();
  test_wsrc();
  test_parallel_convert();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return check_exit();
}
