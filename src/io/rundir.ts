// A run directory's checkpoint files: checkpoint_STEP.gpt2ts (weights, run state, and AdamW state unless ZeRO-1),
// and under ZeRO-1 one optimizer shard per rank beside it, checkpoint_STEP.zero1-rankR-of-N.gpt2ts.

import * as fs from "node:fs";
import * as path from "node:path";

const CKPT_RE = /^checkpoint_(\d{8})\.gpt2ts$/;
const SHARD_RE = /^checkpoint_(\d{8})\.zero1-rank\d+-of-\d+\.gpt2ts$/;

export function checkpointPath(outDir: string, step: number): string {
  return path.join(outDir, `checkpoint_${String(step).padStart(8, "0")}.gpt2ts`);
}

/** A ZeRO-1 rank's optimizer shard of the checkpoint at `step`. */
export function optimizerShardPath(outDir: string, step: number, rank: number, ranks: number): string {
  return path.join(outDir, `checkpoint_${String(step).padStart(8, "0")}.zero1-rank${rank}-of-${ranks}.gpt2ts`);
}

/** Checkpoints in a run directory, oldest first, with their steps. */
export function listCheckpoints(outDir: string): { file: string; step: number }[] {
  if (!outDir || !fs.existsSync(outDir)) return [];
  return fs.readdirSync(outDir).filter((f) => CKPT_RE.test(f)).sort()
    .map((f) => ({ file: path.join(outDir, f), step: Number(CKPT_RE.exec(f)![1]) }));
}

/** The newest checkpoint in a run directory, or null. */
export function latestCheckpoint(outDir: string): string | null {
  return listCheckpoints(outDir).at(-1)?.file ?? null;
}

/**
 * Keeps the newest `keep` checkpoints, the steps in `protect` (the one just written) and the major ones (multiples of
 * majorEvery), with their optimizer shards; removes the rest.
 */
export function pruneCheckpoints(outDir: string, keep: number, protect: number[], majorEvery = 0): void {
  const steps = listCheckpoints(outDir).map((c) => c.step);
  // major checkpoints (llm.c's -nm) are never pruned
  const majors = majorEvery > 0 ? steps.filter((s) => s % majorEvery === 0) : [];
  const kept = new Set([...steps.slice(Math.max(0, steps.length - keep)), ...protect, ...majors]);
  for (const f of fs.readdirSync(outDir)) {
    const m = CKPT_RE.exec(f) ?? SHARD_RE.exec(f);
    if (m && !kept.has(Number(m[1]))) fs.rmSync(path.join(outDir, f));
  }
}
