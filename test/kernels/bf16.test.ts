// bf16 storage: the conversion (against values worked out by hand), and inference on bf16 weights on every host
// backend against the float32 reference multiplying the same (widened) weights.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fromBf16, isBf16, toBf16 } from "../../src/kernels/bf16.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { loadNativeAddon, NativeBackend } from "../../src/kernels/native.js";
import type { HostBackend } from "./suite.js";
import { Rng } from "../../src/util/rng.js";

test("bf16: round to nearest, ties to even; exact widening; NaN, infinities and signed zero kept", () => {
  // 1 = 0x3f80; the next bf16 up is 1 + 2^-7 = 0x3f81; 1 + 2^-8 is halfway: ties to the even 0x3f80
  assert.equal(toBf16(1), 0x3f80);
  assert.equal(toBf16(1 + 2 ** -8), 0x3f80);
  assert.equal(toBf16(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  // 1 + 3 * 2^-8 is halfway between 0x3f81 and 0x3f82: ties to the even 0x3f82
  assert.equal(toBf16(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(toBf16(-2), 0xc000);
  assert.equal(toBf16(0), 0);
  assert.equal(toBf16(-0), 0x8000);
  assert.equal(toBf16(Infinity), 0x7f80);
  assert.equal(toBf16(-Infinity), 0xff80);
  assert.ok(Number.isNaN(fromBf16(toBf16(NaN))));
  // the largest float32 rounds up to infinity, as the hardware conversion does
  assert.equal(toBf16(3.4028234663852886e38), 0x7f80);
  assert.equal(fromBf16(0x3f81), 1 + 2 ** -7);
  assert.equal(fromBf16(0x4049), 3.140625);
});

const { addon, error } = loadNativeAddon();
for (const [name, make, skip] of [
  ["TS reference", () => new JsBackend(), undefined],
  ["native", () => new NativeBackend(addon!, 2), addon ? undefined : error],
  ["native, 1 thread", () => new NativeBackend(addon!, 1), addon ? undefined : error],
] as const) {
  test(`bf16 weights on ${name}: write rounds, read widens, matmulForward equals float32 on the widened weights`, { skip }, () => {
    const be = make() as unknown as HostBackend, ref = new JsBackend() as unknown as HostBackend;
    const rng = new Rng(7), rand = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
    for (const [N, C, OC] of [[1, 768, 2304], [1, 37, 5], [3, 64, 130], [5, 48, 7], [17, 100, 66], [40, 768, 520]]) {
      const w = rand(OC * C), inp = rand(N * C), bias = rand(OC);
      const h = be.alloc(OC * C, "bf16");
      assert.ok(isBf16(h));
      be.write(h, w);
      const widened = be.read(h);
      for (let i = 0; i < w.length; i += 97) assert.equal(widened[i], fromBf16(toBf16(w[i])));
      const got = new Float32Array(N * OC), want = new Float32Array(N * OC), terms = new Float32Array(N * OC);
      be.matmulForward(got, inp, h, bias, N, C, OC);
      ref.matmulForward(want, inp, widened, bias, N, C, OC);
      ref.matmulForward(terms, inp.map(Math.abs), widened.map(Math.abs), bias.map(Math.abs), N, C, OC);
      for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 2e-6 * terms[i] + 1e-30, `${N}x${C}x${OC} [${i}]: ${got[i]} vs ${want[i]}`);
      // a view of the weights (one layer's slice) multiplies the same way
      const rows = Math.max(1, OC >> 1);
      const half = new Float32Array(N * rows), halfRef = new Float32Array(N * rows);
      be.matmulForward(half, inp, be.view(h, 0, rows * C), null, N, C, rows);
      ref.matmulForward(halfRef, inp, widened.subarray(0, rows * C), null, N, C, rows);
      for (let i = 0; i < half.length; i++) assert.ok(Math.abs(half[i] - halfRef[i]) <= 1e-4 * (1 + Math.abs(halfRef[i])));
    }
  });
}

for (const [name, make, skip] of [
  ["TS reference", () => new JsBackend(), undefined],
  ["native", () => new NativeBackend(addon!, 2), addon ? undefined : error],
] as const) {
  test(`inference on bf16 weights (${name}): logits near float32's, KV cache = full recompute, the same tokens as the reference backend, training refused`, { skip }, async () => {
    const { loadHF } = await import("../../src/io/hf.js");
    const { generate } = await import("../../src/model/generate.js");
    const { fixture, readJson } = await import("../helpers.js");
    const exp = readJson(fixture("ref-gpt2vocab", "greedy.json"));
    const model = loadHF(fixture("ref-gpt2vocab"), make());
    const seq = Int32Array.from(exp.prompt as number[]), T = seq.length, Vp = model.config.paddedVocabSize, V = model.config.vocabSize;
    model.allocate(1, T + 12); // activations for the longest forward below
    model.forward(seq, null, 1, T);
    const f32 = model.readLogits();
    model.useBf16Weights();
    assert.equal(model.weightsDtype, "bf16");
    model.forward(seq, null, 1, T);
    const b16 = model.readLogits();
    let worst = 0, scale = 0;
    for (let i = 0; i < T * Vp; i++) { worst = Math.max(worst, Math.abs(b16[i] - f32[i])); scale = Math.max(scale, Math.abs(f32[i])); }
    assert.ok(worst > 0, "the logits did not change: the bf16 weights are not used");
    assert.ok(worst < 2e-2 * scale, `bf16 logits off by ${worst} (largest logit ${scale})`);
    const opts = { maxNewTokens: 12, temperature: 0, stopAtEot: false };
    const cached = generate(model, exp.prompt, 1, new Rng(1), opts)[0];
    // full recompute on the same weights: argmax of the last position, token by token
    const full: number[] = [...exp.prompt];
    for (let s = 0; s < 12; s++) {
      model.forward(Int32Array.from(full), null, 1, full.length);
      const row = model.readLogits().subarray((full.length - 1) * Vp, (full.length - 1) * Vp + V);
      let best = 0;
      for (let i = 1; i < V; i++) if (row[i] > row[best]) best = i;
      full.push(best);
    }
    assert.deepEqual(cached, full.slice(exp.prompt.length));
    const ref = loadHF(fixture("ref-gpt2vocab"), new JsBackend());
    ref.useBf16Weights();
    assert.deepEqual(cached, generate(ref, exp.prompt, 1, new Rng(1), opts)[0]);
    assert.throws(() => model.forwardBackward(seq, seq, 1, T), /bf16 inference weights .* cannot be trained/);
  });
}

test("gpt2 sample --dtype bf16: the tokens of the reference backend on the bf16 weights; --dtype checked", async () => {
  const { spawnSync } = await import("node:child_process");
  const { CLI, fixture } = await import("../helpers.js");
  const { loadHF } = await import("../../src/io/hf.js");
  const { generate } = await import("../../src/model/generate.js");
  const { encode } = await import("../../src/tokenizer/bpe.js");
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, "sample", "--model", fixture("ref-gpt2vocab"), ...args], { encoding: "utf8" });
  const r = run(["--prompt", "Hello", "--max-new-tokens", "6", "--temperature", "0", "--no-stop", "--json", "--dtype", "bf16"]);
  assert.equal(r.status, 0, r.stderr);
  const ref = loadHF(fixture("ref-gpt2vocab"), new JsBackend());
  ref.useBf16Weights();
  assert.deepEqual(JSON.parse(r.stdout).ids, generate(ref, encode("Hello"), 1, new Rng(1), { maxNewTokens: 6, temperature: 0, stopAtEot: false })[0]);
  const bad = run(["--prompt", "Hello", "--dtype", "fp16"]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^gpt2: --dtype expects fp32 or bf16, got "fp16"\n$/);
});

// WebGPU (Mesa's CPU adapter here, a GPU where there is one): bf16 weights made on the device (Backend.copy rounds
// there), read back widened, multiplied by the tiled and the few-row products; generation as the reference's
const webgpu = await import("../../src/kernels/webgpu/node.js").then((m) => m.createWebGPUBackend()).catch((e: Error) => e);
test("bf16 weights on webgpu: made on the device (rounded to nearest even), read back widened, matmulForward equals float32 on the widened weights", { skip: webgpu instanceof Error ? webgpu.message : undefined }, async () => {
  const be = webgpu as import("../../src/kernels/webgpu/backend.js").WebGPUBackend, ref = new JsBackend() as unknown as HostBackend;
  const rng = new Rng(7), rand = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  // ties and specials go through the device's rounding too
  const special = Float32Array.from([1 + 2 ** -8, 1 + 3 * 2 ** -8, -0, Infinity, -2, 3.4028234663852886e38, 1 + 2 ** -8 + 2 ** -20]);
  const src = be.alloc(special.length), dst = be.alloc(special.length, "bf16");
  be.write(src, special);
  be.copy(dst, src);
  assert.deepEqual(Array.from(await be.readAsync(dst)), Array.from(special, (x) => fromBf16(toBf16(x))));
  for (const [N, C, OC] of [[1, 768, 2304], [1, 37, 5], [3, 64, 130], [5, 48, 7], [17, 100, 66]]) {
    const w = rand(OC * C), inp = rand(N * C), bias = rand(OC);
    const wf = be.alloc(OC * C), h = be.alloc(OC * C, "bf16");
    be.write(wf, w);
    be.copy(h, wf);
    const widened = await be.readAsync(h);
    for (let i = 0; i < w.length; i += 97) assert.equal(widened[i], fromBf16(toBf16(w[i])));
    const [ti, tb, out] = [be.alloc(N * C), be.alloc(OC), be.alloc(N * OC)];
    be.write(ti, inp);
    be.write(tb, bias);
    be.matmulForward(out, ti, h, tb, N, C, OC);
    const got = await be.readAsync(out), want = new Float32Array(N * OC), terms = new Float32Array(N * OC);
    ref.matmulForward(want, inp, widened, bias, N, C, OC);
    ref.matmulForward(terms, inp.map(Math.abs), widened.map(Math.abs), bias.map(Math.abs), N, C, OC);
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 2e-6 * terms[i] + 1e-30, `${N}x${C}x${OC} [${i}]: ${got[i]} vs ${want[i]}`);
    // a view of an odd number of rows from an odd start (one layer's slice of a stacked weight)
    const rows = Math.max(1, OC >> 1), from = C % 2 === 1 ? C : 0;
    if (from + rows * C <= OC * C) {
      const part = be.alloc(N * rows);
      be.matmulForward(part, ti, be.view(h, from, rows * C), null, N, C, rows);
      const p = await be.readAsync(part), pRef = new Float32Array(N * rows);
      ref.matmulForward(pRef, inp, widened.subarray(from, from + rows * C), null, N, C, rows);
      for (let i = 0; i < p.length; i++) assert.ok(Math.abs(p[i] - pRef[i]) <= 1e-4 * (1 + Math.abs(pRef[i])), `view at ${from}: ${p[i]} vs ${pRef[i]}`);
    }
  }
});

