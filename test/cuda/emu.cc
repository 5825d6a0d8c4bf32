// A CPU stand-in for the CUDA driver, NVRTC, cuBLAS and NCCL (ranks as processes), for tests on machines without a GPU.
//
// Built as one shared library and installed under the names the GPU backend dlopen()s (libcuda.so.1,
// libnvrtc.so.13, libcublas.so.13, libnccl.so.2) in a folder that GPT2_CUDA_LIBDIR points to. It runs the real
// kernel source, native/cuda/kernels.cu, compiled here as C++: each CUDA thread of a block is a fiber on one OS
// thread, switched at __syncthreads and warp shuffles, which are barriers over the threads still running; blocks run
// one after another (so function-static arrays serve as the block's shared memory). Kernels without block-level
// synchronisation run their threads plainly one after another. cuBLAS's column-major products are plain loops
// (inputs rounded to bf16 under CUBLAS_COMPUTE_32F_FAST_16BF). NCCL's ranks are processes that meet in a
// shared-memory file.
//
// What this proves: the backend's host code, launch shapes, index arithmetic and the kernels' logic, and that no
// kernel reads or writes past the end of a buffer (each one ends against a guard page). What it does not: timing,
// the GPU's memory model, NVRTC itself (test/cuda/nvrtc.test.ts compiles the source with the real NVRTC).

#include <fcntl.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};
Dim3 tIdx, bIdx;  // of the thread running now (one at a time)
Dim3 bDim, gDim;
float* dynShared = nullptr;

// ---- threads of a block as fibers. On x86-64 a fiber switch is a few instructions (emu_switch below: callee-saved
// registers, MXCSR and the x87 control word); elsewhere ucontext, whose switches make a system call each.
#if defined(__x86_64__)
extern "C" void emu_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.globl emu_switch
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch, .-emu_switch
.section .note.GNU-stack,"",@progbits
.text
)");
struct Context {
  void* sp = nullptr;
};
void fiber_trampoline();
/** a fresh context that starts in fiber_trampoline on `stack` */
inline void make_context(Context& c, char* stack, size_t size, Context*) {
  uintptr_t top = ((uintptr_t)(stack + size)) & ~uintptr_t(15);
  uint64_t* sp = (uint64_t*)(top - 72);
  sp[0] = 0x1F80ull | (0x037Full << 32);  // MXCSR, x87 control word: the defaults
  for (int i = 1; i <= 6; i++) sp[i] = 0;   // r15 r14 r13 r12 rbx rbp
  sp[7] = (uint64_t)(uintptr_t)&fiber_trampoline;
  sp[8] = 0;  // fiber_trampoline never returns
  c.sp = sp;
}
inline void switch_context(Context& from, Context& to) { emu_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
};
void fiber_trampoline();
inline void make_context(Context& c, char* stack, size_t size, Context* link) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = &link->uc;
  makecontext(&c.uc, fiber_trampoline, 0);
}
inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

// ---- threads of a block as fibers
enum class State { Runnable, BlockWait, WarpWait, Done };
struct Fiber {
  Context ctx;
  State state = State::Runnable;
  Dim3 idx;
};
struct Block {
  std::vector<Fiber> fibers;
  std::vector<uint64_t> slots;  // one per thread, for shuffles
  Context scheduler;
  int current = -1;  // the running fiber; -1 when the kernel runs without fibers
  std::exception_ptr error;
} g_block;

[[noreturn]] void not_threaded(const char* what) {
  throw std::logic_error(std::string(what) + " in a kernel run without fibers: list the kernel as THR in emu.cc");
}

/** the running fiber waits in `s` until every live thread of its block (or warp) waits there too */
void wait_in(State s) {
  if (g_block.current < 0) not_threaded(s == State::BlockWait ? "__syncthreads" : "__shfl_xor_sync");
  Fiber& f = g_block.fibers[g_block.current];
  f.state = s;
  switch_context(f.ctx, g_block.scheduler);
}

