/* png.c: libpng encoder and bounded decoder (see png_io.h for the contract).
 *
 * Encoding writes 8-bit RGB plus text chunks through a write callback. Decoding reads from
 * memory with an allocator that refuses any single request above a cap (a 678-byte file can
 * otherwise make libpng allocate a gigabyte, FACTS.md), and converts every PNG colour type
 * to RGB exactly as Pillow 9.4's convert("RGB") does. Both use libpng's setjmp error path;
 * state that must survive a longjmp lives in a context struct, never in plain locals.
 */
#include "png_io.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

static void set_err(char *err, const char *fmt, const char *a) {
  if (err) snprintf(err, SD_ERRMSG_MAX, fmt, a);
}

/* ---- text conversion -------------------------------------------------------------------- */

/* UTF-8 -> Latin-1 (malloc'ed, NUL-terminated), or NULL when s has a code point above 255 or
 * is not valid UTF-8. *nomem is set when NULL is due to an allocation failure. */
static char *utf8_to_latin1(const char *s, int *nomem) {
  size_t n = strlen(s);
  char *o = malloc(n + 1);
  *nomem = (o == NULL);
  if (!o) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
      o[k++] = (char)c;
    } else if ((c == 0xC2 || c == 0xC3) && i + 1 < n &&
               ((unsigned char)s[i + 1] & 0xC0) == 0x80) {
      o[k++] = (char)(((c & 0x1F) << 6) | ((unsigned char)s[i + 1] & 0x3F));
      i++;
    } else {
      free(o);
      return NULL;
    }
  }
  o[k] = '\0';
  return o;
}

/* Latin-1 bytes -> malloc'ed UTF-8, or NULL on allocation failure. */
static char *latin1_to_utf8(const char *s, size_t n) {
  char *o = malloc(2 * n + 1);
  if (!o) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
      o[k++] = (char)c;
    } else {
      o[k++] = (char)(0xC0 | (c >> 6));
      o[k++] = (char)(0x80 | (c & 0x3F));
    }
  }
  o[k] = '\0';
  return o;
}

/* A PNG keyword: 1..79 printable Latin-1 characters (PNG spec 11.3.4.2). */
static int key_ok(const char *k) {
  size_t n = strlen(k);
  if (n < 1 || n > 79) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)k[i];
    if (!((c >= 32 && c <= 126) || c >= 161)) return 0;
  }
  return 1;
}

/* ---- encoder ---------------------------------------------------------------------------- */

typedef struct enc_ctx {
  api_png_write_fn write;
  void *user;
  int io_failed;
  char msg[SD_ERRMSG_MAX];
} enc_ctx;

