// Every layer's hand-written backward against central finite differences, in float64 storage.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as k from "../../src/kernels/js/layers.js";
import { GPT2 } from "../../src/model/gpt2.js";
import { makeConfig } from "../../src/model/config.js";
import { Rng } from "../../src/util/rng.js";
import { Float64Backend } from "../helpers.js";

type F = Float32Array; // float64 arrays pass through the kernels unchanged
const rng = new Rng(42);
const randn = (n: number, s = 1): F => { const a = new Float64Array(n); for (let i = 0; i < n; i++) a[i] = rng.normal() * s; return a as unknown as F; };
const zeros = (n: number): F => new Float64Array(n) as unknown as F;

/** checks d(sum(out * w))/d(x) from `analytic` against central differences of `f` */
function check(name: string, x: F, f: () => number, analytic: F, eps = 1e-6, tol = 1e-6): void {
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const old = x[i];
    x[i] = old + eps; const fp = f();
    x[i] = old - eps; const fm = f();
    x[i] = old;
    const num = (fp - fm) / (2 * eps);
    worst = Math.max(worst, Math.abs(num - analytic[i]) / Math.max(1, Math.abs(num)));
  }
  assert.ok(worst < tol, `${name}: worst relative error ${worst}`);
}

const dot = (a: F, b: F): number => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * b[i]; return s; };

test("layernorm backward = finite differences (input, weight, bias)", () => {
  const N = 3, C = 7;
  const inp = randn(N * C), w = randn(C), b = randn(C), dout = randn(N * C);
  const out = zeros(N * C), mean = zeros(N), rstd = zeros(N);
  const f = () => { k.layernormForward(out, mean, rstd, inp, w, b, N, C); return dot(out, dout); };
  f();
  const dinp = zeros(N * C), dw = zeros(C), db = zeros(C);
  k.layernormBackward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
  check("dinp", inp, f, dinp); check("dweight", w, f, dw); check("dbias", b, f, db);
});

test("matmul backward = finite differences (input, weight, bias)", () => {
  const N = 5, C = 6, OC = 4;
  const inp = randn(N * C), w = randn(OC * C), b = randn(OC), dout = randn(N * OC), out = zeros(N * OC);
  const f = () => { k.matmulForward(out, inp, w, b, N, C, OC); return dot(out, dout); };
  const dinp = zeros(N * C), dw = zeros(OC * C), db = zeros(OC);
  k.matmulBackward(dinp, dw, db, dout, inp, w, N, C, OC);
  check("dinp", inp, f, dinp); check("dweight", w, f, dw); check("dbias", b, f, db);
});

test("attention backward = finite differences, and never builds T x T", () => {
  const B = 2, T = 5, C = 8, NH = 2;
  const qkv = randn(B * T * 3 * C), dout = randn(B * T * C), out = zeros(B * T * C), lse = zeros(B * NH * T);
  const scores = new Float64Array(T);
  const f = () => { k.attentionForward(out, lse, qkv, B, T, C, NH, scores); return dot(out, dout); };
  f();
  const dqkv = zeros(B * T * 3 * C);
  k.attentionBackward(dqkv, dout, qkv, out, lse, B, T, C, NH);
  check("dqkv", qkv, f, dqkv);
});

test("gelu backward = finite differences", () => {
  const N = 20, inp = randn(N, 2), dout = randn(N), out = zeros(N), dinp = zeros(N);
  const f = () => { k.geluForward(out, inp, N); return dot(out, dout); };
  k.geluBackward(dinp, inp, dout, N);
  check("dinp", inp, f, dinp);
});

test("encoder backward = finite differences", () => {
  const B = 2, T = 3, C = 4, V = 5;
  const inp = Int32Array.from([1, 4, 1, 0, 2, 4]), wte = randn(V * C), wpe = randn(T * C), dout = randn(B * T * C), out = zeros(B * T * C);
  const f = () => { k.encoderForward(out, inp, wte, wpe, B, T, C); return dot(out, dout); };
  const dwte = zeros(V * C), dwpe = zeros(T * C);
  k.encoderBackward(dwte, dwpe, dout, inp, B, T, C);
  check("dwte", wte, f, dwte); check("dwpe", wpe, f, dwpe);
});

test("cross-entropy gradient = finite differences, padded columns ignored", () => {
  const N = 3, V = 5, Vp = 8;
  const logits = randn(N * Vp), targets = Int32Array.from([2, 4, 0]), losses = zeros(N), dlogits = zeros(N * Vp);
  const f = () => { k.crossEntropy(losses, null, logits, targets, N, V, Vp, 1); let s = 0; for (let i = 0; i < N; i++) s += losses[i]; return s; };
  k.crossEntropy(losses, dlogits, logits, targets, N, V, Vp, 1);
  check("dlogits", logits, f, dlogits);
  for (let n = 0; n < N; n++) for (let i = V; i < Vp; i++) assert.equal(dlogits[n * Vp + i], 0);
});

