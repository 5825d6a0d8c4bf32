// Supervised fine-tuning data: JSONL rows (conversations or prompt/completion pairs) rendered by the chat template,
// one row per sequence of a batch, padded. Rows never attend to each other: each starts at position 0 of its own
// sequence, and causal attention never looks at the padding after it. A batch is as long as its longest row (at
// most T), so short conversations cost little. Every epoch visits the rows in a new seeded order; the position is
// saved in checkpoints, so resume is exact. Data-parallel ranks take consecutive slices of B rows of each group of
// B x ranks rows, as the shard loader does.

import * as fs from "node:fs";
import { globSync } from "tinyglobby";
import { parseExample, parseJsonl, renderExample, type Example } from "../chat/template.js";
import { FormatError } from "../io/files.js";
import { Rng } from "../util/rng.js";
import type { Batch, BatchPosition, BatchSource } from "./source.js";

export interface SftOptions {
  /** rows per batch, and the longest sequence a row may have (tokens beyond T + 1 are cut or the row skipped) */
  B: number;
  T: number;
  /** what to do with a row longer than T + 1 tokens: keep its first T + 1 tokens, or leave it out */
  tooLong?: "truncate" | "skip";
  shuffle?: boolean;
  seed?: number;
  rank?: number;
  worldSize?: number;
}

export interface SftStats {
  rows: number;
  /** rows cut to T + 1 tokens (their trained tokens past the cut are lost) */
  truncated: number;
  /** rows left out: too long with tooLong = skip, or nothing left to train on after the cut */
  skipped: number;
  tokens: number;
  trainedTokens: number;
  /** some row is a conversation (the model needs the chat tokens) */
  chat: boolean;
}

export interface SftPosition extends BatchPosition {
  /** index into this epoch's row order of the next group of B x ranks rows */
  index: number;
}

/** Files named by a path or a glob, sorted; fails when nothing matches. */
export function findFiles(pattern: string, what: string): string[] {
  if (fs.existsSync(pattern) && fs.statSync(pattern).isFile()) return [pattern];
  const files = globSync(pattern, { absolute: true, onlyFiles: true }).sort();
  if (files.length === 0) throw new FormatError(`no ${what} match ${pattern}`);
  return files;
}

/** Reads every row of JSONL files as examples; the first bad row fails with file:line and what is wrong. */
export function readExamples(pattern: string, opts: { needAssistant?: boolean } = { needAssistant: true }): { example: Example; where: string; row: Record<string, unknown> }[] {
  const out: { example: Example; where: string; row: Record<string, unknown> }[] = [];
  for (const file of findFiles(pattern, "JSONL files")) {
    for (const { row, where } of parseJsonl(fs.readFileSync(file, "utf8"), file)) {
      out.push({ example: parseExample(row, where, opts), where, row: row as Record<string, unknown> });
    }
  }
  if (out.length === 0) throw new FormatError(`${pattern} holds no rows`);
  return out;
}

export class SftData implements BatchSource {
  readonly B: number;
  readonly T: number;
  readonly stats: SftStats;
  private readonly rows: { ids: Int32Array; trained: Uint8Array }[] = [];
  private readonly rank: number;
  private readonly worldSize: number;
  private readonly shuffle: boolean;
  private readonly seed: number;
  private pos: SftPosition = { epoch: 0, index: 0 };
  private order: Uint32Array | null = null;
  private orderEpoch = -1;

