/* test_http_api.c: everything around generation, against a real `sdserve serve`.
 *
 * /healthz, /readyz, /v1/models, the /metrics exposition format; 404 and 405; bad inputs
 * answered 400/415/422 with the JSON error shape {"error": {"code", "message", "param"}};
 * 413 decided from Content-Length before the body is sent (and from the bytes of a chunked
 * body); then a second server with an API key and a CORS allow-list: 401 before the body,
 * constant answers for wrong keys, preflight OPTIONS and Access-Control-Allow-Origin only for
 * allowed origins. Usage: test_http_api PATH/TO/sdserve */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <ctype.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "hclient.h"

static int g_port;

/* Checks r is a JSON error with the given status and code (code NULL = any); param (NULL =
 * not checked) must equal the error's param. */
static void check_error(const char *what, const hc_response *r, int status, const char *code,
                        const char *param) {
  CHECK_INT(r->status, status);
  char ct[128] = "";
  hc_header(r->head ? r->head : "", "Content-Type", ct, sizeof ct);
  CHECK(strncmp(ct, "application/json", 16) == 0);
  cJSON *j = r->body ? cJSON_Parse(r->body) : NULL;
  cJSON *e = j ? cJSON_GetObjectItem(j, "error") : NULL;
  cJSON *c = e ? cJSON_GetObjectItem(e, "code") : NULL;
  cJSON *m = e ? cJSON_GetObjectItem(e, "message") : NULL;
  cJSON *p = e ? cJSON_GetObjectItem(e, "param") : NULL;
  int shape = cJSON_IsObject(e) && cJSON_IsString(c) && cJSON_IsString(m) && m->valuestring[0] &&
              (cJSON_IsString(p) || cJSON_IsNull(p));
  CHECK(shape);
  if (code && cJSON_IsString(c)) CHECK_STR(c->valuestring, code);
  if (param) CHECK_STR(cJSON_IsString(p) ? p->valuestring : "(null)", param);
  if (!shape || r->status != status || (code && (!cJSON_IsString(c) || strcmp(c->valuestring, code))))
    fprintf(stderr, "  %s: got %d %.300s\n", what, r->status, r->body ? r->body : "(no body)");
  cJSON_Delete(j);
}

static void post_expect(const char *what, const char *json, int status, const char *code,
                        const char *param) {
  hc_response r;
  hc_request(g_port, "POST", "/generate", "Content-Type: application/json\r\n", json,
             strlen(json), 60.0, &r);
  check_error(what, &r, status, code, param);
  hc_response_free(&r);
}

static void test_health_and_models(void) {
  hc_response r;
  CHECK_INT(hc_request(g_port, "GET", "/healthz", NULL, NULL, 0, 10, &r), 200);
  hc_response_free(&r);
  CHECK_INT(hc_request(g_port, "GET", "/readyz", NULL, NULL, 0, 10, &r), 200);
  hc_response_free(&r);
  CHECK_INT(hc_request(g_port, "GET", "/v1/models", NULL, NULL, 0, 10, &r), 200);
  cJSON *j = r.body ? cJSON_Parse(r.body) : NULL;
  cJSON *data = j ? cJSON_GetObjectItem(j, "data") : NULL;
  CHECK(cJSON_IsArray(data) && cJSON_GetArraySize(data) >= 1);
  cJSON *m0 = cJSON_IsArray(data) ? cJSON_GetArrayItem(data, 0) : NULL;
  CHECK(m0 && cJSON_IsString(cJSON_GetObjectItem(m0, "id")));
  cJSON_Delete(j);
  hc_response_free(&r);
}

/* Prometheus text format 0.0.4: every sample line is `name{labels} value` with a declared
 * TYPE; histograms have non-decreasing buckets ending in +Inf equal to _count. */
