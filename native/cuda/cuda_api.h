// The slice of the CUDA driver API, NVRTC, cuBLAS and NCCL that the GPU backend uses, declared here so that the addon
// builds on any machine without CUDA and finds the libraries at run time with dlopen(). Enum values and signatures
// are those of CUDA 11.2-13's headers (cuda.h, nvrtc.h, cublas_api.h, library_types.h) and NCCL 2's nccl.h.
#pragma once

#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

// ---- driver API (libcuda.so.1, installed with the NVIDIA driver)
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st*;
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;
using CUstream = struct CUstream_st*;
using CUevent = struct CUevent_st*;
constexpr int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
constexpr CUresult CUDA_ERROR_NOT_READY = 600;
constexpr unsigned CU_STREAM_NON_BLOCKING = 1, CU_EVENT_DISABLE_TIMING = 2;

// ---- NVRTC (libnvrtc.so.N, CUDA toolkit or the nvidia-cuda-nvrtc wheel)
using nvrtcResult = int;
using nvrtcProgram = struct _nvrtcProgram*;

// ---- cuBLAS (libcublas.so.N)
using cublasStatus_t = int;
using cublasHandle_t = struct cublasContext*;
constexpr int CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;
constexpr int CUDA_R_32F = 0, CUDA_R_16BF = 14;
constexpr int CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_16BF = 75, CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
constexpr int CUBLAS_GEMM_DEFAULT = -1;

// ---- NCCL (libnccl.so.2)
using ncclResult_t = int;
using ncclComm_t = struct ncclComm*;
struct ncclUniqueId {
  char internal[128];
};
constexpr int ncclUint8 = 1, ncclFloat32 = 7, ncclFloat64 = 8;
constexpr int ncclSum = 0;
constexpr ncclResult_t ncclSuccess = 0, ncclInProgress = 7;

/** Opens the first library of `names` found in GPT2_CUDA_LIBDIR (':'-separated), the loader's path, CUDA_HOME/lib64,
 * /usr/local/cuda/lib64 or /usr/local/nvidia/lib64 (the driver's folder in NVIDIA's containers); `tried` lists
 * what was tried, for the error message. */
inline void* open_cuda_library(const std::vector<std::string>& names, std::string& tried) {
  std::vector<std::string> dirs;
  if (const char* d = std::getenv("GPT2_CUDA_LIBDIR")) {
    std::string s(d);
    size_t a = 0;
    while (a <= s.size()) {
      size_t b = s.find(':', a);
      if (b == std::string::npos) b = s.size();
      if (b > a) dirs.push_back(s.substr(a, b - a) + "/");
      a = b + 1;
    }
  }
  dirs.push_back("");
  if (const char* h = std::getenv("CUDA_HOME")) dirs.push_back(std::string(h) + "/lib64/");
  dirs.push_back("/usr/local/cuda/lib64/");
  dirs.push_back("/usr/local/nvidia/lib64/");
  tried.clear();
  for (const auto& dir : dirs)
    for (const auto& name : names) {
      std::string path = dir + name;
      if (void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) return h;
      if (dir.empty()) tried += (tried.empty() ? "" : ", ") + name;
    }
  return nullptr;
}

/** dlsym into a typed function pointer; false when the symbol is missing */
template <typename F>
bool load_symbol(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}
