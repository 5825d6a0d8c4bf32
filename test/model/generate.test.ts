import assert from "node:assert/strict";
import { test } from "node:test";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { loadNativeAddon, NativeBackend } from "../../src/kernels/native.js";
import { makeConfig } from "../../src/model/config.js";
import { generate, KVCache, sampleToken } from "../../src/model/generate.js";
import { GPT2 } from "../../src/model/gpt2.js";
import { Rng } from "../../src/util/rng.js";
import { maxAbsErr } from "../helpers.js";

const native = loadNativeAddon();
for (const [name, make, skip] of [
  ["js", () => new JsBackend(), undefined],
  ["native", () => new NativeBackend(native.addon!, 2), native.addon ? undefined : native.error],
] as const) {
  test(`KV-cache logits equal full recomputation at every position (${name}, batch 2, prefill + decode)`, { skip }, () => {
    const model = new GPT2(makeConfig("tiny", { nLayer: 2, blockSize: 24, vocabSize: 300 }), make());
    model.initWeights(new Rng(11));
    const rng = new Rng(5), B = 2, T = 20, Vp = model.config.paddedVocabSize;
    const tokens = Int32Array.from({ length: B * T }, () => rng.int(300));
    model.forward(tokens, null, B, T);
    const full = model.readLogits();
    const cache = new KVCache(model, B, T);
    const prefill = 7;
    const pre = new Int32Array(B * prefill);
    for (let b = 0; b < B; b++) for (let t = 0; t < prefill; t++) pre[b * prefill + t] = tokens[b * T + t];
    let logits = cache.step(pre, prefill);
    for (let t = prefill - 1; t < T; t++) {
      for (let b = 0; b < B; b++) {
        const want = full.subarray((b * T + t) * Vp, (b * T + t + 1) * Vp);
        assert.ok(maxAbsErr(logits.subarray(b * Vp, (b + 1) * Vp), want) < 1e-4, `position ${t}, stream ${b}`);
      }
      if (t + 1 < T) logits = cache.step(Int32Array.from({ length: B }, (_, b) => tokens[b * T + t + 1]), 1);
    }
  });
}

test("sampling: greedy at temperature 0, top-k keeps k tokens, top-p keeps the nucleus, padded ids never drawn", () => {
  const V = 6, logits = Float32Array.from([1, 3, 2, 0, -1, 2.5, 100, 100]); // last two are padding
  const rng = new Rng(1);
  assert.equal(sampleToken(logits, V, rng, { temperature: 0 }), 1);
  const counts = new Map<number, number>();
  for (let i = 0; i < 3000; i++) { const t = sampleToken(logits, V, rng, { topK: 2 }); counts.set(t, (counts.get(t) ?? 0) + 1); }
  assert.deepEqual([...counts.keys()].sort(), [1, 5]);
  // p(1) = e^3/(e^3+e^2.5) = 0.622: the share should be close
  assert.ok(Math.abs(counts.get(1)! / 3000 - 0.6225) < 0.04);
  for (let i = 0; i < 500; i++) assert.equal(sampleToken(logits, V, rng, { topP: 0.3 }), 1); // top token alone has p > 0.3
  for (let i = 0; i < 500; i++) assert.ok(sampleToken(logits, V, rng, {}) < V);
});

test("generation is reproducible with a seed and stops at <|endoftext|>", () => {
  const model = new GPT2(makeConfig("tiny", { nLayer: 1, blockSize: 16, vocabSize: 50257 }), new JsBackend());
  model.initWeights(new Rng(2));
  // make EOT overwhelmingly likely after any token: bias the tied embedding row of EOT towards the final LN output
  const a = generate(model, [10, 20], 1, new Rng(9), { maxNewTokens: 5 });
  const b = generate(model, [10, 20], 1, new Rng(9), { maxNewTokens: 5 });
  assert.deepEqual(a, b);
  assert.equal(a[0].length, 5);
  const wte = model.backend.read(model.p.wte);
  const lnfb = new Float32Array(model.config.nEmbd).fill(0);
  // ln_f bias pointing along wte[EOT] makes EOT the argmax everywhere
  for (let i = 0; i < lnfb.length; i++) lnfb[i] = 1000 * wte[50256 * model.config.nEmbd + i];
  model.backend.write(model.p.lnfb, lnfb);
  const c = generate(model, [10, 20], 1, new Rng(9), { maxNewTokens: 5, temperature: 0 });
  assert.deepEqual(c, [[]]);
});

test("the KV cache refuses fewer token ids than B x Tq (it would run on the last step's ids)", () => {
  const model = new GPT2(makeConfig("tiny", { nLayer: 1, vocabSize: 97, blockSize: 8 }), new JsBackend());
  model.initWeights(new Rng(1));
  const cache = new KVCache(model, 1, 8);
  cache.step(Int32Array.of(5, 6), 2);
  cache.reset();
  assert.throws(() => cache.step(Int32Array.of(5), 2), /tokens hold 1 ids, expected B\*Tq = 2/);
});
