// Tokenization throughput: gpt2 prepare's worker pool (all cores) against tiktoken single-threaded on the same text,
// in one run. Two corpora by default: Tiny Shakespeare repeated (--repeat N, as N documents) and the built-in State of
// the Union corpus (233 distinct addresses, each once: the word cache starts cold and meets 230 years of vocabulary),
// and ~40 MB of distinct Python source files from Debian's dist-packages when present.
// Run: node dist/bench/tokenize.js [--input FILE] [--repeat N]
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { get_encoding } from "tiktoken";
import { builtinCorpus } from "../src/data/builtin.js";
import { prepare } from "../src/data/prepare.js";

const { values } = parseArgs({ options: { input: { type: "string" }, repeat: { type: "string" } } });
const shakespeare = values.input ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../../shared/data/tinyshakespeare.txt");
const repeat = Number(values.repeat ?? 20);
const workers = os.availableParallelism();

async function measure(label: string, texts: string[]): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tokbench-"));
  texts.forEach((t, i) => fs.writeFileSync(path.join(dir, `doc${String(i).padStart(5, "0")}.txt`), t));
  const mb = texts.reduce((s, t) => s + Buffer.byteLength(t), 0) / 1e6;

  const enc = get_encoding("gpt2");
  let t0 = performance.now(), n = 0;
  for (const t of texts) n += enc.encode_ordinary(t).length;
  const single = mb / ((performance.now() - t0) / 1000);
  enc.free();

  t0 = performance.now();
  const r = await prepare({ inputs: [{ name: "b", path: dir }], outDir: path.join(dir, "out"), name: "b", shardSize: 100_000_000,
    valTokens: 1_000_000, workers });
  const ours = mb / ((performance.now() - t0) / 1000);
  fs.rmSync(dir, { recursive: true, force: true });
  if (r.tokens !== n + texts.length) throw new Error(`${label}: token counts differ: ${r.tokens} vs ${n} + ${texts.length} EOTs`);
  console.log(`${label}, ${mb.toFixed(1)} MB: tiktoken single-threaded ${single.toFixed(2)} MB/s; gpt2 prepare ` +
    `(${workers} workers, shards written) ${ours.toFixed(2)} MB/s; ratio ${(ours / single).toFixed(2)}x`);
}

const text = fs.readFileSync(shakespeare, "utf8");
await measure(`${path.basename(shakespeare)} x ${repeat}`, Array.from({ length: repeat }, () => text));
if (!values.input) {
  const sotu = fs.readFileSync(builtinCorpus(fs.mkdtempSync(path.join(os.tmpdir(), "sotu-"))), "utf8").trim().split("\n");
  await measure("State of the Union, 233 addresses", sotu.map((l) => (JSON.parse(l) as { text: string }).text));
  // a larger corpus of distinct documents that every Debian machine has: Python sources (code is part of web data)
  const py = "/usr/lib/python3/dist-packages";
  if (fs.existsSync(py)) {
    const files: string[] = [];
    let bytes = 0;
    for (const f of (fs.readdirSync(py, { recursive: true }) as string[]).sort()) {
      if (!f.endsWith(".py")) continue;
      const full = path.join(py, f), size = fs.statSync(full).size;
      if (size < 4096) continue;
      files.push(fs.readFileSync(full, "utf8"));
      if ((bytes += size) > 40e6) break;
    }
    await measure(`Python sources in ${py}, ${files.length} files`, files);
  }
}
