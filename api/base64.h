/* base64.h: RFC 4648 base64 for the wire formats (images in JSON bodies, SSE previews).
 *
 * Decoding is strict about the alphabet (standard, or URL-safe '-' '_'), accepts missing
 * '=' padding and ignores ASCII whitespace (clients wrap lines), and refuses anything else:
 * a stray byte is an error, never silently skipped. Output sizes are computed with overflow
 * checks and capped by the caller, so a hostile input fails with a status. No I/O.
 */
#ifndef API_BASE64_H
#define API_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "sd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Length of the encoding of n bytes (with padding, without a NUL); 0 on overflow for n > 0. */
size_t api_base64_encoded_len(size_t n);

/* Encode n bytes into a malloc'ed NUL-terminated string (caller frees); *out_len (may be
 * NULL) gets its length. Returns NULL when out of memory or the size overflows. */
char *api_base64_encode(const uint8_t *data, size_t n, size_t *out_len);

/* Decode len characters of base64 (standard or URL-safe alphabet, optional padding, ASCII
 * whitespace ignored) into a malloc'ed buffer *out (caller frees; at least 1 byte allocated
 * even for an empty result) of *out_len bytes. Decoded sizes above max_out fail with
 * SD_ERR_LIMIT before decoding. Errors: SD_ERR_FORMAT (bad character, bad padding, a
 * dangling single character, nonzero trailing bits), SD_ERR_LIMIT, SD_ERR_NOMEM; on failure
 * *out is NULL and err (SD_ERRMSG_MAX bytes, may be NULL) says where. */
sd_status api_base64_decode(const char *s, size_t len, size_t max_out, uint8_t **out,
                            size_t *out_len, char *err);

#ifdef __cplusplus
}
#endif
#endif
