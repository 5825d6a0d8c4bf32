// Picks a backend by name at the edge (CLI / env); the model receives it as an argument.

import * as os from "node:os";
import type { Backend } from "./backend.js";
import { JsBackend } from "./js/backend.js";
import { CudaBackend, probeCuda } from "./cuda.js";
import { loadNativeAddon, NativeBackend } from "./native.js";
import { env } from "../util/env.js";

export const BACKENDS = ["js", "native", "cuda", "webgpu"] as const;
export type BackendName = (typeof BACKENDS)[number];

export interface BackendOptions {
  /**
   * "cuda" (default when an NVIDIA GPU is found), "native" (default otherwise, when the addon loads), "js", or
   * "webgpu" (openBackend only: a WebGPU device is found asynchronously)
   */
  name?: string;
  threads?: number;
  dtype?: "fp32" | "bf16";
  /** the native and CUDA backends' activation storage (default: GPT2_ACTIVATIONS, else bf16 under dtype bf16, else f32) */
  activations?: "f32" | "bf16";
  /** the GPU a CUDA backend uses (default 0) */
  device?: number;
  /** told once when the native addon is unavailable and the pure-TS backend is used instead */
  warn?: (msg: string) => void;
}

let warned = false;

/**
 * The native and CUDA backends' activation storage: BackendOptions.activations, else GPT2_ACTIVATIONS under dtype bf16 (a
 * float32 backend stores float32 activations whatever the variable says), else its dtype's.
 */
function activationsFrom(opts: BackendOptions): "f32" | "bf16" | undefined {
  if (opts.activations) return opts.activations;
  const v = env("GPT2_ACTIVATIONS");
  if (v === undefined || opts.dtype !== "bf16") return undefined;
  if (v !== "f32" && v !== "bf16") throw new RangeError(`GPT2_ACTIVATIONS must be f32 or bf16, got "${v}"`);
  return v;
}

export function createBackend(opts: BackendOptions = {}): Backend {
  const name = opts.name ?? (!("error" in probeCuda()) ? "cuda" : "native");
  const threads = opts.threads ?? os.availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  if (name === "js") {
    if (opts.dtype === "bf16") throw new RangeError("--dtype bf16 needs the native backend");
    return new JsBackend();
  }
  if (name === "cuda") return new CudaBackend(opts.dtype ?? "fp32", opts.device ?? 0, activationsFrom(opts));
  if (name === "webgpu") throw new RangeError("the webgpu backend is opened asynchronously: use openBackend()");
  if (name !== "native") throw new RangeError(`unknown backend "${name}" (expected ${BACKENDS.join(", ")})`);
  const { addon, error } = loadNativeAddon();
  if (!addon) {
    if (opts.name === "native" || opts.dtype === "bf16") throw new Error(opts.dtype === "bf16" ? `--dtype bf16 needs the native backend: ${error}` : error);
    if (!warned && opts.warn) opts.warn(`note: ${error}; using the pure-TypeScript backend (much slower)`);
    warned = true;
    return new JsBackend();
  }
  return new NativeBackend(addon, threads, opts.dtype ?? "fp32", activationsFrom(opts));
}

/** createBackend(), and the WebGPU backend, whose device is found asynchronously (in Node through the npm `webgpu`). */
export async function openBackend(opts: BackendOptions = {}): Promise<Backend> {
  if (opts.name !== "webgpu") return createBackend(opts);
  // --dtype bf16 on WebGPU: activations stored in bf16, products in float32 (WGSL has no bf16 arithmetic)
  const { createWebGPUBackend } = await import("./webgpu/node.js");
  return createWebGPUBackend({ activations: opts.dtype === "bf16" ? activationsFrom(opts) ?? "bf16" : "f32" });
}
