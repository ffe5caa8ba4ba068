/* test_http_generate.c: generation over HTTP against a real `sdserve serve` (tiny model).
 *
 * - POST /generate returns a PNG pixel-identical to `sdserve generate` (the CLI) for the same
 *   parameters and seed: txt2img, img2img (init_image as base64), ControlNet (control image
 *   as a data: URL) and ControlNet with the server's Canny preprocessing (against the CLI
 *   given the golden Canny map), with the seed in a header and in the PNG `parameters` text;
 * - SSE (`"stream": true`, or `Accept: text/event-stream`): queued, then progress events with
 *   step = 1..total in order, then done whose image equals the plain PNG;
 * - async jobs: POST /jobs -> 202 {id, poll_url}; polling reaches done with the same image;
 *   DELETE cancels a queued job and a running one (which frees the worker);
 * - 4 concurrent clients get the images of their own seeds (equal to sequential results),
 *   all distinct.
 * Usage: test_http_generate PATH/TO/sdserve */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <pthread.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "hclient.h"
#include "png_io.h"

static const char *g_exe;
static int g_port;

/* Decodes a PNG response body; 0 ok. */
static int decode(const void *data, size_t len, api_png_image *img) {
  char err[256];
  return api_png_decode(data, len, NULL, img, err) == SD_OK ? 0 : -1;
}

static int same_pixels(const api_png_image *a, const api_png_image *b) {
  return a->width == b->width && a->height == b->height && a->rgb && b->rgb &&
         memcmp(a->rgb, b->rgb, (size_t)a->width * a->height * 3) == 0;
}

/* POST /generate with a JSON body; returns the status and fills r. */
static int post_json(const char *path, const char *json, const char *headers, hc_response *r) {
  char h[512];
  snprintf(h, sizeof h, "Content-Type: application/json\r\n%s", headers ? headers : "");
  return hc_request(g_port, "POST", path, h, json, strlen(json), 120.0, r);
}

/* Runs the CLI with the given extra arguments into out_png and decodes it; 0 ok. */
static int cli_generate(const char *const *args, api_png_image *img) {
  char out[256];
  snprintf(out, sizeof out, "/tmp/test_http_generate_%d.png", (int)getpid());
  const char *argv[40] = {g_exe, "generate", "--model", ht_model_dir(), "-o", out};
  int n = 6;
  for (int i = 0; args[i]; i++) argv[n++] = args[i];
  argv[n] = NULL;
  int rc = ht_run(argv);
  CHECK_INT(rc, 0);
  char err[256];
  int ok = rc == 0 && api_png_decode_file(out, NULL, img, err) == SD_OK;
  unlink(out);
  return ok ? 0 : -1;
}

/* /generate vs CLI for one parameter set. */
static void check_vs_cli(const char *what, const char *json, const char *const *cli_args,
                         const char *seed_text) {
  hc_response r;
  api_png_image a = {0}, b = {0};
  int status = post_json("/generate", json, NULL, &r);
  CHECK_INT(status, 200);
  char ct[128] = "", seed[64] = "";
  hc_header(r.head ? r.head : "", "Content-Type", ct, sizeof ct);
  CHECK_STR(ct, "image/png");
  CHECK(hc_header(r.head ? r.head : "", "X-Seed", seed, sizeof seed));
  CHECK_STR(seed, seed_text);
  CHECK_INT(decode(r.body, r.body_len, &a), 0);
  CHECK_INT(cli_generate(cli_args, &b), 0);
  int same = same_pixels(&a, &b);
  CHECK(same);
  if (!same)
    fprintf(stderr, "  %s: server %dx%d vs CLI %dx%d differ (body %zu bytes: %.200s)\n", what,
            a.width, a.height, b.width, b.height, r.body_len, r.body ? r.body : "");
  const char *params = api_png_image_text(&a, "parameters");
  char want[96];
  snprintf(want, sizeof want, "Seed: %s", seed_text);
  CHECK(params && strstr(params, want));
  api_png_image_free(&a);
  api_png_image_free(&b);
  hc_response_free(&r);
}

/* check_vs_cli with the JSON body `fmt` (one %s) holding the file at `path` as base64. */
static void check_vs_cli_with_file(const char *what, const char *fmt, const char *path,
                                   const char *const *cli_args, const char *seed_text) {
  size_t n;
  unsigned char *bytes = ht_read_file(path, &n);
  CHECK(bytes != NULL);
  if (!bytes) return;
  char *b64 = ht_base64(bytes, n);
  size_t cap = strlen(fmt) + strlen(b64) + 1;
  char *json = malloc(cap);
  snprintf(json, cap, fmt, b64);
  check_vs_cli(what, json, cli_args, seed_text);
  free(json);
  free(b64);
  free(bytes);
}

