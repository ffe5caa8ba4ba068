/* test_compat_api.c: the A1111 and OpenAI wire formats (api/a1111.c, api/openai.c) without
 * HTTP: sampler names, A1111 defaults and rounding, n_iter, ControlNet units translated into
 * native units (with the tiny test ControlNet loaded), error kinds, response shapes, options
 * and progress. The end-to-end behaviour is in the Node tests beside this file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "a1111.h"
#include "base64.h"
#include "check.h"
#include "openai.h"
#include "png_io.h"

static sd_controlnet *net;
static api_controlnet_ref ref;
static api_limits lim;

static api_err a1111(const char *body, int img2img, api_gen_request *r, api_a1111_extra *x,
                     api_error *e) {
  memset(e, 0, sizeof *e);
  return api_a1111_parse(body, strlen(body), img2img, &lim, r, x, e);
}

static void test_samplers(void) {
  CHECK_STR(api_a1111_sampler("Euler a", NULL), "euler_a");
  CHECK_STR(api_a1111_sampler("euler A", "Automatic"), "euler_a");
  CHECK_STR(api_a1111_sampler("k_euler_ancestral", NULL), "euler_a");
  CHECK_STR(api_a1111_sampler("DPM++ 2M", "Karras"), "dpmpp_2m_karras");
  CHECK_STR(api_a1111_sampler("DPM++ 2M Karras", NULL), "dpmpp_2m_karras");
  CHECK_STR(api_a1111_sampler("DDIM", "normal"), "ddim");
  CHECK_STR(api_a1111_sampler("PLMS", NULL), "pndm");
  CHECK(api_a1111_sampler("DDIM", "exponential") == NULL);
  CHECK(api_a1111_sampler("UniPC", NULL) == NULL);
  CHECK(api_a1111_sampler(NULL, NULL) == NULL);
  /* every label we list maps back to its sampler */
  for (const char *const *n = sd_sampler_names; *n; n++)
    CHECK_STR(api_a1111_sampler(sd_sampler_label(*n), NULL), *n);
  char *j = api_a1111_samplers_json();
  cJSON *a = cJSON_Parse(j);
  CHECK(cJSON_GetArraySize(a) == 9);
  CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(a, 3), "name")->valuestring, "Euler a");
  cJSON_Delete(a);
  free(j);
}

static void test_defaults(void) {
  api_gen_request r;
  api_a1111_extra x;
  api_error e;
  CHECK_INT(a1111("{}", 0, &r, &x, &e), API_OK);
  CHECK_STR(r.rq.prompt, "");
  CHECK_INT(r.rq.steps, 20);
  CHECK_NEAR(r.rq.cfg_scale, 7.0, 0);
  CHECK_STR(r.rq.sampler, "euler_a");
  CHECK_INT(r.rq.width, 512);
  CHECK_INT(r.rq.height, 512);
  CHECK_INT(r.batch_size, 1);
  CHECK_INT(r.seed_random, 1);
  cJSON *p = cJSON_Parse(x.params_json);
  CHECK_STR(cJSON_GetObjectItem(p, "sampler_name")->valuestring, "Euler a");
  CHECK_INT(cJSON_GetObjectItem(p, "n_iter")->valueint, 1);
  cJSON_Delete(p);
  api_gen_request_free(&r);
  api_a1111_extra_free(&x);

  CHECK_INT(a1111("{\"prompt\":\"p\",\"width\":70,\"height\":50,\"batch_size\":2,\"n_iter\":2,"
                  "\"seed\":9,\"steps\":3,\"sampler_index\":\"DDIM\",\"whatever\":[1,{}]}",
                  0, &r, &x, &e), API_OK);
  CHECK_INT(r.rq.width, 64);
  CHECK_INT(r.rq.height, 48);
  CHECK_INT(r.batch_size, 4);
  CHECK_INT(x.batch_size, 2);
  CHECK_INT(x.n_iter, 2);
  CHECK_INT(r.seed_random, 0);
  CHECK(r.rq.seed == 9);
  CHECK_STR(r.rq.sampler, "ddim");
  api_gen_request_free(&r);
  api_a1111_extra_free(&x);
}

