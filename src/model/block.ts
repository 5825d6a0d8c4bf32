// One transformer block of GPT-2, forward and backward side by side (llm.c's layer order): pre-LayerNorm attention,
// then the MLP, each added to the residual stream. GPT2 runs it over a batch in training and evaluation, KVCache over
// the new tokens against a cache; the model owns the buffers and passes them in.

import type { Backend, Tensor } from "../kernels/backend.js";
import type { RecomputeLevel } from "./activations.js";

/** The buffers of one block over N rows. */
export interface BlockIO {
  /** (N,C) the residual stream coming in */
  input: Tensor;
  ln1: Tensor; ln1Mean: Tensor; ln1Rstd: Tensor;
  /** (N,3C) */
  qkv: Tensor;
  atty: Tensor; attproj: Tensor;
  /** (N,C) input + attention */
  res2: Tensor;
  ln2: Tensor; ln2Mean: Tensor; ln2Rstd: Tensor;
  /** (N,4C) */
  fch: Tensor; fchGelu: Tensor;
  fcproj: Tensor;
  /** (N,C) res2 + MLP: the block's output */
  res3: Tensor;
}

/**
 * The gradient buffers of a block's backward over N rows (float32). dfch may be dfchGelu (GELU's backward runs in
 * place), and datty and dqkv may lie in that buffer too: the MLP's are dead when attention's backward starts.
 */
export interface BlockGrads {
  /** (N,C) d(block output) coming in, d(block input) going out */
  dres: Tensor;
  /** (N,C) scratch: the gradient of a LayerNorm's output */
  dln: Tensor;
  datty: Tensor;
  /** (N,3C) */
  dqkv: Tensor;
  /** (N,4C) */
  dfch: Tensor; dfchGelu: Tensor;
}

/** the parameters of one block: views of layer l's slices */
export interface BlockWeights {
  ln1w: Tensor; ln1b: Tensor; qkvw: Tensor; qkvb: Tensor; attprojw: Tensor; attprojb: Tensor;
  ln2w: Tensor; ln2b: Tensor; fcw: Tensor; fcb: Tensor; fcprojw: Tensor; fcprojb: Tensor;
}

/** a diagnosis hook: called after a kernel with its output (GPT2.debugCheck) */
export type Check = ((where: string, t: Tensor, n: number) => void) | undefined;

/**
 * Forward over N rows. `attend` fills atty from qkv (causal attention over the batch, or against a KV cache). Buffers
 * may alias where the caller keeps nothing (the cache updates one residual stream in place: input = res2 = res3).
 */
export function blockForward(be: Backend, C: number, w: BlockWeights, io: BlockIO, N: number,
  attend: (qkv: Tensor, atty: Tensor) => void, chk: Check, at: string): void {
  be.layernormForward(io.ln1, io.ln1Mean, io.ln1Rstd, io.input, w.ln1w, w.ln1b, N, C);
  chk?.(`${at} ln_1 output (forward)`, io.ln1, N * C);
  be.matmulForward(io.qkv, io.ln1, w.qkvw, w.qkvb, N, C, 3 * C);
  chk?.(`${at} attn.c_attn output qkv (forward)`, io.qkv, N * 3 * C);
  attend(io.qkv, io.atty);
  chk?.(`${at} attention output (forward)`, io.atty, N * C);
  be.matmulForward(io.attproj, io.atty, w.attprojw, w.attprojb, N, C, C);
  chk?.(`${at} attn.c_proj output (forward)`, io.attproj, N * C);
  be.residualForward(io.res2, io.input, io.attproj, N * C);
  be.layernormForward(io.ln2, io.ln2Mean, io.ln2Rstd, io.res2, w.ln2w, w.ln2b, N, C);
  chk?.(`${at} ln_2 output (forward)`, io.ln2, N * C);
  be.matmulForward(io.fch, io.ln2, w.fcw, w.fcb, N, C, 4 * C);
  chk?.(`${at} mlp.c_fc output (forward)`, io.fch, N * 4 * C);
  be.geluForward(io.fchGelu, io.fch, N * 4 * C);
  be.matmulForward(io.fcproj, io.fchGelu, w.fcprojw, w.fcprojb, N, 4 * C, C);
  chk?.(`${at} mlp.c_proj output (forward)`, io.fcproj, N * C);
  be.residualForward(io.res3, io.res2, io.fcproj, N * C);
  chk?.(`${at} residual stream (forward)`, io.res3, N * C);
}

/**
 * Backward over N rows, from what forward kept in io: d.dres holds d(res3) and leaves holding d(input); parameter
 * gradients accumulate (+=) into dw. What the recompute level did not keep (GELU's output at -r 1, the LayerNorms'
 * at -r 2) is recomputed first, into the buffers forward shared between layers. `attendBackward` fills dqkv from
 * datty (attention's backward, with what the caller saved of its forward).
 */
export function blockBackward(be: Backend, C: number, w: BlockWeights, dw: BlockWeights, io: BlockIO, d: BlockGrads,
  N: number, recompute: RecomputeLevel, attendBackward: (dqkv: Tensor, datty: Tensor) => void, chk: Check, at: string): void {
  if (recompute >= 1) be.geluForward(io.fchGelu, io.fch, N * 4 * C);
  if (recompute >= 2) be.layernormForward(io.ln2, io.ln2Mean, io.ln2Rstd, io.res2, w.ln2w, w.ln2b, N, C);

  // MLP: dres is d(res3), which flows unchanged to res2
  be.matmulBackward(d.dfchGelu, dw.fcprojw, dw.fcprojb, d.dres, io.fchGelu, w.fcprojw, N, 4 * C, C);
  chk?.(`${at} mlp.c_proj input gradient (backward)`, d.dfchGelu, N * 4 * C);
  be.geluBackward(d.dfch, io.fch, d.dfchGelu, N * 4 * C);
  be.matmulBackward(d.dln, dw.fcw, dw.fcb, d.dfch, io.ln2, w.fcw, N, C, 4 * C);
  chk?.(`${at} mlp.c_fc input gradient (backward)`, d.dln, N * C);
  be.layernormBackward(d.dres, dw.ln2w, dw.ln2b, d.dln, io.res2, w.ln2w, io.ln2Mean, io.ln2Rstd, N, C);
  chk?.(`${at} residual gradient after ln_2 (backward)`, d.dres, N * C);
  // attention: dres is now d(res2), which flows unchanged to the block's input
  if (recompute >= 2) be.layernormForward(io.ln1, io.ln1Mean, io.ln1Rstd, io.input, w.ln1w, w.ln1b, N, C);
  be.matmulBackward(d.datty, dw.attprojw, dw.attprojb, d.dres, io.atty, w.attprojw, N, C, C);
  chk?.(`${at} attention output gradient (backward)`, d.datty, N * C);
  attendBackward(d.dqkv, d.datty);
  chk?.(`${at} qkv gradient (backward)`, d.dqkv, N * 3 * C);
  be.matmulBackward(d.dln, dw.qkvw, dw.qkvb, d.dqkv, io.ln1, w.qkvw, N, C, 3 * C);
  be.layernormBackward(d.dres, dw.ln1w, dw.ln1b, d.dln, io.input, w.ln1w, io.ln1Mean, io.ln1Rstd, N, C);
  chk?.(`${at} residual gradient after ln_1 (backward)`, d.dres, N * C);
}
