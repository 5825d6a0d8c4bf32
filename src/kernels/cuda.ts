// The CUDA backend: parameters, gradients, optimizer state and activations live in GPU memory; the host launches
// work and reads back only what the model asks for (losses, the gradient norm's sum of squares).
//
// The native half (native/cuda/cuda.cc) loads the NVIDIA driver, NVRTC and cuBLAS with dlopen() at run time and
// compiles native/cuda/kernels.cu for the GPU found, caching the result, so installing gpt2ts needs no CUDA and the
// same build runs on any machine with an NVIDIA driver and CUDA 11.2+ libraries.

import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { byteSize, bytesOf, type Backend, type DType, type Tensor } from "./backend.js";
import { fromBf16Array, toBf16Array } from "./bf16.js";
import { gpuSpec } from "./gpus.js";
import { forwardKernels, type KernelList, type KernelMethods } from "./forward.js";
import { loadNativeAddon } from "./native.js";
import { makeDir } from "../util/fs.js";
import { cacheDir, env } from "../util/env.js";

type Ptr = number;

/** The addon's CUDA exports (native/cuda/cuda.cc); tensors travel as device addresses. */
export interface CudaAddon {
  cudaProbe(): CudaDeviceInfo | { error: string };
  cudaCompile(source: string, arch: number): number;
  cudaInit(source: string, cacheDir: string, device: number): { name: string; major: number; minor: number; sms: number; cached: boolean } | undefined;
  cudaSetMatmul(precision: "fp32" | "tf32" | "bf16"): void;
  cudaMalloc(bytes: number): Ptr;
  cudaFree(ptr: Ptr): void;
  cudaWrite(ptr: Ptr, src: ArrayBufferView): void;
  cudaRead(ptr: Ptr, dst: ArrayBufferView): void;
  cudaCopy(dst: Ptr, src: Ptr, bytes: number): void;
  cudaFill(ptr: Ptr, n: number, value: number): void;
  /** n values of either storage (bf16: 1, float32: 0) set to value */
  cudaFillValue(ptr: Ptr, bf16: number, n: number, value: number): void;
  /** dst = src, converted between float32 and bf16 (each 1 when bf16) */
  cudaConvert(dst: Ptr, dstBf16: number, src: Ptr, srcBf16: number, n: number): void;
  cudaSync(): void;
  cudaMemInfo(): [number, number];
  /** the listed kernels (native/kernels.def), each exported under its `cuda` name */
  kernelList: KernelList;
}

export interface CudaDeviceInfo {
  devices: number;
  name: string;
  major: number;
  minor: number;
  sms: number;
  /** bytes */
  memory: number;
  /** the driver's CUDA version, e.g. 13000 */
  driver: number;
}

export class CudaUnavailableError extends Error {
  override name = "CudaUnavailableError";
}

/** A float32, bf16 or int32 (token ids) buffer in GPU memory, or a view of one (which keeps its allocation alive). */
export class CudaTensor implements Tensor {
  constructor(readonly ptr: Ptr, readonly length: number, readonly root: CudaTensor | null = null,
    readonly dtype: DType = "f32") {}
}

/** the device address of value `i` of t */
const addr = (t: Tensor, i: number): Ptr => ptr(t) + bytesOf(i, t.dtype);

const ptr = (t: Tensor): Ptr => {
  if (!(t instanceof CudaTensor)) throw new TypeError("the CUDA backend was given a tensor it does not own");
  return t.ptr;
};

/** The kernels' source, shipped in the package beside the native sources. */
export function cudaKernelSource(): string {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
  return fs.readFileSync(path.join(root, "native/cuda/kernels.cu"), "utf8");
}

/** What the driver reports, or why no GPU can be used (no addon, no driver, no device). Cheap; starts nothing. */
export function probeCuda(): CudaDeviceInfo | { error: string } {
  const { addon, error } = loadNativeAddon();
  if (!addon) return { error };
  const a = addon as unknown as CudaAddon;
  if (typeof a.cudaProbe !== "function") return { error: "the native addon was built without the CUDA bindings; run npm install again" };
  return a.cudaProbe();
}

