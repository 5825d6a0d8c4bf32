// CUDA kernels of the GPU backend, compiled at run time by NVRTC (native/cuda/cuda.cc) for the GPU in use and
// cached. No headers: the source stands alone so that any NVRTC of CUDA 11.2 or newer compiles it.
//
// Parameters, their gradients and AdamW's state are float32; activations are float32, or bf16 under --dtype bf16
// (each such argument is an Act, its storage said per call). Matrix products run in cuBLAS, these kernels do the rest.
// Shapes as in src/kernels/backend.ts: N = B*T rows, C channels, NH heads of hs = C/NH, V real and Vp padded
// vocabulary columns. Parameter gradients accumulate (+=); activation gradients are overwritten, except
// layernorm_backward's dinp, which accumulates into the residual stream's gradient.

#ifndef DYNAMIC_SHARED  // the CPU emulation in test/cuda gives its own
#define DYNAMIC_SHARED(name) extern __shared__ float name[]
#endif

#define WARP 32
#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)

// reductions: Sum and Max, over a warp (every lane gets the result) and over a block
struct Sum {
  template <typename T>
  __device__ static T op(T a, T b) { return a + b; }
};
struct Max {
  __device__ static float op(float a, float b) { return fmaxf(a, b); }
};

template <typename Op, typename T>
__device__ __forceinline__ T warp_reduce(T v) {
  for (int o = 16; o > 0; o >>= 1) v = Op::op(v, __shfl_xor_sync(FULL_MASK, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) { return warp_reduce<Sum>(v); }
__device__ __forceinline__ float warp_max(float v) { return warp_reduce<Max>(v); }

// Op over v of the whole block (blockDim.x a multiple of 32, at most 1024; `identity` fills the missing warps);
// every thread gets the result.
template <typename Op>
__device__ float block_reduce(float v, float* shared32, float identity) {
  const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, warps = blockDim.x / WARP;
  v = warp_reduce<Op>(v);
  __syncthreads();
  if (lane == 0) shared32[warp] = v;
  __syncthreads();
  v = lane < warps ? shared32[lane] : identity;
  return warp_reduce<Op>(v);
}
__device__ float block_sum(float v, float* shared32) { return block_reduce<Sum>(v, shared32, 0.0f); }
__device__ float block_max(float v, float* shared32) { return block_reduce<Max>(v, shared32, NEG_INF); }

// ---------------------------------------------------------------- storage
// bf16 is the upper half of a float32, rounded to nearest even (as PyTorch rounds); NaN stays NaN.
struct bf16 {
  unsigned short bits;
};
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __int_as_float((unsigned)x.bits << 16); }
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ void store(bf16* p, float x) {
  unsigned u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) u |= 0x400000u;  // NaN: quiet, so that rounding cannot make it infinite
  else u += 0x7fffu + ((u >> 16) & 1u);
  p->bits = (unsigned short)(u >> 16);
}

// An activation (or a gradient, or a table a kernel may meet in either storage): float32, or bf16 under --dtype bf16,
// said per tensor by the host (native/cuda/kernel_args.h). Every thread takes the same branch.
struct Act {
  void* p;
  int bf16;
};
__device__ __forceinline__ float ld(Act a, long i) {
  return a.bf16 ? to_float(((const bf16*)a.p)[i]) : ((const float*)a.p)[i];
}
__device__ __forceinline__ void st(Act a, long i, float v) {
  if (a.bf16) store((bf16*)a.p + i, v);
  else ((float*)a.p)[i] = v;
}

// dst = src, converted to dst's storage (Backend.copy; a float32 operand of a bf16 product)
extern "C" __global__ void convert(Act dst, Act src, long n) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) st(dst, i, ld(src, i));
}
// dst = v
extern "C" __global__ void fill_value(Act dst, long n, float v) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) st(dst, i, v);
}

// ---------------------------------------------------------------- encoder

