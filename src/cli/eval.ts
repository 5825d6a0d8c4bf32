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
import { loadModel } from "../io/load.js";
import { CHAT_VOCAB_SIZE } from "../tokenizer/bpe.js";
import { countParams } from "../model/layout.js";
import { BACKEND_OPTIONS, backendFromFlags, num, parse, parseIds, UsageError, modelPath } from "./common.js";

export async function evalCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === "loss") return evalLoss(rest);
  if (sub === "hellaswag") return evalHellaswag(rest);
  if (sub === "chat") return evalChat(rest);
  throw new UsageError(`usage: gpt2 eval loss|hellaswag|chat --model PATH ...${sub ? ` (unknown eval "${sub}")` : ""}`);
}

async function evalLoss(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    ...BACKEND_OPTIONS, model: { type: "string" }, tokens: { type: "string" }, data: { type: "string" },
    batches: { type: "string" }, batch: { type: "string" }, seq: { type: "string" }, json: { type: "boolean" },
  });
  if (!values.model) throw new UsageError("--model PATH is required");
  if (!values.tokens && !values.data) throw new UsageError("--tokens FILE is required (a JSON array of token-id sequences, or a shard), or --data 'GLOB' of shards");
  const model = loadModel(await modelPath(values.model), backendFromFlags(values));
  let loss: number, tokens: number;
  if (values.data) {
    const T = num(values.seq, "seq", Math.min(1024, model.config.blockSize), { int: true, min: 1, max: model.config.blockSize });
    const B = num(values.batch, "batch", 4, { int: true, min: 1 });
    const loader = new DataLoader(values.data, B, T, { vocabSize: model.config.vocabSize });
    const batches = num(values.batches, "batches", loader.batchesPerEpoch, { int: true, min: 1 });
    loss = datasetLoss(model, loader, batches);
    tokens = Math.min(batches, loader.batchesPerEpoch) * B * T;
  } else {
    if (!fs.existsSync(values.tokens!)) throw new UsageError(`tokens file ${values.tokens} does not exist`);
    ({ loss, tokens } = sequenceLoss(model, readSequences(values.tokens!)));
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
  const { values } = parse(argv, {
    ...BACKEND_OPTIONS, model: { type: "string" }, data: { type: "string" }, limit: { type: "string" },
    batch: { type: "string" }, json: { type: "boolean" }, details: { type: "boolean" },
  });
  if (!values.model) throw new UsageError("--model PATH is required");
  const examples = readHellaswag(await hellaswagFile(values.data, (u) => process.stderr.write(`downloading ${u}\n`)), num(values.limit, "limit", 0, { int: true, min: 0 }));
  const model = loadModel(await modelPath(values.model), backendFromFlags(values));
  const t0 = performance.now();
  const tty = process.stderr.isTTY && !values.json;
  const r = evaluateHellaswag(model, examples, num(values.batch, "batch", 4, { int: true, min: 1 }), (done, total) => {
    if (tty) process.stderr.write(`\r  ${done}/${total} examples, ${(done / ((performance.now() - t0) / 1000)).toFixed(1)} examples/s   `);
  });
  if (tty) process.stderr.write("\n");
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
  const { values } = parse(argv, {
    ...BACKEND_OPTIONS, model: { type: "string" }, data: { type: "string" }, limit: { type: "string" },
    "max-new-tokens": { type: "string" }, json: { type: "boolean" }, details: { type: "boolean" },
  });
  if (!values.model) throw new UsageError("--model PATH is required");
  if (!values.data) throw new UsageError("--data FILE.jsonl is required: rows {\"messages\": [...]} (the last assistant message is the reference) or {\"prompt\", \"completion\"}");
  const limit = num(values.limit, "limit", 0, { int: true, min: 0 });
  const rows = readExamples(values.data).map((r) => r.example);
  const examples = limit > 0 ? rows.slice(0, limit) : rows;
  const model = loadModel(await modelPath(values.model), backendFromFlags(values), "language-model");
  if (examples.some((e) => e.kind === "chat") && model.config.vocabSize < CHAT_VOCAB_SIZE) {
    // a base model scored on conversations: it gets the chat tokens as SFT would give them, untrained
    model.extendVocab(CHAT_VOCAB_SIZE);
    if (!values.json) process.stderr.write("note: the model has no chat tokens; they are added untrained (as gpt2 sft starts), so this is the before-SFT score\n");
  }
  const tty = process.stderr.isTTY && !values.json;
  const t0 = performance.now();
  const r = await evaluateChat(model, examples, {
    maxTokens: values["max-new-tokens"] === undefined ? undefined : num(values["max-new-tokens"], "max-new-tokens", 0, { int: true, min: 1 }),
    onProgress: (done, correct) => { if (tty) process.stderr.write(`\r  ${done}/${examples.length}, ${correct} exact so far   `); },
  });
  if (tty) process.stderr.write("\n");
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
