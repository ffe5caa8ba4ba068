/* test_canny.c: sd_canny (engine/canny.c) against OpenCV 4.6's cv2.Canny on 3-channel RGB:
 * every public image of tests/data/canny at both threshold pairs, pixel for pixel (the edge
 * maps and edge counts come from canny.json), golden case c's control.png as the Canny map of
 * its control_source.png, swapped thresholds, and refused arguments.
 * Tolerance: none (GOLDEN.md, "canny/": the outputs are reproduced exactly).
 */
#include "check.h"
#include "json.h"
#include "png_io.h"

static uint8_t *load_rgb(const char *path, int *w, int *h) {
  api_png_image img;
  char msg[SD_ERRMSG_MAX];
  if (api_png_decode_file(path, NULL, &img, msg) != SD_OK) {
    fprintf(stderr, "%s: %s\n", path, msg);
    CHECK(0);
    return NULL;
  }
  uint8_t *rgb = img.rgb;
  *w = img.width;
  *h = img.height;
  img.rgb = NULL;
  api_png_image_free(&img);
  return rgb;
}

/* edges of path at (low, high) against the single-channel reference (decoded as gray RGB) */
static void check_pair(const char *image, const char *ref_name, double low, double high,
                       int edge_pixels) {
  char path[1024];
  int w = 0, h = 0, rw = 0, rh = 0;
  snprintf(path, sizeof path, "%s/canny/%s", SD_TEST_DATA, image);
  uint8_t *rgb = load_rgb(path, &w, &h);
  snprintf(path, sizeof path, "%s/canny/%s", SD_TEST_DATA, ref_name);
  uint8_t *ref = load_rgb(path, &rw, &rh);
  if (!rgb || !ref) goto out;
  CHECK_INT(rw, w);
  CHECK_INT(rh, h);
  uint8_t *e = malloc((size_t)w * h), *e2 = malloc((size_t)w * h);
  CHECK_INT(sd_canny(rgb, w, h, low, high, e), SD_OK);
  size_t off = 0, edges = 0;
  for (size_t i = 0; i < (size_t)w * h; i++) {
    off += e[i] != ref[i * 3];
    edges += e[i] == 255;
  }
  fprintf(stderr, "%-34s %3.0f/%3.0f: %zu edge pixels, %zu differ\n", image, low, high, edges, off);
  CHECK_INT(off, 0);
  CHECK_INT(edges, edge_pixels);
  /* OpenCV swaps low > high */
  CHECK_INT(sd_canny(rgb, w, h, high, low, e2), SD_OK);
  CHECK(memcmp(e, e2, (size_t)w * h) == 0);
  free(e);
  free(e2);
out:
  free(rgb);
  free(ref);
}

static void test_public_maps(void) {
  char *text = NULL;
  size_t len = 0;
  sd_error err = {0};
  sd_json *j = NULL;
  CHECK_INT(sd__read_file(SD_TEST_DATA "/canny/canny.json", 1 << 20, &text, &len, &err), SD_OK);
  CHECK_INT(sd__json_parse(text, len, &j, &err), SD_OK);
  const sd_json *cases = sd__json_get(j, "cases");
  CHECK(cases && cases->type == SD_JSON_ARRAY);
  int pairs = 0;
  for (const sd_json *c = cases ? cases->child : NULL; c; c = c->next) {
    const char *image = sd__json_str(c, "image", "", "case", &err);
    const sd_json *outs = sd__json_get(c, "outputs");
    for (const sd_json *o = outs ? outs->child : NULL; o; o = o->next) {
      check_pair(image, sd__json_str(o, "file", "", "output", &err),
                 sd__json_num(o, "low", -1, "output", &err),
                 sd__json_num(o, "high", -1, "output", &err),
                 sd__json_int(o, "edge_pixels", -1, "output", &err));
      pairs++;
    }
  }
  CHECK_INT(err.status, SD_OK);
  CHECK_INT(pairs, 12); /* 6 images x 2 threshold pairs */
  sd__json_free(j);
  free(text);
}

/* case c: control = stack([cv2.Canny(control_source RGB, 100, 200)] * 3) */
static void test_case_c(void) {
  int w, h, cw, ch;
  uint8_t *src = load_rgb(SD_TEST_DATA "/cases/c_controlnet_euler/control_source.png", &w, &h);
  uint8_t *ctl = load_rgb(SD_TEST_DATA "/cases/c_controlnet_euler/control.png", &cw, &ch);
  if (src && ctl && w == cw && h == ch) {
    uint8_t *e = malloc((size_t)w * h);
    CHECK_INT(sd_canny(src, w, h, 100, 200, e), SD_OK);
    size_t off = 0;
    for (size_t i = 0; i < (size_t)w * h; i++)
      for (int c = 0; c < 3; c++) off += e[i] != ctl[i * 3 + c];
    fprintf(stderr, "case c control.png: %zu values differ\n", off);
    CHECK_INT(off, 0);
    free(e);
  } else {
    CHECK(0);
  }
  free(src);
  free(ctl);
}

static void test_refusals(void) {
  uint8_t rgb[4 * 3 * 3] = {0}, e[12];
  CHECK_INT(sd_canny(rgb, 4, 3, 10, 20, e), SD_OK);
  CHECK_INT(sd_canny(rgb, 0, 3, 10, 20, e), SD_ERR_INVALID);
  CHECK_INT(sd_canny(rgb, 4, -1, 10, 20, e), SD_ERR_INVALID);
  CHECK_INT(sd_canny(rgb, 4, 3, NAN, 20, e), SD_ERR_INVALID);
  CHECK_INT(sd_canny(rgb, 4, 3, 10, INFINITY, e), SD_ERR_INVALID);
  CHECK_INT(sd_canny(rgb, 4, 3, -1, 20, e), SD_ERR_INVALID);
  CHECK_INT(sd_canny(NULL, 4, 3, 10, 20, e), SD_ERR_INVALID);
}

int main(void) {
  test_public_maps();
  test_case_c();
  test_refusals();
  return check_exit();
}
