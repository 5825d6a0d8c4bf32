import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { readCheckpointHeader, saveCheckpoint, loadCheckpoint } from "../../src/io/checkpoint.js";
import { loadHF, saveHF } from "../../src/io/hf.js";
import { loadLlmc, saveLlmc } from "../../src/io/llmc.js";
import { detectFormat, loadModel } from "../../src/io/load.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { fixture, tmpDir } from "../helpers.js";

const be = new JsBackend();

test("HF -> llm.c .bin -> HF is bit-identical to PyTorch's file; .bin -> HF -> .bin is byte-identical", async () => {
  const dir = tmpDir();
  const hf = loadHF(fixture("ref-gpt2vocab"), be);
  assert.equal(hf.config.paddedVocabSize, 50304);
  await saveLlmc(hf, path.join(dir, "m.bin"));
  const fromBin = loadLlmc(path.join(dir, "m.bin"), be);
  await saveHF(fromBin, path.join(dir, "hf"));
  const orig = fs.readFileSync(fixture("ref-gpt2vocab", "model.safetensors"));
  assert.ok(fs.readFileSync(path.join(dir, "hf", "model.safetensors")).equals(orig), "safetensors bytes differ");
  await saveLlmc(loadHF(path.join(dir, "hf"), be), path.join(dir, "m2.bin"));
  assert.ok(fs.readFileSync(path.join(dir, "m2.bin")).equals(fs.readFileSync(path.join(dir, "m.bin"))));
  // llm.c layout: 256-int32 header, magic 20240326, version 3, padded vocab
  const h = new Int32Array(fs.readFileSync(path.join(dir, "m.bin")).buffer.slice(0, 32));
  assert.deepEqual(Array.from(h), [20240326, 3, 64, 50257, 2, 4, 16, 50304]);
});

test("gpt2ts checkpoints round-trip params and state; formats are detected", async () => {
  const dir = tmpDir();
  const m = loadHF(fixture("ref-small"), be);
  const file = path.join(dir, "c.gpt2ts");
  await saveCheckpoint(file, m, { step: 7 });
  assert.equal(detectFormat(file), "gpt2ts");
  assert.equal(detectFormat(fixture("ref-small")), "hf");
  const { model, header } = loadCheckpoint(file, be);
  assert.deepEqual(header.state, { step: 7 });
  assert.deepEqual(be.read(model.params), be.read(m.params));
  assert.equal((await loadModel(file, be)).numParams, m.numParams);
});

test("malformed files give errors naming the file and what was expected", async () => {
  const dir = tmpDir();
  // HF: a tensor with the wrong shape
  fs.cpSync(fixture("ref-small"), path.join(dir, "hf"), { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "hf", "config.json"), "utf8"));
  cfg.n_embd = 48;
  fs.writeFileSync(path.join(dir, "hf", "config.json"), JSON.stringify(cfg));
  assert.throws(() => loadHF(path.join(dir, "hf"), be), /model\.safetensors: tensor transformer\.wte\.weight has shape \[97,32\], expected \[97,48\]/);
  // safetensors: truncated data section
  const st = fs.readFileSync(fixture("ref-small", "model.safetensors"));
  fs.writeFileSync(path.join(dir, "hf", "model.safetensors"), st.subarray(0, st.length - 100));
  cfg.n_embd = 32;
  fs.writeFileSync(path.join(dir, "hf", "config.json"), JSON.stringify(cfg));
  assert.throws(() => loadHF(path.join(dir, "hf"), be), /past the data section .*truncated file\?/);
  // llm.c: bad magic, truncated
  const bin = path.join(dir, "m.bin");
  await saveLlmc(loadHF(fixture("ref-small"), be), bin);
  const raw = fs.readFileSync(bin);
  fs.writeFileSync(path.join(dir, "short.bin"), raw.subarray(0, raw.length - 8));
  assert.throws(() => loadLlmc(path.join(dir, "short.bin"), be), /short\.bin: \d+ bytes, expected \d+ .*truncated\?/);
  const bad = Buffer.from(raw); bad.writeInt32LE(7, 0);
  fs.writeFileSync(path.join(dir, "bad.bin"), bad);
  assert.throws(() => loadLlmc(path.join(dir, "bad.bin"), be), /bad magic in .*bad\.bin: 7 \(expected 20240326/);
  await assert.rejects(() => loadModel(path.join(dir, "nope"), be), /model .*nope does not exist/);
  // checkpoint cut short
  const ck = path.join(dir, "c.gpt2ts");
  await saveCheckpoint(ck, loadHF(fixture("ref-small"), be));
  fs.writeFileSync(ck, fs.readFileSync(ck).subarray(0, 5000));
  assert.throws(() => readCheckpointHeader(ck), /c\.gpt2ts: section params ends at byte \d+ past the file end/);
});

test("an interrupted checkpoint write leaves the previous file intact", async () => {
  const dir = tmpDir();
  const file = path.join(dir, "c.gpt2ts");
  const m = loadHF(fixture("ref-small"), be);
  await saveCheckpoint(file, m, { step: 1 });
  const before = fs.readFileSync(file);
  // a state that cannot be serialised throws mid-write
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  await assert.rejects(() => saveCheckpoint(file, m, cyclic));
  assert.ok(fs.readFileSync(file).equals(before));
  assert.deepEqual(fs.readdirSync(dir), ["c.gpt2ts"]);
});

test("gpt2 convert to gpt2ts keeps what the weights are: the character vocabulary, a reward model's kind, the trained context", async () => {
  const { spawnSync } = await import("node:child_process");
  const { CLI } = await import("../helpers.js");
  const dir = tmpDir();
  const model = loadHF(fixture("ref-small"), new JsBackend());
  const src = path.join(dir, "char.gpt2ts"), out = path.join(dir, "copy.gpt2ts");
  const tokenizer = { type: "char", chars: "\nabc" };
  await saveCheckpoint(src, model, { tokenizer, context: 8, modelKind: "reward-model", scoreRow: 96, step: 12 });
  const r = spawnSync(process.execPath, [CLI, "convert", src, out], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const state = readCheckpointHeader(out).state;
  assert.deepEqual(state.tokenizer, tokenizer);
  assert.equal(state.context, 8);
  assert.equal(state.modelKind, "reward-model");
  assert.equal(state.scoreRow, 96);
  assert.equal(state.step, undefined, "a run's progress is not the model's identity");
  assert.equal(loadCheckpoint(out, new JsBackend()).model.context, 8);
});