inline int linearTid() { return (int)(tIdx.x + bDim.x * (tIdx.y + bDim.y * tIdx.z)); }

}  // namespace emu

// ---- the CUDA built-ins the kernels use
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define DYNAMIC_SHARED(name) float* name = emu::dynShared
#define threadIdx emu::tIdx
#define blockIdx emu::bIdx
#define blockDim emu::bDim
#define gridDim emu::gDim

inline void __syncthreads() { emu::wait_in(emu::State::BlockWait); }
inline void __syncwarp() { emu::wait_in(emu::State::WarpWait); }
template <typename T>
T __shfl_xor_sync(unsigned, T v, int offset) {
  static_assert(sizeof(T) <= 8, "shuffle of a value up to 8 bytes");
  int tid = emu::linearTid();
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  if (emu::g_block.current >= 0) emu::g_block.slots[tid] = bits;
  emu::wait_in(emu::State::WarpWait);
  uint64_t other = emu::g_block.slots[(tid & ~31) | ((tid % 32) ^ offset)];
  emu::wait_in(emu::State::WarpWait);
  T r;
  std::memcpy(&r, &other, sizeof(T));
  return r;
}
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __int_as_float(unsigned v) {
  float f;
  std::memcpy(&f, &v, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned v;
  std::memcpy(&v, &f, 4);
  return v;
}

#include "../../native/cuda/kernels.cu"

namespace emu {

// ---- kernels by name, with their arguments unpacked from cuLaunchKernel's void**

using Invoke = std::function<void(void**)>;
template <typename... A, size_t... I>
void call(void (*f)(A...), void** p, std::index_sequence<I...>) {
  f(*static_cast<std::remove_reference_t<A>*>(p[I])...);
}
template <typename... A>
Invoke invoker(void (*f)(A...)) {
  return [f](void** p) { call(f, p, std::index_sequence_for<A...>{}); };
}

struct Kernel {
  const char* name;
  Invoke invoke;
  bool threaded;
};
std::map<std::string, Kernel>& kernels() {
  static std::map<std::string, Kernel> k = {
#define SEQ(name) {#name, {#name, invoker(&name), false}}
#define THR(name) {#name, {#name, invoker(&name), true}}
      SEQ(encoder_forward),  SEQ(encoder_backward_wte), THR(layernorm_forward),
      THR(layernorm_backward), SEQ(column_sums_finish), SEQ(bias_fill), THR(bias_backward),
      SEQ(convert),          SEQ(fill_value),
      SEQ(qkv_split),        SEQ(qkv_split_bf16),
      SEQ(qkv_merge),        SEQ(heads_merge),       SEQ(heads_split),           SEQ(heads_split_bf16),
      THR(causal_softmax),   THR(causal_softmax_bf16), SEQ(causal_probs),        SEQ(causal_probs_bf16),
      THR(softmax_backward), THR(softmax_backward_bf16), SEQ(kv_store),          THR(attention_cached),
      SEQ(gelu_forward),     SEQ(gelu_backward),     SEQ(residual_forward),      SEQ(scale_kernel),
      THR(cross_entropy),    SEQ(adamw_kernel),      THR(sum_squares),
  };
  return k;
}

/** EMU_PROFILE=1: seconds spent in each kernel, printed at exit (where the emulation's time goes) */
struct Profile {
  std::map<std::string, double> seconds;
  ~Profile() {
    if (std::getenv("EMU_PROFILE"))
      for (const auto& [name, s] : seconds) std::fprintf(stderr, "emu: %-20s %8.3f s\n", name.c_str(), s);
  }
} g_profile;
struct Timed {
  const char* name;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  explicit Timed(const Kernel& k) : name(k.name) {}
  ~Timed() { g_profile.seconds[name] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};

const Kernel* g_kernel = nullptr;
void** g_params = nullptr;

void fiber_trampoline() {
  try {
    g_kernel->invoke(g_params);
  } catch (...) {
    g_block.error = std::current_exception();
  }
  Fiber& f = g_block.fibers[g_block.current];
  f.state = State::Done;
  switch_context(f.ctx, g_block.scheduler);  // never resumed
}

/** Releases the threads waiting at a barrier that every live thread of its block (warp) has reached. */
bool release(int n) {
  auto all_wait = [&](int lo, int hi, State s) {
    bool any = false;
    for (int i = lo; i < hi; i++) {
      State st = g_block.fibers[i].state;
      if (st == State::Done) continue;
      if (st != s) return false;
      any = true;
    }
    return any;
  };
  bool released = false;
  if (all_wait(0, n, State::BlockWait)) {
    for (int i = 0; i < n; i++)
      if (g_block.fibers[i].state == State::BlockWait) g_block.fibers[i].state = State::Runnable;
    released = true;
  }
  for (int w = 0; w < n; w += 32)
    if (all_wait(w, std::min(n, w + 32), State::WarpWait)) {
      for (int i = w; i < std::min(n, w + 32); i++)
        if (g_block.fibers[i].state == State::WarpWait) g_block.fibers[i].state = State::Runnable;
      released = true;
    }
  return released;
}

/** Runs the grid block after block; a threaded kernel's threads are fibers switched at its barriers. */
void run_grid(const Kernel& k, void** params) {
  int n = (int)(bDim.x * bDim.y * bDim.z);
  auto thread_idx = [&](int t) { return Dim3{t % bDim.x, (t / bDim.x) % bDim.y, t / (bDim.x * bDim.y)}; };
  std::vector<Dim3> grid;
  for (unsigned z = 0; z < gDim.z; z++)
    for (unsigned y = 0; y < gDim.y; y++)
      for (unsigned x = 0; x < gDim.x; x++) grid.push_back({x, y, z});
  // GPT2_EMU_ORDER=reverse runs the blocks, and the threads within each, last first: a kernel whose result depends
  // on the order its threads add in (float atomics) gives other bits then, as it may on a GPU
  const char* order = std::getenv("GPT2_EMU_ORDER");
  const bool reverse = order && std::string(order) == "reverse";
  if (reverse) std::reverse(grid.begin(), grid.end());
  auto nth = [&](int i) { return reverse ? n - 1 - i : i; };
  g_block.current = -1;
  if (!k.threaded) {
    for (Dim3 b : grid)
      for (int i = 0; i < n; i++) bIdx = b, tIdx = thread_idx(nth(i)), k.invoke(params);
    return;
  }
  constexpr size_t kStack = 64 * 1024;
  static std::vector<std::unique_ptr<char[]>> stacks;
  while ((int)stacks.size() < n) stacks.emplace_back(new char[kStack]);
  g_kernel = &k;
  g_params = params;
  g_block.fibers.assign(n, Fiber());
  g_block.slots.assign(n, 0);
  g_block.error = nullptr;
  for (Dim3 b : grid) {
    bIdx = b;
    for (int t = 0; t < n; t++) {
      Fiber& f = g_block.fibers[t];
      f.state = State::Runnable;
      f.idx = thread_idx(t);
      make_context(f.ctx, stacks[t].get(), kStack, &g_block.scheduler);
    }
    for (;;) {
      bool ran = false;
      for (int i = 0; i < n; i++) {
        const int t = nth(i);
        if (g_block.fibers[t].state != State::Runnable) continue;
        g_block.current = t;
        tIdx = g_block.fibers[t].idx;
        switch_context(g_block.scheduler, g_block.fibers[t].ctx);
        ran = true;
      }
      g_block.current = -1;
      if (g_block.error) std::rethrow_exception(g_block.error);
      bool done = true;
      for (int t = 0; t < n && done; t++) done = g_block.fibers[t].state == State::Done;
      if (done) break;
      if (!release(n) && !ran) throw std::logic_error("threads of a block wait at different barriers (deadlock)");
    }
  }
}

// ---- memory: host mappings stand for device memory; sizes are remembered for cuMemGetInfo
size_t used = 0;
struct Allocation {
  void* base;
  size_t span, bytes;
};
std::map<uintptr_t, Allocation> sizes;
constexpr size_t kTotal = size_t(8) << 30;

// ---- the products, column-major as cuBLAS's
float bf16_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
  std::memcpy(&x, &u, 4);
  return x;
}
/** element e of a matrix of CUDA type `type` (0 float32, 14 bf16) */
float load(const void* m, long e, int type) {
  if (type == 0) return ((const float*)m)[e];
  unsigned bits = (unsigned)((const unsigned short*)m)[e] << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
void save(void* m, long e, int type, float x) {
  if (type == 0) {
    ((float*)m)[e] = x;
    return;
  }
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) u |= 0x400000u;  // NaN stays NaN (quiet), as cuBLAS keeps it
  else u += 0x7fff + ((u >> 16) & 1);
  ((unsigned short*)m)[e] = (unsigned short)(u >> 16);
}
void gemm(int opA, int opB, int m, int n, int k, float alpha, const void* A, int lda, const void* B, int ldb,
          float beta, void* C, int ldc, int abType, int cType, int compute) {
  bool bf = compute == 75;  // CUBLAS_COMPUTE_32F_FAST_16BF: float inputs rounded to bf16
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      double s = 0;
      for (int p = 0; p < k; p++) {
        float a = load(A, opA == 0 ? i + (long)p * lda : p + (long)i * lda, abType);
        float b = load(B, opB == 0 ? p + (long)j * ldb : j + (long)p * ldb, abType);
        if (bf) a = bf16_round(a), b = bf16_round(b);
        s += (double)a * b;
      }
      long e = i + (long)j * ldc;
      save(C, e, cType, (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * load(C, e, cType))));
    }
}

}  // namespace emu

