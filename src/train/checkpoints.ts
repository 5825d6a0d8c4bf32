// A run's checkpoints: written only from weights that pass a check (finite, and a finite loss on a held batch),
// restored for resume and rollback (AdamW state re-sharded for the run's ranks), and what a run does when a step goes
// non-finite: roll back to the newest good checkpoint with a lower LR (reductions compound), or stop with one line
// naming the last good checkpoint.

import * as path from "node:path";
import type { Batch, BatchPosition } from "../data/source.js";
import { readCheckpointHeader, readOptimizerRange, restoreCheckpoint, saveCheckpoint, saveOptimizerShard,
  type OptimizerSource } from "../io/checkpoint.js";
import { FormatError } from "../io/files.js";
import { describeConfig, sameShape } from "../model/config.js";
import type { GPT2 } from "../model/gpt2.js";
import { shardRange, type Communicator } from "../parallel/comm.js";
import type { DataParallel } from "../parallel/ddp.js";
import type { RngState } from "../util/rng.js";
import type { AdamW } from "./adamw.js";
import { TrainConfigError, type TrainConfig } from "./config.js";
import { NonFiniteError, paramsFinite } from "./guard.js";
import type { StepMetrics } from "./log.js";
import type { OutlierDetector } from "./outliers.js";
import { checkpointPath, listCheckpoints, optimizerShardPath, pruneCheckpoints } from "../io/rundir.js";
import { AllRanksError } from "./setup.js";
import type { CharTokenizerSpec } from "../tokenizer/tokenizer.js";

/** What a checkpoint holds besides the weights and AdamW state. */
export interface RunState {
  step: number;
  /** AdamW updates taken (fewer than steps when updates were skipped) */
  optStep: number;
  loader: BatchPosition;
  sampleRng: RngState;
  /** LR multiplier after NaN rollbacks (they compound) */
  lrScale: number;
  outliers: { loss: OutlierDetector["state"]; norm: OutlierDetector["state"] };
  config: TrainConfig;
  /** what was trained: pretraining, sft, rm, dpo, rl */
  task?: string;
  /** what the weights are: a language model, or a reward model whose score is the logit of wte row scoreRow */
  modelKind?: "language-model" | "reward-model";
  scoreRow?: number;
  /** the positions the weights were trained for (GPT2.context) */
  context?: number;
  /** a character-level vocabulary (absent: GPT-2's BPE) */
  tokenizer?: CharTokenizerSpec;
  /** the loss these weights give on the held batch, checked finite before the file was written */
  verified?: { loss: number };
  /** where the AdamW state is: in this file (absent), or in ZeRO-1 shard files beside it */
  optimizer?: { ranks: number; shards: { file: string; lo: number; hi: number }[] };
}

/** NaN rollbacks allowed in one run before it stops anyway */
const MAX_ROLLBACKS = 10;
/** failures from the same checkpoint (each at a lower LR) before a rollback goes one checkpoint further back */
const RETRIES_PER_CHECKPOINT = 2;

/** The weights at a checkpoint step are not good: not finite, or the held batch's loss is not. */
export class BadWeights extends Error {
  constructor(readonly what: string) { super(what); }
}

/** The run whose checkpoints these are: what it saves beside the weights, and how it takes that back. */
export interface CheckpointedRun {
  readonly cfg: TrainConfig;
  readonly model: GPT2;
  readonly opt: AdamW;
  readonly dp: DataParallel;
  readonly comm: Communicator;
  /** a batch that never changes, for checking weights */
  readonly held: Batch;
  /** the LR before rollbacks (-l or the automatic one), for messages */
  readonly lr0: number;
  /** the LR factor: each rollback lowers it */
  lrScale: number;
  print(line: string): void;
  emit(m: StepMetrics): void;
  /** the run's state at `step` (the checkpoint adds the verification and the optimizer's files) */
  state(step: number): Omit<RunState, "verified" | "optimizer">;
  /** takes back what `state` gave (a rollback keeps the run's LR factor) */
  apply(state: RunState, rollback: boolean): void;
}