static void test_metrics_format(void) {
  /* one generation first so the histograms are not empty */
  hc_response r;
  const char *json = "{\"prompt\": \"m\", \"steps\": 2}";
  CHECK_INT(hc_request(g_port, "POST", "/generate", "Content-Type: application/json\r\n", json,
                       strlen(json), 60, &r), 200);
  hc_response_free(&r);
  /* the request is observed when its response has been sent, which may be just after we
     read its last byte: poll briefly */
  for (int tries = 0;; tries++) {
    int code = hc_request(g_port, "GET", "/metrics", NULL, NULL, 0, 10, &r);
    if ((r.body && ht_metric(r.body, "sdserve_request_duration_seconds_count") >= 1) ||
        tries == 300) {
      CHECK_INT(code, 200);
      break;
    }
    hc_response_free(&r);
    usleep(10000);
  }
  char ct[128] = "";
  hc_header(r.head ? r.head : "", "Content-Type", ct, sizeof ct);
  CHECK(strncmp(ct, "text/plain", 10) == 0);
  const char *text = r.body ? r.body : "";
  int bad_lines = 0, samples = 0;
  char typed[64][96];
  int ntyped = 0;
  for (const char *p = text; *p;) {
    const char *eol = strchr(p, '\n');
    if (!eol) {
      bad_lines++; /* the exposition ends with a newline */
      break;
    }
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)(eol - p), p);
    p = eol + 1;
    if (strncmp(line, "# TYPE ", 7) == 0) {
      if (ntyped < 64) sscanf(line + 7, "%95s", typed[ntyped++]);
      continue;
    }
    if (line[0] == '#') continue;
    size_t nl = strspn(line, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:0123456789");
    char *sp = strrchr(line, ' ');
    char *end = NULL;
    if (sp) strtod(sp + 1, &end);
    int ok = nl > 0 && sp && end && *end == '\0' && (line[nl] == ' ' || line[nl] == '{');
    int declared = 0;
    for (int i = 0; i < ntyped && ok; i++) {
      size_t tl = strlen(typed[i]);
      if (strncmp(line, typed[i], tl) == 0 &&
          (tl == nl || strncmp(line + tl, "_bucket", 7) == 0 || strncmp(line + tl, "_sum", 4) == 0 ||
           strncmp(line + tl, "_count", 6) == 0))
        declared = 1;
    }
    if (!ok || !declared) {
      bad_lines++;
      fprintf(stderr, "  bad metrics line: %s\n", line);
    }
    samples++;
  }
  CHECK_INT(bad_lines, 0);
  CHECK(samples > 10);
  CHECK(!isnan(ht_metric(text, "sdserve_queue_depth")));
  CHECK(!isnan(ht_metric(text, "sdserve_jobs_running")));
  CHECK(ht_metric_sum(text, "sdserve_requests_total", NULL) >= 1);
  const char *hists[] = {"sdserve_request_duration_seconds", "sdserve_step_duration_seconds"};
  for (int h = 0; h < 2; h++) {
    char name[128], series[160];
    snprintf(name, sizeof name, "%s_bucket", hists[h]);
    double prev = -1;
    int nb = 0, mono = 1;
    for (const char *p = text; (p = strstr(p, name)) != NULL; p++) {
      if (p != text && p[-1] != '\n') continue;
      const char *sp = strchr(p, ' ');
      double v = sp ? strtod(sp + 1, NULL) : -1;
      mono &= v >= prev;
      prev = v;
      nb++;
    }
    CHECK(nb >= 2);
    CHECK(mono);
    snprintf(series, sizeof series, "%s_bucket{le=\"+Inf\"}", hists[h]);
    double inf = ht_metric(text, series);
    snprintf(series, sizeof series, "%s_count", hists[h]);
    double count = ht_metric(text, series);
    CHECK(!isnan(inf) && inf == count && count >= 1);
    snprintf(series, sizeof series, "%s_sum", hists[h]);
    CHECK(ht_metric(text, series) > 0);
  }
  hc_response_free(&r);
}

