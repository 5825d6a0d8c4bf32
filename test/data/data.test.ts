import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { test } from "node:test";
import { parquetWriteBuffer } from "hyparquet-writer";
import { download } from "../../src/util/download.js";
import { DataLoader } from "../../src/data/loader.js";
import { prepare } from "../../src/data/prepare.js";
import { readShardHeader, readShardTokens, writeShard, SHARD_HEADER_BYTES } from "../../src/data/shard.js";
import { safeCut } from "../../src/data/sources.js";
import { decode, encode, EOT_TOKEN } from "../../src/tokenizer/bpe.js";
import { ROOT, tmpDir } from "../helpers.js";

const SHAKESPEARE = path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt");

function allTokens(files: string[]): number[] {
  return files.flatMap((f) => Array.from(readShardTokens(readShardHeader(f), 0, readShardHeader(f).tokens)));
}

/** splits a token stream at EOTs into the documents' token lists (tokens before the first EOT, a document's tail, left out) */
function docsOf(tokens: number[]): number[][] {
  const docs: number[][] = [];
  for (const t of tokens) {
    if (t === EOT_TOKEN) docs.push([]);
    else docs.at(-1)?.push(t);
  }
  return docs;
}

test("prepare: EOT before every document, first shard = val, decoding gives the documents back exactly", async () => {
  const dir = tmpDir();
  const docs = ["Hello world.", "", "Second doc\nwith lines  and   spaces", "émoji 👋🏽 and 中文", "don't 1234"];
  fs.writeFileSync(path.join(dir, "in.jsonl"), docs.map((text) => JSON.stringify({ text, id: 1 })).join("\n") + "\n");
  const r = await prepare({ inputs: [{ name: "t", path: path.join(dir, "in.jsonl") }], outDir: path.join(dir, "out"), name: "t", shardSize: 7, valTokens: 5, workers: 2 });
  assert.deepEqual(r.shards.map((s) => path.basename(s)).slice(0, 3), ["t_val_000000.bin", "t_train_000001.bin", "t_train_000002.bin"]);
  assert.equal(readShardHeader(r.shards[0]).tokens, 5);
  const tokens = allTokens(r.shards);
  assert.equal(tokens[0], EOT_TOKEN);
  assert.equal(tokens.filter((t) => t === EOT_TOKEN).length, docs.length);
  assert.deepEqual(docsOf(tokens).map((d) => decode(d)), docs);
  // tokens equal tiktoken's for each document (independent path: the in-process encoder)
  assert.deepEqual(tokens, docs.flatMap((d) => [EOT_TOKEN, ...encode(d)]));
});

test("prepare: plain text split after a separator, cut into pieces at safe points, tokens identical to one-shot encoding", async () => {
  const dir = tmpDir();
  const text = fs.readFileSync(SHAKESPEARE, "utf8");
  const r = await prepare({ inputs: [{ name: "s", path: SHAKESPEARE }], outDir: dir, name: "s", shardSize: 100_000, valTokens: 32768, workers: 2, docSeparator: "\n\n" });
  assert.equal(r.tokens, 338028); // llm.c's tinyshakespeare.py: 32,768 val + 305,260 train tokens
  const docs = docsOf(allTokens(r.shards));
  assert.equal(docs.map((d) => decode(d)).join(""), text);
  // pieces cut by safeCut tokenize exactly like the whole
  const big = text.slice(0, 200_000);
  const cut = safeCut(big, 100_000);
  assert.ok(cut > 0);
  assert.deepEqual([...encode(big.slice(0, cut)), ...encode(big.slice(cut))], encode(big));
});

test("prepare: re-running skips finished shards and gives the same shards", async () => {
  const dir = tmpDir();
  const opts = { inputs: [{ name: "s", path: SHAKESPEARE }], outDir: dir, name: "s", shardSize: 60_000, valTokens: 32768, workers: 2 };
  const a = await prepare(opts);
  const bytes = a.shards.map((f) => fs.readFileSync(f));
  // lose the last two shards and the "done" mark, as if the run had been killed
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "s_manifest.json"), "utf8"));
  manifest.done = false;
  manifest.shards = manifest.shards.slice(0, -2);
  fs.writeFileSync(path.join(dir, "s_manifest.json"), JSON.stringify(manifest));
  for (const f of a.shards.slice(-2)) fs.rmSync(f);
  const b = await prepare(opts);
  assert.equal(b.skippedShards, a.shards.length - 2);
  assert.deepEqual(b.shards.map((f) => fs.readFileSync(f)), bytes);
});

