/* internal.h: what every engine file shares: the error record and small helpers.
 *
 * Not part of the public interface (sd.h). Internal functions are named sd__module_verb.
 * A failing internal call fills an sd_error and returns its status; the first error wins,
 * so the innermost, most specific message reaches the user.
 */
#ifndef SD_INTERNAL_H
#define SD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sd.h"

typedef struct sd_error {
  sd_status status;
  char msg[SD_ERRMSG_MAX];
} sd_error;

/* Record an error (printf-style message) unless one is already recorded; returns the status
 * that is now recorded. err may be NULL. */
sd_status sd__err(sd_error *err, sd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copy err's message into a caller buffer of SD_ERRMSG_MAX bytes (buf may be NULL). */
void sd__err_export(const sd_error *err, char *buf);

/* Overflow-checked size arithmetic: return 0 and set *out, or 1 on overflow. */
static inline int sd__mul_size(size_t a, size_t b, size_t *out) {
  return __builtin_mul_overflow(a, b, out);
}
static inline int sd__add_size(size_t a, size_t b, size_t *out) {
  return __builtin_add_overflow(a, b, out);
}

/* Read a whole file into a NUL-terminated malloc'ed buffer; *len excludes the NUL.
 * Files above max_bytes are refused with SD_ERR_LIMIT. */
sd_status sd__read_file(const char *path, size_t max_bytes, char **data, size_t *len,
                        sd_error *err);

/* Join dir and name with '/' into a malloc'ed string (NULL on allocation failure). */
char *sd__path_join(const char *dir, const char *name);

#endif
