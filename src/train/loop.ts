// The training loop, as llm.c's train_gpt2 main(): set up (data, model, optimizer, resume), then for each step the
// periodic work (validation, HellaSwag, a sample, a checkpoint) and one optimizer step of gradient accumulation over
// micro-batches, clip, AdamW, with a step line per step. Everything a resumed run needs (weights, AdamW state, step,
// data position, RNG, LR factor) is in the checkpoint, so resume is exact. Pretraining and SFT differ only in their
// task (task.ts): the data they read and the tokens the loss counts.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { countTargets, type Batch, type BatchPosition, type BatchSource } from "../data/source.js";
import { hellaswagFile, readHellaswag, type HellaExample } from "../eval/hellaswag.js";
import { readCheckpointHeader, readOptimizerRange, restoreCheckpoint, saveCheckpoint, saveOptimizerShard,
  type OptimizerSource } from "../io/checkpoint.js";
import { FormatError, removeStaleTemporaries } from "../io/files.js";
import { loadModel } from "../io/load.js";
import type { Backend } from "../kernels/backend.js";
import { describeConfig, makeConfig, PRESETS, sameShape, type GPT2Config } from "../model/config.js";
import { KVCache } from "../model/generate.js";
import { CLASSIFIER_CHUNK, GPT2 } from "../model/gpt2.js";
import { countParams, paramLayout } from "../model/layout.js";
import { shardRange, SingleComm, type Communicator } from "../parallel/comm.js";
import { DataParallel } from "../parallel/ddp.js";
import { makeDir } from "../util/fs.js";
import { Rng, type RngState } from "../util/rng.js";
import { AdamW, ADAMW_DEFAULTS, clipGradNorm } from "./adamw.js";
import { accumulationSteps, TrainConfigError, type TrainConfig } from "./config.js";
import { stepFlops } from "./flops.js";
import { diagnoseNonFinite, NonFiniteError, paramsFinite } from "./guard.js";
import { RunLog, type StepMetrics } from "./log.js";
import { OutlierDetector } from "./outliers.js";
import { hellaswagScore, samplesAt, sampleText, validatesAt, validationLoss } from "./periodic.js";
import { checkpointPath, latestCheckpoint, listCheckpoints, optimizerShardPath, pruneCheckpoints } from "./rundir.js";
import { learningRate, type Schedule } from "./schedule.js";
import { pretraining, type SamplePrompt, type TrainTask } from "./task.js";

export interface TrainHooks {
  /** human-readable lines (step lines, samples, notices) */
  print: (line: string) => void;
  /** every metrics record as it is logged (the dashboard listens here) */
  onMetrics?: (m: StepMetrics) => void;
  /** set .stop = true (e.g. on Ctrl-C or SIGTERM) to write a checkpoint and end after the current step */
  signal?: { stop: boolean };
  /** this process's peak GFLOP/s for the run's dtype (CPU: measured FMA peak; GPU: the card's), for MFU (NaN: unknown) */
  peakGflops?: number;
  /** test hook: called after each optimizer step with the step number */
  afterStep?: (step: number) => void;
  /** test hooks: multiply the loss gradient of this step by 1e4 (a spike); skip this step's update unconditionally */
  spikeStep?: number;
  skipStep?: number;
  /** bytes that may be allocated (default: the system's available memory); a run needing more is refused */
  availableBytes?: number;
}

export interface TrainSummary {
  steps: number;
  lastTrainLoss: number;
  lastValLoss: number;
  checkpoint: string | null;
}

/** What a checkpoint holds besides the weights and AdamW state. */
interface RunState {
  step: number;
  /** AdamW updates taken (fewer than steps when updates were skipped) */
  optStep: number;
  loader: BatchPosition;
  sampleRng: RngState;
  /** LR multiplier after NaN rollbacks (they compound) */
  lrScale: number;
  outliers: { loss: OutlierDetector["state"]; norm: OutlierDetector["state"] };
  config: TrainConfig;
  /** what was trained: pretraining or sft */
  task?: string;
  /** the loss these weights give on the held batch, checked finite before the file was written */
  verified?: { loss: number };
  /** where the AdamW state is: in this file (absent), or in ZeRO-1 shard files beside it */
  optimizer?: { ranks: number; shards: { file: string; lo: number; hi: number }[] };
}

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