// out (N,C) = wte[inp] + wpe[t]
extern "C" __global__ void encoder_forward(Act out, const int* inp, Act wte, Act wpe, int B, int T, int C) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)B * T * C) return;
  long row = i / C;
  int c = (int)(i % C), t = (int)(row % T);
  st(out, i, ld(wte, (long)inp[row] * C + c) + ld(wpe, (long)t * C + c));
}

// The backward passes below sum in an order fixed by the shapes alone, never with float atomics (whose order is the
// GPU's scheduling): two runs of a batch give the same gradients, bit for bit.

// dwte[token] += the rows of dout that hold it. The host groups the rows by token (native/cuda/layers.cc): bucket k
// is buckets[3k .. 3k+2] = (token, first, count) over `rows`, rows in ascending order. Block (k, c-chunk): one
// thread per channel adds its bucket's rows in that order.
extern "C" __global__ void encoder_backward_wte(float* dwte, Act dout, const int* rows, const int* buckets, int C) {
  int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int* bucket = buckets + 3 * (long)blockIdx.x;
  const int* r = rows + bucket[1];
  float s = 0.0f;
  for (int i = 0; i < bucket[2]; i++) s += ld(dout, (long)r[i] * C + c);
  dwte[(long)bucket[0] * C + c] += s;
}

// ---------------------------------------------------------------- layernorm

// one warp per row
extern "C" __global__ void layernorm_forward(Act out, float* mean, float* rstd, Act inp, const float* weight,
                                             const float* bias, int N, int C) {
  int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP, lane = threadIdx.x % WARP;
  if (row >= N) return;
  const long x = (long)row * C;
  float s = 0.0f;
  for (int c = lane; c < C; c += WARP) s += ld(inp, x + c);
  float m = warp_sum(s) / C;
  float v = 0.0f;
  for (int c = lane; c < C; c += WARP) {
    float d = ld(inp, x + c) - m;
    v += d * d;
  }
  float r = rsqrtf(warp_sum(v) / C + 1e-5f);
  for (int c = lane; c < C; c += WARP) st(out, x + c, (ld(inp, x + c) - m) * r * weight[c] + bias[c]);
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// One warp per row, rows strided over the grid. Each warp sums its rows' dbias and dweight terms in its own 2*C floats
// of shared memory, the block adds its warps' sums in warp order into part[blockIdx.x] ([0, C) dbias, [C, 2C)
// dweight), and column_sums_finish adds the blocks' in block order: no float atomics.
extern "C" __global__ void layernorm_backward(Act dinp, float* part, Act dout, Act inp, const float* weight,
                                              const float* mean, const float* rstd, int N, int C) {
  DYNAMIC_SHARED(acc);  // warps x 2C
  const int warps = blockDim.x / WARP, lane = threadIdx.x % WARP;
  float* mine = acc + (long)(threadIdx.x / WARP) * 2 * C;
  for (int c = lane; c < 2 * C; c += WARP) mine[c] = 0.0f;
  __syncwarp();  // lane c % 32 adds into column c and C + c: another lane zeroed C + c when C is not a multiple of 32
  for (int row = blockIdx.x * warps + threadIdx.x / WARP; row < N; row += gridDim.x * warps) {
    const long at = (long)row * C;
    float m = mean[row], r = rstd[row];
    float sdn = 0.0f, sdnx = 0.0f;
    for (int c = lane; c < C; c += WARP) {
      float xhat = (ld(inp, at + c) - m) * r, dn = weight[c] * ld(dout, at + c);
      sdn += dn;
      sdnx += dn * xhat;
    }
    sdn = warp_sum(sdn) / C;
    sdnx = warp_sum(sdnx) / C;
    for (int c = lane; c < C; c += WARP) {
      float dy = ld(dout, at + c), xhat = (ld(inp, at + c) - m) * r, dn = weight[c] * dy;
      mine[c] += dy;
      mine[C + c] += xhat * dy;
      st(dinp, at + c, ld(dinp, at + c) + (dn - sdn - xhat * sdnx) * r);
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) {
    float s = 0.0f;
    for (int w = 0; w < warps; w++) s += acc[(long)w * 2 * C + c];
    part[(long)blockIdx.x * 2 * C + c] = s;
  }
}

// dst[c] += sum over p of part[p * stride + c], p in order: the second pass of the column sums above and below
extern "C" __global__ void column_sums_finish(float* dst, const float* part, int parts, int stride, int n) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= n) return;
  float s = 0.0f;
  for (int p = 0; p < parts; p++) s += part[(long)p * stride + c];
  dst[c] += s;
}

