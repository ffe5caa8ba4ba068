/* arena.c: the per-job bump allocator (see arena.h). Chunks are kept in an array; a mark is
 * (chunk index, bytes used in it); reset keeps chunks allocated for reuse. */
#include <stdint.h>
#include <stdlib.h>

#include "arena.h"

#define SD_ARENA_ALIGN 64

typedef struct chunk {
  char *base;
  size_t size;
} chunk;

struct sd__arena {
  chunk *chunks;
  size_t nchunks, cap;
  size_t cur;  /* index of the chunk being filled */
  size_t used; /* bytes used in chunks[cur] */
  size_t chunk_bytes;
  size_t live, peak; /* bytes handed out now, and at most */
};

sd__arena *sd__arena_create(size_t chunk_bytes) {
  sd__arena *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->chunk_bytes = chunk_bytes < (1u << 20) ? (1u << 20) : chunk_bytes;
  return a;
}

void sd__arena_destroy(sd__arena *a) {
  if (!a) return;
  for (size_t i = 0; i < a->nchunks; i++) free(a->chunks[i].base);
  free(a->chunks);
  free(a);
}

static int add_chunk(sd__arena *a, size_t min) {
  if (a->nchunks == a->cap) {
    size_t ncap = a->cap ? 2 * a->cap : 8;
    chunk *nc = realloc(a->chunks, ncap * sizeof *nc);
    if (!nc) return -1;
    a->chunks = nc;
    a->cap = ncap;
  }
  size_t size = min > a->chunk_bytes ? min : a->chunk_bytes;
  void *p = NULL;
  if (posix_memalign(&p, SD_ARENA_ALIGN, size) != 0) return -1;
  a->chunks[a->nchunks].base = p;
  a->chunks[a->nchunks].size = size;
  a->nchunks++;
  return 0;
}

void *sd__arena_alloc(sd__arena *a, size_t n) {
  if (n > SIZE_MAX - SD_ARENA_ALIGN) return NULL;
  size_t need = (n + SD_ARENA_ALIGN - 1) & ~(size_t)(SD_ARENA_ALIGN - 1);
  if (need == 0) need = SD_ARENA_ALIGN;
  /* Find room in the current chunk or a later one that is big enough. */
  while (a->cur < a->nchunks) {
    chunk *c = &a->chunks[a->cur];
    if (c->size - a->used >= need) {
      void *p = c->base + a->used;
      a->used += need;
      a->live += need;
      if (a->live > a->peak) a->peak = a->live;
      return p;
    }
    if (a->cur + 1 >= a->nchunks) break;
    a->cur++;
    a->used = 0;
  }
  if (a->nchunks > 0 && a->chunks[a->cur].size - a->used < need) {
    /* No existing chunk fits: append one after the last, and move there. */
    if (add_chunk(a, need) != 0) return NULL;
    a->cur = a->nchunks - 1;
    a->used = 0;
  } else if (a->nchunks == 0) {
    if (add_chunk(a, need) != 0) return NULL;
    a->cur = 0;
    a->used = 0;
  }
  chunk *c = &a->chunks[a->cur];
  void *p = c->base + a->used;
  a->used += need;
  a->live += need;
  if (a->live > a->peak) a->peak = a->live;
  return p;
}

float *sd__arena_floats(sd__arena *a, size_t n) {
  if (n > SIZE_MAX / sizeof(float)) return NULL;
  return sd__arena_alloc(a, n * sizeof(float));
}

sd__arena_mark sd__arena_get_mark(const sd__arena *a) {
  sd__arena_mark m = {a->cur, a->used, a->live};
  return m;
}

void sd__arena_reset(sd__arena *a, sd__arena_mark m) {
  a->cur = m.chunk;
  a->used = m.used;
  a->live = m.live;
  if (m.chunk == 0 && m.used == 0 && a->nchunks > 1) {
    /* Empty again after spilling over chunks: one chunk of the peak size holds the same
     * sequence of blocks without gaps. If that allocation fails, keep the old chunks. */
    void *p = NULL;
    size_t size = a->peak > a->chunk_bytes ? a->peak : a->chunk_bytes;
    if (posix_memalign(&p, SD_ARENA_ALIGN, size) != 0) return;
    for (size_t i = 0; i < a->nchunks; i++) free(a->chunks[i].base);
    a->chunks[0].base = p;
    a->chunks[0].size = size;
    a->nchunks = 1;
  }
}

size_t sd__arena_reserved(const sd__arena *a) {
  size_t s = 0;
  for (size_t i = 0; i < a->nchunks; i++) s += a->chunks[i].size;
  return s;
}

size_t sd__arena_peak(const sd__arena *a) { return a->peak; }
