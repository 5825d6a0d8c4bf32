// The adversarial cases, kept so that they stay fixed: damaged and fuzzed files, bad rows and configs, signals,
// kills mid-write, a full disk, runs that diverge. Each must end in one clear line (or be survived), never a stack
// trace, a hang, NaN passed on, or a lost run.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { test } from "node:test";
import { writeShard } from "../../src/data/shard.js";
import { readCheckpointHeader, saveCheckpoint } from "../../src/io/checkpoint.js";
import { FormatError } from "../../src/io/files.js";
import { saveHF } from "../../src/io/hf.js";
import { saveLlmc } from "../../src/io/llmc.js";
import { loadModel } from "../../src/io/load.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { loadNativeAddon } from "../../src/kernels/native.js";
import { ConfigError } from "../../src/model/config.js";
import { GPT2, ShapeError } from "../../src/model/gpt2.js";
import { Rng } from "../../src/util/rng.js";
import { CLI, tmpDir } from "../helpers.js";

const be = new JsBackend();
const native = loadNativeAddon();
const skipNoNative = native.addon ? undefined : `native backend unavailable (${native.error})`;
const MPIRUN = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].find((p) => fs.existsSync(p));

const gpt2 = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, ...env } });

/** a small random model (vocab 64) and its file in each format */
function smallModel(): GPT2 {
  const m = new GPT2({ blockSize: 16, vocabSize: 64, paddedVocabSize: 128, nLayer: 2, nHead: 2, nEmbd: 16 }, be);
  m.initWeights(new Rng(3));
  return m;
}

/** one shard of documents (EOT + 11 tokens) */
function shard(dir: string, docs = 300): string {
  const toks: number[] = [];
  for (let d = 0; d < docs; d++) toks.push(50256, ...Array.from({ length: 11 }, (_, i) => 100 + ((d * 7 + i) % 500)));
  const file = path.join(dir, "a_train_000001.bin");
  writeShard(file, Uint16Array.from([...toks, 7]));
  return file;
}

async function rejected(f: () => Promise<unknown>): Promise<Error> {
  try { await f(); } catch (e) { return e as Error; }
  assert.fail("expected an error");
}

/** an error a user can act on: one of ours, one line */
function assertClear(e: Error, context: string): void {
  assert.ok(e instanceof FormatError || e instanceof ConfigError || e instanceof ShapeError, `${context}: ${e.name}: ${e.message}`);
  assert.equal(e.message.split("\n").length, 1, `${context}: ${e.message}`);
}

test("fuzzed headers of gpt2ts, llm.c and safetensors files: one clear error each, never a crash or a huge allocation", async () => {
  const dir = tmpDir();
  const m = smallModel();
  const files = { gpt2ts: path.join(dir, "m.gpt2ts"), llmc: path.join(dir, "m.bin"), hf: path.join(dir, "hf") };
  await saveCheckpoint(files.gpt2ts, m, { step: 1 });
  await saveLlmc(m, files.llmc);
  await saveHF(m, files.hf);
  const st = path.join(files.hf, "model.safetensors");
  const rng = new Rng(11);
  const originals = new Map([files.gpt2ts, files.llmc, st].map((f) => [f, fs.readFileSync(f)]));
  let tries = 0, refused = 0;
  for (const [file, bytes] of originals) {
    const headerEnd = file === files.llmc ? 32 : file === st ? 8 + Number(bytes.readBigUInt64LE(0)) : 16 + Number(bytes.readBigUInt64LE(8));
    for (let k = 0; k < 120; k++) {
      const b = Buffer.from(bytes);
      // flip 1-4 bytes of the header (its length field, magic, the JSON or the shape numbers)
      for (let f = 1 + rng.int(4); f > 0; f--) b[rng.int(headerEnd)] = rng.int(256);
      fs.writeFileSync(file, b);
      tries++;
      try {
        await loadModel(file === st ? files.hf : file, be);
      } catch (e) {
        assertClear(e as Error, `${path.basename(file)} try ${k}`);
        refused++;
      }
    }
    fs.writeFileSync(file, bytes);
  }
  assert.ok(refused > tries / 2, `${refused} of ${tries} damaged headers refused`);
  // truncated files
  for (const file of [files.gpt2ts, files.llmc, st]) {
    const bytes = originals.get(file)!;
    for (const cut of [3, 20, Math.floor(bytes.length / 2), bytes.length - 1]) {
      fs.writeFileSync(file, bytes.subarray(0, cut));
      assertClear(await rejected(() => loadModel(file === st ? files.hf : file, be)), `${path.basename(file)} cut at ${cut}`);
    }
    fs.writeFileSync(file, bytes);
  }
});

