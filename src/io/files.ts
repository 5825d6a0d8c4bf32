// File helpers shared by the binary formats: atomic writes and exact reads with clear errors.

import * as fs from "node:fs";
import * as path from "node:path";

export class FormatError extends Error {
  override name = "FormatError";
}

/**
 * Writes a file atomically: chunks go to a temporary file beside the target, which is fsynced and renamed over it.
 * A crash mid-write leaves the previous file intact. `write` receives an append function.
 */
export function writeFileAtomic(target: string, write: (append: (chunk: Uint8Array) => void) => void): void {
  const dir = path.dirname(target);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(target)}.tmp-${process.pid}`);
  const fd = fs.openSync(tmp, "w");
  try {
    write((chunk) => {
      let off = 0;
      while (off < chunk.byteLength) off += fs.writeSync(fd, chunk, off, chunk.byteLength - off);
    });
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, target);
}

/** Reads exactly n bytes at position pos, or fails naming the file. */
export function readExact(fd: number, file: string, n: number, pos: number): Buffer {
  const buf = Buffer.allocUnsafe(n);
  let got = 0;
  while (got < n) {
    const r = fs.readSync(fd, buf, got, n - got, pos + got);
    if (r === 0) throw new FormatError(`${file} is truncated: expected ${n} bytes at offset ${pos}, got ${got}`);
    got += r;
  }
  return buf;
}

/** Reads n float32 values at pos into dst (a host array), in chunks, without a second full copy. */
export function readFloatsInto(fd: number, file: string, dst: Float32Array, pos: number): void {
  const bytes = new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength);
  let got = 0;
  while (got < bytes.byteLength) {
    const r = fs.readSync(fd, bytes, got, Math.min(bytes.byteLength - got, 1 << 26), pos + got);
    if (r === 0) throw new FormatError(`${file} is truncated: expected ${bytes.byteLength} bytes of floats at offset ${pos}, got ${got}`);
    got += r;
  }
}

export function floatBytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function requireFile(file: string, what: string): void {
  if (!fs.existsSync(file)) throw new FormatError(`${what} ${file} does not exist`);
}
