// GPT-2 layer kernels, forward and backward side by side. Same conventions as src/kernels/backend.ts:
// outputs, saved stats, inputs, weights, dims; parameter gradients accumulate (+=).
#pragma once

#include "storage.h"

// Arguments typed Ten may be float32 or bf16 (activations under --dtype bf16; see storage.h); float* ones are float32
// (parameters, their gradients, optimizer state, saved statistics).

void encoder_forward(Ten out, const int* inp, Ten wte, Ten wpe, int B, int T, int C);
void encoder_backward(float* dwte, float* dwpe, Ten dout, const int* inp, int B, int T, int C);

void layernorm_forward(Ten out, float* mean, float* rstd, Ten inp, const float* weight, const float* bias, int N, int C);
void layernorm_backward(Ten dinp, float* dweight, float* dbias, Ten dout, Ten inp, const float* weight,
                        const float* mean, const float* rstd, int N, int C);

// the weight may be bf16 too (multiplied as the bf16 product where bf16 is set; otherwise widened)
void matmul_forward(Ten out, Ten inp, Ten weight, const float* bias, int N, int C, int OC, bool bf16);
// inference on bf16 weights with float32 activations: GEMVs for a few rows (decoding), the blocked GEMM widening the
// weights as it packs them for more (a prompt's prefill: 18.7 -> 14.5 ms on d12's lm_head at 16 rows, float32's time)
void matmul_forward_bf16_weights(float* out, const float* inp, const uint16_t* weight, const float* bias, int N, int C, int OC);
void matmul_backward(Ten dinp, float* dweight, float* dbias, Ten dout, Ten inp, Ten weight, int N, int C, int OC, bool bf16);

// bf16: a bf16 backend's call, whose block products take bf16 operands where the CPU can (attention_bf16.h)
void attention_forward(Ten out, float* lse, Ten qkv, int B, int T, int C, int NH, bool bf16);
void attention_backward(Ten dqkv, Ten dout, Ten qkv, Ten out, const float* lse, int B, int T, int C, int NH, bool bf16);
void attention_cached(float* out, float* kcache, float* vcache, const float* qkv, int B, int Tq, int pos, int maxT,
                      int C, int NH);

void gelu_forward(Ten out, Ten inp, long N);
void gelu_backward(Ten dinp, Ten inp, Ten dout, long N);
void residual_forward(Ten out, Ten a, Ten b, long N);

// dlogits rows are scaled by grad_scale, and by weights[n] when weights is not null
void cross_entropy(float* losses, Ten dlogits, Ten logits, const int* targets, int N, int V, int Vp, float grad_scale,
                   const float* weights);

void adamw(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
           float eps, float weight_decay, int t, float grad_scale);
// x may be an activation (the guard's check for non-finite values)
double sum_squares(Ten x, long n);
// dst = src, converted to dst's storage
void copy_tensor(Ten dst, Ten src, long n);
void scale(float* x, long n, float s);
