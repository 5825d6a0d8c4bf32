// Causal self-attention, flash-style: 64 x 64 blocks of scores in thread-local buffers, online softmax; the T x T
// matrix never exists. Forward saves the log-sum-exp per query; backward recomputes the probabilities.
// Threads split the (batch, head) pairs, so gradient writes of different threads never overlap.

#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "fast_exp.h"
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

// ---------------------------------------------------------------- blocked (FlashAttention-2 style) forward/backward
// Queries and keys go in blocks of 64: scores exist for one 64 x 64 block at a time, the softmax is online
// (running max and sum per query), and the small block products run as register-blocked loops over 64 columns.
constexpr int BLK = 64;

// C[M x N] = (acc ? C : 0) + A[M x K] B[K x N], all row-major with leading dimensions. Fast path: 4 rows x 64
// columns held in registers (16 zmm on AVX-512); edges fall back to plain loops.
CLONES static void mm(float* C, long ldc, const float* A, long lda, const float* B, long ldb, int M, int N, int K,
                      bool acc) {
  int i = 0;
  if (N == 64) {
    for (; i + 4 <= M; i += 4) {
      float c[4][64];
      for (int r = 0; r < 4; r++)
        for (int j = 0; j < 64; j++) c[r][j] = acc ? C[(i + r) * ldc + j] : 0.f;
      for (int k = 0; k < K; k++) {
        const float* b = B + k * ldb;
        const float a0 = A[i * lda + k], a1 = A[(i + 1) * lda + k], a2 = A[(i + 2) * lda + k], a3 = A[(i + 3) * lda + k];
#pragma omp simd
        for (int j = 0; j < 64; j++) {
          c[0][j] += a0 * b[j];
          c[1][j] += a1 * b[j];
          c[2][j] += a2 * b[j];
          c[3][j] += a3 * b[j];
        }
      }
      for (int r = 0; r < 4; r++)
        for (int j = 0; j < 64; j++) C[(i + r) * ldc + j] = c[r][j];
    }
  }
  for (; i < M; i++) {
    float* c = C + i * ldc;
    if (!acc)
      for (int j = 0; j < N; j++) c[j] = 0.f;
    for (int k = 0; k < K; k++) {
      const float a = A[i * lda + k];
      const float* b = B + k * ldb;
#pragma omp simd
      for (int j = 0; j < N; j++) c[j] += a * b[j];
    }
  }
}

// dst[c * ld + r] = src[r * sld + c] for an R x Cn block
static inline void transpose(float* dst, long ld, const float* src, long sld, int R, int Cn) {
  for (int r = 0; r < R; r++)
    for (int c = 0; c < Cn; c++) dst[c * ld + r] = src[r * sld + c];
}

struct Scratch {
  std::vector<float> a, b, c, d, e, f;
  explicit Scratch(int hs) : a(BLK * hs), b(BLK * hs), c(BLK * hs), d(BLK * BLK), e(BLK * BLK), f(BLK * hs) {}
};

// One (batch, head). q, k, v rows are `stride` floats apart; out rows `ostride`.
CLONES static void attn_head_forward(float* out, float* lse, const float* q, const float* k, const float* v, long stride,
                              long ostride, int T, int hs, Scratch& s) {
  const float scale = 1.f / std::sqrt((float)hs);
  float *Kt = s.a.data(), *Vb = s.b.data(), *O = s.c.data(), *S = s.d.data();
  float m[BLK], l[BLK];
  for (int q0 = 0; q0 < T; q0 += BLK) {
    const int nq = std::min(BLK, T - q0);
    for (int i = 0; i < nq; i++) m[i] = -INFINITY, l[i] = 0.f;
    std::memset(O, 0, sizeof(float) * nq * hs);
    for (int k0 = 0; k0 < q0 + nq; k0 += BLK) {
      const int nk = std::min(BLK, T - k0);
      transpose(Kt, nk, k + k0 * stride, stride, nk, hs);  // Kt: hs x nk
      for (int j = 0; j < nk; j++) std::memcpy(Vb + j * hs, v + (k0 + j) * stride, sizeof(float) * hs);
      mm(S, nk, q + q0 * stride, stride, Kt, nk, nq, nk, hs, false);  // S = Q K^T
      for (int i = 0; i < nq; i++) {
        float* row = S + i * nk;
        const int valid = std::min(nk, q0 + i - k0 + 1);  // causal: keys <= this query
        float mx = m[i];
        for (int j = 0; j < valid; j++) mx = std::max(mx, row[j] * scale);
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < valid; j++) {
          row[j] = fast_exp(row[j] * scale - mx);
          sum += row[j];
        }
        for (int j = std::max(valid, 0); j < nk; j++) row[j] = 0.f;
        const float corr = std::exp(m[i] - mx);
        l[i] = l[i] * corr + sum;
        m[i] = mx;
        if (corr != 1.f)
          for (int d = 0; d < hs; d++) O[i * hs + d] *= corr;
      }
      mm(O, hs, S, nk, Vb, hs, nq, hs, nk, true);  // O += P V
    }
    for (int i = 0; i < nq; i++) {
      float* o = out + (q0 + i) * ostride;
      const float inv = 1.f / l[i];
      for (int d = 0; d < hs; d++) o[d] = O[i * hs + d] * inv;
      lse[q0 + i] = m[i] + std::log(l[i]);
    }
  }
}

