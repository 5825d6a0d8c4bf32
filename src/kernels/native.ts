// The native CPU backend: the same kernels in C++ (native/cpu), multithreaded with runtime AVX-512 / AVX2 dispatch.
// Buffers are host Float32Arrays shared with the addon without copies. Loaded through createRequire with a fallback.

import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend, Tensor } from "./backend.js";
import { JsBackend } from "./js/backend.js";
import { isBf16 } from "./bf16.js";

type F32 = Float32Array;
const f = (t: Tensor): F32 => t as F32;
const fn = (t: Tensor | null): F32 | null => (t === null ? null : (t as F32));

/** The addon's CPU exports (native/cpu/bindings.cc, registered by native/addon.cc). */
export interface NativeAddon {
  setThreads(n: number): void;
  getThreads(): number;
  cpuFeatures(): string;
  measurePeakGflops(seconds: number): number;
  encoderForward(out: F32, inp: Int32Array, wte: F32, wpe: F32, B: number, T: number, C: number): void;
  encoderBackward(dwte: F32, dwpe: F32, dout: F32, inp: Int32Array, B: number, T: number, C: number): void;
  layernormForward(out: F32, mean: F32, rstd: F32, inp: F32, weight: F32, bias: F32, N: number, C: number): void;
  layernormBackward(dinp: F32, dweight: F32, dbias: F32, dout: F32, inp: F32, weight: F32, mean: F32, rstd: F32, N: number, C: number): void;
  matmulForward(out: F32, inp: F32, weight: F32, bias: F32 | null, N: number, C: number, OC: number, bf16: boolean): void;
  matmulForwardBf16Weights(out: F32, inp: F32, weight: Uint16Array, bias: F32 | null, N: number, C: number, OC: number): void;
  matmulBackward(dinp: F32 | null, dweight: F32, dbias: F32 | null, dout: F32, inp: F32, weight: F32, N: number, C: number, OC: number, bf16: boolean): void;
  attentionForward(out: F32, lse: F32, qkv: F32, B: number, T: number, C: number, NH: number): void;
  attentionBackward(dqkv: F32, dout: F32, qkv: F32, out: F32, lse: F32, B: number, T: number, C: number, NH: number): void;
  attentionCached(out: F32, kcache: F32, vcache: F32, qkv: F32, B: number, Tq: number, pos: number, maxT: number, C: number, NH: number): void;
  geluForward(out: F32, inp: F32, N: number): void;
  geluBackward(dinp: F32, inp: F32, dout: F32, N: number): void;
  residualForward(out: F32, a: F32, b: F32, N: number): void;
  crossEntropy(losses: F32, dlogits: F32 | null, logits: F32, targets: Int32Array, N: number, V: number, Vp: number, gradScale: number, rowWeights: Float32Array | null): void;
  adamw(params: F32, grads: F32, m: F32, v: F32, n: number, lr: number, beta1: number, beta2: number, eps: number, wd: number, t: number): void;
  sumSquares(t: F32, n: number): number;
  scale(t: F32, n: number, s: number): void;
  /** throws when the CPU cannot multiply in bf16 (no AVX512-BF16) */
  requireBf16(): void;
}

let cached: { addon: NativeAddon | null; error: string } | null = null;

/** Loads the compiled addon once; returns null with the reason when it is missing or fails to load. */
export function loadNativeAddon(): { addon: NativeAddon | null; error: string } {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
  const candidates = [path.join(root, "build/Release/gpt2ts_native.node"), path.join(root, "build/Debug/gpt2ts_native.node")];
  let error = "";
  for (const c of candidates) {
    try {
      cached = { addon: require(c) as NativeAddon, error: "" };
      return cached;
    } catch (e) {
      error = (e as Error).message.split("\n")[0];
    }
  }
  cached = { addon: null, error: `native addon not built (${error}); build it with g++ available: "npm install" in a checkout, or "npm install-scripts approve gpt2ts && npm rebuild gpt2ts" where gpt2ts was installed from npm` };
  return cached;
}

/** the thread count the addon was last set to (NativeBackend.addon) */
let nativeThreads = -1;

export class NativeBackend extends JsBackend implements Backend {
  override readonly name: string = "native";

  private readonly bf16: boolean;
  private readonly nThreads: number;

  constructor(private readonly native: NativeAddon, threads: number, readonly dtype: "fp32" | "bf16" = "fp32") {
    super();
    if (dtype === "bf16") native.requireBf16();
    this.bf16 = dtype === "bf16";
    this.nThreads = Math.max(1, Math.floor(threads));
    void this.addon;
  }

