// Tests of the CUDA backend shared by test/cuda/gpu.test.ts (a real GPU; skipped without one) and
// test/cuda/emu.test.ts (the CPU emulation of CUDA in test/cuda/emu.cc).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Backend } from "../../src/kernels/backend.js";
import { loadNativeAddon, NativeBackend } from "../../src/kernels/native.js";
import { makeConfig } from "../../src/model/config.js";
import { KVCache, generate } from "../../src/model/generate.js";
import { GPT2 } from "../../src/model/gpt2.js";
import { AdamW, ADAMW_DEFAULTS, clipGradNorm } from "../../src/train/adamw.js";
import { Rng } from "../../src/util/rng.js";
import { CLI, fixture, tmpDir } from "../helpers.js";

/** A CPU backend to compare with: the native one when built (faster), else the reference. */
export function cpuBackend(): Backend {
  const { addon } = loadNativeAddon();
  return addon ? new NativeBackend(addon, 2) : (() => { throw new Error("native addon missing"); })();
}

/** `steps` AdamW steps of a small model on one fixed batch; the losses of each step. */
export function trainSteps(be: Backend, steps: number, shape = { nLayer: 2, nHead: 2, nEmbd: 32, blockSize: 16, vocabSize: 200 }): number[] {
  const config = makeConfig("tiny", shape);
  const model = new GPT2(config, be);
  model.initWeights(new Rng(11));
  const rng = new Rng(12), B = 2, T = shape.blockSize;
  const inputs = Int32Array.from({ length: B * T }, () => rng.int(shape.vocabSize));
  const targets = Int32Array.from({ length: B * T }, () => rng.int(shape.vocabSize));
  const opt = new AdamW(model, { ...ADAMW_DEFAULTS });
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    model.zeroGrad();
    losses.push(model.forwardBackward(inputs, targets, B, T));
    clipGradNorm(model, 1.0);
    opt.update(3e-3);
  }
  return losses;
}

export function assertLossesClose(got: number[], want: number[], rel: number, what: string): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / Math.abs(want[i]);
    assert.ok(e <= rel, `${what}: step ${i} loss ${got[i]} vs ${want[i]} (relative ${e.toExponential(2)} > ${rel})`);
  }
}

/**
 * Greedy tokens with the KV cache on `be` equal the CPU's greedy tokens from the same weights; `bf16Weights`: both
 * multiply with bf16 copies of the matmul weights (as `--dtype bf16` inference does).
 */
export function greedyMatchesCpu(be: Backend, bf16Weights = false): void {
  const config = makeConfig("tiny", { nLayer: 2, nHead: 2, nEmbd: 32, blockSize: 24, vocabSize: 200 });
  const cpu = new GPT2(config, cpuBackend());
  cpu.initWeights(new Rng(21));
  const gpu = new GPT2(config, be);
  gpu.backend.write(gpu.params, cpu.backend.read(cpu.params));
  if (bf16Weights) {
    cpu.useBf16Weights();
    gpu.useBf16Weights();
  }
  const prompt = [5, 17, 42, 7];
  const opts = { maxNewTokens: 12, temperature: 0 };
  const want = generate(cpu, prompt, 2, new Rng(1), opts, new KVCache(cpu, 2));
  const got = generate(gpu, prompt, 2, new Rng(1), opts, new KVCache(gpu, 2));
  assert.deepEqual(got, want);
}

function trainLosses(dir: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n")) {
    const m = JSON.parse(line);
    if (m.train_loss !== undefined) out.set(m.step, m.train_loss);
  }
  return out;
}

/**
 * `gpt2 train --backend cuda` for 4 steps with a checkpoint at step 2; the same checkpoint resumed on the CPU
 * continues with the losses the GPU run had; the final checkpoint samples the same greedy tokens and evaluates to
 * the same loss on both.
 */
