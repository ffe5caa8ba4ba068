/* test_http_battery.c: the reliability battery against a real `sdserve serve` (tiny model).
 *
 * Modes (argv[2], default "battery"):
 *   battery  C clients x R requests (16 x 25), 20% malformed (bad JSON, wrong types, 1e400,
 *            512.7, huge prompt, bad base64, two PNG bombs, oversized body): every request
 *            gets exactly one complete response; malformed -> 400/413/422 with the JSON error
 *            shape; valid -> 200 with a decodable PNG of the asked size (or an SSE stream
 *            ending in one `done`), or 503 + Retry-After; then /metrics reconciles with what
 *            the clients saw (accepted = completed + cancelled + expired + failed = our 200s,
 *            rejected = our 503s, requests by status = ours). Then client disconnects mid-job
 *            free the worker within a step or two, and SIGTERM under load loses nothing and
 *            exits 0.
 *   short    the same with 4 x 6 requests, then SIGTERM under load (for the sanitizer run).
 *   single   each request kind once, in turn, valid ones 32x32 with one step, then SIGTERM
 *            (for the valgrind run, where one such generation takes ~20 s).
 *   memory   RSS of the server before/after N requests (argv[3], default 1000) after warm-up.
 * argv[3..]: for battery/short, an optional wrapper command for the server (e.g. valgrind).
 * Usage: test_http_battery PATH/TO/sdserve [battery|short|memory [N | WRAPPER...]] */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "harness.h"
#include "hclient.h"
#include "png_io.h"

enum {
  V_PNG, V_SSE,                                  /* valid */
  M_BAD_JSON, M_TYPE, M_1E400, M_FRACTION, M_HUGE_PROMPT, M_BAD_B64, M_BOMB_SIZE, M_BOMB_TEXT,
  M_OVERSIZE, N_KINDS
};
static const char *const kind_names[N_KINDS] = {"png", "sse", "bad_json", "wrong_type", "1e400",
                                                "512.7", "huge_prompt", "bad_base64",
                                                "png_bomb_size", "png_bomb_text", "oversize"};

/* What each malformed kind must get (1 = 400 or 422: a PNG bomb may be refused as an
 * undecodable image or as over a limit). */
static const int expected_status[N_KINDS] = {0, 0, 400, 400, 422, 422, 422, 400, 1, 1, 413};

static int g_port;
static double g_timeout = 120;
static char *g_bomb_size_b64, *g_bomb_text_b64;
static const long long g_max_body = 1 << 20; /* the server runs with --max-body-bytes 1M */

typedef struct tally {
  int sent, by_status[600], no_response, wrong_status, bad_body, retry_missing;
  int ok_generate, s503_generate; /* answers on /generate that the server counts as jobs */
  int by_kind[N_KINDS];
} tally;


/* ---- PNG bombs ------------------------------------------------------------------------ */

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* Appends a chunk with declared length `declared` (may lie) and n real data bytes. */
static size_t chunk(unsigned char *out, const char *type, const void *data, size_t n,
                    uint32_t declared) {
  put32(out, declared);
  memcpy(out + 4, type, 4);
  memcpy(out + 8, data, n);
  put32(out + 8 + n, (uint32_t)crc32(crc32(0, (const unsigned char *)type, 4), data, (uInt)n));
  return 12 + n;
}

/* A small PNG that declares 100000 x 100000 pixels (size bomb), or an 8x8 PNG whose tEXt chunk
 * declares 1.16 GB (text bomb: FACTS.md, libpng allocates the declared size). */
static char *make_bomb(int text_bomb) {
  unsigned char png[512];
  size_t n = 0;
  memcpy(png, "\x89PNG\r\n\x1a\n", 8);
  n = 8;
  unsigned char ihdr[13] = {0};
  uint32_t side = text_bomb ? 8 : 100000;
  put32(ihdr, side);
  put32(ihdr + 4, side);
  ihdr[8] = 8;  /* bit depth */
  ihdr[9] = 2;  /* RGB */
  n += chunk(png + n, "IHDR", ihdr, 13, 13);
  if (text_bomb) {
    const char t[] = "parameters\0aaaaaaaaaaaaaaaa";
    n += chunk(png + n, "tEXt", t, sizeof t - 1, 0x45000000u);
  }
  unsigned char raw[8 * 25] = {0}, z[256];
  uLongf zl = sizeof z;
  compress(z, &zl, raw, sizeof raw);
  n += chunk(png + n, "IDAT", z, zl, (uint32_t)zl);
  n += chunk(png + n, "IEND", "", 0, 0);
  return ht_base64(png, n);
}

