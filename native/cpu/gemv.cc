// Matrix-vector products: the matmuls of token-by-token generation (M <= 4 rows), where packing would cost more than
// it saves and reading the weights is the whole cost; float32 weights (sgemm's small-M path) and bf16 ones
// (inference on bf16 weights). On AVX-512 each thread reads its weight rows one after another: one sequential stream.

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemv.h"
#include "threads.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// The common case (A rows and B columns contiguous in k) runs an AVX-512 kernel over four output columns at a time
// with independent accumulators; it is bound by memory bandwidth.
#if defined(__x86_64__)
__attribute__((target("avx512f,fma"))) static void gemv4_avx512(const float* a, const float* b0, long ldb, int K,
                                                                float out[4]) {
  // row by row: the four rows are adjacent in memory, so a thread's rows are one sequential stream for the hardware
  // prefetcher, as in the bf16 version (which gained ~1.3x from it; float32 measured the same either way, already at
  // the memory's bandwidth)
  for (int r = 0; r < 4; r++) {
    const float* b = b0 + r * ldb;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
      s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), s0);
      s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(b + k + 16), s1);
      s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 32), _mm512_loadu_ps(b + k + 32), s2);
      s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 48), _mm512_loadu_ps(b + k + 48), s3);
    }
    for (; k + 16 <= K; k += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), s0);
    out[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; k < K; k++) out[r] += a[k] * b[k];
  }
}
#endif

// bf16 -> fp32 is exact: the bf16 bits are the float's upper half
static inline float bf16_to_f32(unsigned short h) {
  unsigned int u = (unsigned int)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

#if defined(__x86_64__)
/** widens n bf16 values to fp32 (n a multiple of 16 for the vector part) */
__attribute__((target("avx512f"))) static void widen_bf16_avx512(const unsigned short* src, float* dst, int n) {
  int k = 0;
  for (; k + 16 <= n; k += 16) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(src + k)));
    _mm512_storeu_ps(dst + k, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
  for (; k < n; k++) dst[k] = bf16_to_f32(src[k]);
}
#endif

void gemm_small_m(int M, int N, int K, const float* A, long rsa, long csa, const float* B, long rsb, long csb,
                  float* C, long ldc, bool accumulate, const float* bias) {
#if defined(__x86_64__)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512 && csa == 1 && rsb == 1) {
    const int N4 = N / 4 * 4;
#pragma omp parallel for schedule(static) if ((long)M * N * K >= (1L << 16))
    for (int j = 0; j < N4; j += 4) {
      for (int i = 0; i < M; i++) {
        float s[4];
        gemv4_avx512(A + i * rsa, B + j * csb, csb, K, s);
        for (int q = 0; q < 4; q++) {
          float* c = C + i * ldc + j + q;
          *c = (accumulate ? *c : bias ? bias[j + q] : 0.f) + s[q];
        }
      }
    }
    for (int j = N4; j < N; j++)
      for (int i = 0; i < M; i++) {
        float s = 0.f;
        for (int k = 0; k < K; k++) s += A[i * rsa + k] * B[j * csb + k];
        C[i * ldc + j] = (accumulate ? C[i * ldc + j] : bias ? bias[j] : 0.f) + s;
      }
    return;
  }
#endif
#pragma omp parallel for schedule(static) if ((long)M * N * K >= (1L << 16))
  for (int j = 0; j < N; j++) {
    for (int i = 0; i < M; i++) {
      const float* a = A + i * rsa;
      const float* b = B + j * csb;
      float s = 0.f;
      if (csa == 1 && rsb == 1) {
#pragma omp simd reduction(+ : s)
        for (int k = 0; k < K; k++) s += a[k] * b[k];
      } else {
        for (int k = 0; k < K; k++) s += a[k * csa] * b[k * rsb];
      }
      C[i * ldc + j] = (accumulate ? C[i * ldc + j] : bias ? bias[j] : 0.f) + s;
    }
  }
}


#if defined(__x86_64__)
/**
 * x arranged for gemv4_bf16w_avx512: in each block of 32, the 16 values at even offsets, then the 16 at odd ones (a
 * 64-byte load of 32 bf16 weights holds weight 2i in the low half of lane i and weight 2i+1 in the high half)
 */
static void deinterleave32(float* xd, const float* x, int K) {
  int k = 0;
  for (; k + 32 <= K; k += 32)
    for (int i = 0; i < 16; i++) {
      xd[k + i] = x[k + 2 * i];
      xd[k + 16 + i] = x[k + 2 * i + 1];
    }
  for (; k < K; k++) xd[k] = x[k];
}

/**
 * out[q] = x . widen(w_q) for 4 bf16 weight rows, float32 arithmetic. Row by row: the rows are adjacent, so a thread's
 * share is one sequential stream (four rows interleaved with a software prefetch streamed ~13 % slower than float32,
 * BENCHMARKS.md). Each 64-byte load gives two float32 vectors in one instruction each (even weights shifted up 16
 * bits, odd ones with the low half masked off), multiplied with x's even and odd values (xd, deinterleave32).
 */
