/* scheduler.c: the nine samplers of scheduler.h, float-for-float ports of the diffusers 0.27.2
 * schedulers as torch 1.13 runs them on the CPU: torch's float32 linspace and cumprod for the
 * betas, numpy float64 for the sigma tables, each step's 0-dim float32 tensor arithmetic in
 * diffusers' order (torch.log/exp as SLEEF computes them), unfused float32 element-wise updates,
 * scipy's QAGS for the LMS coefficients. Not here: thresholding, trained_betas, custom
 * timesteps, SDE variants. Sections: config, tables, construction, the steps (the LMS
 * quadrature is in quadpack.c, torch's exp/log in torchmath.c), image-to-image.
 */
#include "quadpack.h"
#include "scheduler.h"
#include "torchmath.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const sd_sampler_names[] = {"ddim", "ddpm",     "euler",           "euler_a", "heun",
                                        "lms",  "dpmpp_2m", "dpmpp_2m_karras", "pndm",    NULL};

typedef enum kind { K_DDIM, K_DDPM, K_EULER, K_EULER_A, K_HEUN, K_LMS, K_DPMPP, K_PNDM } kind;

#define HIST 5 /* history buffers: PLMS keeps 4 model outputs and a sample */

struct sd__sched {
  kind k;
  int karras;
  sd__sched_config cfg;
  int steps;            /* num_inference_steps */
  int len;              /* loop length */
  int v_pred;           /* prediction_type == "v_prediction" */
  float *acp;           /* alphas_cumprod[num_train_timesteps] */
  float final_acp;      /* DDIM/PNDM value for t < 0 */
  double *ts;           /* timesteps as given to the model, len entries (integer or float32) */
  float *sig;           /* sigma-based samplers: len + 1 sigmas */
  float init_sigma;
  /* per-run state */
  size_t n;             /* latent size, fixed at the first step */
  float *hist[HIST];
  float *scratch;       /* noise draws, PLMS combined model output */
  int nhist;            /* LMS derivatives / PLMS ets / DPM model outputs held */
  int counter;          /* PLMS calls since begin */
  int heun_second;      /* next Heun call is the correction */
  float heun_dt;
  int lower_order_nums; /* DPM++ */
};

/* ---- config ----------------------------------------------------------------------------- */

void sd__sched_config_default(sd__sched_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->num_train_timesteps = 1000;
  cfg->beta_start = 0.00085;
  cfg->beta_end = 0.012;
  strcpy(cfg->beta_schedule, "scaled_linear");
  cfg->steps_offset = 1;
  strcpy(cfg->timestep_spacing, "leading");
  cfg->set_alpha_to_one = 0;
  strcpy(cfg->prediction_type, "epsilon");
  cfg->clip_sample = 0;
  cfg->clip_sample_range = 1.0;
}

static const char *const schedules[] = {"scaled_linear", "linear", "squaredcos_cap_v2", NULL};
static const char *const spacings[] = {"leading", "trailing", "linspace", NULL};
static const char *const preds[] = {"epsilon", "v_prediction", NULL};

static int one_of(const char *v, const char *const *list) {
  for (; *list; list++)
    if (strcmp(v, *list) == 0) return 1;
  return 0;
}

/* Whether the samplers implement this config: SD_ERR_UNSUPPORTED for unknown schedule,
 * spacing or prediction type, SD_ERR_FORMAT for numbers out of range. */
static sd_status check_config(const sd__sched_config *c, const char *what, sd_error *err) {
  if (!one_of(c->beta_schedule, schedules))
    return sd__err(err, SD_ERR_UNSUPPORTED, "%s: beta_schedule \"%s\" is not supported", what,
                   c->beta_schedule);
  if (!one_of(c->timestep_spacing, spacings))
    return sd__err(err, SD_ERR_UNSUPPORTED, "%s: timestep_spacing \"%s\" is not supported",
                   what, c->timestep_spacing);
  if (!one_of(c->prediction_type, preds))
    return sd__err(err, SD_ERR_UNSUPPORTED, "%s: prediction_type \"%s\" is not supported",
                   what, c->prediction_type);
  if (c->num_train_timesteps < 2 || c->num_train_timesteps > 100000 || c->steps_offset < 0 ||
      c->steps_offset >= c->num_train_timesteps || !(c->beta_start > 0) ||
      !(c->beta_end > c->beta_start) || !(c->beta_end < 1) || !(c->clip_sample_range > 0))
    return sd__err(err, SD_ERR_FORMAT, "%s: values out of range", what);
  return SD_OK;
}

/* Copy a config string (absent: keep dst) into a fixed field. */
static void cfg_str(const sd_json *j, const char *key, char *dst, size_t cap, sd_error *err) {
  const char *v = sd__json_str(j, key, NULL, "scheduler_config.json", err);
  if (!v) return;
  if (strlen(v) >= cap)
    sd__err(err, SD_ERR_UNSUPPORTED, "scheduler_config.json: %s \"%.40s\" is not supported",
            key, v);
  else
    memcpy(dst, v, strlen(v) + 1);
}

