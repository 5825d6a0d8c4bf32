// Runs that survive: NaN guard and rollback, spike skipping, shuffled epochs, the memory plan, fine-tuning defaults.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { DataLoader } from "../../src/data/loader.js";
import { writeShard } from "../../src/data/shard.js";
import { readCheckpointHeader } from "../../src/io/checkpoint.js";
import { loadNativeAddon } from "../../src/kernels/native.js";
import { CLI, fixture, tmpDir } from "../helpers.js";

const native = loadNativeAddon();
const skipNoNative = native.addon ? undefined : `native backend unavailable (${native.error})`;

/** a shard of documents: EOT + 11 tokens each, ids tagging (shard, doc) */
function docShards(dir: string, shards: number, docs: number): string {
  for (let s = 0; s < shards; s++) {
    const toks: number[] = [];
    for (let d = 0; d < docs; d++) toks.push(50256, ...Array.from({ length: 11 }, () => 1000 * (s + 1) + d));
    writeShard(path.join(dir, `d_train_${String(s + 1).padStart(6, "0")}.bin`), Uint16Array.from([...toks, 7]));
  }
  return path.join(dir, "d_train_*.bin");
}

function run(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, "train", ...args], { encoding: "utf8", env: { ...process.env, ...env } });
}

test("shuffled epochs: every document once per epoch, a new order each epoch, exact resume mid-epoch 2", () => {
  const dir = tmpDir();
  const glob = docShards(dir, 3, 8); // 3 shards x 8 docs x 12 tokens (+1): windows of B*T = 2*12 tile each shard
  const L = new DataLoader(glob, 2, 12, { shuffle: true, seed: 5 });
  const perShard = L.batchesPerEpoch / 3;
  const epochs: number[][] = [[], []];
  const original = new Map<number, number[][]>();
  for (let s = 0; s < 3; s++) original.set(s, Array.from({ length: 8 }, (_, d) => [50256, ...Array(11).fill(1000 * (s + 1) + d)]));
  for (let e = 0; e < 2; e++) {
    for (let s = 0; s < 3; s++) {
      // one shard's stream: the inputs of its windows, then the last target
      const stream: number[] = [];
      let last: ReturnType<DataLoader["next"]> | null = null;
      for (let w = 0; w < perShard; w++) { last = L.next(); stream.push(...last.inputs); }
      stream.push(last!.targets.at(-1)!);
      epochs[e].push(...stream);
      const docs: number[][] = [];
      for (const t of stream) { if (t === 50256) docs.push([t]); else if (docs.length) docs.at(-1)!.push(t); }
      // every document of the shard exactly once (the shard's trailing token rides with its last document)
      const shardId = Math.floor(stream.find((t) => t !== 50256 && t !== 7)! / 1000) - 1;
      const want = original.get(shardId)!.map((d) => d.join(",")).sort();
      assert.deepEqual(docs.map((d) => d.filter((t) => t !== 7).join(",")).sort(), want);
    }
  }
  assert.notDeepEqual(epochs[0], epochs[1]);
  const seq = new DataLoader(glob, 2, 12);
  assert.notDeepEqual(epochs[0], Array.from({ length: seq.batchesPerEpoch }, () => [...seq.next().inputs]).flat());
  // resume in the middle of epoch 2
  const A = new DataLoader(glob, 2, 12, { shuffle: true, seed: 5 });
  for (let i = 0; i < L.batchesPerEpoch + 3; i++) A.next();
  const B = new DataLoader(glob, 2, 12, { shuffle: true, seed: 5 });
  B.position = A.position;
  for (let i = 0; i < 5; i++) assert.deepEqual([...B.next().inputs], [...A.next().inputs]);
});

