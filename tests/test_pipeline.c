/* test_pipeline: every public golden case end to end through sd__generate (the code behind
 * sd_generate), from the case's prompt, seed, sampler and size to the final latents, the VAE
 * output and the 8-bit image.
 *
 * Tolerances (tests/data/GOLDEN.md, "Tolerances"): final image clamp(image/2+0.5) mean-abs-err
 * < 2e-3 and PSNR > 45 dB. The 8-bit image must equal the golden formula applied to the golden
 * float image except for pixels within float error of a rounding boundary: at most 1% of the
 * values, each by one level. The final latents have no stated tolerance; we require
 * max-abs-err <= 1e-3 x std(reference), the UNet's own tolerance, and print the value.
 * The ControlNet case (c) runs with tests/data/models/tiny-sd/controlnet at the case's scale;
 * its control image is control.png's pixels, recovered exactly from the golden controlnet_cond
 * (uint8 / 255; test_controlnet checks that tensor against control.png bit for bit).
 */
#include <dirent.h>

#include "check.h"
#include "controlnet.h"
#include "json.h"
#include "model.h"
#include "safetensors.h"

static float *golden(const sd_safetensors *st, const char *name, size_t *n) {
  const sd_st_tensor *t = sd__st_find(st, name);
  if (!t) return NULL;
  float *v = malloc((size_t)t->numel * sizeof(float));
  sd_error err = {0};
  if (!v || sd__st_to_f32(t, v, &err) != SD_OK) {
    free(v);
    return NULL;
  }
  *n = (size_t)t->numel;
  return v;
}

