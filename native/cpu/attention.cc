// Causal self-attention, flash-style: 64 x 64 blocks of scores in thread-local buffers, online softmax; the T x T
// matrix never exists. Forward saves the log-sum-exp per query; backward recomputes the probabilities.
// Threads take (batch, head) pairs one at a time (dynamic: a thread slowed by the shared machine takes fewer), so
// gradient writes of different threads never overlap. On AVX-512 the block products, the exponentials and the
// transposes run in registers (`node dist/bench/attention.js` measures them against the FMA peak).

#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "fast_exp.h"
#include "attention_bf16.h"
#include "attention_kernels.h"
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

#if defined(__x86_64__)
static const bool kAvx512 = __builtin_cpu_supports("avx512f");
using attn::mm64_avx512, attn::transpose_tiles_avx512, attn::softmax_rows_avx512, attn::grad_rows_avx512;
#endif

// C[M x N] = (acc ? C : 0) + A B, with A[i][k] at A[i * rsa + k * csa] (so A^T is rsa = 1, csa = its row length)
// and B[K x N] row-major. 64 columns (a block of keys, or a 64-wide head) run register-blocked on AVX-512;
// other shapes and CPUs take plain loops.
CLONES static void mm(float* C, long ldc, const float* A, long rsa, long csa, const float* B, long ldb, int M, int N,
                      int K, bool acc) {
#if defined(__x86_64__)
  if (N == 64 && kAvx512) return mm64_avx512(C, ldc, A, rsa, csa, B, ldb, M, K, acc);
#endif
  for (int i = 0; i < M; i++) {
    float* c = C + i * ldc;
    if (!acc)
      for (int j = 0; j < N; j++) c[j] = 0.f;
    for (int k = 0; k < K; k++) {
      const float a = A[i * rsa + k * csa];
      const float* b = B + k * ldb;
#pragma omp simd
      for (int j = 0; j < N; j++) c[j] += a * b[j];
    }
  }
}

// dst[c * ld + r] = src[r * sld + c] for an R x Cn block: 16 x 16 tiles transposed in registers on AVX-512 (the
// scalar loop's strided 4-byte stores were a tenth of the forward's time), the edges one by one
static void transpose(float* dst, long ld, const float* src, long sld, int R, int Cn) {
  int r16 = 0, c16 = 0;
#if defined(__x86_64__)
  if (kAvx512) {
    r16 = R / 16 * 16, c16 = Cn / 16 * 16;
    transpose_tiles_avx512(dst, ld, src, sld, r16, c16);
  }
#endif
  for (int r = 0; r < R; r++)
    for (int c = r < r16 ? c16 : 0; c < Cn; c++) dst[c * ld + r] = src[r * sld + c];
}

// Per-thread buffers: whole-head copies (T x hs, rows contiguous: a head's rows inside qkv are 3C floats apart,
// a stride at which 64 rows share a quarter of L1's sets) and 64-row blocks.
// Kept per thread between calls and only ever grown: allocating them per call costs page faults every time (glibc
// maps blocks this large afresh), which showed as a third of the forward's time.
struct Scratch {
  std::vector<float> h1, h2, h3;                 // T x hs
  std::vector<float> kt, kb, vt, o, dk, dv;      // 64 x hs
  std::vector<float> s, ds, D;                   // 64 x 64, and T
};

static Scratch& scratch(int T, int hs) {
  static thread_local Scratch s;
  const size_t head = (size_t)T * hs, block = (size_t)BLK * hs;
  if (s.h1.size() < head)
    for (auto* v : {&s.h1, &s.h2, &s.h3}) v->resize(head);
  if (s.kt.size() < block)
    for (auto* v : {&s.kt, &s.kb, &s.vt, &s.o, &s.dk, &s.dv}) v->resize(block);
  if (s.s.size() < (size_t)BLK * BLK)
    for (auto* v : {&s.s, &s.ds}) v->resize((size_t)BLK * BLK);
  if (s.D.size() < (size_t)T) s.D.resize(T);
  return s;
}

