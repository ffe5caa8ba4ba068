/* fuzz_png.c: libFuzzer-style target for the bounded PNG decoder (api/png.c).
 *
 * Any input must be decoded or refused with a status and a message: no crash, no leak (run
 * under ASan), no allocation above the decoder's cap (api_png_limits.max_alloc; limits here
 * are small so a hostile header cannot make the run slow). A decoded image must survive an
 * encode/decode round trip bit for bit, text chunks included.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "png_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  api_png_limits lim;
  api_png_limits_init(&lim);
  lim.max_width = 512;
  lim.max_height = 512;
  lim.max_alloc = (size_t)1 << 20;
  lim.max_text = (size_t)64 << 10;
  api_png_image img;
  char err[SD_ERRMSG_MAX] = "";
  sd_status st = api_png_decode(data, size, &lim, &img, err);
  if (st != SD_OK) {
    if (err[0] == '\0' || img.rgb != NULL) abort(); /* a refusal says why, owns nothing */
    return 0;
  }
  if (img.width < 1 || img.height < 1 || (uint32_t)img.width > lim.max_width ||
      (uint32_t)img.height > lim.max_height)
    abort();
  /* round trip: keys that the encoder accepts are re-encoded; pixels must be identical */
  uint8_t *png = NULL;
  size_t len = 0;
  st = api_png_encode_mem(img.rgb, img.width, img.height, img.text, img.ntext, &png, &len, err);
  if (st == SD_OK) {
    api_png_image back;
    lim.max_text = (size_t)1 << 20;
    if (api_png_decode(png, len, &lim, &back, err) != SD_OK) abort();
    if (back.width != img.width || back.height != img.height ||
        memcmp(back.rgb, img.rgb, (size_t)img.width * (size_t)img.height * 3) != 0)
      abort();
    if (back.ntext != img.ntext) abort();
    for (int i = 0; i < img.ntext; i++)
      if (strcmp(back.text[i].key, img.text[i].key) != 0 ||
          strcmp(back.text[i].value, img.text[i].value) != 0)
        abort();
    api_png_image_free(&back);
  } else if (st != SD_ERR_INVALID) { /* only a key libpng read but we refuse to write */
    abort();
  }
  free(png);
  api_png_image_free(&img);
  return 0;
}
