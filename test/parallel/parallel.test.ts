// Data-parallel training on MPI: exact collectives, 2 ranks x B=2 equal to 1 rank x B=4 (with and without ZeRO-1),
// exact resume after kill -9 of a 2-rank run, TCP between processes (shared memory off), and the failure modes
// (missing libmpi, a rank that dies or hangs, mismatched flags) ending with an error line, never a hang.
// Needs Open MPI's mpirun (.ci/run installs it); skipped with the reason when it is missing.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { loadNativeAddon } from "../../src/kernels/native.js";
import { CLI, ROOT, tmpDir } from "../helpers.js";

const native = loadNativeAddon();
const mpirun = spawnSync("mpirun", ["--version"], { encoding: "utf8" });
const skip = !native.addon ? `native backend unavailable (${native.error})`
  : mpirun.status !== 0 ? "mpirun not found (install openmpi-bin; .ci/run does)" : undefined;

// root in CI containers; one thread per rank (2 ranks on 2 cores); no stray GPT2_* settings from the caller
const ENV: NodeJS.ProcessEnv = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: "1", GPT2_THREADS: "1",
  OMPI_MCA_rmaps_base_oversubscribe: "1" };
const SHAKESPEARE = path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt");
/** shared memory off: the ranks talk TCP over 127.0.0.1, as two machines would */
const TCP = ["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo"];

let shards = "";
function data(): string {
  if (shards) return shards;
  const dir = tmpDir("gpt2ts-dist-data-");
  const r = spawnSync(process.execPath, [CLI, "prepare", "--input", SHAKESPEARE, "--out", dir, "--val-tokens", "8192", "--doc-separator", "\n\n"],
    { encoding: "utf8", env: ENV });
  assert.equal(r.status, 0, r.stderr);
  shards = path.join(dir, "data_train_*.bin");
  return shards;
}

const base = (out: string, extra: string[] = []) => ["-i", data(), "-e", "tiny", "--n-layer", "2", "-t", "32", "-x", "6",
  "-l", "1e-3", "-c", "0.1", "-v", "0", "-s", "0", "-o", out, ...extra];

function mpi(np: number, args: string[], opts: { mca?: string[]; env?: NodeJS.ProcessEnv } = {}) {
  return spawnSync("mpirun", ["-np", String(np), ...(opts.mca ?? []), process.execPath, CLI, "train", ...args],
    { encoding: "utf8", env: { ...ENV, ...opts.env }, timeout: 120_000 });
}

function single(args: string[]) {
  return spawnSync(process.execPath, [CLI, "train", ...args], { encoding: "utf8", env: ENV, timeout: 120_000 });
}

function losses(out: string): Map<number, number> {
  const m = new Map<number, number>();
  for (const line of fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n")) {
    const r = JSON.parse(line);
    if (typeof r.train_loss === "number") m.set(r.step, r.train_loss);
  }
  return m;
}

function assertSameLosses(a: Map<number, number>, b: Map<number, number>, steps: number[], what: string): void {
  for (const s of steps) {
    assert.ok(a.has(s) && b.has(s), `${what}: step ${s} missing`);
    const rel = Math.abs(a.get(s)! - b.get(s)!) / Math.abs(b.get(s)!);
    assert.ok(rel < 1e-5, `${what}: step ${s} loss ${a.get(s)} vs ${b.get(s)} (rel ${rel.toExponential(2)})`);
  }
}

