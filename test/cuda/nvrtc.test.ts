// The kernel source compiles with NVIDIA's runtime compiler for the GPUs people train on (A100 = sm_80,
// H100 = sm_90). Needs NVRTC only, not a GPU (.ci/run installs Debian's); skipped with the reason without it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { type CudaAddon, cudaKernelSource } from "../../src/kernels/cuda.js";
import { loadNativeAddon } from "../../src/kernels/native.js";

const addon = loadNativeAddon().addon as unknown as CudaAddon | null;
let skip: string | undefined = addon ? undefined : "native addon not built";
if (addon) {
  try {
    addon.cudaCompile('extern "C" __global__ void probe(float* x) { x[threadIdx.x] = 1.0f; }', 80);
  } catch (e) {
    const msg = (e as Error).message;
    if (!msg.startsWith("NVRTC not found")) throw e;
    skip = msg.split(":")[0];
  }
}

test("the CUDA kernels compile with NVRTC for sm_80 and sm_90", { skip }, () => {
  const source = cudaKernelSource();
  for (const arch of [80, 90]) assert.ok(addon!.cudaCompile(source, arch) > 1000, `sm_${arch}`);
});

test("NVRTC's errors reach the caller with the compiler's log", { skip }, () => {
  assert.throws(() => addon!.cudaCompile('extern "C" __global__ void broken(float* x) { x[0] = undeclared; }', 80),
    /could not compile[\s\S]*undeclared/);
});