sd_status sd__sched_config_from_json(const sd_json *j, sd__sched_config *cfg, sd_error *err) {
  const char *what = "scheduler_config.json";
  sd__sched_config c = *cfg;
  sd_error local = {0}; /* the getters keep the first problem; it is passed on below */
  sd_error *e = &local;
  c.num_train_timesteps = sd__json_int(j, "num_train_timesteps", c.num_train_timesteps, what, e);
  c.beta_start = sd__json_num(j, "beta_start", c.beta_start, what, e);
  c.beta_end = sd__json_num(j, "beta_end", c.beta_end, what, e);
  c.steps_offset = sd__json_int(j, "steps_offset", c.steps_offset, what, e);
  c.set_alpha_to_one = sd__json_bool(j, "set_alpha_to_one", c.set_alpha_to_one, what, e);
  c.clip_sample = sd__json_bool(j, "clip_sample", c.clip_sample, what, e);
  c.clip_sample_range = sd__json_num(j, "clip_sample_range", c.clip_sample_range, what, e);
  cfg_str(j, "beta_schedule", c.beta_schedule, sizeof c.beta_schedule, e);
  cfg_str(j, "timestep_spacing", c.timestep_spacing, sizeof c.timestep_spacing, e);
  cfg_str(j, "prediction_type", c.prediction_type, sizeof c.prediction_type, e);
  const sd_json *tb = sd__json_get(j, "trained_betas");
  if (tb && tb->type != SD_JSON_NULL)
    sd__err(e, SD_ERR_UNSUPPORTED, "%s: trained_betas is not supported", what);
  if (e->status == SD_OK) check_config(&c, what, e);
  if (local.status != SD_OK) return sd__err(err, local.status, "%s", local.msg);
  *cfg = c;
  return SD_OK;
}

/* ---- tables: betas, alphas_cumprod, timesteps, sigmas ------------------------------------ */

/* torch.linspace(a, b, n, dtype=float32) on the AVX2 CPU kernel: halves anchored at the two
 * ends, 8-wide blocks whose base is a fused start + step * idx and whose lanes add j * step
 * unfused, the scalar tail fused. */
static void torch_linspace_f32(double a, double b, int n, float *out) {
  float s = (float)a, e = (float)b;
  if (n == 1) {
    out[0] = s;
    return;
  }
  float step = (e - s) / (float)(n - 1);
  int half = n / 2, nv = n / 16 * 16;
  for (int idx = 0; idx < nv; idx += 8) {
    float base = idx < half ? fmaf(step, (float)idx, s) : fmaf(-step, (float)(n - idx - 1), e);
    for (int j = 0; j < 8; j++) out[idx + j] = base + (float)j * step;
  }
  for (int idx = nv; idx < n; idx++)
    out[idx] = idx < half ? fmaf(step, (float)idx, s) : fmaf(-step, (float)(n - idx - 1), e);
}

/* betas by the config's schedule, then alphas_cumprod = cumprod(1 - betas) with torch's
 * double accumulator. */
static void make_alphas_cumprod(const sd__sched_config *c, float *acp) {
  int T = c->num_train_timesteps;
  if (strcmp(c->beta_schedule, "squaredcos_cap_v2") == 0) {
    /* betas_for_alpha_bar: Python doubles, then torch.tensor(float32) */
    for (int i = 0; i < T; i++) {
      double t1 = (double)i / T, t2 = (double)(i + 1) / T;
      double a1 = cos((t1 + 0.008) / 1.008 * M_PI / 2), a2 = cos((t2 + 0.008) / 1.008 * M_PI / 2);
      double b = 1 - (a2 * a2) / (a1 * a1);
      acp[i] = (float)(b < 0.999 ? b : 0.999);
    }
  } else if (strcmp(c->beta_schedule, "linear") == 0) {
    torch_linspace_f32(c->beta_start, c->beta_end, T, acp);
  } else {
    torch_linspace_f32(pow(c->beta_start, 0.5), pow(c->beta_end, 0.5), T, acp);
    for (int i = 0; i < T; i++) acp[i] = acp[i] * acp[i];
  }
  double cum = 1.0;
  for (int i = 0; i < T; i++) {
    float alpha = 1.0f - acp[i];
    cum *= (double)alpha;
    acp[i] = (float)cum;
  }
}

/* numpy.arange(start, 0, -ratio) for a float ratio: numpy's length rule and its fill
 * (start + i * delta, delta re-derived from the second element). */
static int np_arange_down(double start, double ratio, double *out, int cap) {
  double len = ceil((0.0 - start) / -ratio);
  int n = len > cap ? cap : (int)len;
  double delta = (start + -ratio) - start;
  for (int i = 0; i < n; i++)
    out[i] = i == 0 ? start : (i == 1 ? start + -ratio : start + i * delta);
  return n;
}

/* np.linspace(0, stop, num) in float64. */
static void np_linspace(double stop, int num, double *out) {
  if (num == 1) {
    out[0] = 0.0;
    return;
  }
  double step = stop / (num - 1);
  for (int i = 0; i < num; i++) out[i] = i * step + 0.0;
  out[num - 1] = stop;
}

