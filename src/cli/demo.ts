// gpt2 demo (npm start): offline, prepares the built-in English corpus, trains a small GPT for a few minutes on all
// cores with step lines and samples, writes a checkpoint, and says how to sample from it.

import * as os from "node:os";
import * as path from "node:path";
import { builtinCorpusDir } from "../data/builtin.js";
import { prepare } from "../data/prepare.js";
import { loadNativeAddon } from "../kernels/native.js";
import { DEFAULTS, mergeConfig } from "../train/config.js";
import { train } from "../train/loop.js";
import { backendFromFlags, num, parse, stopOnSignals } from "./common.js";

export async function demoCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, { out: { type: "string" }, steps: { type: "string" }, threads: { type: "string" }, backend: { type: "string" } });
  const out = values.out ?? path.join("runs", "demo");
  const steps = num(values.steps, "steps", 300, { int: true, min: 1 });
  const say = (s: string) => process.stdout.write(s + "\n");
  say("gpt2ts demo: a small GPT-2 learns English from the State of the Union addresses (1790-2016, built in).");
  const t0 = performance.now();
  const data = await prepare({
    inputs: [{ name: "sotu", path: path.join(builtinCorpusDir(), "*.txt") }], outDir: path.join(out, "data"), name: "sotu",
    shardSize: 10_000_000, valTokens: 65_536, workers: os.availableParallelism(),
  });
  say(`data: ${data.tokens.toLocaleString()} GPT-2 tokens from ${data.documents} addresses in ${((performance.now() - t0) / 1000).toFixed(1)}s ` +
    `(${path.join(out, "data")})`);
  const cfg = mergeConfig(DEFAULTS, {
    trainData: path.join(out, "data", "sotu_train_*.bin"), valData: path.join(out, "data", "sotu_val_*.bin"), outDir: out,
    init: "tiny", batchSize: 16, seqLen: 128, maxSteps: steps, lr: 2e-3, warmup: 20, schedule: "cosine", finalLrFrac: 0.1,
    weightDecay: 0.1, valEvery: 50, valBatches: 8, sampleEvery: 50, genTokens: 48, checkpointEvery: 100, recompute: 0,
  }, "demo");
  const backend = backendFromFlags({ backend: values.backend, threads: values.threads });
  const { addon } = loadNativeAddon();
  const signal = { stop: false };
  const release = stopOnSignals(signal);
  const r = await train(cfg, backend, {
    print: say, signal, peakGflops: backend.name === "native" && addon ? addon.measurePeakGflops(0.2) : NaN,
  }).finally(release);
  say(`\ndone: ${r.steps} steps in ${((performance.now() - t0) / 60000).toFixed(1)} min; train loss ${r.lastTrainLoss.toFixed(3)}, val loss ${r.lastValLoss.toFixed(3)}`);
  say(`sample from it:  npx gpt2 sample --model ${r.checkpoint} --prompt "Fellow citizens" --max-new-tokens 60`);
  say(`logs:            ${path.join(out, "main.log")}, ${path.join(out, "metrics.jsonl")}`);
  say(`a bigger run:    npx gpt2 prepare tinyshakespeare && npx gpt2 train -i 'data/tinyshakespeare/tinyshakespeare_train_*.bin' -j 'data/tinyshakespeare/tinyshakespeare_val_*.bin' -e d6 -b 8 -t 256 -o runs/shakespeare`);
}
