// A model file's bytes, read by range: from a file descriptor in Node (io/files.ts: fileSource) or from memory (a
// browser's File or a fetched URL: memorySource). The formats' readers (safetensors, llm.c, gpt2ts checkpoints) take
// one, so the same parsing and the same checks run in Node and in the browser.

import { FormatError } from "../util/errors.js";

export interface ByteSource {
  /** the file's name, for messages */
  readonly name: string;
  readonly size: number;
  /** n bytes at offset (a short file is a FormatError naming it) */
  read(offset: number, n: number): Uint8Array;
  /** dst.length float32 values (little-endian) at offset, into dst */
  readFloats(dst: Float32Array, offset: number): void;
}

export function memorySource(name: string, bytes: Uint8Array): ByteSource {
  const check = (offset: number, n: number) => {
    if (offset < 0 || offset + n > bytes.byteLength) {
      throw new FormatError(`${name} is truncated: expected ${n} bytes at offset ${offset}, got ${Math.max(0, Math.min(n, bytes.byteLength - offset))}`);
    }
  };
  return {
    name, size: bytes.byteLength,
    read(offset, n) { check(offset, n); return bytes.subarray(offset, offset + n); },
    readFloats(dst, offset) { check(offset, dst.byteLength); floatBytes(dst).set(bytes.subarray(offset, offset + dst.byteLength)); },
  };
}

export function floatBytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** a little-endian view of bytes */
export function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export function utf8(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}