/* ---- one request ---------------------------------------------------------------------- */

/* Builds the JSON body of a request kind (malloc'ed). */
static char *make_body(int kind, unsigned seed) {
  char *b = NULL;
  int steps = 1 + (int)(seed % 2), side = (seed % 3) ? 64 : 32;
  switch (kind) {
  case V_PNG: case V_SSE:
    asprintf(&b, "{\"prompt\": \"battery %u\", \"seed\": %u, \"steps\": %d, \"width\": %d, "
                 "\"height\": %d, \"sampler\": \"euler\"%s}",
             seed, seed, steps, side, side, kind == V_SSE ? ", \"stream\": true" : "");
    break;
  case M_BAD_JSON: b = strdup("{\"prompt\": \"x\", \"steps\": 2,"); break;
  case M_TYPE: b = strdup("{\"prompt\": [\"x\"], \"steps\": 2}"); break;
  case M_1E400: b = strdup("{\"prompt\": \"x\", \"steps\": 1e400}"); break;
  case M_FRACTION: b = strdup("{\"prompt\": \"x\", \"width\": 512.7}"); break;
  case M_HUGE_PROMPT: {
    size_t n = 4001 + seed % 3000;
    b = malloc(n + 32);
    int k = sprintf(b, "{\"prompt\": \"");
    memset(b + k, 'z', n);
    strcpy(b + k + n, "\"}");
    break;
  }
  case M_BAD_B64: b = strdup("{\"prompt\": \"x\", \"init_image\": \"iVBORw0KGgo@@@==\"}"); break;
  case M_BOMB_SIZE: case M_BOMB_TEXT:
    asprintf(&b, "{\"prompt\": \"x\", \"steps\": 1, \"init_image\": \"%s\"}",
             kind == M_BOMB_SIZE ? g_bomb_size_b64 : g_bomb_text_b64);
    break;
  case M_OVERSIZE: b = strdup(""); break;
  }
  return b;
}

/* Reads an SSE stream to its end: 0 if it ended with exactly one `done` (or one `error`
 * with *errored set) and well-ordered progress; -1 otherwise. */
static int read_sse(hc_conn *c, int *errored) {
  hc_event ev;
  int done = 0, error = 0, after_end = 0, rc;
  while ((rc = hc_next_event(c, &ev)) == 1) {
    after_end += done + error;
    if (strcmp(ev.event, "done") == 0) done++;
    if (strcmp(ev.event, "error") == 0) error++;
    free(ev.data);
  }
  *errored = error;
  return rc == 0 && done + error == 1 && after_end == 0 ? 0 : -1;
}