export class RunCheckpoints {
  /** the newest checkpoint this run wrote */
  lastFile: string | null = null;
  /** the step the last rollback went back to (its checkpoint is not written again) */
  rolledBackTo = -1;
  // rollback bookkeeping: how many, the last target and how often it failed, and below which step to look
  private rollbacks = 0;
  private target = -1;
  private failuresFromTarget = 0;
  private floor = Infinity;

  constructor(private readonly run: CheckpointedRun) {}

  /**
   * Restores what a checkpoint holds; returns its step. A rollback keeps this run's LR factor (reductions
   * compound across rollbacks); a resume takes the checkpoint's.
   */
  restore(file: string, rollback: boolean): number {
    const { model, opt, dp, comm, cfg } = this.run, N = comm.size;
    const h = readCheckpointHeader(file);
    if (!sameShape(h.config, model.config)) {
      throw new TrainConfigError(`${file}: checkpoint model (${describeConfig(h.config)}) does not match -e ${cfg.init} (${describeConfig(model.config)})`);
    }
    const state = h.state as unknown as RunState;
    const kind = this.run.state(0).task;
    if (!rollback && state.task && state.task !== kind) {
      throw new TrainConfigError(`${file} was written by a ${state.task} run; resume it with the same command (this one is ${kind})`);
    }
    restoreCheckpoint(file, model);
    // AdamW state: from this file, or from the ZeRO-1 shards it names, re-sharded for this run's ranks if need be
    const sources: OptimizerSource[] = state.optimizer
      ? state.optimizer.shards.map((s) => ({ ...s, file: path.join(path.dirname(file), s.file) }))
      : [{ file, lo: 0, hi: model.layout.total }];
    readOptimizerRange(sources, opt.lo, opt.hi, model.backend, { m: opt.m, v: opt.v });
    const savedRanks = state.optimizer?.ranks ?? 1, savedZero = state.optimizer ? 1 : 0;
    if (!rollback && (savedZero !== dp.zero || (dp.zero && savedRanks !== N))) {
      this.run.print(`optimizer state was saved ${savedZero ? `as ZeRO-1 shards over ${savedRanks} ranks` : "whole"}; ` +
        `read back ${dp.zero ? `as ZeRO-1 shards over ${N} ranks` : "whole"}`);
    }
    opt.step = state.optStep;
    this.run.apply(state, rollback);
    return state.step;
  }

  /** The loss the current weights give on the held batch (the same number on every rank). */
  async heldLoss(): Promise<number> {
    const { held: b, model, comm } = this.run;
    const x = new Float64Array([await model.forwardAsync(b.inputs, b.targets, b.B, b.T)]);
    comm.allReduceSum(x);
    return x[0] / comm.size;
  }

  /**
   * Writes the checkpoint of `step` on every rank's behalf (under ZeRO-1 each rank writes its optimizer shard, then
   * rank 0 the checkpoint that names them, so a checkpoint file only exists once all it needs is on disk). The
   * weights are checked first: finite, and giving a finite loss on the held batch; otherwise nothing is written and
   * BadWeights is thrown.
   */
  async write(step: number): Promise<void> {
    const { cfg, model, comm, dp, opt } = this.run, N = comm.size, lead = comm.rank === 0;
    if (!cfg.outDir) return;
    if (!(await paramsFinite(model))) throw new BadWeights(`the parameters after step ${step} are not finite`);
    const loss = await this.heldLoss();
    if (!Number.isFinite(loss)) throw new BadWeights(`the weights after step ${step} give a loss of ${loss} on the held batch`);
    const file = checkpointPath(cfg.outDir, step);
    const state: RunState = { ...this.run.state(step), verified: { loss } };
    if (dp.zero) {
      await saveOptimizerShard(optimizerShardPath(cfg.outDir, step, comm.rank, N), model, opt.lo, opt.hi, { m: opt.m, v: opt.v });
      comm.barrier();
      state.optimizer = { ranks: N, shards: Array.from({ length: N }, (_, r) => {
        const { lo, hi } = shardRange(model.layout.total, N, r);
        return { file: path.basename(optimizerShardPath(cfg.outDir, step, r, N)), lo, hi };
      }) };
      if (lead) await saveCheckpoint(file, model, state as unknown as Record<string, unknown>);
    } else if (lead) {
      await saveCheckpoint(file, model, state as unknown as Record<string, unknown>, { m: opt.m, v: opt.v });
    }
    this.lastFile = file;
    if (lead) pruneCheckpoints(cfg.outDir, cfg.keep, [step], cfg.majorEvery);
    comm.barrier(); // nobody reads a checkpoint directory rank 0 is still changing
    this.run.print(`checkpoint: ${file}`);
    // a checkpoint newer than the last rollback target: the run has moved past the trouble
    if (step > this.target) { this.floor = Infinity; this.failuresFromTarget = 0; }
  }

