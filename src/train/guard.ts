// The NaN/Inf guard's diagnosis: re-runs a failed step with finite checks after every kernel and reports the first
// parameter, activation or gradient that is non-finite. Only runs on a step that already failed, so normal steps pay
// nothing.

import type { Batch } from "../data/source.js";
import type { GPT2 } from "../model/gpt2.js";

export class NonFiniteError extends Error {
  override name = "NonFiniteError";
}

/** True when every value of params is finite. */
export async function paramsFinite(model: GPT2): Promise<boolean> {
  return Number.isFinite(await model.backend.sumSquaresAsync(model.params, model.layout.total));
}

/**
 * The first non-finite parameter, or the first kernel output (forward, then backward) or gradient that is non-finite
 * when the step's batches run again. `lossScales` are the step's per-batch loss scales.
 */
export async function diagnoseNonFinite(model: GPT2, batches: Batch[], lossScales: number[] = batches.map(() => 1 / batches.length)): Promise<string> {
  const be = model.backend;
  const p = await model.firstNonFinite(model.params);
  if (p) return `parameter ${p}`;
  let found: string | null = null, checked = true;
  // each kernel's output is checked as it is made, which needs synchronous reads: a backend without them (WebGPU)
  // skips to the loss and the gradients
  model.debugCheck = (where, t, n) => {
    if (found || !checked) return;
    try { if (!Number.isFinite(be.sumSquares(t, n))) found = where; } catch { checked = false; }
  };
  try {
    model.zeroGrad();
    for (const [i, b] of batches.entries()) {
      const loss = await model.forwardBackwardAsync(b.inputs, b.targets, b.B, b.T, lossScales[i]);
      if (!found && !Number.isFinite(loss)) found = "the loss (cross-entropy of finite logits)";
      if (found) break;
    }
  } finally {
    model.debugCheck = undefined;
  }
  if (found) return found;
  const g = await model.firstNonFinite(model.grads!);
  return g ? `gradient of ${g}` : "nothing on a re-run (the failure did not repeat)";
}
