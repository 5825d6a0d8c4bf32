// The CUDA backend on a real GPU. Without one every test here reports "skipped: no CUDA device" (CI has none;
// bench/gpu-check.sh runs them on a lent GPU machine). test/cuda/emu.test.ts runs the same checks on a CPU emulation.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { CudaBackend, probeCuda } from "../../src/kernels/cuda.js";
import { assertSettingsPerBackend, runConformance } from "../kernels/suite.js";
import { runBf16Activations } from "../kernels/bf16-activations.js";
import { CLI } from "../helpers.js";
import * as suite from "./suite.js";

const gpu = probeCuda();
const skip = "error" in gpu ? `no CUDA device (${gpu.error})` : undefined;

test("GPU: tiny-shaped model, 20 training steps give the CPU's losses (fp32 within 1e-3, bf16 within 2 %)", { skip }, () => {
  const cpu = suite.trainSteps(suite.cpuBackend(), 20);
  suite.assertLossesClose(suite.trainSteps(new CudaBackend("fp32"), 20), cpu, 1e-3, "fp32");
  suite.assertLossesClose(suite.trainSteps(new CudaBackend("bf16"), 20), cpu, 2e-2, "bf16");
});

test("GPU: every kernel against the reference (fp32; bf16 matmuls)", { skip }, async () => {
  await runConformance(new CudaBackend("fp32"), { tol: 1e-4 });
  await runConformance(new CudaBackend("bf16"), { tol: 2e-2, bf16: true });
});

test("GPU --dtype bf16: activations stored in bf16, every kernel against the reference's bf16 storage", { skip }, () =>
  runBf16Activations(new CudaBackend("bf16"), { matmulTol: 2e-2, bf16Attention: true, bf16Scores: true }));

test("GPU: settings are per backend (cuBLAS's precision follows the backend whose kernel runs)", { skip }, () =>
  assertSettingsPerBackend(() => new CudaBackend("fp32"), () => new CudaBackend("bf16")));

test("GPU: one batch's gradients twice, bit for bit the same (deterministic reductions)", { skip }, () =>
  suite.gradientsRepeat(new CudaBackend("fp32"), () => {}));

test("GPU: greedy generation with the KV cache gives the CPU's tokens", { skip }, () => suite.greedyMatchesCpu(new CudaBackend("fp32")));

test("GPU --dtype bf16: greedy generation on bf16 weights gives the CPU's tokens on them", { skip }, () =>
  suite.greedyMatchesCpu(new CudaBackend("bf16"), true));

test("GPU: gpt2 train --backend cuda, checkpoint resumed on the CPU, same samples and eval loss on both", { skip }, () =>
  suite.cliTrainResumeOnCpu({ ...process.env }, 1e-3));

test("GPU: NCCL with one rank (-pi fs -pn 1) trains the same steps as the single-process CUDA path", { skip }, () =>
  suite.ncclOneRankMatchesSingle());

test("without a GPU, --backend cuda fails in one line that says so", { skip: skip ? undefined : "a CUDA device is present" }, () => {
  const r = spawnSync(process.execPath, [CLI, "sample", "--backend", "cuda", "--model", "nowhere", "--prompt", "x"], { encoding: "utf8" });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^gpt2: --backend cuda: (no NVIDIA driver|no CUDA device|the NVIDIA driver)[^\n]*\n$/);
});
