// The GPU backend's native half: the CUDA driver API, NVRTC and cuBLAS loaded with dlopen() when a run asks for the
// GPU, so the addon builds and every test runs on machines without CUDA. Kernels (native/cuda/kernels.cu) are
// compiled by NVRTC for the GPU found, and the CUBIN is cached on disk keyed by source, architecture and driver.
//
// Device pointers travel to JavaScript as numbers (x86-64 and arm64 addresses fit in 53 bits). All work goes to the
// legacy default stream, so launches are ordered and the synchronous copies that read results wait for them.

#include <node_api.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/napi_util.h"
#include "cuda_napi.h"
#include "cuda_state.h"

namespace gpt2cuda {

Driver g_cu;

std::string cu_error(CUresult r) {
  const char* s = nullptr;
  if (g_cu.getErrorString) g_cu.getErrorString(r, &s);
  return s ? std::string(s) : "CUDA error " + std::to_string(r);
}

void check(CUresult r, const char* what) {
  if (r != 0) throw CudaError(std::string("CUDA ") + what + ": " + cu_error(r));
}

}  // namespace gpt2cuda

using namespace gpt2cuda;

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

struct Cublas {
  void* lib = nullptr;
  cublasStatus_t (*create)(cublasHandle_t*);
  cublasStatus_t (*gemmEx)(cublasHandle_t, int, int, int, int, int, const void*, const void*, int, int, const void*,
                           int, int, const void*, void*, int, int, int, int);
  cublasStatus_t (*gemmStridedBatchedEx)(cublasHandle_t, int, int, int, int, int, const void*, const void*, int, int,
                                         long long, const void*, int, int, long long, const void*, void*, int, int,
                                         long long, int, int, int);
} g_blas;

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

// ---------------------------------------------------------------- the device in use

struct Gpu {
  bool ready = false;
  CUdevice dev = 0;
  CUcontext ctx = nullptr;
  CUmodule mod = nullptr;
  std::map<std::string, CUfunction> fns;
  cublasHandle_t blas = nullptr;
  int computeType = CUBLAS_COMPUTE_32F;
  int sms = 0;
  // device buffers grown on demand: token ids, targets, attention scratch, partial sums
  CUdeviceptr ints[2] = {0, 0};
  size_t intsCap[2] = {0, 0};
  CUdeviceptr scratch = 0;  // attention's
  size_t scratchCap = 0;
  CUdeviceptr commScratch = 0;  // NCCL's staging (its own: it runs on another stream)
  size_t commScratchCap = 0;
  CUdeviceptr partial = 0;
} g_gpu;

constexpr int kPartials = 1024;

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

struct Timed {
  const char* name;
  std::chrono::steady_clock::time_point t0;
  explicit Timed(const char* what) : name(g_profile.on ? what : nullptr) {
    if (!name) return;
    g_cu.ctxSynchronize();
    t0 = std::chrono::steady_clock::now();
  }
  ~Timed() {
    if (!name) return;
    g_cu.ctxSynchronize();
    auto& e = g_profile.seconds[name];
    e.first += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    e.second++;
  }
};

struct Dim {
  unsigned x, y = 1, z = 1;
};

/** Launches a kernel of kernels.cu; each argument's C++ type must match the kernel's parameter. */
template <typename... A>
void launch(const char* name, Dim grid, Dim block, unsigned shmem, A... args) {
  void* params[] = {static_cast<void*>(&args)...};
  Timed timed(name);
  check(g_cu.launchKernel(fn(name), grid.x, grid.y, grid.z, block.x, block.y, block.z, shmem, nullptr, params, nullptr),
        name);
}

unsigned blocks(long n, int per) { return (unsigned)((n + per - 1) / per); }

CUdeviceptr alloc_bytes(size_t bytes) {
  CUdeviceptr p = 0;
  CUresult r = g_cu.memAlloc(&p, bytes ? bytes : 4);
  if (r != 0) {
    size_t freeB = 0, total = 0;
    g_cu.memGetInfo(&freeB, &total);
    throw CudaError("CUDA out of memory: " + std::to_string(bytes >> 20) + " MiB asked, " +
                    std::to_string(freeB >> 20) + " MiB free of " + std::to_string(total >> 20));
  }
  check(g_cu.memsetD32(p, 0, (bytes + 3) / 4), "memset");
  return p;
}

