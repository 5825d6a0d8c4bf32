// The addon gpt2ts loads (build/Release/gpt2ts_native.node): one module with the bindings of every native layer,
// each registered by its own folder. Nothing here computes; it only sits above them (the CPU kernels do not know
// about MPI or CUDA, and the reverse).

#include <node_api.h>

void register_cpu(napi_env env, napi_value exports);   // cpu/bindings.cc: the CPU kernels, threads, peak
void register_mpi(napi_env env, napi_value exports);   // mpi/mpi.cc: MPI, loaded at run time
void register_cuda(napi_env env, napi_value exports);  // cuda/cuda.cc (+ layers.cc): the CUDA backend
void register_nccl(napi_env env, napi_value exports);  // cuda/nccl.cc: NCCL, loaded at run time

NAPI_MODULE_INIT() {
  register_cpu(env, exports);
  register_mpi(env, exports);
  register_cuda(env, exports);
  register_nccl(env, exports);
  return exports;
}