export function cliTrainResumeOnCpu(env: NodeJS.ProcessEnv, rel: number): void {
  const args = (out: string, backend: string) => ["train", "--backend", backend, "-i", fixture("tiny_shard.bin"), "-e", "tiny",
    "--n-layer", "2", "--n-embd", "64", "--n-head", "2", "-b", "2", "-t", "32", "-x", "4", "-l", "1e-3", "-u", "1",
    "-v", "0", "-s", "0", "-n", "2", "-o", out, "--threads", "2"];
  const gpuDir = tmpDir();
  const run = spawnSync(process.execPath, [CLI, ...args(gpuDir, "cuda")], { encoding: "utf8", env });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout + run.stderr, /backend: cuda/);
  const gpu = trainLosses(gpuDir);
  assert.equal(gpu.size, 4);

  const cpuDir = tmpDir();
  fs.copyFileSync(path.join(gpuDir, "checkpoint_00000002.gpt2ts"), path.join(cpuDir, "checkpoint_00000002.gpt2ts"));
  const resumed = spawnSync(process.execPath, [CLI, ...args(cpuDir, "native"), "-y", "1"], { encoding: "utf8", env });
  assert.equal(resumed.status, 0, resumed.stderr);
  const cpu = trainLosses(cpuDir);
  for (const step of [3, 4]) {
    const e = Math.abs(cpu.get(step)! - gpu.get(step)!) / gpu.get(step)!;
    assert.ok(e <= rel, `step ${step}: CPU resumed ${cpu.get(step)} vs GPU ${gpu.get(step)}`);
  }
  const sample = (backend: string) => {
    const r = spawnSync(process.execPath, [CLI, "sample", "--backend", backend, "--model", path.join(gpuDir, "checkpoint_00000004.gpt2ts"),
      "--prompt", "To be", "--max-new-tokens", "8", "--temperature", "0", "--json"], { encoding: "utf8", env });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  assert.equal(sample("cuda"), sample("native"));
  const evalLoss = (backend: string) => {
    const r = spawnSync(process.execPath, [CLI, "eval", "loss", "--backend", backend, "--model", path.join(gpuDir, "checkpoint_00000004.gpt2ts"),
      "--tokens", fixture("tiny_shard.bin"), "--json"], { encoding: "utf8", env });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout).loss as number;
  };
  const [gl, cl] = [evalLoss("cuda"), evalLoss("native")];
  assert.ok(Math.abs(gl - cl) / cl <= rel, `eval loss: GPU ${gl} vs CPU ${cl}`);
}

/** `gpt2 train --backend cuda` through NCCL with one rank (-pi fs -pn 1) gives the single-process losses, -z 0 and 1. */
export function ncclOneRankMatchesSingle(): void {
  const run = (extra: string[]) => {
    const out = tmpDir();
    const r = spawnSync(process.execPath, [CLI, "train", "--backend", "cuda", "-i", fixture("tiny_shard.bin"), "-e", "tiny",
      "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "-b", "2", "-t", "16", "-x", "3", "-v", "0", "-s", "0", "-o", out, ...extra],
    { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return { text: r.stdout, losses: [...r.stdout.matchAll(/step +\d+\/3 \| loss ([\d.]+)/g)].map((m) => Number(m[1])) };
  };
  const single = run([]);
  assert.equal(single.losses.length, 3);
  for (const z of ["0", "1"]) {
    const nccl = run(["-pi", "fs", "-pn", "1", "-pr", "0", "-pf", tmpDir(), "-z", z]);
    assert.match(nccl.text, /data parallel: NCCL \d+\.\d+\.\d+ \(ids shared through /);
    // the reductions are deterministic (no float atomics) and NCCL's sum over one rank is a copy: the same losses
    assert.deepEqual(nccl.losses, single.losses, `-z ${z}`);
  }
}

/**
 * The parameter gradients of one batch, computed twice on `be` with `between()` run in between; bit for bit equal.
 * The batch repeats tokens (8 ids over 64 positions), so the embedding's gradient sums many rows into one: a sum
 * whose order a GPU's scheduling chooses when it is made with float atomics.
 */
export function gradientsRepeat(be: Backend, between: () => void): void {
  const config = makeConfig("tiny", { nLayer: 2, nHead: 2, nEmbd: 64, blockSize: 32, vocabSize: 200 });
  const model = new GPT2(config, be);
  model.initWeights(new Rng(31));
  const rng = new Rng(32), B = 2, T = 32;
  const inputs = Int32Array.from({ length: B * T }, () => rng.int(8));
  const targets = Int32Array.from({ length: B * T }, () => rng.int(200));
  const grads = () => {
    model.zeroGrad();
    model.forwardBackward(inputs, targets, B, T);
    return new Uint32Array(be.read(model.grads!).buffer);
  };
  const first = grads();
  between();
  const second = grads();
  const differ = first.findIndex((bits, i) => bits !== second[i]);
  assert.equal(differ, -1, `gradient ${differ} of ${first.length}: ${new Float32Array(first.buffer)[differ]} then ${new Float32Array(second.buffer)[differ]}`);
}
