// Node-API bindings of the CPU kernels: each export unpacks typed arrays (no copies) and numbers, checks sizes, calls a
// kernel. Registered by ../addon.cc with the MPI, CUDA and NCCL bindings.

#include <node_api.h>
#include <sys/mman.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "gemm.h"
#include "layers.h"
#include "../common/napi_util.h"
#include "threads.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {


struct Args {
  napi_env env;
  napi_value argv[12];
  size_t argc = 12;
  bool failed = false;

  Args(napi_env e, napi_callback_info info) : env(e) { napi_get_cb_info(e, info, &argc, argv, nullptr, nullptr); }

  void fail(const std::string& msg) {
    if (!failed) napi_throw_type_error(env, nullptr, msg.c_str());
    failed = true;
  }

  // a Float32Array (or null when allowed); `need` elements at least
  float* f32(size_t i, long need, bool nullable = false) {
    if (failed) return nullptr;
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    if (nullable && (t == napi_null || t == napi_undefined)) return nullptr;
    bool is = false;
    napi_is_typedarray(env, argv[i], &is);
    if (!is) return fail("argument " + std::to_string(i) + " must be a Float32Array"), nullptr;
    napi_typedarray_type type;
    size_t len;
    void* data;
    napi_get_typedarray_info(env, argv[i], &type, &len, &data, nullptr, nullptr);
    if (type != napi_float32_array) return fail("argument " + std::to_string(i) + " must be a Float32Array"), nullptr;
    if ((long)len < need)
      return fail("argument " + std::to_string(i) + " holds " + std::to_string(len) + " floats, needs " +
                  std::to_string(need)),
             nullptr;
    return static_cast<float*>(data);
  }

  // a Uint16Array of bf16 values (the upper halves of floats); `need` elements at least
  unsigned short* u16(size_t i, long need) {
    if (failed) return nullptr;
    bool is = false;
    napi_is_typedarray(env, argv[i], &is);
    napi_typedarray_type type = napi_int8_array;
    size_t len = 0;
    void* data = nullptr;
    if (is) napi_get_typedarray_info(env, argv[i], &type, &len, &data, nullptr, nullptr);
    if (!is || type != napi_uint16_array) return fail("argument " + std::to_string(i) + " must be a Uint16Array (bf16)"), nullptr;
    if ((long)len < need) return fail("argument " + std::to_string(i) + " holds too few bf16 values"), nullptr;
    return static_cast<unsigned short*>(data);
  }

  // a tensor of either storage: a Float32Array, or a Uint16Array of bf16 values (or null when allowed)
  Ten ten(size_t i, long need, bool nullable = false) {
    if (failed) return Ten{};
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    if (nullable && (t == napi_null || t == napi_undefined)) return Ten{};
    bool is = false;
    napi_is_typedarray(env, argv[i], &is);
    napi_typedarray_type type = napi_int8_array;
    size_t len = 0;
    void* data = nullptr;
    if (is) napi_get_typedarray_info(env, argv[i], &type, &len, &data, nullptr, nullptr);
    if (!is || (type != napi_float32_array && type != napi_uint16_array))
      return fail("argument " + std::to_string(i) + " must be a Float32Array or a Uint16Array (bf16)"), Ten{};
    if ((long)len < need)
      return fail("argument " + std::to_string(i) + " holds " + std::to_string(len) + " values, needs " + std::to_string(need)), Ten{};
    return type == napi_float32_array ? Ten{static_cast<float*>(data), nullptr} : Ten{nullptr, static_cast<uint16_t*>(data)};
  }

  int* i32(size_t i, long need) {
    if (failed) return nullptr;
    bool is = false;
    napi_is_typedarray(env, argv[i], &is);
    napi_typedarray_type type = napi_int8_array;
    size_t len = 0;
    void* data = nullptr;
    if (is) napi_get_typedarray_info(env, argv[i], &type, &len, &data, nullptr, nullptr);
    if (!is || type != napi_int32_array) return fail("argument " + std::to_string(i) + " must be an Int32Array"), nullptr;
    if ((long)len < need) return fail("argument " + std::to_string(i) + " holds too few ints"), nullptr;
    return static_cast<int*>(data);
  }

  double num(size_t i) {
    double v = 0;
    if (!failed && napi_get_value_double(env, argv[i], &v) != napi_ok) fail("argument " + std::to_string(i) + " must be a number");
    return v;
  }
  int integer(size_t i) { return (int)num(i); }
  bool boolean(size_t i) {
    bool v = false;
    if (!failed && napi_get_value_bool(env, argv[i], &v) != napi_ok) fail("argument " + std::to_string(i) + " must be a boolean");
    return v;
  }
};

