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
// WebGPU through both of Dawn's backends that Linux has: Vulkan (a GPU's driver, or Mesa's lavapipe on the CPU) and
// OpenGL ES (Mesa's llvmpipe: WebGPU's compatibility level); each is skipped with the reason where it has no adapter
const webgpus = await Promise.all((["vulkan", "opengles"] as const).map(async (adapter) =>
  [adapter, await createWebGPUBackend({ adapter }).catch((e: Error) => e)] as const));
const candidates: { name: string; make: () => Backend; tol: number; bf16?: boolean; skip: string | false }[] = [
  { name: "native fp32, 1 thread", make: () => new NativeBackend(addon!, 1), tol: 2e-5, skip: addon ? false : error },
  { name: "native fp32, 2 threads", make: () => new NativeBackend(addon!, 2), tol: 2e-5, skip: addon ? false : error },
  {
    name: "native bf16 matmuls", make: () => new NativeBackend(addon!, 2, "bf16"), tol: 2e-2, bf16: true,
    skip: !addon ? error : addon.cpuFeatures().includes("bf16=none") ? "CPU has no AVX512-BF16" : false,
  },
  ...webgpus.map(([adapter, be]) => ({
    name: `webgpu fp32 on ${adapter} (${be instanceof Error ? "no adapter" : be.device})`, make: () => be as Backend, tol: 5e-5,
    skip: be instanceof Error ? be.message : false as const,
  })),
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