test("prepare: parquet input (FineWeb layout) and a weighted mixture with realised proportions", async () => {
  const dir = tmpDir();
  const texts = Array.from({ length: 200 }, (_, i) => `Web document number ${i} about science.`);
  const buf = parquetWriteBuffer({ columnData: [{ name: "text", data: texts }, { name: "id", data: texts.map((_, i) => `id${i}`) }] });
  fs.writeFileSync(path.join(dir, "web.parquet"), Buffer.from(buf));
  fs.writeFileSync(path.join(dir, "books.txt"), Array.from({ length: 200 }, (_, i) => `Book chapter ${i}. It was a dark night.\n\n`).join(""));
  const one = await prepare({ inputs: [{ name: "w", path: path.join(dir, "web.parquet") }], outDir: path.join(dir, "o1"), name: "w", shardSize: 1e6, valTokens: 10, workers: 1 });
  assert.deepEqual(docsOf(allTokens(one.shards)).map((d) => decode(d)), texts);
  const mix = await prepare({
    inputs: [{ name: "web", path: path.join(dir, "web.parquet"), weight: 0.7 }, { name: "books", path: path.join(dir, "books.txt"), weight: 0.3 }],
    outDir: path.join(dir, "o2"), name: "m", shardSize: 1e6, valTokens: 100, workers: 2, docSeparator: "\n\n", maxTokens: 3000, repeat: true,
  });
  assert.equal(mix.tokens, 3000);
  const docShare = mix.mixture.web.tokens / (mix.mixture.web.tokens + mix.mixture.books.tokens);
  assert.ok(Math.abs(docShare - 0.7 * 9.5 / (0.7 * 9.5 + 0.3 * 12)) < 0.08, `web share ${docShare}`);
});

test("prepare: --val-tokens beyond the corpus is refused and leaves nothing behind", async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, "small.txt"), "A small corpus.\n\nTwo paragraphs of it.\n\n");
  const out = path.join(dir, "out");
  await assert.rejects(prepare({ inputs: [{ name: "s", path: path.join(dir, "small.txt") }], outDir: out, name: "s", shardSize: 1000, valTokens: 1000, workers: 1, docSeparator: "\n\n" }),
    /the input holds 1\d tokens, and --val-tokens 1,000 takes them all for validation: nothing is left to train on \(try --val-tokens 1, a tenth\)/);
  assert.deepEqual(fs.readdirSync(out), []);
});

test("prepare: --max-tokens is a cap (a mixture stops when an input runs out); --repeat revisits inputs, never validation documents", async () => {
  const dir = tmpDir();
  const a = Array.from({ length: 30 }, (_, i) => `Alpha document ${i}, with words.`);
  const b = Array.from({ length: 30 }, (_, i) => `Beta document ${i}, other words.`);
  fs.writeFileSync(path.join(dir, "a.txt"), a.join("\n\n") + "\n\n");
  fs.writeFileSync(path.join(dir, "b.txt"), b.join("\n\n") + "\n\n");
  const inputs = [{ name: "a", path: path.join(dir, "a.txt"), weight: 1 }, { name: "b", path: path.join(dir, "b.txt"), weight: 1 }];
  const base = { inputs, name: "m", shardSize: 200, valTokens: 60, workers: 1, docSeparator: "\n\n" };
  const fractions: number[] = [];
  const capped = await prepare({ ...base, outDir: path.join(dir, "cap"), maxTokens: 1_000_000, onProgress: (p) => fractions.push(p.fraction) });
  const corpusTokens = [...a, ...b].reduce((n, d) => n + encode(d + "\n\n").length + 1, 0);
  assert.ok(capped.tokens < corpusTokens, `${capped.tokens} tokens from a ${corpusTokens}-token corpus`);
  const seen = docsOf(allTokens(capped.shards)).map((d) => decode(d));
  assert.equal(new Set(seen).size, seen.length, "a document was written twice without --repeat");
  assert.ok(fractions.every((x) => x >= 0 && x <= 1), `progress ${Math.max(...fractions)}`);
  const repeated = await prepare({ ...base, outDir: path.join(dir, "rep"), maxTokens: 3 * corpusTokens, repeat: true, onProgress: (p) => fractions.push(p.fraction) });
  assert.equal(repeated.tokens, 3 * corpusTokens);
  assert.ok(repeated.mixture.a.passes >= 2 && repeated.mixture.b.passes >= 2 && capped.mixture.a.passes === 1, JSON.stringify(repeated.mixture));
  assert.ok(fractions.every((x) => x >= 0 && x <= 1), `progress ${Math.max(...fractions)}`);
  // documents wholly inside the validation shard never appear in a train shard
  const valDocs = docsOf(allTokens(repeated.shards.slice(0, 1))).slice(0, -1).map((d) => decode(d));
  const trainDocs = new Set(docsOf(allTokens(repeated.shards.slice(1))).map((d) => decode(d)));
  assert.ok(valDocs.length >= 2);
  for (const d of valDocs) assert.ok(!trainDocs.has(d), `validation document ${JSON.stringify(d)} is also in training`);
  await assert.rejects(prepare({ ...base, outDir: path.join(dir, "bad"), repeat: true }), /--repeat needs --max-tokens/);
});

