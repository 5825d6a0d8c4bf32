// Packing routines and register-blocked micro-kernels for gemm.cc. Each micro-kernel computes an MR x NR tile
// C (+)= Ap (MR x kc, packed k-major) * Bp (kc x NR, packed k-major); ISA-specific ones carry target attributes
// so one build runs on any x86-64 and the dispatcher picks at run time.
#pragma once
#ifndef GEMM_PF
#define GEMM_PF 8
#endif

#include <cstdint>
#include <algorithm>
#include <cstring>

#include "storage.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// acc: add to C; otherwise C = result (+ bias[j] when bias is given, the fused bias epilogue)
typedef void (*MicroKernel)(int kc, const float* a, const float* b, float* c, long ldc, bool acc, const float* bias);
// Packs `width` (<= W) lines of kc values: out[k*W + w] = src[w*lineStride + k*kStride]; missing lines are zero.
typedef void (*Packer)(float* out, const float* src, long kStride, long lineStride, int kc, int width, int W);
// Packs `panels` consecutive 6-line A panels at once (out + s * panelStride for panel s) from lines contiguous across
// (lineStride 1, as dout^T in dW): `width` lines in all, missing ones zero.
typedef void (*StripPacker)(float* out, const float* src, long kStride, int kc, int width, int panels, long panelStride);

inline void pack_panel(float* out, const float* src, long kStride, long lineStride, int kc, int width, int W) {
  if (lineStride == 1 && width == W) {
    for (int k = 0; k < kc; k++) std::memcpy(out + (long)k * W, src + k * kStride, sizeof(float) * W);
    return;
  }
  for (int w = 0; w < W; w++) {
    if (w >= width) {
      for (int k = 0; k < kc; k++) out[(long)k * W + w] = 0.f;
      continue;
    }
    const float* s = src + w * lineStride;
    if (kStride == 1)
      for (int k = 0; k < kc; k++) out[(long)k * W + w] = s[k];
    else
      for (int k = 0; k < kc; k++) out[(long)k * W + w] = s[k * kStride];
  }
}

#if defined(__x86_64__)
// 16 x 16 transpose of floats: rows r[0..15] in, columns out (in place)
__attribute__((target("avx512f"))) inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  // r[4g + j] now holds, in each 128-bit lane L, element j of rows 4g..4g+3 at columns 4L+j... regroup the lanes
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xDD);
  }
}

// pack_panel for lines contiguous in k (kStride 1), as the weight rows of out = inp W^T: 16 x 16 blocks are
// transposed in registers so every store is a whole 64-byte line (the scalar loop wrote 4 bytes per line touched)
__attribute__((target("avx512f"))) inline void pack_panel_avx512(float* out, const float* src, long kStride,
                                                                 long lineStride, int kc, int width, int W) {
  if (kStride != 1 || W % 16 != 0) return pack_panel(out, src, kStride, lineStride, kc, width, W);
  const int k16 = kc / 16 * 16;
  for (int w0 = 0; w0 < W; w0 += 16) {
    const int lines = std::min(16, std::max(0, width - w0));
    for (int k = 0; k < k16; k += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; i++)
        r[i] = i < lines ? _mm512_loadu_ps(src + (long)(w0 + i) * lineStride + k) : _mm512_setzero_ps();
      transpose16(r);
      for (int i = 0; i < 16; i++) _mm512_storeu_ps(out + (long)(k + i) * W + w0, r[i]);
    }
    for (int k = k16; k < kc; k++)
      for (int i = 0; i < 16; i++) out[(long)k * W + w0 + i] = i < lines ? src[(long)(w0 + i) * lineStride + k] : 0.f;
  }
}