static void test_routes(void) {
  hc_response r;
  hc_request(g_port, "GET", "/no/such/route", NULL, NULL, 0, 10, &r);
  check_error("404", &r, 404, "not_found", NULL);
  hc_response_free(&r);
  hc_request(g_port, "GET", "/generate", NULL, NULL, 0, 10, &r);
  check_error("GET /generate", &r, 405, "method_not_allowed", NULL);
  char allow[128] = "";
  CHECK(hc_header(r.head ? r.head : "", "Allow", allow, sizeof allow) && strstr(allow, "POST"));
  hc_response_free(&r);
  hc_request(g_port, "PUT", "/jobs", NULL, "{}", 2, 10, &r);
  check_error("PUT /jobs", &r, 405, "method_not_allowed", NULL);
  hc_response_free(&r);
  hc_request(g_port, "POST", "/healthz", NULL, NULL, 0, 10, &r);
  check_error("POST /healthz", &r, 405, "method_not_allowed", NULL);
  hc_response_free(&r);
}

static void test_bad_inputs(void) {
  post_expect("not JSON", "{\"prompt\": ", 400, "invalid_json", NULL);
  post_expect("not an object", "[1, 2]", 400, "invalid_json", NULL);
  post_expect("empty body", "", 400, "invalid_json", NULL);
  post_expect("prompt type", "{\"prompt\": 5}", 400, "invalid_type", "prompt");
  post_expect("steps type", "{\"prompt\": \"x\", \"steps\": \"20\"}", 400, "invalid_type",
              "steps");
  post_expect("1e400", "{\"prompt\": \"x\", \"cfg_scale\": 1e400}", 422, "invalid_value",
              "cfg_scale");
  post_expect("512.7", "{\"prompt\": \"x\", \"width\": 512.7}", 422, "invalid_value", "width");
  post_expect("width not /8", "{\"prompt\": \"x\", \"width\": 100}", 422, "invalid_value",
              "width");
  post_expect("negative steps", "{\"prompt\": \"x\", \"steps\": -3}", 422, "invalid_value",
              "steps");
  post_expect("unknown sampler", "{\"prompt\": \"x\", \"sampler\": \"euler_b\"}", 422,
              "invalid_value", "sampler");
  post_expect("steps limit", "{\"prompt\": \"x\", \"steps\": 151}", 422, "limit_exceeded",
              "steps");
  post_expect("pixels limit", "{\"prompt\": \"x\", \"width\": 2048, \"height\": 1024}", 422,
              "limit_exceeded", NULL);
  post_expect("batch limit", "{\"prompt\": \"x\", \"batch_size\": 5}", 422, "limit_exceeded",
              "batch_size");
  post_expect("bad base64", "{\"prompt\": \"x\", \"init_image\": \"!!!not base64!!!\"}", 400,
              "invalid_image", "init_image");
  post_expect("not a PNG", "{\"prompt\": \"x\", \"init_image\": \"aGVsbG8gd29ybGQ=\"}", 400,
              "invalid_image", "init_image");
  post_expect("unknown field", "{\"prompt\": \"x\", \"stepz\": 3}", 422, NULL, "stepz");
  post_expect("control of the wrong type", "{\"prompt\": \"x\", \"control\": 7}", 400,
              "invalid_type", "control");
  /* a prompt above max_prompt_chars (4000 by default) */
  size_t n = 5000;
  char *big = malloc(n + 64);
  int k = sprintf(big, "{\"prompt\": \"");
  memset(big + k, 'a', n);
  strcpy(big + k + n, "\"}");
  post_expect("huge prompt", big, 422, "limit_exceeded", "prompt");
  free(big);
  /* not JSON by media type */
  hc_response r;
  hc_request(g_port, "POST", "/generate", "Content-Type: text/plain\r\n", "{}", 2, 10, &r);
  check_error("text/plain", &r, 415, "unsupported_media_type", NULL);
  hc_response_free(&r);
}

