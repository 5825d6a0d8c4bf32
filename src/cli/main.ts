#!/usr/bin/env node
// gpt2: the command-line entry. One file per command; all work is in the library.

import { benchCommand } from "./bench.js";
import { convertCommand } from "./convert.js";
import { UsageError } from "./common.js";
import { dashboardCommand, plotCommand } from "./dashboard.js";
import { demoCommand } from "./demo.js";
import { estimateCommand } from "./estimate.js";
import { evalCommand } from "./eval.js";
import { prepareCommand } from "./prepare.js";
import { sampleCommand } from "./sample.js";
import { detokenizeCommand, tokenizeCommand } from "./tokenize.js";
import { trainCommand } from "./train.js";

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<void>; help: string }> = {
  demo: { run: demoCommand, help: "the npm start job: train a small GPT on the built-in corpus, offline [--steps N] [--out DIR]" },
  tokenize: { run: tokenizeCommand, help: "text on stdin -> GPT-2 token ids [--json] [--allow-special]" },
  detokenize: { run: detokenizeCommand, help: "token ids on stdin (JSON array or comma/space separated) -> text" },
  sample: { run: sampleCommand, help: "--model PATH (--prompt TEXT | --prompt-ids 1,2) [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--num-samples N] [--json]" },
  eval: { run: evalCommand, help: "loss --model PATH --tokens FILE [--json]" },
  bench: { run: benchCommand, help: "--model d12 --batch 4 --seq 256 [--dtype fp32|bf16] [--steps N] [--generate] [--json]" },
  train: { run: trainCommand, help: "llm.c's flags: -i TRAIN_GLOB -j VAL_GLOB -o DIR -e d12|PATH -b B -t T -d TOKENS -x STEPS -l LR ... (--help)" },
  prepare: { run: prepareCommand, help: "(tinyshakespeare | fineweb-edu | --input [NAME=]PATH ...) [--out DIR] [--shard-size N] [--val-tokens N] [--mix a=0.7,b=0.3]" },
  dashboard: { run: dashboardCommand, help: "DIR... [--port P] [--host H]: live page of runs (train/val loss, lr, tok/s, MFU, HellaSwag, samples)" },
  plot: { run: plotCommand, help: "DIR... [-o loss.png|.svg|.html] [--ref 3.28] [--log]: loss and HellaSwag curves" },
  estimate: { run: estimateCommand, help: "--model d48 --tokens 33.6e9 [--gpu h100|a100|h200|cpu] [--gpus 8] [--mfu 0.5] [--price 3.5] [--json]" },
  convert: { run: convertCommand, help: "IN OUT: between HF dirs, llm.c .bin and gpt2ts checkpoints" },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  gpt2 ${name.padEnd(11)} ${c.help}`);
  return `gpt2 — GPT-2 in TypeScript\n\nusage:\n${lines.join("\n")}\n\ncommon flags: --backend js|native (env GPT2_BACKEND), --threads N (env GPT2_THREADS)\n`;
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "help") { process.stdout.write(usage()); return; }
  const c = COMMANDS[cmd];
  if (!c) throw new UsageError(`unknown command "${cmd}" (try "gpt2 --help")`);
  await c.run(rest);
}

main(process.argv.slice(2)).catch((e: Error) => {
  process.stderr.write(`gpt2: ${e.message}\n`);
  process.exitCode = e instanceof UsageError ? 2 : 1;
});
