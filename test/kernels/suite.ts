// The kernel conformance suite: every kernel of a backend against the pure-TS reference, on random shapes including
// odd sizes. Shared by test/kernels (CPU backends, a real GPU) and test/cuda (the CUDA backend on the CPU emulation).
import assert from "node:assert/strict";
import type { Backend, Tensor } from "../../src/kernels/backend.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { HostI32 } from "../../src/kernels/host.js";
import { Rng } from "../../src/util/rng.js";

/**
 * a Tensor argument of a host backend may be a plain Float32Array, or a HostI32 (an Int32Array) for token ids (its
 * memory is the tensor's): how this suite calls kernels; a device backend gets them copied into tensors of its own
 */
type HostArg<A> = A extends Tensor ? Tensor | Float32Array | Int32Array : A;
export type HostBackend = {
  [K in keyof Backend]: Backend[K] extends (...a: infer P) => infer R ? (...a: { [I in keyof P]: HostArg<P[I]> }) => R : Backend[K];
};

const ref = new JsBackend() as unknown as HostBackend;

/**
 * The backend seen through host Float32Arrays: each kernel call copies its array arguments into the backend's own
 * buffers (one buffer per distinct array, so aliasing is kept) and copies them all back after the call, which makes
 * the call a promise (callers await every kernel call). CPU backends, whose tensors are host arrays already, are
 * returned as they are.
 */
export function onHost(be: Backend): HostBackend {
  if (be.alloc(1) instanceof Float32Array) return be as unknown as HostBackend;
  const memory = new Set(["alloc", "view", "write", "read", "fill", "name", "threads"]);
  // host arrays by the interface's definition (the classifier's row weights): not moved to the device
  const hostArgs: Record<string, number[]> = { crossEntropy: [8] };
  return new Proxy(be as unknown as HostBackend, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      if (memory.has(String(prop))) return (v as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) => {
        const moved = new Map<Float32Array, Tensor>();
        const dev = args.map((a, i) => {
          if (a instanceof Int32Array) {
            // token ids: an i32 tensor of the device's, read by the kernel (never written back)
            const ids = target.alloc(a.length, "i32");
            target.write(ids, a);
            return ids;
          }
          if (!(a instanceof Float32Array) || hostArgs[String(prop)]?.includes(i)) return a;
          let t = moved.get(a);
          if (!t) {
            t = target.alloc(a.length);
            target.write(t, a);
            moved.set(a, t);
          }
          return t;
        });
        // read back asynchronously (a WebGPU backend cannot read otherwise): the caller awaits every kernel call
        const r = (v as (...a: unknown[]) => unknown).apply(target, dev);
        return (async () => {
          const value = await r;
          for (const [h, t] of moved) h.set(await target.readAsync(t));
          return value;
        })();
      };
    },
  });
}

const rng = new Rng(2024);
function rand(n: number, s = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * s;
  return a;
}
/** relative error against the reference, scaled by the reference's largest magnitude */
function close(got: Tensor | Float32Array, want: Tensor | Float32Array, tol: number, what: string, floor = 1e-6): void {
  const g = got as unknown as Float32Array, w = want as unknown as Float32Array;
  assert.equal(g.length, w.length, what);
  let scale = floor, worst = 0;
  for (let i = 0; i < w.length; i++) scale = Math.max(scale, Math.abs(w[i]));
  for (let i = 0; i < w.length; i++) {
    if (!Number.isFinite(g[i])) assert.fail(`${what}: non-finite at ${i}`);
    worst = Math.max(worst, Math.abs(g[i] - w[i]) / scale);
  }
  assert.ok(worst <= tol, `${what}: worst error ${worst.toExponential(2)} > ${tol}`);
}
const copy = (a: Float32Array) => a.slice();

