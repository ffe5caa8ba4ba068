/* srv_http.c: the libmicrohttpd front end: routing, limits, auth, CORS, and the answers.
 *
 * Handlers never block. On the first call for a request (headers only) we route it and
 * answer at once what needs no body: 401 (before reading it), 413 from Content-Length, 503
 * while draining, GET routes. Bodies are collected up to the cap (chunked bodies are counted;
 * the verdict is kept and given on the final call, when MHD allows a response). The final call
 * parses and validates, enqueues a job, and suspends the connection; the loop resumes it when
 * the job ends and MHD calls us again to queue the answer. SSE streams are responses whose
 * reader suspends itself when it has nothing to send and is resumed by each new event.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "multipart.h"
#include "srv.h"
#include "srv_compat.h"

/* Per-request state, MHD's con_cls. */
typedef struct srv_req {
  uint64_t id;
  int route;
  int is_get, is_post, is_delete;
  double t0;
  int status;                 /* status of the answer queued, 0 = none yet */
  api_error verdict;          /* an error decided while the body was arriving */
  char *body;
  size_t body_len, body_cap;
  int multipart;
  char boundary[72];
  srv_job *job;               /* generation job waited on (PNG / SSE), with a reference */
  int holds_open;             /* counted in srv_server.open_jobs_conns */
  int answered;
  int compat;                 /* srv_compat.c route (A1111, OpenAI, web page), 0 = native */
  void *compat_ctx;           /* its per-request state */
} srv_req;

static const char *route_methods(int route);

/* ---- responses --------------------------------------------------------------------------- */

static const char *header(struct MHD_Connection *c, const char *name) {
  return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* CORS: echo an allowed Origin (or "*" when the allow-list has "*"). */
static void add_cors(srv_server *s, struct MHD_Connection *c, struct MHD_Response *r) {
  const char *origin = header(c, "Origin");
  if (!origin) return;
  for (int i = 0; i < s->cfg.n_cors_origins; i++) {
    const char *o = s->cfg.cors_origins[i];
    if (strcmp(o, "*") == 0 || strcmp(o, origin) == 0) {
      MHD_add_response_header(r, "Access-Control-Allow-Origin", strcmp(o, "*") ? origin : "*");
      MHD_add_response_header(r, "Vary", "Origin");
      MHD_add_response_header(r, "Access-Control-Expose-Headers",
                              "X-Seed, X-Request-Id, X-Steps, X-Sampler, X-CFG-Scale, "
                              "X-Width, X-Height, Retry-After");
      return;
    }
  }
}

static enum MHD_Result queue(srv_server *s, struct MHD_Connection *c, srv_req *rq, int status,
                             struct MHD_Response *r) {
  char idbuf[24];
  snprintf(idbuf, sizeof idbuf, "%llu", (unsigned long long)rq->id);
  MHD_add_response_header(r, "X-Request-Id", idbuf);
  add_cors(s, c, r);
  if (atomic_load(&s->draining)) MHD_add_response_header(r, "Connection", "close");
  enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  rq->status = status;
  rq->answered = 1;
  /* counted when queued, before the client can have read it: MHD may call the completion
   * callback only some time after the last byte left, and /metrics must not lag behind
   * what clients have seen */
  if (ok == MHD_YES) srv_metrics_request(&s->metrics, rq->route, status);
  else rq->status = 0;
  return ok;
}

static enum MHD_Result answer_text(srv_server *s, struct MHD_Connection *c, srv_req *rq,
                                   int status, const char *ctype, char *body, size_t len) {
  /* body is malloc'ed and handed over */
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, body, body ? MHD_RESPMEM_MUST_FREE
                                                      : MHD_RESPMEM_PERSISTENT);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", ctype);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  return queue(s, c, rq, status, r);
}

static enum MHD_Result answer_json(srv_server *s, struct MHD_Connection *c, srv_req *rq,
                                   int status, char *json) {
  if (!json) return MHD_NO;
  return answer_text(s, c, rq, status, "application/json", json, strlen(json));
}

