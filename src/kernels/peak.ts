// MFU's denominator on a CPU: the machine's fp32 FMA peak, measured once per (CPU, threads) and cached. Measuring it
// again at every start (as runs once did) let a busy machine report a low peak and then an MFU above 100 %. The cache
// keeps the highest measurement ever made, so the value only moves towards the true peak; `gpt2 bench` measures again
// (longer) and raises it when it finds more. GPT2_PEAK_GFLOPS fixes it by hand.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { makeDir } from "../util/fs.js";
import type { NativeAddon } from "./native.js";
import { cacheDir, env } from "../util/env.js";

export function peakCachePath(): string {
  return cacheDir("peak.json");
}

/** what identifies a measurement: the CPU model, the instruction set the kernels use, and the thread count */
function machineKey(addon: NativeAddon): string {
  return `${os.cpus()[0]?.model.trim() ?? "cpu"} | ${addon.cpuFeatures()} | ${addon.getThreads()} threads`;
}

function readCache(file: string): Record<string, number> {
  try {
    const j = JSON.parse(fs.readFileSync(file, "utf8")) as unknown;
    return j && typeof j === "object" && !Array.isArray(j) ? (j as Record<string, number>) : {};
  } catch { return {}; }
}

/**
 * The fp32 peak in GFLOP/s with the addon's current thread count: GPT2_PEAK_GFLOPS, else the cached value, else
 * measured now (best of five short runs, the least disturbed) and cached. `remeasure` measures even when cached and
 * keeps the larger value. bf16 matmuls (vdpbf16ps, two multiply-adds per fp32 lane) have twice this peak.
 */
export function cpuPeakGflops(addon: NativeAddon, opts: { remeasure?: boolean } = {}): number {
  const given = Number(env("GPT2_PEAK_GFLOPS"));
  if (env("GPT2_PEAK_GFLOPS") && Number.isFinite(given) && given > 0) return given;
  const file = peakCachePath(), key = machineKey(addon);
  const cache = readCache(file);
  const known = Number.isFinite(cache[key]) && cache[key] > 0 ? cache[key] : 0;
  if (known && !opts.remeasure) return known;
  let best = 0;
  for (let i = 0; i < 5; i++) best = Math.max(best, addon.measurePeakGflops(opts.remeasure ? 0.2 : 0.1));
  const peak = Math.max(known, best);
  if (peak > known) {
    try {
      makeDir(path.dirname(file));
      // written whole then renamed: two runs starting together never leave half a file
      const tmp = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify({ ...cache, [key]: Math.round(peak * 10) / 10 }, null, 1) + "\n");
      fs.renameSync(tmp, file);
    } catch { /* a read-only home: the value is still right for this run */ }
  }
  return peak;
}
