/* test_png.c: api/png.c: encode/decode round trip, text chunks, hostile and broken inputs,
 * and the colour-type conversions, which must equal Pillow 9.4's Image.convert("RGB"):
 *   gray 1/2/4/8-bit -> replicated, low depths scaled to 0..255 (Pillow's L;1/L;2/L;4);
 *   gray 16-bit -> mode "I", and I -> RGB clips to 0..255 (values >= 256 become 255);
 *   16-bit RGB, RGBA, LA -> the high byte of each sample (the ;16B unpackers);
 *   alpha -> dropped, never composited; palette -> looked up, tRNS ignored, an index past
 *   the palette's end reads as gray (i, i, i) (Pillow's palette starts as a gray ramp).
 * Expected values are computed from those rules, not copied from any file. Exact match.
 */
#define _GNU_SOURCE /* memmem */
#include <png.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "png_io.h"

/* ---- a small libpng writer for arbitrary colour types ---------------------------------- */

typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static void buf_put(buf *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void w_write(png_structp png, png_bytep d, size_t n) { buf_put(png_get_io_ptr(png), d, n); }
static void w_flush(png_structp png) { (void)png; }

/* Encode raw rows (already in the PNG's sample format, 16-bit big-endian) with libpng. */
static buf make_png(int w, int h, int depth, int ctype, int interlace, const uint8_t *raw,
                    const png_color *plte, int nplte, const uint8_t *trns, int ntrns) {
  buf b = {0};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) abort();
  png_set_write_fn(png, &b, w_write, w_flush);
#ifdef PNG_CHECK_FOR_INVALID_INDEX_SUPPORTED
  png_set_check_for_invalid_index(png, 0); /* we write out-of-palette indices on purpose */
#endif
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype, interlace,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (plte) png_set_PLTE(png, info, plte, nplte);
  if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
  png_write_info(png, info);
  int channels = ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_PALETTE ? 1
                 : ctype == PNG_COLOR_TYPE_GRAY_ALPHA                          ? 2
                 : ctype == PNG_COLOR_TYPE_RGB                                 ? 3
                                                                               : 4;
  size_t rowbytes = ((size_t)w * (size_t)channels * (size_t)depth + 7) / 8;
  png_bytep *rows = malloc(sizeof *rows * (size_t)h);
  for (int y = 0; y < h; y++) rows[y] = (png_bytep)(raw + (size_t)y * rowbytes);
  png_write_image(png, rows);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(rows);
  return b;
}

/* Decode and compare against expected RGB. */
static void expect_rgb(const char *what, buf b, int w, int h, const uint8_t *want) {
  api_png_image img;
  char err[SD_ERRMSG_MAX] = "";
  sd_status st = api_png_decode(b.p, b.n, NULL, &img, err);
  if (st != SD_OK) fprintf(stderr, "%s: %s\n", what, err);
  CHECK_INT(st, SD_OK);
  if (st == SD_OK) {
    CHECK_INT(img.width, w);
    CHECK_INT(img.height, h);
    int bad = -1;
    for (int i = 0; i < w * h * 3; i++)
      if (img.rgb[i] != want[i] && bad < 0) bad = i;
    if (bad >= 0)
      fprintf(stderr, "%s: first mismatch at byte %d: got %d want %d\n", what, bad,
              img.rgb[bad], want[bad]);
    CHECK_INT(bad, -1);
  }
  api_png_image_free(&img);
  free(b.p);
}

/* ---- tests ------------------------------------------------------------------------------- */

enum { W = 7, H = 5 }; /* non-square, odd: a flip or transpose changes the bytes */

static void fill_asymmetric(uint8_t *rgb) {
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      uint8_t *p = rgb + (y * W + x) * 3;
      p[0] = (uint8_t)(x * 36 + 1);
      p[1] = (uint8_t)(y * 60 + 2);
      p[2] = (uint8_t)((x * 7 + y * 13) * 3);
    }
}

