// Training-step and generation benchmarks on random tokens: median ms, tokens/s, achieved GFLOP/s, MFU, peak RSS.

import { bytesOf, type Backend } from "../kernels/backend.js";
import type { GPT2Config } from "../model/config.js";
import { KVCache, sampleToken } from "../model/generate.js";
import { GPT2, type RecomputeLevel } from "../model/gpt2.js";
import { Rng } from "../util/rng.js";
import { AdamW, ADAMW_DEFAULTS, clipFactor, gradNormAsync } from "./adamw.js";
import { flopsPerToken } from "./flops.js";

export interface BenchResult {
  mode: "train" | "generate";
  ms_per_step: number;
  tokens_per_s: number;
  gflops: number;
  /** model FLOPs utilisation against the peak given (0..1); NaN when no peak is known */
  mfu: number;
  peak_gflops: number;
  peak_rss_mib: number;
  memory_mib: number;
  steps: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Times training steps as the loop runs them; each step ends when the gradient norm is back on the host, so a device
 * that queues work (a GPU) is timed to the end of its step.
 */
export async function benchTrain(config: GPT2Config, backend: Backend, B: number, T: number, steps: number, peakGflops: number,
  recompute: RecomputeLevel = 0, onStep?: (i: number, ms: number) => void): Promise<BenchResult> {
  const model = new GPT2(config, backend, recompute);
  model.initWeights(new Rng(1337));
  const opt = new AdamW(model, { ...ADAMW_DEFAULTS, weightDecay: 0.1 });
  model.allocate(B, T);
  model.zeroGrad();
  const memBytes = bytesOf(model.layout.total * 4) + model.activationBytes; // params, grads, AdamW m and v; activations
  const rng = new Rng(42);
  const inputs = Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize));
  const targets = Int32Array.from({ length: B * T }, () => rng.int(config.vocabSize));
  const times: number[] = [];
  for (let i = 0; i < steps + 1; i++) {
    const t0 = performance.now();
    model.zeroGrad();
    await model.forwardBackwardAsync(inputs, targets, B, T);
    opt.update(1e-4, clipFactor(await gradNormAsync(model), 1.0));
    const ms = performance.now() - t0;
    if (i > 0) times.push(ms); // the first step warms caches and page-faults the buffers
    onStep?.(i, ms);
  }
  const ms = median(times);
  const tps = (B * T * 1000) / ms;
  const gflops = (tps * flopsPerToken(config, T)) / 1e9;
  return {
    mode: "train", ms_per_step: ms, tokens_per_s: tps, gflops, mfu: gflops / peakGflops, peak_gflops: peakGflops,
    peak_rss_mib: process.resourceUsage().maxRSS / 1024, memory_mib: memBytes / 2 ** 20, steps,
  };
}

export async function benchGenerate(config: GPT2Config, backend: Backend, tokens: number, peakGflops: number, promptLen = 16, reps = 3,
  weights: "f32" | "bf16" = "f32"): Promise<BenchResult> {
  const model = new GPT2(config, backend);
  model.initWeights(new Rng(1337));
  if (weights === "bf16") model.useBf16Weights();
  const cache = new KVCache(model, 1, Math.min(config.blockSize, promptLen + tokens));
  const rng = new Rng(3);
  const prompt = Int32Array.from({ length: promptLen }, () => rng.int(config.vocabSize));
  // one generation = prefill of the prompt + `tokens` new ones, timed end to end (as the PyTorch harness does);
  // the first repetition warms up
  const times: number[] = [];
  for (let r = 0; r <= reps; r++) {
    const t0 = performance.now();
    cache.reset();
    let logits = await cache.stepAsync(prompt, promptLen);
    for (let i = 0; i < tokens - 1; i++) {
      const tok = sampleToken(logits, config.vocabSize, rng, { temperature: 0 });
      logits = await cache.stepAsync(Int32Array.of(tok), 1);
    }
    sampleToken(logits, config.vocabSize, rng, { temperature: 0 });
    if (r > 0) times.push(performance.now() - t0);
  }
  const ms = median(times) / tokens;
  const tps = 1000 / ms;
  const gflops = (tps * 2 * model.numParams) / 1e9; // forward only: 2 FLOPs per parameter per token
  return {
    mode: "generate", ms_per_step: ms, tokens_per_s: tps, gflops, mfu: gflops / peakGflops, peak_gflops: peakGflops,
    peak_rss_mib: process.resourceUsage().maxRSS / 1024, memory_mib: bytesOf(model.layout.total) / 2 ** 20, steps: tokens,
  };
}