// ---------------------------------------------------------------- matmul helpers (the products are cuBLAS's)

// out (N,OC) = bias, broadcast over rows: the product then adds onto it (cuBLAS's beta = 1), so that a bf16 output
// is written once, in the product's own epilogue (as a cuBLASLt bias epilogue would; the bias is rounded to out's
// storage first, as llm.c's bf16 biases are)
extern "C" __global__ void bias_fill(Act out, const float* bias, int N, int OC) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < (long)N * OC) st(out, i, bias[i % OC]);
}

// part[blockIdx.y] (OC) = column sums of dout (N,OC) over the rows blockIdx.y*8 + threadIdx.y, stepping
// gridDim.y*8. Block (32, 8): 32 columns, 8 row lanes added in lane order; column_sums_finish then adds the gridDim.y
// partial rows into dbias.
extern "C" __global__ void bias_backward(float* part, Act dout, int N, int OC) {
  __shared__ float lanes[8][33];
  int col = blockIdx.x * 32 + threadIdx.x;
  float s = 0.0f;
  if (col < OC)
    for (int r = blockIdx.y * 8 + threadIdx.y; r < N; r += gridDim.y * 8) s += ld(dout, (long)r * OC + col);
  lanes[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < OC) {
    for (int k = 1; k < 8; k++) s += lanes[k][threadIdx.x];
    part[(long)blockIdx.y * OC + col] = s;
  }
}

// ---------------------------------------------------------------- attention
// The scores of a (batch, head) pair are one T x T product in cuBLAS (strided batched over B*NH); these kernels
// move Q, K, V between the (B,T,3,NH,hs) layout of qkv and (B,NH,T,hs), and do the causal softmax and its gradient.
// Each comes in a float and a bf16 (_bf16) version of its head-major and score buffers.

/** element i of a (B,NH,T,hs) tensor as its coordinates */
struct HeadIndex {
  int b, h, t, d;
};
__device__ __forceinline__ HeadIndex head_index(long i, int T, int NH, int hs) {
  HeadIndex x;
  x.d = (int)(i % hs);
  long r = i / hs;
  x.t = (int)(r % T);
  r /= T;
  x.h = (int)(r % NH);
  x.b = (int)(r / NH);
  return x;
}

// qkv (B,T,3C) -> q, k, v (B,NH,T,hs)
template <typename W>
__device__ void qkv_split_impl(W* q, W* k, W* v, Act qkv, int B, int T, int NH, int hs) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)B * NH * T * hs) return;
  HeadIndex at = head_index(i, T, NH, hs);
  int C = NH * hs;
  const long src = ((long)at.b * T + at.t) * 3 * C + at.h * hs + at.d;
  store(q + i, ld(qkv, src));
  store(k + i, ld(qkv, src + C));
  store(v + i, ld(qkv, src + 2 * C));
}
extern "C" __global__ void qkv_split(float* q, float* k, float* v, Act qkv, int B, int T, int NH, int hs) {
  qkv_split_impl(q, k, v, qkv, B, T, NH, hs);
}
extern "C" __global__ void qkv_split_bf16(bf16* q, bf16* k, bf16* v, Act qkv, int B, int T, int NH, int hs) {
  qkv_split_impl(q, k, v, qkv, B, T, NH, hs);
}

// dq, dk, dv (B,NH,T,hs) -> dqkv (B,T,3C)
extern "C" __global__ void qkv_merge(Act dqkv, const float* dq, const float* dk, const float* dv, int B, int T, int NH,
                                     int hs) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)B * NH * T * hs) return;
  HeadIndex at = head_index(i, T, NH, hs);
  int C = NH * hs;
  const long dst = ((long)at.b * T + at.t) * 3 * C + at.h * hs + at.d;
  st(dqkv, dst, dq[i]);
  st(dqkv, dst + C, dk[i]);
  st(dqkv, dst + 2 * C, dv[i]);
}