void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH) {
  const int hs = C / NH;
  const long C3 = 3L * C;
#pragma omp parallel
  {
    Scratch s(hs);
#pragma omp for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
      for (int h = 0; h < NH; h++) {
        const float* q = qkv + (long)b * T * C3 + h * hs;
        attn_head_forward(out + (long)b * T * C + h * hs, lse + ((long)b * NH + h) * T, q, q + C, q + 2 * C, C3, C,
                          T, hs, s);
      }
  }
}

// dq, dk, dv rows `stride` apart (inside dqkv), zeroed by the caller.
CLONES static void attn_head_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                               const float* v, const float* out, const float* lse, long stride, long ostride, int T,
                               int hs, Scratch& s, std::vector<float>& D) {
  const float scale = 1.f / std::sqrt((float)hs);
  for (int t = 0; t < T; t++) {
    float acc = 0.f;
    for (int d = 0; d < hs; d++) acc += dout[t * ostride + d] * out[t * ostride + d];
    D[t] = acc;
  }
  float *Kt = s.a.data(), *Vt = s.b.data(), *dK = s.c.data(), *P = s.d.data(), *dS = s.e.data(), *dV = s.f.data();
  std::vector<float> T1(BLK * BLK);
  for (int k0 = 0; k0 < T; k0 += BLK) {
    const int nk = std::min(BLK, T - k0);
    transpose(Kt, nk, k + k0 * stride, stride, nk, hs);  // hs x nk
    transpose(Vt, nk, v + k0 * stride, stride, nk, hs);  // hs x nk
    std::memset(dK, 0, sizeof(float) * nk * hs);
    std::memset(dV, 0, sizeof(float) * nk * hs);
    for (int q0 = (k0 / BLK) * BLK; q0 < T; q0 += BLK) {
      const int nq = std::min(BLK, T - q0);
      const float* Q = q + q0 * stride;
      const float* dO = dout + q0 * ostride;
      mm(P, nk, Q, stride, Kt, nk, nq, nk, hs, false);    // S = Q K^T
      mm(dS, nk, dO, ostride, Vt, nk, nq, nk, hs, false);  // dP = dO V^T
      for (int i = 0; i < nq; i++) {
        const int valid = std::min(nk, q0 + i - k0 + 1);
        const float l = lse[q0 + i], Di = D[q0 + i];
        float* p = P + i * nk;
        float* ds = dS + i * nk;
#pragma omp simd
        for (int j = 0; j < nk; j++) {
          const float pj = j < valid ? fast_exp(p[j] * scale - l) : 0.f;
          p[j] = pj;
          ds[j] = pj * (ds[j] - Di) * scale;
        }
      }
      transpose(T1.data(), nq, P, nk, nq, nk);            // P^T: nk x nq
      mm(dV, hs, T1.data(), nq, dO, ostride, nk, hs, nq, true);  // dV += P^T dO
      mm(dq + q0 * stride, stride, dS, nk, k + k0 * stride, stride, nq, hs, nk, true);  // dQ += dS K
      transpose(T1.data(), nq, dS, nk, nq, nk);           // dS^T: nk x nq
      mm(dK, hs, T1.data(), nq, Q, stride, nk, hs, nq, true);  // dK += dS^T Q
    }
    for (int j = 0; j < nk; j++)
      for (int d = 0; d < hs; d++) {
        dk[(k0 + j) * stride + d] += dK[j * hs + d];
        dv[(k0 + j) * stride + d] += dV[j * hs + d];
      }
  }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse, int B,
                        int T, int C, int NH) {
  const int hs = C / NH;
  const long C3 = 3L * C;
#pragma omp parallel
  {
    Scratch s(hs);
    std::vector<float> D(T);
#pragma omp for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
      for (int h = 0; h < NH; h++) {
        // this head's slice of dq, dk, dv is overwritten, not accumulated
        float* d = dqkv + (long)b * T * C3 + h * hs;
        for (int t = 0; t < T; t++)
          for (int part = 0; part < 3; part++) std::memset(d + t * C3 + part * C, 0, sizeof(float) * hs);
        const float* q = qkv + (long)b * T * C3 + h * hs;
        const long o = (long)b * T * C + h * hs;
        attn_head_backward(d, d + C, d + 2 * C, dout + o, q, q + C, q + 2 * C, out + o, lse + ((long)b * NH + h) * T,
                           C3, C, T, hs, s, D);
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
  // one new token over a short cache is too little work to wake the team for
#pragma omp parallel if ((long)B * Tq * (pos + Tq) * C >= (1L << 17))
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
