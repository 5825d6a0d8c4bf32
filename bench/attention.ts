// Causal attention throughput of the native backend at GPT-2's head shape (C = 768, 12 heads of 64), against this
// machine's measured FMA peak. FLOPs are the products actually done: forward QK^T and PV, backward QK^T again
// (flash-style recompute), dP = dO V^T, dV, dQ and dK; each causal product is 2 * B * NH * hs * T(T+1)/2.
// --dtype bf16: a bf16 backend's attention (bf16 block products, on bf16 q, k, v, as --dtype bf16 training stores
// them), against the bf16 peak (2 x the FMA peak: vdpbf16ps does two products per lane).
// Run: node dist/bench/attention.js [--threads N] [--reps 7] [--dtype fp32|bf16]
import { parseArgs } from "node:util";
import { loadNativeAddon, NativeBackend } from "../src/kernels/native.js";
import { Rng } from "../src/util/rng.js";

const { values } = parseArgs({ options: { threads: { type: "string" }, reps: { type: "string" }, dtype: { type: "string" } } });
const reps = Number(values.reps ?? 7);
const { addon, error } = loadNativeAddon();
if (!addon) throw new Error(error);
const threads = Number(values.threads ?? 2);
const dtype = values.dtype === "bf16" ? "bf16" : "fp32";
const be = new NativeBackend(addon, threads, dtype);
const act = be.activationDtype;
const fma = Math.max(addon.measurePeakGflops(0.3), addon.measurePeakGflops(0.3), addon.measurePeakGflops(0.3));
const peak = dtype === "bf16" ? 2 * fma : fma;
console.log(`threads ${threads}, ${dtype} (activations ${act}), measured ${dtype} peak ${peak.toFixed(1)} GFLOP/s`);
const rng = new Rng(1);
const rand = (n: number) => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  const t = be.alloc(n, act);
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
  // as training allocates them: q, k, v and the output in the activation dtype; lse and the gradients float32
  const qkv = rand(B * T * 3 * C), out = be.alloc(B * T * C, act), lse = be.alloc(B * NH * T);
  const dout = be.alloc(B * T * C), dqkv = be.alloc(B * T * 3 * C);
  be.write(dout, Float32Array.from({ length: B * T * C }, () => rng.normal()));
  const tf = time(() => be.attentionForward(out, lse, qkv, B, T, C, NH));
  const tb = time(() => be.attentionBackward(dqkv, dout, qkv, out, lse, B, T, C, NH));
  const product = 2 * B * NH * hs * (T * (T + 1)) / 2;
  const g = (f: number, ms: number) => `${(f / ms / 1e6).toFixed(1)} GFLOP/s (${((f / ms / 1e6 / peak) * 100).toFixed(0)}%)`;
  console.log(`B=${B} T=${String(T).padEnd(4)}: forward ${tf.toFixed(2)} ms ${g(2 * product, tf)}, ` +
    `backward ${tb.toFixed(2)} ms ${g(5 * product, tb)}`);
}
