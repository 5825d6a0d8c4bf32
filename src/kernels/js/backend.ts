// The pure-TypeScript reference backend: host Float32Array storage, single-threaded.

import type { Backend, DType, Tensor } from "../backend.js";
import * as k from "./layers.js";
import { fromBf16Array, isBf16, toBf16Array } from "../bf16.js";
import { HostBf16, HostF32, HostI32 } from "../host.js";

type F32 = Float32Array;
/** a float32 tensor's array (parameters, their gradients, optimizer state, statistics): never bf16 storage */
const f = (t: Tensor): F32 => {
  if (isBf16(t) || t instanceof Int32Array) throw new TypeError(`a float32 tensor was expected here, not ${isBf16(t) ? "bf16" : "int32"} storage`);
  return t as unknown as F32;
};
/** an i32 tensor's array (token ids) */
const ints = (t: Tensor): Int32Array => {
  if (!(t instanceof Int32Array)) throw new TypeError(`an i32 tensor of token ids was expected here, not ${isBf16(t) ? "bf16" : "float32"} storage`);
  return t;
};
const fn = (t: Tensor | null): F32 | null => (t === null ? null : f(t));
/** the float32 values of an activation of either storage: itself, or a widened copy (bf16 values are exact floats) */
const r = (t: Tensor): F32 => (isBf16(t) ? fromBf16Array(t) : f(t));

/**
 * Where a kernel writes an activation of either storage: a float32 one in place; a bf16 one through a float32 copy
 * of its values, rounded back to bf16 (nearest even) by done(). The reference semantics of bf16 activations: read
 * as float32, computed in float32, rounded once on the way out.
 */
class Outputs {
  private staged: [Uint16Array, F32][] = [];
  w(t: Tensor): F32 {
    if (!isBf16(t)) return f(t);
    const wide = fromBf16Array(t);
    this.staged.push([t, wide]);
    return wide;
  }
  wn(t: Tensor | null): F32 | null { return t === null ? null : this.w(t); }
  done(): void {
    for (const [t, wide] of this.staged) toBf16Array(wide, t);
  }
}

export class JsBackend implements Backend {
  readonly name: string = "js";
  /**
   * float32, unless a caller (a test of bf16 activations, or a subclass) asks for bf16: the reference computes with
   * bf16 activations as `Outputs` says
   */
  readonly activationDtype: "f32" | "bf16";
  constructor(activations: "f32" | "bf16" = "f32") { this.activationDtype = activations; }
  get threads(): number { return 1; }
  /** per-query score row for attention, grown to the longest sequence seen */
  private scores = new Float64Array(1024);