// y (B,T,C) <- x (B,NH,T,hs)
extern "C" __global__ void heads_merge(Act y, const float* x, int B, int T, int NH, int hs) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)B * NH * T * hs) return;
  HeadIndex at = head_index(i, T, NH, hs);
  st(y, ((long)at.b * T + at.t) * NH * hs + at.h * hs + at.d, x[i]);
}

// y (B,NH,T,hs) <- x (B,T,C)
template <typename W>
__device__ void heads_split_impl(W* y, Act x, int B, int T, int NH, int hs) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)B * NH * T * hs) return;
  HeadIndex at = head_index(i, T, NH, hs);
  store(y + i, ld(x, ((long)at.b * T + at.t) * NH * hs + at.h * hs + at.d));
}
extern "C" __global__ void heads_split(float* y, Act x, int B, int T, int NH, int hs) {
  heads_split_impl(y, x, B, T, NH, hs);
}
extern "C" __global__ void heads_split_bf16(bf16* y, Act x, int B, int T, int NH, int hs) {
  heads_split_impl(y, x, B, T, NH, hs);
}

// In place on scaled scores S (B*NH, T, T): causal softmax of each row; lse = log-sum-exp of the row's scores.
// One warp per row.
template <typename W>
__device__ void causal_softmax_impl(W* S, float* lse, int rows, int T) {
  int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP, lane = threadIdx.x % WARP;
  if (row >= rows) return;
  int t = row % T;
  W* s = S + (long)row * T;
  float m = NEG_INF;
  for (int j = lane; j <= t; j += WARP) m = fmaxf(m, to_float(s[j]));
  m = warp_max(m);
  float sum = 0.0f;
  for (int j = lane; j <= t; j += WARP) sum += __expf(to_float(s[j]) - m);
  sum = warp_sum(sum);
  float inv = 1.0f / sum;
  for (int j = lane; j < T; j += WARP) store(s + j, j <= t ? __expf(to_float(s[j]) - m) * inv : 0.0f);
  if (lane == 0) lse[row] = m + __logf(sum);
}
extern "C" __global__ void causal_softmax(float* S, float* lse, int rows, int T) { causal_softmax_impl(S, lse, rows, T); }
extern "C" __global__ void causal_softmax_bf16(bf16* S, float* lse, int rows, int T) {
  causal_softmax_impl(S, lse, rows, T);
}

// In place on scaled scores S: P = exp(S - lse) below the diagonal, 0 above (recomputed in backward)
template <typename W>
__device__ void causal_probs_impl(W* S, const float* lse, int rows, int T) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)rows * T) return;
  long row = i / T;
  int j = (int)(i % T), t = (int)(row % T);
  store(S + i, j <= t ? __expf(to_float(S[i]) - lse[row]) : 0.0f);
}
extern "C" __global__ void causal_probs(float* S, const float* lse, int rows, int T) { causal_probs_impl(S, lse, rows, T); }
extern "C" __global__ void causal_probs_bf16(bf16* S, const float* lse, int rows, int T) {
  causal_probs_impl(S, lse, rows, T);
}

// dS = P * (dP - sum_j P*dP), in place over dP. One warp per row.
template <typename W>
__device__ void softmax_backward_impl(W* dP, const W* P, int rows, int T) {
  int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP, lane = threadIdx.x % WARP;
  if (row >= rows) return;
  int t = row % T;
  const W* p = P + (long)row * T;
  W* d = dP + (long)row * T;
  float s = 0.0f;
  for (int j = lane; j <= t; j += WARP) s += to_float(p[j]) * to_float(d[j]);
  s = warp_sum(s);
  for (int j = lane; j < T; j += WARP) store(d + j, j <= t ? to_float(p[j]) * (to_float(d[j]) - s) : 0.0f);
}
extern "C" __global__ void softmax_backward(float* dP, const float* P, int rows, int T) {
  softmax_backward_impl(dP, P, rows, T);
}
extern "C" __global__ void softmax_backward_bf16(bf16* dP, const bf16* P, int rows, int T) {
  softmax_backward_impl(dP, P, rows, T);
}

