/* ops_attn.c: multi-head scaled dot-product attention with an online softmax
 * (softmax(scale * Q K^T) V per head, as diffusers' AttnProcessor and transformers'
 * CLIPAttention compute it, without materialising the Lq x Lk score matrix).
 *
 * One task = (batch, head, tile of ATT_TQ queries); it walks the keys in tiles of ATT_TK,
 * keeping per-query running max m and sum l (Milakov & Gimelshein 2018, "Online normalizer
 * calculation for softmax"), with sgemm for the S = Q K^T and O += P V tiles. Tiles depend
 * only on the shapes, and each task runs on one thread, so results never depend on the
 * thread count.
 */
#include <math.h>
#include <string.h>

#include "ops_impl.h"

/* Query and key tile sizes; -D overrides are for tuning builds only. 128 x 256 measured best
 * of {32, 64, 128} x {256, 512} (CPU time, 2 threads) at SD shapes. */
#ifndef ATT_TQ
#define ATT_TQ 128
#endif
#ifndef ATT_TK
#define ATT_TK 256
#endif

/* Row max of n floats (n >= 1). */
static float row_max(const float *s, int n) {
  __m256 vm = _mm256_set1_ps(-INFINITY);
  int j = 0;
  for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
  float buf[8];
  _mm256_storeu_ps(buf, vm);
  float m = buf[0];
  for (int i = 1; i < 8; i++) m = buf[i] > m ? buf[i] : m;
  for (; j < n; j++) m = s[j] > m ? s[j] : m;
  return m;
}

/* s[j] = exp(s[j] - m) for j < n, zero for n <= j < len; returns the sum (8 fixed lanes). */
static float row_exp_sum(float *s, int n, int len, float m) {
  __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 e = sd__exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
    _mm256_storeu_ps(s + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (j < n) {
    float buf[8] = {0};
    memcpy(buf, s + j, (n - j) * sizeof(float));
    __m256 e = sd__exp8(_mm256_sub_ps(_mm256_loadu_ps(buf), vm));
    /* lanes past n contribute nothing */
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n - j), idx));
    e = _mm256_and_ps(e, keep);
    _mm256_storeu_ps(buf, e);
    memcpy(s + j, buf, (n - j) * sizeof(float));
    acc = _mm256_add_ps(acc, e);
    j = n;
  }
  if (len > n) memset(s + n, 0, (len - n) * sizeof(float));
  float b[8];
  _mm256_storeu_ps(b, acc);
  return ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
}

/* One (batch, head, query tile) task. Q/K/V point at the head's first row. */
static void attn_tile(const float *Q, int qs, const float *K, int ks, const float *V, int vs,
                      int i0, int tq, int Lk, int dh, float scale, int causal, float *S,
                      float *O, float *m, float *l, float *out, int os) {
  for (int i = 0; i < tq; i++) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
  }
  memset(O, 0, (size_t)tq * dh * sizeof(float));
  int kend = Lk;
  if (causal && i0 + tq < kend) kend = i0 + tq; /* keys j <= last query of the tile */
  for (int j0 = 0; j0 < kend; j0 += ATT_TK) {
    int tk = kend - j0 < ATT_TK ? kend - j0 : ATT_TK;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tq, tk, dh, scale, Q, qs,
                K + (size_t)j0 * ks, ks, 0.0f, S, tk);
    for (int i = 0; i < tq; i++) {
      float *sr = S + (size_t)i * tk;
      int nv = tk;
      if (causal) {
        int lim = i0 + i - j0 + 1; /* keys j0 .. i0+i are visible */
        if (lim < nv) nv = lim;
      }
      if (nv <= 0) {
        memset(sr, 0, tk * sizeof(float));
        continue;
      }
      float mx = row_max(sr, nv);
      float mnew = mx > m[i] ? mx : m[i];
      float corr = m[i] == -INFINITY ? 0.0f : sd__exp1(m[i] - mnew);
      float sum = row_exp_sum(sr, nv, tk, mnew);
      l[i] = l[i] * corr + sum;
      m[i] = mnew;
      if (corr != 1.0f) {
        float *orow = O + (size_t)i * dh;
        for (int d = 0; d < dh; d++) orow[d] *= corr;
      }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tq, dh, tk, 1.0f, S, tk,
                V + (size_t)j0 * vs, vs, 1.0f, O, dh);
  }
  for (int i = 0; i < tq; i++) {
    float *orow = O + (size_t)i * dh, *dst = out + (size_t)i * os;
    float inv = l[i];
    for (int d = 0; d < dh; d++) dst[d] = orow[d] / inv;
  }
}

