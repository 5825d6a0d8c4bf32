#!/usr/bin/env node
// gpt2: the command-line entry. One file per command, loaded on demand (a command pays only for what it imports:
// the charting library, the tokenizer's WASM, ...); all work is in the library. Each command file exports its --help:
// `help` (or `helps`, one per subcommand), the flags it parses with their meanings and defaults.

import { createRequire } from "node:module";
import { formatHelp, UsageError, type CommandHelp } from "./common.js";
import { envHelp } from "../util/env.js";

type Run = (argv: string[]) => Promise<void>;
interface CommandModule { help?: CommandHelp; helps?: Record<string, CommandHelp> }

const COMMANDS: Record<string, { load: () => Promise<Record<string, unknown>>; run: string; about: string; helpName?: string }> = {
  demo: { load: () => import("./demo.js"), run: "demoCommand", about: "the npm start job (a small GPT learns English); demo assistant: pretrain -> SFT -> RM -> DPO -> RL" },
  tokenize: { load: () => import("./tokenize.js"), run: "tokenizeCommand", about: "text on stdin -> GPT-2 token ids (tiktoken's); --chat: a conversation through the chat template" },
  detokenize: { load: () => import("./tokenize.js"), run: "detokenizeCommand", about: "token ids on stdin -> text", helpName: "detokenizeHelp" },
  prepare: { load: () => import("./prepare.js"), run: "prepareCommand", about: "text / JSONL / Parquet (or tinyshakespeare, fineweb-edu) -> llm.c token shards" },
  train: { load: () => import("./train.js"), run: "trainCommand", about: "pretraining, with llm.c's flags" },
  sft: { load: () => import("./train.js"), run: "sftCommand", about: "supervised fine-tuning on conversations" },
  rm: { load: () => import("./rm.js"), run: "rmCommand", about: "train | score: a reward model (Bradley-Terry)" },
  dpo: { load: () => import("./train.js"), run: "dpoCommand", about: "preference tuning (DPO) against the starting model" },
  rl: { load: () => import("./train.js"), run: "rlCommand", about: "reinforcement learning (GRPO) with a checker or a reward model" },
  chat: { load: () => import("./chat.js"), run: "chatCommand", about: "talk to a fine-tuned model in the terminal" },
  serve: { load: () => import("./serve.js"), run: "serveCommand", about: "OpenAI's API and a chat page for a model" },
  web: { load: () => import("./web.js"), run: "webCommand", about: "GPT-2 in the browser (WebGPU): open a model, generate, train on pasted text" },
  sample: { load: () => import("./sample.js"), run: "sampleCommand", about: "KV-cached sampling, streamed" },
  eval: { load: () => import("./eval.js"), run: "evalCommand", about: "loss | hellaswag | chat: validation loss, HellaSwag, exact match of answers" },
  bench: { load: () => import("./bench.js"), run: "benchCommand", about: "training / generation speed, MFU, peak memory" },
  dashboard: { load: () => import("./dashboard.js"), run: "dashboardCommand", about: "a live page of one or more runs" },
  plot: { load: () => import("./dashboard.js"), run: "plotCommand", about: "loss and evaluation curves of runs as PNG, SVG or HTML", helpName: "plotHelp" },
  estimate: { load: () => import("./estimate.js"), run: "estimateCommand", about: "parameters, FLOPs, memory, time and cost of a run" },
  pull: { load: () => import("./pull.js"), run: "pullCommand", about: "pretrained GPT-2 weights from the Hugging Face hub" },
  convert: { load: () => import("./convert.js"), run: "convertCommand", about: "between HF directories, llm.c .bin and gpt2ts checkpoints" },
};

function version(): string {
  return (createRequire(import.meta.url)("../../../package.json") as { version: string }).version;
}

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  gpt2 ${name.padEnd(11)} ${c.about}`);
  return `gpt2 ${version()} — GPT-2 in TypeScript: pretraining, fine-tuning, preference tuning, RL, chat and serving\n\n` +
    `usage: gpt2 COMMAND [flags]\n${lines.join("\n")}\n\n"gpt2 COMMAND --help" (or -h) lists a command's flags, each with its meaning and default.\n\n` +
    `environment:\n${envHelp()}\n`;
}

/**
 * --help, or -h where it cannot be llm.c's -h (HellaSwag, which takes a value): last, or before another flag, or in a
 * command without a -h flag.
 */
function wantsHelp(cmd: string, rest: string[]): boolean {
  if (rest.includes("--help")) return true;
  const i = rest.indexOf("-h");
  if (i < 0) return false;
  const training = ["train", "sft", "dpo", "rl"].includes(cmd) || (cmd === "rm" && rest[0] === "train");
  return !training || i === rest.length - 1 || rest[i + 1].startsWith("-");
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") { process.stdout.write(usage()); return; }
  if (cmd === "--version" || cmd === "-V" || cmd === "version") { process.stdout.write(`gpt2ts ${version()}\n`); return; }
  const c = COMMANDS[cmd];
  if (!c) throw new UsageError(`unknown command "${cmd}" (try "gpt2 --help")`);
  const mod = await c.load();
  if (wantsHelp(cmd, rest)) {
    const m = mod as CommandModule & Record<string, unknown>;
    const sub = rest[0] && !rest[0].startsWith("-") ? rest[0] : undefined;
    const h = c.helpName ? (m[c.helpName] as CommandHelp) : m.helps ? (sub && m.helps[sub]) || m.helps[""] : cmd === "train" || cmd === "sft" || cmd === "dpo" || cmd === "rl"
      ? (m.trainingHelp as (c: string) => CommandHelp)(cmd) : m.help;
    if (!h) throw new UsageError(`no help for gpt2 ${cmd}${sub ? ` ${sub}` : ""}`);
    process.stdout.write(formatHelp(h));
    return;
  }
  await (mod[c.run] as Run)(rest);
}

main(process.argv.slice(2)).catch((e: Error) => {
  process.stderr.write(`gpt2: ${e.message}\n`);
  process.exitCode = e instanceof UsageError ? 2 : 1;
});
