// SFT data: one conversation per row, padded; the loss normalised over the step's trained tokens; bad rows named.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { renderChat, type Example } from "../../src/chat/template.js";
import { SftData } from "../../src/data/sft.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { loadNativeAddon } from "../../src/kernels/native.js";
import { GPT2 } from "../../src/model/gpt2.js";
import { Rng } from "../../src/util/rng.js";
import { CLI, tmpDir } from "../helpers.js";

const native = loadNativeAddon();
const skipNoNative = native.addon ? undefined : `native backend unavailable (${native.error})`;
const MPIRUN = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].find((p) => fs.existsSync(p));

const chat = (q: string, a: string): Example => ({ kind: "chat", messages: [{ role: "user", content: q }, { role: "assistant", content: a }] });

test("a batch holds one conversation per row from position 0, padded, with targets only on the answer", () => {
  const rows = [chat("Hi", "Hello there, how are you?"), chat("What is the capital of France?", "Paris."), chat("x", "y"), chat("a b c", "d")];
  const d = new SftData(rows, { B: 2, T: 64, shuffle: false });
  const b = d.next();
  const r0 = renderChat(rows[0].kind === "chat" ? rows[0].messages : []), r1 = renderChat(rows[1].kind === "chat" ? rows[1].messages : []);
  assert.equal(b.B, 2);
  assert.equal(b.T, Math.max(r0.ids.length, r1.ids.length) - 1);
  for (const [row, r] of [[0, r0], [1, r1]] as const) {
    for (let t = 0; t < b.T; t++) {
      const i = row * b.T + t;
      if (t + 1 < r.ids.length) {
        assert.equal(b.inputs[i], r.ids[t]);
        assert.equal(b.targets[i], r.trained[t + 1] ? r.ids[t + 1] : -1, `row ${row} position ${t}`);
      } else {
        assert.equal(b.targets[i], -1); // padding: never trained on
      }
    }
  }
  // and the model sees each row alone: row 0's losses are the same with row 1 beside it or not
  const model = new GPT2({ blockSize: 64, vocabSize: 50261, paddedVocabSize: 50304, nLayer: 1, nHead: 2, nEmbd: 8 }, new JsBackend());
  model.initWeights(new Rng(1));
  model.forward(b.inputs, b.targets, 2, b.T);
  const both = model.readLosses().slice(0, b.T);
  model.forward(b.inputs.slice(0, b.T), b.targets.slice(0, b.T), 1, b.T);
  assert.deepEqual(Array.from(model.readLosses()), Array.from(both));
});

test("too-long rows are truncated or skipped as asked, and counted; epochs reshuffle; the position resumes exactly", () => {
  const rows = Array.from({ length: 10 }, (_, i) => chat(`question ${i}`, i % 3 === 0 ? "a long answer ".repeat(20) : `answer ${i}`));
  const cut = new SftData(rows, { B: 2, T: 24, tooLong: "truncate", seed: 3 });
  assert.equal(cut.stats.truncated, 4);
  assert.equal(cut.stats.rows, 10);
  assert.match(cut.describe(), /^10 rows \(\d+ of \d+ tokens trained on\), 4 truncated to 25 tokens$/);
  const skip = new SftData(rows, { B: 2, T: 24, tooLong: "skip", seed: 3 });
  assert.equal(skip.stats.skipped, 4);
  assert.equal(skip.stats.rows, 6);
  // the rows of one epoch, each as its tokens without padding, in the order read
  const epoch = (d: SftData) => Array.from({ length: d.batchesPerEpoch }, () => {
    const b = d.next();
    return Array.from({ length: b.B }, (_, r) => Array.from(b.inputs.slice(r * b.T, (r + 1) * b.T)).join(",").replace(/(,50256)+$/, ""));
  }).flat();
  const e1 = epoch(cut), order1 = cut.position;
  assert.equal(order1.epoch, 1);
  const e2 = epoch(cut);
  assert.equal(new Set(e1).size, 10);
  assert.deepEqual([...e1].sort(), [...e2].sort(), "every row once per epoch");
  assert.notDeepEqual(e1, e2, "a new order each epoch");
  const again = new SftData(rows, { B: 2, T: 24, seed: 3 });
  again.position = { epoch: 1, index: 4 } as typeof order1;
  const at = new SftData(rows, { B: 2, T: 24, seed: 3 });
  for (let i = 0; i < 7; i++) at.next();
  assert.deepEqual(Array.from(again.next().inputs), Array.from(at.next().inputs));
  // two ranks read disjoint rows that together are one rank's batch of 2B
  const one = new SftData(rows, { B: 4, T: 24, shuffle: false });
  const r0 = new SftData(rows, { B: 2, T: 24, shuffle: false, rank: 0, worldSize: 2 });
  const r1 = new SftData(rows, { B: 2, T: 24, shuffle: false, rank: 1, worldSize: 2 });
  const b = one.next(), b0 = r0.next(), b1 = r1.next();
  const rowsOf = (x: typeof b) => Array.from({ length: x.B }, (_, r) => Array.from(x.inputs.slice(r * x.T, r * x.T + x.T)).filter((t) => t !== 50256).join(","));
  assert.deepEqual([...rowsOf(b0), ...rowsOf(b1)], rowsOf(b));
});

