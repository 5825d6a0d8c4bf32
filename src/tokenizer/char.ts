// The Tokenizer interface, and the character-level vocabulary (gpt2 prepare --tokenizer char, as nanoGPT's
// shakespeare_char), with no file system or tokenizer library: Node (tokenizer.ts) and the browser share them.

import { FormatError } from "../util/errors.js";
import { EOT_TEXT } from "./special.js";

/** A character vocabulary as stored: its characters (code points) in id order; <|endoftext|> is the id after them. */
export interface CharTokenizerSpec {
  type: "char";
  chars: string;
}

export interface Tokenizer {
  readonly kind: "gpt2" | "char";
  /** ids in use: 50257 for GPT-2, characters + 1 for a character vocabulary */
  readonly vocabSize: number;
  /** <|endoftext|>: before every document, and where a sample stops */
  readonly eot: number;
  /** text to ids; `allowSpecial`: the text <|endoftext|> is the EOT token */
  encode(text: string, opts?: { allowSpecial?: boolean }): number[];
  decode(ids: ArrayLike<number>): string;
  /** a decoder fed one id at a time, for streaming (BPE ids may end inside a UTF-8 character) */
  decoder(): { push(id: number): string; flush(): string };
  /** what a checkpoint records (null: GPT-2's, the default) */
  readonly spec: CharTokenizerSpec | null;
}

export class CharTokenizer implements Tokenizer {
  readonly kind = "char" as const;
  readonly chars: string[];
  readonly vocabSize: number;
  readonly eot: number;
  private readonly ids: Map<string, number>;

  constructor(chars: Iterable<string>) {
    this.chars = [...chars];
    this.ids = new Map(this.chars.map((c, i) => [c, i]));
    if (this.ids.size !== this.chars.length) throw new FormatError("a character vocabulary lists a character twice");
    this.eot = this.chars.length;
    this.vocabSize = this.chars.length + 1;
  }

  /** the vocabulary of a text: its distinct code points, sorted (nanoGPT's shakespeare_char: 65 for Tiny Shakespeare) */
  static fromText(texts: Iterable<string>): CharTokenizer {
    const set = new Set<string>();
    for (const t of texts) for (const c of t) set.add(c);
    return new CharTokenizer([...set].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!));
  }

  get spec(): CharTokenizerSpec { return { type: "char", chars: this.chars.join("") }; }

  encode(text: string, opts: { allowSpecial?: boolean } = {}): number[] {
    const out: number[] = [];
    const parts = opts.allowSpecial ? text.split(EOT_TEXT) : [text];
    parts.forEach((part, k) => {
      if (k > 0) out.push(this.eot);
      for (const c of part) {
        const id = this.ids.get(c);
        if (id === undefined) {
          throw new FormatError(`the character ${JSON.stringify(c)} (U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}) is not in ` +
            `this model's ${this.chars.length}-character vocabulary`);
        }
        out.push(id);
      }
    });
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    let s = "";
    for (let i = 0; i < ids.length; i++) s += this.piece(ids[i]);
    return s;
  }

  decoder(): { push(id: number): string; flush(): string } {
    return { push: (id) => this.piece(id), flush: () => "" };
  }

  private piece(id: number): string {
    if (id === this.eot) return EOT_TEXT;
    const c = this.chars[id];
    if (c === undefined) throw new FormatError(`token id ${id} is outside this character vocabulary [0, ${this.vocabSize})`);
    return c;
  }
}

/**
 * The character vocabulary of a recorded spec, or null for GPT-2's BPE (a spec of null or absent); `where` names the
 * file in errors.
 */
export function charTokenizerFromSpec(spec: unknown, where: string): CharTokenizer | null {
  if (spec === undefined || spec === null) return null;
  const s = spec as Partial<CharTokenizerSpec>;
  if (s.type !== "char" || typeof s.chars !== "string" || s.chars.length === 0) {
    throw new FormatError(`${where}: tokenizer must be {"type": "char", "chars": "..."}, got ${JSON.stringify(spec).slice(0, 80)}`);
  }
  try {
    return new CharTokenizer(s.chars);
  } catch (e) {
    throw new FormatError(`${where}: ${(e as Error).message}`);
  }
}
