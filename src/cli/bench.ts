// gpt2 bench --model d12 --batch 4 --seq 256 [--dtype fp32|bf16] [--steps N] [--generate] [--json]: flags in `help`.

import * as fs from "node:fs";
import * as path from "node:path";
import { CudaBackend } from "../kernels/cuda.js";
import { loadNativeAddon } from "../kernels/native.js";
import { cpuPeakGflops } from "../kernels/peak.js";
import { makeConfig, PRESETS } from "../model/config.js";
import type { RecomputeLevel } from "../model/gpt2.js";
import { benchGenerate, benchTrain, type BenchResult } from "../train/bench.js";
import { BACKEND_OPTIONS, backendFromFlags, commandHelp, num, parse, UsageError } from "./common.js";
import { makeDir } from "../util/fs.js";
import { cacheDir } from "../util/env.js";

export function benchCachePath(): string {
  return cacheDir("bench.json");
}

export const help = commandHelp({
  usage: "gpt2 bench [--model d12] [--batch 4] [--seq 256] [--dtype fp32|bf16] [--generate] [--json]",
  about: "Times training steps (forward, backward, AdamW) on random tokens, or KV-cached generation, and reports\n" +
    "ms/step, tokens/s, GFLOP/s, MFU and peak memory. MFU is against the machine's peak: a GPU's published one, or the\n" +
    "CPU's fp32 FMA peak measured (best of five) and cached, kept at the highest value seen.",
  flags: {
    ...BACKEND_OPTIONS,
    model: { type: "string", arg: "PRESET", help: `the shape: ${Object.keys(PRESETS).join(", ")}`, shown: "d12" },
    batch: { type: "string", arg: "B", help: "rows per step", shown: "4" },
    seq: { type: "string", arg: "T", help: "sequence length", shown: "256" },
    steps: { type: "string", arg: "N", help: "timed steps after one warm-up (the median is reported)", shown: "5" },
    recompute: { type: "string", short: "r", arg: "0|1|2", help: "activation recomputation in backward: 0 none, 1 GELU, 2 GELU and LayerNorm", shown: "1" },
    generate: { type: "boolean", help: "time generation instead: batch 1, a KV cache, prefill included (--dtype bf16: on bf16 weights, as sample --dtype bf16)" },
    tokens: { type: "string", arg: "N", help: "with --generate: tokens to generate", shown: "64" },
    prompt: { type: "string", arg: "N", help: "with --generate: prompt length in tokens", shown: "16" },
    json: { type: "boolean", help: "one JSON object on stdout" },
  },
  more: `The result is also written to the bench cache, which "gpt2 estimate --gpu cpu" reads.`,
});

export async function benchCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, help.flags);
  const preset = values.model ?? "d12";
  if (!PRESETS[preset]) throw new UsageError(`--model expects a preset (${Object.keys(PRESETS).join(", ")}), got "${preset}"`);
  const B = num(values.batch, "batch", 4, { int: true, min: 1 });
  const T = num(values.seq, "seq", 256, { int: true, min: 1, max: 1024 });
  const steps = num(values.steps, "steps", 5, { int: true, min: 1 });
  // -r 1 as gpt2 train and llm.c default to: GELU recomputed in backward
  const recompute = num(values.recompute, "recompute", 1, { int: true, min: 0, max: 2 }) as RecomputeLevel;
  const dtype = (values.dtype as string | undefined) ?? "fp32";
  // generation with --dtype bf16 is inference on bf16 weights (as gpt2 sample --dtype bf16): on float32 kernels on a
  // CPU, on the bf16 backend on CUDA (src/cli/common.ts, inferenceModel)
  const host = values.generate && dtype === "bf16" ? await backendFromFlags({ backend: values.backend, threads: values.threads }) : null;
  const backend = host && host.name !== "cuda" ? host : await backendFromFlags(values);
  const config = makeConfig(preset);
  const { addon } = loadNativeAddon();
  // vdpbf16ps does two multiply-adds per fp32 lane: the bf16 peak is twice the fp32 one
  const fp32Peak = backend.name === "native" && addon ? cpuPeakGflops(addon, { remeasure: true }) : NaN;
  const gpu = backend instanceof CudaBackend ? backend : null;
  const peak = gpu ? gpu.peakTflops() * 1000 : dtype === "bf16" ? 2 * fp32Peak : fp32Peak;
  const log = (s: string) => { if (!values.json) process.stdout.write(s + "\n"); };
  log(gpu ? `backend cuda (${gpu.device}), dtype ${dtype}; published ${dtype} peak ${peak.toFixed(0)} GFLOP/s`
    : backend.device ? `backend ${backend.name} (${backend.device}), dtype ${dtype}; no peak known (MFU n/a)`
    : `backend ${backend.name} (${backend.threads} threads${addon && backend.name === "native" ? `, ${addon.cpuFeatures()}` : ""}), ` +
      `dtype ${dtype}; ${dtype} peak ${peak.toFixed(0)} GFLOP/s (FMA chains on all threads, the best measured on this machine)`);
  let r: BenchResult;
  if (values.generate) {
    const tokens = num(values.tokens, "tokens", 64, { int: true, min: 2 });
    const promptLen = num(values.prompt, "prompt", 16, { int: true, min: 1 });
    log(`generating ${tokens} tokens after a ${promptLen}-token prompt with ${preset}, batch 1, KV cache (prefill included)`);
    r = await benchGenerate(config, backend, tokens, peak, promptLen, 3, dtype === "bf16" ? "bf16" : "f32");
  } else {
    log(`training ${preset} at B=${B}, T=${T} on random tokens, ${steps} timed steps (+1 warm-up)`);
    r = await benchTrain(config, backend, B, T, steps, peak, recompute, (i, ms) => log(`  step ${i}: ${ms.toFixed(0)} ms${i === 0 ? " (warm-up)" : ""}`));
  }
  const out = { model: preset, batch: values.generate ? 1 : B, seq: T, dtype, backend: backend.name, threads: backend.threads, ...r };
  makeDir(path.dirname(benchCachePath()));
  fs.writeFileSync(benchCachePath(), JSON.stringify({ ...out, date: new Date().toISOString() }) + "\n");
  if (values.json) { process.stdout.write(JSON.stringify(out) + "\n"); return; }
  log(`median ${r.ms_per_step.toFixed(1)} ms/step, ${r.tokens_per_s.toFixed(1)} tokens/s, ${r.gflops.toFixed(1)} GFLOP/s, ` +
    `MFU ${Number.isFinite(r.mfu) ? `${(100 * r.mfu).toFixed(1)}%` : "n/a"}, peak RSS ${r.peak_rss_mib.toFixed(0)} MiB (params+grads+AdamW+activations ${r.memory_mib.toFixed(0)} MiB)`);
}
