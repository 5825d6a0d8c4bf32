// GPT-2 layer kernels, forward and backward side by side. Same conventions as src/kernels/backend.ts:
// outputs, saved stats, inputs, weights, dims; parameter gradients accumulate (+=).
#pragma once

void encoder_forward(float* out, const int* inp, const float* wte, const float* wpe, int B, int T, int C);
void encoder_backward(float* dwte, float* dwpe, const float* dout, const int* inp, int B, int T, int C);

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int N, int C);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C);

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC,
                    bool bf16);
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC, bool bf16);

void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C, int NH);
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse, int B,
                        int T, int C, int NH);
void attention_cached(float* out, float* kcache, float* vcache, const float* qkv, int B, int Tq, int pos, int maxT,
                      int C, int NH);

void gelu_forward(float* out, const float* inp, long N);
void gelu_backward(float* dinp, const float* inp, const float* dout, long N);
void residual_forward(float* out, const float* a, const float* b, long N);

// dlogits rows are scaled by grad_scale, and by weights[n] when weights is not null
void cross_entropy(float* losses, float* dlogits, const float* logits, const int* targets, int N, int V, int Vp,
                   float grad_scale, const float* weights);

void adamw(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1, float beta2,
           float eps, float weight_decay, int t);
double sum_squares(const float* x, long n);
void scale(float* x, long n, float s);
