// Run logs: main.log in llm.c's line format (existing plotting tools read it) and metrics.jsonl with every field.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ioError } from "../io/files.js";
import { makeDir } from "../util/fs.js";
import type { RunStatus as RunStatusRecord } from "../dashboard/charts.js";

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
  /** tokens the loss was taken over in this step (SFT: the assistant tokens) */
  trained_tokens?: number;
  /** when the record was written (ISO; metrics.jsonl and the live dashboard) */
  time?: string;
}

export class RunLog {
  readonly mainLog: string;
  readonly metrics: string;

  constructor(readonly dir: string) {
    makeDir(dir);
    this.mainLog = path.join(dir, "main.log");
    this.metrics = path.join(dir, "metrics.jsonl");
  }

  /**
   * status.json: what the run is doing (the dashboard's badge, progress and ETA), rewritten whole at each step. The
   * process's pid and host let a reader tell a run that is still going from one that was killed (crashed).
   */
  status(s: { state: "running" | "finished" | "stopped" | "failed"; step: number; max_steps: number; eta_s?: number; message?: string }): void {
    const file = path.join(this.dir, "status.json"), tmp = `${file}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, JSON.stringify({ ...s, pid: process.pid, host: os.hostname(), updated: new Date().toISOString() }) + "\n");
      fs.renameSync(tmp, file);
    } catch { /* the status is a convenience: a full disk is reported by the logs and checkpoints */ }
  }

  writeConfig(config: object): void {
    const file = path.join(this.dir, "config.json");
    try { fs.writeFileSync(file, JSON.stringify(config, null, 2) + "\n"); } catch (e) { throw ioError(e, `writing ${file}`); }
  }

  /**
   * A run resumed from the checkpoint of `step` continues the logs from there: records of later steps (written after
   * that checkpoint, before the run stopped) are dropped, as are the evaluations at `step` itself that the resumed
   * run repeats (`redone`), so no step appears twice. A last line cut short by a crash or a full disk goes too.
   */
  resumeAt(step: number, redone: (m: StepMetrics) => boolean): void {
    const keep = (m: StepMetrics) => m.step < step || (m.step === step && !redone(m));
    if (fs.existsSync(this.metrics)) {
      const lines = fs.readFileSync(this.metrics, "utf8").split("\n").filter((l) => {
        try { return keep(JSON.parse(l) as StepMetrics); } catch { return false; }
      });
      this.rewrite(this.metrics, lines);
    }
    if (fs.existsSync(this.mainLog)) {
      const lines = fs.readFileSync(this.mainLog, "utf8").split("\n").filter((l) => {
        const m = parseMainLogLine(l);
        return m !== null && keep(m);
      });
      this.rewrite(this.mainLog, lines);
    }
  }

  private rewrite(file: string, lines: string[]): void {
    try { fs.writeFileSync(file, lines.map((l) => l + "\n").join("")); } catch (e) { throw ioError(e, `writing ${file}`); }
  }

  write(m: StepMetrics): void {
    const lines: string[] = [];
    if (m.train_loss !== undefined) lines.push(`s:${m.step} trl:${m.train_loss.toFixed(4)} lr:${(m.lr ?? 0).toFixed(6)} norm:${(m.norm ?? 0).toFixed(2)}`);
    if (m.val_loss !== undefined) lines.push(`s:${m.step} tel:${m.val_loss.toFixed(4)}`);
    if (m.hellaswag !== undefined) lines.push(`s:${m.step} eval:${m.hellaswag.toFixed(4)}`);
    try {
      if (lines.length) appendLines(this.mainLog, lines.join("\n") + "\n");
      appendLines(this.metrics, JSON.stringify({ ...m, time: new Date().toISOString() }) + "\n");
    } catch (e) {
      throw ioError(e, `writing the logs in ${this.dir}`);
    }
  }
}

/** Appends text, first ending a last line that a crash left without its newline (so records never run together). */
function appendLines(file: string, text: string): void {
  let fd = -1;
  try {
    fd = fs.openSync(file, "a+");
    const size = fs.fstatSync(fd).size;
    if (size > 0) {
      const last = Buffer.alloc(1);
      fs.readSync(fd, last, 0, 1, size - 1);
      if (last[0] !== 10) text = "\n" + text;
    }
    fs.writeSync(fd, text);
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}

function parseMainLogLine(line: string): StepMetrics | null {
  const m = /^s:(\d+) (trl|tel|eval):([-\d.eE+naif]+)/.exec(line);
  if (!m) return null;
  const rec: StepMetrics = { step: Number(m[1]) };
  const v = Number(m[3]);
  if (m[2] === "trl") rec.train_loss = v; else if (m[2] === "tel") rec.val_loss = v; else rec.hellaswag = v;
  const lr = /lr:([\d.eE+-]+)/.exec(line), norm = /norm:([\d.eE+-]+)/.exec(line);
  if (lr) rec.lr = Number(lr[1]);
  if (norm) rec.norm = Number(norm[1]);
  return rec;
}

/**
 * Reads a run's metrics (metrics.jsonl, else main.log: ours or llm.c's). A line that is not a record (cut short by a
 * crash or a full disk, edited by hand) is skipped and reported through `warn` with its file:line.
 */
export function readMetrics(dir: string, warn: (message: string) => void = () => {}): StepMetrics[] {
  const jsonl = path.join(dir, "metrics.jsonl"), main = path.join(dir, "main.log");
  if (fs.existsSync(jsonl)) {
    const out: StepMetrics[] = [];
    fs.readFileSync(jsonl, "utf8").split("\n").forEach((l, i) => {
      if (!l.trim()) return;
      let rec: unknown;
      try { rec = JSON.parse(l); } catch { rec = null; }
      const r = rec as StepMetrics | null;
      if (r && typeof r === "object" && Number.isFinite(r.step)) out.push(r);
      else warn(`${jsonl}:${i + 1}: skipped a line that is not a metrics record`);
    });
    return out;
  }
  if (fs.existsSync(main)) {
    const out: StepMetrics[] = [];
    for (const line of fs.readFileSync(main, "utf8").split("\n")) {
      const rec = parseMainLogLine(line);
      if (rec) out.push(rec);
    }
    return out;
  }
  throw new Error(`${dir} holds no metrics.jsonl or main.log`);
}

/** A run's status.json as the dashboard shows it; "running" with a pid that no longer exists here is "crashed". */
export function readRunStatus(dir: string): RunStatusRecord | null {
  let s: { state?: unknown; step?: unknown; max_steps?: unknown; pid?: unknown; host?: unknown };
  try { s = JSON.parse(fs.readFileSync(path.join(dir, "status.json"), "utf8")); } catch { return null; }
  if (!s || !["running", "finished", "stopped", "failed"].includes(s.state as string) || typeof s.step !== "number" || typeof s.max_steps !== "number") return null;
  const out = s as RunStatusRecord & { pid?: number; host?: string };
  if (out.state === "running" && out.host === os.hostname() && typeof out.pid === "number") {
    try { process.kill(out.pid, 0); } catch (e) { if ((e as NodeJS.ErrnoException).code === "ESRCH") out.state = "crashed"; }
  }
  return out;
}

/** A run's config.json (its settings), or null. */
export function readRunConfig(dir: string): Record<string, unknown> | null {
  try {
    const c = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as unknown;
    return c && typeof c === "object" && !Array.isArray(c) ? (c as Record<string, unknown>) : null;
  } catch { return null; }
}