/** Attention (forward, backward) within bf16 tolerances: what a backend storing Q, K, V and the scores in bf16 meets. */
async function attentionBf16(be: HostBackend): Promise<void> {
  const r = new Rng(77), randn = (n: number) => Float32Array.from({ length: n }, () => r.normal());
  // 64-wide heads over whole and partial 64-key blocks: the native backend's bf16 block products (attention_bf16.cc)
  for (const [B, T, C, NH] of [[2, 33, 64, 2], [1, 70, 96, 4], [2, 130, 128, 2], [1, 64, 64, 1]]) {
    const N = B * T, qkv = randn(N * 3 * C), da = randn(N * C);
    const [a1, l1, a2, l2] = [new Float32Array(N * C), new Float32Array(B * NH * T), new Float32Array(N * C), new Float32Array(B * NH * T)];
    ref.attentionForward(a1, l1, qkv, B, T, C, NH);
    await be.attentionForward(a2, l2, qkv, B, T, C, NH);
    close(a2, a1, 2e-2, `bf16 attentionForward ${B},${T},${C},${NH}`);
    close(l2, l1, 1e-2, "bf16 attention lse");
    const [d1, d2] = [new Float32Array(N * 3 * C), new Float32Array(N * 3 * C)];
    ref.attentionBackward(d1, da, qkv, a1, l1, B, T, C, NH);
    await be.attentionBackward(d2, da, qkv, a1, l1, B, T, C, NH);
    close(d2, d1, 3e-2, `bf16 attentionBackward ${B},${T},${C},${NH}`);
  }
}

