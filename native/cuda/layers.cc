// The layers' kernels bound for JavaScript, argument order as src/kernels/backend.ts: each unpacks device addresses
// and sizes and launches kernels of kernels.cu or cuBLAS products (device.h). Attention's are in attention.cc.

#include <node_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "../common/napi_util.h"
#include "kernel_args.h"

using namespace gpt2cuda;

namespace {

/** bytes of the bf16 copies a matmul makes at a time (GPT2_CUDA_CHUNK_BYTES lowers it, for tests) */
long chunk_bytes() {
  const char* env = std::getenv("GPT2_CUDA_CHUNK_BYTES");
  return env ? std::max(1l, std::atol(env)) : 64l << 20;
}

/**
 * Rows per chunk of a matmul whose copies take `perRow` bytes a row (none: all N at once): chunk_bytes() of them, a
 * multiple of 64 rows (the products' tiles) when that fits
 */
int chunk_rows(long perRow, int N) {
  if (perRow == 0) return std::max(N, 1);
  long rows = chunk_bytes() / perRow;
  if (rows >= 64) rows -= rows % 64;
  return (int)std::clamp(rows, 1l, (long)std::max(N, 1));
}

/** t as bf16 for a product with a bf16 operand: t when it is bf16, else its n values rounded into `slot` */
Act as_bf16(const Act& t, long n, CUdeviceptr& slot, size_t& cap) {
  if (t.bf16 || !t.p) return t;
  Act r{grow(slot, cap, (size_t)n * 2), 1};
  launch("convert", {blocks(n, 256)}, {256}, 0, r, t, n);
  return r;
}

/**
 * Row-major C (m x n) = alpha op(A) op(B) + beta C on operands of one storage: both float32 (cuBLAS's compute type
 * follows --dtype), or both bf16 (fp32 accumulation); C float32, or bf16 when the operands are.
 */
void product(bool ta, bool tb, int m, int n, int k, float alpha, const Act& A, int lda, const Act& B, int ldb, float beta,
             const Act& C, int ldc) {
  if (A.bf16 != B.bf16 || (C.bf16 && !A.bf16)) throw CudaError("product: operands of mixed storage");
  GemmTypes ty;
  if (A.bf16) ty = {CUDA_R_16BF, C.bf16 ? CUDA_R_16BF : CUDA_R_32F};
  gemm(ta, tb, m, n, k, alpha, A.p, lda, B.p, ldb, beta, C.p, ldc, 1, 0, 0, 0, ty);
}

/** dst (n) += the `parts` partial rows of the column sums (row p at part + p*stride), added in order */
void column_sums_finish(CUdeviceptr dst, CUdeviceptr part, unsigned parts, int stride, int n) {
  launch("column_sums_finish", {blocks(n, 256)}, {256}, 0, dst, part, (int)parts, stride, n);
}
/** dst (n) += the column sums of x (rows, n): partial rows over up to 64 slices of the rows, then their sum in order */
void column_sums(CUdeviceptr dst, const Act& x, int rows, int n) {
  if (rows == 0 || n == 0) return;
  unsigned gy = std::min<unsigned>(blocks(rows, 8), 64);
  CUdeviceptr part = grow(g_gpu.columnParts, g_gpu.columnPartsCap, (size_t)gy * n * 4);
  launch("bias_backward", {blocks(n, 32), gy}, {32, 8}, 0, part, x, rows, n);
  column_sums_finish(dst, part, gy, n, n);
}

}  // namespace

