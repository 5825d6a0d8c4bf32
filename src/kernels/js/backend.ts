// The pure-TypeScript reference backend: host Float32Array storage, single-threaded.

import type { Backend, Tensor } from "../backend.js";
import * as k from "./layers.js";
import { fromBf16Array, isBf16, toBf16Array } from "../bf16.js";

type F32 = Float32Array;
const f = (t: Tensor): F32 => t as F32;
const fn = (t: Tensor | null): F32 | null => (t === null ? null : (t as F32));

export class JsBackend implements Backend {
  readonly name: string = "js";
  get threads(): number { return 1; }
  /** per-query score row for attention, grown to the longest sequence seen */
  private scores = new Float64Array(1024);

  alloc(n: number, dtype: "f32" | "bf16" = "f32"): Tensor { return dtype === "bf16" ? new Uint16Array(n) : new Float32Array(n); }
  view(t: Tensor, offset: number, n: number): Tensor {
    if (offset < 0 || offset + n > t.length) throw new RangeError(`view [${offset}, ${offset + n}) out of a buffer of ${t.length}`);
    return f(t).subarray(offset, offset + n);
  }
  write(t: Tensor, src: Float32Array, offset = 0): void {
    if (isBf16(t)) toBf16Array(src, t.subarray(offset, offset + src.length));
    else f(t).set(src, offset);
  }
  read(t: Tensor, offset = 0, n = t.length - offset): Float32Array {
    return isBf16(t) ? fromBf16Array(t.subarray(offset, offset + n)) : f(t).slice(offset, offset + n);
  }
  readAsync(t: Tensor, offset = 0, n = t.length - offset): Promise<Float32Array> {
    try { return Promise.resolve(this.read(t, offset, n)); } catch (e) { return Promise.reject(e); }
  }
  copy(dst: Tensor, src: Tensor): void {
    if (dst.length !== src.length) throw new RangeError(`copy of ${src.length} values into ${dst.length}`);
    if (isBf16(src)) throw new TypeError("copy from bf16 storage is not supported");
    if (isBf16(dst)) toBf16Array(f(src), dst);
    else f(dst).set(f(src));
  }
  fill(t: Tensor, value: number): void {
    if (isBf16(t)) t.fill(toBf16Array(Float32Array.of(value))[0]);
    else f(t).fill(value);
  }

  private scoreRow(T: number): Float64Array {
    if (this.scores.length < T) this.scores = new Float64Array(T);
    return this.scores;
  }

  encoderForward(out: Tensor, inp: Int32Array, wte: Tensor, wpe: Tensor, B: number, T: number, C: number): void {
    k.encoderForward(f(out), inp, f(wte), f(wpe), B, T, C);
  }
  encoderBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, inp: Int32Array, B: number, T: number, C: number): void {
    k.encoderBackward(f(dwte), f(dwpe), f(dout), inp, B, T, C);
  }
  layernormForward(out: Tensor, mean: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, N: number, C: number): void {
    k.layernormForward(f(out), f(mean), f(rstd), f(inp), f(weight), f(bias), N, C);
  }
  layernormBackward(dinp: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, inp: Tensor, weight: Tensor, mean: Tensor,
    rstd: Tensor, N: number, C: number): void {
    k.layernormBackward(f(dinp), f(dweight), f(dbias), f(dout), f(inp), f(weight), f(mean), f(rstd), N, C);
  }
  matmulForward(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null, N: number, C: number, OC: number): void {
    // bf16 weights: their exact float32 values, multiplied in float32 (the reference for the native kernel)
    k.matmulForward(f(out), f(inp), isBf16(weight) ? fromBf16Array(weight) : f(weight), fn(bias), N, C, OC);
  }
  matmulBackward(dinp: Tensor | null, dweight: Tensor, dbias: Tensor | null, dout: Tensor, inp: Tensor, weight: Tensor,
    N: number, C: number, OC: number): void {
    k.matmulBackward(fn(dinp), f(dweight), fn(dbias), f(dout), f(inp), f(weight), N, C, OC);
  }
  attentionForward(out: Tensor, lse: Tensor, qkv: Tensor, B: number, T: number, C: number, NH: number): void {
    k.attentionForward(f(out), f(lse), f(qkv), B, T, C, NH, this.scoreRow(T));
  }
  attentionBackward(dqkv: Tensor, dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, B: number, T: number, C: number,
    NH: number): void {
    k.attentionBackward(f(dqkv), f(dout), f(qkv), f(out), f(lse), B, T, C, NH);
  }
  attentionCached(out: Tensor, kcache: Tensor, vcache: Tensor, qkv: Tensor, B: number, Tq: number, pos: number,
    maxT: number, C: number, NH: number): void {
    k.attentionCached(f(out), f(kcache), f(vcache), f(qkv), B, Tq, pos, maxT, C, NH, this.scoreRow(maxT));
  }
  geluForward(out: Tensor, inp: Tensor, N: number): void { k.geluForward(f(out), f(inp), N); }
  geluBackward(dinp: Tensor, inp: Tensor, dout: Tensor, N: number): void { k.geluBackward(f(dinp), f(inp), f(dout), N); }
  residualForward(out: Tensor, a: Tensor, b: Tensor, N: number): void { k.residualForward(f(out), f(a), f(b), N); }
  crossEntropy(losses: Tensor, dlogits: Tensor | null, logits: Tensor, targets: Int32Array, N: number, V: number,
    Vp: number, gradScale: number, rowWeights: Float32Array | null = null): void {
    k.crossEntropy(f(losses), fn(dlogits), f(logits), targets, N, V, Vp, gradScale, rowWeights);
  }
  adamw(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, n: number, lr: number, beta1: number, beta2: number,
    eps: number, weightDecay: number, t: number): void {
    k.adamw(f(params), f(grads), f(m), f(v), n, lr, beta1, beta2, eps, weightDecay, t);
  }
  sumSquares(t: Tensor, n: number): number {
    const a = f(t);
    let s = 0;
    for (let i = 0; i < n; i++) s += a[i] * a[i];
    return s;
  }
  sumSquaresAsync(t: Tensor, n: number): Promise<number> {
    try { return Promise.resolve(this.sumSquares(t, n)); } catch (e) { return Promise.reject(e); }
  }
  scale(t: Tensor, n: number, s: number): void {
    const a = f(t);
    for (let i = 0; i < n; i++) a[i] *= s;
  }
}
