// GPT-2 byte-level BPE through OpenAI's tiktoken (the WASM build on npm), so ids are token-for-token tiktoken's.
// <|endoftext|> (50256) is produced only when the caller allows it.
//
// Speed: BPE works on each piece of GPT-2's pre-tokenizer split on its own, so encodeOrdinary splits the text here
// (a hand-written scanner for the same pattern) and has tiktoken encode each distinct piece once; later occurrences
// come from a cache. Tests compare against tiktoken on whole texts.

import { createRequire } from "node:module";
import { get_encoding, Tiktoken } from "tiktoken";
import { ByteStreamDecoder, decodeBytesWith, EOT_TEXT, EOT_TOKEN } from "./special.js";

export { CHAT_TOKENS, CHAT_VOCAB_SIZE, EOT_TEXT, EOT_TOKEN, specialName, VOCAB_SIZE } from "./special.js";

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
  if (!opts.allowSpecial) return Array.from(encodeOrdinary(text));
  // tiktoken's encode(text, "all"): the text between special tokens is encoded as ordinary text
  const out: number[] = [];
  text.split(EOT_TEXT).forEach((part, i) => {
    if (i > 0) out.push(EOT_TOKEN);
    for (const id of encodeOrdinary(part)) out.push(id);
  });
  return out;
}

/**
 * Longest piece handed to BPE in one go. tiktoken's BPE takes time quadratic in a piece's length (100 KB of one
 * letter: 8 s, 1 MB: minutes), and minified code, base64 blobs or DNA in web data make such pieces. Longer pieces are
 * encoded in chunks of this many characters, so time stays linear; ids can then differ from tiktoken's only at the
 * chunk boundaries of such pieces (ordinary text has no piece near this long; any split still decodes to the text).
 */
export const MAX_PIECE_CHARS = 512;

// ---- fast path: GPT-2's pre-tokenizer in JS, a cache of pieces, tiktoken's BPE for the pieces not seen yet ----

/** character classes of tiktoken's gpt2 pat_str: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
const OTHER = 0, LETTER = 1, NUMBER = 2, SPACE = 3;
/** \s as tiktoken's Rust regex means it (Unicode White_Space; JS's \s has U+FEFF and lacks U+0085) */
const WHITE_SPACE = /[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]/u;
const IS_LETTER = /\p{L}/u, IS_NUMBER = /\p{N}/u;
const UNKNOWN = 255;
const bmpClass = new Uint8Array(0x10000).fill(UNKNOWN);

function classify(codePoint: number): number {
  const c = String.fromCodePoint(codePoint);
  return IS_LETTER.test(c) ? LETTER : IS_NUMBER.test(c) ? NUMBER : WHITE_SPACE.test(c) ? SPACE : OTHER;
}

/** class of the character at s[i] (a lone surrogate is OTHER, as in tiktoken after UTF-8 replacement) */
function classAt(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c < 0xd800 || c > 0xdfff) {
    let k = bmpClass[c];
    if (k === UNKNOWN) k = bmpClass[c] = classify(c);
    return k;
  }
  const cp = s.codePointAt(i)!;
  return cp > 0xffff ? classify(cp) : OTHER;
}

/** UTF-16 units of the character at s[i] */
function widthAt(s: string, i: number): number {
  const c = s.charCodeAt(i);
  return c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1;
}

/**
 * The end of the piece that starts at s[i], exactly as the gpt2 pattern matches (its alternatives in order).
 * Checked against tiktoken on whole texts by the tests (Shakespeare, random Unicode).
 */
function pieceEnd(s: string, i: number): number {
  const n = s.length, c = s.charCodeAt(i);
  if (c === 39 && i + 1 < n) { // 's 't 'm 'd 're 've 'll
    const d = s.charCodeAt(i + 1);
    if (d === 115 || d === 116 || d === 109 || d === 100) return i + 2;
    if (i + 2 < n) {
      const e = s.charCodeAt(i + 2);
      if ((d === 114 && e === 101) || (d === 118 && e === 101) || (d === 108 && e === 108)) return i + 3;
    }
  }
  let k = classAt(s, i);
  if (c === 32 && i + 1 < n) { // " ?" joins one space to a following letter, number or other run
    const next = classAt(s, i + 1);
    if (next !== SPACE) { k = next; i++; }
  }
  let j = i + widthAt(s, i);
  while (j < n && classAt(s, j) === k) j += widthAt(s, j);
  // \s+(?!\S): a run of white space followed by a non-space gives its last character to the next piece
  if (k === SPACE && j < n && j - i > 1) j--;
  return j;
}

/**
 * Pieces seen before are looked up in an open-addressing table keyed by the text itself (no substring is made for
 * a hit); new pieces are collected and encoded by tiktoken in one call per text, joined by NUL under a pattern
 * that splits only at NUL (BPE works on each piece alone, so the ids are the same; byte 0 never occurs inside
 * another character's UTF-8).
 */
class PieceCache {
  private static readonly BITS = 20;
  private static readonly MAX_ENTRIES = 1 << 19; // table at most half full; cleared (between texts) when reached
  private static readonly MAX_KEY_CHARS = 1 << 26; // and when the pieces kept add up to 64M characters (huge pieces)
  private slots = new Int32Array(1 << PieceCache.BITS).fill(-1);
  private keys: string[] = [];
  private keyChars = 0;
  private idsAt = new Uint32Array(1 << 12);
  private idsLen = new Uint32Array(1 << 12);
  private pool = new Uint32Array(1 << 16);
  private poolUsed = 0;
  private pending: number[] = [];
  private entries = new Int32Array(1 << 12);
  private nEntries = 0;
  private batchEncoder: Tiktoken | null = null;
  private separatorId = -1;