using CUresult = int;
using ull = unsigned long long;

extern "C" {

// ---------------------------------------------------------------- driver
CUresult cuInit(unsigned) { return 0; }
CUresult cuDriverGetVersion(int* v) { return *v = 13000, 0; }
// eight "GPUs", all this CPU: ranks of a multi-GPU run each take their own ordinal
CUresult cuDeviceGetCount(int* n) { return *n = 8, 0; }
CUresult cuDeviceGet(int* d, int i) { return *d = i, i >= 0 && i < 8 ? 0 : 101; }
CUresult cuDeviceGetName(char* name, int len, int) {
  std::strncpy(name, "CPU emulation of CUDA (gpt2ts tests)", len - 1);
  return 0;
}
CUresult cuDeviceGetAttribute(int* v, int attr, int) {
  *v = attr == 75 ? 9 : attr == 76 ? 0 : attr == 16 ? 4 : 0;
  return 0;
}
CUresult cuDeviceTotalMem_v2(size_t* b, int) { return *b = emu::kTotal, 0; }
CUresult cuDevicePrimaryCtxRetain(void** c, int) { return *c = (void*)1, 0; }
CUresult cuCtxSetCurrent(void*) { return 0; }
CUresult cuCtxSynchronize() { return 0; }
// Each allocation ends right against an inaccessible page, so a kernel reading or writing past the end
// of a buffer crashes the test (as it would fault on a GPU) instead of touching a neighbour.
CUresult cuMemAlloc_v2(ull* p, size_t bytes) {
  if (emu::used + bytes > emu::kTotal) return 2;  // CUDA_ERROR_OUT_OF_MEMORY
  const size_t page = 4096, span = (bytes + page - 1) / page * page + page;
  void* m = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return 2;
  char* guard = (char*)m + span - page;
  mprotect(guard, page, PROT_NONE);
  char* start = guard - (bytes + 3) / 4 * 4;  // 4-byte aligned (8 for sizes that are multiples of 8): exact
  *p = (ull)(uintptr_t)start;
  emu::sizes[(uintptr_t)start] = {m, span, bytes};
  emu::used += bytes;
  return 0;
}
CUresult cuMemFree_v2(ull p) {
  auto it = emu::sizes.find((uintptr_t)p);
  if (it == emu::sizes.end()) return 1;  // CUDA_ERROR_INVALID_VALUE
  emu::used -= it->second.bytes;
  munmap(it->second.base, it->second.span);
  emu::sizes.erase(it);
  return 0;
}
CUresult cuMemGetInfo_v2(size_t* f, size_t* t) { return *f = emu::kTotal - emu::used, *t = emu::kTotal, 0; }
CUresult cuMemcpyHtoD_v2(ull d, const void* s, size_t n) { return std::memcpy((void*)(uintptr_t)d, s, n), 0; }
CUresult cuMemcpyDtoH_v2(void* d, ull s, size_t n) { return std::memcpy(d, (void*)(uintptr_t)s, n), 0; }
CUresult cuMemcpyDtoD_v2(ull d, ull s, size_t n) { return std::memmove((void*)(uintptr_t)d, (void*)(uintptr_t)s, n), 0; }
CUresult cuMemsetD32_v2(ull d, unsigned v, size_t n) {
  unsigned* p = (unsigned*)(uintptr_t)d;
  for (size_t i = 0; i < n; i++) p[i] = v;
  return 0;
}
CUresult cuModuleLoadData(void** m, const void*) { return *m = (void*)1, 0; }
CUresult cuModuleGetFunction(void** f, void*, const char* name) {
  auto it = emu::kernels().find(name);
  if (it == emu::kernels().end()) return 500;  // CUDA_ERROR_NOT_FOUND
  *f = &it->second;
  return 0;
}
CUresult cuFuncSetAttribute(void*, int, int) { return 0; }
CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shmem, void*, void** params, void**) {
  const emu::Kernel& k = *static_cast<emu::Kernel*>(f);
  emu::Timed timed(k);
  if (bx * by * bz > 1024 || gx == 0 || gy == 0 || gz == 0 || bx * by * bz == 0) return 1;
  emu::bDim = {bx, by, bz};
  emu::gDim = {gx, gy, gz};
  std::vector<float> shared((shmem + 3) / 4);
  emu::dynShared = shared.data();
  try {
    emu::run_grid(k, params);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emu: %s\n", e.what());
    return 719;  // CUDA_ERROR_LAUNCH_FAILED
  }
  return 0;
}
// one in-order queue: every launch and copy has finished when its call returns
CUresult cuStreamCreate(void** s, unsigned) { return *s = (void*)2, 0; }
CUresult cuStreamQuery(void*) { return 0; }
CUresult cuEventCreate(void** e, unsigned) { return *e = (void*)3, 0; }
CUresult cuEventRecord(void*, void*) { return 0; }
CUresult cuEventQuery(void*) { return 0; }
CUresult cuStreamWaitEvent(void*, void*, unsigned) { return 0; }
CUresult cuGetErrorString(CUresult r, const char** s) {
  static std::string msg;
  msg = "emulated CUDA error " + std::to_string(r);
  *s = msg.c_str();
  return 0;
}

