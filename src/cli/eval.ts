// gpt2 eval loss --model PATH (--tokens FILE | --data GLOB [--batches N]) [--json]
// gpt2 eval hellaswag --model PATH [--data hellaswag_val.jsonl] [--limit N] [--batch N] [--json] [--details]
// gpt2 eval chat --model PATH --data tasks.jsonl [--limit N] [--max-new-tokens N] [--json] [--details]

import * as fs from "node:fs";
import { DataLoader } from "../data/loader.js";
import { readShardHeader, readShardTokens } from "../data/shard.js";
import { evaluateHellaswag, hellaswagFile, HELLASWAG_REFERENCES, readHellaswag } from "../eval/hellaswag.js";
import { datasetLoss, sequenceLoss } from "../eval/loss.js";
import { readExamples } from "../data/sft.js";
import { evaluateChat } from "../eval/chat.js";
import { loadModel, requireGpt2Tokenizer } from "../io/load.js";
import { CHAT_VOCAB_SIZE } from "../tokenizer/bpe.js";
import { countParams } from "../model/layout.js";
import { BACKEND_OPTIONS, backendFromFlags, modelPath, num, parse, parseIds, progress, UsageError, type CommandHelp } from "./common.js";

const MODEL = { type: "string", arg: "PATH|NAME", help: "the model: a file or folder, or a name (gpt2, ..., ORG/REPO) pulled on first use" } as const;
const JSON_FLAG = { type: "boolean", help: "one JSON object on stdout" } as const;

export const helps: Record<string, CommandHelp> = {
  "": { usage: "gpt2 eval loss|hellaswag|chat --model PATH ...", about: "Evaluations: mean next-token loss, HellaSwag, exact match of chat answers.", flags: {},
    more: "gpt2 eval loss --help, gpt2 eval hellaswag --help, gpt2 eval chat --help: each one's flags." },
  loss: {
    usage: "gpt2 eval loss --model PATH|NAME (--tokens FILE | --data 'GLOB') [flags]", about: "Mean next-token cross-entropy over token sequences or shards.",
    flags: {
      ...BACKEND_OPTIONS, model: MODEL,
      tokens: { type: "string", arg: "FILE", help: "a JSON array of token-id sequences (or one sequence), or a shard: every position once, in block-size windows" },
      data: { type: "string", arg: "GLOB", help: "shards, read in batches of --batch x --seq" },
      batches: { type: "string", arg: "N", help: "with --data: batches to read", shown: "all of one pass" },
      batch: { type: "string", arg: "B", help: "with --data: rows per batch", shown: "4" },
      seq: { type: "string", arg: "T", help: "with --data: sequence length", shown: "min(1024, the model's context)" },
      json: JSON_FLAG,
    },
  },
  hellaswag: {
    usage: "gpt2 eval hellaswag --model PATH|NAME [--data hellaswag_val.jsonl] [flags]",
    about: "HellaSwag as build-nanogpt / llm.c score it: acc (summed ending loss) and acc_norm (mean per token).",
    flags: {
      ...BACKEND_OPTIONS, model: MODEL,
      data: { type: "string", arg: "FILE", help: "the validation JSONL", shown: "downloaded once into the cache's hellaswag/ (GPT2_CACHE, GPT2_HELLASWAG_URL)" },
      limit: { type: "string", arg: "N", help: "the first N examples (0: all 10,042)", shown: "0" },
      batch: { type: "string", arg: "N", help: "examples per forward pass (x4 rows)", shown: "4" },
      json: JSON_FLAG, details: { type: "boolean", help: "with --json: every example's losses and predictions" },
    },
  },
  chat: {
    usage: "gpt2 eval chat --model PATH|NAME --data tasks.jsonl [flags]",
    about: "Exact match of greedy answers: each row's conversation up to its last assistant message is the prompt, that message the reference (or a prompt/completion row's prompt and completion).",
    flags: {
      ...BACKEND_OPTIONS, model: MODEL,
      data: { type: "string", arg: "FILE", help: "JSONL rows {\"messages\": [...]} or {\"prompt\", \"completion\"}" },
      limit: { type: "string", arg: "N", help: "the first N rows (0: all)", shown: "0" },
      "max-new-tokens": { type: "string", arg: "N", help: "tokens an answer may have", shown: "twice the reference's, plus 8" },
      json: JSON_FLAG, details: { type: "boolean", help: "list every answer (with --json: in the object)" },
    },
  },
};