/* The descending timesteps of set_timesteps: N of them for DDIM/DDPM/PNDM and the Euler
 * family; for DPM-Solver (dpm) N + 1 with "leading"/"linspace", whose caller drops the last,
 * and N with "trailing". as_f32: the Euler family keeps linspace values unrounded, in float32.
 * Returns the number written (at most N + 1). */
static int spaced_timesteps(const sd__sched_config *c, int N, int dpm, int as_f32, double *out) {
  int T = c->num_train_timesteps;
  const char *sp = c->timestep_spacing;
  if (strcmp(sp, "linspace") == 0) {
    int num = dpm ? N + 1 : N;
    np_linspace(T - 1, num, out);
    for (int i = 0; i < num; i++) out[i] = as_f32 ? (double)(float)out[i] : nearbyint(out[i]);
    for (int i = 0; i < num / 2; i++) {
      double t = out[i];
      out[i] = out[num - 1 - i];
      out[num - 1 - i] = t;
    }
    return num;
  }
  if (strcmp(sp, "trailing") == 0) {
    int m = np_arange_down((double)T, (double)T / N, out, N + 1);
    for (int i = 0; i < m; i++) out[i] = nearbyint(out[i]) - 1;
    return m; /* N entries, also for DPM-Solver (nothing dropped) */
  }
  /* leading */
  int num = dpm ? N + 1 : N;
  int ratio = dpm ? T / (N + 1) : T / N;
  for (int i = 0; i < num; i++) out[i] = (double)((num - 1 - i) * ratio + c->steps_offset);
  return num;
}

/* The float32 sigma table ((1 - acp) / acp) ** 0.5 that every sigma sampler starts from. */
static void base_sigmas(const float *acp, int T, float *s) {
  for (int i = 0; i < T; i++) s[i] = sqrtf((1.0f - acp[i]) / acp[i]);
}

/* np.interp(x, arange(T), fp) for float32 fp. */
static double np_interp(double x, const float *fp, int T) {
  if (x <= 0) return fp[0];
  if (x >= T - 1) return fp[T - 1];
  int j = (int)floor(x);
  if ((double)j == x) return fp[j];
  double slope = ((double)fp[j + 1] - (double)fp[j]) / 1.0;
  return slope * (x - j) + (double)fp[j];
}

/* _sigma_to_t: fractional timestep of a sigma on the float32 log-sigma table (numpy 1.24
 * value-based casting: the comparison runs in float32, the weights in float64). */
static double sigma_to_t(double sigma, const float *log_sig, int T) {
  double ls = log(sigma > 1e-10 ? sigma : 1e-10);
  float ls32 = (float)ls;
  int lo = 0;
  for (int i = 0; i < T; i++)
    if (ls32 - log_sig[i] >= 0.0f) lo = i;
  if (lo > T - 2) lo = T - 2;
  float low = log_sig[lo], high = log_sig[lo + 1];
  double w = ((double)low - ls) / (double)(low - high);
  w = w < 0 ? 0 : (w > 1 ? 1 : w);
  return (1 - w) * lo + w * (lo + 1);
}

/* DPM-Solver++ with Karras sigmas: rho-7 ramp between the table's ends, timesteps rounded
 * from _sigma_to_t. sig gets N values, ts N values. Returns 0, or -1 when out of memory. */
static int karras(const float *base, int T, int N, float *sig, double *ts) {
  float *log_sig = malloc((size_t)T * sizeof(float));
  double smin = base[0], smax = base[T - 1];
  double min_inv = pow(smin, 1.0 / 7.0), max_inv = pow(smax, 1.0 / 7.0);
  double *ramp = malloc((size_t)N * sizeof(double));
  int rc = -1;
  if (!log_sig || !ramp) goto out_free;
  for (int i = 0; i < T; i++) log_sig[i] = (float)log((double)base[i]);
  np_linspace(1.0, N, ramp);
  for (int i = 0; i < N; i++) {
    double s = pow(max_inv + ramp[i] * (min_inv - max_inv), 7.0);
    sig[i] = (float)s;
    ts[i] = nearbyint(sigma_to_t(s, log_sig, T));
  }
  rc = 0;
out_free:
  free(log_sig);
  free(ramp);
  return rc;
}

/* ---- construction ---------------------------------------------------------------------- */

int sd__sched_known(const char *name) {
  if (!name) return 0;
  for (const char *const *s = sd_sampler_names; *s; s++)
    if (strcmp(*s, name) == 0) return 1;
  return 0;
}

static sd_status unknown_name(const char *name, sd_error *err) {
  char list[256];
  size_t k = 0;
  list[0] = 0;
  for (const char *const *s = sd_sampler_names; *s && k < sizeof list; s++)
    k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", k ? ", " : "", *s);
  return sd__err(err, SD_ERR_INVALID, "unknown sampler \"%s\" (known: %s)", name ? name : "(null)",
                 list);
}

