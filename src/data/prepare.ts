// Sources -> tokens -> shards, streaming with constant memory: documents are batched, tokenized on a pool of
// worker threads (results reassembled in order), and cut into fixed-size shards; the first shard is validation.
// A manifest records where each finished shard ends, so re-running skips finished shards without re-tokenizing.

import * as fs from "node:fs";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { FormatError } from "../io/files.js";
import { Rng } from "../util/rng.js";
import { readShardHeader, writeShard } from "./shard.js";
import { inputBytes, readDocuments, type Doc, type SourceOptions } from "./sources.js";
import { makeDir } from "../util/fs.js";

export interface PrepareInput {
  name: string;
  path: string;
  /** mixture weight (relative); only used with several inputs */
  weight?: number;
}

export interface PrepareOptions extends SourceOptions {
  inputs: PrepareInput[];
  outDir: string;
  /** shard file prefix: NAME_val_000000.bin, NAME_train_000001.bin, ... */
  name: string;
  shardSize: number;
  valTokens: number;
  workers: number;
  /** stop after this many tokens in all (mixtures may then revisit an input: more than one epoch of it) */
  maxTokens?: number;
  seed?: number;
  onProgress?: (p: Progress) => void;
}

export interface Progress {
  tokens: number;
  bytes: number;
  totalBytes: number;
  shards: number;
  seconds: number;
}

export interface PrepareResult {
  shards: string[];
  tokens: number;
  skippedShards: number;
  documents: number;
  /** realised share of tokens per input, and how many passes over it were made */
  mixture: Record<string, { tokens: number; share: number; epochs: number }>;
}

interface Manifest {
  key: string;
  shards: { file: string; tokens: number; doc: number; skip: number }[];
  done: boolean;
  mixture?: PrepareResult["mixture"];
  documents?: number;
}

const BATCH_BYTES = 1 << 18;

function shardName(o: PrepareOptions, i: number): string {
  return path.join(o.outDir, `${o.name}_${i === 0 ? "val" : "train"}_${String(i).padStart(6, "0")}.bin`);
}

/** Documents of all inputs in one deterministic order: one input streams through; several are mixed by weight. */
async function* mixedDocuments(o: PrepareOptions, stats: Map<string, { tokens: number; epochs: number }>):
  AsyncGenerator<Doc & { input: string }> {
  const src = o.inputs.map((i) => ({ ...i, it: readDocuments(i.path, o), epochs: 0 }));
  for (const s of src) stats.set(s.name, { tokens: 0, epochs: 0 });
  if (src.length === 1) {
    for await (const d of src[0].it) yield { ...d, input: src[0].name };
    stats.get(src[0].name)!.epochs = 1;
    return;
  }
  const rng = new Rng(o.seed ?? 1337);
  const total = src.reduce((a, s) => a + (s.weight ?? 1), 0);
  for (;;) {
    // LLaMA-style sampling: each document comes from input s with probability weight_s / sum of weights
    let r = rng.random() * total, k = 0;
    while (k < src.length - 1 && r >= (src[k].weight ?? 1)) { r -= src[k].weight ?? 1; k++; }
    const s = src[k];
    let next = await s.it.next();
    if (next.done) {
      s.epochs++;
      stats.get(s.name)!.epochs = s.epochs;
      if (o.maxTokens === undefined) return; // without a token budget the first exhausted input ends the mixture
      s.it = readDocuments(s.path, o);
      next = await s.it.next();
      if (next.done) return;
    }
    yield { ...next.value, input: s.name };
  }
}

