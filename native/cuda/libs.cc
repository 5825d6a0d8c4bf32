// Loading the CUDA libraries at run time (the driver API, NVRTC, cuBLAS: dlopen, never linked), and compiling
// native/cuda/kernels.cu with NVRTC. Nothing here needs a GPU except the driver's own calls.

#include <cstdio>
#include <string>
#include <vector>

#include "cuda_state.h"

namespace gpt2cuda {

Driver g_cu;
Cublas g_blas;

std::string cu_error(CUresult r) {
  const char* s = nullptr;
  if (g_cu.getErrorString) g_cu.getErrorString(r, &s);
  return s ? std::string(s) : "CUDA error " + std::to_string(r);
}

void check(CUresult r, const char* what) {
  if (r != 0) throw CudaError(std::string("CUDA ") + what + ": " + cu_error(r));
}

namespace {

struct Nvrtc {
  void* lib = nullptr;
  nvrtcResult (*version)(int*, int*);
  nvrtcResult (*createProgram)(nvrtcProgram*, const char*, const char*, int, const char* const*, const char* const*);
  nvrtcResult (*compileProgram)(nvrtcProgram, int, const char* const*);
  nvrtcResult (*getProgramLogSize)(nvrtcProgram, size_t*);
  nvrtcResult (*getProgramLog)(nvrtcProgram, char*);
  nvrtcResult (*getCUBINSize)(nvrtcProgram, size_t*);
  nvrtcResult (*getCUBIN)(nvrtcProgram, char*);
  nvrtcResult (*destroyProgram)(nvrtcProgram*);
  const char* (*getErrorString)(nvrtcResult);
} g_nvrtc;

}  // namespace

/** Loads libcuda.so.1; false with g_cu.error set when there is no driver. */
bool load_driver() {
  if (g_cu.lib) return true;
  if (!g_cu.error.empty()) return false;
  std::string tried;
  void* lib = open_cuda_library({"libcuda.so.1", "libcuda.so"}, tried);
  if (!lib) {
    g_cu.error = "no NVIDIA driver: " + tried + " not found";
    return false;
  }
  Driver& d = g_cu;
  bool ok = load_symbol(lib, "cuInit", d.init) && load_symbol(lib, "cuDriverGetVersion", d.driverGetVersion) &&
            load_symbol(lib, "cuDeviceGetCount", d.deviceGetCount) && load_symbol(lib, "cuDeviceGet", d.deviceGet) &&
            load_symbol(lib, "cuDeviceGetName", d.deviceGetName) &&
            load_symbol(lib, "cuDeviceGetAttribute", d.deviceGetAttribute) &&
            load_symbol(lib, "cuDeviceTotalMem_v2", d.deviceTotalMem) &&
            load_symbol(lib, "cuDevicePrimaryCtxRetain", d.primaryCtxRetain) &&
            load_symbol(lib, "cuCtxSetCurrent", d.ctxSetCurrent) &&
            load_symbol(lib, "cuCtxSynchronize", d.ctxSynchronize) && load_symbol(lib, "cuMemAlloc_v2", d.memAlloc) &&
            load_symbol(lib, "cuMemFree_v2", d.memFree) && load_symbol(lib, "cuMemGetInfo_v2", d.memGetInfo) &&
            load_symbol(lib, "cuMemcpyHtoD_v2", d.memcpyHtoD) && load_symbol(lib, "cuMemcpyDtoH_v2", d.memcpyDtoH) &&
            load_symbol(lib, "cuMemcpyDtoD_v2", d.memcpyDtoD) && load_symbol(lib, "cuMemsetD32_v2", d.memsetD32) &&
            load_symbol(lib, "cuModuleLoadData", d.moduleLoadData) &&
            load_symbol(lib, "cuModuleGetFunction", d.moduleGetFunction) &&
            load_symbol(lib, "cuFuncSetAttribute", d.funcSetAttribute) &&
            load_symbol(lib, "cuLaunchKernel", d.launchKernel) && load_symbol(lib, "cuGetErrorString", d.getErrorString) &&
            load_symbol(lib, "cuStreamCreate", d.streamCreate) && load_symbol(lib, "cuStreamQuery", d.streamQuery) &&
            load_symbol(lib, "cuEventCreate", d.eventCreate) && load_symbol(lib, "cuEventRecord", d.eventRecord) &&
            load_symbol(lib, "cuEventQuery", d.eventQuery) && load_symbol(lib, "cuStreamWaitEvent", d.streamWaitEvent);
  if (!ok) {
    g_cu.error = "the NVIDIA driver's libcuda lacks a function this backend needs (driver too old)";
    return false;
  }
  g_cu.lib = lib;
  return true;
}

void load_nvrtc() {
  if (g_nvrtc.lib) return;
  std::string tried;
  void* lib = open_cuda_library({"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}, tried);
  if (!lib)
    throw CudaError("NVRTC not found (tried " + tried +
                    "): install the CUDA toolkit or point GPT2_CUDA_LIBDIR at the folder holding libnvrtc.so.N");
  Nvrtc& n = g_nvrtc;
  bool ok = load_symbol(lib, "nvrtcVersion", n.version) && load_symbol(lib, "nvrtcCreateProgram", n.createProgram) &&
            load_symbol(lib, "nvrtcCompileProgram", n.compileProgram) &&
            load_symbol(lib, "nvrtcGetProgramLogSize", n.getProgramLogSize) &&
            load_symbol(lib, "nvrtcGetProgramLog", n.getProgramLog) &&
            load_symbol(lib, "nvrtcGetCUBINSize", n.getCUBINSize) && load_symbol(lib, "nvrtcGetCUBIN", n.getCUBIN) &&
            load_symbol(lib, "nvrtcDestroyProgram", n.destroyProgram) &&
            load_symbol(lib, "nvrtcGetErrorString", n.getErrorString);
  if (!ok) throw CudaError("libnvrtc lacks nvrtcGetCUBIN (CUDA 11.1 or newer is needed)");
  g_nvrtc.lib = lib;
}

void load_cublas() {
  if (g_blas.lib) return;
  std::string tried;
  void* lib = open_cuda_library({"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}, tried);
  if (!lib)
    throw CudaError("cuBLAS not found (tried " + tried +
                    "): install the CUDA toolkit or point GPT2_CUDA_LIBDIR at the folder holding libcublas.so.N");
  bool ok = load_symbol(lib, "cublasCreate_v2", g_blas.create) && load_symbol(lib, "cublasGemmEx", g_blas.gemmEx) &&
            load_symbol(lib, "cublasGemmStridedBatchedEx", g_blas.gemmStridedBatchedEx);
  if (!ok) throw CudaError("libcublas lacks cublasGemmStridedBatchedEx (CUDA 11 or newer is needed)");
  g_blas.lib = lib;
}

/** NVRTC: source -> CUBIN for sm_<arch> (e.g. 90); throws with the compiler's log on failure. */
std::vector<char> compile(const std::string& source, int arch) {
  load_nvrtc();
  nvrtcProgram prog = nullptr;
  nvrtcResult r = g_nvrtc.createProgram(&prog, source.c_str(), "gpt2ts_kernels.cu", 0, nullptr, nullptr);
  if (r != 0) throw CudaError(std::string("NVRTC: ") + g_nvrtc.getErrorString(r));
  std::string archOpt = "--gpu-architecture=sm_" + std::to_string(arch);
  const char* opts[] = {archOpt.c_str()};  // the compiler's own C++ dialect: kernels.cu needs nothing newer than C++11
  r = g_nvrtc.compileProgram(prog, 1, opts);
  size_t logSize = 0;
  g_nvrtc.getProgramLogSize(prog, &logSize);
  std::string log(logSize, '\0');
  if (logSize > 1) g_nvrtc.getProgramLog(prog, &log[0]);
  if (r != 0) {
    g_nvrtc.destroyProgram(&prog);
    throw CudaError(std::string("NVRTC could not compile native/cuda/kernels.cu for sm_") + std::to_string(arch) +
                    ": " + g_nvrtc.getErrorString(r) + "\n" + log);
  }
  size_t size = 0;
  g_nvrtc.getCUBINSize(prog, &size);
  std::vector<char> cubin(size);
  g_nvrtc.getCUBIN(prog, cubin.data());
  g_nvrtc.destroyProgram(&prog);
  return cubin;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace gpt2cuda
