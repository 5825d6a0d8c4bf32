// The last stages: preference pairs, the reward model, DPO and RL (GRPO), through the CLI as users run them.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { get_encoding } from "tiktoken";
import { ChatFormatError } from "../../src/chat/template.js";
import { PairData, parsePair } from "../../src/data/pairs.js";
import { readCheckpointHeader, saveCheckpoint } from "../../src/io/checkpoint.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { loadNativeAddon } from "../../src/kernels/native.js";
import { makeConfig } from "../../src/model/config.js";
import { GPT2 } from "../../src/model/gpt2.js";
import { Rng } from "../../src/util/rng.js";
import { CLI, tmpDir } from "../helpers.js";

const native = loadNativeAddon();
const skipNoNative = native.addon ? undefined : `native backend unavailable (${native.error}); too slow on the TS backend`;
const tk = get_encoding("gpt2");
const ids = (s: string) => Array.from(tk.encode_ordinary(s));
const gpt2 = (args: string[], input?: string) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", input });

test("preference pairs: rows 2k / 2k + 1, inputs the whole sequence, targets on the answer, bad rows named", () => {
  const pairs = [
    parsePair({ messages: [{ role: "user", content: "Pick one" }], chosen: "Blue.", rejected: "Red, surely." }, "p.jsonl:1"),
    parsePair({ prompt: "Q: 1+1=", chosen: " 2", rejected: " 3" }, "p.jsonl:2"),
  ];
  const d = new PairData(pairs, { B: 2, T: 32, shuffle: false });
  const b = d.next();
  assert.equal(b.B, 4);
  assert.equal(b.pairs, 2);
  const chosen0 = [50256, 50258, ...ids("Pick one"), 50260, 50259, ...ids("Blue."), 50260];
  assert.deepEqual(Array.from(b.inputs.subarray(0, chosen0.length)), chosen0);
  assert.equal(b.last[0], chosen0.length - 1);
  // targets: the answer's tokens and its <|end|>, predicted from the token before each
  const answerStart = chosen0.indexOf(50259) + 1;
  for (let t = 0; t < b.T; t++) {
    const want = t + 1 >= answerStart && t + 1 < chosen0.length ? chosen0[t + 1] : -1;
    assert.equal(b.targets[t], want, `position ${t}`);
  }
  const rejected1 = [50256, ...ids("Q: 1+1="), ...ids(" 3"), 50256];
  assert.deepEqual(Array.from(b.inputs.subarray(3 * b.T, 3 * b.T + rejected1.length)), rejected1);
  assert.equal(b.last[3], 3 * b.T + rejected1.length - 1);
  // in a multi-turn conversation only the final answer is compared (and trained): earlier turns are context
  const multi = parsePair({ messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello." }, { role: "user", content: "Pick" }],
    chosen: "Blue.", rejected: "Red." }, "p.jsonl:3");
  const trainedIds = multi.chosen.ids.filter((_, i) => multi.chosen.trained[i]);
  assert.deepEqual(trainedIds, [...ids("Blue."), 50260]);
  for (const [row, want] of [
    [{ prompt: "x", chosen: "a", rejected: "a" }, /p\.jsonl:7: "chosen" and "rejected" are the same answer/],
    [{ prompt: "x", chosen: " ", rejected: "a" }, /p\.jsonl:7: an empty "chosen" answer/],
    [{ messages: [{ role: "user", content: "x" }, { role: "assistant", content: "y" }], chosen: "a", rejected: "b" }, /must end before the answer/],
    [{ chosen: "a", rejected: "b" }, /expected "prompt" \(a string\) or "messages"/],
    [{ prompt: "x", chosen: 3, rejected: "b" }, /"chosen" must be a string/],
  ] as const) {
    assert.throws(() => parsePair(row, "p.jsonl:7"), (e: Error) => e instanceof ChatFormatError && want.test(e.message));
  }
});

/** rows of a task a reward model can learn in seconds: answers that repeat the word in the question are preferred */
function echoPairs(n: number, seed: number): string {
  const words = ["apple", "river", "stone", "cloud", "tiger", "maple", "candle", "violin", "harbor", "meadow", "copper", "garden"];
  const rng = new Rng(seed);
  let out = "";
  for (let i = 0; i < n; i++) {
    const w = words[rng.int(words.length)];
    let other = words[rng.int(words.length)];
    while (other === w) other = words[rng.int(words.length)];
    out += JSON.stringify({ messages: [{ role: "user", content: `Say ${w}.` }], chosen: `${w}`, rejected: `${other}` }) + "\n";
  }
  return out;
}

