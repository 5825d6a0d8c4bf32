// Batches of (B, T) inputs and targets from token shards, as llm.c's dataloader: each rank of a data-parallel run
// reads its own slice of consecutive B*T+1 token windows, the loader advances across shards and wraps at the end
// (a new epoch). Its position is exposed and restorable, so a resumed run sees exactly the batches it would have.

import * as fs from "node:fs";
import * as path from "node:path";
import { globSync } from "tinyglobby";
import { FormatError } from "../io/files.js";
import { readShardHeader, readShardTokens, type ShardInfo } from "./shard.js";

export interface LoaderPosition {
  shard: number;
  /** token offset of this rank's next window within the shard */
  offset: number;
  epoch: number;
}

export interface Batch {
  inputs: Int32Array; // (B, T)
  targets: Int32Array; // (B, T)
}

/** Expands a glob (or a plain path) into a sorted list of shard files; fails when nothing matches. */
export function findShards(pattern: string): string[] {
  if (fs.existsSync(pattern) && fs.statSync(pattern).isFile()) return [path.resolve(pattern)];
  const files = globSync(pattern, { absolute: true, onlyFiles: true }).sort();
  if (files.length === 0) throw new FormatError(`no shards match ${pattern}; run "gpt2 prepare" first`);
  return files;
}

export class DataLoader {
  readonly shards: ShardInfo[];
  private pos: LoaderPosition;
  private fd = -1;
  private fdShard = -1;

  constructor(pattern: string | string[], readonly B: number, readonly T: number, readonly rank = 0,
    readonly worldSize = 1, readonly vocabSize = 50257) {
    const files = Array.isArray(pattern) ? pattern : findShards(pattern);
    this.shards = files.map(readShardHeader);
    const need = B * T * worldSize + 1;
    for (const s of this.shards) {
      if (s.tokens < need) throw new FormatError(`${s.file} holds ${s.tokens} tokens, fewer than one batch needs (B*T*ranks+1 = ${need})`);
    }
    this.pos = { shard: 0, offset: this.startOffset(), epoch: 0 };
  }

  private startOffset(): number { return this.rank * this.B * this.T; }

  get position(): LoaderPosition { return { ...this.pos }; }

  set position(p: LoaderPosition) {
    if (!(p.shard >= 0 && p.shard < this.shards.length) || p.offset < 0 || p.offset >= this.shards[p.shard].tokens) {
      throw new RangeError(`loader position ${JSON.stringify(p)} does not fit these ${this.shards.length} shards`);
    }
    this.pos = { ...p };
  }

  get totalTokens(): number { return this.shards.reduce((a, s) => a + s.tokens, 0); }

  /** Batches one pass over the shards gives all ranks together. */
  get batchesPerEpoch(): number {
    const step = this.B * this.T * this.worldSize;
    return this.shards.reduce((a, s) => a + Math.floor((s.tokens - 1) / step), 0);
  }

  reset(): void { this.pos = { shard: 0, offset: this.startOffset(), epoch: 0 }; }

  next(): Batch {
    const { B, T } = this;
    const shard = this.shards[this.pos.shard];
    if (this.fdShard !== this.pos.shard) {
      if (this.fd >= 0) fs.closeSync(this.fd);
      this.fd = fs.openSync(shard.file, "r");
      this.fdShard = this.pos.shard;
    }
    const buf = readShardTokens(shard, this.pos.offset, B * T + 1, this.vocabSize, this.fd);
    const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
    for (let i = 0; i < B * T; i++) { inputs[i] = buf[i]; targets[i] = buf[i + 1]; }
    this.advance();
    return { inputs, targets };
  }

  private advance(): void {
    const step = this.B * this.T * this.worldSize;
    this.pos.offset += step;
    if (this.pos.offset + this.B * this.T + 1 > this.shards[this.pos.shard].tokens) {
      this.pos.shard++;
      if (this.pos.shard >= this.shards.length) { this.pos.shard = 0; this.pos.epoch++; }
      this.pos.offset = this.startOffset();
    }
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    this.fdShard = -1;
  }
}
