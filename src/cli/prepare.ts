// gpt2 prepare (DATASET | --input [NAME=]PATH ...) [--out DIR] ...: corpora to llm.c shards (flags in `help` below).

import * as os from "node:os";
import * as path from "node:path";
import { namedDataset } from "../data/datasets.js";
import { download } from "../util/download.js";
import { prepare, type PrepareInput } from "../data/prepare.js";
import { commandHelp, num, parse, UsageError } from "./common.js";
import { cacheDir, env } from "../util/env.js";

export const help = commandHelp({
  usage: "gpt2 prepare (tinyshakespeare | fineweb-edu | --input [NAME=]PATH ...) [--out DIR] [flags]",
  about: "Text, JSONL or Parquet to llm.c token shards (uint16, 256-int header): NAME_val_000000.bin first, then\n" +
    "NAME_train_000001.bin, ...; <|endoftext|> before every document. Re-running skips finished shards.",
  flags: {
    input: { type: "string", multiple: true, arg: "[NAME=]PATH", help: "a file or folder (.txt, .jsonl, .parquet); repeat for a mixture. With a dataset name: a local copy of it" },
    out: { type: "string", arg: "DIR", help: "where the shards go", shown: "data/NAME" },
    name: { type: "string", arg: "NAME", help: "the shard files' prefix", shown: "the dataset's name, else data" },
    "shard-size": { type: "string", arg: "N", help: "tokens per train shard", shown: "the dataset's (100M for --input)" },
    "val-tokens": { type: "string", arg: "N", help: "tokens in the validation shard; refused when the inputs hold no more", shown: "the dataset's (100M for --input)" },
    "doc-separator": { type: "string", arg: "S", help: "plain text: documents end after S (\\n\\n for paragraphs)", shown: "none: a file is one document" },
    field: { type: "string", arg: "F", help: "JSONL / Parquet: the text field", shown: "text" },
    mix: { type: "string", arg: "a=0.7,b=0.3", help: "mixture weights of named inputs: each document is drawn from input i with probability w_i / sum w" },
    "max-tokens": { type: "string", arg: "N", help: "stop after N tokens (a cap: without --repeat, a mixture ends when its first input runs out)" },
    repeat: { type: "boolean", help: "with --max-tokens: read inputs that run out again (validation documents are skipped on later passes)" },
    files: { type: "string", arg: "N", help: "fineweb-edu: how many 100M-token files", shown: "14" },
    workers: { type: "string", arg: "N", help: "tokenizer threads", shown: "all cores" },
    cache: { type: "string", arg: "DIR", help: "where downloads go", shown: "the cache's datasets/ (GPT2_CACHE, default ~/.cache/gpt2ts)" },
    seed: { type: "string", arg: "S", help: "the mixture's draw", shown: "1337" },
    tokenizer: { type: "string", arg: "gpt2|char", help: "char: a character-level vocabulary (nanoGPT's shakespeare_char), saved as NAME_tokenizer.json; the last 10% validates", shown: "gpt2" },
  },
  more: "Downloads honour GPT2_DATA_URL (tinyshakespeare) and HF_ENDPOINT (fineweb-edu). Progress is one updating line on a\n" +
    "terminal and a line per 10% otherwise.",
});

function bar(frac: number, width = 24): string {
  const n = Math.max(0, Math.min(width, Math.round(frac * width)));
  return "[" + "#".repeat(n) + ".".repeat(width - n) + "]";
}

