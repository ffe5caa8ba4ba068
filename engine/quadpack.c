/* quadpack.c: QUADPACK's QAGS adaptive quadrature as scipy.integrate.quad runs it.
 *
 * diffusers' LMS sampler computes its coefficients with scipy.integrate.quad(epsrel=1e-4):
 * dqagse with the 21-point Gauss-Kronrod rule, bisection and epsilon-algorithm
 * extrapolation, at most 50 intervals. With hundreds of steps the reference subdivides, so the
 * control flow and arithmetic of scipy's Fortran dqagse/dqk21/dqpsrt/dqelg are reproduced
 * whole, with 1-based arrays as there.
 */
#include <math.h>

#include "quadpack.h"

#define QP_EPMACH 2.220446049250313e-16 /* d1mach(4) */
#define QP_UFLOW 2.2250738585072014e-308
#define QP_OFLOW 1.7976931348623157e308
#define QP_LIMIT 50

/* dqk21: 21-point Kronrod estimate over (a, b) with its error estimate; *resabs is the
 * integral of |f|, *resasc that of |f - mean|. */
static double qk21(const sd__qfn *f, double a, double b, double *abserr, double *resabs,
                   double *resasc) {
  static const double xgk[11] = {
      0.995657163025808080735527280689003, 0.973906528517171720077964012084452,
      0.930157491355708226001207180059508, 0.865063366688984510732096688423493,
      0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
      0.562757134668604683339000099272694, 0.433395394129247190799265943165784,
      0.294392862701460198131126603103866, 0.148874338981631210884826001129720, 0.0};
  static const double wgk[11] = {
      0.011694638867371874278064396062192, 0.032558162307964727478818972459390,
      0.054755896574351996031381300244580, 0.075039674810919952767043140916190,
      0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
      0.123491976262065851077958109831074, 0.134709217311473325928054001771707,
      0.142775938577060080797094273138717, 0.147739104901338491374841515972068,
      0.149445554002916905664936468389821};
  static const double wg[5] = {0.066671344308688137593568809893332,
                               0.149451349150580593145776339657697,
                               0.219086362515982043995534934228163,
                               0.269266719309996355091226921569469,
                               0.295524224714752870173892994651338};
  double fv1[10], fv2[10];
  double centr = 0.5 * (a + b), hlgth = 0.5 * (b - a), dhlgth = fabs(hlgth);
  double resg = 0.0, fc = f->eval(f->user, centr);
  double resk = wgk[10] * fc;
  *resabs = fabs(resk);
  for (int j = 1; j <= 5; j++) { /* the Gauss abscissae xgk(2), xgk(4), ... */
    int jtw = 2 * j - 1;         /* 0-based */
    double absc = hlgth * xgk[jtw];
    double v1 = f->eval(f->user, centr - absc), v2 = f->eval(f->user, centr + absc);
    fv1[jtw] = v1;
    fv2[jtw] = v2;
    double fsum = v1 + v2;
    resg = resg + wg[j - 1] * fsum;
    resk = resk + wgk[jtw] * fsum;
    *resabs = *resabs + wgk[jtw] * (fabs(v1) + fabs(v2));
  }
  for (int j = 1; j <= 5; j++) {
    int jtwm1 = 2 * j - 2;
    double absc = hlgth * xgk[jtwm1];
    double v1 = f->eval(f->user, centr - absc), v2 = f->eval(f->user, centr + absc);
    fv1[jtwm1] = v1;
    fv2[jtwm1] = v2;
    double fsum = v1 + v2;
    resk = resk + wgk[jtwm1] * fsum;
    *resabs = *resabs + wgk[jtwm1] * (fabs(v1) + fabs(v2));
  }
  double reskh = resk * 0.5;
  *resasc = wgk[10] * fabs(fc - reskh);
  for (int j = 0; j < 10; j++)
    *resasc = *resasc + wgk[j] * (fabs(fv1[j] - reskh) + fabs(fv2[j] - reskh));
  double result = resk * hlgth;
  *resabs = *resabs * dhlgth;
  *resasc = *resasc * dhlgth;
  *abserr = fabs((resk - resg) * hlgth);
  if (*resasc != 0.0 && *abserr != 0.0) {
    double r = pow(200.0 * *abserr / *resasc, 1.5);
    *abserr = *resasc * (r < 1.0 ? r : 1.0);
  }
  if (*resabs > QP_UFLOW / (50.0 * QP_EPMACH) && *abserr < QP_EPMACH * 50.0 * *resabs)
    *abserr = QP_EPMACH * 50.0 * *resabs;
  return result;
}

