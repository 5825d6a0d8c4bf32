#!/usr/bin/env node
// gpt2: the command-line entry. One file per command, loaded on demand (a command pays only for what it imports:
// the charting library, the tokenizer's WASM, ...); all work is in the library.

import { UsageError } from "./common.js";

type Run = (argv: string[]) => Promise<void>;

const COMMANDS: Record<string, { load: () => Promise<Run>; help: string }> = {
  demo: { load: async () => (await import("./demo.js")).demoCommand, help: "the npm start job: train a small GPT on the built-in corpus, offline [--steps N] [--out DIR]" },
  tokenize: { load: async () => (await import("./tokenize.js")).tokenizeCommand, help: "text on stdin -> GPT-2 token ids [--json] [--allow-special]" },
  detokenize: { load: async () => (await import("./tokenize.js")).detokenizeCommand, help: "token ids on stdin (JSON array or comma/space separated) -> text" },
  prepare: { load: async () => (await import("./prepare.js")).prepareCommand, help: "(tinyshakespeare | fineweb-edu | --input [NAME=]PATH ...) [--out DIR] [--shard-size N] [--val-tokens N] [--mix a=0.7,b=0.3]" },
  train: { load: async () => (await import("./train.js")).trainCommand, help: "llm.c's flags: -i TRAIN_GLOB -j VAL_GLOB -o DIR -e d12|PATH -b B -t T -d TOKENS -x STEPS -l LR ... (see README)" },
  sft: { load: async () => (await import("./train.js")).sftCommand, help: "-e MODEL --data train.jsonl [--val-data val.jsonl] -o DIR [train's flags]: supervised fine-tuning on conversations" },
  rm: { load: async () => (await import("./rm.js")).rmCommand, help: "train -e MODEL --data pairs.jsonl -o DIR [train's flags] | score --model RM --data FILE [--json]: a reward model" },
  dpo: { load: async () => (await import("./train.js")).dpoCommand, help: "-e MODEL --data pairs.jsonl [--val-data ...] [--beta 0.1] -o DIR [train's flags]: preference tuning (DPO)" },
  rl: { load: async () => (await import("./train.js")).rlCommand, help: "-e MODEL --prompts prompts.jsonl (--reward check.mjs | --reward-model RM) [--group 8] -o DIR [train's flags]: reinforcement learning (GRPO)" },
  chat: { load: async () => (await import("./chat.js")).chatCommand, help: "--model PATH [--system TEXT] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]: talk to a fine-tuned model" },
  serve: { load: async () => (await import("./serve.js")).serveCommand, help: "--model PATH [--port P] [--host H] [--name NAME] [--max-queue N] [--max-tokens N]: OpenAI-compatible API and a chat page" },
  sample: { load: async () => (await import("./sample.js")).sampleCommand, help: "--model PATH (--prompt TEXT | --prompt-ids 1,2) [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--num-samples N] [--json]" },
  eval: { load: async () => (await import("./eval.js")).evalCommand, help: "loss --model PATH (--tokens FILE | --data GLOB) [--json] | hellaswag --model PATH [--data FILE] [--limit N] [--json] | chat --model PATH --data tasks.jsonl [--limit N] [--details] [--json]" },
  bench: { load: async () => (await import("./bench.js")).benchCommand, help: "--model d12 --batch 4 --seq 256 [--dtype fp32|bf16] [--steps N] [--generate] [--json]" },
  dashboard: { load: async () => (await import("./dashboard.js")).dashboardCommand, help: "DIR... [--port P] [--host H]: live page of runs (train/val loss, lr, tok/s, MFU, HellaSwag, samples)" },
  plot: { load: async () => (await import("./dashboard.js")).plotCommand, help: "DIR... [-o loss.png|.svg|.html] [--ref 3.28] [--log]: loss and HellaSwag curves" },
  estimate: { load: async () => (await import("./estimate.js")).estimateCommand, help: "--model d48 --tokens 33.6e9 [--gpu h100|a100|h200|cpu] [--gpus 8] [--mfu 0.5] [--price 3.5] [--json]" },
  pull: { load: async () => (await import("./pull.js")).pullCommand, help: "gpt2|gpt2-medium|gpt2-large|gpt2-xl|ORG/REPO [--revision R]: pretrained weights from the Hugging Face hub (HF_ENDPOINT, HF_TOKEN)" },
  convert: { load: async () => (await import("./convert.js")).convertCommand, help: "IN OUT: between HF dirs, llm.c .bin and gpt2ts checkpoints" },
};

const COMMON_FLAGS = "--backend js|native|cuda (env GPT2_BACKEND), --threads N (env GPT2_THREADS), --dtype fp32|bf16";

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  gpt2 ${name.padEnd(11)} ${c.help}`);
  return `gpt2 — GPT-2 in TypeScript\n\nusage:\n${lines.join("\n")}\n\ncommon flags: ${COMMON_FLAGS}\n"gpt2 COMMAND --help" shows one command's flags\n`;
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "help") { process.stdout.write(usage()); return; }
  const c = COMMANDS[cmd];
  if (!c) throw new UsageError(`unknown command "${cmd}" (try "gpt2 --help")`);
  if (rest.includes("--help")) {
    const training = cmd === "train" || cmd === "sft" || cmd === "dpo" || cmd === "rl" || (cmd === "rm" && rest[0] === "train");
    const details = training ? `\n${(await import("./train.js")).trainFlagsHelp(cmd === "rm" ? "rm" : cmd as "train")}` : "";
    process.stdout.write(`usage: gpt2 ${cmd} ${training ? "[flags]" : c.help}\n${details}\ncommon flags: ${COMMON_FLAGS}\n`);
    return;
  }
  await (await c.load())(rest);
}

main(process.argv.slice(2)).catch((e: Error) => {
  process.stderr.write(`gpt2: ${e.message}\n`);
  process.exitCode = e instanceof UsageError ? 2 : 1;
});
