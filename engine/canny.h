/* canny.h: OpenCV 4.6's cv2.Canny(image, low, high) (apertureSize 3, L2gradient false) on a
 * 3-channel 8-bit image, as the ControlNet canny annotators call it (the public entry point is
 * sd_canny in sd.h). OpenCV does not convert to gray: a 3x3 Sobel runs on each channel and at
 * each pixel the channel with the largest |dx| + |dy| (the first on ties) supplies dx, dy and
 * the magnitude. Then integer non-maximum suppression (tan 22.5 degrees = 13573 / 2^15) and
 * 8-connected hysteresis. tests/data/GOLDEN.md ("canny/") describes every rule reproduced here.
 */
#ifndef SD_CANNY_H
#define SD_CANNY_H

#include "internal.h"

/* The same as sd_canny with an error record (err may be NULL). */
sd_status sd__canny(const uint8_t *rgb, int w, int h, double low, double high, uint8_t *edges,
                    sd_error *err);

#endif