// Stores the new tokens' K and V (qkv (B,Tq,3C) at positions pos..) into the caches (B,NH,maxT,hs).
extern "C" __global__ void kv_store(float* kcache, float* vcache, Act qkv, int B, int Tq, int pos, int maxT, int NH,
                                    int hs) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)B * Tq * NH * hs) return;
  int d = (int)(i % hs);
  long r = i / hs;
  int h = (int)(r % NH);
  r /= NH;
  int t = (int)(r % Tq), b = (int)(r / Tq);
  int C = NH * hs;
  const long src = ((long)b * Tq + t) * 3 * C + h * hs + d;
  long dst = (((long)b * NH + h) * maxT + pos + t) * hs + d;
  kcache[dst] = ld(qkv, src + C);
  vcache[dst] = ld(qkv, src + 2 * C);
}

// One block per (b, t, h) query: scores over positions 0..pos+t in shared memory (maxT floats), softmax, sum of V.
extern "C" __global__ void attention_cached(Act out, const float* kcache, const float* vcache, Act qkv, int B, int Tq,
                                            int pos, int maxT, int NH, int hs) {
  DYNAMIC_SHARED(sh);  // [0, maxT) scores, [maxT, maxT + 32) reduction scratch
  float* red = sh + maxT;
  int h = blockIdx.x % NH, t = (blockIdx.x / NH) % Tq, b = blockIdx.x / (NH * Tq);
  int C = NH * hs, n = pos + t + 1;
  const long q = ((long)b * Tq + t) * 3 * C + h * hs;
  const float* K = kcache + ((long)b * NH + h) * maxT * hs;
  const float* Vc = vcache + ((long)b * NH + h) * maxT * hs;
  float scale = rsqrtf((float)hs);
  float m = NEG_INF;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    float s = 0.0f;
    for (int d = 0; d < hs; d++) s += ld(qkv, q + d) * K[(long)j * hs + d];
    s *= scale;
    sh[j] = s;
    m = fmaxf(m, s);
  }
  m = block_max(m, red);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    float e = __expf(sh[j] - m);
    sh[j] = e;
    sum += e;
  }
  sum = block_sum(sum, red);
  __syncthreads();
  float inv = 1.0f / sum;
  const long o = ((long)b * Tq + t) * C + h * hs;
  for (int d = threadIdx.x; d < hs; d += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < n; j++) acc += sh[j] * Vc[(long)j * hs + d];
    st(out, o + d, acc * inv);
  }
}

// ---------------------------------------------------------------- elementwise

#define GELU_SCALE 0.7978845608028654f  // sqrt(2/pi)

extern "C" __global__ void gelu_forward(Act out, Act inp, long n) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = ld(inp, i);
  st(out, i, 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x))));
}

extern "C" __global__ void gelu_backward(Act dinp, Act inp, Act dout, long n) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = ld(inp, i);
  float u = GELU_SCALE * (x + 0.044715f * x * x * x);
  float th = tanhf(u);
  float sech2 = 1.0f - th * th;
  float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
  st(dinp, i, grad * ld(dout, i));
}

extern "C" __global__ void residual_forward(Act out, Act a, Act b, long n) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) st(out, i, ld(a, i) + ld(b, i));
}

extern "C" __global__ void scale_kernel(float* x, long n, float s) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}

// ---------------------------------------------------------------- classifier

/**
 * (m, s) merged with (m2, s2): the max, and the sum of exponentials relative to it. A side with no finite value has
 * m = -inf and s = 0, or NaN when it saw a NaN: exp(-inf) = 0 scales it to 0 or keeps the NaN.
 */