// dst[r * hs + c] = src[r * stride + c]: R rows of one head into contiguous memory
static inline void gather_rows(float* dst, const float* src, long stride, int R, int hs) {
  for (int r = 0; r < R; r++) std::memcpy(dst + (long)r * hs, src + r * stride, sizeof(float) * hs);
}

// ---------------------------------------------------------------- the softmax around the block products
// Row i of a score block sees keys k0 .. k0 + valid - 1 with valid = min(nk, diag + i + 1), diag = q0 - k0 (causal).
// Forward: online softmax over one block of raw scores S (nq x nk): running max m and sum l per query, S turned into
// the block's unnormalised probabilities, and the output rows O rescaled when the max moves.
CLONES static void softmax_rows(float* S, int nq, int nk, int diag, float scale, float* m, float* l, float* O, int hs) {
  for (int i = 0; i < nq; i++) {
    float* row = S + i * nk;
    const int valid = std::min(nk, diag + i + 1);
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < valid; j++) mx = std::max(mx, row[j]);
    mx = std::max(m[i], mx * scale);
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < nk; j++) {
      const float p = j < valid ? fast_exp(row[j] * scale - mx) : 0.f;
      row[j] = p;
      sum += p;
    }
    const float corr = std::exp(m[i] - mx);
    l[i] = l[i] * corr + sum;
    m[i] = mx;
    if (corr != 1.f) {
      float* o = O + i * hs;
#pragma omp simd
      for (int d = 0; d < hs; d++) o[d] *= corr;
    }
  }
}

// Backward: probabilities P = exp(S * scale - lse) recomputed over the raw scores, and dS = P (dP - D) scale over dP.
CLONES static void grad_rows(float* P, float* dS, int nq, int nk, int diag, float scale, const float* lse,
                             const float* D) {
  for (int i = 0; i < nq; i++) {
    const int valid = std::min(nk, diag + i + 1);
    const float li = lse[i], Di = D[i];
    float* p = P + i * nk;
    float* ds = dS + i * nk;
#pragma omp simd
    for (int j = 0; j < nk; j++) {
      const float pj = j < valid ? fast_exp(p[j] * scale - li) : 0.f;
      p[j] = pj;
      ds[j] = pj * (ds[j] - Di) * scale;
    }
  }
}


static void softmax_block(float* S, int nq, int nk, int diag, float scale, float* m, float* l, float* O, int hs) {
#if defined(__x86_64__)
  if (kAvx512) return softmax_rows_avx512(S, nk, nq, nk, diag, scale, m, l, O, hs);
#endif
  softmax_rows(S, nq, nk, diag, scale, m, l, O, hs);
}

static void grad_block(float* P, float* dS, int nq, int nk, int diag, float scale, const float* lse, const float* D) {
#if defined(__x86_64__)
  if (kAvx512) return grad_rows_avx512(P, dS, nk, nq, nk, diag, scale, lse, D);
#endif
  grad_rows(P, dS, nq, nk, diag, scale, lse, D);
}

// One (batch, head). q, k, v rows are `stride` floats apart; out rows `ostride`. K^T and V are copied once per head
// into contiguous panels, so each block product streams 16 KB of contiguous memory.
CLONES static void attn_head_forward(float* out, float* lse, const float* q, const float* k, const float* v, long stride,
                              long ostride, int T, int hs, Scratch& s) {
  const float scale = 1.f / std::sqrt((float)hs);
  float *Kt = s.h1.data(), *V = s.h2.data(), *O = s.o.data(), *S = s.s.data();
  float m[BLK], l[BLK];
  // K^T as one hs x nk panel per key block (at Kt + k0 * hs; a whole-head hs x T matrix would put its rows T * 4
  // bytes apart, the same L1 sets again)
  for (int k0 = 0; k0 < T; k0 += BLK) {
    const int nk = std::min(BLK, T - k0);
    transpose(Kt + (long)k0 * hs, nk, k + k0 * stride, stride, nk, hs);
  }
  gather_rows(V, v, stride, T, hs);
  for (int q0 = 0; q0 < T; q0 += BLK) {
    const int nq = std::min(BLK, T - q0);
    for (int i = 0; i < nq; i++) m[i] = -INFINITY, l[i] = 0.f;
    std::memset(O, 0, sizeof(float) * nq * hs);
    for (int k0 = 0; k0 < q0 + nq; k0 += BLK) {
      const int nk = std::min(BLK, T - k0);
      mm(S, nk, q + q0 * stride, stride, 1, Kt + (long)k0 * hs, nk, nq, nk, hs, false);  // S = Q K^T
      softmax_block(S, nq, nk, q0 - k0, scale, m, l, O, hs);
      mm(O, hs, S, nk, 1, V + (long)k0 * hs, hs, nq, hs, nk, true);  // O += P V
    }
    for (int i = 0; i < nq; i++) {
      float* o = out + (q0 + i) * ostride;
      const float inv = 1.f / l[i];
      for (int d = 0; d < hs; d++) o[d] = O[i * hs + d] * inv;
      lse[q0 + i] = m[i] + std::log(l[i]);
    }
  }
}

