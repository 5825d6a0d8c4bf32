// gpt2 dashboard DIR... [--port P] [--host H]: the live page for runs read from their output dirs (re-read on
// every request, so a run still training updates too).   gpt2 plot DIR... [-o loss.png|.svg|.html] [--ref V ...]

import * as fs from "node:fs";
import * as path from "node:path";
import { startDashboard } from "../dashboard/server.js";
import { writePlot } from "../dashboard/plot.js";
import type { RunMetrics } from "../dashboard/charts.js";
import { readMetrics, readRunConfig, readRunStatus } from "../train/log.js";
import { num, parse, UsageError, commandHelp } from "./common.js";

function runsFrom(dirs: string[]): () => RunMetrics[] {
  for (const d of dirs) {
    if (!fs.existsSync(d)) throw new UsageError(`run directory ${d} does not exist`);
    if (!fs.existsSync(path.join(d, "metrics.jsonl")) && !fs.existsSync(path.join(d, "main.log"))) {
      throw new UsageError(`${d} holds no metrics.jsonl or main.log (is it a gpt2 train -o directory?)`);
    }
  }
  // read afresh at every request; a bad line is reported once and skipped, and a run that cannot be read shows as
  // empty (with one line on stderr) instead of failing the page for the healthy runs beside it
  const said = new Set<string>();
  const warn = (m: string) => { if (!said.has(m)) { said.add(m); process.stderr.write(`gpt2: warning: ${m}\n`); } };
  return () => dirs.map((d) => {
    const name = path.basename(path.resolve(d));
    const extra = { config: readRunConfig(d), status: readRunStatus(d) };
    try { return { name, metrics: readMetrics(d, warn), ...extra }; } catch (e) { warn((e as Error).message); return { name, metrics: [], ...extra }; }
  });
}

export const help = commandHelp({
  usage: "gpt2 dashboard DIR... [--port P] [--host H]",
  about: "A live page of runs (their -o folders, or llm.c main.log folders), re-read on every request.",
  flags: {
    port: { type: "string", arg: "P", help: "the port", shown: "any free one" },
    host: { type: "string", arg: "H", help: "the address to listen on", shown: "127.0.0.1" },
  },
});

export const plotHelp = commandHelp({
  usage: "gpt2 plot DIR... [-o loss.png|.svg|.html] [--ref 3.28] [--log] [--title T] [--x step|tokens|time]",
  about: "Loss and evaluation curves of runs (gpt2 train -o folders or llm.c log folders) as a still image or a page,\n" +
    "one colour per run, named in the legend.",
  flags: {
    out: { type: "string", short: "o", arg: "FILE", help: "the output: .png, .svg or .html", shown: "loss.png" },
    ref: { type: "string", multiple: true, arg: "V", help: "a reference line (repeatable; values below 1 go on the HellaSwag panel); the y range includes it" },
    log: { type: "boolean", help: "log-scale loss" },
    title: { type: "string", arg: "T", help: "the title", shown: "the runs' names" },
    x: { type: "string", arg: "step|tokens|time", help: "the x axis: optimizer steps, tokens seen, or hours", shown: "step" },
    smoothing: { type: "string", arg: "S", help: "exponential moving average of the train curves, 0 to 0.99 (the raw curve stays faint)", shown: "0" },
  },
});

export async function dashboardCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, help.flags, 64);
  if (positionals.length === 0) throw new UsageError("usage: gpt2 dashboard DIR... [--port P] [--host H]");
  const d = await startDashboard({ runs: runsFrom(positionals), port: num(values.port, "port", 0, { int: true, min: 0, max: 65535 }), host: values.host });
  process.stdout.write(`dashboard: ${d.url}  (Ctrl-C to stop)\n`);
  await new Promise<void>((resolve) => process.once("SIGINT", () => { void d.close().then(resolve); }));
}

export async function plotCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, plotHelp.flags, 64);
  if (positionals.length === 0) throw new UsageError("usage: gpt2 plot DIR... [-o loss.png|.svg|.html] [--ref 3.28 --ref 0.294] [--log]");
  const refs = ((values.ref ?? []) as string[]).map((r) => num(r, "ref", 0));
  const out = values.out ?? "loss.png";
  if (![".png", ".svg", ".html"].includes(path.extname(out).toLowerCase())) throw new UsageError(`-o ${out}: use a .png, .svg or .html file`);
  const x = values.x ?? "step";
  if (x !== "step" && x !== "tokens" && x !== "time") throw new UsageError(`--x expects step, tokens or time, got "${x}"`);
  const runs = runsFrom(positionals)();
  const title = values.title ?? runs.map((r) => r.name).join(", ");
  writePlot(out, runs, { refs, logScale: values.log, title, x, smoothing: num(values.smoothing, "smoothing", 0, { min: 0, max: 0.99 }) });
  process.stdout.write(`wrote ${out}\n`);
}
