// The GPU backend's shared state between its native files (libs.cc: loading the libraries; cuda.cc: the device,
// memory and launches; layers.cc: the kernels' bindings; nccl.cc: NCCL).
#pragma once

#include <stdexcept>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda_api.h"

namespace gpt2cuda {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------- libraries

struct Driver {
  void* lib = nullptr;
  CUresult (*init)(unsigned);
  CUresult (*driverGetVersion)(int*);
  CUresult (*deviceGetCount)(int*);
  CUresult (*deviceGet)(CUdevice*, int);
  CUresult (*deviceGetName)(char*, int, CUdevice);
  CUresult (*deviceGetAttribute)(int*, int, CUdevice);
  CUresult (*deviceTotalMem)(size_t*, CUdevice);
  CUresult (*primaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*ctxSetCurrent)(CUcontext);
  CUresult (*ctxSynchronize)();
  CUresult (*memAlloc)(CUdeviceptr*, size_t);
  CUresult (*memFree)(CUdeviceptr);
  CUresult (*memGetInfo)(size_t*, size_t*);
  CUresult (*memcpyHtoD)(CUdeviceptr, const void*, size_t);
  CUresult (*memcpyDtoH)(void*, CUdeviceptr, size_t);
  CUresult (*memcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
  CUresult (*memsetD32)(CUdeviceptr, unsigned, size_t);
  CUresult (*moduleLoadData)(CUmodule*, const void*);
  CUresult (*moduleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*funcSetAttribute)(CUfunction, int, int);
  CUresult (*launchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                           void**, void**);
  CUresult (*getErrorString)(CUresult, const char**);
  CUresult (*streamCreate)(CUstream*, unsigned);
  CUresult (*streamQuery)(CUstream);
  CUresult (*eventCreate)(CUevent*, unsigned);
  CUresult (*eventRecord)(CUevent, CUstream);
  CUresult (*eventQuery)(CUevent);
  CUresult (*streamWaitEvent)(CUstream, CUevent, unsigned);
  std::string error;  // why it could not be loaded
};
extern Driver g_cu;

struct Cublas {
  void* lib = nullptr;
  cublasStatus_t (*create)(cublasHandle_t*);
  cublasStatus_t (*gemmEx)(cublasHandle_t, int, int, int, int, int, const void*, const void*, int, int, const void*,
                           int, int, const void*, void*, int, int, int, int);
  cublasStatus_t (*gemmStridedBatchedEx)(cublasHandle_t, int, int, int, int, int, const void*, const void*, int, int,
                                         long long, const void*, int, int, long long, const void*, void*, int, int,
                                         long long, int, int, int);
};
extern Cublas g_blas;

std::string cu_error(CUresult r);
/** throws CudaError naming `what` when r is an error */
void check(CUresult r, const char* what);
/** Loads libcuda.so.1; false with g_cu.error set when there is no driver. */
bool load_driver();
void load_nvrtc();
void load_cublas();
/** NVRTC: source -> CUBIN for sm_<arch> (e.g. 90); throws with the compiler's log on failure. */
std::vector<char> compile(const std::string& source, int arch);
uint64_t fnv1a(const std::string& s);

/** true once cudaInit made a device current */
bool cuda_ready();
/** a device buffer of at least `bytes`, grown on demand and shared by callers that do not overlap */
CUdeviceptr cuda_scratch(size_t bytes);

}  // namespace gpt2cuda
