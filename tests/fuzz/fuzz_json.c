/* fuzz_json.c: fuzz target for the engine's JSON reader (engine/json.c).
 *
 * Parses the input; on success walks the whole tree, checks its invariants (child counts,
 * string lengths, keys only inside objects) and calls every typed getter on every member, so
 * ASan/UBSan see each byte the parser produced. Built by driver.c (gcc, meson test) or as a
 * libFuzzer binary by run.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static void walk(const sd_json *v, int depth) {
  if (depth > 70) abort(); /* the parser promised 64 */
  size_t n = 0;
  for (const sd_json *c = v->child; c; c = c->next) {
    if ((v->type == SD_JSON_OBJECT) != (c->key != NULL)) abort();
    if (c->key && strlen(c->key) != c->key_len) abort();
    if (c->type == SD_JSON_STRING && (strlen(c->str) != c->str_len)) abort();
    if (v->type == SD_JSON_OBJECT) {
      sd_error e = {0};
      int ints[4];
      sd__json_int(v, c->key, 0, "fuzz", &e);
      sd__json_num(v, c->key, 0, "fuzz", &e);
      sd__json_bool(v, c->key, 0, "fuzz", &e);
      sd__json_str(v, c->key, NULL, "fuzz", &e);
      sd__json_int_array(v, c->key, ints, 4, "fuzz", &e);
      if (!sd__json_get(v, c->key)) abort();
    } else if (sd__json_at(v, n) != c) {
      abort();
    }
    walk(c, depth + 1);
    n++;
  }
  if (n != v->count) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sd_json *j = NULL;
  sd_error e = {0};
  sd_status st = sd__json_parse((const char *)data, size, &j, &e);
  if (st == SD_OK) {
    if (!j) abort();
    walk(j, 0);
    sd__json_free(j);
  } else if (j || e.msg[0] == '\0') {
    abort(); /* a failure must leave no tree and say why */
  }
  return 0;
}
