/* pool.c: the engine's per-job thread pool (pool.h): helpers that spin briefly, then sleep.
 *
 * Protocol. The caller publishes a loop (fn, arg, ntasks) and then opens it by storing a new
 * value in `job` (generation << 1 | 1). A helper that sees an open job registers in `refs`,
 * re-reads `job` to make sure the loop is still open, takes a worker slot and claims tasks
 * from `next` until none are left. The caller claims tasks too; when it finds none left it
 * closes the job and waits until `refs` is 0, so no helper still reads the loop's fields
 * when the caller publishes the next one. Helpers are optional: a loop never waits for a
 * helper that has not joined, so a sleeping helper costs the caller nothing but the wake.
 * Idle helpers spin POOL_SPIN_NS on `job` and then sleep on it with a futex (Linux).
 */
#define _GNU_SOURCE
#include "pool.h"

#include <errno.h>
#include <immintrin.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#include <sched.h>
#endif

/* How long an idle helper (or the caller waiting for the last tasks) spins before sleeping.
 * The kernels of a job follow each other within a few microseconds, so a helper spinning
 * this long catches the next one without a wake-up; a helper that saw no work for this long
 * sleeps and stops taking a core from other jobs. Measured on an SD 1.5 UNet eval at 256x256
 * (bench/bench, 2 threads): 90% of the gaps between its parallel loops were under 20 us and
 * 99% under 50 us; the rest were the pauses between whole network calls (over 10 ms). */
#ifndef POOL_SPIN_NS
#define POOL_SPIN_NS 50000L
#endif
#define POOL_MAX_THREADS 1024

#define CACHE_LINE 64

struct sd__pool {
  /* Written by the caller only while no helper can read them (job closed, refs 0). */
  sd__pool_fn fn;
  void *arg;
  int ntasks;
  int limit; /* worker slots of this loop: min(threads, ntasks) */
  int threads;
  uint32_t gen;
  pthread_t *helpers;
  int nstarted;
  /* Each shared counter on its own cache line: helpers poll `job` while others claim. */
  _Alignas(CACHE_LINE) _Atomic uint32_t job; /* gen << 1 | open; futex word of idle helpers */
  _Alignas(CACHE_LINE) _Atomic int next;     /* next unclaimed task of the open loop */
  _Atomic int joined;                        /* worker slots handed out (caller: slot 0) */
  _Alignas(CACHE_LINE) _Atomic uint32_t refs; /* helpers inside a loop; futex word of caller */
  _Atomic int caller_waiting;                 /* the caller sleeps (or is about to) on refs */
  _Alignas(CACHE_LINE) _Atomic int sleepers;  /* helpers sleeping (or about to) on job */
  _Atomic int stop;
};

