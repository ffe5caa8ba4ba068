/* test_request.c: api/request.c, the native JSON request: defaults, every field, and the
 * refusals FACTS.md lists for cJSON (1e400 -> inf, 512.7 read as 512 by valueint, duplicate
 * keys, \u0000), wrong types (400), out-of-range values and limits (422), images (base64 /
 * data: URL PNGs built here with api/png.c; bad ones 400), ControlNet units against the real
 * tiny ControlNet from tests/data, Canny preprocessing, the multipart form path, and the error
 * table of api/errors.c (statuses, JSON body). Every error also names the offending field.
 * Exact checks (no numerics).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "check.h"
#include "multipart.h"
#include "png_io.h"
#include "request.h"

static api_limits lim;

/* Parse body; check the error kind and the param ("" when none is expected). */
static void expect(const char *body, api_err kind, const char *param) {
  api_gen_request r;
  api_error e;
  memset(&e, 0, sizeof e);
  api_err k = api_request_parse(body, strlen(body), &lim, &r, &e);
  if (k != kind) fprintf(stderr, "body: %.200s\n -> %s\n", body, e.message);
  CHECK_INT(k, kind);
  CHECK_INT(e.kind, kind);
  if (kind != API_OK) {
    CHECK(e.message[0] != '\0');
    if (param) CHECK_STR(e.param, param);
  }
  api_gen_request_free(&r);
}

static api_err parse(const char *body, api_gen_request *r) {
  api_error e;
  memset(&e, 0, sizeof e);
  api_err k = api_request_parse(body, strlen(body), &lim, r, &e);
  if (k != API_OK) fprintf(stderr, "unexpected error: %s (%s)\n", e.message, e.param);
  return k;
}

/* A w x h PNG with a left-right gradient, base64'd (malloc'ed). */
static char *png_b64(int w, int h, uint8_t **png_out, size_t *png_len) {
  uint8_t *rgb = malloc((size_t)w * h * 3), *png = NULL;
  size_t len = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *p = rgb + 3 * ((size_t)y * w + x);
      p[0] = (uint8_t)(x * 255 / (w - 1));
      p[1] = (uint8_t)(y * 255 / (h - 1));
      p[2] = (uint8_t)((x + y) % 2 ? 255 : 0);
    }
  if (api_png_encode_mem(rgb, w, h, NULL, 0, &png, &len, NULL) != SD_OK) abort();
  free(rgb);
  char *b = api_base64_encode(png, len, NULL);
  if (png_out) {
    *png_out = png;
    *png_len = len;
  } else {
    free(png);
  }
  return b;
}

static char *fmt(const char *f, const char *a) {
  size_t n = strlen(f) + strlen(a) + 1;
  char *s = malloc(n);
  snprintf(s, n, f, a);
  return s;
}

