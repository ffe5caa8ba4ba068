/* harness.h: starts and stops a real `sdserve serve` for the HTTP tests.
 *
 * ht_start picks a free loopback port, runs `SDSERVE serve --model <tiny-sd> --controlnet
 * <tiny-sd/controlnet> --host 127.0.0.1 --port P [extra...]` with its stderr in a log file,
 * and waits until GET /readyz answers 200. ht_stop sends SIGTERM and reaps it with a timeout
 * (the exit status is part of what the tests check). Helpers read the server's RSS from /proc
 * and single series from /metrics. The model paths come from SD_TEST_DATA (meson). */
#ifndef HT_HARNESS_H
#define HT_HARNESS_H

#include <sys/types.h>

typedef struct ht_server {
  pid_t pid;
  int port;
  char log_path[256];
  const char *exe;
} ht_server;

/* Path of the tiny test model and its ControlNet. */
const char *ht_model_dir(void);
const char *ht_controlnet_dir(void);

/* Starts the server (extra: NULL-terminated extra arguments, or NULL; wrapper: NULL-terminated
 * command put in front, e.g. {"valgrind", "--error-exitcode=99", NULL}, or NULL). Waits up to
 * ready_timeout_s for /readyz = 200. 0 ok; -1 (the log is printed to stderr, the process
 * killed). */
int ht_start(ht_server *s, const char *exe, const char *const *extra, const char *const *wrapper,
             double ready_timeout_s);

/* SIGTERM, then waits up to timeout_s. Returns the exit status (0..255), 128 + signal when
 * killed by one, or -1 when it did not exit in time (then it is SIGKILLed). Removes the log
 * unless keep_log or the status is non-zero (then prints its tail to stderr). */
int ht_stop(ht_server *s, double timeout_s, int keep_log);

/* Prints the last max_bytes of the server's log to stderr. */
void ht_dump_log(const ht_server *s, long max_bytes);

/* Resident set size of the server process in KiB (VmRSS), or -1. */
long ht_rss_kb(const ht_server *s);

/* Value of one series in Prometheus text (exact series text before the value, e.g.
 * `sdserve_queue_depth` or `sdserve_requests_total{outcome="completed"}`); NAN if absent. */
double ht_metric(const char *text, const char *series);

/* Sum of every series of a metric name whose labels contain `label` (NULL = all). */
double ht_metric_sum(const char *text, const char *name, const char *label);

/* GET /metrics into a malloc'ed string (NULL on failure). */
char *ht_get_metrics(int port);

/* Standard base64 of n bytes (written here, independent of the server's decoder), malloc'ed. */
char *ht_base64(const unsigned char *data, size_t n);

/* Whole file into a malloc'ed buffer (*len bytes, NUL-terminated); NULL on failure. */
unsigned char *ht_read_file(const char *path, size_t *len);

/* Runs argv (NULL-terminated) with stdout+stderr to /dev/null; returns its exit status, or
 * -1 if it could not run. */
int ht_run(const char *const *argv);

#endif
