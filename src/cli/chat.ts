// gpt2 chat --model PATH [--system TEXT] [sampling flags]: a conversation in the terminal, streamed, with the KV
// cache kept across turns. /reset, /system TEXT, /help; Ctrl-C stops an answer, Ctrl-D (or /quit) ends.

import * as readline from "node:readline";
import { ChatSession } from "../chat/session.js";
import { requireGpt2Tokenizer } from "../io/load.js";
import { Rng } from "../util/rng.js";
import { INFERENCE_OPTIONS, inferenceModel, num, parse, randomSeed, SAMPLING_OPTIONS, samplingFromFlags, UsageError, modelPath, commandHelp } from "./common.js";

const HELP = "commands: /reset (forget the conversation), /system TEXT (start over with a system message), /help, /quit";

export const help = commandHelp({
  usage: "gpt2 chat --model PATH|NAME [--system TEXT] [flags]",
  about: "A conversation in the terminal with a model fine-tuned on conversations (gpt2 sft), streamed; the KV cache keeps the conversation.",
  flags: {
    ...INFERENCE_OPTIONS,
    model: { type: "string", arg: "PATH|NAME", help: "the model" },
    system: { type: "string", arg: "TEXT", help: "a system message" },
    ...SAMPLING_OPTIONS,
    "max-new-tokens": { ...SAMPLING_OPTIONS["max-new-tokens"], shown: "256" },
    temperature: { ...SAMPLING_OPTIONS.temperature, shown: "0.7" },
  },
  more: HELP,
});

export async function chatCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, help.flags);
  if (!values.model) throw new UsageError("--model PATH is required (a model fine-tuned on conversations with gpt2 sft)");
  const sampling = samplingFromFlags(values, { maxTokens: 256, temperature: 0.7 });
  const rng = new Rng(num(values.seed, "seed", randomSeed(), { int: true }));
  const file = await modelPath(values.model);
  requireGpt2Tokenizer(file, "gpt2 chat (the chat template)");
  const model = await inferenceModel(file, values, "language-model");
  let session: ChatSession;
  try { session = new ChatSession(model, values.system); } catch (e) { throw new UsageError(`${values.model}: ${(e as Error).message}`); }
  const tty = process.stdin.isTTY && process.stdout.isTTY;
  const out = (s: string) => process.stdout.write(s);
  if (tty) out(`chatting with ${values.model} (${model.config.nLayer} layers, context ${model.context} tokens). ${HELP}\n`);
  const rl = readline.createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, terminal: tty });
  let answering: AbortController | null = null;
  // Ctrl-C: stop the answer being written; at the prompt, quit
  rl.on("SIGINT", () => { if (answering) answering.abort(); else { out("\n"); rl.close(); } });
  process.on("SIGINT", () => { if (answering) answering.abort(); else process.exit(130); });
  const prompt = () => { if (tty) rl.prompt(); };
  rl.setPrompt("you> ");
  prompt();
  for await (const line of rl) {
    const text = line.trim();
    if (text === "") { prompt(); continue; }
    if (text === "/quit" || text === "/exit") break;
    if (text === "/help") { out(HELP + "\n"); prompt(); continue; }
    if (text === "/reset") { session.reset(); out("(conversation reset)\n"); prompt(); continue; }
    if (text === "/system" || text.startsWith("/system ")) {
      try {
        session.setSystem(text.slice(8).trim());
        out(`(new conversation${text.length > 8 ? " with that system message" : ""})\n`);
      } catch (e) {
        out(`(${(e as Error).message})\n`);
      }
      prompt();
      continue;
    }
    answering = new AbortController();
    out(tty ? "assistant> " : "");
    try {
      const reply = session.say(text, sampling, rng, answering.signal);
      let r = await reply.next();
      while (!r.done) { out(r.value); r = await reply.next(); }
      if (r.value === "length") out(" [cut: max tokens or the context reached]");
      if (r.value === "abort") out(" [stopped]");
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      out(`(${e.message})`);
    } finally {
      answering = null;
    }
    out("\n");
    prompt();
  }
  rl.close();
}
