/* hclient.h: a small blocking HTTP/1.1 client for the HTTP tests, over IPv4 loopback.
 *
 * One request per connection (the server is told `Connection: close`). It sends a request
 * with an optional body (or only its head, to test answers given before the body), reads the
 * status line and headers, then the body decoded from Content-Length, chunked encoding or
 * close-delimited, either all at once or piece by piece (for streams), and Server-Sent Events
 * one at a time. Every read has a timeout, so a hanging server fails the test instead of
 * hanging it. Not a general client: no TLS, no redirects, no keep-alive. */
#ifndef HCLIENT_H
#define HCLIENT_H

#include <stddef.h>

typedef struct hc_conn {
  int fd;
  double timeout_s;       /* per read/write wait */
  char *buf;              /* received, not yet consumed bytes: buf[pos..len) */
  size_t len, pos, cap;
  int status;             /* after hc_read_head */
  char *head;             /* the header block (status line excluded), NUL-terminated */
  int chunked;            /* body framing */
  long long remaining;    /* Content-Length left, or bytes left in the chunk; -1 = to close */
  int body_done;
  char *sse;              /* decoded body bytes not yet split into events */
  size_t sse_len;
} hc_conn;

typedef struct hc_response {
  int status;             /* 0 if no response arrived */
  char *head;             /* header block, NUL-terminated (malloc'ed) */
  char *body;             /* NUL-terminated after body_len bytes (malloc'ed) */
  size_t body_len;
  double seconds;         /* from sending the first byte to the last byte read */
} hc_response;

typedef struct hc_event {
  char event[32];         /* "message" when the event had no `event:` line */
  char *data;             /* data lines joined by '\n' (malloc'ed) */
} hc_event;

/* Connects to 127.0.0.1:port. 0 ok, -1 failure (errno kept). c->timeout_s = timeout_s. */
int hc_open(hc_conn *c, int port, double timeout_s);

/* Sends "METHOD path HTTP/1.1", Host, Connection: close, Content-Length when body_len >= 0
 * (body_len < 0: no Content-Length, no body), extra_headers (complete "Name: value\r\n"
 * lines, or NULL), then send_len bytes of body (send_len may be less than body_len to send
 * only a part, or 0 for none). 0 ok, -1 on a send error (the server may already have
 * answered and closed: read the head anyway). */
int hc_send(hc_conn *c, const char *method, const char *path, const char *extra_headers,
            const void *body, long long body_len, size_t send_len);

/* Reads the status line and headers. Returns the status (100..599), or -1 on timeout, close
 * or a malformed head. */
int hc_read_head(hc_conn *c);

/* Reads up to n decoded body bytes into dst; returns the count, 0 at the end of the body, -1
 * on timeout/error (including a chunked body cut before its last chunk). */
long hc_read_body(hc_conn *c, void *dst, size_t n);

/* Reads the next Server-Sent Event. 1 = got one (free ev->data), 0 = end of stream, -1 =
 * error or timeout. */
int hc_next_event(hc_conn *c, hc_event *ev);

/* Closes the socket and frees buffers. Accepts a closed connection. */
void hc_close(hc_conn *c);

/* One request start to finish: open, send the whole body, read head and body, close.
 * Returns the status, or -1 if no complete response arrived (r->status then 0 or the status
 * of a cut response). Free r with hc_response_free. body may be NULL with body_len 0 (then
 * Content-Length: 0 is sent for POST/PUT/DELETE, nothing for GET/HEAD/OPTIONS). */
int hc_request(int port, const char *method, const char *path, const char *extra_headers,
               const void *body, size_t body_len, double timeout_s, hc_response *r);

void hc_response_free(hc_response *r);

/* Copies the value of header name (case-insensitive, first occurrence, whitespace trimmed)
 * from a header block into dst (n bytes). 1 found, 0 not. */
int hc_header(const char *head, const char *name, char *dst, size_t n);

/* Monotonic seconds. */
double hc_now(void);

#endif