static void test_errors(void) {
  api_gen_request r;
  api_a1111_extra x;
  api_error e;
  static const struct { const char *body; int img2img; api_err want; } cases[] = {
      {"[]", 0, API_ERR_BAD_JSON},
      {"{\"sampler_name\":\"UniPC\"}", 0, API_ERR_BAD_VALUE},
      {"{\"sampler_name\":7}", 0, API_ERR_BAD_TYPE},
      {"{\"width\":\"wide\"}", 0, API_ERR_BAD_TYPE},
      {"{\"width\":512.5}", 0, API_ERR_BAD_VALUE},
      {"{\"steps\":1e400}", 0, API_ERR_BAD_VALUE},
      {"{\"batch_size\":3,\"n_iter\":2}", 0, API_ERR_LIMIT},
      {"{\"prompt\":\"x\"}", 1, API_ERR_BAD_VALUE},
      {"{\"init_images\":[\"@@@\"]}", 1, API_ERR_BAD_IMAGE},
      {"{\"alwayson_scripts\":{\"controlnet\":{\"args\":[{\"image\":\"x\",\"module\":\"openpose\"}]}}}",
       0, API_ERR_BAD_VALUE},
      {"{\"alwayson_scripts\":{\"controlnet\":{\"args\":[{\"image\":\"x\",\"control_mode\":2}]}}}",
       0, API_ERR_BAD_VALUE},
      {"{\"alwayson_scripts\":{\"controlnet\":{\"args\":[{\"module\":\"canny\"}]}}}", 0,
       API_ERR_BAD_VALUE},
      {"{\"alwayson_scripts\":{\"controlnet\":{\"args\":[3]}}}", 0, API_ERR_BAD_TYPE},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    api_err k = a1111(cases[i].body, cases[i].img2img, &r, &x, &e);
    if (k != cases[i].want) fprintf(stderr, "case %zu: %s\n", i, cases[i].body);
    CHECK_INT(k, cases[i].want);
    CHECK(e.message[0] != '\0');
    api_gen_request_free(&r);
    api_a1111_extra_free(&x);
  }
}

/* A small asymmetric RGB image as a base64 PNG. */
static char *test_png_b64(int w, int h) {
  uint8_t *rgb = malloc((size_t)w * h * 3), *png = NULL;
  size_t len = 0;
  for (int i = 0; i < w * h; i++) {
    rgb[3 * i] = (uint8_t)(i % w < w / 3 ? 255 : 0);
    rgb[3 * i + 1] = (uint8_t)(i / w < h / 2 ? 200 : 10);
    rgb[3 * i + 2] = (uint8_t)(i * 7);
  }
  CHECK_INT(api_png_encode_mem(rgb, w, h, NULL, 0, &png, &len, NULL), SD_OK);
  char *b = api_base64_encode(png, len, NULL);
  free(rgb);
  free(png);
  return b;
}

