// gpt2 tokenize [--json] [--allow-special]: text on stdin -> ids;  gpt2 detokenize: ids on stdin -> text.

import { CHAT_VOCAB_SIZE, decode, encode } from "../tokenizer/bpe.js";
import { parse, parseIds, readStdin, UsageError } from "./common.js";

export async function tokenizeCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, { json: { type: "boolean" }, "allow-special": { type: "boolean" } });
  const ids = encode(await readStdin(), { allowSpecial: values["allow-special"] });
  process.stdout.write(values.json ? JSON.stringify(ids) + "\n" : ids.join(" ") + "\n");
}

export async function detokenizeCommand(argv: string[]): Promise<void> {
  parse(argv, {});
  const ids = parseIds(await readStdin(), "stdin");
  const bad = ids.find((i) => i >= CHAT_VOCAB_SIZE);
  if (bad !== undefined) throw new UsageError(`token id ${bad} is outside GPT-2's vocabulary with the chat tokens [0, ${CHAT_VOCAB_SIZE})`);
  process.stdout.write(decode(ids));
}