test("collectives are exact on known per-rank arrays (shared memory and TCP)", { skip }, () => {
  for (const mca of [[], TCP]) {
    const r = spawnSync("mpirun", ["-np", "2", ...mca, process.execPath, path.join(ROOT, "dist/test/parallel/collectives-rank.js")],
      { encoding: "utf8", env: ENV, timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const out = r.stdout.trim().split("\n").map((l) => JSON.parse(l)).sort((a, b) => a.rank - b.rank);
    assert.equal(out.length, 2);
    for (const o of out) {
      assert.equal(o.kind, "mpi");
      assert.deepEqual(o.f32, [3, 30, 1, -1]);
      assert.deepEqual(o.f64, [Math.PI * 1 + Math.PI * 2, 1e-12 + 2e-12]);
      // reduce-scatter: rank r holds sum over ranks of i*(rank+1) = 3i for its part; 11 = 6 + 5
      assert.deepEqual([o.lo, o.hi], o.rank === 0 ? [0, 6] : [6, 11]);
      assert.deepEqual(o.rsMine, Array.from({ length: o.hi - o.lo }, (_, k) => 3 * (o.lo + k)));
      // all-gather: every rank sees rank 0's 0..5 and rank 1's 106..110
      assert.deepEqual(o.ag, [0, 1, 2, 3, 4, 5, 106, 107, 108, 109, 110]);
      assert.deepEqual(o.bc, [7, 8, 9]);
      assert.deepEqual(o.overlapped, [1, 999 * 2 + 1]);
    }
  }
});

test("2 ranks x B=2 train exactly as 1 rank x B=4 with the same -d (ZeRO 0, bucketed overlap, ZeRO 1), memory per rank printed", { skip }, () => {
  const d = ["-d", String(4 * 32 * 2)]; // two accumulation steps
  const one = tmpDir();
  const r1 = single(base(one, ["-b", "4", ...d]));
  assert.equal(r1.status, 0, r1.stderr);
  const ref = losses(one);
  // -z 0 with one all-reduce after backward (MPI's default) and with per-block buckets started during backward
  for (const [z, overlap] of [["0", "0"], ["0", "1"], ["1", "0"]]) {
    const two = tmpDir();
    const r2 = mpi(2, base(two, ["-b", "2", "-z", z, ...d]), { env: { GPT2_DDP_OVERLAP: overlap } });
    assert.equal(r2.status, 0, r2.stderr + r2.stdout);
    assertSameLosses(losses(two), ref, [1, 2, 3, 4, 5, 6], `-z ${z}, overlap ${overlap}`);
    assert.match(r2.stdout, /2 accumulation steps/);
    const mem = /memory per rank with -z 0: .*AdamW ([0-9.]+) MiB.* with -z 1: .*AdamW ([0-9.]+) MiB/.exec(r2.stdout);
    assert.ok(mem && Math.abs(Number(mem[2]) / Number(mem[1]) - 0.5) < 0.02, "ZeRO-1 halves AdamW's memory per rank on 2 ranks");
    assert.match(r2.stdout, z === "1" ? /ZeRO-1 \(AdamW state sharded\)/ : /ZeRO-0/);
    // only rank 0 prints: one line per step
    assert.equal(r2.stdout.match(/^step 6\/6/gm)?.length, 1);
  }
});

test("kill -9 during a 2-rank ZeRO-1 run over TCP, then -y 1 continues exactly; also with 1 rank (re-sharded)", { skip }, async () => {
  const args = (out: string, b: string) => base(out, ["-b", b, "-z", "1", "-x", "12", "-n", "2", "--keep", "8"]);
  const full = tmpDir();
  const rf = mpi(2, args(full, "2"), { mca: TCP });
  assert.equal(rf.status, 0, rf.stderr + rf.stdout);
  const ref = losses(full);

  const dir = tmpDir();
  const child = spawn("mpirun", ["-np", "2", ...TCP, process.execPath, CLI, "train", ...args(dir, "2")],
    { env: ENV, stdio: "ignore", detached: true });
  // kill the whole job (launcher and ranks) as soon as the step-4 checkpoint and its shards exist
  const deadline = Date.now() + 90_000;
  while (!fs.existsSync(path.join(dir, "checkpoint_00000004.gpt2ts"))) {
    assert.ok(Date.now() < deadline, "no checkpoint at step 4");
    await new Promise((r) => setTimeout(r, 50));
  }
  process.kill(-child.pid!, "SIGKILL");
  await new Promise((r) => child.once("exit", r));
  assert.ok(fs.readdirSync(dir).some((f) => /zero1-rank1-of-2/.test(f)), "rank 1's optimizer shard was written");
  const kept = structuredClone(fs.readdirSync(dir));

  const rr = mpi(2, [...args(dir, "2"), "-y", "1"], { mca: TCP });
  assert.equal(rr.status, 0, rr.stderr + rr.stdout);
  assert.match(rr.stdout, /resumed from .*checkpoint_0000000[4-8]\.gpt2ts/);
  const resumedAt = Number(/resumed from .*checkpoint_(\d+)/.exec(rr.stdout)![1]);
  assert.ok(resumedAt >= 4 && resumedAt <= 10, `resumed at ${resumedAt}`);
  assertSameLosses(losses(dir), ref, [5, 6, 7, 8, 9, 10, 11, 12].filter((s) => s > resumedAt), "2-rank resume");

  // the same checkpoint, resumed by one process with B=4: the shards are read back whole
  const solo = tmpDir();
  for (const f of kept) if (/checkpoint_00000004/.test(f)) fs.copyFileSync(path.join(dir, f), path.join(solo, f));
  const rs = single([...args(solo, "4"), "-y", "1"]);
  assert.equal(rs.status, 0, rs.stderr + rs.stdout);
  assert.match(rs.stdout, /saved as ZeRO-1 shards over 2 ranks; read back whole/);
  assertSameLosses(losses(solo), ref, [5, 6, 7, 8, 9, 10, 11, 12], "1-rank resume of a 2-rank checkpoint");
});

test("failures end with one error line, never a hang: missing libmpi, a rank that dies or hangs, mismatched flags", { skip }, () => {
  // launched as 2 ranks but libmpi cannot be loaded
  const noLib = spawnSync(process.execPath, [CLI, "train", ...base(tmpDir(), ["-b", "2"])],
    { encoding: "utf8", env: { ...ENV, OMPI_COMM_WORLD_SIZE: "2", GPT2_LIBMPI: "/nonexistent/libmpi.so.40" }, timeout: 60_000 });
  assert.equal(noLib.status, 1);
  assert.match(noLib.stderr, /^gpt2: launched as 2 ranks, but libmpi could not be loaded \(.*nonexistent.*\); install Open MPI/m);

  // rank 1 stops answering after step 2: rank 0's next collective times out
  const t0 = Date.now();
  const hang = mpi(2, base(tmpDir(), ["-b", "2"]), { env: { GPT2_TEST_HANG_AT: "1:2", GPT2_COMM_TIMEOUT: "3" } });
  assert.notEqual(hang.status, 0);
  assert.match(hang.stderr, /gpt2: rank 0: MPI all-reduce did not complete within 3 s \(GPT2_COMM_TIMEOUT\): another rank died, hangs, or runs different flags/);
  assert.ok(Date.now() - t0 < 60_000);

  // rank 1 is killed after step 2: the job ends (Open MPI notices, or rank 0's deadline does)
  const die = mpi(2, base(tmpDir(), ["-b", "2"]), { env: { GPT2_TEST_DIE_AT: "1:2", GPT2_COMM_TIMEOUT: "5" } });
  assert.notEqual(die.status, 0);
  assert.ok(die.error === undefined, "mpirun had to be killed: a hang");
  assert.doesNotMatch(die.stdout, /^step 6\/6/m);

  // different flags per rank (MPMD launch): refused by every rank before training
  const out = tmpDir();
  const mismatch = spawnSync("mpirun", ["-np", "1", process.execPath, CLI, "train", ...base(out, ["-b", "2"]), ":",
    "-np", "1", process.execPath, CLI, "train", ...base(out, ["-b", "2", "-l", "2e-3"])], { encoding: "utf8", env: ENV, timeout: 60_000 });
  assert.equal(mismatch.status, 1, mismatch.stderr);
  assert.match(mismatch.stderr, /^gpt2: ranks disagree on the training flags or the checkpoint to resume: rank\(s\) 1 differ from rank 0/m);
  assert.doesNotMatch(mismatch.stdout, /^step 1/m);
});
