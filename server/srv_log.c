/* srv_log.c: level-gated log lines on stderr for the server.
 *
 * One line per call, prefixed with a UTC timestamp and the level, written with a single
 * write(2) so lines from concurrent threads never interleave. The threshold is the one piece
 * of process state here: logging is process-wide by nature (stderr is), and it is set once at
 * start from the config.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "srv.h"

static atomic_int log_threshold = SRV_INFO;

srv_level srv_level_parse(const char *s) {
  if (!s) return SRV_INFO;
  if (!strcasecmp(s, "debug")) return SRV_DEBUG;
  if (!strcasecmp(s, "warn")) return SRV_WARN;
  if (!strcasecmp(s, "error")) return SRV_ERROR;
  return SRV_INFO;
}

void srv_log_set_level(srv_level lvl) { atomic_store(&log_threshold, (int)lvl); }

void srv_log(srv_level lvl, const char *fmt, ...) {
  if ((int)lvl < atomic_load(&log_threshold)) return;
  static const char *const names[] = {"debug", "info", "warn", "error"};
  char line[2048];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000, names[lvl]);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m < sizeof line - (size_t)n - 1
                                           ? (size_t)m : sizeof line - (size_t)n - 2);
  for (size_t i = (size_t)n; i < len; i++)
    if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}
