// Causal attention throughput of the native backend at GPT-2's head shape (C = 768, 12 heads of 64), against this
// machine's measured FMA peak. FLOPs are the products actually done: forward QK^T and PV, backward QK^T again
// (flash-style recompute), dP = dO V^T, dV, dQ and dK; each causal product is 2 * B * NH * hs * T(T+1)/2.
// Run: node dist/bench/attention.js [--threads N] [--reps 7]
import { parseArgs } from "node:util";
import { loadNativeAddon, NativeBackend } from "../src/kernels/native.js";
import { Rng } from "../src/util/rng.js";

const { values } = parseArgs({ options: { threads: { type: "string" }, reps: { type: "string" } } });
const reps = Number(values.reps ?? 7);
const { addon, error } = loadNativeAddon();
if (!addon) throw new Error(error);
const threads = Number(values.threads ?? 2);
const be = new NativeBackend(addon, threads, "fp32");
const peak = Math.max(addon.measurePeakGflops(0.3), addon.measurePeakGflops(0.3), addon.measurePeakGflops(0.3));
console.log(`threads ${threads}, measured fp32 FMA peak ${peak.toFixed(1)} GFLOP/s`);
const rng = new Rng(1);
const rand = (n: number) => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  const t = be.alloc(n);
  be.write(t, a);
  return t;
};
const time = (f: () => void) => {
  f();
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) { const t0 = performance.now(); f(); ts.push(performance.now() - t0); }
  return Math.min(...ts);
};
const C = 768, NH = 12, hs = C / NH;
for (const [B, T] of [[4, 256], [1, 1024], [1, 2048]] as const) {
  const qkv = rand(B * T * 3 * C), out = be.alloc(B * T * C), lse = be.alloc(B * NH * T);
  const dout = rand(B * T * C), dqkv = be.alloc(B * T * 3 * C);
  const tf = time(() => be.attentionForward(out, lse, qkv, B, T, C, NH));
  const tb = time(() => be.attentionBackward(dqkv, dout, qkv, out, lse, B, T, C, NH));
  const product = 2 * B * NH * hs * (T * (T + 1)) / 2;
  const g = (f: number, ms: number) => `${(f / ms / 1e6).toFixed(1)} GFLOP/s (${((f / ms / 1e6 / peak) * 100).toFixed(0)}%)`;
  console.log(`B=${B} T=${String(T).padEnd(4)}: forward ${tf.toFixed(2)} ms ${g(2 * product, tf)}, ` +
    `backward ${tb.toFixed(2)} ms ${g(5 * product, tb)}`);
}
