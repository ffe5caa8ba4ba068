/* json.c: a strict RFC 8259 reader into the sd_json tree of json.h, plus typed getters.
 *
 * Recursive descent with a depth limit of 64. Every node, key and decoded string of one tree
 * lives in a chain of bump-allocated chunks owned by the root, so sd__json_free is one walk over
 * the chunks. Strings must be valid UTF-8 (kept verbatim); escapes are decoded, \u surrogate
 * pairs combined, lone surrogates and \u0000 refused. Numbers follow the RFC grammar exactly
 * and must be finite doubles. A leading UTF-8 BOM is skipped. This is not a streaming parser.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define JSON_MAX_DEPTH 64
#define JSON_CHUNK 16384

typedef struct jchunk {
  struct jchunk *next;
  size_t size, used;
  _Alignas(16) unsigned char mem[];
} jchunk;

/* The root node is the first member so sd__json_free can find the chunk list from it. */
typedef struct jdoc {
  sd_json root;
  jchunk *chunks;
} jdoc;

typedef struct jparser {
  const unsigned char *s;
  size_t len, pos;
  jdoc *doc;
  sd_error *err;
} jparser;

static void *jalloc(jparser *p, size_t n) {
  n = (n + 15) & ~(size_t)15;
  jchunk *c = p->doc->chunks;
  if (!c || c->size - c->used < n) {
    size_t size = n > JSON_CHUNK ? n : JSON_CHUNK;
    c = malloc(sizeof(jchunk) + size);
    if (!c) return NULL;
    c->size = size;
    c->used = 0;
    c->next = p->doc->chunks;
    p->doc->chunks = c;
  }
  void *r = c->mem + c->used;
  c->used += n;
  return r;
}

