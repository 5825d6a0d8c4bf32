// fp32 against bf16 on the same run: the loss curves of `tiny` on Tiny Shakespeare, step by step: float32; --dtype
// bf16 (bf16 matmuls, activations stored in bf16); and --dtype bf16 with GPT2_ACTIVATIONS=f32 (bf16 matmuls on float32
// activations, what --dtype bf16 was before activations were stored in bf16). Two heads of 64 (GPT-2's head width), so
// a bf16 backend's attention runs its bf16 block products as it does in every GPT-2 size.
// Run: node dist/bench/bf16-curve.js [--steps 300]
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const cli = path.join(root, "dist/src/cli/main.js");
const { values } = parseArgs({ options: { steps: { type: "string" } } });
const steps = values.steps ?? "300";
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bf16curve-"));
const gpt2 = (extraEnv: Record<string, string>, ...a: string[]) => {
  const r = spawnSync(process.execPath, [cli, ...a], { encoding: "utf8", env: { ...process.env, ...extraEnv } });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
};
gpt2({}, "prepare", "tinyshakespeare", "--input", path.resolve(root, "../shared/data/tinyshakespeare.txt"), "--out", path.join(dir, "data"));
const runs = { fp32: ["fp32", {}], bf16: ["bf16", {}], "bf16-f32act": ["bf16", { GPT2_ACTIVATIONS: "f32" }] } as const;
const losses: Record<string, number[]> = {};
for (const [name, [dtype, extra]] of Object.entries(runs)) {
  gpt2(extra, "train", "-i", path.join(dir, "data/tinyshakespeare_train_*.bin"), "-e", "tiny", "--n-head", "2", "-b", "16", "-t", "128", "-x", steps,
    "-l", "3e-3", "-u", "20", "-q", "0.1", "-c", "0.1", "-v", "0", "-s", "0", "-r", "0", "--dtype", dtype, "-o", path.join(dir, name));
  losses[name] = fs.readFileSync(path.join(dir, name, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    .filter((m) => m.train_loss !== undefined).map((m) => m.train_loss);
}
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
const f = losses.fp32, n = f.length, W = 20;
for (const i of [0, 9, 49, 99, 199, n - 1].filter((i, k, all) => i < n && all.indexOf(i) === k)) {
  console.log(`step ${String(i + 1).padStart(4)}: fp32 ${f[i].toFixed(4)}  bf16 ${losses.bf16[i].toFixed(4)}  bf16 on f32 activations ${losses["bf16-f32act"][i].toFixed(4)}`);
}
// single steps wander apart (one batch, chaotic trajectories); the curve is the mean over windows of W steps
for (const name of ["bf16", "bf16-f32act"]) {
  const b = losses[name];
  let maxAbs = 0, worst = 0;
  for (let i = 0; i < n; i++) maxAbs = Math.max(maxAbs, Math.abs(f[i] - b[i]));
  for (let i = 0; i + W <= n; i += W) worst = Math.max(worst, Math.abs(mean(b.slice(i, i + W)) - mean(f.slice(i, i + W))) / mean(f.slice(i, i + W)));
  console.log(`${name.padEnd(12)} max |fp32 - ${name}| over ${n} steps ${maxAbs.toFixed(4)}; worst ${W}-step window ${(100 * worst).toFixed(2)} % ` +
    `of fp32's; mean of the last ${W}: fp32 ${mean(f.slice(-W)).toFixed(4)}, ${name} ${mean(b.slice(-W)).toFixed(4)} (${(100 * (mean(b.slice(-W)) / mean(f.slice(-W)) - 1)).toFixed(2)} %)`);
}
fs.rmSync(dir, { recursive: true, force: true });
