// File helpers shared by the binary formats: atomic writes and exact reads with clear errors.

import * as fs from "node:fs";
import * as path from "node:path";
import { makeDir } from "../util/fs.js";

import { FormatError } from "../util/errors.js";
import type { ByteSource } from "./bytes.js";

export { FormatError };

/** A temporary file beside `target` that becomes it (fsynced, renamed) on commit(), or is removed on abort(). */
function atomicFile(target: string) {
  const dir = path.dirname(target);
  makeDir(dir);
  const tmp = path.join(dir, `.${path.basename(target)}${TMP_MARK}${process.pid}`);
  let fd = fs.openSync(tmp, "w");
  return {
    append(chunk: Uint8Array): void {
      let off = 0;
      while (off < chunk.byteLength) off += fs.writeSync(fd, chunk, off, chunk.byteLength - off);
    },
    commit(): void {
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fd = -1;
      fs.renameSync(tmp, target);
    },
    abort(): void {
      if (fd >= 0) fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
    },
  };
}

/**
 * Writes a file atomically: chunks go to a temporary file beside the target, which is fsynced and renamed over it.
 * A crash mid-write leaves the previous file intact. `write` receives an append function.
 */
export function writeFileAtomic(target: string, write: (append: (chunk: Uint8Array) => void) => void): void {
  let f: ReturnType<typeof atomicFile> | null = null;
  try {
    f = atomicFile(target);
    write(f.append);
    f.commit();
  } catch (e) {
    f?.abort();
    throw ioError(e, `writing ${target}`);
  }
}

/** writeFileAtomic() with a producer that awaits (the bytes read back from a device as they are written) */
export async function writeFileAtomicAsync(target: string, write: (append: (chunk: Uint8Array) => void) => Promise<void>): Promise<void> {
  let f: ReturnType<typeof atomicFile> | null = null;
  try {
    f = atomicFile(target);
    await write(f.append);
    f.commit();
  } catch (e) {
    f?.abort();
    throw ioError(e, `writing ${target}`);
  }
}

const TMP_MARK = ".tmp-";

/**
 * Removes temporary files that an atomic write in `dir` left behind when its process was killed mid-write
 * (`.NAME.tmp-PID` whose PID no longer runs); returns how many bytes were freed.
 */
export function removeStaleTemporaries(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let freed = 0;
  for (const f of fs.readdirSync(dir)) {
    const m = /^\..+\.tmp-(\d+)$/.exec(f);
    if (!m || processAlive(Number(m[1]))) continue;
    const file = path.join(dir, f);
    try { freed += fs.statSync(file).size; fs.rmSync(file, { force: true }); } catch { /* gone meanwhile */ }
  }
  return freed;
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === "EPERM"; }
}

/** An I/O failure as one line that names the file and what ran out or was refused (ENOSPC, EACCES, ...). */
export function ioError(e: unknown, doing: string): Error {
  const err = e as NodeJS.ErrnoException;
  if (!err || typeof err.code !== "string" || err instanceof FormatError) return e as Error;
  const why = err.code === "ENOSPC" ? "no space left on the device"
    : err.code === "EDQUOT" ? "disk quota exceeded"
    : err.code === "EACCES" || err.code === "EPERM" ? "permission denied"
    : err.code === "EROFS" ? "read-only file system"
    : err.code === "ENOENT" ? "no such file or folder"
    : err.code === "EISDIR" ? "it is a folder" : err.code;
  return new FormatError(`${doing}: ${why}`);
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

export { floatBytes } from "./bytes.js";

/** A file's bytes as a ByteSource (io/bytes.ts) over an open descriptor; close() when done. */
export function fileSource(file: string): ByteSource & { close(): void } {
  const fd = fs.openSync(file, "r");
  return {
    name: file, size: fs.fstatSync(fd).size,
    read: (offset, n) => readExact(fd, file, n, offset),
    readFloats: (dst, offset) => readFloatsInto(fd, file, dst, offset),
    close: () => fs.closeSync(fd),
  };
}

export function requireFile(file: string, what: string): void {
  if (!fs.existsSync(file)) throw new FormatError(`${what} ${file} does not exist`);
}
