// Builds the CPU emulation of CUDA (test/cuda/emu.cc) once per source version and points the CUDA backend at it.
// Must run before anything probes CUDA in the process (the addon keeps the first driver it loads).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/** The folder holding the emulation under CUDA's library names, or why it could not be built. */
export function useCudaEmulator(): { dir: string } | { skip: string } {
  const src = path.join(root, "test/cuda/emu.cc");
  const kernels = path.join(root, "native/cuda/kernels.cu");
  const hash = createHash("sha256").update(fs.readFileSync(src)).update(fs.readFileSync(kernels)).digest("hex").slice(0, 16);
  const dir = path.join(os.tmpdir(), `gpt2ts-cuda-emu-${hash}`);
  const lib = path.join(dir, "libcuda.so.1");
  if (!fs.existsSync(lib)) {
    fs.mkdirSync(dir, { recursive: true });
    const tmp = `${lib}.${process.pid}.tmp`;
    const r = spawnSync("g++", ["-O2", "-std=c++20", "-shared", "-fPIC", "-pthread", "-o", tmp, src], { encoding: "utf8" });
    if (r.status !== 0) return { skip: `could not build the CUDA emulation with g++: ${(r.error?.message ?? r.stderr).split("\n")[0]}` };
    fs.renameSync(tmp, lib);
  }
  for (const name of ["libnvrtc.so.13", "libcublas.so.13", "libnccl.so.2"]) {
    const p = path.join(dir, name);
    if (!fs.existsSync(p)) try { fs.symlinkSync("libcuda.so.1", p); } catch { /* made by a concurrent test */ }
  }
  process.env.GPT2_CUDA_LIBDIR = dir;
  process.env.GPT2_CUDA_CACHE = path.join(dir, "cache");
  return { dir };
}
