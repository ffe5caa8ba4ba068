/* test_resize.c: the control-image resize (engine/resize.c) against Pillow 9.4's
 * Image.resize((w, h), LANCZOS), byte for byte, on the fixtures tools/gen_resize_fixtures.py
 * wrote into tests/data/resize (upscaling, downscaling, one axis only, mixed, tiny outputs,
 * hard saturated edges that overshoot), plus same-size copies and refused sizes.
 * Tolerance: none (diffusers feeds exactly these bytes to the ControlNet).
 */
#include "check.h"
#include "png_io.h"
#include "resize.h"

static uint8_t *load_rgb(const char *name, int *w, int *h) {
  char path[1024], msg[SD_ERRMSG_MAX];
  api_png_image img;
  snprintf(path, sizeof path, "%s/resize/%s", SD_TEST_DATA, name);
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

static void test_fixtures(void) {
  FILE *f = fopen(SD_TEST_DATA "/resize/cases.txt", "r");
  CHECK(f != NULL);
  if (!f) return;
  char line[512], src_name[200], out_name[200];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    int w, h, sw, sh, rw, rh;
    if (line[0] == '#' || sscanf(line, "%199s %199s %d %d", src_name, out_name, &w, &h) != 4)
      continue;
    uint8_t *src = load_rgb(src_name, &sw, &sh), *ref = load_rgb(out_name, &rw, &rh);
    if (src && ref) {
      CHECK_INT(rw, w);
      CHECK_INT(rh, h);
      uint8_t *out = malloc((size_t)w * h * 3);
      sd_error err = {0};
      CHECK_INT(sd__resize_lanczos_rgb(src, sw, sh, out, w, h, &err), SD_OK);
      size_t off = 0;
      int maxd = 0;
      for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        int d = abs(out[i] - ref[i]);
        off += d != 0;
        if (d > maxd) maxd = d;
      }
      fprintf(stderr, "%-16s %3dx%-3d -> %3dx%-3d: %zu values differ (max %d)\n", src_name, sw,
              sh, w, h, off, maxd);
      CHECK_INT(off, 0);
      free(out);
      n++;
    }
    free(src);
    free(ref);
  }
  fclose(f);
  CHECK_LE(10, n); /* every fixture line was read */
}

static void test_edges(void) {
  uint8_t src[5 * 3 * 3], dst[5 * 3 * 3];
  for (int i = 0; i < 45; i++) src[i] = (uint8_t)(i * 37);
  sd_error err = {0};
  CHECK_INT(sd__resize_lanczos_rgb(src, 5, 3, dst, 5, 3, &err), SD_OK);
  CHECK(memcmp(src, dst, sizeof src) == 0); /* same size: a copy, as Image.resize */
  CHECK_INT(sd__resize_lanczos_rgb(src, 0, 3, dst, 5, 3, &err), SD_ERR_INVALID);
  sd_error err2 = {0};
  CHECK_INT(sd__resize_lanczos_rgb(src, 5, 3, dst, 5, 0, &err2), SD_ERR_INVALID);
  /* a constant image stays constant (weights sum to one in fixed point) */
  uint8_t flat[7 * 4 * 3], big[19 * 11 * 3];
  memset(flat, 200, sizeof flat);
  sd_error err3 = {0};
  CHECK_INT(sd__resize_lanczos_rgb(flat, 7, 4, big, 19, 11, &err3), SD_OK);
  int same = 1;
  for (size_t i = 0; i < sizeof big; i++) same &= big[i] == 200;
  CHECK(same);
}

int main(void) {
  test_fixtures();
  test_edges();
  return check_exit();
}