static void run_case(const char *dir) {
  char path[2048];
  snprintf(path, sizeof path, "%s/case.json", dir);
  char *text = NULL;
  size_t len = 0;
  sd_error err = {0};
  sd_json *cj = NULL;
  if (sd__read_file(path, 1 << 24, &text, &len, &err) != SD_OK ||
      sd__json_parse(text, len, &cj, &err) != SD_OK) {
    fprintf(stderr, "%s: %s\n", path, err.msg);
    CHECK(0);
    free(text);
    return;
  }
  const sd_json *in = sd__json_get(cj, "inputs");
  const char *model = sd__json_str(cj, "model", "", "case", &err);
  const char *name = sd__json_str(cj, "name", "", "case", &err);

  sd_request rq;
  sd_request_init(&rq);
  rq.prompt = sd__json_str(in, "prompt", "", "inputs", &err);
  rq.negative_prompt = sd__json_str(in, "negative_prompt", "", "inputs", &err);
  rq.seed = (uint64_t)sd__json_num(in, "seed", 0, "inputs", &err);
  rq.steps = sd__json_int(in, "num_inference_steps", 0, "inputs", &err);
  rq.cfg_scale = (float)sd__json_num(in, "guidance_scale", 0, "inputs", &err);
  rq.sampler = sd__json_str(in, "scheduler", "", "inputs", &err);
  rq.width = sd__json_int(in, "width", 0, "inputs", &err);
  rq.height = sd__json_int(in, "height", 0, "inputs", &err);
  rq.strength = (float)sd__json_num(in, "strength", 0.0, "inputs", &err);
  rq.threads = 2;
  CHECK_INT(err.status, SD_OK);

  snprintf(path, sizeof path, "%s/%s", SD_TEST_DATA, model);
  sd_model *m = NULL;
  char msg[SD_ERRMSG_MAX];
  sd_status st = sd_model_load(path, NULL, &m, msg);
  if (st != SD_OK) fprintf(stderr, "load %s: %s\n", path, msg);
  CHECK_INT(st, SD_OK);
  snprintf(path, sizeof path, "%s/golden.safetensors", dir);
  sd_safetensors *gs = NULL;
  CHECK_INT(sd__st_open(path, &gs, &err), SD_OK);
  if (!m || !gs) goto out_model;

  size_t nlat = 0, nimg = 0, ninit = 0;
  float *ref_lat = golden(gs, "final_latents", &nlat);
  float *ref_img = golden(gs, "image", &nimg);
  float *init = golden(gs, "init_image", &ninit);
  uint8_t *init_rgb = NULL;
  CHECK(ref_lat && ref_img);
  if (init) {
    /* init_image = 2 * (uint8 / 255) - 1, planes: recover the bytes exactly. */
    size_t npix = ninit / 3;
    init_rgb = malloc(ninit);
    for (size_t p = 0; p < npix; p++)
      for (int c = 0; c < 3; c++)
        init_rgb[p * 3 + c] = (uint8_t)lrintf((init[c * npix + p] + 1.0f) * 0.5f * 255.0f);
    rq.init_rgb = init_rgb;
  }
  /* ControlNet: the case's net, scale and control image (row 0 of controlnet_cond) */
  size_t ncond = 0;
  float *cond = golden(gs, "controlnet_cond", &ncond);
  uint8_t *control_rgb = NULL;
  sd_controlnet *cn = NULL;
  sd_control_unit unit;
  if (cond) {
    snprintf(path, sizeof path, "%s/%s/controlnet", SD_TEST_DATA, model);
    st = sd_controlnet_load(path, NULL, &cn, msg);
    if (st != SD_OK) fprintf(stderr, "controlnet %s: %s\n", path, msg);
    CHECK_INT(st, SD_OK);
    size_t npix = (size_t)rq.width * rq.height;
    control_rgb = malloc(3 * npix);
    for (size_t p = 0; p < npix; p++)
      for (int c = 0; c < 3; c++)
        control_rgb[p * 3 + c] = (uint8_t)lrintf(cond[c * npix + p] * 255.0f);
    sd_control_unit_init(&unit);
    unit.net = cn;
    unit.rgb = control_rgb;
    unit.width = rq.width;
    unit.height = rq.height;
    unit.scale = (float)sd__json_num(in, "controlnet_conditioning_scale", 1.0, "inputs", &err);
    unit.start = (float)sd__json_num(in, "control_guidance_start", 0.0, "inputs", &err);
    unit.end = (float)sd__json_num(in, "control_guidance_end", 1.0, "inputs", &err);
    rq.control = &unit;
    rq.ncontrol = 1;
  }
  float *lat = calloc(nlat ? nlat : 1, sizeof(float));
  float *img = calloc(nimg ? nimg : 1, sizeof(float));
  sd__trace tr = {lat, img};
  sd_image out;
  sd_error gerr = {0};
  st = sd__generate(m, &rq, &out, &tr, &gerr);
  if (st != SD_OK) fprintf(stderr, "%s: generate: %s\n", name, gerr.msg);
  CHECK_INT(st, SD_OK);
  if (st == SD_OK && ref_lat && ref_img) {
    double lat_err = check_max_abs(lat, ref_lat, nlat), lat_std = check_std(ref_lat, nlat);
    double mae = 0, mse = 0;
    for (size_t i = 0; i < nimg; i++) {
      double a = fmin(fmax(img[i] / 2.0 + 0.5, 0), 1), b = fmin(fmax(ref_img[i] / 2.0 + 0.5, 0), 1);
      mae += fabs(a - b);
      mse += (a - b) * (a - b);
    }
    mae /= (double)nimg;
    mse /= (double)nimg;
    double psnr = mse > 0 ? 10 * log10(1.0 / mse) : 999;
    /* 8-bit image against the golden formula on the golden float image */
    size_t npix = nimg / 3, off = 0;
    int maxd = 0;
    for (size_t p = 0; p < npix; p++)
      for (int c = 0; c < 3; c++) {
        float v = ref_img[c * npix + p] / 2.0f + 0.5f;
        v = v < 0 ? 0 : (v > 1 ? 1 : v);
        int want = (int)rintf(v * 255.0f), got = out.rgb[p * 3 + c];
        int d = abs(want - got);
        if (d) off++;
        if (d > maxd) maxd = d;
      }
    fprintf(stderr,
            "%-32s latents max-abs-err %.3g (%.3g x std)  image mae %.3g psnr %.1f dB  "
            "8-bit: %zu of %zu values off, max %d\n",
            name, lat_err, lat_err / lat_std, mae, psnr, off, nimg, maxd);
    CHECK_INT(out.width, rq.width);
    CHECK_INT(out.height, rq.height);
    CHECK_LE(lat_err, 1e-3 * lat_std);
    CHECK_LE(mae, 2e-3);
    CHECK_LE(45.0, psnr);
    CHECK_LE(maxd, 1);
    CHECK_LE((double)off, 0.01 * (double)nimg);
  }
  sd_image_free(&out);
  free(lat);
  free(img);
  free(ref_lat);
  free(ref_img);
  free(init);
  free(init_rgb);
  free(cond);
  free(control_rgb);
  sd_controlnet_destroy(cn);
out_model:
  sd__st_close(gs);
  sd_model_destroy(m);
  sd__json_free(cj);
  free(text);
}

int main(int argc, char **argv) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/cases", SD_TEST_DATA);
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  if (!d) return check_exit();
  char *names[64];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 64)
    if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
  closedir(d);
  /* a fixed order, and a single case when one is named on the command line */
  for (int i = 0; i < n; i++)
    for (int k = i + 1; k < n; k++)
      if (strcmp(names[k], names[i]) < 0) {
        char *t = names[i];
        names[i] = names[k];
        names[k] = t;
      }
  for (int i = 0; i < n; i++) {
    if (argc < 2 || strstr(names[i], argv[1])) {
      char path[1200];
      snprintf(path, sizeof path, "%s/%s", dir, names[i]);
      run_case(path);
    }
    free(names[i]);
  }
  return check_exit();
}
