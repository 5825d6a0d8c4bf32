// Conformance of bf16 activations: every kernel of a backend whose activationDtype is bf16, called with tensors in
// the dtypes training gives them (activations bf16; statistics, gradients and parameters float32; and mixes a
// kernel may meet), against the TypeScript reference given the same bits. The reference reads bf16 as float32,
// computes in float32 and rounds what it writes once (src/kernels/js/backend.ts, Outputs); a backend may differ by
// its float32 rounding and, where that moves a value across a bf16 rounding boundary, one bf16 step (2^-8 relative).
import assert from "node:assert/strict";
import type { Backend, Tensor } from "../../src/kernels/backend.js";
import { fromBf16, toBf16 } from "../../src/kernels/bf16.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { Rng } from "../../src/util/rng.js";

type D = "f32" | "bf16";

/** the largest |got - want| over the largest |want| (or `floor`, if larger) */
function relErr(got: Float32Array, want: Float32Array, floor = 1e-6): number {
  let scale = floor, worst = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    worst = Math.max(worst, Math.abs(got[i] - want[i]));
  }
  return worst / scale;
}

/**
 * Runs `backend`'s kernels on bf16 activations against the reference. `matmulTol`: the bound for the matmuls, whose
 * operands the backend may round to bf16 (its bf16 products) where the reference multiplies in float32.
 * `bf16Attention`: the backend's attention multiplies in bf16 too (P, dS and dO rounded), so its float32 gradients
 * differ from the reference's by about a bf16 step, not by float32 rounding. `bf16Scores`: it stores the T x T scores
 * in bf16 as well (CUDA's), so the log-sum-exp it keeps is within a bf16 step too.
 */
