// The fused classifier (llm.c's fused_classifier): the lm_head's logits, the cross-entropy loss and, in training,
// the gradients, chunk by chunk, so that the (rows, Vp) logits never exist whole.

import type { Backend, Tensor } from "../kernels/backend.js";
import type { Check } from "./block.js";

/** The buffers of a classifier pass over M rows */
export interface ClassifierIO {
  /** (M,C) the final LayerNorm's output of the rows that have a target */
  x: Tensor;
  /** (M) i32 target ids */
  targets: Tensor;
  /** (M) float32: each row's loss */
  losses: Tensor;
  /** (chunk,Vp) one chunk of logits (and, in training, the dlogits written over them) */
  logits: Tensor;
  /** (M,C) d(x), in training */
  dx: Tensor | null;
  /** the lm_head's weight as forwards multiply with it (wte, tied; or its bf16 copy), and as float32 (backward) */
  head: Tensor; wte: Tensor;
  /** d(wte), in training: the tied lm_head's gradient accumulates here */
  dwte: Tensor | null;
}

/**
 * Logits -> loss, and with `io.dx` -> dlogits (in place, times gradScale and the row's weight when given) -> dx and
 * dwte right away; `chunk` rows at a time.
 */
export function classifier(be: Backend, io: ClassifierIO, M: number, C: number, V: number, Vp: number, chunk: number,
  gradScale: number, rowWeights: Float32Array | null, chk: Check): void {
  for (let r0 = 0; r0 < M; r0 += chunk) {
    const n = Math.min(chunk, M - r0);
    const logits = be.view(io.logits, 0, n * Vp), xr = be.view(io.x, r0 * C, n * C);
    be.matmulForward(logits, xr, io.head, null, n, C, Vp);
    chk?.("lm_head logits (forward)", logits, n * Vp);
    be.crossEntropy(be.view(io.losses, r0, n), io.dx ? logits : null, logits, be.view(io.targets, r0, n), n, V, Vp, gradScale,
      rowWeights?.subarray(r0, r0 + n));
    if (io.dx) be.matmulBackward(be.view(io.dx, r0 * C, n * C), io.dwte!, null, logits, xr, io.wte, n, C, Vp);
  }
}