/** Runs every kernel of `backend` against the reference; `bf16` checks the matmuls at `tol` and attention at bf16 bounds. */
export async function runConformance(backend: Backend, opts: { tol: number; bf16?: boolean }): Promise<void> {
  const be = onHost(backend);
  const bf16 = opts.bf16 ?? false;
  const tol = opts.tol;
  // matmul: tiny, odd, and GPT-2-like shapes (N, C, OC)
  // errors are measured against the size of the summed terms (the same product over absolute values): a result that
  // cancels to near zero keeps the rounding of its terms (bf16's 2^-8 of each product)
  const abs = (a: Float32Array) => a.map(Math.abs);
  const biggest = (a: Float32Array) => a.reduce((x, y) => Math.max(x, Math.abs(y)), 0);
  // [8, 16, 520] and [20, 40, 700] reach the GEMM paths GPT-2's shapes take on the native backend with 2 threads:
  // output columns sliced between threads (forward, N = OC > 448 = 4 threads' x 2 x 64-wide strips) and, in bf16,
  // the "deep" products (dinp: K = OC >= 16 max(tokens, C), as the lm_head's K = 50304 over 256 x 768)
  // (their data come from a generator of their own, so the data of every other check stay what they were)
  const rw = new Rng(77), randWide = (n: number) => Float32Array.from({ length: n }, () => rw.normal());
  const shapes: [number[], (n: number) => Float32Array][] = [
    ...[[1, 1, 1], [3, 5, 7], [7, 33, 65], [13, 130, 67], [64, 96, 384], [5, 64, 300], [130, 257, 129]].map((x) => [x, rand] as [number[], typeof rand]),
    ...[[8, 16, 520], [20, 40, 700]].map((x) => [x, randWide] as [number[], typeof rand]),
  ];
  for (const [[N, C, OC], rand] of shapes) {
    const inp = rand(N * C), w = rand(OC * C), b = rand(OC), dout = rand(N * OC);
    const o1 = new Float32Array(N * OC), o2 = new Float32Array(N * OC), terms = new Float32Array(N * OC);
    ref.matmulForward(terms, abs(inp), abs(w), abs(b), N, C, OC);
    ref.matmulForward(o1, inp, w, b, N, C, OC);
    await be.matmulForward(o2, inp, w, b, N, C, OC);
    close(o2, o1, tol, `matmulForward ${N}x${C}x${OC}`, biggest(terms));
    await be.matmulForward(o2, inp, w, null, N, C, OC);
    ref.matmulForward(o1, inp, w, null, N, C, OC);
    close(o2, o1, tol, `matmulForward no bias ${N}x${C}x${OC}`, biggest(terms));
    const di1 = new Float32Array(N * C), di2 = new Float32Array(N * C);
    const dw0 = rand(OC * C), dw1 = copy(dw0), dw2 = copy(dw0), db0 = rand(OC), db1 = copy(db0), db2 = copy(db0);
    const [diTerms, dwTerms] = [new Float32Array(N * C), abs(dw0)];
    ref.matmulBackward(diTerms, dwTerms, null, abs(dout), abs(inp), abs(w), N, C, OC);
    ref.matmulBackward(di1, dw1, db1, dout, inp, w, N, C, OC);
    await be.matmulBackward(di2, dw2, db2, dout, inp, w, N, C, OC);
    close(di2, di1, tol, `matmulBackward dinp ${N}x${C}x${OC}`, biggest(diTerms));
    close(dw2, dw1, tol, `matmulBackward dweight ${N}x${C}x${OC}`, biggest(dwTerms));
    close(db2, db1, 2e-5, `matmulBackward dbias ${N}x${C}x${OC}`);
  }
  if (bf16) {
    // the other kernels do not change with the matmul dtype, except attention on a GPU (bf16 scores): looser bounds
    await attentionBf16(be);
    return;
  }
  // (GPT-2's head size 64 over several 64-key blocks, with and without a partial last block, runs the native backend's
  // register-blocked path; 128 mixes it with the plain loops)
  for (const [B, T, C, NH] of [[1, 1, 4, 1], [2, 7, 12, 3], [3, 33, 64, 2], [1, 70, 96, 4], [2, 130, 128, 2], [1, 256, 384, 6], [2, 200, 128, 2], [1, 192, 256, 2]]) {
    const N = B * T;
    // layernorm
    const x = rand(N * C, 2), w = rand(C), b = rand(C), dout = rand(N * C);
    const [o1, m1, r1] = [new Float32Array(N * C), new Float32Array(N), new Float32Array(N)];
    const [o2, m2, r2] = [new Float32Array(N * C), new Float32Array(N), new Float32Array(N)];
    ref.layernormForward(o1, m1, r1, x, w, b, N, C);
    await be.layernormForward(o2, m2, r2, x, w, b, N, C);
    close(o2, o1, 2e-5, "layernormForward"); close(r2, r1, 2e-5, "layernorm rstd");
    const di0 = rand(N * C), dw0 = rand(C), db0 = rand(C);
    const [di1, dw1, db1, di2, dw2, db2] = [copy(di0), copy(dw0), copy(db0), copy(di0), copy(dw0), copy(db0)];
    ref.layernormBackward(di1, dw1, db1, dout, x, w, m1, r1, N, C);
    await be.layernormBackward(di2, dw2, db2, dout, x, w, m1, r1, N, C);
    close(di2, di1, 2e-5, "layernormBackward dinp"); close(dw2, dw1, 2e-5, "dweight"); close(db2, db1, 2e-5, "dbias");
    // attention
    const qkv = rand(N * 3 * C), da = rand(N * C);
    const [a1, l1, a2, l2] = [new Float32Array(N * C), new Float32Array(B * NH * T), new Float32Array(N * C), new Float32Array(B * NH * T)];
    ref.attentionForward(a1, l1, qkv, B, T, C, NH);
    await be.attentionForward(a2, l2, qkv, B, T, C, NH);
    close(a2, a1, 2e-5, `attentionForward ${B},${T},${C},${NH}`); close(l2, l1, 2e-5, "attention lse");
    const [dq1, dq2] = [rand(N * 3 * C), rand(N * 3 * C)];
    ref.attentionBackward(dq1, da, qkv, a1, l1, B, T, C, NH);
    await be.attentionBackward(dq2, da, qkv, a1, l1, B, T, C, NH);
    close(dq2, dq1, 5e-5, `attentionBackward ${B},${T},${C},${NH}`);
    // cached attention, fed in two chunks, equals the reference fed the same way
    const maxT = T + 2, hs = C / NH, t1 = Math.max(1, Math.floor(T / 2));
    const caches = [0, 1, 2, 3].map(() => new Float32Array(B * NH * maxT * hs));
    for (const [pos, len] of [[0, t1], [t1, T - t1]]) {
      if (len === 0) continue;
      const q = rand(B * len * 3 * C), c1 = new Float32Array(B * len * C), c2 = new Float32Array(B * len * C);
      ref.attentionCached(c1, caches[0], caches[1], q, B, len, pos, maxT, C, NH);
      await be.attentionCached(c2, caches[2], caches[3], q, B, len, pos, maxT, C, NH);
      close(c2, c1, 2e-5, "attentionCached");
    }
    // gelu, residual
    const g1 = new Float32Array(N * C), g2 = new Float32Array(N * C);
    ref.geluForward(g1, x, N * C); await be.geluForward(g2, x, N * C);
    close(g2, g1, 2e-6, "geluForward");
    ref.geluBackward(g1, x, dout, N * C); await be.geluBackward(g2, x, dout, N * C);
    close(g2, g1, 2e-6, "geluBackward");
    ref.residualForward(g1, x, dout, N * C); await be.residualForward(g2, x, dout, N * C);
    close(g2, g1, 0, "residualForward");
    // encoder
    const V = 11, tokens = new HostI32(Int32Array.from({ length: N }, () => rng.int(V)));
    const wte = rand(V * C), wpe = rand(T * C), e1 = new Float32Array(N * C), e2 = new Float32Array(N * C);
    ref.encoderForward(e1, tokens, wte, wpe, B, T, C); await be.encoderForward(e2, tokens, wte, wpe, B, T, C);
    close(e2, e1, 0, "encoderForward");
    const [dte1, dpe1, dte2, dpe2] = [new Float32Array(V * C), new Float32Array(T * C), new Float32Array(V * C), new Float32Array(T * C)];
    ref.encoderBackward(dte1, dpe1, dout, tokens, B, T, C); await be.encoderBackward(dte2, dpe2, dout, tokens, B, T, C);
    close(dte2, dte1, 1e-6, "encoderBackward dwte"); close(dpe2, dpe1, 1e-6, "encoderBackward dwpe");
    // the ids as the model passes them: a view, at an offset, of a larger i32 tensor of the backend's own
    const idsAll = be.alloc(N + 3, "i32");
    assert.equal(idsAll.dtype, "i32");
    be.write(idsAll, tokens, 3);
    const e3 = new Float32Array(N * C);
    await be.encoderForward(e3, be.view(idsAll, 3, N), wte, wpe, B, T, C);
    close(e3, e1, 0, "encoderForward (ids from a view of an i32 tensor)");
    assert.throws(() => be.write(idsAll, new Float32Array(2)), TypeError, "float32 values into an i32 tensor");
    assert.throws(() => be.write(be.alloc(2), Int32Array.of(1, 2)), TypeError, "int32 values into a float32 tensor");
    // float32 values where token ids go: refused before any kernel reads their bytes as ids
    assert.throws(() => be.encoderForward(e3, be.alloc(N), wte, wpe, B, T, C), TypeError, "a float32 tensor as token ids");
  }
  // cross-entropy (padded vocab, ignored targets, aliasing dlogits over logits)
  for (const [N, V, Vp] of [[1, 3, 8], [9, 100, 128], [5, 1000, 1024]]) {
    const logits = rand(N * Vp, 3), targets = new HostI32(Int32Array.from({ length: N }, (_, i) => (i === 1 ? -1 : rng.int(V))));
    const [ls1, ls2] = [new Float32Array(N), new Float32Array(N)];
    const d1 = new Float32Array(N * Vp), d2 = copy(logits);
    ref.crossEntropy(ls1, d1, logits, targets, N, V, Vp, 0.25);
    await be.crossEntropy(ls2, d2, d2, targets, N, V, Vp, 0.25);
    close(ls2, ls1, 2e-6, "crossEntropy loss"); close(d2, d1, 2e-6, "crossEntropy dlogits (aliased)");
    // per-row weights (preference and policy-gradient objectives): each row's gradient times its weight, the
    // losses unchanged; checked against the unweighted reference row by row
    const w = Float32Array.from({ length: N }, (_, i) => (i % 3) - 0.5 * i);
    const [ls3, d3] = [new Float32Array(N), copy(logits)];
    await be.crossEntropy(ls3, d3, d3, targets, N, V, Vp, 0.25, w);
    close(ls3, ls1, 2e-6, "crossEntropy loss (weighted rows)");
    close(d3, d1.map((x, i) => x * w[Math.floor(i / Vp)]), 2e-6, "crossEntropy dlogits (weighted rows)");
  }
  // AdamW, norms
  for (const n of [1, 17, 1000]) {
    const p = rand(n), g = rand(n), m = rand(n, 0.1), v = rand(n, 0.1).map(Math.abs);
    const [p1, m1, v1, p2, m2, v2] = [copy(p), copy(m), copy(v), copy(p), copy(m), copy(v)];
    ref.adamw(p1, g, m1, v1, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 3, 1);
    await be.adamw(p2, g, m2, v2, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 3, 1);
    // m and v are sums of two products that can cancel: their rounding is relative to the terms, not the result
    const big = (a: Float32Array) => a.reduce((x, y) => Math.max(x, Math.abs(y)), 0);
    close(p2, p1, 1e-6, "adamw params");
    close(m2, m1, 1e-6, "adamw m", 0.9 * big(m) + 0.1 * big(g));
    close(v2, v1, 1e-6, "adamw v", 0.95 * big(v) + 0.05 * big(g) ** 2);
    // clipping inside the update: the same as an update on gradients scaled beforehand
    const s = 0.37, gs = g.map((x) => x * s);
    const [p3, m3, v3, p4, m4, v4] = [copy(p), copy(m), copy(v), copy(p), copy(m), copy(v)];
    ref.adamw(p3, gs, m3, v3, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 3, 1);
    await be.adamw(p4, g, m4, v4, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 3, s);
    close(p4, p3, 1e-6, "adamw params, gradients scaled in the update");
    close(m4, m3, 1e-6, "adamw m, gradients scaled in the update", 0.9 * big(m) + 0.1 * big(gs));
    close(v4, v3, 1e-6, "adamw v, gradients scaled in the update", 0.95 * big(v) + 0.05 * big(gs) ** 2);
    assert.ok(Math.abs(await be.sumSquaresAsync(g, n) - ref.sumSquares(g, n)) <= 1e-6 * ref.sumSquares(g, n));
    const s1 = copy(g), s2 = copy(g);
    ref.scale(s1, n, 0.3); await be.scale(s2, n, 0.3);
    close(s2, s1, 3e-7, "scale"); // the reference multiplies in double
  }
  // many rows (the GPU's bias gradient loops over rows in blocks of 512), from its own generator so that the data of
  // the checks above stay what they were
  const r2 = new Rng(99), rand2 = (n: number) => Float32Array.from({ length: n }, () => r2.normal());
  const [N, C, OC] = [600, 24, 40];
  const inp = rand2(N * C), w = rand2(OC * C), dout = rand2(N * OC), db0 = rand2(OC);
  const [di1, di2, dw1, dw2, db1, db2] = [new Float32Array(N * C), new Float32Array(N * C), new Float32Array(OC * C),
    new Float32Array(OC * C), copy(db0), copy(db0)];
  ref.matmulBackward(di1, dw1, db1, dout, inp, w, N, C, OC);
  await be.matmulBackward(di2, dw2, db2, dout, inp, w, N, C, OC);
  close(di2, di1, tol, `matmulBackward dinp ${N}x${C}x${OC}`);
  close(dw2, dw1, tol, `matmulBackward dweight ${N}x${C}x${OC}`);
  close(db2, db1, 2e-5, `matmulBackward dbias ${N}x${C}x${OC}`);
}