/* Line and column (1-based, in bytes) of the current position, for messages. */
static sd_status jfail(jparser *p, sd_status st, const char *what) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < p->pos && i < p->len; i++) {
    if (p->s[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  return sd__err(p->err, st, "invalid JSON at line %zu, column %zu: %s", line, col, what);
}

static sd_status jnomem(jparser *p) {
  return sd__err(p->err, SD_ERR_NOMEM, "JSON: out of memory");
}

static void jskip_ws(jparser *p) {
  while (p->pos < p->len) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid (overlong, surrogate, > U+10FFFF,
 * truncated). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t k;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    k = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    k = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    k = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < k) return 0;
  for (size_t i = 1; i < k; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
  return k;
}

static int hex4(const unsigned char *s, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static size_t utf8_put(unsigned char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xC0 | (cp >> 6));
    o[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xE0 | (cp >> 12));
    o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (unsigned char)(0xF0 | (cp >> 18));
  o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Parse a string starting at the opening quote. The decoded text is never longer than the
 * source, so one allocation of the source length suffices. */
static sd_status jstring(jparser *p, const char **out, size_t *out_len) {
  size_t start = ++p->pos; /* after the quote */
  size_t end = start;
  while (end < p->len && p->s[end] != '"') {
    if (p->s[end] == '\\') end++;
    end++;
  }
  if (end >= p->len) return jfail(p, SD_ERR_FORMAT, "unterminated string");
  unsigned char *o = jalloc(p, end - start + 1);
  if (!o) return jnomem(p);
  size_t n = 0;
  while (p->pos < end) {
    unsigned char c = p->s[p->pos];
    if (c < 0x20) return jfail(p, SD_ERR_FORMAT, "control character in string");
    if (c != '\\') {
      size_t k = utf8_seq(p->s + p->pos, end - p->pos);
      if (k == 0) return jfail(p, SD_ERR_FORMAT, "invalid UTF-8 in string");
      memcpy(o + n, p->s + p->pos, k);
      n += k;
      p->pos += k;
      continue;
    }
    p->pos++;
    c = p->s[p->pos++];
    switch (c) {
    case '"': o[n++] = '"'; break;
    case '\\': o[n++] = '\\'; break;
    case '/': o[n++] = '/'; break;
    case 'b': o[n++] = '\b'; break;
    case 'f': o[n++] = '\f'; break;
    case 'n': o[n++] = '\n'; break;
    case 'r': o[n++] = '\r'; break;
    case 't': o[n++] = '\t'; break;
    case 'u': {
      uint32_t cp, lo;
      if (end - p->pos < 4 || hex4(p->s + p->pos, &cp) != 0)
        return jfail(p, SD_ERR_FORMAT, "bad \\u escape");
      p->pos += 4;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return jfail(p, SD_ERR_FORMAT, "lone low surrogate");
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
            hex4(p->s + p->pos + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
          return jfail(p, SD_ERR_FORMAT, "high surrogate without its low surrogate");
        p->pos += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      if (cp == 0) return jfail(p, SD_ERR_FORMAT, "\\u0000 is not allowed in strings");
      n += utf8_put(o + n, cp);
      break;
    }
    default:
      p->pos--;
      return jfail(p, SD_ERR_FORMAT, "unknown escape");
    }
  }
  o[n] = '\0';
  p->pos = end + 1;
  *out = (const char *)o;
  *out_len = n;
  return SD_OK;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* number = [ minus ] int [ frac ] [ exp ]; int = zero / ( digit1-9 *DIGIT ) */
static sd_status jnumber(jparser *p, double *out) {
  size_t start = p->pos, i = p->pos;
  const unsigned char *s = p->s;
  if (i < p->len && s[i] == '-') i++;
  if (i >= p->len || !is_digit(s[i])) {
    p->pos = i;
    return jfail(p, SD_ERR_FORMAT, "expected a digit");
  }
  if (s[i] == '0') i++;
  else
    while (i < p->len && is_digit(s[i])) i++;
  if (i < p->len && s[i] == '.') {
    i++;
    if (i >= p->len || !is_digit(s[i])) {
      p->pos = i;
      return jfail(p, SD_ERR_FORMAT, "expected a digit after '.'");
    }
    while (i < p->len && is_digit(s[i])) i++;
  }
  if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= p->len || !is_digit(s[i])) {
      p->pos = i;
      return jfail(p, SD_ERR_FORMAT, "expected a digit in the exponent");
    }
    while (i < p->len && is_digit(s[i])) i++;
  }
  /* strtod needs a terminated copy: the text need not be NUL-terminated. */
  size_t n = i - start;
  char small[64];
  char *buf = n < sizeof small ? small : malloc(n + 1);
  if (!buf) return jnomem(p);
  memcpy(buf, s + start, n);
  buf[n] = '\0';
  double v = strtod(buf, NULL);
  if (buf != small) free(buf);
  if (!isfinite(v)) return jfail(p, SD_ERR_FORMAT, "number out of range");
  *out = v;
  p->pos = i;
  return SD_OK;
}

static sd_status jvalue(jparser *p, sd_json *v, int depth);

static sd_status jcontainer(jparser *p, sd_json *v, int depth, int is_obj) {
  if (depth >= JSON_MAX_DEPTH) return jfail(p, SD_ERR_LIMIT, "nesting deeper than 64");
  char close = is_obj ? '}' : ']';
  v->type = is_obj ? SD_JSON_OBJECT : SD_JSON_ARRAY;
  p->pos++;
  jskip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == close) {
    p->pos++;
    return SD_OK;
  }
  sd_json *last = NULL;
  for (;;) {
    sd_json *c = jalloc(p, sizeof *c);
    if (!c) return jnomem(p);
    memset(c, 0, sizeof *c);
    if (is_obj) {
      jskip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != '"')
        return jfail(p, SD_ERR_FORMAT, "expected a member name");
      sd_status st = jstring(p, &c->key, &c->key_len);
      if (st != SD_OK) return st;
      jskip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != ':')
        return jfail(p, SD_ERR_FORMAT, "expected ':'");
      p->pos++;
    }
    sd_status st = jvalue(p, c, depth + 1);
    if (st != SD_OK) return st;
    if (last) last->next = c;
    else v->child = c;
    last = c;
    v->count++;
    jskip_ws(p);
    if (p->pos >= p->len) return jfail(p, SD_ERR_FORMAT, "unexpected end of input");
    if (p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->s[p->pos] == close) {
      p->pos++;
      return SD_OK;
    }
    return jfail(p, SD_ERR_FORMAT, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
  }
}

static int jliteral(jparser *p, const char *lit) {
  size_t n = strlen(lit);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, lit, n) != 0) return 0;
  p->pos += n;
  return 1;
}

static sd_status jvalue(jparser *p, sd_json *v, int depth) {
  jskip_ws(p);
  if (p->pos >= p->len) return jfail(p, SD_ERR_FORMAT, "unexpected end of input");
  unsigned char c = p->s[p->pos];
  switch (c) {
  case '{': return jcontainer(p, v, depth, 1);
  case '[': return jcontainer(p, v, depth, 0);
  case '"':
    v->type = SD_JSON_STRING;
    return jstring(p, &v->str, &v->str_len);
  case 't':
    if (!jliteral(p, "true")) break;
    v->type = SD_JSON_TRUE;
    return SD_OK;
  case 'f':
    if (!jliteral(p, "false")) break;
    v->type = SD_JSON_FALSE;
    return SD_OK;
  case 'n':
    if (!jliteral(p, "null")) break;
    v->type = SD_JSON_NULL;
    return SD_OK;
  default:
    if (c == '-' || is_digit(c)) {
      v->type = SD_JSON_NUMBER;
      return jnumber(p, &v->num);
    }
  }
  return jfail(p, SD_ERR_FORMAT, "unexpected character");
}

