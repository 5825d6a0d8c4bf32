// gpt2 demo (npm start): offline, prepares the built-in English corpus, trains a small GPT for a few minutes on all
// cores with step lines and samples, writes a checkpoint, and says how to sample from it.

import type { Backend } from "../kernels/backend.js";
import * as os from "node:os";
import * as path from "node:path";
import { builtinCorpus } from "../data/builtin.js";
import { prepare } from "../data/prepare.js";
import { loadNativeAddon } from "../kernels/native.js";
import { cpuPeakGflops } from "../kernels/peak.js";
import { DEFAULTS, mergeConfig } from "../train/config.js";
import { train } from "../train/loop.js";
import { benchTrain } from "../train/bench.js";
import { generateAsync } from "../model/generate.js";
import { gpt2Tokenizer } from "../tokenizer/tokenizer.js";
import { Rng } from "../util/rng.js";
import { makeConfig } from "../model/config.js";
import * as fs from "node:fs";
import { FACTS_CHECKER, factsJsonl, factsPairsJsonl, factsPromptsJsonl } from "../chat/synthetic.js";
import { PairData, readPairs } from "../data/pairs.js";
import { dpoTask, rewardModelTask, rewardScoresAsync } from "../train/preference.js";
import { rlTask } from "../train/rl.js";
import { readExamples } from "../data/sft.js";
import { evaluateChat } from "../eval/chat.js";
import { loadModel } from "../io/load.js";
import { CHAT_VOCAB_SIZE } from "../tokenizer/bpe.js";
import { sft, type TrainTask } from "../train/task.js";
import { backendFromFlags, num, parse, stopOnSignals, BACKEND_OPTIONS, UsageError, type CommandHelp } from "./common.js";

export const helps: Record<string, CommandHelp> = {
  "": {
    usage: "gpt2 demo [--minutes M | --steps N] [--out DIR]   |   gpt2 demo assistant [...]",
    about: "The npm start job: a small GPT-2 learns English from the built-in corpus, offline, in a few minutes. gpt2 demo assistant --help: the assistant stages.",
    flags: {
      minutes: { type: "string", arg: "M", help: "training time: the step count is what fits, from a step timed on this machine", shown: "3.5" },
      steps: { type: "string", arg: "N", help: "training steps (instead of --minutes)", shown: "what --minutes allows" },
      out: { type: "string", arg: "DIR", help: "where the data, logs and checkpoints go", shown: "runs/demo" },
      threads: BACKEND_OPTIONS.threads, backend: BACKEND_OPTIONS.backend,
    },
  },
  assistant: {
    usage: "gpt2 demo assistant [flags]",
    about: "Pretrain -> SFT -> reward model -> DPO -> RL on a generated task (questions about facts given in the message), the exact-match accuracy after each stage; about 7 minutes on 2 cores.",
    flags: {
      out: { type: "string", arg: "DIR", help: "where everything goes", shown: "runs/assistant" },
      "pretrain-steps": { type: "string", arg: "N", help: "pretraining steps", shown: "150" },
      "sft-steps": { type: "string", arg: "N", help: "SFT steps", shown: "1500" },
      "rm-steps": { type: "string", arg: "N", help: "reward-model steps", shown: "300" },
      "dpo-steps": { type: "string", arg: "N", help: "DPO steps", shown: "600" },
      "rl-steps": { type: "string", arg: "N", help: "RL steps", shown: "300" },
      facts: { type: "string", arg: "N", help: "facts per question: 1 to N", shown: "2" },
      threads: BACKEND_OPTIONS.threads, backend: BACKEND_OPTIONS.backend,
    },
  },
};

