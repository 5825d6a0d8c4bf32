// Every kernel of every available backend against the pure-TS reference (test/kernels/suite.ts).
// An unavailable backend shows as skipped with the reason, never as passed.
import { test } from "node:test";
import type { Backend } from "../../src/kernels/backend.js";
import { CudaBackend, probeCuda } from "../../src/kernels/cuda.js";
import { loadNativeAddon, NativeBackend } from "../../src/kernels/native.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { HostF32 } from "../../src/kernels/host.js";
import { createWebGPUBackend } from "../../src/kernels/webgpu/node.js";
import assert from "node:assert/strict";
import { assertCrossEntropyEdges, assertSettingsPerBackend, runConformance, type HostBackend } from "./suite.js";
import { runBf16Activations } from "./bf16-activations.js";

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

// bf16 activations (--dtype bf16 training): the bf16 GEMM packing bf16 operands as they are and rounding its output,
// on 2 threads and 1; and bf16 tensors on the float32 native backend (its float32 products from bf16 values: the
// path of a few rows, and of a CPU without AVX512-BF16), where the matmuls differ from the reference by rounding only;
// and WebGPU's (--dtype bf16 there: bf16 storage, written through atomic word halves, float32 products)
const noBf16 = !addon ? error : addon.cpuFeatures().includes("bf16=none") ? "CPU has no AVX512-BF16" : false;
for (const [name, make, matmulTol, bf16Attention, skip] of [
  ["native bf16, 2 threads", () => new NativeBackend(addon!, 2, "bf16"), 2e-2, true, noBf16],
  ["native bf16, 1 thread", () => new NativeBackend(addon!, 1, "bf16"), 2e-2, true, noBf16],
  ["bf16 tensors on native fp32", () => new NativeBackend(addon!, 2), 8e-3, false, addon ? false : error],
  ...webgpus.map(([adapter, be]) => [`webgpu on ${adapter}`, () => be as Backend, 8e-3, false, be instanceof Error ? be.message : false] as const),
] as const) {
  test(`bf16 activations: ${name}, every kernel against the reference`, { skip: skip || undefined },
    () => runBf16Activations(make(), { matmulTol, bf16Attention }));
}

test("native cross-entropy: a NaN logit anywhere in a row makes its loss and gradient NaN, as the reference's; masked (-Infinity) columns stay finite", { skip: addon ? undefined : error }, async () => {
  // the AVX-512 row's max (vmaxps drops a NaN operand) and exponential (clamped from below) would each lose it
  for (const be of [new NativeBackend(addon!, 2), new NativeBackend(addon!, 1)]) await assertCrossEntropyEdges(be);
});

test("native bf16: a bf16 output of any width reads its bias up to its last value, no further", { skip: noBf16 || undefined }, () => {
  // the bias ends where a WebAssembly memory ends: the next byte is unmapped, so a read past it faults
  const be = new NativeBackend(addon!, 2, "bf16"), ref = new JsBackend();
  for (const OC of [7, 65, 129]) {
    const N = 13, C = 32;
    const x = Float32Array.from({ length: N * C }, (_, i) => Math.sin(i)), w = Float32Array.from({ length: OC * C }, (_, i) => Math.cos(i));
    const mem = new WebAssembly.Memory({ initial: 1 });
    const bias = new HostF32(mem.buffer, mem.buffer.byteLength - OC * 4, OC);
    bias.set(Float32Array.from({ length: OC }, (_, i) => i / OC));
    const inp = be.alloc(N * C, "bf16"), weight = be.alloc(OC * C), out = be.alloc(N * OC, "bf16");
    be.write(inp, x);
    be.write(weight, w);
    be.matmulForward(out, inp, weight, bias, N, C, OC);
    const want = ref.alloc(N * OC), rinp = ref.alloc(N * C, "bf16"), rw = ref.alloc(OC * C);
    ref.write(rinp, x);
    ref.write(rw, w);
    ref.matmulForward(want, rinp, rw, bias, N, C, OC);
    const got = be.read(out), exp = ref.read(want);
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - exp[i]) <= 2e-2 * (1 + Math.abs(exp[i])), `OC ${OC} [${i}]: ${got[i]} vs ${exp[i]}`);
  }
});

test("native: settings are per backend (an fp32 backend on 1 thread beside a bf16 one on 2 change nothing in each other)", {
  skip: !addon ? error : addon.cpuFeatures().includes("bf16=none") ? "CPU has no AVX512-BF16" : undefined,
}, async () => {
  await assertSettingsPerBackend(() => new NativeBackend(addon!, 1), () => new NativeBackend(addon!, 2, "bf16"), { bf16Attention: true });
  // each backend's kernels run on its own thread count, whichever backend ran last
  const one = new NativeBackend(addon!, 1) as unknown as HostBackend, two = new NativeBackend(addon!, 2) as unknown as HostBackend;
  const x = new Float32Array(4);
  two.scale(x, 4, 2);
  assert.equal(addon!.getThreads(), 2);
  one.scale(x, 4, 2);
  assert.equal(addon!.getThreads(), 1);
  assert.equal(two.threads, 2);
  two.scale(x, 4, 2);
  assert.equal(addon!.getThreads(), 2);
});

test("one kernel list (native/kernels.def): every Backend kernel, exported by the CPU and the CUDA bindings, forwarded by both backends", { skip: addon ? undefined : error }, async () => {
  const { JsBackend } = await import("../../src/kernels/js/backend.js");
  const memory = new Set(["constructor", "alloc", "view", "write", "read", "readAsync", "fill", "copy", "sumSquaresAsync", "scoreRow", "threads"]);
  const kernels = Object.getOwnPropertyNames(JsBackend.prototype).filter((n) => !memory.has(n)).sort();
  const list = addon!.kernelList;
  assert.deepEqual(Object.keys(list).sort(), kernels, "the list names exactly the Backend's kernels");
  const exports = addon as unknown as Record<string, unknown>;
  for (const [name, entry] of Object.entries(list)) {
    assert.equal(typeof exports[entry.cpu], "function", `CPU export ${entry.cpu}`);
    assert.equal(typeof exports[entry.cuda], "function", `CUDA export ${entry.cuda}`);
    const kinds = entry.args.split(" ");
    assert.ok(kinds.every((k) => ["t", "t?", "i", "h"].includes(k)), `${name}: ${entry.args}`);
    // the reference's arity (a trailing default argument not counted) against the list's
    const arity = (JsBackend.prototype as unknown as Record<string, (...a: unknown[]) => unknown>)[name].length;
    assert.ok(kinds.length === arity || kinds.length === arity + 1, `${name}: ${kinds.length} arguments listed, the reference takes ${arity}`);
    // the native backend's method is the forwarded one (or its own, for the matmuls), not the reference's
    assert.notEqual((new NativeBackend(addon!, 1) as unknown as Record<string, unknown>)[name], (JsBackend.prototype as unknown as Record<string, unknown>)[name], name);
  }
});