/* Timesteps and sigmas of the Euler family (euler, euler_a, heun, lms). */
static sd_status setup_sigma_sampler(sd__sched *s, const float *base, double *tmp,
                                     sd_error *err) {
  int N = s->steps, T = s->cfg.num_train_timesteps;
  int m = spaced_timesteps(&s->cfg, N, 0, 1, tmp);
  if (m != N) return sd__err(err, SD_ERR_INVALID, "%d steps do not fit the timestep spacing", N);
  for (int i = 0; i < N; i++) tmp[i] = (double)(float)tmp[i];
  int heun = s->k == K_HEUN;
  s->len = heun ? 2 * N - 1 : N;
  s->ts = malloc((size_t)s->len * sizeof(double));
  s->sig = malloc((size_t)(s->len + 1) * sizeof(float));
  if (!s->ts || !s->sig) return sd__err(err, SD_ERR_NOMEM, "out of memory for the sampler");
  float *sig_n = heun ? malloc((size_t)(N + 1) * sizeof(float)) : s->sig;
  if (!sig_n) return sd__err(err, SD_ERR_NOMEM, "out of memory for the sampler");
  for (int i = 0; i < N; i++) sig_n[i] = (float)np_interp(tmp[i], base, T);
  sig_n[N] = 0.0f;
  if (heun) {
    /* [s0, s1, s1, ..., s_{N-1}, s_{N-1}, 0] and [t0, t1, t1, ..., t_{N-1}, t_{N-1}] */
    s->sig[0] = sig_n[0];
    s->ts[0] = tmp[0];
    for (int i = 1; i < N; i++) {
      s->sig[2 * i - 1] = s->sig[2 * i] = sig_n[i];
      s->ts[2 * i - 1] = s->ts[2 * i] = tmp[i];
    }
    s->sig[2 * N - 1] = 0.0f;
    free(sig_n);
  } else {
    memcpy(s->ts, tmp, (size_t)N * sizeof(double));
  }
  float mx = 0.0f;
  for (int i = 0; i <= s->len; i++)
    if (s->sig[i] > mx) mx = s->sig[i];
  s->init_sigma = strcmp(s->cfg.timestep_spacing, "leading") == 0 ? sqrtf(mx * mx + 1.0f) : mx;
  return SD_OK;
}

/* Timesteps (and sigmas) of DPM-Solver++. */
static sd_status setup_dpm(sd__sched *s, const float *base, double *tmp, sd_error *err) {
  int N = s->steps, T = s->cfg.num_train_timesteps;
  s->ts = malloc((size_t)(N + 1) * sizeof(double));
  s->sig = malloc((size_t)(N + 1) * sizeof(float));
  if (!s->ts || !s->sig) return sd__err(err, SD_ERR_NOMEM, "out of memory for the sampler");
  if (s->karras) {
    if (karras(base, T, N, s->sig, s->ts) != 0)
      return sd__err(err, SD_ERR_NOMEM, "out of memory for the sampler");
  } else {
    int m = spaced_timesteps(&s->cfg, N, 1, 0, tmp);
    int want = strcmp(s->cfg.timestep_spacing, "trailing") == 0 ? N : N + 1;
    if (m != want) return sd__err(err, SD_ERR_INVALID, "%d steps do not fit the spacing", N);
    for (int i = 0; i < N; i++) {
      s->ts[i] = tmp[i];
      s->sig[i] = (float)np_interp(tmp[i], base, T);
    }
  }
  s->sig[N] = 0.0f; /* final_sigmas_type "zero" */
  s->len = N;
  s->init_sigma = 1.0f;
  return SD_OK;
}

/* Integer timesteps of DDIM, DDPM and PNDM (PNDM: PLMS order with the repeated entry). */
static sd_status setup_alpha_sampler(sd__sched *s, double *tmp, sd_error *err) {
  int N = s->steps, T = s->cfg.num_train_timesteps;
  int m = spaced_timesteps(&s->cfg, N, 0, 0, tmp);
  if (m != N) return sd__err(err, SD_ERR_INVALID, "%d steps do not fit the timestep spacing", N);
  s->len = s->k == K_PNDM && N > 1 ? N + 1 : N;
  s->ts = malloc((size_t)s->len * sizeof(double));
  if (!s->ts) return sd__err(err, SD_ERR_NOMEM, "out of memory for the sampler");
  if (s->k == K_PNDM && N > 1) {
    /* concat(_t[:-1], _t[-2:-1], _t[-1:])[::-1] over the ascending list */
    s->ts[0] = tmp[0];
    s->ts[1] = s->ts[2] = tmp[1];
    for (int i = 2; i < N; i++) s->ts[i + 1] = tmp[i];
  } else {
    memcpy(s->ts, tmp, (size_t)N * sizeof(double));
  }
  for (int i = 0; i < s->len; i++)
    if (s->ts[i] < 0 || s->ts[i] > T - 1)
      return sd__err(err, SD_ERR_INVALID, "%d steps give timestep %g outside [0, %d]", N,
                     s->ts[i], T - 1);
  s->final_acp = s->cfg.set_alpha_to_one ? 1.0f : s->acp[0];
  s->init_sigma = 1.0f;
  return SD_OK;
}

