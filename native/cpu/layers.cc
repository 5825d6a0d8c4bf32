// GPT-2 layers on the CPU: OpenMP across rows / heads, inner loops written so the compiler vectorizes them;
// target_clones compiles the elementwise kernels for AVX-512, AVX2 and baseline x86-64 and picks at load time.

#include "layers.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "fast_exp.h"
#include "gemm.h"
#include "gemv.h"
#include "layers_avx512.h"
#include "parallel.h"


#if defined(__x86_64__)
static const bool kAvx512 = __builtin_cpu_supports("avx512f");
#endif

// ---------------------------------------------------------------- encoder
void encoder_forward(Ten out, const int* inp, Ten wte, Ten wpe, int B, int T, int C) {
#pragma omp parallel for schedule(static) if ((long)B * T * C >= SERIAL_WORK)
  for (int bt = 0; bt < B * T; bt++) {
    const float* e = load(wte, (long)inp[bt] * C, C, 0);
    const float* p = load(wpe, (long)(bt % T) * C, C, 1);
    float* o = dest(out, (long)bt * C, C, 2);
    for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
    store(out, (long)bt * C, C, o);
  }
}

void encoder_backward(float* dwte, float* dwpe, Ten dout, const int* inp, int B, int T, int C) {
  // each thread owns a slice of channels, so rows shared by repeated tokens never race
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int c0 = (int)((long)C * id / nt), c1 = (int)((long)C * (id + 1) / nt);
    for (int bt = 0; bt < B * T; bt++) {
      const float* d = load(dout.at(c0), (long)bt * C, c1 - c0, 0) - c0;
      float* e = dwte + (long)inp[bt] * C;
      float* p = dwpe + (long)(bt % T) * C;
      for (int i = c0; i < c1; i++) {
        e[i] += d[i];
        p[i] += d[i];
      }
    }
  }
}

// ---------------------------------------------------------------- layernorm
// The row bodies are target_clones functions (the OpenMP loops around them are not cloned themselves): compiled for
// baseline x86-64 only, a d12 step's LayerNorms ran at SSE2's width.
CLONES static void layernorm_row(float* o, float* mean, float* rstd, const float* x, const float* weight,
                                 const float* bias, int C) {
  float m = 0.f;
#pragma omp simd reduction(+ : m)
  for (int i = 0; i < C; i++) m += x[i];
  m /= C;
  float v = 0.f;
#pragma omp simd reduction(+ : v)
  for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
  v /= C;
  const float s = 1.f / std::sqrt(v + 1e-5f);
#pragma omp simd
  for (int i = 0; i < C; i++) o[i] = (x[i] - m) * s * weight[i] + bias[i];
  *mean = m;
  *rstd = s;
}

void layernorm_forward(Ten out, float* mean, float* rstd, Ten inp, const float* weight, const float* bias, int N, int C) {
#pragma omp parallel for schedule(static) if ((long)N * C >= SERIAL_WORK)
  for (int n = 0; n < N; n++) {
    const float* x = load(inp, (long)n * C, C, 0);
    float* o = dest(out, (long)n * C, C, 1);
    layernorm_row(o, mean + n, rstd + n, x, weight, bias, C);
    store(out, (long)n * C, C, o);
  }
}

CLONES static void layernorm_backward_row(float* di, float* dw, float* db, const float* x, const float* d,
                                          const float* weight, float m, float s, int C) {
  float a = 0.f, b = 0.f;
#pragma omp simd reduction(+ : a, b)
  for (int i = 0; i < C; i++) {
    const float dn = weight[i] * d[i];
    a += dn;
    b += dn * (x[i] - m) * s;
  }
  a /= C;
  b /= C;
#pragma omp simd
  for (int i = 0; i < C; i++) {
    const float norm = (x[i] - m) * s;
    db[i] += d[i];
    dw[i] += norm * d[i];
    di[i] += (weight[i] * d[i] - a - norm * b) * s;
  }
}