/* Sends one request of the given kind and checks its single response. */
static void run_one(int kind, unsigned seed, tally *t) {
  char *body = make_body(kind, seed);
  hc_conn c;
  t->sent++;
  t->by_kind[kind]++;
  if (hc_open(&c, g_port, g_timeout)) {
    t->no_response++;
    free(body);
    return;
  }
  size_t len = strlen(body);
  if (kind == M_OVERSIZE) /* the head promises more than the cap; no body byte is sent */
    hc_send(&c, "POST", "/generate", "Content-Type: application/json\r\n", NULL,
            g_max_body + 1 + seed % 1000, 0);
  else
    hc_send(&c, "POST", "/generate", "Content-Type: application/json\r\n", body,
            (long long)len, len);
  int status = hc_read_head(&c);
  if (status < 0) {
    t->no_response++;
    fprintf(stderr, "  %s request (seed %u): no response\n", kind_names[kind], seed);
    goto out;
  }
  t->by_status[status]++;
  int valid = kind == V_PNG || kind == V_SSE;
  if (valid && status == 503) {
    char ra[32];
    if (!hc_header(c.head, "Retry-After", ra, sizeof ra)) t->retry_missing++;
    t->s503_generate++;
  } else if (valid && status == 200) {
    t->ok_generate++;
  } else if (valid || !(status == expected_status[kind] ||
                        (expected_status[kind] == 1 && (status == 400 || status == 422)))) {
    t->wrong_status++;
    fprintf(stderr, "  %s request (seed %u): status %d\n", kind_names[kind], seed, status);
  }
  /* the body: complete, exactly one response, and of the right form */
  int bad = 0;
  if (kind == V_SSE && status == 200) {
    int errored;
    bad = read_sse(&c, &errored) != 0 || errored;
  } else {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    long k;
    while ((k = hc_read_body(&c, buf + n, cap - n)) > 0)
      if ((n += (size_t)k) == cap) buf = realloc(buf, (cap *= 2) + 1);
    buf[n] = '\0';
    bad = k < 0 || !c.body_done;
    if (!bad && status == 200) {
      api_png_image img = {0};
      char err[256];
      int side = (seed % 3) ? 64 : 32;
      bad = api_png_decode((uint8_t *)buf, n, NULL, &img, err) != SD_OK || img.width != side ||
            img.height != side;
      api_png_image_free(&img);
    } else if (!bad) {
      cJSON *j = cJSON_Parse(buf);
      cJSON *e = j ? cJSON_GetObjectItem(j, "error") : NULL;
      bad = !cJSON_IsString(cJSON_GetObjectItem(e, "code")) ||
            !cJSON_IsString(cJSON_GetObjectItem(e, "message"));
      cJSON_Delete(j);
    }
    free(buf);
  }
  /* nothing may follow the response on this Connection: close socket */
  char extra;
  c.timeout_s = 2;
  if (!bad && c.pos == c.len && recv(c.fd, &extra, 1, MSG_DONTWAIT) > 0) bad = 1;
  if (!bad && c.pos != c.len) bad = 1;
  if (bad) {
    t->bad_body++;
    fprintf(stderr, "  %s request (seed %u, status %d): bad or extra body\n", kind_names[kind],
            seed, status);
  }
out:
  hc_close(&c);
  free(body);
}

typedef struct client_arg {
  int id, n;
  tally t;
} client_arg;

static void *client(void *p) {
  client_arg *a = p;
  for (int i = 0; i < a->n; i++) {
    unsigned seed = (unsigned)(a->id * 1000 + i);
    int r = (a->id * 7 + i) % 5; /* one in five malformed */
    int kind = r ? (i % 4 == 1 ? V_SSE : V_PNG) : M_BAD_JSON + (a->id + i) % (N_KINDS - M_BAD_JSON);
    run_one(kind, seed, &a->t);
  }
  return NULL;
}

static void merge(tally *into, const tally *t) {
  into->sent += t->sent;
  into->no_response += t->no_response;
  into->wrong_status += t->wrong_status;
  into->bad_body += t->bad_body;
  into->retry_missing += t->retry_missing;
  into->ok_generate += t->ok_generate;
  into->s503_generate += t->s503_generate;
  for (int i = 0; i < 600; i++) into->by_status[i] += t->by_status[i];
  for (int i = 0; i < N_KINDS; i++) into->by_kind[i] += t->by_kind[i];
}

static double metric(const char *text, const char *name) {
  double v = ht_metric(text, name);
  return isnan(v) ? -1 : v;
}

/* Waits until the server's running + queued jobs are 0; returns the seconds it took or -1. */
static double wait_idle(double timeout_s) {
  double t0 = hc_now();
  while (hc_now() - t0 < timeout_s) {
    char *m = ht_get_metrics(g_port);
    int idle = m && metric(m, "sdserve_jobs_running") == 0 && metric(m, "sdserve_queue_depth") == 0;
    free(m);
    if (idle) return hc_now() - t0;
    usleep(5000);
  }
  return -1;
}

