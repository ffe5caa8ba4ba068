/* json.h: a small strict JSON reader for the engine's own inputs (config.json files,
 * model_index.json, safetensors headers, tokenizer vocab.json).
 *
 * The engine cannot use cJSON (dependencies point server -> api -> engine), and these inputs
 * are plain JSON, so this is a complete RFC 8259 parser into a tree, with depth and size
 * limits. Strings are UTF-8 (escapes decoded, \u0000 refused), numbers are doubles.
 */
#ifndef SD_JSON_H
#define SD_JSON_H

#include "internal.h"

typedef enum sd_json_type {
  SD_JSON_NULL,
  SD_JSON_FALSE,
  SD_JSON_TRUE,
  SD_JSON_NUMBER,
  SD_JSON_STRING,
  SD_JSON_ARRAY,
  SD_JSON_OBJECT
} sd_json_type;

typedef struct sd_json sd_json;
struct sd_json {
  sd_json_type type;
  const char *key;   /* member name when this value is inside an object, else NULL */
  size_t key_len;
  double num;        /* SD_JSON_NUMBER */
  const char *str;   /* SD_JSON_STRING: NUL-terminated, str_len bytes */
  size_t str_len;
  sd_json *child;    /* first element / member (arrays, objects) */
  sd_json *next;     /* next sibling */
  size_t count;      /* number of children */
};

/* Parse len bytes. On success *out owns the whole tree (free with sd__json_free). The text
 * need not be NUL-terminated. Nesting deeper than 64 is refused. */
sd_status sd__json_parse(const char *text, size_t len, sd_json **out, sd_error *err);
void sd__json_free(sd_json *root);

/* Member of an object by key (first match), or NULL (also when obj is not an object). */
const sd_json *sd__json_get(const sd_json *obj, const char *key);
/* Element i of an array, or NULL. */
const sd_json *sd__json_at(const sd_json *arr, size_t i);

/* Typed getters for config files. Each returns def when the key is absent or null, and
 * records SD_ERR_FORMAT (naming `what` and the key) when it is present with the wrong type
 * or, for ints, not an integer in [INT_MIN, INT_MAX]. */
int sd__json_int(const sd_json *obj, const char *key, int def, const char *what, sd_error *err);
double sd__json_num(const sd_json *obj, const char *key, double def, const char *what,
                    sd_error *err);
int sd__json_bool(const sd_json *obj, const char *key, int def, const char *what,
                  sd_error *err);
/* The string value (owned by the tree), or def. */
const char *sd__json_str(const sd_json *obj, const char *key, const char *def,
                         const char *what, sd_error *err);
/* An int array (or a single int, which fills one element); returns the count (<= cap) or -1
 * with an error; 0 when absent. */
int sd__json_int_array(const sd_json *obj, const char *key, int *vals, int cap,
                       const char *what, sd_error *err);

#endif
