// The GPU backend's shared state between its native files (cuda.cc: device, kernels, cuBLAS; nccl.cc: NCCL).
#pragma once

#include <stdexcept>
#include <string>

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

std::string cu_error(CUresult r);
/** throws CudaError naming `what` when r is an error */
void check(CUresult r, const char* what);
/** true once cudaInit made a device current */
bool cuda_ready();
/** a device buffer of at least `bytes`, grown on demand and shared by callers that do not overlap */
CUdeviceptr cuda_scratch(size_t bytes);

}  // namespace gpt2cuda