static void test_round_trip(void) {
  uint8_t rgb[W * H * 3];
  fill_asymmetric(rgb);
  api_png_text text[] = {
      {"parameters", "a red circle\nNegative prompt: blurry\nSteps: 4, Sampler: DDIM"},
      {"Comment", "caf\xc3\xa9"},                        /* Latin-1: tEXt */
      {"Title", "\xe7\x8c\xab \xf0\x9f\x90\x88 cat"},    /* beyond Latin-1: iTXt */
      {"Empty", ""},
  };
  uint8_t *png = NULL;
  size_t len = 0;
  char err[SD_ERRMSG_MAX] = "";
  CHECK_INT(api_png_encode_mem(rgb, W, H, text, 4, &png, &len, err), SD_OK);
  CHECK(len > 8);
  /* encoding is deterministic */
  uint8_t *png2 = NULL;
  size_t len2 = 0;
  CHECK_INT(api_png_encode_mem(rgb, W, H, text, 4, &png2, &len2, err), SD_OK);
  CHECK(len == len2 && memcmp(png, png2, len) == 0);
  free(png2);

  api_png_image img;
  CHECK_INT(api_png_decode(png, len, NULL, &img, err), SD_OK);
  CHECK_INT(img.width, W);
  CHECK_INT(img.height, H);
  CHECK(img.rgb && memcmp(img.rgb, rgb, sizeof rgb) == 0);
  CHECK_INT(img.ntext, 4);
  for (int i = 0; i < 4; i++) CHECK_STR(api_png_image_text(&img, text[i].key), text[i].value);
  CHECK(api_png_image_text(&img, "missing") == NULL);
  api_png_image_free(&img);
  api_png_image_free(&img); /* idempotent on a zeroed image */
  /* the UTF-8 value went into an iTXt chunk, the Latin-1 one into tEXt */
  CHECK(memmem(png, len, "iTXtTitle", 9) != NULL);
  CHECK(memmem(png, len, "tEXtComment\0caf\xe9", 16) != NULL);

  /* through a FILE */
  FILE *f = tmpfile();
  CHECK(f != NULL);
  if (f) {
    CHECK_INT(api_png_encode_file(f, rgb, W, H, text, 1, err), SD_OK);
    fflush(f);
    rewind(f);
    uint8_t back[4096];
    size_t n = fread(back, 1, sizeof back, f);
    fclose(f);
    CHECK_INT(api_png_decode(back, n, NULL, &img, err), SD_OK);
    CHECK(img.rgb && memcmp(img.rgb, rgb, sizeof rgb) == 0);
    CHECK_STR(api_png_image_text(&img, "parameters"), text[0].value);
    api_png_image_free(&img);
  }
  free(png);

  /* bad encoder arguments */
  CHECK_INT(api_png_encode_mem(rgb, 0, H, NULL, 0, &png, &len, err), SD_ERR_INVALID);
  api_png_text badkey = {"", "x"};
  CHECK_INT(api_png_encode_mem(rgb, W, H, &badkey, 1, &png, &len, err), SD_ERR_INVALID);
  CHECK(png == NULL);
}

static void test_broken_inputs(void) {
  uint8_t rgb[W * H * 3];
  fill_asymmetric(rgb);
  uint8_t *png = NULL;
  size_t len = 0;
  char err[SD_ERRMSG_MAX];
  api_png_text t = {"parameters", "x"};
  CHECK_INT(api_png_encode_mem(rgb, W, H, &t, 1, &png, &len, err), SD_OK);
  api_png_image img;
  /* every truncation is refused, with a message */
  int accepted = 0;
  for (size_t n = 0; n < len; n++) {
    err[0] = '\0';
    sd_status st = api_png_decode(png, n, NULL, &img, err);
    if (st == SD_OK) accepted++;
    if (st != SD_OK && err[0] == '\0') accepted += 1000;
    CHECK(img.rgb == NULL);
  }
  CHECK_INT(accepted, 0);
  CHECK_INT(api_png_decode(png, 0, NULL, &img, err), SD_ERR_FORMAT);
  CHECK_INT(api_png_decode((const uint8_t *)"GIF89a..........", 16, NULL, &img, err),
            SD_ERR_FORMAT);
  /* a flipped bit anywhere after the signature is caught (CRC, zlib or structure) */
  int flips_accepted = 0;
  for (size_t i = 8; i < len; i++) {
    png[i] ^= 0x10;
    sd_status st = api_png_decode(png, len, NULL, &img, err);
    /* a flip inside an ancillary chunk may only lose that chunk; the pixels must be right */
    if (st == SD_OK && memcmp(img.rgb, rgb, sizeof rgb) != 0) flips_accepted++;
    api_png_image_free(&img);
    png[i] ^= 0x10;
  }
  CHECK_INT(flips_accepted, 0);
  free(png);
}

