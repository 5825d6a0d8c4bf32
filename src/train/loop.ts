// The training loop, as llm.c's train_gpt2 main(): set up (data, model, optimizer, resume), then for each step the
// periodic work (validation, HellaSwag, a sample, a checkpoint) and one optimizer step of gradient accumulation over
// micro-batches, clip, AdamW, with a step line per step. Everything a resumed run needs (weights, AdamW state, step,
// data position, RNG, LR factor) is in the checkpoint, so resume is exact. Pretraining and SFT differ only in their
// task (task.ts): the data they read and the tokens the loss counts.

import type { Batch, BatchSource } from "../data/source.js";
import { hellaswagFile, readHellaswag, type HellaExample } from "../eval/hellaswag.js";
import { removeStaleTemporaries } from "../io/files.js";
import type { Backend } from "../kernels/backend.js";
import { KVCache } from "../model/generate.js";
import type { GPT2 } from "../model/gpt2.js";
import { SingleComm, type Communicator } from "../parallel/comm.js";
import { DataParallel } from "../parallel/ddp.js";
import { Rng } from "../util/rng.js";
import { AdamW, ADAMW_DEFAULTS, clipFactor, gradNormAsync } from "./adamw.js";
import { BadWeights, RunCheckpoints, type CheckpointedRun, type RunState } from "./checkpoints.js";
import { accumulationSteps, TrainConfigError, type TrainConfig } from "./config.js";
import { stepFlops } from "./flops.js";
import { diagnoseNonFinite } from "./guard.js";
import { RunLog, type StepMetrics } from "./log.js";
import { OutlierDetector } from "./outliers.js";
import { hellaswagScore, samplesAt, sampleText, validatesAt, validation } from "./periodic.js";
import { latestCheckpoint } from "../io/rundir.js";
import { learningRate, type Schedule } from "./schedule.js";
import { describePlan, initModel, memoryPlan, openRun, sampleCacheLength } from "./setup.js";
import { REWARD_ROW } from "./preference.js";
import { headerLines, stepLine } from "./report.js";
import { languageModeling, metricMeans, metricNames, pretraining, type SamplePrompt, type TrainTask } from "./task.js";

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


export async function train(cfg: TrainConfig, backend: Backend, hooks: TrainHooks, comm: Communicator = new SingleComm(),
  task: TrainTask = pretraining()): Promise<TrainSummary> {
  const run = await Run.setUp(cfg, backend, hooks, comm, task);
  try {
    return await run.loop();
  } catch (e) {
    run.status("failed", (e as Error).message.split("\n")[0]);
    throw e;
  } finally {
    run.close();
  }
}

/** One training run: its set-up, its state, and the work of each step. */
class Run implements CheckpointedRun {
  private readonly lead: boolean;
  private readonly N: number;
  readonly print: (line: string) => void;
  private readonly ckpt: RunCheckpoints;
  private readonly accum: number;
  private readonly maxSteps: number;
  private readonly schedule: Schedule;
  private readonly lossDet = new OutlierDetector();
  private readonly normDet = new OutlierDetector();
  private readonly log: RunLog | null;
  private readonly cache: KVCache | null;
  private readonly prompt: SamplePrompt;
  private readonly overfitBatch: Batch | null;
  readonly held: Batch;
  private startStep = 0;
  private sampleRng: Rng;
  lrScale = 1;
  private lastTrain = NaN;
  private lastVal = NaN;
  private emaMs = 0;
  /** the last step reached (status.json) */
  private stepNow = 0;

  private constructor(
    readonly cfg: TrainConfig, private readonly backend: Backend, private readonly hooks: TrainHooks,
    readonly comm: Communicator, private readonly task: TrainTask,
    private readonly loader: BatchSource, private readonly val: BatchSource | null,
    readonly model: GPT2, private readonly fromScratch: boolean,
    readonly dp: DataParallel, readonly opt: AdamW, readonly lr0: number, private readonly warmup: number,
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
    this.cache = cfg.sampleEvery > 0 ? new KVCache(model, 1, sampleCacheLength(model.context, cfg, this.prompt.ids.length)) : null;
    this.overfitBatch = cfg.overfitSingleBatch ? loader.next() : null;
    // checkpoints are verified on a batch that never changes: the first validation batch, else the first training one
    this.held = (val ?? loader).heldBatch();
    this.ckpt = new RunCheckpoints(this);
  }

