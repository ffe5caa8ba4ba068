/* safetensors.h: read-only access to .safetensors files over mmap.
 *
 * The header is validated completely before any tensor is exposed: JSON well-formed, known
 * dtypes, shapes whose product times the element size equals the byte range, ranges inside the
 * data section, no overlaps, no duplicate names. Tensor data stays in the mapping; sd__st_to_f32
 * converts F32/F16/BF16 to float32.
 */
#ifndef SD_SAFETENSORS_H
#define SD_SAFETENSORS_H

#include "internal.h"

#define SD_ST_MAX_DIMS 8

typedef enum sd_dtype {
  SD_DTYPE_F32,
  SD_DTYPE_F16,
  SD_DTYPE_BF16,
  SD_DTYPE_F64,
  SD_DTYPE_I64,
  SD_DTYPE_I32,
  SD_DTYPE_I16,
  SD_DTYPE_I8,
  SD_DTYPE_U8,
  SD_DTYPE_BOOL
} sd_dtype;

typedef struct sd_st_tensor {
  const char *name;
  sd_dtype dtype;
  int ndim;
  int64_t shape[SD_ST_MAX_DIMS];
  int64_t numel;
  const void *data; /* inside the mapping; may be unaligned */
  size_t nbytes;
} sd_st_tensor;

typedef struct sd_safetensors {
  const char *path;     /* owned copy, for messages */
  void *map;            /* the whole file (NULL for in-memory) */
  size_t map_size;
  sd_st_tensor *tensors; /* sorted by name */
  size_t count;
  void *priv;           /* parser-owned storage */
} sd_safetensors;

/* Open and validate a file. On success *out owns the mapping (close with sd__st_close). A
 * file that starts like a pickle/zip (.ckpt) is refused with SD_ERR_UNSUPPORTED and a hint on
 * converting it. */
sd_status sd__st_open(const char *path, sd_safetensors **out, sd_error *err);

/* The same over bytes the caller keeps alive (fuzzing, embedded data). name is for messages. */
sd_status sd__st_open_memory(const void *data, size_t len, const char *name,
                             sd_safetensors **out, sd_error *err);

void sd__st_close(sd_safetensors *st);

/* Tensor by exact name (binary search), or NULL. */
const sd_st_tensor *sd__st_find(const sd_safetensors *st, const char *name);

size_t sd__dtype_size(sd_dtype dt);
const char *sd__dtype_name(sd_dtype dt);

/* Convert a floating tensor to float32 into dst (numel floats). SD_ERR_UNSUPPORTED for
 * non-float dtypes. */
sd_status sd__st_to_f32(const sd_st_tensor *t, float *dst, sd_error *err);
/* Convert elements [first, first+count) of a float tensor into dst[0..count) (no message;
 * SD_ERR_UNSUPPORTED for non-float dtypes). Lets callers split big tensors across threads. */
sd_status sd__st_convert_span(const sd_st_tensor *t, float *dst, size_t first, size_t count);

/* Half-precision conversions (round-to-nearest-even for the narrowing direction). */
float sd__f16_to_f32(uint16_t h);
float sd__bf16_to_f32(uint16_t h);
uint16_t sd__f32_to_f16(float f);

#endif