// pack_panel for the 6-line A micro-panels: lines contiguous in k (inp rows) go through the register transpose
// with 6 live rows and 6-float masked stores; lines contiguous across (dout^T in dW) are one masked load and store
// per k instead of a 24-byte memcpy call
__attribute__((target("avx512f"))) inline void pack_a6_avx512(float* out, const float* src, long kStride,
                                                              long lineStride, int kc, int width, int W) {
  if (W != 6) return pack_panel(out, src, kStride, lineStride, kc, width, W);
  const __mmask16 lineMask = (__mmask16)((1u << width) - 1), six = 0x3F;
  if (lineStride == 1) {
    for (int k = 0; k < kc; k++)
      _mm512_mask_storeu_ps(out + (long)k * 6, six, _mm512_maskz_loadu_ps(lineMask, src + (long)k * kStride));
    return;
  }
  if (kStride != 1) return pack_panel(out, src, kStride, lineStride, kc, width, W);
  const int k16 = kc / 16 * 16;
  for (int k = 0; k < k16; k += 16) {
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = i < width ? _mm512_loadu_ps(src + (long)i * lineStride + k) : _mm512_setzero_ps();
    transpose16(r);
    for (int i = 0; i < 16; i++) _mm512_mask_storeu_ps(out + (long)(k + i) * 6, six, r[i]);
  }
  for (int k = k16; k < kc; k++)
    for (int i = 0; i < 6; i++) out[(long)k * 6 + i] = i < width ? src[(long)i * lineStride + k] : 0.f;
}
#endif


// bf16 pairs along k for vdpbf16ps: 32-bit word (k/2)*W + w holds [bf16 v(k), bf16 v(k+1)] of line w.
inline void pack_bf16_pairs(float* outf, const float* src, long kStride, long lineStride, int kc, int width, int W) {
  uint16_t* out = reinterpret_cast<uint16_t*>(outf);
  const int kp = (kc + 1) / 2;
  for (int w = 0; w < W; w++) {
    const float* s = src + w * lineStride;
    for (int q = 0; q < kp; q++) {
      const int k = 2 * q;
      const float v0 = w < width ? s[k * kStride] : 0.f;
      const float v1 = w < width && k + 1 < kc ? s[(k + 1) * kStride] : 0.f;
      out[2 * ((long)q * W + w)] = round_bf16(v0);
      out[2 * ((long)q * W + w) + 1] = round_bf16(v1);
    }
  }
}

#if defined(__x86_64__)
// round_bf16 (storage.h) on 16 lanes (same bits: round to nearest even, NaN kept quiet); the bf16 sits in each lane's low half
__attribute__((target("avx512f"))) inline __m512i to_bf16x16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  const __m512i hi = _mm512_srli_epi32(u, 16);
  const __m512i r = _mm512_srli_epi32(
      _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(hi, _mm512_set1_epi32(1)))), 16);
  return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
}

// lanes [0, n) of 16
inline __mmask16 first_lanes(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1); }

