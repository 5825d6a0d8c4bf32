// gpt2 convert IN OUT: between HF directories, llm.c .bin files and gpt2ts checkpoints (format from the path).

import { JsBackend } from "../kernels/js/backend.js";
import { formatForOutput, loadModel, modelIdentity, requireGpt2Tokenizer, saveModel, type ModelFormat } from "../io/load.js";
import { modelPath, parse, UsageError, commandHelp } from "./common.js";

export const help = commandHelp({
  usage: "gpt2 convert IN OUT [--to hf|llmc|gpt2ts]",
  about: "Between Hugging Face directories (with the tokenizer files HF tools expect), llm.c .bin files and gpt2ts checkpoints; bit-identical round trips.",
  flags: { to: { type: "string", arg: "hf|llmc|gpt2ts", help: "the output format", shown: "from OUT: a folder hf, .bin llmc, else gpt2ts" } },
});

export async function convertCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, help.flags, 2);
  if (positionals.length !== 2) throw new UsageError("usage: gpt2 convert IN OUT [--to hf|llmc|gpt2ts]");
  const [input, output] = positionals;
  const to = (values.to ?? formatForOutput(output)) as ModelFormat;
  if (!["hf", "llmc", "gpt2ts"].includes(to)) throw new UsageError(`--to expects hf, llmc or gpt2ts, got "${to}"`);
  // conversion moves bytes only: the reference backend's host buffers are all it needs
  const file = await modelPath(input);
  if (to !== "gpt2ts") requireGpt2Tokenizer(file, `the ${to === "hf" ? "Hugging Face" : "llm.c"} format (it has no place for another vocabulary)`);
  const model = await loadModel(file, new JsBackend());
  await saveModel(model, output, to, modelIdentity(file));
  process.stderr.write(`wrote ${output} (${to})\n`);
}
