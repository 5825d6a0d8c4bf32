// Documents from inputs, streamed with constant memory: plain text (one file = one document, or split after a
// separator that stays with the document before it), JSONL with a text field, and Parquet with a text column
// (the FineWeb / FineWeb-Edu layout), files or whole directories.

import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { compressors } from "hyparquet-compressors";
import { globSync } from "tinyglobby";
import { FormatError } from "../io/files.js";

export interface SourceOptions {
  /** split plain text after each occurrence of this separator (kept at the end of the document before it) */
  docSeparator?: string;
  /** JSONL field / Parquet column holding the text (default "text") */
  field?: string;
}

export interface Doc {
  text: string;
  /** false for the later pieces of a long document cut into pieces: no <|endoftext|> goes before them */
  starts: boolean;
  /** input bytes this document accounts for (progress and ETA) */
  bytes: number;
}

const TEXT_CHUNK = 1 << 20;

export function listInputFiles(input: string): string[] {
  if (/[*?[]/.test(input) && !fs.existsSync(input)) {
    const files = globSync(input, { absolute: true, onlyFiles: true }).sort();
    if (files.length === 0) throw new FormatError(`no input files match ${input}`);
    return files;
  }
  if (!fs.existsSync(input)) throw new FormatError(`input ${input} does not exist`);
  if (!fs.statSync(input).isDirectory()) return [input];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (!e.name.startsWith(".")) out.push(p);
    }
  };
  walk(input);
  if (out.length === 0) throw new FormatError(`input directory ${input} holds no files`);
  return out;
}

export function inputBytes(input: string): number {
  return listInputFiles(input).reduce((a, f) => a + fs.statSync(f).size, 0);
}

export async function* readDocuments(input: string, opts: SourceOptions = {}): AsyncGenerator<Doc> {
  for (const file of listInputFiles(input)) {
    const ext = path.extname(file).toLowerCase();
    if (ext === ".jsonl" || ext === ".ndjson") yield* jsonlDocuments(file, opts.field ?? "text");
    else if (ext === ".parquet") yield* parquetDocuments(file, opts.field ?? "text");
    else yield* textDocuments(file, opts.docSeparator);
  }
}

/**
 * A plain-text file as documents. Long documents are handed on in ~1 MB pieces cut only after a "\n" that sits
 * between two non-space characters: GPT-2's pre-tokenizer never joins across such a point, so the tokens are the
 * same as for the whole text (tested), and memory stays constant however large the file.
 */
async function* textDocuments(file: string, separator?: string): AsyncGenerator<Doc> {
  let carry = "", starts = true;
  // a small file is read in one call (most corpora are many small files); a large one streams in chunks
  const small = fs.statSync(file).size <= TEXT_CHUNK;
  const chunks = small ? [await fs.promises.readFile(file, "utf8")]
    : fs.createReadStream(file, { encoding: "utf8", highWaterMark: TEXT_CHUNK }) as AsyncIterable<string>;
  for await (const chunk of chunks) {
    carry += chunk;
    if (separator) {
      let idx: number;
      while ((idx = carry.indexOf(separator)) >= 0) {
        const doc = carry.slice(0, idx + separator.length);
        carry = carry.slice(idx + separator.length);
        yield { text: doc, bytes: Buffer.byteLength(doc), starts };
        starts = true;
      }
    }
    while (carry.length > 2 * TEXT_CHUNK) {
      const cut = safeCut(carry, TEXT_CHUNK);
      if (cut < 0) break;
      const piece = carry.slice(0, cut);
      carry = carry.slice(cut);
      yield { text: piece, bytes: Buffer.byteLength(piece), starts };
      starts = false;
    }
  }
  if (carry.length > 0 || (!separator && starts)) yield { text: carry, bytes: Buffer.byteLength(carry), starts };
}

/** first index >= from just after a "\n" with non-space characters on both sides, or -1 */
export function safeCut(s: string, from: number): number {
  for (let i = Math.max(1, from); i < s.length - 1; i++) {
    if (s.charCodeAt(i) === 10 && !/\s/.test(s[i - 1]) && !/\s/.test(s[i + 1])) return i + 1;
  }
  return -1;
}

async function* jsonlDocuments(file: string, field: string): AsyncGenerator<Doc> {
  const rl = readline.createInterface({ input: fs.createReadStream(file, { encoding: "utf8" }), crlfDelay: Infinity });
  let line = 0;
  for await (const raw of rl) {
    line++;
    if (raw.trim() === "") continue;
    let row: Record<string, unknown>;
    try { row = JSON.parse(raw); } catch { throw new FormatError(`${file}:${line}: not valid JSON`); }
    const text = row?.[field];
    if (typeof text !== "string") throw new FormatError(`${file}:${line}: no string field "${field}" (use --field to name the text field)`);
    yield { text, bytes: Buffer.byteLength(raw) + 1, starts: true };
  }
}

async function* parquetDocuments(file: string, column: string): AsyncGenerator<Doc> {
  const buffer = await asyncBufferFromFile(file);
  const metadata = await parquetMetadataAsync(buffer);
  const names = metadata.schema.map((s) => s.name);
  if (!names.includes(column)) throw new FormatError(`${file}: no column "${column}" (columns: ${names.slice(1).join(", ")}); use --field`);
  const size = fs.statSync(file).size, rows = Number(metadata.num_rows);
  // one row group at a time: memory is bounded by the largest row group, not the file
  let rowStart = 0;
  for (const rg of metadata.row_groups) {
    const rowEnd = rowStart + Number(rg.num_rows);
    const objs = await parquetReadObjects({ file: buffer, metadata, columns: [column], rowStart, rowEnd, compressors });
    for (const o of objs) {
      const text = (o as Record<string, unknown>)[column];
      if (typeof text !== "string") throw new FormatError(`${file}: row ${rowStart} column "${column}" is not text`);
      yield { text, bytes: size / Math.max(1, rows), starts: true };
    }
    rowStart = rowEnd;
  }
}
