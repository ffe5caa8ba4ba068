/* test_pool.c: the engine's thread pool (engine/pool.h), as its contract states it.
 *
 * Every task runs exactly once; worker indices stay below min(threads, ntasks) and are never
 * shared by two running tasks; helpers really run tasks at the same time as the caller, also
 * after they went to sleep; idle helpers sleep (the process burns almost no CPU while a pool
 * waits); pools used from several threads at once do not interfere; create/destroy per
 * request, with or without work, leaks no running thread (the test would hang at exit or in
 * destroy). Bit-identity of the kernels across thread counts is checked by test_ops and the
 * network tests, which run their kernels on pools. No numerical tolerances here: counts are
 * exact.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "check.h"
#include "pool.h"

#define MAX_TASKS 10000
#define MAX_WORKERS 8

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- every task once, worker slots exclusive and in range ---- */

typedef struct count_job {
  _Atomic int hits[MAX_TASKS];
  _Atomic int busy[MAX_WORKERS]; /* 1 while a task of that worker index runs */
  _Atomic int bad_worker, shared_worker;
  int limit; /* min(threads, ntasks) */
} count_job;

static void count_task(void *arg, int t, int worker) {
  count_job *J = arg;
  if (worker < 0 || worker >= J->limit) {
    atomic_fetch_add(&J->bad_worker, 1);
    return;
  }
  if (atomic_exchange(&J->busy[worker], 1)) atomic_fetch_add(&J->shared_worker, 1);
  atomic_fetch_add(&J->hits[t], 1);
  for (volatile int i = 0; i < (t % 7) * 50; i++) {
  } /* uneven task lengths */
  atomic_store(&J->busy[worker], 0);
}

/* Run ntasks on pool reps times; returns the number of contract violations. */
static int run_counts(sd__pool *pool, int ntasks, int reps, count_job *J) {
  int threads = sd__pool_threads(pool), bad = 0;
  for (int r = 0; r < reps; r++) {
    memset(J, 0, sizeof *J);
    J->limit = ntasks < threads ? ntasks : threads;
    sd__pool_for(pool, ntasks, count_task, J);
    for (int t = 0; t < ntasks; t++) bad += atomic_load(&J->hits[t]) != 1;
    bad += atomic_load(&J->bad_worker) + atomic_load(&J->shared_worker);
  }
  return bad;
}

static void test_counts(void) {
  static count_job J;
  static const int threads[] = {1, 2, 3, 5};
  static const int ntasks[] = {0, 1, 2, 3, 7, 100, MAX_TASKS};
  for (size_t i = 0; i < sizeof threads / sizeof *threads; i++) {
    sd__pool *pool = NULL;
    CHECK_INT(sd__pool_create(threads[i], &pool, NULL), SD_OK);
    if (!pool) continue;
    CHECK_INT(sd__pool_threads(pool), threads[i]);
    for (size_t k = 0; k < sizeof ntasks / sizeof *ntasks; k++) {
      int reps = ntasks[k] >= 1000 ? 20 : 300; /* many loops back to back: generation changes */
      CHECK_INT(run_counts(pool, ntasks[k], reps, &J), 0);
    }
    sd__pool_destroy(pool);
  }
  /* NULL pool: serial, worker 0 */
  CHECK_INT(sd__pool_threads(NULL), 1);
  CHECK_INT(run_counts(NULL, 100, 3, &J), 0);
  printf("counts: every task once, worker slots exclusive, for 1/2/3/5 threads\n");
}

/* ---- helpers run at the same time as the caller, awake or woken from sleep ---- */

typedef struct meet_job {
  _Atomic int arrived;
  _Atomic int met; /* tasks that saw both running at once */
} meet_job;

/* Wait (up to 5 s) until both tasks of the loop are running. */
static void meet_task(void *arg, int t, int worker) {
  meet_job *J = arg;
  atomic_fetch_add(&J->arrived, 1);
  double t0 = clock_s(CLOCK_MONOTONIC);
  while (atomic_load(&J->arrived) < 2 && clock_s(CLOCK_MONOTONIC) - t0 < 5.0) {
  }
  if (atomic_load(&J->arrived) == 2) atomic_fetch_add(&J->met, 1);
}

