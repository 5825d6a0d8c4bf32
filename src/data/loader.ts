// Batches of (B, T) inputs and targets from token shards, as llm.c's dataloader: the ranks of a data-parallel run
// read consecutive B*T+1 token windows of one group window of B*T*ranks tokens (rank r at r*B*T), so N ranks with
// batch B see exactly the tokens one process with batch N*B sees; the group moves to the next shard together and
// wraps at the end (a new epoch). Its position is exposed and restorable, so a resumed run sees exactly the batches it would have.
// With shuffling, every epoch visits the shards in a new order and the documents (EOT-led runs of tokens) inside
// each shard in a new order, both permutations seeded by (seed, epoch), so resume stays exact.

import * as fs from "node:fs";
import * as path from "node:path";
import { globSync } from "tinyglobby";
import { Rng } from "../util/rng.js";
import { FormatError } from "../io/files.js";
import { readShardHeader, readShardTokens, type ShardInfo } from "./shard.js";
import type { Batch, BatchPosition, BatchSource } from "./source.js";

export type { Batch } from "./source.js";

export interface LoaderPosition extends BatchPosition {
  shard: number;
  /** token offset of the next group window within the shard (the same on every rank; rank r reads at offset + r*B*T) */
  offset: number;
  epoch: number;
}

/** Expands a glob (or a plain path) into a sorted list of shard files; fails when nothing matches. */
export function findShards(pattern: string): string[] {
  if (fs.existsSync(pattern) && fs.statSync(pattern).isFile()) return [path.resolve(pattern)];
  const files = globSync(pattern, { absolute: true, onlyFiles: true }).sort();
  if (files.length === 0) throw new FormatError(`no shards match ${pattern}; run "gpt2 prepare" first`);
  return files;
}

export interface LoaderOptions {
  rank?: number;
  worldSize?: number;
  vocabSize?: number;
  /** the token that starts a document (shuffling moves whole documents): GPT-2's <|endoftext|> unless given */
  eot?: number;
  /** shuffle shards and documents every epoch (seeded); off = llm.c's sequential order */
  shuffle?: boolean;
  seed?: number;
}

export class DataLoader implements BatchSource {
  readonly shards: ShardInfo[];
  readonly rank: number;
  readonly worldSize: number;
  readonly vocabSize: number;
  readonly eot: number;
  readonly shuffle: boolean;
  readonly seed: number;
  private pos: LoaderPosition;
  private fd = -1;
  private fdShard = -1;
  /** shuffled mode: the current shard's tokens with its documents permuted, and which (epoch, shard) it is */
  private mixed: Uint16Array | null = null;
  private mixedKey = "";

  constructor(pattern: string | string[], readonly B: number, readonly T: number, opts: LoaderOptions = {}) {
    this.rank = opts.rank ?? 0;
    this.worldSize = opts.worldSize ?? 1;
    this.vocabSize = opts.vocabSize ?? 50257;
    this.eot = opts.eot ?? 50256;
    this.shuffle = opts.shuffle ?? false;
    this.seed = opts.seed ?? 1337;
    const worldSize = this.worldSize;
    const files = Array.isArray(pattern) ? pattern : findShards(pattern);
    this.shards = files.map(readShardHeader);
    const need = B * T * worldSize + 1;
    for (const s of this.shards) {
      if (s.tokens < need) throw new FormatError(`${s.file} holds ${s.tokens} tokens, fewer than one batch needs (B*T*ranks+1 = ${need})`);
    }
    this.pos = { shard: 0, offset: 0, epoch: 0 };
  }

  /** where this rank's window starts, relative to the group's */
  private get rankOffset(): number { return this.rank * this.B * this.T; }

  get position(): LoaderPosition { return { ...this.pos }; }

  set position(p: LoaderPosition) {
    if (!(p.shard >= 0 && p.shard < this.shards.length) || !(p.offset >= 0) || !(p.epoch >= 0) ||
      p.offset >= this.shardAt(p.shard, p.epoch).tokens) {
      throw new RangeError(`loader position ${JSON.stringify(p)} does not fit these ${this.shards.length} shards`);
    }
    this.pos = { shard: p.shard, offset: p.offset, epoch: p.epoch };
  }

