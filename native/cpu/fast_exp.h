// Branch-free float exp, so loops around it vectorize.
#pragma once

#include <cmath>
#include <cstring>

// exp(x) for float, ~1 ulp on [-87, 88], branch-free so loops around it vectorize (Cephes-style polynomial).
inline float fast_exp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int e = ((int)n + 127) << 23;
  float s;
  std::memcpy(&s, &e, 4);
  return p * s;
}

#if defined(__x86_64__)
#include <immintrin.h>

constexpr float kLog2e = 1.4426950408889634f;  // exp(x) = 2^(x log2 e), as exp2_avx512 takes it

// 2^t: t = n + f with |f| <= 1/2, 2^f by a degree-6 polynomial (fitted on Chebyshev nodes: 1.1e-7 relative error in
// float), times 2^n by vscalefps, which also handles underflow; t below -150 gives 0.
__attribute__((target("avx512f,fma"))) inline __m512 exp2_avx512(__m512 t) {
  t = _mm512_max_ps(t, _mm512_set1_ps(-150.f));
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(1.5469732e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3400433e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6180253e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5503272e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}
#endif
