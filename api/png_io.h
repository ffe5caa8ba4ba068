/* png_io.h: PNG encoding and decoding for sdserve's wire formats and CLI (api layer).
 * (Named png_io.h, not png.h, so it never shadows libpng's <png.h> on the include path.)
 *
 * Encodes 8-bit RGB images (with text chunks such as A1111's `parameters`) into memory, a
 * FILE or any write callback; decodes untrusted PNG bytes into 8-bit RGB the way Pillow's
 * Image.open(...).convert("RGB") does (alpha dropped without compositing, palette looked up,
 * gray replicated, 16-bit reduced as Pillow reduces it). Decoding is bounded: image size,
 * text size and every single libpng allocation are capped, so a hostile file fails with a
 * status instead of exhausting memory. Uses libpng; no HTTP, no event loop.
 */
#ifndef API_PNG_IO_H
#define API_PNG_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A text chunk: key (1..79 Latin-1 characters, given as UTF-8) and UTF-8 value. */
typedef struct api_png_text {
  const char *key;
  const char *value;
} api_png_text;

/* Byte sink for the encoder: return 0 on success, nonzero to abort the encode. */
typedef int (*api_png_write_fn)(void *user, const void *data, size_t len);

/* Encode width x height x 3 bytes of RGB (row-major, top row first) as an 8-bit RGB PNG,
 * with ntext text chunks after the header (tEXt when the value is Latin-1, iTXt otherwise,
 * as Pillow's PngInfo.add_text does). Output is deterministic (no time chunk).
 * Errors: SD_ERR_INVALID (bad size or key), SD_ERR_IO (write callback failed),
 * SD_ERR_NOMEM; err (SD_ERRMSG_MAX bytes, may be NULL) gets one line. */
sd_status api_png_encode(const uint8_t *rgb, int width, int height, const api_png_text *text,
                         int ntext, api_png_write_fn write, void *user, char *err);

/* The same into a malloc'ed buffer: on success *out (free with free()) holds *out_len bytes;
 * on failure *out is NULL. */
sd_status api_png_encode_mem(const uint8_t *rgb, int width, int height,
                             const api_png_text *text, int ntext, uint8_t **out,
                             size_t *out_len, char *err);

/* The same to an open stdio stream (not closed; fflush is the caller's). */
sd_status api_png_encode_file(FILE *f, const uint8_t *rgb, int width, int height,
                              const api_png_text *text, int ntext, char *err);

/* Limits for decoding untrusted input. */
typedef struct api_png_limits {
  uint32_t max_width;  /* pixels; larger images fail with SD_ERR_LIMIT */
  uint32_t max_height;
  size_t max_alloc;    /* cap on any single allocation libpng makes (FACTS.md: 8 MiB) */
  size_t max_text;     /* cap on one text or ancillary chunk's size */
} api_png_limits;

/* Defaults: 4096 x 4096, max_alloc 8 MiB, max_text 1 MiB. */
void api_png_limits_init(api_png_limits *lim);

/* A decoded image: 8-bit RGB plus the text chunks found (keys and values as UTF-8). */
typedef struct api_png_image {
  int width, height;
  uint8_t *rgb;        /* width x height x 3 */
  api_png_text *text;  /* ntext entries, strings owned by the image */
  int ntext;
} api_png_image;

/* Decode len bytes of PNG. lim may be NULL for defaults. On success *out owns its memory
 * (free with api_png_image_free); on failure *out is zeroed and err says what is wrong.
 * Errors: SD_ERR_FORMAT (not a PNG, corrupt, truncated), SD_ERR_LIMIT (too large, or an
 * allocation over the cap refused), SD_ERR_NOMEM. Unknown chunks are ignored. */
sd_status api_png_decode(const uint8_t *data, size_t len, const api_png_limits *lim,
                         api_png_image *out, char *err);

/* Read a whole PNG file (at most 64 MiB) and decode it as api_png_decode does. */
sd_status api_png_decode_file(const char *path, const api_png_limits *lim, api_png_image *out,
                              char *err);

/* Free what a decode produced and zero *img. Accepts NULL and zeroed images. */
void api_png_image_free(api_png_image *img);

/* The value of the first text chunk named key, or NULL. */
const char *api_png_image_text(const api_png_image *img, const char *key);

#ifdef __cplusplus
}
#endif
#endif
