// gpt2 sample --model PATH (--prompt TEXT | --prompt-ids 1,2,3) [...]: KV-cached sampling, streamed to stdout.

import { loadModel } from "../io/load.js";
import { EOT } from "../model/config.js";
import { generate } from "../model/generate.js";
import { decode, encode, StreamDecoder } from "../tokenizer/bpe.js";
import { Rng } from "../util/rng.js";
import { BACKEND_OPTIONS, backendFromFlags, num, parse, parseIds, UsageError, modelPath } from "./common.js";

export async function sampleCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    ...BACKEND_OPTIONS,
    model: { type: "string" }, prompt: { type: "string" }, "prompt-ids": { type: "string" },
    "max-new-tokens": { type: "string" }, temperature: { type: "string" }, "top-k": { type: "string" },
    "top-p": { type: "string" }, seed: { type: "string" }, "num-samples": { type: "string" }, json: { type: "boolean" },
    "no-stop": { type: "boolean" },
  });
  if (!values.model) throw new UsageError("--model PATH is required (an HF directory, an llm.c .bin or a gpt2ts checkpoint)");
  if ((values.prompt === undefined) === (values["prompt-ids"] === undefined)) throw new UsageError("give exactly one of --prompt TEXT or --prompt-ids 1,2,3");
  const maxNew = num(values["max-new-tokens"], "max-new-tokens", 64, { int: true, min: 1 });
  const temperature = num(values.temperature, "temperature", 1.0, { min: 0 });
  const topK = num(values["top-k"], "top-k", 0, { int: true, min: 0 });
  const topP = num(values["top-p"], "top-p", 1.0, { min: 0, max: 1 });
  const seed = num(values.seed, "seed", 1337, { int: true });
  const numSamples = num(values["num-samples"], "num-samples", 1, { int: true, min: 1 });
  const model = loadModel(await modelPath(values.model), backendFromFlags(values), "language-model");
  const V = model.config.vocabSize;
  const prompt = values.prompt !== undefined ? encode(values.prompt, { allowSpecial: true }) : parseIds(values["prompt-ids"]!, "--prompt-ids");
  if (prompt.length === 0) prompt.push(EOT);
  const bad = prompt.find((i) => i >= V);
  if (bad !== undefined) throw new UsageError(`prompt token ${bad} is outside the model's vocabulary [0, ${V})`);
  const rng = new Rng(seed);
  for (let s = 0; s < numSamples; s++) {
    const dec = new StreamDecoder();
    if (!values.json) process.stdout.write((numSamples > 1 ? `--- sample ${s + 1}\n` : "") + (values.prompt ?? decode(prompt)));
    const [ids] = generate(model, prompt, 1, rng, {
      maxNewTokens: maxNew, temperature, topK, topP, stopAtEot: !values["no-stop"],
      onToken: values.json ? undefined : (_b, tok) => process.stdout.write(dec.push(tok)),
    });
    if (values.json) process.stdout.write(JSON.stringify({ ids, text: decode(ids) }) + "\n");
    else process.stdout.write(dec.flush() + "\n");
  }
}