/* The ControlNet cases: the body `fmt` holding the file at `path` against the CLI given the
 * edge map `map` ("shapes", seed 9, 3 euler steps, scale 0.8). */
static void check_controlnet_vs_cli(const char *what, const char *fmt, const char *path,
                                    const char *map) {
  const char *cli[] = {"--prompt", "shapes", "--seed", "9", "--steps", "3", "--sampler",
                       "euler", "--controlnet", ht_controlnet_dir(), "--control-image",
                       map, "--control-scale", "0.8", NULL};
  check_vs_cli_with_file(what, fmt, path, cli, "9");
}

static void test_vs_cli(void) {
  const char *cli1[] = {"--prompt", "a red circle", "--seed", "1234", "--steps", "3",
                        "--sampler", "euler_a", "--cfg-scale", "5", NULL};
  check_vs_cli("txt2img",
               "{\"prompt\": \"a red circle\", \"seed\": 1234, \"steps\": 3, "
               "\"sampler\": \"euler_a\", \"cfg_scale\": 5}",
               cli1, "1234");
  const char *cli2[] = {"--prompt", "a cat", "--negative-prompt", "blurry", "--seed", "77",
                        "--steps", "2", "--sampler", "ddim", "--width", "96", "--height", "64",
                        NULL};
  check_vs_cli("txt2img ddim 96x64",
               "{\"prompt\": \"a cat\", \"negative_prompt\": \"blurry\", \"seed\": 77, "
               "\"steps\": 2, \"sampler\": \"ddim\", \"width\": 96, \"height\": 64}",
               cli2, "77");

  /* img2img: the init image travels as plain base64. */
  char init_path[512], ctl_path[512];
  snprintf(init_path, sizeof init_path, "%s/cases/g_img2img_ddim_blue_square/init.png",
           SD_TEST_DATA);
  api_png_image init = {0};
  char err[256];
  CHECK(api_png_decode_file(init_path, NULL, &init, err) == SD_OK);
  char w[16], h[16], fmt[512];
  snprintf(w, sizeof w, "%d", init.width);
  snprintf(h, sizeof h, "%d", init.height);
  snprintf(fmt, sizeof fmt,
           "{\"prompt\": \"a blue square\", \"seed\": 5, \"steps\": 4, \"sampler\": \"ddim\","
           " \"init_image\": \"%%s\", \"strength\": 0.5, \"width\": %d, \"height\": %d}",
           init.width, init.height);
  api_png_image_free(&init);
  const char *cli3[] = {"--prompt", "a blue square", "--seed", "5", "--steps", "4",
                        "--sampler", "ddim", "--init-image", init_path, "--strength", "0.5",
                        "--width", w, "--height", h, NULL};
  check_vs_cli_with_file("img2img", fmt, init_path, cli3, "5");

  /* ControlNet: the control image as a data: URL, no preprocessing. */
  snprintf(ctl_path, sizeof ctl_path, "%s/canny/blurred_shapes_64x64_canny_100_200.png",
           SD_TEST_DATA);
  check_controlnet_vs_cli("controlnet",
                          "{\"prompt\": \"shapes\", \"seed\": 9, \"steps\": 3,"
                          " \"sampler\": \"euler\", \"control\": {\"image\":"
                          " \"data:image/png;base64,%s\", \"scale\": 0.8,"
                          " \"start\": 0, \"end\": 1}}",
                          ctl_path, ctl_path);

  /* Canny preprocessing in the server: the raw picture with thresholds 50/150 (not the
     defaults, so ignored thresholds would show) must give the image the CLI makes from the
     golden Canny output of that picture (test_canny shows the engine reproduces it exactly). */
  char raw_path[512], canny_path[512];
  snprintf(raw_path, sizeof raw_path, "%s/canny/blurred_shapes_64x64.png", SD_TEST_DATA);
  snprintf(canny_path, sizeof canny_path, "%s/canny/blurred_shapes_64x64_canny_50_150.png",
           SD_TEST_DATA);
  check_controlnet_vs_cli("controlnet + canny",
                          "{\"prompt\": \"shapes\", \"seed\": 9, \"steps\": 3,"
                          " \"sampler\": \"euler\", \"control\": {\"image\": \"%s\","
                          " \"preprocess\": \"canny\", \"low_threshold\": 50,"
                          " \"high_threshold\": 150, \"scale\": 0.8}}",
                          raw_path, canny_path);
}