export async function demoCommand(argv: string[]): Promise<void> {
  if (argv[0] === "assistant") return assistantDemo(argv.slice(1));
  const { values } = parse(argv, helps[""].flags);
  const out = values.out ?? path.join("runs", "demo");
  if (values.minutes !== undefined && values.steps !== undefined) throw new UsageError("give --minutes or --steps, not both");
  const minutes = num(values.minutes, "minutes", 3.5, { min: 0.01 });
  const say = (s: string) => process.stdout.write(s + "\n");
  say("gpt2ts demo: a small GPT-2 learns English from the State of the Union addresses (1790-2016, built in).");
  const t0 = performance.now();
  // each npm start is a new run: the previous one's checkpoints and logs go (its prepared data stays)
  if (fs.existsSync(out)) {
    const old = fs.readdirSync(out).filter((f) => /^checkpoint_\d+/.test(f) || ["main.log", "metrics.jsonl", "status.json", "config.json"].includes(f));
    for (const f of old) fs.rmSync(path.join(out, f), { force: true });
    if (old.length) say(`starting afresh in ${out} (the previous run's checkpoints and logs removed; its data kept)`);
  }
  const data = await prepare({
    inputs: [{ name: "sotu", path: builtinCorpus(path.join(out, "data")) }], outDir: path.join(out, "data"), name: "sotu",
    shardSize: 10_000_000, valTokens: 65_536, workers: os.availableParallelism(),
  });
  say(`data: ${data.tokens.toLocaleString()} GPT-2 tokens from ${data.documents} addresses in ${((performance.now() - t0) / 1000).toFixed(1)}s ` +
    `(${path.join(out, "data")})`);
  const backend = await backendFromFlags({ backend: values.backend, threads: values.threads });
  const { addon } = loadNativeAddon();
  const steps = values.steps !== undefined ? num(values.steps, "steps", 0, { int: true, min: 1 }) : await stepsFor(minutes, backend, say);
  const every = Math.max(1, Math.round(steps / 6));
  const cfg = mergeConfig(DEFAULTS, {
    trainData: path.join(out, "data", "sotu_train_*.bin"), valData: path.join(out, "data", "sotu_val_*.bin"), outDir: out,
    ...DEMO, maxSteps: steps, valEvery: every, sampleEvery: 2 * every, checkpointEvery: 0,
  }, "demo");
  const signal = { stop: false };
  const release = stopOnSignals(signal);
  const r = await train(cfg, backend, {
    print: say, signal, peakGflops: backend.name === "native" && addon ? cpuPeakGflops(addon) : NaN,
  }).finally(release);
  say(`\ndone: ${r.steps} steps in ${((performance.now() - t0) / 60000).toFixed(1)} min; train loss ${r.lastTrainLoss.toFixed(3)}, val loss ${r.lastValLoss.toFixed(3)}`);
  if (!r.checkpoint) return;
  // the samples above are drawn at temperature 1, as llm.c's; a cooler, top-k sample is what people read
  const sampling = { temperature: 0.7, topK: 40 };
  const model = await loadModel(r.checkpoint, backend);
  const [ids] = await generateAsync(model, gpt2Tokenizer.encode("Fellow citizens"), 1, new Rng(1), { maxNewTokens: 60, ...sampling, stopAtEot: true });
  say(`\nFellow citizens${gpt2Tokenizer.decode(ids)}\n`);
  say(`sample from it:  npx gpt2 sample --model ${r.checkpoint} --prompt "Fellow citizens" --max-new-tokens 60 --temperature ${sampling.temperature} --top-k ${sampling.topK}`);
  say(`logs:            ${path.join(out, "main.log")}, ${path.join(out, "metrics.jsonl")}`);
  say(`a bigger run:    npx gpt2 prepare tinyshakespeare && npx gpt2 train -i 'data/tinyshakespeare/tinyshakespeare_train_*.bin' -j 'data/tinyshakespeare/tinyshakespeare_val_*.bin' -e d6 -b 8 -t 256 -o runs/shakespeare`);
}

/**
 * The demo's recipe, chosen by measuring val loss after the same wall time on 2 Zen 4 cores (BENCHMARKS.md, "The
 * demo"): at ~3,100 tokens/s every shape is bound by the 50257-wide output layer, so a small batch buys more
 * updates for the same tokens; the outlier guard skips the early spikes a high LR brings.
 */
const DEMO = {
  init: "tiny", batchSize: 4, seqLen: 128, lr: 2e-3, warmup: 50, schedule: "cosine", finalLrFrac: 0.1,
  weightDecay: 0.1, skipUpdateZ: 4, valBatches: 8, genTokens: 48, recompute: 0,
} as const;

/**
 * Steps of `msPerStep` that fit in `minutes`: 85 % of the time for the steps (the rest: data, validation, samples),
 * in tens, at least 20 (fewer teach nothing to show) and at most 20,000.
 */
export function fitSteps(minutes: number, msPerStep: number): { steps: number; floor: boolean } {
  const fit = Math.round((minutes * 60_000 * 0.85) / msPerStep / 10) * 10;
  return { steps: Math.max(20, Math.min(20_000, fit)), floor: fit < 20 };
}