/* 413 from the Content-Length alone: the answer arrives although no body byte was sent. */
static void test_too_large(void) {
  hc_conn c;
  CHECK_INT(hc_open(&c, g_port, 5.0), 0);
  double t0 = hc_now();
  hc_send(&c, "POST", "/generate", "Content-Type: application/json\r\n", NULL,
          17LL * 1024 * 1024, 0);
  CHECK_INT(hc_read_head(&c), 413);
  double dt = hc_now() - t0;
  CHECK_LE(dt, 1.0);
  char buf[1024];
  long k = hc_read_body(&c, buf, sizeof buf - 1);
  buf[k > 0 ? k : 0] = '\0';
  CHECK(strstr(buf, "body_too_large") != NULL);
  hc_close(&c);
}

/* A chunked body is counted as it arrives (server with --max-body-bytes 4k). */
static void test_too_large_chunked(void) {
  hc_conn c;
  CHECK_INT(hc_open(&c, g_port, 10.0), 0);
  hc_send(&c, "POST", "/generate",
          "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n", NULL, -1, 0);
  char chunk[1100];
  int n = sprintf(chunk, "400\r\n");
  memset(chunk + n, ' ', 1024);
  memcpy(chunk + n + 1024, "\r\n", 2);
  int sent_all = 1;
  for (int i = 0; i < 8 && sent_all; i++)
    sent_all = send(c.fd, chunk, (size_t)n + 1026, MSG_NOSIGNAL) > 0;
  if (sent_all) send(c.fd, "0\r\n\r\n", 5, MSG_NOSIGNAL);
  CHECK_INT(hc_read_head(&c), 413);
  hc_close(&c);
}

static void test_auth_and_cors(void) {
  hc_response r;
  const char *json = "{\"prompt\": \"x\", \"steps\": 1}";
  /* 401 with no key, before the (never sent) body */
  hc_conn c;
  CHECK_INT(hc_open(&c, g_port, 5.0), 0);
  hc_send(&c, "POST", "/generate", "Content-Type: application/json\r\n", NULL, 1000000, 0);
  CHECK_INT(hc_read_head(&c), 401);
  char v[128] = "";
  CHECK(hc_header(c.head ? c.head : "", "WWW-Authenticate", v, sizeof v) && strstr(v, "Bearer"));
  hc_close(&c);
  const char *wrong[] = {"Authorization: Bearer s3cret-kez\r\n", "Authorization: Bearer s3cret\r\n",
                         "Authorization: Bearer s3cret-key-and-more\r\n",
                         "Authorization: Basic czNjcmV0LWtleQ==\r\n", "Authorization: Bearer\r\n"};
  for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
    char h[256];
    snprintf(h, sizeof h, "Content-Type: application/json\r\n%s", wrong[i]);
    hc_request(g_port, "POST", "/generate", h, json, strlen(json), 10, &r);
    check_error(wrong[i], &r, 401, "unauthorized", NULL);
    hc_response_free(&r);
  }
  CHECK_INT(hc_request(g_port, "POST", "/generate",
                       "Content-Type: application/json\r\nAuthorization: Bearer s3cret-key\r\n",
                       json, strlen(json), 60, &r), 200);
  hc_response_free(&r);
  /* a CORS preflight needs no key; only allowed origins are echoed */
  CHECK(hc_request(g_port, "OPTIONS", "/generate",
                   "Origin: http://allowed.test\r\nAccess-Control-Request-Method: POST\r\n"
                   "Access-Control-Request-Headers: authorization, content-type\r\n",
                   NULL, 0, 10, &r) / 100 == 2);
  v[0] = '\0';
  CHECK(hc_header(r.head ? r.head : "", "Access-Control-Allow-Origin", v, sizeof v));
  CHECK_STR(v, "http://allowed.test");
  v[0] = '\0';
  CHECK(hc_header(r.head ? r.head : "", "Access-Control-Allow-Methods", v, sizeof v) &&
        strstr(v, "POST"));
  v[0] = '\0';
  CHECK(hc_header(r.head ? r.head : "", "Access-Control-Allow-Headers", v, sizeof v) &&
        strcasestr(v, "authorization"));
  hc_response_free(&r);
  hc_request(g_port, "OPTIONS", "/generate",
             "Origin: http://evil.test\r\nAccess-Control-Request-Method: POST\r\n", NULL, 0, 10,
             &r);
  CHECK(!hc_header(r.head ? r.head : "", "Access-Control-Allow-Origin", v, sizeof v));
  hc_response_free(&r);
  /* actual responses (also errors) carry the header for an allowed origin */
  hc_request(g_port, "POST", "/generate",
             "Content-Type: application/json\r\nOrigin: http://allowed.test\r\n", json,
             strlen(json), 10, &r);
  CHECK_INT(r.status, 401);
  v[0] = '\0';
  CHECK(hc_header(r.head ? r.head : "", "Access-Control-Allow-Origin", v, sizeof v));
  CHECK_STR(v, "http://allowed.test");
  hc_response_free(&r);
}

