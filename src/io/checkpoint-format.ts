// gpt2ts checkpoints: int32 magic, int32 version, u64 JSON header length, JSON header (config, sections, state),
// padding to 64 bytes, then float32 sections: params, and for training checkpoints AdamW m and v.
// Version 2 stores a CRC-32 of each section beside its offset and length, checked on every read: a flipped bit or a
// damaged block is reported with the file and section, never trained on. Version 1 files (no checksums) still load.
//
// The format from and to bytes, with no file system: io/checkpoint.ts writes and reads files with it (atomically, in
// chunks, from a backend's buffers), and the browser loads a File and makes a download with it.

import type { Backend, Tensor } from "../kernels/backend.js";
import { PRESETS, validateConfig, type GPT2Config } from "../model/config.js";
import { GPT2 } from "../model/gpt2.js";
import { crc32 } from "../util/crc32.js";
import { FormatError } from "../util/errors.js";
import { floatBytes, utf8, view, type ByteSource } from "./bytes.js";

export const CHECKPOINT_MAGIC = 20261126;
export const CHECKPOINT_VERSION = 2;

export interface CheckpointHeader {
  config: GPT2Config;
  /** section name -> [byte offset from file start, float count, CRC-32 of its bytes (version 2)] */
  sections: Record<string, [number, number, number?]>;
  /** training state (step, loader position, RNG, run config); opaque to io/ */
  state: Record<string, unknown>;
}

/** floats per chunk when copying sections between a backend and bytes (no second full copy in memory) */
export const CHUNK = 1 << 24;

/**
 * The bytes before the first section (magic, version, header length, JSON header, padding to 64) for sections of
 * these float counts and checksums, in this order; the header holds the sections' offsets, which depend on its own
 * length, so its length is settled in a few passes.
 */
export function checkpointHead(config: GPT2Config, state: Record<string, unknown>, parts: { name: string; count: number; crc: number }[]): Uint8Array {
  let headerLen = 0, json = "", first = 0;
  for (let pass = 0; pass < 3; pass++) {
    let at = first = Math.ceil((16 + headerLen) / 64) * 64;
    const sections: CheckpointHeader["sections"] = {};
    for (const p of parts) { sections[p.name] = [at, p.count, p.crc]; at += p.count * 4; }
    json = JSON.stringify({ config, sections, state });
    const len = new TextEncoder().encode(json).length;
    if (len === headerLen) break;
    headerLen = len;
  }
  const hb = new TextEncoder().encode(json);
  const head = new Uint8Array(first);
  const v = view(head);
  v.setInt32(0, CHECKPOINT_MAGIC, true);
  v.setInt32(4, CHECKPOINT_VERSION, true);
  v.setBigUint64(8, BigInt(hb.length), true);
  head.set(hb, 16);
  return head;
}

/** A whole checkpoint in memory (the browser's download): the head, then each section's bytes. */
export function encodeCheckpoint(config: GPT2Config, state: Record<string, unknown>, sections: [string, Float32Array][]): Uint8Array[] {
  const head = checkpointHead(config, state, sections.map(([name, a]) => ({ name, count: a.length, crc: crc32(floatBytes(a)) })));
  return [head, ...sections.map(([, a]) => floatBytes(a))];
}

export function readCheckpointHeaderFrom(src: ByteSource): CheckpointHeader {
  const file = src.name, size = src.size;
  if (size < 16) throw new FormatError(`${file} is truncated: expected 16 bytes at offset 0, got ${size}`);
  const pre = view(src.read(0, 16));
  const magic = pre.getInt32(0, true), version = pre.getInt32(4, true);
  if (magic !== CHECKPOINT_MAGIC) throw new FormatError(`bad magic in ${file}: ${magic} (expected ${CHECKPOINT_MAGIC}, a gpt2ts checkpoint)`);
  if (version !== 1 && version !== CHECKPOINT_VERSION) throw new FormatError(`${file}: checkpoint version ${version}, expected 1 or ${CHECKPOINT_VERSION} (made by a newer gpt2ts?)`);
  const len = Number(pre.getBigUint64(8, true));
  if (len > size - 16 || len > 1 << 30) throw new FormatError(`${file}: header length ${len} does not fit the file (${size} bytes); truncated or damaged`);
  let h: CheckpointHeader;
  try { h = JSON.parse(utf8(src.read(16, len))); } catch (e) {
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
}

/** A whole section into dst, checked against its CRC-32. */
export function readSection(src: ByteSource, h: CheckpointHeader, name: string, be: Backend, dst: Tensor): void {
  const sec = h.sections[name];
  if (!sec) throw new FormatError(`${src.name}: checkpoint has no ${name} section`);
  if (sec[1] !== dst.length) throw new FormatError(`${src.name}: section ${name} holds ${sec[1]} floats, expected ${dst.length}`);
  readSectionRange(src, h, name, be, dst, 0, 0, sec[1]);
}

/** n floats of a section from float `from` on, into dst at float `to`, in chunks (no full-size temporary). */
export function readSectionRange(src: ByteSource, h: CheckpointHeader, name: string, be: Backend, dst: Tensor,
  from: number, to: number, n: number): void {
  const file = src.name, sec = h.sections[name];
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
    src.readFloats(part, sec[0] + at * 4);
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

/** The weights of a checkpoint in a new model. */
export function loadCheckpointFrom(src: ByteSource, backend: Backend): { model: GPT2; header: CheckpointHeader } {
  const header = readCheckpointHeaderFrom(src);
  const model = new GPT2(header.config, backend);
  model.context = trainedContext(header.state, header.config.blockSize);
  readSection(src, header, "params", backend, model.params);
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