// A head's T rows (`stride` apart from `off` in t) to and from T x hs contiguous float32: how bf16 storage meets the
// float32 kernels (the rows are staged per head: the kernels' own per-head copies are of the same size).
static void head_in(float* dst, Ten t, long off, long stride, int T, int hs) {
  for (int r = 0; r < T; r++) {
    if (t.h) widen_row(dst + (long)r * hs, t.h + off + r * stride, hs);
    else std::memcpy(dst + (long)r * hs, t.f + off + r * stride, sizeof(float) * hs);
  }
}
static void head_out(Ten t, long off, long stride, const float* src, int T, int hs) {
  for (int r = 0; r < T; r++) {
    if (t.h) narrow_row(t.h + off + r * stride, src + (long)r * hs, hs);
    else std::memcpy(t.f + off + r * stride, src + (long)r * hs, sizeof(float) * hs);
  }
}

void attention_forward(Ten out, float* lse, Ten qkv, int B, int T, int C, int NH, bool bf16) {
  const int hs = C / NH;
  if (bf16 && attention_bf16_ok(hs)) return attention_forward_bf16(out, lse, qkv, B, T, C, NH);
  const long C3 = 3L * C;
  const bool staged = out.h || qkv.h;
#pragma omp parallel
  {
    Scratch& s = scratch(T, hs);
    const size_t head = (size_t)T * hs;
    float* Q = staged ? stage(0, 4 * head) : nullptr;
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int b = 0; b < B; b++)
      for (int h = 0; h < NH; h++) {
        const long qo = (long)b * T * C3 + h * hs, oo = (long)b * T * C + h * hs;
        float* l = lse + ((long)b * NH + h) * T;
        if (!staged) {
          const float* q = qkv.f + qo;
          attn_head_forward(out.f + oo, l, q, q + C, q + 2 * C, C3, C, T, hs, s);
          continue;
        }
        float *K = Q + head, *V = K + head, *O = V + head;
        head_in(Q, qkv, qo, C3, T, hs);
        head_in(K, qkv, qo + C, C3, T, hs);
        head_in(V, qkv, qo + 2 * C, C3, T, hs);
        attn_head_forward(O, l, Q, K, V, hs, hs, T, hs, s);
        head_out(out, oo, C, O, T, hs);
      }
  }
}

