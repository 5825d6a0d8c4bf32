import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { get_encoding } from "tiktoken";
import { decode, encode, encodeOrdinary, EOT_TOKEN, MAX_PIECE_CHARS } from "../../src/tokenizer/bpe.js";
import { ROOT } from "../helpers.js";

// The reference is tiktoken itself, called on whole texts: our encoder splits the text in JS and caches pieces,
// so any difference in the pre-tokenizer split (Unicode classes, whitespace look-ahead) shows up here.
const tiktoken = get_encoding("gpt2");
const reference = (text: string): number[] => Array.from(tiktoken.encode_ordinary(text));

test("known GPT-2 ids (from OpenAI's published vocabulary)", () => {
  assert.deepEqual(encode("Hello world"), [15496, 995]);
  assert.deepEqual(encode("<|endoftext|>", { allowSpecial: true }), [EOT_TOKEN]);
  assert.notDeepEqual(encode("<|endoftext|>"), [EOT_TOKEN]); // plain text unless allowed
});

test("Tiny Shakespeare encodes token for token as tiktoken, and decodes back", () => {
  const text = fs.readFileSync(path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt"), "utf8");
  const ours = encodeOrdinary(text);
  assert.deepEqual(Array.from(ours), reference(text));
  assert.equal(decode(ours), text);
});

test("random Unicode strings encode as tiktoken (whitespace kinds, digits, marks, astral letters)", () => {
  const alphabet = [..." \t\n\r\u0000'sdtmlvre.,!?-_09aZé漢😀\u0085\u00A0\uFEFF\u2028\u3000\u200B\u0301Ⅻ²½٣𝟘\u1680\u180E"];
  let state = 20261126;
  const next = (n: number): number => { state = (Math.imul(state, 1103515245) + 12345) >>> 0; return state % n; };
  const codePoint = (): string => {
    for (;;) {
      const cp = next(0x30000);
      if (cp < 0xd800 || cp > 0xdfff) return String.fromCodePoint(cp);
    }
  };
  const texts: string[] = [];
  for (let i = 0; i < 20000; i++) {
    let t = "";
    for (let j = 1 + next(16); j > 0; j--) t += next(3) === 0 ? codePoint() : alphabet[next(alphabet.length)];
    texts.push(t);
  }
  for (const t of texts) assert.deepEqual(Array.from(encodeOrdinary(t)), reference(t), JSON.stringify(t));
  // and all of them at once, where pieces meet across the boundaries between texts
  const joined = texts.join("");
  assert.deepEqual(Array.from(encodeOrdinary(joined)), reference(joined));
});

test("empty and whitespace-only texts", () => {
  for (const t of ["", " ", "\n\n", "   \t ", "a  ", "  a"]) assert.deepEqual(Array.from(encodeOrdinary(t)), reference(t));
});

// tiktoken alone needs minutes for each of these (its BPE is quadratic in a piece's length): the timeout catches a
// return of that, with room for a slow machine (this is a hang guard, not a speed test)
test("1 MB without white space (one letter, random letters, digits, emoji) encodes and decodes back", { timeout: 120_000 }, () => {
  let state = 7;
  const letter = () => { state = (Math.imul(state, 1103515245) + 12345) >>> 0; return String.fromCharCode(97 + (state >>> 8) % 26); };
  let random = "";
  for (let i = 0; i < 1 << 20; i++) random += letter();
  for (const text of ["a".repeat(1 << 20), random, "7".repeat(1 << 20), "😀".repeat(1 << 19)]) {
    const ids = encodeOrdinary(text);
    assert.equal(decode(ids), text);
    assert.deepEqual(encode(text, { allowSpecial: true }), Array.from(ids));
  }
  // pieces up to MAX_PIECE_CHARS are tiktoken's exactly
  const edge = random.slice(0, MAX_PIECE_CHARS);
  assert.deepEqual(Array.from(encodeOrdinary(edge)), reference(edge));
});
