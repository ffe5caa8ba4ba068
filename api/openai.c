/* openai.c: OpenAI Images API bodies -> native requests, and OpenAI-shaped answers, errors
 * and stream events (openai.h).
 *
 * Like a1111.c this builds a native request object and validates it with
 * api_request_from_cjson, so limits, samplers and seeds mean what they mean in POST /generate.
 */
#include "openai.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static const cJSON *get(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Copy o[key] to n[as] when present (the native parser checks its type and range). */
static int pass(const cJSON *o, const char *key, cJSON *n, const char *as) {
  const cJSON *v = get(o, key);
  if (!v) return 0;
  cJSON *d = cJSON_Duplicate(v, 1);
  return d && cJSON_AddItemToObject(n, as, d) ? 0 : -1;
}

/* "512x768" -> 512, 768; "auto" -> 0, 0. -1 if malformed. */
static int parse_size(const char *s, int *w, int *h) {
  if (!strcmp(s, "auto")) return *w = *h = 0, 0;
  char *end;
  long a = strtol(s, &end, 10);
  if (end == s || (*end != 'x' && *end != 'X')) return -1;
  const char *p = end + 1;
  long b = strtol(p, &end, 10);
  if (end == p || *end || a < 8 || b < 8 || a > 65536 || b > 65536) return -1;
  *w = (int)a;
  *h = (int)b;
  return 0;
}

static int translate(const cJSON *o, const api_limits *lim, cJSON *n, api_openai_extra *x,
                     api_error *e) {
  const cJSON *p = get(o, "prompt");
  if (!p)
    return api_error_set(e, API_ERR_BAD_VALUE, "prompt", "prompt is required"), -1;
  const cJSON *v = get(o, "n");
  x->n = 1;
  if (v) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
      return api_error_set(e, API_ERR_BAD_TYPE, "n", "n must be an integer"), -1;
    if (v->valuedouble < 1 || v->valuedouble > lim->max_batch)
      return api_error_set(e, API_ERR_LIMIT, "n", "n must be from 1 to %d", lim->max_batch), -1;
    x->n = (int)v->valuedouble;
  }
  int w = 0, h = 0;
  v = get(o, "size");
  if (v && (!cJSON_IsString(v) || parse_size(v->valuestring, &w, &h)))
    return api_error_set(e, API_ERR_BAD_VALUE, "size",
                         "size must be \"WIDTHxHEIGHT\" (e.g. \"512x512\") or \"auto\""), -1;
  if (!w) {
    w = lim->native_width;
    h = lim->native_height;
  }
  snprintf(x->size, sizeof x->size, "%dx%d", w, h);
  v = get(o, "response_format");
  if (v && (!cJSON_IsString(v) || (strcmp(v->valuestring, "b64_json") && strcmp(v->valuestring, "url"))))
    return api_error_set(e, API_ERR_BAD_VALUE, "response_format",
                         "response_format must be \"b64_json\" or \"url\""), -1;
  x->want_url = v && !strcmp(v->valuestring, "url");
  v = get(o, "output_format");
  if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "png")))
    return api_error_set(e, API_ERR_BAD_VALUE, "output_format",
                         "output_format must be \"png\" (the only format served)"), -1;
  v = get(o, "stream");
  if (v && !cJSON_IsBool(v))
    return api_error_set(e, API_ERR_BAD_TYPE, "stream", "stream must be a boolean"), -1;
  x->stream = v && cJSON_IsTrue(v);
  v = get(o, "partial_images");
  if (v && (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 3 ||
            v->valuedouble != floor(v->valuedouble)))
    return api_error_set(e, API_ERR_BAD_VALUE, "partial_images",
                         "partial_images must be an integer from 0 to 3"), -1;
  x->partial_images = v ? (int)v->valuedouble : 0;
  if (pass(o, "prompt", n, "prompt") || pass(o, "negative_prompt", n, "negative_prompt") ||
      pass(o, "seed", n, "seed") || pass(o, "steps", n, "steps") ||
      pass(o, "cfg_scale", n, "cfg_scale") || pass(o, "sampler", n, "sampler") ||
      pass(o, "scheduler", n, "scheduler") || !cJSON_AddNumberToObject(n, "width", w) ||
      !cJSON_AddNumberToObject(n, "height", h) ||
      !cJSON_AddNumberToObject(n, "batch_size", x->n))
    return api_error_set(e, API_ERR_NOMEM, NULL, "out of memory"), -1;
  return 0;
}