static enum MHD_Result answer_error(srv_server *s, struct MHD_Connection *c, srv_req *rq,
                                    api_err kind, const char *msg, const char *param) {
  char *json = rq->compat ? srv_compat_error_json(rq->compat, kind, msg, param)
                           : api_error_json(kind, msg, param);
  if (!json) return MHD_NO;
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(json);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "application/json");
  if (api_err_retry_after(kind)) {
    char ra[32];
    double v = s->cfg.retry_after_s;
    snprintf(ra, sizeof ra, "%lld", (long long)(v < 1 ? 1 : v + 0.999));
    MHD_add_response_header(r, "Retry-After", ra);
  }
  if (kind == API_ERR_UNAUTHORIZED) MHD_add_response_header(r, "WWW-Authenticate",
                            srv_compat_basic_set(s) ? "Basic realm=\"sdserve\"" : "Bearer");
  if (kind == API_ERR_METHOD) MHD_add_response_header(r, "Allow", route_methods(rq->route));
  if (kind == API_ERR_METHOD || kind == API_ERR_TOO_LARGE || kind == API_ERR_UNAUTHORIZED)
    MHD_add_response_header(r, "Connection", "close"); /* the body was not read */
  return queue(s, c, rq, api_err_http_status(kind), r);
}

/* ---- generation answers -------------------------------------------------------------------- */

typedef struct png_stream {
  srv_job *job;
} png_stream;

static ssize_t png_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  srv_job *j = cls;
  const srv_image *im = &j->images[0];
  if (pos >= im->len) return MHD_CONTENT_READER_END_OF_STREAM;
  size_t n = im->len - (size_t)pos;
  if (n > max) n = max;
  memcpy(buf, im->png + pos, n);
  return (ssize_t)n;
}

static void job_release(void *cls) { srv_job_unref(cls); }

/* The answer of a finished PNG job (called on the resumed connection). */
static enum MHD_Result answer_job(srv_server *s, struct MHD_Connection *c, srv_req *rq,
                                  srv_job *j) {
  if (rq->compat) { /* A1111 / OpenAI: a JSON answer */
    int st = 500;
    struct MHD_Response *r = srv_compat_answer(s, rq->compat, rq->compat_ctx, j, &st);
    return r ? queue(s, c, rq, st, r) : MHD_NO;
  }
  pthread_mutex_lock(&j->lock);
  srv_job_state st = j->state;
  api_err kind = j->err_kind;
  char msg[SD_ERRMSG_MAX];
  snprintf(msg, sizeof msg, "%s", j->err_msg);
  pthread_mutex_unlock(&j->lock);
  if (st != SRV_DONE || j->nimages < 1)
    return answer_error(s, c, rq, kind == API_OK ? API_ERR_INTERNAL : kind, msg, NULL);
  /* chunked (size unknown): bytes go out as the reader hands them over */
  srv_job_ref(j);
  struct MHD_Response *r =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, png_reader, j, job_release);
  if (!r) {
    srv_job_unref(j);
    return MHD_NO;
  }
  char v[64];
  MHD_add_response_header(r, "Content-Type", "image/png");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  snprintf(v, sizeof v, "%llu", (unsigned long long)j->images[0].seed);
  MHD_add_response_header(r, "X-Seed", v);
  snprintf(v, sizeof v, "%d", j->req.rq.steps);
  MHD_add_response_header(r, "X-Steps", v);
  MHD_add_response_header(r, "X-Sampler", j->req.rq.sampler);
  snprintf(v, sizeof v, "%.9g", (double)j->req.rq.cfg_scale);
  MHD_add_response_header(r, "X-CFG-Scale", v);
  snprintf(v, sizeof v, "%d", j->req.rq.width);
  MHD_add_response_header(r, "X-Width", v);
  snprintf(v, sizeof v, "%d", j->req.rq.height);
  MHD_add_response_header(r, "X-Height", v);
  snprintf(v, sizeof v, "%.3f", j->t_start - j->t_enqueue);
  MHD_add_response_header(r, "X-Queue-Seconds", v);
  snprintf(v, sizeof v, "%.3f", j->t_end - j->t_start);
  MHD_add_response_header(r, "X-Generation-Seconds", v);
  return queue(s, c, rq, 200, r);
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  srv_job *j = cls;
  ssize_t n = 0;
  pthread_mutex_lock(&j->lock);
  size_t avail = j->sse_len - j->sse_off;
  if (avail) {
    n = (ssize_t)(avail < max ? avail : max);
    memcpy(buf, j->sse + j->sse_off, (size_t)n);
    j->sse_off += (size_t)n;
    if (j->sse_off == j->sse_len) j->sse_off = j->sse_len = 0;
  } else if (j->sse_closed) {
    n = MHD_CONTENT_READER_END_OF_STREAM;
  } else if (j->conn && !j->conn_suspended) {
    j->conn_suspended = 1; /* resumed by the next event (srv_job_sse_locked) */
    MHD_suspend_connection(j->conn);
  }
  pthread_mutex_unlock(&j->lock);
  return n;
}

