// What a training run prints: the header before step 0 (model, backend, memory, batch, optimizer) and the step line,
// in llm.c's spirit (one line per step: loss, lr, norm, time, throughput, MFU, ETA).

import type { Backend } from "../kernels/backend.js";
import { describeConfig, type GPT2Config } from "../model/config.js";
import { countParams } from "../model/layout.js";
import type { Communicator } from "../parallel/comm.js";
import type { TrainConfig } from "./config.js";
import type { TrainTask } from "./task.js";

/** what the header says of a run */
export interface RunFacts {
  cfg: TrainConfig; model: GPT2Config; backend: Backend; comm: Communicator; task: TrainTask;
  fromScratch: boolean; zero: number; accum: number; maxSteps: number; lr0: number; warmup: number;
  /** the training and validation data, described */
  data: string; valData: string | null;
  /** the memory plan at a ZeRO level, described */
  plan: (zero: number) => string;
}

/** the lines printed before step 0 */
export function headerLines(f: RunFacts, adapted: string | null): string[] {
  const { cfg, backend, comm } = f, N = comm.size, out: string[] = [];
  out.push(`model: ${describeConfig(f.model)}, ${(countParams(f.model) / 1e6).toFixed(2)}M parameters ` +
    `(${f.fromScratch ? `from scratch, preset ${cfg.init}` : `from ${cfg.init}`})`);
  if (adapted) out.push(adapted);
  const acts = backend.activationDtype === "bf16" ? " (activations stored in bf16)" : cfg.dtype === "bf16" ? " (float32 activations)" : "";
  out.push(`backend: ${backend.name}, ${backend.device ?? `${backend.threads} threads`}, dtype ${cfg.dtype}${acts}, recompute ${cfg.recompute}`);
  if (N > 1 || comm.kind !== "single") {
    out.push(`data parallel: ${comm.description}; ZeRO-${f.zero}${f.zero ? " (AdamW state sharded)" : " (every rank holds all AdamW state)"}; ` +
      `memory per rank with -z 0: ${f.plan(0)}; with -z 1: ${f.plan(1)}`);
  }
  out.push(`memory${N > 1 ? " per rank" : ""}${backend.device ? " on the device" : ""}: ${f.plan(cfg.zero)}, allocated once before step 0`);
  const kind = f.task.kind, rowsOf = { pretraining: "", sft: "rows", rm: "preference pairs", dpo: "preference pairs", rl: "prompts" }[kind];
  const perStep = cfg.batchSize * f.accum * N;
  out.push(`batch: B=${cfg.batchSize}${rowsOf ? ` ${rowsOf}` : ""} T=${cfg.seqLen}${rowsOf ? " (at most: a batch is as long as its longest row)" : ""}${N > 1 ? ` x ${N} ranks` : ""}, ` +
    `${rowsOf ? `${perStep} ${rowsOf}${kind === "rl" ? ` x ${cfg.group} answers` : ""}` : `total ${cfg.batchSize * cfg.seqLen * f.accum * N} tokens`} per step = ` +
    `${f.accum} accumulation step${f.accum > 1 ? "s" : ""}; ${f.data}; ${f.maxSteps} steps`);
  if (f.valData && rowsOf) out.push(`validation: ${f.valData}`);
  out.push(`optimizer: AdamW lr ${f.lr0} (${cfg.schedule}, warmup ${f.warmup}, final x${cfg.finalLrFrac}), wd ${cfg.weightDecay}, clip ${cfg.gradClip}` +
    `${cfg.lr > 0 && cfg.warmup >= 0 ? "" : f.fromScratch ? "" : " (fine-tuning defaults)"}; data ${cfg.shuffle ? "shuffled every epoch" : "in order"}`);
  return out;
}

/** what the step line says */
export interface StepFacts {
  step: number; maxSteps: number; loss: number; lr: number; norm: number; zLoss: number; zNorm: number; ms: number;
  tokensPerS: number; mfu: number; etaS: number;
  /** the objective's metrics, formatted (" | acc 52.1%") */
  metrics: string;
  /** trained tokens, when not every position has a target (SFT) */
  trained: number | null;
  /** ranks, and the time this step waited on them */
  ranks: number; commMs: number;
}

export function stepLine(s: StepFacts): string {
  const z = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
  return `step ${String(s.step).padStart(String(s.maxSteps).length)}/${s.maxSteps} | loss ${s.loss.toFixed(6)}${s.metrics} | lr ${s.lr.toExponential(2)} | ` +
    `norm ${s.norm.toFixed(4)} | z ${z(s.zLoss)}/${z(s.zNorm)} | ${s.ms.toFixed(0)} ms | ${s.tokensPerS.toFixed(0)} tok/s${s.trained !== null ? ` (${s.trained} trained)` : ""} | ` +
    `MFU ${Number.isFinite(s.mfu) ? (100 * s.mfu).toFixed(1) + "%" : "n/a"}${s.ranks > 1 ? ` | comm wait ${s.commMs.toFixed(0)} ms` : ""} | ETA ${fmtTime(s.etaS)}`;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
