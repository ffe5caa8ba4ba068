/* srv_preview.c: a cheap preview of the latents for SSE progress events.
 *
 * Not the VAE: a fixed linear map from the 4 SD1.x latent channels to RGB (the widely used
 * "approx cheap" coefficients, fitted by the community to the SD1.5 VAE), at latent size
 * (1/8 of the image), PNG-encoded and base64'd. It costs microseconds, so it can go with
 * every step. Models with another channel count get channels 0..2 mapped directly.
 */
#include <math.h>
#include <stdlib.h>

#include "base64.h"
#include "png_io.h"
#include "srv.h"

/* rows: latent channel; columns: R, G, B */
static const float latent_rgb[4][3] = {{0.298f, 0.207f, 0.208f},
                                       {0.187f, 0.286f, 0.173f},
                                       {-0.158f, 0.189f, 0.264f},
                                       {-0.184f, -0.271f, -0.473f}};

char *srv_preview_b64(const float *lat, int c, int h, int w) {
  if (!lat || c <= 0 || h <= 0 || w <= 0 || h > 1024 || w > 1024) return NULL;
  size_t plane = (size_t)h * (size_t)w;
  uint8_t *rgb = malloc(plane * 3);
  if (!rgb) return NULL;
  for (size_t p = 0; p < plane; p++) {
    for (int k = 0; k < 3; k++) {
      float v = 0.0f;
      if (c == 4)
        for (int ch = 0; ch < 4; ch++) v += latent_rgb[ch][k] * lat[(size_t)ch * plane + p];
      else
        v = 0.5f * lat[(size_t)(k % c) * plane + p];
      float u = (v + 1.0f) * 127.5f;
      if (!(u > 0.0f)) u = 0.0f; /* also catches NaN */
      if (u > 255.0f) u = 255.0f;
      rgb[3 * p + (size_t)k] = (uint8_t)lrintf(u);
    }
  }
  uint8_t *png = NULL;
  size_t len = 0;
  char *b64 = NULL;
  if (api_png_encode_mem(rgb, w, h, NULL, 0, &png, &len, NULL) == SD_OK)
    b64 = api_base64_encode(png, len, NULL);
  free(png);
  free(rgb);
  return b64;
}
