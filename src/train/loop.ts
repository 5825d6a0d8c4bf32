// The training loop, as llm.c's train_gpt2 main(): validate, sample, checkpoint, then one optimizer step of
// gradient accumulation over micro-batches, clip, AdamW; a step line per step. Everything a resumed run needs
// (weights, AdamW state, step, loader position, RNG) is in the checkpoint, so resume is exact.

import * as fs from "node:fs";
import * as path from "node:path";
import { DataLoader, type LoaderPosition } from "../data/loader.js";
import { evaluateHellaswag, hellaswagFile, readHellaswag } from "../eval/hellaswag.js";
import { datasetLoss } from "../eval/loss.js";
import { readCheckpointHeader, restoreCheckpoint, saveCheckpoint } from "../io/checkpoint.js";
import { loadModel } from "../io/load.js";
import type { Backend } from "../kernels/backend.js";
import { describeConfig, EOT, makeConfig, PRESETS, sameShape } from "../model/config.js";
import { generate, KVCache } from "../model/generate.js";
import { GPT2 } from "../model/gpt2.js";
import { countParams } from "../model/layout.js";
import { decode } from "../tokenizer/bpe.js";
import { Rng, type RngState } from "../util/rng.js";
import { AdamW, ADAMW_DEFAULTS, clipGradNorm } from "./adamw.js";
import { accumulationSteps, TrainConfigError, type TrainConfig } from "./config.js";
import { flopsPerToken } from "./flops.js";
import { RunLog, type StepMetrics } from "./log.js";
import { learningRate } from "./schedule.js";

export interface TrainHooks {
  /** human-readable lines (step lines, samples, notices) */
  print: (line: string) => void;
  /** every metrics record as it is logged (the dashboard listens here) */
  onMetrics?: (m: StepMetrics) => void;
  /** set .stop = true (e.g. on Ctrl-C) to write a checkpoint and end after the current step */
  signal?: { stop: boolean };
  /** fp32 FMA peak of this machine in GFLOP/s, for MFU (NaN: unknown) */
  peakGflops?: number;
  /** test hook: called after each optimizer step with the step number */
  afterStep?: (step: number) => void;
}

export interface TrainSummary {
  steps: number;
  lastTrainLoss: number;
  lastValLoss: number;
  checkpoint: string | null;
}

interface RunState {
  step: number;
  loader: LoaderPosition;
  sampleRng: RngState;
  config: TrainConfig;
}

const CKPT_RE = /^checkpoint_(\d{8})\.gpt2ts$/;

export function checkpointPath(outDir: string, step: number): string {
  return path.join(outDir, `checkpoint_${String(step).padStart(8, "0")}.gpt2ts`);
}

export function latestCheckpoint(outDir: string): string | null {
  if (!outDir || !fs.existsSync(outDir)) return null;
  const found = fs.readdirSync(outDir).filter((f) => CKPT_RE.test(f)).sort();
  return found.length ? path.join(outDir, found[found.length - 1]) : null;
}

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

