// safetensors files on disk: read through SafetensorsReader (./safetensors-reader.ts, shared with the browser),
// written atomically.

import { fileSource, FormatError, floatBytes, requireFile, writeFileAtomic } from "./files.js";
import { SafetensorsReader } from "./safetensors-reader.js";

export { SafetensorsReader, type TensorInfo } from "./safetensors-reader.js";

/** A safetensors file on disk, read by range (close() when done). */
export class SafetensorsFile extends SafetensorsReader {
  constructor(file: string) {
    requireFile(file, "safetensors file");
    super(fileSource(file));
  }
  close(): void { (this.src as ReturnType<typeof fileSource>).close(); }
}

/** Writes F32 tensors in the given order (header JSON compact, padded with spaces to 8 bytes), atomically. */
export function writeSafetensors(file: string, tensors: [string, number[], Float32Array][],
  metadata: Record<string, string> = { format: "pt" }): void {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const [name, shape, data] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== data.length) throw new FormatError(`tensor ${name}: shape ${JSON.stringify(shape)} needs ${n} values, got ${data.length}`);
    header[name] = { dtype: "F32", shape, data_offsets: [off, off + 4 * n] };
    off += 4 * n;
  }
  header.__metadata__ = metadata;
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const hb = Buffer.from(json, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  writeFileAtomic(file, (append) => {
    append(len);
    append(hb);
    for (const [, , data] of tensors) append(floatBytes(data));
  });
}