  /** what a checkpoint keeps of this run beside the weights and AdamW state */
  state(step: number): Omit<RunState, "verified" | "optimizer"> {
    return {
      step, optStep: this.opt.step, loader: this.loader.position, sampleRng: this.sampleRng.state, lrScale: this.lrScale,
      outliers: { loss: this.lossDet.state, norm: this.normDet.state }, config: this.cfg, task: this.task.kind,
      modelKind: this.task.modelKind ?? "language-model", ...(this.task.modelKind === "reward-model" ? { scoreRow: REWARD_ROW } : {}),
      ...(this.task.tokenizer?.spec ? { tokenizer: this.task.tokenizer.spec } : {}), context: this.model.context,
    };
  }

  apply(state: RunState, rollback: boolean): void {
    this.loader.position = state.loader;
    this.sampleRng = new Rng(state.sampleRng);
    if (!rollback) this.lrScale = state.lrScale; // a rollback keeps (and then lowers) this run's: reductions compound
    this.lossDet.state = state.outliers.loss;
    this.normDet.state = state.outliers.norm;
  }

  /** Everything before step 0: data, memory plan, model, optimizer, resume, the header lines. */
  static async setUp(cfg: TrainConfig, backend: Backend, hooks: TrainHooks, comm: Communicator, task: TrainTask): Promise<Run> {
    const lead = comm.rank === 0, N = comm.size;
    const print = lead ? hooks.print : () => {};
    const { loader, val, resumeFrom, B, T } = await openRun(cfg, backend, comm, task, print, hooks.availableBytes);

    // the model: from -e (a preset or a checkpoint); a resumed run's checkpoint is shape-checked against it
    const { model, fromScratch } = await initModel(cfg, backend, task.tokenizer);
    if (T > model.config.blockSize) throw new TrainConfigError(`-t ${T} exceeds the model's block size ${model.config.blockSize}`);
    // the positions these weights will have learned: -t from scratch; a model's own (or -t, if longer) when fine-tuned
    model.context = fromScratch ? T : Math.max(model.context, T);
    model.allocate(B, T);
    const adapted = await task.prepareModel(model, print);
    // fine-tuning defaults (nanoGPT's Shakespeare fine-tune): a small LR and a short warmup unless given
    const lr0 = cfg.lr > 0 ? cfg.lr : fromScratch ? 3e-4 : 3e-5;
    const warmup = cfg.warmup >= 0 ? cfg.warmup : fromScratch ? 0 : 10;
    model.zeroGrad();
    const dp = new DataParallel(model, comm, cfg.zero && N > 1 ? 1 : 0);
    const opt = new AdamW(model, { ...ADAMW_DEFAULTS, weightDecay: cfg.weightDecay }, dp.shard);
    if (cfg.hellaswag && task.tokenizer && task.tokenizer.kind !== "gpt2") throw new TrainConfigError("-h 1: HellaSwag needs GPT-2's tokenizer, and this data is character-level");
    const hellaswag = cfg.hellaswag && lead
      ? readHellaswag(await hellaswagFile(cfg.hellaswagData || undefined, (u) => print(`downloading ${u}`), "--hellaswag-data FILE"), cfg.hellaswagLimit)
      : null;
    const run = new Run(cfg, backend, hooks, comm, task, loader, val, model, fromScratch, dp, opt, lr0, warmup, hellaswag);

    if (lead && cfg.outDir) {
      const freed = removeStaleTemporaries(cfg.outDir);
      if (freed > 0) print(`removed ${(freed / 2 ** 20).toFixed(0)} MiB of temporary files left in ${cfg.outDir} by a run killed while writing`);
    }
    if (resumeFrom) {
      run.startStep = run.ckpt.restore(resumeFrom, false);
      print(`resumed from ${resumeFrom} at step ${run.startStep}`);
    } else {
      dp.broadcastParams(); // the same initial weights on every rank, whatever each one computed
    }
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
    const { cfg, model, backend, comm, N } = this;
    const rows = this.task.rowsPerBatch?.(cfg.batchSize, cfg) ?? cfg.batchSize;
    const plan = (zero: number) => describePlan(memoryPlan(model.config, { ...cfg, zero, batchSize: rows }, N, backend, this.prompt.ids.length));
    for (const line of headerLines({
      cfg, model: model.config, backend, comm, task: this.task, fromScratch: this.fromScratch, zero: this.dp.zero, accum: this.accum,
      maxSteps: this.maxSteps, lr0: this.lr0, warmup: this.warmup, data: this.loader.describe(), valData: this.val?.describe() ?? null, plan,
    }, adapted)) this.print(line);
  }