export async function train(cfg: TrainConfig, backend: Backend, hooks: TrainHooks): Promise<TrainSummary> {
  const { print } = hooks;
  if (!cfg.trainData) throw new TrainConfigError("no train shards: give -i 'DIR/NAME_train_*.bin' (make them with gpt2 prepare)");
  const B = cfg.batchSize, T = cfg.seqLen;
  const accum = accumulationSteps(cfg);
  const resumeFrom = cfg.resume ? latestCheckpoint(cfg.outDir) : null;
  if (cfg.resume && !cfg.outDir) throw new TrainConfigError("-y 1 needs -o DIR, where the checkpoints are");

  // the model: from the checkpoint being resumed (shape checked), else from -e
  const { model, fromScratch } = initModel(cfg, backend);
  if (T > model.config.blockSize) throw new TrainConfigError(`-t ${T} exceeds the model's block size ${model.config.blockSize}`);
  const loader = new DataLoader(cfg.trainData, B, T, 0, 1, model.config.vocabSize);
  const valLoader = cfg.valData ? new DataLoader(cfg.valData, B, T, 0, 1, model.config.vocabSize) : null;
  const opt = new AdamW(model, { ...ADAMW_DEFAULTS, weightDecay: cfg.weightDecay });
  const maxSteps = cfg.maxSteps > 0 ? cfg.maxSteps : Math.max(1, Math.floor(loader.batchesPerEpoch / accum));
  let startStep = 0;
  let sampleRng = new Rng(cfg.seed + 1);
  if (resumeFrom) {
    const h = readCheckpointHeader(resumeFrom);
    if (!sameShape(h.config, model.config)) {
      throw new TrainConfigError(`${resumeFrom}: checkpoint model (${describeConfig(h.config)}) does not match -e ${cfg.init} (${describeConfig(model.config)})`);
    }
    const state = h.state as unknown as RunState;
    restoreCheckpoint(resumeFrom, model, { m: opt.m, v: opt.v });
    startStep = state.step;
    opt.step = state.step;
    loader.position = state.loader;
    sampleRng = new Rng(state.sampleRng);
    print(`resumed from ${resumeFrom} at step ${startStep}`);
  }

  model.allocate(B, T);
  model.zeroGrad();
  const paramsMiB = (model.layout.total * 4) / 2 ** 20, actMiB = (model.activationFloats * 4) / 2 ** 20;
  print(`model: ${describeConfig(model.config)}, ${(countParams(model.config) / 1e6).toFixed(2)}M parameters ` +
    `(${fromScratch ? `from scratch, preset ${cfg.init}` : `from ${cfg.init}`})`);
  print(`backend: ${backend.name}, ${backend.threads} threads, dtype ${cfg.dtype}, recompute ${cfg.recompute}`);
  print(`memory: params ${paramsMiB.toFixed(0)} MiB + grads ${paramsMiB.toFixed(0)} + AdamW ${(2 * paramsMiB).toFixed(0)} + ` +
    `activations ${actMiB.toFixed(0)} = ${(4 * paramsMiB + actMiB).toFixed(0)} MiB, allocated once`);
  print(`batch: B=${B} T=${T}, total ${B * T * accum} tokens per step = ${accum} accumulation step${accum > 1 ? "s" : ""}; ` +
    `${loader.totalTokens.toLocaleString()} train tokens in ${loader.shards.length} shard(s); ${maxSteps} steps`);
  print(`optimizer: AdamW lr ${cfg.lr} (${cfg.schedule}, warmup ${cfg.warmup}, final x${cfg.finalLrFrac}), wd ${cfg.weightDecay}, clip ${cfg.gradClip}`);

  const log = cfg.outDir ? new RunLog(cfg.outDir) : null;
  if (log && !resumeFrom) log.writeConfig({ ...cfg, model: model.config });
  const emit = (m: StepMetrics) => { log?.write(m); hooks.onMetrics?.(m); };
  const schedule = { kind: cfg.schedule, maxLr: cfg.lr, warmup: cfg.warmup, totalSteps: maxSteps, finalFraction: cfg.finalLrFrac };
  const tokensPerStep = B * T * accum;
  const flops = flopsPerToken(model.config, T);
  const peak = (hooks.peakGflops ?? NaN) * (cfg.dtype === "bf16" ? 2 : 1);
  const cache = cfg.sampleEvery > 0 ? new KVCache(model, 1, Math.min(model.config.blockSize, cfg.genTokens + 1)) : null;
  const overfitBatch = cfg.overfitSingleBatch ? loader.next() : null;
  const hellaswag = cfg.hellaswag ? readHellaswag(await hellaswagFile(cfg.hellaswagData || undefined, (u) => print(`downloading ${u}`)), cfg.hellaswagLimit) : null;
  let lastTrain = NaN, lastVal = NaN, lastCkpt: string | null = null, emaMs = 0;
  const trainStart = performance.now();

  const writeCheckpoint = (step: number) => {
    if (!cfg.outDir) return;
    const file = checkpointPath(cfg.outDir, step);
    const state: RunState = { step, loader: loader.position, sampleRng: sampleRng.state, config: cfg };
    saveCheckpoint(file, model, state as unknown as Record<string, unknown>, { m: opt.m, v: opt.v });
    lastCkpt = file;
    const all = fs.readdirSync(cfg.outDir).filter((f) => CKPT_RE.test(f)).sort();
    for (const old of all.slice(0, Math.max(0, all.length - cfg.keep))) fs.rmSync(path.join(cfg.outDir, old));
    print(`checkpoint: ${file}`);
  };

  for (let step = startStep; step <= maxSteps; step++) {
    const last = step === maxSteps;
    if (valLoader && cfg.valEvery > 0 && (step % cfg.valEvery === 0 || last)) {
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
    if (cache && cfg.sampleEvery > 0 && (step % cfg.sampleEvery === 0 || last) && (step > startStep || last || step === 0)) {
      const [ids] = generate(model, [EOT], 1, sampleRng, { maxNewTokens: cfg.genTokens, temperature: 1, stopAtEot: false }, cache);
      const text = decode(ids);
      print(`sample at step ${step}:\n---\n${text}\n---`);
      emit({ step, sample: text });
    }
    if (cfg.outDir && step > startStep && (last || (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0))) writeCheckpoint(step);
    if (last) break;

    // one optimizer step: accumulate gradients over the micro-batches, clip, update
    const t0 = performance.now();
    model.zeroGrad();
    let loss = 0;
    for (let micro = 0; micro < accum; micro++) {
      const batch = overfitBatch ?? loader.next();
      loss += model.forwardBackward(batch.inputs, batch.targets, B, T, 1 / accum) / accum;
    }
    const norm = clipGradNorm(model, cfg.gradClip);
    const lr = learningRate(schedule, step);
    opt.update(lr);
    const ms = performance.now() - t0;
    lastTrain = loss;
    emaMs = step === startStep ? ms : 0.9 * emaMs + 0.1 * ms;
    const tps = (tokensPerStep * 1000) / ms;
    const mfu = (tps * flops) / 1e9 / peak;
    const eta = ((maxSteps - step - 1) * emaMs) / 1000;
    print(`step ${String(step + 1).padStart(String(maxSteps).length)}/${maxSteps} | loss ${loss.toFixed(6)} | lr ${lr.toExponential(2)} | ` +
      `norm ${norm.toFixed(4)} | ${ms.toFixed(0)} ms | ${tps.toFixed(0)} tok/s | MFU ${Number.isFinite(mfu) ? (100 * mfu).toFixed(1) + "%" : "n/a"} | ETA ${fmtTime(eta)}`);
    emit({ step: step + 1, train_loss: loss, lr, norm, ms, tokens_per_s: tps, mfu: Number.isFinite(mfu) ? mfu : null,
      epoch: loader.position.epoch, elapsed_s: (performance.now() - trainStart) / 1000 });
    hooks.afterStep?.(step + 1);
    if (!Number.isFinite(loss)) throw new Error(`loss became ${loss} at step ${step + 1}; lower the learning rate (-l)`);
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