/** a device buffer of at least `bytes`, grown (never shrunk) */
CUdeviceptr grow(CUdeviceptr& p, size_t& cap, size_t bytes) {
  if (bytes > cap) {
    if (p) check(g_cu.memFree(p), "free");
    p = alloc_bytes(bytes);
    cap = bytes;
  }
  return p;
}

}  // namespace

namespace gpt2cuda {
bool cuda_ready() { return g_gpu.ready; }
CUdeviceptr cuda_scratch(size_t bytes) { return grow(g_gpu.commScratch, g_gpu.commScratchCap, bytes); }
}  // namespace gpt2cuda

namespace {

/** copies host ints (token ids or targets) to device slot `slot` */
CUdeviceptr upload_ints(int slot, const int* data, size_t n) {
  CUdeviceptr p = grow(g_gpu.ints[slot], g_gpu.intsCap[slot], n * 4);
  check(g_cu.memcpyHtoD(p, data, n * 4), "copy to device");
  return p;
}

/** Row-major C (m x n in cuBLAS's column-major terms) = alpha op(A) op(B) + beta C; batched when batch > 1. */
/** element types of a product: float32 everywhere (the compute type follows --dtype), or bf16 operands */
struct GemmTypes {
  int ab = CUDA_R_32F, c = CUDA_R_32F;
  int compute() const { return ab == CUDA_R_16BF ? CUBLAS_COMPUTE_32F : g_gpu.computeType; }
};

void gemm(bool ta, bool tb, int m, int n, int k, float alpha, CUdeviceptr A, int lda, CUdeviceptr B, int ldb,
          float beta, CUdeviceptr C, int ldc, int batch = 1, long long sA = 0, long long sB = 0, long long sC = 0,
          GemmTypes ty = {}) {
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

// ---------------------------------------------------------------- layers (argument order as src/kernels/backend.ts)

EXPORT(CuEncoderForward) {
  require_ready();
  int B = a.integer(4), T = a.integer(5), C = a.integer(6);
  CUdeviceptr inp = upload_ints(0, a.ints(1, (size_t)B * T), (size_t)B * T);
  long n = (long)B * T * C;
  launch("encoder_forward", {blocks(n, 256)}, {256}, 0, a.ptr(0), inp, a.ptr(2), a.ptr(3), B, T, C);
  return undefined_value(env);
}
EXPORT(CuEncoderBackward) {
  require_ready();
  int B = a.integer(4), T = a.integer(5), C = a.integer(6);
  CUdeviceptr inp = upload_ints(0, a.ints(3, (size_t)B * T), (size_t)B * T);
  long n = (long)B * T * C;
  launch("encoder_backward", {blocks(n, 256)}, {256}, 0, a.ptr(0), a.ptr(1), a.ptr(2), inp, B, T, C);
  return undefined_value(env);
}
EXPORT(CuLayernormForward) {
  require_ready();
  int N = a.integer(6), C = a.integer(7);
  launch("layernorm_forward", {blocks(N, 8)}, {256}, 0, a.ptr(0), a.ptr(1), a.ptr(2), a.ptr(3), a.ptr(4), a.ptr(5), N,
         C);
  return undefined_value(env);
}
EXPORT(CuLayernormBackward) {
  require_ready();
  int N = a.integer(8), C = a.integer(9);
  unsigned shmem = 2u * C * 4u;
  if (shmem > 48 * 1024) check(g_cu.funcSetAttribute(fn("layernorm_backward"), CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)shmem), "layernorm_backward shared memory");
  unsigned grid = std::min<unsigned>(blocks(N, 8), (unsigned)g_gpu.sms * 4);
  launch("layernorm_backward", {grid}, {256}, shmem, a.ptr(0), a.ptr(1), a.ptr(2), a.ptr(3), a.ptr(4), a.ptr(5),
         a.ptr(6), a.ptr(7), N, C);
  return undefined_value(env);
}
// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias
EXPORT(CuMatmulForward) {
  require_ready();
  CUdeviceptr out = a.ptr(0), inp = a.ptr(1), weight = a.ptr(2), bias = a.ptr(3);
  int N = a.integer(4), C = a.integer(5), OC = a.integer(6);
  gemm(true, false, OC, N, C, 1.0f, weight, C, inp, C, 0.0f, out, OC);
  if (bias) launch("add_bias", {blocks((long)N * OC, 256)}, {256}, 0, out, bias, N, OC);
  return undefined_value(env);
}
// dinp = dout @ weight; dweight += dout^T @ inp; dbias += column sums of dout
EXPORT(CuMatmulBackward) {
  require_ready();
  CUdeviceptr dinp = a.ptr(0), dweight = a.ptr(1), dbias = a.ptr(2), dout = a.ptr(3), inp = a.ptr(4), weight = a.ptr(5);
  int N = a.integer(6), C = a.integer(7), OC = a.integer(8);
  if (dinp) gemm(false, false, C, N, OC, 1.0f, weight, C, dout, OC, 0.0f, dinp, C);
  gemm(false, true, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dweight, C);
  if (dbias) {
    unsigned gy = std::min<unsigned>(blocks(N, 8), 64);
    launch("bias_backward", {blocks(OC, 32), gy}, {32, 8}, 0, dbias, dout, N, OC);
  }
  return undefined_value(env);
}

/**
 * Attention works on a chunk of the batch at a time, so the T x T score buffers stay within ~1 GiB each. Under
 * --dtype bf16, Q, K, V, dY and the scores are stored in bf16 (W = 2 bytes): cuBLAS multiplies them on bf16 tensor
 * cores and the softmax kernels move half the bytes; the products' fp32 outputs (Y, dQ, dK, dV) stay fp32.
 */
struct AttnScratch {
  int Bc;      // batch rows per chunk
  bool bf;     // bf16 storage
  CUdeviceptr q, k, v, dy, S, dP;  // W each
  CUdeviceptr y, dq, dk, dv;       // fp32 (y and dq share)
  GemmTypes toW() const { return {bf ? CUDA_R_16BF : CUDA_R_32F, bf ? CUDA_R_16BF : CUDA_R_32F}; }
  GemmTypes toF32() const { return {bf ? CUDA_R_16BF : CUDA_R_32F, CUDA_R_32F}; }
  const char* kernel(const char* name, const char* bf16Name) const { return bf ? bf16Name : name; }
};
AttnScratch attn_scratch(int B, int T, int NH, int hs, bool backward) {
  long perB = (long)NH * T * T;
  // floats of one score buffer: 1 GiB (GPT2_CUDA_ATTN_SCORES lowers it, for tests of the batch chunking)
  const char* env = std::getenv("GPT2_CUDA_ATTN_SCORES");
  long limit = env ? std::max(1l, std::atol(env)) : (256l << 20);
  AttnScratch s{};
  s.Bc = (int)std::max<long>(1, std::min<long>(B, limit / perB));
  s.bf = g_gpu.computeType == CUBLAS_COMPUTE_32F_FAST_16BF;
  size_t w = s.bf ? 2 : 4, head = (size_t)s.Bc * NH * T * hs, sq = (size_t)s.Bc * perB;
  size_t bytes = (backward ? 4 : 3) * head * w + (backward ? 2 : 1) * sq * w + (backward ? 3 : 1) * head * 4;
  CUdeviceptr p = grow(g_gpu.scratch, g_gpu.scratchCap, bytes + 10 * 256);  // + each buffer's alignment
  auto take = [&](size_t n, size_t elem) {
    CUdeviceptr r = p;
    p += (n * elem + 255) / 256 * 256;
    return r;
  };
  s.q = take(head, w), s.k = take(head, w), s.v = take(head, w), s.S = take(sq, w), s.y = s.dq = take(head, 4);
  if (backward) s.dy = take(head, w), s.dP = take(sq, w), s.dk = take(head, 4), s.dv = take(head, 4);
  return s;
}

/** batch rows b0 .. b0+Bc: Q, K, V head-major into the scratch, then the scores S = Q K^T / sqrt(hs) */
void attn_scores(const AttnScratch& s, CUdeviceptr qkv, int b0, int Bc, int T, int NH, int hs) {
  int C = NH * hs, batch = Bc * NH;
  long long sh = (long long)T * hs, ss = (long long)T * T;
  launch(s.kernel("qkv_split", "qkv_split_bf16"), {blocks((long)batch * T * hs, 256)}, {256}, 0, s.q, s.k, s.v,
         qkv + (CUdeviceptr)b0 * T * 3 * C * 4, Bc, T, NH, hs);
  gemm(true, false, T, T, hs, 1.0f / std::sqrt((float)hs), s.k, hs, s.q, hs, 0.0f, s.S, T, batch, sh, sh, ss, s.toW());
}

EXPORT(CuAttentionForward) {
  require_ready();
  CUdeviceptr out = a.ptr(0), lse = a.ptr(1), qkv = a.ptr(2);
  int B = a.integer(3), T = a.integer(4), C = a.integer(5), NH = a.integer(6), hs = C / NH;
  AttnScratch s = attn_scratch(B, T, NH, hs, false);
  long long sh = (long long)T * hs, ss = (long long)T * T;
  for (int b0 = 0; b0 < B; b0 += s.Bc) {
    int Bc = std::min(s.Bc, B - b0), batch = Bc * NH, rows = batch * T;
    long n = (long)batch * T * hs;
    attn_scores(s, qkv, b0, Bc, T, NH, hs);
    launch(s.kernel("causal_softmax", "causal_softmax_bf16"), {blocks(rows, 8)}, {256}, 0, s.S,
           lse + (CUdeviceptr)b0 * NH * T * 4, rows, T);
    gemm(false, false, hs, T, T, 1.0f, s.v, hs, s.S, T, 0.0f, s.y, hs, batch, sh, ss, sh, s.toF32());  // y = P v
    launch("heads_merge", {blocks(n, 256)}, {256}, 0, out + (CUdeviceptr)b0 * T * C * 4, s.y, Bc, T, NH, hs);
  }
  return undefined_value(env);
}

EXPORT(CuAttentionBackward) {
  require_ready();
  CUdeviceptr dqkv = a.ptr(0), dout = a.ptr(1), qkv = a.ptr(2), lse = a.ptr(4);
  int B = a.integer(5), T = a.integer(6), C = a.integer(7), NH = a.integer(8), hs = C / NH;
  AttnScratch s = attn_scratch(B, T, NH, hs, true);
  float scale = 1.0f / std::sqrt((float)hs);
  long long sh = (long long)T * hs, ss = (long long)T * T;
  for (int b0 = 0; b0 < B; b0 += s.Bc) {
    int Bc = std::min(s.Bc, B - b0), batch = Bc * NH, rows = batch * T;
    long n = (long)batch * T * hs;
    attn_scores(s, qkv, b0, Bc, T, NH, hs);  // S again
    launch(s.kernel("heads_split", "heads_split_bf16"), {blocks(n, 256)}, {256}, 0, s.dy,
           dout + (CUdeviceptr)b0 * T * C * 4, Bc, T, NH, hs);
    launch(s.kernel("causal_probs", "causal_probs_bf16"), {blocks((long)rows * T, 256)}, {256}, 0, s.S,
           lse + (CUdeviceptr)b0 * NH * T * 4, rows, T);
    gemm(false, true, hs, T, T, 1.0f, s.dy, hs, s.S, T, 0.0f, s.dv, hs, batch, sh, ss, sh, s.toF32());  // dv = P^T dy
    gemm(true, false, T, T, hs, 1.0f, s.v, hs, s.dy, hs, 0.0f, s.dP, T, batch, sh, sh, ss, s.toW());     // dP = dy v^T
    launch(s.kernel("softmax_backward", "softmax_backward_bf16"), {blocks(rows, 8)}, {256}, 0, s.dP, s.S, rows, T);
    gemm(false, false, hs, T, T, scale, s.k, hs, s.dP, T, 0.0f, s.dq, hs, batch, sh, ss, sh, s.toF32());  // dq = scale dS k
    gemm(false, true, hs, T, T, scale, s.q, hs, s.dP, T, 0.0f, s.dk, hs, batch, sh, ss, sh, s.toF32());   // dk = scale dS^T q
    launch("qkv_merge", {blocks(n, 256)}, {256}, 0, dqkv + (CUdeviceptr)b0 * T * 3 * C * 4, s.dq, s.dk, s.dv, Bc, T,
           NH, hs);
  }
  return undefined_value(env);
}

EXPORT(CuAttentionCached) {
  require_ready();
  CUdeviceptr out = a.ptr(0), kc = a.ptr(1), vc = a.ptr(2), qkv = a.ptr(3);
  int B = a.integer(4), Tq = a.integer(5), pos = a.integer(6), maxT = a.integer(7), C = a.integer(8), NH = a.integer(9);
  int hs = C / NH;
  launch("kv_store", {blocks((long)B * Tq * C, 256)}, {256}, 0, kc, vc, qkv, B, Tq, pos, maxT, NH, hs);
  unsigned shmem = (unsigned)(maxT + 32) * 4;
  if (shmem > 48 * 1024) check(g_cu.funcSetAttribute(fn("attention_cached"), CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)shmem), "attention_cached shared memory");
  launch("attention_cached", {(unsigned)(B * Tq * NH)}, {128}, shmem, out, kc, vc, qkv, B, Tq, pos, maxT, NH, hs);
  return undefined_value(env);
}