/* POST /jobs; returns the status and copies the id. */
static int submit_job(const char *json, char *id, size_t n) {
  hc_response r;
  int code = hc_request(g_port, "POST", "/jobs", "Content-Type: application/json\r\n", json,
                        strlen(json), 10, &r);
  cJSON *j = r.body ? cJSON_Parse(r.body) : NULL;
  cJSON *v = j ? cJSON_GetObjectItem(j, "id") : NULL;
  snprintf(id, n, "%s", cJSON_IsString(v) ? v->valuestring : "");
  cJSON_Delete(j);
  hc_response_free(&r);
  return code;
}

/* The job's "status" (and error code) after polling until it is terminal or timeout_s. */
static void job_final(const char *id, double timeout_s, char *status, char *code, size_t n) {
  char path[96];
  snprintf(path, sizeof path, "/jobs/%s", id);
  double t0 = hc_now();
  status[0] = code[0] = '\0';
  while (hc_now() - t0 < timeout_s) {
    hc_response r;
    hc_request(g_port, "GET", path, NULL, NULL, 0, 10, &r);
    cJSON *j = r.body ? cJSON_Parse(r.body) : NULL;
    cJSON *st = j ? cJSON_GetObjectItem(j, "status") : NULL;
    cJSON *e = j ? cJSON_GetObjectItem(j, "error") : NULL;
    cJSON *c = e ? cJSON_GetObjectItem(e, "code") : NULL;
    snprintf(status, n, "%s", cJSON_IsString(st) ? st->valuestring : "");
    snprintf(code, n, "%s", cJSON_IsString(c) ? c->valuestring : "");
    cJSON_Delete(j);
    hc_response_free(&r);
    if (strcmp(status, "queued") != 0 && strcmp(status, "running") != 0) return;
    usleep(20000);
  }
}

/* Server with 1 worker, queue 1, 1 s deadline: a full queue answers 503 + Retry-After at
 * once, bad input is answered at once while the worker is busy, and jobs past the deadline
 * (running or still queued) end as expired / 504 deadline_exceeded. */
