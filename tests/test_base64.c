/* test_base64.c: api/base64.c against RFC 4648's test vectors (section 10), round trips of
 * every length 0..300 with all byte values, and the strict decoder's refusals: bad
 * characters, misplaced or excess padding, a dangling character, nonzero trailing bits, the
 * size limit. Whitespace and the URL-safe alphabet are accepted. Exact match throughout.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "check.h"

static void check_vector(const char *plain, const char *enc) {
  size_t n = strlen(plain), len = 0;
  char *e = api_base64_encode((const uint8_t *)plain, n, &len);
  CHECK_STR(e, enc);
  CHECK_INT(len, strlen(enc));
  CHECK_INT(api_base64_encoded_len(n), strlen(enc));
  free(e);
  uint8_t *d = NULL;
  size_t dn = 0;
  CHECK_INT(api_base64_decode(enc, strlen(enc), 1 << 20, &d, &dn, NULL), SD_OK);
  CHECK_INT(dn, n);
  CHECK(d && memcmp(d, plain, n) == 0);
  free(d);
}

/* Decoding s must fail with status st, leaving *out NULL and an error message. */
static void check_bad(const char *s, size_t max, sd_status st) {
  uint8_t *d = (uint8_t *)"sentinel";
  size_t dn = 7;
  char err[SD_ERRMSG_MAX] = "";
  CHECK_INT(api_base64_decode(s, strlen(s), max, &d, &dn, err), st);
  CHECK(d == NULL);
  CHECK_INT(dn, 0);
  CHECK(err[0] != '\0');
}

static void check_good(const char *s, const char *want) {
  uint8_t *d = NULL;
  size_t dn = 0;
  CHECK_INT(api_base64_decode(s, strlen(s), 100, &d, &dn, NULL), SD_OK);
  CHECK_INT(dn, strlen(want));
  CHECK(d && memcmp(d, want, dn) == 0);
  free(d);
}

int main(void) {
  /* RFC 4648 section 10 */
  check_vector("", "");
  check_vector("f", "Zg==");
  check_vector("fo", "Zm8=");
  check_vector("foo", "Zm9v");
  check_vector("foob", "Zm9vYg==");
  check_vector("fooba", "Zm9vYmE=");
  check_vector("foobar", "Zm9vYmFy");

  /* round trips of every length with every byte value */
  uint8_t buf[300];
  for (int i = 0; i < 300; i++) buf[i] = (uint8_t)(i * 7 + 3);
  int bad_trips = 0;
  for (size_t n = 0; n <= sizeof buf; n++) {
    size_t len;
    char *e = api_base64_encode(buf, n, &len);
    uint8_t *d = NULL;
    size_t dn = 0;
    if (!e || api_base64_decode(e, len, n, &d, &dn, NULL) != SD_OK || dn != n ||
        memcmp(d, buf, n) != 0)
      bad_trips++;
    free(e);
    free(d);
  }
  CHECK_INT(bad_trips, 0);

  /* accepted variants: no padding, whitespace and line breaks, URL-safe alphabet */
  check_good("Zm9vYg", "foob");
  check_good("Zm9v\r\nYmFy\n", "foobar");
  check_good(" Zm 9v Y g = = ", "foob");
  check_good("-_-_", "\xfb\xff\xbf");
  check_good("+/+/", "\xfb\xff\xbf");

  /* refusals */
  check_bad("Zm9v!", 100, SD_ERR_FORMAT);       /* bad character */
  check_bad("Zm9vY", 100, SD_ERR_FORMAT);       /* one dangling character */
  check_bad("Zg=", 100, SD_ERR_FORMAT);         /* incomplete padding */
  check_bad("Zg===", 100, SD_ERR_FORMAT);       /* too much padding */
  check_bad("Zg==Zg==", 100, SD_ERR_FORMAT);    /* data after padding */
  check_bad("=Zg=", 100, SD_ERR_FORMAT);        /* padding first */
  check_bad("Zh==", 100, SD_ERR_FORMAT);        /* nonzero trailing bits */
  check_bad("Zm9=", 100, SD_ERR_FORMAT);        /* nonzero trailing bits, 2-byte tail */
  check_bad("Zm9vYmFy", 5, SD_ERR_LIMIT);       /* 6 bytes over a 5-byte cap */
  { /* an embedded NUL is a bad character, not the end */
    uint8_t *d = NULL;
    size_t dn = 0;
    CHECK_INT(api_base64_decode("Zm9v\0Ym9v", 9, 100, &d, &dn, NULL), SD_ERR_FORMAT);
    CHECK(d == NULL);
  }
  return check_exit();
}
