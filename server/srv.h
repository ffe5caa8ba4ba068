/* srv.h: what the server's subsystems share: the server, a job, the connection context, and
 * the functions each srv_*.c file provides. Internal to server/ (nothing outside includes it).
 *
 * Ownership: a job is reference counted (srv_job_ref/unref). References are held by the queue
 * or the worker running it, by the connection waiting for it, by a streaming response, and by
 * the async job table. Its fields after `lock` are protected by that lock; the fields above
 * it are set before the job is shared and never change.
 */
#ifndef SRV_H
#define SRV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "errors.h"
#include "request.h"
#include "sd.h"

struct MHD_Daemon;
struct MHD_Connection;
typedef struct srv_server srv_server;

/* ---- log (srv_log.c) ------------------------------------------------------------------ */

typedef enum srv_level { SRV_DEBUG = 0, SRV_INFO, SRV_WARN, SRV_ERROR } srv_level;

/* Parse "debug|info|warn|error" (anything else: info). */
srv_level srv_level_parse(const char *s);
/* Set the process's log threshold (called once at start). */
void srv_log_set_level(srv_level lvl);
/* One line on stderr: "2026-01-01T00:00:00.123Z level message". Thread-safe. */
void srv_log(srv_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- jobs ----------------------------------------------------------------------------- */

typedef enum srv_job_kind { SRV_JOB_PNG, SRV_JOB_SSE, SRV_JOB_ASYNC } srv_job_kind;
typedef enum srv_job_state {
  SRV_QUEUED = 0, SRV_RUNNING, SRV_DONE, SRV_FAILED, SRV_CANCELLED, SRV_EXPIRED
} srv_job_state;

const char *srv_job_state_str(srv_job_state s);

typedef struct srv_image {
  uint8_t *png;
  size_t len;
  uint64_t seed;
} srv_image;

typedef struct srv_job {
  /* immutable once shared */
  srv_server *srv;
  srv_job_kind kind;
  char id[33];                 /* 32 hex characters (async jobs), "" otherwise */
  uint64_t req_id;             /* the request that created it */
  api_gen_request req;         /* validated request; req.rq.seed fixed at enqueue */
  double t_enqueue, deadline;  /* monotonic seconds */
  atomic_int refs;
  atomic_int cancel;           /* 1: DELETE or client gone; 2: deadline passed */
  struct srv_job *qnext;       /* queue link (under the server's qlock) */
  struct srv_job *tnext;       /* async table link (under the server's tlock) */

  pthread_mutex_t lock;        /* protects everything below */
  srv_job_state state;
  int finished;                /* terminal state reached and accounted by the loop */
  double t_start, t_end, t_last_step;
  int step, total, image_index;
  srv_image *images;           /* batch_size entries when done */
  int nimages;
  api_err err_kind;
  char err_msg[SD_ERRMSG_MAX];
  struct MHD_Connection *conn; /* the waiting connection, NULL once it is gone */
  int conn_suspended;          /* conn is suspended by us (its fd may be peeked) */
  int fd;                      /* conn's socket */
  char *sse;                   /* SSE bytes not yet sent */
  size_t sse_len, sse_cap, sse_off;
  int sse_closed;              /* the last event is in sse: end the stream when drained */
} srv_job;

/* A new job with one reference (the caller's), an id for async jobs; NULL when out of
 * memory. ref/unref: the last unref frees the job, its request and its results. */
srv_job *srv_job_create(srv_server *s, srv_job_kind kind);
void srv_job_ref(srv_job *j);
void srv_job_unref(srv_job *j);
/* Append one SSE event ("event: NAME\ndata: JSON\n\n") and wake the stream. Lock held. */
void srv_job_sse_locked(srv_job *j, const char *event, const char *json);
/* The same, but put the event before any already buffered (only before the stream starts). */
void srv_job_sse_first_locked(srv_job *j, const char *event, const char *json);
/* Wake the connection waiting for j if we suspended it. Lock held. */
void srv_job_wake_locked(srv_job *j);
/* Whether the suspended client of j has closed its socket (MSG_PEEK). Lock held. */
int srv_job_client_gone_locked(srv_job *j);

/* ---- metrics (srv_metrics.c) ------------------------------------------------------------ */

enum { SRV_ROUTE_GENERATE, SRV_ROUTE_JOBS, SRV_ROUTE_JOB, SRV_ROUTE_HEALTHZ, SRV_ROUTE_READYZ,
       SRV_ROUTE_METRICS, SRV_ROUTE_MODELS, SRV_ROUTE_OPTIONS, SRV_ROUTE_OTHER,
       SRV_ROUTE_COMPAT /* srv_compat.c: A1111, OpenAI, the web page */, SRV_ROUTE__N };
extern const char *const srv_route_names[SRV_ROUTE__N];

#define SRV_HIST_BUCKETS 14
typedef struct srv_hist {
  uint64_t counts[SRV_HIST_BUCKETS + 1]; /* last = +Inf */
  double sum;
  uint64_t n;
} srv_hist;

typedef struct srv_metrics {
  pthread_mutex_t lock; /* protects everything below */
  uint64_t by_status[SRV_ROUTE__N][600]; /* requests answered, by route and HTTP status */
  uint64_t accepted, completed, cancelled, expired, failed, rejected_full;
  srv_hist request_seconds, step_seconds;
} srv_metrics;

/* Zero the counters and create the lock / destroy the lock. */
void srv_metrics_init(srv_metrics *m);
void srv_metrics_close(srv_metrics *m);
/* Count one answered request (status 0..599; others count as 0). Thread-safe. */
void srv_metrics_request(srv_metrics *m, int route, int status);
/* Add one observation in seconds to histogram h (a member of m). Thread-safe. */
void srv_metrics_observe(srv_metrics *m, srv_hist *h, double seconds);
/* Count a job reaching a terminal state. */
void srv_metrics_job_end(srv_metrics *m, srv_job_state st);
/* Prometheus text exposition (gauges read under the queue lock), malloc'ed (caller frees),
 * *len its length; NULL when out of memory. */
char *srv_metrics_render(srv_server *s, size_t *len);

/* ---- the server ----------------------------------------------------------------------- */

struct srv_server {
  cfg_settings cfg;
  sd_model *model;
  sd_model_info info;
  sd_controlnet **nets;
  api_controlnet_ref *net_refs;
  int n_nets;
  api_limits limits;
  int threads_per_job;

  struct MHD_Daemon *mhd;
  atomic_int draining;
  atomic_int force_cancel;     /* drain timed out (or a second signal): stop every job */
  atomic_uint_fast64_t next_req_id;

  pthread_mutex_t qlock;       /* protects the queue, running, stop and completions */
  pthread_cond_t qcond;
  srv_job *qhead, *qtail;
  int qlen, running;
  int stop;                    /* workers exit when set */
  srv_job *done_head;          /* finished jobs for the loop to account (via qnext) */
  pthread_t *workers;
  int nworkers;

  pthread_mutex_t tlock;       /* protects the async job table */
  srv_job *table;
  int table_len;

  atomic_int open_jobs_conns;  /* connections holding a job (drain waits for 0) */
  void *loop_async;            /* uv_async_t* waking the loop for completions */
  srv_metrics metrics;
  struct srv_compat *compat;   /* A1111/OpenAI state (srv_compat.c) */
};

double srv_now(void); /* monotonic seconds */

/* srv_queue.c: enqueue (API_OK, or API_ERR_QUEUE_FULL / API_ERR_DRAINING without taking the
 * job), position in the queue (1-based, 0 if not queued), cancel a queued job (returns 1 if
 * it was removed from the queue), workers, and the loop's completion processing. */
api_err srv_queue_push(srv_server *s, srv_job *j, int *position);
int srv_queue_remove(srv_server *s, srv_job *j);
int srv_workers_start(srv_server *s);
void srv_workers_stop(srv_server *s);
/* Finish a job that never ran or ran (worker or loop): set its terminal state and hand it to
 * the loop. Takes over one reference. */
void srv_job_complete(srv_server *s, srv_job *j, srv_job_state st, api_err kind,
                      const char *msg);
/* Loop side: account finished jobs and wake their connections. */
void srv_completions_run(srv_server *s);
/* Loop timer: expire queued jobs past their deadline, cancel queued jobs whose client left,
 * evict old async results. */
void srv_queue_sweep(srv_server *s);

/* srv_preview.c: a small PNG (1/8 size) of latents, base64, malloc'ed; NULL on failure. */
char *srv_preview_b64(const float *latents, int c, int h, int w);

/* srv_jobs.c: async job table. add takes its own reference; find returns a new reference
 * (or NULL); evict drops finished jobs older than the TTL (or beyond the table's cap); clear
 * drops all (at shutdown). */
void srv_table_add(srv_server *s, srv_job *j);
srv_job *srv_table_find(srv_server *s, const char *id);
void srv_table_evict(srv_server *s, double now);
void srv_table_clear(srv_server *s);
/* A job's status JSON (GET /jobs/{id}), malloc'ed. */
char *srv_job_status_json(srv_job *j);

/* srv_http.c: start the libmicrohttpd front end on cfg.host:cfg.port (0, or -1 with a
 * message in err); stop it (no connection may be suspended by then: the drain ensures it). */
int srv_http_start(srv_server *s, char *err, size_t errlen);
void srv_http_stop(srv_server *s);

#endif
