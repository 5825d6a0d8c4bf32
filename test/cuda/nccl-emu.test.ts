// Multi-GPU data parallelism on the CPU emulation of CUDA and NCCL (test/cuda/emu.cc, whose NCCL ranks are processes
// meeting in shared memory): NCCL's ids shared over MPI and over -pi tcp, the gradient all-reduce overlapped with
// backward (per-block buckets), ZeRO-1 with shards of unequal length. N ranks x B = 1 process x N*B on every step.
// A GPU machine has one GPU, so this is where the multi-rank NCCL path runs before a multi-GPU machine.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { test } from "node:test";
import { CLI, fixture, tmpDir } from "../helpers.js";
import { useCudaEmulator } from "./emulator.js";

const emu = useCudaEmulator();
const mpirun = spawnSync("mpirun", ["--version"], { encoding: "utf8" });
const skip = "skip" in emu ? emu.skip : undefined;
const skipMpi = skip ?? (mpirun.status !== 0 ? "mpirun not found (install openmpi-bin; .ci/run does)" : undefined);
const ENV: NodeJS.ProcessEnv = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: "1",
  OMPI_MCA_rmaps_base_oversubscribe: "1", GPT2_COMM_TIMEOUT: "60" };

/** tiny model on the test shard; B per rank, -d the same for every run */
const args = (B: number, d: number, extra: string[] = []) => ["train", "--backend", "cuda", "-i", fixture("tiny_shard.bin"), "-e", "tiny",
  "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "-b", String(B), "-t", "16", "-d", String(d), "-x", "3", "-l", "1e-3",
  "-v", "0", "-s", "0", ...extra];

function losses(stdout: string): number[] {
  return [...stdout.matchAll(/step \d+\/3 \| loss ([\d.]+)/g)].map((m) => Number(m[1]));
}

function assertClose(got: number[], want: number[], what: string): void {
  assert.equal(got.length, 3, `${what}: ${got.length} step lines`);
  for (let i = 0; i < 3; i++) {
    const rel = Math.abs(got[i] - want[i]) / want[i];
    assert.ok(rel <= 1e-5, `${what}: step ${i + 1} loss ${got[i]} vs ${want[i]}`);
  }
}

function single(B: number, d: number): number[] {
  const r = spawnSync(process.execPath, [CLI, ...args(B, d)], { encoding: "utf8", env: ENV, timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  return losses(r.stdout);
}

test("emulated NCCL over MPI: 2 ranks x B=2 = 1 x B=4 (overlapped all-reduce); 3 ranks x B=1 = 1 x B=3 with -z 1 (unequal shards)", { skip: skipMpi }, () => {
  const run = (np: number, B: number, d: number, extra: string[]) => {
    const r = spawnSync("mpirun", ["-np", String(np), process.execPath, CLI, ...args(B, d, extra)], { encoding: "utf8", env: ENV, timeout: 180_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`data parallel: NCCL [\\d.]+ \\(ids shared over MPI\\), ${np} ranks; ZeRO-${extra.includes("1") ? 1 : 0}`));
    return losses(r.stdout);
  };
  assertClose(run(2, 2, 64, ["-z", "0"]), single(4, 64), "2 ranks, -z 0");
  assertClose(run(3, 1, 48, ["-z", "1"]), single(3, 48), "3 ranks, -z 1");
});

const freePort = () => new Promise<number>((resolve) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
});

/** one rank of a -pi tcp job, launched by hand */
function tcpRank(r: number, port: number, env: NodeJS.ProcessEnv = ENV) {
  return new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args(2, 64, ["-pi", "tcp", "-pn", "2", "-pr", String(r), "-ps", `127.0.0.1:${port}`])],
      { env });
    let out = "", err = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (err += c));
    child.on("exit", (code) => resolve({ code, out, err }));
  });
}

test("emulated NCCL over -pi tcp (no MPI): 2 processes launched by hand x B=2 = 1 x B=4", { skip }, async () => {
  const port = await freePort();
  const [zero, one] = await Promise.all([tcpRank(0, port), tcpRank(1, port)]);
  assert.equal(zero.code, 0, zero.err);
  assert.equal(one.code, 0, one.err);
  assert.match(zero.out, /data parallel: NCCL [\d.]+ \(ids shared by TCP from 127\.0\.0\.1:\d+\), 2 ranks/);
  assert.equal(one.out, "", "only rank 0 prints");
  assertClose(losses(zero.out), single(4, 64), "-pi tcp");
});

test("emulated NCCL over -pi tcp: when rank 1 dies, rank 0 ends with a one-line error within the deadline", { skip }, async () => {
  const port = await freePort();
  const env = { ...ENV, GPT2_COMM_TIMEOUT: "5", GPT2_TEST_DIE_AT: "1:1" };
  const t0 = Date.now();
  const [zero, one] = await Promise.all([tcpRank(0, port, env), tcpRank(1, port, env)]);
  assert.equal(one.code, null, "rank 1 was killed");
  assert.equal(zero.code, 1);
  assert.match(zero.err, /^gpt2: rank 0: NCCL [^\n]*\n$/);
  assert.ok(Date.now() - t0 < 60_000);
});

test("emulated NCCL, 2 ranks with -z 1: the ZeRO-1 checkpoint resumes on 2 GPU ranks and on one CPU process alike", { skip: skipMpi }, () => {
  const out = tmpDir(), cpuOut = tmpDir();
  const mpi = (extra: string[]) => spawnSync("mpirun", ["-np", "2", process.execPath, CLI, ...args(1, 32, ["-z", "1", "-n", "2", "-o", out, ...extra])],
    { encoding: "utf8", env: ENV, timeout: 180_000 });
  const first = mpi(["-x", "4"]);
  assert.equal(first.status, 0, first.stderr);
  assert.ok(fs.existsSync(path.join(out, "checkpoint_00000004.zero1-rank1-of-2.gpt2ts")));
  for (const f of fs.readdirSync(out)) if (f.startsWith("checkpoint_00000004")) fs.copyFileSync(path.join(out, f), path.join(cpuOut, f));
  const gpu = mpi(["-x", "6", "-y", "1"]);
  assert.equal(gpu.status, 0, gpu.stderr);
  // one CPU process takes both ranks' rows: -b 2
  const cpu = spawnSync(process.execPath, [CLI, ...args(2, 32, ["-z", "1", "-n", "2", "-o", cpuOut, "-x", "6", "-y", "1"]).map((a) => (a === "cuda" ? "native" : a))],
    { encoding: "utf8", env: ENV, timeout: 120_000 });
  assert.equal(cpu.status, 0, cpu.stderr);
  assert.match(cpu.stdout, /optimizer state was saved as ZeRO-1 shards over 2 ranks/);
  const resumed = (s: string) => [...s.matchAll(/step ([56])\/6 \| loss ([\d.]+)/g)].map((m) => Number(m[2]));
  const g = resumed(gpu.stdout), c = resumed(cpu.stdout);
  assert.equal(g.length, 2);
  assert.equal(c.length, 2);
  for (let i = 0; i < 2; i++) assert.ok(Math.abs(g[i] - c[i]) / g[i] <= 1e-5, `step ${5 + i}: GPU ranks ${g[i]}, CPU ${c[i]}`);
});
