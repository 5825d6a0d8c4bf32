// The GPU backend's native half: the device in use, its memory, kernel launches and cuBLAS products, and the
// set-up and memory bindings (layers.cc and attention.cc bind the layers; libs.cc loads the libraries; nccl.cc is NCCL). The CUDA
// libraries are loaded with dlopen() when a run asks for the GPU, so the addon builds and every test runs on
// machines without CUDA. Kernels (native/cuda/kernels.cu) are compiled by NVRTC for the GPU found, and the CUBIN is
// cached on disk keyed by source, architecture and driver.
//
// Device pointers travel to JavaScript as numbers (x86-64 and arm64 addresses fit in 53 bits). All work goes to the
// legacy default stream, so launches are ordered and the synchronous copies that read results wait for them.

#include <node_api.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "../common/napi_util.h"
#include "cuda_napi.h"
#include "device.h"

namespace gpt2cuda {

Gpu g_gpu;

void require_ready() {
  if (!g_gpu.ready) throw CudaError("the CUDA backend is not initialized (cudaInit)");
}

CUfunction fn(const char* name) {
  auto it = g_gpu.fns.find(name);
  if (it != g_gpu.fns.end()) return it->second;
  CUfunction f = nullptr;
  check(g_cu.moduleGetFunction(&f, g_gpu.mod, name), name);
  g_gpu.fns[name] = f;
  return f;
}

namespace {
/**
 * GPT2_CUDA_PROFILE=1: each kernel and cuBLAS call waits for the GPU before and after it, and the time is added to
 * its name; the table (where a step's time goes) is printed to stderr at exit. Off, it costs one branch a call.
 */
struct Profile {
  bool on = std::getenv("GPT2_CUDA_PROFILE") != nullptr;
  std::map<std::string, std::pair<double, long>> seconds;  // name -> (seconds, calls)
  ~Profile() {
    if (!on || seconds.empty()) return;
    std::vector<std::pair<double, std::string>> rows;
    double total = 0;
    for (const auto& [name, t] : seconds) rows.push_back({t.first, name}), total += t.first;
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr, "GPT2_CUDA_PROFILE: %.1f ms in kernels and cuBLAS\n", total * 1e3);
    for (const auto& [t, name] : rows)
      std::fprintf(stderr, "  %-28s %10.1f ms %5.1f %%  %8ld calls\n", name.c_str(), t * 1e3, 100 * t / total,
                   seconds[name].second);
  }
} g_profile;

}  // namespace

Timed::Timed(const char* what) : name(g_profile.on ? what : nullptr) {
  if (!name) return;
  g_cu.ctxSynchronize();
  t0 = std::chrono::steady_clock::now();
}

Timed::~Timed() {
  if (!name) return;
  g_cu.ctxSynchronize();
  auto& e = g_profile.seconds[name];
  e.first += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  e.second++;
}

CUdeviceptr alloc_bytes(size_t bytes) {
  bytes = (bytes + 3) / 4 * 4;  // whole 32-bit words (an odd count of bf16 values), zeroed by the memset below
  CUdeviceptr p = 0;
  CUresult r = g_cu.memAlloc(&p, bytes ? bytes : 4);
  if (r != 0) {
    size_t freeB = 0, total = 0;
    g_cu.memGetInfo(&freeB, &total);
    throw CudaError("CUDA out of memory: " + std::to_string(bytes >> 20) + " MiB asked, " +
                    std::to_string(freeB >> 20) + " MiB free of " + std::to_string(total >> 20));
  }
  check(g_cu.memsetD32(p, 0, bytes / 4), "memset");
  return p;
}

CUdeviceptr grow(CUdeviceptr& p, size_t& cap, size_t bytes) {
  if (bytes > cap) {
    if (p) check(g_cu.memFree(p), "free");
    p = alloc_bytes(bytes);
    cap = bytes;
  }
  return p;
}

CUdeviceptr upload_row_weights(const float* data, size_t n) {
  CUdeviceptr p = grow(g_gpu.rowWeights, g_gpu.rowWeightsCap, n * 4);
  check(g_cu.memcpyHtoD(p, data, n * 4), "copy to device");
  return p;
}

