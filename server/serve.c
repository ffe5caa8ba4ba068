/* serve.c: `sdserve serve`: the HTTP service. Loads one model (and its ControlNets) once and
 * answers many clients at once.
 *
 * DESIGN. Three kinds of threads, one direction of hand-off each:
 *   - libmicrohttpd's polling threads (internal epoll, a pool of 2) run the handlers in
 *     srv_http.c. They never block: they parse and validate the request (api/request.c),
 *     enqueue a job and suspend the connection, or answer at once (errors, 503 when the
 *     bounded queue is full, GET routes).
 *   - N workers (srv_queue.c) pop jobs and call sd_generate on the shared immutable model;
 *     each job owns its memory. The engine's cancel callback, polled every step, stops a job
 *     whose client left, that was DELETEd, or that passed its deadline.
 *   - one libuv loop (here) owns time and lifecycle: signals (SIGTERM/SIGINT start a drain;
 *     the handler flips the drain flag at once and wakes the loop through a uv_async),
 *     a 100 ms timer (deadlines of queued jobs, disconnected queued clients, async results'
 *     TTL, drain progress) and an async handle through which workers hand finished jobs back;
 *     the loop counts each exactly once (metrics reconcile) and resumes its connection.
 * Drain: /readyz and new work answer 503 + Retry-After + Connection: close; queued and
 * running jobs finish and their answers are delivered; then the daemon stops and we exit 0.
 * Workers x BLAS threads: see server/README.md for the measurement behind the default.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "cli.h"
#include "config.h"
#include "infotext.h"
#include "srv.h"
#include "srv_compat.h"

extern char **environ;

typedef struct srv_loop {
  uv_loop_t loop;
  uv_async_t async;
  uv_async_t sig_async;       /* the signal handler's wake-up of the loop */
  atomic_int last_signal;
  uv_timer_t timer;
  srv_server *s;
  double t_drain;             /* when the drain began (0 = not draining) */
  int forced_logged;
  int idle_ticks;
} srv_loop;

static void on_async(uv_async_t *h) {
  srv_loop *L = h->data;
  srv_completions_run(L->s);
}

/* The loop being run, for the signal handler: a handler can only reach static state, which
 * is why this one pointer is process-wide. Set before the handlers are installed. */
static srv_loop *sig_loop;

/* SIGTERM/SIGINT. The flags flip here, at once, so /readyz and new work see the drain
 * within microseconds even when the loop thread waits for a CPU behind busy workers (uv_signal
 * would only flip them when the loop runs); the loop is woken with uv_async_send, which libuv
 * documents as async-signal-safe, and does the rest (log, drain clock). */
static void on_signal(int signum) {
  srv_loop *L = sig_loop;
  if (!L) return;
  if (atomic_exchange(&L->s->draining, 1)) atomic_store(&L->s->force_cancel, 1);
  atomic_store(&L->last_signal, signum);
  uv_async_send(&L->sig_async);
}

static void on_signal_async(uv_async_t *h) {
  srv_loop *L = h->data;
  srv_server *s = L->s;
  int signum = atomic_load(&L->last_signal);
  if (L->t_drain == 0) {
    L->t_drain = srv_now();
    srv_log(SRV_INFO, "signal %d: draining (ready -> 503; queued and running jobs finish)",
            signum);
  }
  if (atomic_load(&s->force_cancel) && !L->forced_logged) {
    L->forced_logged = 1;
    srv_log(SRV_WARN, "second signal %d: cancelling every job", signum);
  }
}

