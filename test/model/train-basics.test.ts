import assert from "node:assert/strict";
import { test } from "node:test";
import { bytesOf, type DType } from "../../src/kernels/backend.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { makeConfig } from "../../src/model/config.js";
import { activationTable, CLASSIFIER_CHUNK, GPT2 } from "../../src/model/gpt2.js";
import { countParams } from "../../src/model/layout.js";
import { AdamW, ADAMW_DEFAULTS, clipGradNorm } from "../../src/train/adamw.js";
import { Rng } from "../../src/util/rng.js";
import { ha } from "../helpers.js";

test("d12 has GPT-2 124M's parameter count and a padded vocab of 50304", () => {
  const c = makeConfig("d12");
  assert.equal(c.paddedVocabSize, 50304);
  assert.equal(countParams(c), 124439808); // GPT-2 small, as published by OpenAI/HF (tied head)
});

test("a fresh d12 gives loss ~ ln(50257) = 10.82 (+ init spread) on random tokens", () => {
  const model = new GPT2(makeConfig("d12", { blockSize: 16 }), new JsBackend());
  model.initWeights(new Rng(1));
  const rng = new Rng(2), B = 1, T = 16;
  const inputs = Int32Array.from({ length: B * T }, () => rng.int(50257));
  const targets = Int32Array.from({ length: B * T }, () => rng.int(50257));
  const loss = model.forward(inputs, targets, B, T);
  // uniform prediction gives ln(50257) = 10.82; logits of std 0.02*sqrt(768) add about var/2 = 0.15 on average
  // (PyTorch's harness model measures 10.95-11.03 at init on random tokens)
  assert.ok(Math.abs(loss - (Math.log(50257) + 0.5 * 0.02 ** 2 * 768)) < 0.25, `loss ${loss}`);
});

test("init follows GPT-2: std 0.02, residual projections 0.02/sqrt(2L), LayerNorm weight 1, biases 0", () => {
  const c = makeConfig("tiny", { vocabSize: 1000 });
  const model = new GPT2(c, new JsBackend());
  model.initWeights(new Rng(5));
  const p = ha(model.params);
  const std = (name: string) => {
    const s = model.layout.byName[name];
    let sq = 0;
    for (let i = s.offset; i < s.offset + s.size; i++) sq += p[i] * p[i];
    return Math.sqrt(sq / s.size);
  };
  assert.ok(Math.abs(std("qkvw") - 0.02) < 0.001);
  assert.ok(Math.abs(std("fcprojw") - 0.02 / Math.sqrt(2 * c.nLayer)) < 0.0005);
  assert.equal(std("qkvb"), 0);
  assert.equal(std("ln1w"), 1);
});

test("a tiny model overfits one fixed batch to loss < 0.05", () => {
  const model = new GPT2(makeConfig("tiny", { nLayer: 2, nEmbd: 64, blockSize: 16, vocabSize: 64 }), new JsBackend());
  model.initWeights(new Rng(7));
  const rng = new Rng(8), B = 2, T = 16;
  const tokens = Int32Array.from({ length: B * (T + 1) }, () => rng.int(64));
  const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) {
    inputs[b * T + t] = tokens[b * (T + 1) + t];
    targets[b * T + t] = tokens[b * (T + 1) + t + 1];
  }
  const opt = new AdamW(model, { ...ADAMW_DEFAULTS });
  let loss = Infinity;
  for (let step = 0; step < 150 && loss >= 0.05; step++) {
    model.zeroGrad();
    loss = model.forwardBackward(inputs, targets, B, T);
    clipGradNorm(model, 1.0);
    opt.update(3e-3);
  }
  loss = model.forward(inputs, targets, B, T);
  assert.ok(loss < 0.05, `loss ${loss}`);
});