void gemm(bool ta, bool tb, int m, int n, int k, float alpha, CUdeviceptr A, int lda, CUdeviceptr B, int ldb,
          float beta, CUdeviceptr C, int ldc, int batch, long long sA, long long sB, long long sC, GemmTypes ty) {
  int opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  Timed timed(batch > 1 ? "cuBLAS attention products" : "cuBLAS matmuls");
  cublasStatus_t s;
  if (batch == 1)
    s = g_blas.gemmEx(g_gpu.blas, opA, opB, m, n, k, &alpha, (const void*)A, ty.ab, lda, (const void*)B, ty.ab, ldb,
                      &beta, (void*)C, ty.c, ldc, ty.compute(), CUBLAS_GEMM_DEFAULT);
  else
    s = g_blas.gemmStridedBatchedEx(g_gpu.blas, opA, opB, m, n, k, &alpha, (const void*)A, ty.ab, lda, sA,
                                    (const void*)B, ty.ab, ldb, sB, &beta, (void*)C, ty.c, ldc, sC, batch,
                                    ty.compute(), CUBLAS_GEMM_DEFAULT);
  if (s != 0) throw CudaError("cuBLAS gemm failed with status " + std::to_string(s));
}


bool cuda_ready() { return g_gpu.ready; }
CUdeviceptr cuda_scratch(size_t bytes) { return grow(g_gpu.commScratch, g_gpu.commScratchCap, bytes); }

}  // namespace gpt2cuda

using namespace gpt2cuda;

namespace {

// ---------------------------------------------------------------- set-up

/** cudaProbe() -> { devices, name, major, minor, memory, sms, driver } or { error } when no GPU can be used */
EXPORT(CudaProbe) {
  napi_value out;
  napi_create_object(env, &out);
  auto fail = [&](const std::string& why) {
    set(env, out, "error", str_value(env, why));
    return out;
  };
  if (!load_driver()) return fail(g_cu.error);
  CUresult r = g_cu.init(0);
  if (r == 100) return fail("no CUDA device (the NVIDIA driver found none)");
  if (r != 0) return fail("the NVIDIA driver failed to start: " + cu_error(r));
  int count = 0, version = 0;
  g_cu.deviceGetCount(&count);
  g_cu.driverGetVersion(&version);
  if (count == 0) return fail("no CUDA device (the NVIDIA driver found none)");
  CUdevice dev;
  check(g_cu.deviceGet(&dev, 0), "device");
  char name[256] = {0};
  g_cu.deviceGetName(name, sizeof name, dev);
  int major = 0, minor = 0, sms = 0;
  size_t mem = 0;
  g_cu.deviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
  g_cu.deviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
  g_cu.deviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
  g_cu.deviceTotalMem(&mem, dev);
  set(env, out, "devices", number_value(env, count));
  set(env, out, "name", str_value(env, name));
  set(env, out, "major", number_value(env, major));
  set(env, out, "minor", number_value(env, minor));
  set(env, out, "sms", number_value(env, sms));
  set(env, out, "memory", number_value(env, (double)mem));
  set(env, out, "driver", number_value(env, version));
  return out;
}

/** cudaCompile(source, arch) -> CUBIN size in bytes; needs NVRTC only, no GPU (used by the tests) */
EXPORT(CudaCompile) {
  std::vector<char> cubin = compile(a.str(0), a.integer(1));
  return number_value(env, (double)cubin.size());
}

/**
 * cudaInit(source, cacheDir, device) -> { name, major, minor, sms, cached }: makes the device current, loads the
 * kernels (from cacheDir when compiled before) and cuBLAS.
 */
EXPORT(CudaInit) {
  if (g_gpu.ready) return undefined_value(env);
  std::string source = a.str(0), cacheDir = a.str(1);
  int ordinal = a.integer(2);
  if (!load_driver()) throw CudaError(g_cu.error);
  check(g_cu.init(0), "init");
  int count = 0;
  g_cu.deviceGetCount(&count);
  if (ordinal < 0 || ordinal >= count)
    throw CudaError("CUDA device " + std::to_string(ordinal) + " asked for, " + std::to_string(count) + " found");
  check(g_cu.deviceGet(&g_gpu.dev, ordinal), "device");
  check(g_cu.primaryCtxRetain(&g_gpu.ctx, g_gpu.dev), "context");
  check(g_cu.ctxSetCurrent(g_gpu.ctx), "context");
  int major = 0, minor = 0, driver = 0;
  g_cu.deviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, g_gpu.dev);
  g_cu.deviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, g_gpu.dev);
  g_cu.deviceGetAttribute(&g_gpu.sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, g_gpu.dev);
  g_cu.driverGetVersion(&driver);
  int arch = major * 10 + minor;

  char key[64];
  snprintf(key, sizeof key, "%016llx", (unsigned long long)fnv1a(source + "|" + std::to_string(driver)));
  std::string file = cacheDir + "/kernels-" + key + "-sm_" + std::to_string(arch) + ".cubin";
  std::vector<char> cubin;
  bool cached = false;
  {
    std::ifstream in(file, std::ios::binary);
    if (in) {
      cubin.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      cached = !cubin.empty();
    }
  }
  if (!cached) {
    cubin = compile(source, arch);
    std::string tmp = file + ".tmp" + std::to_string(getpid());
    std::ofstream out(tmp, std::ios::binary);
    out.write(cubin.data(), (std::streamsize)cubin.size());
    out.close();
    if (out) std::rename(tmp.c_str(), file.c_str());  // a cache that cannot be written only costs a compile
    else std::remove(tmp.c_str());
  }
  check(g_cu.moduleLoadData(&g_gpu.mod, cubin.data()), "load kernels");
  load_cublas();
  if (g_blas.create(&g_gpu.blas) != 0) throw CudaError("cublasCreate failed");
  g_gpu.partial = alloc_bytes(kPartials * sizeof(double));
  g_gpu.ready = true;

  napi_value out;
  napi_create_object(env, &out);
  char name[256] = {0};
  g_cu.deviceGetName(name, sizeof name, g_gpu.dev);
  set(env, out, "name", str_value(env, name));
  set(env, out, "major", number_value(env, major));
  set(env, out, "minor", number_value(env, minor));
  set(env, out, "sms", number_value(env, g_gpu.sms));
  napi_value c;
  napi_get_boolean(env, cached, &c);
  set(env, out, "cached", c);
  return out;
}

