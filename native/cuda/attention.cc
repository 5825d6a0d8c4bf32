// The attention kernels bound for JavaScript (argument order as src/kernels/backend.ts): the T x T scores as batched
// cuBLAS products between the kernels of kernels.cu that lay out Q, K, V and take the causal softmax.

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "../common/napi_util.h"
#include "kernel_args.h"

namespace gpt2cuda {
namespace {

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
void attn_scores(const AttnScratch& s, const Act& qkv, int b0, int Bc, int T, int NH, int hs) {
  int C = NH * hs, batch = Bc * NH;
  long long sh = (long long)T * hs, ss = (long long)T * T;
  launch(s.kernel("qkv_split", "qkv_split_bf16"), {blocks((long)batch * T * hs, 256)}, {256}, 0, s.q, s.k, s.v,
         at(qkv, (long)b0 * T * 3 * C), Bc, T, NH, hs);
  gemm(true, false, T, T, hs, 1.0f / std::sqrt((float)hs), s.k, hs, s.q, hs, 0.0f, s.S, T, batch, sh, sh, ss, s.toW());
}

}  // namespace

EXPORT(CuAttentionForward) {
  require_ready();
  Tensors t(a, kAttentionForwardArgs);
  Act out = t.act(0), qkv = t.act(2);
  CUdeviceptr lse = t.f32(1);
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
    launch("heads_merge", {blocks(n, 256)}, {256}, 0, at(out, (long)b0 * T * C), s.y, Bc, T, NH, hs);
  }
  return undefined_value(env);
}

EXPORT(CuAttentionBackward) {
  require_ready();
  Tensors t(a, kAttentionBackwardArgs);
  Act dqkv = t.act(0), dout = t.act(1), qkv = t.act(2);
  CUdeviceptr lse = t.f32(4);
  int B = a.integer(5), T = a.integer(6), C = a.integer(7), NH = a.integer(8), hs = C / NH;
  AttnScratch s = attn_scratch(B, T, NH, hs, true);
  float scale = 1.0f / std::sqrt((float)hs);
  long long sh = (long long)T * hs, ss = (long long)T * T;
  for (int b0 = 0; b0 < B; b0 += s.Bc) {
    int Bc = std::min(s.Bc, B - b0), batch = Bc * NH, rows = batch * T;
    long n = (long)batch * T * hs;
    attn_scores(s, qkv, b0, Bc, T, NH, hs);  // S again
    launch(s.kernel("heads_split", "heads_split_bf16"), {blocks(n, 256)}, {256}, 0, s.dy, at(dout, (long)b0 * T * C),
           Bc, T, NH, hs);
    launch(s.kernel("causal_probs", "causal_probs_bf16"), {blocks((long)rows * T, 256)}, {256}, 0, s.S,
           lse + (CUdeviceptr)b0 * NH * T * 4, rows, T);
    gemm(false, true, hs, T, T, 1.0f, s.dy, hs, s.S, T, 0.0f, s.dv, hs, batch, sh, ss, sh, s.toF32());  // dv = P^T dy
    gemm(true, false, T, T, hs, 1.0f, s.v, hs, s.dy, hs, 0.0f, s.dP, T, batch, sh, sh, ss, s.toW());     // dP = dy v^T
    launch(s.kernel("softmax_backward", "softmax_backward_bf16"), {blocks(rows, 8)}, {256}, 0, s.dP, s.S, rows, T);
    gemm(false, false, hs, T, T, scale, s.k, hs, s.dP, T, 0.0f, s.dq, hs, batch, sh, ss, sh, s.toF32());  // dq = scale dS k
    gemm(false, true, hs, T, T, scale, s.q, hs, s.dP, T, 0.0f, s.dk, hs, batch, sh, ss, sh, s.toF32());   // dk = scale dS^T q
    launch("qkv_merge", {blocks(n, 256)}, {256}, 0, at(dqkv, (long)b0 * T * 3 * C), s.dq, s.dk, s.dv, Bc, T, NH, hs);
  }
  return undefined_value(env);
}

EXPORT(CuAttentionCached) {
  require_ready();
  Tensors t(a, kAttentionCachedArgs);
  Act out = t.act(0), qkv = t.act(3);
  CUdeviceptr kc = t.f32(1), vc = t.f32(2);
  int B = a.integer(4), Tq = a.integer(5), pos = a.integer(6), maxT = a.integer(7), C = a.integer(8), NH = a.integer(9);
  int hs = C / NH;
  launch("kv_store", {blocks((long)B * Tq * C, 256)}, {256}, 0, kc, vc, qkv, B, Tq, pos, maxT, NH, hs);
  unsigned shmem = (unsigned)(maxT + 32) * 4;
  if (shmem > 48 * 1024) check(g_cu.funcSetAttribute(fn("attention_cached"), CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)shmem), "attention_cached shared memory");
  launch("attention_cached", {(unsigned)(B * Tq * NH)}, {128}, shmem, out, kc, vc, qkv, B, Tq, pos, maxT, NH, hs);
  return undefined_value(env);
}

}  // namespace gpt2cuda
