// HellaSwag as build-nanogpt / llm.c score it: each of the 4 endings is appended to the context (joined with a
// space, i.e. " " + ending is tokenized), only ending tokens are scored; acc picks the lowest summed loss, acc_norm the
// lowest mean loss per token. Rows of several examples are batched into one forward pass.

import * as fs from "node:fs";
import * as path from "node:path";
import { download } from "../util/download.js";
import { FormatError } from "../io/files.js";
import type { GPT2 } from "../model/gpt2.js";
import { encode } from "../tokenizer/bpe.js";
import { cacheDir, env } from "../util/env.js";

export interface HellaExample {
  ctx: string;
  endings: string[];
  label: number;
}

export interface HellaDetail {
  index: number;
  label: number;
  pred: number;
  pred_norm: number;
  /** per ending: [sum of token losses, tokens] */
  losses: [number, number][];
}

export interface HellaResult {
  n: number;
  acc: number;
  acc_norm: number;
  details: HellaDetail[];
}

export const HELLASWAG_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl";

/** The validation set: a given path, or the public file downloaded once into the cache (GPT2_HELLASWAG_URL overrides). */
export async function hellaswagFile(data?: string, onDownload?: (url: string) => void, flag = "--data FILE"): Promise<string> {
  if (data) return data;
  const dest = path.join(cacheDir("hellaswag"), "hellaswag_val.jsonl");
  const url = env("GPT2_HELLASWAG_URL") ?? HELLASWAG_URL;
  if (!fs.existsSync(dest)) onDownload?.(url);
  return download(url, dest, { offline: `give a local copy of hellaswag_val.jsonl with ${flag}` });
}

/** Published reference points (acc_norm on the validation set). */
export const HELLASWAG_REFERENCES = { "GPT-2 124M": 0.2955, "GPT-3 125M": 0.337, random: 0.25 };

/** Reads the original JSONL; a malformed row stops with the file, line number and what is wrong. */
export function readHellaswag(file: string, limit = 0): HellaExample[] {
  if (!fs.existsSync(file)) throw new FormatError(`HellaSwag file ${file} does not exist`);
  const out: HellaExample[] = [];
  const lines = fs.readFileSync(file, "utf8").split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    const where = `${file}:${i + 1}`;
    let row: Record<string, unknown>;
    try { row = JSON.parse(lines[i]); } catch { throw new FormatError(`${where}: not valid JSON`); }
    if (!row || typeof row !== "object" || Array.isArray(row)) throw new FormatError(`${where}: expected an object with "ctx", "endings" and "label"`);
    if (typeof row.ctx !== "string") throw new FormatError(`${where}: missing string field "ctx"`);
    const endings = row.endings;
    if (!Array.isArray(endings) || endings.length !== 4 || !endings.every((e) => typeof e === "string")) {
      throw new FormatError(`${where}: "endings" must be an array of 4 strings`);
    }
    const empty = endings.findIndex((e: string) => e.trim() === "");
    if (empty >= 0) throw new FormatError(`${where}: ending ${empty} is empty (nothing to score)`);
    const label = row.label;
    if (!Number.isInteger(label) || (label as number) < 0 || (label as number) > 3) {
      throw new FormatError(`${where}: "label" must be 0, 1, 2 or 3, got ${JSON.stringify(label)}`);
    }
    out.push({ ctx: row.ctx, endings: endings as string[], label: label as number });
    if (limit > 0 && out.length >= limit) break;
  }
  if (out.length === 0) throw new FormatError(`${file} holds no examples`);
  return out;
}

/** Token rows of one example: 4 x (context + ending), and where each ending starts. */
export function renderExample(ex: HellaExample, maxT: number): { rows: number[][]; starts: number[] } {
  const ctx = encode(ex.ctx);
  const rows: number[][] = [], starts: number[] = [];
  for (const ending of ex.endings) {
    const end = encode(" " + ending);
    // keep the whole ending; drop context from the left if the row would not fit the model
    const room = Math.max(1, maxT + 1 - end.length);
    const c = ctx.slice(-room);
    rows.push([...c, ...end].slice(-(maxT + 1)));
    starts.push(Math.max(1, c.length));
  }
  return { rows, starts };
}

export async function evaluateHellaswag(model: GPT2, examples: HellaExample[], examplesPerBatch = 4,
  onProgress?: (done: number, total: number, accNorm: number) => void): Promise<HellaResult> {
  const maxT = model.context;
  const rendered = examples.map((e) => renderExample(e, maxT));
  let longest = 2;
  for (const r of rendered) for (const row of r.rows) longest = Math.max(longest, row.length);
  const T = longest - 1, B = 4 * examplesPerBatch;
  model.allocate(B, T);
  const details: HellaDetail[] = [];
  let correct = 0, correctNorm = 0;
  for (let e0 = 0; e0 < examples.length; e0 += examplesPerBatch) {
    const group = rendered.slice(e0, e0 + examplesPerBatch);
    const rows = group.length * 4;
    const inputs = new Int32Array(rows * T).fill(50256), targets = new Int32Array(rows * T).fill(-1);
    group.forEach((g, gi) => g.rows.forEach((row, k) => {
      const r = gi * 4 + k;
      for (let t = 0; t + 1 < row.length; t++) {
        inputs[r * T + t] = row[t];
        // position t predicts row[t+1]; only ending tokens count
        if (t + 1 >= g.starts[k]) targets[r * T + t] = row[t + 1];
      }
    }));
    await model.forwardAsync(inputs, targets, rows, T);
    const losses = await model.readLossesAsync();
    group.forEach((_, gi) => {
      const ex = examples[e0 + gi];
      const sums: [number, number][] = [];
      for (let k = 0; k < 4; k++) {
        const r = gi * 4 + k;
        let s = 0, n = 0;
        for (let t = 0; t < T; t++) if (targets[r * T + t] >= 0) { s += losses[r * T + t]; n++; }
        sums.push([s, n]);
      }
      let pred = 0, predNorm = 0;
      for (let k = 1; k < 4; k++) {
        if (sums[k][0] < sums[pred][0]) pred = k;
        if (sums[k][0] / sums[k][1] < sums[predNorm][0] / sums[predNorm][1]) predNorm = k;
      }
      if (pred === ex.label) correct++;
      if (predNorm === ex.label) correctNorm++;
      details.push({ index: e0 + gi, label: ex.label, pred, pred_norm: predNorm, losses: sums });
    });
    const done = Math.min(e0 + examplesPerBatch, examples.length);
    onProgress?.(done, examples.length, correctNorm / done);
  }
  return { n: examples.length, acc: correct / examples.length, acc_norm: correctNorm / examples.length, details };
}
