// Causal self-attention, flash-style: per query, one row of scores (length <= T) in a thread-local buffer; the
// T x T matrix never exists. Forward saves the log-sum-exp per query; backward recomputes the probabilities.
// Threads split the (batch, head) pairs, so gradient writes of different threads never overlap.

#include <cmath>
#include <cstring>
#include <vector>

#include "layers.h"
#include "threads.h"

#if defined(__x86_64__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

static inline float dot(const float* a, const float* b, int n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

static inline void axpy(float* y, float a, const float* x, int n) {
#pragma omp simd
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

// One (batch, head): q, k, v rows are `stride` floats apart; out rows `ostride` apart.
CLONES static void attn_head_forward(float* out, float* lse, const float* q, const float* k, const float* v, long stride,
                                     long ostride, int T, int hs, float* scores) {
  const float scale = 1.f / std::sqrt((float)hs);
  for (int t = 0; t < T; t++) {
    const float* qt = q + t * stride;
    float mx = -INFINITY;
    for (int j = 0; j <= t; j++) {
      const float s = dot(qt, k + j * stride, hs) * scale;
      scores[j] = s;
      mx = s > mx ? s : mx;
    }
    float sum = 0.f;
    for (int j = 0; j <= t; j++) {
      scores[j] = std::exp(scores[j] - mx);
      sum += scores[j];
    }
    float* o = out + t * ostride;
    std::memset(o, 0, sizeof(float) * hs);
    const float inv = 1.f / sum;
    for (int j = 0; j <= t; j++) axpy(o, scores[j] * inv, v + j * stride, hs);
    lse[t] = mx + std::log(sum);
  }
}

void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH) {
  const int hs = C / NH;
  const long C3 = 3L * C;
#pragma omp parallel
  {
    std::vector<float> scores(T);
#pragma omp for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
      for (int h = 0; h < NH; h++) {
        const float* q = qkv + (long)b * T * C3 + h * hs;
        attn_head_forward(out + (long)b * T * C + h * hs, lse + ((long)b * NH + h) * T, q, q + C, q + 2 * C, C3, C,
                          T, hs, scores.data());
      }
  }
}

CLONES static void attn_head_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                      const float* k, const float* v, const float* out, const float* lse, long stride,
                                      long ostride, int T, int hs, float* p, float* ds) {
  const float scale = 1.f / std::sqrt((float)hs);
  for (int t = 0; t < T; t++) {
    const float* qt = q + t * stride;
    const float* dot_ = dout + t * ostride;
    const float D = dot(dot_, out + t * ostride, hs);
    for (int j = 0; j <= t; j++) {
      p[j] = std::exp(dot(qt, k + j * stride, hs) * scale - lse[t]);
      ds[j] = p[j] * (dot(dot_, v + j * stride, hs) - D) * scale;
    }
    float* dqt = dq + t * stride;
    for (int j = 0; j <= t; j++) {
      axpy(dqt, ds[j], k + j * stride, hs);
      axpy(dk + j * stride, ds[j], qt, hs);
      axpy(dv + j * stride, p[j], dot_, hs);
    }
  }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse, int B,
                        int T, int C, int NH) {
  const int hs = C / NH;
  const long C3 = 3L * C;
#pragma omp parallel
  {
    std::vector<float> p(T), ds(T);
#pragma omp for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
      for (int h = 0; h < NH; h++) {
        // zero this head's slice of dq, dk, dv (dqkv is overwritten, not accumulated)
        float* d = dqkv + (long)b * T * C3 + h * hs;
        for (int t = 0; t < T; t++)
          for (int part = 0; part < 3; part++) std::memset(d + t * C3 + part * C, 0, sizeof(float) * hs);
        const float* q = qkv + (long)b * T * C3 + h * hs;
        const long o = (long)b * T * C + h * hs;
        attn_head_backward(d, d + C, d + 2 * C, dout + o, q, q + C, q + 2 * C, out + o, lse + ((long)b * NH + h) * T,
                           C3, C, T, hs, p.data(), ds.data());
      }
  }
}

CLONES static void attn_head_cached(float* out, float* kc, float* vc, const float* q, long stride, long ostride, int Tq,
                                    int pos, int hs, float* scores) {
  const float scale = 1.f / std::sqrt((float)hs);
  const float* k = q + stride / 3;  // q, k, v of a row are C = stride/3 apart
  const float* v = q + 2 * (stride / 3);
  for (int t = 0; t < Tq; t++) {
    std::memcpy(kc + (long)(pos + t) * hs, k + t * stride, sizeof(float) * hs);
    std::memcpy(vc + (long)(pos + t) * hs, v + t * stride, sizeof(float) * hs);
  }
  for (int t = 0; t < Tq; t++) {
    const float* qt = q + t * stride;
    const int last = pos + t;
    float mx = -INFINITY;
    for (int j = 0; j <= last; j++) {
      const float s = dot(qt, kc + (long)j * hs, hs) * scale;
      scores[j] = s;
      mx = s > mx ? s : mx;
    }
    float sum = 0.f;
    for (int j = 0; j <= last; j++) {
      scores[j] = std::exp(scores[j] - mx);
      sum += scores[j];
    }
    float* o = out + t * ostride;
    std::memset(o, 0, sizeof(float) * hs);
    const float inv = 1.f / sum;
    for (int j = 0; j <= last; j++) axpy(o, scores[j] * inv, vc + (long)j * hs, hs);
  }
}

void attention_cached(float* out, float* kcache, float* vcache, const float* qkv, int B, int Tq, int pos, int maxT,
                      int C, int NH) {
  const int hs = C / NH;
  const long C3 = 3L * C;
#pragma omp parallel
  {
    std::vector<float> scores(maxT);
#pragma omp for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
      for (int h = 0; h < NH; h++) {
        const long cache = ((long)b * NH + h) * maxT * hs;
        attn_head_cached(out + (long)b * Tq * C + h * hs, kcache + cache, vcache + cache,
                         qkv + (long)b * Tq * C3 + h * hs, C3, C, Tq, pos, hs, scores.data());
      }
  }
}
