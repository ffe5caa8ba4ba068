/* test_multipart.c: api/multipart.c: boundary extraction from Content-Type (quoted, bare,
 * with other parameters, refusals), parts with names, filenames, content types and binary
 * data containing CR/LF and partial boundaries, a preamble and epilogue, and malformed
 * bodies (no closing delimiter, no name, too many parts, truncations) that must fail cleanly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "multipart.h"

static void test_boundary(void) {
  char b[80];
  CHECK_INT(api_multipart_boundary("multipart/form-data; boundary=abc123", b, sizeof b), 0);
  CHECK_STR(b, "abc123");
  CHECK_INT(api_multipart_boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b;c\"", b,
                                   sizeof b), 0);
  CHECK_STR(b, "a b;c");
  CHECK_INT(api_multipart_boundary("application/json; boundary=x", b, sizeof b), -1);
  CHECK_INT(api_multipart_boundary("multipart/form-data", b, sizeof b), -1);
  CHECK_INT(api_multipart_boundary("multipart/form-data; boundary=", b, sizeof b), -1);
  char longb[200] = "multipart/form-data; boundary=";
  memset(longb + strlen(longb), 'x', 71);
  CHECK_INT(api_multipart_boundary(longb, b, sizeof b), -1); /* RFC 2046: at most 70 */
  CHECK_INT(api_multipart_boundary(NULL, b, sizeof b), -1);
}

static void test_parts(void) {
  static const char body[] =
      "preamble to ignore\r\n"
      "--BB\r\n"
      "Content-Disposition: form-data; name=\"prompt\"\r\n"
      "\r\n"
      "a red circle\r\n"
      "--BB\r\n"
      "content-disposition: form-data; name=\"file\"; filename=\"x\\\"y.png\"\r\n"
      "Content-Type: image/png\r\n"
      "\r\n"
      "\x89PNG\r\n--B\r\n--BBx\0bin\r\n"
      "--BB  \r\n"
      "Content-Disposition: form-data; name=empty\r\n"
      "\r\n"
      "\r\n"
      "--BB--\r\nepilogue";
  api_form f;
  api_error e;
  memset(&e, 0, sizeof e);
  CHECK_INT(api_multipart_parse((const uint8_t *)body, sizeof body - 1, "BB", 8, &f, &e), API_OK);
  CHECK_INT(f.nparts, 3);
  if (f.nparts == 3) {
    CHECK_STR(f.parts[0].name, "prompt");
    CHECK(f.parts[0].filename == NULL);
    CHECK_INT(f.parts[0].len, 12);
    CHECK(memcmp(f.parts[0].data, "a red circle", 12) == 0);
    CHECK_STR(f.parts[1].name, "file");
    CHECK_STR(f.parts[1].filename, "x\"y.png");
    CHECK_STR(f.parts[1].content_type, "image/png");
    /* "\x89PNG\r\n--B\r\n--BBx\0bin" : a delimiter needs CRLF--BB then CRLF/space/-- */
    CHECK_INT(f.parts[1].len, 20);
    CHECK_STR(f.parts[2].name, "empty");
    CHECK_INT(f.parts[2].len, 0);
    CHECK(api_form_get(&f, "file") == &f.parts[1]);
    CHECK(api_form_get(&f, "nope") == NULL);
  }
  api_form_free(&f);
  CHECK(f.parts == NULL && f.nparts == 0);
}

static void bad(const char *body, size_t len, int max_parts, api_err want) {
  api_form f;
  api_error e;
  memset(&e, 0, sizeof e);
  CHECK_INT(api_multipart_parse((const uint8_t *)body, len, "BB", max_parts, &f, &e), want);
  CHECK(e.message[0] != '\0');
  api_form_free(&f);
}

static void test_malformed(void) {
  const char *ok = "--BB\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--BB--";
  size_t n = strlen(ok);
  /* every truncation fails cleanly (except the whole body); ASan watches the reads */
  int clean = 1;
  for (size_t k = 0; k < n; k++) {
    char *cut = malloc(k ? k : 1);
    memcpy(cut, ok, k);
    api_form f;
    api_error e;
    memset(&e, 0, sizeof e);
    if (api_multipart_parse((const uint8_t *)cut, k, "BB", 8, &f, &e) == API_OK) clean = 0;
    api_form_free(&f);
    free(cut);
  }
  CHECK(clean);
  bad("no boundary here", 16, 8, API_ERR_BAD_TYPE);
  bad("--BB\r\nContent-Disposition: form-data\r\n\r\nx\r\n--BB--", 43, 8, API_ERR_BAD_TYPE);
  bad("--BB\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--BB--", 56, 8,
      API_ERR_BAD_TYPE);
  bad("--BBjunk\r\n", 10, 8, API_ERR_BAD_TYPE);
  const char *two = "--BB\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n"
                    "--BB\r\nContent-Disposition: form-data; name=b\r\n\r\n2\r\n--BB--";
  bad(two, strlen(two), 1, API_ERR_LIMIT);
  api_form f;
  api_error e;
  memset(&e, 0, sizeof e);
  CHECK_INT(api_multipart_parse((const uint8_t *)two, strlen(two), "BB", 2, &f, &e), API_OK);
  CHECK_INT(f.nparts, 2);
  api_form_free(&f);
}

int main(void) {
  test_boundary();
  test_parts();
  test_malformed();
  return check_exit();
}
