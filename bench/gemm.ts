// GEMM throughput of the native backend at GPT-2 d12 shapes (B*T = 1024 rows), against this machine's measured
// FMA peak (both best of several runs). Run: node dist/bench/gemm.js [--threads N] [--dtype fp32|bf16] [--reps 9]
// [--activations f32|bf16] (the storage of the activations multiplied: bf16 as --dtype bf16 training stores them,
// the weights and their gradients float32 either way)
import { parseArgs } from "node:util";
import { loadNativeAddon, NativeBackend } from "../src/kernels/native.js";
import { Rng } from "../src/util/rng.js";

const { values } = parseArgs({ options: { threads: { type: "string" }, dtype: { type: "string" }, rows: { type: "string" }, reps: { type: "string" }, activations: { type: "string" } } });
const reps = Number(values.reps ?? 9);
const { addon, error } = loadNativeAddon();
if (!addon) throw new Error(error);
const threads = Number(values.threads ?? 2), dtype = (values.dtype ?? "fp32") as "fp32" | "bf16";
const acts = (values.activations ?? "f32") as "f32" | "bf16";
const be = new NativeBackend(addon, threads, dtype, acts);
// best of three: the machine is shared, and the same holds for the GEMM timings below (fastest of --reps runs)
const fp32Peak = Math.max(addon.measurePeakGflops(0.3), addon.measurePeakGflops(0.3), addon.measurePeakGflops(0.3));
// bf16's vdpbf16ps does two multiply-adds per float32 lane: twice the FMA peak
const peak = dtype === "bf16" ? 2 * fp32Peak : fp32Peak;
console.log(`cpu: ${addon.cpuFeatures()}, threads ${threads}, measured fp32 FMA peak ${fp32Peak.toFixed(1)} GFLOP/s, ${dtype} peak ${peak.toFixed(1)} ` +
  `(independent FMA chains on every thread); activations ${acts}`);
const rng = new Rng(1);
/** a tensor of n normal values: an activation (`acts` storage) or float32 */
const rand = (n: number, dtype: "f32" | "bf16" = "f32") => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  const t = be.alloc(n, dtype);
  be.write(t, a);
  return t;
};
const N = Number(values.rows ?? 1024);
let totalFlops = 0, totalTime = 0;
for (const [name, C, OC] of [["qkv", 768, 2304], ["attproj", 768, 768], ["fc", 768, 3072], ["fcproj", 3072, 768], ["lm_head", 768, 50304]] as const) {
  // what training stores in bf16 under --dtype bf16: the matmul's input and output; its gradients stay float32
  // except the lm_head's dout (the dlogits, written over the bf16 logits)
  const inp = rand(N * C, acts), w = rand(OC * C), b = rand(OC), out = be.alloc(N * OC, acts);
  const dout = rand(N * OC, name === "lm_head" ? acts : "f32");
  const dinp = be.alloc(N * C), dw = be.alloc(OC * C), db = be.alloc(OC);
  const time = (f: () => void) => {
    f();
    const ts: number[] = [];
    for (let r = 0; r < reps; r++) { const t0 = performance.now(); f(); ts.push(performance.now() - t0); }
    return Math.min(...ts);
  };
  const tf = time(() => be.matmulForward(out, inp, w, b, N, C, OC));
  const tb = time(() => be.matmulBackward(dinp, dw, db, dout, inp, w, N, C, OC));
  const flops = 2 * N * C * OC;
  totalFlops += 3 * flops; totalTime += tf + tb;
  const g = (f: number, ms: number) => (f / ms / 1e6).toFixed(1);
  console.log(`${name.padEnd(8)} ${N}x${C}x${OC}: forward ${g(flops, tf)} GFLOP/s (${((flops / tf / 1e6 / peak) * 100).toFixed(0)}%), ` +
    `backward ${g(2 * flops, tb)} GFLOP/s (${((2 * flops / tb / 1e6 / peak) * 100).toFixed(0)}%)`);
}
console.log(`all: ${(totalFlops / totalTime / 1e6).toFixed(1)} GFLOP/s = ${((totalFlops / totalTime / 1e6 / peak) * 100).toFixed(0)}% of peak`);
