// AVX-512 pieces of attention.cc: the 64-column block products in registers, 16 x 16 tile transposes, and the
// softmax rows around the products with a polynomial 2^t. They carry target attributes, so one build runs on any
// x86-64 and attention.cc picks them at run time; attention.cc keeps the portable loops they stand in for.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "fast_exp.h"      // exp2_avx512
#include "gemm_kernels.h"  // transpose16

namespace attn {

using ::exp2_avx512;

// R rows x 64 columns of C held in 4R zmm registers (R <= 6: 24 accumulators + 4 rows of B + 1 broadcast).
template <int R>
__attribute__((target("avx512f,fma"))) inline void mm64_rows(float* C, long ldc, const float* A, long rsa, long csa,
              const float* B, long ldb, int K, bool acc) {
  __m512 c[R][4];
  for (int r = 0; r < R; r++)
    for (int j = 0; j < 4; j++) c[r][j] = acc ? _mm512_loadu_ps(C + r * ldc + 16 * j) : _mm512_setzero_ps();
  for (int k = 0; k < K; k++) {
    const float* b = B + k * ldb;
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32),
                 b3 = _mm512_loadu_ps(b + 48);
    const float* a = A + k * csa;
    for (int r = 0; r < R; r++) {
      const __m512 ar = _mm512_set1_ps(a[r * rsa]);
      c[r][0] = _mm512_fmadd_ps(ar, b0, c[r][0]);
      c[r][1] = _mm512_fmadd_ps(ar, b1, c[r][1]);
      c[r][2] = _mm512_fmadd_ps(ar, b2, c[r][2]);
      c[r][3] = _mm512_fmadd_ps(ar, b3, c[r][3]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int j = 0; j < 4; j++) _mm512_storeu_ps(C + r * ldc + 16 * j, c[r][j]);
}

__attribute__((target("avx512f,fma"))) inline void mm64_avx512(float* C, long ldc, const float* A, long rsa, long csa,
              const float* B, long ldb, int M, int K, bool acc) {
  int i = 0;
  for (; i + 6 <= M; i += 6) mm64_rows<6>(C + i * ldc, ldc, A + i * rsa, rsa, csa, B, ldb, K, acc);
  const float* a = A + i * rsa;
  float* c = C + i * ldc;
  switch (M - i) {
    case 5: mm64_rows<5>(c, ldc, a, rsa, csa, B, ldb, K, acc); break;
    case 4: mm64_rows<4>(c, ldc, a, rsa, csa, B, ldb, K, acc); break;
    case 3: mm64_rows<3>(c, ldc, a, rsa, csa, B, ldb, K, acc); break;
    case 2: mm64_rows<2>(c, ldc, a, rsa, csa, B, ldb, K, acc); break;
    case 1: mm64_rows<1>(c, ldc, a, rsa, csa, B, ldb, K, acc); break;
    default: break;
  }
}

// the R x Cn block (both multiples of 16) of transpose() below
__attribute__((target("avx512f"))) inline void transpose_tiles_avx512(float* dst, long ld, const float* src, long sld,
              int R, int Cn) {
  for (int r0 = 0; r0 < R; r0 += 16)
    for (int c0 = 0; c0 < Cn; c0 += 16) {
      __m512 t[16];
      for (int i = 0; i < 16; i++) t[i] = _mm512_loadu_ps(src + (r0 + i) * sld + c0);
      transpose16(t);
      for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (c0 + i) * ld + r0, t[i]);
    }
}

// lanes j0 .. j0 + 15 that are below `valid`
inline __mmask16 lanes_below(int valid, int j0) {
  const int n = valid - j0;
  return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

// rows of S are `ld` floats apart (nk, or a whole block's 64 in attention_bf16.cc)
__attribute__((target("avx512f,fma"))) inline void softmax_rows_avx512(float* S, long ld, int nq, int nk, int diag,
              float scale, float* m, float* l, float* O, int hs) {
  const __m512 a = _mm512_set1_ps(scale * kLog2e);
  for (int i = 0; i < nq; i++) {
    float* row = S + i * ld;
    const int valid = std::min(nk, diag + i + 1);
    __m512 vmax, vsum, b;
    float mx;
    if (valid == 64 && nk == 64) {  // a whole row of keys (every block below the diagonal): no masks
      const __m512 x0 = _mm512_loadu_ps(row), x1 = _mm512_loadu_ps(row + 16), x2 = _mm512_loadu_ps(row + 32),
                   x3 = _mm512_loadu_ps(row + 48);
      vmax = _mm512_max_ps(_mm512_max_ps(x0, x1), _mm512_max_ps(x2, x3));
      mx = std::max(m[i], _mm512_reduce_max_ps(vmax) * scale);
      b = _mm512_set1_ps(mx * kLog2e);
      const __m512 p0 = exp2_avx512(_mm512_fmsub_ps(x0, a, b)), p1 = exp2_avx512(_mm512_fmsub_ps(x1, a, b)),
                   p2 = exp2_avx512(_mm512_fmsub_ps(x2, a, b)), p3 = exp2_avx512(_mm512_fmsub_ps(x3, a, b));
      _mm512_storeu_ps(row, p0), _mm512_storeu_ps(row + 16, p1), _mm512_storeu_ps(row + 32, p2),
          _mm512_storeu_ps(row + 48, p3);
      vsum = _mm512_add_ps(_mm512_add_ps(p0, p1), _mm512_add_ps(p2, p3));
    } else {
      vmax = _mm512_set1_ps(-INFINITY);
      for (int j = 0; j < nk; j += 16)
        vmax = _mm512_mask_max_ps(vmax, lanes_below(valid, j), vmax, _mm512_maskz_loadu_ps(lanes_below(nk, j), row + j));
      mx = std::max(m[i], _mm512_reduce_max_ps(vmax) * scale);
      b = _mm512_set1_ps(mx * kLog2e);
      vsum = _mm512_setzero_ps();
      for (int j = 0; j < nk; j += 16) {
        const __mmask16 in = lanes_below(nk, j);
        const __m512 x = _mm512_maskz_loadu_ps(in, row + j);
        const __m512 p = _mm512_maskz_mov_ps(lanes_below(valid, j), exp2_avx512(_mm512_fmsub_ps(x, a, b)));
        _mm512_mask_storeu_ps(row + j, in, p);
        vsum = _mm512_add_ps(vsum, p);
      }
    }
    const float corr = _mm512_cvtss_f32(exp2_avx512(_mm512_set1_ps((m[i] - mx) * kLog2e)));
    l[i] = l[i] * corr + _mm512_reduce_add_ps(vsum);
    m[i] = mx;
    if (corr != 1.f) {
      float* o = O + i * hs;
      const __m512 c = _mm512_set1_ps(corr);
      for (int d = 0; d < hs; d += 16) {
        const __mmask16 in = lanes_below(hs, d);
        _mm512_mask_storeu_ps(o + d, in, _mm512_mul_ps(_mm512_maskz_loadu_ps(in, o + d), c));
      }
    }
  }
}

__attribute__((target("avx512f,fma"))) inline void grad_rows_avx512(float* P, float* dS, long ld, int nq, int nk,
              int diag, float scale, const float* lse, const float* D) {
  const __m512 a = _mm512_set1_ps(scale * kLog2e), sc = _mm512_set1_ps(scale);
  for (int i = 0; i < nq; i++) {
    const int valid = std::min(nk, diag + i + 1);
    const __m512 b = _mm512_set1_ps(lse[i] * kLog2e), Di = _mm512_set1_ps(D[i]);
    float* p = P + i * ld;
    float* ds = dS + i * ld;
    for (int j = 0; j < nk; j += 16) {
      const __mmask16 in = lanes_below(nk, j);
      const __m512 pj = _mm512_maskz_mov_ps(lanes_below(valid, j),
                                            exp2_avx512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(in, p + j), a, b)));
      _mm512_mask_storeu_ps(p + j, in, pj);
      const __m512 g = _mm512_mul_ps(_mm512_mul_ps(pj, _mm512_sub_ps(_mm512_maskz_loadu_ps(in, ds + j), Di)), sc);
      _mm512_mask_storeu_ps(ds + j, in, g);
    }
  }
}

}  // namespace attn

#endif