  /** status.json for the dashboard (rank 0, runs with -o) */
  status(state: "running" | "finished" | "stopped" | "failed", message?: string, step = this.stepNow): void {
    const eta = state === "running" && this.emaMs > 0 ? ((this.maxSteps - step) * this.emaMs) / 1000 : undefined;
    this.log?.status({ state, step, max_steps: this.maxSteps, ...(eta !== undefined ? { eta_s: eta } : {}), ...(message ? { message } : {}) });
  }

  emit(m: StepMetrics): void {
    if (!this.lead) return;
    this.log?.write(m);
    this.hooks.onMetrics?.(m);
  }

  close(): void {
    this.loader.close();
    this.val?.close();
  }

  // ---- the loop

  async loop(): Promise<TrainSummary> {
    const { cfg, hooks, maxSteps } = this;
    // rolling back needs a checkpoint to go back to
    if (cfg.onNan === "rollback" && cfg.outDir && this.startStep === 0 && !latestCheckpoint(cfg.outDir)) {
      this.comm.barrier(); // every rank has looked before rank 0 writes
      await this.ckpt.write(0);
    }
    let epoch = this.loader.epoch;
    const trainStart = performance.now();
    this.stepNow = this.startStep;
    this.status("running");
    for (let step = this.startStep; step <= maxSteps; step++) {
      const last = step === maxSteps;
      await this.periodic(step, last);
      if (cfg.outDir && step > this.startStep && step !== this.ckpt.rolledBackTo && (last || (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0))) {
        try {
          await this.ckpt.write(step);
        } catch (e) {
          if (!(e instanceof BadWeights)) throw e;
          step = (await this.ckpt.recover(step, e.what, await diagnoseNonFinite(this.model, [this.held]))) - 1;
          continue;
        }
      }
      if (last) break;

      const r = await this.trainStep(step);
      if ("failed" in r) {
        step = (await this.ckpt.recover(step + 1, r.failed, await diagnoseNonFinite(this.model, r.batches, r.scales))) - 1;
        continue;
      }
      this.report(step + 1, r, trainStart);
      if (this.loader.epoch !== epoch) {
        epoch = this.loader.epoch;
        const what = { pretraining: "shards and documents", sft: "rows", rm: "pairs", dpo: "pairs", rl: "prompts" }[this.task.kind];
        this.print(`epoch ${epoch + 1} begins${cfg.shuffle ? ` (${what} reshuffled)` : ""}`);
      }
      hooks.afterStep?.(step + 1);
      // let signal handlers (Ctrl-C, SIGTERM, SIGHUP) run between steps
      await new Promise((res) => setImmediate(res));
      // with several ranks only the decision every rank agreed on in the step's all-reduce counts: a signal that
      // reaches one rank after it (e.g. in the setImmediate above) would otherwise stop that rank alone, and the
      // others would wait in the next step's collective (MPI_ERR_TRUNCATE); it is agreed on at the next step
      if (this.N > 1 ? r.stopAgreed : hooks.signal?.stop) {
        this.print(`interrupted: writing a checkpoint at step ${step + 1}`);
        try {
          await this.ckpt.write(step + 1);
        } catch (e) {
          if (!(e instanceof BadWeights)) throw e;
          await this.ckpt.recover(step + 1, e.what, await diagnoseNonFinite(this.model, [this.held]), false);
        }
        this.status("stopped", `stopped by a signal at step ${step + 1}; -y 1 resumes it`);
        return { steps: step + 1, lastTrainLoss: this.lastTrain, lastValLoss: this.lastVal, checkpoint: this.ckpt.lastFile };
      }
    }
    this.status("finished", undefined, maxSteps);
    return { steps: maxSteps, lastTrainLoss: this.lastTrain, lastValLoss: this.lastVal, checkpoint: this.ckpt.lastFile };
  }

