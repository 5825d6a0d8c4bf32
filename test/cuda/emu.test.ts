// The CUDA backend on the CPU emulation of CUDA (test/cuda/emu.cc): the real kernel source and the backend's host
// code, run on this machine. This is not a GPU test: test/cuda/gpu.test.ts runs the same checks on a GPU.
import { test } from "node:test";
import { useCudaEmulator } from "./emulator.js";

const emu = useCudaEmulator(); // before anything loads the CUDA driver
const skip = "skip" in emu ? emu.skip : undefined;
const { CudaBackend } = await import("../../src/kernels/cuda.js");
const { runConformance } = await import("../kernels/suite.js");
const suite = await import("./suite.js");

test("emulated CUDA: every kernel against the reference (fp32)", { skip }, () => runConformance(new CudaBackend("fp32"), { tol: 5e-5 }));

test("emulated CUDA: matmuls with bf16 inputs against the reference", { skip }, () =>
  runConformance(new CudaBackend("bf16"), { tol: 2e-2, bf16: true }));

test("emulated CUDA: 20 training steps give the CPU's losses (fp32 within 1e-4, bf16 within 2 %)", { skip }, () => {
  const cpu = suite.trainSteps(suite.cpuBackend(), 20);
  suite.assertLossesClose(suite.trainSteps(new CudaBackend("fp32"), 20), cpu, 1e-4, "fp32");
  suite.assertLossesClose(suite.trainSteps(new CudaBackend("bf16"), 20), cpu, 2e-2, "bf16");
});

test("emulated CUDA: greedy generation with the KV cache gives the CPU's tokens", { skip }, () => suite.greedyMatchesCpu(new CudaBackend("fp32")));

test("emulated CUDA: gpt2 train --backend cuda, checkpoint resumed on the CPU, same samples on both", { skip }, () =>
  suite.cliTrainResumeOnCpu({ ...process.env }, 1e-4));