/* ---- routes ------------------------------------------------------------------------------ */

static int auth_ok(srv_server *s, struct MHD_Connection *c) {
  const char *key = s->cfg.api_key;
  if (srv_compat_basic_set(s)) { /* A1111's --api-auth: Basic credentials, or the Bearer key */
    if (srv_compat_basic_ok(s, header(c, "Authorization"))) return 1;
    if (!key || !key[0]) return 0;
  }
  if (!key || !key[0]) return 1;
  const char *h = header(c, "Authorization");
  if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
  h += 7;
  while (*h == ' ') h++;
  /* constant time in the key's length: no early exit on the first difference */
  size_t hl = strlen(h), kl = strlen(key);
  unsigned diff = (unsigned)(hl ^ kl);
  for (size_t i = 0; i < kl; i++) diff |= (unsigned char)key[i] ^ (unsigned char)(i < hl ? h[i] : 0);
  return diff == 0;
}

static enum MHD_Result answer_models(srv_server *s, struct MHD_Connection *c, srv_req *rq) {
  cJSON *o = cJSON_CreateObject(), *data = o ? cJSON_AddArrayToObject(o, "data") : NULL;
  cJSON *m = cJSON_CreateObject();
  if (!data || !m) {
    cJSON_Delete(o);
    cJSON_Delete(m);
    return MHD_NO;
  }
  cJSON_AddStringToObject(o, "object", "list");
  cJSON_AddItemToArray(data, m);
  cJSON_AddStringToObject(m, "id", s->info.name);
  cJSON_AddStringToObject(m, "object", "model");
  cJSON_AddNumberToObject(m, "created", 0);
  cJSON_AddStringToObject(m, "owned_by", "sdserve");
  cJSON_AddNumberToObject(m, "native_width", s->info.native_width);
  cJSON_AddNumberToObject(m, "native_height", s->info.native_height);
  cJSON *cn = cJSON_AddArrayToObject(m, "controlnets");
  for (int i = 0; cn && i < s->n_nets; i++)
    cJSON_AddItemToArray(cn, cJSON_CreateString(s->net_refs[i].name));
  cJSON *sm = cJSON_AddArrayToObject(m, "samplers");
  for (const char *const *n = sd_sampler_names; sm && *n; n++)
    cJSON_AddItemToArray(sm, cJSON_CreateString(*n));
  char *txt = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return answer_json(s, c, rq, 200, txt);
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...) {
  char *p = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&p, fmt, ap) < 0) p = NULL;
  va_end(ap);
  return p;
}

/* GET / DELETE /jobs/{id} */
static enum MHD_Result answer_job_route(srv_server *s, struct MHD_Connection *c, srv_req *rq,
                                        const char *id) {
  srv_job *j = srv_table_find(s, id);
  if (!j) return answer_error(s, c, rq, API_ERR_NOT_FOUND, "no such job (or it expired)", "id");
  int status = 200;
  if (rq->is_delete) {
    int zero = 0;
    atomic_compare_exchange_strong(&j->cancel, &zero, 1);
    if (srv_queue_remove(s, j)) {
      /* the queue's reference becomes the completion's */
      srv_job_complete(s, j, SRV_CANCELLED, API_ERR_CANCELLED, "cancelled by DELETE");
    } else {
      pthread_mutex_lock(&j->lock);
      if (j->state == SRV_RUNNING) status = 202; /* stops at the next step */
      pthread_mutex_unlock(&j->lock);
    }
  }
  char *txt = srv_job_status_json(j);
  srv_job_unref(j);
  return answer_json(s, c, rq, status, txt);
}