namespace gpt2cuda {

EXPORT(CuEncoderForward) {
  require_ready();
  Tensors t(a, kEncoderForwardArgs);
  int B = a.integer(4), T = a.integer(5), C = a.integer(6);
  long n = (long)B * T * C;
  // inp: the device's i32 tensor of token ids
  launch("encoder_forward", {blocks(n, 256)}, {256}, 0, t.act(0), a.ptr(1), t.act(2), t.act(3), B, T, C);
  return undefined_value(env);
}
/**
 * The token ids come back to the host, which groups the rows by token (a counting sort: rows stay in ascending order
 * within a token) and uploads the groups, so that each (token, channel) of dwte is one thread's in-order sum, as llm.c
 * groups them on its CPU copy of the batch. The copy waits for the backward pass so far; the gradient norm that
 * follows waits for it anyway.
 */
EXPORT(CuEncoderBackward) {
  require_ready();
  Tensors t(a, kEncoderBackwardArgs);
  CUdeviceptr dwte = t.f32(0), dwpe = t.f32(1), inp = a.ptr(3);
  Act dout = t.act(2);
  int B = a.integer(4), T = a.integer(5), C = a.integer(6), N = B * T;
  column_sums(dwpe, dout, B, T * C);  // dwpe[t] += sum over b of dout[b, t]
  if (N == 0) return undefined_value(env);
  std::vector<int> ids(N);
  check(g_cu.memcpyDtoH(ids.data(), inp, (size_t)N * 4), "copy to host");
  int top = 0;
  for (int id : ids) {
    if (id < 0) throw CudaError("encoder backward: a negative token id (" + std::to_string(id) + ")");
    top = std::max(top, id);
  }
  std::vector<int> start(top + 2, 0);
  for (int id : ids) start[id + 1]++;
  std::vector<int> buckets;  // (token, first, count), largest first: the longest sums start first
  for (int id = 0; id <= top; id++)
    if (start[id + 1]) buckets.insert(buckets.end(), {id, start[id], start[id + 1]});
  for (int id = 0; id <= top; id++) start[id + 1] += start[id];
  int nb = (int)buckets.size() / 3;
  for (int k = 0; k < nb; k++) buckets[3 * k + 1] = start[buckets[3 * k]];
  std::vector<int> order(N + 3 * nb);  // the rows by token, then the buckets
  for (int row = 0; row < N; row++) order[start[ids[row]]++] = row;
  std::vector<int> byCount(nb);
  for (int k = 0; k < nb; k++) byCount[k] = k;
  std::stable_sort(byCount.begin(), byCount.end(), [&](int x, int y) { return buckets[3 * x + 2] > buckets[3 * y + 2]; });
  for (int k = 0; k < nb; k++)
    for (int j = 0; j < 3; j++) order[N + 3 * k + j] = buckets[3 * byCount[k] + j];
  CUdeviceptr rows = grow(g_gpu.buckets, g_gpu.bucketsCap, order.size() * 4);
  check(g_cu.memcpyHtoD(rows, order.data(), order.size() * 4), "copy to device");
  launch("encoder_backward_wte", {(unsigned)nb, blocks(C, 256)}, {256}, 0, dwte, dout, rows,
         rows + (CUdeviceptr)N * 4, C);
  return undefined_value(env);
}
EXPORT(CuLayernormForward) {
  require_ready();
  Tensors t(a, kLayernormForwardArgs);
  int N = a.integer(6), C = a.integer(7);
  launch("layernorm_forward", {blocks(N, 8)}, {256}, 0, t.act(0), t.f32(1), t.f32(2), t.act(3), t.f32(4), t.f32(5), N,
         C);
  return undefined_value(env);
}
EXPORT(CuLayernormBackward) {
  require_ready();
  Tensors t(a, kLayernormBackwardArgs);
  CUdeviceptr dweight = t.f32(1), dbias = t.f32(2);
  int N = a.integer(8), C = a.integer(9);
  // 4 warps of 2*C floats each: 51 KB at C = 1600 (d48), within every GPU's opt-in shared memory since sm_70
  const unsigned warps = 4, shmem = warps * 2u * C * 4u;
  if (shmem > 48 * 1024) check(g_cu.funcSetAttribute(fn("layernorm_backward"), CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)shmem), "layernorm_backward shared memory");
  unsigned grid = std::min<unsigned>(blocks(N, warps), (unsigned)g_gpu.sms * 4);
  CUdeviceptr part = grow(g_gpu.columnParts, g_gpu.columnPartsCap, (size_t)grid * 2 * C * 4);
  launch("layernorm_backward", {grid}, {warps * 32}, shmem, t.act(0), part, t.act(3), t.act(4), t.f32(5), t.f32(6),
         t.f32(7), N, C);
  column_sums_finish(dbias, part, grid, 2 * C, C);
  column_sums_finish(dweight, part + (CUdeviceptr)C * 4, grid, 2 * C, C);
  return undefined_value(env);
}
// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias: the bias first, the product added onto it (kernels.cu, bias_fill).
// With a bf16 operand the other is rounded to bf16 too (as cuBLAS's bf16 compute type rounds float32 inputs), a
// chunk of rows at a time when the input is copied.
EXPORT(CuMatmulForward) {
  require_ready();
  Tensors t(a, kMatmulForwardArgs);
  Act out = t.act(0), inp = t.act(1), weight = t.act(2);
  CUdeviceptr bias = t.f32(3);
  int N = a.integer(4), C = a.integer(5), OC = a.integer(6);
  if (N == 0) return undefined_value(env);
  const bool bf = inp.bf16 || weight.bf16 || out.bf16;
  if (bf) weight = as_bf16(weight, (long)OC * C, g_gpu.castW, g_gpu.castWCap);
  if (bias) launch("bias_fill", {blocks((long)N * OC, 256)}, {256}, 0, out, bias, N, OC);
  const int rows = chunk_rows(bf && !inp.bf16 ? 2l * C : 0, N);
  for (int r0 = 0; r0 < N; r0 += rows) {
    int n = std::min(rows, N - r0);
    Act x = at(inp, (long)r0 * C);
    if (bf) x = as_bf16(x, (long)n * C, g_gpu.castX, g_gpu.castXCap);
    product(true, false, OC, n, C, 1.0f, weight, C, x, C, bias ? 1.0f : 0.0f, at(out, (long)r0 * OC), OC);
  }
  return undefined_value(env);
}
// dinp = dout @ weight; dweight += dout^T @ inp; dbias += column sums of dout. With a bf16 operand the others are
// rounded to bf16 too, a chunk of rows at a time (64 MiB of bf16 copies at most), dweight summing the chunks.
EXPORT(CuMatmulBackward) {
  require_ready();
  Tensors t(a, kMatmulBackwardArgs);
  Act dinp = t.act(0), dout = t.act(3), inp = t.act(4), weight = t.act(5);
  CUdeviceptr dweight = t.f32(1), dbias = t.f32(2);
  int N = a.integer(6), C = a.integer(7), OC = a.integer(8);
  if (N == 0) return undefined_value(env);
  const bool bf = dinp.bf16 || dout.bf16 || inp.bf16 || weight.bf16;
  if (bf) weight = as_bf16(weight, (long)OC * C, g_gpu.castW, g_gpu.castWCap);
  const int rows = chunk_rows(bf ? (dout.bf16 ? 0 : 2l * OC) + (inp.bf16 ? 0 : 2l * C) : 0, N);
  for (int r0 = 0; r0 < N; r0 += rows) {
    int n = std::min(rows, N - r0);
    Act d = at(dout, (long)r0 * OC), x = at(inp, (long)r0 * C);
    if (bf) {
      d = as_bf16(d, (long)n * OC, g_gpu.castX, g_gpu.castXCap);
      x = as_bf16(x, (long)n * C, g_gpu.castY, g_gpu.castYCap);
    }
    if (dinp.p) product(false, false, C, n, OC, 1.0f, weight, C, d, OC, 0.0f, at(dinp, (long)r0 * C), C);
    product(false, true, C, OC, n, 1.0f, x, C, d, OC, 1.0f, Act{dweight, 0}, C);
  }
  if (dbias) column_sums(dbias, dout, N, OC);
  return undefined_value(env);
}

