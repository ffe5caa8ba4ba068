/* check.h: the assertions every test binary uses. A failed check prints the expression, both
 * values and the location, counts the failure, and the test's main returns check_exit(), so a
 * failing test always exits non-zero. Data paths come from the build (SD_TEST_DATA, the
 * repository's tests/data; SD_SHARED_GOLDEN, ../shared/golden beside the checkout). */
#ifndef SD_CHECK_H
#define SD_CHECK_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures_ = 0;
static int check_count_ = 0;

#define CHECK(cond)                                                                       \
  do {                                                                                    \
    check_count_++;                                                                       \
    if (!(cond)) {                                                                        \
      check_failures_++;                                                                  \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);            \
    }                                                                                     \
  } while (0)

#define CHECK_INT(a, b)                                                                   \
  do {                                                                                    \
    long long va_ = (long long)(a), vb_ = (long long)(b);                                 \
    check_count_++;                                                                       \
    if (va_ != vb_) {                                                                     \
      check_failures_++;                                                                  \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__, #a,  \
              #b, va_, vb_);                                                              \
    }                                                                                     \
  } while (0)

#define CHECK_STR(a, b)                                                                   \
  do {                                                                                    \
    const char *sa_ = (a), *sb_ = (b);                                                    \
    check_count_++;                                                                       \
    if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                          \
      check_failures_++;                                                                  \
      fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" vs \"%s\"\n", __FILE__, __LINE__,  \
              #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                        \
    }                                                                                     \
  } while (0)

/* |a - b| <= tol */
#define CHECK_NEAR(a, b, tol)                                                             \
  do {                                                                                    \
    double va_ = (double)(a), vb_ = (double)(b), vt_ = (double)(tol);                     \
    check_count_++;                                                                       \
    if (!(fabs(va_ - vb_) <= vt_)) {                                                      \
      check_failures_++;                                                                  \
      fprintf(stderr, "%s:%d: |%s - %s| <= %s failed: %.9g vs %.9g (diff %.3g)\n",        \
              __FILE__, __LINE__, #a, #b, #tol, va_, vb_, fabs(va_ - vb_));               \
    }                                                                                     \
  } while (0)

/* a <= b, for error measures against their tolerance */
#define CHECK_LE(a, b)                                                                    \
  do {                                                                                    \
    double va_ = (double)(a), vb_ = (double)(b);                                          \
    check_count_++;                                                                       \
    if (!(va_ <= vb_)) {                                                                  \
      check_failures_++;                                                                  \
      fprintf(stderr, "%s:%d: %s <= %s failed: %.6g vs %.6g\n", __FILE__, __LINE__, #a,  \
              #b, va_, vb_);                                                              \
    }                                                                                     \
  } while (0)

static inline int check_exit(void) {
  fprintf(stderr, "%d checks, %d failed\n", check_count_, check_failures_);
  return check_failures_ ? 1 : 0;
}

/* Exit code meson reads as "skipped". */
#define CHECK_SKIP 77

/* Max |a-b| over n floats. */
static inline double check_max_abs(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (d > m || d != d) m = d;
  }
  return m;
}

/* Population std of n floats. */
static inline double check_std(const float *a, size_t n) {
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) s += a[i];
  double mean = s / (double)n;
  for (size_t i = 0; i < n; i++) s2 += ((double)a[i] - mean) * ((double)a[i] - mean);
  return sqrt(s2 / (double)n);
}

#endif