static uint64_t random_seed(void) {
  uint64_t x;
  if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) x = (uint64_t)(srv_now() * 1e9);
  return x;
}

/* Suspend c until job j ends (the loop resumes it), or answer now if it already has. The
 * decision is taken under the job's lock so a resume always follows our suspend. */
static enum MHD_Result wait_for_job(srv_server *s, struct MHD_Connection *c, srv_req *rq,
                                    srv_job *j) {
  pthread_mutex_lock(&j->lock);
  int finished = j->finished;
  if (!finished) {
    j->conn_suspended = 1;
    MHD_suspend_connection(c);
  }
  pthread_mutex_unlock(&j->lock);
  return finished ? answer_job(s, c, rq, j) : MHD_YES;
}

/* The final call of POST /generate or /jobs: parse, enqueue, suspend or stream. */
static enum MHD_Result start_generation(srv_server *s, struct MHD_Connection *c, srv_req *rq) {
  api_error e;
  memset(&e, 0, sizeof e);
  if (rq->compat && !srv_compat_generates(rq->compat)) { /* A1111 options, interrupt */
    int st = 200;
    struct MHD_Response *r = srv_compat_post(s, rq->compat, rq->body, rq->body_len, &st);
    free(rq->body);
    rq->body = NULL;
    return r ? queue(s, c, rq, st, r) : MHD_NO;
  }
  const char *accept = header(c, "Accept");
  srv_job_kind kind = rq->route == SRV_ROUTE_JOBS ? SRV_JOB_ASYNC : SRV_JOB_PNG;
  srv_job *j = srv_job_create(s, kind);
  if (!j) return answer_error(s, c, rq, API_ERR_NOMEM, "out of memory", NULL);
  api_err k;
  if (rq->compat) { /* A1111 / OpenAI body -> the same validated request */
    int sse = 0;
    k = srv_compat_parse(s, rq->compat, c, rq->body, rq->body_len, j, &rq->compat_ctx, &sse, &e);
    if (sse) kind = j->kind = SRV_JOB_SSE;
  } else if (rq->multipart) {
    api_form form;
    k = api_multipart_parse((const uint8_t *)rq->body, rq->body_len, rq->boundary, 64, &form,
                            &e);
    if (k == API_OK) k = api_request_parse_form(&form, &s->limits, &j->req, &e);
    api_form_free(&form);
  } else {
    k = api_request_parse(rq->body ? rq->body : "", rq->body_len, &s->limits, &j->req, &e);
  }
  free(rq->body);
  rq->body = NULL;
  if (k != API_OK) goto out_error;
  if (!rq->compat && kind == SRV_JOB_PNG && (j->req.stream || (accept && strstr(accept, "text/event-stream"))))
    kind = j->kind = SRV_JOB_SSE;
  if (!rq->compat && kind == SRV_JOB_PNG && j->req.batch_size > 1) {
    k = api_error_set(&e, API_ERR_BAD_VALUE, "batch_size",
                      "batch_size > 1 needs \"stream\": true or POST /jobs (one PNG per "
                      "response)");
    goto out_error;
  }
  if (j->req.seed_random) j->req.rq.seed = random_seed();
  j->req_id = rq->id;
  j->t_enqueue = srv_now();
  j->deadline = j->t_enqueue + s->cfg.request_timeout_s;
  j->total = j->req.rq.steps;
  if (kind != SRV_JOB_ASYNC) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->conn = c;
    j->fd = ci ? ci->connect_fd : -1;
  }
  int pos = 0;
  k = srv_queue_push(s, j, &pos);
  if (k != API_OK) {
    j->conn = NULL;
    api_error_set(&e, k, NULL, k == API_ERR_QUEUE_FULL
                                   ? "the queue is full, retry later"
                                   : "the server is shutting down, retry on another replica");
    goto out_error;
  }
  if (kind == SRV_JOB_ASYNC) {
    srv_table_add(s, j);
    char *txt = dup_printf("{\"id\":\"%s\",\"poll_url\":\"/jobs/%s\",\"status\":\"queued\","
                           "\"position\":%d}", j->id, j->id, pos);
    srv_job_unref(j);
    return answer_json(s, c, rq, 202, txt);
  }
  rq->job = j; /* our reference */
  if (rq->compat) srv_compat_enqueued(s, rq->compat_ctx, j);
  rq->holds_open = 1;
  atomic_fetch_add(&s->open_jobs_conns, 1);
  if (kind == SRV_JOB_SSE) {
    srv_job_ref(j);
    struct MHD_Response *r =
        rq->compat ? srv_compat_sse(s, rq->compat_ctx, j) /* OpenAI image_generation.* events */
                   : MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_reader, j,
                                                       job_release);
    if (!r) {
      srv_job_unref(j);
      atomic_store(&j->cancel, 1);
      return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    char ev[48];
    snprintf(ev, sizeof ev, "{\"position\":%d}", pos);
    pthread_mutex_lock(&j->lock);
    /* first in the stream although a fast worker may already have added progress events:
     * nothing has been sent yet (the response is queued below) */
    srv_job_sse_first_locked(j, "queued", ev);
    pthread_mutex_unlock(&j->lock);
    return queue(s, c, rq, 200, r);
  }
  return wait_for_job(s, c, rq, j);