static void test_concurrency(void) {
  sd__pool *pool = NULL;
  CHECK_INT(sd__pool_create(2, &pool, NULL), SD_OK);
  if (!pool) return;
  for (int round = 0; round < 3; round++) {
    if (round > 0) sleep_ms(50); /* far past the spin: the helper sleeps on its futex */
    meet_job J = {0, 0};
    double t0 = clock_s(CLOCK_MONOTONIC);
    sd__pool_for(pool, 2, meet_task, &J);
    double ms = (clock_s(CLOCK_MONOTONIC) - t0) * 1e3;
    CHECK_INT(atomic_load(&J.met), 2);
    printf("2 tasks met on 2 threads (%s helper) in %.3f ms\n", round ? "sleeping" : "fresh",
           ms);
  }
  sd__pool_destroy(pool);
}

/* ---- idle helpers sleep ---- */

static void nop_task(void *arg, int t, int worker) { (void)arg, (void)t, (void)worker; }

static void test_idle_cpu(void) {
  sd__pool *pool = NULL;
  CHECK_INT(sd__pool_create(4, &pool, NULL), SD_OK);
  if (!pool) return;
  sd__pool_for(pool, 64, nop_task, NULL);
  sleep_ms(20); /* let the spin run out */
  double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
  sleep_ms(300);
  double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0, wall = clock_s(CLOCK_MONOTONIC) - w0;
  /* 3 spinning helpers would burn ~0.9 s of CPU in 0.3 s; sleeping ones ~0. The bound leaves
   * room for a loaded machine's scheduling noise. */
  printf("idle pool of 4: %.2f ms CPU over %.0f ms wall\n", cpu * 1e3, wall * 1e3);
  CHECK_LE(cpu, 0.03);
  sd__pool_destroy(pool);
}

/* ---- several pools at once, created and destroyed per request ---- */

typedef struct client {
  pthread_t tid;
  int id, bad;
} client;

static void *client_main(void *arg) {
  client *c = arg;
  count_job *J = calloc(1, sizeof *J);
  if (!J) {
    c->bad = 1;
    return NULL;
  }
  for (int req = 0; req < 20; req++) {
    sd__pool *pool = NULL;
    if (sd__pool_create(2 + (c->id + req) % 3, &pool, NULL) != SD_OK) {
      c->bad++;
      continue;
    }
    if (req % 4 != 3) c->bad += run_counts(pool, 37 + req, 10, J); /* some do no work */
    sd__pool_destroy(pool);
  }
  free(J);
  return NULL;
}

static void test_many_pools(void) {
  client cl[3];
  for (int i = 0; i < 3; i++) {
    cl[i].id = i, cl[i].bad = 0;
    CHECK_INT(pthread_create(&cl[i].tid, NULL, client_main, &cl[i]), 0);
  }
  for (int i = 0; i < 3; i++) {
    pthread_join(cl[i].tid, NULL);
    CHECK_INT(cl[i].bad, 0);
  }
  printf("3 threads x 20 requests, each with its own pool of 2-4 threads: ok\n");
}

static void test_errors(void) {
  sd__pool *pool = (sd__pool *)&pool;
  sd_error err = {0};
  CHECK_INT(sd__pool_create(0, &pool, &err), SD_ERR_INVALID);
  CHECK(pool == NULL);
  CHECK(strstr(err.msg, "thread") != NULL);
  CHECK_INT(sd__pool_create(-3, &pool, NULL), SD_ERR_INVALID);
  CHECK_INT(sd__pool_create(100000, &pool, NULL), SD_ERR_INVALID);
  CHECK(pool == NULL);
  sd__pool_destroy(NULL);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  test_errors();
  test_counts();
  test_concurrency();
  test_idle_cpu();
  test_many_pools();
  return check_exit();
}
