/* arena.h: per-job bump allocator for activations and scratch.
 *
 * A job creates one arena; network code allocates activations from it and releases them in
 * stack order with mark/reset, so a denoising step reuses the same memory as the step before.
 * Blocks are 64-byte aligned. The arena grows by chunks and remembers its peak, so the
 * second step allocates nothing new. Not thread-safe: one arena per job.
 */
#ifndef SD_ARENA_H
#define SD_ARENA_H

#include <stddef.h>

typedef struct sd__arena sd__arena;

typedef struct sd__arena_mark {
  size_t chunk;
  size_t used;
} sd__arena_mark;

/* chunk_bytes: the minimum size of each chunk (larger requests get their own). */
sd__arena *sd__arena_create(size_t chunk_bytes);
void sd__arena_destroy(sd__arena *a);

/* A 64-byte aligned block of n bytes, or NULL when memory runs out. */
void *sd__arena_alloc(sd__arena *a, size_t n);
/* n floats (NULL on overflow or out of memory). */
float *sd__arena_floats(sd__arena *a, size_t n);

sd__arena_mark sd__arena_get_mark(const sd__arena *a);
/* Release everything allocated after the mark (the memory is kept for reuse). */
void sd__arena_reset(sd__arena *a, sd__arena_mark m);

/* Bytes currently reserved from the system, and the high-water mark of use. */
size_t sd__arena_reserved(const sd__arena *a);
size_t sd__arena_peak(const sd__arena *a);

#endif