test("whole-model gradient = finite differences (float64 model, recompute 0, 1, 2)", () => {
  for (const r of [0, 1, 2] as const) {
    const config = makeConfig("tiny", { nLayer: 2, nHead: 2, nEmbd: 8, blockSize: 8, vocabSize: 11 });
    const model = new GPT2(config, new Float64Backend(), r);
    model.initWeights(new Rng(3));
    // larger weights than GPT-2's init so every path carries signal
    const p = model.params as unknown as Float64Array;
    for (let i = 0; i < p.length; i++) p[i] += rng.normal() * 0.3;
    const B = 2, T = 5;
    const inputs = Int32Array.from({ length: B * T }, () => rng.int(11));
    const targets = Int32Array.from({ length: B * T }, () => rng.int(11));
    model.zeroGrad();
    model.forwardBackward(inputs, targets, B, T);
    const g = model.grads as unknown as Float64Array;
    const f = () => model.forward(inputs, targets, B, T);
    // every tensor, a spread of entries in each (padded wte rows excluded: they get no gradient by design)
    for (const spec of model.layout.tensors) {
      const n = spec.name === "wte" ? config.vocabSize * config.nEmbd : spec.size;
      for (let j = 0; j < 6; j++) {
        const i = spec.offset + Math.floor((j * n) / 6 + 1) % n;
        const old = p[i], eps = 1e-5;
        p[i] = old + eps; const fp = f();
        p[i] = old - eps; const fm = f();
        p[i] = old;
        const num = (fp - fm) / (2 * eps);
        assert.ok(Math.abs(num - g[i]) <= 1e-6 + 1e-5 * Math.abs(num), `recompute ${r}: ${spec.name}[${i - spec.offset}] ${g[i]} vs ${num}`);
      }
    }
  }
});

test("masked targets (SFT rows: only answers count): gradient = finite differences, classifier over the answer spans only", () => {
  const config = makeConfig("tiny", { nLayer: 1, nHead: 2, nEmbd: 8, blockSize: 32, vocabSize: 11 });
  const model = new GPT2(config, new Float64Backend(), 0);
  model.initWeights(new Rng(4));
  const p = model.params as unknown as Float64Array;
  for (let i = 0; i < p.length; i++) p[i] += rng.normal() * 0.3;
  const B = 2, T = 30;
  const inputs = Int32Array.from({ length: B * T }, () => rng.int(11));
  // two spans of targets 47 rows apart (two classifier chunks), the rest not trained on
  const targets = new Int32Array(B * T).fill(-1);
  for (const i of [3, 4, 5, 50, 51, 52]) targets[i] = rng.int(11);
  // a step with every target first, so that buffers the masked step must clear hold other values
  model.forwardBackward(inputs, Int32Array.from({ length: B * T }, () => rng.int(11)), B, T);
  model.zeroGrad();
  const loss = model.forwardBackward(inputs, targets, B, T);
  const losses = model.readLosses();
  let sum = 0;
  for (let i = 0; i < B * T; i++) { if (targets[i] < 0) assert.equal(losses[i], 0, `row ${i}`); else sum += losses[i]; }
  assert.ok(Math.abs(loss - sum / 6) < 1e-12);
  const g = model.grads as unknown as Float64Array;
  const f = () => model.forward(inputs, targets, B, T);
  for (const spec of model.layout.tensors) {
    const n = spec.name === "wte" ? config.vocabSize * config.nEmbd : spec.size;
    for (let j = 0; j < 4; j++) {
      const i = spec.offset + Math.floor((j * n) / 4 + 1) % n;
      const old = p[i], eps = 1e-5;
      p[i] = old + eps; const fp = f();
      p[i] = old - eps; const fm = f();
      p[i] = old;
      const num = (fp - fm) / (2 * eps);
      assert.ok(Math.abs(num - g[i]) <= 1e-6 + 1e-5 * Math.abs(num), `${spec.name}[${i - spec.offset}] ${g[i]} vs ${num}`);
    }
  }
});

test("per-token weights and the score head (preference and RL objectives): gradients = finite differences", () => {
  const config = makeConfig("tiny", { nLayer: 1, nHead: 2, nEmbd: 8, blockSize: 16, vocabSize: 11 });
  const model = new GPT2(config, new Float64Backend(), 0);
  model.initWeights(new Rng(6));
  const p = model.params as unknown as Float64Array;
  for (let i = 0; i < p.length; i++) p[i] += rng.normal() * 0.3;
  const B = 2, T = 10;
  const inputs = Int32Array.from({ length: B * T }, () => rng.int(11));
  const targets = new Int32Array(B * T).fill(-1);
  for (const i of [2, 3, 4, 15, 16]) targets[i] = rng.int(11);
  const w = Float32Array.from({ length: B * T }, () => rng.normal());
  const rows = Int32Array.from([6, 17]), col = 100, c = Float32Array.from([0.7, -1.3]); // col: a padded row of wte
  // f1 = sum_t w_t * loss_t (forward with lossScale M cancels its 1/M); f2 = sum_i c_i * score_i
  const f1 = () => { model.forward(inputs, targets, B, T); const l = model.readLosses(); let s = 0; for (let i = 0; i < B * T; i++) s += w[i] * l[i]; return s; };
  const f2 = () => { const s = model.scores(inputs, B, T, rows, col); return c[0] * s[0] + c[1] * s[1]; };
  for (const [name, f, grad] of [
    ["weighted cross-entropy", f1, () => model.forwardBackward(inputs, targets, B, T, 5, w)],
    ["score head", f2, () => { model.scores(inputs, B, T, rows, col, true); model.backwardScores(c); }],
  ] as const) {
    model.zeroGrad();
    grad();
    const g = model.grads as unknown as Float64Array;
    for (const spec of model.layout.tensors) {
      // wte: the real rows and the score row (the other padded rows get nothing)
      const idx = spec.name === "wte" ? [3, 40, col * 8 + 1, col * 8 + 5] : [0, 1, 2, 3].map((j) => Math.floor((j * spec.size) / 4 + 1) % spec.size);
      for (const k of idx) {
        const i = spec.offset + k, old = p[i], eps = 1e-5;
        p[i] = old + eps; const fp = f();
        p[i] = old - eps; const fm = f();
        p[i] = old;
        const num = (fp - fm) / (2 * eps);
        assert.ok(Math.abs(num - g[i]) <= 1e-6 + 1e-5 * Math.abs(num), `${name}: ${spec.name}[${k}] ${g[i]} vs ${num}`);
      }
    }
  }
});
