// The NaN/Inf guard's diagnosis: re-runs a failed step with finite checks after every kernel and reports the first
// parameter, activation or gradient that is non-finite. Only runs on a step that already failed, so normal steps pay
// nothing.

import type { Batch } from "../data/loader.js";
import type { GPT2 } from "../model/gpt2.js";

export class NonFiniteError extends Error {
  override name = "NonFiniteError";
}

/** True when every value of params is finite. */
export function paramsFinite(model: GPT2): boolean {
  return Number.isFinite(model.backend.sumSquares(model.params, model.layout.total));
}

export function diagnoseNonFinite(model: GPT2, batches: Batch[], B: number, T: number): string {
  const be = model.backend, L = model.config.nLayer;
  const firstBad = (buf: typeof model.params, kind: string): string | null => {
    for (const spec of model.layout.tensors) {
      const perLayer = spec.shape.length > 1 && spec.shape[0] === L && spec.name !== "wte" && spec.name !== "wpe" ? spec.size / L : 0;
      if (perLayer) {
        for (let l = 0; l < L; l++) {
          if (!Number.isFinite(be.sumSquares(be.view(buf, spec.offset + l * perLayer, perLayer), perLayer))) return `${kind} ${spec.name} of layer ${l}`;
        }
      } else if (!Number.isFinite(be.sumSquares(be.view(buf, spec.offset, spec.size), spec.size))) return `${kind} ${spec.name}`;
    }
    return null;
  };
  const p = firstBad(model.params, "parameter");
  if (p) return p;
  let found: string | null = null;
  model.debugCheck = (where, t, n) => { if (!found && !Number.isFinite(be.sumSquares(t, n))) found = where; };
  try {
    model.zeroGrad();
    for (const b of batches) {
      const loss = model.forwardBackward(b.inputs, b.targets, B, T, 1 / batches.length);
      if (!found && !Number.isFinite(loss)) found = "the loss (cross-entropy of finite logits)";
      if (found) break;
    }
  } finally {
    model.debugCheck = undefined;
  }
  if (found) return found;
  return firstBad(model.grads!, "gradient of") ?? "nothing on a re-run (the failure did not repeat)";
}