/** Where compiled kernels are kept: GPT2_CUDA_CACHE, else the cache folder's cuda/. */
export function cudaCacheDir(from: NodeJS.ProcessEnv = process.env): string {
  return env("GPT2_CUDA_CACHE", from) ?? cacheDir("cuda", from);
}

/** the GPU's peak TFLOP/s for `dtype`, NaN when the card is not in the table */
export function gpuPeakTflops(name: string, dtype: "fp32" | "bf16"): number {
  return gpuSpec(name)?.[dtype] ?? NaN;
}

/** the precision the process's cuBLAS handle was last set to (CudaBackend.k) */
let cudaPrecision: "fp32" | "tf32" | "bf16" | null = null;

let initialized: { name: string; major: number; minor: number; sms: number; cached: boolean } | null = null;

export class CudaBackend implements Backend {
  readonly name = "cuda";
  readonly threads = 1;
  readonly device: string;
  /** 8192 rows of logits per classifier chunk (1.6 GB of fp32 at GPT-2's vocabulary): few, large products */
  readonly classifierRows = 8192;
  private readonly cu: CudaAddon;
  private readonly precision: "fp32" | "bf16";

  /**
   * The addon for a product or attention: cuBLAS's precision is one setting of the process, so each backend sets its
   * own before its kernels run (a bf16 backend created beside an fp32 one leaves the fp32 one's products in fp32).
   */
  private get k(): CudaAddon {
    if (cudaPrecision !== this.precision) {
      this.cu.cudaSetMatmul(this.precision);
      cudaPrecision = this.precision;
    }
    return this.cu;
  }
  private readonly freer = new FinalizationRegistry<Ptr>((p) => { try { this.cu.cudaFree(p); } catch { /* process ending */ } });

  /**
   * The storage of activations: bf16 under --dtype bf16 (half the memory and traffic; gradients, parameters and
   * AdamW's state stay float32), else float32.
   */
  readonly activationDtype: "f32" | "bf16";
  /** a block's backward scratch: bf16 with bf16 activations (Backend.activationGradDtype) */
  readonly activationGradDtype: "f32" | "bf16";

  /**
   * `dtype` bf16: activations stored in bf16 (`activations` "f32": float32) and cuBLAS's products on bf16 operands
   * (a float32 operand beside a bf16 one is rounded to bf16, as cuBLAS's bf16 compute type rounds it), accumulating
   * in float32; fp32: float32 storage and products.
   */
  constructor(readonly dtype: "fp32" | "bf16" = "fp32", device = 0, activations?: "f32" | "bf16") {
    const info = probeCuda();
    if ("error" in info) throw new CudaUnavailableError(`--backend cuda: ${info.error}`);
    this.cu = loadNativeAddon().addon as unknown as CudaAddon;
    if (!initialized) {
      const dir = cudaCacheDir();
      try { makeDir(dir); } catch { /* the cache is optional */ }
      initialized = this.cu.cudaInit(cudaKernelSource(), dir, device)!;
    }
    if (dtype !== "bf16" && activations === "bf16") throw new RangeError("bf16 activations need --dtype bf16 on the CUDA backend");
    this.precision = dtype === "bf16" ? "bf16" : "fp32";
    // GPT2_ACTIVATIONS=f32 under --dtype bf16: float32 activations, bf16 products (src/kernels/select.ts)
    this.activationDtype = dtype === "bf16" ? activations ?? "bf16" : "f32";
    this.activationGradDtype = this.activationDtype;
    void this.k;
    // every listed kernel is a call with device addresses (and which of them hold bf16), on cuBLAS set to this
    // backend's precision
    const fns = this.cu as unknown as Record<string, (...a: unknown[]) => unknown>;
    forwardKernels(this, this.cu.kernelList, (k) => k.cuda, fns, (k) => { void this.k; return fns[k.cuda]; }, ptr,
      ["cudaConvert", "cudaFillValue"], true);
    this.device = `${initialized.name} (sm_${initialized.major}${initialized.minor}, ${initialized.sms} SMs)`;
  }

  /** the card's peak TFLOP/s for this backend's dtype (NaN: unknown card) */
  peakTflops(): number { return gpuPeakTflops(initialized!.name, this.dtype); }

