/* test_cli_canny: `sdserve canny` and `sdserve generate --control-preprocess canny` through the
 * real binary (argv[1]).
 *
 * - canny: every public golden image at both threshold pairs gives exactly OpenCV's edge map
 *   (tests/data/canny, GOLDEN.md "Canny"), in all three channels of the output.
 * - generate: case c's ControlNet run given the photo (control_source.png) with
 *   --control-preprocess canny writes the same PNG bytes as the run given the ready edge map
 *   (control.png, which is cv2.Canny(source, 100, 200) stacked).
 * - bad thresholds, a missing input and a missing output argument fail with one error line.
 */
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "png_io.h"

extern char **environ;

static const char *g_bin;

/* Run argv with stdout/stderr to /dev/null; return the exit status (or -1). */
static int run(const char *const *argv) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int st = -1;
  if (posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) == 0)
    waitpid(pid, &st, 0);
  posix_spawn_file_actions_destroy(&fa);
  return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void check_map(const char *name, const char *low, const char *high, const char *out) {
  char in[1024], ref[1024];
  snprintf(in, sizeof in, "%s/canny/%s.png", SD_TEST_DATA, name);
  snprintf(ref, sizeof ref, "%s/canny/%s_canny_%s_%s.png", SD_TEST_DATA, name, low, high);
  const char *argv[] = {g_bin, "canny", "--low", low, "--high", high, in, out, NULL};
  CHECK_INT(run(argv), 0);
  api_png_image a = {0}, b = {0};
  char err[SD_ERRMSG_MAX];
  CHECK_INT(api_png_decode_file(out, NULL, &a, err), SD_OK);
  CHECK_INT(api_png_decode_file(ref, NULL, &b, err), SD_OK); /* gray decodes as R=G=B */
  if (a.rgb && b.rgb && a.width == b.width && a.height == b.height) {
    size_t n = (size_t)a.width * a.height * 3, diff = 0;
    for (size_t i = 0; i < n; i++) diff += a.rgb[i] != b.rgb[i];
    if (diff) fprintf(stderr, "%s %s/%s: %zu values differ\n", name, low, high, diff);
    CHECK_INT(diff, 0);
  } else {
    CHECK(0);
  }
  api_png_image_free(&a);
  api_png_image_free(&b);
}

static int files_equal(const char *x, const char *y) {
  FILE *a = fopen(x, "rb"), *b = fopen(y, "rb");
  int eq = a && b;
  while (eq) {
    int ca = fgetc(a), cb = fgetc(b);
    if (ca != cb) eq = 0;
    if (ca == EOF || cb == EOF) break;
  }
  if (a) fclose(a);
  if (b) fclose(b);
  return eq;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  g_bin = argv[1];
  char dir[] = "/tmp/sdserve-canny-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char out[256], out2[256];
  snprintf(out, sizeof out, "%s/edges.png", dir);
  static const char *names[] = {"blurred_shapes_64x64", "gradients_64x64", "isoluminant_64x64",
                                "noise_64x64", "shapes_96x96", "stripes_80x48"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    check_map(names[i], "100", "200", out);
    check_map(names[i], "50", "150", out);
  }

  /* generate from the photo with Canny == generate from the ready edge map */
  char model[1024], cn[1024], photo[1024], edges[1024];
  snprintf(model, sizeof model, "%s/models/tiny-sd", SD_TEST_DATA);
  snprintf(cn, sizeof cn, "%s/models/tiny-sd/controlnet", SD_TEST_DATA);
  snprintf(photo, sizeof photo, "%s/cases/c_controlnet_euler/control_source.png", SD_TEST_DATA);
  snprintf(edges, sizeof edges, "%s/cases/c_controlnet_euler/control.png", SD_TEST_DATA);
  snprintf(out2, sizeof out2, "%s/from_edges.png", dir);
  const char *a1[] = {g_bin, "generate", "--model", model, "--prompt", "a white ring",
                      "--seed", "5", "--steps", "2", "--sampler", "euler", "--controlnet", cn,
                      "--control-image", edges, "-o", out2, NULL};
  CHECK_INT(run(a1), 0);
  snprintf(out, sizeof out, "%s/from_photo.png", dir);
  const char *a2[] = {g_bin, "generate", "--model", model, "--prompt", "a white ring",
                      "--seed", "5", "--steps", "2", "--sampler", "euler", "--controlnet", cn,
                      "--control-image", photo, "--control-preprocess", "canny",
                      "--canny-low", "100", "--canny-high", "200", "-o", out, NULL};
  CHECK_INT(run(a2), 0);
  CHECK(files_equal(out, out2));

  /* errors */
  const char *e1[] = {g_bin, "canny", "--low", "-3", photo, out, NULL};
  CHECK_INT(run(e1), 2);
  const char *e2[] = {g_bin, "canny", "/nonexistent/in.png", out, NULL};
  CHECK_INT(run(e2), 1);
  const char *e3[] = {g_bin, "canny", photo, NULL};
  CHECK_INT(run(e3), 2);
  const char *e4[] = {g_bin, "generate", "--model", model, "--prompt", "x", "-o", out,
                      "--control-preprocess", "sobel", NULL};
  CHECK_INT(run(e4), 2);

  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_exit();
}