/**
 * Settings belong to a backend: `fp32` keeps multiplying in fp32 (bit for bit what it gave alone) after a `bf16`
 * backend was created beside it and used, and the bf16 one keeps its rounding; calls interleave freely.
 */
/** `bf16Attention`: the bf16 backend's attention multiplies in bf16 too, so its results must differ from fp32's */
export async function assertSettingsPerBackend(makeFp32: () => Backend, makeBf16: () => Backend,
  opts: { bf16Attention?: boolean } = {}): Promise<void> {
  const r = new Rng(5), rnd = (n: number) => Float32Array.from({ length: n }, () => r.normal());
  const [N, C, OC] = [8, 16, 520];
  const inp = rnd(N * C), w = rnd(OC * C), dout = rnd(N * OC);
  // attention too (a 64-wide head over two key blocks): a bf16 backend may multiply its blocks in bf16
  const [B, T, AC, NH] = [1, 70, 64, 1], qkv = rnd(B * T * 3 * AC), da = rnd(B * T * AC);
  const run = async (be: HostBackend) => {
    const out = new Float32Array(N * OC), di = new Float32Array(N * C), dw = new Float32Array(OC * C);
    await be.matmulForward(out, inp, w, null, N, C, OC);
    await be.matmulBackward(di, dw, null, dout, inp, w, N, C, OC);
    const att = new Float32Array(B * T * AC), lse = new Float32Array(B * NH * T), dqkv = new Float32Array(B * T * 3 * AC);
    await be.attentionForward(att, lse, qkv, B, T, AC, NH);
    await be.attentionBackward(dqkv, da, qkv, att, lse, B, T, AC, NH);
    return [out, di, dw, att, lse, dqkv];
  };
  const fp32 = onHost(makeFp32());
  const alone = await run(fp32);
  const bf16 = onHost(makeBf16());
  const rounded = await run(bf16);
  const again = await run(fp32);
  for (let i = 0; i < alone.length; i++) {
    assert.deepEqual(again[i], alone[i], `fp32 result ${i} changed after a bf16 backend was made and used`);
    if (i < 3 || opts.bf16Attention) assert.notDeepEqual(rounded[i], alone[i], `the bf16 backend's result ${i} is fp32's: it does not round`);
  }
  assert.deepEqual(await run(bf16), rounded, "the bf16 backend's results changed after the fp32 one ran");
}

