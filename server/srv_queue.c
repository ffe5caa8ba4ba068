/* srv_queue.c: the bounded job queue, the worker threads, and job completion.
 *
 * Workers pop jobs FIFO and run them on the shared, immutable model, each sd_generate owning
 * its memory. The engine polls our cancel callback between steps: it stops a job whose
 * client closed its socket (MSG_PEEK on the suspended connection, FACTS.md), that was
 * cancelled by DELETE, or that passed its deadline. A finished job is handed to the libuv
 * loop (srv_completions_run) which counts it exactly once and wakes its connection: every
 * state change that the outside can observe happens in one thread, in one place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "base64.h"
#include "infotext.h"
#include "png_io.h"
#include "srv.h"

api_err srv_queue_push(srv_server *s, srv_job *j, int *position) {
  api_err r = API_OK;
  pthread_mutex_lock(&s->qlock);
  if (atomic_load(&s->draining) || s->stop) {
    r = API_ERR_DRAINING;
  } else if (s->qlen >= s->cfg.queue) {
    r = API_ERR_QUEUE_FULL;
  } else {
    srv_job_ref(j); /* the queue's reference, passed on to the worker */
    j->qnext = NULL;
    if (s->qtail) s->qtail->qnext = j;
    else s->qhead = j;
    s->qtail = j;
    *position = ++s->qlen;
    pthread_cond_signal(&s->qcond);
  }
  /* counted before a worker can see the job, so accepted >= the jobs' end counters at every
   * instant (the metrics lock is a leaf: taken inside qlock, never the other way) */
  pthread_mutex_lock(&s->metrics.lock);
  if (r == API_OK) s->metrics.accepted++;
  else s->metrics.rejected_full++;
  pthread_mutex_unlock(&s->metrics.lock);
  pthread_mutex_unlock(&s->qlock);
  return r;
}

/* Unlink j from the queue. qlock held. Returns 1 if it was queued. */
static int queue_unlink_locked(srv_server *s, srv_job *j) {
  srv_job *prev = NULL;
  for (srv_job *q = s->qhead; q; prev = q, q = q->qnext) {
    if (q != j) continue;
    if (prev) prev->qnext = q->qnext;
    else s->qhead = q->qnext;
    if (s->qtail == q) s->qtail = prev;
    s->qlen--;
    q->qnext = NULL;
    return 1;
  }
  return 0;
}

int srv_queue_remove(srv_server *s, srv_job *j) {
  pthread_mutex_lock(&s->qlock);
  int r = queue_unlink_locked(s, j);
  pthread_mutex_unlock(&s->qlock);
  return r;
}

/* Push a finished job on the loop's list. qlock held. */
static void done_push_locked(srv_server *s, srv_job *j) {
  j->qnext = s->done_head;
  s->done_head = j;
}

/* Record a job's end. No worker uses its inputs any more: results may be kept for minutes
 * (async jobs), the decoded input images need not be. */
static void job_set_end(srv_job *j, srv_job_state st, api_err kind, const char *msg) {
  pthread_mutex_lock(&j->lock);
  api_gen_request_drop_images(&j->req);
  j->state = st;
  j->err_kind = kind;
  snprintf(j->err_msg, sizeof j->err_msg, "%s", msg ? msg : "");
  j->t_end = srv_now();
  pthread_mutex_unlock(&j->lock);
}

void srv_job_complete(srv_server *s, srv_job *j, srv_job_state st, api_err kind,
                      const char *msg) {
  job_set_end(j, st, kind, msg);
  pthread_mutex_lock(&s->qlock);
  done_push_locked(s, j);
  pthread_mutex_unlock(&s->qlock);
  uv_async_send(s->loop_async);
}

/* ---- engine callbacks --------------------------------------------------------------------- */

static void on_progress(void *user, int step, int total, const float *lat, int c, int h, int w) {
  srv_job *j = user;
  double now = srv_now();
  /* kind never changes once queued; the preview is built outside the lock */
  char *prev = j->kind == SRV_JOB_SSE ? srv_preview_b64(lat, c, h, w) : NULL;
  pthread_mutex_lock(&j->lock);
  double dt = now - j->t_last_step;
  j->t_last_step = now;
  j->step = step;
  j->total = total;
  if (j->kind == SRV_JOB_SSE) {
    char *json = NULL;
    size_t n = (prev ? strlen(prev) : 0) + 96;
    if ((json = malloc(n))) {
      snprintf(json, n, "{\"step\":%d,\"total\":%d,\"image\":%d,\"preview\":%s%s%s}", step,
               total, j->image_index, prev ? "\"" : "", prev ? prev : "null", prev ? "\"" : "");
      srv_job_sse_locked(j, "progress", json);
      free(json);
    }
  }
  pthread_mutex_unlock(&j->lock);
  free(prev);
  srv_metrics_observe(&j->srv->metrics, &j->srv->metrics.step_seconds, dt);
}

