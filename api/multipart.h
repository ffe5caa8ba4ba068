/* multipart.h: a bounded parser for multipart/form-data bodies (RFC 7578), used by
 * POST /generate and /jobs to accept image files next to text fields.
 *
 * The whole body is in memory (the server caps its size before reading it); parts point into
 * it, so the body must outlive the form. Only what form-data needs is understood: the
 * boundary parameter, Content-Disposition name/filename, Content-Type; everything else in a
 * part's headers is ignored. Malformed input fails with a status, never reads out of bounds.
 */
#ifndef API_MULTIPART_H
#define API_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct api_part {
  char *name;            /* form field name (malloc'ed, NUL-terminated) */
  char *filename;        /* filename parameter, or NULL for a plain field */
  char *content_type;    /* the part's Content-Type, or NULL */
  const uint8_t *data;   /* the part's bytes, pointing into the body */
  size_t len;
} api_part;

typedef struct api_form {
  api_part *parts;
  int nparts;
} api_form;

/* Copy the boundary parameter of a "multipart/form-data; boundary=..." header value into
 * buf (cap bytes; RFC 2046 allows at most 70 characters). 0 on success, -1 when the header
 * is not multipart/form-data or has no valid boundary. */
int api_multipart_boundary(const char *content_type, char *buf, size_t cap);

/* Parse len bytes of body with the given boundary into *out (free with api_form_free, also
 * after a failure). At most max_parts parts. Errors (400 invalid_json kind BAD_JSON is not
 * used): API_ERR_BAD_TYPE for a malformed body, API_ERR_LIMIT for too many parts. */
api_err api_multipart_parse(const uint8_t *body, size_t len, const char *boundary,
                            int max_parts, api_form *out, api_error *e);

/* The first part named name, or NULL. */
const api_part *api_form_get(const api_form *f, const char *name);

/* Free the form's parts (not the body) and zero it. Accepts a zeroed form. */
void api_form_free(api_form *f);

#ifdef __cplusplus
}
#endif
#endif