/* Reads SSE events from an open stream: queued first, progress 1..steps in order, then done
 * with a PNG equal to `expect` (if given). */
static void check_sse_stream(hc_conn *c, int steps, const api_png_image *expect) {
  hc_event ev;
  int n_progress = 0, got_queued = 0, got_done = 0, last_step = 0, order_ok = 1;
  while (hc_next_event(c, &ev) == 1) {
    cJSON *d = cJSON_Parse(ev.data ? ev.data : "");
    CHECK(d != NULL);
    if (strcmp(ev.event, "queued") == 0) {
      order_ok &= n_progress == 0 && !got_done;
      got_queued = 1;
      CHECK(cJSON_IsNumber(cJSON_GetObjectItem(d, "position")));
    } else if (strcmp(ev.event, "progress") == 0) {
      int step = cJSON_GetObjectItem(d, "step") ? cJSON_GetObjectItem(d, "step")->valueint : -1;
      int total =
          cJSON_GetObjectItem(d, "total") ? cJSON_GetObjectItem(d, "total")->valueint : -1;
      order_ok &= step == last_step + 1 && !got_done;
      CHECK_INT(total, steps);
      last_step = step;
      n_progress++;
    } else if (strcmp(ev.event, "done") == 0) {
      got_done++;
      cJSON *img = cJSON_GetObjectItem(d, "image");
      if (!cJSON_IsString(img)) {
        cJSON *imgs = cJSON_GetObjectItem(d, "images");
        img = cJSON_IsArray(imgs) ? cJSON_GetArrayItem(imgs, 0) : NULL;
      }
      CHECK(cJSON_IsString(img));
      if (expect && cJSON_IsString(img)) {
        /* decode base64 with the server's inverse: compare against our own encoding */
        api_png_image got = {0};
        const char *s = img->valuestring;
        if (strncmp(s, "data:", 5) == 0 && strchr(s, ',')) s = strchr(s, ',') + 1;
        size_t len = strlen(s), m = 0;
        unsigned char *bin = malloc(len);
        static const char tab[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        unsigned v = 0;
        int bits = 0;
        for (size_t i = 0; i < len && s[i] != '='; i++) {
          const char *p = strchr(tab, s[i]);
          if (!p || !s[i]) break;
          v = v << 6 | (unsigned)(p - tab);
          bits += 6;
          if (bits >= 8) bin[m++] = (unsigned char)(v >> (bits -= 8));
        }
        CHECK_INT(decode(bin, m, &got), 0);
        CHECK(same_pixels(&got, expect));
        api_png_image_free(&got);
        free(bin);
      }
    } else if (strcmp(ev.event, "error") == 0) {
      fprintf(stderr, "  SSE error event: %s\n", ev.data);
      CHECK(0);
    }
    cJSON_Delete(d);
    free(ev.data);
  }
  CHECK(got_queued);
  CHECK_INT(n_progress, steps);
  CHECK_INT(last_step, steps);
  CHECK_INT(got_done, 1);
  CHECK(order_ok);
}

static void test_sse(void) {
  const char *json = "{\"prompt\": \"a red circle\", \"seed\": 42, \"steps\": 4, "
                     "\"sampler\": \"euler\"}";
  hc_response plain;
  api_png_image expect = {0};
  CHECK_INT(post_json("/generate", json, NULL, &plain), 200);
  CHECK_INT(decode(plain.body, plain.body_len, &expect), 0);
  hc_response_free(&plain);

  /* "stream": true in the body */
  const char *json_s = "{\"prompt\": \"a red circle\", \"seed\": 42, \"steps\": 4, "
                       "\"sampler\": \"euler\", \"stream\": true}";
  hc_conn c;
  CHECK_INT(hc_open(&c, g_port, 60.0), 0);
  hc_send(&c, "POST", "/generate", "Content-Type: application/json\r\n", json_s,
          (long long)strlen(json_s), strlen(json_s));
  CHECK_INT(hc_read_head(&c), 200);
  char ct[128] = "";
  hc_header(c.head ? c.head : "", "Content-Type", ct, sizeof ct);
  CHECK(strncmp(ct, "text/event-stream", 17) == 0);
  check_sse_stream(&c, 4, &expect);
  hc_close(&c);

  /* Accept: text/event-stream */
  CHECK_INT(hc_open(&c, g_port, 60.0), 0);
  hc_send(&c, "POST", "/generate",
          "Content-Type: application/json\r\nAccept: text/event-stream\r\n", json,
          (long long)strlen(json), strlen(json));
  CHECK_INT(hc_read_head(&c), 200);
  check_sse_stream(&c, 4, &expect);
  hc_close(&c);
  api_png_image_free(&expect);
}

/* GET /jobs/{id}: returns the parsed JSON (or NULL) and the status code in *code. */
static cJSON *job_get(const char *id, int *code) {
  char path[128];
  hc_response r;
  snprintf(path, sizeof path, "/jobs/%s", id);
  *code = hc_request(g_port, "GET", path, NULL, NULL, 0, 30.0, &r);
  cJSON *j = r.body ? cJSON_Parse(r.body) : NULL;
  hc_response_free(&r);
  return j;
}

static const char *jstr(cJSON *o, const char *k) {
  cJSON *v = o ? cJSON_GetObjectItem(o, k) : NULL;
  return cJSON_IsString(v) ? v->valuestring : "";
}

/* POST /jobs; copies the id; returns the status. */
static int job_submit(const char *json, char *id, size_t n) {
  hc_response r;
  int code = post_json("/jobs", json, NULL, &r);
  cJSON *j = r.body ? cJSON_Parse(r.body) : NULL;
  snprintf(id, n, "%s", jstr(j, "id"));
  if (code == 202) {
    char want[96];
    snprintf(want, sizeof want, "/jobs/%s", id);
    CHECK_STR(jstr(j, "poll_url"), want);
  }
  cJSON_Delete(j);
  hc_response_free(&r);
  return code;
}

/* Polls until the job's state is one of the '|'-separated states; returns 1 if reached. */
static int job_wait_state(const char *id, const char *states, double timeout_s, char *state,
                          size_t n) {
  double t0 = hc_now();
  while (hc_now() - t0 < timeout_s) {
    int code;
    cJSON *j = job_get(id, &code);
    snprintf(state, n, "%s", jstr(j, "status"));
    cJSON_Delete(j);
    size_t len = strlen(state);
    for (const char *p = states; len && *p;) {
      size_t k = strcspn(p, "|");
      if (k == len && strncmp(p, state, k) == 0) return 1;
      p += k + (p[k] == '|');
    }
    usleep(20000);
  }
  return 0;
}

static void test_jobs(void) {
  char id[64], state[32];
  /* poll to done; the result is the same image as /generate */
  CHECK_INT(job_submit("{\"prompt\": \"a red circle\", \"seed\": 42, \"steps\": 4, "
                       "\"sampler\": \"euler\"}", id, sizeof id), 202);
  CHECK(job_wait_state(id, "done|failed|cancelled|expired", 60, state, sizeof state));
  CHECK_STR(state, "done");
  int code;
  cJSON *j = job_get(id, &code);
  CHECK_INT(code, 200);
  cJSON_Delete(j);

  /* cancel a running job (long) and a queued one behind it (1 worker) */
  char run_id[64], q_id[64];
  CHECK_INT(job_submit("{\"prompt\": \"long\", \"seed\": 1, \"steps\": 150}", run_id,
                       sizeof run_id), 202);
  CHECK_INT(job_submit("{\"prompt\": \"queued\", \"seed\": 2, \"steps\": 150}", q_id,
                       sizeof q_id), 202);
  CHECK(job_wait_state(run_id, "running", 30, state, sizeof state));
  CHECK(job_wait_state(q_id, "queued", 1, state, sizeof state));
  char path[128];
  hc_response r;
  snprintf(path, sizeof path, "/jobs/%s", q_id);
  code = hc_request(g_port, "DELETE", path, NULL, NULL, 0, 10.0, &r);
  CHECK(code == 200 || code == 202 || code == 204);
  hc_response_free(&r);
  CHECK(job_wait_state(q_id, "cancelled", 5, state, sizeof state));
  snprintf(path, sizeof path, "/jobs/%s", run_id);
  double t0 = hc_now();
  code = hc_request(g_port, "DELETE", path, NULL, NULL, 0, 10.0, &r);
  CHECK(code == 200 || code == 202 || code == 204);
  hc_response_free(&r);
  CHECK(job_wait_state(run_id, "cancelled", 10, state, sizeof state));
  CHECK_STR(state, "cancelled");
  fprintf(stderr, "running job cancelled in %.3f s\n", hc_now() - t0);
  /* the worker is free again: a short request completes promptly */
  hc_response g;
  CHECK_INT(post_json("/generate", "{\"prompt\": \"after\", \"steps\": 1}", NULL, &g), 200);
  hc_response_free(&g);
  /* unknown job */
  j = job_get("0123456789abcdef0123456789abcdef", &code);
  CHECK_INT(code, 404);
  cJSON_Delete(j);
  code = hc_request(g_port, "DELETE", "/jobs/nope", NULL, NULL, 0, 10.0, &r);
  CHECK_INT(code, 404);
  hc_response_free(&r);
}

typedef struct conc_arg {
  int seed;
  int status;
  api_png_image img;
} conc_arg;

static void *conc_client(void *p) {
  conc_arg *a = p;
  char json[256];
  snprintf(json, sizeof json,
           "{\"prompt\": \"a red circle\", \"seed\": %d, \"steps\": 3, \"sampler\": \"euler\"}",
           a->seed);
  hc_response r;
  a->status = post_json("/generate", json, NULL, &r);
  if (a->status == 200) decode(r.body, r.body_len, &a->img);
  hc_response_free(&r);
  return NULL;
}

static void test_concurrent(void) {
  conc_arg seq[4], par[4];
  pthread_t th[4];
  memset(seq, 0, sizeof seq);
  memset(par, 0, sizeof par);
  for (int i = 0; i < 4; i++) {
    seq[i].seed = par[i].seed = 100 + i;
    conc_client(&seq[i]);
    CHECK_INT(seq[i].status, 200);
  }
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, conc_client, &par[i]);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 4; i++) {
    CHECK_INT(par[i].status, 200);
    CHECK(same_pixels(&par[i].img, &seq[i].img));
    for (int k = 0; k < i; k++) CHECK(!same_pixels(&par[i].img, &par[k].img));
  }
  for (int i = 0; i < 4; i++) {
    api_png_image_free(&seq[i].img);
    api_png_image_free(&par[i].img);
  }
}

