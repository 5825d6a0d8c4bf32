// The training loop, as llm.c's train_gpt2 main(): validate, sample, checkpoint, then one optimizer step of
// gradient accumulation over micro-batches, clip, AdamW; a step line per step. Everything a resumed run needs
// (weights, AdamW state, step, loader position, RNG) is in the checkpoint, so resume is exact.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DataLoader, type LoaderPosition } from "../data/loader.js";
import { shardRange, SingleComm, type Communicator } from "../parallel/comm.js";
import { DataParallel } from "../parallel/ddp.js";
import { evaluateHellaswag, hellaswagFile, readHellaswag } from "../eval/hellaswag.js";
import { datasetLoss } from "../eval/loss.js";
import { readCheckpointHeader, readOptimizerRange, restoreCheckpoint, saveCheckpoint, saveOptimizerShard,
  type OptimizerSource } from "../io/checkpoint.js";
import { loadModel } from "../io/load.js";
import type { Backend } from "../kernels/backend.js";
import { describeConfig, EOT, makeConfig, PRESETS, sameShape, type GPT2Config } from "../model/config.js";
import { generate, KVCache } from "../model/generate.js";
import { CLASSIFIER_CHUNK, GPT2 } from "../model/gpt2.js";
import { countParams, paramLayout } from "../model/layout.js";
import { decode } from "../tokenizer/bpe.js";
import { Rng, type RngState } from "../util/rng.js";
import { AdamW, ADAMW_DEFAULTS, clipGradNorm } from "./adamw.js";
import { accumulationSteps, TrainConfigError, type TrainConfig } from "./config.js";
import { flopsPerToken } from "./flops.js";
import { diagnoseNonFinite, NonFiniteError, paramsFinite } from "./guard.js";
import { OutlierDetector } from "./outliers.js";
import { RunLog, type StepMetrics } from "./log.js";
import { checkpointPath, latestCheckpoint, listCheckpoints, optimizerShardPath, pruneCheckpoints } from "./rundir.js";
import { learningRate } from "./schedule.js";