// ---------------------------------------------------------------- NVRTC: "compiles" to a marker
int nvrtcVersion(int* a, int* b) { return *a = 13, *b = 0, 0; }
int nvrtcCreateProgram(void** p, const char*, const char*, int, const char* const*, const char* const*) {
  return *p = (void*)1, 0;
}
int nvrtcCompileProgram(void*, int, const char* const*) { return 0; }
int nvrtcGetProgramLogSize(void*, size_t* n) { return *n = 1, 0; }
int nvrtcGetProgramLog(void*, char* s) { return s[0] = 0, 0; }
int nvrtcGetCUBINSize(void*, size_t* n) { return *n = 4, 0; }
int nvrtcGetCUBIN(void*, char* s) { return std::memcpy(s, "EMU", 4), 0; }
int nvrtcDestroyProgram(void**) { return 0; }
const char* nvrtcGetErrorString(int) { return "emulated NVRTC error"; }

// ---------------------------------------------------------------- cuBLAS
int cublasCreate_v2(void** h) { return *h = (void*)1, 0; }
static size_t elem_bytes(int type) { return type == 14 ? 2 : 4; }
static bool gemm_types_ok(int aType, int bType, int cType, int compute) {
  // what the backend asks for: all float32 (compute 32F / FAST_16BF / FAST_TF32), or bf16 operands with a float32
  // or bf16 result under compute 32F
  if (aType != bType) return false;
  if (aType == 0) return cType == 0 && (compute == 68 || compute == 75 || compute == 77);
  return aType == 14 && (cType == 0 || cType == 14) && compute == 68;
}
int cublasGemmEx(void*, int opA, int opB, int m, int n, int k, const void* alpha, const void* A, int aType, int lda,
                 const void* B, int bType, int ldb, const void* beta, void* C, int cType, int ldc, int compute, int) {
  if (!gemm_types_ok(aType, bType, cType, compute)) return 15;  // CUBLAS_STATUS_NOT_SUPPORTED
  emu::gemm(opA, opB, m, n, k, *(const float*)alpha, A, lda, B, ldb, *(const float*)beta, C, ldc, aType, cType, compute);
  return 0;
}
int cublasGemmStridedBatchedEx(void*, int opA, int opB, int m, int n, int k, const void* alpha, const void* A,
                               int aType, int lda, long long sA, const void* B, int bType, int ldb, long long sB,
                               const void* beta, void* C, int cType, int ldc, long long sC, int batch, int compute,
                               int) {
  if (!gemm_types_ok(aType, bType, cType, compute)) return 15;
  for (int i = 0; i < batch; i++)
    emu::gemm(opA, opB, m, n, k, *(const float*)alpha, (const char*)A + i * sA * elem_bytes(aType), lda,
              (const char*)B + i * sB * elem_bytes(bType), ldb, *(const float*)beta,
              (char*)C + i * sC * elem_bytes(cType), ldc, aType, cType, compute);
  return 0;
}