test("a flipped bit in a checkpoint is reported with the file and section, not trained on", async () => {
  const dir = tmpDir();
  const m = smallModel();
  const file = path.join(dir, "m.gpt2ts");
  await saveCheckpoint(file, m, { step: 1 });
  const h = readCheckpointHeader(file);
  const bytes = fs.readFileSync(file);
  bytes[h.sections.params[0] + 4 * 1000 + 2] ^= 0x10;
  fs.writeFileSync(file, bytes);
  const e = await rejected(() => loadModel(file, be));
  assert.match(e.message, /m\.gpt2ts: section params fails its checksum .*the file is damaged/);
  const r = gpt2(["eval", "loss", "--model", file, "--tokens", "/dev/null"]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^gpt2: .*section params fails its checksum/);
});

test("eval and sample refuse weights that are not finite, naming the tensor", async () => {
  const dir = tmpDir();
  const m = smallModel();
  const w = be.read(m.params);
  w[m.layout.byName.qkvw.offset + m.layout.byName.qkvw.size / 2 + 5] = NaN; // layer 1 of 2
  be.write(m.params, w);
  const file = path.join(dir, "nan.gpt2ts");
  await saveCheckpoint(file, m);
  fs.writeFileSync(path.join(dir, "t.json"), JSON.stringify([[1, 2, 3, 4]]));
  for (const args of [["eval", "loss", "--model", file, "--tokens", path.join(dir, "t.json")], ["sample", "--model", file, "--prompt-ids", "1,2"]]) {
    const r = gpt2([...args, "--backend", "js"]);
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /^gpt2: .*nan\.gpt2ts: the weights are not finite \(first in qkvw of layer 1\)/);
    assert.equal(r.stdout, "");
  }
});

test("bad configs and rows name the file and field: null, absurd sizes, HellaSwag rows", async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, "null.json"), "null");
  let r = gpt2(["train", "--config", path.join(dir, "null.json")]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^gpt2: .*null\.json: expected a JSON object of settings/);
  // an HF config asking for a billion layers
  const hf = path.join(dir, "hf");
  await saveHF(smallModel(), hf);
  const cfg = JSON.parse(fs.readFileSync(path.join(hf, "config.json"), "utf8"));
  fs.writeFileSync(path.join(hf, "config.json"), JSON.stringify({ ...cfg, n_layer: 1e9 }));
  r = gpt2(["sample", "--model", hf, "--prompt", "x"]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^gpt2: .*hf\/config\.json: n_layer 1000000000 is beyond any GPT-2/);
  fs.writeFileSync(path.join(hf, "config.json"), "null");
  assert.match(gpt2(["sample", "--model", hf, "--prompt", "x"]).stderr, /^gpt2: .*config\.json: expected a JSON object/);
  // HellaSwag: a null row, an empty ending
  const row = { ctx: "A man", endings: ["runs", "sits", "eats", "sleeps"], label: 0 };
  await saveHF(smallModel(), hf);
  for (const [line, want] of [["null", /hs\.jsonl:2: expected an object/], [JSON.stringify({ ...row, endings: ["runs", "", "eats", "x"] }), /hs\.jsonl:2: ending 1 is empty/]] as const) {
    fs.writeFileSync(path.join(dir, "hs.jsonl"), JSON.stringify(row) + "\n" + line + "\n");
    r = gpt2(["eval", "hellaswag", "--model", hf, "--data", path.join(dir, "hs.jsonl"), "--backend", "js"]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, want);
  }
});

test("offline HellaSwag during training names the flag that gives a local file", { skip: skipNoNative }, () => {
  const dir = tmpDir();
  const r = gpt2(["train", "-i", shard(dir), "-e", "tiny", "-b", "2", "-t", "16", "-x", "1", "-h", "1", "-v", "1", "-s", "0"],
    { GPT2_HELLASWAG_URL: "http://127.0.0.1:9/hellaswag_val.jsonl", HOME: dir });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^gpt2: cannot download .*offline\? give a local copy of hellaswag_val\.jsonl with --hellaswag-data FILE\)\n$/);
});

