// The WebGPU backend: every tensor lives in a GPU buffer of a WebGPU device (Dawn in Node, or a browser's), every
// kernel is a WGSL compute pass (./kernels.ts), and results come back asynchronously (readAsync), because WebGPU
// maps buffers only asynchronously. The synchronous read()/sumSquares() throw: the loop, evaluation, generation
// and checkpoint writing all read through the async path.
//
// This file uses only the WebGPU API (no Node modules), so the browser build shares it; ./node.ts finds a device in
// Node.

import { DTYPE_BYTES, type Backend, type DType, type Tensor } from "../backend.js";
import { fromBf16Array } from "../bf16.js";
import { KERNELS, type KernelName, type KernelSpec } from "./kernels.js";
import { layoutPass, shader, uniformBlock } from "./pass.js";

// the WebGPU enums' values (the spec's), so that this file needs no globals installed
const USAGE = { MAP_READ: 1, COPY_SRC: 4, COPY_DST: 8, UNIFORM: 64, STORAGE: 128 } as const;
const MAP_READ = 1, COMPUTE = 4;
/** uniform slots per submission; 256 bytes is every device's uniform offset alignment or a multiple of it */
const SLOTS = 512, SLOT = 256;

/**
 * A buffer on the device, or a view of one: float32, bf16 (two values to a 32-bit word, the even one in the low
 * half; inference weights, read in float32 by the kernels), or int32 (token ids). offset and length count values.
 */
export class WebGPUTensor implements Tensor {
  constructor(readonly buffer: GPUBuffer, readonly offset: number, readonly length: number, readonly dtype: DType = "f32") {}
  get bytesPerValue(): number { return DTYPE_BYTES[this.dtype]; }
}

type Arg = WebGPUTensor | Float32Array;

const tensor = (t: Tensor): WebGPUTensor => {
  if (!(t instanceof WebGPUTensor)) throw new TypeError("the WebGPU backend was given a tensor it does not own");
  return t;
};

export class WebGPUBackend implements Backend {
  readonly name = "webgpu";
  readonly threads = 1;
  /**
   * Rows of logits per classifier chunk: up to 1024 (a few large passes), as many as one binding of GPT-2's padded
   * vocabulary (50304 floats a row) may hold on this device (128 MiB on some: 640 rows). The model's own tensors must
   * each fit one binding too: on a 128 MiB device GPT-2 124M's wte (147 MiB) does not, its smaller presets do.
   */
  readonly classifierRows: number;
  private readonly align: number;
  /** every pass's parameters, one 256-byte slot each, for the passes not yet submitted */
  private readonly uniforms: GPUBuffer;
  private slot = 0;
  /** passes are recorded into one command encoder and submitted together: before any read, write or upload that must
   * follow them, or when the uniform slots run out (one submission per kernel costs a round trip to the GPU process
   * in a browser) */
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly uploaded = new Set<string>();
  /** the error scopes of submitted batches, still to be heard from (a read waits for them) */
  private scopes: Promise<void>[] = [];
  private readonly pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
  /** host arrays (the classifier's row weights, a bf16 write's float32 values) go through these, one per argument position */
  private readonly staging = new Map<string, GPUBuffer>();
  private scratch: GPUBuffer | null = null;
  private error: string | null = null;

  /** `device`: a GPUDevice from an adapter (./node.ts in Node, navigator.gpu in a browser); `label` names it */
  /** the most bytes one binding may span: the device's limit, or less when asked (a test of a small device) */
  readonly maxBinding: number;
  /**
   * "bf16" (--dtype bf16): a model stores its activations in bf16 here, half the memory and the traffic; the kernels
   * read them as float32, compute in float32 and round what they write (./pass.ts), as the reference does
   */
  readonly activationDtype: "f32" | "bf16";

