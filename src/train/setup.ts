// A run's set-up, before the first step: the model -e names, the memory plan checked before anything big is
// allocated, and the check that every rank was launched with the same flags.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { BatchSource } from "../data/source.js";
import { latestCheckpoint } from "../io/rundir.js";
import { makeDir } from "../util/fs.js";
import { loadModel, modelTokenizer } from "../io/load.js";
import { gpt2Tokenizer, type Tokenizer } from "../tokenizer/tokenizer.js";
import type { Backend } from "../kernels/backend.js";
import { makeConfig, PRESETS, type GPT2Config } from "../model/config.js";
import { CLASSIFIER_CHUNK, GPT2 } from "../model/gpt2.js";
import { paramLayout } from "../model/layout.js";
import type { Communicator } from "../parallel/comm.js";
import { Rng } from "../util/rng.js";
import { accumulationSteps, TrainConfigError, type TrainConfig } from "./config.js";
import type { TrainTask } from "./task.js";

/** An error every rank raised at the same point (so one of them reporting it is enough). */
export class AllRanksError extends Error {
  override name = "AllRanksError";
  constructor(readonly inner: Error) { super(inner.message); }
}

/** Free memory as the kernel reports it (MemAvailable), falling back to os.freemem(). */
export function availableMemory(): number {
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync("/proc/meminfo", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch { /* not Linux */ }
  return os.freemem();
}

/** The shape -e names when it is a preset (null for a checkpoint: its shape is known once it is read). */
export function presetShape(cfg: TrainConfig, vocabSize?: number): GPT2Config | null {
  if (!PRESETS[cfg.init]) return null;
  return makeConfig(cfg.init, { nLayer: cfg.nLayer || undefined, nHead: cfg.nHead || undefined, nEmbd: cfg.nEmbd || undefined, blockSize: Math.max(1024, cfg.seqLen), vocabSize });
}

/** Builds the model named by -e: a preset from scratch, or weights from a checkpoint file/dir. */
export async function initModel(cfg: TrainConfig, backend: Backend, tokenizer: Tokenizer = gpt2Tokenizer): Promise<{ model: GPT2; fromScratch: boolean }> {
  const shape = presetShape(cfg, tokenizer.vocabSize);
  if (shape) {
    const model = new GPT2(shape, backend, cfg.recompute);
    model.initWeights(new Rng(cfg.seed));
    return { model, fromScratch: true };
  }
  if (cfg.nLayer || cfg.nHead || cfg.nEmbd) throw new TrainConfigError("--n-layer/--n-head/--n-embd only apply to a preset given with -e");
  const has = modelTokenizer(cfg.init);
  if (JSON.stringify(has.spec) !== JSON.stringify(tokenizer.spec)) {
    const name = (t: Tokenizer) => (t.kind === "gpt2" ? "GPT-2's BPE" : `a ${t.vocabSize - 1}-character vocabulary`);
    throw new TrainConfigError(`${cfg.init} was trained with ${name(has)}, but the data is tokenized with ${name(tokenizer)}`);
  }
  const model = await loadModel(cfg.init, backend);
  model.recompute = cfg.recompute;
  return { model, fromScratch: false };
}

/** The run's memory plan in bytes per rank, computed before anything big is allocated (ZeRO-1 shards AdamW). */
export function memoryPlan(config: GPT2Config, cfg: TrainConfig, ranks = 1, on: Pick<Backend, "classifierRows" | "activationDtype" | "activationGradDtype"> = {},
  samplePromptLength = 1): { params: number; grads: number; adamw: number; activations: number; kvcache: number; total: number } {
  const n = paramLayout(config).total;
  const adamw = cfg.zero && ranks > 1 ? Math.ceil(n / ranks) * 8 : n * 8;
  const acts = GPT2.activationBytes(config, cfg.batchSize, cfg.seqLen, cfg.recompute, on.classifierRows ?? CLASSIFIER_CHUNK, on.activationDtype,
    on.activationGradDtype);
  const kv = cfg.sampleEvery > 0 ? 2 * config.nLayer * sampleCacheLength(Math.min(config.blockSize, cfg.seqLen), cfg, samplePromptLength) * config.nEmbd * 4 * 2 : 0;
  const plan = { params: n * 4, grads: n * 4, adamw, activations: acts, kvcache: kv, total: 0 };
  plan.total = plan.params + plan.grads + plan.adamw + plan.activations + plan.kvcache;
  return plan;
}

/** the periodic sample's KV cache: prompt and generated tokens, within the context the model is trained for */
export function sampleCacheLength(context: number, cfg: TrainConfig, promptLength: number): number {
  return Math.min(context, promptLength + cfg.genTokens);
}

export function describePlan(p: ReturnType<typeof memoryPlan>): string {
  const m = (b: number) => `${(b / 2 ** 20).toFixed(b < 10 * 2 ** 20 ? 1 : 0)} MiB`;
  return `params ${m(p.params)} + grads ${m(p.grads)} + AdamW ${m(p.adamw)} + activations ${m(p.activations)}` +
    `${p.kvcache ? ` + KV cache ${m(p.kvcache)}` : ""} = ${m(p.total)}`;
}

/**
 * Every rank must run the same flags (threads aside) and resume from the same checkpoint: checked with one
 * all-reduce of a hash per rank before anything else, so a mismatch is one clear error instead of a hang or a
 * silently diverging run.
 */
export function checkRanksAgree(comm: Communicator, cfg: TrainConfig, resumeFrom: string | null): void {
  if (comm.size === 1) return;
  const text = JSON.stringify({ ...cfg, threads: 0, resumeFrom });
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  const all = new Float64Array(comm.size);
  all[comm.rank] = h;
  comm.allReduceSum(all);
  const odd = [...all].map((x, r) => (x === all[0] ? -1 : r)).filter((r) => r >= 0);
  if (odd.length) {
    throw new AllRanksError(new TrainConfigError(`ranks disagree on the training flags or the checkpoint to resume: rank(s) ${odd.join(", ")} ` +
      `differ from rank 0; launch every rank with the same flags and the same -o directory`));
  }
}


/**
 * A run's set-up before its model exists: the run folder, the checkpoint to resume from, the data (a missing or
 * malformed file fails before any big allocation), and the memory plan checked against what is free. B is the rows
 * of a micro-batch: -b, or 2B for preference pairs (a chosen and a rejected answer each).
 */
export async function openRun(cfg: TrainConfig, backend: Backend, comm: Communicator, task: TrainTask, print: (line: string) => void,
  availableBytes?: number): Promise<{ loader: BatchSource; val: BatchSource | null; resumeFrom: string | null; B: number; T: number }> {
  const N = comm.size;
  const B = task.rowsPerBatch?.(cfg.batchSize, cfg) ?? cfg.batchSize, T = cfg.seqLen;
  accumulationSteps(cfg, N); // a -d that does not divide fails before anything else
  if (cfg.resume && !cfg.outDir) throw new TrainConfigError("-y 1 needs -o DIR, where the checkpoints are");
  if (cfg.outDir) makeDir(cfg.outDir);
  const resumeFrom = cfg.resume ? latestCheckpoint(cfg.outDir) : null;
  checkRanksAgree(comm, cfg, resumeFrom);
  const earlier = !cfg.resume && cfg.outDir ? latestCheckpoint(cfg.outDir) : null;
  if (earlier) {
    // its checkpoints stay beside this run's, and "the newest" (-y 1, --model DIR) is the one of the higher step
    print(`note: ${cfg.outDir} holds an earlier run's checkpoints (up to ${path.basename(earlier)}); this run starts at step 0 ` +
      `and writes beside them (-y 1 resumes instead; a new -o keeps runs apart)`);
  }
  const { train: loader, val } = task.open(cfg, comm.rank, N);
  await task.init?.();

  const shape = presetShape(cfg, task.tokenizer?.vocabSize);
  if (shape) {
    const plan = memoryPlan(shape, { ...cfg, batchSize: B }, N, backend, task.samplePrompt().ids.length);
    const avail = availableBytes ?? backend.freeBytes?.() ?? availableMemory();
    if (plan.total > avail) {
      throw new TrainConfigError(`the run needs ${describePlan(plan)}, but only ${(avail / 2 ** 20).toFixed(0)} MiB are free; ` +
        `lower -b, use -r 1 or 2, or a smaller model`);
    }
  }
  return { loader, val, resumeFrom, B, T };
}