void layernorm_backward(Ten dinp, float* dweight, float* dbias, Ten dout, Ten inp, const float* weight,
                        const float* mean, const float* rstd, int N, int C) {
  const int nt = g_threads();
  // per-thread partial sums for dweight/dbias, reduced at the end
  std::vector<float> part((size_t)nt * 2 * C, 0.f);
#pragma omp parallel
  {
    float* dw = part.data() + (size_t)omp_get_thread_num() * 2 * C;
    float* db = dw + C;
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++) {
      const float* x = load(inp, (long)n * C, C, 0);
      const float* d = load(dout, (long)n * C, C, 1);
      float* di = dest_acc(dinp, (long)n * C, C, 2);
      layernorm_backward_row(di, dw, db, x, d, weight, mean[n], rstd[n], C);
      store(dinp, (long)n * C, C, di);
    }
  }
  for (int t = 0; t < nt; t++) {
    const float* p = part.data() + (size_t)t * 2 * C;
    for (int i = 0; i < C; i++) {
      dweight[i] += p[i];
      dbias[i] += p[C + i];
    }
  }
}

// ---------------------------------------------------------------- matmul (weight is (OC, C) as nn.Linear)
void matmul_forward(Ten out, Ten inp, Ten weight, const float* bias, int N, int C, int OC, bool bf16) {
  gemm_any(bf16, N, OC, C, src_of(inp), C, 1, src_of(weight), 1, C, out, OC, false, bias);
}

void matmul_forward_bf16_weights(float* out, const float* inp, const uint16_t* weight, const float* bias, int N, int C, int OC) {
  if (N > 4 && gemm_packs_bf16_weights())
    return gemm_any(false, N, OC, C, Src{inp, nullptr}, C, 1, Src{nullptr, weight}, 1, C, f32_ten(out), OC, false, bias);
  matmul_bf16_weights(out, inp, weight, bias, N, C, OC);
}

void matmul_backward(Ten dinp, float* dweight, float* dbias, Ten dout, Ten inp, Ten weight, int N, int C, int OC, bool bf16) {
  const Src W = src_of(weight), D = src_of(dout);
  if (!dinp.none()) gemm_any(bf16, N, C, OC, D, OC, 1, W, C, 1, dinp, C, false, nullptr);  // dinp = dout @ W
  gemm_any(bf16, OC, C, N, D, 1, OC, src_of(inp), C, 1, f32_ten(dweight), C, true, nullptr);  // dW += dout^T @ inp
  if (dbias) {
#pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OC; o0 += 64) {
      const int o1 = o0 + 64 < OC ? o0 + 64 : OC;
      float acc[64] = {0};
      for (int n = 0; n < N; n++) {
        const float* d = load(dout, (long)n * OC + o0, o1 - o0, 0);
        for (int o = o0; o < o1; o++) acc[o - o0] += d[o - o0];
      }
      for (int o = o0; o < o1; o++) dbias[o] += acc[o - o0];
    }
  }
}

// ---------------------------------------------------------------- elementwise
static const float GELU_SCALE = 0.7978845608028654f;  // sqrt(2/pi)

CLONES static void gelu_forward_range(float* out, const float* inp, long i0, long i1) {
  for (long i = i0; i < i1; i++) {
    const float x = inp[i];
    const float u = GELU_SCALE * (x + 0.044715f * x * x * x);
    const float th = 1.f - 2.f / (fast_exp(2.f * u) + 1.f);  // tanh(u)
    out[i] = 0.5f * x * (1.f + th);
  }
}

// Element-wise work over [0, N): float32 arguments in place; with a bf16 one, chunks of STAGE values (parallel.h)
// staged through float32 buffers. `range` is a (target_clones) kernel over [i0, i1) of its arrays.

template <class F>
static void elementwise1(Ten out, Ten a, long N, F range) {
  if (!out.h && !a.h) return parallel_range(N, [=](long i0, long i1) { range(out.f, a.f, i0, i1); });
  parallel_range(N, [=](long i0, long i1) {
    for (long c = i0; c < i1; c += STAGE) {
      const long n = std::min(STAGE, i1 - c);
      const float* x = load(a, c, n, 0);
      float* o = dest(out, c, n, 1);
      range(o, x, 0, n);
      store(out, c, n, o);
    }
  });
}