test("an output folder that cannot exist (under /proc) fails at once with one line", () => {
  const r = spawnSync(process.execPath, [CLI, "train", "-i", shard(tmpDir()), "-e", "tiny", "-o", "/proc/gpt2ts-test/run"], { encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 1, `status ${r.status} signal ${r.signal}`);
  assert.match(r.stderr, /^gpt2: cannot create \/proc\/gpt2ts-test\/run: \/proc does not accept new folders\n$/);
});

test("a full disk: the checkpoint write fails naming the file, and leaves no partial file", { skip: skipNoNative }, (t) => {
  const dir = tmpDir(), mnt = path.join(dir, "small");
  fs.mkdirSync(mnt);
  const m = spawnSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt], { encoding: "utf8" });
  if (m.status !== 0) { t.skip(`cannot mount a small tmpfs here (${(m.stderr || m.error?.message || "").trim()})`); return; }
  try {
    const r = gpt2(["train", "-i", shard(dir), "-e", "tiny", "-b", "2", "-t", "16", "-x", "2", "-v", "0", "-s", "0", "-o", path.join(mnt, "run")]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^gpt2: writing .*small\/run\/checkpoint_00000002\.gpt2ts: no space left on the device\n$/);
    assert.deepEqual(fs.readdirSync(path.join(mnt, "run")).filter((f) => f.includes(".tmp-")), []);
  } finally {
    spawnSync("umount", [mnt]);
  }
});

test("temporary files of a run killed mid-write are removed at the next start; a live writer's are kept", { skip: skipNoNative }, () => {
  const dir = tmpDir(), out = path.join(dir, "run");
  fs.mkdirSync(out);
  const dead = path.join(out, ".checkpoint_00000004.gpt2ts.tmp-999999999");
  const live = path.join(out, `.checkpoint_00000006.gpt2ts.tmp-${process.pid}`);
  fs.writeFileSync(dead, Buffer.alloc(3 << 20));
  fs.writeFileSync(live, "x");
  const r = gpt2(["train", "-i", shard(dir), "-e", "tiny", "-b", "2", "-t", "16", "-x", "1", "-v", "0", "-s", "0", "-o", out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /removed 3 MiB of temporary files left in .* by a run killed while writing/);
  assert.ok(!fs.existsSync(dead));
  assert.ok(fs.existsSync(live));
});

/** starts a run, sends `signal` once `atStep` is printed; resolves with the exit code and output */
function signalRun(args: string[], signal: NodeJS.Signals, atStep: number, command = process.execPath, pre: string[] = [CLI]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command, [...pre, "train", ...args]);
  let stdout = "", stderr = "", sent = false;
  return new Promise((resolve) => {
    child.stdout.on("data", (d) => {
      stdout += d;
      if (!sent && new RegExp(`step +${atStep}/`).test(stdout)) { sent = true; child.kill(signal); }
    });
    child.stderr.on("data", (d) => { stderr += d; });
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

for (const sig of ["SIGTERM", "SIGHUP"] as const) {
  test(`${sig} finishes the step, writes a checkpoint that resumes, and exits cleanly`, { skip: skipNoNative }, async () => {
    const dir = tmpDir(), out = path.join(dir, "run");
    const args = ["-i", shard(dir), "-e", "tiny", "-b", "2", "-t", "16", "-x", "100000", "-v", "0", "-s", "0", "-o", out];
    const r = await signalRun(args, sig, 3);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`${sig}: finishing this step and writing a checkpoint`));
    const step = Number(/interrupted: writing a checkpoint at step (\d+)/.exec(r.stdout)![1]);
    assert.ok(step >= 3);
    assert.equal(readCheckpointHeader(path.join(out, `checkpoint_${String(step).padStart(8, "0")}.gpt2ts`)).state.step, step);
  });
}

test("SIGUSR1 to mpirun (which forwards it at once): every rank finishes the step, the checkpoint is written, exit 0", { skip: skipNoNative ?? (MPIRUN ? undefined : "mpirun not installed (.ci/run installs openmpi-bin)") }, async () => {
  const dir = tmpDir(), out = path.join(dir, "run");
  const args = ["-i", shard(dir), "-e", "tiny", "-b", "2", "-t", "16", "-x", "100000", "-v", "0", "-s", "0", "-o", out, "--threads", "1"];
  const r = await signalRun(args, "SIGUSR1", 3, MPIRUN!, ["-np", "2", "--allow-run-as-root", "--oversubscribe", process.execPath, CLI]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((r.stderr.match(/SIGUSR1: finishing this step/g) ?? []).length, 2, r.stderr);
  const step = Number(/interrupted: writing a checkpoint at step (\d+)/.exec(r.stdout)![1]);
  assert.equal(readCheckpointHeader(path.join(out, `checkpoint_${String(step).padStart(8, "0")}.gpt2ts`)).state.step, step);
});

test("--on-nan rollback: LR reductions compound, and a run that cannot recover stops with one line saying how far it went", { skip: skipNoNative }, () => {
  const dir = tmpDir();
  const glob = shard(dir);
  const r = gpt2(["train", "-i", glob, "-e", "tiny", "-b", "4", "-t", "32", "-x", "30", "-l", "10", "-v", "0", "-s", "0", "-n", "3", "--on-nan", "rollback", "-o", path.join(dir, "a")]);
  const factors = [...r.stdout.matchAll(/rolled back to .* LR x([\d.e+-]+) of -l/g)].map((m) => Number(m[1]));
  assert.ok(factors.length >= 1, r.stdout + r.stderr);
  for (let i = 1; i < factors.length; i++) assert.ok(factors[i] < factors[i - 1], `LR factors ${factors.join(", ")}`);
  assert.doesNotMatch(r.stdout, /\| loss (nan|inf)/i);
  // an LR no reduction can save: ten rollbacks, then one line (and no advice to use the mode it is in)
  const s = gpt2(["train", "-i", glob, "-e", "tiny", "-b", "4", "-t", "32", "-x", "10", "-l", "1e6", "-v", "0", "-s", "0", "-n", "5", "--on-nan", "rollback", "--rollback-lr-factor", "0.9", "-o", path.join(dir, "b")]);
  assert.equal(s.status, 1);
  assert.match(s.stderr, /^gpt2: step \d+: .*; stopped after 10 rollbacks \(LR x0\.349 of -l, 3\.49e\+5\); lower -l or --rollback-lr-factor\n$/);
  assert.match(s.stderr, /last good checkpoint .*checkpoint_00000000\.gpt2ts kept/);
});

test("a bad line in metrics.jsonl: the dashboard and plot skip it with file:line, healthy runs beside it unharmed", async () => {
  const dir = tmpDir();
  const good = path.join(dir, "good"), bad = path.join(dir, "bad");
  fs.mkdirSync(good);
  fs.mkdirSync(bad);
  const rec = (s: number) => JSON.stringify({ step: s, train_loss: 5 - s / 10 }) + "\n";
  fs.writeFileSync(path.join(good, "metrics.jsonl"), rec(1) + rec(2));
  fs.writeFileSync(path.join(bad, "metrics.jsonl"), rec(1) + '{"step": 2, "train_lo' + "\n" + rec(3));
  const plot = gpt2(["plot", good, bad, "-o", path.join(dir, "p.svg")]);
  assert.equal(plot.status, 0, plot.stderr);
  assert.match(plot.stderr, /^gpt2: warning: .*bad\/metrics\.jsonl:2: skipped a line that is not a metrics record\n$/);
  const server = spawn(process.execPath, [CLI, "dashboard", good, bad, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = "";
      server.stdout!.on("data", (d) => { out += d; const m = /dashboard: (http:\/\/\S+)/.exec(out); if (m) resolve(m[1]); });
      server.on("exit", (c) => reject(new Error(`dashboard exited with ${c}`)));
    });
    const body = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      http.get(url + "runs.json", (res) => {
        let text = "";
        res.on("data", (d) => { text += d; });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      }).on("error", reject);
    });
    assert.equal(body.status, 200);
    const runs = JSON.parse(body.text) as { name: string; metrics: { step: number }[] }[];
    assert.deepEqual(runs.map((r) => [r.name, r.metrics.map((m) => m.step)]), [["good", [1, 2]], ["bad", [1, 3]]]);
  } finally {
    server.kill("SIGINT");
  }
});