/* dqpsrt: keep iord[1..] pointing at the error estimates in decreasing order and select the
 * interval to bisect next. */
static void qpsrt(int last, int *maxerr, double *ermax, const double *elist, int *iord,
                  int *nrmax) {
  if (last <= 2) {
    iord[1] = 1;
    iord[2] = 2;
  } else {
    double errmax = elist[*maxerr];
    if (*nrmax != 1) {
      int ido = *nrmax - 1;
      for (int i = 1; i <= ido; i++) {
        int isucc = iord[*nrmax - 1];
        if (errmax <= elist[isucc]) break;
        iord[*nrmax] = isucc;
        (*nrmax)--;
      }
    }
    int jupbn = last > QP_LIMIT / 2 + 2 ? QP_LIMIT + 3 - last : last;
    double errmin = elist[last];
    int jbnd = jupbn - 1, ibeg = *nrmax + 1, i = ibeg;
    int found = 0;
    for (; i <= jbnd; i++) {
      int isucc = iord[i];
      if (errmax >= elist[isucc]) {
        found = 1;
        break;
      }
      iord[i - 1] = isucc;
    }
    if (!found) {
      iord[jbnd] = *maxerr;
      iord[jupbn] = last;
    } else {
      iord[i - 1] = *maxerr;
      int k = jbnd, placed = 0;
      for (int j = i; j <= jbnd; j++) {
        int isucc = iord[k];
        if (errmin < elist[isucc]) {
          iord[k + 1] = last;
          placed = 1;
          break;
        }
        iord[k + 1] = isucc;
        k--;
      }
      if (!placed) iord[i] = last;
    }
  }
  *maxerr = iord[*nrmax];
  *ermax = elist[*maxerr];
}

/* dqelg: the epsilon algorithm on epstab[1..*n] (52 + 1 slots); may shorten *n. */
static void qelg(int *n, double *epstab, double *result, double *abserr, double *res3la,
                 int *nres) {
  (*nres)++;
  *abserr = QP_OFLOW;
  *result = epstab[*n];
  if (*n >= 3) {
    const int limexp = 50;
    epstab[*n + 2] = epstab[*n];
    int newelm = (*n - 1) / 2;
    epstab[*n] = QP_OFLOW;
    int num = *n, k1 = *n;
    for (int i = 1; i <= newelm; i++) {
      int k2 = k1 - 1, k3 = k1 - 2;
      double res = epstab[k1 + 2];
      double e0 = epstab[k3], e1 = epstab[k2], e2 = res;
      double e1abs = fabs(e1), delta2 = e2 - e1, err2 = fabs(delta2);
      double tol2 = fmax(fabs(e2), e1abs) * QP_EPMACH;
      double delta3 = e1 - e0, err3 = fabs(delta3);
      double tol3 = fmax(e1abs, fabs(e0)) * QP_EPMACH;
      if (!(err2 > tol2 || err3 > tol3)) {
        /* e0, e1, e2 equal to machine accuracy: converged */
        *result = res;
        *abserr = err2 + err3;
        goto out;
      }
      double e3 = epstab[k1];
      epstab[k1] = e1;
      double delta1 = e1 - e3, err1 = fabs(delta1);
      double tol1 = fmax(e1abs, fabs(e3)) * QP_EPMACH;
      double ss = 0.0;
      int irregular = err1 <= tol1 || err2 <= tol2 || err3 <= tol3;
      if (!irregular) {
        ss = 1.0 / delta1 + 1.0 / delta2 - 1.0 / delta3;
        irregular = !(fabs(ss * e1) > 1e-4);
      }
      if (irregular) {
        *n = i + i - 1;
        break;
      }
      res = e1 + 1.0 / ss;
      epstab[k1] = res;
      k1 = k1 - 2;
      double error = err2 + fabs(res - e2) + err3;
      if (!(error > *abserr)) {
        *abserr = error;
        *result = res;
      }
    }
    /* shift the table */
    if (*n == limexp) *n = 2 * (limexp / 2) - 1;
    int ib = (num / 2) * 2 == num ? 2 : 1;
    int ie = newelm + 1;
    for (int i = 1; i <= ie; i++) {
      epstab[ib] = epstab[ib + 2];
      ib = ib + 2;
    }
    if (num != *n) {
      int indx = num - *n + 1;
      for (int i = 1; i <= *n; i++) epstab[i] = epstab[indx++];
    }
    if (*nres >= 4) {
      *abserr = fabs(*result - res3la[3]) + fabs(*result - res3la[2]) +
                fabs(*result - res3la[1]);
      res3la[1] = res3la[2];
      res3la[2] = res3la[3];
      res3la[3] = *result;
    } else {
      res3la[*nres] = *result;
      *abserr = QP_OFLOW;
    }
  }
out:
  *abserr = fmax(*abserr, 5.0 * QP_EPMACH * fabs(*result));
}

