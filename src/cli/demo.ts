// gpt2 demo (npm start): offline, prepares the built-in English corpus, trains a small GPT for a few minutes on all
// cores with step lines and samples, writes a checkpoint, and says how to sample from it.

import * as os from "node:os";
import * as path from "node:path";
import { builtinCorpusDir } from "../data/builtin.js";
import { prepare } from "../data/prepare.js";
import { loadNativeAddon } from "../kernels/native.js";
import { DEFAULTS, mergeConfig } from "../train/config.js";
import { train } from "../train/loop.js";
import * as fs from "node:fs";
import { factsJsonl } from "../chat/synthetic.js";
import { readExamples } from "../data/sft.js";
import { evaluateChat } from "../eval/chat.js";
import { loadModel } from "../io/load.js";
import { CHAT_VOCAB_SIZE } from "../tokenizer/bpe.js";
import { sft } from "../train/task.js";
import { backendFromFlags, num, parse, stopOnSignals } from "./common.js";

export async function demoCommand(argv: string[]): Promise<void> {
  if (argv[0] === "assistant") return assistantDemo(argv.slice(1));
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

/**
 * gpt2 demo assistant: the assistant stages in a few minutes, offline. A tiny GPT-2 is pretrained on the built-in
 * English corpus, then fine-tuned (SFT) on generated conversations that ask about facts given in the question; the
 * exact-match accuracy on held-out conversations is measured before and after. Every stage is a CLI command of its
 * own, printed as it runs, so each can be repeated or changed by hand.
 */
async function assistantDemo(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    out: { type: "string" }, "pretrain-steps": { type: "string" }, "sft-steps": { type: "string" }, facts: { type: "string" },
    threads: { type: "string" }, backend: { type: "string" },
  });
  const out = values.out ?? path.join("runs", "assistant");
  const preSteps = num(values["pretrain-steps"], "pretrain-steps", 150, { int: true, min: 1 });
  const sftSteps = num(values["sft-steps"], "sft-steps", 1500, { int: true, min: 1 });
  const facts = num(values.facts, "facts", 2, { int: true, min: 1, max: 6 });
  const say = (s: string) => process.stdout.write(s + "\n");
  const t0 = performance.now();
  const backend = backendFromFlags({ backend: values.backend, threads: values.threads });
  const { addon } = loadNativeAddon();
  const peak = backend.name === "native" && addon ? addon.measurePeakGflops(0.2) : NaN;
  const signal = { stop: false };
  const release = stopOnSignals(signal);
  const quiet = (line: string) => { if (!/^step +\d+\/\d+ \|/.test(line) || /^step +\d*(00|50)\//.test(line)) say("  " + line); };
  try {
    say(`1/4 pretraining a tiny GPT-2 on the built-in English corpus (${preSteps} steps)`);
    await prepare({
      inputs: [{ name: "sotu", path: path.join(builtinCorpusDir(), "*.txt") }], outDir: path.join(out, "data"), name: "sotu",
      shardSize: 10_000_000, valTokens: 65_536, workers: os.availableParallelism(),
    });
    const pre = await train(mergeConfig(DEFAULTS, {
      trainData: path.join(out, "data", "sotu_train_*.bin"), valData: path.join(out, "data", "sotu_val_*.bin"), outDir: path.join(out, "pretrain"), init: "tiny", batchSize: 16, seqLen: 128,
      maxSteps: preSteps, lr: 2e-3, warmup: 20, finalLrFrac: 0.1, weightDecay: 0.1, valEvery: preSteps, valBatches: 8, sampleEvery: 0, recompute: 0,
    }, "demo"), backend, { print: quiet, signal, peakGflops: peak });
    if (signal.stop || !pre.checkpoint) return;

    say(`2/4 writing conversations: questions about 1 to ${facts} facts given in the message (${path.join(out, "data")})`);
    const trainRows = path.join(out, "data", "facts_train.jsonl"), val = path.join(out, "data", "facts_val.jsonl");
    fs.writeFileSync(trainRows, factsJsonl(4000, { seed: 1, facts }));
    fs.writeFileSync(val, factsJsonl(200, { seed: 2, facts }));
    say(`  e.g. ${fs.readFileSync(val, "utf8").split("\n")[0]}`);
    const base = await accuracy(pre.checkpoint, val, backend);
    say(`  before fine-tuning: exact match ${base}   (gpt2 eval chat --model ${pre.checkpoint} --data ${val})`);

    say(`3/4 supervised fine-tuning on the conversations (${sftSteps} steps; the loss counts the answers only)`);
    const tuned = await train(mergeConfig(DEFAULTS, {
      trainData: trainRows, valData: val, outDir: path.join(out, "sft"), init: pre.checkpoint, batchSize: 16, seqLen: 128,
      maxSteps: sftSteps, lr: 3e-3, warmup: 30, finalLrFrac: 0.1, valEvery: Math.max(1, Math.floor(sftSteps / 3)), valBatches: 4,
      sampleEvery: Math.max(1, Math.floor(sftSteps / 3)), genTokens: 16, recompute: 0,
    }, "demo"), backend, { print: quiet, signal, peakGflops: peak }, undefined, sft());
    if (signal.stop || !tuned.checkpoint) return;

    say("4/4 held-out conversations, greedy answers");
    const after = await accuracy(tuned.checkpoint, val, backend);
    say(`  after fine-tuning: exact match ${after}   (gpt2 eval chat --model ${tuned.checkpoint} --data ${val} --details)`);
    say(`\ndone in ${((performance.now() - t0) / 60000).toFixed(1)} min. Talk to it:`);
    say(`  npx gpt2 chat --model ${tuned.checkpoint} --temperature 0`);
    say(`  npx gpt2 serve --model ${tuned.checkpoint}        # OpenAI's API and a chat page on http://127.0.0.1:8000/`);
  } finally {
    release();
  }
}

async function accuracy(model: string, data: string, backend: ReturnType<typeof backendFromFlags>): Promise<string> {
  const m = loadModel(model, backend);
  if (m.config.vocabSize < CHAT_VOCAB_SIZE) m.extendVocab(CHAT_VOCAB_SIZE);
  const r = await evaluateChat(m, readExamples(data).map((x) => x.example));
  return `${r.correct}/${r.n} = ${(100 * r.accuracy).toFixed(1)}%`;
}