test("shards: a bad magic, a truncated file and out-of-vocab ids are refused with the file named", () => {
  const dir = tmpDir();
  const good = path.join(dir, "good.bin");
  writeShard(good, Uint16Array.from([50256, 1, 2, 3]));
  assert.equal(readShardHeader(good).tokens, 4);
  const bad = path.join(dir, "bad.bin");
  const b = fs.readFileSync(good); b.writeInt32LE(1234, 0); fs.writeFileSync(bad, b);
  assert.throws(() => readShardHeader(bad), /bad magic in .*bad\.bin: 1234 \(expected 20240520/);
  const trunc = path.join(dir, "trunc.bin");
  fs.writeFileSync(trunc, fs.readFileSync(good).subarray(0, SHARD_HEADER_BYTES + 4));
  assert.throws(() => readShardHeader(trunc), /trunc\.bin: header says 4 tokens .* truncated/);
  const oov = path.join(dir, "oov.bin");
  writeShard(oov, Uint16Array.from([50256, 60000, 2]));
  assert.throws(() => readShardTokens(readShardHeader(oov), 0, 3), /oov\.bin: token 1 has id 60000/);
});

test("loader: windows of B*T+1, advances across shards, wraps into epoch 2, resumes exactly, splits ranks", () => {
  const dir = tmpDir();
  for (let s = 0; s < 2; s++) writeShard(path.join(dir, `x_train_00000${s}.bin`), Uint16Array.from({ length: 40 }, (_, i) => s * 100 + i));
  const L = new DataLoader(path.join(dir, "x_train_*.bin"), 2, 4);
  const first = L.next();
  assert.deepEqual(Array.from(first.inputs), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(Array.from(first.targets), [1, 2, 3, 4, 5, 6, 7, 8]);
  const seen: number[][] = [];
  for (let i = 0; i < 10; i++) seen.push(Array.from(L.next().inputs));
  assert.equal(seen[3][0], 100); // shard 2 after 4 windows of shard 1 (40 tokens hold 4 windows of 9)
  assert.equal(L.position.epoch, 1);
  // resume: a fresh loader put at a saved position yields the same batches
  const L2 = new DataLoader(path.join(dir, "x_train_*.bin"), 2, 4);
  const A = new DataLoader(path.join(dir, "x_train_*.bin"), 2, 4);
  for (let i = 0; i < 5; i++) A.next();
  L2.position = A.position;
  for (let i = 0; i < 6; i++) assert.deepEqual(Array.from(L2.next().inputs), Array.from(A.next().inputs));
  // two ranks read disjoint windows that together cover what one rank with 2B reads
  const r0 = new DataLoader(path.join(dir, "x_train_*.bin"), 1, 4, { rank: 0, worldSize: 2 }), r1 = new DataLoader(path.join(dir, "x_train_*.bin"), 1, 4, { rank: 1, worldSize: 2 });
  assert.deepEqual([...r0.next().inputs, ...r1.next().inputs], [0, 1, 2, 3, 4, 5, 6, 7]);
});

test("download: resumes a partial file with HTTP Range, checks sha256, refuses a wrong checksum", async () => {
  const dir = tmpDir();
  const body = Buffer.from("First Citizen:\nBefore we proceed any further, hear me speak.\n".repeat(200));
  let ranges = 0;
  const server = http.createServer((req, res) => {
    const m = /bytes=(\d+)-/.exec(req.headers.range ?? "");
    if (m) {
      ranges++;
      const start = Number(m[1]);
      res.writeHead(206, { "content-length": body.length - start, "content-range": `bytes ${start}-${body.length - 1}/${body.length}` });
      res.end(body.subarray(start));
    } else {
      res.writeHead(200, { "content-length": body.length });
      res.end(body);
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/input.txt`;
  const { createHash } = await import("node:crypto");
  const sha = createHash("sha256").update(body).digest("hex");
  try {
    const dest = path.join(dir, "a.txt");
    fs.writeFileSync(dest + ".partial", body.subarray(0, 1000)); // an interrupted earlier download
    await download(url, dest, { sha256: sha });
    assert.equal(ranges, 1);
    assert.ok(fs.readFileSync(dest).equals(body));
    await assert.rejects(download(url, path.join(dir, "b.txt"), { sha256: "0".repeat(64) }), /checksum mismatch/);
    assert.ok(!fs.existsSync(path.join(dir, "b.txt")) && !fs.existsSync(path.join(dir, "b.txt.partial")));
  } finally {
    server.close();
  }
});

test("prepare fineweb-edu: parquet files downloaded from a Hugging Face endpoint (local server), then sharded", async () => {
  const dir = tmpDir();
  const texts = Array.from({ length: 50 }, (_, i) => `Educational web page ${i}: photosynthesis turns light into sugar.`);
  const parquet = Buffer.from(parquetWriteBuffer({ columnData: [{ name: "text", data: texts }, { name: "score", data: texts.map(() => 3.5) }] }));
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.url ?? "");
    if (req.url === "/datasets/HuggingFaceFW/fineweb-edu/resolve/main/sample/10BT/000_00000.parquet") {
      res.writeHead(200, { "content-length": parquet.length });
      res.end(parquet);
    } else { res.writeHead(404); res.end(); }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const { spawn } = await import("node:child_process");
    const env = { ...process.env, HF_ENDPOINT: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
    const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const c = spawn(process.execPath, [path.join(ROOT, "dist/src/cli/main.js"), "prepare", "fineweb-edu", "--files", "1", "--cache", path.join(dir, "cache"),
        "--out", path.join(dir, "out"), "--val-tokens", "100", "--shard-size", "400"], { env });
      let out = "", err = "";
      c.stdout.on("data", (d) => (out += d)); c.stderr.on("data", (d) => (err += d));
      c.on("exit", (code) => resolve({ code, out, err }));
    });
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(seen, ["/datasets/HuggingFaceFW/fineweb-edu/resolve/main/sample/10BT/000_00000.parquet"]);
    const shards = fs.readdirSync(path.join(dir, "out")).filter((f) => f.endsWith(".bin")).sort();
    assert.equal(shards[0], "fineweb-edu_train_000001.bin");
    assert.ok(shards.includes("fineweb-edu_val_000000.bin"));
    const files = ["fineweb-edu_val_000000.bin", ...shards.filter((s) => s.includes("_train_"))].map((s) => path.join(dir, "out", s));
    assert.deepEqual(docsOf(allTokens(files)).map((d) => decode(d)), texts);
  } finally {
    server.close();
  }
});

test("prepare: a re-run whose input is missing fails before it touches the shards an earlier run made", async () => {
  const dir = tmpDir(), out = path.join(dir, "out"), text = path.join(dir, "a.txt");
  fs.writeFileSync(text, "Hello there. ".repeat(400) + "\n\n" + "General Kenobi. ".repeat(400));
  const first = await prepare({ inputs: [{ name: "a", path: text }], outDir: out, name: "c", shardSize: 1000, valTokens: 100, workers: 1, docSeparator: "\n\n" });
  assert.ok(first.shards.length >= 2);
  await assert.rejects(prepare({ inputs: [{ name: "b", path: path.join(dir, "missing.txt") }], outDir: out, name: "c", shardSize: 1000, valTokens: 100, workers: 1 }));
  for (const f of first.shards) assert.ok(fs.existsSync(f), `${f} was removed by a run that could not start`);
});
