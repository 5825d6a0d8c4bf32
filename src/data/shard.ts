// llm.c token shards: a header of 256 int32 (magic 20240520, version 1, token count), then uint16 tokens.

import * as fs from "node:fs";
import { FormatError, readExact, writeFileAtomic } from "../io/files.js";

export const SHARD_MAGIC = 20240520;
export const SHARD_VERSION = 1;
export const SHARD_HEADER_BYTES = 256 * 4;

export interface ShardInfo {
  file: string;
  tokens: number;
}

/** Validates a shard's header against its size and returns its token count. */
export function readShardHeader(file: string): ShardInfo {
  if (!fs.existsSync(file)) throw new FormatError(`shard ${file} does not exist`);
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    if (size < SHARD_HEADER_BYTES) throw new FormatError(`${file} is truncated: ${size} bytes, less than the 1024-byte shard header; re-run "gpt2 prepare"`);
    const h = readExact(fd, file, SHARD_HEADER_BYTES, 0);
    const magic = h.readInt32LE(0), version = h.readInt32LE(4), tokens = h.readInt32LE(8);
    if (magic !== SHARD_MAGIC) throw new FormatError(`bad magic in ${file}: ${magic} (expected ${SHARD_MAGIC}, an llm.c token shard); re-run "gpt2 prepare"`);
    if (version !== SHARD_VERSION) throw new FormatError(`${file}: shard version ${version}, expected ${SHARD_VERSION}`);
    const want = SHARD_HEADER_BYTES + 2 * tokens;
    if (size !== want) {
      throw new FormatError(`${file}: header says ${tokens} tokens (${want} bytes) but the file has ${size} bytes; ${size < want ? "truncated" : "trailing data"}? re-run "gpt2 prepare"`);
    }
    return { file, tokens };
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads `count` tokens starting at token `offset`, checking ids against the vocabulary. */
export function readShardTokens(info: ShardInfo, offset: number, count: number, vocabSize = 50257, fd?: number): Uint16Array {
  if (offset < 0 || offset + count > info.tokens) {
    throw new RangeError(`${info.file}: tokens [${offset}, ${offset + count}) are outside the shard's ${info.tokens}`);
  }
  const own = fd === undefined;
  const f = own ? fs.openSync(info.file, "r") : fd;
  try {
    const buf = readExact(f, info.file, 2 * count, SHARD_HEADER_BYTES + 2 * offset);
    const out = new Uint16Array(count);
    for (let i = 0; i < count; i++) {
      const id = buf.readUInt16LE(2 * i);
      if (id >= vocabSize) throw new FormatError(`${info.file}: token ${offset + i} has id ${id}, outside the vocabulary [0, ${vocabSize})`);
      out[i] = id;
    }
    return out;
  } finally {
    if (own) fs.closeSync(f);
  }
}

export function writeShard(file: string, tokens: Uint16Array): void {
  const h = new Int32Array(256);
  h[0] = SHARD_MAGIC; h[1] = SHARD_VERSION; h[2] = tokens.length;
  writeFileAtomic(file, (append) => {
    append(new Uint8Array(h.buffer));
    append(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength));
  });
}
