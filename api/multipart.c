/* multipart.c: multipart/form-data parsing (see multipart.h).
 *
 * The body is scanned for "--boundary" delimiter lines with memmem; each part's header block
 * ends at the first CRLF CRLF; its content ends right before the CRLF that precedes the next
 * delimiter. Header values are parsed with a tiny tokenizer for `name="value"` parameters
 * (quoted-string with backslash escapes, or a bare token), which is all browsers and curl send.
 */
#define _GNU_SOURCE
#include "multipart.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int api_multipart_boundary(const char *ct, char *buf, size_t cap) {
  if (!ct || !cap) return -1;
  while (*ct == ' ' || *ct == '\t') ct++;
  static const char mt[] = "multipart/form-data";
  if (strncasecmp(ct, mt, sizeof mt - 1) != 0) return -1;
  const char *p = ct + sizeof mt - 1;
  while (*p) {
    while (*p == ';' || *p == ' ' || *p == '\t') p++;
    const char *k = p;
    while (*p && *p != '=' && *p != ';') p++;
    size_t klen = (size_t)(p - k);
    while (klen && (k[klen - 1] == ' ' || k[klen - 1] == '\t')) klen--;
    if (*p != '=') continue;
    p++;
    size_t n = 0;
    int quoted = *p == '"';
    if (quoted) p++;
    const char *v = p;
    while (*p && (quoted ? *p != '"' : (*p != ';' && *p != ' ' && *p != '\t'))) p++;
    n = (size_t)(p - v);
    if (quoted && *p == '"') p++;
    if (klen == 8 && strncasecmp(k, "boundary", 8) == 0) {
      if (n == 0 || n > 70 || n + 1 > cap) return -1;
      memcpy(buf, v, n);
      buf[n] = '\0';
      return 0;
    }
  }
  return -1;
}

/* Value of parameter key in a header value [h, end): malloc'ed, or NULL when absent. *bad is
 * set on an allocation failure. */
static char *header_param(const char *h, const char *end, const char *key, int *bad) {
  size_t keylen = strlen(key);
  const char *p = h;
  while (p < end) {
    while (p < end && (*p == ';' || *p == ' ' || *p == '\t')) p++;
    const char *k = p;
    while (p < end && *p != '=' && *p != ';') p++;
    size_t klen = (size_t)(p - k);
    while (klen && (k[klen - 1] == ' ' || k[klen - 1] == '\t')) klen--;
    if (p >= end || *p != '=') continue;
    p++;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    char *val = malloc((size_t)(end - p) + 1);
    if (!val) {
      *bad = 1;
      return NULL;
    }
    size_t n = 0;
    if (p < end && *p == '"') {
      p++;
      while (p < end && *p != '"') {
        if (*p == '\\' && p + 1 < end) p++;
        val[n++] = *p++;
      }
      if (p < end) p++;
    } else {
      while (p < end && *p != ';' && *p != ' ' && *p != '\t') val[n++] = *p++;
    }
    val[n] = '\0';
    if (klen == keylen && strncasecmp(k, key, keylen) == 0) return val;
    free(val);
  }
  return NULL;
}

static char *dup_range(const char *s, const char *end) {
  while (s < end && (*s == ' ' || *s == '\t')) s++;
  while (end > s && (end[-1] == ' ' || end[-1] == '\t')) end--;
  char *d = malloc((size_t)(end - s) + 1);
  if (!d) return NULL;
  memcpy(d, s, (size_t)(end - s));
  d[end - s] = '\0';
  return d;
}

/* Parse the header block [h, end) of one part into *pt. Returns API_OK or an error. */
static api_err parse_part_headers(const char *h, const char *end, api_part *pt, api_error *e) {
  int bad = 0;
  while (h < end) {
    const char *eol = memmem(h, (size_t)(end - h), "\r\n", 2);
    if (!eol) eol = end;
    const char *colon = memchr(h, ':', (size_t)(eol - h));
    if (colon) {
      size_t nlen = (size_t)(colon - h);
      if (nlen == 19 && strncasecmp(h, "Content-Disposition", 19) == 0) {
        const char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t')) v++;
        if ((size_t)(eol - v) < 9 || strncasecmp(v, "form-data", 9) != 0)
          return api_error_set(e, API_ERR_BAD_TYPE, NULL,
                               "multipart part is not Content-Disposition: form-data");
        free(pt->name);
        free(pt->filename);
        pt->name = header_param(v + 9, eol, "name", &bad);
        pt->filename = header_param(v + 9, eol, "filename", &bad);
      } else if (nlen == 12 && strncasecmp(h, "Content-Type", 12) == 0) {
        free(pt->content_type);
        pt->content_type = dup_range(colon + 1, eol);
        if (!pt->content_type) bad = 1;
      }
    }
    h = eol + 2;
  }
  if (bad) return api_error_set(e, API_ERR_NOMEM, NULL, "out of memory parsing multipart");
  if (!pt->name || !pt->name[0])
    return api_error_set(e, API_ERR_BAD_TYPE, NULL, "multipart part without a field name");
  return API_OK;
}