void sd__json_free(sd_json *root) {
  if (!root) return;
  jdoc *d = (jdoc *)root;
  jchunk *c = d->chunks;
  while (c) {
    jchunk *n = c->next;
    free(c);
    c = n;
  }
  free(d);
}

sd_status sd__json_parse(const char *text, size_t len, sd_json **out, sd_error *err) {
  *out = NULL;
  jdoc *d = calloc(1, sizeof *d);
  if (!d) return sd__err(err, SD_ERR_NOMEM, "JSON: out of memory");
  jparser p = {(const unsigned char *)text, len, 0, d, err};
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) p.pos = 3;
  sd_status st = jvalue(&p, &d->root, 0);
  if (st == SD_OK) {
    jskip_ws(&p);
    if (p.pos != len) st = jfail(&p, SD_ERR_FORMAT, "trailing characters after the value");
  }
  if (st != SD_OK) {
    sd__json_free(&d->root);
    return st;
  }
  *out = &d->root;
  return SD_OK;
}

const sd_json *sd__json_get(const sd_json *obj, const char *key) {
  if (!obj || obj->type != SD_JSON_OBJECT || !key) return NULL;
  size_t n = strlen(key);
  for (const sd_json *c = obj->child; c; c = c->next)
    if (c->key_len == n && memcmp(c->key, key, n) == 0) return c;
  return NULL;
}

const sd_json *sd__json_at(const sd_json *arr, size_t i) {
  if (!arr || arr->type != SD_JSON_ARRAY || i >= arr->count) return NULL;
  const sd_json *c = arr->child;
  while (i-- > 0) c = c->next;
  return c;
}

/* The member, or NULL when absent or null (both mean "use the default"). */
static const sd_json *present(const sd_json *obj, const char *key) {
  const sd_json *v = sd__json_get(obj, key);
  return (v && v->type != SD_JSON_NULL) ? v : NULL;
}

static int as_int(const sd_json *v, int *out) {
  if (v->type != SD_JSON_NUMBER || v->num != floor(v->num) || v->num < (double)INT_MIN ||
      v->num > (double)INT_MAX)
    return -1;
  *out = (int)v->num;
  return 0;
}

int sd__json_int(const sd_json *obj, const char *key, int def, const char *what,
                 sd_error *err) {
  const sd_json *v = present(obj, key);
  int r;
  if (!v) return def;
  if (as_int(v, &r) != 0) {
    sd__err(err, SD_ERR_FORMAT, "%s: \"%s\" must be an integer", what, key);
    return def;
  }
  return r;
}

double sd__json_num(const sd_json *obj, const char *key, double def, const char *what,
                    sd_error *err) {
  const sd_json *v = present(obj, key);
  if (!v) return def;
  if (v->type != SD_JSON_NUMBER) {
    sd__err(err, SD_ERR_FORMAT, "%s: \"%s\" must be a number", what, key);
    return def;
  }
  return v->num;
}

int sd__json_bool(const sd_json *obj, const char *key, int def, const char *what,
                  sd_error *err) {
  const sd_json *v = present(obj, key);
  if (!v) return def;
  if (v->type != SD_JSON_TRUE && v->type != SD_JSON_FALSE) {
    sd__err(err, SD_ERR_FORMAT, "%s: \"%s\" must be true or false", what, key);
    return def;
  }
  return v->type == SD_JSON_TRUE;
}

const char *sd__json_str(const sd_json *obj, const char *key, const char *def,
                         const char *what, sd_error *err) {
  const sd_json *v = present(obj, key);
  if (!v) return def;
  if (v->type != SD_JSON_STRING) {
    sd__err(err, SD_ERR_FORMAT, "%s: \"%s\" must be a string", what, key);
    return def;
  }
  return v->str;
}

int sd__json_int_array(const sd_json *obj, const char *key, int *vals, int cap,
                       const char *what, sd_error *err) {
  const sd_json *v = present(obj, key);
  if (!v) return 0;
  if (v->type == SD_JSON_NUMBER) {
    if (cap < 1 || as_int(v, &vals[0]) != 0) goto bad;
    return 1;
  }
  if (v->type != SD_JSON_ARRAY) goto bad;
  if (v->count > (size_t)cap) {
    sd__err(err, SD_ERR_FORMAT, "%s: \"%s\" has %zu entries, at most %d are supported", what,
            key, v->count, cap);
    return -1;
  }
  int n = 0;
  for (const sd_json *c = v->child; c; c = c->next)
    if (as_int(c, &vals[n++]) != 0) goto bad;
  return n;
bad:
  sd__err(err, SD_ERR_FORMAT, "%s: \"%s\" must be an integer or a list of integers", what, key);
  return -1;
}
