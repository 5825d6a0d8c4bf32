// GPT-2 byte-level BPE through OpenAI's tiktoken (the WASM build on npm), so ids are token-for-token tiktoken's.
// <|endoftext|> (50256) is produced only when the caller allows it.

import { get_encoding, type Tiktoken } from "tiktoken";

export const EOT_TOKEN = 50256;
export const EOT_TEXT = "<|endoftext|>";

let shared: Tiktoken | null = null;

function encoding(): Tiktoken {
  if (!shared) shared = get_encoding("gpt2");
  return shared;
}

export interface EncodeOptions {
  /** treat the text "<|endoftext|>" as the special token 50256 (default: false, it is encoded as plain text) */
  allowSpecial?: boolean;
}

export function encode(text: string, opts: EncodeOptions = {}): number[] {
  const ids = opts.allowSpecial ? encoding().encode(text, "all") : encoding().encode_ordinary(text);
  return Array.from(ids);
}

/** Ids as a typed array (no intermediate JS array), for data preparation. */
export function encodeOrdinary(text: string): Uint32Array {
  return encoding().encode_ordinary(text);
}

export function decodeBytes(ids: ArrayLike<number>): Uint8Array {
  return encoding().decode(Uint32Array.from(ids as ArrayLike<number>));
}

export function decode(ids: ArrayLike<number>): string {
  return new TextDecoder("utf-8").decode(decodeBytes(ids));
}

/** Decodes a stream of ids into text pieces, holding back bytes of incomplete UTF-8 characters. */
export class StreamDecoder {
  private readonly dec = new TextDecoder("utf-8");
  push(id: number): string { return this.dec.decode(decodeBytes([id]), { stream: true }); }
  flush(): string { return this.dec.decode(); }
}

export const VOCAB_SIZE = 50257;