static void battery(int clients, int per_client) {
  pthread_t th[64];
  client_arg args[64];
  memset(args, 0, sizeof args);
  char *m0 = ht_get_metrics(g_port);
  CHECK(m0 != NULL);
  double t0 = hc_now();
  for (int i = 0; i < clients; i++) {
    args[i].id = i;
    args[i].n = per_client;
    pthread_create(&th[i], NULL, client, &args[i]);
  }
  tally all = {0};
  for (int i = 0; i < clients; i++) {
    pthread_join(th[i], NULL);
    merge(&all, &args[i].t);
  }
  double dt = hc_now() - t0;
  fprintf(stderr, "battery: %d requests in %.1f s: 200 x%d, 503 x%d, 400 x%d, 413 x%d, 422 x%d\n",
          all.sent, dt, all.by_status[200], all.by_status[503], all.by_status[400],
          all.by_status[413], all.by_status[422]);
  CHECK_INT(all.sent, clients * per_client);
  CHECK_INT(all.no_response, 0);
  CHECK_INT(all.wrong_status, 0);
  CHECK_INT(all.bad_body, 0);
  CHECK_INT(all.retry_missing, 0);
  CHECK(all.ok_generate > 0);
  int answered = 0;
  for (int i = 0; i < 600; i++) answered += all.by_status[i];
  CHECK_INT(answered, all.sent);

  /* the server's counters against ours (differences from before the battery). A response's
     count is recorded when the server finishes sending it, which can be just after the
     client has read the last byte: poll briefly until the counts settle. */
  CHECK(wait_idle(60) >= 0);
  char *m1 = NULL;
  int codes[] = {200, 400, 413, 422, 503};
  double got[5] = {0};
  for (double t1 = hc_now(); hc_now() - t1 < 5; usleep(20000)) {
    free(m1);
    m1 = ht_get_metrics(g_port);
    int settled = m0 && m1;
    for (size_t i = 0; settled && i < sizeof codes / sizeof codes[0]; i++) {
      char series[96];
      snprintf(series, sizeof series, "sdserve_requests_total{route=\"/generate\",outcome=\"%d\"}",
               codes[i]);
      double before = ht_metric(m0, series), after = ht_metric(m1, series);
      got[i] = (isnan(after) ? 0 : after) - (isnan(before) ? 0 : before);
      settled = got[i] == all.by_status[codes[i]];
    }
    if (settled) break;
  }
  CHECK(m1 != NULL);
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    CHECK_INT(got[i], all.by_status[codes[i]]);
  if (m0 && m1) {
    const char *jobs[] = {"accepted", "completed", "cancelled", "expired", "failed", "rejected"};
    double d[6];
    for (int i = 0; i < 6; i++) {
      char name[64];
      snprintf(name, sizeof name, "sdserve_jobs_%s_total", jobs[i]);
      d[i] = metric(m1, name) - metric(m0, name);
    }
    fprintf(stderr, "metrics: accepted %g completed %g cancelled %g expired %g failed %g "
                    "rejected %g\n", d[0], d[1], d[2], d[3], d[4], d[5]);
    CHECK_INT(d[0], d[1] + d[2] + d[3] + d[4]);
    CHECK_INT(d[0], all.ok_generate);
    CHECK_INT(d[1], all.ok_generate);
    CHECK_INT(d[5], all.s503_generate);
  }
  free(m0);
  free(m1);
}

/* Starts a long SSE job (150 steps at 256x256) and returns once 6 progress events arrived
 * (the connection stays open in *c); returns the mean step time seen, or -1. */
static double start_long_sse(hc_conn *c, unsigned seed) {
  char body[256];
  snprintf(body, sizeof body,
           "{\"prompt\": \"long\", \"seed\": %u, \"steps\": 150, \"width\": 256, "
           "\"height\": 256, \"stream\": true}", seed);
  if (hc_open(c, g_port, 30)) return -1;
  hc_send(c, "POST", "/generate", "Content-Type: application/json\r\n", body,
          (long long)strlen(body), strlen(body));
  if (hc_read_head(c) != 200) return -1;
  hc_event ev;
  double t_first = -1;
  int n = 0;
  while (hc_next_event(c, &ev) == 1) {
    int progress = strcmp(ev.event, "progress") == 0;
    free(ev.data);
    if (!progress) continue;
    if (n++ == 0) t_first = hc_now();
    if (n == 6) return (hc_now() - t_first) / 5; /* mean of 5 steps */
  }
  return -1;
}

