// gpt2ts checkpoints: int32 magic, int32 version, u64 JSON header length, JSON header (config, sections, state),
// padding to 64 bytes, then float32 sections: params, and for training checkpoints AdamW m and v.
// Written atomically (temp file + rename); read section by section into preallocated backend buffers.
// Version 2 stores a CRC-32 of each section beside its offset and length, checked on every read: a flipped bit or a
// damaged block is reported with the file and section, never trained on. Version 1 files (no checksums) still load.

import * as fs from "node:fs";
import type { Backend, Tensor } from "../kernels/backend.js";
import { PRESETS, sameShape, validateConfig, describeConfig, type GPT2Config } from "../model/config.js";
import { GPT2 } from "../model/gpt2.js";
import { crc32 } from "../util/crc32.js";
import { FormatError, floatBytes, readExact, readFloatsInto, requireFile, writeFileAtomicAsync } from "./files.js";

export const CHECKPOINT_MAGIC = 20261126;
export const CHECKPOINT_VERSION = 2;

export interface CheckpointHeader {
  config: GPT2Config;
  /** section name -> [byte offset from file start, float count, CRC-32 of its bytes (version 2)] */
  sections: Record<string, [number, number, number?]>;
  /** training state (step, loader position, RNG, run config); opaque to io/ */
  state: Record<string, unknown>;
}

export interface OptimizerBuffers { m: Tensor; v: Tensor }

/**
 * Writes a checkpoint of the model (and AdamW's state), reading the backend's buffers asynchronously (a WebGPU
 * backend can read no other way; a GPU meanwhile goes on with queued work).
 */
export async function saveCheckpoint(file: string, model: GPT2, state: Record<string, unknown> = {}, opt?: OptimizerBuffers): Promise<void> {
  const parts: [string, Tensor][] = [["params", model.params]];
  if (opt) parts.push(["adam_m", opt.m], ["adam_v", opt.v]);
  await writeSections(file, model.config, state, parts, model.backend);
}

/**
 * One rank's share of the AdamW state under ZeRO-1: m and v for parameters [lo, hi) of the flat buffer.
 * The main checkpoint (params, run state) names these files; readOptimizerRange reads them back for any sharding.
 */
export async function saveOptimizerShard(file: string, model: GPT2, lo: number, hi: number, opt: OptimizerBuffers): Promise<void> {
  await writeSections(file, model.config, { optimizerShard: { lo, hi, total: model.layout.total } },
    [["adam_m", opt.m], ["adam_v", opt.v]], model.backend);
}

/** floats per chunk when copying sections between the backend and the file (no second full copy in memory) */
const CHUNK = 1 << 24;

async function writeSections(file: string, config: GPT2Config, state: Record<string, unknown>, parts: [string, Tensor][], be: Backend): Promise<void> {
  // the header names every section's checksum, so the sections are read (and summed) once before the header is
  // written, and once more while writing: that costs a second pass over the bytes, never a second copy of them
  const sums: number[] = [];
  for (const [, t] of parts) {
    let c = 0;
    for (let off = 0; off < t.length; off += CHUNK) c = crc32(floatBytes(await be.readAsync(t, off, Math.min(CHUNK, t.length - off))), c);
    sums.push(c);
  }
  // the header holds the section offsets, which depend on the header's length: settle it in a few passes
  let headerLen = 0, sections: CheckpointHeader["sections"] = {}, json = "";
  for (let pass = 0; pass < 3; pass++) {
    let at = Math.ceil((16 + headerLen) / 64) * 64;
    sections = {};
    parts.forEach(([name, t], i) => { sections[name] = [at, t.length, sums[i]]; at += t.length * 4; });
    json = JSON.stringify({ config, sections, state });
    if (Buffer.byteLength(json) === headerLen) break;
    headerLen = Buffer.byteLength(json);
  }
  const hb = Buffer.from(json, "utf8");
  const pre = Buffer.alloc(16);
  pre.writeInt32LE(CHECKPOINT_MAGIC, 0);
  pre.writeInt32LE(CHECKPOINT_VERSION, 4);
  pre.writeBigUInt64LE(BigInt(hb.length), 8);
  const pad = Buffer.alloc(sections[parts[0][0]][0] - 16 - hb.length);
  await writeFileAtomicAsync(file, async (append) => {
    append(pre); append(hb); append(pad);
    for (const [i, [name, t]] of parts.entries()) {
      let c = 0;
      for (let off = 0; off < t.length; off += CHUNK) {
        const bytes = floatBytes(await be.readAsync(t, off, Math.min(CHUNK, t.length - off)));
        c = crc32(bytes, c);
        append(bytes);
      }
      // the buffer changed between the two passes only if something else wrote to it meanwhile: never write that
      if (c !== sums[i]) throw new FormatError(`${file}: section ${name} changed while it was being written`);
    }
  });
}

