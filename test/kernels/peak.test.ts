import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import type { NativeAddon } from "../../src/kernels/native.js";
import { cpuPeakGflops, peakCachePath } from "../../src/kernels/peak.js";
import { tmpDir } from "../helpers.js";

/** an addon whose peak measurements are the given values, in turn (a busy machine measures low) */
function fakeAddon(measurements: number[], threads = 2): NativeAddon {
  let i = 0;
  return { cpuFeatures: () => "avx512f", getThreads: () => threads, measurePeakGflops: () => measurements[i++ % measurements.length] } as unknown as NativeAddon;
}

test("MFU's CPU peak: measured once per machine and thread count, cached, and only ever raised", () => {
  const saved = { xdg: process.env.XDG_CACHE_HOME, env: process.env.GPT2_PEAK_GFLOPS };
  process.env.XDG_CACHE_HOME = tmpDir();
  delete process.env.GPT2_PEAK_GFLOPS;
  try {
    // the best of the first measurements is kept, and a later start reuses it instead of measuring a busy machine
    assert.equal(cpuPeakGflops(fakeAddon([180, 230, 200, 120, 210])), 230);
    assert.equal(cpuPeakGflops(fakeAddon([60])), 230);
    assert.equal(JSON.parse(fs.readFileSync(peakCachePath(), "utf8"))[Object.keys(JSON.parse(fs.readFileSync(peakCachePath(), "utf8")))[0]], 230);
    // gpt2 bench measures again: a lower value leaves the peak alone, a higher one raises it
    assert.equal(cpuPeakGflops(fakeAddon([90]), { remeasure: true }), 230);
    assert.equal(cpuPeakGflops(fakeAddon([240]), { remeasure: true }), 240);
    assert.equal(cpuPeakGflops(fakeAddon([1])), 240);
    // another thread count is another machine
    assert.equal(cpuPeakGflops(fakeAddon([117], 1)), 117);
    // a broken cache file is measured over, and GPT2_PEAK_GFLOPS wins over everything
    fs.writeFileSync(peakCachePath(), "{not json");
    assert.equal(cpuPeakGflops(fakeAddon([150])), 150);
    process.env.GPT2_PEAK_GFLOPS = "500";
    assert.equal(cpuPeakGflops(fakeAddon([150])), 500);
    assert.ok(fs.readdirSync(path.dirname(peakCachePath())).every((f) => !f.endsWith(".tmp")));
  } finally {
    if (saved.xdg === undefined) delete process.env.XDG_CACHE_HOME; else process.env.XDG_CACHE_HOME = saved.xdg;
    if (saved.env === undefined) delete process.env.GPT2_PEAK_GFLOPS; else process.env.GPT2_PEAK_GFLOPS = saved.env;
  }
});
