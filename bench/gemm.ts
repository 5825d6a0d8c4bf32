// GEMM throughput of the native backend at GPT-2 d12 shapes (B*T = 1024 rows), against this machine's measured
// FMA peak (both best of several runs). Run: node dist/bench/gemm.js [--threads N] [--dtype fp32|bf16] [--reps 9]
import { parseArgs } from "node:util";
import { loadNativeAddon, NativeBackend } from "../src/kernels/native.js";
import { Rng } from "../src/util/rng.js";

const { values } = parseArgs({ options: { threads: { type: "string" }, dtype: { type: "string" }, rows: { type: "string" }, reps: { type: "string" } } });
const reps = Number(values.reps ?? 9);
const { addon, error } = loadNativeAddon();
if (!addon) throw new Error(error);
const threads = Number(values.threads ?? 2), dtype = (values.dtype ?? "fp32") as "fp32" | "bf16";
const be = new NativeBackend(addon, threads, dtype);
// best of three: the machine is shared, and the same holds for the GEMM timings below (fastest of --reps runs)
const peak = Math.max(addon.measurePeakGflops(0.3), addon.measurePeakGflops(0.3), addon.measurePeakGflops(0.3));
console.log(`cpu: ${addon.cpuFeatures()}, threads ${threads}, measured fp32 FMA peak ${peak.toFixed(1)} GFLOP/s ` +
  `(independent FMA chains on every thread)`);
const rng = new Rng(1);
const rand = (n: number) => { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = rng.normal(); return a; };
const N = Number(values.rows ?? 1024);
let totalFlops = 0, totalTime = 0;
for (const [name, C, OC] of [["qkv", 768, 2304], ["attproj", 768, 768], ["fc", 768, 3072], ["fcproj", 3072, 768], ["lm_head", 768, 50304]] as const) {
  const inp = rand(N * C), w = rand(OC * C), b = rand(OC), out = new Float32Array(N * OC), dout = rand(N * OC);
  const dinp = new Float32Array(N * C), dw = new Float32Array(OC * C), db = new Float32Array(OC);
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
