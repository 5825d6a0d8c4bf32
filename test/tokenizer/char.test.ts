import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { prepare } from "../../src/data/prepare.js";
import { readShardHeader, readShardTokens } from "../../src/data/shard.js";
import { readCheckpointHeader } from "../../src/io/checkpoint.js";
import { loadModel, modelTokenizer } from "../../src/io/load.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { CharTokenizer, shardTokenizer } from "../../src/tokenizer/tokenizer.js";
import { CLI, ROOT, tmpDir } from "../helpers.js";

const SHAKESPEARE = path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt");
const gpt2 = (args: string[], input?: string) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", input, cwd: tmpDir() });

test("char tokenizer: nanoGPT's shakespeare_char vocabulary and split, exactly", async () => {
  const text = fs.readFileSync(SHAKESPEARE, "utf8");
  const dir = tmpDir();
  const r = await prepare({ inputs: [{ name: "s", path: SHAKESPEARE }], outDir: dir, name: "s", shardSize: 10_000_000, valTokens: 1, valFraction: 0.1, workers: 1, tokenizer: "char" });
  // nanoGPT's data/shakespeare_char/prepare.py prints these: the sorted distinct characters, and vocab size 65
  const tok = shardTokenizer(path.join(dir, "s_train_000001.bin")) as CharTokenizer;
  assert.equal(tok.chars.join(""), "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
  assert.equal(tok.vocabSize, 66); // + <|endoftext|>
  assert.equal(r.vocabulary, 65);
  // its split: train = the first int(n * 0.9) characters (1,003,854), val = the rest (111,540); here train starts with <|endoftext|>
  const read = (f: string) => { const h = readShardHeader(f); return readShardTokens(h, 0, h.tokens, tok.vocabSize); };
  const train = read(path.join(dir, "s_train_000001.bin")), val = read(path.join(dir, "s_val_000000.bin"));
  const n = text.length, cut = Math.floor(n * 0.9);
  assert.deepEqual([train.length - 1, val.length], [cut, n - cut]);
  assert.equal(train[0], tok.eot);
  assert.equal(tok.decode(train.subarray(1)), text.slice(0, cut));
  assert.equal(tok.decode(val), text.slice(cut));
  // ids are the characters' ranks in the sorted vocabulary (nanoGPT's stoi)
  assert.deepEqual(Array.from(train.subarray(1, 6)), [...text.slice(0, 5)].map((c) => tok.chars.indexOf(c)));
});

test("char tokenizer: round trips, <|endoftext|> only when allowed, unknown characters named", () => {
  const tok = CharTokenizer.fromText(["héllo wörld 👋"]);
  assert.equal(tok.chars.length, 10);
  assert.equal(tok.decode(tok.encode("wöröl 👋")), "wöröl 👋");
  assert.deepEqual(tok.encode("lo<|endoftext|>h", { allowSpecial: true }).slice(2, 3), [tok.eot]);
  assert.throws(() => tok.encode("hi"), /the character "i" \(U\+0069\) is not in this model's 10-character vocabulary/);
  assert.throws(() => tok.decode([99]), /token id 99 is outside this character vocabulary \[0, 11\)/);
});

test("char-level run: a model of the vocabulary's size, the vocabulary and context in its checkpoints, sample decodes characters, GPT-2-only uses refused", async () => {
  const dir = tmpDir();
  const data = path.join(dir, "data"), out = path.join(dir, "run");
  const p = gpt2(["prepare", "tinyshakespeare", "--input", SHAKESPEARE, "--tokenizer", "char", "--out", data]);
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /character-level: a vocabulary of 65 characters \+ <\|endoftext\|>/);
  const t = gpt2(["train", "-i", path.join(data, "tinyshakespeare_train_*.bin"), "-j", path.join(data, "tinyshakespeare_val_*.bin"),
    "-e", "tiny", "-t", "32", "-b", "4", "-x", "6", "-v", "3", "-m", "2", "-s", "6", "-g", "80", "-o", out, "--backend", "js"]);
  assert.equal(t.status, 0, t.stderr);
  assert.match(t.stdout, /vocab=66 \(padded 128\)/);
  const ckpt = path.join(out, "checkpoint_00000006.gpt2ts");
  const state = readCheckpointHeader(ckpt).state as { tokenizer?: { chars: string }; context?: number };
  assert.equal(state.tokenizer?.chars.length, 65);
  assert.equal(state.context, 32);
  const m = await loadModel(ckpt, new JsBackend());
  assert.equal(m.context, 32);
  assert.equal(modelTokenizer(ckpt).vocabSize, 66);
  // 80 characters from a 32-position model: the window slides, every character comes from the vocabulary
  const s = gpt2(["sample", "--model", ckpt, "--prompt", "ROMEO:", "--max-new-tokens", "80", "--no-stop", "--seed", "3", "--backend", "js"]);
  assert.equal(s.status, 0, s.stderr);
  assert.ok(s.stdout.startsWith("ROMEO:") && s.stdout.length >= 80, s.stdout);
  assert.ok([...s.stdout.slice(6).replace(/<\|endoftext\|>/g, "")].every((c) => c === "\n" || (modelTokenizer(ckpt) as CharTokenizer).chars.includes(c)), s.stdout);
  const unknown = gpt2(["sample", "--model", ckpt, "--prompt", "Ω", "--backend", "js"]);
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /^gpt2: the prompt: the character "Ω" \(U\+03A9\) is not in this model's 65-character vocabulary\n$/);
  for (const [args, re] of [
    [["convert", ckpt, path.join(dir, "hf")], /is a character-level model \(65 characters\); the Hugging Face format .* needs GPT-2's tokenizer/],
    [["chat", "--model", ckpt], /is a character-level model .*; gpt2 chat/],
    [["train", "-i", path.join(ROOT, "test/fixtures/tiny_shard.bin"), "-e", ckpt, "-x", "1", "-b", "1", "-t", "32"], /was trained with a 65-character vocabulary, but the data is tokenized with GPT-2's BPE/],
  ] as [string[], RegExp][]) {
    const r = gpt2(args);
    assert.notEqual(r.status, 0, args.join(" "));
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  // a BPE prepare into the same folder takes the vocabulary away with the old shards
  const b = gpt2(["prepare", "tinyshakespeare", "--input", SHAKESPEARE, "--out", data]);
  assert.equal(b.status, 0, b.stderr);
  assert.ok(!fs.existsSync(path.join(data, "tinyshakespeare_tokenizer.json")));
  assert.equal(shardTokenizer(path.join(data, "tinyshakespeare_train_000001.bin")).kind, "gpt2");
});