static void test_controlnet_units(void) {
  char *img = test_png_b64(40, 24);
  size_t n = strlen(img) + 1024;
  char *body = malloc(n);
  snprintf(body, n,
           "{\"alwayson_scripts\":{\"ControlNet\":{\"args\":["
           "{\"enabled\":false,\"image\":\"junk\",\"module\":\"depth\"},"
           "{\"Input_Image\":\"data:image/png;base64,%s\",\"module\":\"Canny\","
           "\"model\":\"controlnet [0123abcd]\",\"weight\":0.5,\"guidance_start\":0.25,"
           "\"guidance\":0.75,\"threshold_a\":-1,\"threshold_b\":150,\"resize_mode\":\"Crop and "
           "Resize\",\"control_mode\":\"Balanced\",\"save_detected_map\":true,"
           "\"processor_res\":512,\"pixel_perfect\":true},"
           "{\"image\":{\"image\":\"%s\",\"mask\":null},\"module\":\"none\",\"model\":\"None\"}"
           "]}},\"width\":64,\"height\":48,\"steps\":2}",
           img, img);
  api_gen_request r;
  api_a1111_extra x;
  api_error e;
  CHECK_INT(a1111(body, 0, &r, &x, &e), API_OK);
  CHECK_INT(r.rq.ncontrol, 1); /* disabled and model "None" units are skipped */
  CHECK_INT(x.n_units, 1);
  CHECK_INT(x.save_detected_map[0], 1);
  CHECK(r.units[0].net == net);
  CHECK_NEAR(r.units[0].scale, 0.5, 0);
  CHECK_NEAR(r.units[0].start, 0.25, 0);
  CHECK_NEAR(r.units[0].end, 0.75, 0);
  CHECK_STR(r.preprocess[0], "canny");
  CHECK(r.canny[0] != NULL);
  CHECK_STR(r.control_names[0], "controlnet");
  /* "Crop and Resize": the 40x24 image is centre-cropped to 64x48's aspect, 32x24 */
  CHECK_INT(r.control_img[0].width, 32);
  CHECK_INT(r.control_img[0].height, 24);
  /* the answer: the image, then the Canny map */
  uint8_t *png = NULL;
  size_t len = 0;
  uint8_t px[64 * 48 * 3] = {0};
  CHECK_INT(api_png_encode_mem(px, 64, 48, NULL, 0, &png, &len, NULL), SD_OK);
  api_a1111_image im = {png, len, 42};
  api_gen_request_drop_images(&r); /* as the server does when a job ends */
  char *resp = api_a1111_response(&r, &x, &im, 1, "tiny-sd");
  cJSON *o = cJSON_Parse(resp);
  CHECK(o != NULL);
  CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(o, "images")), 2);
  char *b0 = api_base64_encode(png, len, NULL);
  CHECK_STR(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "images"), 0)->valuestring, b0);
  cJSON *info = cJSON_Parse(cJSON_GetObjectItem(o, "info")->valuestring);
  CHECK_INT(cJSON_GetArrayItem(cJSON_GetObjectItem(info, "all_seeds"), 0)->valueint, 42);
  const char *it = cJSON_GetArrayItem(cJSON_GetObjectItem(info, "infotexts"), 0)->valuestring;
  CHECK(strstr(it, "Seed: 42, Size: 64x48, Model: tiny-sd, ControlNet 0: ") != NULL);
  cJSON_Delete(info);
  cJSON_Delete(o);
  free(b0);
  free(resp);
  free(png);
  api_gen_request_free(&r);
  api_a1111_extra_free(&x);
  /* "Just Resize" keeps the whole image; "Resize and Fill" of another aspect is refused */
  char *b2 = malloc(n);
  snprintf(b2, n, "{\"alwayson_scripts\":{\"controlnet\":{\"args\":[{\"image\":\"%s\","
           "\"resize_mode\":0}]}},\"width\":64,\"height\":48}", img);
  CHECK_INT(a1111(b2, 0, &r, &x, &e), API_OK);
  CHECK_INT(r.control_img[0].width, 40);
  api_gen_request_free(&r);
  api_a1111_extra_free(&x);
  snprintf(b2, n, "{\"alwayson_scripts\":{\"controlnet\":{\"args\":[{\"image\":\"%s\","
           "\"resize_mode\":\"Resize and Fill\"}]}},\"width\":64,\"height\":48}", img);
  CHECK_INT(a1111(b2, 0, &r, &x, &e), API_ERR_BAD_VALUE);
  api_gen_request_free(&r);
  api_a1111_extra_free(&x);
  free(b2);
  /* an empty args list */
  CHECK_INT(a1111("{\"alwayson_scripts\":{\"controlnet\":{\"args\":[]}}}", 0, &r, &x, &e),
            API_OK);
  CHECK_INT(r.rq.ncontrol, 0);
  api_gen_request_free(&r);
  api_a1111_extra_free(&x);
  free(body);
  free(img);
}

