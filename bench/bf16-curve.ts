// fp32 against bf16 matmuls on the same run: the loss curves of `tiny` on Tiny Shakespeare, step by step.
// Run: node dist/bench/bf16-curve.js [--steps 150]
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const cli = path.join(root, "dist/src/cli/main.js");
const { values } = parseArgs({ options: { steps: { type: "string" } } });
const steps = values.steps ?? "150";
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bf16curve-"));
const gpt2 = (...a: string[]) => {
  const r = spawnSync(process.execPath, [cli, ...a], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
};
gpt2("prepare", "tinyshakespeare", "--input", path.resolve(root, "../shared/data/tinyshakespeare.txt"), "--out", path.join(dir, "data"));
const losses: Record<string, number[]> = {};
for (const dtype of ["fp32", "bf16"]) {
  gpt2("train", "-i", path.join(dir, "data/tinyshakespeare_train_*.bin"), "-e", "tiny", "-b", "16", "-t", "128", "-x", steps,
    "-l", "3e-3", "-u", "20", "-q", "0.1", "-c", "0.1", "-v", "0", "-s", "0", "-r", "0", "--dtype", dtype, "-o", path.join(dir, dtype));
  losses[dtype] = fs.readFileSync(path.join(dir, dtype, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    .filter((m) => m.train_loss !== undefined).map((m) => m.train_loss);
}
let maxAbs = 0;
for (let i = 0; i < losses.fp32.length; i++) maxAbs = Math.max(maxAbs, Math.abs(losses.fp32[i] - losses.bf16[i]));
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
for (const i of [0, 9, 49, 99, losses.fp32.length - 1].filter((i) => i < losses.fp32.length)) {
  console.log(`step ${String(i + 1).padStart(4)}: fp32 ${losses.fp32[i].toFixed(4)}  bf16 ${losses.bf16[i].toFixed(4)}`);
}
console.log(`max |fp32 - bf16| over ${losses.fp32.length} steps: ${maxAbs.toFixed(4)}; mean of the last 20: fp32 ${mean(losses.fp32.slice(-20)).toFixed(4)}, bf16 ${mean(losses.bf16.slice(-20)).toFixed(4)}`);
fs.rmSync(dir, { recursive: true, force: true });