EXPORT(CuGeluForward) {
  require_ready();
  Tensors t(a, kGeluForwardArgs);
  long n = a.lng(2);
  launch("gelu_forward", {blocks(n, 256)}, {256}, 0, t.act(0), t.act(1), n);
  return undefined_value(env);
}
EXPORT(CuGeluBackward) {
  require_ready();
  Tensors t(a, kGeluBackwardArgs);
  long n = a.lng(3);
  launch("gelu_backward", {blocks(n, 256)}, {256}, 0, t.act(0), t.act(1), t.act(2), n);
  return undefined_value(env);
}
EXPORT(CuResidualForward) {
  require_ready();
  Tensors t(a, kResidualForwardArgs);
  long n = a.lng(3);
  launch("residual_forward", {blocks(n, 256)}, {256}, 0, t.act(0), t.act(1), t.act(2), n);
  return undefined_value(env);
}
EXPORT(CuCrossEntropy) {
  require_ready();
  Tensors t(a, kCrossEntropyArgs);
  int N = a.integer(4), V = a.integer(5), Vp = a.integer(6);
  float gs = (float)a.num(7);
  // targets: the device's i32 tensor; the optional per-row gradient weights are host values, uploaded here
  CUdeviceptr weights = a.isNull(8) ? 0 : upload_row_weights(a.floats(8, (size_t)N), (size_t)N);
  launch("cross_entropy", {(unsigned)N}, {1024}, 0, t.f32(0), t.act(1), t.act(2), a.ptr(3), N, V, Vp, gs, weights);
  return undefined_value(env);
}
EXPORT(CuAdamW) {
  require_ready();
  long n = a.lng(4);
  Tensors ts(a, kAdamWArgs);
  float lr = (float)a.num(5), b1 = (float)a.num(6), b2 = (float)a.num(7), eps = (float)a.num(8), wd = (float)a.num(9);
  int t = a.integer(10);
  float gs = (float)a.num(11);
  float bc1 = (float)(1.0 - std::pow((double)b1, t)), bc2 = (float)(1.0 - std::pow((double)b2, t));
  launch("adamw_kernel", {blocks(n, 256)}, {256}, 0, ts.f32(0), ts.f32(1), ts.f32(2), ts.f32(3), n, lr, b1, b2, eps, wd,
         bc1, bc2, gs);
  return undefined_value(env);
}
EXPORT(CuSumSquares) {
  require_ready();
  Tensors t(a, kSumSquaresArgs);
  long n = a.lng(1);
  unsigned grid = std::max(1u, std::min<unsigned>(kPartials, blocks(n, 256)));
  launch("sum_squares", {grid}, {256}, 0, g_gpu.partial, t.act(0), n);
  double part[kPartials];
  check(g_cu.memcpyDtoH(part, g_gpu.partial, grid * sizeof(double)), "copy to host");
  double s = 0;
  for (unsigned i = 0; i < grid; i++) s += part[i];
  return number_value(env, s);
}
EXPORT(CuScale) {
  require_ready();
  Tensors t(a, kScaleArgs);
  long n = a.lng(1);
  launch("scale_kernel", {blocks(n, 256)}, {256}, 0, t.f32(0), n, (float)a.num(2));
  return undefined_value(env);
}

}  // namespace gpt2cuda