sd_status sd__sched_create(const char *name, const sd__sched_config *cfg, int steps,
                           sd__sched **out, sd_error *err) {
  static const kind kinds[] = {K_DDIM, K_DDPM,  K_EULER, K_EULER_A, K_HEUN,
                               K_LMS,  K_DPMPP, K_DPMPP, K_PNDM};
  *out = NULL;
  int idx = -1;
  for (int i = 0; name && sd_sampler_names[i]; i++)
    if (strcmp(sd_sampler_names[i], name) == 0) idx = i;
  if (idx < 0) return unknown_name(name, err);
  sd_status st = check_config(cfg, "scheduler config", err);
  if (st != SD_OK) return st;
  int T = cfg->num_train_timesteps;
  if (steps < 1 || steps > T)
    return sd__err(err, SD_ERR_INVALID, "steps must be in [1, %d], got %d", T, steps);
  sd__sched *s = calloc(1, sizeof *s);
  float *base = malloc((size_t)T * sizeof(float));
  double *tmp = malloc((size_t)(steps + 2) * sizeof(double));
  if (!s || !base || !tmp) {
    st = sd__err(err, SD_ERR_NOMEM, "out of memory for the sampler");
    goto out_free;
  }
  s->k = kinds[idx];
  s->karras = strcmp(name, "dpmpp_2m_karras") == 0;
  s->cfg = *cfg;
  s->steps = steps;
  s->v_pred = strcmp(cfg->prediction_type, "v_prediction") == 0;
  s->acp = malloc((size_t)T * sizeof(float));
  if (!s->acp) {
    st = sd__err(err, SD_ERR_NOMEM, "out of memory for the sampler");
    goto out_free;
  }
  make_alphas_cumprod(cfg, s->acp);
  base_sigmas(s->acp, T, base);
  switch (s->k) {
  case K_EULER:
  case K_EULER_A:
  case K_HEUN:
  case K_LMS: st = setup_sigma_sampler(s, base, tmp, err); break;
  case K_DPMPP: st = setup_dpm(s, base, tmp, err); break;
  default: st = setup_alpha_sampler(s, tmp, err); break;
  }
  if (st == SD_OK) {
    *out = s;
    s = NULL;
  }
out_free:
  free(base);
  free(tmp);
  sd__sched_destroy(s);
  return st;
}

void sd__sched_destroy(sd__sched *s) {
  if (!s) return;
  for (int i = 0; i < HIST; i++) free(s->hist[i]);
  free(s->scratch);
  free(s->acp);
  free(s->ts);
  free(s->sig);
  free(s);
}

int sd__sched_len(const sd__sched *s) { return s->len; }

float sd__sched_timestep(const sd__sched *s, int i) { return (float)s->ts[i]; }

float sd__sched_init_sigma(const sd__sched *s) { return s->init_sigma; }

static int sigma_kind(const sd__sched *s) {
  return s->k == K_EULER || s->k == K_EULER_A || s->k == K_HEUN || s->k == K_LMS;
}

/* Euler family: sample / (sigma**2 + 1) ** 0.5; the others pass the sample through. */
void sd__sched_scale_input(const sd__sched *s, int i, const float *latents, float *model_in,
                           size_t n) {
  if (!sigma_kind(s)) {
    if (model_in != latents) memcpy(model_in, latents, n * sizeof(float));
    return;
  }
  float sigma = s->sig[i];
  float d = sqrtf(sigma * sigma + 1.0f);
  for (size_t k = 0; k < n; k++) model_in[k] = latents[k] / d;
}

/* ---- the steps -------------------------------------------------------------------------- */

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* DDIM, eta 0. */
static void step_ddim(sd__sched *s, int i, const float *eps, float *x, size_t n) {
  int t = (int)s->ts[i];
  int prev = t - s->cfg.num_train_timesteps / s->steps;
  float a_t = s->acp[t];
  float a_prev = prev >= 0 ? s->acp[prev] : s->final_acp;
  float b_t = 1.0f - a_t;
  float sa = sqrtf(a_t), sb = sqrtf(b_t);
  float dir = sqrtf((1.0f - a_prev) - 0.0f), sap = sqrtf(a_prev);
  float r = (float)s->cfg.clip_sample_range;
  for (size_t k = 0; k < n; k++) {
    float x0, pe;
    if (s->v_pred) {
      x0 = sa * x[k] - sb * eps[k];
      pe = sa * eps[k] + sb * x[k];
    } else {
      x0 = (x[k] - sb * eps[k]) / sa;
      pe = eps[k];
    }
    if (s->cfg.clip_sample) x0 = clampf(x0, -r, r);
    x[k] = sap * x0 + dir * pe;
  }
}

