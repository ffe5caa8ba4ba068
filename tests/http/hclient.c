/* hclient.c: the tests' blocking HTTP/1.1 client (see hclient.h). Plain sockets and poll();
 * every wait is bounded by the connection's timeout. */
#define _GNU_SOURCE
#include "hclient.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

double hc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Waits until fd is readable (events POLLIN) or writable; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, double timeout_s) {
  struct pollfd p = {.fd = fd, .events = events};
  int ms = timeout_s <= 0 ? 0 : (int)(timeout_s * 1000) + 1;
  for (;;) {
    int rc = poll(&p, 1, ms);
    if (rc < 0 && errno == EINTR) continue;
    return rc < 0 ? -1 : rc > 0;
  }
}

int hc_open(hc_conn *c, int port, double timeout_s) {
  memset(c, 0, sizeof *c);
  c->timeout_s = timeout_s;
  c->remaining = -1;
  signal(SIGPIPE, SIG_IGN); /* a server closing early must give EPIPE, not kill the test */
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
    int e = errno;
    close(c->fd);
    c->fd = -1;
    errno = e;
    return -1;
  }
  return 0;
}

static int send_all(hc_conn *c, const char *p, size_t n) {
  while (n > 0) {
    if (wait_fd(c->fd, POLLOUT, c->timeout_s) != 1) return -1;
    ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

int hc_send(hc_conn *c, const char *method, const char *path, const char *extra_headers,
            const void *body, long long body_len, size_t send_len) {
  char head[1024];
  int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
                   method, path);
  if (body_len >= 0)
    n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %lld\r\n", body_len);
  if (n >= (int)sizeof head - 3) return -1;
  if (send_all(c, head, (size_t)n)) return -1;
  if (extra_headers && send_all(c, extra_headers, strlen(extra_headers))) return -1;
  if (send_all(c, "\r\n", 2)) return -1;
  if (send_len && send_all(c, body, send_len)) return -1;
  return 0;
}

/* Reads more bytes into buf; 1 got some, 0 closed, -1 timeout/error. */
static int fill(hc_conn *c) {
  if (c->pos > 0 && c->pos == c->len) c->pos = c->len = 0;
  if (c->cap - c->len < 4096) {
    size_t cap = c->cap ? c->cap * 2 : 16384;
    char *b = realloc(c->buf, cap + 1);
    if (!b) return -1;
    c->buf = b;
    c->cap = cap;
  }
  if (wait_fd(c->fd, POLLIN, c->timeout_s) != 1) return -1;
  for (;;) {
    ssize_t k = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return errno == ECONNRESET ? 0 : -1;
    c->len += (size_t)k;
    c->buf[c->len] = '\0';
    return k > 0;
  }
}

int hc_read_head(hc_conn *c) {
  char *end;
  while (!(end = c->len ? strstr(c->buf + c->pos, "\r\n\r\n") : NULL))
    if (fill(c) != 1) return -1;
  size_t hlen = (size_t)(end - (c->buf + c->pos)) + 2;
  char *line_end = strstr(c->buf + c->pos, "\r\n");
  int status = 0;
  if (sscanf(c->buf + c->pos, "HTTP/1.%*d %d", &status) != 1 || status < 100 || status > 599)
    return -1;
  size_t first = (size_t)(line_end + 2 - (c->buf + c->pos));
  free(c->head);
  c->head = strndup(line_end + 2, hlen - first);
  c->pos += hlen + 2;
  c->status = status;
  char v[64];
  c->chunked = hc_header(c->head, "Transfer-Encoding", v, sizeof v) && strcasestr(v, "chunked");
  c->remaining = -1;
  if (!c->chunked && hc_header(c->head, "Content-Length", v, sizeof v))
    c->remaining = atoll(v);
  if (c->chunked) c->remaining = 0; /* no chunk started yet */
  c->body_done = (status == 204 || status == 304 || (!c->chunked && c->remaining == 0));
  return status;
}

/* Takes up to n buffered bytes (reading more if none) limited by lim (-1 = none). */
static long take(hc_conn *c, char *dst, size_t n, long long lim) {
  if (c->pos == c->len) {
    int rc = fill(c);
    if (rc != 1) return rc == 0 ? 0 : -1;
  }
  size_t k = c->len - c->pos;
  if (k > n) k = n;
  if (lim >= 0 && (long long)k > lim) k = (size_t)lim;
  memcpy(dst, c->buf + c->pos, k);
  c->pos += k;
  return (long)k;
}

/* Reads one CRLF-terminated line (for chunk sizes) into dst; 0 ok, -1 error. */
static int read_line(hc_conn *c, char *dst, size_t n) {
  char *eol;
  while (!(eol = c->len > c->pos ? memmem(c->buf + c->pos, c->len - c->pos, "\r\n", 2) : NULL))
    if (fill(c) != 1) return -1;
  size_t k = (size_t)(eol - (c->buf + c->pos));
  if (k >= n) return -1;
  memcpy(dst, c->buf + c->pos, k);
  dst[k] = '\0';
  c->pos += k + 2;
  return 0;
}

long hc_read_body(hc_conn *c, void *dst, size_t n) {
  if (c->body_done || n == 0) return 0;
  if (!c->chunked) {
    long k = take(c, dst, n, c->remaining);
    if (k > 0 && c->remaining >= 0) c->remaining -= k;
    if (k == 0 && c->remaining > 0) return -1; /* cut before Content-Length */
    if (k == 0 || c->remaining == 0) c->body_done = 1;
    return k;
  }
  if (c->remaining == 0) { /* at a chunk boundary: read its size line */
    char line[64];
    if (read_line(c, line, sizeof line)) return -1;
    char *end;
    long long size = strtoll(line, &end, 16);
    if (end == line || size < 0) return -1;
    if (size == 0) { /* last chunk: skip trailers up to the empty line */
      do
        if (read_line(c, line, sizeof line)) return -1;
      while (line[0]);
      c->body_done = 1;
      return 0;
    }
    c->remaining = size;
  }
  long k = take(c, dst, n, c->remaining);
  if (k <= 0) return -1;
  c->remaining -= k;
  if (c->remaining == 0) {
    char crlf[4];
    if (read_line(c, crlf, sizeof crlf) || crlf[0]) return -1;
  }
  return k;
}

int hc_next_event(hc_conn *c, hc_event *ev) {
  memset(ev, 0, sizeof *ev);
  for (;;) {
    char *sep = c->sse_len ? memmem(c->sse, c->sse_len, "\n\n", 2) : NULL;
    if (sep) {
      size_t elen = (size_t)(sep - c->sse);
      char *text = strndup(c->sse, elen);
      memmove(c->sse, sep + 2, c->sse_len - elen - 2);
      c->sse_len -= elen + 2;
      snprintf(ev->event, sizeof ev->event, "message");
      size_t dlen = 0;
      ev->data = calloc(1, elen + 1);
      for (char *save, *line = strtok_r(text, "\n", &save); line;
           line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "event:", 6) == 0)
          snprintf(ev->event, sizeof ev->event, "%s", line + 6 + (line[6] == ' '));
        else if (strncmp(line, "data:", 5) == 0) {
          const char *d = line + 5 + (line[5] == ' ');
          if (dlen) ev->data[dlen++] = '\n';
          memcpy(ev->data + dlen, d, strlen(d));
          dlen += strlen(d);
        }
      }
      free(text);
      if (dlen == 0 && strcmp(ev->event, "message") == 0) { /* a comment/keep-alive */
        free(ev->data);
        ev->data = NULL;
        continue;
      }
      return 1;
    }
    char tmp[8192];
    long k = hc_read_body(c, tmp, sizeof tmp);
    if (k <= 0) return k == 0 && c->sse_len == 0 ? 0 : -1;
    char *g = realloc(c->sse, c->sse_len + (size_t)k + 1);
    if (!g) return -1;
    c->sse = g;
    /* normalise CRLF to LF so "\n\n" separates events either way */
    for (long i = 0; i < k; i++)
      if (tmp[i] != '\r') c->sse[c->sse_len++] = tmp[i];
  }
}