export async function runBf16Activations(backend: Backend,
  opts: { matmulTol: number; bf16Attention?: boolean; bf16Scores?: boolean }): Promise<void> {
  const ref = new JsBackend("bf16");
  const rng = new Rng(1616);
  const rand = (n: number, s = 1) => Float32Array.from({ length: n }, () => rng.normal() * s);
  // the same values on both sides, in the dtype asked for
  const both = (a: Float32Array, dtype: D): [Tensor, Tensor] => {
    const x = ref.alloc(a.length, dtype), y = backend.alloc(a.length, dtype);
    ref.write(x, a);
    backend.write(y, a);
    return [x, y];
  };
  const zeros = (n: number, dtype: D) => both(new Float32Array(n), dtype);
  // token ids, as i32 tensors of each side
  const idsOn = (a: Int32Array): [Tensor, Tensor] => {
    const x = ref.alloc(a.length, "i32"), y = backend.alloc(a.length, "i32");
    ref.write(x, a);
    backend.write(y, a);
    return [x, y];
  };
  const check = async (pair: [Tensor, Tensor], tol: number, what: string, floor?: number) => {
    const want = ref.read(pair[0]), got = await backend.readAsync(pair[1]);
    const e = relErr(got, want, floor);
    assert.ok(e <= tol, `${what}: error ${e.toExponential(2)} > ${tol}`);
  };
  const STEP = 8e-3; // two bf16 steps of the largest value

  // rounding: float32 to bf16 as PyTorch rounds (nearest, ties to even; NaN stays NaN), bit for bit, through copy() and
  // through a kernel's output (a + 0 is a), on values that include exact ties, denormals, infinities and NaN
  {
    const n = 1 << 16, u = new Uint32Array(n);
    for (let i = 0; i < n; i++) u[i] = (rng.int(1 << 16) << 16) | (i % 4 === 0 ? 0x8000 : rng.int(1 << 16));
    u.set([0x7f800000, 0xff800000, 0x7fc00001, 0x00000001, 0x007fffff, 0x3f808000, 0x3f818000, 0x7f7fffff]);
    const x = new Float32Array(u.buffer), want = Float32Array.from(x, (v) => fromBf16(toBf16(v)));
    const src = backend.alloc(n), zero = backend.alloc(n), viaCopy = backend.alloc(n, "bf16"), viaKernel = backend.alloc(n, "bf16");
    backend.write(src, x);
    backend.copy(viaCopy, src);
    backend.residualForward(viaKernel, src, zero, n);
    for (const [what, t] of [["copy", viaCopy], ["residualForward", viaKernel]] as const) {
      const got = await backend.readAsync(t);
      for (let i = 0; i < n; i++) {
        if (!(got[i] === want[i] || (Number.isNaN(got[i]) && Number.isNaN(want[i])))) {
          assert.fail(`${what}: ${x[i]} (0x${u[i].toString(16)}) rounds to ${got[i]}, expected ${want[i]}`);
        }
      }
    }
  }

  // matmuls: the small-M fallback, odd shapes, the column-sliced and deep GEMM paths, K over one block (800) and
  // over the one-block limit of a bf16 output (2100)
  for (const [N, C, OC] of [[3, 5, 7], [7, 33, 65], [130, 257, 129], [8, 16, 520], [20, 40, 700], [64, 800, 96], [40, 2100, 72]]) {
    const inp = rand(N * C), w = rand(OC * C), b = rand(OC), dout = rand(N * OC);
    const [ri, bi] = both(inp, "bf16"), [rw, bw] = both(w, "f32"), [rb, bb] = both(b, "f32");
    const out = zeros(N * OC, "bf16");
    ref.matmulForward(out[0], ri, rw, rb, N, C, OC);
    backend.matmulForward(out[1], bi, bw, bb, N, C, OC);
    // a sum of C terms: its rounding is relative to the terms, sqrt(C) times a term's size for random signs
    await check(out, opts.matmulTol, `matmulForward bf16 ${N}x${C}x${OC}`, Math.sqrt(C));
    // bf16 weights too (a model on bf16 inference weights, on this backend)
    const [rwh, bwh] = both(w, "bf16"), outh = zeros(N * OC, "bf16");
    ref.matmulForward(outh[0], ri, rwh, rb, N, C, OC);
    backend.matmulForward(outh[1], bi, bwh, bb, N, C, OC);
    await check(outh, opts.matmulTol, `matmulForward bf16 weights ${N}x${C}x${OC}`, Math.sqrt(C));
    for (const doutType of ["f32", "bf16"] as const) {
      const [rd, bd] = both(dout, doutType), dinp = zeros(N * C, "f32"), dw = zeros(OC * C, "f32"), db = zeros(OC, "f32");
      ref.matmulBackward(dinp[0], dw[0], db[0], rd, ri, rw, N, C, OC);
      backend.matmulBackward(dinp[1], dw[1], db[1], bd, bi, bw, N, C, OC);
      await check(dinp, opts.matmulTol, `matmulBackward dinp ${N}x${C}x${OC} (dout ${doutType})`, Math.sqrt(OC));
      await check(dw, opts.matmulTol, `matmulBackward dweight ${N}x${C}x${OC} (dout ${doutType})`, Math.sqrt(N));
      await check(db, 1e-5, `matmulBackward dbias ${N}x${C}x${OC} (dout ${doutType})`, Math.sqrt(N));
    }
  }

  for (const [B, T, C, NH] of [[1, 1, 4, 1], [2, 33, 64, 2], [1, 70, 96, 4], [2, 130, 128, 2]]) {
    const N = B * T;
    // layernorm: the model's dtypes, then every argument bf16 (an accumulating bf16 dinp)
    const x = both(rand(N * C, 2), "bf16"), w = both(rand(C), "f32"), b = both(rand(C), "f32");
    const out = zeros(N * C, "bf16"), mean = zeros(N, "f32"), rstd = zeros(N, "f32");
    ref.layernormForward(out[0], mean[0], rstd[0], x[0], w[0], b[0], N, C);
    backend.layernormForward(out[1], mean[1], rstd[1], x[1], w[1], b[1], N, C);
    await check(out, STEP, "layernormForward"); await check(rstd, 1e-5, "layernorm rstd");
    for (const dt of ["f32", "bf16"] as const) {
      const dout = both(rand(N * C), dt), dinp = both(rand(N * C), dt), dw = both(rand(C), "f32"), db = both(rand(C), "f32");
      ref.layernormBackward(dinp[0], dw[0], db[0], dout[0], x[0], w[0], mean[0], rstd[0], N, C);
      backend.layernormBackward(dinp[1], dw[1], db[1], dout[1], x[1], w[1], mean[1], rstd[1], N, C);
      await check(dinp, dt === "bf16" ? STEP : 1e-5, `layernormBackward dinp (${dt})`);
      await check(dw, 1e-5, `layernormBackward dweight (${dt})`); await check(db, 1e-5, `layernormBackward dbias (${dt})`);
    }
    // attention: q, k, v and the output bf16; its gradient float32, or bf16
    const qkv = both(rand(N * 3 * C), "bf16"), att = zeros(N * C, "bf16"), lse = zeros(B * NH * T, "f32");
    ref.attentionForward(att[0], lse[0], qkv[0], B, T, C, NH);
    backend.attentionForward(att[1], lse[1], qkv[1], B, T, C, NH);
    await check(att, STEP, `attentionForward ${B},${T},${C},${NH}`); await check(lse, opts.bf16Scores ? STEP : 1e-5, "attention lse");
    for (const dt of ["f32", "bf16"] as const) {
      const da = both(rand(N * C), dt), dqkv = zeros(N * 3 * C, dt);
      ref.attentionBackward(dqkv[0], da[0], qkv[0], att[0], lse[0], B, T, C, NH);
      backend.attentionBackward(dqkv[1], da[1], qkv[1], att[1], lse[1], B, T, C, NH);
      await check(dqkv, dt === "bf16" || opts.bf16Attention ? STEP : 1e-4, `attentionBackward ${B},${T},${C},${NH} (gradients ${dt})`);
    }
    // GELU, residual (a bf16 and a float32 input), encoder (a bf16 table: the classifier's row gather)
    const h = both(rand(N * C, 2), "bf16"), g = zeros(N * C, "bf16");
    ref.geluForward(g[0], h[0], N * C); backend.geluForward(g[1], h[1], N * C);
    await check(g, STEP, "geluForward");
    const dg = both(rand(N * C), "f32"), dh = zeros(N * C, "f32");
    ref.geluBackward(dh[0], h[0], dg[0], N * C); backend.geluBackward(dh[1], h[1], dg[1], N * C);
    await check(dh, 1e-5, "geluBackward");
    const dgh = both(rand(N * C), "bf16"), dhh = zeros(N * C, "bf16");
    ref.geluBackward(dhh[0], h[0], dgh[0], N * C); backend.geluBackward(dhh[1], h[1], dgh[1], N * C);
    await check(dhh, STEP, "geluBackward (all bf16)");
    const r = zeros(N * C, "bf16");
    ref.residualForward(r[0], h[0], dg[0], N * C); backend.residualForward(r[1], h[1], dg[1], N * C);
    await check(r, STEP, "residualForward");
    const V = 11, ids = idsOn(Int32Array.from({ length: N }, () => rng.int(V)));
    const wte = both(rand(V * C), "bf16"), wpe = both(rand(T * C), "f32"), enc = zeros(N * C, "bf16");
    ref.encoderForward(enc[0], ids[0], wte[0], wpe[0], B, T, C); backend.encoderForward(enc[1], ids[1], wte[1], wpe[1], B, T, C);
    await check(enc, STEP, "encoderForward");
    const dwte = zeros(V * C, "f32"), dwpe = zeros(T * C, "f32");
    ref.encoderBackward(dwte[0], dwpe[0], enc[0], ids[0], B, T, C); backend.encoderBackward(dwte[1], dwpe[1], enc[1], ids[1], B, T, C);
    await check(dwte, 1e-5, "encoderBackward dwte (bf16 dout)"); await check(dwpe, 1e-5, "encoderBackward dwpe (bf16 dout)");
  }
  // the sum of squares over a bf16 tensor (the non-finite search reads activations with it)
  {
    const x = both(rand(1000, 3), "bf16");
    const want = await ref.sumSquaresAsync(x[0], 1000), got = await backend.sumSquaresAsync(x[1], 1000);
    assert.ok(Math.abs(got - want) <= 1e-5 * want, `sumSquares over bf16: ${got} vs ${want}`);
  }
  // the classifier: bf16 logits, dlogits written over them
  for (const [N, V, Vp] of [[1, 3, 8], [9, 100, 128], [5, 1000, 1024]]) {
    const logits = rand(N * Vp, 3), targets = idsOn(Int32Array.from({ length: N }, (_, i) => (i === 1 ? -1 : rng.int(V))));
    const lg = both(logits, "bf16"), losses = zeros(N, "f32");
    ref.crossEntropy(losses[0], lg[0], lg[0], targets[0], N, V, Vp, 0.25);
    backend.crossEntropy(losses[1], lg[1], lg[1], targets[1], N, V, Vp, 0.25);
    await check(losses, 1e-5, "crossEntropy loss"); await check(lg, STEP, "crossEntropy dlogits over bf16 logits");
  }
}