/* dqagse with epsabs 1.49e-8 (quad's default), epsrel 1e-4, limit 50: the integral over
 * (a, b). Error flags are not needed: quad returns the result in every case. */
double sd__qags(const sd__qfn *f, double a, double b) {
  const double epsabs = 1.49e-8, epsrel = 1e-4;
  double alist[QP_LIMIT + 1], blist[QP_LIMIT + 1], rlist[QP_LIMIT + 1], elist[QP_LIMIT + 1];
  double rlist2[54], res3la[4] = {0};
  int iord[QP_LIMIT + 1];
  int ier = 0, ierro = 0, last;
  double abserr, defabs, resabs; /* resabs: dqk21's resasc, named as in dqagse */
  alist[1] = a;
  blist[1] = b;
  double result = qk21(f, a, b, &abserr, &defabs, &resabs);
  double dres = fabs(result);
  double errbnd = fmax(epsabs, epsrel * dres);
  last = 1;
  rlist[1] = result;
  elist[1] = abserr;
  iord[1] = 1;
  if (abserr <= 100.0 * QP_EPMACH * defabs && abserr > errbnd) ier = 2;
  if (ier != 0 || (abserr <= errbnd && abserr != resabs) || abserr == 0.0) return result;

  rlist2[1] = result;
  double errmax = abserr, area = result, errsum = abserr;
  int maxerr = 1, nrmax = 1, nres = 0, numrl2 = 2, ktmin = 0, extrap = 0, noext = 0;
  int iroff1 = 0, iroff2 = 0, iroff3 = 0;
  int ksgn = dres >= (1.0 - 50.0 * QP_EPMACH) * defabs ? 1 : -1;
  double small = 0, erlarg = 0, ertest = 0, correc = 0;
  abserr = QP_OFLOW;
  for (last = 2; last <= QP_LIMIT; last++) {
    double a1 = alist[maxerr], b1 = 0.5 * (alist[maxerr] + blist[maxerr]);
    double a2 = b1, b2 = blist[maxerr];
    double erlast = errmax, error1, error2, defab1, defab2, unused;
    double area1 = qk21(f, a1, b1, &error1, &unused, &defab1);
    double area2 = qk21(f, a2, b2, &error2, &unused, &defab2);
    double area12 = area1 + area2, erro12 = error1 + error2;
    errsum = errsum + erro12 - errmax;
    area = area + area12 - rlist[maxerr];
    if (defab1 != error1 && defab2 != error2) {
      if (fabs(rlist[maxerr] - area12) <= 1e-5 * fabs(area12) && erro12 >= 0.99 * errmax) {
        if (extrap)
          iroff2++;
        else
          iroff1++;
      }
      if (last > 10 && erro12 > errmax) iroff3++;
    }
    rlist[maxerr] = area1;
    rlist[last] = area2;
    errbnd = fmax(epsabs, epsrel * fabs(area));
    if (iroff1 + iroff2 >= 10 || iroff3 >= 20) ier = 2;
    if (iroff2 >= 5) ierro = 3;
    if (last == QP_LIMIT) ier = 1;
    if (fmax(fabs(a1), fabs(b2)) <= (1.0 + 100.0 * QP_EPMACH) * (fabs(a2) + 1000.0 * QP_UFLOW))
      ier = 4;
    if (error2 > error1) {
      alist[maxerr] = a2;
      alist[last] = a1;
      blist[last] = b1;
      rlist[maxerr] = area2;
      rlist[last] = area1;
      elist[maxerr] = error2;
      elist[last] = error1;
    } else {
      alist[last] = a2;
      blist[maxerr] = b1;
      blist[last] = b2;
      elist[maxerr] = error1;
      elist[last] = error2;
    }
    qpsrt(last, &maxerr, &errmax, elist, iord, &nrmax);
    if (errsum <= errbnd) goto sum_all;
    if (ier != 0) goto finish;
    if (last == 2) {
      small = fabs(b - a) * 0.375;
      erlarg = errsum;
      ertest = errbnd;
      rlist2[2] = area;
      continue;
    }
    if (noext) continue;
    erlarg = erlarg - erlast;
    if (fabs(b1 - a1) > small) erlarg = erlarg + erro12;
    if (!extrap) {
      if (fabs(blist[maxerr] - alist[maxerr]) > small) continue;
      extrap = 1;
      nrmax = 2;
    }
    if (ierro != 3 && erlarg > ertest) {
      int id = nrmax, jupbnd = last > 2 + QP_LIMIT / 2 ? QP_LIMIT + 3 - last : last;
      int larger = 0;
      for (int k = id; k <= jupbnd; k++) {
        maxerr = iord[nrmax];
        errmax = elist[maxerr];
        if (fabs(blist[maxerr] - alist[maxerr]) > small) {
          larger = 1;
          break;
        }
        nrmax++;
      }
      if (larger) continue;
    }
    /* extrapolate */
    numrl2++;
    rlist2[numrl2] = area;
    double reseps, abseps;
    qelg(&numrl2, rlist2, &reseps, &abseps, res3la, &nres);
    ktmin++;
    if (ktmin > 5 && abserr < 1e-3 * errsum) ier = 5;
    if (abseps < abserr) {
      ktmin = 0;
      abserr = abseps;
      result = reseps;
      correc = erlarg;
      ertest = fmax(epsabs, epsrel * fabs(reseps));
      if (abserr <= ertest) goto finish;
    }
    if (numrl2 == 1) noext = 1;
    if (ier == 5) goto finish;
    maxerr = iord[1];
    errmax = elist[maxerr];
    nrmax = 1;
    extrap = 0;
    small = small * 0.5;
    erlarg = errsum;
  }
  if (last > QP_LIMIT) last = QP_LIMIT;
finish:
  if (abserr == QP_OFLOW) goto sum_all;
  if (ier + ierro != 0) {
    if (ierro == 3) abserr = abserr + correc;
    if (result != 0.0 && area != 0.0) {
      if (abserr / fabs(result) > errsum / fabs(area)) goto sum_all;
    } else if (abserr > errsum) {
      goto sum_all;
    } else if (area == 0.0) {
      return result;
    }
  }
  (void)ksgn; /* the divergence test only sets an error flag */
  return result;
sum_all:
  result = 0.0;
  for (int k = 1; k <= last; k++) result = result + rlist[k];
  return result;
}

