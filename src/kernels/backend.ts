// The kernel interface: the one seam between the model ("what") and a backend ("how").
//
// A backend owns its buffers. Model code only holds opaque Tensor handles, makes views of them, and moves data in
// and out through read/write. CPU backends keep host typed arrays (./host.ts), the GPU backends device memory, with the
// same interface, so no model or training code changes.
//
// Conventions (llm.c): arguments are outputs, saved statistics, inputs, weights, dims. Shapes in comments use
// B, T, C, NH, hs, V, Vp; N = B*T rows. Backward kernels ACCUMULATE (+=) into parameter gradients (dweight,
// dbias, dwte, dwpe); activation gradients are overwritten (=), except layernormBackward's dinp, which accumulates
// into the residual-stream gradient. Gradients are zeroed in exactly one place: the model's zeroGrad().

/**
 * The storage types of tensors: float32; bf16 (the upper 16 bits of a float32: written from and read as float32,
 * rounded to nearest even); int32 (token ids).
 */
export type DType = "f32" | "bf16" | "i32";

/** bytes per value of each dtype: the one place a tensor's size in bytes comes from */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = { f32: 4, bf16: 2, i32: 4 };

/** An opaque buffer of `length` values of `dtype`, owned by a backend. */
export interface Tensor {
  readonly length: number;
  readonly dtype: DType;
}

/** a tensor's size in bytes */
export function byteSize(t: Tensor): number {
  return t.length * DTYPE_BYTES[t.dtype];
}

/** bytes of n values of a dtype */
export function bytesOf(n: number, dtype: DType = "f32"): number {
  return n * DTYPE_BYTES[dtype];
}

export interface Backend {
  readonly name: string;
  /** threads the backend computes with */
  readonly threads: number;
  /** the device it computes on, when not this machine's CPU (e.g. "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)") */
  readonly device?: string;
  /**
   * Rows of logits the fused classifier computes at a time (default 256, which keeps a chunk in a CPU's caches; a GPU
   * wants a few large products rather than many small ones).
   */
  readonly classifierRows?: number;
  /** bytes a run may still allocate on this backend's device (default: the host's available memory) */
  freeBytes?(): number;
  /**
   * The dtype a model stores its activations in on this backend (default "f32"). "bf16" (the native backend under
   * --dtype bf16): every kernel then takes bf16 tensors wherever an activation goes (any argument but the
   * parameters, their gradients, the optimizer state and the saved statistics), reads them as float32, computes in
   * float32 and rounds what it writes to bf16. Gradients of activations and every accumulation stay float32, except
   * the classifier's dlogits, written over the bf16 logits (as llm.c does; the bf16 product rounds them anyway).
   */
  readonly activationDtype?: "f32" | "bf16";
  /**
   * The dtype of a block's backward scratch (d(GELU output), d(fch), d(atty), d(qkv); default "f32"): "bf16" on the
   * CUDA backend under bf16 activations, as llm.c keeps activation gradients, so that its bf16 weight-gradient
   * products take them as they are (cuBLAS rounds float32 operands to bf16 for those products anyway). The residual
   * stream's gradient and the LayerNorms' input gradients stay float32: they accumulate.
   */
  readonly activationGradDtype?: "f32" | "bf16";

  // ---- memory
  /**
   * A zero-filled buffer of n values: float32 (the default), bf16 where the backend stores it (half the bytes), or
   * int32 (token ids: the encoder's inputs and the classifier's targets, written once per forward and read by every
   * kernel that needs them where they are, on the device). bf16 tensors serve as matmul weights for inference
   * (matmulForward's `weight`) on every backend that has them, and as activations where `activationDtype` says so; a
   * backend without bf16 storage throws.
   */
  alloc(n: number, dtype?: DType): Tensor;
  /** a view of length n starting at offset (no copy), of t's dtype */
  view(t: Tensor, offset: number, n: number): Tensor;
  /** copies host data into t at offset: float32 values into an f32 or bf16 tensor (rounded), int32 into an i32 one */
  write(t: Tensor, src: Float32Array | Int32Array, offset?: number): void;
  /** copies n floats of t (f32 or bf16) from offset into a new host array */
  read(t: Tensor, offset?: number, n?: number): Float32Array;
  /**
   * The same, resolved once the data are on the host: the read the training loop, evaluation and generation use, so
   * that a backend which cannot read synchronously (WebGPU maps buffers asynchronously) serves them, and a device
   * can go on with queued work meanwhile. Host backends resolve at once.
   */
  readAsync(t: Tensor, offset?: number, n?: number): Promise<Float32Array>;
  /** t[..] = value (an f32 or bf16 tensor) */
  fill(t: Tensor, value: number): void;
  /**
   * dst = src (same length, f32 or bf16) on the device, converted to dst's dtype (float32 to bf16 rounds to nearest even): how
   * bf16 inference weights are made without a read to the host.
   */
  copy(dst: Tensor, src: Tensor): void;

