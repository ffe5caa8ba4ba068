/* request.c: parse and validate the native JSON generation request (see request.h).
 *
 * Order: raw-text checks cJSON cannot do afterwards ("\u0000" escapes), parse, then the
 * top-level object: unknown and duplicate keys, then each field through typed getters that
 * read valuedouble (never valueint) and check finiteness, integrality and range, then the
 * images (base64 -> bounded PNG decode -> optional Canny). The first error wins and names the
 * field. Everything allocated hangs off api_gen_request, so one free undoes any failure.
 */
#include "request.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "base64.h"
#include "multipart.h"

#define MAX_KEYS 32 /* more keys than fields exist is malformed (and keeps dup checks cheap) */

void api_limits_init(api_limits *lim) {
  memset(lim, 0, sizeof *lim);
  lim->max_pixels = 1024LL * 1024;
  lim->max_steps = 150;
  lim->max_prompt_chars = 4000;
  lim->max_batch = 4;
  lim->max_image_bytes = 16u << 20;
  lim->native_width = 512;
  lim->native_height = 512;
}

int api_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s, *end = p + len;
  while (p < end) {
    unsigned c = *p;
    size_t n;
    unsigned min, cp;
    if (c < 0x80) { p++; continue; }
    else if ((c & 0xE0) == 0xC0) { n = 1; min = 0x80; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 2; min = 0x800; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { n = 3; min = 0x10000; cp = c & 0x07; }
    else return 0;
    if ((size_t)(end - p) <= n) return 0;
    for (size_t i = 1; i <= n; i++) {
      if ((p[i] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    p += n + 1;
  }
  return 1;
}

static size_t utf8_count(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

/* 1 when the JSON text contains a \u0000 escape (cJSON would truncate the string there). */
static int has_nul_escape(const char *s, size_t len) {
  for (size_t i = 0; i + 1 < len; i++) {
    if (s[i] != '\\') continue;
    if (s[i + 1] == 'u' && i + 5 < len && s[i + 2] == '0' && s[i + 3] == '0' &&
        s[i + 4] == '0' && s[i + 5] == '0')
      return 1;
    i++; /* skip the escaped character (so "\\u0000" is a backslash then text) */
  }
  return 0;
}

/* ---- typed getters: 0 absent (or null), 1 present and valid, -1 error recorded ---------- */

static const cJSON *field(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return v && !cJSON_IsNull(v) ? v : NULL;
}

static int get_num(const cJSON *obj, const char *key, const char *path, double lo, double hi,
                   int integral, double *out, api_error *e) {
  const cJSON *v = field(obj, key);
  if (!v) return 0;
  if (!cJSON_IsNumber(v)) {
    api_error_set(e, API_ERR_BAD_TYPE, path, "%s must be a number", path);
    return -1;
  }
  double d = v->valuedouble;
  if (!isfinite(d)) {
    api_error_set(e, API_ERR_BAD_VALUE, path, "%s must be finite", path);
    return -1;
  }
  if (integral && d != floor(d)) {
    api_error_set(e, API_ERR_BAD_VALUE, path, "%s must be an integer (got %.17g)", path, d);
    return -1;
  }
  if (!(d >= lo && d <= hi)) {
    api_error_set(e, API_ERR_BAD_VALUE, path, "%s = %.17g is out of range [%.17g, %.17g]", path,
                  d, lo, hi);
    return -1;
  }
  *out = d;
  return 1;
}

static int get_int(const cJSON *obj, const char *key, const char *path, int lo, int hi,
                   int *out, api_error *e) {
  double d;
  int r = get_num(obj, key, path, lo, hi, 1, &d, e);
  if (r == 1) *out = (int)d;
  return r;
}

/* An integer whose range [lo, hard_hi] is a matter of validity (422 invalid_value) and whose
 * configured cap `limit` is a matter of policy (422 limit_exceeded). */
static int get_int_capped(const cJSON *obj, const char *key, int lo, int hard_hi, int limit,
                          int *out, api_error *e) {
  int v = 0, r = get_int(obj, key, key, lo, hard_hi, &v, e);
  if (r == 1 && v > limit) {
    api_error_set(e, API_ERR_LIMIT, key, "%s = %d is above this server's limit of %d", key, v,
                  limit);
    return -1;
  }
  if (r == 1) *out = v;
  return r;
}

static int get_float(const cJSON *obj, const char *key, const char *path, double lo, double hi,
                     float *out, api_error *e) {
  double d;
  int r = get_num(obj, key, path, lo, hi, 0, &d, e);
  if (r == 1) *out = (float)d;
  return r;
}

/* A string field: *out points into the cJSON tree (valid while it lives). */
static int get_str(const cJSON *obj, const char *key, const char *path, const char **out,
                   api_error *e) {
  const cJSON *v = field(obj, key);
  if (!v) return 0;
  if (!cJSON_IsString(v) || !v->valuestring) {
    api_error_set(e, API_ERR_BAD_TYPE, path, "%s must be a string", path);
    return -1;
  }
  if (!api_utf8_valid(v->valuestring, strlen(v->valuestring))) {
    api_error_set(e, API_ERR_BAD_VALUE, path, "%s is not valid UTF-8", path);
    return -1;
  }
  *out = v->valuestring;
  return 1;
}

static int get_bool(const cJSON *obj, const char *key, const char *path, int *out,
                    api_error *e) {
  const cJSON *v = field(obj, key);
  if (!v) return 0;
  if (!cJSON_IsBool(v)) {
    api_error_set(e, API_ERR_BAD_TYPE, path, "%s must be true or false", path);
    return -1;
  }
  *out = cJSON_IsTrue(v);
  return 1;
}

/* Refuse keys not in allowed (NULL-terminated), duplicate keys and oversized objects. */
static int check_keys(const cJSON *obj, const char *const *allowed, const char *where,
                      api_error *e) {
  int n = 0;
  for (const cJSON *c = obj->child; c; c = c->next, n++) {
    if (n >= MAX_KEYS) {
      api_error_set(e, API_ERR_BAD_JSON, where, "%s has too many keys", where);
      return -1;
    }
    const char *const *a = allowed;
    while (*a && strcmp(*a, c->string) != 0) a++;
    if (!*a) {
      api_error_set(e, API_ERR_BAD_VALUE, c->string, "unknown field '%.64s' in %s",
                    c->string, where);
      return -1;
    }
    for (const cJSON *d = obj->child; d != c; d = d->next)
      if (strcmp(d->string, c->string) == 0) {
        api_error_set(e, API_ERR_BAD_JSON, c->string, "duplicate key '%s' in %s", c->string,
                      where);
        return -1;
      }
  }
  return 0;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ---- images ----------------------------------------------------------------------------- */

/* Decode an image given as base64 / data: URL text, or raw PNG bytes. */
static int decode_image(const char *text, const uint8_t *raw, size_t raw_len,
                        const api_limits *lim, const char *path, api_png_image *out,
                        api_error *e) {
  char err[SD_ERRMSG_MAX];
  uint8_t *bytes = NULL;
  size_t n = 0;
  if (!raw) {
    size_t len = strlen(text);
    if (strncmp(text, "data:", 5) == 0) {
      const char *comma = memchr(text, ',', len);
      if (!comma || comma - text < 12 || strncmp(comma - 7, ";base64", 7) != 0) {
        api_error_set(e, API_ERR_BAD_IMAGE, path, "%s: a data: URL must be base64 encoded",
                      path);
        return -1;
      }
      len -= (size_t)(comma + 1 - text);
      text = comma + 1;
    }
    sd_status st = api_base64_decode(text, len, lim->max_image_bytes, &bytes, &n, err);
    if (st != SD_OK) {
      api_error_set(e, st == SD_ERR_LIMIT ? API_ERR_LIMIT : API_ERR_BAD_IMAGE, path, "%s: %s",
                    path, err);
      return -1;
    }
    raw = bytes;
    raw_len = n;
  } else if (raw_len > lim->max_image_bytes) {
    api_error_set(e, API_ERR_LIMIT, path, "%s: %zu bytes is more than the limit of %zu", path,
                  raw_len, lim->max_image_bytes);
    return -1;
  }
  api_png_limits pl;
  api_png_limits_init(&pl);
  sd_status st = api_png_decode(raw, raw_len, &pl, out, err);
  free(bytes);
  if (st != SD_OK) {
    api_error_set(e, st == SD_ERR_LIMIT ? API_ERR_LIMIT : st == SD_ERR_NOMEM ? API_ERR_NOMEM
                                                                          : API_ERR_BAD_IMAGE,
                  path, "%s: %s", path, err);
    return -1;
  }
  return 0;
}

static const char *const unit_keys[] = {"image", "model", "preprocess", "low_threshold",
                                        "high_threshold", "scale", "start", "end", NULL};

/* Validate control unit i (object u, or NULL when only a raw image was given). */
static int parse_unit(const cJSON *u, int i, const api_raw_images *raw, const api_limits *lim,
                      api_gen_request *r, api_error *e) {
  char path[48];
  sd_control_unit *cu = &r->units[i];
  sd_control_unit_init(cu);
  snprintf(path, sizeof path, "control[%d]", i);
  if (u && !cJSON_IsObject(u))
    return api_error_set(e, API_ERR_BAD_TYPE, path, "%s must be an object", path), -1;
  if (u && check_keys(u, unit_keys, path, e)) return -1;
  /* which net */
  const char *model = NULL;
  snprintf(path, sizeof path, "control[%d].model", i);
  if (u && get_str(u, "model", path, &model, e) < 0) return -1;
  int k = -1;
  if (lim->n_controlnets == 0)
    return api_error_set(e, API_ERR_BAD_VALUE, "control",
                         "this server has no ControlNet loaded"), -1;
  if (model) {
    for (int j = 0; j < lim->n_controlnets && k < 0; j++)
      if (strcmp(lim->controlnets[j].name, model) == 0) k = j;
    if (k < 0)
      return api_error_set(e, API_ERR_BAD_VALUE, path, "no ControlNet named '%.64s' is loaded",
                           model), -1;
  } else {
    k = lim->n_controlnets == 1 ? 0 : i;
    if (k >= lim->n_controlnets)
      return api_error_set(e, API_ERR_BAD_VALUE, path,
                           "unit %d needs \"model\": only %d ControlNets are loaded", i,
                           lim->n_controlnets), -1;
  }
  cu->net = lim->controlnets[k].net;
  r->control_names[i] = lim->controlnets[k].name;
  /* numbers */
  snprintf(path, sizeof path, "control[%d].scale", i);
  if (u && get_float(u, "scale", path, 0.0, 10.0, &cu->scale, e) < 0) return -1;
  snprintf(path, sizeof path, "control[%d].start", i);
  if (u && get_float(u, "start", path, 0.0, 1.0, &cu->start, e) < 0) return -1;
  snprintf(path, sizeof path, "control[%d].end", i);
  if (u && get_float(u, "end", path, 0.0, 1.0, &cu->end, e) < 0) return -1;
  if (cu->start > cu->end)
    return api_error_set(e, API_ERR_BAD_VALUE, path, "control[%d]: start %g is after end %g",
                         i, (double)cu->start, (double)cu->end), -1;
  const char *pre = "none";
  snprintf(path, sizeof path, "control[%d].preprocess", i);
  if (u && get_str(u, "preprocess", path, &pre, e) < 0) return -1;
  if (strcmp(pre, "none") != 0 && strcmp(pre, "canny") != 0)
    return api_error_set(e, API_ERR_BAD_VALUE, path,
                         "%s must be \"none\" or \"canny\" (got \"%.32s\")", path, pre), -1;
  snprintf(r->preprocess[i], sizeof r->preprocess[i], "%s", pre);
  double lo = 100, hi = 200; /* A1111 ControlNet extension defaults */
  snprintf(path, sizeof path, "control[%d].low_threshold", i);
  if (u && get_num(u, "low_threshold", path, 0, 10000, 0, &lo, e) < 0) return -1;
  snprintf(path, sizeof path, "control[%d].high_threshold", i);
  if (u && get_num(u, "high_threshold", path, 0, 10000, 0, &hi, e) < 0) return -1;
  /* image */
  snprintf(path, sizeof path, "control[%d].image", i);
  const char *img = NULL;
  if (u && get_str(u, "image", path, &img, e) < 0) return -1;
  const uint8_t *rb = raw ? raw->control[i] : NULL;
  if (!img && !rb)
    return api_error_set(e, API_ERR_BAD_VALUE, path, "%s is required", path), -1;
  api_png_image *pi = &r->control_img[i];
  if (decode_image(img, rb, rb ? raw->control_len[i] : 0, lim, path, pi, e)) return -1;
  if ((long long)pi->width * pi->height > 4 * lim->max_pixels)
    return api_error_set(e, API_ERR_LIMIT, path, "%s is %dx%d, too many pixels", path,
                         pi->width, pi->height), -1;
  cu->rgb = pi->rgb;
  cu->width = pi->width;
  cu->height = pi->height;
  if (strcmp(pre, "canny") == 0) {
    size_t npx = (size_t)pi->width * (size_t)pi->height;
    uint8_t *edges = malloc(npx), *rgb = malloc(npx * 3);
    sd_status st = edges && rgb ? sd_canny(pi->rgb, pi->width, pi->height, lo, hi, edges)
                                : SD_ERR_NOMEM;
    if (st != SD_OK) {
      free(edges);
      free(rgb);
      return api_error_set(e, api_err_from_status(st), path, "%s: Canny failed: %s", path,
                           sd_status_str(st)), -1;
    }
    for (size_t p = 0; p < npx; p++) rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = edges[p];
    free(edges);
    r->canny[i] = rgb;
    cu->rgb = rgb;
  }
  return 0;
}

static int parse_control(const cJSON *obj, const api_raw_images *raw, const api_limits *lim,
                         api_gen_request *r, api_error *e) {
  const cJSON *c = field(obj, "control");
  int nraw = 0;
  for (int i = 0; raw && i < SD_MAX_CONTROL; i++)
    if (raw->control[i]) nraw = i + 1;
  int n = 0;
  if (c && cJSON_IsArray(c)) {
    n = cJSON_GetArraySize(c);
    if (n > SD_MAX_CONTROL)
      return api_error_set(e, API_ERR_LIMIT, "control", "at most %d control units",
                           SD_MAX_CONTROL), -1;
  } else if (c && cJSON_IsObject(c)) {
    n = 1;
  } else if (c) {
    return api_error_set(e, API_ERR_BAD_TYPE, "control",
                         "control must be an object or an array of objects"), -1;
  }
  if (nraw > n) n = nraw;
  for (int i = 0; i < n; i++) {
    const cJSON *u = !c ? NULL : cJSON_IsArray(c) ? cJSON_GetArrayItem(c, i) : i == 0 ? c : NULL;
    if (parse_unit(u, i, raw, lim, r, e)) return -1;
  }
  r->rq.control = n ? r->units : NULL;
  r->rq.ncontrol = n;
  return 0;
}

/* ---- the request ------------------------------------------------------------------------- */

static const char *const top_keys[] = {
    "prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height", "sampler",
    "scheduler", "batch_size", "stream", "init_image", "strength", "control", "model", NULL};

static int sampler_resolve(const char *name, const char **out) {
  for (const char *const *s = sd_sampler_names; *s; s++) {
    const char *label = sd_sampler_label(*s);
    if (strcmp(*s, name) == 0 || (label && strcasecmp(label, name) == 0)) {
      *out = *s;
      return 0;
    }
  }
  return -1;
}

static int parse_seed(const cJSON *obj, api_gen_request *r, api_error *e) {
  const cJSON *v = field(obj, "seed");
  r->seed_random = 1;
  if (!v) return 0;
  if (cJSON_IsString(v)) {
    const char *s = v->valuestring;
    if (strcmp(s, "-1") == 0) return 0;
    uint64_t x = 0;
    if (!*s || strlen(s) > 20) goto bad_string;
    for (const char *p = s; *p; p++) {
      if (*p < '0' || *p > '9') goto bad_string;
      if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, (uint64_t)(*p - '0'), &x))
        goto bad_string;
    }
    r->rq.seed = x;
    r->seed_random = 0;
    return 0;
  bad_string:
    return api_error_set(e, API_ERR_BAD_VALUE, "seed",
                         "seed must be -1 or a decimal integer 0..18446744073709551615"), -1;
  }
  double d;
  if (get_num(obj, "seed", "seed", -1, 9007199254740992.0, 1, &d, e) < 0) return -1;
  if (d >= 0) {
    r->rq.seed = (uint64_t)d;
    r->seed_random = 0;
  }
  return 0;
}

static int parse_prompts(const cJSON *obj, const api_limits *lim, api_gen_request *r,
                         api_error *e) {
  const char *p = NULL, *np = NULL;
  int has = get_str(obj, "prompt", "prompt", &p, e);
  if (has < 0 || get_str(obj, "negative_prompt", "negative_prompt", &np, e) < 0) return -1;
  if (has == 0)
    return api_error_set(e, API_ERR_BAD_VALUE, "prompt", "prompt is required"), -1;
  if (utf8_count(p) > (size_t)lim->max_prompt_chars)
    return api_error_set(e, API_ERR_LIMIT, "prompt", "prompt is longer than %d characters",
                         lim->max_prompt_chars), -1;
  if (np && utf8_count(np) > (size_t)lim->max_prompt_chars)
    return api_error_set(e, API_ERR_LIMIT, "negative_prompt",
                         "negative_prompt is longer than %d characters",
                         lim->max_prompt_chars), -1;
  r->prompt = dup_str(p);
  r->negative_prompt = dup_str(np ? np : "");
  if (!r->prompt || !r->negative_prompt)
    return api_error_set(e, API_ERR_NOMEM, NULL, "out of memory"), -1;
  r->rq.prompt = r->prompt;
  r->rq.negative_prompt = r->negative_prompt;
  return 0;
}

static int parse_sampler(const cJSON *obj, api_gen_request *r, api_error *e) {
  const char *s = NULL, *s2 = NULL, *name = "euler_a", *name2 = NULL;
  if (get_str(obj, "sampler", "sampler", &s, e) < 0 ||
      get_str(obj, "scheduler", "scheduler", &s2, e) < 0)
    return -1;
  if (s && sampler_resolve(s, &name))
    return api_error_set(e, API_ERR_BAD_VALUE, "sampler", "unknown sampler '%.64s'", s), -1;
  if (s2 && sampler_resolve(s2, &name2))
    return api_error_set(e, API_ERR_BAD_VALUE, "scheduler", "unknown sampler '%.64s'", s2), -1;
  if (s && s2 && strcmp(name, name2) != 0)
    return api_error_set(e, API_ERR_BAD_VALUE, "scheduler",
                         "sampler and scheduler name different samplers"), -1;
  if (!s && s2) name = name2;
  r->sampler = dup_str(name);
  if (!r->sampler) return api_error_set(e, API_ERR_NOMEM, NULL, "out of memory"), -1;
  r->rq.sampler = r->sampler;
  return 0;
}

static int parse_size(const cJSON *obj, const api_raw_images *raw, const api_limits *lim,
                      api_gen_request *r, api_error *e) {
  int w = 0, h = 0;
  if (get_int(obj, "width", "width", 8, 4096, &w, e) < 0 ||
      get_int(obj, "height", "height", 8, 4096, &h, e) < 0)
    return -1;
  if (w % 8) return api_error_set(e, API_ERR_BAD_VALUE, "width", "width must be a multiple of 8"), -1;
  if (h % 8) return api_error_set(e, API_ERR_BAD_VALUE, "height", "height must be a multiple of 8"), -1;
  const char *init = NULL;
  if (get_str(obj, "init_image", "init_image", &init, e) < 0) return -1;
  int has_strength = get_float(obj, "strength", "strength", 0.0, 1.0, &r->rq.strength, e);
  if (has_strength < 0) return -1;
  const uint8_t *rb = raw ? raw->init : NULL;
  if (init || rb) {
    if (decode_image(init, rb, rb ? raw->init_len : 0, lim, "init_image", &r->init, e)) return -1;
    int iw = r->init.width, ih = r->init.height;
    if (iw % 8 || ih % 8)
      return api_error_set(e, API_ERR_BAD_VALUE, "init_image",
                           "init_image is %dx%d: sides must be multiples of 8", iw, ih), -1;
    if ((w && w != iw) || (h && h != ih))
      return api_error_set(e, API_ERR_BAD_VALUE, "init_image",
                           "init_image is %dx%d but width/height ask for %dx%d", iw, ih,
                           w ? w : iw, h ? h : ih), -1;
    w = iw, h = ih;
    r->rq.init_rgb = r->init.rgb;
  } else if (has_strength) {
    return api_error_set(e, API_ERR_BAD_VALUE, "strength",
                         "strength only applies with init_image"), -1;
  }
  if (!w) w = lim->native_width;
  if (!h) h = lim->native_height;
  if ((long long)w * h > lim->max_pixels)
    return api_error_set(e, API_ERR_LIMIT, "width", "%dx%d is more than %lld pixels", w, h,
                         lim->max_pixels), -1;
  r->rq.width = w;
  r->rq.height = h;
  return 0;
}

api_err api_request_from_cjson(const void *cjson_object, const api_raw_images *raw,
                               const api_limits *lim, api_gen_request *r, api_error *e) {
  const cJSON *obj = cjson_object;
  memset(r, 0, sizeof *r);
  sd_request_init(&r->rq);
  r->batch_size = 1;
  if (!cJSON_IsObject(obj))
    return api_error_set(e, API_ERR_BAD_JSON, NULL, "the body must be a JSON object");
  if (check_keys(obj, top_keys, "the request", e)) return e->kind;
  const char *model = NULL;
  if (get_str(obj, "model", "model", &model, e) < 0 || parse_prompts(obj, lim, r, e) ||
      parse_seed(obj, r, e) || parse_sampler(obj, r, e) ||
      get_int_capped(obj, "steps", 1, 1000, lim->max_steps, &r->rq.steps, e) < 0 ||
      get_float(obj, "cfg_scale", "cfg_scale", 0.0, 100.0, &r->rq.cfg_scale, e) < 0 ||
      get_int_capped(obj, "batch_size", 1, 1000, lim->max_batch, &r->batch_size, e) < 0 ||
      get_bool(obj, "stream", "stream", &r->stream, e) < 0 || parse_size(obj, raw, lim, r, e) ||
      parse_control(obj, raw, lim, r, e))
    return e->kind;
  return API_OK;
}

api_err api_request_parse(const char *body, size_t len, const api_limits *lim,
                          api_gen_request *r, api_error *e) {
  memset(r, 0, sizeof *r);
  if (has_nul_escape(body, len))
    return api_error_set(e, API_ERR_BAD_VALUE, NULL, "strings must not contain \\u0000");
  cJSON *root = cJSON_ParseWithLength(body, len);
  if (!root) {
    const char *where = cJSON_GetErrorPtr();
    long off = where && where >= body && where <= body + len ? (long)(where - body) : -1;
    return api_error_set(e, API_ERR_BAD_JSON, NULL, "the body is not valid JSON (near byte %ld)",
                         off);
  }
  api_err k = api_request_from_cjson(root, NULL, lim, r, e);
  cJSON_Delete(root);
  return k;
}

void api_gen_request_free(api_gen_request *r) {
  if (!r) return;
  free(r->prompt);
  free(r->negative_prompt);
  free(r->sampler);
  api_png_image_free(&r->init);
  for (int i = 0; i < SD_MAX_CONTROL; i++) {
    api_png_image_free(&r->control_img[i]);
    free(r->canny[i]);
  }
  memset(r, 0, sizeof *r);
}

void api_gen_request_drop_images(api_gen_request *r) {
  if (r->rq.init_rgb) r->had_init = 1;
  r->rq.init_rgb = NULL;
  api_png_image_free(&r->init);
  for (int i = 0; i < SD_MAX_CONTROL; i++) {
    api_png_image_free(&r->control_img[i]);
    free(r->canny[i]);
    r->canny[i] = NULL;
    r->units[i].rgb = NULL;
  }
}

char *api_request_params_json(const api_gen_request *r, uint64_t seed, int width, int height) {
  cJSON *o = cJSON_CreateObject();
  char seedbuf[24];
  char *out = NULL;
  if (!o) return NULL;
  snprintf(seedbuf, sizeof seedbuf, "%llu", (unsigned long long)seed);
  /* the seed as a string too: JSON numbers above 2^53 lose digits in most clients */
  if (!cJSON_AddStringToObject(o, "prompt", r->rq.prompt ? r->rq.prompt : "") ||
      !cJSON_AddStringToObject(o, "negative_prompt",
                               r->rq.negative_prompt ? r->rq.negative_prompt : "") ||
      !cJSON_AddNumberToObject(o, "seed", (double)seed) ||
      !cJSON_AddStringToObject(o, "seed_str", seedbuf) ||
      !cJSON_AddNumberToObject(o, "steps", r->rq.steps) ||
      !cJSON_AddNumberToObject(o, "cfg_scale", r->rq.cfg_scale) ||
      !cJSON_AddStringToObject(o, "sampler", r->rq.sampler ? r->rq.sampler : "") ||
      !cJSON_AddNumberToObject(o, "width", width) ||
      !cJSON_AddNumberToObject(o, "height", height) ||
      !cJSON_AddNumberToObject(o, "batch_size", r->batch_size))
    goto out_free;
  if ((r->rq.init_rgb || r->had_init) &&
      !cJSON_AddNumberToObject(o, "strength", r->rq.strength))
    goto out_free;
  if (r->rq.ncontrol) {
    cJSON *arr = cJSON_AddArrayToObject(o, "control");
    if (!arr) goto out_free;
    for (int i = 0; i < r->rq.ncontrol; i++) {
      cJSON *u = cJSON_CreateObject();
      if (!u) goto out_free;
      cJSON_AddItemToArray(arr, u);
      if (!cJSON_AddStringToObject(u, "model", r->control_names[i] ? r->control_names[i] : "") ||
          !cJSON_AddStringToObject(u, "preprocess", r->preprocess[i]) ||
          !cJSON_AddNumberToObject(u, "scale", r->units[i].scale) ||
          !cJSON_AddNumberToObject(u, "start", r->units[i].start) ||
          !cJSON_AddNumberToObject(u, "end", r->units[i].end))
        goto out_free;
    }
  }
  out = cJSON_PrintUnformatted(o);
out_free:
  cJSON_Delete(o);
  return out;
}

/* ---- multipart/form-data ------------------------------------------------------------------ */

static int is_text_field(const char *name) {
  return !strcmp(name, "prompt") || !strcmp(name, "negative_prompt") ||
         !strcmp(name, "sampler") || !strcmp(name, "scheduler") || !strcmp(name, "model") ||
         !strcmp(name, "seed");
}

/* Raw image slot for a file part name: -2 init, 0..SD_MAX_CONTROL-1 control, -1 none. */
static int image_slot(const char *name) {
  if (!strcmp(name, "init_image")) return -2;
  if (!strcmp(name, "control_image")) return 0;
  if (!strncmp(name, "control_image_", 14) && name[14] >= '0' && name[14] <= '7' && !name[15])
    return name[14] - '0';
  return -1;
}

api_err api_request_parse_form(const struct api_form *form, const api_limits *lim,
                               api_gen_request *r, api_error *e) {
  memset(r, 0, sizeof *r);
  api_raw_images raw;
  memset(&raw, 0, sizeof raw);
  cJSON *root = NULL;
  const api_part *base = api_form_get(form, "request");
  if (base) {
    if (has_nul_escape((const char *)base->data, base->len))
      return api_error_set(e, API_ERR_BAD_VALUE, "request", "strings must not contain \\u0000");
    root = cJSON_ParseWithLength((const char *)base->data, base->len);
    if (!root || !cJSON_IsObject(root)) {
      cJSON_Delete(root);
      return api_error_set(e, API_ERR_BAD_JSON, "request",
                           "the \"request\" part is not a JSON object");
    }
  } else if (!(root = cJSON_CreateObject())) {
    return api_error_set(e, API_ERR_NOMEM, NULL, "out of memory");
  }
  api_err k = API_OK;
  for (int i = 0; i < form->nparts && k == API_OK; i++) {
    const api_part *p = &form->parts[i];
    if (p == base) continue;
    int slot = image_slot(p->name);
    if (slot != -1) {
      if (slot == -2) raw.init = p->data, raw.init_len = p->len;
      else raw.control[slot] = p->data, raw.control_len[slot] = p->len;
      continue;
    }
    if (p->filename) {
      k = api_error_set(e, API_ERR_BAD_VALUE, p->name, "unexpected file part '%.64s'", p->name);
      break;
    }
    const char *const *a = top_keys;
    while (*a && strcmp(*a, p->name) != 0) a++;
    if (!*a || !strcmp(p->name, "control")) {
      k = api_error_set(e, API_ERR_BAD_VALUE, p->name, "unknown form field '%.64s'", p->name);
      break;
    }
    cJSON *v = NULL;
    if (memchr(p->data, 0, p->len)) {
      k = api_error_set(e, API_ERR_BAD_VALUE, p->name, "%s contains a NUL byte", p->name);
      break;
    }
    char *text = malloc(p->len + 1);
    if (text) {
      memcpy(text, p->data, p->len);
      text[p->len] = '\0';
      int as_text = is_text_field(p->name) && !(strcmp(p->name, "seed") == 0 &&
                                                 strcmp(text, "-1") == 0);
      v = as_text ? cJSON_CreateString(text) : cJSON_ParseWithLength(text, p->len);
      free(text);
    }
    if (!v) {
      k = api_error_set(e, text ? API_ERR_BAD_TYPE : API_ERR_NOMEM, p->name,
                        "form field %s: not a valid value", p->name);
      break;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, p->name))
      cJSON_ReplaceItemInObjectCaseSensitive(root, p->name, v);
    else
      cJSON_AddItemToObject(root, p->name, v);
  }
  if (k == API_OK) k = api_request_from_cjson(root, &raw, lim, r, e);
  cJSON_Delete(root);
  return k;
}