__device__ __forceinline__ void softmax_merge(float& m, float& s, float m2, float s2) {
  float mm = fmaxf(m, m2);
  s = mm == NEG_INF ? s + s2 : s * __expf(m - mm) + s2 * __expf(m2 - mm);
  m = mm;
}
/** the block's (max, sum of exponentials) from every thread's pair, in a fixed order; every thread gets it */
__device__ void softmax_stats_block(float& m, float& s, float* redM, float* redS) {
  const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, warps = blockDim.x / WARP;
  for (int o = 16; o > 0; o >>= 1) softmax_merge(m, s, __shfl_xor_sync(FULL_MASK, m, o), __shfl_xor_sync(FULL_MASK, s, o));
  __syncthreads();
  if (lane == 0) redM[warp] = m, redS[warp] = s;
  __syncthreads();
  m = lane < warps ? redM[lane] : NEG_INF;
  s = lane < warps ? redS[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) softmax_merge(m, s, __shfl_xor_sync(FULL_MASK, m, o), __shfl_xor_sync(FULL_MASK, s, o));
}

// One block per row: losses[row] = logsumexp(logits[:V]) - logits[target]; with dlogits (may alias logits),
// dlogits = (softmax - onehot) * grad_scale (* weights[row] when weights is not null) over V columns and 0 in the
// padded ones. target < 0: loss 0, grad 0. A target >= V (the model refuses those before they get here) gives a NaN
// loss rather than a read outside the row. The logits are read twice (the max and the sum of exponentials together,
// then the gradient) and the gradient written once, over them.
extern "C" __global__ void cross_entropy(float* losses, Act dlogits, Act logits, const int* targets, int N, int V,
                                         int Vp, float scale, const float* weights) {
  __shared__ float red[64];
  int row = blockIdx.x;
  if (row >= N) return;
  const long x = (long)row * Vp;
  int target = targets[row];
  const float grad_scale = weights ? scale * weights[row] : scale;
  // the row's max and sum of exponentials in one read (online softmax): each thread's running pair, then the block's
  float m = NEG_INF, s = 0.0f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    float v = ld(logits, x + j);
    if (v > m) {
      s = s * __expf(m - v) + 1.0f;  // m = -inf: s is 0, and 0 * 0 stays 0
      m = v;
    } else if (v != NEG_INF) {
      s += __expf(v - m);  // a NaN v lands here and makes s NaN, as it makes the reference's loss NaN
    }
  }
  softmax_stats_block(m, s, red, red + 32);
  float lse = m + __logf(s);
  if (threadIdx.x == 0) losses[row] = target < 0 ? 0.0f : target >= V ? __int_as_float(0x7fc00000) : lse - ld(logits, x + target);
  if (dlogits.p == 0) return;
  __syncthreads();  // every thread has read x before dlogits (which may be x) is written
  for (int j = threadIdx.x; j < Vp; j += blockDim.x) {
    float g = 0.0f;
    if (target >= 0 && j < V) g = (__expf(ld(logits, x + j) - lse) - (j == target ? 1.0f : 0.0f)) * grad_scale;
    st(dlogits, x + j, g);
  }
}

// ---------------------------------------------------------------- optimizer

// AdamW as torch.optim.AdamW: decoupled decay; bc1 = 1 - beta1^t, bc2 = 1 - beta2^t; each gradient times gs (the
// clipping factor: no pass of its own over the gradients)
extern "C" __global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, long n, float lr,
                                        float beta1, float beta2, float eps, float wd, float bc1, float bc2, float gs) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float g = grads[i] * gs;
  float mi = beta1 * m[i] + (1.0f - beta1) * g;
  float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  float p = params[i] * (1.0f - lr * wd);
  params[i] = p - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
}

// partial[block] = sum of x^2 over the block's grid-stride share, in double
extern "C" __global__ void sum_squares(double* partial, Act x, long n) {
  __shared__ double red[32];
  double s = 0.0;
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    double v = ld(x, i);
    s += v * v;
  }
  s = warp_reduce<Sum>(s);
  int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
  if (lane == 0) red[warp] = s;
  __syncthreads();
  if (warp == 0) {
    s = lane < (int)(blockDim.x / WARP) ? red[lane] : 0.0;
    s = warp_reduce<Sum>(s);
    if (lane == 0) partial[blockIdx.x] = s;
  }
}
