/* srv_jobs.c: the job object (reference counted, one per generation request), its SSE
 * output buffer, waking its connection, and the table of async jobs (POST /jobs) kept for a
 * while after they end so clients can poll for results.
 *
 * A job never touches a connection it did not suspend itself: `conn_suspended` is set by the
 * HTTP side when it suspends and cleared here when we resume, both under the job's lock, so a
 * resume always matches a suspend and a peeked fd is always still open (MHD cannot close a
 * suspended connection).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "base64.h"
#include "srv.h"

#define RESULT_TTL_S 600.0 /* async results are kept this long after the job ends */
#define TABLE_MAX 1024     /* and at most this many finished jobs (oldest evicted first) */

double srv_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

const char *srv_job_state_str(srv_job_state s) {
  static const char *const names[] = {"queued", "running", "done", "failed", "cancelled",
                                      "expired"};
  return (unsigned)s < 6 ? names[s] : "unknown";
}

srv_job *srv_job_create(srv_server *s, srv_job_kind kind) {
  srv_job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->srv = s;
  j->kind = kind;
  atomic_init(&j->refs, 1);
  atomic_init(&j->cancel, 0);
  pthread_mutex_init(&j->lock, NULL);
  j->fd = -1;
  if (kind == SRV_JOB_ASYNC) {
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
      /* never fails for 16 bytes after boot; fall back to time + address, still unique */
      uint64_t a = (uint64_t)(srv_now() * 1e9), b = (uint64_t)(uintptr_t)j;
      memcpy(rnd, &a, 8);
      memcpy(rnd + 8, &b, 8);
    }
    for (int i = 0; i < 16; i++) snprintf(j->id + 2 * i, 3, "%02x", rnd[i]);
  }
  return j;
}

void srv_job_ref(srv_job *j) { atomic_fetch_add(&j->refs, 1); }

void srv_job_unref(srv_job *j) {
  if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
  api_gen_request_free(&j->req);
  for (int i = 0; i < j->nimages; i++) free(j->images[i].png);
  free(j->images);
  free(j->sse);
  pthread_mutex_destroy(&j->lock);
  free(j);
}

void srv_job_wake_locked(srv_job *j) {
  if (j->conn && j->conn_suspended) {
    j->conn_suspended = 0;
    MHD_resume_connection(j->conn);
  }
}

void srv_job_sse_locked(srv_job *j, const char *event, const char *json) {
  if (j->sse_closed) return;
  size_t need = strlen(event) + strlen(json) + 20;
  if (j->sse_len + need > j->sse_cap) {
    /* drop what was sent before growing */
    if (j->sse_off) {
      memmove(j->sse, j->sse + j->sse_off, j->sse_len - j->sse_off);
      j->sse_len -= j->sse_off;
      j->sse_off = 0;
    }
    if (j->sse_len + need > j->sse_cap) {
      size_t cap = (j->sse_len + need) * 2;
      char *p = realloc(j->sse, cap);
      if (!p) return; /* a lost progress event; the final one is retried by the caller */
      j->sse = p;
      j->sse_cap = cap;
    }
  }
  j->sse_len += (size_t)snprintf(j->sse + j->sse_len, j->sse_cap - j->sse_len,
                                 "event: %s\ndata: %s\n\n", event, json);
  srv_job_wake_locked(j);
}

void srv_job_sse_first_locked(srv_job *j, const char *event, const char *json) {
  size_t before = j->sse_len - j->sse_off;
  srv_job_sse_locked(j, event, json);
  size_t total = j->sse_len - j->sse_off, n = total - before;
  if (!before || n == 0 || n > total) return;
  /* rotate [old events][new event] into [new event][old events] */
  char *tmp = malloc(n);
  if (!tmp) return; /* out of order beats lost */
  char *base = j->sse + j->sse_off;
  memcpy(tmp, base + before, n);
  memmove(base + n, base, before);
  memcpy(base, tmp, n);
  free(tmp);
}