static void enc_error(png_structp png, png_const_charp msg) {
  enc_ctx *c = png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void enc_warn(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void enc_write(png_structp png, png_bytep data, size_t len) {
  enc_ctx *c = png_get_io_ptr(png);
  if (c->write(c->user, data, len) != 0) {
    c->io_failed = 1;
    png_error(png, "cannot write the PNG output");
  }
}

static void enc_flush(png_structp png) { (void)png; }

sd_status api_png_encode(const uint8_t *rgb, int width, int height, const api_png_text *text,
                         int ntext, api_png_write_fn write, void *user, char *err) {
  if (!rgb || width < 1 || height < 1 || width > 1000000 || height > 1000000 || ntext < 0 ||
      (ntext > 0 && !text) || !write) {
    set_err(err, "%s", "PNG encode: invalid image size or arguments");
    return SD_ERR_INVALID;
  }
  sd_status st = SD_OK;
  enc_ctx c = {.write = write, .user = user};
  png_text *pt = NULL;
  char **owned = NULL; /* converted key/value strings, 2 per chunk */
  png_structp png = NULL;
  png_infop info = NULL;
  if (ntext > 0) {
    pt = calloc((size_t)ntext, sizeof *pt);
    owned = calloc((size_t)ntext * 2, sizeof *owned);
    if (!pt || !owned) goto out_nomem;
  }
  for (int i = 0; i < ntext; i++) {
    int nomem = 0;
    if (!text[i].key || !text[i].value) goto out_badkey;
    owned[2 * i] = utf8_to_latin1(text[i].key, &nomem);
    if (nomem) goto out_nomem;
    if (!owned[2 * i] || !key_ok(owned[2 * i])) goto out_badkey;
    pt[i].key = owned[2 * i];
    owned[2 * i + 1] = utf8_to_latin1(text[i].value, &nomem);
    if (nomem) goto out_nomem;
    if (owned[2 * i + 1]) { /* Latin-1: tEXt, as Pillow's add_text writes it */
      pt[i].compression = PNG_TEXT_COMPRESSION_NONE;
      pt[i].text = owned[2 * i + 1];
    } else { /* anything else: uncompressed iTXt with UTF-8 text */
      pt[i].compression = PNG_ITXT_COMPRESSION_NONE;
      pt[i].text = (char *)text[i].value;
      pt[i].lang = "";
      pt[i].lang_key = "";
    }
    pt[i].text_length = strlen(pt[i].text);
  }
  png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &c, enc_error, enc_warn);
  if (!png) goto out_nomem;
  info = png_create_info_struct(png);
  if (!info) goto out_nomem;
  if (setjmp(png_jmpbuf(png))) {
    st = c.io_failed ? SD_ERR_IO : SD_ERR_INTERNAL;
    if (err) snprintf(err, SD_ERRMSG_MAX, "PNG encode: %.400s", c.msg);
    goto out_free;
  }
  png_set_write_fn(png, &c, enc_write, enc_flush);
  png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, 6);
  if (ntext > 0) png_set_text(png, info, pt, ntext);
  png_write_info(png, info);
  for (int y = 0; y < height; y++)
    png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)width * 3));
  png_write_end(png, NULL);
  goto out_free;

out_badkey:
  set_err(err, "%s", "PNG encode: a text key must be 1-79 printable Latin-1 characters");
  st = SD_ERR_INVALID;
  goto out_free;
out_nomem:
  set_err(err, "%s", "PNG encode: out of memory");
  st = SD_ERR_NOMEM;
out_free:
  if (png) png_destroy_write_struct(&png, info ? &info : NULL);
  if (owned)
    for (int i = 0; i < 2 * ntext; i++) free(owned[i]);
  free(owned);
  free(pt);
  return st;
}

typedef struct mem_sink {
  uint8_t *buf;
  size_t len, cap;
} mem_sink;

static int mem_write(void *user, const void *data, size_t len) {
  mem_sink *m = user;
  if (len > m->cap - m->len) {
    size_t cap = m->cap ? m->cap : 4096;
    while (cap - m->len < len) {
      if (cap > SIZE_MAX / 2) return 1;
      cap *= 2;
    }
    uint8_t *nb = realloc(m->buf, cap);
    if (!nb) return 1;
    m->buf = nb;
    m->cap = cap;
  }
  memcpy(m->buf + m->len, data, len);
  m->len += len;
  return 0;
}

sd_status api_png_encode_mem(const uint8_t *rgb, int width, int height,
                             const api_png_text *text, int ntext, uint8_t **out,
                             size_t *out_len, char *err) {
  mem_sink m = {0};
  *out = NULL;
  *out_len = 0;
  sd_status st = api_png_encode(rgb, width, height, text, ntext, mem_write, &m, err);
  if (st == SD_ERR_IO) { /* the only way mem_write fails */
    st = SD_ERR_NOMEM;
    set_err(err, "%s", "PNG encode: out of memory");
  }
  if (st != SD_OK) {
    free(m.buf);
    return st;
  }
  *out = m.buf;
  *out_len = m.len;
  return SD_OK;
}

static int file_write(void *user, const void *data, size_t len) {
  return fwrite(data, 1, len, (FILE *)user) == len ? 0 : 1;
}

sd_status api_png_encode_file(FILE *f, const uint8_t *rgb, int width, int height,
                              const api_png_text *text, int ntext, char *err) {
  sd_status st = api_png_encode(rgb, width, height, text, ntext, file_write, f, err);
  if (st == SD_ERR_IO && err) snprintf(err, SD_ERRMSG_MAX, "PNG encode: write failed: %s",
                                       strerror(errno ? errno : EIO));
  return st;
}