/* ---- waiting primitives ---- */

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Sleep while *w == val (may return early: callers re-check). */
static void futex_wait(_Atomic uint32_t *w, uint32_t val) {
#ifdef __linux__
  syscall(SYS_futex, (void *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
#else
  (void)w, (void)val;
  sched_yield();
#endif
}

static void futex_wake(_Atomic uint32_t *w, int n) {
#ifdef __linux__
  syscall(SYS_futex, (void *)w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
#else
  (void)w, (void)n;
#endif
}

/* Spin up to POOL_SPIN_NS while *w == val; returns the last value read. The clock is read
 * only every 32 pauses (a pause is ~40-140 cycles). */
static uint32_t spin_while_equal(_Atomic uint32_t *w, uint32_t val) {
  long t0 = now_ns();
  for (;;) {
    for (int i = 0; i < 32; i++) {
      uint32_t v = atomic_load_explicit(w, memory_order_acquire);
      if (v != val) return v;
      _mm_pause();
    }
    if (now_ns() - t0 > POOL_SPIN_NS) return atomic_load(w);
  }
}

/* ---- the loop ---- */

/* Claim and run tasks of the open loop as worker `slot` until none are left. */
static void run_tasks(sd__pool *p, int slot) {
  int t;
  while ((t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->ntasks)
    p->fn(p->arg, t, slot);
}

static void *helper_main(void *arg) {
  sd__pool *p = arg;
  uint32_t seen = 0; /* job value this helper has dealt with (0: none opened yet) */
  for (;;) {
    uint32_t j = spin_while_equal(&p->job, seen);
    if (j == seen) {
      /* sleepers before the re-check pairs with the caller's store of job before its read
       * of sleepers (both seq_cst): either we see the new job or the caller wakes us. */
      atomic_fetch_add(&p->sleepers, 1);
      while ((j = atomic_load(&p->job)) == seen && !atomic_load(&p->stop))
        futex_wait(&p->job, seen);
      atomic_fetch_sub(&p->sleepers, 1);
    }
    if (atomic_load(&p->stop)) break;
    seen = j;
    if (!(j & 1u)) continue; /* a closed loop: wait for the next one */
    atomic_fetch_add(&p->refs, 1);
    /* Still open after registering: the caller cannot close-and-reuse the fields until we
     * leave. If it is closed already, leave without touching them. */
    if (atomic_load(&p->job) == j) {
      int slot = atomic_fetch_add_explicit(&p->joined, 1, memory_order_relaxed);
      if (slot < p->limit) run_tasks(p, slot);
    }
    if (atomic_fetch_sub(&p->refs, 1) == 1 && atomic_load(&p->caller_waiting))
      futex_wake(&p->refs, 1);
  }
  return NULL;
}

/* The caller, after its last task: close the loop and wait for helpers still in it (they
 * run their last task: spin a while, then sleep until the last one leaves). */
static void close_and_wait(sd__pool *p) {
  atomic_store(&p->job, p->gen << 1);
  uint32_t r = atomic_load(&p->refs);
  if (r == 0) return;
  long t0 = now_ns();
  for (int i = 1; (r = atomic_load(&p->refs)) != 0; i++) {
    _mm_pause();
    if (i % 32 == 0 && now_ns() - t0 > POOL_SPIN_NS) break;
  }
  if (r == 0) return;
  atomic_store(&p->caller_waiting, 1);
  while ((r = atomic_load(&p->refs)) != 0) futex_wait(&p->refs, r);
  atomic_store(&p->caller_waiting, 0);
}

void sd__pool_for(sd__pool *p, int ntasks, sd__pool_fn fn, void *arg) {
  if (ntasks <= 0) return;
  if (!p || p->threads == 1 || ntasks == 1) {
    for (int t = 0; t < ntasks; t++) fn(arg, t, 0);
    return;
  }
  p->fn = fn;
  p->arg = arg;
  p->ntasks = ntasks;
  p->limit = ntasks < p->threads ? ntasks : p->threads;
  atomic_store_explicit(&p->next, 0, memory_order_relaxed);
  atomic_store_explicit(&p->joined, 1, memory_order_relaxed);
  p->gen = (p->gen + 1) & 0x7fffffffu;
  if (p->gen == 0) p->gen = 1; /* job value 1 (gen 0 open) never occurs; 0 is "none yet" */
  atomic_store(&p->job, p->gen << 1 | 1u); /* publishes the fields above */
  if (atomic_load(&p->sleepers) > 0) futex_wake(&p->job, p->limit - 1);
  run_tasks(p, 0);
  close_and_wait(p);
}

/* ---- lifetime ---- */

int sd__pool_threads(const sd__pool *p) { return p ? p->threads : 1; }

/* Stop the helpers started so far and free the pool. */
static void pool_free(sd__pool *p) {
  atomic_store(&p->stop, 1);
  atomic_store(&p->job, (p->gen + 1) << 1); /* a change every helper sees */
  futex_wake(&p->job, INT_MAX);
  for (int i = 0; i < p->nstarted; i++) pthread_join(p->helpers[i], NULL);
  free(p->helpers);
  free(p);
}

sd_status sd__pool_create(int threads, sd__pool **out, sd_error *err) {
  *out = NULL;
  if (threads < 1 || threads > POOL_MAX_THREADS)
    return sd__err(err, SD_ERR_INVALID, "thread pool: %d threads (1..%d)", threads,
                   POOL_MAX_THREADS);
  sd_status st = SD_OK;
  sd__pool *p = aligned_alloc(CACHE_LINE, (sizeof *p + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE);
  if (!p) return sd__err(err, SD_ERR_NOMEM, "thread pool: out of memory");
  memset(p, 0, sizeof *p);
  p->threads = threads;
  atomic_init(&p->job, 0);
  atomic_init(&p->next, 0);
  atomic_init(&p->joined, 0);
  atomic_init(&p->refs, 0);
  atomic_init(&p->caller_waiting, 0);
  atomic_init(&p->sleepers, 0);
  atomic_init(&p->stop, 0);
  if (threads > 1 && !(p->helpers = calloc((size_t)threads - 1, sizeof *p->helpers))) {
    st = sd__err(err, SD_ERR_NOMEM, "thread pool: out of memory");
    goto out_free_pool;
  }
  /* Helpers block every signal: signals belong to the process's own threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = 0;
  while (p->nstarted < threads - 1 &&
         (rc = pthread_create(&p->helpers[p->nstarted], NULL, helper_main, p)) == 0)
    p->nstarted++;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    st = sd__err(err, rc == EAGAIN ? SD_ERR_NOMEM : SD_ERR_INTERNAL,
                 "thread pool: starting helper thread %d of %d: %s", p->nstarted + 1,
                 threads - 1, strerror(rc));
    goto out_free_pool;
  }
  *out = p;
  return SD_OK;

out_free_pool:
  pool_free(p); /* stops and joins the helpers started so far */
  return st;
}

void sd__pool_destroy(sd__pool *p) {
  if (p) pool_free(p);
}
