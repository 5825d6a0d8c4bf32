// gpt2 eval loss --model PATH (--tokens FILE | --data GLOB) [--json]

import * as fs from "node:fs";
import { sequenceLoss } from "../eval/loss.js";
import { loadModel } from "../io/load.js";
import { BACKEND_OPTIONS, backendFromFlags, parse, parseIds, UsageError } from "./common.js";

export async function evalCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === "loss") return evalLoss(rest);
  throw new UsageError(`usage: gpt2 eval loss --model PATH --tokens FILE [--json]${sub ? ` (unknown eval "${sub}")` : ""}`);
}

async function evalLoss(argv: string[]): Promise<void> {
  const { values } = parse(argv, { ...BACKEND_OPTIONS, model: { type: "string" }, tokens: { type: "string" }, json: { type: "boolean" } });
  if (!values.model) throw new UsageError("--model PATH is required");
  if (!values.tokens) throw new UsageError("--tokens FILE is required (a JSON array of token-id sequences)");
  if (!fs.existsSync(values.tokens)) throw new UsageError(`tokens file ${values.tokens} does not exist`);
  const seqs = readSequences(values.tokens);
  const model = loadModel(values.model, backendFromFlags(values));
  const { loss, tokens } = sequenceLoss(model, seqs);
  if (values.json) process.stdout.write(JSON.stringify({ loss, tokens }) + "\n");
  else process.stdout.write(`loss ${loss.toFixed(6)} over ${tokens} predicted tokens\n`);
}

function readSequences(file: string): number[][] {
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