static void test_defaults_and_fields(void) {
  api_gen_request r;
  CHECK_INT(parse("{\"prompt\":\"a red circle\"}", &r), API_OK);
  CHECK_STR(r.rq.prompt, "a red circle");
  CHECK_STR(r.rq.negative_prompt, "");
  CHECK_INT(r.rq.steps, 20);
  CHECK(r.rq.cfg_scale == 7.5f);
  CHECK_STR(r.rq.sampler, "euler_a");
  CHECK_INT(r.rq.width, lim.native_width);
  CHECK_INT(r.rq.height, lim.native_height);
  CHECK_INT(r.seed_random, 1);
  CHECK_INT(r.batch_size, 1);
  CHECK_INT(r.stream, 0);
  CHECK(r.rq.init_rgb == NULL);
  CHECK_INT(r.rq.ncontrol, 0);
  api_gen_request_free(&r);

  CHECK_INT(parse("{\"prompt\":\"p\",\"negative_prompt\":\"n\",\"seed\":42,\"steps\":7,"
                  "\"cfg_scale\":3.25,\"width\":72,\"height\":40,\"sampler\":\"ddim\","
                  "\"batch_size\":3,\"stream\":true,\"model\":\"whatever\"}", &r), API_OK);
  CHECK_STR(r.rq.negative_prompt, "n");
  CHECK_INT(r.rq.seed, 42);
  CHECK_INT(r.seed_random, 0);
  CHECK_INT(r.rq.steps, 7);
  CHECK(r.rq.cfg_scale == 3.25f);
  CHECK_INT(r.rq.width, 72);
  CHECK_INT(r.rq.height, 40);
  CHECK_STR(r.rq.sampler, "ddim");
  CHECK_INT(r.batch_size, 3);
  CHECK_INT(r.stream, 1);
  char *pj = api_request_params_json(&r, 42, 72, 40);
  CHECK(pj && strstr(pj, "\"seed\":42") && strstr(pj, "\"sampler\":\"ddim\""));
  free(pj);
  api_gen_request_free(&r);

  /* null means absent; the A1111 label and the scheduler alias name samplers */
  CHECK_INT(parse("{\"prompt\":\"p\",\"seed\":null,\"sampler\":\"Euler a\"}", &r), API_OK);
  CHECK_INT(r.seed_random, 1);
  CHECK_STR(r.rq.sampler, "euler_a");
  api_gen_request_free(&r);
  CHECK_INT(parse("{\"prompt\":\"p\",\"scheduler\":\"pndm\"}", &r), API_OK);
  CHECK_STR(r.rq.sampler, "pndm");
  api_gen_request_free(&r);

  /* seeds: the full uint64 range as a string, 2^53 as a number, -1 random */
  CHECK_INT(parse("{\"prompt\":\"p\",\"seed\":\"18446744073709551615\"}", &r), API_OK);
  CHECK(r.rq.seed == UINT64_MAX);
  CHECK_INT(r.seed_random, 0);
  api_gen_request_free(&r);
  CHECK_INT(parse("{\"prompt\":\"p\",\"seed\":9007199254740992}", &r), API_OK);
  CHECK(r.rq.seed == 9007199254740992ull);
  api_gen_request_free(&r);
  CHECK_INT(parse("{\"prompt\":\"p\",\"seed\":-1}", &r), API_OK);
  CHECK_INT(r.seed_random, 1);
  api_gen_request_free(&r);

  /* an escaped backslash before u0000 is text, not a NUL */
  CHECK_INT(parse("{\"prompt\":\"a\\\\u0000b\"}", &r), API_OK);
  CHECK_STR(r.rq.prompt, "a\\u0000b");
  api_gen_request_free(&r);
}