export async function evalCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === "loss") return evalLoss(rest);
  if (sub === "hellaswag") return evalHellaswag(rest);
  if (sub === "chat") return evalChat(rest);
  throw new UsageError(`usage: gpt2 eval loss|hellaswag|chat --model PATH ...${sub ? ` (unknown eval "${sub}")` : ""}`);
}

async function evalLoss(argv: string[]): Promise<void> {
  const { values } = parse(argv, helps.loss.flags);
  if (!values.model) throw new UsageError("--model PATH is required");
  if (!values.tokens && !values.data) throw new UsageError("--tokens FILE is required (a JSON array of token-id sequences, or a shard), or --data 'GLOB' of shards");
  const model = await loadModel(await modelPath(values.model), await backendFromFlags(values));
  let loss: number, tokens: number;
  if (values.data) {
    const T = num(values.seq, "seq", Math.min(1024, model.context), { int: true, min: 1, max: model.context });
    const B = num(values.batch, "batch", 4, { int: true, min: 1 });
    const loader = new DataLoader(values.data, B, T, { vocabSize: model.config.vocabSize });
    const batches = num(values.batches, "batches", loader.batchesPerEpoch, { int: true, min: 1 });
    const p = values.json ? null : progress("  batches");
    loss = await datasetLoss(model, loader, batches, (d, t) => p?.update(d, t));
    p?.end();
    tokens = Math.min(batches, loader.batchesPerEpoch) * B * T;
  } else {
    if (!fs.existsSync(values.tokens!)) throw new UsageError(`tokens file ${values.tokens} does not exist`);
    const seqs = readSequences(values.tokens!);
    const p = values.json || seqs.length < 2 ? null : progress("  sequences");
    ({ loss, tokens } = await sequenceLoss(model, seqs, (d) => p?.update(d, seqs.length)));
    p?.end();
  }
  if (values.json) process.stdout.write(JSON.stringify({ loss, tokens }) + "\n");
  else process.stdout.write(`loss ${loss.toFixed(6)} over ${tokens} predicted tokens\n`);
}

function readSequences(file: string): number[][] {
  if (file.endsWith(".bin")) {
    // a token shard: one sequence, cut into block-size windows by sequenceLoss (ids checked against the vocabulary)
    const info = readShardHeader(file);
    return [Array.from(readShardTokens(info, 0, info.tokens))];
  }
  const text = fs.readFileSync(file, "utf8");
  let data: unknown;
  try { data = JSON.parse(text); } catch { throw new UsageError(`${file}: not valid JSON (expected an array of token-id arrays)`); }
  if (!Array.isArray(data)) throw new UsageError(`${file}: expected a JSON array of token-id arrays`);
  const seqs = (data.length > 0 && typeof data[0] === "number" ? [data] : data) as unknown[];
  return seqs.map((s, i) => {
    if (!Array.isArray(s)) throw new UsageError(`${file}: sequence ${i} is not an array`);
    return parseIds(JSON.stringify(s), `${file} sequence ${i}`);
  });
}