// pack_bf16_pairs with the same output bits, 16 lines (or 16 pairs) a vector: lines contiguous across (lineStride 1)
// combine rows k and k+1 lane by lane; lines contiguous in k convert 32 values of 16 lines, narrow each to 16 pairs and
// transpose 16 x 16 in registers. The scalar packer was a third of a bf16 GEMM's time.
__attribute__((target("avx512f,avx512bw"))) inline void pack_bf16_pairs_avx512(float* outf, const float* src, long kStride,
                                                                             long lineStride, int kc, int width, int W) {
  int32_t* out = reinterpret_cast<int32_t*>(outf);
  const int kp = (kc + 1) / 2;
  if (lineStride == 1) {
    for (int q = 0; q < kp; q++) {
      const int k = 2 * q;
      // rows far apart (a weight's C floats): fetch 8 pairs ahead, the hardware prefetcher alone left the loads waiting
      if (k + 17 < kc)
        for (int w0 = 0; w0 < std::min(width, W); w0 += 16) {
          _mm_prefetch((const char*)(src + (long)(k + 16) * kStride + w0), _MM_HINT_T0);
          _mm_prefetch((const char*)(src + (long)(k + 17) * kStride + w0), _MM_HINT_T0);
        }
      for (int w0 = 0; w0 < W; w0 += 16) {
        const __mmask16 in = first_lanes(std::min(width, W) - w0), store = first_lanes(W - w0);
        const __m512i lo = to_bf16x16(_mm512_maskz_loadu_ps(in, src + (long)k * kStride + w0));
        const __m512i hi = k + 1 < kc ? to_bf16x16(_mm512_maskz_loadu_ps(in, src + (long)(k + 1) * kStride + w0))
                                      : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(out + (long)q * W + w0, store, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
      }
    }
    return;
  }
  if (kStride != 1) return pack_bf16_pairs(outf, src, kStride, lineStride, kc, width, W);
  for (int w0 = 0; w0 < W; w0 += 16) {
    const int lines = std::min(16, std::max(0, width - w0));
    const __mmask16 store = first_lanes(W - w0);
    for (int k0 = 0; k0 < kc; k0 += 32) {
      const __mmask16 m0 = first_lanes(kc - k0), m1 = first_lanes(kc - k0 - 16);
      __m512 r[16];
      for (int i = 0; i < 16; i++) {
        if (i >= lines) { r[i] = _mm512_setzero_ps(); continue; }
        const float* s = src + (long)(w0 + i) * lineStride + k0;
        const __m256i a = _mm512_cvtepi32_epi16(to_bf16x16(_mm512_maskz_loadu_ps(m0, s)));
        const __m256i b = _mm512_cvtepi32_epi16(to_bf16x16(_mm512_maskz_loadu_ps(m1, s + 16)));
        r[i] = _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1));  // 16 pairs of line i
      }
      transpose16(r);  // r[q] = pair k0/2 + q of the 16 lines
      const int pairs = std::min(16, kp - k0 / 2);
      for (int q = 0; q < pairs; q++)
        _mm512_mask_storeu_epi32(out + (long)(k0 / 2 + q) * W + w0, store, _mm512_castps_si512(r[q]));
    }
  }
}
#endif

#if defined(__x86_64__)
// The A panels of dW += dout^T inp take 6 floats from each of kc rows of dout, rows that are OC floats apart: packed
// one panel at a time, every cache line of dout is fetched once per panel it feeds (~3 times) and the rows crowd a few
// cache sets. A whole strip at once reads each row's stretch once: 8 rows (4 bf16 pairs) at a time, every panel
// takes its 6 floats from each, and writes 192 (96) contiguous bytes.
__attribute__((target("avx512f"))) inline void pack_a6_strip_avx512(float* out, const float* src, long kStride, int kc,
                                                                   int width, int panels, long panelStride) {
  const __mmask16 six = 0x3F;
  for (int k0 = 0; k0 < kc; k0 += 8) {
    const int kn = std::min(8, kc - k0);
    for (int s = 0; s < panels; s++) {
      const __mmask16 in = first_lanes(std::min(6, width - 6 * s));
      float* o = out + (long)s * panelStride + (long)k0 * 6;
      const float* r = src + (long)k0 * kStride + 6 * s;
      for (int kk = 0; kk < kn; kk++) _mm512_mask_storeu_ps(o + kk * 6, six, _mm512_maskz_loadu_ps(in, r + kk * kStride));
    }
  }
}

