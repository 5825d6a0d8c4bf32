// Tokenization throughput: gpt2 prepare's worker pool (all cores) against tiktoken single-threaded on the same text,
// in one run. Run: node dist/bench/tokenize.js [--input FILE] [--repeat N]
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { get_encoding } from "tiktoken";
import { prepare } from "../src/data/prepare.js";

const { values } = parseArgs({ options: { input: { type: "string" }, repeat: { type: "string" } } });
const src = values.input ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../../shared/data/tinyshakespeare.txt");
const repeat = Number(values.repeat ?? 20);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tokbench-"));
// the corpus: the input repeated, as separate documents (one file each)
const text = fs.readFileSync(src, "utf8");
for (let i = 0; i < repeat; i++) fs.writeFileSync(path.join(dir, `doc${String(i).padStart(4, "0")}.txt`), text);
const mb = (Buffer.byteLength(text) * repeat) / 1e6;

const enc = get_encoding("gpt2");
let t0 = performance.now(), n = 0;
for (let i = 0; i < repeat; i++) n += enc.encode_ordinary(text).length;
const single = mb / ((performance.now() - t0) / 1000);
enc.free();

t0 = performance.now();
const r = await prepare({ inputs: [{ name: "b", path: dir }], outDir: path.join(dir, "out"), name: "b", shardSize: 100_000_000,
  valTokens: 1_000_000, workers: os.availableParallelism() });
const ours = mb / ((performance.now() - t0) / 1000);
if (r.tokens !== n + repeat) throw new Error(`token counts differ: ${r.tokens} vs ${n} + ${repeat} EOTs`);
console.log(`${mb.toFixed(1)} MB: tiktoken single-threaded ${single.toFixed(2)} MB/s; gpt2 prepare (${os.availableParallelism()} workers, ` +
  `shards written) ${ours.toFixed(2)} MB/s; ratio ${(ours / single).toFixed(2)}x`);
fs.rmSync(dir, { recursive: true, force: true });