async function evalHellaswag(argv: string[]): Promise<void> {
  const { values } = parse(argv, helps.hellaswag.flags);
  if (!values.model) throw new UsageError("--model PATH is required");
  const examples = readHellaswag(await hellaswagFile(values.data, (u) => process.stderr.write(`downloading ${u}\n`)), num(values.limit, "limit", 0, { int: true, min: 0 }));
  const file = await modelPath(values.model);
  requireGpt2Tokenizer(file, "HellaSwag");
  const model = await loadModel(file, await backendFromFlags(values));
  const t0 = performance.now();
  const p = values.json ? null : progress("  examples");
  const r = await evaluateHellaswag(model, examples, num(values.batch, "batch", 4, { int: true, min: 1 }), (done, total, accNorm) => {
    p?.update(done, total, `acc_norm so far ${(100 * accNorm).toFixed(1)}%`);
  });
  p?.end();
  const secs = (performance.now() - t0) / 1000;
  if (values.json) {
    process.stdout.write(JSON.stringify({ n: r.n, acc: r.acc, acc_norm: r.acc_norm, examples_per_s: r.n / secs, ...(values.details ? { details: r.details } : {}) }) + "\n");
    return;
  }
  process.stdout.write(`HellaSwag: ${r.n} examples, acc ${(100 * r.acc).toFixed(2)}%, acc_norm ${(100 * r.acc_norm).toFixed(2)}% ` +
    `(${(r.n / secs).toFixed(2)} examples/s)\n`);
  const params = countParams(model.config);
  if (params > 100e6 && params < 150e6) {
    process.stdout.write(`reference (acc_norm): ${Object.entries(HELLASWAG_REFERENCES).map(([k, v]) => `${k} ${(100 * v).toFixed(1)}%`).join(", ")}\n`);
  }
}

async function evalChat(argv: string[]): Promise<void> {
  const { values } = parse(argv, helps.chat.flags);
  if (!values.model) throw new UsageError("--model PATH is required");
  if (!values.data) throw new UsageError("--data FILE.jsonl is required: rows {\"messages\": [...]} (the last assistant message is the reference) or {\"prompt\", \"completion\"}");
  const limit = num(values.limit, "limit", 0, { int: true, min: 0 });
  const rows = readExamples(values.data).map((r) => r.example);
  const examples = limit > 0 ? rows.slice(0, limit) : rows;
  const file = await modelPath(values.model);
  requireGpt2Tokenizer(file, "gpt2 eval chat");
  const model = await loadModel(file, await backendFromFlags(values), "language-model");
  if (examples.some((e) => e.kind === "chat") && model.config.vocabSize < CHAT_VOCAB_SIZE) {
    // a base model scored on conversations: it gets the chat tokens as SFT would give them, untrained
    await model.extendVocab(CHAT_VOCAB_SIZE);
    if (!values.json) process.stderr.write("note: the model has no chat tokens; they are added untrained (as gpt2 sft starts), so this is the before-SFT score\n");
  }
  const p = values.json ? null : progress("  rows");
  const t0 = performance.now();
  const r = await evaluateChat(model, examples, {
    maxTokens: values["max-new-tokens"] === undefined ? undefined : num(values["max-new-tokens"], "max-new-tokens", 0, { int: true, min: 1 }),
    onProgress: (done, correct) => p?.update(done, examples.length, `${correct} exact so far`),
  });
  p?.end();
  const secs = (performance.now() - t0) / 1000;
  if (values.json) {
    process.stdout.write(JSON.stringify({ n: r.n, correct: r.correct, accuracy: r.accuracy, seconds: secs, ...(values.details ? { details: r.details } : {}) }) + "\n");
    return;
  }
  process.stdout.write(`exact match: ${r.correct}/${r.n} = ${(100 * r.accuracy).toFixed(1)}% (greedy, ${secs.toFixed(1)} s)\n`);
  if (values.details) {
    for (const d of r.details) process.stdout.write(`${d.correct ? "ok  " : "MISS"} ${JSON.stringify(d.prompt.slice(-80))} -> ${JSON.stringify(d.answer)} (want ${JSON.stringify(d.reference)})\n`);
  }
}