out_error:
  srv_job_unref(j);
  return answer_error(s, c, rq, e.kind, e.message, e.param);
}

/* Route a new request; returns the route and fills *id_out for /jobs/{id}. */
static int route_of(const char *url, const char **id_out) {
  *id_out = NULL;
  if (!strcmp(url, "/generate")) return SRV_ROUTE_GENERATE;
  if (!strcmp(url, "/jobs")) return SRV_ROUTE_JOBS;
  if (!strncmp(url, "/jobs/", 6) && url[6]) {
    *id_out = url + 6;
    return SRV_ROUTE_JOB;
  }
  if (!strcmp(url, "/healthz")) return SRV_ROUTE_HEALTHZ;
  if (!strcmp(url, "/readyz")) return SRV_ROUTE_READYZ;
  if (!strcmp(url, "/metrics")) return SRV_ROUTE_METRICS;
  if (!strcmp(url, "/v1/models") || !strcmp(url, "/models")) return SRV_ROUTE_MODELS;
  if (srv_compat_route(url)) return SRV_ROUTE_COMPAT;
  return SRV_ROUTE_OTHER;
}

/* The first call: headers are in, the body (if any) is not. */
static enum MHD_Result first_call(srv_server *s, struct MHD_Connection *c, srv_req *rq,
                                  const char *url, const char *method) {
  const char *id;
  rq->route = route_of(url, &id);
  rq->is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
  rq->is_post = !strcmp(method, "POST");
  rq->is_delete = !strcmp(method, "DELETE");
  rq->compat = rq->route == SRV_ROUTE_COMPAT ? srv_compat_route(url) : 0;
  if (!strcmp(method, "OPTIONS")) {
    rq->route = SRV_ROUTE_OPTIONS;
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Allow", "GET, POST, DELETE, OPTIONS");
    const char *origin = header(c, "Origin");
    for (int i = 0; origin && i < s->cfg.n_cors_origins; i++)
      if (!strcmp(s->cfg.cors_origins[i], "*") || !strcmp(s->cfg.cors_origins[i], origin)) {
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, Accept");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
        break;
      }
    return queue(s, c, rq, 204, r);
  }
  switch (rq->route) {
  case SRV_ROUTE_HEALTHZ:
    if (!rq->is_get) break;
    return answer_json(s, c, rq, 200, dup_printf("{\"status\":\"ok\"}"));
  case SRV_ROUTE_READYZ:
    if (!rq->is_get) break;
    if (atomic_load(&s->draining))
      return answer_error(s, c, rq, API_ERR_DRAINING, "draining", NULL);
    return answer_json(s, c, rq, 200, dup_printf("{\"status\":\"ready\"}"));
  default: break;
  }
  if (rq->compat && srv_compat_public(rq->compat)) { /* the web page needs no key */
    int st = 200;
    struct MHD_Response *r = NULL;
    srv_compat_first(s, rq->compat, method, url, &st, &r);
    return r ? queue(s, c, rq, st, r) : MHD_NO;
  }
  if (!auth_ok(s, c))
    return answer_error(s, c, rq, API_ERR_UNAUTHORIZED, "a valid API key is required "
                        "(Authorization: Bearer KEY)", NULL);
  switch (rq->route) {
  case SRV_ROUTE_HEALTHZ:
  case SRV_ROUTE_READYZ: break;
  case SRV_ROUTE_METRICS:
    if (!rq->is_get) break;
    {
      size_t len = 0;
      char *txt = srv_metrics_render(s, &len);
      if (!txt) return MHD_NO;
      return answer_text(s, c, rq, 200, "text/plain; version=0.0.4", txt, len);
    }
  case SRV_ROUTE_MODELS:
    if (!rq->is_get) break;
    return answer_models(s, c, rq);
  case SRV_ROUTE_JOB:
    if (!rq->is_get && !rq->is_delete) break;
    return answer_job_route(s, c, rq, id);
  case SRV_ROUTE_COMPAT: {
    int st = 200;
    struct MHD_Response *r = NULL;
    if (!srv_compat_first(s, rq->compat, method, url, &st, &r))
      return r ? queue(s, c, rq, st, r) : MHD_NO;
  } /* a POST: its body is needed, checked as /generate's */
    /* fall through */
  case SRV_ROUTE_GENERATE:
  case SRV_ROUTE_JOBS: {
    if (!rq->is_post) break;
    if (atomic_load(&s->draining))
      return answer_error(s, c, rq, API_ERR_DRAINING,
                          "the server is shutting down, retry on another replica", NULL);
    const char *cl = header(c, "Content-Length");
    if (cl) {
      char *end;
      unsigned long long n = strtoull(cl, &end, 10);
      if (end == cl || *end || (long long)n > s->cfg.max_body_bytes || n > (1ULL << 40))
        return answer_error(s, c, rq, API_ERR_TOO_LARGE, "the body is larger than the limit",
                            NULL);
    }
    const char *ct = header(c, "Content-Type");
    if (ct && !strncasecmp(ct, "multipart/", 10)) {
      if (api_multipart_boundary(ct, rq->boundary, sizeof rq->boundary))
        return answer_error(s, c, rq, API_ERR_MEDIA_TYPE,
                            "multipart bodies must be multipart/form-data with a boundary",
                            NULL);
      rq->multipart = 1;
    } else if (ct && strncasecmp(ct, "application/json", 16) != 0 &&
               strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
      /* curl -d sends x-www-form-urlencoded by default: read it as JSON too */
      return answer_error(s, c, rq, API_ERR_MEDIA_TYPE,
                          "send application/json or multipart/form-data", NULL);
    }
    return MHD_YES; /* now the body */
  }
  default:
    return answer_error(s, c, rq, API_ERR_NOT_FOUND, "no such route", NULL);
  }
  return answer_error(s, c, rq, API_ERR_METHOD, "method not allowed on this route", NULL);
}