static void test_queue_full_and_deadline(void) {
  const char *slow = "{\"prompt\": \"slow\", \"steps\": 150, \"width\": 256, \"height\": 256}";
  char a[64], b[64], status[64], code[64];
  char *m0 = ht_get_metrics(g_port);
  double t_submit = hc_now();
  CHECK_INT(submit_job(slow, a, sizeof a), 202);
  char path[96];
  snprintf(path, sizeof path, "/jobs/%s", a);
  for (int running = 0; !running && hc_now() - t_submit < 5;) { /* the worker takes A */
    hc_response r;
    hc_request(g_port, "GET", path, NULL, NULL, 0, 10, &r);
    running = r.body && strstr(r.body, "\"running\"");
    hc_response_free(&r);
  }
  CHECK_INT(submit_job(slow, b, sizeof b), 202);
  double worst_full = 0, worst_bad = 0;
  for (int i = 0; i < 10; i++) {
    hc_response r;
    hc_request(g_port, "POST", "/generate", "Content-Type: application/json\r\n", slow,
               strlen(slow), 10, &r);
    check_error("queue full", &r, 503, "queue_full", NULL);
    char ra[32] = "";
    CHECK(hc_header(r.head ? r.head : "", "Retry-After", ra, sizeof ra));
    CHECK_STR(ra, "5");
    if (r.seconds > worst_full) worst_full = r.seconds;
    hc_response_free(&r);
    const char *bad = "{\"prompt\": 1}";
    hc_request(g_port, "POST", "/generate", "Content-Type: application/json\r\n", bad,
               strlen(bad), 10, &r);
    CHECK_INT(r.status, 400);
    if (r.seconds > worst_bad) worst_bad = r.seconds;
    hc_response_free(&r);
  }
  int still_busy = hc_now() - t_submit < 0.9; /* the answers above came while A ran */
  fprintf(stderr, "while busy: queue-full 503 in at most %.1f ms, bad input 400 in at most "
                  "%.1f ms%s\n", worst_full * 1e3, worst_bad * 1e3,
          still_busy ? "" : " (the worker may have been idle: not checked)");
  /* the issue asks for under 50 ms; 100 ms here leaves room for a loaded CI machine */
  if (still_busy) {
    CHECK_LE(worst_full, 0.1);
    CHECK_LE(worst_bad, 0.1);
  }
  job_final(a, 10, status, code, sizeof status);
  CHECK_STR(status, "expired");
  CHECK_STR(code, "deadline_exceeded");
  job_final(b, 10, status, code, sizeof status);
  CHECK_STR(status, "expired");
  CHECK_STR(code, "deadline_exceeded");
  hc_response r;
  double t0 = hc_now();
  hc_request(g_port, "POST", "/generate", "Content-Type: application/json\r\n", slow,
             strlen(slow), 30, &r);
  check_error("deadline", &r, 504, "deadline_exceeded", NULL);
  fprintf(stderr, "504 after %.2f s (deadline 1 s)\n", hc_now() - t0);
  CHECK_LE(hc_now() - t0, 3.0);
  hc_response_free(&r);
  char *m1 = ht_get_metrics(g_port);
  if (m0 && m1)
    CHECK_INT(ht_metric(m1, "sdserve_jobs_expired_total") - ht_metric(m0, "sdserve_jobs_expired_total"),
              3);
  free(m0);
  free(m1);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_http_api PATH/TO/sdserve\n");
    return 2;
  }
  ht_server s;
  if (ht_start(&s, argv[1], NULL, NULL, 60)) return 1;
  g_port = s.port;
  test_health_and_models();
  test_routes();
  test_bad_inputs();
  test_too_large();
  test_metrics_format();
  CHECK_INT(ht_stop(&s, 30, 0), 0);

  const char *extra[] = {"--api-key", "s3cret-key", "--cors-origins", "http://allowed.test",
                         "--max-body-bytes", "4k", NULL};
  if (ht_start(&s, argv[1], extra, NULL, 60)) return 1;
  g_port = s.port;
  test_auth_and_cors();
  CHECK_INT(ht_stop(&s, 30, 0), 0);
  /* chunked upload counted against the cap (no key: a third server) */
  const char *extra2[] = {"--max-body-bytes", "4k", NULL};
  if (ht_start(&s, argv[1], extra2, NULL, 60)) return 1;
  g_port = s.port;
  test_too_large_chunked();
  CHECK_INT(ht_stop(&s, 30, 0), 0);
  const char *extra3[] = {"--workers", "1", "--queue", "1", "--request-timeout-s", "1", NULL};
  if (ht_start(&s, argv[1], extra3, NULL, 60)) return 1;
  g_port = s.port;
  test_queue_full_and_deadline();
  CHECK_INT(ht_stop(&s, 30, 0), 0);
  return check_exit();
}
