// gpt2 serve --model PATH [--port P] [--host H] [--name NAME] [--max-queue N] [--max-tokens N] [--max-body BYTES]:
// OpenAI's API and a chat page for one model, on 127.0.0.1 unless --host says otherwise.

import * as path from "node:path";
import { requireGpt2Tokenizer } from "../io/load.js";
import { startServer } from "../serve/server.js";
import { CHAT_VOCAB_SIZE } from "../tokenizer/bpe.js";
import { INFERENCE_OPTIONS, inferenceModel, num, parse, randomSeed, UsageError, modelPath, commandHelp } from "./common.js";

export const help = commandHelp({
  usage: "gpt2 serve --model PATH|NAME [flags]",
  about: "OpenAI's API (POST /v1/chat/completions, POST /v1/completions, GET /v1/models; streamed or not) and a chat page at /.",
  flags: {
    ...INFERENCE_OPTIONS,
    model: { type: "string", arg: "PATH|NAME", help: "the model (chat needs one fine-tuned with gpt2 sft); a name such as gpt2 is pulled on first use" },
    port: { type: "string", arg: "P", help: "the port (0: any free one)", shown: "8000" },
    host: { type: "string", arg: "H", help: "the address to listen on", shown: "127.0.0.1" },
    name: { type: "string", arg: "NAME", help: "the model's name in the API", shown: "the run folder or file name" },
    "max-queue": { type: "string", arg: "N", help: "requests waiting beyond the running one; more get 429", shown: "16" },
    "max-tokens": { type: "string", arg: "N", help: "max_tokens a request may ask for", shown: "the model's context" },
    "max-body": { type: "string", arg: "BYTES", help: "largest request body; larger get 413", shown: "1048576" },
    "max-n": { type: "string", arg: "N", help: "samples per request (n) at most", shown: "8" },
    quiet: { type: "boolean", help: "no line per request on stderr" },
  },
});

export async function serveCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, help.flags);
  if (!values.model) throw new UsageError("--model PATH is required (a gpt2ts checkpoint, a Hugging Face directory or an llm.c .bin)");
  const file = await modelPath(values.model);
  requireGpt2Tokenizer(file, "gpt2 serve (OpenAI's API speaks GPT-2 tokens and the chat template)");
  const model = await inferenceModel(file, values, "language-model");
  // a run's checkpoint is named after its run folder (runs/facts-rl/checkpoint_00000300.gpt2ts: facts-rl)
  const given = path.resolve(values.model);
  const name = values.name ?? (/^checkpoint_\d+\.gpt2ts$/.test(path.basename(given)) ? path.basename(path.dirname(given)) : path.basename(given).replace(/\.gpt2ts$/, ""));
  let server;
  try {
    server = await startServer({
      model, name, host: values.host, port: num(values.port, "port", 8000, { int: true, min: 0, max: 65535 }),
      maxQueue: num(values["max-queue"], "max-queue", 16, { int: true, min: 0 }),
      maxTokens: num(values["max-tokens"], "max-tokens", model.context, { int: true, min: 1, max: model.context }),
      maxBodyBytes: num(values["max-body"], "max-body", 1 << 20, { int: true, min: 1024 }),
      maxN: num(values["max-n"], "max-n", 8, { int: true, min: 1, max: 64 }),
      seed: randomSeed(),
      log: values.quiet ? undefined : (l) => process.stderr.write(`${new Date().toISOString()} ${l}\n`),
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "EADDRINUSE") throw new UsageError(`port ${values.port ?? 8000} is in use; pick another with --port (0: any free port)`);
    if (err.code === "EADDRNOTAVAIL" || err.code === "ENOTFOUND") throw new UsageError(`--host ${values.host}: not an address of this machine`);
    throw e;
  }
  const chat = model.config.vocabSize >= CHAT_VOCAB_SIZE;
  process.stdout.write(`serving ${name} at ${server.url}  (chat page; OpenAI API at ${server.url}v1: ` +
    `${chat ? "chat/completions, " : ""}completions, models)  Ctrl-C to stop\n`);
  if (!chat) process.stdout.write("this model has no chat tokens: /v1/chat/completions answers 400 (fine-tune it with gpt2 sft)\n");
  await new Promise<void>((resolve) => {
    const stop = () => { void server.close().then(resolve); };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}
