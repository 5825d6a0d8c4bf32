// Run logs: main.log in llm.c's line format (existing plotting tools read it) and metrics.jsonl with every field.

import * as fs from "node:fs";
import * as path from "node:path";

export interface StepMetrics {
  step: number;
  train_loss?: number;
  val_loss?: number;
  hellaswag?: number;
  lr?: number;
  norm?: number;
  ms?: number;
  tokens_per_s?: number;
  mfu?: number | null;
  epoch?: number;
  elapsed_s?: number;
  sample?: string;
  z_loss?: number | null;
  z_norm?: number | null;
  skipped?: boolean;
  event?: string;
}

export class RunLog {
  readonly mainLog: string;
  readonly metrics: string;

  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.mainLog = path.join(dir, "main.log");
    this.metrics = path.join(dir, "metrics.jsonl");
  }

  writeConfig(config: object): void {
    fs.writeFileSync(path.join(this.dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  }

  write(m: StepMetrics): void {
    const lines: string[] = [];
    if (m.train_loss !== undefined) lines.push(`s:${m.step} trl:${m.train_loss.toFixed(4)} lr:${(m.lr ?? 0).toFixed(6)} norm:${(m.norm ?? 0).toFixed(2)}`);
    if (m.val_loss !== undefined) lines.push(`s:${m.step} tel:${m.val_loss.toFixed(4)}`);
    if (m.hellaswag !== undefined) lines.push(`s:${m.step} eval:${m.hellaswag.toFixed(4)}`);
    if (lines.length) fs.appendFileSync(this.mainLog, lines.join("\n") + "\n");
    fs.appendFileSync(this.metrics, JSON.stringify({ ...m, time: new Date().toISOString() }) + "\n");
  }
}

/** Reads a run's metrics (metrics.jsonl, else main.log), keeping the last record of each step and kind. */
export function readMetrics(dir: string): StepMetrics[] {
  const jsonl = path.join(dir, "metrics.jsonl"), main = path.join(dir, "main.log");
  if (fs.existsSync(jsonl)) {
    return fs.readFileSync(jsonl, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as StepMetrics);
  }
  if (fs.existsSync(main)) {
    const out: StepMetrics[] = [];
    for (const line of fs.readFileSync(main, "utf8").split("\n")) {
      const m = /^s:(\d+) (trl|tel|eval):([-\d.eE+naif]+)/.exec(line);
      if (!m) continue;
      const rec: StepMetrics = { step: Number(m[1]) };
      const v = Number(m[3]);
      if (m[2] === "trl") rec.train_loss = v; else if (m[2] === "tel") rec.val_loss = v; else rec.hellaswag = v;
      const lr = /lr:([\d.eE+-]+)/.exec(line), norm = /norm:([\d.eE+-]+)/.exec(line);
      if (lr) rec.lr = Number(lr[1]);
      if (norm) rec.norm = Number(norm[1]);
      out.push(rec);
    }
    return out;
  }
  throw new Error(`${dir} holds no metrics.jsonl or main.log`);
}
