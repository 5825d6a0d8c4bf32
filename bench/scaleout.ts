// Scale-out on this machine: tokens/s of one process against 2 MPI ranks (same global batch, same cores), the
// communication share of a step, measured collective bandwidth, and from those a projection of d12 and d48 step
// times on 8 GPUs beside llm.c's published runs.
// Run: node dist/bench/scaleout.js [--model d12] [--batch 4] [--seq 256] [--steps 10]   (needs mpirun; prints JSON last)
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { makeConfig } from "../src/model/config.js";
import { paramLayout } from "../src/model/layout.js";
import { GPUS } from "../src/train/estimate.js";
import { flopsPerToken } from "../src/train/flops.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const cli = path.join(root, "dist/src/cli/main.js");
const { values } = parseArgs({ options: { model: { type: "string" }, batch: { type: "string" }, seq: { type: "string" }, steps: { type: "string" } } });
const model = values.model ?? "d12", B = Number(values.batch ?? 4), T = Number(values.seq ?? 256), steps = values.steps ?? "10";
const cores = os.availableParallelism();
const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: "1", OMPI_MCA_rmaps_base_oversubscribe: "1" };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "scaleout-"));
const prep = spawnSync(process.execPath, [cli, "prepare", "--input", path.resolve(root, "../shared/data/tinyshakespeare.txt"), "--out", dir,
  "--val-tokens", "8192"], { encoding: "utf8", env });
if (prep.status !== 0) throw new Error(prep.stderr);

interface Run { label: string; tokensPerS: number; msPerStep: number; commMs: number }
function train(label: string, ranks: number, extra: string[], extraEnv: Record<string, string> = {}): Run {
  const out = path.join(dir, label.replace(/\W+/g, "_"));
  const args = [cli, "train", "-i", path.join(dir, "data_train_*.bin"), "-e", model, "-b", String(B / ranks), "-t", String(T),
    "-x", steps, "-v", "0", "-s", "0", "-o", out, ...extra];
  const r = ranks === 1
    ? spawnSync(process.execPath, args, { encoding: "utf8", env: { ...env, GPT2_THREADS: String(cores), ...extraEnv } })
    : spawnSync("mpirun", ["-np", String(ranks), process.execPath, ...args], { encoding: "utf8", env: { ...env, ...extraEnv } });
  if (r.status !== 0) throw new Error(`${label}: ${r.stderr}`);
  const rows = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((m) => m.ms);
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  // the first two steps pay page faults and warm-up (MPI's temporary buffers are first touched then)
  const rest = rows.slice(2);
  const run = { label, tokensPerS: median(rest.map((m) => m.tokens_per_s)), msPerStep: median(rest.map((m) => m.ms)),
    commMs: median(rest.map((m) => m.comm_wait_ms ?? 0)) };
  console.log(`${label.padEnd(34)} ${run.tokensPerS.toFixed(0).padStart(6)} tok/s  ${run.msPerStep.toFixed(0).padStart(6)} ms/step  ` +
    `comm wait ${run.commMs.toFixed(0)} ms (${((100 * run.commMs) / run.msPerStep).toFixed(1)} %)`);
  return run;
}

console.log(`${model} B=${B} T=${T}, ${cores} cores; medians over steps 3..${steps}`);
const runs = [
  train(`1 process, ${cores} threads`, 1, []),
  train("2 ranks x 1 thread, -z 0", 2, []),
  train("2 ranks x 1 thread, -z 0, bucket overlap", 2, [], { GPT2_DDP_OVERLAP: "1" }),
  train("2 ranks x 1 thread, -z 1", 2, ["-z", "1"]),
];

const coll = spawnSync("mpirun", ["-np", "2", process.execPath, path.join(root, "dist/bench/collectives.js"), "--json", "--reps", "5"], { encoding: "utf8", env });
if (coll.status !== 0) throw new Error(coll.stderr);
const collectives = JSON.parse(coll.stdout.trim().split("\n").at(-1)!);
const largest = (op: string) => collectives.results.filter((r: { op: string }) => r.op === op).at(-1);
const ar = largest("all-reduce");
console.log(`all-reduce of ${(ar.floats * 4 / 2 ** 20).toFixed(0)} MiB on 2 ranks: ${ar.ms.toFixed(1)} ms, bus bandwidth ${ar.busGBs.toFixed(2)} GB/s ` +
  `(reduce-scatter ${largest("reduce-scatter").busGBs.toFixed(2)}, all-gather ${largest("all-gather").busGBs.toFixed(2)} GB/s)`);

// Projection for 8 GPUs: compute at llm.c's MFU on that GPU, plus a ring all-reduce of bf16 gradients
// (2 (n-1)/n x 2 bytes per parameter) at an assumed NCCL bus bandwidth, shown unhidden (upper bound).
const NCCL_BUS_GBS: Record<string, number> = { a100: 230, h100: 450 };
const published = [
  { model: "d12", gpu: "a100", batch: 524_288, llmc: 0.283, source: "llm.c #481: GPT-2 124M, 10B tokens, 19,073 steps in 90 min on 8xA100" },
  { model: "d48", gpu: "h100", batch: 1_048_576, llmc: 2.7, source: "llm.c #677: GPT-2 1.5B, 32,000 steps in 24 h on 8xH100" },
];
const projection = published.map((p) => {
  const c = makeConfig(p.model, {});
  const g = GPUS[p.gpu], n = 8;
  const compute = (p.batch * flopsPerToken(c, 1024)) / (n * g.peakFlops * g.mfu);
  const comm = ((2 * (n - 1)) / n) * paramLayout(c).total * 2 / (NCCL_BUS_GBS[p.gpu] * 1e9);
  console.log(`${p.model} on 8x${p.gpu.toUpperCase()}, ${p.batch.toLocaleString()} tokens/step: compute ${compute.toFixed(3)} s (MFU ${g.mfu}) + ` +
    `all-reduce ${(comm * 1000).toFixed(1)} ms at ${NCCL_BUS_GBS[p.gpu]} GB/s = ${(compute + comm).toFixed(3)} s/step; llm.c published ${p.llmc} s/step (${p.source})`);
  return { ...p, computeS: compute, allReduceS: comm, projectedS: compute + comm };
});
const [one, two] = runs;
console.log(`2 ranks vs 1 process: ${(two.tokensPerS / one.tokensPerS).toFixed(2)}x tokens/s`);
console.log(JSON.stringify({ model, B, T, runs, collectives: collectives.results, projection }));
fs.rmSync(dir, { recursive: true, force: true });
