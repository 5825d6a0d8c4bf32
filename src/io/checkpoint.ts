// gpt2ts checkpoint files (the format: ./checkpoint-format.ts, shared with the browser): written atomically (temp
// file + rename) from a backend's buffers read back asynchronously, read section by section into preallocated
// backend buffers.

import type { Backend, Tensor } from "../kernels/backend.js";
import { sameShape, describeConfig, type GPT2Config } from "../model/config.js";
import type { GPT2 } from "../model/gpt2.js";
import { crc32 } from "../util/crc32.js";
import { fileSource, FormatError, floatBytes, requireFile, writeFileAtomicAsync } from "./files.js";
import { checkpointHead, CHUNK, loadCheckpointFrom, readCheckpointHeaderFrom, readSection, readSectionRange, type CheckpointHeader } from "./checkpoint-format.js";

export { CHECKPOINT_MAGIC, CHECKPOINT_VERSION, encodeCheckpoint, loadCheckpointFrom, readCheckpointHeaderFrom, trainedContext, type CheckpointHeader } from "./checkpoint-format.js";

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

async function writeSections(file: string, config: GPT2Config, state: Record<string, unknown>, parts: [string, Tensor][], be: Backend): Promise<void> {
  // the header names every section's checksum, so the sections are read (and summed) once before the header is
  // written, and once more while writing: that costs a second pass over the bytes, never a second copy of them
  const sums: number[] = [];
  for (const [, t] of parts) {
    let c = 0;
    for (let off = 0; off < t.length; off += CHUNK) c = crc32(floatBytes(await be.readAsync(t, off, Math.min(CHUNK, t.length - off))), c);
    sums.push(c);
  }
  const head = checkpointHead(config, state, parts.map(([name, t], i) => ({ name, count: t.length, crc: sums[i] })));
  await writeFileAtomicAsync(file, async (append) => {
    append(head);
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

/** Opens a checkpoint file for reading by range (close() when done). */
function openCheckpoint(file: string) {
  requireFile(file, "checkpoint");
  return fileSource(file);
}

export function readCheckpointHeader(file: string): CheckpointHeader {
  const src = openCheckpoint(file);
  try { return readCheckpointHeaderFrom(src); } finally { src.close(); }
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
    const bytes = openCheckpoint(src.file);
    try {
      const h = readCheckpointHeaderFrom(bytes);
      for (const [name, dst] of [["adam_m", opt.m], ["adam_v", opt.v]] as const) {
        readSectionRange(bytes, h, name, be, dst, a - src.lo, a - lo, b - a);
      }
    } finally {
      bytes.close();
    }
    covered += b - a;
  }
  if (covered !== hi - lo) {
    throw new FormatError(`optimizer state for parameters [${lo}, ${hi}) is incomplete in ${sources.map((s) => s.file).join(", ")}`);
  }
}

/** Loads the weights of a checkpoint into a new model. */
export function loadCheckpoint(file: string, backend: Backend): { model: GPT2; header: CheckpointHeader } {
  const src = openCheckpoint(file);
  try { return loadCheckpointFrom(src, backend); } finally { src.close(); }
}

/** Restores params and optimizer state into an existing model (shape checked) for resuming a run. */
export function restoreCheckpoint(file: string, model: GPT2, opt?: OptimizerBuffers): CheckpointHeader {
  const src = openCheckpoint(file);
  try {
    const header = readCheckpointHeaderFrom(src);
    if (!sameShape(header.config, model.config)) {
      throw new FormatError(`${file}: checkpoint model (${describeConfig(header.config)}) does not match this run (${describeConfig(model.config)})`);
    }
    readSection(src, header, "params", model.backend, model.params);
    if (opt) {
      readSection(src, header, "adam_m", model.backend, opt.m);
      readSection(src, header, "adam_v", model.backend, opt.v);
    }
    return header;
  } finally {
    src.close();
  }
}