static void test_refusals(void) {
  /* syntax and types: 400 */
  expect("", API_ERR_BAD_JSON, "");
  expect("{\"prompt\":", API_ERR_BAD_JSON, "");
  expect("[1,2]", API_ERR_BAD_JSON, "");
  expect("\"prompt\"", API_ERR_BAD_JSON, "");
  expect("{\"prompt\":\"a\",\"prompt\":\"b\"}", API_ERR_BAD_JSON, "prompt");
  expect("{\"prompt\":5}", API_ERR_BAD_TYPE, "prompt");
  expect("{\"prompt\":\"a\",\"steps\":\"20\"}", API_ERR_BAD_TYPE, "steps");
  expect("{\"prompt\":\"a\",\"stream\":1}", API_ERR_BAD_TYPE, "stream");
  expect("{\"prompt\":\"a\",\"control\":5}", API_ERR_BAD_TYPE, "control");
  /* values: 422 */
  expect("{\"negative_prompt\":\"a\"}", API_ERR_BAD_VALUE, "prompt");
  expect("{\"prompt\":\"a\",\"steps\":1e400}", API_ERR_BAD_VALUE, "steps");
  expect("{\"prompt\":\"a\",\"cfg_scale\":-1e400}", API_ERR_BAD_VALUE, "cfg_scale");
  expect("{\"prompt\":\"a\",\"width\":512.7}", API_ERR_BAD_VALUE, "width");
  expect("{\"prompt\":\"a\",\"steps\":20.5}", API_ERR_BAD_VALUE, "steps");
  expect("{\"prompt\":\"a\",\"width\":100}", API_ERR_BAD_VALUE, "width");
  expect("{\"prompt\":\"a\",\"height\":0}", API_ERR_BAD_VALUE, "height");
  expect("{\"prompt\":\"a\",\"steps\":0}", API_ERR_BAD_VALUE, "steps");
  expect("{\"prompt\":\"a\",\"steps\":1001}", API_ERR_BAD_VALUE, "steps");
  expect("{\"prompt\":\"a\",\"steps\":2147483648}", API_ERR_BAD_VALUE, "steps");
  expect("{\"prompt\":\"a\",\"batch_size\":0}", API_ERR_BAD_VALUE, "batch_size");
  expect("{\"prompt\":\"a\",\"sampler\":\"euler_b\"}", API_ERR_BAD_VALUE, "sampler");
  expect("{\"prompt\":\"a\",\"sampler\":\"ddim\",\"scheduler\":\"pndm\"}", API_ERR_BAD_VALUE,
         "scheduler");
  expect("{\"prompt\":\"a\",\"seed\":1.5}", API_ERR_BAD_VALUE, "seed");
  expect("{\"prompt\":\"a\",\"seed\":-2}", API_ERR_BAD_VALUE, "seed");
  expect("{\"prompt\":\"a\",\"seed\":9007199254740994}", API_ERR_BAD_VALUE, "seed");
  expect("{\"prompt\":\"a\",\"seed\":\"18446744073709551616\"}", API_ERR_BAD_VALUE, "seed");
  expect("{\"prompt\":\"a\",\"seed\":\"12x\"}", API_ERR_BAD_VALUE, "seed");
  expect("{\"prompt\":\"a\\u0000b\"}", API_ERR_BAD_VALUE, "");
  expect("{\"prompt\":\"\xff\xfe\"}", API_ERR_BAD_VALUE, "prompt");
  expect("{\"prompt\":\"\xed\xa0\x80\"}", API_ERR_BAD_VALUE, "prompt"); /* a surrogate */
  expect("{\"prompt\":\"a\",\"guidance\":7}", API_ERR_BAD_VALUE, "guidance");
  expect("{\"prompt\":\"a\",\"strength\":0.5}", API_ERR_BAD_VALUE, "strength");
  expect("{\"prompt\":\"a\",\"control\":{\"image\":\"\"}}", API_ERR_BAD_VALUE, "control");
  /* limits: 422 (configured caps, as opposed to validity) */
  expect("{\"prompt\":\"a\",\"steps\":151}", API_ERR_LIMIT, "steps");
  expect("{\"prompt\":\"a\",\"batch_size\":5}", API_ERR_LIMIT, "batch_size");
  expect("{\"prompt\":\"a\",\"width\":4096,\"height\":4096}", API_ERR_LIMIT, "width");
  char *big = malloc(8000 + 32);
  strcpy(big, "{\"prompt\":\"");
  memset(big + 11, 'a', 4001);
  strcpy(big + 11 + 4001, "\"}");
  expect(big, API_ERR_LIMIT, "prompt");
  /* exactly the limit in code points passes even when it is more bytes (2-byte chars) */
  strcpy(big, "{\"prompt\":\"");
  for (int i = 0; i < 4000; i++) memcpy(big + 11 + 2 * i, "\xc3\xa9", 2);
  strcpy(big + 11 + 8000, "\"}");
  expect(big, API_OK, NULL);
  free(big);
  /* objects with far more keys than fields exist */
  char many[2048] = "{";
  for (int i = 0; i < 40; i++) snprintf(many + strlen(many), 64, "\"prompt\":\"x\",");
  strcpy(many + strlen(many) - 1, "}");
  expect(many, API_ERR_BAD_JSON, NULL);
}

