// Ours against the PyTorch harness (../shared/bench/pytorch/bench.py), alternating in one run, as ratios of medians;
// at llm.c's own CPU shape (d12-train-64: d12, B=4, T=64) also against llm.c's train_gpt2.c (../shared/bench/llmc).
// The peer runs at its best: the same thread count as ours (--threads, default all cores), and OpenBLAS left to pick
// its fastest kernels (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which some machines set and which pin Debian's OpenBLAS
// to its AVX2 kernels, are removed); the kernel it ran and its threads are printed beside every ratio.
// Run: node dist/bench/compare.js [--rounds 2] [--only d12-train,tiny-train,...] [--dtype fp32|bf16] [--threads N]
// Needs Debian's python3-torch (see ../shared/bench/README.md); prints one table and a JSON line.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const harness = path.resolve(root, "../shared/bench/pytorch/bench.py");
const llmcCpu = path.resolve(root, "../shared/bench/llmc/run_cpu.sh");
const { values } = parseArgs({ options: { rounds: { type: "string" }, only: { type: "string" }, dtype: { type: "string" }, steps: { type: "string" }, threads: { type: "string" } } });
const rounds = Number(values.rounds ?? 2), dtype = values.dtype ?? "fp32", steps = values.steps ?? "4";
const threads = String(values.threads ?? os.availableParallelism());
if (!fs.existsSync(harness)) throw new Error(`PyTorch harness not found at ${harness}`);

interface Case { name: string; model: string; B: number; T: number; gen?: boolean; llmc?: boolean }
const CASES: Case[] = [
  { name: "d12-train", model: "d12", B: 4, T: 256 },
  { name: "d12-train-1024", model: "d12", B: 1, T: 1024 }, // GPT-2's own context length: attention's share grows with T
  { name: "d12-train-64", model: "d12", B: 4, T: 64, llmc: true }, // train_gpt2.c's fixed shape (fp32 only)
  { name: "d6-train", model: "d6", B: 8, T: 256 },
  { name: "tiny-train", model: "tiny", B: 16, T: 128 },
  { name: "d12-generate", model: "d12", B: 1, T: 64, gen: true },
];
const only = values.only?.split(",");

function ours(c: Case): { tps: number; rss: number } {
  // generation as the harness does it: a 16-token prompt, then 64 new tokens with the KV cache, timed end to end
  const args = c.gen ? ["bench", "--model", c.model, "--generate", "--tokens", "64", "--prompt", "16", "--json"]
    : ["bench", "--model", c.model, "--batch", String(c.B), "--seq", String(c.T), "--steps", steps, "--dtype", dtype, "--json"];
  const r = spawnSync(process.execPath, [path.join(root, "dist/src/cli/main.js"), ...args, "--threads", threads], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`gpt2 bench failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  return { tps: j.tokens_per_s, rss: j.peak_rss_mib };
}

function torch(c: Case): { tps: number; rss: number; core: string; threads: number } {
  const args = c.gen ? [harness, "gen", "--config", c.model, "--dtype", dtype, "--threads", threads]
    : [harness, "train", "--config", c.model, "--B", String(c.B), "--T", String(c.T), "--dtype", dtype, "--steps", steps, "--threads", threads];
  const env: Record<string, string | undefined> = { ...process.env, LD_LIBRARY_PATH: "/usr/lib/x86_64-linux-gnu/openblas-openmp", OMP_NUM_THREADS: threads };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync("/usr/bin/python3", args, { encoding: "utf8", env });
  if (r.status !== 0) throw new Error(`PyTorch harness failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  return { tps: c.gen ? j.kv_tok_per_s : j.tok_per_s_median, rss: j.ru_maxrss_mib, core: String(j.openblas_core ?? "?"), threads: Number(j.threads) };
}

function llmc(): { tps: number } {
  // builds train_gpt2.c (gcc -Ofast -march=native), makes its inputs, times 8 steps after a warm-up
  const r = spawnSync("bash", [llmcCpu, "8", threads], { encoding: "utf8", cwd: root });
  if (r.status !== 0) throw new Error(`llm.c's run_cpu.sh failed: ${r.stderr}`);
  return { tps: JSON.parse(r.stdout.trim().split("\n").at(-1)!).tokens_per_s };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows: Record<string, unknown>[] = [];
for (const c of CASES.filter((c) => !only || only.includes(c.name))) {
  const o: { tps: number; rss: number }[] = [], t: ReturnType<typeof torch>[] = [], l: number[] = [];
  const withLlmc = c.llmc && dtype === "fp32" && fs.existsSync(llmcCpu);
  for (let r = 0; r < rounds; r++) {
    // alternate which goes first, so drift on a shared machine hits both
    if (r % 2 === 0) { o.push(ours(c)); t.push(torch(c)); } else { t.push(torch(c)); o.push(ours(c)); }
    if (withLlmc) l.push(llmc().tps);
  }
  const row = {
    case: c.name, dtype, ours_tok_s: median(o.map((x) => x.tps)), torch_tok_s: median(t.map((x) => x.tps)),
    ours_rss_mib: Math.max(...o.map((x) => x.rss)), torch_rss_mib: Math.max(...t.map((x) => x.rss)),
    threads: Number(threads), torch_threads: t[0].threads, torch_openblas_core: [...new Set(t.map((x) => x.core))].join("/"),
  };
  const llmcTps = l.length ? median(l) : undefined;
  rows.push({ ...row, speed_ratio: row.ours_tok_s / row.torch_tok_s, rss_ratio: row.ours_rss_mib / row.torch_rss_mib,
    ...(llmcTps ? { llmc_tok_s: llmcTps, llmc_ratio: row.ours_tok_s / llmcTps } : {}) });
  console.log(`${c.name.padEnd(16)} ${dtype}: ours ${row.ours_tok_s.toFixed(1)} tok/s, PyTorch ${row.torch_tok_s.toFixed(1)} tok/s, ` +
    `ratio ${(row.ours_tok_s / row.torch_tok_s).toFixed(2)}x; peak RSS ${row.ours_rss_mib.toFixed(0)} vs ${row.torch_rss_mib.toFixed(0)} MiB ` +
    `(${(row.ours_rss_mib / row.torch_rss_mib).toFixed(2)}x); PyTorch on ${row.torch_threads} threads, OpenBLAS core ${row.torch_openblas_core}` +
    (llmcTps ? `; llm.c train_gpt2.c ${llmcTps.toFixed(1)} tok/s, ratio ${(row.ours_tok_s / llmcTps).toFixed(2)}x` : ""));
}
console.log(JSON.stringify({ date: new Date().toISOString(), cpu: os.cpus()[0]?.model, threads: Number(threads), rounds, rows }));
