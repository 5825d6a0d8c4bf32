// Packers of bf16 operands already stored as bf16 (activations under --dtype bf16): the same packed layout as
// pack_bf16_pairs (32-bit word (k/2)*W + w = [v(k), v(k+1)] of line w), with nothing to round, and half the bytes
// to read. A pair of consecutive k of a line contiguous in k is already one 32-bit word in memory.
#pragma once

#include "gemm_kernels.h"

typedef void (*Packer16)(float* out, const uint16_t* src, long kStride, long lineStride, int kc, int width, int W);
typedef void (*StripPacker16)(float* out, const uint16_t* src, long kStride, int kc, int width, int panels, long panelStride);

inline void pack_pairs16(float* outf, const uint16_t* src, long kStride, long lineStride, int kc, int width, int W) {
  uint16_t* out = reinterpret_cast<uint16_t*>(outf);
  const int kp = (kc + 1) / 2;
  for (int w = 0; w < W; w++) {
    const uint16_t* s = src + w * lineStride;
    for (int q = 0; q < kp; q++) {
      const int k = 2 * q;
      out[2 * ((long)q * W + w)] = w < width ? s[k * kStride] : 0;
      out[2 * ((long)q * W + w) + 1] = w < width && k + 1 < kc ? s[(k + 1) * kStride] : 0;
    }
  }
}

#if defined(__x86_64__)
// 16 bf16 values (masked) in the low halves of 16 32-bit lanes
#define GPT2_LOAD16(mask, p) _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16((mask), (p)))

__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void pack_pairs16_avx512(float* outf, const uint16_t* src,
                                                                                    long kStride, long lineStride,
                                                                                    int kc, int width, int W) {
  int32_t* out = reinterpret_cast<int32_t*>(outf);
  const int kp = (kc + 1) / 2;
  if (lineStride == 1) {
    // lines contiguous across (inp in dW): rows k and k+1 interleaved lane by lane
    for (int q = 0; q < kp; q++) {
      const int k = 2 * q;
      if (k + 17 < kc)
        for (int w0 = 0; w0 < std::min(width, W); w0 += 32) {
          _mm_prefetch((const char*)(src + (long)(k + 16) * kStride + w0), _MM_HINT_T0);
          _mm_prefetch((const char*)(src + (long)(k + 17) * kStride + w0), _MM_HINT_T0);
        }
      for (int w0 = 0; w0 < W; w0 += 16) {
        const __mmask16 in = first_lanes(std::min(width, W) - w0), st = first_lanes(W - w0);
        const __m512i lo = GPT2_LOAD16(in, src + (long)k * kStride + w0);
        const __m512i hi = k + 1 < kc ? GPT2_LOAD16(in, src + (long)(k + 1) * kStride + w0) : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(out + (long)q * W + w0, st, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
      }
    }
    return;
  }
  if (kStride != 1) return pack_pairs16(outf, src, kStride, lineStride, kc, width, W);
  // lines contiguous in k (inp in the forward, dout in dinp): 16 pairs of a line are one 64-byte load; transpose
  for (int w0 = 0; w0 < W; w0 += 16) {
    const int lines = std::min(16, std::max(0, width - w0));
    const __mmask16 st = first_lanes(W - w0);
    for (int k0 = 0; k0 < kc; k0 += 32) {
      const int left = kc - k0;
      const __mmask32 m = left >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << left) - 1);
      __m512 r[16];
      for (int i = 0; i < 16; i++)
        r[i] = i < lines ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, src + (long)(w0 + i) * lineStride + k0))
                         : _mm512_setzero_ps();
      transpose16(r);  // r[q] = pair k0/2 + q of the 16 lines
      const int pairs = std::min(16, kp - k0 / 2);
      for (int q = 0; q < pairs; q++)
        _mm512_mask_storeu_epi32(out + (long)(k0 / 2 + q) * W + w0, st, _mm512_castps_si512(r[q]));
    }
  }
}

// pack_a6_strip_bf16_avx512 from bf16 rows (dout^T of dW: the lm_head's dlogits)
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void pack_a6_strip16_avx512(float* outf, const uint16_t* src,
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
        const uint16_t* r = src + (long)k * kStride + 6 * s;
        const __m512i lo = GPT2_LOAD16(in, r);
        const __m512i hi = k + 1 < kc ? GPT2_LOAD16(in, r + kStride) : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(o + qq * 6, six, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
      }
    }
  }
}

// The float32 plan's B panel from bf16 weights (inference on bf16 weights over several rows: a prompt's prefill):
// pack_panel's layout, each value widened exactly. Lines contiguous in k (the weight rows of inp W^T) go 16 x 16
// through the register transpose; other strides one by one.
inline void pack_panel16(float* out, const uint16_t* src, long kStride, long lineStride, int kc, int width, int W) {
  for (int k = 0; k < kc; k++)
    for (int w = 0; w < W; w++) out[(long)k * W + w] = w < width ? widen_bf16(src[w * lineStride + k * kStride]) : 0.f;
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void pack_panel16_avx512(float* out, const uint16_t* src,
                                                                                    long kStride, long lineStride,
                                                                                    int kc, int width, int W) {
  if (kStride != 1 || W % 16 != 0) return pack_panel16(out, src, kStride, lineStride, kc, width, W);
  const int k16 = kc / 16 * 16;
  for (int w0 = 0; w0 < W; w0 += 16) {
    const int lines = std::min(16, std::max(0, width - w0));
    for (int k = 0; k < k16; k += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; i++)
        r[i] = i < lines ? _mm512_castsi512_ps(_mm512_slli_epi32(GPT2_LOAD16((__mmask16)0xFFFF, src + (long)(w0 + i) * lineStride + k), 16))
                         : _mm512_setzero_ps();
      transpose16(r);
      for (int i = 0; i < 16; i++) _mm512_storeu_ps(out + (long)(k + i) * W + w0, r[i]);
    }
    for (int k = k16; k < kc; k++)
      for (int i = 0; i < 16; i++) out[(long)k * W + w0 + i] = i < lines ? widen_bf16(src[(long)(w0 + i) * lineStride + k]) : 0.f;
  }
}
#undef GPT2_LOAD16
#endif
