// Packed, cache-blocked, multithreaded SGEMM with runtime CPU dispatch (AVX-512, AVX2+FMA, portable).
#pragma once
#include <cstddef>

#include "storage.h"

// C (M x N, row stride ldc) = (accumulate ? C : 0) + A' B', where A'(i,k) = A[i*rsa + k*csa] and
// B'(k,j) = B[k*rsb + j*csb]. Strides express the transposes GPT-2's matmuls need. Without accumulate, a
// non-null bias (length N) is added to every row in the store (fused bias epilogue).
void sgemm(int M, int N, int K, const float* A, long rsa, long csa, const float* B, long rsb, long csb,
           float* C, long ldc, bool accumulate, const float* bias = nullptr);

// The same with A' and B' rounded to bf16 and multiplied with vdpbf16ps (fp32 accumulation). Falls back to
// sgemm when the CPU has no AVX512-BF16.
void sgemm_bf16(int M, int N, int K, const float* A, long rsa, long csa, const float* B, long rsb, long csb,
                float* C, long ldc, bool accumulate, const float* bias = nullptr);

// whether gemm_any's float32 products pack bf16 weights (B) as they are, widening them (AVX-512 with BW and VL)
bool gemm_packs_bf16_weights();

// Which micro-kernel the dispatcher picked: "avx512", "avx2" or "generic".
const char* gemm_isa();
bool cpu_has_bf16();

/** a read-only float32 or bf16 operand */
struct Src {
  const float* f = nullptr;
  const uint16_t* h = nullptr;
  Src at(long off) const { return h ? Src{nullptr, h + off} : Src{f + off, nullptr}; }
};
inline Src src_of(Ten t) { return Src{t.f, t.h}; }

// C = (accumulate ? C : 0) + A' B' (+ bias) as sgemm, with A, B and C each float32 or bf16 storage. bf16 = true:
// sgemm_bf16's products, packing bf16 operands as they are (nothing to round); a bf16 C is rounded from the float32
// sums. Otherwise, and at M <= 4, float32 products of the operands' values.
void gemm_any(bool bf16, int M, int N, int K, Src A, long rsa, long csa, Src B, long rsb, long csb, Ten C, long ldc,
              bool accumulate, const float* bias);