__attribute__((target("avx512f,avx512bw"))) inline void pack_a6_strip_bf16_avx512(float* outf, const float* src,
                                                                                long kStride, int kc, int width,
                                                                                int panels, long panelStride) {
  int32_t* out = reinterpret_cast<int32_t*>(outf);
  const __mmask16 six = 0x3F;
  const int kp = (kc + 1) / 2;
  for (int q0 = 0; q0 < kp; q0 += 4) {
    const int qn = std::min(4, kp - q0);
    for (int s = 0; s < panels; s++) {
      const __mmask16 in = first_lanes(std::min(6, width - 6 * s));
      int32_t* o = out + (long)s * panelStride + (long)q0 * 6;
      for (int qq = 0; qq < qn; qq++) {
        const int k = 2 * (q0 + qq);
        const float* r = src + (long)k * kStride + 6 * s;
        const __m512i lo = to_bf16x16(_mm512_maskz_loadu_ps(in, r));
        const __m512i hi = k + 1 < kc ? to_bf16x16(_mm512_maskz_loadu_ps(in, r + kStride)) : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(o + qq * 6, six, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
      }
    }
  }
}
#endif

inline void kernel_generic_4x16(int kc, const float* a, const float* b, float* c, long ldc, bool acc, const float* bias) {
  float t[4][16] = {};
  for (int k = 0; k < kc; k++)
    for (int r = 0; r < 4; r++) {
      const float av = a[k * 4 + r];
      for (int q = 0; q < 16; q++) t[r][q] += av * b[k * 16 + q];
    }
  for (int r = 0; r < 4; r++)
    for (int q = 0; q < 16; q++) c[r * ldc + q] = acc ? c[r * ldc + q] + t[r][q] : t[r][q] + (bias ? bias[q] : 0.f);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline void kernel_avx2_6x16(int kc, const float* a, const float* b, float* c,
                                                                 long ldc, bool acc, const float* bias) {
  __m256 t[6][2];
  for (int r = 0; r < 6; r++) t[r][0] = t[r][1] = _mm256_setzero_ps();
  for (int k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_loadu_ps(b + k * 16), b1 = _mm256_loadu_ps(b + k * 16 + 8);
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++) {
      const __m256 av = _mm256_broadcast_ss(a + k * 6 + r);
      t[r][0] = _mm256_fmadd_ps(av, b0, t[r][0]);
      t[r][1] = _mm256_fmadd_ps(av, b1, t[r][1]);
    }
  }
  for (int r = 0; r < 6; r++)
    for (int q = 0; q < 2; q++) {
      float* p = c + r * ldc + q * 8;
      const __m256 base = acc ? _mm256_loadu_ps(p) : bias ? _mm256_loadu_ps(bias + q * 8) : _mm256_setzero_ps();
      _mm256_storeu_ps(p, _mm256_add_ps(base, t[r][q]));
    }
}

__attribute__((target("avx512f,fma"))) inline void kernel_avx512_6x64(int kc, const float* a, const float* b,
                                                                      float* c, long ldc, bool acc, const float* bias) {
  // the C tile is read at the end: start fetching it now
  if (acc)
    for (int r = 0; r < 6; r++)
      for (int q = 0; q < 4; q++) _mm_prefetch((const char*)(c + r * ldc + q * 16), _MM_HINT_T0);
  __m512 t00 = _mm512_setzero_ps(), t01 = t00, t02 = t00, t03 = t00, t10 = t00, t11 = t00, t12 = t00, t13 = t00;
  __m512 t20 = t00, t21 = t00, t22 = t00, t23 = t00, t30 = t00, t31 = t00, t32 = t00, t33 = t00;
  __m512 t40 = t00, t41 = t00, t42 = t00, t43 = t00, t50 = t00, t51 = t00, t52 = t00, t53 = t00;
  for (int k = 0; k < kc; k++, a += 6, b += 64) {
    // the B micro-panel (kc x 64 floats) does not fit L1: fetch the rows PF iterations ahead
    constexpr int PF = GEMM_PF;
    _mm_prefetch((const char*)(b + 64 * PF), _MM_HINT_T0);
    _mm_prefetch((const char*)(b + 64 * PF + 16), _MM_HINT_T0);
    _mm_prefetch((const char*)(b + 64 * PF + 32), _MM_HINT_T0);
    _mm_prefetch((const char*)(b + 64 * PF + 48), _MM_HINT_T0);
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32),
                 b3 = _mm512_loadu_ps(b + 48);
    __m512 av = _mm512_set1_ps(a[0]);
    t00 = _mm512_fmadd_ps(av, b0, t00); t01 = _mm512_fmadd_ps(av, b1, t01);
    t02 = _mm512_fmadd_ps(av, b2, t02); t03 = _mm512_fmadd_ps(av, b3, t03);
    av = _mm512_set1_ps(a[1]);
    t10 = _mm512_fmadd_ps(av, b0, t10); t11 = _mm512_fmadd_ps(av, b1, t11);
    t12 = _mm512_fmadd_ps(av, b2, t12); t13 = _mm512_fmadd_ps(av, b3, t13);
    av = _mm512_set1_ps(a[2]);
    t20 = _mm512_fmadd_ps(av, b0, t20); t21 = _mm512_fmadd_ps(av, b1, t21);
    t22 = _mm512_fmadd_ps(av, b2, t22); t23 = _mm512_fmadd_ps(av, b3, t23);
    av = _mm512_set1_ps(a[3]);
    t30 = _mm512_fmadd_ps(av, b0, t30); t31 = _mm512_fmadd_ps(av, b1, t31);
    t32 = _mm512_fmadd_ps(av, b2, t32); t33 = _mm512_fmadd_ps(av, b3, t33);
    av = _mm512_set1_ps(a[4]);
    t40 = _mm512_fmadd_ps(av, b0, t40); t41 = _mm512_fmadd_ps(av, b1, t41);
    t42 = _mm512_fmadd_ps(av, b2, t42); t43 = _mm512_fmadd_ps(av, b3, t43);
    av = _mm512_set1_ps(a[5]);
    t50 = _mm512_fmadd_ps(av, b0, t50); t51 = _mm512_fmadd_ps(av, b1, t51);
    t52 = _mm512_fmadd_ps(av, b2, t52); t53 = _mm512_fmadd_ps(av, b3, t53);
  }
  const __m512 rows[6][4] = {{t00, t01, t02, t03}, {t10, t11, t12, t13}, {t20, t21, t22, t23},
                             {t30, t31, t32, t33}, {t40, t41, t42, t43}, {t50, t51, t52, t53}};
  for (int r = 0; r < 6; r++)
    for (int q = 0; q < 4; q++) {
      float* p = c + r * ldc + q * 16;
      const __m512 base = acc ? _mm512_loadu_ps(p) : bias ? _mm512_loadu_ps(bias + q * 16) : _mm512_setzero_ps();
      _mm512_storeu_ps(p, _mm512_add_ps(base, rows[r][q]));
    }
}

