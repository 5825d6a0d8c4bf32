// The layers' kernels bound for JavaScript, argument order as src/kernels/backend.ts: each unpacks device addresses
// and sizes and launches kernels of kernels.cu or cuBLAS products (device.h).

#include <node_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "../common/napi_util.h"
#include "cuda_napi.h"
#include "device.h"

using namespace gpt2cuda;

namespace {

EXPORT(CuEncoderForward) {
  require_ready();
  int B = a.integer(4), T = a.integer(5), C = a.integer(6);
  long n = (long)B * T * C;
  // inp: the device's i32 tensor of token ids
  launch("encoder_forward", {blocks(n, 256)}, {256}, 0, a.ptr(0), a.ptr(1), a.ptr(2), a.ptr(3), B, T, C);
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
  CUdeviceptr dwte = a.ptr(0), dwpe = a.ptr(1), dout = a.ptr(2), inp = a.ptr(3);
  int B = a.integer(4), T = a.integer(5), C = a.integer(6), N = B * T;
  launch("encoder_backward_wpe", {blocks((long)T * C, 256)}, {256}, 0, dwpe, dout, B, T, C);
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
  int N = a.integer(6), C = a.integer(7);
  launch("layernorm_forward", {blocks(N, 8)}, {256}, 0, a.ptr(0), a.ptr(1), a.ptr(2), a.ptr(3), a.ptr(4), a.ptr(5), N,
         C);
  return undefined_value(env);
}
/** dst (n) += the `parts` partial rows of the column sums (row p at part + p*stride), added in order */
void column_sums_finish(CUdeviceptr dst, CUdeviceptr part, unsigned parts, int stride, int n) {
  launch("column_sums_finish", {blocks(n, 256)}, {256}, 0, dst, part, (int)parts, stride, n);
}

EXPORT(CuLayernormBackward) {
  require_ready();
  CUdeviceptr dinp = a.ptr(0), dweight = a.ptr(1), dbias = a.ptr(2);
  int N = a.integer(8), C = a.integer(9);
  // 4 warps of 2*C floats each: 51 KB at C = 1600 (d48), within every GPU's opt-in shared memory since sm_70
  const unsigned warps = 4, shmem = warps * 2u * C * 4u;
  if (shmem > 48 * 1024) check(g_cu.funcSetAttribute(fn("layernorm_backward"), CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)shmem), "layernorm_backward shared memory");
  unsigned grid = std::min<unsigned>(blocks(N, warps), (unsigned)g_gpu.sms * 4);
  CUdeviceptr part = grow(g_gpu.columnParts, g_gpu.columnPartsCap, (size_t)grid * 2 * C * 4);
  launch("layernorm_backward", {grid}, {warps * 32}, shmem, dinp, part, a.ptr(3), a.ptr(4), a.ptr(5), a.ptr(6),
         a.ptr(7), N, C);
  column_sums_finish(dbias, part, grid, 2 * C, C);
  column_sums_finish(dweight, part + (CUdeviceptr)C * 4, grid, 2 * C, C);
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
    CUdeviceptr part = grow(g_gpu.columnParts, g_gpu.columnPartsCap, (size_t)gy * OC * 4);
    launch("bias_backward", {blocks(OC, 32), gy}, {32, 8}, 0, part, dout, N, OC);
    column_sums_finish(dbias, part, gy, OC, OC);
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
  // targets: the device's i32 tensor; the optional per-row gradient weights are host values, uploaded here
  CUdeviceptr weights = a.isNull(8) ? 0 : upload_row_weights(a.floats(8, (size_t)N), (size_t)N);
  launch("cross_entropy", {(unsigned)N}, {1024}, 0, a.ptr(0), a.ptr(1), a.ptr(2), a.ptr(3), N, V, Vp, gs, weights);
  return undefined_value(env);
}
EXPORT(CuAdamW) {
  require_ready();
  long n = a.lng(4);
  float lr = (float)a.num(5), b1 = (float)a.num(6), b2 = (float)a.num(7), eps = (float)a.num(8), wd = (float)a.num(9);
  int t = a.integer(10);
  float gs = (float)a.num(11);
  float bc1 = (float)(1.0 - std::pow((double)b1, t)), bc2 = (float)(1.0 - std::pow((double)b2, t));
  launch("adamw_kernel", {blocks(n, 256)}, {256}, 0, a.ptr(0), a.ptr(1), a.ptr(2), a.ptr(3), n, lr, b1, b2, eps, wd,
         bc1, bc2, gs);
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

void register_cuda_layers(napi_env env, napi_value exports) {
  // the Backend kernels, from the one list: CuName exported as cuName
  export_functions(env, exports, {
#define GPT2_KERNEL(js, cpp, args) {"cu" #cpp, Cu##cpp},
#include "../kernels.def"
#undef GPT2_KERNEL
  });
}
