import assert from "node:assert/strict";
import { test } from "node:test";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { makeConfig } from "../../src/model/config.js";
import { activationTable, GPT2 } from "../../src/model/gpt2.js";
import { countParams } from "../../src/model/layout.js";
import { AdamW, ADAMW_DEFAULTS, clipGradNorm } from "../../src/train/adamw.js";
import { Rng } from "../../src/util/rng.js";

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
  const p = model.params as Float32Array;
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
  /** counts the floats allocated through it */
  class Counting extends JsBackend { floats = 0; override alloc(n: number) { this.floats += n; return super.alloc(n); } }
  const c = makeConfig("tiny", { nLayer: 3, vocabSize: 97 });
  const [B, T, L, C] = [2, 8, 3, c.nEmbd];
  const plan = (r: 0 | 1 | 2) => GPT2.activationFloats(c, B, T, r, 256);
  for (const r of [0, 1, 2] as const) {
    const be = new Counting();
    const model = new GPT2(c, be, r);
    const before = be.floats;
    model.allocate(B, T);
    assert.equal(be.floats - before, plan(r), `-r ${r}`);
    assert.equal(model.activationFloats, plan(r));
    assert.equal(activationTable(c, B, T, r, 256).reduce((s, e) => s + e.bytes, 0), 4 * plan(r));
  }
  assert.equal(plan(0) - plan(1), (L - 1) * B * T * 4 * C);
  assert.equal(plan(1) - plan(2), 2 * (L - 1) * B * T * C);
});