  constructor(readonly gpu: GPUDevice, readonly device: string, opts: { maxBindingBytes?: number; activations?: "f32" | "bf16" } = {}) {
    this.activationDtype = opts.activations ?? "f32";
    this.align = gpu.limits.minStorageBufferOffsetAlignment;
    this.maxBinding = Math.min(gpu.limits.maxStorageBufferBindingSize, opts.maxBindingBytes ?? Infinity);
    this.classifierRows = Math.max(64, Math.min(1024, Math.floor(this.maxBinding / (50304 * 4) / 64) * 64));
    this.uniforms = gpu.createBuffer({ size: SLOTS * SLOT, usage: USAGE.UNIFORM | USAGE.COPY_DST });
    // validation errors arrive asynchronously: the next read rejects with the first one
    gpu.addEventListener("uncapturederror", (e) => { this.error ??= (e as GPUUncapturedErrorEvent).error.message; });
    void gpu.lost.then((info) => { this.error ??= `the WebGPU device was lost: ${info.message || info.reason}`; });
  }

  /**
   * WebGPU does not tell how much memory a device has (maxBufferSize bounds one buffer, not all of them): no bound
   * here; a run too big for the device fails at its first allocation, with the device's message
   */
  freeBytes(): number { return Infinity; }

  // ---------------------------------------------------------------- memory
  alloc(n: number, dtype: DType = "f32"): Tensor {
    const bytes = Math.max(4, n * DTYPE_BYTES[dtype]);
    if (bytes > this.gpu.limits.maxBufferSize) {
      throw new RangeError(`a buffer of ${n} ${dtype} values (${(bytes / 2 ** 20).toFixed(0)} MiB) exceeds this WebGPU device's largest buffer (${(this.gpu.limits.maxBufferSize / 2 ** 20).toFixed(0)} MiB)`);
    }
    return new WebGPUTensor(this.gpu.createBuffer({ size: Math.ceil(bytes / 16) * 16, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST }), 0, n, dtype);
  }
  view(t: Tensor, offset: number, n: number): Tensor {
    const w = tensor(t);
    if (offset < 0 || offset + n > w.length) throw new RangeError(`view [${offset}, ${offset + n}) out of a buffer of ${w.length}`);
    return new WebGPUTensor(w.buffer, w.offset + offset, n, w.dtype);
  }
  write(t: Tensor, src: Float32Array | Int32Array, offset = 0): void {
    const w = tensor(t);
    if ((w.dtype === "i32") !== (src instanceof Int32Array)) throw new TypeError(`write: ${src instanceof Int32Array ? "int32" : "float32"} values into an ${w.dtype} tensor`);
    if (offset < 0 || offset + src.length > w.length) throw new RangeError(`write of ${src.length} at ${offset} out of a buffer of ${w.length}`);
    // the queue runs a write at once, ahead of passes still being recorded: those go first
    this.flush();
    if (src.length === 0) return;
    if (w.dtype !== "bf16") { this.gpu.queue.writeBuffer(w.buffer, (w.offset + offset) * 4, src.buffer, src.byteOffset, src.byteLength); return; }
    // bf16: rounded on the device from the float32 values (an odd count keeps the value after them)
    if ((w.offset + offset) % 2 !== 0) throw new RangeError(`a bf16 write must start at an even value (at ${w.offset + offset})`);
    this.pieces(src.length, (from, count) => {
      this.run("toBf16", [this.view(w, offset + from, count), (src as Float32Array).subarray(from, from + count)], [Math.ceil(count / 2), count], Math.ceil(count / 512));
    });
  }
  read(): Float32Array {
    throw new Error("the WebGPU backend reads asynchronously: use readAsync (a synchronous read was asked for)");
  }
  async readAsync(t: Tensor, offset = 0, n = t.length - offset): Promise<Float32Array> {
    const w = tensor(t);
    if (w.dtype === "i32") throw new TypeError("read: float32 or bf16 tensors only (an i32 one was given)");
    if (offset < 0 || offset + n > w.length) throw new RangeError(`read [${offset}, ${offset + n}) out of a buffer of ${w.length}`);
    this.flush();
    this.check();
    // the error scopes of everything before this read (another read in flight must not take them)
    const scopes = this.scopes;
    this.scopes = [];
    if (n === 0) { await Promise.all(scopes); this.check(); return new Float32Array(0); }
    // whole words: a bf16 range is widened to even ends
    const first = (w.offset + offset) * w.bytesPerValue, end = (w.offset + offset + n) * w.bytesPerValue;
    const lo = Math.floor(first / 4) * 4, bytes = Math.ceil(end / 4) * 4 - lo;
    const staging = this.gpu.createBuffer({ size: bytes, usage: USAGE.MAP_READ | USAGE.COPY_DST });
    const enc = this.gpu.createCommandEncoder();
    enc.copyBufferToBuffer(w.buffer, lo, staging, 0, bytes);
    this.gpu.queue.submit([enc.finish()]);
    try {
      await staging.mapAsync(MAP_READ);
      // what the work before this read reported: its data must not be passed on as if it were good
      await Promise.all(scopes);
      this.check();
      const data = staging.getMappedRange().slice(0);
      if (w.dtype === "f32") return new Float32Array(data);
      return fromBf16Array(new Uint16Array(data, first - lo, n));
    } catch (e) {
      this.check();
      throw e;
    } finally {
      staging.destroy();
    }
  }
  fill(t: Tensor, value: number): void {
    if (tensor(t).dtype !== "f32") throw new TypeError("fill: float32 tensors only");
    this.pieces(t.length, (from, n) => this.run("fill", [this.view(t, from, n)], [n, value], Math.ceil(n / 256)));
  }
  copy(dst: Tensor, src: Tensor): void {
    const d = tensor(dst), s = tensor(src);
    if (d.length !== s.length) throw new RangeError(`copy of ${s.length} values into ${d.length}`);
    if (s.dtype !== "f32" || d.dtype === "i32") throw new TypeError(`copy of ${s.dtype} values into ${d.dtype} storage is not supported`);
    if (d.length === 0) return;
    if (d.dtype === "bf16" && d.offset % 2 !== 0) throw new RangeError("a bf16 copy must start at an even value");
    this.pieces(d.length, (from, n) => {
      const [dv, sv] = [this.view(d, from, n), this.view(s, from, n)];
      if (d.dtype === "f32") this.run("copy", [dv, sv], [n], Math.ceil(n / 256));
      else this.run("toBf16", [dv, sv], [Math.ceil(n / 2), n], Math.ceil(n / 512));
    });
  }