EXPORT(CuGeluForward) {
  require_ready();
  long n = a.lng(2);
  launch("gelu_forward", {blocks(n, 256)}, {256}, 0, a.ptr(0), a.ptr(1), n);
  return undefined_value(env);
}
EXPORT(CuGeluBackward) {
  require_ready();
  long n = a.lng(3);
  launch("gelu_backward", {blocks(n, 256)}, {256}, 0, a.ptr(0), a.ptr(1), a.ptr(2), n);
  return undefined_value(env);
}
EXPORT(CuResidualForward) {
  require_ready();
  long n = a.lng(3);
  launch("residual_forward", {blocks(n, 256)}, {256}, 0, a.ptr(0), a.ptr(1), a.ptr(2), n);
  return undefined_value(env);
}
EXPORT(CuCrossEntropy) {
  require_ready();
  int N = a.integer(4), V = a.integer(5), Vp = a.integer(6);
  float gs = (float)a.num(7);
  CUdeviceptr targets = upload_ints(1, a.ints(3, (size_t)N), (size_t)N);
  launch("cross_entropy", {(unsigned)N}, {1024}, 0, a.ptr(0), a.ptr(1), a.ptr(2), targets, N, V, Vp, gs);
  return undefined_value(env);
}
EXPORT(CuAdamW) {
  require_ready();
  long n = a.lng(4);
  float lr = (float)a.num(5), b1 = (float)a.num(6), b2 = (float)a.num(7), eps = (float)a.num(8), wd = (float)a.num(9);
  int t = a.integer(10);
  float bc1 = (float)(1.0 - std::pow((double)b1, t)), bc2 = (float)(1.0 - std::pow((double)b2, t));
  launch("adamw_kernel", {blocks(n, 256)}, {256}, 0, a.ptr(0), a.ptr(1), a.ptr(2), a.ptr(3), n, lr, b1, b2, eps, wd,
         bc1, bc2);
  return undefined_value(env);
}
EXPORT(CuSumSquares) {
  require_ready();
  long n = a.lng(1);
  unsigned grid = std::max(1u, std::min<unsigned>(kPartials, blocks(n, 256)));
  launch("sum_squares", {grid}, {256}, 0, g_gpu.partial, a.ptr(0), n);
  double part[kPartials];
  check(g_cu.memcpyDtoH(part, g_gpu.partial, grid * sizeof(double)), "copy to host");
  double s = 0;
  for (unsigned i = 0; i < grid; i++) s += part[i];
  return number_value(env, s);
}
EXPORT(CuScale) {
  require_ready();
  long n = a.lng(1);
  launch("scale_kernel", {blocks(n, 256)}, {256}, 0, a.ptr(0), n, (float)a.num(2));
  return undefined_value(env);
}

}  // namespace

