// gpt2 train: llm.c's train_gpt2 flags (same letters and meanings), each also a long option, plus --config FILE.

import * as fs from "node:fs";
import * as path from "node:path";
import { startDashboard } from "../dashboard/server.js";
import { loadNativeAddon } from "../kernels/native.js";
import { DEFAULTS, mergeConfig, type TrainConfig } from "../train/config.js";
import type { StepMetrics } from "../train/log.js";
import { train } from "../train/loop.js";
import { backendFromFlags, num, parse, UsageError } from "./common.js";

/** flag -> [config key, short letter] */
const FLAGS: Record<string, [keyof TrainConfig, string?]> = {
  "train-data": ["trainData", "i"], "val-data": ["valData", "j"], "output-dir": ["outDir", "o"], init: ["init", "e"],
  "n-layer": ["nLayer"], "n-head": ["nHead"], "n-embd": ["nEmbd"],
  "batch-size": ["batchSize", "b"], "seq-len": ["seqLen", "t"], "total-batch": ["totalBatch", "d"], "max-steps": ["maxSteps", "x"],
  "learning-rate": ["lr", "l"], warmup: ["warmup", "u"], schedule: ["schedule", "k"], "final-lr-frac": ["finalLrFrac", "q"],
  "weight-decay": ["weightDecay", "c"], "grad-clip": ["gradClip"],
  "val-every": ["valEvery", "v"], "val-batches": ["valBatches", "m"], "sample-every": ["sampleEvery", "s"],
  "gen-tokens": ["genTokens", "g"], hellaswag: ["hellaswag", "h"], "hellaswag-data": ["hellaswagData"], "hellaswag-limit": ["hellaswagLimit"],
  "checkpoint-every": ["checkpointEvery", "n"], keep: ["keep"], resume: ["resume", "y"], recompute: ["recompute", "r"],
  "overfit-single-batch": ["overfitSingleBatch", "a"], dtype: ["dtype"], "skip-update-z": ["skipUpdateZ"],
  "on-nan": ["onNan"], "rollback-lr-factor": ["rollbackLrFactor"], seed: ["seed"], backend: ["backend"], threads: ["threads"],
};
/** llm.c's two-letter flags, which node's parser cannot take as short options */
const LLMC_LONG: Record<string, string> = { "-nk": "--keep" };

export function parseTrainArgs(argv: string[]): TrainConfig {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = { config: { type: "string" }, "no-shuffle": { type: "boolean" } };
  for (const [name, [, short]] of Object.entries(FLAGS)) options[name] = short ? { type: "string", short } : { type: "string" };
  const { values } = parse(argv.map((a) => LLMC_LONG[a] ?? a), options);
  let cfg = DEFAULTS;
  if (values.config) {
    if (!fs.existsSync(values.config)) throw new UsageError(`config file ${values.config} does not exist`);
    let json: Record<string, unknown>;
    try { json = JSON.parse(fs.readFileSync(values.config, "utf8")); } catch { throw new UsageError(`${values.config}: not valid JSON`); }
    cfg = mergeConfig(cfg, json, values.config);
  }
  const over: Record<string, unknown> = {};
  for (const [name, [key, short]] of Object.entries(FLAGS)) {
    const raw = values[name] as string | undefined;
    if (raw === undefined) continue;
    const flag = short ? `-${short}/--${name}` : `--${name}`;
    if (typeof DEFAULTS[key] === "number") {
      const v = Number(raw);
      if (raw === "" || !Number.isFinite(v)) throw new UsageError(`${flag} expects a number, got "${raw}"`);
      over[key] = v;
    } else over[key] = raw;
  }
  if (values["no-shuffle"]) over.shuffle = 0;
  return mergeConfig(cfg, over, "flags");
}

/** Splits the dashboard flags (CLI-only, not part of the run's config) from the training flags. */
function dashboardFlags(argv: string[]): { rest: string[]; on: boolean; port?: string; host?: string } {
  const rest: string[] = [];
  const out: { on: boolean; port?: string; host?: string } = { on: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    if (flag === "--dashboard") out.on = true;
    else if (flag === "--dashboard-port" || flag === "--dashboard-host") {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      if (flag === "--dashboard-port") out.port = v; else out.host = v;
    } else rest.push(argv[i]);
  }
  return { rest, ...out };
}

export async function trainCommand(argv: string[]): Promise<void> {
  const dash = dashboardFlags(argv);
  const cfg = parseTrainArgs(dash.rest);
  const backend = backendFromFlags({ backend: cfg.backend || undefined, threads: cfg.threads ? String(cfg.threads) : undefined, dtype: cfg.dtype });
  const { addon } = loadNativeAddon();
  const peak = backend.name === "native" && addon ? addon.measurePeakGflops(0.2) : NaN;
  const signal = { stop: false };
  const live: StepMetrics[] = [];
  const dashboard = dash.on ? await startDashboard({
    runs: () => [{ name: cfg.outDir ? path.basename(path.resolve(cfg.outDir)) : "run", metrics: live }],
    port: dash.port === undefined ? 0 : num(dash.port, "dashboard-port", 0, { int: true, min: 0, max: 65535 }), host: dash.host,
  }) : null;
  if (dashboard) process.stdout.write(`dashboard: ${dashboard.url}\n`);
  const onSigint = () => {
    if (signal.stop) process.exit(130); // a second Ctrl-C quits at once
    signal.stop = true;
    process.stderr.write("\nCtrl-C: finishing this step and writing a checkpoint (Ctrl-C again to quit now)\n");
  };
  process.on("SIGINT", onSigint);
  try {
    // test hooks (see test/train): a gradient spike, or an unconditional skip, at a given step
    const envStep = (k: string) => (process.env[k] ? Number(process.env[k]) : undefined);
    const r = await train(cfg, backend, {
      print: (l) => process.stdout.write(l + "\n"), signal, peakGflops: peak, onMetrics: (m) => live.push(m),
      spikeStep: envStep("GPT2_TEST_SPIKE_STEP"), skipStep: envStep("GPT2_TEST_SKIP_STEP"),
    });
    if (r.checkpoint) {
      process.stdout.write(`done: ${r.steps} steps, train loss ${r.lastTrainLoss.toFixed(4)}` +
        `${Number.isFinite(r.lastValLoss) ? `, val loss ${r.lastValLoss.toFixed(4)}` : ""}\n` +
        `sample from it: gpt2 sample --model ${r.checkpoint} --prompt "..."\nlogs: ${cfg.outDir}/main.log, ${cfg.outDir}/metrics.jsonl\n`);
    }
  } finally {
    process.off("SIGINT", onSigint);
    await dashboard?.close();
  }
}
