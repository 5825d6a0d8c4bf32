// gpt2 pull NAME [--revision R]: a GPT-2 from the Hugging Face hub into the cache (gpt2, gpt2-medium, gpt2-large,
// gpt2-xl or ORG/REPO); -e NAME and --model NAME then use it (and pull it themselves on first use).

import { GPT2_MODELS, hubRepo, pull } from "../io/hub.js";
import { hubOptions, parse, UsageError, commandHelp } from "./common.js";

export const help = commandHelp({
  usage: "gpt2 pull gpt2|gpt2-medium|gpt2-large|gpt2-xl|ORG/REPO [--revision R]",
  about: "Pretrained GPT-2 weights from the Hugging Face hub into the cache's models/ (GPT2_CACHE, default ~/.cache/gpt2ts), each file checked " +
    "against the hub's hashes, resumable. HF_ENDPOINT points at a mirror, HF_TOKEN opens gated repositories. --model NAME and -e NAME pull on first use.",
  flags: { revision: { type: "string", arg: "R", help: "a branch, tag or commit", shown: "main" } },
});

export async function pullCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, help.flags, 1);
  const name = positionals[0];
  if (!name) throw new UsageError(`usage: gpt2 pull NAME [--revision R]   (NAME: ${Object.keys(GPT2_MODELS).join(", ")} or ORG/REPO)`);
  const repo = hubRepo(name);
  if (!repo) throw new UsageError(`"${name}" is not a model name: ${Object.keys(GPT2_MODELS).join(", ")} or ORG/REPO`);
  const dir = await pull(repo, { ...hubOptions(), revision: values.revision });
  process.stdout.write(`${repo} is in ${dir}\nuse it: gpt2 sample --model ${name} --prompt "..."   (or -e ${name} to fine-tune it)\n`);
}