/** cudaSetMatmul("fp32" | "tf32" | "bf16"): the precision cuBLAS multiplies float32 storage in */
EXPORT(CudaSetMatmul) {
  std::string m = a.str(0);
  g_gpu.computeType = m == "bf16" ? CUBLAS_COMPUTE_32F_FAST_16BF : m == "tf32" ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                               : CUBLAS_COMPUTE_32F;
  return undefined_value(env);
}

// ---------------------------------------------------------------- memory

EXPORT(CudaMalloc) {
  require_ready();
  return number_value(env, (double)alloc_bytes((size_t)a.num(0)));
}
EXPORT(CudaFree) {
  require_ready();
  check(g_cu.memFree(a.ptr(0)), "free");
  return undefined_value(env);
}
/** cudaWrite(ptr, typedArray): host -> device */
EXPORT(CudaWrite) {
  require_ready();
  size_t n;
  void* src = a.bytes(1, n);
  check(g_cu.memcpyHtoD(a.ptr(0), src, n), "copy to device");
  return undefined_value(env);
}
/** cudaRead(ptr, typedArray): device -> host (waits for the work before it) */
EXPORT(CudaRead) {
  require_ready();
  size_t n;
  void* dst = a.bytes(1, n);
  check(g_cu.memcpyDtoH(dst, a.ptr(0), n), "copy to host");
  return undefined_value(env);
}
/** cudaCopy(dst, src, bytes): device -> device */
EXPORT(CudaCopy) {
  require_ready();
  check(g_cu.memcpyDtoD(a.ptr(0), a.ptr(1), (size_t)a.num(2)), "copy on device");
  return undefined_value(env);
}
/** cudaFill(ptr, n, value): n floats set to value */
EXPORT(CudaFill) {
  require_ready();
  float v = (float)a.num(2);
  unsigned bits;
  std::memcpy(&bits, &v, 4);
  check(g_cu.memsetD32(a.ptr(0), bits, (size_t)a.num(1)), "fill");
  return undefined_value(env);
}
EXPORT(CudaSync) {
  require_ready();
  check(g_cu.ctxSynchronize(), "synchronize");
  return undefined_value(env);
}
/** cudaMemInfo() -> [free, total] bytes */
EXPORT(CudaMemInfo) {
  require_ready();
  size_t f = 0, t = 0;
  check(g_cu.memGetInfo(&f, &t), "memory info");
  napi_value arr;
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, number_value(env, (double)f));
  napi_set_element(env, arr, 1, number_value(env, (double)t));
  return arr;
}

}  // namespace

void register_cuda_layers(napi_env env, napi_value exports);  // layers.cc

void register_cuda(napi_env env, napi_value exports) {
  export_functions(env, exports, {
      {"cudaProbe", CudaProbe}, {"cudaCompile", CudaCompile}, {"cudaInit", CudaInit},
      {"cudaSetMatmul", CudaSetMatmul}, {"cudaMalloc", CudaMalloc}, {"cudaFree", CudaFree},
      {"cudaWrite", CudaWrite}, {"cudaRead", CudaRead}, {"cudaCopy", CudaCopy}, {"cudaFill", CudaFill},
      {"cudaSync", CudaSync}, {"cudaMemInfo", CudaMemInfo},
  });
  register_cuda_layers(env, exports);
}