export function readCheckpointHeader(file: string): CheckpointHeader {
  requireFile(file, "checkpoint");
  const fd = fs.openSync(file, "r");
  try {
    const pre = readExact(fd, file, 16, 0);
    const magic = pre.readInt32LE(0), version = pre.readInt32LE(4);
    if (magic !== CHECKPOINT_MAGIC) throw new FormatError(`bad magic in ${file}: ${magic} (expected ${CHECKPOINT_MAGIC}, a gpt2ts checkpoint)`);
    if (version !== 1 && version !== CHECKPOINT_VERSION) throw new FormatError(`${file}: checkpoint version ${version}, expected 1 or ${CHECKPOINT_VERSION} (made by a newer gpt2ts?)`);
    const size = fs.fstatSync(fd).size;
    const len = Number(pre.readBigUInt64LE(8));
    if (len > size - 16 || len > 1 << 30) throw new FormatError(`${file}: header length ${len} does not fit the file (${size} bytes); truncated or damaged`);
    let h: CheckpointHeader;
    try { h = JSON.parse(readExact(fd, file, len, 16).toString("utf8")); } catch (e) {
      if (e instanceof FormatError) throw e;
      throw new FormatError(`${file}: checkpoint header is not valid JSON (${(e as Error).message})`);
    }
    if (!h || typeof h !== "object" || !h.config || typeof h.config !== "object" || !h.sections || typeof h.sections !== "object") {
      throw new FormatError(`${file}: checkpoint header lacks "config" or "sections"`);
    }
    h.state ??= {};
    validateConfig(h.config, `${file}: config`);
    for (const [name, sec] of Object.entries(h.sections)) {
      if (!Array.isArray(sec) || sec.length < 2 || !sec.slice(0, 2).every((x) => Number.isSafeInteger(x) && x! >= 0) ||
          (version >= 2 && !(Number.isInteger(sec[2]) && sec[2]! >= 0))) {
        throw new FormatError(`${file}: section ${name} must be [offset, count${version >= 2 ? ", crc32" : ""}], got ${JSON.stringify(sec)}`);
      }
      const [off, count] = sec;
      if (off + count * 4 > size) throw new FormatError(`${file}: section ${name} ends at byte ${off + count * 4} past the file end (${size}); truncated?`);
    }
    return h;
  } finally {
    fs.closeSync(fd);
  }
}

function readSection(file: string, fd: number, h: CheckpointHeader, name: string, be: Backend, dst: Tensor): void {
  const sec = h.sections[name];
  if (!sec) throw new FormatError(`${file}: checkpoint has no ${name} section`);
  if (sec[1] !== dst.length) throw new FormatError(`${file}: section ${name} holds ${sec[1]} floats, expected ${dst.length}`);
  readSectionRange(file, fd, h, name, be, dst, 0, 0, sec[1]);
}