export async function prepareCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, help.flags, 1);
  const dataset = positionals[0];
  const inputsRaw = (values.input ?? []) as string[];
  if (!dataset && inputsRaw.length === 0) throw new UsageError("usage: gpt2 prepare (tinyshakespeare | fineweb-edu | --input PATH ...) [--out DIR]");
  const tty = !!process.stderr.isTTY;
  let shownTenth = -1;
  const cache = values.cache ?? cacheDir("datasets");
  const tokenizer = values.tokenizer ?? "gpt2";
  if (tokenizer !== "gpt2" && tokenizer !== "char") throw new UsageError(`--tokenizer expects gpt2 or char, got "${tokenizer}"`);
  if (tokenizer === "char" && (values.mix || values.repeat)) throw new UsageError("--tokenizer char reads its inputs whole and in order: --mix and --repeat are for BPE corpora");
  let defaults = { valTokens: 100_000_000, shardSize: 100_000_000, docSeparator: undefined as string | undefined };
  let inputs: PrepareInput[] = [];
  if (dataset) {
    const d = namedDataset(dataset, num(values.files, "files", 14, { int: true, min: 1 }), { data: env("GPT2_DATA_URL"), hf: env("HF_ENDPOINT") });
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
          onProgress: (done, total) => {
            const line = `  ${(done / 2 ** 20).toFixed(1)} / ${(total / 2 ** 20).toFixed(1)} MiB`;
            if (tty) process.stderr.write(`\r${line}`);
            else if (total > 0 && Math.floor((10 * done) / total) > shownTenth) { shownTenth = Math.floor((10 * done) / total); process.stderr.write(line + "\n"); }
          },
        });
        if (tty) process.stderr.write("\n");
        shownTenth = -1;
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
  const maxTokens = values["max-tokens"] === undefined ? undefined : num(values["max-tokens"], "max-tokens", 0, { int: true, min: 1 });
  if (values.repeat && maxTokens === undefined) throw new UsageError("--repeat needs --max-tokens N: the number of tokens to stop at");
  const t0 = performance.now();
  const r = await prepare({
    inputs, outDir, name,
    shardSize: num(values["shard-size"], "shard-size", defaults.shardSize, { int: true, min: 1 }),
    valTokens: num(values["val-tokens"], "val-tokens", defaults.valTokens, { int: true, min: 1 }),
    // character-level text is one stream, as nanoGPT's (no <|endoftext|> between a dataset's paragraphs unless asked)
    docSeparator: values["doc-separator"]?.replace(/\\n/g, "\n") ?? (tokenizer === "char" ? undefined : defaults.docSeparator),
    tokenizer, valFraction: tokenizer === "char" && values["val-tokens"] === undefined ? 0.1 : undefined,
    field: values.field,
    maxTokens,
    repeat: values.repeat,
    workers: num(values.workers, "workers", os.availableParallelism(), { int: true, min: 1 }),
    seed: num(values.seed, "seed", 1337, { int: true }),
    onProgress: (p) => {
      const rate = p.tokens / Math.max(p.seconds, 1e-3);
      const eta = p.fraction > 0 ? (p.seconds / p.fraction - p.seconds) : NaN;
      const line = `${bar(p.fraction)} ${(100 * p.fraction).toFixed(1)}% ${p.tokens.toLocaleString("en-US")} tokens, ${(rate / 1e6).toFixed(2)}M tok/s, ` +
        `${(p.bytes / 2 ** 20 / Math.max(p.seconds, 1e-3)).toFixed(1)} MB/s, ${p.shards} shards, ETA ${Number.isFinite(eta) ? eta.toFixed(0) + "s" : "?"}`;
      // a log file gets whole lines, one per tenth; a terminal one line redrawn in place
      if (tty) process.stderr.write(`\r${line}   `);
      else if (Math.floor(10 * p.fraction) > shownTenth) { shownTenth = Math.floor(10 * p.fraction); process.stderr.write(line + "\n"); }
    },
  }).catch((e: Error) => { if (e instanceof RangeError) throw new UsageError(e.message); throw e; });
  if (tty) process.stderr.write("\n");
  const secs = (performance.now() - t0) / 1000;
  if (r.vocabulary) process.stdout.write(`character-level: a vocabulary of ${r.vocabulary} characters + <|endoftext|> (${path.join(outDir, `${name}_tokenizer.json`)})\n`);
  process.stdout.write(`${r.tokens.toLocaleString("en-US")} tokens from ${r.documents.toLocaleString("en-US")} document${r.documents === 1 ? "" : "s"} in ${r.shards.length} shards ` +
    `(${r.skippedShards} already done) under ${outDir} in ${secs.toFixed(1)}s\n`);
  if (inputs.length > 1) {
    for (const [k, m] of Object.entries(r.mixture)) process.stdout.write(`  ${k}: ${(100 * m.share).toFixed(1)}% of tokens (${m.tokens.toLocaleString("en-US")}), read in ${m.passes} pass${m.passes === 1 ? "" : "es"}\n`);
  }
  if (maxTokens !== undefined && r.tokens < maxTokens) {
    process.stdout.write(`the input${inputs.length > 1 ? "s" : ""} ran out at ${r.tokens.toLocaleString("en-US")} tokens, under --max-tokens ${maxTokens.toLocaleString("en-US")} ` +
      `(--repeat reads ${inputs.length > 1 ? "them" : "it"} again)\n`);
  }
  process.stdout.write(`train with: gpt2 train -i '${path.join(outDir, `${name}_train_*.bin`)}' -j '${path.join(outDir, `${name}_val_*.bin`)}'\n`);
}