test("activations: the table's plan is what allocate() takes, and -r 1 / -r 2 save the GELU and LayerNorm outputs of all layers but one", () => {
  /** counts the bytes allocated through it, by the dtype asked for */
  class Counting extends JsBackend {
    bytes = 0;
    override alloc(n: number, dtype: DType = "f32") { this.bytes += bytesOf(n, dtype); return super.alloc(n, dtype); }
  }
  const c = makeConfig("tiny", { nLayer: 3, vocabSize: 97 });
  const [B, T, L, C] = [2, 8, 3, c.nEmbd];
  const plan = (r: 0 | 1 | 2, dtype: "f32" | "bf16" = "f32") => GPT2.activationBytes(c, B, T, r, CLASSIFIER_CHUNK, dtype);
  for (const dtype of ["f32", "bf16"] as const) {
    for (const r of [0, 1, 2] as const) {
      const be = new Counting(dtype);
      const model = new GPT2(c, be, r);
      const before = be.bytes;
      model.allocate(B, T);
      assert.equal(be.bytes - before, plan(r, dtype), `-r ${r} ${dtype}`);
      assert.equal(model.activationBytes, plan(r, dtype));
      const table = activationTable(c, B, T, r, CLASSIFIER_CHUNK, dtype);
      for (const e of table) assert.equal(e.bytes, e.floats * (e.dtype === "bf16" ? 2 : 4), e.name);
    }
  }
  assert.equal(plan(0) - plan(1), (L - 1) * B * T * 4 * C * 4);
  assert.equal(plan(1) - plan(2), 2 * (L - 1) * B * T * C * 4);
  // bf16: what every layer keeps, and the logits, in half the bytes; statistics and gradients stay float32
  const bf = activationTable(c, B, T, 1, CLASSIFIER_CHUNK, "bf16");
  const kind = (name: string) => bf.find((e) => e.name === name)!.dtype;
  for (const name of ["encoded", "ln1", "qkv", "atty", "residual2", "ln2", "fch", "fchGelu", "residual3", "lnf", "logits"]) assert.equal(kind(name), "bf16", name);
  for (const name of ["ln1Mean", "ln1Rstd", "lse", "losses", "dres", "dln", "dblock"]) assert.equal(kind(name), "f32", name);
  // token ids live beside them on the device, as int32
  for (const name of ["tokens", "targets", "rows"]) assert.equal(kind(name), "i32", name);
  // the bound, at its shape: d12, 4 x 256, -r 1 (gpt2 train's default)
  const d12 = makeConfig("d12"), ratio = GPT2.activationBytes(d12, 4, 256, 1, CLASSIFIER_CHUNK, "bf16") / GPT2.activationBytes(d12, 4, 256, 1, CLASSIFIER_CHUNK);
  assert.ok(ratio <= 0.55, `bf16 activations take ${ratio.toFixed(3)} of float32's`);
});

test("token ids outside the vocabulary are refused in one line, inputs and targets alike (a padded row is not a token)", () => {
  const c = makeConfig("tiny", { nLayer: 1, vocabSize: 97 }); // padded to 128 rows
  const model = new GPT2(c, new JsBackend());
  model.initWeights(new Rng(1));
  const ok = Int32Array.from([1, 2, 3, 4]), ignored = Int32Array.from([1, -1, 3, -1]);
  assert.ok(Number.isFinite(model.forward(ok, ignored, 1, 4)), "negative targets are ignored rows");
  assert.throws(() => model.forward(Int32Array.from([1, 97, 3, 4]), ok, 1, 4), /token id 97 at position 1 is outside the vocabulary \[0, 97\)/);
  assert.throws(() => model.forward(ok, Int32Array.from([1, 2, 100, 4]), 1, 4), /target id 100 at position 2 is outside the vocabulary \[0, 97\)/);
});

test("backwardScores after another forward is refused: that forward replaced the scored activations", () => {
  const model = new GPT2(makeConfig("tiny", { nLayer: 1, vocabSize: 97 }), new JsBackend());
  model.initWeights(new Rng(1));
  model.zeroGrad();
  const inputs = Int32Array.from([1, 2, 3, 4]), rows = Int32Array.of(3);
  model.scores(inputs, 1, 4, rows, 100, true);
  model.backwardScores(Float32Array.of(1)); // the scores' own backward
  model.scores(inputs, 1, 4, rows, 100, true);
  model.forward(inputs, null, 1, 4);
  assert.throws(() => model.backwardScores(Float32Array.of(1)), /needs scores\(\.\.\., grad = true\) first/);
});