napi_value undefined(napi_env env) { return undefined_value(env); }
napi_value number(napi_env env, double v) { return number_value(env, v); }

#define KERNEL(name) napi_value name(napi_env env, napi_callback_info info)

KERNEL(SetThreads) {
  Args a(env, info);
  int n = a.integer(0);
  if (!a.failed) omp_set_num_threads(n < 1 ? 1 : n);
  return undefined(env);
}
KERNEL(GetThreads) { return (void)info, number(env, g_threads()); }
// adviseHugePages(typedArray): madvise(MADV_HUGEPAGE) over the array's whole 2 MiB pages (THP in "madvise" mode).
// The kernels stream weights and activations: 4 KiB pages cost a TLB miss each and end the hardware prefetch. Advice
// only: where the kernel refuses, nothing changes.
KERNEL(AdviseHugePages) {
  size_t argc = 1;
  napi_value argv[1], r;
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  bool is = false;
  if (argc >= 1) napi_is_typedarray(env, argv[0], &is);
  napi_typedarray_type type = napi_int8_array;
  size_t len = 0;
  void* data = nullptr;
  if (is) napi_get_typedarray_info(env, argv[0], &type, &len, &data, nullptr, nullptr);
  const uintptr_t huge = 2u << 20, end = (uintptr_t)data + len * (type == napi_uint16_array ? 2 : 4);
  const uintptr_t lo = ((uintptr_t)data + huge - 1) & ~(huge - 1), hi = end & ~(huge - 1);
  napi_get_boolean(env, is && hi > lo && madvise((void*)lo, hi - lo, MADV_HUGEPAGE) == 0, &r);
  return r;
}
KERNEL(RequireBf16) {
  (void)info;
  if (!cpu_has_bf16()) {
    napi_throw_error(env, nullptr, "--dtype bf16 needs a CPU with AVX512-BF16 (vdpbf16ps); this one has none");
    return nullptr;
  }
  return undefined(env);
}

KERNEL(CpuFeatures) {
  (void)info;
  std::string s = std::string("gemm=") + gemm_isa() + (cpu_has_bf16() ? " bf16=avx512bf16" : " bf16=none");
  napi_value r;
  napi_create_string_utf8(env, s.c_str(), s.size(), &r);
  return r;
}

// FMA peak: independent FMA chains on every thread for about `seconds`; returns GFLOP/s (fp32).
#if defined(__x86_64__)
__attribute__((target("avx512f,fma"))) double peak_avx512(long iters) {
  double sink = 0;
#pragma omp parallel reduction(+ : sink)
  {
    __m512 acc[12];
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 12
      for (int i = 0; i < 12; i++) acc[i] = _mm512_fmadd_ps(acc[i], m, c);
    for (int i = 0; i < 12; i++) sink += _mm512_reduce_add_ps(acc[i]);
  }
  return sink;
}
__attribute__((target("avx2,fma"))) double peak_avx2(long iters) {
  double sink = 0;
#pragma omp parallel reduction(+ : sink)
  {
    __m256 acc[12];
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 12
      for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], m, c);
    float tmp[8];
    for (int i = 0; i < 12; i++) {
      _mm256_storeu_ps(tmp, acc[i]);
      for (float x : tmp) sink += x;
    }
  }
  return sink;
}
#endif