namespace {

/** cudaConvert(dst, dstBf16, src, srcBf16, n): dst = src, converted to dst's storage (Backend.copy across dtypes) */
EXPORT(CudaConvert) {
  require_ready();
  long n = a.lng(4);
  if (n > 0) launch("convert", {blocks(n, 256)}, {256}, 0, Act{a.ptr(0), (int)a.num(1)}, Act{a.ptr(2), (int)a.num(3)}, n);
  return undefined_value(env);
}
/** cudaFillValue(ptr, bf16, n, value): n values of either storage set to value */
EXPORT(CudaFillValue) {
  require_ready();
  long n = a.lng(2);
  if (n > 0) launch("fill_value", {blocks(n, 256)}, {256}, 0, Act{a.ptr(0), (int)a.num(1)}, n, (float)a.num(3));
  return undefined_value(env);
}

}  // namespace

void register_cuda_layers(napi_env env, napi_value exports) {
  export_functions(env, exports, {{"cudaConvert", CudaConvert}, {"cudaFillValue", CudaFillValue}});
  // the Backend kernels, from the one list: CuName exported as cuName
  export_functions(env, exports, {
#define GPT2_KERNEL(js, cpp, args) {"cu" #cpp, Cu##cpp},
#include "../kernels.def"
#undef GPT2_KERNEL
  });
}
