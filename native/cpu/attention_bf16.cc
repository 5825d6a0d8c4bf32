// Causal self-attention with bf16 products. The blocking is attention.cc's (64 x 64 score blocks, online softmax,
// the log-sum-exp saved, probabilities recomputed in backward); the block products run on vdpbf16ps with float32
// accumulation, their operands rounded to bf16 as FlashAttention rounds them for tensor cores: Q, K, V and dO, and
// the probabilities P and score gradients dS. Softmax statistics, accumulators (O, dQ, dK, dV) and lse stay float32.
// Blocks are padded to 64 with zeros (rows past T), so every product is a whole 64-wide one: a padded key has zero K
// and V rows (its score is 0 and it adds nothing), a padded query zero Q and dO.
// In a d12 bf16 step at B=4, T=256 attention took 176 ms of ~2400 with float32 products (~110 GFLOP/s).

#include "attention_bf16.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "attention_kernels.h"
#include "gemm.h"  // cpu_has_bf16
#include "threads.h"

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))

namespace {

constexpr int BLK = 64;  // block of queries or keys, and the head size this path takes
constexpr int W = BLK / 2;  // 32-bit words (bf16 pairs) in a row of 64 bf16

// C (M rows of 64 floats, 64 apart) (+)= A B. A: rows of bf16, `lda` apart, read as pairs along k; Bp: B in pair
// words, word k2 * 64 + n = [B(2 k2, n), B(2 k2 + 1, n)], K2 of them per column. R rows at a time in 4R registers.
template <int R>
BF16_TARGET inline void mm_rows(float* C, const uint16_t* A, long lda, const uint32_t* Bp, int K2, bool acc) {
  __m512 c[R][4];
  for (int r = 0; r < R; r++)
    for (int q = 0; q < 4; q++) c[r][q] = acc ? _mm512_loadu_ps(C + r * BLK + 16 * q) : _mm512_setzero_ps();
  for (int k = 0; k < K2; k++) {
    const uint32_t* b = Bp + k * BLK;
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16),
                   b2 = (__m512bh)_mm512_loadu_si512(b + 32), b3 = (__m512bh)_mm512_loadu_si512(b + 48);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      int32_t w;
      std::memcpy(&w, A + r * lda + 2 * k, 4);
      const __m512bh a = (__m512bh)_mm512_set1_epi32(w);
      c[r][0] = _mm512_dpbf16_ps(c[r][0], a, b0);
      c[r][1] = _mm512_dpbf16_ps(c[r][1], a, b1);
      c[r][2] = _mm512_dpbf16_ps(c[r][2], a, b2);
      c[r][3] = _mm512_dpbf16_ps(c[r][3], a, b3);
    }
  }
  for (int r = 0; r < R; r++)
    for (int q = 0; q < 4; q++) _mm512_storeu_ps(C + r * BLK + 16 * q, c[r][q]);
}

BF16_TARGET void mm(float* C, const uint16_t* A, long lda, const uint32_t* Bp, int M, bool acc) {
  int i = 0;
  for (; i + 6 <= M; i += 6) mm_rows<6>(C + i * BLK, A + i * lda, lda, Bp, W, acc);
  float* c = C + i * BLK;
  const uint16_t* a = A + i * lda;
  switch (M - i) {
    case 5: mm_rows<5>(c, a, lda, Bp, W, acc); break;
    case 4: mm_rows<4>(c, a, lda, Bp, W, acc); break;
    case 3: mm_rows<3>(c, a, lda, Bp, W, acc); break;
    case 2: mm_rows<2>(c, a, lda, Bp, W, acc); break;
    case 1: mm_rows<1>(c, a, lda, Bp, W, acc); break;
    default: break;
  }
}