static void test_images(void) {
  uint8_t *png;
  size_t png_len;
  char *b = png_b64(24, 16, &png, &png_len);
  api_gen_request r;
  char *body = fmt("{\"prompt\":\"p\",\"init_image\":\"%s\",\"strength\":0.25}", b);
  CHECK_INT(parse(body, &r), API_OK);
  CHECK_INT(r.rq.width, 24);
  CHECK_INT(r.rq.height, 16);
  CHECK(r.rq.init_rgb != NULL);
  CHECK(r.rq.strength == 0.25f);
  /* the decoded pixels are the gradient we encoded: right edge red 255, bottom green 255 */
  CHECK_INT(r.rq.init_rgb[3 * 23 + 0], 255);
  CHECK_INT(r.rq.init_rgb[3 * (15 * 24) + 1], 255);
  /* after the run the images go, what the parameters report stays */
  api_gen_request_drop_images(&r);
  CHECK(r.rq.init_rgb == NULL && r.init.rgb == NULL);
  char *pj = api_request_params_json(&r, 1, 24, 16);
  CHECK(pj && strstr(pj, "\"strength\":0.25"));
  free(pj);
  api_gen_request_free(&r);
  free(body);
  /* a data: URL */
  body = fmt("{\"prompt\":\"p\",\"init_image\":\"data:image/png;base64,%s\"}", b);
  CHECK_INT(parse(body, &r), API_OK);
  CHECK_INT(r.rq.width, 24);
  api_gen_request_free(&r);
  free(body);
  /* size conflicts, bad base64, not a PNG, not a multiple of 8 */
  body = fmt("{\"prompt\":\"p\",\"init_image\":\"%s\",\"width\":32}", b);
  expect(body, API_ERR_BAD_VALUE, "init_image");
  free(body);
  expect("{\"prompt\":\"p\",\"init_image\":\"@@@@\"}", API_ERR_BAD_IMAGE, "init_image");
  expect("{\"prompt\":\"p\",\"init_image\":\"data:image/png,abc\"}", API_ERR_BAD_IMAGE,
         "init_image");
  expect("{\"prompt\":\"p\",\"init_image\":\"aGVsbG8gd29ybGQ=\"}", API_ERR_BAD_IMAGE,
         "init_image");
  char *odd = png_b64(20, 16, NULL, NULL);
  body = fmt("{\"prompt\":\"p\",\"init_image\":\"%s\"}", odd);
  expect(body, API_ERR_BAD_VALUE, "init_image");
  free(body);
  free(odd);
  /* an image over the byte cap fails before decoding */
  api_limits keep = lim;
  lim.max_image_bytes = png_len - 1;
  body = fmt("{\"prompt\":\"p\",\"init_image\":\"%s\"}", b);
  expect(body, API_ERR_LIMIT, "init_image");
  free(body);
  lim = keep;
  free(b);
  free(png);
}

