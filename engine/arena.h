/* arena.h: per-job bump allocator for activations and scratch.
 *
 * A job creates one arena; network code allocates activations from it and releases them in
 * stack order with mark/reset, so a denoising step reuses the same memory as the step before.
 * Blocks are 64-byte aligned. The arena grows by chunks and remembers its peak; when it is
 * reset to empty while spread over several chunks, it trades them for one chunk of the peak
 * size, so the second step allocates nothing new and wastes no chunk tails. Not thread-safe:
 * one arena per job.
 */
#ifndef SD_ARENA_H
#define SD_ARENA_H

#include <stddef.h>

typedef struct sd__arena sd__arena;

typedef struct sd__arena_mark {
  size_t chunk;
  size_t used;
  size_t live; /* bytes handed out when the mark was taken */
} sd__arena_mark;

/* chunk_bytes: the minimum size of each chunk (larger requests get their own). */
sd__arena *sd__arena_create(size_t chunk_bytes);
void sd__arena_destroy(sd__arena *a);

/* A 64-byte aligned block of n bytes, or NULL when memory runs out. */
void *sd__arena_alloc(sd__arena *a, size_t n);
/* n floats (NULL on overflow or out of memory). */
float *sd__arena_floats(sd__arena *a, size_t n);

sd__arena_mark sd__arena_get_mark(const sd__arena *a);
/* Release everything allocated after the mark (the memory is kept for reuse; see above for
 * the reset to empty). */
void sd__arena_reset(sd__arena *a, sd__arena_mark m);

/* Bytes currently reserved from the system, and the high-water mark of use. */
size_t sd__arena_reserved(const sd__arena *a);
size_t sd__arena_peak(const sd__arena *a);

#endif
