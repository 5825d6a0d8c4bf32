// What turns text into a model's token ids and back: GPT-2's BPE (every model by default), or a character-level
// vocabulary (gpt2 prepare --tokenizer char, as nanoGPT's shakespeare_char) that travels with the shards it was made
// for (NAME_tokenizer.json beside them) and with the checkpoints trained on them (their state's `tokenizer`).

import * as fs from "node:fs";
import * as path from "node:path";
import { FormatError } from "../util/errors.js";
import { decode, encode, EOT_TOKEN, StreamDecoder, VOCAB_SIZE } from "./bpe.js";
import { charTokenizerFromSpec, type Tokenizer } from "./char.js";

export { CharTokenizer, charTokenizerFromSpec, type CharTokenizerSpec, type Tokenizer } from "./char.js";

export const gpt2Tokenizer: Tokenizer = {
  kind: "gpt2", vocabSize: VOCAB_SIZE, eot: EOT_TOKEN, spec: null,
  encode: (text, opts) => encode(text, opts),
  decode: (ids) => decode(ids),
  decoder: () => new StreamDecoder(),
};

/** A tokenizer from its recorded spec (null or absent: GPT-2's); `where` names the file in errors. */
export function tokenizerFromSpec(spec: unknown, where: string): Tokenizer {
  return charTokenizerFromSpec(spec, where) ?? gpt2Tokenizer;
}

/** where prepare puts the vocabulary of character-level shards: DIR/NAME_tokenizer.json */
export function shardTokenizerPath(dir: string, name: string): string {
  return path.join(dir, `${name}_tokenizer.json`);
}

/**
 * The tokenizer of llm.c-format shards: NAME_tokenizer.json beside NAME_train_000001.bin (written by
 * gpt2 prepare --tokenizer char), else GPT-2's.
 */
export function shardTokenizer(shardFile: string): Tokenizer {
  const m = /^(.*)_(train|val)_\d+\.bin$/.exec(path.basename(shardFile));
  if (!m) return gpt2Tokenizer;
  const file = shardTokenizerPath(path.dirname(shardFile), m[1]);
  if (!fs.existsSync(file)) return gpt2Tokenizer;
  let spec: unknown;
  try { spec = JSON.parse(fs.readFileSync(file, "utf8")); } catch { throw new FormatError(`${file}: not valid JSON`); }
  return tokenizerFromSpec(spec, file);
}