/* CRC-32 as PNG uses it (ISO 3309), bit by bit: fixtures only. */
static uint32_t png_crc(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* The 678-byte attack (FACTS.md): a valid 1x1 header, then a tEXt chunk that declares
 * 1.16 GB but is followed by only a few hundred bytes. */
static size_t make_huge_text_png(uint8_t *p) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  size_t n = 0;
  memcpy(p, sig, 8), n = 8;
  put_be32(p + n, 13), memcpy(p + n + 4, "IHDR", 4);
  put_be32(p + n + 8, 1), put_be32(p + n + 12, 1);
  p[n + 16] = 8, p[n + 17] = 2, p[n + 18] = 0, p[n + 19] = 0, p[n + 20] = 0;
  put_be32(p + n + 21, png_crc(p + n + 4, 17));
  n += 25;
  put_be32(p + n, 0x45000000u), memcpy(p + n + 4, "tEXt", 4);
  n += 8;
  memcpy(p + n, "parameters", 11);
  n += 11;
  while (n < 678) p[n++] = 'A';
  return n;
}

static void test_huge_text(void) {
  uint8_t file[678];
  size_t n = make_huge_text_png(file);
  CHECK_INT(n, 678);
  api_png_image img;
  char err[SD_ERRMSG_MAX] = "";
  /* default limits: refused (the chunk limit or the allocation cap stops it) */
  sd_status st = api_png_decode(file, n, NULL, &img, err);
  CHECK(st == SD_ERR_LIMIT || st == SD_ERR_FORMAT);
  CHECK(err[0] != '\0');
  CHECK(img.rgb == NULL);
  /* with the chunk-size limit lifted, only the allocator's cap stands between the file and
   * a 1.16 GB allocation: it must refuse, and say so (status LIMIT, not a parse error) */
  api_png_limits lim;
  api_png_limits_init(&lim);
  lim.max_text = SIZE_MAX;
  err[0] = '\0';
  st = api_png_decode(file, n, &lim, &img, err);
  CHECK_INT(st, SD_ERR_LIMIT);
  CHECK(strstr(err, "cap") != NULL);
  fprintf(stderr, "huge tEXt: %s\n", err);
}

/* Every libpng allocation fails in turn as the cap grows from 0: each decode either
 * succeeds with the right pixels or is refused with LIMIT and leaves nothing behind (the
 * ASan build of this test checks for leaks on those paths). */
static void test_alloc_cap_sweep(void) {
  uint8_t rgb[W * H * 3];
  fill_asymmetric(rgb);
  api_png_text t[] = {{"parameters", "x, y"}, {"Title", "\xe7\x8c\xab"}};
  uint8_t *png = NULL;
  size_t len = 0;
  char err[SD_ERRMSG_MAX];
  CHECK_INT(api_png_encode_mem(rgb, W, H, t, 2, &png, &len, err), SD_OK);
  int ok = 0, refused = 0, other = 0;
  for (size_t cap = 0; cap <= 70000; cap = cap < 64 ? cap + 8 : cap * 5 / 4) {
    api_png_limits lim;
    api_png_limits_init(&lim);
    lim.max_alloc = cap;
    api_png_image img;
    sd_status st = api_png_decode(png, len, &lim, &img, err);
    if (st == SD_OK) {
      ok++;
      CHECK(memcmp(img.rgb, rgb, sizeof rgb) == 0);
      CHECK_INT(img.ntext, 2);
    } else if (st == SD_ERR_LIMIT) {
      refused++;
      CHECK(img.rgb == NULL && img.text == NULL);
    } else {
      other++;
      fprintf(stderr, "cap %zu: status %d: %s\n", cap, st, err);
    }
    api_png_image_free(&img);
  }
  CHECK(ok > 0);
  CHECK(refused > 0);
  CHECK_INT(other, 0);
  free(png);
}

