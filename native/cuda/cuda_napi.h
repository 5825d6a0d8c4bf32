// Node-API plumbing of the CUDA backend's bindings (cuda.cc, nccl.cc): arguments as device addresses, numbers,
// strings and typed arrays; exported functions that turn C++ exceptions into JavaScript errors.
#pragma once

#include <node_api.h>

#include <string>

#include "cuda_state.h"

namespace gpt2cuda {


struct Args {
  napi_env env;
  napi_value argv[14];
  size_t argc = 14;
  Args(napi_env e, napi_callback_info info) : env(e) { napi_get_cb_info(e, info, &argc, argv, nullptr, nullptr); }

  double num(size_t i) {
    double v = 0;
    if (i >= argc || napi_get_value_double(env, argv[i], &v) != napi_ok)
      throw CudaError("argument " + std::to_string(i) + " must be a number");
    return v;
  }
  int integer(size_t i) { return (int)num(i); }
  long lng(size_t i) { return (long)num(i); }
  /** a device address, or 0 for null */
  CUdeviceptr ptr(size_t i) {
    napi_valuetype t = napi_undefined;
    if (i < argc) napi_typeof(env, argv[i], &t);
    if (t == napi_null || t == napi_undefined) return 0;
    return (CUdeviceptr)num(i);
  }
  /** a typed array's bytes */
  void* bytes(size_t i, size_t& nbytes, napi_typedarray_type* type = nullptr) {
    bool is = false;
    if (i < argc) napi_is_typedarray(env, argv[i], &is);
    if (!is) throw CudaError("argument " + std::to_string(i) + " must be a typed array");
    napi_typedarray_type tt;
    size_t len;
    void* data;
    napi_value ab;
    size_t off;
    napi_get_typedarray_info(env, argv[i], &tt, &len, &data, &ab, &off);
    size_t elem = (tt == napi_float64_array || tt == napi_bigint64_array || tt == napi_biguint64_array) ? 8
                  : (tt == napi_int8_array || tt == napi_uint8_array || tt == napi_uint8_clamped_array) ? 1
                  : (tt == napi_int16_array || tt == napi_uint16_array) ? 2 : 4;
    nbytes = len * elem;
    if (type) *type = tt;
    return data;
  }
  const int* ints(size_t i, size_t need) {
    size_t nb;
    napi_typedarray_type t;
    void* d = bytes(i, nb, &t);
    if (t != napi_int32_array || nb / 4 < need)
      throw CudaError("argument " + std::to_string(i) + " must be an Int32Array of " + std::to_string(need) + " ids");
    return static_cast<const int*>(d);
  }
  const float* floats(size_t i, size_t need) {
    size_t nb;
    napi_typedarray_type t;
    void* d = bytes(i, nb, &t);
    if (t != napi_float32_array || nb / 4 < need)
      throw CudaError("argument " + std::to_string(i) + " must be a Float32Array of " + std::to_string(need) + " values");
    return static_cast<const float*>(d);
  }
  /** an absent, undefined or null argument */
  bool isNull(size_t i) {
    napi_valuetype t = napi_undefined;
    if (i < argc) napi_typeof(env, argv[i], &t);
    return t == napi_null || t == napi_undefined;
  }
  std::string str(size_t i) {
    size_t n = 0;
    if (i >= argc || napi_get_value_string_utf8(env, argv[i], nullptr, 0, &n) != napi_ok)
      throw CudaError("argument " + std::to_string(i) + " must be a string");
    std::string s(n, '\0');
    napi_get_value_string_utf8(env, argv[i], &s[0], n + 1, &n);
    return s;
  }
};

inline napi_value str_value(napi_env env, const std::string& s) {
  napi_value v;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}

inline void set(napi_env env, napi_value obj, const char* key, napi_value v) { napi_set_named_property(env, obj, key, v); }

// defines `napi_value name(env, info)` around a body that reads its arguments from `a`: inside an anonymous namespace,
// or in gpt2cuda for the kernel bindings that kernel_args.h declares
#define EXPORT(name)                                               \
  napi_value name##_body(napi_env env, Args& a);                   \
  napi_value name(napi_env env, napi_callback_info info) {         \
    try {                                                          \
      Args a(env, info);                                           \
      return name##_body(env, a);                                  \
    } catch (const std::exception& e) {                            \
      napi_throw_error(env, nullptr, e.what());                    \
      return nullptr;                                              \
    }                                                              \
  }                                                                \
  napi_value name##_body(napi_env env, Args& a)

}  // namespace gpt2cuda
