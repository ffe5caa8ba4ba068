/* base64.c: RFC 4648 base64 encode and a strict decode (see base64.h).
 *
 * The decoder makes two passes: the first counts significant characters and validates the
 * alphabet and padding, so the output is sized exactly and limits are checked before any
 * allocation; the second decodes. Trailing bits that are not zero are refused (RFC 4648
 * section 3.5 lets decoders reject them; it keeps encodings canonical).
 */
#include "base64.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_err(char *err, const char *fmt, ...) {
  if (!err) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, SD_ERRMSG_MAX, fmt, ap);
  va_end(ap);
}

/* Value of one character: 0..63, -1 for whitespace, -2 for '=', -3 for anything else. */
static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') return -1;
  if (c == '=') return -2;
  return -3;
}

size_t api_base64_encoded_len(size_t n) {
  size_t groups = n / 3 + (n % 3 != 0);
  if (groups > ((size_t)-1 - 1) / 4) return 0;
  return groups * 4;
}

char *api_base64_encode(const uint8_t *data, size_t n, size_t *out_len) {
  size_t len = api_base64_encoded_len(n);
  if (n > 0 && len == 0) return NULL;
  char *out = malloc(len + 1);
  if (!out) return NULL;
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
    out[o++] = b64_alphabet[v >> 18 & 63];
    out[o++] = b64_alphabet[v >> 12 & 63];
    out[o++] = b64_alphabet[v >> 6 & 63];
    out[o++] = b64_alphabet[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < n ? (uint32_t)data[i + 1] << 8 : 0);
    out[o++] = b64_alphabet[v >> 18 & 63];
    out[o++] = b64_alphabet[v >> 12 & 63];
    out[o++] = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
    out[o++] = '=';
  }
  out[o] = '\0';
  if (out_len) *out_len = o;
  return out;
}

sd_status api_base64_decode(const char *s, size_t len, size_t max_out, uint8_t **out,
                            size_t *out_len, char *err) {
  *out = NULL;
  *out_len = 0;
  /* pass 1: count data characters, check the alphabet and that '=' only ends the input */
  size_t nchar = 0, npad = 0;
  for (size_t i = 0; i < len; i++) {
    int v = b64_value((unsigned char)s[i]);
    if (v == -3) {
      b64_err(err, "invalid base64 character 0x%02x at offset %zu", (unsigned char)s[i], i);
      return SD_ERR_FORMAT;
    }
    if (v == -2) {
      npad++;
    } else if (v >= 0) {
      if (npad) {
        b64_err(err, "base64 data after '=' padding at offset %zu", i);
        return SD_ERR_FORMAT;
      }
      nchar++;
    }
  }
  size_t rem = nchar % 4;
  if (rem == 1 || npad > 2 || (npad && (nchar + npad) % 4 != 0)) {
    b64_err(err, "invalid base64 length or padding (%zu characters, %zu '=')", nchar, npad);
    return SD_ERR_FORMAT;
  }
  size_t n = nchar / 4 * 3 + (rem ? rem - 1 : 0);
  if (n > max_out) {
    b64_err(err, "base64 data decodes to %zu bytes, more than the limit of %zu", n, max_out);
    return SD_ERR_LIMIT;
  }
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    b64_err(err, "out of memory decoding %zu bytes of base64", n);
    return SD_ERR_NOMEM;
  }
  /* pass 2: decode groups of 4 significant characters */
  uint32_t acc = 0;
  int k = 0;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    int v = b64_value((unsigned char)s[i]);
    if (v < 0) continue;
    acc = acc << 6 | (uint32_t)v;
    if (++k == 4) {
      buf[o++] = (uint8_t)(acc >> 16);
      buf[o++] = (uint8_t)(acc >> 8);
      buf[o++] = (uint8_t)acc;
      acc = 0;
      k = 0;
    }
  }
  if (k == 2) {
    if (acc & 0xF) goto bad_bits;
    buf[o++] = (uint8_t)(acc >> 4);
  } else if (k == 3) {
    if (acc & 0x3) goto bad_bits;
    buf[o++] = (uint8_t)(acc >> 10);
    buf[o++] = (uint8_t)(acc >> 2);
  }
  *out = buf;
  *out_len = o;
  return SD_OK;

bad_bits:
  free(buf);
  b64_err(err, "invalid base64: nonzero bits after the last byte");
  return SD_ERR_FORMAT;
}
