// Preference pairs for reward models and DPO: JSONL rows {"prompt" | "messages", "chosen", "rejected"}, each answer
// rendered after the prompt by the chat template (or as plain text for a string prompt), one sequence per row of a
// batch: pair k is rows 2k (chosen) and 2k + 1 (rejected). Inputs are the whole sequence (a reward model reads the
// answer's closing <|end|>); targets mark the answer's tokens (DPO sums their log-probabilities). Shuffled per epoch,
// resumable, sliced across data-parallel ranks as the SFT rows are.

import * as fs from "node:fs";
import { ChatFormatError, parseJsonl, parseMessages, renderChat, renderText, type Message, type Rendered } from "../chat/template.js";
import { FormatError } from "../io/files.js";
import { CHAT_TOKENS } from "../tokenizer/bpe.js";
import { Rng } from "../util/rng.js";
import { findFiles } from "./sft.js";
import type { Batch, BatchPosition, BatchSource } from "./source.js";

export interface PairBatch extends Batch {
  /** pairs in the batch: rows 2k and 2k + 1 */
  pairs: number;
  /** per row, the flat index (b * T + t) of its last token: where a reward model reads its score */
  last: Int32Array;
  /** per row, the reference model's summed log-probability of the answer (DPO), when computed */
  ref: Float64Array | null;
}

/** One preference row: the prompt's rendering with each answer, and where it came from. */
export interface Pair {
  chosen: Rendered;
  rejected: Rendered;
  where: string;
}

/** An answer: a string, or a list of messages whose last is the assistant's (TRL's conversational format). */
function answerText(x: unknown, field: string, where: string): string {
  if (typeof x === "string") return x;
  if (Array.isArray(x) && x.length > 0) {
    const last = x[x.length - 1] as { role?: unknown; content?: unknown };
    if (last && last.role === "assistant" && typeof last.content === "string") return last.content;
  }
  throw new ChatFormatError(`${where}: "${field}" must be a string (or a list of messages ending with the assistant's)`);
}

/** Parses one row; identical or empty answers are refused (nothing to learn from them). */
export function parsePair(row: unknown, where: string): Pair {
  if (!row || typeof row !== "object" || Array.isArray(row)) throw new ChatFormatError(`${where}: expected an object with "prompt" or "messages", "chosen" and "rejected"`);
  const r = row as Record<string, unknown>;
  const chosen = answerText(r.chosen, "chosen", where), rejected = answerText(r.rejected, "rejected", where);
  if (chosen.trim() === "" || rejected.trim() === "") throw new ChatFormatError(`${where}: an empty "${chosen.trim() === "" ? "chosen" : "rejected"}" answer`);
  if (chosen === rejected) throw new ChatFormatError(`${where}: "chosen" and "rejected" are the same answer (nothing to prefer)`);
  if ("messages" in r) {
    const messages: Message[] = parseMessages(r.messages, where);
    if (messages.at(-1)!.role === "assistant") throw new ChatFormatError(`${where}: "messages" must end before the answer (with a user message)`);
    const render = (a: string): Rendered => {
      // only the final answer is compared (earlier assistant turns are context, the same in both)
      const r = renderChat([...messages, { role: "assistant", content: a }]);
      const start = r.ids.lastIndexOf(CHAT_TOKENS.assistant);
      r.trained.fill(0, 0, start + 1);
      return r;
    };
    return { chosen: render(chosen), rejected: render(rejected), where };
  }
  if (typeof r.prompt === "string") return { chosen: renderText(r.prompt, chosen), rejected: renderText(r.prompt, rejected), where };
  throw new ChatFormatError(`${where}: expected "prompt" (a string) or "messages" (the conversation before the answers)`);
}

export function readPairs(pattern: string): Pair[] {
  const out: Pair[] = [];
  for (const file of findFiles(pattern, "JSONL files")) {
    for (const { row, where } of parseJsonl(fs.readFileSync(file, "utf8"), file)) out.push(parsePair(row, where));
  }
  if (out.length === 0) throw new FormatError(`${pattern} holds no rows`);
  return out;
}

export interface PairOptions {
  /** pairs per batch (2B rows), and the longest sequence a row may have */
  B: number;
  T: number;
  tooLong?: "truncate" | "skip";
  shuffle?: boolean;
  seed?: number;
  rank?: number;
  worldSize?: number;
}

export interface PairPosition extends BatchPosition { index: number }

export class PairData implements BatchSource {
  readonly B: number;
  readonly T: number;
  readonly stats = { pairs: 0, truncated: 0, skipped: 0, chat: false };
  /** usable pairs: [chosen, rejected] as (ids, trained) */
  readonly rows: { ids: Int32Array; trained: Uint8Array }[][] = [];
  /** the reference model's answer log-probability per pair and answer (DPO), set once before training */
  ref: Float64Array | null = null;
  private readonly rank: number;
  private readonly worldSize: number;
  private readonly shuffle: boolean;
  private readonly seed: number;
  private pos: PairPosition = { epoch: 0, index: 0 };
  private order: Uint32Array | null = null;
  private orderEpoch = -1;

