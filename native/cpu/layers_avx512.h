// AVX-512 bodies of layers.cc's element-wise kernels whose loops the compiler left slow: GELU (its tanh through a
// division it kept scalar-paced) and the cross-entropy's row (a max reduction it would not vectorize). They carry
// target attributes, so one build runs on any x86-64; layers.cc picks them at run time and keeps the portable loops.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cmath>

#include "fast_exp.h"  // exp2_avx512

namespace avx512 {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)

// tanh(u) = 1 - 2 / (e^{2u} + 1), so 0.5 (1 + tanh(u)) = 1 / (1 + e^{-2u}): GELU is x times that sigmoid
__attribute__((target("avx512f,fma"))) inline __m512 gelu_sigmoid(__m512 x) {
  const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  const __m512 u = _mm512_mul_ps(_mm512_set1_ps(kGeluScale), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
  const __m512 e = exp2_avx512(_mm512_mul_ps(u, _mm512_set1_ps(-2.f * kLog2e)));
  return _mm512_div_ps(_mm512_set1_ps(1.f), _mm512_add_ps(_mm512_set1_ps(1.f), e));
}

__attribute__((target("avx512f,fma"))) inline void gelu_forward(float* out, const float* inp, long n) {
  for (long i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    const __m512 x = _mm512_maskz_loadu_ps(m, inp + i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(x, gelu_sigmoid(x)));
  }
}

// d/dx [x s(x)] with s = 0.5 (1 + tanh(u)): s + x s (1 - s) 2 u'(x), since 1 - tanh^2 = 4 s (1 - s)
__attribute__((target("avx512f,fma"))) inline void gelu_backward(float* dinp, const float* inp, const float* dout, long n) {
  const __m512 one = _mm512_set1_ps(1.f), k2 = _mm512_set1_ps(2.f * kGeluScale), c3 = _mm512_set1_ps(3.f * 0.044715f);
  for (long i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    const __m512 x = _mm512_maskz_loadu_ps(m, inp + i), s = gelu_sigmoid(x);
    const __m512 du2 = _mm512_mul_ps(k2, _mm512_fmadd_ps(c3, _mm512_mul_ps(x, x), one));  // 2 u'(x)
    const __m512 g = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(x, s), _mm512_sub_ps(one, s)), du2, s);
    _mm512_mask_storeu_ps(dinp + i, m, _mm512_mul_ps(g, _mm512_maskz_loadu_ps(m, dout + i)));
  }
}

// One row of the fused softmax + cross-entropy over x[0 .. V): returns the loss -log softmax(x)[target] (target >= 0);
// with d, writes d[0 .. V) = softmax(x) * grad_scale, less grad_scale at the target (d may be x itself).
// (In a d12 step at B=4, T=256: 38 -> 15 ms; layers.cc's loops computed two exponentials per logit.)
__attribute__((target("avx512f,fma"))) inline float cross_entropy_row(float* d, const float* x, int V, int target,
                                                                        float grad_scale) {
  const int V16 = V / 16 * 16;
  const __mmask16 tail = (__mmask16)((1u << (V - V16)) - 1);
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  __mmask16 nan = 0;  // vmaxps drops a NaN operand and the exponential clamps one away: NaN is looked for here
  for (int i = 0; i < V16; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    vmax = _mm512_max_ps(vmax, v);
  }
  const __m512 vt = _mm512_maskz_loadu_ps(tail, x + V16);
  nan |= _mm512_mask_cmp_ps_mask(tail, vt, vt, _CMP_UNORD_Q);
  vmax = _mm512_mask_max_ps(vmax, tail, vmax, vt);
  if (nan) {  // as the scalar loop and the reference: a NaN logit makes the row's loss and gradient NaN
    if (d)
      for (int j = 0; j < V; j++) d[j] = NAN;
    return NAN;
  }
  const float mx = _mm512_reduce_max_ps(vmax);
  const float xt = x[target];  // read before d (which may be x) is written
  const __m512 a = _mm512_set1_ps(kLog2e), b = _mm512_set1_ps(mx * kLog2e);
  // e^{x - max}, summed, and kept in d when there is one: the gradient is then e / sum, one exponential per logit
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();  // two chains: the adds' latency
  int i = 0;
  for (; i + 32 <= V16; i += 32) {
    const __m512 e0 = exp2_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(x + i), a, b));
    const __m512 e1 = exp2_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(x + i + 16), a, b));
    if (d) _mm512_storeu_ps(d + i, e0), _mm512_storeu_ps(d + i + 16, e1);
    s0 = _mm512_add_ps(s0, e0), s1 = _mm512_add_ps(s1, e1);
  }
  for (; i < V16; i += 16) {
    const __m512 e = exp2_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(x + i), a, b));
    if (d) _mm512_storeu_ps(d + i, e);
    s0 = _mm512_add_ps(s0, e);
  }
  const __m512 et = _mm512_maskz_mov_ps(tail, exp2_avx512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(tail, x + V16), a, b)));
  if (d) _mm512_mask_storeu_ps(d + V16, tail, et);
  const float sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, _mm512_add_ps(s1, et)));
  const float loss = std::log(sum) + mx - xt;
  if (d) {
    const __m512 g = _mm512_set1_ps(grad_scale / sum);
    for (int j = 0; j < V16; j += 16) _mm512_storeu_ps(d + j, _mm512_mul_ps(_mm512_loadu_ps(d + j), g));
    _mm512_mask_storeu_ps(d + V16, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, d + V16), g));
    d[target] -= grad_scale;
  }
  return loss;
}

}  // namespace avx512

#endif