api_err api_openai_parse(const char *body, size_t len, const api_limits *lim,
                         api_gen_request *out, api_openai_extra *x, api_error *e) {
  memset(out, 0, sizeof *out);
  memset(x, 0, sizeof *x);
  cJSON *o = cJSON_ParseWithLength(body ? body : "", len), *n = NULL;
  if (!o || !cJSON_IsObject(o)) {
    api_error_set(e, API_ERR_BAD_JSON, NULL, "the body must be a JSON object");
    goto out;
  }
  if (!(n = cJSON_CreateObject())) {
    api_error_set(e, API_ERR_NOMEM, NULL, "out of memory");
    goto out;
  }
  if (translate(o, lim, n, x, e)) goto out;
  api_request_from_cjson(n, NULL, lim, out, e);
out:
  cJSON_Delete(n);
  cJSON_Delete(o);
  return e->kind;
}

char *api_openai_error_json(api_err kind, const char *message, const char *param) {
  cJSON *o = cJSON_CreateObject(), *er = o ? cJSON_AddObjectToObject(o, "error") : NULL;
  if (!er) {
    cJSON_Delete(o);
    return NULL;
  }
  int st = api_err_http_status(kind);
  cJSON_AddStringToObject(er, "message", message && *message ? message : api_err_code(kind));
  cJSON_AddStringToObject(er, "type", st >= 500 ? "server_error" : "invalid_request_error");
  if (param && *param) cJSON_AddStringToObject(er, "param", param);
  else cJSON_AddNullToObject(er, "param");
  cJSON_AddStringToObject(er, "code", api_err_code(kind));
  char *t = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return t;
}

char *api_openai_response(const api_openai_extra *x, long long created,
                          const char *const *items, int n) {
  cJSON *o = cJSON_CreateObject(), *d = o ? cJSON_AddArrayToObject(o, "data") : NULL;
  char *t = NULL;
  if (!d) goto out;
  cJSON_AddNumberToObject(o, "created", (double)created);
  for (int i = 0; i < n; i++) {
    cJSON *it = cJSON_CreateObject();
    if (!it || !cJSON_AddItemToArray(d, it)) {
      cJSON_Delete(it);
      goto out;
    }
    if (!cJSON_AddStringToObject(it, x->want_url ? "url" : "b64_json", items[i])) goto out;
  }
  cJSON_AddStringToObject(o, "background", "opaque");
  cJSON_AddStringToObject(o, "output_format", "png");
  cJSON_AddStringToObject(o, "quality", "auto");
  cJSON_AddStringToObject(o, "size", x->size);
  t = cJSON_PrintUnformatted(o);
out:
  cJSON_Delete(o);
  return t;
}

char *api_openai_event_json(const api_openai_extra *x, long long created, const char *b64,
                            int index) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddStringToObject(o, "type", index >= 0 ? "image_generation.partial_image"
                                                : "image_generation.completed");
  cJSON_AddStringToObject(o, "b64_json", b64 ? b64 : "");
  cJSON_AddNumberToObject(o, "created_at", (double)created);
  cJSON_AddStringToObject(o, "size", x->size);
  cJSON_AddStringToObject(o, "quality", "auto");
  cJSON_AddStringToObject(o, "background", "opaque");
  cJSON_AddStringToObject(o, "output_format", "png");
  if (index >= 0) {
    cJSON_AddNumberToObject(o, "partial_image_index", index);
  } else {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "total_tokens", 0);
    cJSON_AddNumberToObject(u, "input_tokens", 0);
    cJSON_AddNumberToObject(u, "output_tokens", 0);
    cJSON *det = cJSON_AddObjectToObject(u, "input_tokens_details");
    cJSON_AddNumberToObject(det, "text_tokens", 0);
    cJSON_AddNumberToObject(det, "image_tokens", 0);
  }
  char *t = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return t;
}