  encode(s: string): Uint32Array {
    if (this.keys.length >= PieceCache.MAX_ENTRIES || this.keyChars >= PieceCache.MAX_KEY_CHARS) this.clear();
    this.nEntries = 0;
    for (let i = 0; i < s.length;) {
      const j = pieceEnd(s, i);
      for (let a = i; a < j;) {
        let b = Math.min(j, a + MAX_PIECE_CHARS);
        if (b < j && (s.charCodeAt(b) & 0xfc00) === 0xdc00) b--; // never split a surrogate pair
        this.addPiece(s, a, b);
        a = b;
      }
      i = j;
    }
    if (this.pending.length) this.resolvePending();
    let total = 0;
    for (let q = 0; q < this.nEntries; q++) total += this.idsLen[this.entries[q]];
    const out = new Uint32Array(total);
    let o = 0;
    for (let q = 0; q < this.nEntries; q++) {
      const e = this.entries[q], at = this.idsAt[e], len = this.idsLen[e];
      if (len === 1) out[o++] = this.pool[at];
      else { out.set(this.pool.subarray(at, at + len), o); o += len; }
    }
    return out;
  }

  private addPiece(s: string, a: number, b: number): void {
    let h = 0x811c9dc5;
    for (let i = a; i < b; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    const mask = this.slots.length - 1;
    let slot = (h ^ (h >>> 15)) & mask;
    for (let e = this.slots[slot]; e >= 0; e = this.slots[slot]) {
      const key = this.keys[e];
      if (key.length === b - a) {
        let k = 0;
        while (k < key.length && key.charCodeAt(k) === s.charCodeAt(a + k)) k++;
        if (k === key.length) { this.pushEntry(e); return; }
      }
      slot = (slot + 1) & mask;
    }
    const e = this.keys.length;
    this.keys.push(s.slice(a, b));
    this.keyChars += b - a;
    if (e === this.idsAt.length) {
      this.idsAt = grow(this.idsAt, 2 * e);
      this.idsLen = grow(this.idsLen, 2 * e);
    }
    this.slots[slot] = e;
    this.pending.push(e);
    this.pushEntry(e);
  }

  private pushEntry(e: number): void {
    if (this.nEntries === this.entries.length) this.entries = grow(this.entries, 2 * this.nEntries);
    this.entries[this.nEntries++] = e;
  }

  private store(e: number, ids: Uint32Array): void {
    if (this.poolUsed + ids.length > this.pool.length) this.pool = grow(this.pool, 2 * this.pool.length + ids.length);
    this.pool.set(ids, this.poolUsed);
    this.idsAt[e] = this.poolUsed;
    this.idsLen[e] = ids.length;
    this.poolUsed += ids.length;
  }

  private resolvePending(): void {
    const batch: number[] = [];
    for (const e of this.pending) {
      if (this.keys[e].includes("\0")) this.store(e, encoding().encode_ordinary(this.keys[e]));
      else batch.push(e);
    }
    this.pending = [];
    if (batch.length === 0) return;
    if (!this.batchEncoder) {
      const gpt2 = createRequire(import.meta.url)("tiktoken/encoders/gpt2.json") as
        { bpe_ranks: string; special_tokens: Record<string, number> };
      this.batchEncoder = new Tiktoken(gpt2.bpe_ranks, gpt2.special_tokens, "[^\\x00]+|\\x00");
      this.separatorId = this.batchEncoder.encode_ordinary("\0")[0];
    }
    const ids = this.batchEncoder.encode_ordinary(batch.map((e) => this.keys[e]).join("\0"));
    let k = 0, from = 0;
    for (let i = 0; i <= ids.length; i++) {
      if (i === ids.length || ids[i] === this.separatorId) {
        this.store(batch[k++], ids.subarray(from, i));
        from = i + 1;
      }
    }
    if (k !== batch.length) throw new Error(`tokenizer: ${batch.length} new pieces came back as ${k}`);
  }

  private clear(): void {
    this.slots.fill(-1);
    this.keys = [];
    this.keyChars = 0;
    this.poolUsed = 0;
  }
}

function grow<T extends Uint32Array | Int32Array>(a: T, n: number): T {
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}

let pieceCache: PieceCache | null = null;

/** Ids as a typed array (no intermediate JS array), for data preparation. Equal to tiktoken's encode_ordinary. */
export function encodeOrdinary(text: string): Uint32Array {
  pieceCache ??= new PieceCache();
  return pieceCache.encode(text);
}

/** The bytes of ids; the chat tokens above GPT-2's vocabulary decode to their names ("<|user|>", ...). */
export function decodeBytes(ids: ArrayLike<number>): Uint8Array {
  return decodeBytesWith((run) => encoding().decode(run), ids);
}

export function decode(ids: ArrayLike<number>): string {
  return new TextDecoder("utf-8").decode(decodeBytes(ids));
}

/** Decodes a stream of GPT-2 ids into text pieces, holding back bytes of incomplete UTF-8 characters. */
export class StreamDecoder extends ByteStreamDecoder {
  constructor() { super(decodeBytes); }
}