  constructor(examples: Example[], o: SftOptions, readonly name = "SFT data") {
    this.B = o.B;
    this.T = o.T;
    this.rank = o.rank ?? 0;
    this.worldSize = o.worldSize ?? 1;
    this.shuffle = o.shuffle ?? true;
    this.seed = o.seed ?? 1337;
    const stats: SftStats = { rows: 0, truncated: 0, skipped: 0, tokens: 0, trainedTokens: 0, chat: false };
    for (const ex of examples) {
      if (ex.kind === "chat") stats.chat = true;
      let { ids, trained } = renderExample(ex);
      if (ids.length > o.T + 1) {
        if (o.tooLong === "skip") { stats.skipped++; continue; }
        ids = ids.slice(0, o.T + 1);
        trained = trained.subarray(0, o.T + 1);
        stats.truncated++;
      }
      let n = 0;
      for (let i = 1; i < trained.length; i++) n += trained[i];
      if (n === 0) { stats.skipped++; continue; }
      this.rows.push({ ids: Int32Array.from(ids), trained });
      stats.rows++;
      stats.tokens += ids.length;
      stats.trainedTokens += n;
    }
    this.stats = stats;
    const need = this.B * this.worldSize;
    if (this.rows.length < need) {
      throw new FormatError(`${name}: ${this.rows.length} usable row(s), fewer than one batch needs (B x ranks = ${need})` +
        `${stats.skipped ? `; ${stats.skipped} row(s) were too long for -t ${o.T} or had nothing to train on` : ""}`);
    }
  }

  /** Reads JSONL files (a path or a glob). */
  static open(pattern: string, o: SftOptions): SftData {
    return new SftData(readExamples(pattern).map((r) => r.example), o, pattern);
  }

  get position(): SftPosition { return { ...this.pos }; }

  set position(p: SftPosition) {
    if (!(Number.isInteger(p.epoch) && p.epoch >= 0 && Number.isInteger(p.index) && p.index >= 0 && p.index < this.rows.length)) {
      throw new RangeError(`SFT position ${JSON.stringify(p)} does not fit ${this.rows.length} rows`);
    }
    this.pos = { epoch: p.epoch, index: p.index };
  }

  get epoch(): number { return this.pos.epoch; }

  get batchesPerEpoch(): number { return Math.floor(this.rows.length / (this.B * this.worldSize)); }

  reset(): void { this.pos = { epoch: 0, index: 0 }; }

  describe(): string {
    const s = this.stats;
    return `${s.rows.toLocaleString("en-US")} rows (${s.trainedTokens.toLocaleString("en-US")} of ${s.tokens.toLocaleString("en-US")} tokens trained on)` +
      `${s.truncated ? `, ${s.truncated} truncated to ${this.T + 1} tokens` : ""}${s.skipped ? `, ${s.skipped} skipped` : ""}`;
  }

  /** the row at position i of an epoch's order */
  private rowAt(epoch: number, i: number): { ids: Int32Array; trained: Uint8Array } {
    if (!this.shuffle) return this.rows[i];
    if (this.orderEpoch !== epoch) {
      this.order = new Rng((this.seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0).permutation(this.rows.length);
      this.orderEpoch = epoch;
    }
    return this.rows[this.order![i]];
  }

  private batchAt(epoch: number, index: number): Batch {
    const { B } = this;
    const rows = Array.from({ length: B }, (_, b) => this.rowAt(epoch, index + this.rank * B + b));
    let T = 1;
    for (const r of rows) T = Math.max(T, r.ids.length - 1);
    // padding: <|endoftext|> inputs (any valid id; causal attention never lets a real token see them), no targets
    const inputs = new Int32Array(B * T).fill(50256), targets = new Int32Array(B * T).fill(-1);
    rows.forEach((r, b) => {
      for (let t = 0; t + 1 < r.ids.length; t++) {
        inputs[b * T + t] = r.ids[t];
        if (r.trained[t + 1]) targets[b * T + t] = r.ids[t + 1];
      }
    });
    return { inputs, targets, B, T };
  }

  next(): Batch {
    const batch = this.batchAt(this.pos.epoch, this.pos.index);
    const group = this.B * this.worldSize;
    this.pos.index += group;
    if (this.pos.index + group > this.rows.length) this.pos = { epoch: this.pos.epoch + 1, index: 0 };
    return batch;
  }

  heldBatch(): Batch { return this.batchAt(0, 0); }

  close(): void { this.order = null; }
}