/** the steps that fit in `minutes` on this machine, from one timed step (after a warm-up) */
async function stepsFor(minutes: number, backend: Backend, say: (s: string) => void): Promise<number> {
  const ms = (await benchTrain(makeConfig("tiny"), backend, DEMO.batchSize, DEMO.seqLen, 2, NaN)).ms_per_step;
  const { steps, floor } = fitSteps(minutes, ms);
  say(floor
    ? `a step takes ${ms.toFixed(0)} ms here: fewer than 20 fit in ${minutes} minutes, so 20 steps (about ${((20 * ms) / 60_000 / 0.85).toFixed(1)} minutes)`
    : `a step takes ${ms.toFixed(0)} ms here: ${steps} steps fit in about ${minutes} minutes (--steps N or --minutes M to change it)`);
  return steps;
}

/**
 * gpt2 demo assistant: the assistant stages in a few minutes, offline. A tiny GPT-2 is pretrained on the built-in
 * English corpus, fine-tuned (SFT) on generated conversations that ask about facts given in the question, then
 * tuned on preferences (a reward model, DPO) and by reinforcement learning with a checker (GRPO); the exact-match
 * accuracy on held-out conversations is measured after each stage. Every stage is a CLI command of its own, printed
 * as it runs, so each can be repeated or changed by hand.
 */