  // ---------------------------------------------------------------- layers
  encoderForward(out: Tensor, inp: Tensor, wte: Tensor, wpe: Tensor, B: number, T: number, C: number): void {
    const n = B * T * C;
    this.run("encoderForward", [out, this.view(inp, 0, B * T), wte, wpe], [n, T, C], Math.ceil(n / 256));
  }
  encoderBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, inp: Tensor, B: number, T: number, C: number): void {
    this.run("encoderBackwardPos", [dwpe, dout], [T * C, B, T, C], Math.ceil((T * C) / 256));
    this.run("encoderBackwardTok", [dwte, dout, this.view(inp, 0, B * T)], [C, B * T, C], Math.ceil(C / 256));
  }
  layernormForward(out: Tensor, mean: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, N: number, C: number): void {
    this.run("layernormForward", [out, mean, rstd, inp, weight, bias], [C], N);
  }
  layernormBackward(dinp: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, inp: Tensor, weight: Tensor, mean: Tensor,
    rstd: Tensor, N: number, C: number): void {
    this.run("layernormBackwardInput", [dinp, dout, inp, weight, mean, rstd], [C], N);
    this.run("layernormBackwardParams", [dweight, dbias, dout, inp, mean, rstd], [C, N], Math.ceil(C / 256));
  }
  matmulForward(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null, N: number, C: number, OC: number): void {
    // out (N,OC) = inp (N,C) . weight (OC,C)^T
    this.gemm(out, inp, weight, bias, N, OC, C, [C, 1, 1, C], false);
  }
  matmulBackward(dinp: Tensor | null, dweight: Tensor, dbias: Tensor | null, dout: Tensor, inp: Tensor, weight: Tensor,
    N: number, C: number, OC: number): void {
    // dinp (N,C) = dout (N,OC) . weight (OC,C); dweight (OC,C) += dout^T . inp
    if (dinp) this.gemm(dinp, dout, weight, null, N, C, OC, [OC, 1, C, 1], false);
    this.gemm(dweight, dout, inp, null, OC, C, N, [1, OC, C, 1], true);
    if (dbias) this.run("columnSum", [dbias, dout], [OC, N], Math.ceil(OC / 256));
  }
  private gemm(c: Tensor, a: Tensor, b: Tensor, bias: Tensor | null, M: number, N: number, K: number,
    strides: [number, number, number, number], accum: boolean): void {
    if (M <= 8) {
      this.run("gemmRows", [c, a, b, bias ?? a], [M, N, K, ...strides, accum ? 1 : 0, bias ? 1 : 0, M * N], Math.ceil((M * N) / 256));
      return;
    }
    const tilesN = Math.ceil(N / 64);
    this.run("gemm", [c, a, b, bias ?? a], [M, N, K, ...strides, accum ? 1 : 0, bias ? 1 : 0, tilesN], Math.ceil(M / 64) * tilesN);
  }

  attentionForward(out: Tensor, lse: Tensor, qkv: Tensor, B: number, T: number, C: number, NH: number): void {
    const hs = C / NH, n = B * NH * T;
    // keys and values inside qkv (B,T,3C): key j of head h at b*T*3C + h*hs + C + j*3C
    this.run("attention", [out, lse, qkv, qkv, qkv], [n, T, C, NH, 0, T * 3 * C, hs, C, 2 * C, 3 * C, 1, 1 / Math.sqrt(hs)],
      Math.ceil(n / 64), hs);
  }
  attentionBackward(dqkv: Tensor, dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, B: number, T: number, C: number,
    NH: number): void {
    const hs = C / NH, n = B * NH * T, D = this.scratchOf(n);
    this.run("attentionRowDot", [D, dout, out], [n, T, C, NH], Math.ceil(n / 64), hs);
    this.run("attentionBackwardQuery", [dqkv, dout, qkv, lse, D], [n, T, C, NH, 1 / Math.sqrt(hs)], Math.ceil(n / 64), hs);
    this.run("attentionBackwardKey", [dqkv, dout, qkv, lse, D], [n, T, C, NH, 1 / Math.sqrt(hs)], Math.ceil(n / 64), hs);
  }
  attentionCached(out: Tensor, kcache: Tensor, vcache: Tensor, qkv: Tensor, B: number, Tq: number, pos: number,
    maxT: number, C: number, NH: number): void {
    const hs = C / NH, n = B * NH * Tq;
    this.run("kvStore", [kcache, vcache, qkv], [B * Tq * C, Tq, C, NH, pos, maxT], Math.ceil((B * Tq * C) / 256), hs);
    // keys and values in the caches (B,NH,maxT,hs); no lse (out stands in for its binding)
    this.run("attention", [out, out, qkv, kcache, vcache], [n, Tq, C, NH, pos, NH * maxT * hs, maxT * hs, 0, 0, hs, 0, 1 / Math.sqrt(hs)],
      Math.ceil(n / 64), hs);
  }
  geluForward(out: Tensor, inp: Tensor, N: number): void { this.run("geluForward", [out, inp], [N], Math.ceil(N / 256)); }
  geluBackward(dinp: Tensor, inp: Tensor, dout: Tensor, N: number): void {
    this.run("geluBackward", [dinp, inp, dout], [N], Math.ceil(N / 256));
  }
  residualForward(out: Tensor, a: Tensor, b: Tensor, N: number): void {
    this.run("residualForward", [out, a, b], [N], Math.ceil(N / 256));
  }
  crossEntropy(losses: Tensor, dlogits: Tensor | null, logits: Tensor, targets: Tensor, N: number, V: number,
    Vp: number, gradScale: number, rowWeights: Float32Array | null = null): void {
    if (N === 0) return;
    this.run("crossEntropy", [losses, dlogits ?? logits, logits, this.view(targets, 0, N), rowWeights ? rowWeights.subarray(0, N) : new Float32Array(1)],
      [V, Vp, dlogits ? 1 : 0, rowWeights ? 1 : 0, gradScale], N);
  }
  adamw(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, n: number, lr: number, beta1: number, beta2: number,
    eps: number, weightDecay: number, t: number, gradScale: number): void {
    const c1 = 1 - Math.pow(beta1, t), c2 = 1 - Math.pow(beta2, t);
    this.pieces(n, (from, k) => {
      const [p, g, mm, vv] = [params, grads, m, v].map((x) => this.view(x, from, k));
      this.run("adamw", [p, g, mm, vv], [k, lr, beta1, beta2, eps, weightDecay, c1, c2, gradScale], Math.ceil(k / 256));
    });
  }
  sumSquares(): number {
    throw new Error("the WebGPU backend reads asynchronously: use sumSquaresAsync (a synchronous sum was asked for)");
  }
  async sumSquaresAsync(t: Tensor, n: number): Promise<number> {
    if (n === 0) return 0;
    const groups = Math.ceil(n / 4096);
    const partial = this.alloc(groups);
    // pieces of whole 4096-value runs: each run's partial sum lands where a single pass would put it
    let run0 = 0;
    this.pieces(n, (from, k) => {
      const g = Math.ceil(k / 4096);
      this.run("sumSquares", [this.view(partial, run0, g), this.view(t, from, k)], [k], g);
      run0 += g;
    });
    const parts = await this.readAsync(partial);
    (partial as WebGPUTensor).buffer.destroy();
    let s = 0;
    for (let i = 0; i < groups; i++) s += parts[i];
    return s;
  }
  scale(t: Tensor, n: number, s: number): void {
    this.pieces(n, (from, k) => this.run("scale", [this.view(t, from, k)], [k, s], Math.ceil(k / 256)));
  }

  /**
   * Element-wise work over n values in pieces whose bindings fit the device (some bind at most 128 MiB at once,
   * less than a model's whole parameter buffer): f(from, count) for each piece, 64-value aligned.
   */
  private pieces(n: number, f: (from: number, count: number) => void): void {
    const most = Math.max(64, Math.floor(this.maxBinding / 4 / 2 / 64) * 64);
    for (let from = 0; from < n; from += most) f(from, Math.min(most, n - from));
  }

  /** frees the device's buffers (the backend is unusable afterwards) */
  destroy(): void { this.gpu.destroy(); }

  /** submits the passes recorded so far */
  flush(): void {
    if (this.encoder) {
      this.pass!.end();
      this.gpu.queue.submit([this.encoder.finish()]);
      // the scopes opened with the batch: validation (a bad binding, a pipeline that failed) and out-of-memory
      for (let i = 0; i < 2; i++) {
        this.scopes.push(this.gpu.popErrorScope().then((e) => { if (e) this.error ??= e.message; }, () => {}));
      }
    }
    this.encoder = null;
    this.pass = null;
    this.slot = 0;
    this.uploaded.clear();
  }

  // ---------------------------------------------------------------- dispatch
  private check(): void {
    if (this.error) throw new Error(`WebGPU: ${this.error}`);
  }
  /** a device buffer of at least n floats for a kernel's intermediate values (attention's row terms) */
  private scratchOf(n: number): Tensor {
    if (!this.scratch || this.scratch.size < n * 4) {
      this.flush(); // recorded passes may use the old one
      this.scratch?.destroy();
      this.scratch = this.gpu.createBuffer({ size: Math.max(256, n * 4), usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST });
    }
    return new WebGPUTensor(this.scratch, 0, n);
  }
  /** a host array as a device tensor (copied now; the queue orders the copy before the pass that reads it) */
  private upload(a: Float32Array, key: string): WebGPUTensor {
    let buf = this.staging.get(key);
    const bytes = Math.max(16, Math.ceil(a.byteLength / 16) * 16);
    // a recorded pass may still read this buffer's previous contents (the caller marks it used once its pass is
    // recorded: a flush in between, for a later argument, submits nothing that reads it yet)
    if (this.uploaded.has(key) || (buf && buf.size < bytes)) this.flush();
    if (!buf || buf.size < bytes) {
      buf?.destroy();
      buf = this.gpu.createBuffer({ size: Math.max(bytes, 1024), usage: USAGE.STORAGE | USAGE.COPY_DST });
      this.staging.set(key, buf);
    }
    if (a.length > 0) this.gpu.queue.writeBuffer(buf, 0, a.buffer, a.byteOffset, a.byteLength);
    return new WebGPUTensor(buf, 0, a.length);
  }

  /**
   * One compute pass of kernel `name` over `groups` workgroups, recorded into the current batch: its bindings and
   * uniform block laid out by ./pass.ts, its pipeline made once per layout.
   */
  private run(name: KernelName, args: (Tensor | Float32Array)[], params: number[], groups: number, hs = 0): void {
    if (groups === 0) return;
    if (this.slot === SLOTS) this.flush();
    const spec: KernelSpec = KERNELS[name];
    const keys: string[] = [];
    const tensors = args.map((a, i) => {
      if (!(a instanceof Float32Array)) return tensor(a as Arg as Tensor);
      const key = `f32${i}`;
      keys.push(key);
      return this.upload(a, key);
    });
    const { access, slots, slotOf } = layoutPass(name, spec, tensors, this.align, this.maxBinding);
    if (!this.encoder) {
      this.gpu.pushErrorScope("out-of-memory");
      this.gpu.pushErrorScope("validation");
      this.encoder = this.gpu.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    const key = `${name}/${hs}/${slotOf.join(",")}/${access.join(",")}`;
    let p = this.pipelines.get(key);
    if (!p) {
      const code = shader(spec, slotOf, slots.map((s) => s.type), access, hs);
      const layout = this.gpu.createBindGroupLayout({
        entries: [
          { binding: 0, visibility: COMPUTE, buffer: { type: "uniform" } },
          ...slots.map((_, i) => ({ binding: i + 1, visibility: COMPUTE, buffer: { type: "storage" as const } })),
        ],
      });
      const pipeline = this.gpu.createComputePipeline({
        layout: this.gpu.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module: this.gpu.createShaderModule({ code, label: name }), entryPoint: "main" },
      });
      p = { pipeline, layout };
      this.pipelines.set(key, p);
    }
    const data = uniformBlock(spec, groups, params, tensors, access, slots, slotOf);
    const offset = this.slot++ * SLOT;
    this.gpu.queue.writeBuffer(this.uniforms, offset, data);
    const bind = this.gpu.createBindGroup({
      layout: p.layout,
      entries: [
        { binding: 0, resource: { buffer: this.uniforms, offset, size: data.byteLength } },
        ...slots.map((s, i) => ({ binding: i + 1, resource: { buffer: s.buffer, offset: s.lo, size: Math.ceil((s.hi - s.lo) / 4) * 4 } })),
      ],
    });
    // WebGPU orders the dispatches of a pass: each sees the storage writes of those before it
    const pass = this.pass!;
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, bind);
    const x = Math.min(groups, 65535);
    pass.dispatchWorkgroups(x, Math.ceil(groups / x));
    for (const k of keys) this.uploaded.add(k);
  }
}