static void on_timer(uv_timer_t *h) {
  srv_loop *L = h->data;
  srv_server *s = L->s;
  srv_queue_sweep(s);
  srv_completions_run(s);
  if (!atomic_load(&s->draining)) return;
  if (L->t_drain == 0) L->t_drain = srv_now(); /* the signal's async not yet run */
  if (!atomic_load(&s->force_cancel) && srv_now() - L->t_drain > s->cfg.drain_timeout_s) {
    atomic_store(&s->force_cancel, 1);
    srv_log(SRV_WARN, "drain took more than %d s: cancelling the remaining jobs",
            s->cfg.drain_timeout_s);
  }
  pthread_mutex_lock(&s->qlock);
  int idle = s->qlen == 0 && s->running == 0 && s->done_head == NULL;
  pthread_mutex_unlock(&s->qlock);
  idle = idle && atomic_load(&s->open_jobs_conns) == 0;
  /* two quiet ticks: answers just resumed have been handed to the socket */
  L->idle_ticks = idle ? L->idle_ticks + 1 : 0;
  if (L->idle_ticks >= 2) uv_stop(&L->loop);
}

static void on_engine_log(void *user, sd_log_level level, const char *msg) {
  (void)user;
  srv_log(level == SD_LOG_DEBUG ? SRV_DEBUG : level == SD_LOG_WARN ? SRV_WARN : SRV_INFO,
          "engine: %s", msg);
}

/* Load the ControlNets at paths[0..s->n_nets-1]. 0, or -1 after logging why. */
static int load_controlnets(srv_server *s, char *const *paths, const sd_load_options *lo) {
  char err[SD_ERRMSG_MAX];
  if (s->n_nets) {
    s->nets = calloc((size_t)s->n_nets, sizeof *s->nets);
    s->net_refs = calloc((size_t)s->n_nets, sizeof *s->net_refs);
    if (!s->nets || !s->net_refs) return -1;
  }
  for (int i = 0; i < s->n_nets; i++) {
    if (sd_controlnet_load(paths[i], lo, &s->nets[i], err) != SD_OK) {
      srv_log(SRV_ERROR, "%s", err);
      return -1;
    }
    s->net_refs[i].net = s->nets[i];
    s->net_refs[i].name = api_model_label(paths[i]);
    if (!s->net_refs[i].name) return -1;
  }
  return 0;
}

/* Load the model and ControlNets named by the config. 0, or -1 after logging why. */
static int load_models(srv_server *s) {
  char err[SD_ERRMSG_MAX];
  sd_load_options lo;
  sd_load_options_init(&lo);
  lo.tokenizer_dir = s->cfg.tokenizer;
  lo.log = on_engine_log;
  double t0 = srv_now();
  if (sd_model_load(s->cfg.model, &lo, &s->model, err) != SD_OK) {
    srv_log(SRV_ERROR, "%s", err);
    return -1;
  }
  sd_model_get_info(s->model, &s->info);
  /* No ControlNet configured: the model's own controlnet/ folder, when it has one. */
  char *own = s->cfg.n_controlnets ? NULL : cli_model_controlnet(s->cfg.model);
  char *const *paths = own ? &own : s->cfg.controlnets;
  s->n_nets = own ? 1 : s->cfg.n_controlnets;
  int rc = load_controlnets(s, paths, &lo);
  free(own);
  if (rc) return -1;
  srv_log(SRV_INFO, "loaded model %s (%dx%d native) and %d ControlNet(s) in %.2f s",
          s->info.name, s->info.native_width, s->info.native_height, s->n_nets,
          srv_now() - t0);
  return 0;
}

static void server_free(srv_server *s) {
  srv_table_clear(s);
  srv_compat_destroy(s->compat);
  for (int i = 0; i < s->n_nets; i++) {
    sd_controlnet_destroy(s->nets ? s->nets[i] : NULL);
    if (s->net_refs) free((char *)s->net_refs[i].name);
  }
  free(s->nets);
  free(s->net_refs);
  sd_model_destroy(s->model);
  pthread_mutex_destroy(&s->qlock);
  pthread_cond_destroy(&s->qcond);
  pthread_mutex_destroy(&s->tlock);
  srv_metrics_close(&s->metrics);
  cfg_settings_free(&s->cfg);
}