test("inference on bf16 weights (webgpu): the reference backend's tokens on the bf16 weights; gpt2 sample --backend webgpu --dtype bf16 too", { skip: webgpu instanceof Error ? webgpu.message : undefined }, async () => {
  const { loadHF } = await import("../../src/io/hf.js");
  const { generate, generateAsync } = await import("../../src/model/generate.js");
  const { CLI, fixture, readJson } = await import("../helpers.js");
  const { spawnSync } = await import("node:child_process");
  const exp = readJson(fixture("ref-gpt2vocab", "greedy.json"));
  const model = loadHF(fixture("ref-gpt2vocab"), webgpu as import("../../src/kernels/backend.js").Backend);
  model.useBf16Weights();
  const opts = { maxNewTokens: 12, temperature: 0, stopAtEot: false };
  const ref = loadHF(fixture("ref-gpt2vocab"), new JsBackend());
  ref.useBf16Weights();
  const want = generate(ref, exp.prompt, 1, new Rng(1), opts)[0];
  assert.deepEqual((await generateAsync(model, exp.prompt, 1, new Rng(1), opts))[0], want);
  const r = spawnSync(process.execPath, [CLI, "sample", "--model", fixture("ref-gpt2vocab"), "--prompt-ids", exp.prompt.join(","), "--max-new-tokens", "12",
    "--temperature", "0", "--no-stop", "--json", "--backend", "webgpu", "--dtype", "bf16"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split("\n").pop()!).ids, want);
});