/* ---- decoder ---------------------------------------------------------------------------- */

void api_png_limits_init(api_png_limits *lim) {
  lim->max_width = 4096;
  lim->max_height = 4096;
  lim->max_alloc = (size_t)8 << 20;
  lim->max_text = (size_t)1 << 20;
}

typedef struct dec_ctx {
  const uint8_t *data;
  size_t len, pos;
  size_t max_alloc;
  size_t refused; /* size of the first allocation refused, 0 if none */
  char msg[SD_ERRMSG_MAX];
  /* owned results, freed on any failure */
  uint8_t *rgb;
  png_bytep *rows;
  api_png_text *text;
  int ntext;
} dec_ctx;

static png_voidp dec_malloc(png_structp png, png_alloc_size_t size) {
  dec_ctx *c = png_get_mem_ptr(png);
  if (size > c->max_alloc) {
    if (!c->refused) c->refused = size;
    return NULL;
  }
  return malloc(size);
}

static void dec_free(png_structp png, png_voidp p) { (void)png, free(p); }

static void dec_error(png_structp png, png_const_charp msg) {
  dec_ctx *c = png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void dec_warn(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void dec_read(png_structp png, png_bytep out, size_t n) {
  dec_ctx *c = png_get_io_ptr(png);
  if (n > c->len - c->pos) png_error(png, "truncated file (unexpected end of data)");
  memcpy(out, c->data + c->pos, n);
  c->pos += n;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Pillow's palette: a 256-entry gray ramp overwritten by the PLTE entries, so an index past
 * the palette's end reads as gray (i, i, i). Expands indices in place, last pixel first. */
static void expand_palette(png_structp png, png_infop info, dec_ctx *c, int w, int h) {
  uint8_t pal[256][3];
  for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
  png_colorp plte = NULL;
  int n = 0;
  if (png_get_PLTE(png, info, &plte, &n) & PNG_INFO_PLTE)
    for (int i = 0; i < n && i < 256; i++) {
      pal[i][0] = plte[i].red;
      pal[i][1] = plte[i].green;
      pal[i][2] = plte[i].blue;
    }
  for (int y = 0; y < h; y++) {
    uint8_t *row = c->rows[y];
    for (int x = w - 1; x >= 0; x--) {
      const uint8_t *p = pal[row[x]];
      row[3 * x + 2] = p[2];
      row[3 * x + 1] = p[1];
      row[3 * x] = p[0];
    }
  }
}

/* Pillow opens 16-bit gray as mode "I" and its I -> RGB conversion clips to 0..255 (it does
 * not scale), so any value above 255 is white. Big-endian samples, expanded in place. */
static void expand_gray16(dec_ctx *c, int w, int h) {
  for (int y = 0; y < h; y++) {
    uint8_t *row = c->rows[y];
    for (int x = w - 1; x >= 0; x--) {
      uint8_t v = row[2 * x] ? 255 : row[2 * x + 1];
      row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = v;
    }
  }
}

static void dec_free_results(dec_ctx *c) {
  free(c->rgb);
  free(c->rows);
  for (int i = 0; i < c->ntext; i++) {
    free((char *)c->text[i].key);
    free((char *)c->text[i].value);
  }
  free(c->text);
  c->rgb = NULL, c->rows = NULL, c->text = NULL, c->ntext = 0;
}

/* Copy the text chunks libpng collected into c->text (UTF-8). 0 on success, -1 no memory. */
static int collect_text(png_structp png, png_infop info, dec_ctx *c) {
  png_textp tp = NULL;
  int n = 0;
  png_get_text(png, info, &tp, &n);
  if (n <= 0) return 0;
  c->text = calloc((size_t)n, sizeof *c->text);
  if (!c->text) return -1;
  for (int i = 0; i < n; i++) {
    int itxt = tp[i].compression == PNG_ITXT_COMPRESSION_NONE ||
               tp[i].compression == PNG_ITXT_COMPRESSION_zTXt;
    size_t vlen = itxt ? tp[i].itxt_length : tp[i].text_length;
    char *k = latin1_to_utf8(tp[i].key, strlen(tp[i].key));
    char *v = itxt ? malloc(vlen + 1) : latin1_to_utf8(tp[i].text ? tp[i].text : "", vlen);
    if (v && itxt) {
      if (vlen) memcpy(v, tp[i].text, vlen);
      v[vlen] = '\0';
    }
    if (!k || !v) {
      free(k);
      free(v);
      return -1;
    }
    c->text[c->ntext].key = k;
    c->text[c->ntext].value = v;
    c->ntext++;
  }
  return 0;
}

static sd_status decode_bounded(const uint8_t *data, size_t len, const api_png_limits *lim,
                                api_png_image *out, char *err);

sd_status api_png_decode(const uint8_t *data, size_t len, const api_png_limits *lim,
                         api_png_image *out, char *err) {
  memset(out, 0, sizeof *out);
  api_png_limits dl;
  if (!lim) {
    api_png_limits_init(&dl);
    lim = &dl;
  }
  if (!data || len < 8 || png_sig_cmp(data, 0, 8) != 0) {
    set_err(err, "%s", "not a PNG file (bad signature)");
    return SD_ERR_FORMAT;
  }
  /* The size check before libpng, for a precise message (png_set_user_limits backs it). */
  if (len >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
    uint32_t w = be32(data + 16), h = be32(data + 20);
    if (w > lim->max_width || h > lim->max_height) {
      if (err)
        snprintf(err, SD_ERRMSG_MAX, "PNG is %ux%u, larger than the %ux%u allowed",
                 (unsigned)w, (unsigned)h, (unsigned)lim->max_width,
                 (unsigned)lim->max_height);
      return SD_ERR_LIMIT;
    }
  }
  return decode_bounded(data, len, lim, out, err);
}

/* The libpng part of api_png_decode; its arguments are never modified (setjmp). */
static sd_status decode_bounded(const uint8_t *data, size_t len, const api_png_limits *lim,
                                api_png_image *out, char *err) {
  dec_ctx c = {.data = data, .len = len, .max_alloc = lim->max_alloc};
  volatile sd_status st = SD_OK; /* assigned after a longjmp */
  png_infop info = NULL;
  png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &c, dec_error, dec_warn,
                                             &c, dec_malloc, dec_free);
  if (!png) goto out_nomem;
  info = png_create_info_struct(png);
  if (!info) goto out_nomem;
  if (setjmp(png_jmpbuf(png))) {
    if (c.refused) {
      st = SD_ERR_LIMIT;
      if (err)
        snprintf(err, SD_ERRMSG_MAX,
                 "PNG refused: it needs a %zu-byte allocation, above the %zu-byte cap",
                 c.refused, c.max_alloc);
    } else {
      st = strstr(c.msg, "memory") ? SD_ERR_NOMEM : SD_ERR_FORMAT;
      if (err) snprintf(err, SD_ERRMSG_MAX, "bad PNG: %.400s", c.msg);
    }
    goto out_destroy;
  }
  png_set_user_limits(png, lim->max_width, lim->max_height);
  png_set_chunk_malloc_max(png, lim->max_text);
  png_set_chunk_cache_max(png, 128);
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
  png_set_read_fn(png, &c, dec_read);
  png_read_info(png, info);

  png_uint_32 w32 = 0, h32 = 0;
  int depth = 0, ctype = 0, interlace = 0;
  png_get_IHDR(png, info, &w32, &h32, &depth, &ctype, &interlace, NULL, NULL);
  if (w32 > lim->max_width || h32 > lim->max_height) png_error(png, "image too large");
  int w = (int)w32, h = (int)h32;
  /* Transforms: everything ends as 3 bytes per pixel except the two cases Pillow treats
   * specially (palette, 16-bit gray), which are read raw and expanded below. tRNS is never
   * expanded: convert("RGB") ignores transparency. */
  int manual_palette = 0, manual_gray16 = 0;
  if (ctype == PNG_COLOR_TYPE_PALETTE) {
    png_set_packing(png); /* 1/2/4-bit indices to one byte each */
    manual_palette = 1;
  } else if (ctype == PNG_COLOR_TYPE_GRAY && depth == 16) {
    manual_gray16 = 1;
  } else {
    if (depth == 16) png_set_strip_16(png); /* Pillow's ;16B unpackers keep the high byte */
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (ctype & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (!(ctype & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  }
  (void)png_set_interlace_handling(png);
  png_read_update_info(png, info);
  size_t rowbytes = png_get_rowbytes(png, info);
  size_t stride = (size_t)w * 3;
  if (rowbytes > stride) png_error(png, "unexpected row size after conversion");
  c.rgb = malloc(stride * (size_t)h);
  c.rows = malloc(sizeof *c.rows * (size_t)h);
  if (!c.rgb || !c.rows) png_error(png, "out of memory for the image");
  for (int y = 0; y < h; y++) c.rows[y] = c.rgb + (size_t)y * stride;
  png_read_image(png, c.rows);
  if (manual_palette) expand_palette(png, info, &c, w, h);
  if (manual_gray16) expand_gray16(&c, w, h);
  png_read_end(png, info); /* text chunks after IDAT; checks the rest of the file */
  if (collect_text(png, info, &c) != 0) png_error(png, "out of memory for text chunks");

  out->width = w;
  out->height = h;
  out->rgb = c.rgb;
  out->text = c.text;
  out->ntext = c.ntext;
  free(c.rows);
  c.rgb = NULL, c.rows = NULL, c.text = NULL, c.ntext = 0;
  goto out_destroy;

out_nomem:
  if (c.refused) {
    if (err)
      snprintf(err, SD_ERRMSG_MAX, "PNG decode: libpng needs %zu bytes, above the %zu-byte cap",
               c.refused, c.max_alloc);
    st = SD_ERR_LIMIT;
  } else {
    set_err(err, "%s", "PNG decode: out of memory");
    st = SD_ERR_NOMEM;
  }
out_destroy:
  dec_free_results(&c);
  if (png) png_destroy_read_struct(&png, info ? &info : NULL, NULL);
  return st;
}

sd_status api_png_decode_file(const char *path, const api_png_limits *lim, api_png_image *out,
                              char *err) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (err) snprintf(err, SD_ERRMSG_MAX, "%s: %s", path, strerror(errno));
    return SD_ERR_IO;
  }
  const long cap = 64L << 20;
  sd_status st = SD_OK;
  uint8_t *buf = NULL;
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
  if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
    if (err) snprintf(err, SD_ERRMSG_MAX, "%s: cannot size the file", path);
    st = SD_ERR_IO;
    goto out_close;
  }
  if (size > cap) {
    if (err) snprintf(err, SD_ERRMSG_MAX, "%s: larger than 64 MiB", path);
    st = SD_ERR_LIMIT;
    goto out_close;
  }
  buf = malloc(size ? (size_t)size : 1);
  if (!buf) {
    set_err(err, "%s", "PNG decode: out of memory");
    st = SD_ERR_NOMEM;
    goto out_close;
  }
  if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
    if (err) snprintf(err, SD_ERRMSG_MAX, "%s: read error", path);
    st = SD_ERR_IO;
  } else {
    st = api_png_decode(buf, (size_t)size, lim, out, err);
  }
  free(buf);
out_close:
  fclose(f);
  return st;
}

void api_png_image_free(api_png_image *img) {
  if (!img) return;
  free(img->rgb);
  for (int i = 0; i < img->ntext; i++) {
    free((char *)img->text[i].key);
    free((char *)img->text[i].value);
  }
  free(img->text);
  memset(img, 0, sizeof *img);
}

const char *api_png_image_text(const api_png_image *img, const char *key) {
  for (int i = 0; i < img->ntext; i++)
    if (strcmp(img->text[i].key, key) == 0) return img->text[i].value;
  return NULL;
}