void hc_close(hc_conn *c) {
  if (c->fd >= 0) close(c->fd);
  free(c->buf);
  free(c->head);
  free(c->sse);
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

int hc_request(int port, const char *method, const char *path, const char *extra_headers,
               const void *body, size_t body_len, double timeout_s, hc_response *r) {
  hc_conn c;
  memset(r, 0, sizeof *r);
  double t0 = hc_now();
  if (hc_open(&c, port, timeout_s)) return -1;
  int has_body = body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                 strcmp(method, "DELETE") == 0;
  hc_send(&c, method, path, extra_headers, body, has_body ? (long long)body_len : -1, body_len);
  int status = hc_read_head(&c);
  if (status < 0) {
    hc_close(&c);
    return -1;
  }
  r->status = status;
  r->head = c.head;
  c.head = NULL;
  size_t cap = 65536, n = 0;
  char *b = malloc(cap + 1);
  long k;
  while (b && (k = hc_read_body(&c, b + n, cap - n)) > 0) {
    n += (size_t)k;
    if (n == cap) {
      char *g = realloc(b, (cap *= 2) + 1);
      if (!g) break;
      b = g;
    }
  }
  int ok = b && c.body_done;
  if (b) b[n] = '\0';
  r->body = b;
  r->body_len = n;
  r->seconds = hc_now() - t0;
  hc_close(&c);
  return ok ? status : -1;
}

void hc_response_free(hc_response *r) {
  free(r->head);
  free(r->body);
  memset(r, 0, sizeof *r);
}

int hc_header(const char *head, const char *name, char *dst, size_t n) {
  size_t nl = strlen(name);
  for (const char *p = head; p && *p;) {
    const char *eol = strstr(p, "\r\n");
    if (!eol) eol = p + strlen(p);
    if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (v < eol && isspace((unsigned char)*v)) v++;
      const char *e = eol;
      while (e > v && isspace((unsigned char)e[-1])) e--;
      snprintf(dst, n, "%.*s", (int)(e - v), v);
      return 1;
    }
    p = *eol ? eol + 2 : eol;
  }
  return 0;
}