/* The server adds nothing measurable: time to the last byte of /generate against the CLI's
 * wall time (process start, model load, generation, PNG) for the same 256x256 request,
 * interleaved 3 times (the machine's speed drifts: FACTS.md), best of each. Also the server's
 * own overhead: time to the last byte minus the engine time it reports (X-Generation-Seconds).
 * The issue asks for 2%: checked on the server's own overhead; the CLI comparison is looser. */
static void test_overhead(void) {
  const char *json = "{\"prompt\": \"speed\", \"seed\": 3, \"steps\": 10, \"width\": 256, "
                     "\"height\": 256, \"sampler\": \"euler\"}";
  const char *cli[] = {"--prompt", "speed", "--seed", "3", "--steps", "10", "--width", "256",
                       "--height", "256", "--sampler", "euler", NULL};
  double best_srv = 1e9, best_cli = 1e9, best_over = 1e9;
  for (int i = 0; i < 3; i++) {
    hc_response r;
    CHECK_INT(post_json("/generate", json, NULL, &r), 200);
    char g[32] = "";
    double gen = hc_header(r.head ? r.head : "", "X-Generation-Seconds", g, sizeof g) ? atof(g) : 0;
    if (r.seconds < best_srv) best_srv = r.seconds;
    if (r.seconds - gen < best_over) best_over = r.seconds - gen;
    hc_response_free(&r);
    api_png_image img = {0};
    double t0 = hc_now();
    CHECK_INT(cli_generate(cli, &img), 0);
    double t = hc_now() - t0;
    if (t < best_cli) best_cli = t;
    api_png_image_free(&img);
  }
  fprintf(stderr, "overhead: /generate last byte %.3f s, CLI %.3f s (%+.1f%%); server time "
                  "beyond the engine's %.1f ms\n", best_srv, best_cli,
          100 * (best_srv - best_cli) / best_cli, best_over * 1e3);
  /* what the server adds around the engine: within the 2% (+10 ms of HTTP) */
  CHECK_LE(best_over, 0.02 * best_srv + 0.01);
  /* against the CLI the machine's drift dominates (FACTS.md): only gross slowdowns fail,
     e.g. a worker thread count that halves the engine's speed */
  CHECK_LE(best_srv, best_cli * 1.10 + 0.05);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_http_generate PATH/TO/sdserve\n");
    return 2;
  }
  g_exe = argv[1];
  ht_server s;
  const char *extra[] = {"--workers", "1", "--queue", "8", NULL};
  if (ht_start(&s, g_exe, extra, NULL, 60)) return 1;
  g_port = s.port;
  test_vs_cli();
  test_sse();
  test_jobs();
  test_overhead();
  CHECK_INT(ht_stop(&s, 30, 0), 0);

  /* two workers for the concurrent clients */
  const char *extra2[] = {"--workers", "2", "--threads", "1", NULL};
  if (ht_start(&s, g_exe, extra2, NULL, 60)) return 1;
  g_port = s.port;
  test_concurrent();
  CHECK_INT(ht_stop(&s, 30, 0), 0);
  return check_exit();
}
