// gpt2 sample --model PATH (--prompt TEXT | --prompt-file F | --prompt-ids 1,2,3 | stdin) [...]: KV-cached sampling.

import { FormatError } from "../io/files.js";
import { modelTokenizer } from "../io/load.js";
import { generateAsync } from "../model/generate.js";
import { Rng } from "../util/rng.js";
import * as fs from "node:fs";
import { INFERENCE_OPTIONS, inferenceModel, modelPath, num, parse, parseIds, readStdin, SAMPLING_OPTIONS, UsageError, commandHelp } from "./common.js";

export const help = commandHelp({
  usage: "gpt2 sample --model PATH|NAME (--prompt TEXT | --prompt-file FILE | --prompt-ids 1,2,3 | prompt on stdin) [flags]",
  about: "KV-cached sampling from a language model, streamed to stdout (the prompt is printed first).",
  flags: {
    ...INFERENCE_OPTIONS,
    model: { type: "string", arg: "PATH|NAME", help: "an HF directory, an llm.c .bin, a gpt2ts checkpoint, or a name (gpt2, gpt2-medium, ..., ORG/REPO) pulled on first use" },
    prompt: { type: "string", arg: "TEXT", help: "the prompt (<|endoftext|> in it is the special token)" },
    "prompt-file": { type: "string", arg: "FILE", help: "read the prompt from a file" },
    "prompt-ids": { type: "string", arg: "1,2,3", help: "the prompt as token ids" },
    ...SAMPLING_OPTIONS,
    "max-new-tokens": { ...SAMPLING_OPTIONS["max-new-tokens"], shown: "64" },
    temperature: { ...SAMPLING_OPTIONS.temperature, shown: "1" },
    seed: { ...SAMPLING_OPTIONS.seed, shown: "1337" },
    "num-samples": { type: "string", arg: "N", help: "samples of the same prompt", shown: "1" },
    json: { type: "boolean", help: "one JSON object per sample: {\"ids\": [new ids], \"text\": \"...\"}" },
    "no-stop": { type: "boolean", help: "keep going past <|endoftext|>" },
  },
  more: "With no prompt flag, the prompt is read from stdin (when it is not a terminal); an empty prompt starts from <|endoftext|>.",
});

export async function sampleCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, help.flags);
  if (!values.model) throw new UsageError("--model PATH is required (an HF directory, an llm.c .bin, a gpt2ts checkpoint or a model name such as gpt2)");
  const given = [values.prompt, values["prompt-file"], values["prompt-ids"]].filter((x) => x !== undefined).length;
  if (given > 1) throw new UsageError("give one of --prompt TEXT, --prompt-file FILE or --prompt-ids 1,2,3");
  let text = values.prompt;
  if (values["prompt-file"] !== undefined) {
    if (!fs.existsSync(values["prompt-file"])) throw new UsageError(`prompt file ${values["prompt-file"]} does not exist`);
    text = fs.readFileSync(values["prompt-file"], "utf8");
  }
  if (given === 0) {
    if (process.stdin.isTTY) throw new UsageError("give a prompt: --prompt TEXT, --prompt-file FILE, --prompt-ids 1,2,3, or text on stdin");
    text = await readStdin();
  }
  const maxNew = num(values["max-new-tokens"], "max-new-tokens", 64, { int: true, min: 1 });
  const temperature = num(values.temperature, "temperature", 1.0, { min: 0 });
  const topK = num(values["top-k"], "top-k", 0, { int: true, min: 0 });
  const topP = num(values["top-p"], "top-p", 1.0, { min: 0, max: 1 });
  const seed = num(values.seed, "seed", 1337, { int: true });
  const numSamples = num(values["num-samples"], "num-samples", 1, { int: true, min: 1 });
  const file = await modelPath(values.model);
  const model = await inferenceModel(file, values, "language-model");
  // GPT-2's BPE, or the character vocabulary the model was trained with
  const tok = modelTokenizer(file);
  const V = model.config.vocabSize;
  let prompt: number[];
  try {
    prompt = text !== undefined ? tok.encode(text, { allowSpecial: true }) : parseIds(values["prompt-ids"]!, "--prompt-ids");
  } catch (e) {
    if (e instanceof FormatError) throw new UsageError(`the prompt: ${e.message}`);
    throw e;
  }
  if (prompt.length === 0) prompt.push(tok.eot);
  const bad = prompt.find((i) => i >= V);
  if (bad !== undefined) throw new UsageError(`prompt token ${bad} is outside the model's vocabulary [0, ${V})`);
  const rng = new Rng(seed);
  for (let s = 0; s < numSamples; s++) {
    const dec = tok.decoder();
    if (!values.json) process.stdout.write((numSamples > 1 ? `--- sample ${s + 1}\n` : "") + (text ?? tok.decode(prompt)));
    const [ids] = await generateAsync(model, prompt, 1, rng, {
      maxNewTokens: maxNew, temperature, topK, topP, stopAtEot: false, stopTokens: values["no-stop"] ? [] : [tok.eot],
      onToken: values.json ? undefined : (_b, tok) => process.stdout.write(dec.push(tok)),
    });
    if (values.json) process.stdout.write(JSON.stringify({ ids, text: tok.decode(ids) }) + "\n");
    else process.stdout.write(dec.flush() + "\n");
    // a model that ends at once (its first token is <|endoftext|>) would otherwise print nothing, silently
    if (ids.length === 0 && !values["no-stop"]) process.stderr.write(`(the model ended the text at once with <|endoftext|>; --no-stop goes on past it)\n`);
  }
}
