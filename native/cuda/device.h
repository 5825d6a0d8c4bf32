// The device in use and how work reaches it: state, allocation, kernel launches and cuBLAS products, shared by the
// CUDA backend's binding files (cuda.cc: set-up and memory; layers.cc and attention.cc: the layers).
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "cuda_state.h"

namespace gpt2cuda {

struct Gpu {
  bool ready = false;
  CUdevice dev = 0;
  CUcontext ctx = nullptr;
  CUmodule mod = nullptr;
  std::map<std::string, CUfunction> fns;
  cublasHandle_t blas = nullptr;
  int computeType = CUBLAS_COMPUTE_32F;
  int sms = 0;
  // device buffers grown on demand: the classifier's row weights, attention scratch, partial sums
  CUdeviceptr rowWeights = 0;  // the classifier's per-row weights: host values, uploaded per call
  size_t rowWeightsCap = 0;
  CUdeviceptr scratch = 0;  // attention's
  size_t scratchCap = 0;
  CUdeviceptr commScratch = 0;  // NCCL's staging (its own: it runs on another stream)
  size_t commScratchCap = 0;
  CUdeviceptr partial = 0;
  CUdeviceptr columnParts = 0;  // the column sums' partial rows (bias and LayerNorm backward)
  size_t columnPartsCap = 0;
  CUdeviceptr buckets = 0;  // the embedding backward's rows grouped by token
  size_t bucketsCap = 0;
  // bf16 copies of a product's float32 operands, when the other operand is bf16 (a weight, an activation or gradient)
  CUdeviceptr castW = 0, castX = 0, castY = 0;
  size_t castWCap = 0, castXCap = 0, castYCap = 0;
};
extern Gpu g_gpu;


constexpr int kPartials = 1024;

void require_ready();
/** the kernel `name` of the loaded module (looked up once) */
CUfunction fn(const char* name);

/** Under GPT2_CUDA_PROFILE=1, the GPU time of one call, added to `what`'s row of the table printed at exit. */
struct Timed {
  const char* name;
  std::chrono::steady_clock::time_point t0;
  explicit Timed(const char* what);
  ~Timed();
};

/** An activation argument, as kernels.cu's Act: a device address and whether it holds bf16 (else float32). */
struct Act {
  CUdeviceptr p;
  int bf16;
};
inline size_t elem_bytes(const Act& t) { return t.bf16 ? 2 : 4; }
/** t from its element i on */
inline Act at(const Act& t, long i) { return {t.p + (CUdeviceptr)(i * (long)elem_bytes(t)), t.bf16}; }

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

inline unsigned blocks(long n, int per) { return (unsigned)((n + per - 1) / per); }

/** a zero-filled device buffer; an out-of-memory error names the sizes */
CUdeviceptr alloc_bytes(size_t bytes);
/** a device buffer of at least `bytes`, grown (never shrunk) */
CUdeviceptr grow(CUdeviceptr& p, size_t& cap, size_t bytes);
/** copies the classifier's host row weights to the device (one buffer, reused by every call) */
CUdeviceptr upload_row_weights(const float* data, size_t n);

/** element types of a product: float32 everywhere (the compute type follows --dtype), or bf16 operands */
struct GemmTypes {
  int ab = CUDA_R_32F, c = CUDA_R_32F;
  int compute() const { return ab == CUDA_R_16BF ? CUBLAS_COMPUTE_32F : g_gpu.computeType; }
};

/** Row-major C (m x n in cuBLAS's column-major terms) = alpha op(A) op(B) + beta C; batched when batch > 1. */
void gemm(bool ta, bool tb, int m, int n, int k, float alpha, CUdeviceptr A, int lda, CUdeviceptr B, int ldb,
          float beta, CUdeviceptr C, int ldc, int batch = 1, long long sA = 0, long long sB = 0, long long sC = 0,
          GemmTypes ty = {});

}  // namespace gpt2cuda
