/* errors.h: the ONE table from error kinds (engine statuses and API-level failures) to HTTP
 * status codes and the JSON error body {"error": {"code", "message", "param"}}.
 *
 * Everything that answers an error over HTTP goes through api_error_kind -> this table, so a
 * given failure always has the same status and code string. Pure formatting: no HTTP library.
 */
#ifndef API_ERRORS_H
#define API_ERRORS_H

#include <stddef.h>

#include "sd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Error kinds. The table in errors.c gives each its HTTP status and wire code. */
typedef enum api_err {
  API_OK = 0,
  API_ERR_BAD_JSON,         /* 400 invalid_json: body is not JSON, or not an object */
  API_ERR_BAD_TYPE,         /* 400 invalid_type: a field has the wrong JSON type */
  API_ERR_BAD_VALUE,        /* 422 invalid_value: out of range, not integral, unknown name */
  API_ERR_BAD_IMAGE,        /* 400 invalid_image: bad base64 or undecodable PNG */
  API_ERR_LIMIT,            /* 422 limit_exceeded: pixels, steps, prompt length, batch */
  API_ERR_UNAUTHORIZED,     /* 401 unauthorized: missing or wrong API key */
  API_ERR_NOT_FOUND,        /* 404 not_found: no such route or job */
  API_ERR_METHOD,           /* 405 method_not_allowed */
  API_ERR_TOO_LARGE,        /* 413 body_too_large: body above the configured cap */
  API_ERR_MEDIA_TYPE,       /* 415 unsupported_media_type */
  API_ERR_QUEUE_FULL,       /* 503 queue_full (with Retry-After) */
  API_ERR_DRAINING,         /* 503 shutting_down (with Retry-After) */
  API_ERR_TIMEOUT,          /* 504 deadline_exceeded: the job missed its deadline */
  API_ERR_CANCELLED,        /* 499 cancelled: the job was cancelled (client or DELETE) */
  API_ERR_NOMEM,            /* 503 out_of_memory: transient, retry later */
  API_ERR_INTERNAL,         /* 500 internal_error */
  API_ERR__COUNT
} api_err;

/* HTTP status of a kind (500 for an unknown kind). */
int api_err_http_status(api_err e);

/* Wire code of a kind, e.g. "invalid_value". Never NULL. */
const char *api_err_code(api_err e);

/* Whether answers of this kind carry a Retry-After header (queue full, draining, no memory). */
int api_err_retry_after(api_err e);

/* The kind an engine status maps to (SD_OK -> API_OK). */
api_err api_err_from_status(sd_status st);

/* An error being carried out of a parser: kind, one-line message, and the offending field
 * (dotted path like "control.scale", "" when none). */
typedef struct api_error {
  api_err kind;
  char message[256];
  char param[64];
} api_error;

/* Record an error unless one is already recorded (the first, most specific, wins). param
 * may be NULL. Returns the kind now recorded. */
api_err api_error_set(api_error *e, api_err kind, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The JSON body {"error": {"code": ..., "message": ..., "param": ...|null}} as a malloc'ed
 * NUL-terminated string (caller frees); param NULL or "" gives null. NULL when out of
 * memory. */
char *api_error_json(api_err kind, const char *message, const char *param);

#ifdef __cplusplus
}
#endif
#endif