test("gpt2 rm train: a reward model reaches >= 90 % held-out pair accuracy; its checkpoint says what it is; gpt2 rm score", { skip: skipNoNative }, async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, "train.jsonl"), echoPairs(2000, 1));
  fs.writeFileSync(path.join(dir, "val.jsonl"), echoPairs(100, 2));
  const r = gpt2(["rm", "train", "-e", "tiny", "--data", path.join(dir, "train.jsonl"), "--val-data", path.join(dir, "val.jsonl"),
    "-b", "16", "-t", "32", "-x", "150", "-l", "2e-3", "-u", "10", "-v", "150", "-m", "8", "-o", path.join(dir, "rm"), "--threads", "1"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /val loss 0\.693147, val acc 0\.0%, val margin 0\.000 at step 0/); // a zero score row: r = 0 for all
  const rm = path.join(dir, "rm", "checkpoint_00000150.gpt2ts");
  assert.equal(readCheckpointHeader(rm).state.modelKind, "reward-model");
  assert.match(r.stdout, /score answers with it: gpt2 rm score --model/);
  // scored independently of the run's own validation, by gpt2 rm score
  const s = gpt2(["rm", "score", "--model", rm, "--data", path.join(dir, "val.jsonl"), "--json", "--threads", "1"]);
  assert.equal(s.status, 0, s.stderr);
  const rows = s.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(rows.length, 100);
  const acc = rows.filter((x) => x.chosen > x.rejected).length / rows.length;
  assert.ok(acc >= 0.9, `held-out pair accuracy ${acc}`);
  // a reward model is not sampled from, and a language model is not a reward model
  const bad = gpt2(["sample", "--model", rm, "--prompt", "x"]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^gpt2: .*is a reward model \(it scores answers/);
  const lm = new GPT2(makeConfig("tiny", { nLayer: 1 }), new JsBackend());
  lm.initWeights(new Rng(1));
  await saveCheckpoint(path.join(dir, "lm.gpt2ts"), lm);
  const notRm = gpt2(["rm", "score", "--model", path.join(dir, "lm.gpt2ts"), "--data", path.join(dir, "val.jsonl")]);
  assert.equal(notRm.status, 2);
  assert.match(notRm.stderr, /^gpt2: .*lm\.gpt2ts is not a reward model \(make one with gpt2 rm train\)/);
});

test("gpt2 dpo: the reference is the starting model (loss ln 2 at step 0), held-out preference accuracy rises", { skip: skipNoNative }, () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, "train.jsonl"), echoPairs(2000, 3));
  fs.writeFileSync(path.join(dir, "val.jsonl"), echoPairs(100, 4));
  const r = gpt2(["dpo", "-e", "tiny", "--data", path.join(dir, "train.jsonl"), "--val-data", path.join(dir, "val.jsonl"),
    "-b", "16", "-t", "32", "-x", "100", "-l", "1e-3", "-u", "10", "-v", "100", "-m", "8", "--beta", "0.1", "--rpo-alpha", "0.5",
    "-o", path.join(dir, "dpo"), "--threads", "1"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /DPO: beta 0\.1, plus 0\.5 x the chosen answers' NLL \(RPO\); the reference \(the starting model\) scored 2100 pairs/);
  // at step 0 the policy is the reference: every margin is 0, the DPO term ln 2 (plus the NLL term)
  assert.match(r.stdout, /val loss [\d.]+, val acc 0\.0%, val margin 0\.000, val r\+ 0\.000, val r- 0\.000 at step 0/);
  const last = [...r.stdout.matchAll(/val acc ([\d.]+)%, val margin ([-\d.]+).* at step 100/g)].at(-1)!;
  assert.ok(Number(last[1]) >= 80, `held-out preference accuracy ${last[1]} %`);
  assert.ok(Number(last[2]) > 0, `margin ${last[2]}`);
});