__attribute__((target("avx512f,fma"))) static void gemv4_bf16w_avx512(const float* x, const float* xd, const unsigned short* w0,
                                                                     long ldw, int K, float out[4]) {
  const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
  for (int r = 0; r < 4; r++) {
    const unsigned short* w = w0 + r * ldw;
    __m512 e0 = _mm512_setzero_ps(), o0 = e0, e1 = e0, o1 = e0;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
      const __m512i v0 = _mm512_loadu_si512((const void*)(w + k)), v1 = _mm512_loadu_si512((const void*)(w + k + 32));
      e0 = _mm512_fmadd_ps(_mm512_loadu_ps(xd + k), _mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), e0);
      o0 = _mm512_fmadd_ps(_mm512_loadu_ps(xd + k + 16), _mm512_castsi512_ps(_mm512_and_si512(v0, high)), o0);
      e1 = _mm512_fmadd_ps(_mm512_loadu_ps(xd + k + 32), _mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)), e1);
      o1 = _mm512_fmadd_ps(_mm512_loadu_ps(xd + k + 48), _mm512_castsi512_ps(_mm512_and_si512(v1, high)), o1);
    }
    for (; k + 32 <= K; k += 32) {
      const __m512i v0 = _mm512_loadu_si512((const void*)(w + k));
      e0 = _mm512_fmadd_ps(_mm512_loadu_ps(xd + k), _mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), e0);
      o0 = _mm512_fmadd_ps(_mm512_loadu_ps(xd + k + 16), _mm512_castsi512_ps(_mm512_and_si512(v0, high)), o0);
    }
    out[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(e0, o0), _mm512_add_ps(e1, o1)));
    for (; k < K; k++) out[r] += x[k] * bf16_to_f32(w[k]);
  }
}
#endif

void matmul_bf16_weights(float* out, const float* A, const unsigned short* W, const float* bias, int M, int K, int N) {
#if defined(__x86_64__)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
#else
  static const bool avx512 = false;
#endif
  const int groups = (N + 3) / 4;
#if defined(__x86_64__)
  if (avx512 && M <= 4) {
    // decoding: each weight is used by at most 4 rows, so it is widened where it is used
    std::vector<float> xd((size_t)M * K);
    for (int i = 0; i < M; i++) deinterleave32(xd.data() + (size_t)i * K, A + (long)i * K, K);
#pragma omp parallel for schedule(static) if ((long)N * K >= (1L << 16))
    for (int g = 0; g < groups; g++) {
      const int j0 = g * 4, rows = std::min(4, N - j0);
      for (int i = 0; i < M; i++) {
        const float* a = A + (long)i * K;
        float s[4] = {0.f, 0.f, 0.f, 0.f};
        if (rows == 4) gemv4_bf16w_avx512(a, xd.data() + (size_t)i * K, W + (long)j0 * K, K, K, s);
        else
          for (int q = 0; q < rows; q++)
            for (int k = 0; k < K; k++) s[q] += a[k] * bf16_to_f32(W[(long)(j0 + q) * K + k]);
        for (int q = 0; q < rows; q++) out[(long)i * N + j0 + q] = (bias ? bias[j0 + q] : 0.f) + s[q];
      }
    }
    return;
  }
#endif
  // decoding (M = 1) is bound by reading the weights: every thread takes its share of the groups
#pragma omp parallel if ((long)N * K >= (1L << 16))
  {
    std::vector<float> wide((size_t)4 * K);
#pragma omp for schedule(static)
    for (int g = 0; g < groups; g++) {
      const int j0 = g * 4, rows = std::min(4, N - j0);
      for (int q = 0; q < rows; q++) {
#if defined(__x86_64__)
        if (avx512) { widen_bf16_avx512(W + (long)(j0 + q) * K, wide.data() + (size_t)q * K, K); continue; }
#endif
        for (int k = 0; k < K; k++) wide[(size_t)q * K + k] = bf16_to_f32(W[(long)(j0 + q) * K + k]);
      }
      for (int i = 0; i < M; i++) {
        const float* a = A + (long)i * K;
        float s[4] = {0.f, 0.f, 0.f, 0.f};
#if defined(__x86_64__)
        if (avx512 && rows == 4) gemv4_avx512(a, wide.data(), K, K, s);
        else
#endif
          for (int q = 0; q < rows; q++)
            for (int k = 0; k < K; k++) s[q] += a[k] * wide[(size_t)q * K + k];
        for (int q = 0; q < rows; q++) out[(long)i * N + j0 + q] = (bias ? bias[j0 + q] : 0.f) + s[q];
      }
    }
  }
}
