// Where a training step's time goes: wraps a backend so every kernel call is timed, runs a few d12 steps, and prints
// the share of each kernel. Run: node dist/bench/profile.js [--model d12] [--batch 4] [--seq 256] [--dtype fp32]
import { parseArgs } from "node:util";
import type { Backend } from "../src/kernels/backend.js";
import { createBackend } from "../src/kernels/select.js";
import { makeConfig } from "../src/model/config.js";
import { GPT2 } from "../src/model/gpt2.js";
import { AdamW, ADAMW_DEFAULTS, clipFactor, gradNorm } from "../src/train/adamw.js";
import { Rng } from "../src/util/rng.js";

const { values } = parseArgs({ options: { model: { type: "string" }, batch: { type: "string" }, seq: { type: "string" }, dtype: { type: "string" }, recompute: { type: "string" } } });
const inner = createBackend({ name: "native", dtype: (values.dtype ?? "fp32") as "fp32" | "bf16" });
const totals = new Map<string, number>();
const timed = new Proxy(inner, {
  get(target, prop, recv) {
    const v = Reflect.get(target, prop, recv);
    if (typeof v !== "function" || ["alloc", "view", "read", "write"].includes(String(prop))) return typeof v === "function" ? v.bind(target) : v;
    return (...args: unknown[]) => {
      const t0 = performance.now();
      const r = v.apply(target, args);
      const key = String(prop) + (prop === "matmulForward" || prop === "matmulBackward" ? ` OC=${args[prop === "matmulForward" ? 6 : 8]}` : "");
      totals.set(key, (totals.get(key) ?? 0) + performance.now() - t0);
      return r;
    };
  },
}) as Backend;
const B = Number(values.batch ?? 4), T = Number(values.seq ?? 256);
const model = new GPT2(makeConfig(values.model ?? "d12"), timed, Number(values.recompute ?? 0) as 0 | 1 | 2);
model.initWeights(new Rng(1));
const opt = new AdamW(model, { ...ADAMW_DEFAULTS, weightDecay: 0.1 });
const rng = new Rng(2);
const inputs = Int32Array.from({ length: B * T }, () => rng.int(50257)), targets = inputs.map(() => rng.int(50257));
let wall = 0;
for (let s = 0; s < 3; s++) {
  if (s === 1) totals.clear();
  const t0 = performance.now();
  model.zeroGrad();
  model.forwardBackward(inputs, targets, B, T);
  opt.update(1e-4, clipFactor(gradNorm(model), 1));
  if (s > 0) wall += performance.now() - t0;
}
const sum = [...totals.values()].reduce((a, b) => a + b, 0);
console.log(`per step: ${(wall / 2).toFixed(0)} ms wall, ${(sum / 2).toFixed(0)} ms in kernels`);
for (const [k, v] of [...totals].sort((a, b) => b[1] - a[1])) console.log(`${k.padEnd(28)} ${(v / 2).toFixed(1).padStart(8)} ms ${((100 * v) / sum).toFixed(1).padStart(5)}%`);
