// GPT-2's special tokens and the decoding around them, with no tokenizer library attached: bpe.ts (tiktoken in Node)
// and the browser's tokenizer (tiktoken's WASM loaded by the page) share them.

export const EOT_TOKEN = 50256;
export const EOT_TEXT = "<|endoftext|>";

/** GPT-2's vocabulary: 50,000 merges, 256 bytes and <|endoftext|> */
export const VOCAB_SIZE = 50257;

/**
 * Chat tokens live in rows of GPT-2's padded vocabulary (50257..50303 are padding, never produced by the BPE), so a
 * base checkpoint gains them without resizing. They are produced only by the chat template (src/chat), never by
 * encoding text: a user who types "<|user|>" gets the ordinary tokens of those characters.
 */
export const CHAT_TOKENS = { system: 50257, user: 50258, assistant: 50259, end: 50260 } as const;
/** vocabulary of a model that knows the chat tokens */
export const CHAT_VOCAB_SIZE = 50261;
const SPECIAL_NAMES = new Map<number, string>([[EOT_TOKEN, EOT_TEXT], [CHAT_TOKENS.system, "<|system|>"],
  [CHAT_TOKENS.user, "<|user|>"], [CHAT_TOKENS.assistant, "<|assistant|>"], [CHAT_TOKENS.end, "<|end|>"]]);
/** the printed name of a special token, or undefined */
export function specialName(id: number): string | undefined { return SPECIAL_NAMES.get(id); }

/** The bytes of ids: runs of BPE ids through `ordinary` (tiktoken's decode), chat tokens by their names. */
export function decodeBytesWith(ordinary: (ids: Uint32Array) => Uint8Array, ids: ArrayLike<number>): Uint8Array {
  let plain = true;
  for (let i = 0; i < ids.length; i++) if (ids[i] >= VOCAB_SIZE) { plain = false; break; }
  if (plain) return ordinary(Uint32Array.from(ids as ArrayLike<number>));
  const parts: Uint8Array[] = [];
  let run: number[] = [];
  const flush = () => { if (run.length) parts.push(ordinary(Uint32Array.from(run))); run = []; };
  for (let i = 0; i < ids.length; i++) {
    const name = SPECIAL_NAMES.get(ids[i]);
    if (ids[i] < VOCAB_SIZE) run.push(ids[i]);
    else if (name !== undefined) { flush(); parts.push(new TextEncoder().encode(name)); }
    else throw new RangeError(`token id ${ids[i]} is outside the vocabulary [0, ${CHAT_VOCAB_SIZE})`);
  }
  flush();
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** Decodes a stream of ids into text pieces, holding back bytes of incomplete UTF-8 characters. */
export class ByteStreamDecoder {
  private readonly dec = new TextDecoder("utf-8");
  constructor(private readonly bytes: (ids: number[]) => Uint8Array) {}
  push(id: number): string { return this.dec.decode(this.bytes([id]), { stream: true }); }
  flush(): string { return this.dec.decode(); }
}