  // ---- layers: forward and backward side by side
  /** out (N,C) = wte[inp] + wpe[t] for inp (B,T), an i32 tensor of token ids */
  encoderForward(out: Tensor, inp: Tensor, wte: Tensor, wpe: Tensor, B: number, T: number, C: number): void;
  encoderBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, inp: Tensor, B: number, T: number, C: number): void;

  /** out (N,C), mean/rstd (N) */
  layernormForward(out: Tensor, mean: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, N: number, C: number): void;
  /** dinp += ; dweight, dbias += */
  layernormBackward(dinp: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, inp: Tensor, weight: Tensor,
    mean: Tensor, rstd: Tensor, N: number, C: number): void;

  /** out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC); out overlaps neither inp nor weight */
  matmulForward(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null, N: number, C: number, OC: number): void;
  /** dinp (N,C) = dout @ weight; dweight (OC,C) += dout^T @ inp; dbias += sum over rows of dout. dinp may be null. */
  matmulBackward(dinp: Tensor | null, dweight: Tensor, dbias: Tensor | null, dout: Tensor, inp: Tensor, weight: Tensor,
    N: number, C: number, OC: number): void;

  /**
   * Causal self-attention, flash-style: never builds the T x T matrix.
   * out (B,T,C); lse (B,NH,T) log-sum-exp of each query's scaled scores, saved for backward; qkv (B,T,3C).
   */
  attentionForward(out: Tensor, lse: Tensor, qkv: Tensor, B: number, T: number, C: number, NH: number): void;
  /** dqkv (B,T,3C) = ; recomputes probabilities from qkv and lse */
  attentionBackward(dqkv: Tensor, dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor,
    B: number, T: number, C: number, NH: number): void;
  /**
   * KV-cached attention for inference. qkv (B,Tq,3C) holds the new tokens at positions pos..pos+Tq-1; their K and V
   * are stored into kcache/vcache (B,NH,maxT,hs), then each query attends to positions 0..its own. out (B,Tq,C).
   */
  attentionCached(out: Tensor, kcache: Tensor, vcache: Tensor, qkv: Tensor, B: number, Tq: number, pos: number,
    maxT: number, C: number, NH: number): void;

  /** GELU, tanh approximation (GPT-2's gelu_new) */
  geluForward(out: Tensor, inp: Tensor, N: number): void;
  /** dinp = dout * gelu'(inp) */
  geluBackward(dinp: Tensor, inp: Tensor, dout: Tensor, N: number): void;

  /** out = a + b */
  residualForward(out: Tensor, a: Tensor, b: Tensor, N: number): void;

  /**
   * Fused classifier: losses (N) = -log softmax(logits[:V])[target] over the first V of Vp columns; targets (N) is an
   * i32 tensor, each id < V (the model checks them: a kernel need not).
   * If dlogits is given (it may alias logits) it receives (softmax - onehot) * gradScale, zeros in padded columns,
   * each row times rowWeights[n] when given (per-token weights: preference and policy-gradient objectives).
   * Rows with target < 0 get loss 0 and zero gradient.
   */
  crossEntropy(losses: Tensor, dlogits: Tensor | null, logits: Tensor, targets: Tensor, N: number, V: number,
    Vp: number, gradScale: number, rowWeights?: Float32Array | null): void;

  /**
   * AdamW as torch.optim.AdamW (decoupled decay); t is the 1-based step for bias correction. Each gradient is first
   * multiplied by gradScale (gradient clipping's factor, as llm.c passes it: no separate pass over the gradients).
   */
  adamw(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, n: number, lr: number, beta1: number, beta2: number,
    eps: number, weightDecay: number, t: number, gradScale: number): void;
  /** sum of squares of t[0..n) in double precision */
  sumSquares(t: Tensor, n: number): number;
  /** the same, resolved when the device has it (the gradient norm of every training step reads it this way) */
  sumSquaresAsync(t: Tensor, n: number): Promise<number>;
  /** t[0..n) *= s */
  scale(t: Tensor, n: number, s: number): void;
}