/* DDPM, fixed_small variance; draws noise when t > 0. */
static void step_ddpm(sd__sched *s, int i, const float *eps, float *x, size_t n, sd__rng *rng,
                      float *noise) {
  int t = (int)s->ts[i];
  int prev = t - s->cfg.num_train_timesteps / s->steps;
  float a_t = s->acp[t];
  float a_prev = prev >= 0 ? s->acp[prev] : 1.0f;
  float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
  float cur_a = a_t / a_prev, cur_b = 1.0f - cur_a;
  float sa = sqrtf(a_t), sb = sqrtf(b_t);
  float c0 = sqrtf(a_prev) * cur_b / b_t;
  float cs = sqrtf(cur_a) * b_prev / b_t;
  float r = (float)s->cfg.clip_sample_range;
  float sd = 0.0f;
  if (t > 0) {
    sd__rng_randn(rng, noise, n);
    float var = (1.0f - a_prev) / (1.0f - a_t) * (1.0f - a_t / a_prev);
    if (var < 1e-20f) var = 1e-20f; /* torch.clamp(min=1e-20) */
    sd = sqrtf(var);
  }
  for (size_t k = 0; k < n; k++) {
    float x0 = s->v_pred ? sa * x[k] - sb * eps[k] : (x[k] - sb * eps[k]) / sa;
    if (s->cfg.clip_sample) x0 = clampf(x0, -r, r);
    float v = c0 * x0 + cs * x[k];
    if (t > 0) v = v + sd * noise[k];
    x[k] = v;
  }
}

/* The Euler-family x0 prediction for one element at sigma. */
static float x0_sigma(const sd__sched *s, float sigma, float e, float x) {
  if (!s->v_pred) return x - sigma * e;
  float q = sigma * sigma + 1.0f;
  return e * (-sigma / sqrtf(q)) + x / q;
}

/* Euler (s_churn 0): one randn draw per step, unused. */
static void step_euler(sd__sched *s, int i, const float *eps, float *x, size_t n, sd__rng *rng,
                       float *noise) {
  sd__rng_randn(rng, noise, n);
  float sigma = s->sig[i];
  float sigma_hat = sigma * 1.0f;
  float dt = s->sig[i + 1] - sigma_hat;
  for (size_t k = 0; k < n; k++) {
    float x0 = x0_sigma(s, sigma_hat, eps[k], x[k]);
    float d = (x[k] - x0) / sigma_hat;
    x[k] = x[k] + d * dt;
  }
}

/* Euler ancestral: deterministic part to sigma_down, then noise * sigma_up. */
static void step_euler_a(sd__sched *s, int i, const float *eps, float *x, size_t n,
                         sd__rng *rng, float *noise) {
  float sf = s->sig[i], st = s->sig[i + 1];
  float su = sqrtf(st * st * (sf * sf - st * st) / (sf * sf));
  float sdn = sqrtf(st * st - su * su);
  float dt = sdn - sf;
  for (size_t k = 0; k < n; k++) {
    float x0 = x0_sigma(s, sf, eps[k], x[k]);
    float d = (x[k] - x0) / sf;
    x[k] = x[k] + d * dt;
  }
  sd__rng_randn(rng, noise, n);
  for (size_t k = 0; k < n; k++) x[k] = x[k] + noise[k] * su;
}

/* Heun: an Euler step that keeps its derivative, then the trapezoid correction. hist[0] holds
 * the derivative, hist[1] the sample the pair started from. */
static void step_heun(sd__sched *s, int i, const float *eps, float *x, size_t n) {
  float r = (float)s->cfg.clip_sample_range;
  if (!s->heun_second) {
    float sigma_hat = s->sig[i] * 1.0f;
    float dt = s->sig[i + 1] - sigma_hat;
    for (size_t k = 0; k < n; k++) {
      float x0 = x0_sigma(s, sigma_hat, eps[k], x[k]);
      if (s->cfg.clip_sample) x0 = clampf(x0, -r, r);
      float d = (x[k] - x0) / sigma_hat;
      s->hist[0][k] = d;
      s->hist[1][k] = x[k];
      x[k] = x[k] + d * dt;
    }
    s->heun_dt = dt;
    s->heun_second = 1;
  } else {
    float sigma_next = s->sig[i];
    float dt = s->heun_dt;
    for (size_t k = 0; k < n; k++) {
      float x0 = x0_sigma(s, sigma_next, eps[k], x[k]);
      if (s->cfg.clip_sample) x0 = clampf(x0, -r, r);
      float d = (x[k] - x0) / sigma_next;
      d = (s->hist[0][k] + d) / 2.0f;
      x[k] = s->hist[1][k] + d * dt;
    }
    s->heun_second = 0;
  }
}

/* ---- LMS coefficients: scipy.integrate.quad as diffusers calls it ------------------------
 *
 * get_lms_coefficient integrates a Lagrange basis polynomial over [sig[t], sig[t+1]] with
 * scipy.integrate.quad(epsrel=1e-4), i.e. QUADPACK's QAGS (21-point Gauss-Kronrod, bisection,
 * epsilon extrapolation, at most 50 intervals). Its integrand mixes a Python float tau with
 * float32 0-dim tensors, so every evaluation is rounded to float32; with few steps QAGS
 * accepts its first estimate, but with hundreds of steps the coarse integrand makes it
 * subdivide. So QAGS is reproduced whole (control flow and arithmetic of scipy's Fortran
 * dqagse/dqk21/dqpsrt/dqelg), with 1-based arrays as there. */

typedef struct lms_fn {
  const float *sig;
  int t, order, cur;
} lms_fn;