  /**
   * The addon, with this backend's thread count: OpenMP's is one setting of the (main) thread, so each backend sets
   * its own before its kernels run; the matmul precision travels with each call. Two backends side by side (fp32 and
   * bf16, 1 and 2 threads) do not change each other.
   */
  private get addon(): NativeAddon {
    if (nativeThreads !== this.nThreads) {
      this.native.setThreads(this.nThreads);
      nativeThreads = this.nThreads;
    }
    return this.native;
  }

  override get threads(): number { return this.nThreads; }

  override encoderForward(out: Tensor, inp: Int32Array, wte: Tensor, wpe: Tensor, B: number, T: number, C: number): void {
    this.addon.encoderForward(f(out), inp, f(wte), f(wpe), B, T, C);
  }
  override encoderBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, inp: Int32Array, B: number, T: number, C: number): void {
    this.addon.encoderBackward(f(dwte), f(dwpe), f(dout), inp, B, T, C);
  }
  override layernormForward(out: Tensor, mean: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, N: number, C: number): void {
    this.addon.layernormForward(f(out), f(mean), f(rstd), f(inp), f(weight), f(bias), N, C);
  }
  override layernormBackward(dinp: Tensor, dweight: Tensor, dbias: Tensor, dout: Tensor, inp: Tensor, weight: Tensor,
    mean: Tensor, rstd: Tensor, N: number, C: number): void {
    this.addon.layernormBackward(f(dinp), f(dweight), f(dbias), f(dout), f(inp), f(weight), f(mean), f(rstd), N, C);
  }
  override matmulForward(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null, N: number, C: number, OC: number): void {
    if (isBf16(weight)) this.addon.matmulForwardBf16Weights(f(out), f(inp), weight, fn(bias), N, C, OC);
    else this.addon.matmulForward(f(out), f(inp), f(weight), fn(bias), N, C, OC, this.bf16);
  }
  override matmulBackward(dinp: Tensor | null, dweight: Tensor, dbias: Tensor | null, dout: Tensor, inp: Tensor, weight: Tensor,
    N: number, C: number, OC: number): void {
    this.addon.matmulBackward(fn(dinp), f(dweight), fn(dbias), f(dout), f(inp), f(weight), N, C, OC, this.bf16);
  }
  override attentionForward(out: Tensor, lse: Tensor, qkv: Tensor, B: number, T: number, C: number, NH: number): void {
    this.addon.attentionForward(f(out), f(lse), f(qkv), B, T, C, NH);
  }
  override attentionBackward(dqkv: Tensor, dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, B: number, T: number,
    C: number, NH: number): void {
    this.addon.attentionBackward(f(dqkv), f(dout), f(qkv), f(out), f(lse), B, T, C, NH);
  }
  override attentionCached(out: Tensor, kcache: Tensor, vcache: Tensor, qkv: Tensor, B: number, Tq: number, pos: number,
    maxT: number, C: number, NH: number): void {
    this.addon.attentionCached(f(out), f(kcache), f(vcache), f(qkv), B, Tq, pos, maxT, C, NH);
  }
  override geluForward(out: Tensor, inp: Tensor, N: number): void { this.addon.geluForward(f(out), f(inp), N); }
  override geluBackward(dinp: Tensor, inp: Tensor, dout: Tensor, N: number): void { this.addon.geluBackward(f(dinp), f(inp), f(dout), N); }
  override residualForward(out: Tensor, a: Tensor, b: Tensor, N: number): void { this.addon.residualForward(f(out), f(a), f(b), N); }
  override crossEntropy(losses: Tensor, dlogits: Tensor | null, logits: Tensor, targets: Int32Array, N: number, V: number,
    Vp: number, gradScale: number, rowWeights: Float32Array | null = null): void {
    this.addon.crossEntropy(f(losses), fn(dlogits), f(logits), targets, N, V, Vp, gradScale, rowWeights);
  }
  override adamw(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, n: number, lr: number, beta1: number, beta2: number,
    eps: number, weightDecay: number, t: number): void {
    this.addon.adamw(f(params), f(grads), f(m), f(v), n, lr, beta1, beta2, eps, weightDecay, t);
  }
  override sumSquares(t: Tensor, n: number): number { return this.addon.sumSquares(f(t), n); }
  override scale(t: Tensor, n: number, s: number): void { this.addon.scale(f(t), n, s); }
}
