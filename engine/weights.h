/* weights.h: where network code gets its parameters.
 *
 * A weight source (sd__wsrc) is one component of a model (text encoder, UNet, VAE,
 * ControlNet) backed by one or more safetensors files. Network code asks for tensors by their
 * diffusers/transformers name relative to the component ("down_blocks.0.resnets.0.conv1.weight")
 * and an expected shape; the source translates the name when the file uses the original
 * CompVis names, converts F16/BF16 to float32 once (F32 data is used in place when aligned),
 * and keeps the result alive until sd__wsrc_destroy.
 */
#ifndef SD_WEIGHTS_H
#define SD_WEIGHTS_H

#include "safetensors.h"

typedef struct sd__wsrc sd__wsrc;

/* Translate a component-relative diffusers name into the file's name. Returns 0 and writes
 * out (cap bytes) on success, nonzero when the name has no counterpart. */
typedef int (*sd__wname_fn)(void *user, const char *name, char *out, size_t cap);

/* Create a source over an opened file (not owned unless own_file) with a name prefix
 * ("" for diffusers component files, e.g. "model.diffusion_model." for CompVis single files)
 * and an optional translator (NULL = prefix + name). */
sd_status sd__wsrc_create(sd_safetensors *file, int own_file, const char *prefix,
                          sd__wname_fn translate, void *translate_user, sd__wsrc **out,
                          sd_error *err);
void sd__wsrc_destroy(sd__wsrc *src);

/* The component's tensor `name` as contiguous float32 with exactly ndim dimensions equal to
 * shape (an entry of -1 accepts any size and is filled in). A stored tensor whose shape
 * differs only by trailing 1-sized dims (a 1x1 conv [O,I,1,1] asked as linear [O,I]) is
 * accepted. NULL with SD_ERR_MISSING / SD_ERR_SHAPE / SD_ERR_UNSUPPORTED on failure; the
 * message names the tensor and both shapes. Thread-safe only during loading (single thread). */
const float *sd__wsrc_get(sd__wsrc *src, const char *name, int ndim, int64_t *shape,
                          sd_error *err);
/* The same with a printf-formatted name. */
const float *sd__wsrc_getf(sd__wsrc *src, sd_error *err, int ndim, int64_t *shape,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Whether the tensor exists (after translation). */
int sd__wsrc_has(sd__wsrc *src, const char *name);
/* Shape of a tensor without converting it: returns ndim, or -1 if absent. */
int sd__wsrc_shape(sd__wsrc *src, const char *name, int64_t shape[SD_ST_MAX_DIMS]);
/* The same with a printf-formatted name (config inference from shapes). */
int sd__wsrc_shapef(sd__wsrc *src, int64_t shape[SD_ST_MAX_DIMS], const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Bytes of float32 this source allocated for converted tensors (for the load log). */
size_t sd__wsrc_converted_bytes(const sd__wsrc *src);

/* Component name for messages ("unet", "vae", "text encoder"); default "weights". */
void sd__wsrc_set_label(sd__wsrc *src, const char *label);
/* Threads for converting big F16/BF16 tensors (0 = all cores, the default). */
void sd__wsrc_set_threads(sd__wsrc *src, int threads);
/* The label given with sd__wsrc_set_label. */
const char *sd__wsrc_label(const sd__wsrc *src);
/* The file behind the source. */
const sd_safetensors *sd__wsrc_file(const sd__wsrc *src);

/* Whether path names a regular file / a directory (following links), for the loaders that
 * tell a single weights file from a model folder. */
int sd__is_file(const char *path);
int sd__is_dir(const char *path);

#endif
