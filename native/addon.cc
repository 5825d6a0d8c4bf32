// The addon gpt2ts loads (build/Release/gpt2ts_native.node): one module with the bindings of every native layer,
// each registered by its own folder. Nothing here computes; it only sits above them (the CPU kernels do not know
// about MPI or CUDA, and the reverse).

#include <node_api.h>

void register_cpu(napi_env env, napi_value exports);   // cpu/bindings.cc: the CPU kernels, threads, peak
void register_mpi(napi_env env, napi_value exports);   // mpi/mpi.cc: MPI, loaded at run time
void register_cuda(napi_env env, napi_value exports);  // cuda/cuda.cc (+ layers.cc, attention.cc): the CUDA backend
void register_nccl(napi_env env, napi_value exports);  // cuda/nccl.cc: NCCL, loaded at run time

/** kernelList: {name: {cpu, cuda, args}} for every line of kernels.def, which the TypeScript backends forward by */
static void register_kernel_list(napi_env env, napi_value exports) {
  napi_value list;
  napi_create_object(env, &list);
  auto add = [&](const char* js, const char* cuda, const char* args) {
    napi_value entry, v;
    napi_create_object(env, &entry);
    napi_create_string_utf8(env, js, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, entry, "cpu", v);
    napi_create_string_utf8(env, cuda, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, entry, "cuda", v);
    napi_create_string_utf8(env, args, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, entry, "args", v);
    napi_set_named_property(env, list, js, entry);
  };
#define GPT2_KERNEL(js, cpp, args) add(#js, "cu" #cpp, args);
#include "kernels.def"
#undef GPT2_KERNEL
  napi_set_named_property(env, exports, "kernelList", list);
}

NAPI_MODULE_INIT() {
  register_kernel_list(env, exports);
  register_cpu(env, exports);
  register_mpi(env, exports);
  register_cuda(env, exports);
  register_nccl(env, exports);
  return exports;
}