/* The methods a route answers, for 405's Allow header. */
static const char *route_methods(int route) {
  switch (route) {
  case SRV_ROUTE_GENERATE:
  case SRV_ROUTE_JOBS: return "POST, OPTIONS";
  case SRV_ROUTE_JOB: return "GET, DELETE, OPTIONS";
  default: return "GET, HEAD, OPTIONS";
  }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
  (void)version;
  srv_server *s = cls;
  srv_req *rq = *con_cls;
  if (!rq) {
    rq = calloc(1, sizeof *rq);
    if (!rq) return MHD_NO;
    rq->id = atomic_fetch_add(&s->next_req_id, 1) + 1;
    rq->t0 = srv_now();
    *con_cls = rq;
    return first_call(s, c, rq, url, method);
  }
  if (rq->answered) { /* a response is queued; swallow any body */
    *upload_size = 0;
    return MHD_YES;
  }
  if (*upload_size) { /* a piece of the body */
    size_t n = *upload_size;
    *upload_size = 0;
    if (rq->verdict.kind != API_OK) return MHD_YES;
    if ((long long)(rq->body_len + n) > s->cfg.max_body_bytes) {
      api_error_set(&rq->verdict, API_ERR_TOO_LARGE, NULL, "the body is larger than %lld bytes",
                    s->cfg.max_body_bytes);
      free(rq->body);
      rq->body = NULL;
      rq->body_len = rq->body_cap = 0;
      return MHD_YES;
    }
    if (rq->body_len + n + 1 > rq->body_cap) {
      size_t cap = (rq->body_len + n + 1) * 2;
      if ((long long)cap > s->cfg.max_body_bytes + 1) cap = (size_t)s->cfg.max_body_bytes + 1;
      char *p = realloc(rq->body, cap);
      if (!p) {
        api_error_set(&rq->verdict, API_ERR_NOMEM, NULL, "out of memory reading the body");
        return MHD_YES;
      }
      rq->body = p;
      rq->body_cap = cap;
    }
    memcpy(rq->body + rq->body_len, upload_data, n);
    rq->body_len += n;
    rq->body[rq->body_len] = '\0';
    return MHD_YES;
  }
  if (rq->job) /* resumed: the job ended */
    return wait_for_job(s, c, rq, rq->job);
  if (rq->verdict.kind != API_OK)
    return answer_error(s, c, rq, rq->verdict.kind, rq->verdict.message, NULL);
  return start_generation(s, c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)c;
  srv_server *s = cls;
  srv_req *rq = *con_cls;
  if (!rq) return;
  *con_cls = NULL;
  double now = srv_now(), qwait = 0, gen = 0;
  srv_job *j = rq->job;
  if (j) {
    pthread_mutex_lock(&j->lock);
    j->conn = NULL;
    j->conn_suspended = 0;
    int running = !j->finished;
    if (j->t_start > 0) qwait = j->t_start - j->t_enqueue;
    if (j->t_end > 0) gen = j->t_end - j->t_start;
    pthread_mutex_unlock(&j->lock);
    if (running) { /* the client went away mid-stream: stop at the next step */
      int zero = 0;
      atomic_compare_exchange_strong(&j->cancel, &zero, 1);
    }
    srv_job_unref(j);
    if (rq->route == SRV_ROUTE_GENERATE)
      srv_metrics_observe(&s->metrics, &s->metrics.request_seconds, now - rq->t0);
  }
  if (rq->holds_open) atomic_fetch_sub(&s->open_jobs_conns, 1);
  int status = rq->status ? rq->status : toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? 0 : 499;
  if (!rq->status) srv_metrics_request(&s->metrics, rq->route, status); /* no answer queued */
  srv_log(rq->route == SRV_ROUTE_HEALTHZ || rq->route == SRV_ROUTE_READYZ ||
                  rq->route == SRV_ROUTE_METRICS ? SRV_DEBUG : SRV_INFO,
          "req=%llu route=%s status=%d%s queue_wait=%.3fs gen=%.3fs total=%.3fs",
          (unsigned long long)rq->id, srv_route_names[rq->route], status,
          toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)", qwait,
          gen, now - rq->t0);
  srv_compat_ctx_free(s, rq->compat_ctx);
  free(rq->body);
  free(rq);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  srv_log(SRV_DEBUG, "microhttpd: %s", line);
}

int srv_http_start(srv_server *s, char *err, size_t errlen) {
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  char port[16];
  snprintf(port, sizeof port, "%d", s->cfg.port);
  int gai = getaddrinfo(s->cfg.host, port, &hints, &ai);
  if (gai != 0 || !ai) {
    snprintf(err, errlen, "cannot resolve --host %s: %s", s->cfg.host, gai_strerror(gai));
    return -1;
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                   MHD_USE_ERROR_LOG;
  if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  s->mhd = MHD_start_daemon(
      flags, (uint16_t)s->cfg.port, NULL, NULL, on_request, s,
      MHD_OPTION_SOCK_ADDR, ai->ai_addr,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
      MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
      MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!s->mhd) {
    snprintf(err, errlen, "cannot listen on %s:%d (in use, or not an address of this host)",
             s->cfg.host, s->cfg.port);
    return -1;
  }
  return 0;
}

void srv_http_stop(srv_server *s) {
  if (s->mhd) MHD_stop_daemon(s->mhd);
  s->mhd = NULL;
}
