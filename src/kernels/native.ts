// The native CPU backend: the same kernels in C++ (native/cpu), multithreaded with runtime AVX-512 / AVX2 dispatch.
// Buffers are host Float32Arrays shared with the addon without copies. Loaded through createRequire with a fallback.

import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { bytesOf, type Backend, type DType, type Tensor } from "./backend.js";
import { JsBackend } from "./js/backend.js";
import { isBf16 } from "./bf16.js";
import { forwardKernels, type KernelList } from "./forward.js";

type F32 = Float32Array;
// the addon takes a tensor's typed array: a Float32Array, a Uint16Array of bf16 values where a kernel's argument may
// be an activation (native/cpu/storage.h), or an Int32Array of token ids; the cast is for TypeScript only
const f = (t: Tensor): F32 => t as unknown as F32;
const fn = (t: Tensor | null): F32 | null => (t === null ? null : f(t));

/** The addon's CPU exports (native/cpu/bindings.cc, registered by native/addon.cc). */
export interface NativeAddon {
  setThreads(n: number): void;
  getThreads(): number;
  cpuFeatures(): string;
  measurePeakGflops(seconds: number): number;
  matmulForward(out: F32, inp: F32, weight: F32, bias: F32 | null, N: number, C: number, OC: number, bf16: boolean): void;
  matmulForwardBf16Weights(out: F32, inp: F32, weight: Uint16Array, bias: F32 | null, N: number, C: number, OC: number): void;
  /** Backend.copy: dst = src converted to dst's storage (Float32Array or Uint16Array of bf16), n values */
  copyTensor(dst: F32 | Uint16Array, src: F32 | Uint16Array, n: number): void;
  matmulBackward(dinp: F32 | null, dweight: F32, dbias: F32 | null, dout: F32, inp: F32, weight: F32, N: number, C: number, OC: number, bf16: boolean): void;
  /** bf16: the block products take bf16 operands (P and dS rounded as FlashAttention rounds them) where the CPU can */
  attentionForward(out: F32, lse: F32, qkv: F32, B: number, T: number, C: number, NH: number, bf16: boolean): void;
  attentionBackward(dqkv: F32, dout: F32, qkv: F32, out: F32, lse: F32, B: number, T: number, C: number, NH: number, bf16: boolean): void;
  /** the Backend kernels native code implements (native/kernels.def): each exported under its `cpu` name (the CUDA
   * bindings under `cuda`), its arguments as `args` says */
  kernelList: KernelList;
  /** madvise(MADV_HUGEPAGE) over the array's whole 2 MiB pages; false where the kernel refused (advice only) */
  adviseHugePages(a: ArrayBufferView): boolean;
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
  /**
   * bf16 under --dtype bf16 (half the activation memory, and bf16 operands the GEMM packs as they are); `activations`
   * overrides it (a benchmark's float32-activation comparison)
   */
  override readonly activationDtype: "f32" | "bf16";

  constructor(private readonly native: NativeAddon, threads: number, readonly dtype: "fp32" | "bf16" = "fp32",
    activations?: "f32" | "bf16") {
    super();
    if (dtype === "bf16") native.requireBf16();
    this.bf16 = dtype === "bf16";
    // bf16 activations feed the bf16 product; under float32 products every matmul would widen them first
    if (activations === "bf16" && !this.bf16) throw new RangeError("bf16 activations need the bf16 matmuls (dtype bf16)");
    this.activationDtype = activations ?? (this.bf16 ? "bf16" : "f32");
    this.nThreads = Math.max(1, Math.floor(threads));
    void this.addon;
    // every listed kernel but the matmuls and attention (written below: they take this backend's precision) is a call with the
    // same arguments
    const fns = native as unknown as Record<string, (...a: unknown[]) => unknown>;
    forwardKernels(this, native.kernelList, (k) => k.cpu, fns, (k) => { void this.addon; return fns[k.cpu]; }, (t) => t,
      ["adviseHugePages", "copyTensor", "matmulForwardBf16Weights"]);
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

  /**
   * Buffers of 8 MiB or more ask for 2 MiB pages (adviseHugePages, where transparent huge pages are "madvise"), before
   * they are first written: the kernels stream weights and activations, which on 4 KiB pages take a TLB miss every
   * 4 KiB and lose the hardware prefetch at every page's end.
   */
  override alloc(n: number, dtype: DType = "f32"): Tensor {
    const t = super.alloc(n, dtype);
    if (bytesOf(n, dtype) >= 8 << 20) this.native.adviseHugePages(t as unknown as F32);
    return t;
  }

  /** on all threads, vectorized (making the bf16 weights of a d12 in JavaScript took ~0.4 s) */
  override copy(dst: Tensor, src: Tensor): void {
    if (dst.length !== src.length) throw new RangeError(`copy of ${src.length} values into ${dst.length}`);
    if (dst instanceof Int32Array || src instanceof Int32Array) return super.copy(dst, src); // token ids: as they are
    this.addon.copyTensor(f(dst), f(src), dst.length);
  }

  override matmulForward(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor | null, N: number, C: number, OC: number): void {
    // bf16 weights with float32 activations: inference (float32 arithmetic; GEMVs that widen each weight where it is
    // used, or the GEMM widening them as it packs); with bf16 activations: the addon's matmul (the bf16 product on a
    // bf16 backend, packing the weights as they are)
    if (isBf16(weight) && !isBf16(out) && !isBf16(inp)) this.addon.matmulForwardBf16Weights(f(out), f(inp), weight, fn(bias), N, C, OC);
    else this.addon.matmulForward(f(out), f(inp), f(weight), fn(bias), N, C, OC, this.bf16);
  }
  // attention multiplies in this backend's precision too: bf16 block products on a bf16 backend
  override attentionForward(out: Tensor, lse: Tensor, qkv: Tensor, B: number, T: number, C: number, NH: number): void {
    this.addon.attentionForward(f(out), f(lse), f(qkv), B, T, C, NH, this.bf16);
  }
  override attentionBackward(dqkv: Tensor, dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, B: number, T: number,
    C: number, NH: number): void {
    this.addon.attentionBackward(f(dqkv), f(dout), f(qkv), f(out), f(lse), B, T, C, NH, this.bf16);
  }
  override matmulBackward(dinp: Tensor | null, dweight: Tensor, dbias: Tensor | null, dout: Tensor, inp: Tensor, weight: Tensor,
    N: number, C: number, OC: number): void {
    this.addon.matmulBackward(fn(dinp), f(dweight), fn(dbias), f(dout), f(inp), f(weight), N, C, OC, this.bf16);
  }
}
