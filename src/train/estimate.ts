// Planning a run: parameters, FLOPs, memory and time/cost on GPUs (peak x MFU) or on this CPU (measured tokens/s).

import { GPU_SPECS, type GpuSpec } from "../kernels/gpus.js";
import type { GPT2Config } from "../model/config.js";
import { GPT2 } from "../model/gpt2.js";
import { countParams, paramLayout } from "../model/layout.js";
import { flopsPerToken } from "./flops.js";

export interface Accelerator {
  name: string;
  /** dense bf16 peak, FLOP/s */
  peakFlops: number;
  /** default MFU: what llm.c reached on it (A100: GPT-2 124M at ~60 %; H100: GPT-2 1.5B at ~50 %) */
  mfu: number;
  memoryGiB: number;
  /** default rental price, USD per GPU-hour */
  price: number;
}

const plan = (g: GpuSpec, mfu: number, price: number): Accelerator => ({ name: g.name, peakFlops: g.bf16 * 1e12, mfu, memoryGiB: g.memoryGiB, price });

export const GPUS: Record<string, Accelerator> = {
  a100: plan(GPU_SPECS.a100, 0.6, 1.8),
  h100: plan(GPU_SPECS.h100, 0.5, 3.5),
  h200: plan(GPU_SPECS.h200, 0.5, 4.0),
};

export interface EstimateInput {
  config: GPT2Config;
  tokens: number;
  batch: number;
  seq: number;
  gpus: number;
  /** FLOP/s of one device (GPU peak) and the MFU reached; or measured tokens/s of this machine */
  throughput: { kind: "gpu"; peakFlops: number; mfu: number } | { kind: "cpu"; tokensPerS: number };
  pricePerHour: number;
}

export interface MemoryPlan {
  params_gib: number;
  grads_gib: number;
  adamw_gib: number;
  activations_gib: number;
  total_gib: number;
}

export interface Estimate {
  params: number;
  flops_per_token: number;
  total_flops: number;
  hours: number;
  cost_usd: number;
  /** per device, without and with recompute / ZeRO-1 */
  memory_gib: number;
  memory: Record<string, MemoryPlan>;
}

const GiB = 2 ** 30;

/** Memory per device: fp32 master weights + bf16 working copy (GPU) or fp32 only (CPU), grads, AdamW m and v. */
export function memoryPlan(c: GPT2Config, B: number, T: number, devices: number, gpu: boolean, recompute: 0 | 1 | 2, zero1: boolean): MemoryPlan {
  const n = paramLayout(c).total;
  const paramBytes = gpu ? n * (4 + 2) : n * 4;
  const gradBytes = gpu ? n * 2 : n * 4;
  const shard = zero1 ? devices : 1;
  const adamw = (n * 8) / shard;
  const master = zero1 && gpu ? (n * 4) / shard + n * 2 : paramBytes;
  // a GPU run as llm.c's keeps every activation and activation gradient in bf16: 2 bytes each; the CPU's as ours
  // under --dtype fp32
  const f32 = GPT2.activationBytes(c, B, T, recompute);
  const act = gpu ? f32 / 2 : f32;
  const plan = { params_gib: master / GiB, grads_gib: gradBytes / GiB, adamw_gib: adamw / GiB, activations_gib: act / GiB, total_gib: 0 };
  plan.total_gib = plan.params_gib + plan.grads_gib + plan.adamw_gib + plan.activations_gib;
  return plan;
}

export function estimate(e: EstimateInput): Estimate {
  const fpt = flopsPerToken(e.config, e.seq);
  const total = fpt * e.tokens;
  const seconds = e.throughput.kind === "gpu"
    ? total / (e.throughput.peakFlops * e.throughput.mfu * e.gpus)
    : e.tokens / e.throughput.tokensPerS;
  const hours = seconds / 3600;
  const gpu = e.throughput.kind === "gpu";
  const memory: Record<string, MemoryPlan> = {};
  for (const r of [0, 1, 2] as const) {
    memory[`recompute${r}`] = memoryPlan(e.config, e.batch, e.seq, e.gpus, gpu, r, false);
    memory[`recompute${r}_zero1`] = memoryPlan(e.config, e.batch, e.seq, e.gpus, gpu, r, true);
  }
  return {
    params: countParams(e.config), flops_per_token: fpt, total_flops: total, hours,
    cost_usd: hours * e.pricePerHour * (gpu ? e.gpus : 1), memory_gib: memory.recompute1.total_gib, memory,
  };
}
