/* driver.c: runs a libFuzzer-style target (LLVMFuzzerTestOneInput) without libFuzzer, so the
 * fuzz targets run as ordinary meson tests under gcc.
 *
 * Usage: driver [-n ITERATIONS] SEED_FILE_OR_DIR...
 * Every seed runs once, then ITERATIONS deterministic mutations (a fixed xorshift sequence:
 * bit flips, interesting bytes, inserts, deletes, truncations, chunk copies, splices of two
 * seeds). A finding crashes the process (abort, or ASan/UBSan when built with them), which
 * fails the test. This is a regression net, not a coverage-guided search: see run.sh.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEEDS 256
#define DRIVER_MAX_INPUT (1u << 20)

typedef struct seed {
  uint8_t *data;
  size_t len;
} seed;

static seed seeds[MAX_SEEDS];
static int nseeds;
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

static void add_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f || nseeds >= MAX_SEEDS) {
    if (f) fclose(f);
    return;
  }
  uint8_t *buf = malloc(DRIVER_MAX_INPUT);
  size_t n = fread(buf, 1, DRIVER_MAX_INPUT, f);
  fclose(f);
  seeds[nseeds].data = buf;
  seeds[nseeds].len = n;
  nseeds++;
}

static void add_path(const char *path) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    fprintf(stderr, "driver: cannot stat %s\n", path);
    exit(2);
  }
  if (!S_ISDIR(sb.st_mode)) {
    add_file(path);
    return;
  }
  DIR *d = opendir(path);
  struct dirent *de;
  /* sorted order would need more code; readdir order only changes which seed mutates when */
  char names[MAX_SEEDS][256];
  int n = 0;
  while (d && (de = readdir(d)) && n < MAX_SEEDS)
    if (de->d_name[0] != '.') snprintf(names[n++], 256, "%s", de->d_name);
  if (d) closedir(d);
  qsort(names, (size_t)n, 256, (int (*)(const void *, const void *))strcmp);
  for (int i = 0; i < n; i++) {
    char full[1024];
    snprintf(full, sizeof full, "%s/%s", path, names[i]);
    add_file(full);
  }
}

static const uint8_t interesting[] = {0,   1,   0x7F, 0x80, 0xFF, '"', '\\', '{', '}', '[',
                                      ']', ',', ':',  '-',  '0',  '9', 'e',  '.', 'u', ' '};

/* One mutation of buf[len] in place (cap bytes available); returns the new length. */
static size_t mutate(uint8_t *buf, size_t len, size_t cap) {
  int kinds = 1 + (int)(rnd() % 4);
  for (int k = 0; k < kinds; k++) {
    size_t pos = len ? rnd() % len : 0;
    switch (rnd() % 8) {
    case 0: if (len) buf[pos] ^= (uint8_t)(1u << (rnd() % 8)); break;
    case 1: if (len) buf[pos] = interesting[rnd() % sizeof interesting]; break;
    case 2: /* insert a byte */
      if (len < cap) {
        memmove(buf + pos + 1, buf + pos, len - pos);
        buf[pos] = interesting[rnd() % sizeof interesting];
        len++;
      }
      break;
    case 3: /* delete a run */
      if (len) {
        size_t n = 1 + rnd() % 8;
        if (n > len - pos) n = len - pos;
        memmove(buf + pos, buf + pos + n, len - pos - n);
        len -= n;
      }
      break;
    case 4: if (len) len = rnd() % len; break; /* truncate */
    case 5: /* copy a chunk elsewhere */
      if (len > 2) {
        size_t src = rnd() % len, n = 1 + rnd() % 32;
        if (n > len - src) n = len - src;
        if (n > len - pos) n = len - pos;
        memmove(buf + pos, buf + src, n);
      }
      break;
    case 6: /* splice the tail of another seed */
      if (nseeds > 1) {
        const seed *o = &seeds[rnd() % (uint64_t)nseeds];
        size_t from = o->len ? rnd() % o->len : 0, n = o->len - from;
        if (n > cap - pos) n = cap - pos;
        memcpy(buf + pos, o->data + from, n);
        len = pos + n;
      }
      break;
    case 7: /* overwrite a little-endian integer (length prefixes, offsets) */
      if (len >= 8) {
        uint64_t v = rnd() % 3 == 0 ? rnd() : rnd() % 4096;
        size_t at = rnd() % 2 ? 0 : rnd() % (len - 7);
        memcpy(buf + at, &v, rnd() % 2 ? 8 : 4);
      }
      break;
    }
  }
  return len;
}

int main(int argc, char **argv) {
  long iterations = 3000;
  int i = 1;
  if (i + 1 < argc && strcmp(argv[i], "-n") == 0) {
    iterations = atol(argv[i + 1]);
    i += 2;
  }
  for (; i < argc; i++) add_path(argv[i]);
  if (nseeds == 0) {
    fprintf(stderr, "driver: no seeds\n");
    return 2;
  }
  for (int s = 0; s < nseeds; s++) LLVMFuzzerTestOneInput(seeds[s].data, seeds[s].len);
  uint8_t *buf = malloc(DRIVER_MAX_INPUT);
  for (long it = 0; it < iterations; it++) {
    const seed *s = &seeds[rnd() % (uint64_t)nseeds];
    memcpy(buf, s->data, s->len);
    size_t len = mutate(buf, s->len, DRIVER_MAX_INPUT);
    LLVMFuzzerTestOneInput(buf, len);
  }
  printf("%d seeds, %ld mutated inputs, no crash\n", nseeds, iterations);
  free(buf);
  for (int s = 0; s < nseeds; s++) free(seeds[s].data);
  return 0;
}