// Pair words of B given as K rows of 64 bf16 (K even): word k2 * 64 + n = [src(2 k2, n), src(2 k2 + 1, n)]
BF16_TARGET void pack_rows(uint32_t* dst, const uint16_t* src, int K) {
  alignas(64) static const uint16_t lo[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                              8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  const __m512i ilo = _mm512_load_si512(lo), ihi = _mm512_add_epi16(ilo, _mm512_set1_epi16(16));
  for (int k = 0; k < K; k += 2, dst += BLK) {
    const uint16_t *a = src + (long)k * BLK, *b = a + BLK;
    for (int h = 0; h < 2; h++) {  // columns 32h .. 32h + 31
      const __m512i x = _mm512_loadu_si512(a + 32 * h), y = _mm512_loadu_si512(b + 32 * h);
      _mm512_storeu_si512(dst + 32 * h, _mm512_permutex2var_epi16(x, ilo, y));
      _mm512_storeu_si512(dst + 32 * h + 16, _mm512_permutex2var_epi16(x, ihi, y));
    }
  }
}

// Pair words of B = X^T for a block of 64 rows of X (64 bf16 each): word k2 * 64 + n = word k2 of X's row n
BF16_TARGET void pack_transposed(uint32_t* dst, const uint16_t* X) {
  attn::transpose_tiles_avx512(reinterpret_cast<float*>(dst), BLK, reinterpret_cast<const float*>(X), W, BLK, W);
}

// a 64 x 64 float32 block as bf16 rows, and as the rows of its transpose (round to nearest even)
BF16_TARGET void to_bf16(uint16_t* dst, const float* src) {
  for (int i = 0; i < BLK * BLK; i += 16)
    _mm256_storeu_si256((__m256i*)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
}
BF16_TARGET void to_bf16_transposed(uint16_t* dst, const float* src) {
  for (int r0 = 0; r0 < BLK; r0 += 16)
    for (int c0 = 0; c0 < BLK; c0 += 16) {
      __m512 t[16];
      for (int i = 0; i < 16; i++) t[i] = _mm512_loadu_ps(src + (r0 + i) * BLK + c0);
      transpose16(t);
      for (int i = 0; i < 16; i++)
        _mm256_storeu_si256((__m256i*)(dst + (c0 + i) * BLK + r0), (__m256i)_mm512_cvtneps_pbh(t[i]));
    }
}

// n rows of a head (`stride` apart from `off` in t) as bf16 rows of 64, then zero rows up to `total`
void rows_bf16(uint16_t* dst, Ten t, long off, long stride, int n, int total) {
  for (int r = 0; r < n; r++) {
    if (t.h) std::memcpy(dst + (long)r * BLK, t.h + off + r * stride, sizeof(uint16_t) * BLK);
    else narrow_row(dst + (long)r * BLK, t.f + off + r * stride, BLK);
  }
  std::memset(dst + (long)n * BLK, 0, sizeof(uint16_t) * BLK * (total - n));
}

void row_out(Ten t, long off, const float* src) {
  if (t.h) narrow_row(t.h + off, src, BLK);
  else std::memcpy(t.f + off, src, sizeof(float) * BLK);
}

// per-thread buffers, kept and only grown (see attention.cc's Scratch)
struct Scratch {
  std::vector<uint16_t> q, k, v, dO;           // Tp x 64 bf16 rows
  std::vector<uint32_t> kt, qp, dop, vp;       // pair words: K^T per block (Tp x 32), Q, dO, V in pairs (Tp/2 x 64)
  std::vector<uint32_t> vt, kp;                // one key block: V^T, K in pairs (32 x 64)
  std::vector<float> S, dP, O, dK, dV, dQ, D;  // 64 x 64 blocks, dQ Tp x 64, D Tp
  std::vector<uint16_t> Pb, Pt, dSb, dSt;      // 64 x 64 bf16
};

Scratch& scratch(int Tp) {
  static thread_local Scratch s;
  const size_t rows = (size_t)Tp * BLK, block = (size_t)BLK * BLK;
  if (s.q.size() < rows) {
    for (auto* x : {&s.q, &s.k, &s.v, &s.dO}) x->resize(rows);
    for (auto* x : {&s.kt, &s.qp, &s.dop, &s.vp}) x->resize(rows / 2);
    s.dQ.resize(rows);
    s.D.resize(Tp);
  }
  if (s.S.size() < block) {
    for (auto* x : {&s.vt, &s.kp}) x->resize(block / 2);
    for (auto* x : {&s.S, &s.dP, &s.O, &s.dK, &s.dV}) x->resize(block);
    for (auto* x : {&s.Pb, &s.Pt, &s.dSb, &s.dSt}) x->resize(block);
  }
  return s;
}

constexpr float kScale = 0.125f;  // 1 / sqrt(64)

BF16_TARGET void head_forward(Ten out, long oo, long ostride, float* lse, Ten qkv, long qo, long stride, long C, int T,
                              Scratch& s) {
  const int Tp = (T + BLK - 1) / BLK * BLK;
  uint16_t *Q = s.q.data(), *K = s.k.data(), *V = s.v.data(), *Pb = s.Pb.data();
  uint32_t *Kt = s.kt.data(), *Vp = s.vp.data();
  float *S = s.S.data(), *O = s.O.data();
  rows_bf16(Q, qkv, qo, stride, T, Tp);
  rows_bf16(K, qkv, qo + C, stride, T, Tp);
  rows_bf16(V, qkv, qo + 2 * C, stride, T, Tp);
  for (int k0 = 0; k0 < Tp; k0 += BLK) pack_transposed(Kt + (long)k0 * W, K + (long)k0 * BLK);
  pack_rows(Vp, V, Tp);
  float m[BLK], l[BLK], o[BLK];
  for (int q0 = 0; q0 < T; q0 += BLK) {
    const int nq = std::min(BLK, T - q0);
    for (int i = 0; i < nq; i++) m[i] = -INFINITY, l[i] = 0.f;
    std::memset(O, 0, sizeof(float) * BLK * BLK);
    for (int k0 = 0; k0 <= q0; k0 += BLK) {
      const int nk = std::min(BLK, T - k0);
      mm(S, Q + (long)q0 * BLK, BLK, Kt + (long)k0 * W, nq, false);  // S = Q K^T
      attn::softmax_rows_avx512(S, BLK, nq, nk, q0 - k0, kScale, m, l, O, BLK);
      to_bf16(Pb, S);
      mm(O, Pb, BLK, Vp + (long)k0 * W, nq, true);  // O += P V
    }
    for (int i = 0; i < nq; i++) {
      const float inv = 1.f / l[i];
      for (int d = 0; d < BLK; d++) o[d] = O[i * BLK + d] * inv;
      row_out(out, oo + (q0 + i) * ostride, o);
      lse[q0 + i] = m[i] + std::log(l[i]);
    }
  }
}

BF16_TARGET void head_backward(Ten dqkv, Ten dout, Ten qkv, Ten out, long qo, long oo, long stride, long ostride,
                               long C, const float* lse, int T, Scratch& s) {
  const int Tp = (T + BLK - 1) / BLK * BLK;
  uint16_t *Q = s.q.data(), *K = s.k.data(), *V = s.v.data(), *dO = s.dO.data();
  uint16_t *Pt = s.Pt.data(), *dSb = s.dSb.data(), *dSt = s.dSt.data();
  uint32_t *Kt = s.kt.data(), *Vt = s.vt.data(), *Kp = s.kp.data(), *Qp = s.qp.data(), *dOp = s.dop.data();
  float *S = s.S.data(), *dP = s.dP.data(), *dK = s.dK.data(), *dV = s.dV.data(), *dQ = s.dQ.data(), *D = s.D.data();
  rows_bf16(Q, qkv, qo, stride, T, Tp);
  rows_bf16(K, qkv, qo + C, stride, T, Tp);
  rows_bf16(V, qkv, qo + 2 * C, stride, T, Tp);
  rows_bf16(dO, dout, oo, ostride, T, Tp);
  // D_t = dO_t . O_t from the bf16 dO the products see (as FlashAttention-2 computes it from its bf16 dO): sum_j P_tj
  // dP_tj is then D_t up to P's rounding, so a row's dS sums to ~0 as it does exactly; from the float32 dO the
  // mismatch shifted a row's dS alike (the gradient's largest error against float32 attention 3.5e-3 -> 2.5e-3).
  float g[BLK];
  for (int t = 0; t < T; t++) {
    widen_row(g, dO + (long)t * BLK, BLK);
    const float* y = load(out, oo + t * ostride, BLK, 1);
    float acc = 0.f;
    for (int d = 0; d < BLK; d++) acc += g[d] * y[d];
    D[t] = acc;
  }
  pack_rows(Qp, Q, Tp);
  pack_rows(dOp, dO, Tp);
  std::memset(dQ, 0, sizeof(float) * Tp * BLK);
  float row[BLK];
  for (int k0 = 0; k0 < T; k0 += BLK) {
    const int nk = std::min(BLK, T - k0);
    pack_transposed(Kt, K + (long)k0 * BLK);
    pack_transposed(Vt, V + (long)k0 * BLK);
    pack_rows(Kp, K + (long)k0 * BLK, BLK);
    std::memset(dK, 0, sizeof(float) * BLK * BLK);
    std::memset(dV, 0, sizeof(float) * BLK * BLK);
    for (int q0 = k0; q0 < T; q0 += BLK) {
      const int nq = std::min(BLK, T - q0);
      mm(S, Q + (long)q0 * BLK, BLK, Kt, nq, false);    // S = Q K^T
      mm(dP, dO + (long)q0 * BLK, BLK, Vt, nq, false);  // dP = dO V^T
      if (nq < BLK) {  // rows past T: zero, so the transposed products below add nothing from them
        std::memset(S + nq * BLK, 0, sizeof(float) * (BLK - nq) * BLK);
        std::memset(dP + nq * BLK, 0, sizeof(float) * (BLK - nq) * BLK);
      }
      attn::grad_rows_avx512(S, dP, BLK, nq, nk, q0 - k0, kScale, lse + q0, D + q0);  // P, and dS over dP
      to_bf16_transposed(Pt, S);
      to_bf16(dSb, dP);
      to_bf16_transposed(dSt, dP);
      mm(dV, Pt, BLK, dOp + (long)q0 * W, nk, true);           // dV += P^T dO
      mm(dQ + (long)q0 * BLK, dSb, BLK, Kp, nq, true);         // dQ += dS K
      mm(dK, dSt, BLK, Qp + (long)q0 * W, nk, true);           // dK += dS^T Q
    }
    for (int j = 0; j < nk; j++) {
      row_out(dqkv, qo + C + (k0 + j) * stride, dK + j * BLK);
      row_out(dqkv, qo + 2 * C + (k0 + j) * stride, dV + j * BLK);
    }
  }
  for (int t = 0; t < T; t++) {
    std::memcpy(row, dQ + (long)t * BLK, sizeof(row));
    row_out(dqkv, qo + t * stride, row);
  }
}

}  // namespace

bool attention_bf16_ok(int hs) { return hs == BLK && cpu_has_bf16(); }

// f(b, h, scratch) for every (batch, head) pair, one at a time per thread (dynamic: a thread slowed by the shared
// machine takes fewer)
template <class F>
static void each_head(int B, int NH, int T, F f) {
#pragma omp parallel
  {
    Scratch& s = scratch((T + BLK - 1) / BLK * BLK);
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int b = 0; b < B; b++)
      for (int h = 0; h < NH; h++) f(b, h, s);
  }
}

void attention_forward_bf16(Ten out, float* lse, Ten qkv, int B, int T, int C, int NH) {
  const long C3 = 3L * C;
  each_head(B, NH, T, [&](int b, int h, Scratch& s) {
    head_forward(out, (long)b * T * C + h * BLK, C, lse + ((long)b * NH + h) * T, qkv, (long)b * T * C3 + h * BLK, C3,
                 C, T, s);
  });
}

void attention_backward_bf16(Ten dqkv, Ten dout, Ten qkv, Ten out, const float* lse, int B, int T, int C, int NH) {
  const long C3 = 3L * C;
  each_head(B, NH, T, [&](int b, int h, Scratch& s) {
    head_backward(dqkv, dout, qkv, out, (long)b * T * C3 + h * BLK, (long)b * T * C + h * BLK, C3, C, C,
                  lse + ((long)b * NH + h) * T, T, s);
  });
}

#else
bool attention_bf16_ok(int) { return false; }
void attention_forward_bf16(Ten, float*, Ten, int, int, int, int) {}
void attention_backward_bf16(Ten, Ten, Ten, Ten, const float*, int, int, int, int) {}
#endif