void register_cuda(napi_env env, napi_value exports) {
  export_functions(env, exports, {
      {"cudaProbe", CudaProbe}, {"cudaCompile", CudaCompile}, {"cudaInit", CudaInit},
      {"cudaSetMatmul", CudaSetMatmul}, {"cudaMalloc", CudaMalloc}, {"cudaFree", CudaFree},
      {"cudaWrite", CudaWrite}, {"cudaRead", CudaRead}, {"cudaCopy", CudaCopy}, {"cudaFill", CudaFill},
      {"cudaSync", CudaSync}, {"cudaMemInfo", CudaMemInfo},
      {"cuEncoderForward", CuEncoderForward}, {"cuEncoderBackward", CuEncoderBackward},
      {"cuLayernormForward", CuLayernormForward}, {"cuLayernormBackward", CuLayernormBackward},
      {"cuMatmulForward", CuMatmulForward}, {"cuMatmulBackward", CuMatmulBackward},
      {"cuAttentionForward", CuAttentionForward}, {"cuAttentionBackward", CuAttentionBackward},
      {"cuAttentionCached", CuAttentionCached}, {"cuGeluForward", CuGeluForward}, {"cuGeluBackward", CuGeluBackward},
      {"cuResidualForward", CuResidualForward}, {"cuCrossEntropy", CuCrossEntropy}, {"cuAdamW", CuAdamW},
      {"cuSumSquares", CuSumSquares}, {"cuScale", CuScale},
  });
}