  /** validation, HellaSwag and a sample, on the steps that have them */
  private async periodic(step: number, last: boolean): Promise<void> {
    const { cfg, model, lead } = this;
    if (lead && this.val && validatesAt(cfg, step, last)) {
      const v = await validation(model, this.val, cfg.valBatches, this.task.objective);
      this.lastVal = v.loss;
      const formats = this.task.objective?.metrics ?? [];
      // an RL validation has no loss (greedy answers, scored): its metrics alone
      const parts = [...(Number.isFinite(v.loss) ? [`val loss ${v.loss.toFixed(6)}`] : []),
        ...formats.filter((m) => v.metrics[m.name] !== undefined).map((m) => `val ${m.format(v.metrics[m.name])}`)];
      this.print(`${parts.join(", ")} at step ${step}`);
      this.emit({ step, ...(Number.isFinite(v.loss) ? { val_loss: v.loss } : {}), ...Object.fromEntries(Object.entries(v.metrics).map(([k, x]) => [`val_${k}`, x])) });
    }
    if (this.hellaswag && validatesAt(cfg, step, last)) {
      const h = await hellaswagScore(model, this.hellaswag, cfg.batchSize);
      this.print(`HellaSwag acc_norm ${(100 * h.accNorm).toFixed(2)}% (${h.n} examples) at step ${step}`);
      this.emit({ step, hellaswag: h.accNorm });
    }
    if (lead && this.cache && samplesAt(cfg, step, this.startStep, last)) {
      const text = await sampleText(model, this.cache, this.sampleRng, this.prompt, cfg.genTokens, this.task.tokenizer);
      const label = this.prompt.label ? `${this.prompt.label}\n→ ` : "";
      this.print(`sample at step ${step}:\n---\n${label}${text}\n---`);
      this.emit({ step, sample: label + text });
    }
  }