/* Client disconnects mid-job: both workers are freed within a couple of steps. */
static void disconnects(void) {
  hc_conn a, b;
  char *m0 = ht_get_metrics(g_port);
  double step_a = start_long_sse(&a, 1), step_b = start_long_sse(&b, 2);
  CHECK(step_a > 0 && step_b > 0);
  double step = step_a > step_b ? step_a : step_b;
  double t0 = hc_now();
  hc_close(&a);
  hc_close(&b);
  double idle = wait_idle(30);
  double dt = hc_now() - t0;
  fprintf(stderr, "disconnect: workers free %.3f s after the close (one step took %.3f s)\n",
          dt, step);
  CHECK(idle >= 0);
  /* one step, plus the step in flight, plus polling slack */
  CHECK_LE(dt, 2 * step + 0.25);
  /* a PNG request the client abandons while it runs */
  hc_conn c;
  const char *body = "{\"prompt\": \"abandoned\", \"steps\": 150, \"width\": 256, "
                     "\"height\": 256}";
  CHECK_INT(hc_open(&c, g_port, 30), 0);
  hc_send(&c, "POST", "/generate", "Content-Type: application/json\r\n", body,
          (long long)strlen(body), strlen(body));
  double tw = hc_now();
  int running = 0;
  while (!running && hc_now() - tw < 10) {
    char *m = ht_get_metrics(g_port);
    running = m && metric(m, "sdserve_jobs_running") >= 1;
    free(m);
    usleep(5000);
  }
  CHECK(running);
  usleep(100000);
  t0 = hc_now();
  hc_close(&c);
  idle = wait_idle(30);
  dt = hc_now() - t0;
  fprintf(stderr, "disconnect (png): worker free %.3f s after the close\n", dt);
  CHECK(idle >= 0);
  CHECK_LE(dt, 2 * step + 0.25);
  /* the loop accounts a finished job just after the worker lets it go: poll briefly */
  char *m1 = NULL;
  double d[5] = {0};
  for (double t1 = hc_now(); m0 && hc_now() - t1 < 3; usleep(20000)) {
    free(m1);
    if (!(m1 = ht_get_metrics(g_port))) break;
    const char *jobs[] = {"accepted", "completed", "cancelled", "expired", "failed"};
    for (int i = 0; i < 5; i++) {
      char name[64];
      snprintf(name, sizeof name, "sdserve_jobs_%s_total", jobs[i]);
      d[i] = metric(m1, name) - metric(m0, name);
    }
    if (d[0] == d[1] + d[2] + d[3] + d[4]) break;
  }
  if (m0 && m1) {
    fprintf(stderr, "disconnect metrics: accepted %g completed %g cancelled %g expired %g "
                    "failed %g\n", d[0], d[1], d[2], d[3], d[4]);
    CHECK_INT(d[0], 3);
    CHECK_INT(d[2], 3);
  }
  free(m0);
  free(m1);
}

typedef struct drain_arg {
  int id;
  atomic_int *stop;
  int sent, ok, s503, lost, bad;
} drain_arg;

/* Sends valid requests until told to stop or until it sees the server draining (503). */
static void *drain_client(void *p) {
  drain_arg *a = p;
  for (int i = 0; !atomic_load(a->stop); i++) {
    char body[200];
    snprintf(body, sizeof body, "{\"prompt\": \"drain\", \"seed\": %d, \"steps\": 3}",
             a->id * 100 + i);
    hc_response r;
    a->sent++;
    int st = hc_request(g_port, "POST", "/generate", "Content-Type: application/json\r\n", body,
                        strlen(body), 60, &r);
    if (st == 200) {
      api_png_image img = {0};
      char err[256];
      a->ok++;
      if (api_png_decode((uint8_t *)r.body, r.body_len, NULL, &img, err) != SD_OK) a->bad++;
      api_png_image_free(&img);
    } else if (st == 503) {
      char ra[32];
      a->s503++;
      if (!hc_header(r.head, "Retry-After", ra, sizeof ra)) a->bad++;
      hc_response_free(&r);
      break; /* draining (or full): a well-behaved client backs off */
    } else {
      a->lost++;
      fprintf(stderr, "  drain client %d: request %d got %d\n", a->id, i, st);
    }
    hc_response_free(&r);
  }
  return NULL;
}

/* SIGTERM under load: every request sent gets 200 or 503, readyz turns 503, exit 0. */
static void drain_under_load(ht_server *s) {
  atomic_int stop = 0;
  drain_arg args[8];
  pthread_t th[8];
  for (int i = 0; i < 8; i++) {
    args[i] = (drain_arg){.id = i, .stop = &stop};
    pthread_create(&th[i], NULL, drain_client, &args[i]);
  }
  usleep(1500000);
  kill(s->pid, SIGTERM);
  usleep(50000);
  hc_response r;
  int ready = hc_request(g_port, "GET", "/readyz", NULL, NULL, 0, 5, &r);
  hc_response_free(&r);
  int health = hc_request(g_port, "GET", "/healthz", NULL, NULL, 0, 5, &r);
  hc_response_free(&r);
  atomic_store(&stop, 1);
  int sent = 0, ok = 0, s503 = 0, lost = 0, bad = 0;
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    sent += args[i].sent, ok += args[i].ok, s503 += args[i].s503, lost += args[i].lost;
    bad += args[i].bad;
  }
  int code = ht_stop(s, 60, 0);
  fprintf(stderr, "drain: %d sent, %d ok, %d 503, %d lost; readyz %d, healthz %d; exit %d\n",
          sent, ok, s503, lost, ready, health, code);
  CHECK_INT(lost, 0);
  CHECK_INT(bad, 0);
  CHECK(ok > 0);
  CHECK_INT(ready, 503);
  CHECK_INT(health, 200);
  CHECK_INT(code, 0);
}

