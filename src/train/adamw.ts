// AdamW as torch.optim.AdamW (decoupled weight decay), betas (0.9, 0.95), eps 1e-8 as GPT-2/llm.c; decay only on
// 2-D tensors (matmul weights and embeddings), never on biases or LayerNorm parameters. State m, v: one flat buffer each,
// for parameters [lo, hi) of the flat parameter buffer: all of them, or this rank's shard under ZeRO-1.

import type { Tensor } from "../kernels/backend.js";
import type { GPT2 } from "../model/gpt2.js";

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const ADAMW_DEFAULTS: AdamWConfig = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.0 };

export class AdamW {
  readonly m: Tensor;
  readonly v: Tensor;
  /** optimizer steps taken (bias correction uses t = step + 1) */
  step = 0;

  readonly lo: number;
  readonly hi: number;

  constructor(readonly model: GPT2, readonly cfg: AdamWConfig = ADAMW_DEFAULTS, shard?: { lo: number; hi: number }) {
    this.lo = shard?.lo ?? 0;
    this.hi = shard?.hi ?? model.layout.total;
    this.m = model.backend.alloc(this.hi - this.lo);
    this.v = model.backend.alloc(this.hi - this.lo);
  }

  /**
   * One update with learning rate lr from the model's current gradients (of parameters [lo, hi)), each multiplied by
   * gradScale first: gradient clipping's factor (clipFactor), applied inside the update as llm.c does, so that
   * clipping costs no pass of its own over the gradients (they are left as they were).
   */
  update(lr: number, gradScale = 1): void {
    const { model, cfg, lo, hi } = this;
    const be = model.backend;
    if (!model.grads) throw new Error("AdamW.update() needs gradients: run forwardBackward() first");
    const t = ++this.step;
    for (const spec of model.layout.tensors) {
      // the part of this tensor inside [lo, hi); decay is per tensor, so a shard boundary inside one changes nothing
      const a = Math.max(lo, spec.offset), b = Math.min(hi, spec.offset + spec.size);
      if (a >= b) continue;
      const v = (buf: Tensor, base: number) => be.view(buf, a - base, b - a);
      be.adamw(v(model.params, 0), v(model.grads, 0), v(this.m, lo), v(this.v, lo), b - a, lr, cfg.beta1, cfg.beta2, cfg.eps,
        spec.decay ? cfg.weightDecay : 0, t, gradScale);
    }
  }
}

/** the gradients clipping sees: this rank's shard [lo, hi) under ZeRO-1, else all of them */
function clippedGrads(model: GPT2, range?: { lo: number; hi: number }): { grads: Tensor; n: number } {
  if (!model.grads) throw new Error("no gradients to clip");
  const lo = range?.lo ?? 0, n = (range?.hi ?? model.layout.total) - lo;
  return { grads: lo === 0 && n === model.grads.length ? model.grads : model.backend.view(model.grads, lo, n), n };
}

/** the factor that brings gradients of norm `norm` down to maxNorm when they are above it (maxNorm > 0), else 1 */
export function clipFactor(norm: number, maxNorm: number): number {
  return maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
}

/**
 * The global L2 norm of the gradients, the sum of squares read back asynchronously (Backend.sumSquaresAsync). Under
 * ZeRO-1 a rank holds only gradients [lo, hi): `sumAcrossRanks` adds the other ranks' sums of squares. The loop
 * passes clipFactor(norm, maxNorm) to AdamW.update rather than scaling the gradients.
 */
export async function gradNormAsync(model: GPT2, range?: { lo: number; hi: number },
  sumAcrossRanks: (sumSquares: number) => number = (x) => x): Promise<number> {
  const { grads, n } = clippedGrads(model, range);
  return Math.sqrt(sumAcrossRanks(await model.backend.sumSquaresAsync(grads, n)));
}

/** gradNormAsync(), read synchronously */
export function gradNorm(model: GPT2, range?: { lo: number; hi: number }, sumAcrossRanks: (sumSquares: number) => number = (x) => x): number {
  const { grads, n } = clippedGrads(model, range);
  return Math.sqrt(sumAcrossRanks(model.backend.sumSquares(grads, n)));
}

/** scales the gradients in place by clipFactor(norm, maxNorm); returns the norm */
function clipTo(model: GPT2, range: { lo: number; hi: number } | undefined, norm: number, maxNorm: number): number {
  const s = clipFactor(norm, maxNorm);
  if (s !== 1) {
    const { grads, n } = clippedGrads(model, range);
    model.backend.scale(grads, n, s);
  }
  return norm;
}

/** clipGradNorm(), the sum of squares read back asynchronously */
export async function clipGradNormAsync(model: GPT2, maxNorm: number, range?: { lo: number; hi: number },
  sumAcrossRanks: (sumSquares: number) => number = (x) => x): Promise<number> {
  return clipTo(model, range, await gradNormAsync(model, range, sumAcrossRanks), maxNorm);
}

/**
 * Global L2 norm of the gradients; if it exceeds maxNorm (> 0) they are scaled down to it in place (torch
 * clip_grad_norm_). Under ZeRO-1 a rank holds only gradients [lo, hi): `sumAcrossRanks` adds the other ranks' sums of
 * squares.
 */
export function clipGradNorm(model: GPT2, maxNorm: number, range?: { lo: number; hi: number },
  sumAcrossRanks: (sumSquares: number) => number = (x) => x): number {
  return clipTo(model, range, gradNorm(model, range, sumAcrossRanks), maxNorm);
}
