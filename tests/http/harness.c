/* harness.c: start/stop a real `sdserve serve` for the HTTP tests (see harness.h). */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hclient.h"

#ifndef SD_TEST_DATA
#error "SD_TEST_DATA must be defined by the build"
#endif

const char *ht_model_dir(void) { return SD_TEST_DATA "/models/tiny-sd"; }
const char *ht_controlnet_dir(void) { return SD_TEST_DATA "/models/tiny-sd/controlnet"; }

/* A port the kernel just handed out for 127.0.0.1 (free again once closed; the small race
 * with other processes is accepted). */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

void ht_dump_log(const ht_server *s, long max_bytes) {
  FILE *f = fopen(s->log_path, "r");
  if (!f) return;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, size > max_bytes ? size - max_bytes : 0, SEEK_SET);
  fprintf(stderr, "---- server log %s (last %ld bytes) ----\n", s->log_path, max_bytes);
  char buf[4096];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, k, stderr);
  fprintf(stderr, "---- end of server log ----\n");
  fclose(f);
}

/* One attempt; returns 0 ready, -1 failed, -2 the server exited during start-up. */
static int start_once(ht_server *s, const char *exe, const char *const *extra,
                      const char *const *wrapper, double ready_timeout_s) {
  memset(s, 0, sizeof *s);
  s->exe = exe;
  s->port = free_port();
  snprintf(s->log_path, sizeof s->log_path, "/tmp/sdserve_test_%d_%d.log", (int)getpid(),
           s->port);
  char port[16];
  snprintf(port, sizeof port, "%d", s->port);
  const char *argv[64];
  int n = 0;
  for (int i = 0; wrapper && wrapper[i] && n < 40; i++) argv[n++] = wrapper[i];
  const char *base[] = {exe, "serve", "--model", ht_model_dir(), "--controlnet",
                        ht_controlnet_dir(), "--host", "127.0.0.1", "--port", port};
  for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) argv[n++] = base[i];
  for (int i = 0; extra && extra[i] && n < 63; i++) argv[n++] = extra[i];
  argv[n] = NULL;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 2);
      dup2(fd, 1);
      close(fd);
    }
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  s->pid = pid;
  double t0 = hc_now();
  while (hc_now() - t0 < ready_timeout_s) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      fprintf(stderr, "ht_start: the server exited during start-up (status %d)\n", st);
      s->pid = 0;
      ht_dump_log(s, 4000);
      return -2;
    }
    hc_response r;
    int code = hc_request(s->port, "GET", "/readyz", NULL, NULL, 0, 2.0, &r);
    hc_response_free(&r);
    if (code == 200) return 0;
    sleep_s(0.05);
  }
  fprintf(stderr, "ht_start: /readyz not 200 within %.0f s\n", ready_timeout_s);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  s->pid = 0;
  ht_dump_log(s, 4000);
  return -1;
}

int ht_start(ht_server *s, const char *exe, const char *const *extra, const char *const *wrapper,
             double ready_timeout_s) {
  /* The free port can be taken by another test between our probe and the server's bind:
     an early exit is retried on a new port (a real start-up failure just fails 3 times). */
  int rc = -2;
  for (int attempt = 0; attempt < 3 && rc == -2; attempt++)
    rc = start_once(s, exe, extra, wrapper, ready_timeout_s);
  return rc == 0 ? 0 : -1;
}

int ht_stop(ht_server *s, double timeout_s, int keep_log) {
  if (s->pid <= 0) return -1;
  kill(s->pid, SIGTERM);
  double t0 = hc_now();
  int st = 0, code = -1;
  for (;;) {
    pid_t w = waitpid(s->pid, &st, WNOHANG);
    if (w == s->pid) {
      code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (hc_now() - t0 > timeout_s) {
      fprintf(stderr, "ht_stop: no exit within %.0f s after SIGTERM: killing\n", timeout_s);
      kill(s->pid, SIGKILL);
      waitpid(s->pid, NULL, 0);
      break;
    }
    sleep_s(0.02);
  }
  s->pid = 0;
  if (code != 0) {
    fprintf(stderr, "ht_stop: exit status %d\n", code);
    ht_dump_log(s, 6000);
  } else if (!keep_log) {
    unlink(s->log_path);
  }
  return code;
}

long ht_rss_kb(const ht_server *s) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
  FILE *f = fopen(path, "r");
  long kb = -1;
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}

double ht_metric(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p;) {
    if (*p != '#' && strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    p = strchr(p, '\n');
    if (p) p++;
  }
  return NAN;
}

double ht_metric_sum(const char *text, const char *name, const char *label) {
  size_t n = strlen(name);
  double sum = 0;
  for (const char *p = text; p && *p;) {
    const char *eol = strchr(p, '\n');
    if (!eol) eol = p + strlen(p);
    if (*p != '#' && strncmp(p, name, n) == 0 && (p[n] == '{' || p[n] == ' ')) {
      const char *sp = memchr(p, '}', (size_t)(eol - p));
      sp = sp ? sp + 1 : p + n;
      int match = !label || (memmem(p, (size_t)(sp - p), label, strlen(label)) != NULL);
      if (match) sum += strtod(sp, NULL);
    }
    p = *eol ? eol + 1 : eol;
  }
  return sum;
}

char *ht_get_metrics(int port) {
  hc_response r;
  int code = hc_request(port, "GET", "/metrics", NULL, NULL, 0, 10.0, &r);
  char *body = code == 200 ? r.body : NULL;
  if (body) r.body = NULL;
  hc_response_free(&r);
  return body;
}

char *ht_base64(const unsigned char *data, size_t n) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
  if (!out) return NULL;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)data[i] << 16;
    if (i + 1 < n) v |= (unsigned)data[i + 1] << 8;
    if (i + 2 < n) v |= data[i + 2];
    *o++ = tab[v >> 18 & 63];
    *o++ = tab[v >> 12 & 63];
    *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
    *o++ = i + 2 < n ? tab[v & 63] : '=';
  }
  *o = '\0';
  return out;
}

unsigned char *ht_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf) {
    buf[n] = '\0';
    *len = (size_t)n;
  }
  return buf;
}

int ht_run(const char *const *argv) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  int st;
  if (waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