static void test_control(const sd_controlnet *net) {
  char *b = png_b64(32, 24, NULL, NULL);
  api_gen_request r;
  char *body;
  /* no net loaded */
  body = fmt("{\"prompt\":\"p\",\"control\":{\"image\":\"%s\"}}", b);
  expect(body, API_ERR_BAD_VALUE, "control");
  api_controlnet_ref refs[1] = {{"canny-net", net}};
  lim.controlnets = refs;
  lim.n_controlnets = 1;
  CHECK_INT(parse(body, &r), API_OK);
  CHECK_INT(r.rq.ncontrol, 1);
  CHECK(r.rq.control == r.units);
  CHECK(r.units[0].net == net);
  CHECK(r.units[0].scale == 1.0f && r.units[0].start == 0.0f && r.units[0].end == 1.0f);
  CHECK_INT(r.units[0].width, 32);
  CHECK_INT(r.units[0].height, 24);
  CHECK_STR(r.control_names[0], "canny-net");
  api_gen_request_free(&r);
  free(body);
  /* Canny: the unit's image becomes a gray edge map; two units share the one net */
  body = fmt("{\"prompt\":\"p\",\"control\":[{\"image\":\"%s\",\"preprocess\":\"canny\","
             "\"low_threshold\":50,\"high_threshold\":100,\"scale\":0.5,\"start\":0.1,"
             "\"end\":0.9,\"model\":\"canny-net\"},{\"image\":\"%%s\"}]}", b);
  char *body2 = fmt(body, b);
  CHECK_INT(parse(body2, &r), API_OK);
  CHECK_INT(r.rq.ncontrol, 2);
  CHECK(r.canny[0] != NULL && r.units[0].rgb == r.canny[0]);
  CHECK(r.canny[1] == NULL);
  int gray = 1, edges = 0;
  for (int p = 0; p < 32 * 24; p++) {
    const uint8_t *q = r.units[0].rgb + 3 * p;
    gray &= q[0] == q[1] && q[1] == q[2] && (q[0] == 0 || q[0] == 255);
    edges += q[0] == 255;
  }
  CHECK(gray);
  CHECK(edges > 0); /* the checkerboard blue channel has edges everywhere */
  CHECK(r.units[0].scale == 0.5f);
  CHECK(r.units[0].start == 0.1f && r.units[0].end == 0.9f);
  CHECK(r.units[1].net == net);
  api_gen_request_free(&r);
  free(body);
  free(body2);
  /* unit refusals */
  body = fmt("{\"prompt\":\"p\",\"control\":{\"image\":\"%s\",\"model\":\"nope\"}}", b);
  expect(body, API_ERR_BAD_VALUE, "control[0].model");
  free(body);
  body = fmt("{\"prompt\":\"p\",\"control\":{\"image\":\"%s\",\"scale\":11}}", b);
  expect(body, API_ERR_BAD_VALUE, "control[0].scale");
  free(body);
  body = fmt("{\"prompt\":\"p\",\"control\":{\"image\":\"%s\",\"start\":0.8,\"end\":0.2}}", b);
  expect(body, API_ERR_BAD_VALUE, "control[0].end");
  free(body);
  body = fmt("{\"prompt\":\"p\",\"control\":{\"image\":\"%s\",\"preprocess\":\"depth\"}}", b);
  expect(body, API_ERR_BAD_VALUE, "control[0].preprocess");
  free(body);
  body = fmt("{\"prompt\":\"p\",\"control\":{\"image\":\"%s\",\"weight\":1}}", b);
  expect(body, API_ERR_BAD_VALUE, "weight");
  free(body);
  expect("{\"prompt\":\"p\",\"control\":[1]}", API_ERR_BAD_TYPE, "control[0]");
  expect("{\"prompt\":\"p\",\"control\":[{},{},{},{},{},{},{},{},{}]}", API_ERR_LIMIT,
         "control");
  free(b);
}

static void test_form(const sd_controlnet *net) {
  uint8_t *png;
  size_t png_len;
  char *b = png_b64(16, 16, &png, &png_len);
  free(b);
  /* build a multipart body: JSON part, text fields, the init image and a control image */
  size_t cap = 4096 + 2 * png_len, n = 0;
  char *body = malloc(cap);
  n += (size_t)snprintf(body + n, cap - n,
                        "--XyZ\r\nContent-Disposition: form-data; name=\"request\"\r\n"
                        "Content-Type: application/json\r\n\r\n{\"prompt\":\"json\",\"steps\":9}"
                        "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n"
                        "from the form\r\n--XyZ\r\nContent-Disposition: form-data; "
                        "name=\"cfg_scale\"\r\n\r\n2.5\r\n--XyZ\r\nContent-Disposition: "
                        "form-data; name=\"init_image\"; filename=\"a.png\"\r\nContent-Type: "
                        "image/png\r\n\r\n");
  memcpy(body + n, png, png_len);
  n += png_len;
  n += (size_t)snprintf(body + n, cap - n,
                        "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"control_image\"; "
                        "filename=\"c.png\"\r\n\r\n");
  memcpy(body + n, png, png_len);
  n += png_len;
  n += (size_t)snprintf(body + n, cap - n, "\r\n--XyZ--\r\n");
  api_form form;
  api_error e;
  memset(&e, 0, sizeof e);
  CHECK_INT(api_multipart_parse((uint8_t *)body, n, "XyZ", 16, &form, &e), API_OK);
  CHECK_INT(form.nparts, 5);
  api_controlnet_ref refs[1] = {{"cn", net}};
  lim.controlnets = refs;
  lim.n_controlnets = 1;
  api_gen_request r;
  CHECK_INT(api_request_parse_form(&form, &lim, &r, &e), API_OK);
  CHECK_STR(r.rq.prompt, "from the form");
  CHECK_INT(r.rq.steps, 9);
  CHECK(r.rq.cfg_scale == 2.5f);
  CHECK_INT(r.rq.width, 16);
  CHECK(r.rq.init_rgb != NULL);
  CHECK_INT(r.rq.ncontrol, 1);
  CHECK_INT(r.units[0].width, 16);
  api_gen_request_free(&r);
  api_form_free(&form);
  /* a bad value in a text field is reported under its name */
  const char *bad = "--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n"
                    "--b\r\nContent-Disposition: form-data; name=\"steps\"\r\n\r\nmany\r\n--b--";
  memset(&e, 0, sizeof e);
  CHECK_INT(api_multipart_parse((const uint8_t *)bad, strlen(bad), "b", 16, &form, &e), API_OK);
  CHECK_INT(api_request_parse_form(&form, &lim, &r, &e), API_ERR_BAD_TYPE);
  CHECK_STR(e.param, "steps");
  api_gen_request_free(&r);
  api_form_free(&form);
  free(body);
  free(png);
}