export interface TrainHooks {
  /** human-readable lines (step lines, samples, notices) */
  print: (line: string) => void;
  /** every metrics record as it is logged (the dashboard listens here) */
  onMetrics?: (m: StepMetrics) => void;
  /** set .stop = true (e.g. on Ctrl-C) to write a checkpoint and end after the current step */
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

interface RunState {
  step: number;
  /** AdamW updates taken (fewer than steps when updates were skipped) */
  optStep: number;
  loader: LoaderPosition;
  sampleRng: RngState;
  /** LR multiplier after NaN rollbacks */
  lrScale: number;
  outliers: { loss: OutlierDetector["state"]; norm: OutlierDetector["state"] };
  config: TrainConfig;
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

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** Builds the model named by -e: a preset from scratch, or weights from a checkpoint file/dir. */
export function initModel(cfg: TrainConfig, backend: Backend): { model: GPT2; fromScratch: boolean } {
  if (PRESETS[cfg.init]) {
    const config = makeConfig(cfg.init, {
      nLayer: cfg.nLayer || undefined, nHead: cfg.nHead || undefined, nEmbd: cfg.nEmbd || undefined,
      blockSize: Math.max(1024, cfg.seqLen),
    });
    const model = new GPT2(config, backend, cfg.recompute);
    model.initWeights(new Rng(cfg.seed));
    return { model, fromScratch: true };
  }
  if (cfg.nLayer || cfg.nHead || cfg.nEmbd) throw new TrainConfigError("--n-layer/--n-head/--n-embd only apply to a preset given with -e");
  const model = loadModel(cfg.init, backend);
  model.recompute = cfg.recompute;
  return { model, fromScratch: false };
}

/** The run's memory plan in bytes per rank, computed before anything big is allocated (ZeRO-1 shards AdamW). */
export function memoryPlan(config: GPT2Config, cfg: TrainConfig, ranks = 1, classifierRows = CLASSIFIER_CHUNK): { params: number; grads: number; adamw: number; activations: number; kvcache: number; total: number } {
  const n = paramLayout(config).total;
  const adamw = cfg.zero && ranks > 1 ? Math.ceil(n / ranks) * 8 : n * 8;
  const acts = GPT2.activationFloats(config, cfg.batchSize, cfg.seqLen, cfg.recompute, classifierRows) * 4;
  const kv = cfg.sampleEvery > 0 ? 2 * config.nLayer * Math.min(config.blockSize, cfg.genTokens + 1) * config.nEmbd * 4 * 2 : 0;
  const plan = { params: n * 4, grads: n * 4, adamw, activations: acts, kvcache: kv, total: 0 };
  plan.total = plan.params + plan.grads + plan.adamw + plan.activations + plan.kvcache;
  return plan;
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

export async function train(cfg: TrainConfig, backend: Backend, hooks: TrainHooks, comm: Communicator = new SingleComm()): Promise<TrainSummary> {
  const lead = comm.rank === 0, N = comm.size;
  // only rank 0 prints, logs, evaluates, samples and writes the model checkpoint
  const print = lead ? hooks.print : () => {};
  if (!cfg.trainData) throw new TrainConfigError("no train shards: give -i 'DIR/NAME_train_*.bin' (make them with gpt2 prepare)");
  const B = cfg.batchSize, T = cfg.seqLen;
  const accum = accumulationSteps(cfg, N);
  const resumeFrom = cfg.resume ? latestCheckpoint(cfg.outDir) : null;
  if (cfg.resume && !cfg.outDir) throw new TrainConfigError("-y 1 needs -o DIR, where the checkpoints are");
  checkRanksAgree(comm, cfg, resumeFrom);
  // open the data first: a missing shard fails before any big allocation
  const loader = new DataLoader(cfg.trainData, B, T, { shuffle: cfg.shuffle === 1, seed: cfg.seed, rank: comm.rank, worldSize: N });
  const valLoader = cfg.valData ? new DataLoader(cfg.valData, B, T) : null;

  // the memory plan, checked against free memory before the model exists
  const shape = PRESETS[cfg.init]
    ? makeConfig(cfg.init, { nLayer: cfg.nLayer || undefined, nHead: cfg.nHead || undefined, nEmbd: cfg.nEmbd || undefined, blockSize: Math.max(1024, T) })
    : null;
  if (shape) {
    const plan = memoryPlan(shape, cfg, N, backend.classifierRows), avail = hooks.availableBytes ?? backend.freeBytes?.() ?? availableMemory();
    if (plan.total > avail) {
      throw new TrainConfigError(`the run needs ${describePlan(plan)}, but only ${(avail / 2 ** 20).toFixed(0)} MiB are free; ` +
        `lower -b, use -r 1 or 2, or a smaller model`);
    }
  }

  // the model: from -e (a preset or a checkpoint); a resumed run's checkpoint is shape-checked against it
  const { model, fromScratch } = initModel(cfg, backend);
  if (T > model.config.blockSize) throw new TrainConfigError(`-t ${T} exceeds the model's block size ${model.config.blockSize}`);
  // fine-tuning defaults (nanoGPT's Shakespeare fine-tune): a small LR and a short warmup unless given
  const lr0 = cfg.lr > 0 ? cfg.lr : fromScratch ? 3e-4 : 3e-5;
  const warmup = cfg.warmup >= 0 ? cfg.warmup : fromScratch ? 0 : 10;
  model.zeroGrad();
  const dp = new DataParallel(model, comm, cfg.zero && N > 1 ? 1 : 0);
  const opt = new AdamW(model, { ...ADAMW_DEFAULTS, weightDecay: cfg.weightDecay }, dp.shard);
  const maxSteps = cfg.maxSteps > 0 ? cfg.maxSteps : Math.max(1, Math.floor(loader.batchesPerEpoch / accum));
  let startStep = 0;
  let sampleRng = new Rng(cfg.seed + 1);
  let lrScale = 1;
  const lossDet = new OutlierDetector(), normDet = new OutlierDetector();
  /** restores everything a checkpoint holds; returns its step */
  const restore = (file: string): number => {
    const h = readCheckpointHeader(file);
    if (!sameShape(h.config, model.config)) {
      throw new TrainConfigError(`${file}: checkpoint model (${describeConfig(h.config)}) does not match -e ${cfg.init} (${describeConfig(model.config)})`);
    }
    const state = h.state as unknown as RunState;
    restoreCheckpoint(file, model);
    // AdamW state: from this file, or from the ZeRO-1 shards it names, re-sharded for this run's ranks if need be
    const sources: OptimizerSource[] = state.optimizer
      ? state.optimizer.shards.map((s) => ({ ...s, file: path.join(path.dirname(file), s.file) }))
      : [{ file, lo: 0, hi: model.layout.total }];
    readOptimizerRange(sources, opt.lo, opt.hi, backend, { m: opt.m, v: opt.v });
    const savedRanks = state.optimizer?.ranks ?? 1, savedZero = state.optimizer ? 1 : 0;
    if (savedZero !== dp.zero || (dp.zero && savedRanks !== N)) {
      print(`optimizer state was saved ${savedZero ? `as ZeRO-1 shards over ${savedRanks} ranks` : "whole"}; ` +
        `read back ${dp.zero ? `as ZeRO-1 shards over ${N} ranks` : "whole"}`);
    }
    opt.step = state.optStep;
    loader.position = state.loader;
    sampleRng = new Rng(state.sampleRng);
    lrScale = state.lrScale;
    lossDet.state = state.outliers.loss;
    normDet.state = state.outliers.norm;
    return state.step;
  };
  if (resumeFrom) {
    startStep = restore(resumeFrom);
    print(`resumed from ${resumeFrom} at step ${startStep}`);
  } else {
    dp.broadcastParams(); // the same initial weights on every rank, whatever each one computed
  }

  model.allocate(B, T);
  print(`model: ${describeConfig(model.config)}, ${(countParams(model.config) / 1e6).toFixed(2)}M parameters ` +
    `(${fromScratch ? `from scratch, preset ${cfg.init}` : `from ${cfg.init}`})`);
  print(`backend: ${backend.name}, ${backend.device ?? `${backend.threads} threads`}, dtype ${cfg.dtype}, recompute ${cfg.recompute}`);
  if (N > 1 || comm.kind !== "single") {
    print(`data parallel: ${comm.description}; ZeRO-${dp.zero}${dp.zero ? " (AdamW state sharded)" : " (every rank holds all AdamW state)"}; ` +
      `memory per rank with -z 0: ${describePlan(memoryPlan(model.config, { ...cfg, zero: 0 }, N, backend.classifierRows))}; ` +
      `with -z 1: ${describePlan(memoryPlan(model.config, { ...cfg, zero: 1 }, N, backend.classifierRows))}`);
  }
  print(`memory${N > 1 ? " per rank" : ""}${backend.device ? " on the device" : ""}: ${describePlan(memoryPlan(model.config, cfg, N, backend.classifierRows))}, ` +
    `allocated once before step 0`);
  print(`batch: B=${B} T=${T}${N > 1 ? ` x ${N} ranks` : ""}, total ${B * T * accum * N} tokens per step = ${accum} accumulation step${accum > 1 ? "s" : ""}; ` +
    `${loader.totalTokens.toLocaleString()} train tokens in ${loader.shards.length} shard(s); ${maxSteps} steps`);
  print(`optimizer: AdamW lr ${lr0} (${cfg.schedule}, warmup ${warmup}, final x${cfg.finalLrFrac}), wd ${cfg.weightDecay}, clip ${cfg.gradClip}` +
    `${cfg.lr > 0 && cfg.warmup >= 0 ? "" : fromScratch ? "" : " (fine-tuning defaults)"}; data ${cfg.shuffle ? "shuffled every epoch" : "in order"}`);

  const log = cfg.outDir && lead ? new RunLog(cfg.outDir) : null;
  if (log && !resumeFrom) log.writeConfig({ ...cfg, model: model.config });
  const emit = (m: StepMetrics) => { if (!lead) return; log?.write(m); hooks.onMetrics?.(m); };
  const schedule = { kind: cfg.schedule, maxLr: lr0, warmup, totalSteps: maxSteps, finalFraction: cfg.finalLrFrac };
  const tokensPerStep = B * T * accum * N;
  const flops = flopsPerToken(model.config, T);
  // MFU against all ranks' peak (each rank knows its own)
  const peak = (hooks.peakGflops ?? NaN) * N;
  const cache = cfg.sampleEvery > 0 ? new KVCache(model, 1, Math.min(model.config.blockSize, cfg.genTokens + 1)) : null;
  const overfitBatch = cfg.overfitSingleBatch ? loader.next() : null;
  const hellaswag = cfg.hellaswag && lead ? readHellaswag(await hellaswagFile(cfg.hellaswagData || undefined, (u) => print(`downloading ${u}`)), cfg.hellaswagLimit) : null;
  let lastTrain = NaN, lastVal = NaN, lastCkpt: string | null = null, emaMs = 0;
  const trainStart = performance.now();

  // called on every rank: under ZeRO-1 each writes its optimizer shard first; then rank 0 writes the checkpoint
  // that names them (so a checkpoint file only ever exists once all it needs is on disk)
  const writeCheckpoint = (step: number) => {
    if (!cfg.outDir) return;
    // a checkpoint never holds a non-finite value: the last good one stays (all ranks hold the same parameters)
    if (!paramsFinite(model)) throw new AllRanksError(new NonFiniteError(`refusing to write a checkpoint at step ${step}: the parameters are not finite`));
    const file = checkpointPath(cfg.outDir, step);
    const state: RunState = {
      step, optStep: opt.step, loader: loader.position, sampleRng: sampleRng.state, lrScale,
      outliers: { loss: lossDet.state, norm: normDet.state }, config: cfg,
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
    lastCkpt = file;
    if (lead) pruneCheckpoints(cfg.outDir, cfg.keep, step);
    comm.barrier(); // nobody reads a checkpoint directory rank 0 is still changing
    print(`checkpoint: ${file}`);
  };

  // rolling back needs a checkpoint to go back to
  if (cfg.onNan === "rollback" && cfg.outDir && !resumeFrom) {
    const none = !latestCheckpoint(cfg.outDir);
    comm.barrier(); // every rank has looked before rank 0 writes
    if (none) writeCheckpoint(startStep);
  }
  let epoch = loader.position.epoch;
  // rollback bookkeeping: a failure before any newer checkpoint was written goes back further than the last target
  let rollbacks = 0, rolledBackTo = -1, progressed = true;
  for (let step = startStep; step <= maxSteps; step++) {
    const last = step === maxSteps;
    if (lead && valLoader && cfg.valEvery > 0 && (step % cfg.valEvery === 0 || last)) {
      lastVal = datasetLoss(model, valLoader, cfg.valBatches);
      print(`val loss ${lastVal.toFixed(6)} at step ${step}`);
      emit({ step, val_loss: lastVal });
    }
    if (hellaswag && cfg.valEvery > 0 && (step % cfg.valEvery === 0 || last)) {
      // rows of 4 endings; as many examples per forward as the training buffers hold
      const h = evaluateHellaswag(model, hellaswag, Math.max(1, Math.floor(B / 4)));
      print(`HellaSwag acc_norm ${(100 * h.acc_norm).toFixed(2)}% (${h.n} examples) at step ${step}`);
      emit({ step, hellaswag: h.acc_norm });
    }
    if (lead && cache && cfg.sampleEvery > 0 && (step % cfg.sampleEvery === 0 || last) && (step > startStep || last || step === 0)) {
      const [ids] = generate(model, [EOT], 1, sampleRng, { maxNewTokens: cfg.genTokens, temperature: 1, stopAtEot: false }, cache);
      const text = decode(ids);
      print(`sample at step ${step}:\n---\n${text}\n---`);
      emit({ step, sample: text });
    }
    if (cfg.outDir && step > startStep && step !== rolledBackTo && (last || (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0))) {
      writeCheckpoint(step);
      if (step > rolledBackTo) progressed = true;
    }
    if (last) break;

    // one optimizer step: accumulate gradients over the micro-batches, clip, update
    const t0 = performance.now();
    model.zeroGrad();
    let loss = 0;
    const batches = [];
    const spike = hooks.spikeStep === step + 1 ? 1e4 : 1;
    for (let micro = 0; micro < accum; micro++) {
      const batch = overfitBatch ?? loader.next();
      batches.push(batch);
      if (micro === accum - 1) dp.beforeLastBackward();
      // each rank's gradients are pre-divided by the ranks: their sum across ranks is the mean
      loss += model.forwardBackward(batch.inputs, batch.targets, B, T, spike / (accum * N)) / accum;
    }
    dp.reduceGradients();
    // the mean loss over ranks, and whether any rank was asked to stop (Ctrl-C reaches ranks at different moments)
    const agreed = new Float64Array([loss, hooks.signal?.stop ? 1 : 0]);
    comm.allReduceSum(agreed);
    loss = agreed[0] / N;
    if (hooks.signal && agreed[1] > 0) hooks.signal.stop = true;
    const norm = clipGradNorm(model, cfg.gradClip, dp.shard, (sq) => dp.sumOverShards(sq));
    const lr = learningRate(schedule, step) * lrScale;
    if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
      // never let a non-finite value reach AdamW or a checkpoint: diagnose, then stop or roll back
      const what = !Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${norm}`;
      const where = diagnoseNonFinite(model, batches, B, T);
      const good = cfg.outDir ? latestCheckpoint(cfg.outDir) : null;
      const target = listCheckpoints(cfg.outDir).filter((c) => progressed || c.step < rolledBackTo).at(-1);
      if (cfg.onNan === "rollback" && target && rollbacks < MAX_ROLLBACKS) {
        const back = restore(target.file);
        lrScale *= cfg.rollbackLrFactor;
        rollbacks++;
        rolledBackTo = back;
        progressed = false;
        print(`step ${step + 1}: ${what} (first non-finite: ${where}); rolled back to ${target.file} (step ${back}), LR x${lrScale.toPrecision(3)}`);
        emit({ step: step + 1, event: `rollback to step ${back}: ${what}` });
        step = back - 1;
        continue;
      }
      throw new AllRanksError(new NonFiniteError(`step ${step + 1}: ${what}; first non-finite value: ${where}; ` +
        `${good ? `last good checkpoint ${good} kept` : "no checkpoint written yet (-n N writes some)"}; lower the LR (-l) or use --on-nan rollback`));
    }
    const zLoss = lossDet.update(loss), zNorm = normDet.update(norm);
    let skipped = hooks.skipStep === step + 1;
    if (cfg.skipUpdateZ > 0 && (zLoss > cfg.skipUpdateZ || zNorm > cfg.skipUpdateZ)) {
      skipped = true;
      print(`step ${step + 1}: skipping the update, loss z ${zLoss.toFixed(1)}, norm z ${zNorm.toFixed(1)} (limit ${cfg.skipUpdateZ})`);
    }
    if (!skipped) {
      opt.update(lr);
      dp.gatherParams();
    }
    const ms = performance.now() - t0;
    const commMs = comm.takeWaitSeconds() * 1000;
    lastTrain = loss;
    emaMs = step === startStep ? ms : 0.9 * emaMs + 0.1 * ms;
    const tps = (tokensPerStep * 1000) / ms;
    const mfu = (tps * flops) / 1e9 / peak;
    const eta = ((maxSteps - step - 1) * emaMs) / 1000;
    const z = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
    print(`step ${String(step + 1).padStart(String(maxSteps).length)}/${maxSteps} | loss ${loss.toFixed(6)} | lr ${lr.toExponential(2)} | ` +
      `norm ${norm.toFixed(4)} | z ${z(zLoss)}/${z(zNorm)} | ${ms.toFixed(0)} ms | ${tps.toFixed(0)} tok/s | ` +
      `MFU ${Number.isFinite(mfu) ? (100 * mfu).toFixed(1) + "%" : "n/a"}${N > 1 ? ` | comm wait ${commMs.toFixed(0)} ms` : ""} | ETA ${fmtTime(eta)}`);
    emit({ step: step + 1, train_loss: loss, lr, norm, z_loss: Number.isFinite(zLoss) ? zLoss : null, z_norm: Number.isFinite(zNorm) ? zNorm : null,
      skipped, ms, ...(N > 1 ? { comm_wait_ms: commMs } : {}), tokens_per_s: tps, mfu: Number.isFinite(mfu) ? mfu : null, epoch: loader.position.epoch, elapsed_s: (performance.now() - trainStart) / 1000 });
    if (loader.position.epoch !== epoch) {
      epoch = loader.position.epoch;
      print(`epoch ${epoch + 1} begins${cfg.shuffle ? " (shards and documents reshuffled)" : ""}`);
    }
    hooks.afterStep?.(step + 1);
    // let signal handlers (Ctrl-C) run between steps
    await new Promise((r) => setImmediate(r));
    if (hooks.signal?.stop) {
      print(`interrupted: writing a checkpoint at step ${step + 1}`);
      writeCheckpoint(step + 1);
      return { steps: step + 1, lastTrainLoss: lastTrain, lastValLoss: lastVal, checkpoint: lastCkpt };
    }
  }
  loader.close();
  valLoader?.close();
  return { steps: maxSteps, lastTrainLoss: lastTrain, lastValLoss: lastVal, checkpoint: lastCkpt };
}
