// gpt2 rm train -e MODEL --data pairs.jsonl ... : a reward model (the training flags of gpt2 train apply)
// gpt2 rm score --model RM --data FILE [--json]: the rewards it gives; on preference pairs, how often it prefers the chosen

import * as fs from "node:fs";
import { parsePair } from "../data/pairs.js";
import { parseExample, parseJsonl, renderExample, type Rendered } from "../chat/template.js";
import { findFiles } from "../data/sft.js";
import { loadModel, readModelKind } from "../io/load.js";
import { REWARD_ROW } from "../train/preference.js";
import { BACKEND_OPTIONS, backendFromFlags, parse, UsageError, modelPath, type CommandHelp } from "./common.js";
import { rmTrainCommand, trainingHelp } from "./train.js";

export const helps: Record<string, CommandHelp> = {
  "": { usage: "gpt2 rm train|score ...", about: "Reward models: gpt2 rm train --help, gpt2 rm score --help.", flags: {} },
  train: trainingHelp("rm"),
  score: {
    usage: "gpt2 rm score --model RM --data FILE [--json]",
    about: "The rewards a reward model gives: per pair (chosen, rejected, and the pair accuracy) or per answered row.",
    flags: {
      ...BACKEND_OPTIONS,
      model: { type: "string", arg: "RM", help: "a reward model (gpt2 rm train)" },
      data: { type: "string", arg: "FILE", help: "JSONL: preference pairs, or conversations / prompt-completion rows with their answer" },
      json: { type: "boolean", help: "one JSON object per row" },
    },
  },
};

export async function rmCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === "train") return rmTrainCommand(rest);
  if (sub === "score") return rmScore(rest);
  throw new UsageError(`usage: gpt2 rm train -e MODEL --data pairs.jsonl ... | gpt2 rm score --model RM --data FILE${sub ? ` (unknown "${sub}")` : ""}`);
}

async function rmScore(argv: string[]): Promise<void> {
  const { values } = parse(argv, helps.score.flags);
  if (!values.model || !values.data) throw new UsageError("usage: gpt2 rm score --model RM --data FILE [--json]");
  const file = await modelPath(values.model);
  const kind = readModelKind(file);
  if (kind.kind !== "reward-model") throw new UsageError(`${values.model} is not a reward model (make one with gpt2 rm train)`);
  const row = kind.scoreRow ?? REWARD_ROW;
  // rows: preference pairs ({"chosen", "rejected"}) or answered conversations / prompt-completion rows
  const items: { where: string; seqs: Rendered[] }[] = [];
  for (const file of findFiles(values.data, "JSONL files")) {
    for (const { row: r, where } of parseJsonl(fs.readFileSync(file, "utf8"), file)) {
      const isPair = r !== null && typeof r === "object" && "chosen" in (r as object);
      if (isPair) { const p = parsePair(r, where); items.push({ where, seqs: [p.chosen, p.rejected] }); } else items.push({ where, seqs: [renderExample(parseExample(r, where))] });
    }
  }
  const model = await loadModel(file, await backendFromFlags(values));
  const T = Math.min(model.context, Math.max(...items.flatMap((i) => i.seqs.map((s) => s.ids.length))));
  model.allocate(2, T);
  let pairs = 0, preferred = 0;
  for (const item of items) {
    const seqs = item.seqs.map((s) => s.ids.slice(0, T));
    const t = Math.max(...seqs.map((s) => s.length));
    const inputs = new Int32Array(seqs.length * t).fill(50256), last = new Int32Array(seqs.length);
    seqs.forEach((s, b) => { inputs.set(s, b * t); last[b] = b * t + s.length - 1; });
    const r = await model.scoresAsync(inputs, seqs.length, t, last, row);
    if (seqs.length === 2) { pairs++; if (r[0] > r[1]) preferred++; }
    if (values.json) process.stdout.write(JSON.stringify(seqs.length === 2 ? { where: item.where, chosen: r[0], rejected: r[1] } : { where: item.where, reward: r[0] }) + "\n");
    else process.stdout.write(`${item.where}\t${seqs.length === 2 ? `chosen ${r[0].toFixed(4)}\trejected ${r[1].toFixed(4)}` : `reward ${r[0].toFixed(4)}`}\n`);
  }
  if (pairs && !values.json) process.stdout.write(`pair accuracy: ${preferred}/${pairs} = ${(100 * preferred / pairs).toFixed(1)}% (the chosen answer scored higher)\n`);
}
