/* srv_compat.h: the routes that speak other clients' languages, called from srv_http.c's
 * route table: AUTOMATIC1111 (/sdapi/v1/..., /controlnet/..., /internal/ping), the OpenAI
 * Images API (/v1/images/generations, /images/generations, results by URL), and the web page
 * (GET /, /app.js, /style.css, embedded at build time). Internal to server/.
 *
 * Flow (the same as POST /generate's, in srv_http.c): first call -> srv_compat_first answers
 * GET routes or asks for the body; final call -> srv_compat_post (routes without a job) or
 * srv_compat_parse (fills the job's request; the connection then waits or streams); resumed
 * -> srv_compat_answer; request completed -> srv_compat_ctx_free.
 */
#ifndef SRV_COMPAT_H
#define SRV_COMPAT_H

#include <stddef.h>

#include "srv.h"

struct MHD_Response;
struct MHD_Connection;

/* Routes (0 = not a compat route). */
enum {
  SRV_C_NONE = 0, SRV_C_WEB, SRV_C_PING, SRV_C_TXT2IMG, SRV_C_IMG2IMG, SRV_C_SAMPLERS,
  SRV_C_SCHEDULERS, SRV_C_SD_MODELS, SRV_C_OPTIONS, SRV_C_PROGRESS, SRV_C_INTERRUPT,
  SRV_C_CN_MODELS, SRV_C_CN_MODULES, SRV_C_OAI_GEN, SRV_C_OAI_RESULT
};

/* State shared by the compat routes: posted options, the jobs A1111 progress/interrupt see,
 * the OpenAI url result store. Created before the HTTP daemon starts, destroyed after it
 * stopped (srv_compat_destroy accepts NULL). */
typedef struct srv_compat srv_compat;
srv_compat *srv_compat_create(void);
void srv_compat_destroy(srv_compat *c);

/* The compat route of a URL path, or SRV_C_NONE. */
int srv_compat_route(const char *url);
/* Whether a route is served without authentication (the web page's files, url results). */
int srv_compat_public(int route);
/* Whether HTTP Basic credentials are configured (cfg.api_auth), and whether an
 * Authorization header carries one of them (constant time in the credential's length). */
int srv_compat_basic_set(const srv_server *s);
int srv_compat_basic_ok(const srv_server *s, const char *authorization);

/* First call. Returns 1 when the route needs the request body (a POST); otherwise 0 with
 * *r (NULL = out of memory) and *status set: GET answers, 404 and 405. */
int srv_compat_first(srv_server *s, int route, const char *method, const char *url,
                     int *status, struct MHD_Response **r);

/* Whether a POST route runs a generation job (else srv_compat_post answers it). */
int srv_compat_generates(int route);
/* POST routes without a job (options, interrupt): the answer, NULL when out of memory. */
struct MHD_Response *srv_compat_post(srv_server *s, int route, const char *body, size_t len,
                                     int *status);

/* Parse a generation body into j->req. *ctx receives per-request state (free with
 * srv_compat_ctx_free, also after a failure). *sse is set when the answer is a stream.
 * c gives the Host header (for result URLs). API_OK or the error with *e set. */
api_err srv_compat_parse(srv_server *s, int route, struct MHD_Connection *c, const char *body,
                         size_t len, srv_job *j, void **ctx, int *sse, api_error *e);
/* The job was enqueued: A1111 progress and interrupt now see it. */
void srv_compat_enqueued(srv_server *s, void *ctx, srv_job *j);
/* The answer of a finished job (status set), NULL when out of memory. */
struct MHD_Response *srv_compat_answer(srv_server *s, int route, void *ctx, srv_job *j,
                                       int *status);
/* The streamed answer of an OpenAI stream job (a translating reader over j's SSE bytes).
 * Takes over one reference of j when it succeeds; NULL when out of memory. */
struct MHD_Response *srv_compat_sse(srv_server *s, void *ctx, srv_job *j);
/* Error body in the route's dialect (A1111 {"error","detail",...} or OpenAI's), malloc'ed. */
char *srv_compat_error_json(int route, api_err kind, const char *msg, const char *param);
/* The request is over. Accepts NULL. */
void srv_compat_ctx_free(srv_server *s, void *ctx);

#endif