test("a learning rate that diverges never prints a NaN loss: one-line diagnosis naming a checkpoint that evaluates finite", { skip: skipNoNative }, () => {
  const dir = tmpDir(), out = path.join(dir, "run");
  const glob = docShards(dir, 1, 300);
  // -l 3 trains a few steps, then the weights give NaN: the checkpoint of that step is refused, the last good one named
  const r = run(["-i", glob, "-e", "tiny", "-b", "4", "-t", "32", "-x", "60", "-l", "3", "-v", "0", "-s", "0", "-n", "1", "--keep", "1", "-o", out]);
  assert.equal(r.status, 1);
  assert.doesNotMatch(r.stdout, /loss (nan|NaN|inf|Infinity)/i);
  assert.match(r.stderr, /^gpt2: step \d+: .*(NaN|Infinity).*; first non-finite value: .+; last good checkpoint .*checkpoint_\d+\.gpt2ts kept; lower the LR \(-l\) or use --on-nan rollback\n$/);
  const good = /last good checkpoint (\S+) kept/.exec(r.stderr)![1];
  // checked independently of the run: the named checkpoint evaluates to a finite loss and samples
  const e = spawnSync(process.execPath, [CLI, "eval", "loss", "--model", good, "--tokens", path.join(dir, "d_train_000001.bin"), "--json"], { encoding: "utf8" });
  assert.equal(e.status, 0, e.stderr);
  assert.ok(Number.isFinite(JSON.parse(e.stdout).loss), e.stdout);
  const s = spawnSync(process.execPath, [CLI, "sample", "--model", good, "--prompt", "Hello", "--max-new-tokens", "5", "--json", "--no-stop"], { encoding: "utf8" });
  assert.equal(s.status, 0, s.stderr);
  assert.equal(JSON.parse(s.stdout).ids.length, 5);
  // every checkpoint left in the folder is good (with --keep 1, the one named)
  assert.deepEqual(fs.readdirSync(out).filter((f) => f.endsWith(".gpt2ts")), [path.basename(good)]);
  // with --on-nan rollback the run goes back, lowers the LR and finishes
  const out2 = path.join(dir, "run2");
  const r2 = run(["-i", glob, "-e", "tiny", "-b", "4", "-t", "32", "-x", "30", "-l", "1e4", "-c", "0.1", "-v", "0", "-s", "0", "-n", "2", "-o", out2, "--on-nan", "rollback", "--rollback-lr-factor", "0.001"]);
  assert.equal(r2.status, 0, r2.stderr);
  assert.match(r2.stdout, /rolled back to .*checkpoint_\d+\.gpt2ts \(step \d+\), LR x/);
  assert.doesNotMatch(r2.stdout, /\| loss (nan|NaN|inf|Infinity)/i);
  assert.equal(readCheckpointHeader(path.join(out2, "checkpoint_00000030.gpt2ts")).state.step, 30);
});

test("a spike is skipped with --skip-update-z: the parameters equal those of the run that skipped that batch's update", { skip: skipNoNative }, () => {
  const dir = tmpDir();
  const glob = docShards(dir, 1, 300);
  const common = ["-i", glob, "-e", "tiny", "-b", "4", "-t", "32", "-x", "26", "-l", "1e-3", "-v", "0", "-s", "0", "--threads", "2"];
  const a = run([...common, "-o", path.join(dir, "a"), "--skip-update-z", "6"], { GPT2_TEST_SPIKE_STEP: "22" });
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stdout, /step 22: skipping the update, loss z [-\d.]+, norm z [\d.]+ \(limit 6\)/);
  const b = run([...common, "-o", path.join(dir, "b")], { GPT2_TEST_SKIP_STEP: "22" });
  assert.equal(b.status, 0, b.stderr);
  const fa = fs.readFileSync(path.join(dir, "a", "checkpoint_00000026.gpt2ts")), fb = fs.readFileSync(path.join(dir, "b", "checkpoint_00000026.gpt2ts"));
  const body = (f: Buffer) => f.subarray(readCheckpointHeaderOffset(f));
  assert.ok(body(fa).equals(body(fb)), "parameters and AdamW state differ");
});

function readCheckpointHeaderOffset(f: Buffer): number {
  const len = Number(f.readBigUInt64LE(8));
  const h = JSON.parse(f.subarray(16, 16 + len).toString("utf8"));
  return h.sections.params[0];
}

test("a run too large for the free memory is refused before allocating, with the plan in the message", () => {
  const dir = tmpDir();
  const glob = docShards(dir, 1, 6000);
  const r = run(["-i", glob, "-e", "d48", "-b", "64", "-t", "1024"]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^gpt2: the run needs params \d+ MiB \+ grads \d+ MiB \+ AdamW \d+ MiB \+ activations \d+ MiB .*= \d+ MiB, but only \d+ MiB are free/);
});

test("fine-tuning from a pretrained checkpoint: automatic LR and warmup, val loss printed before step 0", () => {
  const dir = tmpDir();
  const toks: number[] = [];
  for (let d = 0; d < 40; d++) toks.push(50256, ...Array.from({ length: 15 }, (_, i) => (d * 7 + i) % 50257));
  writeShard(path.join(dir, "f_val_000000.bin"), Uint16Array.from(toks));
  writeShard(path.join(dir, "f_train_000001.bin"), Uint16Array.from(toks));
  const r = run(["-e", fixture("ref-gpt2vocab"), "-i", path.join(dir, "f_train_*.bin"), "-j", path.join(dir, "f_val_*.bin"), "-b", "2", "-t", "16",
    "-x", "3", "-v", "3", "-m", "2", "-s", "0", "--backend", "js"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /optimizer: AdamW lr 0\.00003 \(cosine, warmup 10,.*\(fine-tuning defaults\)/);
  const firstVal = r.stdout.indexOf("val loss"), firstStep = r.stdout.indexOf("step 1/3");
  assert.ok(firstVal >= 0 && firstVal < firstStep, "val loss comes before the first step");
});