/** NaN rollbacks allowed in one run before it stops anyway */
const MAX_ROLLBACKS = 10;
/** failures from the same checkpoint (each at a lower LR) before a rollback goes one checkpoint further back */
const RETRIES_PER_CHECKPOINT = 2;

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** The shape -e names when it is a preset (null for a checkpoint: its shape is known once it is read). */
function presetShape(cfg: TrainConfig): GPT2Config | null {
  if (!PRESETS[cfg.init]) return null;
  return makeConfig(cfg.init, { nLayer: cfg.nLayer || undefined, nHead: cfg.nHead || undefined, nEmbd: cfg.nEmbd || undefined, blockSize: Math.max(1024, cfg.seqLen) });
}

/** Builds the model named by -e: a preset from scratch, or weights from a checkpoint file/dir. */
export function initModel(cfg: TrainConfig, backend: Backend): { model: GPT2; fromScratch: boolean } {
  const shape = presetShape(cfg);
  if (shape) {
    const model = new GPT2(shape, backend, cfg.recompute);
    model.initWeights(new Rng(cfg.seed));
    return { model, fromScratch: true };
  }
  if (cfg.nLayer || cfg.nHead || cfg.nEmbd) throw new TrainConfigError("--n-layer/--n-head/--n-embd only apply to a preset given with -e");
  const model = loadModel(cfg.init, backend);
  model.recompute = cfg.recompute;
  return { model, fromScratch: false };
}

/** The run's memory plan in bytes per rank, computed before anything big is allocated (ZeRO-1 shards AdamW). */
export function memoryPlan(config: GPT2Config, cfg: TrainConfig, ranks = 1, classifierRows = CLASSIFIER_CHUNK, samplePromptLength = 1): { params: number; grads: number; adamw: number; activations: number; kvcache: number; total: number } {
  const n = paramLayout(config).total;
  const adamw = cfg.zero && ranks > 1 ? Math.ceil(n / ranks) * 8 : n * 8;
  const acts = GPT2.activationFloats(config, cfg.batchSize, cfg.seqLen, cfg.recompute, classifierRows) * 4;
  const kv = cfg.sampleEvery > 0 ? 2 * config.nLayer * sampleCacheLength(config, cfg, samplePromptLength) * config.nEmbd * 4 * 2 : 0;
  const plan = { params: n * 4, grads: n * 4, adamw, activations: acts, kvcache: kv, total: 0 };
  plan.total = plan.params + plan.grads + plan.adamw + plan.activations + plan.kvcache;
  return plan;
}

function sampleCacheLength(config: GPT2Config, cfg: TrainConfig, promptLength: number): number {
  return Math.min(config.blockSize, promptLength + cfg.genTokens);
}

function describePlan(p: ReturnType<typeof memoryPlan>): string {
  const m = (b: number) => `${(b / 2 ** 20).toFixed(b < 10 * 2 ** 20 ? 1 : 0)} MiB`;
  return `params ${m(p.params)} + grads ${m(p.grads)} + AdamW ${m(p.adamw)} + activations ${m(p.activations)}` +
    `${p.kvcache ? ` + KV cache ${m(p.kvcache)}` : ""} = ${m(p.total)}`;
}

/**
 * Every rank must run the same flags (threads aside) and resume from the same checkpoint: checked with one
 * all-reduce of a hash per rank before anything else, so a mismatch is one clear error instead of a hang or a
 * silently diverging run.
 */
