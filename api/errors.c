/* errors.c: the error table (see errors.h) and the JSON error body.
 *
 * Why these statuses: syntax and type errors are 400; a well-formed value that is out of
 * range or unknown is 422 (semantic, DESIGN.md section 4); overload and shutdown are 503 with
 * Retry-After so well-behaved clients (the openai package) retry; cancelled jobs use nginx's
 * 499 "client closed request", reported in job status and logs (a gone client reads nothing).
 */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

typedef struct err_row {
  api_err kind;
  int http;
  const char *code;
  int retry_after;
} err_row;

static const err_row err_table[] = {
    {API_OK, 200, "ok", 0},
    {API_ERR_BAD_JSON, 400, "invalid_json", 0},
    {API_ERR_BAD_TYPE, 400, "invalid_type", 0},
    {API_ERR_BAD_VALUE, 422, "invalid_value", 0},
    {API_ERR_BAD_IMAGE, 400, "invalid_image", 0},
    {API_ERR_LIMIT, 422, "limit_exceeded", 0},
    {API_ERR_UNAUTHORIZED, 401, "unauthorized", 0},
    {API_ERR_NOT_FOUND, 404, "not_found", 0},
    {API_ERR_METHOD, 405, "method_not_allowed", 0},
    {API_ERR_TOO_LARGE, 413, "body_too_large", 0},
    {API_ERR_MEDIA_TYPE, 415, "unsupported_media_type", 0},
    {API_ERR_QUEUE_FULL, 503, "queue_full", 1},
    {API_ERR_DRAINING, 503, "shutting_down", 1},
    {API_ERR_TIMEOUT, 504, "deadline_exceeded", 0},
    {API_ERR_CANCELLED, 499, "cancelled", 0},
    {API_ERR_NOMEM, 503, "out_of_memory", 1},
    {API_ERR_INTERNAL, 500, "internal_error", 0},
};
_Static_assert(sizeof err_table / sizeof err_table[0] == API_ERR__COUNT,
               "err_table needs one row per api_err");

static const err_row *err_find(api_err e) {
  if ((int)e < 0 || e >= API_ERR__COUNT) return &err_table[API_ERR_INTERNAL];
  return &err_table[e];
}

int api_err_http_status(api_err e) { return err_find(e)->http; }
const char *api_err_code(api_err e) { return err_find(e)->code; }
int api_err_retry_after(api_err e) { return err_find(e)->retry_after; }

api_err api_err_from_status(sd_status st) {
  switch (st) {
  case SD_OK: return API_OK;
  case SD_ERR_NOMEM: return API_ERR_NOMEM;
  case SD_ERR_FORMAT: return API_ERR_BAD_IMAGE; /* the only bytes a request brings are images */
  case SD_ERR_UNSUPPORTED:
  case SD_ERR_SHAPE:
  case SD_ERR_INVALID: return API_ERR_BAD_VALUE;
  case SD_ERR_CANCELLED: return API_ERR_CANCELLED;
  case SD_ERR_LIMIT: return API_ERR_LIMIT;
  case SD_ERR_IO:
  case SD_ERR_MISSING:
  case SD_ERR_INTERNAL:
  default: return API_ERR_INTERNAL;
  }
}

api_err api_error_set(api_error *e, api_err kind, const char *param, const char *fmt, ...) {
  if (!e) return kind;
  if (e->kind != API_OK) return e->kind;
  e->kind = kind;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
  snprintf(e->param, sizeof e->param, "%s", param ? param : "");
  return kind;
}

char *api_error_json(api_err kind, const char *message, const char *param) {
  cJSON *root = cJSON_CreateObject(), *inner = NULL;
  char *out = NULL;
  if (!root) return NULL;
  inner = cJSON_AddObjectToObject(root, "error");
  if (!inner || !cJSON_AddStringToObject(inner, "code", api_err_code(kind)) ||
      !cJSON_AddStringToObject(inner, "message", message ? message : api_err_code(kind)))
    goto out_free;
  if (param && param[0] ? !cJSON_AddStringToObject(inner, "param", param)
                        : !cJSON_AddNullToObject(inner, "param"))
    goto out_free;
  out = cJSON_PrintUnformatted(root);
out_free:
  cJSON_Delete(root);
  return out;
}
