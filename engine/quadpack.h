/* quadpack.h: scipy.integrate.quad's algorithm (QUADPACK QAGS), for the LMS sampler. */
#ifndef SD_QUADPACK_H
#define SD_QUADPACK_H

/* An integrand: eval(user, x). */
typedef struct sd__qfn {
  double (*eval)(const void *user, double x);
  const void *user;
} sd__qfn;

/* The integral of f over (a, b) as quad(f, a, b, epsrel=1e-4) returns it (epsabs 1.49e-8,
 * limit 50); quad's error flags are not reported because its result is used in every case. */
double sd__qags(const sd__qfn *f, double a, double b);

#endif
