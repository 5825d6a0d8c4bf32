// File-system helpers every layer may use.

import * as fs from "node:fs";
import * as path from "node:path";

/** A folder could not be made: the message names it and why, in one line. */
export class DirectoryError extends Error {
  override name = "DirectoryError";
}

/**
 * mkdir -p, one component at a time. Node's recursive mkdirSync loops forever where mkdir answers ENOENT for a
 * folder whose parent exists (anything under /proc); here every failure ends in one line naming the folder.
 */
export function makeDir(dir: string): void {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  let at = abs;
  while (!fs.existsSync(at)) {
    missing.push(at);
    const up = path.dirname(at);
    if (up === at) break;
    at = up;
  }
  if (fs.existsSync(at) && !fs.statSync(at).isDirectory()) throw new DirectoryError(`cannot create ${dir}: ${at} is a file, not a folder`);
  for (const d of missing.reverse()) {
    try {
      fs.mkdirSync(d);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === "EEXIST" && fs.statSync(d).isDirectory()) continue; // made meanwhile by another process
      const why = err.code === "EACCES" || err.code === "EPERM" ? "permission denied"
        : err.code === "ENOSPC" ? "no space left on the device"
        : err.code === "EROFS" ? "read-only file system"
        : err.code === "ENOENT" ? `${path.dirname(d)} does not accept new folders` : (err.code ?? err.message);
      throw new DirectoryError(`cannot create ${dir}: ${why}`);
    }
  }
}