  alloc(n: number, dtype: DType = "f32"): Tensor {
    if (dtype === "bf16") return new HostBf16(n);
    if (dtype === "i32") return new HostI32(n);
    if (dtype !== "f32") throw new TypeError(`alloc: no ${dtype as string} storage on the ${this.name} backend`);
    return new HostF32(n);
  }
  view(t: Tensor, offset: number, n: number): Tensor {
    if (offset < 0 || offset + n > t.length) throw new RangeError(`view [${offset}, ${offset + n}) out of a buffer of ${t.length}`);
    return (t as unknown as Float32Array | Uint16Array | Int32Array).subarray(offset, offset + n) as unknown as Tensor;
  }
  write(t: Tensor, src: Float32Array | Int32Array, offset = 0): void {
    if ((t instanceof Int32Array) !== (src instanceof Int32Array)) throw new TypeError(`write: ${src instanceof Int32Array ? "int32" : "float32"} values into an ${t.dtype} tensor`);
    if (offset < 0 || offset + src.length > t.length) throw new RangeError(`write of ${src.length} values at ${offset} into a buffer of ${t.length}`);
    if (isBf16(t)) toBf16Array(src as Float32Array, t.subarray(offset, offset + src.length));
    else (t as unknown as Float32Array | Int32Array).set(src, offset);
  }
  read(t: Tensor, offset = 0, n = t.length - offset): Float32Array {
    // a plain Float32Array: host data, not a tensor of this backend
    return isBf16(t) ? fromBf16Array(t.subarray(offset, offset + n)) : new Float32Array(f(t).subarray(offset, offset + n));
  }
  readAsync(t: Tensor, offset = 0, n = t.length - offset): Promise<Float32Array> {
    try { return Promise.resolve(this.read(t, offset, n)); } catch (e) { return Promise.reject(e); }
  }
  copy(dst: Tensor, src: Tensor): void {
    if (dst.length !== src.length) throw new RangeError(`copy of ${src.length} values into ${dst.length}`);
    if (dst instanceof Int32Array && src instanceof Int32Array) { dst.set(src); return; }
    if (isBf16(src) && isBf16(dst)) dst.set(src);
    else if (isBf16(src)) fromBf16Array(src, f(dst));
    else if (isBf16(dst)) toBf16Array(f(src), dst);
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

  encoderForward(out: Tensor, inp: Tensor, wte: Tensor, wpe: Tensor, B: number, T: number, C: number): void {
    const o = new Outputs();
    k.encoderForward(o.w(out), ints(inp), r(wte), r(wpe), B, T, C);
    o.done();
  }
  encoderBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, inp: Tensor, B: number, T: number, C: number): void {
    k.encoderBackward(f(dwte), f(dwpe), r(dout), ints(inp), B, T, C);
  }
  layernormForward(out: Tensor, mean: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, N: number, C: number): void {
    const o = new Outputs();
    k.layernormForward(o.w(out), f(mean), f(rstd), r(inp), f(weight), f(bias), N, C);
    o.done();
  }
  layernormBackward(dinp: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, inp: Tensor, weight: Tensor, mean: Tensor,
    rstd: Tensor, N: number, C: number): void {
    const o = new Outputs();
    k.layernormBackward(o.w(dinp), f(dweight), f(dbias), r(dout), r(inp), f(weight), f(mean), f(rstd), N, C);
    o.done();
  }
  matmulForward(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null, N: number, C: number, OC: number): void {
    // bf16 weights: their exact float32 values, multiplied in float32 (the reference for the native kernel)
    const o = new Outputs();
    k.matmulForward(o.w(out), r(inp), r(weight), fn(bias), N, C, OC);
    o.done();
  }
  matmulBackward(dinp: Tensor | null, dweight: Tensor, dbias: Tensor | null, dout: Tensor, inp: Tensor, weight: Tensor,
    N: number, C: number, OC: number): void {
    const o = new Outputs();
    k.matmulBackward(o.wn(dinp), f(dweight), fn(dbias), r(dout), r(inp), f(weight), N, C, OC);
    o.done();
  }
  attentionForward(out: Tensor, lse: Tensor, qkv: Tensor, B: number, T: number, C: number, NH: number): void {
    const o = new Outputs();
    k.attentionForward(o.w(out), f(lse), r(qkv), B, T, C, NH, this.scoreRow(T));
    o.done();
  }
  attentionBackward(dqkv: Tensor, dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, B: number, T: number, C: number,
    NH: number): void {
    const o = new Outputs();
    k.attentionBackward(o.w(dqkv), r(dout), r(qkv), r(out), f(lse), B, T, C, NH);
    o.done();
  }
  attentionCached(out: Tensor, kcache: Tensor, vcache: Tensor, qkv: Tensor, B: number, Tq: number, pos: number,
    maxT: number, C: number, NH: number): void {
    k.attentionCached(f(out), f(kcache), f(vcache), f(qkv), B, Tq, pos, maxT, C, NH, this.scoreRow(maxT));
  }
  geluForward(out: Tensor, inp: Tensor, N: number): void {
    const o = new Outputs();
    k.geluForward(o.w(out), r(inp), N);
    o.done();
  }
  geluBackward(dinp: Tensor, inp: Tensor, dout: Tensor, N: number): void {
    const o = new Outputs();
    k.geluBackward(o.w(dinp), r(inp), r(dout), N);
    o.done();
  }
  residualForward(out: Tensor, a: Tensor, b: Tensor, N: number): void {
    const o = new Outputs();
    k.residualForward(o.w(out), r(a), r(b), N);
    o.done();
  }
  crossEntropy(losses: Tensor, dlogits: Tensor | null, logits: Tensor, targets: Tensor, N: number, V: number,
    Vp: number, gradScale: number, rowWeights: Float32Array | null = null): void {
    const o = new Outputs();
    k.crossEntropy(f(losses), o.wn(dlogits), r(logits), ints(targets), N, V, Vp, gradScale, rowWeights);
    o.done();
  }
  adamw(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, n: number, lr: number, beta1: number, beta2: number,
    eps: number, weightDecay: number, t: number, gradScale: number): void {
    k.adamw(f(params), f(grads), f(m), f(v), n, lr, beta1, beta2, eps, weightDecay, t, gradScale);
  }
  sumSquares(t: Tensor, n: number): number {
    const a = isBf16(t) ? fromBf16Array(t.subarray(0, n)) : f(t);
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
