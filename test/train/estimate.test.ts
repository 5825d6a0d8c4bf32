import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { CLI } from "../helpers.js";

const est = (...a: string[]) => JSON.parse(spawnSync(process.execPath, [CLI, "estimate", ...a, "--json"], { encoding: "utf8" }).stdout);

test("estimate reproduces the published figures within 15%", () => {
  // llm.c: GPT-2 1.5B on 33.6B tokens, one 8xH100 node at ~50% MFU: about 24 h and $672 at $3.5/GPU-hour
  const big = est("--model", "d48", "--tokens", "33.6e9", "--gpu", "h100", "--gpus", "8", "--mfu", "0.5", "--price", "3.5");
  assert.ok(Math.abs(big.params - 1.558e9) / 1.558e9 < 0.01);
  assert.ok(Math.abs(big.hours - 24) / 24 < 0.15, `hours ${big.hours}`);
  assert.ok(Math.abs(big.cost_usd - 672) / 672 < 0.15, `cost ${big.cost_usd}`);
  // llm.c: GPT-2 124M on 10B tokens on 8xA100 in about 1.5 h
  const small = est("--model", "d12", "--tokens", "10e9", "--gpu", "a100", "--gpus", "8");
  assert.ok(Math.abs(small.hours - 1.5) / 1.5 < 0.15, `hours ${small.hours}`);
  for (const k of ["params", "flops_per_token", "total_flops", "hours", "cost_usd", "memory_gib"]) assert.equal(typeof small[k], "number", k);
  // 6N + 12*L*C*T
  assert.equal(small.flops_per_token, 6 * (124439808 - 1024 * 768 + (50304 - 50257) * 768) + 12 * 12 * 768 * 1024);
});
