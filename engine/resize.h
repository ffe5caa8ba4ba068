/* resize.h: the control-image resize of diffusers' VaeImageProcessor, i.e. Pillow's
 * Image.resize((width, height), Image.LANCZOS) on an 8-bit RGB image, reproduced exactly
 * (Pillow 9.4 ImagingResample: separable, horizontal pass then vertical, fixed-point
 * coefficients). Used by the pipeline for control images whose size differs from the output.
 */
#ifndef SD_RESIZE_H
#define SD_RESIZE_H

#include "internal.h"

/* dst[dh, dw, 3] = PIL Lanczos resize of src[sh, sw, 3] (row-major RGB). Sizes 1..65536.
 * Errors: SD_ERR_INVALID (size), SD_ERR_NOMEM. */
sd_status sd__resize_lanczos_rgb(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh,
                                 sd_error *err);

#endif
