import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend, DType, Tensor } from "../src/kernels/backend.js";
import { JsBackend } from "../src/kernels/js/backend.js";
import { HostF32 } from "../src/kernels/host.js";

/** repository root (tests run from dist/test/...) */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const fixture = (...p: string[]): string => path.join(ROOT, "test/fixtures", ...p);
export const CLI = path.join(ROOT, "dist/src/cli/main.js");

const made: string[] = [];
process.on("exit", () => {
  if (process.env.GPT2_KEEP_TEST_TMP) return;
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh temporary folder, removed with everything in it when the test process exits (GPT2_KEEP_TEST_TMP=1 keeps it). */
export function tmpDir(prefix = "gpt2ts-test-"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function readJson<T = any>(file: string): T {
  return JSON.parse(fs.readFileSync(file, "utf8")) as T;
}

/** The reference backend with float64 storage: finite differences without float32 noise. */
export class Float64Backend extends JsBackend implements Backend {
  override readonly name = "js-f64";
  override alloc(n: number, dtype: DType = "f32"): Tensor {
    return dtype === "i32" ? super.alloc(n, dtype) : new Float64Array(n) as unknown as Tensor; // token ids stay int32
  }
  override read(t: Tensor, offset = 0, n = t.length - offset): Float32Array {
    return (t as unknown as Float64Array).slice(offset, offset + n) as unknown as Float32Array;
  }
}

export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), floor);
    if (e > worst) worst = e;
  }
  return worst;
}

export function maxAbsErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** a host Float32Array as a float32 tensor of the host backends: the same memory, with its dtype */
export function ht(a: Float32Array): Tensor {
  return new HostF32(a.buffer as ArrayBuffer, a.byteOffset, a.length);
}

/** a host backend's float32 tensor as its array (no copy) */
export function ha(t: Tensor | null): Float32Array {
  return t as unknown as Float32Array;
}