static double lms_eval(const void *user, double tau) {
  const lms_fn *f = user;
  float prod = 1.0f;
  float tf = (float)tau;
  for (int k = 0; k < f->order; k++) {
    if (k == f->cur) continue;
    prod = prod * ((tf - f->sig[f->t - k]) / (f->sig[f->t - f->cur] - f->sig[f->t - k]));
  }
  return prod;
}

/* diffusers' get_lms_coefficient(order, t, cur). */
static double lms_coefficient(const float *sig, int t, int order, int cur) {
  lms_fn f = {sig, t, order, cur};
  sd__qfn fn = {lms_eval, &f};
  return sd__qags(&fn, sig[t], sig[t + 1]);
}

/* LMS (order 4): hist[0] is the newest derivative. */
static void step_lms(sd__sched *s, int i, const float *eps, float *x, size_t n) {
  float sigma = s->sig[i];
  /* rotate: the oldest buffer becomes the newest */
  float *last = s->hist[3];
  memmove(&s->hist[1], &s->hist[0], 3 * sizeof(float *));
  s->hist[0] = last;
  if (s->nhist < 4) s->nhist++;
  for (size_t k = 0; k < n; k++) s->hist[0][k] = (x[k] - x0_sigma(s, sigma, eps[k], x[k])) / sigma;
  int order = i + 1 < 4 ? i + 1 : 4;
  float c[4];
  for (int o = 0; o < order; o++) c[o] = (float)lms_coefficient(s->sig, i, order, o);
  int m = order < s->nhist ? order : s->nhist;
  for (size_t k = 0; k < n; k++) {
    float acc = 0.0f + c[0] * s->hist[0][k];
    for (int o = 1; o < m; o++) acc = acc + c[o] * s->hist[o][k];
    x[k] = x[k] + acc;
  }
}

/* alpha_t, sigma_t of a Karras-style sigma (DPM-Solver's _sigma_to_alpha_sigma_t). */
static void alpha_sigma(float sigma, float *alpha, float *sig_t) {
  *alpha = 1.0f / sqrtf(sigma * sigma + 1.0f);
  *sig_t = sigma * *alpha;
}

/* DPM-Solver++(2M), midpoint, lower order at the first and final steps. hist[0] = newest
 * x0 prediction, hist[1] the previous one. */
static void step_dpm(sd__sched *s, int i, const float *eps, float *x, size_t n) {
  float a0, s0;
  alpha_sigma(s->sig[i], &a0, &s0);
  float *tmp = s->hist[1];
  s->hist[1] = s->hist[0];
  s->hist[0] = tmp;
  for (size_t k = 0; k < n; k++)
    s->hist[0][k] = s->v_pred ? a0 * x[k] - s0 * eps[k] : (x[k] - s0 * eps[k]) / a0;
  float at, st;
  alpha_sigma(s->sig[i + 1], &at, &st);
  float lt = sd__torch_logf(at) - sd__torch_logf(st), l0 = sd__torch_logf(a0) - sd__torch_logf(s0);
  float h = lt - l0;
  float ratio = st / s0;
  float b = at * (sd__torch_expf(-h) - 1.0f);
  if (s->lower_order_nums < 1 || i == s->len - 1) {
    for (size_t k = 0; k < n; k++) x[k] = ratio * x[k] - b * s->hist[0][k];
  } else {
    float a1, s1;
    alpha_sigma(s->sig[i - 1], &a1, &s1);
    float l1 = sd__torch_logf(a1) - sd__torch_logf(s1);
    float r0 = (l0 - l1) / h;
    float inv_r0 = 1.0f / r0;
    float c = 0.5f * b;
    for (size_t k = 0; k < n; k++) {
      float d1 = inv_r0 * (s->hist[0][k] - s->hist[1][k]);
      x[k] = ratio * x[k] - b * s->hist[0][k] - c * d1;
    }
  }
  if (s->lower_order_nums < 2) s->lower_order_nums++;
}

/* PNDM's _get_prev_sample (formula 9 of the PNDM paper). */
static void pndm_prev(const sd__sched *s, int t, int prev, const float *mo, const float *sample,
                      float *out, size_t n) {
  float a_t = s->acp[t];
  float a_prev = prev >= 0 ? s->acp[prev] : s->final_acp;
  float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
  float sc = sqrtf(a_prev / a_t);
  float den = a_t * sqrtf(b_prev) + sqrtf(a_t * b_t * a_prev);
  float da = a_prev - a_t;
  float sa = sqrtf(a_t), sb = sqrtf(b_t);
  for (size_t k = 0; k < n; k++) {
    float m = s->v_pred ? sa * mo[k] + sb * sample[k] : mo[k];
    out[k] = sc * sample[k] - da * m / den;
  }
}

/* PLMS (skip_prk_steps): hist[0..3] the model outputs ets (newest first), hist[4] the sample
 * kept between the first two calls; mo is scratch. */