int cli_serve(int argc, char **argv) {
  srv_server *s = calloc(1, sizeof *s);
  srv_loop *L = calloc(1, sizeof *L);
  int exit_now = 0, rc = CLI_EXIT_FAIL;
  char err[256];
  if (!s || !L) {
    cli_error("out of memory");
    free(s);
    free(L);
    return CLI_EXIT_FAIL;
  }
  pthread_mutex_init(&s->qlock, NULL);
  pthread_cond_init(&s->qcond, NULL);
  pthread_mutex_init(&s->tlock, NULL);
  srv_metrics_init(&s->metrics);
  if (cfg_load(argc - 1, argv + 1, environ, &s->cfg, &exit_now, err) != 0) {
    cli_error("serve: %s", err);
    rc = CLI_EXIT_USAGE;
    goto out_free;
  }
  if (exit_now) {
    rc = CLI_EXIT_OK;
    goto out_free;
  }
  if (!s->cfg.model) {
    const char *tried, *demo = cli_default_model(&tried);
    if (!demo) {
      cli_error("serve: no --model PATH (or SDSERVE_MODEL) given and the bundled demo model "
                "is not at %s", tried);
      rc = CLI_EXIT_USAGE;
      goto out_free;
    }
    if (!(s->cfg.model = strdup(demo))) goto out_free;
  }
  srv_log_set_level(srv_level_parse(s->cfg.log_level));
  signal(SIGPIPE, SIG_IGN);
  if (load_models(s)) goto out_free;
  if (!(s->compat = srv_compat_create())) goto out_free;

  api_limits_init(&s->limits);
  s->limits.max_pixels = s->cfg.max_pixels;
  s->limits.max_steps = s->cfg.max_steps;
  s->limits.max_prompt_chars = s->cfg.max_prompt_chars;
  s->limits.max_batch = s->cfg.max_batch;
  s->limits.max_image_bytes = (size_t)s->cfg.max_body_bytes;
  s->limits.native_width = s->info.native_width;
  s->limits.native_height = s->info.native_height;
  s->limits.controlnets = s->net_refs;
  s->limits.n_controlnets = s->n_nets;
  s->nworkers = s->cfg.workers;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 1) ncpu = 1;
  s->threads_per_job = s->cfg.threads > 0 ? s->cfg.threads
                                          : (int)(ncpu / s->nworkers > 0 ? ncpu / s->nworkers : 1);

  L->s = s;
  uv_loop_init(&L->loop);
  uv_async_init(&L->loop, &L->async, on_async);
  L->async.data = L;
  s->loop_async = &L->async;
  uv_async_init(&L->loop, &L->sig_async, on_signal_async);
  L->sig_async.data = L;
  sig_loop = L;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  uv_timer_init(&L->loop, &L->timer);
  L->timer.data = L;
  uv_timer_start(&L->timer, on_timer, 100, 100);

  if (srv_workers_start(s)) {
    srv_log(SRV_ERROR, "cannot start %d worker threads", s->cfg.workers);
    goto out_loop;
  }
  if (srv_http_start(s, err, sizeof err)) {
    srv_log(SRV_ERROR, "%s", err);
    goto out_workers;
  }
  srv_log(SRV_INFO, "listening on http://%s:%d (%d worker(s) x %d thread(s), queue %d)",
          s->cfg.host, s->cfg.port, s->nworkers, s->threads_per_job, s->cfg.queue);
  uv_run(&L->loop, UV_RUN_DEFAULT);
  srv_log(SRV_INFO, "drained: every accepted job answered; stopping");
  rc = CLI_EXIT_OK;
  srv_http_stop(s);
out_workers:
  atomic_store(&s->draining, 1);
  srv_workers_stop(s);
  srv_completions_run(s);
out_loop:
  uv_close((uv_handle_t *)&L->async, NULL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  sig_loop = NULL;
  uv_close((uv_handle_t *)&L->sig_async, NULL);
  uv_close((uv_handle_t *)&L->timer, NULL);
  uv_run(&L->loop, UV_RUN_DEFAULT);
  uv_loop_close(&L->loop);
out_free:
  server_free(s);
  free(s);
  free(L);
  return rc;
}
