// Causal self-attention with bf16 block products (attention_bf16.cc): what a bf16 backend runs where the CPU has
// AVX512-BF16 and the heads are 64 wide (every GPT-2 size); elsewhere attention.cc's float32 products.
#pragma once

#include "storage.h"

bool attention_bf16_ok(int hs);
void attention_forward_bf16(Ten out, float* lse, Ten qkv, int B, int T, int C, int NH);
void attention_backward_bf16(Ten dqkv, Ten dout, Ten qkv, Ten out, const float* lse, int B, int T, int C, int NH);