/* api/errors.c: the table's statuses (DESIGN.md section 4) and the JSON body's shape. */
static void test_errors(void) {
  CHECK_INT(api_err_http_status(API_ERR_BAD_JSON), 400);
  CHECK_INT(api_err_http_status(API_ERR_BAD_TYPE), 400);
  CHECK_INT(api_err_http_status(API_ERR_BAD_IMAGE), 400);
  CHECK_INT(api_err_http_status(API_ERR_BAD_VALUE), 422);
  CHECK_INT(api_err_http_status(API_ERR_LIMIT), 422);
  CHECK_INT(api_err_http_status(API_ERR_UNAUTHORIZED), 401);
  CHECK_INT(api_err_http_status(API_ERR_TOO_LARGE), 413);
  CHECK_INT(api_err_http_status(API_ERR_MEDIA_TYPE), 415);
  CHECK_INT(api_err_http_status(API_ERR_QUEUE_FULL), 503);
  CHECK_INT(api_err_http_status(API_ERR_TIMEOUT), 504);
  CHECK_INT(api_err_http_status((api_err)999), 500);
  CHECK(api_err_retry_after(API_ERR_QUEUE_FULL) && api_err_retry_after(API_ERR_DRAINING));
  CHECK(!api_err_retry_after(API_ERR_BAD_VALUE));
  CHECK_INT(api_err_from_status(SD_ERR_INVALID), API_ERR_BAD_VALUE);
  CHECK_INT(api_err_from_status(SD_ERR_CANCELLED), API_ERR_CANCELLED);
  CHECK_INT(api_err_from_status(SD_ERR_LIMIT), API_ERR_LIMIT);
  CHECK_INT(api_err_from_status(SD_ERR_INTERNAL), API_ERR_INTERNAL);
  char *j = api_error_json(API_ERR_BAD_VALUE, "width \"x\" bad\n", "width");
  CHECK_STR(j, "{\"error\":{\"code\":\"invalid_value\",\"message\":\"width \\\"x\\\" bad\\n\","
               "\"param\":\"width\"}}");
  free(j);
  j = api_error_json(API_ERR_QUEUE_FULL, "full", NULL);
  CHECK_STR(j, "{\"error\":{\"code\":\"queue_full\",\"message\":\"full\",\"param\":null}}");
  free(j);
  api_error e;
  memset(&e, 0, sizeof e);
  api_error_set(&e, API_ERR_LIMIT, "steps", "first %d", 1);
  api_error_set(&e, API_ERR_BAD_JSON, NULL, "second");
  CHECK_INT(e.kind, API_ERR_LIMIT); /* the first error wins */
  CHECK_STR(e.message, "first 1");
  CHECK_STR(e.param, "steps");
}

int main(void) {
  test_errors();
  api_limits_init(&lim);
  lim.native_width = 64;
  lim.native_height = 48;
  test_defaults_and_fields();
  test_refusals();
  test_images();
  sd_controlnet *net = NULL;
  char err[SD_ERRMSG_MAX];
  if (sd_controlnet_load(SD_TEST_DATA "/models/tiny-sd/controlnet", NULL, &net, err) != SD_OK) {
    fprintf(stderr, "cannot load the tiny ControlNet: %s\n", err);
    CHECK(0);
  } else {
    test_control(net);
    api_limits_init(&lim);
    test_form(net);
  }
  sd_controlnet_destroy(net);
  return check_exit();
}