int srv_job_client_gone_locked(srv_job *j) {
  if (!j->conn || !j->conn_suspended || j->fd < 0) return 0;
  char b;
  ssize_t n = recv(j->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return 1;
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

/* ---- async table ------------------------------------------------------------------------ */

void srv_table_add(srv_server *s, srv_job *j) {
  srv_job_ref(j);
  pthread_mutex_lock(&s->tlock);
  j->tnext = s->table;
  s->table = j;
  s->table_len++;
  pthread_mutex_unlock(&s->tlock);
}

srv_job *srv_table_find(srv_server *s, const char *id) {
  srv_job *found = NULL;
  pthread_mutex_lock(&s->tlock);
  for (srv_job *j = s->table; j; j = j->tnext)
    if (strcmp(j->id, id) == 0) {
      srv_job_ref(j);
      found = j;
      break;
    }
  pthread_mutex_unlock(&s->tlock);
  return found;
}

void srv_table_evict(srv_server *s, double now) {
  srv_job *dead = NULL;
  pthread_mutex_lock(&s->tlock);
  /* newest first: past TABLE_MAX entries, finished ones go whatever their age */
  int kept = 0;
  for (srv_job **pp = &s->table; *pp;) {
    srv_job *j = *pp;
    pthread_mutex_lock(&j->lock);
    int old = j->finished && (now - j->t_end > RESULT_TTL_S || kept >= TABLE_MAX);
    pthread_mutex_unlock(&j->lock);
    if (old) {
      *pp = j->tnext;
      j->tnext = dead;
      dead = j;
      s->table_len--;
    } else {
      kept++;
      pp = &j->tnext;
    }
  }
  pthread_mutex_unlock(&s->tlock);
  while (dead) {
    srv_job *n = dead->tnext;
    srv_job_unref(dead);
    dead = n;
  }
}

void srv_table_clear(srv_server *s) {
  pthread_mutex_lock(&s->tlock);
  srv_job *j = s->table;
  s->table = NULL;
  s->table_len = 0;
  pthread_mutex_unlock(&s->tlock);
  while (j) {
    srv_job *n = j->tnext;
    srv_job_unref(j);
    j = n;
  }
}

char *srv_job_status_json(srv_job *j) {
  cJSON *o = cJSON_CreateObject();
  char *out = NULL;
  if (!o) return NULL;
  pthread_mutex_lock(&j->lock);
  srv_job_state st = j->state;
  cJSON *prog = NULL, *res = NULL, *imgs = NULL;
  if (!cJSON_AddStringToObject(o, "id", j->id) ||
      !cJSON_AddStringToObject(o, "status", srv_job_state_str(st)) ||
      !(prog = cJSON_AddObjectToObject(o, "progress")) ||
      !cJSON_AddNumberToObject(prog, "step", j->step) ||
      !cJSON_AddNumberToObject(prog, "total", j->total) ||
      !cJSON_AddNumberToObject(prog, "image", j->image_index))
    goto out_unlock;
  if (st == SRV_DONE) {
    if (!(res = cJSON_AddObjectToObject(o, "result")) ||
        !(imgs = cJSON_AddArrayToObject(res, "images")))
      goto out_unlock;
    cJSON *seeds = cJSON_AddArrayToObject(res, "seeds");
    if (!seeds) goto out_unlock;
    for (int i = 0; i < j->nimages; i++) {
      char *b64 = api_base64_encode(j->images[i].png, j->images[i].len, NULL);
      char sb[24];
      snprintf(sb, sizeof sb, "%llu", (unsigned long long)j->images[i].seed);
      cJSON *si = cJSON_CreateString(b64 ? b64 : ""), *ss = cJSON_CreateString(sb);
      free(b64);
      if (!si || !ss) {
        cJSON_Delete(si);
        cJSON_Delete(ss);
        goto out_unlock;
      }
      cJSON_AddItemToArray(imgs, si);
      cJSON_AddItemToArray(seeds, ss);
    }
    char *params = api_request_params_json(&j->req, j->req.rq.seed, j->req.rq.width,
                                           j->req.rq.height);
    cJSON *pj = params ? cJSON_Parse(params) : NULL;
    free(params);
    if (pj) cJSON_AddItemToObject(res, "parameters", pj);
  } else if (st >= SRV_FAILED) {
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    if (!e || !cJSON_AddStringToObject(e, "code", api_err_code(j->err_kind)) ||
        !cJSON_AddStringToObject(e, "message", j->err_msg))
      goto out_unlock;
  }
  out = cJSON_PrintUnformatted(o);
out_unlock:
  pthread_mutex_unlock(&j->lock);
  cJSON_Delete(o);
  return out;
}