// ---------------------------------------------------------------- NCCL across processes
// The ranks of one unique id share a file under /dev/shm: a barrier and one slot per rank. A collective copies this
// rank's data into its slot, meets the others at the barrier, computes its result from all slots in rank order (so
// every rank gets the same sums), and meets them again before the slots are reused. Collectives finish inside the
// call; a rank that never arrives makes the others fail after GPT2_COMM_TIMEOUT seconds (ncclSystemError).
struct ncclUniqueId {
  char internal[128];
};
struct EmuComm {
  int rank, size;
  size_t slotBytes;
  char* base;  // header, then slots
  std::atomic<int>* arrived;
  std::atomic<int>* generation;
  char* slot(int r) { return base + 64 + (size_t)r * slotBytes; }
};
constexpr size_t kSlotBytes = size_t(256) << 20;

static bool emu_barrier(EmuComm* c) {
  int gen = c->generation->load();
  if (c->arrived->fetch_add(1) + 1 == c->size) {
    c->arrived->store(0);
    c->generation->fetch_add(1);
    return true;
  }
  const char* t = std::getenv("GPT2_COMM_TIMEOUT");
  double timeout = t ? std::atof(t) : 600;
  auto t0 = std::chrono::steady_clock::now();
  while (c->generation->load() == gen) {
    std::this_thread::sleep_for(std::chrono::microseconds(20));
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout) return false;
  }
  return true;
}