static void test_img2img_resize(void) {
  char *img = test_png_b64(40, 24);
  size_t n = strlen(img) + 256;
  char *body = malloc(n);
  snprintf(body, n, "{\"init_images\":[\"%s\"],\"width\":64,\"height\":48}", img);
  api_gen_request r;
  api_a1111_extra x;
  api_error e;
  CHECK_INT(a1111(body, 1, &r, &x, &e), API_OK);
  CHECK(r.rq.init_rgb != NULL);
  CHECK_INT(r.init.width, 64);
  CHECK_INT(r.init.height, 48);
  CHECK_NEAR(r.rq.strength, 0.75, 1e-7); /* A1111's denoising_strength default */
  cJSON *p = cJSON_Parse(x.params_json);
  CHECK(cJSON_IsNull(cJSON_GetObjectItem(p, "init_images")));
  cJSON_Delete(p);
  api_gen_request_free(&r);
  api_a1111_extra_free(&x);
  free(body);
  free(img);
}

static void test_openai(void) {
  api_gen_request r;
  api_openai_extra x;
  api_error e;
  const char *b = "{\"prompt\":\"p\",\"n\":2,\"size\":\"64x48\",\"response_format\":\"url\","
                  "\"model\":\"dall-e-2\",\"quality\":\"hd\",\"seed\":5,\"steps\":3,"
                  "\"sampler\":\"ddim\",\"negative_prompt\":\"n\",\"user\":\"u\"}";
  memset(&e, 0, sizeof e);
  CHECK_INT(api_openai_parse(b, strlen(b), &lim, &r, &x, &e), API_OK);
  CHECK_INT(r.batch_size, 2);
  CHECK_INT(r.rq.width, 64);
  CHECK_INT(r.rq.height, 48);
  CHECK_INT(x.want_url, 1);
  CHECK_STR(x.size, "64x48");
  CHECK_STR(r.rq.sampler, "ddim");
  CHECK_STR(r.rq.negative_prompt, "n");
  CHECK(r.rq.seed == 5);
  api_gen_request_free(&r);
  b = "{\"prompt\":\"p\",\"size\":\"auto\",\"stream\":true,\"partial_images\":2}";
  memset(&e, 0, sizeof e);
  CHECK_INT(api_openai_parse(b, strlen(b), &lim, &r, &x, &e), API_OK);
  CHECK_INT(r.rq.width, lim.native_width);
  CHECK_INT(x.stream, 1);
  CHECK_INT(x.partial_images, 2);
  CHECK_INT(x.want_url, 0);
  api_gen_request_free(&r);
  static const struct { const char *body; api_err want; const char *param; } bad[] = {
      {"{}", API_ERR_BAD_VALUE, "prompt"},
      {"{\"prompt\":\"p\",\"size\":\"64\"}", API_ERR_BAD_VALUE, "size"},
      {"{\"prompt\":\"p\",\"n\":9}", API_ERR_LIMIT, "n"},
      {"{\"prompt\":\"p\",\"n\":1.5}", API_ERR_BAD_TYPE, "n"},
      {"{\"prompt\":\"p\",\"response_format\":\"jpeg\"}", API_ERR_BAD_VALUE, "response_format"},
      {"{\"prompt\":\"p\",\"output_format\":\"webp\"}", API_ERR_BAD_VALUE, "output_format"},
      {"{\"prompt\":\"p\",\"sampler\":\"nope\"}", API_ERR_BAD_VALUE, "sampler"},
      {"{\"prompt\":\"p\",\"size\":\"8192x8192\"}", API_ERR_BAD_VALUE, "width"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memset(&e, 0, sizeof e);
    api_err k = api_openai_parse(bad[i].body, strlen(bad[i].body), &lim, &r, &x, &e);
    if (k != bad[i].want || strcmp(e.param, bad[i].param))
      fprintf(stderr, "case %zu: %s -> %s (%s)\n", i, bad[i].body, e.param, e.message);
    CHECK_INT(k, bad[i].want);
    CHECK_STR(e.param, bad[i].param);
    api_gen_request_free(&r);
  }
  /* error and answer shapes */
  char *j = api_openai_error_json(API_ERR_QUEUE_FULL, "full", NULL);
  cJSON *o = cJSON_Parse(j), *er = cJSON_GetObjectItem(o, "error");
  CHECK_STR(cJSON_GetObjectItem(er, "message")->valuestring, "full");
  CHECK_STR(cJSON_GetObjectItem(er, "type")->valuestring, "server_error");
  CHECK_STR(cJSON_GetObjectItem(er, "code")->valuestring, "queue_full");
  CHECK(cJSON_IsNull(cJSON_GetObjectItem(er, "param")));
  cJSON_Delete(o);
  free(j);
  const char *items[] = {"http://h/a.png", "http://h/b.png"};
  x.want_url = 1;
  j = api_openai_response(&x, 1700000000, items, 2);
  o = cJSON_Parse(j);
  CHECK_INT(cJSON_GetObjectItem(o, "created")->valueint, 1700000000);
  CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "data"), 1), "url")
                ->valuestring, "http://h/b.png");
  cJSON_Delete(o);
  free(j);
  j = api_openai_event_json(&x, 5, "QUJD", 1);
  o = cJSON_Parse(j);
  CHECK_STR(cJSON_GetObjectItem(o, "type")->valuestring, "image_generation.partial_image");
  CHECK_INT(cJSON_GetObjectItem(o, "partial_image_index")->valueint, 1);
  cJSON_Delete(o);
  free(j);
}