  get epoch(): number { return this.pos.epoch; }

  get totalTokens(): number { return this.shards.reduce((a, s) => a + s.tokens, 0); }

  describe(): string { return `${this.totalTokens.toLocaleString("en-US")} tokens in ${this.shards.length} shard(s)`; }

  heldBatch(): Batch {
    const saved = this.pos;
    this.pos = { shard: 0, offset: 0, epoch: 0 };
    try { return this.next(); } finally { this.pos = saved; }
  }

  /** Batches one pass over the shards gives all ranks together. */
  get batchesPerEpoch(): number {
    const step = this.B * this.T * this.worldSize;
    return this.shards.reduce((a, s) => a + Math.floor((s.tokens - 1) / step), 0);
  }

  reset(): void { this.pos = { shard: 0, offset: 0, epoch: 0 }; }

  /** The shard visited at position `i` of an epoch. */
  shardAt(i: number, epoch: number): ShardInfo {
    if (!this.shuffle) return this.shards[i];
    return this.shards[new Rng(mix(this.seed, epoch, 0x5eed)).permutation(this.shards.length)[i]];
  }

  /** The current shard's tokens with its documents in this epoch's order (shuffled mode). */
  private shuffledShard(): Uint16Array {
    const key = `${this.pos.epoch}:${this.pos.shard}`;
    if (this.mixed && this.mixedKey === key) return this.mixed;
    const info = this.shardAt(this.pos.shard, this.pos.epoch);
    const tokens = readShardTokens(info, 0, info.tokens, this.vocabSize);
    // documents start at each <|endoftext|>; tokens before the first EOT form a document of their own
    const starts: number[] = [0];
    for (let i = 1; i < tokens.length; i++) if (tokens[i] === this.eot) starts.push(i);
    starts.push(tokens.length);
    const order = new Rng(mix(this.seed, this.pos.epoch, this.pos.shard + 1)).permutation(starts.length - 1);
    const out = new Uint16Array(tokens.length);
    let o = 0;
    for (const d of order) { out.set(tokens.subarray(starts[d], starts[d + 1]), o); o += starts[d + 1] - starts[d]; }
    this.mixed = out;
    this.mixedKey = key;
    return out;
  }

  next(): Batch {
    const { B, T } = this;
    let buf: Uint16Array;
    if (this.shuffle) {
      const at = this.pos.offset + this.rankOffset;
      buf = this.shuffledShard().subarray(at, at + B * T + 1);
    } else {
      const shard = this.shards[this.pos.shard];
      if (this.fdShard !== this.pos.shard) {
        if (this.fd >= 0) fs.closeSync(this.fd);
        this.fd = fs.openSync(shard.file, "r");
        this.fdShard = this.pos.shard;
      }
      buf = readShardTokens(shard, this.pos.offset + this.rankOffset, B * T + 1, this.vocabSize, this.fd);
    }
    const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
    for (let i = 0; i < B * T; i++) { inputs[i] = buf[i]; targets[i] = buf[i + 1]; }
    this.advance();
    return { inputs, targets, B, T };
  }

  private advance(): void {
    const group = this.B * this.T * this.worldSize;
    this.pos.offset += group;
    // the whole group's next window must fit, so all ranks change shard at the same step
    if (this.pos.offset + group + 1 > this.shardAt(this.pos.shard, this.pos.epoch).tokens) {
      this.pos.shard++;
      if (this.pos.shard >= this.shards.length) { this.pos.shard = 0; this.pos.epoch++; }
      this.pos.offset = 0;
    }
  }

  close(): void {
    this.mixed = null;
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    this.fdShard = -1;
  }
}

/** a 32-bit seed from (seed, epoch, salt) */
function mix(seed: number, epoch: number, salt: number): number {
  let h = (seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b) ^ Math.imul(salt, 0xc2b2ae35);
  return (h ^ (h >>> 13)) >>> 0;
}