typedef struct attn_job {
  const float *q, *k, *v;
  float *out, *scratch; /* scratch: per floats per worker */
  size_t per;
  int q_stride, k_stride, v_stride, heads, qt, Lq, Lk, dh, tkmax, os, causal;
  float scale;
} attn_job;

/* Task t: query tile t % qt of head (t / qt) % heads of batch t / (heads qt). */
static void attn_task(void *arg, int t, int worker) {
  const attn_job *J = arg;
  const float *q = J->q, *k = J->k, *v = J->v;
  float *out = J->out;
  const int heads = J->heads, qt = J->qt, Lq = J->Lq, Lk = J->Lk, dh = J->dh, os = J->os;
  const int q_stride = J->q_stride, k_stride = J->k_stride, v_stride = J->v_stride;
  const int tkmax = J->tkmax, causal = J->causal;
  const float scale = J->scale;
  int b = t / (heads * qt), rem = t % (heads * qt);
  int h = rem / qt, i0 = (rem % qt) * ATT_TQ;
  int tq = Lq - i0 < ATT_TQ ? Lq - i0 : ATT_TQ;
  float *S = J->scratch + (size_t)worker * J->per;
  float *O = S + (size_t)ATT_TQ * tkmax, *m = O + (size_t)ATT_TQ * dh, *l = m + ATT_TQ;
  const float *Q = q + ((size_t)b * Lq + i0) * q_stride + (size_t)h * dh;
  const float *K = k + (size_t)b * Lk * k_stride + (size_t)h * dh;
  const float *V = v + (size_t)b * Lk * v_stride + (size_t)h * dh;
  float *o = out + ((size_t)b * Lq + i0) * os + (size_t)h * dh;
  attn_tile(Q, q_stride, K, k_stride, V, v_stride, i0, tq, Lk, dh, scale, causal, S, O, m, l,
            o, os);
}

sd_status sd__attention(sd__ctx *ctx, const float *q, int q_stride, const float *k, int k_stride,
                        const float *v, int v_stride, int B, int heads, int Lq, int Lk, int dh,
                        float scale, int causal, float *out) {
  if (B <= 0 || heads <= 0 || Lq <= 0 || dh <= 0) return SD_OK;
  if (Lk <= 0 || !ctx || !ctx->arena) return SD_ERR_INVALID;
  int qt = (Lq + ATT_TQ - 1) / ATT_TQ;
  int tasks = B * heads * qt;
  int nt = sd__nthreads(ctx);
  if (nt > tasks) nt = tasks;
  int tkmax = Lk < ATT_TK ? Lk : ATT_TK;
  size_t per = (size_t)ATT_TQ * tkmax + (size_t)ATT_TQ * dh + 2 * ATT_TQ;
  per = (per + 15) / 16 * 16;
  sd__arena_mark mark = sd__arena_get_mark(ctx->arena);
  float *scratch = sd__arena_floats(ctx->arena, per * nt);
  if (!scratch) return SD_ERR_NOMEM;
  sd__blas_single();
  int os = heads * dh;

  attn_job J = {q, k, v, out, scratch, per, q_stride, k_stride, v_stride, heads, qt, Lq, Lk, dh,
                tkmax, os, causal, scale};
  sd__par_for(ctx, nt > 1, tasks, attn_task, &J);
  sd__arena_reset(ctx->arena, mark);
  return SD_OK;
}
