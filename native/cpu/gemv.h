// Matrix-vector products (gemv.cc): the matmuls of token-by-token generation, where reading the weights is the cost.
#pragma once

// sgemm for M <= 4: dot products straight from the operands (C (M x N) = (accumulate ? C : 0) + A' B' + bias)
void gemm_small_m(int M, int N, int K, const float* A, long rsa, long csa, const float* B, long rsb, long csb,
                  float* C, long ldc, bool accumulate, const float* bias);

// out (M x N) = A (M x K, fp32, rows of stride K) @ W^T + bias, where W (N x K) is stored as bf16 (the upper 16 bits
// of a float32): inference on half the weight bytes, float32 arithmetic, each weight widened where it is used. Made
// for M <= 4 (decoding); matmul_forward_bf16_weights (layers.cc) sends a prefill's rows to the blocked GEMM instead.
void matmul_bf16_weights(float* out, const float* A, const unsigned short* W, const float* bias, int M, int K, int N);
