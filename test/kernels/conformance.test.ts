// Every kernel of every available backend against the pure-TS reference (test/kernels/suite.ts).
// An unavailable backend shows as skipped with the reason, never as passed.
import { test } from "node:test";
import type { Backend } from "../../src/kernels/backend.js";
import { CudaBackend, probeCuda } from "../../src/kernels/cuda.js";
import { loadNativeAddon, NativeBackend } from "../../src/kernels/native.js";
import { createWebGPUBackend } from "../../src/kernels/webgpu/node.js";
import assert from "node:assert/strict";
import { assertSettingsPerBackend, runConformance } from "./suite.js";

const { addon, error } = loadNativeAddon();
const gpu = probeCuda();
const noGpu = "error" in gpu ? `no CUDA device (${gpu.error})` : false;
// WebGPU: a GPU where there is one, else Mesa's CPU adapter through Dawn's OpenGL ES backend (what CI has)
const webgpu = await createWebGPUBackend().catch((e: Error) => e);
const candidates: { name: string; make: () => Backend; tol: number; bf16?: boolean; skip: string | false }[] = [
  { name: "native fp32, 1 thread", make: () => new NativeBackend(addon!, 1), tol: 2e-5, skip: addon ? false : error },
  { name: "native fp32, 2 threads", make: () => new NativeBackend(addon!, 2), tol: 2e-5, skip: addon ? false : error },
  {
    name: "native bf16 matmuls", make: () => new NativeBackend(addon!, 2, "bf16"), tol: 2e-2, bf16: true,
    skip: !addon ? error : addon.cpuFeatures().includes("bf16=none") ? "CPU has no AVX512-BF16" : false,
  },
  {
    name: `webgpu fp32 (${webgpu instanceof Error ? "no adapter" : webgpu.device})`, make: () => webgpu as Backend, tol: 5e-5,
    skip: webgpu instanceof Error ? webgpu.message : false,
  },
  { name: "cuda fp32 (GPU)", make: () => new CudaBackend("fp32"), tol: 5e-5, skip: noGpu },
  { name: "cuda bf16 matmuls (GPU)", make: () => new CudaBackend("bf16"), tol: 2e-2, bf16: true, skip: noGpu },
];

for (const c of candidates) {
  test(`conformance: ${c.name}`, { skip: c.skip || undefined }, () => runConformance(c.make(), { tol: c.tol, bf16: c.bf16 }));
}

test("native: settings are per backend (an fp32 backend on 1 thread beside a bf16 one on 2 change nothing in each other)", {
  skip: !addon ? error : addon.cpuFeatures().includes("bf16=none") ? "CPU has no AVX512-BF16" : undefined,
}, async () => {
  await assertSettingsPerBackend(() => new NativeBackend(addon!, 1), () => new NativeBackend(addon!, 2, "bf16"));
  // each backend's kernels run on its own thread count, whichever backend ran last
  const one = new NativeBackend(addon!, 1), two = new NativeBackend(addon!, 2);
  const x = new Float32Array(4);
  two.scale(x, 4, 2);
  assert.equal(addon!.getThreads(), 2);
  one.scale(x, 4, 2);
  assert.equal(addon!.getThreads(), 1);
  assert.equal(two.threads, 2);
  two.scale(x, 4, 2);
  assert.equal(addon!.getThreads(), 2);
});
