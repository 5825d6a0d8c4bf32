// GPT-2 layers on the CPU: OpenMP across rows / heads, inner loops written so the compiler vectorizes them;
// target_clones compiles the elementwise kernels for AVX-512, AVX2 and baseline x86-64 and picks at load time.

#include "layers.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "fast_exp.h"
#include "gemm.h"
#include "threads.h"

#if defined(__x86_64__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

// Splits [0, n) into one contiguous range per thread; f is a (target_clones) function over a range, so the
// vectorized body is the one picked for this CPU (OpenMP's outlined bodies are not cloned themselves).
// Work below SERIAL_WORK elements runs on the calling thread: waking the team costs more than it saves (token-by-
// token generation is made of such small calls).
constexpr long SERIAL_WORK = 1L << 15;

template <class F>
static void parallel_range(long n, F f, long work = -1) {
  if ((work < 0 ? n : work) < SERIAL_WORK) return f(0, n);
#pragma omp parallel
  {
    const long nt = omp_get_num_threads(), id = omp_get_thread_num();
    const long i0 = n * id / nt, i1 = n * (id + 1) / nt;
    if (i1 > i0) f(i0, i1);
  }
}

// ---------------------------------------------------------------- encoder
void encoder_forward(float* out, const int* inp, const float* wte, const float* wpe, int B, int T, int C) {
#pragma omp parallel for schedule(static) if ((long)B * T * C >= SERIAL_WORK)
  for (int bt = 0; bt < B * T; bt++) {
    const float* e = wte + (long)inp[bt] * C;
    const float* p = wpe + (long)(bt % T) * C;
    float* o = out + (long)bt * C;
    for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
  }
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const int* inp, int B, int T, int C) {
  // each thread owns a slice of channels, so rows shared by repeated tokens never race
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int c0 = (int)((long)C * id / nt), c1 = (int)((long)C * (id + 1) / nt);
    for (int bt = 0; bt < B * T; bt++) {
      const float* d = dout + (long)bt * C;
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
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int N, int C) {
#pragma omp parallel for schedule(static) if ((long)N * C >= SERIAL_WORK)
  for (int n = 0; n < N; n++) {
    const float* x = inp + (long)n * C;
    float m = 0.f;
#pragma omp simd reduction(+ : m)
    for (int i = 0; i < C; i++) m += x[i];
    m /= C;
    float v = 0.f;
#pragma omp simd reduction(+ : v)
    for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
    v /= C;
    const float s = 1.f / std::sqrt(v + 1e-5f);
    float* o = out + (long)n * C;
#pragma omp simd
    for (int i = 0; i < C; i++) o[i] = (x[i] - m) * s * weight[i] + bias[i];
    mean[n] = m;
    rstd[n] = s;
  }
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C) {
  const int nt = g_threads();
  // per-thread partial sums for dweight/dbias, reduced at the end
  std::vector<float> part((size_t)nt * 2 * C, 0.f);
#pragma omp parallel
  {
    float* dw = part.data() + (size_t)omp_get_thread_num() * 2 * C;
    float* db = dw + C;
#pragma omp for schedule(static)
    for (int n = 0; n < N; n++) {
      const float* x = inp + (long)n * C;
      const float* d = dout + (long)n * C;
      const float m = mean[n], s = rstd[n];
      float a = 0.f, b = 0.f;
#pragma omp simd reduction(+ : a, b)
      for (int i = 0; i < C; i++) {
        const float dn = weight[i] * d[i];
        a += dn;
        b += dn * (x[i] - m) * s;
      }
      a /= C;
      b /= C;
      float* di = dinp + (long)n * C;
#pragma omp simd
      for (int i = 0; i < C; i++) {
        const float norm = (x[i] - m) * s;
        db[i] += d[i];
        dw[i] += norm * d[i];
        di[i] += (weight[i] * d[i] - a - norm * b) * s;
      }
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
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC,
                    bool bf16) {
  auto gemm = bf16 ? sgemm_bf16 : sgemm;
  gemm(N, OC, C, inp, C, 1, weight, 1, C, out, OC, false, bias);
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC, bool bf16) {
  auto gemm = bf16 ? sgemm_bf16 : sgemm;
  if (dinp) gemm(N, C, OC, dout, OC, 1, weight, C, 1, dinp, C, false, nullptr);  // dinp = dout @ W
  gemm(OC, C, N, dout, 1, OC, inp, C, 1, dweight, C, true, nullptr);              // dW += dout^T @ inp
  if (dbias) {
#pragma omp parallel for schedule(static)
    for (int o0 = 0; o0 < OC; o0 += 64) {
      const int o1 = o0 + 64 < OC ? o0 + 64 : OC;
      float acc[64] = {0};
      for (int n = 0; n < N; n++) {
        const float* d = dout + (long)n * OC;
        for (int o = o0; o < o1; o++) acc[o - o0] += d[o];
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

void gelu_forward(float* out, const float* inp, long N) {
  parallel_range(N, [=](long i0, long i1) { gelu_forward_range(out, inp, i0, i1); });
}

CLONES static void gelu_backward_range(float* dinp, const float* inp, const float* dout, long i0, long i1) {
  for (long i = i0; i < i1; i++) {
    const float x = inp[i];
    const float u = GELU_SCALE * (x + 0.044715f * x * x * x);
    const float th = 1.f - 2.f / (fast_exp(2.f * u) + 1.f);
    const float grad = 0.5f * (1.f + th) + 0.5f * x * (1.f - th * th) * GELU_SCALE * (1.f + 3.f * 0.044715f * x * x);
    dinp[i] = grad * dout[i];
  }
}

void gelu_backward(float* dinp, const float* inp, const float* dout, long N) {
  parallel_range(N, [=](long i0, long i1) { gelu_backward_range(dinp, inp, dout, i0, i1); });
}

CLONES static void residual_range(float* out, const float* a, const float* b, long i0, long i1) {
  for (long i = i0; i < i1; i++) out[i] = a[i] + b[i];
}

void residual_forward(float* out, const float* a, const float* b, long N) {
  parallel_range(N, [=](long i0, long i1) { residual_range(out, a, b, i0, i1); });
}

// ---------------------------------------------------------------- fused softmax + cross-entropy
CLONES static void cross_entropy_rows(float* losses, float* dlogits, const float* logits, const int* targets, long n0,
                                      long n1, int V, int Vp, float scale, const float* weights) {
  for (long n = n0; n < n1; n++) {
    const float grad_scale = weights ? scale * weights[n] : scale;
    const float* x = logits + (long)n * Vp;
    const int target = targets[n];
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < V; i++) sum += fast_exp(x[i] - mx);
    const float lse = std::log(sum) + mx;
    const float xt = target >= 0 ? x[target] : 0.f;  // read before dlogits may overwrite it
    losses[n] = target >= 0 ? lse - xt : 0.f;
    if (dlogits) {
      float* d = dlogits + (long)n * Vp;
      if (target < 0) {
        std::memset(d, 0, sizeof(float) * Vp);
        continue;
      }
#pragma omp simd
      for (int i = 0; i < V; i++) d[i] = fast_exp(x[i] - lse) * grad_scale;
      d[target] -= grad_scale;
      for (int i = V; i < Vp; i++) d[i] = 0.f;
    }
  }
}

void cross_entropy(float* losses, float* dlogits, const float* logits, const int* targets, int N, int V, int Vp,
                   float grad_scale, const float* weights) {
  parallel_range(N, [=](long n0, long n1) { cross_entropy_rows(losses, dlogits, logits, targets, n0, n1, V, Vp, grad_scale, weights); },
                 (long)N * Vp);
}

// ---------------------------------------------------------------- optimizer
CLONES static void adamw_range(float* params, const float* grads, float* m, float* v, long i0, long i1, float lr,
                               float beta1, float beta2, float eps, float decay, float c1, float c2) {
  for (long i = i0; i < i1; i++) {
    const float g = grads[i];
    const float mi = beta1 * m[i] + (1.f - beta1) * g;
    const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] = params[i] * decay - lr * (mi / c1) / (std::sqrt(vi / c2) + eps);
  }
}

void adamw(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1, float beta2, float eps,
           float weight_decay, int t) {
  // bias corrections in double, as torch computes them in Python floats
  const float c1 = (float)(1.0 - std::pow((double)beta1, t)), c2 = (float)(1.0 - std::pow((double)beta2, t));
  const float decay = 1.f - lr * weight_decay;
  parallel_range(n, [=](long i0, long i1) { adamw_range(params, grads, m, v, i0, i1, lr, beta1, beta2, eps, decay, c1, c2); });
}

// Per-thread partial sums added in thread order: the same bits on every run with the same thread count (an OpenMP
// reduction may combine partials in any order, which would break bit-exact resume).
// Within a thread, 8 independent double lanes (vectorizable without reassociating any sum; one scalar chain ran at a
// third of the memory's speed), combined in lane order.
CLONES static double sum_squares_range(const float* x, long i0, long i1) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  long i = i0;
  for (; i + 8 <= i1; i += 8)
    for (int l = 0; l < 8; l++) lane[l] += (double)x[i + l] * x[i + l];
  double s = 0.0;
  for (int l = 0; l < 8; l++) s += lane[l];
  for (; i < i1; i++) s += (double)x[i] * x[i];
  return s;
}

double sum_squares(const float* x, long n) {
  std::vector<double> part(g_threads(), 0.0);
  parallel_range(n, [&](long i0, long i1) { part[omp_get_thread_num()] = sum_squares_range(x, i0, i1); });
  double s = 0.0;
  for (double p : part) s += p;
  return s;
}

CLONES static void scale_range(float* x, long i0, long i1, float s) {
  for (long i = i0; i < i1; i++) x[i] *= s;
}

void scale(float* x, long n, float s) {
  parallel_range(n, [=](long i0, long i1) { scale_range(x, i0, i1, s); });
}