export async function prepare(o: PrepareOptions): Promise<PrepareResult> {
  if (o.inputs.length === 0) throw new FormatError("no input given");
  if (o.shardSize < 1 || o.valTokens < 1) throw new RangeError("--shard-size and --val-tokens must be positive");
  makeDir(o.outDir);
  const key = JSON.stringify({ inputs: o.inputs, shardSize: o.shardSize, valTokens: o.valTokens, sep: o.docSeparator,
    field: o.field, maxTokens: o.maxTokens, seed: o.seed });
  const manifestFile = path.join(o.outDir, `${o.name}_manifest.json`);
  let manifest: Manifest = { key, shards: [], done: false };
  if (fs.existsSync(manifestFile)) {
    const old = JSON.parse(fs.readFileSync(manifestFile, "utf8")) as Manifest;
    // keep finished shards only when made with the same inputs and options and still intact on disk
    const intact = old.key === key && old.shards.every((s) => { try { return readShardHeader(s.file).tokens === s.tokens; } catch { return false; } });
    if (intact) manifest = old;
  }
  const skippedShards = manifest.shards.length;
  if (manifest.done) {
    const tokens = manifest.shards.reduce((a, s) => a + s.tokens, 0);
    return { shards: manifest.shards.map((s) => s.file), tokens, skippedShards, documents: manifest.documents ?? 0, mixture: manifest.mixture ?? {} };
  }
  const saveManifest = () => fs.writeFileSync(manifestFile, JSON.stringify(manifest, null, 1) + "\n");

  const resumeDoc = manifest.shards.at(-1)?.doc ?? 0, resumeSkip = manifest.shards.at(-1)?.skip ?? 0;
  const totalBytes = o.inputs.reduce((a, i) => a + inputBytes(i.path), 0);
  const workers = Array.from({ length: Math.max(1, o.workers) }, () => new Worker(new URL("./tokenize-worker.js", import.meta.url)));
  type Result = { tokens: Uint16Array; lens: Uint32Array };
  const pending = new Map<number, (r: Result) => void>();
  for (const w of workers) w.on("message", (m: Result & { id: number }) => { pending.get(m.id)!(m); pending.delete(m.id); });
  const t0 = performance.now();

  let shardIndex = manifest.shards.length;
  let buf = new Uint16Array(shardIndex === 0 ? o.valTokens : o.shardSize), fill = 0;
  let tokens = 0, bytes = 0, docIndex = 0, documents = 0;
  const stats = new Map<string, { tokens: number; epochs: number }>();
  const progress = () => o.onProgress?.({ tokens, bytes, totalBytes, shards: shardIndex, seconds: (performance.now() - t0) / 1000 });

  // consume tokenized batches in order; each batch knows the index of its first document
  const flushShard = (endDoc: number, endSkip: number) => {
    const file = shardName(o, shardIndex);
    writeShard(file, buf.subarray(0, fill));
    manifest.shards.push({ file, tokens: fill, doc: endDoc, skip: endSkip });
    saveManifest();
    shardIndex++;
    buf = new Uint16Array(o.shardSize);
    fill = 0;
    progress();
  };
  const consume = (toks: Uint16Array, firstDoc: number, docLens: Uint32Array, skipFirst: number, inputsOf: string[]) => {
    // walk document by document so a shard boundary can be recorded as (document, tokens already used)
    let off = 0;
    for (let d = 0; d < docLens.length; d++) {
      let used = d === 0 ? skipFirst : 0;
      const len = docLens[d];
      off += used;
      while (used < len) {
        if (o.maxTokens !== undefined && tokens >= o.maxTokens) return true;
        let take = Math.min(len - used, buf.length - fill);
        if (o.maxTokens !== undefined) take = Math.min(take, o.maxTokens - tokens);
        buf.set(toks.subarray(off, off + take), fill);
        fill += take; used += take; off += take; tokens += take;
        stats.get(inputsOf[d])!.tokens += take;
        if (fill === buf.length) flushShard(used === len ? firstDoc + d + 1 : firstDoc + d, used === len ? 0 : used);
      }
    }
    return false;
  };

  // dispatch: batches go to workers round-robin; at most 2 per worker in flight keeps memory constant
  let batchId = 0, stop = false;
  const inflight: Promise<void>[] = [];
  let chain: Promise<boolean> = Promise.resolve(false);
  const submit = (texts: string[], starts: boolean[], firstDoc: number, inputsOf: string[], skipFirst: number) => {
    const id = batchId++;
    const w = workers[id % workers.length];
    const result = new Promise<Result>((resolve) => pending.set(id, resolve));
    w.postMessage({ id, texts, starts });
    // results are consumed in submission order, whichever worker finishes first
    chain = chain.then((stopped) => stopped || result.then((r) => consume(r.tokens, firstDoc, r.lens, skipFirst, inputsOf)));
    inflight.push(chain.then((s) => { if (s) stop = true; }));
  };

  try {
    let texts: string[] = [], starts: boolean[] = [], inputsOf: string[] = [], size = 0, first = -1, skipFirst = 0;
    for await (const doc of mixedDocuments(o, stats)) {
      bytes += doc.bytes;
      const idx = docIndex++;
      if (idx < resumeDoc) continue; // finished shards already hold this document
      if (first < 0) { first = idx; skipFirst = idx === resumeDoc ? resumeSkip : 0; }
      texts.push(doc.text); starts.push(doc.starts); inputsOf.push(doc.input);
      if (doc.starts) documents++;
      size += doc.text.length;
      if (size >= BATCH_BYTES) {
        submit(texts, starts, first, inputsOf, skipFirst);
        texts = []; starts = []; inputsOf = []; size = 0; first = -1;
        if (inflight.length >= 2 * workers.length) await inflight.shift();
        progress();
        if (stop) break;
      }
    }
    if (texts.length && !stop) submit(texts, starts, first, inputsOf, skipFirst);
    await Promise.all(inflight);
    await chain;
    if (fill > 0) flushShard(docIndex, 0);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  const total = [...stats.values()].reduce((a, s) => a + s.tokens, 0);
  const mixture: PrepareResult["mixture"] = {};
  for (const [name, s] of stats) mixture[name] = { tokens: s.tokens, share: total ? s.tokens / total : 0, epochs: s.epochs };
  manifest.done = true;
  manifest.mixture = mixture;
  manifest.documents = documents;
  saveManifest();
  return { shards: manifest.shards.map((s) => s.file), tokens: manifest.shards.reduce((a, s) => a + s.tokens, 0), skippedShards, documents, mixture };
}