  /**
   * One optimizer step: gradients accumulated over the micro-batches (the loss is the mean over every unit of the
   * step, across micro-batches and ranks: trained tokens, pairs, answers), reduced across ranks, clipped; AdamW
   * unless the step is skipped.
   */
  private async trainStep(step: number): Promise<StepResult | { failed: string; batches: Batch[]; scales: number[] }> {
    const { model, comm, dp, hooks, cfg, N } = this;
    const objective = this.task.objective ?? languageModeling;
    const t0 = performance.now();
    model.zeroGrad();
    const batches: Batch[] = [];
    for (let micro = 0; micro < this.accum; micro++) batches.push(this.overfitBatch ?? this.loader.next());
    const units = batches.map((b) => objective.units(b));
    const local = new Float64Array([units.reduce((a, b) => a + b, 0), batches.reduce((a, b) => a + b.B * b.T, 0)]);
    if (N > 1) comm.allReduceSum(local);
    const [total, tokens] = local;
    const spike = hooks.spikeStep === step + 1 ? 1e4 : 1;
    const scales = units.map((c) => (total > 0 ? (spike * c) / total : 0));
    let loss = 0;
    const sums: Record<string, number> = {};
    for (const [micro, b] of batches.entries()) {
      if (micro === batches.length - 1) dp.beforeLastBackward();
      // each micro-batch's gradient is scaled by its share of the step's units: their sum (over ranks too) is the mean
      const r = await objective.forwardBackward(model, b, scales[micro]);
      if (units[micro] > 0) loss += (r.loss * units[micro]) / total;
      for (const [k, x] of Object.entries(r.metrics ?? {})) sums[k] = (sums[k] ?? 0) + x;
    }
    dp.reduceGradients();
    // the loss and metrics summed over ranks, and whether any rank was asked to stop (signals reach ranks at
    // different moments)
    const names = metricNames(objective);
    const agreed = new Float64Array([loss, hooks.signal?.stop ? 1 : 0, ...names.map((k) => sums[k] ?? 0)]);
    comm.allReduceSum(agreed);
    loss = total > 0 ? agreed[0] : NaN;
    // not copied into hooks.signal.stop: a rank whose own signal arrives later would take it for a second one and
    // quit at once
    const stopAgreed = agreed[1] > 0;
    const metrics = metricMeans(objective, Object.fromEntries(names.map((k, i) => [k, agreed[2 + i]])), total);
    const norm = await gradNormAsync(model, dp.shard, (sq) => dp.sumOverShards(sq));
    const lr = learningRate(this.schedule, step) * this.lrScale;
    if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
      // never let a non-finite value reach AdamW or a checkpoint
      return { failed: !Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${norm}`, batches, scales: scales.map((s) => s / spike) };
    }
    const zLoss = this.lossDet.update(loss), zNorm = this.normDet.update(norm);
    let skipped = hooks.skipStep === step + 1;
    const lossLimit = cfg.skipLossZ || cfg.skipUpdateZ, normLimit = cfg.skipNormZ || cfg.skipUpdateZ;
    if ((lossLimit > 0 && zLoss > lossLimit) || (normLimit > 0 && zNorm > normLimit)) {
      skipped = true;
      const limit = lossLimit === normLimit ? `limit ${lossLimit}` : `limits ${lossLimit || "-"}/${normLimit || "-"}`;
      this.print(`step ${step + 1}: skipping the update, loss z ${zLoss.toFixed(1)}, norm z ${zNorm.toFixed(1)} (${limit})`);
    }
    if (!skipped) {
      this.opt.update(lr, clipFactor(norm, cfg.gradClip)); // clipping inside the update
      dp.gatherParams();
    }
    return { loss, norm, lr, zLoss, zNorm, skipped, ms: performance.now() - t0, tokens, trained: total, metrics, stopAgreed };
  }

  /** the step line and the step's metrics record */
  private report(step: number, r: StepResult, trainStart: number): void {
    const { N, maxSteps } = this;
    const commMs = this.comm.takeWaitSeconds() * 1000;
    this.lastTrain = r.loss;
    this.emaMs = step === this.startStep + 1 ? r.ms : 0.9 * this.emaMs + 0.1 * r.ms;
    const tps = (r.tokens * 1000) / r.ms;
    // MFU against all ranks' peak (each rank knows its own); the lm_head counts only where there are targets. The
    // preference and RL objectives run extra passes: their FLOPs are not counted (n/a)
    const lm = !this.task.objective;
    const mfu = lm ? stepFlops(this.model.config, this.cfg.seqLen, r.tokens, r.trained) / (r.ms / 1000) / 1e9 / ((this.hooks.peakGflops ?? NaN) * N) : NaN;
    const eta = ((maxSteps - step) * this.emaMs) / 1000;
    this.stepNow = step;
    this.status("running");
    const sft = this.task.kind === "sft";
    const metrics = (this.task.objective?.metrics ?? []).map((m) => ` | ${m.format(r.metrics[m.name])}`).join("");
    this.print(stepLine({ step, maxSteps, loss: r.loss, lr: r.lr, norm: r.norm, zLoss: r.zLoss, zNorm: r.zNorm, ms: r.ms, tokensPerS: tps,
      mfu, etaS: eta, metrics, trained: sft ? r.trained : null, ranks: N, commMs }));
    this.emit({ step, train_loss: r.loss, ...r.metrics, lr: r.lr, norm: r.norm, z_loss: Number.isFinite(r.zLoss) ? r.zLoss : null, z_norm: Number.isFinite(r.zNorm) ? r.zNorm : null,
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
  /** units the loss counted, all ranks (targets for language modelling) */
  trained: number;
  /** the objective's metrics, means over the step's units */
  metrics: Record<string, number>;
  /** whether any rank had been asked to stop when the step's all-reduce ran */
  stopAgreed: boolean;
}
