// Generation on float32 vs bf16 weights, same run, same model (d12 by default), batch 1 with a KV cache, prefill
// included: decoding reads every weight once per token, so bf16 storage should approach 2x where memory bandwidth
// bounds it. Alternates the two three times and reports the medians and their ratio.
//   node dist/bench/generate-dtype.js [--model d12] [--tokens 64] [--threads N]
import { parseArgs } from "node:util";
import { createBackend } from "../src/kernels/select.js";
import { makeConfig } from "../src/model/config.js";
import { benchGenerate } from "../src/train/bench.js";

const { values } = parseArgs({ options: { model: { type: "string" }, tokens: { type: "string" }, threads: { type: "string" } } });
const config = makeConfig(values.model ?? "d12");
const tokens = Number(values.tokens ?? 64);
const backend = createBackend({ name: "native", threads: values.threads ? Number(values.threads) : undefined });
const runs: Record<"f32" | "bf16", number[]> = { f32: [], bf16: [] };
for (let round = 0; round < 3; round++) {
  for (const w of ["f32", "bf16"] as const) runs[w].push((await benchGenerate(config, backend, tokens, NaN, 16, 3, w)).tokens_per_s);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const f32 = median(runs.f32), bf16 = median(runs.bf16);
console.log(`${values.model ?? "d12"}, ${backend.threads} threads, ${tokens} tokens after a 16-token prompt:`);
console.log(`  float32 weights  ${f32.toFixed(1)} tokens/s   (${runs.f32.map((x) => x.toFixed(1)).join(", ")})`);
console.log(`  bf16 weights     ${bf16.toFixed(1)} tokens/s   (${runs.bf16.map((x) => x.toFixed(1)).join(", ")})`);
console.log(`  ratio            ${(bf16 / f32).toFixed(2)}x`);
