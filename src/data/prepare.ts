// Sources -> tokens -> shards, streaming with constant memory: documents are batched, tokenized on a pool of
// worker threads (results reassembled in order), and cut into fixed-size shards; the first shard is validation.
// A manifest records where each finished shard ends, so re-running skips finished shards without re-tokenizing.

import * as fs from "node:fs";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { FormatError } from "../io/files.js";
import { Rng } from "../util/rng.js";
import { CharTokenizer, shardTokenizerPath } from "../tokenizer/tokenizer.js";
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
  /** stop after this many tokens in all: a cap, never more than the inputs hold unless `repeat` */
  maxTokens?: number;
  /**
   * With maxTokens: an input that runs out is read again (another epoch of it) until maxTokens are written. Documents
   * that went into validation are skipped on every later pass, so validation never holds a document trained on.
   */
  repeat?: boolean;
  seed?: number;
  /**
   * "char": a character-level vocabulary (nanoGPT's shakespeare_char): the inputs' distinct characters, sorted, plus
   * <|endoftext|>, written to NAME_tokenizer.json; the inputs are read whole and in order, the LAST `valTokens` (or
   * `valFraction` of the) tokens validate, as nanoGPT's last 10 %. Default "gpt2": GPT-2's BPE.
   */
  tokenizer?: "gpt2" | "char";
  /** char: the validation share when valTokens is not given */
  valFraction?: number;
  onProgress?: (p: Progress) => void;
}

export interface Progress {
  tokens: number;
  bytes: number;
  totalBytes: number;
  shards: number;
  seconds: number;
  /** how far along, 0..1: tokens of --max-tokens with repeat, else the larger of that and bytes read of all inputs */
  fraction: number;
}

export interface PrepareResult {
  shards: string[];
  tokens: number;
  skippedShards: number;
  documents: number;
  /** tokenizer char: the distinct characters */
  vocabulary?: number;
  /** realised share of tokens per input, and over how many passes of it (the last perhaps partly) they were read */
  mixture: Record<string, { tokens: number; share: number; passes: number }>;
}

interface Manifest {
  key: string;
  /** with repeat: the documents (input:index) in the validation shard, skipped on later passes */
  valDocs?: string[];
  shards: { file: string; tokens: number; doc: number; skip: number }[];
  done: boolean;
  mixture?: PrepareResult["mixture"];
  documents?: number;
}

const BATCH_BYTES = 1 << 18;

function shardName(o: PrepareOptions, i: number): string {
  return path.join(o.outDir, `${o.name}_${i === 0 ? "val" : "train"}_${String(i).padStart(6, "0")}.bin`);
}

/** one document as the consumer sees it: which input, its index within a pass over that input, which pass */
type MixedDoc = Doc & { input: string; key: string; epoch: number };

/**
 * Documents of all inputs in one deterministic order: one input streams through; several are mixed by weight. Without
 * `repeat` the first input to run out ends the stream (so the weights hold to the end and nothing is seen twice).
 */
async function* mixedDocuments(o: PrepareOptions): AsyncGenerator<MixedDoc> {
  const src = o.inputs.map((i) => ({ ...i, it: readDocuments(i.path, o), epochs: 0, index: 0 }));
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
      if (!o.repeat) return;
      s.it = readDocuments(s.path, o);
      s.index = 0;
      next = await s.it.next();
      if (next.done) return;
    }
    yield { ...next.value, input: s.name, key: `${s.name}:${s.index++}`, epoch: s.epochs };
  }
}

/** Shards of an earlier run under this name that the new ones would not all overwrite (and its vocabulary). */
function removeOldShards(o: PrepareOptions, keepTokenizer: boolean): void {
  if (!fs.existsSync(o.outDir)) return;
  const mine = new RegExp(`^${o.name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}_(train|val)_\\d{6}\\.bin$`);
  for (const f of fs.readdirSync(o.outDir)) if (mine.test(f)) fs.rmSync(path.join(o.outDir, f), { force: true });
  if (!keepTokenizer) fs.rmSync(shardTokenizerPath(o.outDir, o.name), { force: true });
}