KERNEL(MeasurePeakGflops) {
  Args a(env, info);
  const double seconds = a.num(0);
  if (a.failed) return nullptr;
#if defined(__x86_64__)
  const bool avx512 = std::string(gemm_isa()) == "avx512";
  const int lanes = avx512 ? 16 : 8;
  auto run = [&](long iters) {
    auto t0 = std::chrono::steady_clock::now();
    volatile double s = avx512 ? peak_avx512(iters) : peak_avx2(iters);
    (void)s;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  long iters = 1 << 20;
  double t = run(iters);
  while (t < seconds / 4) iters *= 2, t = run(iters);
  // best of three: the machine is shared and the first run may wake the cores
  double best = t;
  for (int r = 0; r < 3; r++) {
    double tr = run(iters);
    best = tr < best ? tr : best;
  }
  return number(env, (double)iters * 12 * lanes * 2 * g_threads() / best / 1e9);
#else
  return number(env, 0);
#endif
}

KERNEL(EncoderForward) {
  Args a(env, info);
  int B = a.integer(4), T = a.integer(5), C = a.integer(6);
  Ten out = a.ten(0, (long)B * T * C);
  int* inp = a.i32(1, (long)B * T);
  Ten wte = a.ten(2, 0), wpe = a.ten(3, (long)T * C);
  if (!a.failed) encoder_forward(out, inp, wte, wpe, B, T, C);
  return undefined(env);
}
KERNEL(EncoderBackward) {
  Args a(env, info);
  int B = a.integer(4), T = a.integer(5), C = a.integer(6);
  float *dwte = a.f32(0, 0), *dwpe = a.f32(1, (long)T * C);
  Ten dout = a.ten(2, (long)B * T * C);
  int* inp = a.i32(3, (long)B * T);
  if (!a.failed) encoder_backward(dwte, dwpe, dout, inp, B, T, C);
  return undefined(env);
}
KERNEL(LayernormForward) {
  Args a(env, info);
  int N = a.integer(6), C = a.integer(7);
  long NC = (long)N * C;
  Ten out = a.ten(0, NC), inp = a.ten(3, NC);
  float *mean = a.f32(1, N), *rstd = a.f32(2, N), *w = a.f32(4, C), *b = a.f32(5, C);
  if (!a.failed) layernorm_forward(out, mean, rstd, inp, w, b, N, C);
  return undefined(env);
}
KERNEL(LayernormBackward) {
  Args a(env, info);
  int N = a.integer(8), C = a.integer(9);
  long NC = (long)N * C;
  Ten dinp = a.ten(0, NC), dout = a.ten(3, NC), inp = a.ten(4, NC);
  float *dw = a.f32(1, C), *db = a.f32(2, C);
  float *w = a.f32(5, C), *mean = a.f32(6, N), *rstd = a.f32(7, N);
  if (!a.failed) layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
  return undefined(env);
}
KERNEL(MatmulForward) {
  Args a(env, info);
  int N = a.integer(4), C = a.integer(5), OC = a.integer(6);
  bool bf16 = a.boolean(7);  // per call: each backend has its own precision
  Ten out = a.ten(0, (long)N * OC), inp = a.ten(1, (long)N * C), w = a.ten(2, (long)OC * C);
  float* b = a.f32(3, OC, true);
  if (!a.failed) matmul_forward(out, inp, w, b, N, C, OC, bf16);
  return undefined(env);
}
KERNEL(MatmulForwardBf16Weights) {
  Args a(env, info);
  int N = a.integer(4), C = a.integer(5), OC = a.integer(6);
  float *out = a.f32(0, (long)N * OC), *inp = a.f32(1, (long)N * C), *b = a.f32(3, OC, true);
  unsigned short* w = a.u16(2, (long)OC * C);
  if (!a.failed) matmul_forward_bf16_weights(out, inp, w, b, N, C, OC);
  return undefined(env);
}
// Backend.copy: dst = src (same length), converted to dst's storage (float32 -> bf16 rounds to nearest even)
KERNEL(CopyTensor) {
  Args a(env, info);
  long n = (long)a.num(2);
  Ten dst = a.ten(0, n), src = a.ten(1, n);
  if (!a.failed) copy_tensor(dst, src, n);
  return undefined(env);
}
KERNEL(MatmulBackward) {
  Args a(env, info);
  int N = a.integer(6), C = a.integer(7), OC = a.integer(8);
  bool bf16 = a.boolean(9);
  Ten dinp = a.ten(0, (long)N * C, true), dout = a.ten(3, (long)N * OC), inp = a.ten(4, (long)N * C), w = a.ten(5, (long)OC * C);
  float *dw = a.f32(1, (long)OC * C), *db = a.f32(2, OC, true);
  if (!a.failed) matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC, bf16);
  return undefined(env);
}
KERNEL(AttentionForward) {
  Args a(env, info);
  int B = a.integer(3), T = a.integer(4), C = a.integer(5), NH = a.integer(6);
  Ten out = a.ten(0, (long)B * T * C), qkv = a.ten(2, (long)B * T * 3 * C);
  float* lse = a.f32(1, (long)B * NH * T);
  bool bf16 = a.boolean(7);
  if (!a.failed) attention_forward(out, lse, qkv, B, T, C, NH, bf16);
  return undefined(env);
}
KERNEL(AttentionBackward) {
  Args a(env, info);
  int B = a.integer(5), T = a.integer(6), C = a.integer(7), NH = a.integer(8);
  long BTC = (long)B * T * C;
  Ten dqkv = a.ten(0, 3 * BTC), dout = a.ten(1, BTC), qkv = a.ten(2, 3 * BTC), out = a.ten(3, BTC);
  float* lse = a.f32(4, (long)B * NH * T);
  bool bf16 = a.boolean(9);
  if (!a.failed) attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH, bf16);
  return undefined(env);
}
KERNEL(AttentionCached) {
  Args a(env, info);
  int B = a.integer(4), Tq = a.integer(5), pos = a.integer(6), maxT = a.integer(7), C = a.integer(8), NH = a.integer(9);
  if (pos + Tq > maxT) return a.fail("KV cache overflow"), nullptr;
  float *out = a.f32(0, (long)B * Tq * C), *kc = a.f32(1, (long)B * maxT * C), *vc = a.f32(2, (long)B * maxT * C);
  float* qkv = a.f32(3, (long)B * Tq * 3 * C);
  if (!a.failed) attention_cached(out, kc, vc, qkv, B, Tq, pos, maxT, C, NH);
  return undefined(env);
}
KERNEL(GeluForward) {
  Args a(env, info);
  long N = (long)a.num(2);
  Ten out = a.ten(0, N), inp = a.ten(1, N);
  if (!a.failed) gelu_forward(out, inp, N);
  return undefined(env);
}
KERNEL(GeluBackward) {
  Args a(env, info);
  long N = (long)a.num(3);
  Ten dinp = a.ten(0, N), inp = a.ten(1, N), dout = a.ten(2, N);
  if (!a.failed) gelu_backward(dinp, inp, dout, N);
  return undefined(env);
}
KERNEL(ResidualForward) {
  Args a(env, info);
  long N = (long)a.num(3);
  Ten out = a.ten(0, N), x = a.ten(1, N), y = a.ten(2, N);
  if (!a.failed) residual_forward(out, x, y, N);
  return undefined(env);
}
KERNEL(CrossEntropy) {
  Args a(env, info);
  int N = a.integer(4), V = a.integer(5), Vp = a.integer(6);
  float gs = (float)a.num(7);
  float* losses = a.f32(0, N);
  Ten dlogits = a.ten(1, (long)N * Vp, true), logits = a.ten(2, (long)N * Vp);
  int* targets = a.i32(3, N);
  float* weights = a.f32(8, N, true);  // optional per-row gradient weights
  if (!a.failed) {
    for (int i = 0; i < N; i++)
      if (targets[i] >= V) return a.fail("target id out of range"), nullptr;
    cross_entropy(losses, dlogits, logits, targets, N, V, Vp, gs, weights);
  }
  return undefined(env);
}
KERNEL(AdamW) {
  Args a(env, info);
  long n = (long)a.num(4);
  float *p = a.f32(0, n), *g = a.f32(1, n), *m = a.f32(2, n), *v = a.f32(3, n);
  float lr = (float)a.num(5), b1 = (float)a.num(6), b2 = (float)a.num(7), eps = (float)a.num(8), wd = (float)a.num(9);
  int t = a.integer(10);
  float gs = (float)a.num(11);
  if (!a.failed) adamw(p, g, m, v, n, lr, b1, b2, eps, wd, t, gs);
  return undefined(env);
}
KERNEL(SumSquares) {
  Args a(env, info);
  long n = (long)a.num(1);
  Ten x = a.ten(0, n);
  return a.failed ? nullptr : number(env, sum_squares(x, n));
}
KERNEL(Scale) {
  Args a(env, info);
  long n = (long)a.num(1);
  float* x = a.f32(0, n);
  float s = (float)a.num(2);
  if (!a.failed) scale(x, n, s);
  return undefined(env);
}

}  // namespace

void register_cpu(napi_env env, napi_value exports) {
  export_functions(env, exports, {
      {"setThreads", SetThreads}, {"getThreads", GetThreads}, {"requireBf16", RequireBf16}, {"adviseHugePages", AdviseHugePages},
      {"cpuFeatures", CpuFeatures}, {"measurePeakGflops", MeasurePeakGflops},
      {"matmulForwardBf16Weights", MatmulForwardBf16Weights}, {"copyTensor", CopyTensor},
  // the Backend kernels, from the one list
#define GPT2_KERNEL(js, cpp, args) {#js, cpp},
#include "../kernels.def"
#undef GPT2_KERNEL
  });
}