  /**
   * Device memory a run may still take: what the driver reports free, less what this backend allocates later on its
   * own (attention's score buffers, up to 2 x 1 GiB, and their head-major copies; NCCL's staging; under bf16, the
   * matmuls' bf16 copies: 64 MiB chunks and the largest weight).
   */
  freeBytes(): number { return Math.max(0, this.memoryInfo().free - 3 * 2 ** 30); }

  /** bytes free and total on the device */
  memoryInfo(): { free: number; total: number } {
    const [free, total] = this.cu.cudaMemInfo();
    return { free, total };
  }

  alloc(n: number, dtype: DType = "f32"): Tensor {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`alloc: bad length ${n}`);
    const p = this.cu.cudaMalloc(bytesOf(n, dtype));
    const t = new CudaTensor(p, n, null, dtype);
    this.freer.register(t, p);
    return t;
  }
  view(t: Tensor, offset: number, n: number): Tensor {
    if (offset < 0 || n < 0 || offset + n > t.length) throw new RangeError(`view [${offset}, ${offset + n}) out of a buffer of ${t.length}`);
    const c = t as unknown as CudaTensor;
    return new CudaTensor(addr(t, offset), n, c.root ?? c, c.dtype);
  }
  write(t: Tensor, src: Float32Array | Int32Array, offset = 0): void {
    if ((t.dtype === "i32") !== (src instanceof Int32Array)) throw new TypeError(`write: ${src instanceof Int32Array ? "int32" : "float32"} values into an ${t.dtype} tensor`);
    if (offset < 0 || offset + src.length > t.length) throw new RangeError(`write of ${src.length} values at ${offset} into a buffer of ${t.length}`);
    if (src.length) this.cu.cudaWrite(addr(t, offset), t.dtype === "bf16" ? toBf16Array(src as Float32Array) : src);
  }
  read(t: Tensor, offset = 0, n = t.length - offset): Float32Array {
    if (t.dtype === "i32") throw new TypeError("read: float32 or bf16 tensors only (an i32 one was given)");
    if (offset < 0 || n < 0 || offset + n > t.length) throw new RangeError(`read [${offset}, ${offset + n}) of a buffer of ${t.length}`);
    if (t.dtype === "bf16") {
      const bits = new Uint16Array(n);
      if (n) this.cu.cudaRead(addr(t, offset), bits);
      return fromBf16Array(bits);
    }
    const out = new Float32Array(n);
    if (n) this.cu.cudaRead(addr(t, offset), out);
    return out;
  }
  /** cudaRead synchronizes the stream: resolved at once (an event-based read would let the host go on meanwhile) */
  readAsync(t: Tensor, offset = 0, n = t.length - offset): Promise<Float32Array> {
    try { return Promise.resolve(this.read(t, offset, n)); } catch (e) { return Promise.reject(e); }
  }
  fill(t: Tensor, value: number): void {
    if (t.dtype === "i32") throw new TypeError("fill: float32 or bf16 tensors only (an i32 one was given)");
    if (!t.length) return;
    if (t.dtype === "bf16") this.cu.cudaFillValue(ptr(t), 1, t.length, value);
    else this.cu.cudaFill(ptr(t), t.length, value);
  }
  copy(dst: Tensor, src: Tensor): void {
    if (dst.length !== src.length) throw new RangeError(`copy of ${src.length} values into ${dst.length}`);
    if (!dst.length) return;
    if (dst.dtype === src.dtype) this.cu.cudaCopy(ptr(dst), ptr(src), byteSize(dst));
    else if (dst.dtype !== "i32" && src.dtype !== "i32") this.cu.cudaConvert(ptr(dst), +(dst.dtype === "bf16"), ptr(src), +(src.dtype === "bf16"), dst.length);
    else throw new TypeError(`copy of ${src.dtype} values into an ${dst.dtype} tensor`);
  }
  /** waits for all launched work (timing) */
  synchronize(): void { this.cu.cudaSync(); }

  /** cuSumSquares synchronizes: resolved at once */
  sumSquaresAsync(t: Tensor, n: number): Promise<number> {
    try { return Promise.resolve(this.sumSquares(t, n)); } catch (e) { return Promise.reject(e); }
  }
}

/** the kernels forwarded from the list (native/kernels.def), defined on each CudaBackend by its constructor */
export interface CudaBackend extends KernelMethods {}
