// What the training loop reads batches from: token shards for pretraining (loader.ts), rendered conversations for
// supervised fine-tuning (sft.ts). Targets of -1 are positions the loss does not count (padding, prompts).

export interface Batch {
  inputs: Int32Array; // (B, T)
  targets: Int32Array; // (B, T); -1 = not trained on
  B: number;
  /** this batch's sequence length: at most the source's T (SFT batches are as long as their longest row) */
  T: number;
}

export interface BatchSource {
  /** rows per batch and the longest sequence length a batch may have */
  readonly B: number;
  readonly T: number;
  next(): Batch;
  /** where the next batch comes from (saved in checkpoints, restored on resume: the same batches follow) */
  position: BatchPosition;
  /** passes over the data completed */
  readonly epoch: number;
  /** batches one pass over the data gives all ranks together */
  readonly batchesPerEpoch: number;
  /** back to the first batch (evaluations see the same data every time) */
  reset(): void;
  /** a fixed batch, the first of the data, for checking a checkpoint's weights; the position does not move */
  heldBatch(): Batch;
  /** one line for the run's header, e.g. "1,003,854 train tokens in 1 shard(s)" */
  describe(): string;
  close(): void;
}

/** A source's position: plain JSON numbers, with the epoch among them */
export interface BatchPosition { epoch: number }

/** Positions counted by the loss (targets >= 0). */
export function countTargets(b: Batch): number {
  let n = 0;
  for (let i = 0; i < b.B * b.T; i++) if (b.targets[i] >= 0) n++;
  return n;
}
