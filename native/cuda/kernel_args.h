// What the CUDA backend's kernel bindings share (layers.cc, attention.cc): how their tensors arrive, and the bindings
// themselves, one per line of native/kernels.def.
#pragma once

#include <node_api.h>

#include <string>

#include "cuda_napi.h"
#include "device.h"

namespace gpt2cuda {

constexpr size_t arg_count(const char* kinds) {
  size_t n = 1;
  for (; *kinds; kinds++) n += *kinds == ' ';
  return n;
}
// kXArgs: how many arguments kernel X declares in the list; the forwarder (src/kernels/forward.ts) passes one more
#define GPT2_KERNEL(js, cpp, args) constexpr size_t k##cpp##Args = arg_count(args);
#include "../kernels.def"
#undef GPT2_KERNEL

/**
 * A kernel binding's tensors. After the listed arguments comes one more host value: bit i set when tensor argument i
 * is bf16. Activations (Act) may be either; parameters, their gradients, statistics and AdamW's state are float32.
 */
struct Tensors {
  Args& a;
  unsigned mask;
  Tensors(Args& args, size_t declared) : a(args), mask((unsigned)args.num(declared)) {}
  Act act(size_t i) { return {a.ptr(i), (int)((mask >> i) & 1u)}; }
  CUdeviceptr f32(size_t i) {
    if ((mask >> i) & 1u) throw CudaError("argument " + std::to_string(i) + " must be a float32 tensor, not bf16");
    return a.ptr(i);
  }
};

// CuName for each listed kernel, exported as cuName (layers.cc registers them)
#define GPT2_KERNEL(js, cpp, args) napi_value Cu##cpp(napi_env env, napi_callback_info info);
#include "../kernels.def"
#undef GPT2_KERNEL

}  // namespace gpt2cuda