/** a JSONL file of conversations whose answers differ a lot in length (so per-micro-batch means would differ) */
function rowsFile(dir: string): string {
  const rng = new Rng(9);
  const lines = Array.from({ length: 32 }, (_, i) => JSON.stringify({
    messages: [{ role: "user", content: `Say something ${i}.` }, { role: "assistant", content: i % 2 ? "ok" : Array.from({ length: 12 }, () => ["sun", "moon", "star", "sky"][rng.int(4)]).join(" ") }],
  }));
  const file = path.join(dir, "rows.jsonl");
  fs.writeFileSync(file, lines.join("\n") + "\n");
  return file;
}

function firstStep(dir: string): { loss: number; norm: number; trained: number } {
  const m = fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).find((r) => r.train_loss !== undefined);
  return { loss: m.train_loss, norm: m.norm, trained: m.trained_tokens };
}

test("the loss is the mean over the step's trained tokens: 2 micro-batches of 1 row = 1 batch of 2 rows", { skip: skipNoNative }, () => {
  const dir = tmpDir();
  const data = rowsFile(dir);
  const common = ["sft", "-e", "tiny", "--data", data, "-t", "48", "-x", "1", "-v", "0", "-s", "0", "--no-shuffle", "-l", "1e-3", "--threads", "1"];
  const a = spawnSync(process.execPath, [CLI, ...common, "-b", "2", "-o", path.join(dir, "a")], { encoding: "utf8" });
  assert.equal(a.status, 0, a.stderr);
  const b = spawnSync(process.execPath, [CLI, ...common, "-b", "1", "-d", "96", "-o", path.join(dir, "b")], { encoding: "utf8" });
  assert.equal(b.status, 0, b.stderr);
  assert.match(b.stdout, /2 rows per step = 2 accumulation steps/);
  const sa = firstStep(path.join(dir, "a")), sb = firstStep(path.join(dir, "b"));
  assert.equal(sb.trained, sa.trained);
  assert.ok(Math.abs(sa.loss - sb.loss) < 1e-5 * sa.loss, `${sa.loss} vs ${sb.loss}`);
  assert.ok(Math.abs(sa.norm - sb.norm) < 1e-4 * sa.norm, `${sa.norm} vs ${sb.norm}`);
  if (!MPIRUN) return;
  // and across ranks: 2 ranks of 1 row = 1 process of 2 rows
  const c = spawnSync(MPIRUN, ["-np", "2", "--allow-run-as-root", "--oversubscribe", process.execPath, CLI, ...common, "-b", "1", "-o", path.join(dir, "c")], { encoding: "utf8" });
  assert.equal(c.status, 0, c.stderr);
  const sc = firstStep(path.join(dir, "c"));
  assert.equal(sc.trained, sa.trained);
  assert.ok(Math.abs(sa.loss - sc.loss) < 1e-5 * sa.loss, `${sa.loss} vs ${sc.loss}`);
  assert.ok(Math.abs(sa.norm - sc.norm) < 1e-4 * sa.norm, `${sa.norm} vs ${sc.norm}`);
});

test("gpt2 sft: bad rows name file:line and nothing is trained; -e is required", () => {
  const dir = tmpDir();
  const file = path.join(dir, "bad.jsonl");
  fs.writeFileSync(file, '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\n{"messages": [{"role": "user"}]}\n');
  const r = spawnSync(process.execPath, [CLI, "sft", "-e", "tiny", "--data", file, "-o", path.join(dir, "run")], { encoding: "utf8" });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^gpt2: .*bad\.jsonl:2: message 1: "content" must be a string\n$/);
  assert.ok(!fs.existsSync(path.join(dir, "run", "metrics.jsonl")));
  const e = spawnSync(process.execPath, [CLI, "sft", "--data", file], { encoding: "utf8" });
  assert.equal(e.status, 2);
  assert.match(e.stderr, /^gpt2: gpt2 sft needs -e MODEL/);
});