/* Warm-up for the memory check: every kind once, then valid requests until the allocator's
 * arenas and the engine's per-job buffers have reached their steady size. */
static void warm_up(void) {
  tally t = {0};
  for (int k = 0; k < N_KINDS; k++) run_one(k, (unsigned)k, &t);
  for (int i = 0; i < 40; i++) run_one(V_PNG, (unsigned)i, &t);
  CHECK_INT(t.no_response + t.wrong_status + t.bad_body, 0);
}

/* Each request kind once, in turn; valid ones with seeds 0 and 6 (32x32, one step). */
static void each_kind(void) {
  tally t = {0};
  for (int k = 0; k < N_KINDS; k++) run_one(k, k < M_BAD_JSON ? 6u * (unsigned)k : (unsigned)k, &t);
  fprintf(stderr, "each kind: %d requests: 200 x%d, 400 x%d, 413 x%d, 422 x%d\n", t.sent,
          t.by_status[200], t.by_status[400], t.by_status[413], t.by_status[422]);
  CHECK_INT(t.no_response + t.wrong_status + t.bad_body, 0);
  CHECK_INT(t.ok_generate, 2);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_http_battery PATH/TO/sdserve [battery|short|memory [N]]\n");
    return 2;
  }
  const char *mode = argc > 2 ? argv[2] : "battery";
  g_bomb_size_b64 = make_bomb(0);
  g_bomb_text_b64 = make_bomb(1);
  const char *const *wrapper = argc > 3 && strcmp(mode, "memory") != 0
                                   ? (const char *const *)argv + 3 : NULL;
  if (wrapper) g_timeout = 600;
  ht_server s;
  const char *extra[] = {"--workers", "2", "--threads", "1", "--queue", "6",
                         "--max-body-bytes", "1M", NULL};
  if (ht_start(&s, argv[1], extra, wrapper, wrapper ? 300 : 60)) return 1;
  g_port = s.port;
  if (strcmp(mode, "memory") == 0) {
    int n = argc > 3 ? atoi(argv[3]) : 1000;
    warm_up();
    long rss0 = ht_rss_kb(&s);
    tally t = {0};
    client_arg args[4];
    pthread_t th[4];
    memset(args, 0, sizeof args);
    for (int i = 0; i < 4; i++) {
      args[i].id = 100 + i;
      args[i].n = n / 4;
      pthread_create(&th[i], NULL, client, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
      pthread_join(th[i], NULL);
      merge(&t, &args[i].t);
    }
    long rss1 = ht_rss_kb(&s);
    fprintf(stderr, "memory: RSS %ld KiB after warm-up, %ld KiB after %d more requests "
                    "(%+ld KiB)\n", rss0, rss1, t.sent, rss1 - rss0);
    CHECK(rss0 > 0 && rss1 > 0);
    CHECK_INT(t.no_response + t.wrong_status + t.bad_body, 0);
    /* bound: 8 MiB, about 8 KiB per request if it were a leak (a 64x64 job's buffers alone
       are larger than that, so a per-job leak of them would show) */
    CHECK_LE(rss1 - rss0, 8192);
    CHECK_INT(ht_stop(&s, 60, 0), 0);
  } else if (strcmp(mode, "single") == 0) {
    each_kind();
    CHECK_INT(ht_stop(&s, 600, 0), 0);
  } else {
    int shortrun = strcmp(mode, "short") == 0;
    if (shortrun) each_kind();
    battery(shortrun ? 4 : 16, shortrun ? 6 : 25);
    if (!shortrun) disconnects();
    drain_under_load(&s);
  }
  free(g_bomb_size_b64);
  free(g_bomb_text_b64);
  return check_exit();
}