static int on_cancel(void *user) {
  srv_job *j = user;
  if (atomic_load(&j->cancel)) return 1;
  if (atomic_load(&j->srv->force_cancel)) {
    int zero = 0;
    atomic_compare_exchange_strong(&j->cancel, &zero, 1);
    return 1;
  }
  if (srv_now() > j->deadline) {
    atomic_store(&j->cancel, 2);
    return 1;
  }
  pthread_mutex_lock(&j->lock);
  int gone = srv_job_client_gone_locked(j);
  pthread_mutex_unlock(&j->lock);
  if (gone) {
    int zero = 0;
    atomic_compare_exchange_strong(&j->cancel, &zero, 1);
    return 1;
  }
  return 0;
}

/* ---- worker ------------------------------------------------------------------------------ */

/* Generate all images of j; returns the terminal state and fills kind/msg on failure. */
static srv_job_state run_job(srv_server *s, srv_job *j, api_err *kind, char *msg) {
  int n = j->req.batch_size;
  srv_image *imgs = calloc((size_t)n, sizeof *imgs);
  if (!imgs) {
    *kind = API_ERR_NOMEM;
    snprintf(msg, SD_ERRMSG_MAX, "out of memory");
    return SRV_FAILED;
  }
  srv_job_state st = SRV_DONE;
  int made = 0;
  for (int i = 0; i < n; i++) {
    sd_request rq = j->req.rq;
    rq.seed = j->req.rq.seed + (uint64_t)i;
    rq.threads = s->threads_per_job;
    rq.progress = on_progress;
    rq.cancel = on_cancel;
    rq.user = j;
    pthread_mutex_lock(&j->lock);
    j->image_index = i;
    j->t_last_step = srv_now();
    pthread_mutex_unlock(&j->lock);
    sd_image img = {0};
    sd_status rc = sd_generate(s->model, &rq, &img, msg);
    if (rc != SD_OK) {
      if (rc == SD_ERR_CANCELLED) {
        int why = atomic_load(&j->cancel);
        st = why == 2 ? SRV_EXPIRED : SRV_CANCELLED;
        *kind = why == 2 ? API_ERR_TIMEOUT : API_ERR_CANCELLED;
        snprintf(msg, SD_ERRMSG_MAX, "%s",
                 why == 2 ? "the request passed its deadline while running"
                          : "the request was cancelled");
      } else {
        st = SRV_FAILED;
        *kind = api_err_from_status(rc);
      }
      break;
    }
    char *info = api_infotext_ex(&rq, img.width, img.height, s->info.name,
                                 j->req.control_names);
    api_png_text text = {"parameters", info ? info : ""};
    sd_status pe = api_png_encode_mem(img.rgb, img.width, img.height, &text, 1,
                                      &imgs[i].png, &imgs[i].len, msg);
    free(info);
    sd_image_free(&img);
    if (pe != SD_OK) {
      st = SRV_FAILED;
      *kind = api_err_from_status(pe);
      break;
    }
    imgs[i].seed = rq.seed;
    made++;
  }
  pthread_mutex_lock(&j->lock);
  if (st == SRV_DONE) {
    j->images = imgs;
    j->nimages = made;
    imgs = NULL;
  }
  pthread_mutex_unlock(&j->lock);
  for (int i = 0; imgs && i < made; i++) free(imgs[i].png);
  free(imgs);
  return st;
}

static void *worker_main(void *arg) {
  srv_server *s = arg;
  char msg[SD_ERRMSG_MAX];
  for (;;) {
    pthread_mutex_lock(&s->qlock);
    while (!s->stop && !s->qhead) pthread_cond_wait(&s->qcond, &s->qlock);
    srv_job *j = s->qhead;
    if (!j) { /* stop set and nothing left */
      pthread_mutex_unlock(&s->qlock);
      break;
    }
    s->qhead = j->qnext;
    if (!s->qhead) s->qtail = NULL;
    s->qlen--;
    j->qnext = NULL;
    s->running++;
    pthread_mutex_unlock(&s->qlock);

    double now = srv_now();
    pthread_mutex_lock(&j->lock);
    j->state = SRV_RUNNING;
    j->t_start = now;
    j->total = j->req.rq.steps;
    pthread_mutex_unlock(&j->lock);
    api_err kind = API_OK;
    msg[0] = '\0';
    srv_job_state st;
    if (atomic_load(&j->cancel) || now > j->deadline) {
      int late = !atomic_load(&j->cancel);
      st = late ? SRV_EXPIRED : SRV_CANCELLED;
      kind = late ? API_ERR_TIMEOUT : API_ERR_CANCELLED;
      snprintf(msg, sizeof msg, "%s", late ? "the request passed its deadline in the queue"
                                           : "the request was cancelled");
    } else {
      st = run_job(s, j, &kind, msg);
    }
    job_set_end(j, st, kind, msg);
    pthread_mutex_lock(&s->qlock);
    done_push_locked(s, j); /* before running-- so a drain never sees neither */
    s->running--;
    pthread_mutex_unlock(&s->qlock);
    uv_async_send(s->loop_async);
  }
  return NULL;
}