export async function prepare(o: PrepareOptions): Promise<PrepareResult> {
  if (o.inputs.length === 0) throw new FormatError("no input given");
  if (o.tokenizer === "char") return prepareChars(o);
  if (o.shardSize < 1 || o.valTokens < 1) throw new RangeError("--shard-size and --val-tokens must be positive");
  if (o.repeat && o.maxTokens === undefined) throw new RangeError("--repeat needs --max-tokens (how many tokens to stop at)");
  makeDir(o.outDir);
  const key = JSON.stringify({ inputs: o.inputs, shardSize: o.shardSize, valTokens: o.valTokens, sep: o.docSeparator,
    field: o.field, maxTokens: o.maxTokens, repeat: o.repeat, seed: o.seed });
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
  // a fresh start: no shard of another run (other options, or character-level) may be left to mix into this one's.
  // Only now, once every input is known to be there: a re-run with a missing input must not cost the old shards.
  if (manifest.shards.length === 0) removeOldShards(o, false);
  const workers = Array.from({ length: Math.max(1, o.workers) }, () => new Worker(new URL("./tokenize-worker.js", import.meta.url)));
  type Result = { tokens: Uint16Array; lens: Uint32Array };
  type Meta = { input: string; key: string; epoch: number; starts: boolean };
  const pending = new Map<number, (r: Result) => void>();
  for (const w of workers) w.on("message", (m: Result & { id: number }) => { pending.get(m.id)!(m); pending.delete(m.id); });
  const t0 = performance.now();

  let shardIndex = manifest.shards.length;
  let buf = new Uint16Array(shardIndex === 0 ? o.valTokens : o.shardSize), fill = 0;
  let tokens = 0, bytes = 0, docIndex = 0, documents = 0;
  // per input, what was written (the reader runs ahead of the writer, so these are counted where tokens are written)
  const stats = new Map(o.inputs.map((i) => [i.name, { tokens: 0, passes: 0 }]));
  const valDocs = new Set(manifest.valDocs ?? []);
  const progress = () => {
    const byTokens = o.maxTokens ? tokens / o.maxTokens : 0, byBytes = o.repeat || !totalBytes ? 0 : bytes / totalBytes;
    o.onProgress?.({ tokens, bytes, totalBytes, shards: shardIndex, seconds: (performance.now() - t0) / 1000, fraction: Math.min(1, Math.max(byTokens, byBytes)) });
  };

  // consume tokenized batches in order; each batch knows the index of its first document
  const flushShard = (endDoc: number, endSkip: number) => {
    const file = shardName(o, shardIndex);
    writeShard(file, buf.subarray(0, fill));
    manifest.shards.push({ file, tokens: fill, doc: endDoc, skip: endSkip });
    if (shardIndex === 0 && o.repeat) manifest.valDocs = [...valDocs];
    saveManifest();
    shardIndex++;
    buf = new Uint16Array(o.shardSize);
    fill = 0;
    progress();
  };
  const consume = (toks: Uint16Array, firstDoc: number, docLens: Uint32Array, skipFirst: number, docs: Meta[]) => {
    // walk document by document so a shard boundary can be recorded as (document, tokens already used)
    let off = 0;
    for (let d = 0; d < docLens.length; d++) {
      let used = d === 0 ? skipFirst : 0;
      const len = docLens[d];
      if (o.repeat) {
        if (shardIndex === 0) valDocs.add(docs[d].key);
        else if (docs[d].epoch > 0 && valDocs.has(docs[d].key)) { off += len; continue; } // a validation document, met again
      }
      off += used;
      if (used === 0 && len > 0 && docs[d].starts && !(o.maxTokens !== undefined && tokens >= o.maxTokens)) documents++;
      while (used < len) {
        if (o.maxTokens !== undefined && tokens >= o.maxTokens) return true;
        let take = Math.min(len - used, buf.length - fill);
        if (o.maxTokens !== undefined) take = Math.min(take, o.maxTokens - tokens);
        buf.set(toks.subarray(off, off + take), fill);
        fill += take; used += take; off += take; tokens += take;
        const st = stats.get(docs[d].input)!;
        st.tokens += take;
        st.passes = Math.max(st.passes, docs[d].epoch + 1);
        if (fill === buf.length) flushShard(used === len ? firstDoc + d + 1 : firstDoc + d, used === len ? 0 : used);
      }
    }
    return false;
  };

  // dispatch: batches go to workers round-robin; at most 2 per worker in flight keeps memory constant
  let batchId = 0, stop = false;
  const inflight: Promise<void>[] = [];
  let chain: Promise<boolean> = Promise.resolve(false);
  const submit = (texts: string[], starts: boolean[], firstDoc: number, inputsOf: MixedDoc[], skipFirst: number) => {
    const id = batchId++;
    const w = workers[id % workers.length];
    const result = new Promise<Result>((resolve) => pending.set(id, resolve));
    w.postMessage({ id, texts, starts });
    // results are consumed in submission order, whichever worker finishes first
    chain = chain.then((stopped) => stopped || result.then((r) => consume(r.tokens, firstDoc, r.lens, skipFirst, inputsOf)));
    inflight.push(chain.then((s) => { if (s) stop = true; }));
  };

  try {
    let texts: string[] = [], starts: boolean[] = [], inputsOf: MixedDoc[] = [], size = 0, first = -1, skipFirst = 0;
    for await (const doc of mixedDocuments(o)) {
      bytes += doc.bytes;
      const idx = docIndex++;
      if (idx < resumeDoc) continue; // finished shards already hold this document
      if (first < 0) { first = idx; skipFirst = idx === resumeDoc ? resumeSkip : 0; }
      texts.push(doc.text); starts.push(doc.starts); inputsOf.push(doc);
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
    progress();
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  if (manifest.shards.length < 2) {
    // everything went into validation: no train shard, and a train command that would fail. Refuse, leaving nothing.
    for (const sh of manifest.shards) fs.rmSync(sh.file, { force: true });
    fs.rmSync(manifestFile, { force: true });
    throw new RangeError(`the input${o.inputs.length > 1 ? "s hold" : " holds"} ${tokens.toLocaleString("en-US")} tokens, ` +
      `and --val-tokens ${o.valTokens.toLocaleString("en-US")} takes them all for validation: nothing is left to train on ` +
      `(try --val-tokens ${Math.max(1, Math.floor(tokens / 10))}, a tenth)`);
  }
  const total = [...stats.values()].reduce((a, s) => a + s.tokens, 0);
  const mixture: PrepareResult["mixture"] = {};
  for (const [name, s] of stats) mixture[name] = { tokens: s.tokens, share: total ? s.tokens / total : 0, passes: s.passes };
  manifest.done = true;
  manifest.mixture = mixture;
  manifest.documents = documents;
  saveManifest();
  return { shards: manifest.shards.map((s) => s.file), tokens: manifest.shards.reduce((a, s) => a + s.tokens, 0), skippedShards, documents, mixture };
}

/**
 * Character-level shards (see PrepareOptions.tokenizer): small corpora, held in memory. Every document starts with
 * <|endoftext|>, as with BPE; the validation shard is the end of the stream, as nanoGPT's split.
 */
async function prepareChars(o: PrepareOptions): Promise<PrepareResult> {
  if (o.repeat) throw new RangeError("--repeat is for BPE mixtures; --tokenizer char reads its inputs whole, in order");
  const t0 = performance.now();
  const docs: { text: string; starts: boolean }[] = [];
  const totalBytes = o.inputs.reduce((a, i) => a + inputBytes(i.path), 0);
  let bytes = 0;
  const stats = new Map(o.inputs.map((i) => [i.name, { tokens: 0, passes: 1 }]));
  const inputOf: string[] = [];
  for (const input of o.inputs) {
    for await (const d of readDocuments(input.path, o)) { docs.push(d); inputOf.push(input.name); bytes += d.bytes; }
  }
  const tok = CharTokenizer.fromText(docs.map((d) => d.text));
  if (tok.vocabSize > 65536) throw new RangeError(`the inputs hold ${tok.chars.length} distinct characters; shards store ids in 16 bits (at most 65,535)`);
  let total = 0;
  for (const d of docs) total += (d.starts ? 1 : 0) + [...d.text].length;
  if (o.maxTokens !== undefined) total = Math.min(total, o.maxTokens);
  const ids = new Uint16Array(total);
  let n = 0, documents = 0;
  for (let k = 0; k < docs.length && n < total; k++) {
    const d = docs[k], before = n;
    if (d.starts) { ids[n++] = tok.eot; documents++; }
    for (const id of tok.encode(d.text)) { if (n >= total) break; ids[n++] = id; }
    stats.get(inputOf[k])!.tokens += n - before;
  }
  // nanoGPT's split: the first int(n * 0.9) characters train (here after the leading <|endoftext|>), the rest validate
  const valTokens = o.valFraction !== undefined ? total - Math.floor(total * (1 - o.valFraction)) : o.valTokens;
  if (valTokens < 1 || valTokens >= total) {
    throw new RangeError(`the input${o.inputs.length > 1 ? "s hold" : " holds"} ${total.toLocaleString("en-US")} characters, and --val-tokens ` +
      `${valTokens.toLocaleString("en-US")} leaves ${valTokens >= total ? "nothing to train on" : "nothing to validate on"} (try --val-tokens ${Math.max(1, Math.floor(total / 10))}, a tenth)`);
  }
  makeDir(o.outDir);
  removeOldShards(o, true);
  fs.rmSync(path.join(o.outDir, `${o.name}_manifest.json`), { force: true });
  const trainEnd = total - valTokens;
  const shards = [shardName(o, 0)];
  writeShard(shards[0], ids.subarray(trainEnd));
  for (let at = 0, i = 1; at < trainEnd; at += o.shardSize, i++) {
    shards.push(shardName(o, i));
    writeShard(shards[i], ids.subarray(at, Math.min(trainEnd, at + o.shardSize)));
  }
  fs.writeFileSync(shardTokenizerPath(o.outDir, o.name), JSON.stringify(tok.spec) + "\n");
  o.onProgress?.({ tokens: total, bytes, totalBytes, shards: shards.length, seconds: (performance.now() - t0) / 1000, fraction: 1 });
  const mixture: PrepareResult["mixture"] = {};
  for (const [name, st] of stats) mixture[name] = { tokens: st.tokens, share: total ? st.tokens / total : 0, passes: st.passes };
  return { shards, tokens: total, skippedShards: 0, documents, mixture, vocabulary: tok.chars.length };
}
