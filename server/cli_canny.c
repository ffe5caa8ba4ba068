/* cli_canny.c: `sdserve canny [--low L] [--high H] IN.png OUT.png`: the edge map a Canny
 * ControlNet expects, made the way the ControlNet annotators make it: OpenCV's
 * cv2.Canny(rgb, low, high) on the 3-channel image (sd_canny), written as an RGB PNG with
 * the edges in all three channels (255 = edge). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sd.h"

static const char canny_usage[] =
    "usage: sdserve canny [--low L] [--high H] IN.png OUT.png\n"
    "\n"
    "Write the Canny edge map of IN.png (OpenCV's cv2.Canny on the RGB image, aperture 3,\n"
    "L1 gradient) to OUT.png as white edges on black, ready for --control-image.\n"
    "\n"
    "  --low L       lower hysteresis threshold (default 100)\n"
    "  --high H      upper hysteresis threshold (default 200)\n"
    "  -h, --help    this help\n";

enum { O_LOW, O_HIGH, O_HELP };
static const cli_opt canny_opts[] = {
    {"low", 0, 1}, {"high", 0, 1}, {"help", 'h', 0}, {NULL, 0, 0}};

/* Parse a threshold: a finite number in 0..100000 (OpenCV takes any double; gradients of
 * 8-bit images stay far below that). */
static int parse_threshold(const char *opt, const char *v, float *out) {
  if (cli_parse_float(opt, v, out) != 0) return -1;
  if (!(*out >= 0.0f && *out <= 100000.0f)) {
    cli_error("--%s: %s is out of range (0..100000)", opt, v);
    return -1;
  }
  return 0;
}

int cli_canny(int argc, char **argv) {
  cli_parser p = {.argc = argc, .argv = argv, .i = 1, .opts = canny_opts, .cmd = "canny"};
  const char *paths[2] = {NULL, NULL}, *v;
  float low = 100.0f, high = 200.0f;
  int npaths = 0, o;
  while ((o = cli_next(&p, &v)) != CLI_END) {
    switch (o) {
    case CLI_BAD: return CLI_EXIT_USAGE;
    case O_HELP: fputs(canny_usage, stdout); return CLI_EXIT_OK;
    case O_LOW:
      if (parse_threshold("low", v, &low) != 0) return CLI_EXIT_USAGE;
      break;
    case O_HIGH:
      if (parse_threshold("high", v, &high) != 0) return CLI_EXIT_USAGE;
      break;
    case CLI_POSITIONAL:
      if (npaths == 2) {
        cli_error("canny: unexpected argument '%s' (give IN.png and OUT.png)", v);
        return CLI_EXIT_USAGE;
      }
      paths[npaths++] = v;
      break;
    }
  }
  if (npaths != 2) {
    cli_error("canny: give the input and the output PNG (sdserve canny IN.png OUT.png)");
    return CLI_EXIT_USAGE;
  }

  char err[SD_ERRMSG_MAX], *tmp = NULL;
  api_png_limits lim;
  api_png_limits_init(&lim);
  api_png_image in = {0};
  uint8_t *rgb = NULL;
  int rc = CLI_EXIT_FAIL, closed = 0;
  if (api_png_decode_file(paths[0], &lim, &in, err) != SD_OK) {
    cli_error("%s", err); /* the decoder's message names the file */
    return CLI_EXIT_FAIL;
  }
  FILE *f = cli_open_output(paths[1], &tmp);
  if (!f) goto out_free;
  size_t npix = (size_t)in.width * (size_t)in.height;
  rgb = malloc(3 * npix);
  if (!rgb) {
    cli_error("out of memory for a %dx%d edge map", in.width, in.height);
    goto out_unlink;
  }
  /* The edges go in the last third of the buffer, then spread to RGB in place. */
  uint8_t *edges = rgb + 2 * npix;
  if (sd_canny(in.rgb, in.width, in.height, low, high, edges) != SD_OK) {
    cli_error("%s: cannot compute its edges (%dx%d)", paths[0], in.width, in.height);
    goto out_unlink;
  }
  for (size_t i = 0; i < npix; i++) {
    uint8_t e = edges[i];
    rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = e;
  }
  if (cli_write_png(f, tmp, paths[1], rgb, in.width, in.height, NULL, 0, &closed) != 0) {
    if (closed) f = NULL;
    goto out_unlink;
  }
  f = NULL;
  rc = CLI_EXIT_OK;
  goto out_free;
out_unlink:
  if (f) fclose(f);
  unlink(tmp);
out_free:
  free(rgb);
  free(tmp);
  api_png_image_free(&in);
  return rc;
}