// dq, dk, dv rows `stride` apart (inside dqkv), each written once. Key blocks outside, query blocks inside: each
// key block's dK and dV stay in scratch until its last query block; P^T and dS^T are read in place (as A^T).
CLONES static void attn_head_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                               const float* v, const float* out, const float* lse, long stride, long ostride, int T,
                               int hs, Scratch& s) {
  const float scale = 1.f / std::sqrt((float)hs);
  float* D = s.D.data();  // D_t = dO_t . O_t
  for (int t = 0; t < T; t++) {
    float acc = 0.f;
    for (int d = 0; d < hs; d++) acc += dout[t * ostride + d] * out[t * ostride + d];
    D[t] = acc;
  }
  // Q, dO and dQ of the whole head in contiguous rows; K, K^T and V^T of one key block at a time
  float *Qh = s.h1.data(), *dOh = s.h2.data(), *dQh = s.h3.data();
  float *Kt = s.kt.data(), *Kb = s.kb.data(), *Vt = s.vt.data(), *dK = s.dk.data(), *dV = s.dv.data();
  float *P = s.s.data(), *dS = s.ds.data();
  gather_rows(Qh, q, stride, T, hs);
  gather_rows(dOh, dout, ostride, T, hs);
  std::memset(dQh, 0, sizeof(float) * T * hs);
  for (int k0 = 0; k0 < T; k0 += BLK) {
    const int nk = std::min(BLK, T - k0);
    gather_rows(Kb, k + k0 * stride, stride, nk, hs);
    transpose(Kt, nk, Kb, hs, nk, hs);  // hs x nk
    transpose(Vt, nk, v + k0 * stride, stride, nk, hs);  // hs x nk
    std::memset(dK, 0, sizeof(float) * nk * hs);
    std::memset(dV, 0, sizeof(float) * nk * hs);
    for (int q0 = (k0 / BLK) * BLK; q0 < T; q0 += BLK) {
      const int nq = std::min(BLK, T - q0);
      const float* Q = Qh + (long)q0 * hs;
      const float* dO = dOh + (long)q0 * hs;
      mm(P, nk, Q, hs, 1, Kt, nk, nq, nk, hs, false);                // S = Q K^T
      mm(dS, nk, dO, hs, 1, Vt, nk, nq, nk, hs, false);              // dP = dO V^T
      grad_block(P, dS, nq, nk, q0 - k0, scale, lse + q0, D + q0);
      mm(dV, hs, P, 1, nk, dO, hs, nk, hs, nq, true);                // dV += P^T dO
      mm(dQh + (long)q0 * hs, hs, dS, nk, 1, Kb, hs, nq, hs, nk, true);  // dQ += dS K
      mm(dK, hs, dS, 1, nk, Q, hs, nk, hs, nq, true);                // dK += dS^T Q
    }
    for (int j = 0; j < nk; j++)
      for (int d = 0; d < hs; d++) {
        dk[(k0 + j) * stride + d] = dK[j * hs + d];
        dv[(k0 + j) * stride + d] = dV[j * hs + d];
      }
  }
  for (int t = 0; t < T; t++)
    for (int d = 0; d < hs; d++) dq[t * stride + d] = dQh[(long)t * hs + d];
}

void attention_backward(Ten dqkv, Ten dout, Ten qkv, Ten out, const float* lse, int B, int T, int C, int NH, bool bf16) {
  const int hs = C / NH;
  if (bf16 && attention_bf16_ok(hs)) return attention_backward_bf16(dqkv, dout, qkv, out, lse, B, T, C, NH);
  const long C3 = 3L * C;
  const bool staged = dqkv.h || dout.h || qkv.h || out.h;
#pragma omp parallel
  {
    Scratch& s = scratch(T, hs);
    const size_t head = (size_t)T * hs;
    float* Q = staged ? stage(0, 8 * head) : nullptr;
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int b = 0; b < B; b++)
      for (int h = 0; h < NH; h++) {
        // this head's slice of dq, dk, dv is overwritten, not accumulated
        const long qo = (long)b * T * C3 + h * hs, o = (long)b * T * C + h * hs;
        const float* l = lse + ((long)b * NH + h) * T;
        if (!staged) {
          float* d = dqkv.f + qo;
          const float* q = qkv.f + qo;
          attn_head_backward(d, d + C, d + 2 * C, dout.f + o, q, q + C, q + 2 * C, out.f + o, l, C3, C, T, hs, s);
          continue;
        }
        float *K = Q + head, *V = K + head, *dO = V + head, *O = dO + head, *dQ = O + head, *dK = dQ + head, *dV = dK + head;
        head_in(Q, qkv, qo, C3, T, hs);
        head_in(K, qkv, qo + C, C3, T, hs);
        head_in(V, qkv, qo + 2 * C, C3, T, hs);
        head_in(dO, dout, o, C, T, hs);
        head_in(O, out, o, C, T, hs);
        attn_head_backward(dQ, dK, dV, dO, Q, K, V, O, l, hs, hs, T, hs, s);
        head_out(dqkv, qo, C3, dQ, T, hs);
        head_out(dqkv, qo + C, C3, dK, T, hs);
        head_out(dqkv, qo + 2 * C, C3, dV, T, hs);
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
