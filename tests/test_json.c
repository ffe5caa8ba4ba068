/* test_json.c: the engine's JSON reader (engine/json.c) against RFC 8259: valid documents
 * parse to the right tree, every kind of malformed input is refused with SD_ERR_FORMAT (or
 * SD_ERR_LIMIT for nesting), escapes and surrogate pairs decode to the right UTF-8, and the
 * typed getters apply their defaults and type checks. */
#include <limits.h>

#include "check.h"
#include "json.h"

static sd_status parse_status(const char *text) {
  sd_json *j = NULL;
  sd_error e = {0};
  sd_status st = sd__json_parse(text, strlen(text), &j, &e);
  if (st == SD_OK) CHECK(j != NULL);
  else CHECK(j == NULL && e.msg[0] != '\0');
  sd__json_free(j);
  return st;
}

static void test_valid(void) {
  static const char *ok[] = {
      "0", "-0", "1.5e3", "-12.25E-2", "1E+2", "true", "false", "null", "\"\"", "[]", "{}",
      " \t\r\n[ 1 , 2 ] \n", "{\"a\":{\"b\":[null,{}]}}", "\"\\u00e9\\ud83d\\ude00\"",
      "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "\xEF\xBB\xBF{}", "{\"a\":1,\"a\":2}",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    sd_status st = parse_status(ok[i]);
    if (st != SD_OK) fprintf(stderr, "  refused valid document #%zu: %s\n", i, ok[i]);
    CHECK_INT(st, SD_OK);
  }
}

static void test_invalid(void) {
  static const char *bad[] = {
      "", " ", "[", "]", "{", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{1:2}",
      "01", "1.", ".5", "+1", "1e", "1e+", "-", "--1", "0x10", "NaN", "Infinity", "1e400",
      "-1e400", "tru", "nul", "True", "[1 2]", "\"abc", "\"a\\x\"", "\"\\u12\"", "\"\\uZZZZ\"",
      "\"\\u0000\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\x01\"", "\"\t\"",
      "\"\xff\"", "\"\xc0\xaf\"", "\"\xe0\x80\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
      "\"\xc3\"", "[1]x", "{} {}", "'a'",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sd_status st = parse_status(bad[i]);
    if (st == SD_OK) fprintf(stderr, "  accepted invalid document #%zu\n", i);
    CHECK_INT(st, SD_ERR_FORMAT);
  }
  /* An embedded NUL (length given explicitly) is not whitespace. */
  sd_json *j = NULL;
  sd_error e = {0};
  CHECK_INT(sd__json_parse("[1]\0", 4, &j, &e), SD_ERR_FORMAT);
  /* The text need not be NUL-terminated: only len bytes are read. */
  e = (sd_error){0};
  CHECK_INT(sd__json_parse("123456", 3, &j, &e), SD_OK);
  CHECK(j && j->type == SD_JSON_NUMBER && j->num == 123.0);
  sd__json_free(j);
}

static void test_depth(void) {
  char buf[300];
  for (int depth = 63; depth <= 66; depth++) {
    int n = 0;
    for (int i = 0; i < depth; i++) buf[n++] = '[';
    for (int i = 0; i < depth; i++) buf[n++] = ']';
    buf[n] = '\0';
    sd_status st = parse_status(buf);
    CHECK_INT(st, depth <= 64 ? SD_OK : SD_ERR_LIMIT);
  }
}

static void test_tree_and_strings(void) {
  const char *doc = "{\"name\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"emoji\":\"\\uD83D\\uDE00\","
                    " \"e\":\"\\u00e9\", \"raw\":\"\xe2\x82\xac\", \"list\":[1, 2.5, -3e2, true, "
                    "false, null], \"nested\":{\"k\":{}}}";
  sd_json *j = NULL;
  sd_error e = {0};
  CHECK_INT(sd__json_parse(doc, strlen(doc), &j, &e), SD_OK);
  if (!j) return;
  CHECK_INT(j->type, SD_JSON_OBJECT);
  CHECK_INT(j->count, 6);
  const sd_json *name = sd__json_get(j, "name");
  CHECK(name && name->type == SD_JSON_STRING);
  if (name) {
    CHECK_INT(name->str_len, 12);
    CHECK(memcmp(name->str, "a\"b\\c/d\b\f\n\r\t", 13) == 0);
  }
  CHECK_STR(sd__json_get(j, "emoji")->str, "\xf0\x9f\x98\x80");
  CHECK_STR(sd__json_get(j, "e")->str, "\xc3\xa9");
  CHECK_STR(sd__json_get(j, "raw")->str, "\xe2\x82\xac");
  const sd_json *list = sd__json_get(j, "list");
  CHECK(list && list->type == SD_JSON_ARRAY && list->count == 6);
  CHECK_NEAR(sd__json_at(list, 1)->num, 2.5, 0);
  CHECK_NEAR(sd__json_at(list, 2)->num, -300, 0);
  CHECK_INT(sd__json_at(list, 3)->type, SD_JSON_TRUE);
  CHECK_INT(sd__json_at(list, 5)->type, SD_JSON_NULL);
  CHECK(sd__json_at(list, 6) == NULL);
  CHECK(sd__json_at(j, 0) == NULL);     /* not an array */
  CHECK(sd__json_get(list, "x") == NULL); /* not an object */
  CHECK(sd__json_get(j, "missing") == NULL);
  CHECK_STR(sd__json_get(j, "nested")->child->key, "k");
  sd__json_free(j);
  /* Duplicate keys: the first wins. */
  CHECK_INT(sd__json_parse("{\"a\":1,\"a\":2}", 13, &j, &e), SD_OK);
  CHECK_NEAR(sd__json_get(j, "a")->num, 1, 0);
  sd__json_free(j);
  /* Numbers: full double precision via the decimal text. */
  const char *nums = "[0.1, 1e-300, 123456789012345678, -0.0]";
  CHECK_INT(sd__json_parse(nums, strlen(nums), &j, &e), SD_OK);
  if (!j) return;
  CHECK(sd__json_at(j, 0)->num == 0.1);
  CHECK(sd__json_at(j, 1)->num == 1e-300);
  CHECK(sd__json_at(j, 2)->num == 123456789012345678.0);
  CHECK(sd__json_at(j, 3)->num == 0.0);
  sd__json_free(j);
}

static void test_getters(void) {
  const char *doc = "{\"i\":7, \"neg\":-2147483648, \"big\":2147483648, \"frac\":1.5, "
                    "\"s\":\"txt\", \"b\":true, \"n\":null, \"arr\":[32,64,128], "
                    "\"one\":8, \"mixed\":[1,\"x\"], \"f\":1e-5}";
  sd_json *j = NULL;
  sd_error e = {0};
  CHECK_INT(sd__json_parse(doc, strlen(doc), &j, &e), SD_OK);
  if (!j) return;
  CHECK_INT(sd__json_int(j, "i", 0, "cfg", &e), 7);
  CHECK_INT(sd__json_int(j, "neg", 0, "cfg", &e), INT_MIN);
  CHECK_INT(sd__json_int(j, "absent", 42, "cfg", &e), 42);
  CHECK_INT(sd__json_int(j, "n", 43, "cfg", &e), 43); /* null = default */
  CHECK_NEAR(sd__json_num(j, "f", 0, "cfg", &e), 1e-5, 0);
  CHECK_NEAR(sd__json_num(j, "i", 0, "cfg", &e), 7, 0);
  CHECK_INT(sd__json_bool(j, "b", 0, "cfg", &e), 1);
  CHECK_INT(sd__json_bool(j, "absent", 1, "cfg", &e), 1);
  CHECK_STR(sd__json_str(j, "s", NULL, "cfg", &e), "txt");
  CHECK_STR(sd__json_str(j, "absent", "dflt", "cfg", &e), "dflt");
  int v[4] = {0};
  CHECK_INT(sd__json_int_array(j, "arr", v, 4, "cfg", &e), 3);
  CHECK_INT(v[2], 128);
  CHECK_INT(sd__json_int_array(j, "one", v, 4, "cfg", &e), 1);
  CHECK_INT(v[0], 8);
  CHECK_INT(sd__json_int_array(j, "absent", v, 4, "cfg", &e), 0);
  CHECK_INT(e.status, SD_OK);

  /* Each type error records SD_ERR_FORMAT naming `what` and the key, and returns def. */
  static const char *bad_int[] = {"big", "frac", "s", "b"};
  for (size_t i = 0; i < 4; i++) {
    sd_error e2 = {0};
    CHECK_INT(sd__json_int(j, bad_int[i], -1, "unet config", &e2), -1);
    CHECK_INT(e2.status, SD_ERR_FORMAT);
    CHECK(strstr(e2.msg, "unet config") && strstr(e2.msg, bad_int[i]));
  }
  sd_error e3 = {0};
  CHECK_INT(sd__json_bool(j, "i", 0, "cfg", &e3), 0);
  CHECK_INT(e3.status, SD_ERR_FORMAT);
  e3 = (sd_error){0};
  CHECK(sd__json_str(j, "i", NULL, "cfg", &e3) == NULL);
  CHECK_INT(e3.status, SD_ERR_FORMAT);
  e3 = (sd_error){0};
  CHECK_NEAR(sd__json_num(j, "s", 9, "cfg", &e3), 9, 0);
  CHECK_INT(e3.status, SD_ERR_FORMAT);
  e3 = (sd_error){0};
  CHECK_INT(sd__json_int_array(j, "arr", v, 2, "cfg", &e3), -1); /* too many */
  CHECK_INT(e3.status, SD_ERR_FORMAT);
  e3 = (sd_error){0};
  CHECK_INT(sd__json_int_array(j, "mixed", v, 4, "cfg", &e3), -1);
  CHECK_INT(e3.status, SD_ERR_FORMAT);
  sd__json_free(j);
}

/* The real config files of the test model parse, and their values come through. */
static void test_real_file(void) {
  char *text;
  size_t len;
  sd_error e = {0};
  const char *path = SD_TEST_DATA "/models/tiny-sd/unet/config.json";
  CHECK_INT(sd__read_file(path, 1 << 20, &text, &len, &e), SD_OK);
  if (!text) return;
  sd_json *j = NULL;
  CHECK_INT(sd__json_parse(text, len, &j, &e), SD_OK);
  int ch[8];
  CHECK_INT(sd__json_int_array(j, "block_out_channels", ch, 8, "unet", &e), 2);
  CHECK_INT(ch[0], 32);
  CHECK_INT(ch[1], 64);
  CHECK_STR(sd__json_str(j, "_class_name", NULL, "unet", &e), "UNet2DConditionModel");
  sd__json_free(j);
  free(text);
}

int main(void) {
  test_valid();
  test_invalid();
  test_depth();
  test_tree_and_strings();
  test_getters();
  test_real_file();
  sd__json_free(NULL);
  return check_exit();
}