  constructor(pairs: Pair[], o: PairOptions, readonly name = "pairs") {
    this.B = o.B;
    this.T = o.T;
    this.rank = o.rank ?? 0;
    this.worldSize = o.worldSize ?? 1;
    this.shuffle = o.shuffle ?? true;
    this.seed = o.seed ?? 1337;
    for (const p of pairs) {
      const both = [p.chosen, p.rejected].map((r) => {
        if (r.ids.length <= o.T) return { ids: Int32Array.from(r.ids), trained: r.trained };
        return o.tooLong === "skip" ? null : { ids: Int32Array.from(r.ids.slice(0, o.T)), trained: r.trained.subarray(0, o.T) };
      });
      if (both.some((x) => x === null || !x.trained.some((t, i) => i > 0 && t === 1))) { this.stats.skipped++; continue; }
      if (p.chosen.ids.length > o.T || p.rejected.ids.length > o.T) this.stats.truncated++;
      if (p.chosen.ids.includes(CHAT_TOKENS.assistant)) this.stats.chat = true;
      this.rows.push(both as { ids: Int32Array; trained: Uint8Array }[]);
    }
    this.stats.pairs = this.rows.length;
    const need = this.B * this.worldSize;
    if (this.rows.length < need) {
      throw new FormatError(`${name}: ${this.rows.length} usable pair(s), fewer than one batch needs (B x ranks = ${need})` +
        `${this.stats.skipped ? `; ${this.stats.skipped} were too long for -t ${o.T} or had nothing to compare` : ""}`);
    }
  }

  static open(pattern: string, o: PairOptions): PairData {
    return new PairData(readPairs(pattern), o, pattern);
  }

  get position(): PairPosition { return { ...this.pos }; }
  set position(p: PairPosition) {
    if (!(Number.isInteger(p.epoch) && p.epoch >= 0 && Number.isInteger(p.index) && p.index >= 0 && p.index < this.rows.length)) {
      throw new RangeError(`pair position ${JSON.stringify(p)} does not fit ${this.rows.length} pairs`);
    }
    this.pos = { epoch: p.epoch, index: p.index };
  }
  get epoch(): number { return this.pos.epoch; }
  get batchesPerEpoch(): number { return Math.floor(this.rows.length / (this.B * this.worldSize)); }
  reset(): void { this.pos = { epoch: 0, index: 0 }; }

  describe(): string {
    const s = this.stats;
    return `${s.pairs.toLocaleString("en-US")} preference pairs${s.truncated ? `, ${s.truncated} truncated to ${this.T} tokens` : ""}${s.skipped ? `, ${s.skipped} skipped` : ""}`;
  }

  /** the pair at position i of an epoch's order */
  private pairAt(epoch: number, i: number): number {
    if (!this.shuffle) return i;
    if (this.orderEpoch !== epoch) {
      this.order = new Rng((this.seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0).permutation(this.rows.length);
      this.orderEpoch = epoch;
    }
    return this.order![i];
  }

  /** a batch of the given pairs (indices into rows) */
  batchOf(pairIds: number[]): PairBatch {
    const B = 2 * pairIds.length;
    const seqs = pairIds.flatMap((k) => this.rows[k]);
    let T = 1;
    for (const r of seqs) T = Math.max(T, r.ids.length);
    const inputs = new Int32Array(B * T).fill(50256), targets = new Int32Array(B * T).fill(-1), last = new Int32Array(B);
    seqs.forEach((r, b) => {
      for (let t = 0; t < r.ids.length; t++) {
        inputs[b * T + t] = r.ids[t];
        if (t + 1 < r.ids.length && r.trained[t + 1]) targets[b * T + t] = r.ids[t + 1];
      }
      last[b] = b * T + r.ids.length - 1;
    });
    const ref = this.ref ? Float64Array.from(pairIds.flatMap((k) => [this.ref![2 * k], this.ref![2 * k + 1]])) : null;
    return { inputs, targets, B, T, pairs: pairIds.length, last, ref };
  }

  next(): PairBatch {
    const ids = Array.from({ length: this.B }, (_, b) => this.pairAt(this.pos.epoch, this.pos.index + this.rank * this.B + b));
    const group = this.B * this.worldSize;
    this.pos.index += group;
    if (this.pos.index + group > this.rows.length) this.pos = { epoch: this.pos.epoch + 1, index: 0 };
    return this.batchOf(ids);
  }

  heldBatch(): PairBatch { return this.batchOf(Array.from({ length: this.B }, (_, b) => b)); }
  close(): void { this.order = null; }
}
