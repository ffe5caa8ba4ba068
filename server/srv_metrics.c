/* srv_metrics.c: the server's counters and histograms, rendered as Prometheus text.
 *
 * Everything sits behind one mutex: updates are a handful per request, far from contended.
 * Job counters obey accepted = completed + cancelled + expired + failed + (queued + running),
 * because each job is counted once when accepted and once when the loop sees it end.
 * Durations are in seconds (Prometheus base units).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

const char *const srv_route_names[SRV_ROUTE__N] = {
    "/generate", "/jobs", "/jobs/{id}", "/healthz", "/readyz", "/metrics", "/v1/models",
    "OPTIONS", "other", "compat"};

/* upper bounds, seconds: from a rejected request (~1 ms) to a long 512x512 job */
static const double bucket_le[SRV_HIST_BUCKETS] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5,
                                                   1, 2.5, 5, 10, 30, 60, 300};

void srv_metrics_init(srv_metrics *m) {
  memset(m, 0, sizeof *m);
  pthread_mutex_init(&m->lock, NULL);
}

void srv_metrics_close(srv_metrics *m) { pthread_mutex_destroy(&m->lock); }

void srv_metrics_request(srv_metrics *m, int route, int status) {
  if (route < 0 || route >= SRV_ROUTE__N) route = SRV_ROUTE_OTHER;
  if (status < 0 || status >= 600) status = 0;
  pthread_mutex_lock(&m->lock);
  m->by_status[route][status]++;
  pthread_mutex_unlock(&m->lock);
}

void srv_metrics_observe(srv_metrics *m, srv_hist *h, double seconds) {
  pthread_mutex_lock(&m->lock);
  int b = 0;
  while (b < SRV_HIST_BUCKETS && seconds > bucket_le[b]) b++;
  h->counts[b]++;
  h->sum += seconds;
  h->n++;
  pthread_mutex_unlock(&m->lock);
}

void srv_metrics_job_end(srv_metrics *m, srv_job_state st) {
  pthread_mutex_lock(&m->lock);
  switch (st) {
  case SRV_DONE: m->completed++; break;
  case SRV_CANCELLED: m->cancelled++; break;
  case SRV_EXPIRED: m->expired++; break;
  default: m->failed++; break;
  }
  pthread_mutex_unlock(&m->lock);
}

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap * 2 + (size_t)n + 1;
    char *np = realloc(b->p, cap);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
}

static void render_hist(sbuf *b, const char *name, const char *help, const srv_hist *h) {
  sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0;
  for (int i = 0; i < SRV_HIST_BUCKETS; i++) {
    cum += h->counts[i];
    sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_le[i], (unsigned long long)cum);
  }
  cum += h->counts[SRV_HIST_BUCKETS];
  sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
            (unsigned long long)cum, name, h->sum, name, (unsigned long long)h->n);
}

char *srv_metrics_render(srv_server *s, size_t *len) {
  sbuf b = {malloc(8192), 0, 8192, 0};
  if (!b.p) return NULL;
  pthread_mutex_lock(&s->qlock);
  int qlen = s->qlen, running = s->running;
  pthread_mutex_unlock(&s->qlock);
  srv_metrics *m = &s->metrics;
  sb_printf(&b, "# HELP sdserve_queue_depth Jobs waiting for a worker.\n"
                "# TYPE sdserve_queue_depth gauge\nsdserve_queue_depth %d\n", qlen);
  sb_printf(&b, "# HELP sdserve_jobs_running Jobs being generated.\n"
                "# TYPE sdserve_jobs_running gauge\nsdserve_jobs_running %d\n", running);
  sb_printf(&b, "# HELP sdserve_workers Worker threads.\n"
                "# TYPE sdserve_workers gauge\nsdserve_workers %d\n", s->nworkers);
  sb_printf(&b, "# HELP sdserve_draining 1 while shutting down.\n"
                "# TYPE sdserve_draining gauge\nsdserve_draining %d\n",
            atomic_load(&s->draining));
  pthread_mutex_lock(&m->lock);
  sb_printf(&b, "# HELP sdserve_requests_total HTTP requests answered, by route and status.\n"
                "# TYPE sdserve_requests_total counter\n");
  for (int r = 0; r < SRV_ROUTE__N; r++)
    for (int st = 0; st < 600; st++)
      if (m->by_status[r][st])
        sb_printf(&b, "sdserve_requests_total{route=\"%s\",outcome=\"%d\"} %llu\n",
                  srv_route_names[r], st, (unsigned long long)m->by_status[r][st]);
  static const char *const jn[] = {"accepted", "completed", "cancelled", "expired", "failed",
                                   "rejected"};
  uint64_t jv[] = {m->accepted, m->completed, m->cancelled, m->expired, m->failed,
                   m->rejected_full};
  for (int i = 0; i < 6; i++)
    sb_printf(&b, "# HELP sdserve_jobs_%s_total Jobs %s%s.\n# TYPE sdserve_jobs_%s_total counter\n"
                  "sdserve_jobs_%s_total %llu\n", jn[i], jn[i],
              i == 5 ? " because the queue was full or the server draining" : "", jn[i], jn[i],
              (unsigned long long)jv[i]);
  render_hist(&b, "sdserve_request_duration_seconds",
              "Time from a generation request's arrival to its answer.", &m->request_seconds);
  render_hist(&b, "sdserve_step_duration_seconds", "Time of one denoising step.",
              &m->step_seconds);
  pthread_mutex_unlock(&m->lock);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  *len = b.len;
  return b.p;
}
