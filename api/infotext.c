/* infotext.c: A1111 infotext formatting (see infotext.h). A growable string and the three
 * formatting rules of A1111's create_infotext: quote(), the optional negative line, strip();
 * ControlNet units as the sd-webui-controlnet extension adds them. */
#include "infotext.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sbuf {
  char *s;
  size_t len, cap;
  int failed;
} sbuf;

static void sb_put(sbuf *b, const char *p, size_t n) {
  if (b->failed) return;
  if (n + 1 > b->cap - b->len) {
    size_t cap = b->cap ? b->cap : 256;
    while (n + 1 > cap - b->len) cap *= 2;
    char *ns = realloc(b->s, cap);
    if (!ns) {
      b->failed = 1;
      return;
    }
    b->s = ns;
    b->cap = cap;
  }
  memcpy(b->s + b->len, p, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *p) { sb_put(b, p, strlen(p)); }

static void sb_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A1111's quote(): the value as is, unless it holds ',', ':' or '\n'; then
 * json.dumps(value, ensure_ascii=False). */
static void sb_quoted(sbuf *b, const char *v) {
  if (!strpbrk(v, ",:\n")) {
    sb_str(b, v);
    return;
  }
  sb_str(b, "\"");
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    switch (*p) {
    case '"': sb_str(b, "\\\""); break;
    case '\\': sb_str(b, "\\\\"); break;
    case '\n': sb_str(b, "\\n"); break;
    case '\r': sb_str(b, "\\r"); break;
    case '\t': sb_str(b, "\\t"); break;
    case '\b': sb_str(b, "\\b"); break;
    case '\f': sb_str(b, "\\f"); break;
    default:
      if (*p < 0x20) sb_fmt(b, "\\u%04x", *p);
      else sb_put(b, (const char *)p, 1);
    }
  }
  sb_str(b, "\"");
}

/* Shortest decimal that reads back as the same float ("7.5", "7", "0.1"). */
static void sb_float(sbuf *b, float x) {
  char tmp[48];
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, (double)x);
    if (strtof(tmp, NULL) == x) break;
  }
  sb_str(b, tmp);
}

static int is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* One ControlNet unit as the A1111 extension's infotext field value (before quoting). */
static void sb_control_unit(sbuf *b, const sd_control_unit *u, const char *name) {
  sb_str(b, "Module: none");
  if (name) {
    sb_str(b, ", Model: ");
    sb_str(b, name);
  }
  sb_str(b, ", Weight: ");
  sb_float(b, u->scale);
  sb_str(b, ", Guidance Start: ");
  sb_float(b, u->start);
  sb_str(b, ", Guidance End: ");
  sb_float(b, u->end);
}

char *api_infotext(const sd_request *rq, int width, int height, const char *model_name) {
  return api_infotext_ex(rq, width, height, model_name, NULL);
}

char *api_infotext_ex(const sd_request *rq, int width, int height, const char *model_name,
                      const char *const *control_names) {
  sbuf b = {0};
  const char *prompt = rq->prompt ? rq->prompt : "";
  const char *neg = rq->negative_prompt ? rq->negative_prompt : "";
  const char *sampler = rq->sampler ? rq->sampler : "";
  const char *label = sd_sampler_label(sampler);
  sb_str(&b, prompt);
  if (neg[0]) {
    sb_str(&b, "\nNegative prompt: ");
    sb_str(&b, neg);
  }
  sb_fmt(&b, "\nSteps: %d, Sampler: ", rq->steps);
  sb_quoted(&b, label ? label : sampler);
  sb_str(&b, ", CFG scale: ");
  sb_float(&b, rq->cfg_scale);
  sb_fmt(&b, ", Seed: %" PRIu64 ", Size: %dx%d", rq->seed, width, height);
  if (model_name) {
    sb_str(&b, ", Model: ");
    sb_quoted(&b, model_name);
  }
  if (rq->init_rgb) { /* image-to-image: A1111 puts it after Model */
    sb_str(&b, ", Denoising strength: ");
    sb_float(&b, rq->strength);
  }
  for (int i = 0; rq->control && i < rq->ncontrol; i++) {
    sbuf u = {0};
    sb_control_unit(&u, &rq->control[i], control_names ? control_names[i] : NULL);
    sb_fmt(&b, ", ControlNet %d: ", i);
    if (u.failed || !u.s) b.failed = 1;
    else sb_quoted(&b, u.s);
    free(u.s);
  }
  if (b.failed || !b.s) {
    free(b.s);
    return NULL;
  }
  /* Python's str.strip() on the whole text */
  size_t start = 0, end = b.len;
  while (start < end && is_space(b.s[start])) start++;
  while (end > start && is_space(b.s[end - 1])) end--;
  memmove(b.s, b.s + start, end - start);
  b.s[end - start] = '\0';
  return b.s;
}

char *api_model_label(const char *path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  size_t start = n;
  while (start > 0 && path[start - 1] != '/') start--;
  static const char ext[] = ".safetensors";
  size_t len = n - start;
  if (len > sizeof ext - 1 && strncmp(path + n - (sizeof ext - 1), ext, sizeof ext - 1) == 0)
    len -= sizeof ext - 1;
  char *out = malloc(len + 1);
  if (out) {
    memcpy(out, path + start, len);
    out[len] = '\0';
  }
  return out;
}