// kc here counts bf16 pairs; a and b hold 32-bit words of two bf16 each.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) inline void kernel_bf16_6x64(int kcp, const float* af,
                                                                                   const float* bf, float* c,
                                                                                   long ldc, bool acc,
                                                                                   const float* bias) {
  const int32_t* a = reinterpret_cast<const int32_t*>(af);
  // as the fp32 kernel: the C tile is read at the end, start fetching it now; the B micro-panel (384 pairs x 64 at
  // KC 768: 96 KB) lives in L2, so its rows are fetched PF steps ahead
  if (acc)
    for (int r = 0; r < 6; r++)
      for (int q = 0; q < 4; q++) _mm_prefetch((const char*)(c + r * ldc + q * 16), _MM_HINT_T0);
  __m512 t[6][4];
  for (int r = 0; r < 6; r++)
    for (int q = 0; q < 4; q++) t[r][q] = _mm512_setzero_ps();
  for (int k = 0; k < kcp; k++, a += 6, bf += 64) {
    constexpr int PF = GEMM_PF;
    for (int q = 0; q < 4; q++) _mm_prefetch((const char*)(bf + 64 * PF + 16 * q), _MM_HINT_T0);
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bf), b1 = (__m512bh)_mm512_loadu_si512(bf + 16),
                   b2 = (__m512bh)_mm512_loadu_si512(bf + 32), b3 = (__m512bh)_mm512_loadu_si512(bf + 48);
#pragma GCC unroll 6
    for (int r = 0; r < 6; r++) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(a[r]);
      t[r][0] = _mm512_dpbf16_ps(t[r][0], av, b0);
      t[r][1] = _mm512_dpbf16_ps(t[r][1], av, b1);
      t[r][2] = _mm512_dpbf16_ps(t[r][2], av, b2);
      t[r][3] = _mm512_dpbf16_ps(t[r][3], av, b3);
    }
  }
  for (int r = 0; r < 6; r++)
    for (int q = 0; q < 4; q++) {
      float* p = c + r * ldc + q * 16;
      const __m512 base = acc ? _mm512_loadu_ps(p) : bias ? _mm512_loadu_ps(bias + q * 16) : _mm512_setzero_ps();
      _mm512_storeu_ps(p, _mm512_add_ps(base, t[r][q]));
    }
}
#endif