/** n floats of a section from float `from` on, into dst at float `to`, in chunks (no full-size temporary). */
function readSectionRange(file: string, fd: number, h: CheckpointHeader, name: string, be: Backend, dst: Tensor,
  from: number, to: number, n: number): void {
  const sec = h.sections[name];
  if (!sec) throw new FormatError(`${file}: checkpoint has no ${name} section`);
  if (from + n > sec[1]) throw new FormatError(`${file}: section ${name} holds ${sec[1]} floats, needed ${from + n}`);
  // a whole section is checked against its CRC-32 as it is read (a part of one, under ZeRO-1 re-sharding, is
  // checked by reading the rest of the section too: only then is its checksum known)
  const whole = sec[2] !== undefined;
  const chunk = new Float32Array(Math.max(1, Math.min(whole ? sec[1] : n, CHUNK)));
  let c = 0;
  for (let off = 0; off < (whole ? sec[1] : n); off += chunk.length) {
    const at = whole ? off : from + off;
    const part = chunk.subarray(0, Math.min(chunk.length, (whole ? sec[1] : n) - off));
    readFloatsInto(fd, file, part, sec[0] + at * 4);
    if (whole) c = crc32(floatBytes(part), c);
    // the floats of [from, from + n) go to dst at `to`
    const a = Math.max(at, from), b = Math.min(at + part.length, from + n);
    if (a < b) be.write(dst, part.subarray(a - at, b - at), to + (a - from));
  }
  if (whole && c !== sec[2]) {
    throw new FormatError(`${file}: section ${name} fails its checksum (CRC-32 ${c.toString(16)}, stored ${sec[2]!.toString(16)}): ` +
      `the file is damaged; use another checkpoint`);
  }
}

/** Where AdamW state lives: the main checkpoint (all of it) or ZeRO-1 shard files, each with its [lo, hi). */
export interface OptimizerSource { file: string; lo: number; hi: number }

/**
 * Reads AdamW m and v for parameters [lo, hi) from the sources that cover them, whatever sharding wrote them:
 * so a run resumes with ZeRO on or off, and with a different number of ranks.
 */
export function readOptimizerRange(sources: OptimizerSource[], lo: number, hi: number, be: Backend, opt: OptimizerBuffers): void {
  let covered = 0;
  for (const src of sources) {
    const a = Math.max(lo, src.lo), b = Math.min(hi, src.hi);
    if (a >= b) continue;
    const h = readCheckpointHeader(src.file);
    const fd = fs.openSync(src.file, "r");
    try {
      for (const [name, dst] of [["adam_m", opt.m], ["adam_v", opt.v]] as const) {
        readSectionRange(src.file, fd, h, name, be, dst, a - src.lo, a - lo, b - a);
      }
    } finally {
      fs.closeSync(fd);
    }
    covered += b - a;
  }
  if (covered !== hi - lo) {
    throw new FormatError(`optimizer state for parameters [${lo}, ${hi}) is incomplete in ${sources.map((s) => s.file).join(", ")}`);
  }
}

/** Loads the weights of a checkpoint into a new model. */
export function loadCheckpoint(file: string, backend: Backend): { model: GPT2; header: CheckpointHeader } {
  const header = readCheckpointHeader(file);
  const model = new GPT2(header.config, backend);
  model.context = trainedContext(header.state, header.config.blockSize);
  const fd = fs.openSync(file, "r");
  try { readSection(file, fd, header, "params", backend, model.params); } finally { fs.closeSync(fd); }
  return { model, header };
}

/**
 * The context a checkpoint's weights were trained for: recorded as `context`; in checkpoints from before that, a
 * run from a preset (-e d12) trained -t positions, and one from a model kept that model's block.
 */
export function trainedContext(state: Record<string, unknown>, blockSize: number): number {
  const c = state.context;
  if (Number.isInteger(c) && (c as number) > 0) return Math.min(blockSize, c as number);
  const cfg = state.config as { init?: unknown; seqLen?: unknown } | undefined;
  if (cfg && typeof cfg.init === "string" && PRESETS[cfg.init] && Number.isInteger(cfg.seqLen) && (cfg.seqLen as number) > 0) {
    return Math.min(blockSize, cfg.seqLen as number);
  }
  return blockSize;
}

/** Restores params and optimizer state into an existing model (shape checked) for resuming a run. */
export function restoreCheckpoint(file: string, model: GPT2, opt?: OptimizerBuffers): CheckpointHeader {
  const header = readCheckpointHeader(file);
  if (!sameShape(header.config, model.config)) {
    throw new FormatError(`${file}: checkpoint model (${describeConfig(header.config)}) does not match this run (${describeConfig(model.config)})`);
  }
  const fd = fs.openSync(file, "r");
  try {
    readSection(file, fd, header, "params", model.backend, model.params);
    if (opt) {
      readSection(file, fd, header, "adam_m", model.backend, opt.m);
      readSection(file, fd, header, "adam_v", model.backend, opt.v);
    }
  } finally {
    fs.closeSync(fd);
  }
  return header;
}
