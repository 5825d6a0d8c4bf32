// The environment variables gpt2ts reads, all in one table with their meanings, and read only through env() (the
// native code reads its GPT2_CUDA_* itself; they are listed here so that `gpt2 --help` can show every one).

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const ENV_VARS = {
  GPT2_BACKEND: "the kernels when --backend is not given: js, native, cuda or webgpu",
  GPT2_WEBGPU_ADAPTER: "the WebGPU adapter in Node: default (a GPU through Vulkan, Metal or D3D12), vulkan, or opengles (Mesa's CPU rendering); default: a GPU, else opengles",
  GPT2_ACTIVATIONS: "f32 or bf16: how the native and CUDA backends store activations (default: bf16 under --dtype bf16, else f32; f32 with --dtype bf16 keeps bf16 matmuls on float32 activations)",
  GPT2_THREADS: "CPU threads when --threads is not given (default: all cores, split between the ranks of a node)",
  GPT2_CACHE: "the cache folder: models/, datasets/, hellaswag/, cuda/ and the measured peaks (default $XDG_CACHE_HOME/gpt2ts or ~/.cache/gpt2ts)",
  GPT2_PEAK_GFLOPS: "this machine's fp32 peak in GFLOP/s for MFU, instead of the measured and cached one",
  GPT2_DATA_URL: "a mirror for the dataset downloads of gpt2 prepare",
  GPT2_HELLASWAG_URL: "where HellaSwag's validation set is downloaded from",
  HF_ENDPOINT: "the Hugging Face hub (or a mirror) for gpt2 pull and FineWeb-Edu, as Hugging Face's own tools read it",
  HF_TOKEN: "a Hugging Face token for gated or private repositories",
  GPT2_COMM_TIMEOUT: "seconds a data-parallel collective may wait before the run stops with a message (default 600)",
  GPT2_LIBMPI: "the MPI library to load when it is not libmpi.so.40 / libmpi.so.12",
  GPT2_DDP_OVERLAP: "1 or 0: overlap the gradient all-reduce with the backward pass (default: when MPI progresses on its own)",
  GPT2_CUDA_CACHE: "where compiled CUDA kernels are kept (default: the cache folder's cuda/)",
  GPT2_CUDA_LIBDIR: "a folder with libcuda, NVRTC and cuBLAS(Lt), searched first (read by the native code)",
  GPT2_CUDA_PROFILE: "set: print where a CUDA run's time went, per kernel and cuBLAS call (read by the native code)",
  GPT2_CUDA_ATTN_SCORES: "floats of attention scores per chunk on the GPU (default 1 GiB; tests lower it) (read by the native code)",
  GPT2_CUDA_CHUNK_BYTES: "bytes of bf16 copies a GPU matmul makes at a time under --dtype bf16 (default 64 MiB; tests lower it) (read by the native code)",
  CUDA_HOME: "the CUDA toolkit, whose lib64/ is searched for NVRTC and cuBLAS after the loader's path (read by the native code)",
  XDG_CACHE_HOME: "the base of the cache folder when GPT2_CACHE is not set",
  LD_LIBRARY_PATH: "folders searched for shared libraries (the WebGPU backend looks there for the Vulkan loader)",
  EGL_PLATFORM: "Mesa's EGL platform; the WebGPU backend sets surfaceless (no display) for its OpenGL ES adapter when unset",
  // test hooks (train/faults.ts): failures made on purpose, for the tests of recovery
  GPT2_TEST_SPIKE_STEP: "test hook: multiply that step's gradients by 10^4",
  GPT2_TEST_SKIP_STEP: "test hook: skip that step's update",
  GPT2_TEST_DIE_AT: "test hook: RANK:STEP, that rank kills itself after that step",
  GPT2_TEST_HANG_AT: "test hook: RANK:STEP, that rank stops answering after that step",
} as const;

export type EnvVar = keyof typeof ENV_VARS;

/** Sets a variable for this process and the libraries it loads (e.g. Mesa's EGL_PLATFORM). */
export function setEnv(name: EnvVar, value: string): void {
  process.env[name] = value;
}

/** The variable's value; unset and empty are both undefined. */
export function env(name: EnvVar, from: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = from[name];
  return v === undefined || v === "" ? undefined : v;
}

/**
 * A folder (or file) of the cache: GPT2_CACHE, else $XDG_CACHE_HOME/gpt2ts, else ~/.cache/gpt2ts; e.g.
 * cacheDir("models"). Before these were read in one place, datasets and HellaSwag always went to ~/.cache/gpt2ts
 * and models ignored XDG_CACHE_HOME: where the new place holds nothing yet and an old one does, the old one is used,
 * so nothing downloaded or prepared before is lost or fetched again.
 */
export function cacheDir(sub: string, from: NodeJS.ProcessEnv = process.env): string {
  const home = path.join(from.HOME || os.homedir(), ".cache", "gpt2ts");
  const xdg = env("XDG_CACHE_HOME", from) ? path.join(env("XDG_CACHE_HOME", from)!, "gpt2ts") : home;
  const here = path.join(env("GPT2_CACHE", from) ?? xdg, sub);
  if (fs.existsSync(here)) return here;
  // where this folder was before: datasets and HellaSwag always in ~/.cache/gpt2ts, models there unless GPT2_CACHE
  // (the same as here then), the rest (peaks, CUDA kernels) under XDG_CACHE_HOME already
  const before = sub === "models" && env("GPT2_CACHE", from) ? here
    : path.join(["datasets", "hellaswag", "models"].includes(sub) ? home : xdg, sub);
  return before !== here && fs.existsSync(before) ? before : here;
}

/** The variables, one per line, for help. */
export function envHelp(): string {
  const w = Math.max(...Object.keys(ENV_VARS).map((k) => k.length));
  return Object.entries(ENV_VARS).filter(([k]) => !k.startsWith("GPT2_TEST_"))
    .map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join("\n");
}