static void step_pndm(sd__sched *s, int i, const float *eps, float *x, size_t n, float *mo) {
  int ratio = s->cfg.num_train_timesteps / s->steps;
  int t = (int)s->ts[i], prev = t - ratio;
  if (s->counter != 1) {
    float *last = s->hist[3];
    memmove(&s->hist[1], &s->hist[0], 3 * sizeof(float *));
    s->hist[0] = last;
    memcpy(s->hist[0], eps, n * sizeof(float));
    if (s->nhist < 4) s->nhist++;
  } else {
    prev = t;
    t = t + ratio;
  }
  float **e = s->hist;
  const float *sample = x;
  if (s->nhist == 1 && s->counter == 0) {
    memcpy(mo, eps, n * sizeof(float));
    memcpy(s->hist[4], x, n * sizeof(float));
  } else if (s->nhist == 1 && s->counter == 1) {
    for (size_t k = 0; k < n; k++) mo[k] = (eps[k] + e[0][k]) / 2.0f;
    sample = s->hist[4];
  } else if (s->nhist == 2) {
    for (size_t k = 0; k < n; k++) mo[k] = (3.0f * e[0][k] - e[1][k]) / 2.0f;
  } else if (s->nhist == 3) {
    for (size_t k = 0; k < n; k++)
      mo[k] = (23.0f * e[0][k] - 16.0f * e[1][k] + 5.0f * e[2][k]) / 12.0f;
  } else {
    const float w = (float)(1.0 / 24.0);
    for (size_t k = 0; k < n; k++)
      mo[k] = w * (55.0f * e[0][k] - 59.0f * e[1][k] + 37.0f * e[2][k] - 9.0f * e[3][k]);
  }
  pndm_prev(s, t, prev, mo, sample, x, n);
  s->counter++;
}

/* Allocate the history and scratch buffers for n-float latents on the first step. */
static sd_status ensure_buffers(sd__sched *s, size_t n, sd_error *err) {
  if (s->scratch) {
    if (s->n == n) return SD_OK;
    return sd__err(err, SD_ERR_INVALID, "latent size changed between steps (%zu, then %zu)",
                   s->n, n);
  }
  for (int i = 0; i < HIST; i++)
    if (!s->hist[i] && !(s->hist[i] = calloc(n ? n : 1, sizeof(float))))
      return sd__err(err, SD_ERR_NOMEM, "out of memory for the sampler history");
  if (!(s->scratch = calloc(n ? n : 1, sizeof(float))))
    return sd__err(err, SD_ERR_NOMEM, "out of memory for the sampler history");
  s->n = n;
  return SD_OK;
}

sd_status sd__sched_step(sd__sched *s, int i, const float *eps, float *latents, size_t n,
                         sd__rng *rng, sd_error *err) {
  if (i < 0 || i >= s->len) return sd__err(err, SD_ERR_INTERNAL, "step %d of %d", i, s->len);
  sd_status st = ensure_buffers(s, n, err);
  if (st != SD_OK) return st;
  float *scratch = s->scratch;
  switch (s->k) {
  case K_DDIM: step_ddim(s, i, eps, latents, n); break;
  case K_DDPM: step_ddpm(s, i, eps, latents, n, rng, scratch); break;
  case K_EULER: step_euler(s, i, eps, latents, n, rng, scratch); break;
  case K_EULER_A: step_euler_a(s, i, eps, latents, n, rng, scratch); break;
  case K_HEUN: step_heun(s, i, eps, latents, n); break;
  case K_LMS: step_lms(s, i, eps, latents, n); break;
  case K_DPMPP: step_dpm(s, i, eps, latents, n); break;
  case K_PNDM: step_pndm(s, i, eps, latents, n, scratch); break;
  }
  return SD_OK;
}

/* ---- image-to-image ---------------------------------------------------------------------- */

int sd__sched_img2img_start(sd__sched *s, int steps, double strength) {
  int order = s->k == K_HEUN ? 2 : 1;
  double prod = steps * strength;
  int init = prod >= steps ? steps : (prod > 0 ? (int)prod : 0);
  int t_start = steps - init > 0 ? steps - init : 0;
  int first = t_start * order;
  if (first > s->len) first = s->len;
  s->nhist = 0;
  s->counter = 0;
  s->heun_second = 0;
  s->lower_order_nums = 0;
  return first;
}

void sd__sched_add_noise(const sd__sched *s, int first_index, const float *x0,
                         const float *noise, float *noised, size_t n) {
  if (first_index < 0 || first_index >= s->len) {
    /* nothing will run: the image latents pass through */
    if (noised != x0) memmove(noised, x0, n * sizeof(float));
    return;
  }
  if (sigma_kind(s)) {
    float sigma = s->sig[first_index];
    for (size_t k = 0; k < n; k++) noised[k] = x0[k] + noise[k] * sigma;
  } else if (s->k == K_DPMPP) {
    float a, sg;
    alpha_sigma(s->sig[first_index], &a, &sg);
    for (size_t k = 0; k < n; k++) noised[k] = a * x0[k] + sg * noise[k];
  } else {
    float acp = s->acp[(int)s->ts[first_index]];
    float sa = sqrtf(acp), sb = sqrtf(1.0f - acp);
    for (size_t k = 0; k < n; k++) noised[k] = sa * x0[k] + sb * noise[k];
  }
}