/* The next real delimiter at or after p: CRLF "--" boundary followed by "--", transport
 * padding (spaces, tabs) and CRLF, or the end of the body. Other occurrences of the bytes are
 * content (RFC 2046 section 5.1.1). NULL when there is none. */
static const char *find_delim(const char *p, const char *end, const char *delim, size_t dlen) {
  for (;;) {
    const char *m = memmem(p, (size_t)(end - p), delim, dlen);
    if (!m) return NULL;
    const char *q = m + dlen;
    if (end - q >= 2 && q[0] == '-' && q[1] == '-') return m;
    while (q < end && (*q == ' ' || *q == '\t')) q++;
    if (q == end || (end - q >= 2 && q[0] == '\r' && q[1] == '\n')) return m;
    p = m + 1;
  }
}

api_err api_multipart_parse(const uint8_t *body, size_t len, const char *boundary,
                            int max_parts, api_form *out, api_error *e) {
  memset(out, 0, sizeof *out);
  size_t blen = strlen(boundary);
  if (blen == 0 || blen > 70)
    return api_error_set(e, API_ERR_BAD_TYPE, NULL, "invalid multipart boundary");
  char delim[76]; /* "\r\n--" + boundary */
  memcpy(delim, "\r\n--", 4);
  memcpy(delim + 4, boundary, blen);
  size_t dlen = blen + 4;
  const char *b = (const char *)body, *end = b + len;
  /* the first delimiter may start the body (no preceding CRLF) */
  const char *p;
  if (len >= dlen - 2 && memcmp(b, delim + 2, dlen - 2) == 0) {
    p = b + dlen - 2;
  } else {
    p = find_delim(b, end, delim, dlen);
    if (!p)
      return api_error_set(e, API_ERR_BAD_TYPE, NULL, "multipart body without a boundary");
    p += dlen;
  }
  for (;;) {
    /* p is right after a delimiter: "--" closes, otherwise skip transport padding + CRLF */
    if (end - p >= 2 && p[0] == '-' && p[1] == '-') return API_OK;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
      return api_error_set(e, API_ERR_BAD_TYPE, NULL, "malformed multipart delimiter line");
    p += 2;
    const char *hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
    const char *data;
    if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') { /* no headers at all */
      hend = p;
      data = p + 2;
    } else {
      if (!hend)
        return api_error_set(e, API_ERR_BAD_TYPE, NULL, "multipart part headers not ended");
      data = hend + 4;
    }
    const char *next = find_delim(data, end, delim, dlen);
    if (!next)
      return api_error_set(e, API_ERR_BAD_TYPE, NULL, "multipart body not closed");
    if (out->nparts >= max_parts)
      return api_error_set(e, API_ERR_LIMIT, NULL, "more than %d multipart parts", max_parts);
    api_part *np = realloc(out->parts, sizeof *np * (size_t)(out->nparts + 1));
    if (!np) return api_error_set(e, API_ERR_NOMEM, NULL, "out of memory parsing multipart");
    out->parts = np;
    api_part *pt = &out->parts[out->nparts++];
    memset(pt, 0, sizeof *pt);
    api_err r = parse_part_headers(p, hend, pt, e);
    if (r != API_OK) return r;
    pt->data = (const uint8_t *)data;
    pt->len = (size_t)(next - data);
    p = next + dlen;
  }
}

const api_part *api_form_get(const api_form *f, const char *name) {
  for (int i = 0; i < f->nparts; i++)
    if (f->parts[i].name && strcmp(f->parts[i].name, name) == 0) return &f->parts[i];
  return NULL;
}

void api_form_free(api_form *f) {
  if (!f) return;
  for (int i = 0; i < f->nparts; i++) {
    free(f->parts[i].name);
    free(f->parts[i].filename);
    free(f->parts[i].content_type);
  }
  free(f->parts);
  memset(f, 0, sizeof *f);
}