/**
 * Cross-entropy on rows the reference takes apart: a NaN logit anywhere makes its row's loss and every gradient of it
 * NaN (a max that drops NaN operands, or an exponential clamped from below, would each lose it), and a row that starts
 * with -Infinity logits (masked columns) keeps a finite loss, with zero gradient there. `dtype`: the logits' storage.
 */
export async function assertCrossEntropyEdges(be: Backend, dtype: "f32" | "bf16" = "f32"): Promise<void> {
  const ref = new JsBackend(dtype);
  for (const V of [50, 64, 3000]) {
    for (const at of [0, 20, V - 1]) {
      const N = 3, logits = Float32Array.from({ length: N * V }, (_, i) => Math.sin(i));
      logits[at] = NaN; // row 0 only
      for (let j = 0; j < Math.min(V, 40); j++) logits[2 * V + j] = -Infinity; // row 2: masked columns first
      for (const b of [be, ref]) {
        const x = b.alloc(N * V, dtype), losses = b.alloc(N), targets = b.alloc(N, "i32");
        b.write(x, logits);
        b.write(targets, Int32Array.from([3, 5, V - 2]));
        b.crossEntropy(losses, x, x, targets, N, V, V, 0.5);
        const l = await b.readAsync(losses), d = await b.readAsync(x);
        assert.ok(Number.isNaN(l[0]), `${b.name} V=${V}, NaN at ${at}: loss ${l[0]}`);
        assert.ok(Number.isFinite(l[1]), `${b.name} V=${V}: the other row's loss ${l[1]}`);
        assert.ok(d.subarray(0, V).every(Number.isNaN), `${b.name} V=${V}, NaN at ${at}: a gradient is not NaN`);
        assert.ok(Number.isFinite(l[2]), `${b.name} V=${V}: the masked row's loss ${l[2]}`);
        assert.ok(d.subarray(2 * V, 2 * V + Math.min(V, 40)).every((g) => g === 0), `${b.name} V=${V}: a masked column's gradient is not 0`);
      }
    }
  }
}