int srv_workers_start(srv_server *s) {
  s->workers = calloc((size_t)s->nworkers, sizeof *s->workers);
  if (!s->workers) return -1;
  for (int i = 0; i < s->nworkers; i++)
    if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) {
      s->nworkers = i;
      return -1;
    }
  return 0;
}

void srv_workers_stop(srv_server *s) {
  pthread_mutex_lock(&s->qlock);
  s->stop = 1;
  pthread_cond_broadcast(&s->qcond);
  pthread_mutex_unlock(&s->qlock);
  for (int i = 0; i < s->nworkers; i++) pthread_join(s->workers[i], NULL);
  free(s->workers);
  s->workers = NULL;
}

/* ---- loop side ---------------------------------------------------------------------------- */

/* The final SSE event of a job. Lock held. */
static void sse_final_locked(srv_job *j) {
  if (j->state != SRV_DONE) {
    char *ej = api_error_json(j->err_kind, j->err_msg, NULL);
    srv_job_sse_locked(j, "error", ej ? ej : "{}");
    free(ej);
  } else {
    cJSON *o = cJSON_CreateObject(), *imgs = o ? cJSON_AddArrayToObject(o, "images") : NULL;
    cJSON *seeds = o ? cJSON_AddArrayToObject(o, "seeds") : NULL;
    for (int i = 0; imgs && seeds && i < j->nimages; i++) {
      char *b64 = api_base64_encode(j->images[i].png, j->images[i].len, NULL);
      char sb[24];
      snprintf(sb, sizeof sb, "%llu", (unsigned long long)j->images[i].seed);
      if (i == 0) {
        cJSON_AddStringToObject(o, "image", b64 ? b64 : "");
        cJSON_AddNumberToObject(o, "seed", (double)j->images[i].seed);
        cJSON_AddStringToObject(o, "seed_str", sb);
      }
      cJSON_AddItemToArray(imgs, cJSON_CreateString(b64 ? b64 : ""));
      cJSON_AddItemToArray(seeds, cJSON_CreateString(sb));
      free(b64);
    }
    char *params = api_request_params_json(&j->req, j->req.rq.seed, j->req.rq.width,
                                           j->req.rq.height);
    cJSON *pj = params ? cJSON_Parse(params) : NULL;
    free(params);
    if (o && pj) cJSON_AddItemToObject(o, "parameters", pj);
    else cJSON_Delete(pj);
    char *txt = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (txt) srv_job_sse_locked(j, "done", txt);
    else srv_job_sse_locked(j, "error", "{\"error\":{\"code\":\"out_of_memory\"}}");
    free(txt);
  }
  j->sse_closed = 1;
  srv_job_wake_locked(j);
}

void srv_completions_run(srv_server *s) {
  pthread_mutex_lock(&s->qlock);
  srv_job *list = s->done_head;
  s->done_head = NULL;
  pthread_mutex_unlock(&s->qlock);
  while (list) {
    srv_job *j = list;
    list = j->qnext;
    j->qnext = NULL;
    pthread_mutex_lock(&j->lock);
    srv_metrics_job_end(&s->metrics, j->state);
    j->finished = 1;
    if (j->kind == SRV_JOB_SSE) sse_final_locked(j);
    else srv_job_wake_locked(j);
    pthread_mutex_unlock(&j->lock);
    srv_job_unref(j);
  }
}

void srv_queue_sweep(srv_server *s) {
  double now = srv_now();
  srv_job *gone = NULL;
  pthread_mutex_lock(&s->qlock);
  for (srv_job *j = s->qhead, *next; j; j = next) {
    next = j->qnext;
    int why = atomic_load(&j->cancel);
    if (!why && atomic_load(&s->force_cancel)) why = 1;
    if (!why && now > j->deadline) why = 2;
    if (!why) {
      pthread_mutex_lock(&j->lock);
      if (srv_job_client_gone_locked(j)) why = 1;
      pthread_mutex_unlock(&j->lock);
    }
    if (!why) continue;
    atomic_store(&j->cancel, why);
    queue_unlink_locked(s, j);
    j->qnext = gone;
    gone = j;
  }
  pthread_mutex_unlock(&s->qlock);
  while (gone) {
    srv_job *j = gone;
    gone = j->qnext;
    int late = atomic_load(&j->cancel) == 2;
    srv_job_complete(s, j, late ? SRV_EXPIRED : SRV_CANCELLED,
                     late ? API_ERR_TIMEOUT : API_ERR_CANCELLED,
                     late ? "the request passed its deadline in the queue"
                          : "the request was cancelled");
  }
  srv_table_evict(s, now);
}
