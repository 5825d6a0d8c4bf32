// Mean next-token cross-entropy of a model over token sequences (every position of every sequence counts once).

import { countTargets, type BatchSource } from "../data/source.js";
import type { GPT2 } from "../model/gpt2.js";

export interface LossResult {
  loss: number;
  /** predicted positions counted */
  tokens: number;
}

/**
 * Sequences longer than the block size are scored in windows of blockSize + 1 tokens that overlap by one, so each
 * position is predicted exactly once.
 */
export async function sequenceLoss(model: GPT2, seqs: ArrayLike<number>[], onProgress?: (done: number) => void): Promise<LossResult> {
  const maxT = model.context;
  let longest = 1;
  for (const s of seqs) longest = Math.max(longest, Math.min(s.length - 1, maxT));
  model.allocate(1, longest);
  let sum = 0, count = 0;
  for (const [i, seq] of seqs.entries()) {
    for (let start = 0; start + 1 < seq.length; start += maxT) {
      const T = Math.min(maxT, seq.length - 1 - start);
      const inputs = new Int32Array(T), targets = new Int32Array(T);
      for (let t = 0; t < T; t++) { inputs[t] = seq[start + t]; targets[t] = seq[start + t + 1]; }
      const loss = await model.forwardAsync(inputs, targets, 1, T);
      sum += loss * T;
      count += T;
    }
    onProgress?.(i + 1);
  }
  if (count === 0) throw new RangeError("no sequence holds two or more tokens: nothing to score");
  return { loss: sum / count, tokens: count };
}

/**
 * Mean loss per counted target over the first `batches` batches of a source (reset first, so every evaluation sees
 * the same data). Shard batches count every position; SFT batches count the assistant tokens.
 */
export async function datasetLoss(model: GPT2, source: BatchSource, batches: number, onProgress?: (done: number, total: number) => void): Promise<number> {
  source.reset();
  const n = Math.min(batches, Math.max(1, source.batchesPerEpoch));
  let sum = 0, count = 0;
  for (let i = 0; i < n; i++) {
    const b = source.next();
    const k = countTargets(b);
    if (k === 0) continue;
    sum += (await model.forwardAsync(b.inputs, b.targets, b.B, b.T)) * k;
    count += k;
    onProgress?.(i + 1, n);
  }
  return count ? sum / count : NaN;
}
