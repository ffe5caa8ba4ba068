/* pool.h: the engine's thread pool, one per job (or per worker, reused across its jobs).
 *
 * A pool of T threads is the calling thread plus T - 1 helpers. sd__pool_for hands out the
 * tasks of one parallel loop one at a time from an atomic counter; the caller works too and
 * returns when every task is done. Idle helpers spin for a few tens of microseconds (so the
 * next kernel of a busy job starts at once) and then sleep on a futex (so an idle or loaded
 * machine is not burnt). Not a scheduler across jobs: several jobs own several pools, and
 * the kernel decides which thread runs. Replaces OpenMP, whose teams are process-wide.
 */
#ifndef SD_POOL_H
#define SD_POOL_H

#include "internal.h"

typedef struct sd__pool sd__pool;

/* fn(arg, task, worker): one task of a loop. worker is in [0, min(threads, ntasks)) and no
 * two tasks run at the same time with the same worker index, so per-worker scratch can be
 * indexed by it; the caller is worker 0 for its first task (later tasks may take any index
 * the caller got). */
typedef void (*sd__pool_fn)(void *arg, int task, int worker);

/* Create a pool of `threads` threads in *out (threads - 1 helpers are started; 1 starts
 * none and runs everything on the caller). The caller destroys it with sd__pool_destroy.
 * SD_ERR_INVALID for threads < 1 or > 1024, SD_ERR_NOMEM / SD_ERR_INTERNAL (thread start
 * failed) otherwise, with *out NULL and nothing left running. */
sd_status sd__pool_create(int threads, sd__pool **out, sd_error *err);

/* Stop and join the helpers, free the pool. Accepts NULL. No sd__pool_for may be running. */
void sd__pool_destroy(sd__pool *pool);

/* Threads of the pool (1 for NULL). */
int sd__pool_threads(const sd__pool *pool);

/* Run fn(arg, t, worker) for every t in [0, ntasks), dynamically scheduled, and return when
 * all have returned (their writes are then visible to the caller). pool NULL or ntasks <= 1
 * runs them in order on the caller with worker 0. One sd__pool_for at a time per pool (a job
 * runs its kernels one after another); fn must not call sd__pool_for on the same pool. */
void sd__pool_for(sd__pool *pool, int ntasks, sd__pool_fn fn, void *arg);

#endif