test("gpt2 rl: GRPO raises a checker's reward; a checker that throws or returns NaN is reported with the row, never trained on", { skip: skipNoNative }, async () => {
  const dir = tmpDir();
  // a model with the chat tokens, and prompts; the checker rewards answers rich in the letter "e"
  const m = new GPT2(makeConfig("tiny", { nLayer: 2 }), new JsBackend());
  m.initWeights(new Rng(5));
  await m.extendVocab(50261);
  const base = path.join(dir, "base.gpt2ts");
  await saveCheckpoint(base, m);
  const prompts = Array.from({ length: 64 }, (_, i) => JSON.stringify({ messages: [{ role: "user", content: `Say something ${i}.` }], id: i })).join("\n");
  fs.writeFileSync(path.join(dir, "prompts.jsonl"), prompts + "\n");
  fs.writeFileSync(path.join(dir, "check.mjs"), `export function reward(prompt, answer, row) {
  if (row.id === 7) throw new Error("cannot score this one");
  if (row.id === 9) return NaN;
  const e = (answer.match(/e/g) ?? []).length;
  return e / Math.max(1, answer.length);
}\n`);
  const r = gpt2(["rl", "-e", base, "--prompts", path.join(dir, "prompts.jsonl"), "--val-prompts", path.join(dir, "prompts.jsonl"), "--reward", path.join(dir, "check.mjs"),
    "-b", "2", "-t", "40", "--group", "6", "--max-new-tokens", "8", "-x", "40", "-l", "3e-3", "-u", "2", "-v", "40", "-m", "8", "-s", "0", "--no-shuffle",
    "-o", path.join(dir, "rl"), "--threads", "1"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /GRPO: 6 answers per prompt at temperature 1, at most 8 tokens; reward from .*check\.mjs; KL to the starting model x0\.04/);
  assert.match(r.stdout, /warning: .*prompts\.jsonl:8: the reward function failed on an answer \(cannot score this one\); this prompt's answers are left out/);
  assert.match(r.stdout, /warning: .*prompts\.jsonl:10: the reward function failed on an answer \(returned NaN, not a finite number\)/);
  const val = [...r.stdout.matchAll(/val reward ([\d.]+), .* at step (\d+)/g)].map((x) => Number(x[1]));
  assert.equal(val.length, 2);
  assert.ok(val[1] > val[0] + 0.05, `validation reward ${val[0]} -> ${val[1]}`);
  assert.doesNotMatch(r.stdout, /\| loss (nan|NaN)/);
  // rewarded by a reward model instead (its score row's logit at each answer's end): the run goes through
  await saveCheckpoint(path.join(dir, "rm.gpt2ts"), m, { modelKind: "reward-model", scoreRow: 50303 });
  const withRm = gpt2(["rl", "-e", base, "--prompts", path.join(dir, "prompts.jsonl"), "--reward-model", path.join(dir, "rm.gpt2ts"),
    "-b", "2", "-t", "40", "--group", "4", "--max-new-tokens", "6", "-x", "2", "-v", "0", "-s", "0", "-o", path.join(dir, "rl-rm"), "--threads", "1"]);
  assert.equal(withRm.status, 0, withRm.stderr);
  assert.match(withRm.stdout, /reward from the reward model .*rm\.gpt2ts/);
  assert.match(withRm.stdout, /step 2\/2 \| loss [-\d.]+ \| reward [-\d.]+ \|/);
  // a reward model must be one
  const wrong = gpt2(["rl", "-e", base, "--prompts", path.join(dir, "prompts.jsonl"), "--reward-model", base, "-x", "1", "-t", "40", "--max-new-tokens", "8"]);
  assert.equal(wrong.status, 1);
  assert.match(wrong.stderr, /^gpt2: .*base\.gpt2ts is not a reward model \(make one with gpt2 rm train\)/);
  const both = gpt2(["rl", "-e", base, "--prompts", path.join(dir, "prompts.jsonl")]);
  assert.match(both.stderr, /give exactly one reward: --reward-model RM .* or --reward check\.mjs/);
  // a run's checkpoints resume only with the command that wrote them
  const rows = Array.from({ length: 8 }, (_, i) => JSON.stringify({ messages: [{ role: "user", content: `Q${i}` }, { role: "assistant", content: "A" }] }));
  fs.writeFileSync(path.join(dir, "sft.jsonl"), rows.join("\n") + "\n");
  const other = gpt2(["sft", "-e", base, "--data", path.join(dir, "sft.jsonl"), "-b", "2", "-t", "40", "-y", "1", "-o", path.join(dir, "rl")]);
  assert.equal(other.status, 1);
  assert.match(other.stderr, /^gpt2: .*checkpoint_00000040\.gpt2ts was written by a rl run; resume it with the same command \(this one is sft\)\n$/);
});