function checkRanksAgree(comm: Communicator, cfg: TrainConfig, resumeFrom: string | null): void {
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

/** The weights at a checkpoint step are not good: not finite, or the held batch's loss is not. */
class BadWeights extends Error {
  constructor(readonly what: string) { super(what); }
}

export async function train(cfg: TrainConfig, backend: Backend, hooks: TrainHooks, comm: Communicator = new SingleComm(),
  task: TrainTask = pretraining()): Promise<TrainSummary> {
  const run = await Run.setUp(cfg, backend, hooks, comm, task);
  try {
    return await run.loop();
  } finally {
    run.close();
  }
}

/** One training run: its set-up, its state, and the work of each step. */
class Run {
  private readonly lead: boolean;
  private readonly N: number;
  private readonly print: (line: string) => void;
  private readonly accum: number;
  private readonly maxSteps: number;
  private readonly schedule: Schedule;
  private readonly lossDet = new OutlierDetector();
  private readonly normDet = new OutlierDetector();
  private readonly log: RunLog | null;
  private readonly cache: KVCache | null;
  private readonly prompt: SamplePrompt;
  private readonly overfitBatch: Batch | null;
  private readonly held: Batch;
  private startStep = 0;
  private sampleRng: Rng;
  private lrScale = 1;
  private lastTrain = NaN;
  private lastVal = NaN;
  private lastCkpt: string | null = null;
  private emaMs = 0;
  // rollback bookkeeping: how many, the last target and how often it failed, the step a rollback went back to
  private rollbacks = 0;
  private rollbackTarget = -1;
  private failuresFromTarget = 0;
  private rollbackFloor = Infinity;
  private rolledBackTo = -1;

  private constructor(
    private readonly cfg: TrainConfig, private readonly backend: Backend, private readonly hooks: TrainHooks,
    private readonly comm: Communicator, private readonly task: TrainTask,
    private readonly loader: BatchSource, private readonly val: BatchSource | null,
    private readonly model: GPT2, private readonly fromScratch: boolean,
    private readonly dp: DataParallel, private readonly opt: AdamW, private readonly lr0: number, private readonly warmup: number,
    private readonly hellaswag: HellaExample[] | null,
  ) {
    this.lead = comm.rank === 0;
    this.N = comm.size;
    this.print = this.lead ? hooks.print : () => {};
    this.accum = accumulationSteps(cfg, this.N);
    this.maxSteps = cfg.maxSteps > 0 ? cfg.maxSteps : Math.max(1, Math.floor(loader.batchesPerEpoch / this.accum));
    this.schedule = { kind: cfg.schedule, maxLr: lr0, warmup, totalSteps: this.maxSteps, finalFraction: cfg.finalLrFrac };
    this.sampleRng = new Rng(cfg.seed + 1);
    this.log = cfg.outDir && this.lead ? new RunLog(cfg.outDir) : null;
    this.prompt = task.samplePrompt();
    this.cache = cfg.sampleEvery > 0 ? new KVCache(model, 1, sampleCacheLength(model.config, cfg, this.prompt.ids.length)) : null;
    this.overfitBatch = cfg.overfitSingleBatch ? loader.next() : null;
    // checkpoints are verified on a batch that never changes: the first validation batch, else the first training one
    this.held = (val ?? loader).heldBatch();
  }

  /** Everything before step 0: data, memory plan, model, optimizer, resume, the header lines. */
  static async setUp(cfg: TrainConfig, backend: Backend, hooks: TrainHooks, comm: Communicator, task: TrainTask): Promise<Run> {
    const lead = comm.rank === 0, N = comm.size;
    const print = lead ? hooks.print : () => {};
    const B = cfg.batchSize, T = cfg.seqLen;
    accumulationSteps(cfg, N); // a -d that does not divide fails before anything else
    if (cfg.resume && !cfg.outDir) throw new TrainConfigError("-y 1 needs -o DIR, where the checkpoints are");
    if (cfg.outDir) makeDir(cfg.outDir);
    const resumeFrom = cfg.resume ? latestCheckpoint(cfg.outDir) : null;
    checkRanksAgree(comm, cfg, resumeFrom);
    // open the data first: a missing or malformed file fails before any big allocation
    const { train: loader, val } = task.open(cfg, comm.rank, N);

    // the memory plan, checked against free memory before the model exists
    const shape = presetShape(cfg);
    if (shape) {
      const plan = memoryPlan(shape, cfg, N, backend.classifierRows, task.samplePrompt().ids.length);
      const avail = hooks.availableBytes ?? backend.freeBytes?.() ?? availableMemory();
      if (plan.total > avail) {
        throw new TrainConfigError(`the run needs ${describePlan(plan)}, but only ${(avail / 2 ** 20).toFixed(0)} MiB are free; ` +
          `lower -b, use -r 1 or 2, or a smaller model`);
      }
    }

    // the model: from -e (a preset or a checkpoint); a resumed run's checkpoint is shape-checked against it
    const { model, fromScratch } = initModel(cfg, backend);
    const adapted = task.prepareModel(model);
    if (T > model.config.blockSize) throw new TrainConfigError(`-t ${T} exceeds the model's block size ${model.config.blockSize}`);
    // fine-tuning defaults (nanoGPT's Shakespeare fine-tune): a small LR and a short warmup unless given
    const lr0 = cfg.lr > 0 ? cfg.lr : fromScratch ? 3e-4 : 3e-5;
    const warmup = cfg.warmup >= 0 ? cfg.warmup : fromScratch ? 0 : 10;
    model.zeroGrad();
    const dp = new DataParallel(model, comm, cfg.zero && N > 1 ? 1 : 0);
    const opt = new AdamW(model, { ...ADAMW_DEFAULTS, weightDecay: cfg.weightDecay }, dp.shard);
    const hellaswag = cfg.hellaswag && lead
      ? readHellaswag(await hellaswagFile(cfg.hellaswagData || undefined, (u) => print(`downloading ${u}`), "--hellaswag-data FILE"), cfg.hellaswagLimit)
      : null;
    const run = new Run(cfg, backend, hooks, comm, task, loader, val, model, fromScratch, dp, opt, lr0, warmup, hellaswag);

    if (lead && cfg.outDir) {
      const freed = removeStaleTemporaries(cfg.outDir);
      if (freed > 0) print(`removed ${(freed / 2 ** 20).toFixed(0)} MiB of temporary files left in ${cfg.outDir} by a run killed while writing`);
    }
    if (resumeFrom) {
      run.startStep = run.restore(resumeFrom, false);
      print(`resumed from ${resumeFrom} at step ${run.startStep}`);
    } else {
      dp.broadcastParams(); // the same initial weights on every rank, whatever each one computed
    }
    model.allocate(B, T);
    run.printHeader(adapted);
    if (run.log) {
      if (resumeFrom) run.log.resumeAt(run.startStep, (m) => run.redoneAtStart(m));
      else run.log.writeConfig({ ...cfg, task: task.kind, model: model.config });
    }
    return run;
  }

  /** a log record at the resumed step that this run writes again (its validation, HellaSwag or sample) */
  private redoneAtStart(m: StepMetrics): boolean {
    const last = this.startStep === this.maxSteps;
    if (m.val_loss !== undefined || m.hellaswag !== undefined) return validatesAt(this.cfg, m.step, last);
    if (m.sample !== undefined) return samplesAt(this.cfg, m.step, this.startStep, last);
    return false;
  }

  private printHeader(adapted: string | null): void {
    const { cfg, model, backend, comm, N, print } = this;
    const plan = (zero: number) => describePlan(memoryPlan(model.config, { ...cfg, zero }, N, backend.classifierRows, this.prompt.ids.length));
    print(`model: ${describeConfig(model.config)}, ${(countParams(model.config) / 1e6).toFixed(2)}M parameters ` +
      `(${this.fromScratch ? `from scratch, preset ${cfg.init}` : `from ${cfg.init}`})`);
    if (adapted) print(adapted);
    print(`backend: ${backend.name}, ${backend.device ?? `${backend.threads} threads`}, dtype ${cfg.dtype}, recompute ${cfg.recompute}`);
    if (N > 1 || comm.kind !== "single") {
      print(`data parallel: ${comm.description}; ZeRO-${this.dp.zero}${this.dp.zero ? " (AdamW state sharded)" : " (every rank holds all AdamW state)"}; ` +
        `memory per rank with -z 0: ${plan(0)}; with -z 1: ${plan(1)}`);
    }
    print(`memory${N > 1 ? " per rank" : ""}${backend.device ? " on the device" : ""}: ${plan(cfg.zero)}, allocated once before step 0`);
    const sft = this.task.kind === "sft";
    print(`batch: B=${cfg.batchSize} T=${cfg.seqLen}${sft ? " (at most: a batch is as long as its longest row)" : ""}${N > 1 ? ` x ${N} ranks` : ""}, ` +
      `${sft ? `${cfg.batchSize * this.accum * N} rows` : `total ${cfg.batchSize * cfg.seqLen * this.accum * N} tokens`} per step = ` +
      `${this.accum} accumulation step${this.accum > 1 ? "s" : ""}; ${this.loader.describe()}; ${this.maxSteps} steps`);
    if (this.val && sft) print(`validation: ${this.val.describe()}`);
    print(`optimizer: AdamW lr ${this.lr0} (${cfg.schedule}, warmup ${this.warmup}, final x${cfg.finalLrFrac}), wd ${cfg.weightDecay}, clip ${cfg.gradClip}` +
      `${cfg.lr > 0 && cfg.warmup >= 0 ? "" : this.fromScratch ? "" : " (fine-tuning defaults)"}; data ${cfg.shuffle ? "shuffled every epoch" : "in order"}`);
  }

  private emit(m: StepMetrics): void {
    if (!this.lead) return;
    this.log?.write(m);
    this.hooks.onMetrics?.(m);
  }

  close(): void {
    this.loader.close();
    this.val?.close();
  }

  // ---- checkpoints

  /**
   * Restores what a checkpoint holds; returns its step. A rollback keeps this run's LR factor (reductions
   * compound across rollbacks); a resume takes the checkpoint's.
   */
  private restore(file: string, rollback: boolean): number {
    const { model, opt, dp, backend, N } = this;
    const h = readCheckpointHeader(file);
    if (!sameShape(h.config, model.config)) {
      throw new TrainConfigError(`${file}: checkpoint model (${describeConfig(h.config)}) does not match -e ${this.cfg.init} (${describeConfig(model.config)})`);
    }
    const state = h.state as unknown as RunState;
    restoreCheckpoint(file, model);
    // AdamW state: from this file, or from the ZeRO-1 shards it names, re-sharded for this run's ranks if need be
    const sources: OptimizerSource[] = state.optimizer
      ? state.optimizer.shards.map((s) => ({ ...s, file: path.join(path.dirname(file), s.file) }))
      : [{ file, lo: 0, hi: model.layout.total }];
    readOptimizerRange(sources, opt.lo, opt.hi, backend, { m: opt.m, v: opt.v });
    const savedRanks = state.optimizer?.ranks ?? 1, savedZero = state.optimizer ? 1 : 0;
    if (!rollback && (savedZero !== dp.zero || (dp.zero && savedRanks !== N))) {
      this.print(`optimizer state was saved ${savedZero ? `as ZeRO-1 shards over ${savedRanks} ranks` : "whole"}; ` +
        `read back ${dp.zero ? `as ZeRO-1 shards over ${N} ranks` : "whole"}`);
    }
    opt.step = state.optStep;
    this.loader.position = state.loader;
    this.sampleRng = new Rng(state.sampleRng);
    if (!rollback) this.lrScale = state.lrScale;
    this.lossDet.state = state.outliers.loss;
    this.normDet.state = state.outliers.norm;
    return state.step;
  }

  /** The loss the current weights give on the held batch (the same number on every rank). */
  private heldLoss(): number {
    const b = this.held;
    const x = new Float64Array([this.model.forward(b.inputs, b.targets, b.B, b.T)]);
    this.comm.allReduceSum(x);
    return x[0] / this.N;
  }

  /**
   * Writes the checkpoint of `step` on every rank's behalf (under ZeRO-1 each rank writes its optimizer shard, then
   * rank 0 the checkpoint that names them, so a checkpoint file only exists once all it needs is on disk). The
   * weights are checked first: finite, and giving a finite loss on the held batch; otherwise nothing is written and
   * BadWeights is thrown.
   */
  private writeCheckpoint(step: number): void {
    const { cfg, model, comm, lead, N, dp, opt } = this;
    if (!cfg.outDir) return;
    if (!paramsFinite(model)) throw new BadWeights(`the parameters after step ${step} are not finite`);
    const loss = this.heldLoss();
    if (!Number.isFinite(loss)) throw new BadWeights(`the weights after step ${step} give a loss of ${loss} on the held batch`);
    const file = checkpointPath(cfg.outDir, step);
    const state: RunState = {
      step, optStep: opt.step, loader: this.loader.position, sampleRng: this.sampleRng.state, lrScale: this.lrScale,
      outliers: { loss: this.lossDet.state, norm: this.normDet.state }, config: cfg, task: this.task.kind, verified: { loss },
    };
    if (dp.zero) {
      saveOptimizerShard(optimizerShardPath(cfg.outDir, step, comm.rank, N), model, opt.lo, opt.hi, { m: opt.m, v: opt.v });
      comm.barrier();
      state.optimizer = { ranks: N, shards: Array.from({ length: N }, (_, r) => {
        const { lo, hi } = shardRange(model.layout.total, N, r);
        return { file: path.basename(optimizerShardPath(cfg.outDir, step, r, N)), lo, hi };
      }) };
      if (lead) saveCheckpoint(file, model, state as unknown as Record<string, unknown>);
    } else if (lead) {
      saveCheckpoint(file, model, state as unknown as Record<string, unknown>, { m: opt.m, v: opt.v });
    }
    this.lastCkpt = file;
    if (lead) pruneCheckpoints(cfg.outDir, cfg.keep, [step]);
    comm.barrier(); // nobody reads a checkpoint directory rank 0 is still changing
    this.print(`checkpoint: ${file}`);
    // a checkpoint newer than the last rollback target: the run has moved past the trouble
    if (step > this.rollbackTarget) { this.rollbackFloor = Infinity; this.failuresFromTarget = 0; }
  }

  /**
   * The newest checkpoint below `below` whose weights load (checksums hold) and give a finite loss on the held batch.
   * The model's weights are left as the last one checked.
   */
  private findGoodCheckpoint(below = Infinity): { file: string; step: number } | null {
    for (const c of listCheckpoints(this.cfg.outDir).filter((c) => c.step < below).reverse()) {
      try {
        restoreCheckpoint(c.file, this.model);
      } catch (e) {
        if (!(e instanceof FormatError)) throw e;
        this.print(`${c.file} cannot be used: ${e.message}`);
        continue;
      }
      if (Number.isFinite(this.heldLoss())) return c;
      this.print(`${c.file}: its weights give a non-finite loss on the held batch; looking further back`);
    }
    return null;
  }

  /**
   * A step went non-finite (`what`, first seen at `where`). With --on-nan rollback: back to the newest good
   * checkpoint (one further back after repeated failures from it) with the LR lowered again; returns the step to
   * continue from. Otherwise, or when rolling back is no longer possible, stops with one line naming the last
   * good checkpoint.
   */
  private recover(failedStep: number, what: string, where: string, canRollBack = true): number {
    const { cfg } = this;
    const fmtLr = () => `x${this.lrScale.toPrecision(3)} of -l, ${(this.lr0 * this.lrScale).toExponential(2)}`;
    if (cfg.onNan === "rollback" && canRollBack && cfg.outDir && this.rollbacks < MAX_ROLLBACKS) {
      if (this.failuresFromTarget >= RETRIES_PER_CHECKPOINT) this.rollbackFloor = this.rollbackTarget;
      // nothing further back: the same checkpoint once more, at the lower LR
      const target = this.findGoodCheckpoint(this.rollbackFloor) ?? this.findGoodCheckpoint();
      if (target) {
        const back = this.restore(target.file, true);
        this.lrScale *= cfg.rollbackLrFactor;
        this.rollbacks++;
        this.failuresFromTarget = back === this.rollbackTarget ? this.failuresFromTarget + 1 : 1;
        this.rollbackTarget = back;
        this.rolledBackTo = back;
        this.print(`step ${failedStep}: ${what} (first non-finite: ${where}); rolled back to ${target.file} (step ${back}), LR ${fmtLr()}`);
        this.emit({ step: failedStep, event: `rollback to step ${back}: ${what}` });
        return back;
      }
    }
    const good = cfg.outDir ? this.findGoodCheckpoint() : null;
    const advice = cfg.onNan === "rollback"
      ? `; stopped after ${this.rollbacks} rollback${this.rollbacks === 1 ? "" : "s"} (LR ${fmtLr()}); lower -l or --rollback-lr-factor`
      : "; lower the LR (-l) or use --on-nan rollback";
    throw new AllRanksError(new NonFiniteError(`step ${failedStep}: ${what}; first non-finite value: ${where}; ` +
      `${good ? `last good checkpoint ${good.file} kept` : cfg.outDir ? "no good checkpoint to go back to" : "no checkpoint written (-o DIR -n N writes some)"}${advice}`));
  }

  // ---- the loop

  async loop(): Promise<TrainSummary> {
    const { cfg, hooks, maxSteps } = this;
    // rolling back needs a checkpoint to go back to
    if (cfg.onNan === "rollback" && cfg.outDir && this.startStep === 0 && !latestCheckpoint(cfg.outDir)) {
      this.comm.barrier(); // every rank has looked before rank 0 writes
      this.writeCheckpoint(0);
    }
    let epoch = this.loader.epoch;
    const trainStart = performance.now();
    for (let step = this.startStep; step <= maxSteps; step++) {
      const last = step === maxSteps;
      this.periodic(step, last);
      if (cfg.outDir && step > this.startStep && step !== this.rolledBackTo && (last || (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0))) {
        try {
          this.writeCheckpoint(step);
        } catch (e) {
          if (!(e instanceof BadWeights)) throw e;
          step = this.recover(step, e.what, diagnoseNonFinite(this.model, [this.held])) - 1;
          continue;
        }
      }
      if (last) break;

      const r = this.trainStep(step);
      if ("failed" in r) {
        step = this.recover(step + 1, r.failed, diagnoseNonFinite(this.model, r.batches, r.scales)) - 1;
        continue;
      }
      this.report(step + 1, r, trainStart);
      if (this.loader.epoch !== epoch) {
        epoch = this.loader.epoch;
        this.print(`epoch ${epoch + 1} begins${cfg.shuffle ? ` (${this.task.kind === "sft" ? "rows" : "shards and documents"} reshuffled)` : ""}`);
      }
      hooks.afterStep?.(step + 1);
      // let signal handlers (Ctrl-C, SIGTERM, SIGHUP) run between steps
      await new Promise((res) => setImmediate(res));
      if (hooks.signal?.stop) {
        this.print(`interrupted: writing a checkpoint at step ${step + 1}`);
        try {
          this.writeCheckpoint(step + 1);
        } catch (e) {
          if (!(e instanceof BadWeights)) throw e;
          this.recover(step + 1, e.what, diagnoseNonFinite(this.model, [this.held]), false);
        }
        return { steps: step + 1, lastTrainLoss: this.lastTrain, lastValLoss: this.lastVal, checkpoint: this.lastCkpt };
      }
    }
    return { steps: maxSteps, lastTrainLoss: this.lastTrain, lastValLoss: this.lastVal, checkpoint: this.lastCkpt };
  }

  /** validation, HellaSwag and a sample, on the steps that have them */
  private periodic(step: number, last: boolean): void {
    const { cfg, model, lead } = this;
    if (lead && this.val && validatesAt(cfg, step, last)) {
      this.lastVal = validationLoss(model, this.val, cfg.valBatches);
      this.print(`val loss ${this.lastVal.toFixed(6)} at step ${step}`);
      this.emit({ step, val_loss: this.lastVal });
    }
    if (this.hellaswag && validatesAt(cfg, step, last)) {
      const h = hellaswagScore(model, this.hellaswag, cfg.batchSize);
      this.print(`HellaSwag acc_norm ${(100 * h.accNorm).toFixed(2)}% (${h.n} examples) at step ${step}`);
      this.emit({ step, hellaswag: h.accNorm });
    }
    if (lead && this.cache && samplesAt(cfg, step, this.startStep, last)) {
      const text = sampleText(model, this.cache, this.sampleRng, this.prompt, cfg.genTokens);
      const label = this.prompt.label ? `${this.prompt.label}\n→ ` : "";
      this.print(`sample at step ${step}:\n---\n${label}${text}\n---`);
      this.emit({ step, sample: label + text });
    }
  }

  /**
   * One optimizer step: gradients accumulated over the micro-batches (the loss is the mean over every counted target
   * of the step, across micro-batches and ranks), reduced across ranks, clipped; AdamW unless the step is skipped.
   */
  private trainStep(step: number): StepResult | { failed: string; batches: Batch[]; scales: number[] } {
    const { model, comm, dp, hooks, cfg, N } = this;
    const t0 = performance.now();
    model.zeroGrad();
    const batches: Batch[] = [];
    for (let micro = 0; micro < this.accum; micro++) batches.push(this.overfitBatch ?? this.loader.next());
    const counts = batches.map(countTargets);
    const local = new Float64Array([counts.reduce((a, b) => a + b, 0), batches.reduce((a, b) => a + b.B * b.T, 0)]);
    if (N > 1) comm.allReduceSum(local);
    const [total, tokens] = local;
    const spike = hooks.spikeStep === step + 1 ? 1e4 : 1;
    const scales = counts.map((c) => (total > 0 ? (spike * c) / total : 0));
    let loss = 0;
    for (const [micro, b] of batches.entries()) {
      if (micro === batches.length - 1) dp.beforeLastBackward();
      // each micro-batch's gradient is scaled by its share of the step's targets: their sum (over ranks too) is the mean
      const l = model.forwardBackward(b.inputs, b.targets, b.B, b.T, scales[micro]);
      if (counts[micro] > 0) loss += (l * counts[micro]) / total;
    }
    dp.reduceGradients();
    // the loss summed over ranks, and whether any rank was asked to stop (signals reach ranks at different moments)
    const agreed = new Float64Array([loss, hooks.signal?.stop ? 1 : 0]);
    comm.allReduceSum(agreed);
    loss = total > 0 ? agreed[0] : NaN;
    if (hooks.signal && agreed[1] > 0) hooks.signal.stop = true;
    const norm = clipGradNorm(model, cfg.gradClip, dp.shard, (sq) => dp.sumOverShards(sq));
    const lr = learningRate(this.schedule, step) * this.lrScale;
    if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
      // never let a non-finite value reach AdamW or a checkpoint
      return { failed: !Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${norm}`, batches, scales: scales.map((s) => s / spike) };
    }
    const zLoss = this.lossDet.update(loss), zNorm = this.normDet.update(norm);
    let skipped = hooks.skipStep === step + 1;
    if (cfg.skipUpdateZ > 0 && (zLoss > cfg.skipUpdateZ || zNorm > cfg.skipUpdateZ)) {
      skipped = true;
      this.print(`step ${step + 1}: skipping the update, loss z ${zLoss.toFixed(1)}, norm z ${zNorm.toFixed(1)} (limit ${cfg.skipUpdateZ})`);
    }
    if (!skipped) {
      this.opt.update(lr);
      dp.gatherParams();
    }
    return { loss, norm, lr, zLoss, zNorm, skipped, ms: performance.now() - t0, tokens, trained: total };
  }

  /** the step line and the step's metrics record */
  private report(step: number, r: StepResult, trainStart: number): void {
    const { N, maxSteps } = this;
    const commMs = this.comm.takeWaitSeconds() * 1000;
    this.lastTrain = r.loss;
    this.emaMs = step === this.startStep + 1 ? r.ms : 0.9 * this.emaMs + 0.1 * r.ms;
    const tps = (r.tokens * 1000) / r.ms;
    // MFU against all ranks' peak (each rank knows its own); the lm_head counts only where there are targets
    const mfu = stepFlops(this.model.config, this.cfg.seqLen, r.tokens, r.trained) / (r.ms / 1000) / 1e9 / ((this.hooks.peakGflops ?? NaN) * N);
    const eta = ((maxSteps - step) * this.emaMs) / 1000;
    const z = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
    const sft = this.task.kind === "sft";
    this.print(`step ${String(step).padStart(String(maxSteps).length)}/${maxSteps} | loss ${r.loss.toFixed(6)} | lr ${r.lr.toExponential(2)} | ` +
      `norm ${r.norm.toFixed(4)} | z ${z(r.zLoss)}/${z(r.zNorm)} | ${r.ms.toFixed(0)} ms | ${tps.toFixed(0)} tok/s${sft ? ` (${r.trained} trained)` : ""} | ` +
      `MFU ${Number.isFinite(mfu) ? (100 * mfu).toFixed(1) + "%" : "n/a"}${N > 1 ? ` | comm wait ${commMs.toFixed(0)} ms` : ""} | ETA ${fmtTime(eta)}`);
    this.emit({ step, train_loss: r.loss, lr: r.lr, norm: r.norm, z_loss: Number.isFinite(r.zLoss) ? r.zLoss : null, z_norm: Number.isFinite(r.zNorm) ? r.zNorm : null,
      skipped: r.skipped, ms: r.ms, ...(N > 1 ? { comm_wait_ms: commMs } : {}), tokens_per_s: tps, mfu: Number.isFinite(mfu) ? mfu : null,
      ...(sft ? { trained_tokens: r.trained } : {}), epoch: this.loader.epoch, elapsed_s: (performance.now() - trainStart) / 1000 });
  }
}

interface StepResult {
  loss: number;
  norm: number;
  lr: number;
  zLoss: number;
  zNorm: number;
  skipped: boolean;
  ms: number;
  /** positions processed by all ranks (padding included) */
  tokens: number;
  /** targets the loss counted, all ranks */
  trained: number;
}