  /**
   * The newest checkpoint below `below` whose weights load (checksums hold) and give a finite loss on the held batch.
   * The model's weights are left as the last one checked.
   */
  async findGood(below = Infinity): Promise<{ file: string; step: number } | null> {
    for (const c of listCheckpoints(this.run.cfg.outDir).filter((c) => c.step < below).reverse()) {
      try {
        restoreCheckpoint(c.file, this.run.model);
      } catch (e) {
        if (!(e instanceof FormatError)) throw e;
        this.run.print(`${c.file} cannot be used: ${e.message}`);
        continue;
      }
      if (Number.isFinite(await this.heldLoss())) return c;
      this.run.print(`${c.file}: its weights give a non-finite loss on the held batch; looking further back`);
    }
    return null;
  }

  /**
   * A step went non-finite (`what`, first seen at `where`). With --on-nan rollback: back to the newest good
   * checkpoint (one further back after repeated failures from it) with the LR lowered again; returns the step to
   * continue from. Otherwise, or when rolling back is no longer possible, stops with one line naming the last
   * good checkpoint.
   */
  async recover(failedStep: number, what: string, where: string, canRollBack = true): Promise<number> {
    const { cfg, run } = { cfg: this.run.cfg, run: this.run };
    const fmtLr = () => `x${run.lrScale.toPrecision(3)} of -l, ${(run.lr0 * run.lrScale).toExponential(2)}`;
    if (cfg.onNan === "rollback" && canRollBack && cfg.outDir && this.rollbacks < MAX_ROLLBACKS) {
      if (this.failuresFromTarget >= RETRIES_PER_CHECKPOINT) this.floor = this.target;
      // nothing further back: the same checkpoint once more, at the lower LR
      const target = (await this.findGood(this.floor)) ?? (await this.findGood());
      if (target) {
        const back = this.restore(target.file, true);
        run.lrScale *= cfg.rollbackLrFactor;
        this.rollbacks++;
        this.failuresFromTarget = back === this.target ? this.failuresFromTarget + 1 : 1;
        this.target = back;
        this.rolledBackTo = back;
        run.print(`step ${failedStep}: ${what} (first non-finite: ${where}); rolled back to ${target.file} (step ${back}), LR ${fmtLr()}`);
        run.emit({ step: failedStep, event: `rollback to step ${back}: ${what}` });
        return back;
      }
    }
    const good = cfg.outDir ? await this.findGood() : null;
    const advice = cfg.onNan === "rollback"
      ? `; stopped after ${this.rollbacks} rollback${this.rollbacks === 1 ? "" : "s"} (LR ${fmtLr()}); lower -l or --rollback-lr-factor`
      : "; lower the LR (-l) or use --on-nan rollback";
    throw new AllRanksError(new NonFiniteError(`step ${failedStep}: ${what}; first non-finite value: ${where}; ` +
      `${good ? `last good checkpoint ${good.file} kept` : cfg.outDir ? "no good checkpoint to go back to" : "no checkpoint written (-o DIR -n N writes some)"}${advice}`));
  }
}
