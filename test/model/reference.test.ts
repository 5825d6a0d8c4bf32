// The model against PyTorch's float64 answers (../shared/bench/pytorch/reference.py outputs, committed as fixtures).
import assert from "node:assert/strict";
import { test } from "node:test";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { loadHF } from "../../src/io/hf.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { generate } from "../../src/model/generate.js";
import { AdamW, ADAMW_DEFAULTS } from "../../src/train/adamw.js";
import { Rng } from "../../src/util/rng.js";
import { fixture, maxAbsErr, maxRelErr, readJson, tmpDir } from "../helpers.js";
import { saveHF } from "../../src/io/hf.js";
import * as fs from "node:fs";
import * as path from "node:path";

function batch(dir: string) {
  const { tokens } = readJson<{ tokens: number[][] }>(fixture(dir, "tokens.json"));
  const B = tokens.length, T = tokens[0].length - 1;
  const inputs = Int32Array.from(tokens.flatMap((r) => r.slice(0, T)));
  const targets = Int32Array.from(tokens.flatMap((r) => r.slice(1)));
  return { B, T, inputs, targets };
}

for (const dir of ["ref-small", "ref-gpt2vocab"]) {
  test(`${dir}: loss, per-position loss and logits match PyTorch float64`, () => {
    const exp = readJson(fixture(dir, "expected.json"));
    const model = loadHF(fixture(dir), new JsBackend());
    const { B, T, inputs, targets } = batch(dir);
    const loss = model.forward(inputs, null, B, T);
    assert.ok(Number.isNaN(loss));
    const logits = model.readLogits();
    const Vp = model.config.paddedVocabSize;
    const pos: Record<string, [number, number]> = { "0,0": [0, 0], "0,-1": [0, T - 1], "1,-1": [1, T - 1] };
    for (const [key, [b, t]] of Object.entries(pos)) {
      const row = logits.subarray((b * T + t) * Vp, (b * T + t) * Vp + 16);
      assert.ok(maxAbsErr(row, exp.positions[key].logits_first16) < 1e-4, `logits at ${key}`);
    }
    const l2 = model.forward(inputs, targets, B, T);
    assert.ok(Math.abs(l2 - exp.loss) / exp.loss < 1e-5, `loss ${l2} vs ${exp.loss}`);
    assert.ok(maxRelErr(model.readLosses(), exp.per_position_loss.flat()) < 1e-4);
  });

  test(`${dir}: gradient norms and one AdamW step match PyTorch`, () => {
    const exp = readJson(fixture(dir, "expected.json"));
    const model = loadHF(fixture(dir), new JsBackend());
    const { B, T, inputs, targets } = batch(dir);
    model.zeroGrad();
    model.forwardBackward(inputs, targets, B, T);
    const g = model.backend.read(model.grads!);
    let sq = 0;
    for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
    assert.ok(Math.abs(Math.sqrt(sq) - exp.grad_global_l2_norm) / exp.grad_global_l2_norm < 1e-4);
    const m = exp.meta.optimizer;
    const opt = new AdamW(model, { ...ADAMW_DEFAULTS, weightDecay: m.weight_decay, beta1: m.betas[0], beta2: m.betas[1], eps: m.eps });
    opt.update(m.lr);
    const after = model.forward(inputs, targets, B, T);
    assert.ok(Math.abs(after - exp.loss_after_one_adamw_step) / exp.loss_after_one_adamw_step < 1e-5,
      `loss after step ${after} vs ${exp.loss_after_one_adamw_step}`);
  });

  test(`${dir}: greedy continuation is token-identical, with the KV cache and with full recompute`, () => {
    const exp = readJson(fixture(dir, "greedy.json"));
    const model = loadHF(fixture(dir), new JsBackend());
    const out = generate(model, exp.prompt, 1, new Rng(1), { maxNewTokens: exp.max_new_tokens, temperature: 0, stopAtEot: false });
    assert.deepEqual(out[0], exp.new_tokens);
    // full recompute: forward over the whole sequence, argmax of the last position
    const seq: number[] = [...exp.prompt];
    const Vp = model.config.paddedVocabSize, V = model.config.vocabSize;
    model.allocate(1, seq.length + exp.max_new_tokens);
    for (let s = 0; s < exp.max_new_tokens; s++) {
      model.forward(Int32Array.from(seq), null, 1, seq.length);
      const logits = model.readLogits().subarray((seq.length - 1) * Vp, (seq.length - 1) * Vp + V);
      let best = 0;
      for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
      seq.push(best);
    }
    assert.deepEqual(seq.slice(exp.prompt.length), exp.new_tokens);
  });
}

test("ref-small: every parameter gradient matches PyTorch's float64 gradients", () => {
  const model = loadHF(fixture("ref-small"), new JsBackend());
  const { B, T, inputs, targets } = batch("ref-small");
  model.zeroGrad();
  model.forwardBackward(inputs, targets, B, T);
  // write our gradients in HF layout (as the weights of a model) and read them back by name
  model.backend.write(model.params, model.backend.read(model.grads!));
  const dir = tmpDir();
  saveHF(model, dir);
  const ours = new SafetensorsFile(path.join(dir, "model.safetensors"));
  const ref = new SafetensorsFile(fixture("ref-small", "grads.safetensors"));
  assert.equal(ours.tensors.size, ref.tensors.size);
  for (const [name] of ref.tensors) {
    const want = ref.read(name), got = ours.read(name);
    let scale = 0;
    for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
    assert.ok(maxAbsErr(got, want) <= 1e-4 * Math.max(scale, 1e-3), `gradient ${name}`);
  }
  ours.close();
  ref.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
