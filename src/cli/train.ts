// gpt2 train: llm.c's train_gpt2 flags (same letters and meanings), each also a long option, plus --config FILE.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { startDashboard } from "../dashboard/server.js";
import { createCommunicator, launcherWorld, type Communicator } from "../parallel/comm.js";
import { loadNativeAddon } from "../kernels/native.js";
import { DEFAULTS, mergeConfig, type TrainConfig } from "../train/config.js";
import type { StepMetrics } from "../train/log.js";
import { AllRanksError, train } from "../train/loop.js";
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
  "on-nan": ["onNan"], "rollback-lr-factor": ["rollbackLrFactor"], zero: ["zero", "z"], seed: ["seed"], backend: ["backend"],
  threads: ["threads"],
};
/** llm.c's two-letter flags, which node's parser cannot take as short options */
const LLMC_LONG: Record<string, string> = { "-nk": "--keep" };
/** llm.c's multi-process init flags (-pi mpi|tcp|fs, -pn, -pr, -pg, -pf, -ps): how NCCL finds its peers */
const INIT_FLAGS = ["-pi", "-pn", "-pr", "-pg", "-pf", "-ps"];

/**
 * Takes llm.c's process-group flags out of argv. MPI is the way ranks find each other here; -pi tcp / fs bootstrap
 * NCCL without MPI, which needs the CUDA backend.
 */
function initFlags(argv: string[]): string[] {
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (!INIT_FLAGS.includes(argv[i])) { rest.push(argv[i]); continue; }
    const flag = argv[i], value = argv[++i];
    if (value === undefined) throw new UsageError(`${flag} needs a value`);
    if (flag === "-pi" && value !== "mpi") {
      throw new UsageError(`-pi ${value} starts NCCL without MPI, which needs the CUDA backend (not in this build); ` +
        `on CPUs launch the ranks with mpirun (-pi mpi, the default)`);
    }
    if (flag !== "-pi") {
      throw new UsageError(`${flag} belongs to -pi tcp|fs (NCCL without MPI, CUDA backend only); with mpirun the launcher sets ranks and sizes`);
    }
  }
  return rest;
}

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
  const dash = dashboardFlags(initFlags(argv));
  const cfg = parseTrainArgs(dash.rest);
  const comm = createCommunicator();
  try {
    await trainRank(cfg, dash, comm);
  } catch (e) {
    if (comm.size === 1) throw e;
    // an error every rank met at the same point: rank 0 says it, all end normally; anything else: this rank says it
    // and exits, and the launcher ends the others at once (they would otherwise wait for it until their deadline)
    const allRanks = e instanceof AllRanksError;
    if (comm.rank === 0 || !allRanks) process.stderr.write(`gpt2: ${allRanks ? "" : `rank ${comm.rank}: `}${(e as Error).message}\n`);
    if (allRanks) comm.close();
    process.exit(1);
  }
  comm.close();
}

/**
 * Test hooks for data-parallel failures: GPT2_TEST_DIE_AT=RANK:STEP kills that rank (SIGKILL) after that step,
 * GPT2_TEST_HANG_AT=RANK:STEP makes it stop answering (the others must time out, not hang).
 */
function rankFaultHook(rank: number): ((step: number) => void) | undefined {
  const at = (k: string) => process.env[k]?.split(":").map(Number);
  const die = at("GPT2_TEST_DIE_AT"), hang = at("GPT2_TEST_HANG_AT");
  if (!die && !hang) return undefined;
  return (step) => {
    if (die && die[0] === rank && die[1] === step) process.kill(process.pid, "SIGKILL");
    if (hang && hang[0] === rank && hang[1] === step) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3_600_000);
  };
}

async function trainRank(cfg: ReturnType<typeof parseTrainArgs>, dash: ReturnType<typeof dashboardFlags>, comm: Communicator): Promise<void> {
  // ranks sharing a machine share its cores: by default each takes cores / ranks-on-this-node threads
  const world = launcherWorld();
  const threads = cfg.threads ? String(cfg.threads)
    : !process.env.GPT2_THREADS && world && world.localSize > 1 ? String(Math.max(1, Math.floor(os.availableParallelism() / world.localSize))) : undefined;
  const backend = backendFromFlags({ backend: cfg.backend || undefined, threads, dtype: cfg.dtype });
  const { addon } = loadNativeAddon();
  const peak = backend.name === "native" && addon ? addon.measurePeakGflops(0.2) : NaN;
  const signal = { stop: false };
  const live: StepMetrics[] = [];
  const dashboard = dash.on && comm.rank === 0 ? await startDashboard({
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
      afterStep: rankFaultHook(comm.rank),
    }, comm);
    if (r.checkpoint && comm.rank === 0) {
      process.stdout.write(`done: ${r.steps} steps, train loss ${r.lastTrainLoss.toFixed(4)}` +
        `${Number.isFinite(r.lastValLoss) ? `, val loss ${r.lastValLoss.toFixed(4)}` : ""}\n` +
        `sample from it: gpt2 sample --model ${r.checkpoint} --prompt "..."\nlogs: ${cfg.outDir}/main.log, ${cfg.outDir}/metrics.jsonl\n`);
    }
  } finally {
    process.off("SIGINT", onSigint);
    await dashboard?.close();
  }
}
