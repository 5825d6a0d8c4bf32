// Kernel arguments that may be stored in float32 or bf16 (the Backend's tensors of either dtype: activations are
// bf16 under --dtype bf16). Kernels compute in float32: a bf16 argument is widened a row (or a chunk) at a time into
// a small per-thread buffer, and what a kernel writes to a bf16 argument is rounded to nearest even on the way out.
// A float32 argument is used in place, so the float32 path pays one branch per row.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/** a float32 or bf16 buffer (exactly one pointer set), or none */
struct Ten {
  float* f = nullptr;
  uint16_t* h = nullptr;
  bool none() const { return !f && !h; }
  bool bf16() const { return h != nullptr; }
  Ten at(long off) const { return h ? Ten{nullptr, h + off} : Ten{f ? f + off : nullptr, nullptr}; }
};

inline Ten f32_ten(float* p) { return Ten{p, nullptr}; }

// fp32 -> bf16, round to nearest even (NaN kept quiet): the same bits as src/kernels/bf16.ts and the GEMM's packers
inline uint16_t round_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fff + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

inline float widen_bf16(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw"))) inline void widen_avx512(float* dst, const uint16_t* src, long n) {
  long i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(src + i))), 16)));
  for (; i < n; i++) dst[i] = widen_bf16(src[i]);
}

__attribute__((target("avx512f,avx512bw"))) inline void narrow_avx512(uint16_t* dst, const float* src, long n) {
  long i = 0;
  const __m512i sign_off = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  for (; i + 16 <= n; i += 16) {
    const __m512i u = _mm512_castps_si512(_mm512_loadu_ps(src + i));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, sign_off), inf);
    const __m512i hi = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(hi, _mm512_set1_epi32(1)))), 16);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    _mm256_storeu_si256((__m256i*)(dst + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < n; i++) dst[i] = round_bf16(src[i]);
}

inline bool storage_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return yes;
}
#endif

/** dst[0..n) = the float32 values of bf16 src */
inline void widen_row(float* dst, const uint16_t* src, long n) {
#if defined(__x86_64__)
  if (storage_avx512()) return widen_avx512(dst, src, n);
#endif
  for (long i = 0; i < n; i++) dst[i] = widen_bf16(src[i]);
}

/** dst[0..n) = src rounded to bf16 */
inline void narrow_row(uint16_t* dst, const float* src, long n) {
#if defined(__x86_64__)
  if (storage_avx512()) return narrow_avx512(dst, src, n);
#endif
  for (long i = 0; i < n; i++) dst[i] = round_bf16(src[i]);
}

/** a per-thread staging buffer (slot 0..7) of at least n floats, kept and grown between calls */
inline float* stage(int slot, size_t n) {
  thread_local std::vector<float> bufs[8];
  std::vector<float>& b = bufs[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

/** the float32 values t[off .. off + n): t's own memory, or widened into staging slot `slot` */
inline const float* load(const Ten& t, long off, long n, int slot) {
  if (!t.h) return t.f + off;
  float* b = stage(slot, n);
  widen_row(b, t.h + off, n);
  return b;
}

/** where a kernel writes n floats bound for t[off ..): t's own memory, or staging slot `slot` (then store()) */
inline float* dest(const Ten& t, long off, long n, int slot) { return t.h ? stage(slot, n) : t.f + off; }

/** like dest(), holding t's current values: for a kernel that accumulates (+=) into t */
inline float* dest_acc(const Ten& t, long off, long n, int slot) {
  if (!t.h) return t.f + off;
  float* b = stage(slot, n);
  widen_row(b, t.h + off, n);
  return b;
}

/** rounds what dest() handed out into t (nothing to do for float32) */
inline void store(const Ten& t, long off, long n, const float* b) {
  if (t.h) narrow_row(t.h + off, b, n);
}