static void test_size_limits(void) {
  api_png_limits lim;
  api_png_limits_init(&lim);
  CHECK_INT(lim.max_width, 4096);
  lim.max_width = 6;
  lim.max_height = 6;
  uint8_t rgb[W * H * 3];
  fill_asymmetric(rgb);
  uint8_t *png = NULL;
  size_t len = 0;
  char err[SD_ERRMSG_MAX];
  CHECK_INT(api_png_encode_mem(rgb, W, H, NULL, 0, &png, &len, err), SD_OK);
  api_png_image img;
  CHECK_INT(api_png_decode(png, len, &lim, &img, err), SD_ERR_LIMIT); /* 7 wide > 6 */
  lim.max_width = 7;
  CHECK_INT(api_png_decode(png, len, &lim, &img, err), SD_OK);
  api_png_image_free(&img);
  free(png);
  /* 100000 x 1 claims far more than the default 4096 */
  uint8_t *big = calloc(100000, 3);
  CHECK_INT(api_png_encode_mem(big, 100000, 1, NULL, 0, &png, &len, err), SD_OK);
  CHECK_INT(api_png_decode(png, len, NULL, &img, err), SD_ERR_LIMIT);
  free(big);
  free(png);
}

static void test_colour_types(void) {
  enum { w = 5, h = 3 };
  uint8_t want[w * h * 3], raw[w * h * 8];
  /* gray 8 */
  for (int i = 0; i < w * h; i++) raw[i] = (uint8_t)(i * 17), want[3 * i] = want[3 * i + 1] =
                                                                  want[3 * i + 2] = raw[i];
  expect_rgb("gray8", make_png(w, h, 8, PNG_COLOR_TYPE_GRAY, 0, raw, NULL, 0, NULL, 0), w, h,
             want);
  /* gray 1, 2, 4: packed MSB first, scaled to 0..255 */
  for (int depth = 1; depth <= 4; depth *= 2) {
    int maxv = (1 << depth) - 1, per = 8 / depth;
    size_t rb = (size_t)(w * depth + 7) / 8;
    memset(raw, 0, sizeof raw);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        int v = (x + 2 * y) % (maxv + 1);
        raw[y * rb + (size_t)(x / per)] |= (uint8_t)(v << (8 - depth * (x % per + 1)));
        uint8_t *o = want + (y * w + x) * 3;
        o[0] = o[1] = o[2] = (uint8_t)(v * 255 / maxv);
      }
    expect_rgb("gray low depth",
               make_png(w, h, depth, PNG_COLOR_TYPE_GRAY, 0, raw, NULL, 0, NULL, 0), w, h, want);
  }
  /* gray 16: clipped, not scaled */
  static const uint16_t g16[] = {0, 1, 0x7f, 0x80, 0xff, 0x100, 0x1ff, 0x8000, 0xffff};
  for (int i = 0; i < w * h; i++) {
    uint16_t v = g16[i % 9];
    raw[2 * i] = (uint8_t)(v >> 8), raw[2 * i + 1] = (uint8_t)v;
    want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = (uint8_t)(v > 255 ? 255 : v);
  }
  expect_rgb("gray16", make_png(w, h, 16, PNG_COLOR_TYPE_GRAY, 0, raw, NULL, 0, NULL, 0), w, h,
             want);
  /* gray + alpha 8: alpha dropped */
  for (int i = 0; i < w * h; i++) {
    raw[2 * i] = (uint8_t)(200 - i * 9), raw[2 * i + 1] = (uint8_t)(i * 13);
    want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = raw[2 * i];
  }
  expect_rgb("gray+alpha8",
             make_png(w, h, 8, PNG_COLOR_TYPE_GRAY_ALPHA, 0, raw, NULL, 0, NULL, 0), w, h, want);
  /* gray + alpha 16: high byte of gray */
  for (int i = 0; i < w * h; i++) {
    raw[4 * i] = (uint8_t)(i * 11), raw[4 * i + 1] = 0xfe;
    raw[4 * i + 2] = 0, raw[4 * i + 3] = (uint8_t)i;
    want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = (uint8_t)(i * 11);
  }
  expect_rgb("gray+alpha16",
             make_png(w, h, 16, PNG_COLOR_TYPE_GRAY_ALPHA, 0, raw, NULL, 0, NULL, 0), w, h,
             want);
  /* RGB 16: high byte (truncation; 0x12ff stays 0x12) */
  for (int i = 0; i < w * h * 3; i++) {
    raw[2 * i] = (uint8_t)(i * 5 + 3), raw[2 * i + 1] = 0xff;
    want[i] = raw[2 * i];
  }
  expect_rgb("rgb16", make_png(w, h, 16, PNG_COLOR_TYPE_RGB, 0, raw, NULL, 0, NULL, 0), w, h,
             want);
  /* RGBA 8: alpha dropped without compositing (alpha 0 keeps the colour) */
  for (int i = 0; i < w * h; i++) {
    for (int c = 0; c < 3; c++) raw[4 * i + c] = want[3 * i + c] = (uint8_t)(i * 7 + c * 50);
    raw[4 * i + 3] = (uint8_t)(i % 2 ? 0 : 128);
  }
  expect_rgb("rgba8", make_png(w, h, 8, PNG_COLOR_TYPE_RGBA, 0, raw, NULL, 0, NULL, 0), w, h,
             want);
  /* RGBA 16 */
  for (int i = 0; i < w * h; i++) {
    for (int c = 0; c < 4; c++)
      raw[8 * i + 2 * c] = (uint8_t)(i * 3 + c * 60), raw[8 * i + 2 * c + 1] = 0x99;
    for (int c = 0; c < 3; c++) want[3 * i + c] = (uint8_t)(i * 3 + c * 60);
  }
  expect_rgb("rgba16", make_png(w, h, 16, PNG_COLOR_TYPE_RGBA, 0, raw, NULL, 0, NULL, 0), w,
             h, want);
  /* palette 8-bit, 4 entries + tRNS (ignored), indices 0..3 and out-of-range 7 and 200 */
  png_color pal[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}};
  uint8_t trns[4] = {0, 0, 128, 255};
  static const uint8_t idx[] = {0, 1, 2, 3, 7, 200};
  for (int i = 0; i < w * h; i++) {
    uint8_t k = idx[i % 6];
    raw[i] = k;
    uint8_t *o = want + 3 * i;
    if (k < 4) o[0] = pal[k].red, o[1] = pal[k].green, o[2] = pal[k].blue;
    else o[0] = o[1] = o[2] = k;
  }
  expect_rgb("palette8", make_png(w, h, 8, PNG_COLOR_TYPE_PALETTE, 0, raw, pal, 4, trns, 4), w,
             h, want);
  /* palette 2-bit */
  memset(raw, 0, sizeof raw);
  size_t rb = (w * 2 + 7) / 8;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int k = (x + y) % 4;
      raw[y * rb + (size_t)(x / 4)] |= (uint8_t)(k << (6 - 2 * (x % 4)));
      uint8_t *o = want + (y * w + x) * 3;
      o[0] = pal[k].red, o[1] = pal[k].green, o[2] = pal[k].blue;
    }
  expect_rgb("palette2", make_png(w, h, 2, PNG_COLOR_TYPE_PALETTE, 0, raw, pal, 4, NULL, 0), w,
             h, want);
  /* RGB 8, Adam7-interlaced */
  for (int i = 0; i < w * h * 3; i++) raw[i] = want[i] = (uint8_t)(i * 29 + 1);
  expect_rgb("rgb8 interlaced",
             make_png(w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7, raw, NULL, 0, NULL, 0),
             w, h, want);
}

int main(void) {
  test_round_trip();
  test_broken_inputs();
  test_huge_text();
  test_size_limits();
  test_alloc_cap_sweep();
  test_colour_types();
  return check_exit();
}