static size_t nccl_bytes(int type) { return type == 8 || type == 4 || type == 5 ? 8 : type <= 1 ? 1 : type == 6 || type == 9 ? 2 : 4; }

/** out[i] = sum over ranks of slot(r)[offset + i], for float32 (7), float64 (8) and uint8 (1) */
static void sum_slots(EmuComm* c, void* out, size_t offset, size_t n, int type) {
  for (size_t i = 0; i < n; i++) {
    if (type == 7) {
      float s = 0;
      for (int r = 0; r < c->size; r++) s += ((float*)c->slot(r))[offset + i];
      ((float*)out)[i] = s;
    } else if (type == 8) {
      double s = 0;
      for (int r = 0; r < c->size; r++) s += ((double*)c->slot(r))[offset + i];
      ((double*)out)[i] = s;
    } else {
      unsigned char s = 0;
      for (int r = 0; r < c->size; r++) s += ((unsigned char*)c->slot(r))[offset + i];
      ((unsigned char*)out)[i] = s;
    }
  }
}

int ncclGetVersion(int* v) { return *v = 22800, 0; }
int ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id, 0, sizeof *id);
  std::snprintf(id->internal, sizeof id->internal, "gpt2ts-emu-nccl-%d-%lld", (int)getpid(),
                (long long)std::chrono::steady_clock::now().time_since_epoch().count());
  return 0;
}
int ncclCommInitRank(void** comm, int nranks, ncclUniqueId id, int rank) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return 4;  // ncclInvalidArgument
  std::string path = std::string("/dev/shm/") + id.internal;
  int fd = open(path.c_str(), O_RDWR | O_CREAT, 0600);
  if (fd < 0) return 2;
  size_t bytes = 64 + (size_t)nranks * kSlotBytes;
  if (ftruncate(fd, (off_t)bytes) != 0) return 2;
  void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return 2;
  auto* c = new EmuComm{rank, nranks, kSlotBytes, (char*)m, (std::atomic<int>*)m, (std::atomic<int>*)((char*)m + 8)};
  if (!emu_barrier(c)) return 2;  // everyone has the file open: rank 0 may unlink it
  if (rank == 0) unlink(path.c_str());
  *comm = c;
  return 0;
}
int ncclAllReduce(const void* s, void* r, size_t n, int type, int, void* comm, void*) {
  auto* c = (EmuComm*)comm;
  std::memcpy(c->slot(c->rank), s, n * nccl_bytes(type));
  if (!emu_barrier(c)) return 2;
  sum_slots(c, r, 0, n, type);
  return emu_barrier(c) ? 0 : 2;
}
int ncclReduceScatter(const void* s, void* r, size_t n, int type, int, void* comm, void*) {
  auto* c = (EmuComm*)comm;
  std::memcpy(c->slot(c->rank), s, n * c->size * nccl_bytes(type));
  if (!emu_barrier(c)) return 2;
  sum_slots(c, r, (size_t)c->rank * n, n, type);
  return emu_barrier(c) ? 0 : 2;
}
int ncclAllGather(const void* s, void* r, size_t n, int type, void* comm, void*) {
  auto* c = (EmuComm*)comm;
  size_t b = n * nccl_bytes(type);
  std::memcpy(c->slot(c->rank), s, b);
  if (!emu_barrier(c)) return 2;
  for (int k = 0; k < c->size; k++) std::memcpy((char*)r + k * b, c->slot(k), b);
  return emu_barrier(c) ? 0 : 2;
}
int ncclBroadcast(const void* s, void* r, size_t n, int type, int root, void* comm, void*) {
  auto* c = (EmuComm*)comm;
  size_t b = n * nccl_bytes(type);
  if (c->rank == root) std::memcpy(c->slot(root), s, b);
  if (!emu_barrier(c)) return 2;
  std::memmove(r, c->slot(root), b);
  return emu_barrier(c) ? 0 : 2;
}
int ncclCommGetAsyncError(void*, int* e) { return *e = 0, 0; }
int ncclCommAbort(void*) { return 0; }
int ncclCommDestroy(void*) { return 0; }
const char* ncclGetErrorString(int r) { return r == 2 ? "emulated NCCL: system error (a rank did not arrive)" : "emulated NCCL error"; }

}  // extern "C"