test("a resumed run continues its logs: every step once in metrics.jsonl and main.log, a cut last line mended", { skip: skipNoNative }, () => {
  const dir = tmpDir(), out = path.join(dir, "run");
  const args = ["train", "-i", shard(dir), "-j", path.join(dir, "a_train_000001.bin"), "-e", "tiny", "-b", "2", "-t", "16", "-x", "8", "-v", "2", "-m", "1", "-s", "0", "-n", "4", "-o", out];
  // killed (SIGKILL) after step 6: steps 5 and 6 are logged, but the last checkpoint is step 4
  const killed = gpt2(args, { GPT2_TEST_DIE_AT: "0:6" });
  assert.equal(killed.signal ?? killed.status, "SIGKILL");
  fs.appendFileSync(path.join(out, "metrics.jsonl"), '{"step": 7, "train_l'); // as a full disk leaves it
  const r = gpt2([...args, "-y", "1"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /resumed from .*checkpoint_00000004\.gpt2ts at step 4/);
  const records = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const trainSteps = records.filter((m) => m.train_loss !== undefined).map((m) => m.step);
  const valSteps = records.filter((m) => m.val_loss !== undefined).map((m) => m.step);
  assert.deepEqual(trainSteps, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(valSteps, [0, 2, 4, 6, 8]);
  const main = fs.readFileSync(path.join(out, "main.log"), "utf8").trim().split("\n");
  assert.deepEqual(main.filter((l) => / trl:/.test(l)).map((l) => Number(/^s:(\d+)/.exec(l)![1])), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(main.filter((l) => / tel:/.test(l)).map((l) => Number(/^s:(\d+)/.exec(l)![1])), [0, 2, 4, 6, 8]);
});