static void test_options_progress(void) {
  char *merged = NULL, *merged2 = NULL;
  api_error e;
  memset(&e, 0, sizeof e);
  const char *b = "{\"sd_model_checkpoint\":\"other\",\"CLIP_stop_at_last_layers\":2}";
  CHECK_INT(api_a1111_options_merge(NULL, b, strlen(b), &merged, &e), API_OK);
  b = "{\"samples_format\":\"jpg\"}";
  CHECK_INT(api_a1111_options_merge(merged, b, strlen(b), &merged2, &e), API_OK);
  char *j = api_a1111_options_json("tiny-sd", merged2);
  cJSON *o = cJSON_Parse(j);
  CHECK_STR(cJSON_GetObjectItem(o, "sd_model_checkpoint")->valuestring, "tiny-sd");
  CHECK_INT(cJSON_GetObjectItem(o, "CLIP_stop_at_last_layers")->valueint, 2);
  CHECK_STR(cJSON_GetObjectItem(o, "samples_format")->valuestring, "jpg");
  CHECK_STR(cJSON_GetObjectItem(o, "sd_vae")->valuestring, "Automatic");
  cJSON_Delete(o);
  free(j);
  memset(&e, 0, sizeof e);
  char *m3 = NULL;
  CHECK_INT(api_a1111_options_merge(merged2, "[1]", 3, &m3, &e), API_ERR_BAD_JSON);
  CHECK(m3 == NULL);
  free(merged);
  free(merged2);
  j = api_a1111_progress_json(0, 0, 0, 0, NULL);
  o = cJSON_Parse(j);
  CHECK_NEAR(cJSON_GetObjectItem(o, "progress")->valuedouble, 0, 0);
  CHECK_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "state"), "job_count")->valueint, 0);
  cJSON_Delete(o);
  free(j);
  j = api_a1111_progress_json(2, 5, 20, 1.0, NULL);
  o = cJSON_Parse(j);
  CHECK_NEAR(cJSON_GetObjectItem(o, "progress")->valuedouble, 0.25, 1e-12);
  CHECK_NEAR(cJSON_GetObjectItem(o, "eta_relative")->valuedouble, 3.0, 1e-12);
  cJSON_Delete(o);
  free(j);
}

int main(void) {
  char err[SD_ERRMSG_MAX];
  if (sd_controlnet_load(SD_TEST_DATA "/models/tiny-sd/controlnet", NULL, &net, err) != SD_OK) {
    fprintf(stderr, "cannot load the test ControlNet: %s\n", err);
    return 1;
  }
  ref.name = "controlnet";
  ref.net = net;
  api_limits_init(&lim);
  lim.native_width = 64;
  lim.native_height = 64;
  lim.controlnets = &ref;
  lim.n_controlnets = 1;
  test_samplers();
  test_defaults();
  test_errors();
  test_controlnet_units();
  test_img2img_resize();
  test_openai();
  test_options_progress();
  sd_controlnet_destroy(net);
  return check_exit();
}