template <class F>
static void elementwise2(Ten out, Ten a, Ten b, long N, F range) {
  if (!out.h && !a.h && !b.h) return parallel_range(N, [=](long i0, long i1) { range(out.f, a.f, b.f, i0, i1); });
  parallel_range(N, [=](long i0, long i1) {
    for (long c = i0; c < i1; c += STAGE) {
      const long n = std::min(STAGE, i1 - c);
      const float *x = load(a, c, n, 0), *y = load(b, c, n, 1);
      float* o = dest(out, c, n, 2);
      range(o, x, y, 0, n);
      store(out, c, n, o);
    }
  });
}

// the AVX-512 body where the CPU has it (layers_avx512.h: a d12 step's 12 forward calls 14.8 -> 9.7 ms, backward
// 14.8 -> 9.5 ms, on bf16 activations)
static void gelu_forward_any(float* out, const float* inp, long i0, long i1) {
#if defined(__x86_64__)
  if (kAvx512) return avx512::gelu_forward(out + i0, inp + i0, i1 - i0);
#endif
  gelu_forward_range(out, inp, i0, i1);
}

void gelu_forward(Ten out, Ten inp, long N) { elementwise1(out, inp, N, gelu_forward_any); }

CLONES static void gelu_backward_range(float* dinp, const float* inp, const float* dout, long i0, long i1) {
  for (long i = i0; i < i1; i++) {
    const float x = inp[i];
    const float u = GELU_SCALE * (x + 0.044715f * x * x * x);
    const float th = 1.f - 2.f / (fast_exp(2.f * u) + 1.f);
    const float grad = 0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * GELU_SCALE * (1.f + 3.f * 0.044715f * x * x);
    dinp[i] = grad * dout[i];
  }
}

static void gelu_backward_any(float* dinp, const float* inp, const float* dout, long i0, long i1) {
#if defined(__x86_64__)
  if (kAvx512) return avx512::gelu_backward(dinp + i0, inp + i0, dout + i0, i1 - i0);
#endif
  gelu_backward_range(dinp, inp, dout, i0, i1);
}

void gelu_backward(Ten dinp, Ten inp, Ten dout, long N) { elementwise2(dinp, inp, dout, N, gelu_backward_any); }

CLONES static void residual_range(float* out, const float* a, const float* b, long i0, long i1) {
  for (long i = i0; i < i1; i++) out[i] = a[i] + b[i];
}

void residual_forward(Ten out, Ten a, Ten b, long N) { elementwise2(out, a, b, N, residual_range); }

// ---------------------------------------------------------------- fused softmax + cross-entropy
CLONES static void cross_entropy_rows(float* losses, Ten dlog, Ten logits, const int* targets, long n0, long n1, int V,
                                      int Vp, float scale, const float* weights) {
  for (long n = n0; n < n1; n++) {
    const float grad_scale = weights ? scale * weights[n] : scale;
    const float* x = load(logits, (long)n * Vp, Vp, 0);
    float* d = dlog.none() ? nullptr : dest(dlog, (long)n * Vp, Vp, 1);
    const int target = targets[n];
#if defined(__x86_64__)
    if (kAvx512 && target >= 0) {  // layers_avx512.h: the loops below, vectorized by hand
      losses[n] = avx512::cross_entropy_row(d, x, V, target, grad_scale);
      if (d) {
        for (int i = V; i < Vp; i++) d[i] = 0.f;
        store(dlog, (long)n * Vp, Vp, d);
      }
      continue;
    }
#endif
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < V; i++) sum += fast_exp(x[i] - mx);
    const float lse = std::log(sum) + mx;
    const float xt = target >= 0 ? x[target] : 0.f;  // read before dlogits may overwrite it
    losses[n] = target >= 0 ? lse - xt : 0.f;
    if (d) {
      if (target < 0) {
        std::memset(d, 0, sizeof(float) * Vp);
      } else {
#pragma omp simd
        for (int i = 0; i < V; i++) d[i] = fast_exp(x[i] - lse) * grad_scale;
        d[target] -= grad_scale;
        for (int i = V; i < Vp; i++) d[i] = 0.f;
      }
      store(dlog, (long)n * Vp, Vp, d);
    }
  }
}

void cross_entropy(float* losses, Ten dlogits, Ten logits, const int* targets, int N, int V, int Vp, float grad_scale,
                   const float* weights) {
  parallel_range(N, [=](long n0, long n1) { cross_entropy_rows(losses, dlogits, logits, targets, n0, n1, V, Vp, grad_scale, weights); },
                 (long)N * Vp);
}