async function assistantDemo(argv: string[]): Promise<void> {
  const { values } = parse(argv, helps.assistant.flags);
  const out = values.out ?? path.join("runs", "assistant");
  const steps = (k: string, def: number) => num((values as Record<string, string | undefined>)[k], k, def, { int: true, min: 1 });
  const preSteps = steps("pretrain-steps", 150), sftSteps = steps("sft-steps", 1500), rmSteps = steps("rm-steps", 300);
  const dpoSteps = steps("dpo-steps", 600), rlSteps = steps("rl-steps", 300);
  const facts = num(values.facts, "facts", 2, { int: true, min: 1, max: 6 });
  const say = (s: string) => process.stdout.write(s + "\n");
  const t0 = performance.now();
  const backend = await backendFromFlags({ backend: values.backend, threads: values.threads });
  const { addon } = loadNativeAddon();
  const peak = backend.name === "native" && addon ? cpuPeakGflops(addon) : NaN;
  const signal = { stop: false };
  const release = stopOnSignals(signal);
  const quiet = (line: string) => { if (!/^step +\d+\/\d+ \|/.test(line) || /^step +\d*(00|50)\//.test(line)) say("  " + line); };
  const data = (name: string) => path.join(out, "data", name);
  const run = async (task: TrainTask | undefined, over: Record<string, unknown>) => {
    const r = await train(mergeConfig(DEFAULTS, { batchSize: 16, seqLen: 128, recompute: 0, ...over }, "demo"), backend,
      { print: quiet, signal, peakGflops: peak }, undefined, task);
    if (signal.stop || !r.checkpoint) throw new Stopped();
    return r.checkpoint;
  };
  const results: [string, string][] = [];
  try {
    say(`1/6 pretraining a tiny GPT-2 on the built-in English corpus (${preSteps} steps)`);
    await prepare({
      inputs: [{ name: "sotu", path: builtinCorpus(path.join(out, "data")) }], outDir: path.join(out, "data"), name: "sotu",
      shardSize: 10_000_000, valTokens: 65_536, workers: os.availableParallelism(),
    });
    const pre = await run(undefined, {
      trainData: data("sotu_train_*.bin"), valData: data("sotu_val_*.bin"), outDir: path.join(out, "pretrain"), init: "tiny",
      maxSteps: preSteps, lr: 2e-3, warmup: 20, finalLrFrac: 0.1, weightDecay: 0.1, valEvery: preSteps, valBatches: 8, sampleEvery: 0,
    });

    say(`2/6 writing the task: questions about 1 to ${facts} facts given in the message (${path.join(out, "data")})`);
    const files = {
      train: data("facts_train.jsonl"), val: data("facts_val.jsonl"), pairs: data("facts_pairs_train.jsonl"), pairsVal: data("facts_pairs_val.jsonl"),
      prompts: data("facts_prompts_train.jsonl"), check: data("facts_check.mjs"),
    };
    fs.writeFileSync(files.train, factsJsonl(4000, { seed: 1, facts }));
    fs.writeFileSync(files.val, factsJsonl(200, { seed: 2, facts }));
    fs.writeFileSync(files.pairs, factsPairsJsonl(4000, { seed: 11, facts }));
    fs.writeFileSync(files.pairsVal, factsPairsJsonl(200, { seed: 12, facts }));
    fs.writeFileSync(files.prompts, factsPromptsJsonl(2000, { seed: 13, facts }));
    fs.writeFileSync(files.check, FACTS_CHECKER);
    say(`  e.g. ${fs.readFileSync(files.val, "utf8").split("\n")[0]}`);
    const score = async (stage: string, model: string) => {
      const acc = await accuracy(model, files.val, backend);
      results.push([stage, acc]);
      say(`  ${stage}: exact match ${acc}   (gpt2 eval chat --model ${model} --data ${files.val})`);
    };
    await score("pretrained", pre);

    say(`3/6 supervised fine-tuning on the conversations (${sftSteps} steps; the loss counts the answers only)`);
    const sftModel = await run(sft(), {
      trainData: files.train, valData: files.val, outDir: path.join(out, "sft"), init: pre, maxSteps: sftSteps, lr: 3e-3, warmup: 30,
      finalLrFrac: 0.1, valEvery: Math.max(1, Math.floor(sftSteps / 3)), valBatches: 4, sampleEvery: Math.max(1, Math.floor(sftSteps / 3)), genTokens: 16,
    });
    await score("after SFT", sftModel);

    say(`4/6 a reward model from the SFT model: the right answer preferred to a wrong one (${rmSteps} steps)`);
    const rm = await run(rewardModelTask(), {
      trainData: files.pairs, valData: files.pairsVal, outDir: path.join(out, "rm"), init: sftModel, maxSteps: rmSteps, lr: 1e-3, warmup: 20,
      valEvery: rmSteps, valBatches: 12, sampleEvery: 0,
    });
    const pairAcc = await pairAccuracy(rm, files.pairsVal, backend);
    results.push(["reward model, held-out pairs", pairAcc]);
    say(`  reward model: prefers the right answer in ${pairAcc} of held-out pairs   (gpt2 rm score --model ${rm} --data ${files.pairsVal})`);

    say(`5/6 DPO from the SFT model on the same pairs, with the chosen answers' NLL (RPO) (${dpoSteps} steps)`);
    const dpo = await run(dpoTask(0.1, 1), {
      trainData: files.pairs, valData: files.pairsVal, outDir: path.join(out, "dpo"), init: sftModel, maxSteps: dpoSteps, lr: 2e-4, warmup: 20,
      valEvery: dpoSteps, valBatches: 8, sampleEvery: 0, rpoAlpha: 1, beta: 0.1,
    });
    await score("after DPO", dpo);

    say(`6/6 reinforcement learning (GRPO) from the SFT model, rewarded by a checker of exact answers (${rlSteps} steps)`);
    const rl = await run(rlTask(), {
      trainData: files.prompts, outDir: path.join(out, "rl"), init: sftModel, batchSize: 4, group: 8, maxNewTokens: 12, maxSteps: rlSteps,
      lr: 3e-4, warmup: 5, valEvery: 0, sampleEvery: 0, rewardModule: files.check,
    });
    await score("after RL", rl);

    say(`\ndone in ${((performance.now() - t0) / 60000).toFixed(1)} min.`);
    for (const [stage, acc] of results) say(`  ${stage.padEnd(30)} ${acc}`);
    say(`talk to it:`);
    say(`  npx gpt2 chat --model ${rl} --temperature 0`);
    say(`  npx gpt2 serve --model ${rl}        # OpenAI's API and a chat page on http://127.0.0.1:8000/`);
  } catch (e) {
    if (!(e instanceof Stopped)) throw e;
  } finally {
    release();
  }
}

/** a stage ended by a signal: the demo stops there (its checkpoint is written) */
class Stopped extends Error {}

async function accuracy(model: string, data: string, backend: Backend): Promise<string> {
  const m = await loadModel(model, backend);
  if (m.config.vocabSize < CHAT_VOCAB_SIZE) await m.extendVocab(CHAT_VOCAB_SIZE);
  const r = await evaluateChat(m, readExamples(data).map((x) => x.example));
  return `${r.correct}/${r.n} = ${(100 * r.accuracy).toFixed(1)}%`;
}

/** how often a reward model scores a pair's chosen answer above its rejected one */
async function pairAccuracy(model: string, data: string, backend: Backend): Promise<string> {
  const m = await loadModel(model, backend, "reward-model");
  const pairs = new PairData(readPairs(data), { B: 16, T: m.context, shuffle: false });
  m.allocate(32, Math.max(...pairs.rows.flat().map((r) => r.ids.length)));
  let right = 0, n = 0;
  for (let k0 = 0; k0 < pairs.rows.length; k0 += 16) {
    const b = pairs.batchOf(Array.from({ length: Math.min(16, pairs.rows.length - k0) }, (_, i) => k0 + i));
    const r = await rewardScoresAsync(m, b);
    for (let k = 0; k < b.pairs; k++, n++) if (r[2 * k] > r[2 * k + 1]) right++;
  }
  return `${right}/${n} = ${(100 * right / n).toFixed(1)}%`;
}
