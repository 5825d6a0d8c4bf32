// gpt2 prepare (DATASET | --input [NAME=]PATH ...) [--out DIR] [--name NAME] [--shard-size N] [--val-tokens N]
//   [--doc-separator S] [--field F] [--mix a=0.7,b=0.3] [--max-tokens N] [--workers N] [--cache DIR]

import * as os from "node:os";
import * as path from "node:path";
import { namedDataset } from "../data/datasets.js";
import { download } from "../util/download.js";
import { prepare, type PrepareInput } from "../data/prepare.js";
import { num, parse, UsageError } from "./common.js";

function bar(frac: number, width = 24): string {
  const n = Math.max(0, Math.min(width, Math.round(frac * width)));
  return "[" + "#".repeat(n) + ".".repeat(width - n) + "]";
}

export async function prepareCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    input: { type: "string", multiple: true }, out: { type: "string" }, name: { type: "string" },
    "shard-size": { type: "string" }, "val-tokens": { type: "string" }, "doc-separator": { type: "string" },
    field: { type: "string" }, mix: { type: "string" }, "max-tokens": { type: "string" }, workers: { type: "string" },
    cache: { type: "string" }, files: { type: "string" }, seed: { type: "string" },
  }, 1);
  const dataset = positionals[0];
  const inputsRaw = (values.input ?? []) as string[];
  if (!dataset && inputsRaw.length === 0) throw new UsageError("usage: gpt2 prepare (tinyshakespeare | fineweb-edu | --input PATH ...) [--out DIR]");
  const cache = values.cache ?? path.join(os.homedir(), ".cache", "gpt2ts", "datasets");
  let defaults = { valTokens: 100_000_000, shardSize: 100_000_000, docSeparator: undefined as string | undefined };
  let inputs: PrepareInput[] = [];
  if (dataset) {
    const d = namedDataset(dataset, num(values.files, "files", 14, { int: true, min: 1 }), { data: process.env.GPT2_DATA_URL, hf: process.env.HF_ENDPOINT });
    defaults = { valTokens: d.valTokens, shardSize: d.shardSize, docSeparator: d.docSeparator };
    if (inputsRaw.length > 0) {
      // a local copy of the named dataset (offline)
      inputs = inputsRaw.map((p) => ({ name: dataset, path: p }));
    } else {
      for (const f of d.files) {
        const dest = path.join(cache, f.name);
        process.stderr.write(`downloading ${f.url}\n`);
        await download(f.url, dest, {
          sha256: f.sha256,
          onProgress: (done, total) => process.stderr.write(`\r  ${(done / 2 ** 20).toFixed(1)} / ${(total / 2 ** 20).toFixed(1)} MiB`),
        });
        process.stderr.write("\n");
      }
      inputs = [{ name: dataset, path: d.files.length === 1 ? path.join(cache, d.files[0].name) : path.dirname(path.join(cache, d.files[0].name)) }];
    }
  } else {
    inputs = inputsRaw.map((spec, i) => {
      const eq = spec.indexOf("=");
      return eq > 0 ? { name: spec.slice(0, eq), path: spec.slice(eq + 1) } : { name: `input${i}`, path: spec };
    });
  }
  if (values.mix) {
    const weights = new Map<string, number>();
    for (const part of values.mix.split(",")) {
      const [k, v] = part.split("=");
      const w = Number(v);
      if (!k || !Number.isFinite(w) || w <= 0) throw new UsageError(`--mix expects name=weight,... with positive weights, got "${part}"`);
      weights.set(k, w);
    }
    for (const i of inputs) {
      if (!weights.has(i.name)) throw new UsageError(`--mix gives no weight for input "${i.name}" (name inputs as --input NAME=PATH)`);
      i.weight = weights.get(i.name);
    }
    for (const k of weights.keys()) if (!inputs.some((i) => i.name === k)) throw new UsageError(`--mix names "${k}", which is not an input`);
  }
  const name = values.name ?? dataset ?? "data";
  const outDir = values.out ?? path.join("data", name);
  const t0 = performance.now();
  const r = await prepare({
    inputs, outDir, name,
    shardSize: num(values["shard-size"], "shard-size", defaults.shardSize, { int: true, min: 1 }),
    valTokens: num(values["val-tokens"], "val-tokens", defaults.valTokens, { int: true, min: 1 }),
    docSeparator: values["doc-separator"]?.replace(/\\n/g, "\n") ?? defaults.docSeparator,
    field: values.field,
    maxTokens: values["max-tokens"] === undefined ? undefined : num(values["max-tokens"], "max-tokens", 0, { int: true, min: 1 }),
    workers: num(values.workers, "workers", os.availableParallelism(), { int: true, min: 1 }),
    seed: num(values.seed, "seed", 1337, { int: true }),
    onProgress: (p) => {
      if (!process.stderr.isTTY && p.bytes < p.totalBytes) return;
      const rate = p.tokens / Math.max(p.seconds, 1e-3), frac = p.totalBytes ? p.bytes / p.totalBytes : 0;
      const eta = frac > 0 ? (p.seconds / frac - p.seconds) : NaN;
      process.stderr.write(`\r${bar(frac)} ${(100 * frac).toFixed(1)}% ${p.tokens.toLocaleString()} tokens, ${(rate / 1e6).toFixed(2)}M tok/s, ` +
        `${(p.bytes / 2 ** 20 / Math.max(p.seconds, 1e-3)).toFixed(1)} MB/s, ${p.shards} shards, ETA ${Number.isFinite(eta) ? eta.toFixed(0) + "s" : "?"}   `);
    },
  });
  process.stderr.write("\n");
  const secs = (performance.now() - t0) / 1000;
  process.stdout.write(`${r.tokens.toLocaleString()} tokens from ${r.documents.toLocaleString()} documents in ${r.shards.length} shards ` +
    `(${r.skippedShards} already done) under ${outDir} in ${secs.toFixed(1)}s\n`);
  if (inputs.length > 1) {
    for (const [k, m] of Object.entries(r.mixture)) process.stdout.write(`  ${k}: ${(100 * m.share).toFixed(1)}% of tokens (${m.tokens.toLocaleString()}), ${m.epochs} full passes\n`);
  }
  process.stdout.write(`train with: gpt2 train -i '${path.join(outDir, `${name}_train_*.bin`)}' -j '${path.join(outDir, `${name}_val_*.bin`)}'\n`);
}
