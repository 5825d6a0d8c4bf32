// gpt2 train: llm.c's train_gpt2 flags (same letters and meanings), each also a long option, plus --config FILE.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { startDashboard } from "../dashboard/server.js";
import type { Backend } from "../kernels/backend.js";
import { commTimeout, createCommunicator, launcherWorld, SingleComm, type Communicator } from "../parallel/comm.js";
import { NcclComm } from "../parallel/nccl.js";
import { CudaBackend } from "../kernels/cuda.js";
import { loadNativeAddon } from "../kernels/native.js";
import { cpuPeakGflops } from "../kernels/peak.js";
import { DEFAULTS, mergeConfig, type TrainConfig } from "../train/config.js";
import { readRunStatus, type StepMetrics } from "../train/log.js";
import { train } from "../train/loop.js";
import { AllRanksError } from "../train/setup.js";
import { dpoTask, rewardModelTask } from "../train/preference.js";
import { rlTask } from "../train/rl.js";
import { pretraining, sft, type TrainTask } from "../train/task.js";
import { PRESETS } from "../model/config.js";
import { backendFromFlags, modelPath, num, parse, stopOnSignals, UsageError, type CommandHelp, type Flag } from "./common.js";
import { env } from "../util/env.js";
import { testFaults } from "../train/faults.js";

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
  "skip-loss-z": ["skipLossZ"], "skip-norm-z": ["skipNormZ"], "major-every": ["majorEvery"],
  "on-nan": ["onNan"], "rollback-lr-factor": ["rollbackLrFactor"], zero: ["zero", "z"], seed: ["seed"], backend: ["backend"],
  threads: ["threads"],
};
/** `gpt2 sft`'s own names for the data, and what to do with rows longer than -t */
const SFT_FLAGS: Record<string, [keyof TrainConfig, string?]> = { data: ["trainData"], "val-data": ["valData"], "too-long": ["tooLong"] };
/** `gpt2 rl`'s own flags */
const RL_FLAGS: Record<string, [keyof TrainConfig, string?]> = {
  prompts: ["trainData"], "val-prompts": ["valData"], "reward-model": ["rewardModel"], reward: ["rewardModule"], group: ["group"],
  temperature: ["rlTemperature"], "max-new-tokens": ["maxNewTokens"], "ppo-epochs": ["ppoEpochs"], clip: ["clipRange"], beta: ["beta"],
};
/** per command: the flags it adds to train's, and the defaults it changes (a reward model's samples mean nothing) */
const COMMANDS: Record<TrainCommand, { flags: Record<string, [keyof TrainConfig, string?]>; defaults: Partial<TrainConfig> }> = {
  train: { flags: {}, defaults: {} },
  sft: { flags: SFT_FLAGS, defaults: {} },
  rm: { flags: SFT_FLAGS, defaults: { sampleEvery: 0 } },
  dpo: { flags: { ...SFT_FLAGS, beta: ["beta"], "rpo-alpha": ["rpoAlpha"] }, defaults: {} },
  rl: { flags: RL_FLAGS, defaults: {} },
};
/** what each flag means, for --help (flags without an entry are llm.c's, documented in README) */
const FLAG_HELP: Partial<Record<keyof TrainConfig, string>> = {
  trainData: "training data (train: shard glob; sft: JSONL rows)", valData: "validation data (same kind)", outDir: "output folder: logs, checkpoints",
  init: "a preset (tiny d6 d12 d24 d36 d48) or a model to start from", batchSize: "rows per micro-batch", seqLen: "sequence length (sft: the longest row)",
  totalBatch: "tokens per step; more than B x T x ranks accumulates gradients", maxSteps: "optimizer steps", lr: "peak learning rate",
  warmup: "linear warmup steps", schedule: "cosine, linear, constant or wsd", finalLrFrac: "final LR as a fraction of -l",
  weightDecay: "AdamW weight decay on 2-D weights", gradClip: "clip the gradient norm at (0: never)", valEvery: "validate every N steps (0: never)",
  valBatches: "validation batches", sampleEvery: "sample every N steps (0: never)", genTokens: "tokens per sample", hellaswag: "HellaSwag at every validation (1)",
  checkpointEvery: "checkpoint every N steps (0: at the end)", keep: "checkpoints kept", resume: "1: resume from the latest checkpoint in -o",
  recompute: "0 keep all activations, 1 recompute GELU, 2 also LayerNorms", overfitSingleBatch: "1: train on one batch (debugging)",
  dtype: "fp32 or bf16", skipUpdateZ: "skip updates whose loss/norm z-score exceeds this (0: off)", onNan: "stop or rollback",
  skipLossZ: "skip updates whose loss z-score exceeds this", skipNormZ: "skip updates whose gradient-norm z-score exceeds this",
  majorEvery: "checkpoints at multiples of this step are never pruned (0: none)",
  hellaswagData: "HellaSwag's validation JSONL", hellaswagLimit: "HellaSwag examples per evaluation (0: all 10,042)",
  nLayer: "layers", nHead: "attention heads", nEmbd: "width (channels)",
  rollbackLrFactor: "LR factor per rollback", zero: "1: ZeRO-1 (AdamW state sharded over ranks)", tooLong: "truncate or skip rows longer than -t",
  beta: "DPO's temperature / RL's KL weight", group: "answers sampled per prompt", rlTemperature: "sampling temperature of the answers",
  maxNewTokens: "tokens an answer may have", ppoEpochs: "updates per batch of answers (PPO epochs)", clipRange: "PPO's ratio clip",
  rewardModel: "a reward model (gpt2 rm train) scores the answers", rewardModule: "a module exporting reward(prompt, answer, row)",
  rpoAlpha: "add this x the chosen answers' NLL (RPO; 0: plain DPO)",
  seed: "random seed", backend: "js, native or cuda", threads: "CPU threads",
};
/** the effective default where the stored one is a placeholder (0 or -1: decided by the run; "": none) */
const EFFECTIVE: Partial<Record<keyof TrainConfig, string>> = {
  trainData: "required", valData: "none: no validation", outDir: "none: nothing written", lr: "3e-4 from scratch (-e PRESET), 3e-5 from a model",
  warmup: "0 from scratch, 10 from a model", totalBatch: "B x T x ranks: no accumulation", maxSteps: "one epoch of the training data",
  nLayer: "the preset's", nHead: "the preset's", nEmbd: "the preset's", beta: "0.1 for dpo, 0.04 for rl",
  skipLossZ: "--skip-update-z's", skipNormZ: "--skip-update-z's", hellaswagData: "downloaded once into the cache (GPT2_CACHE, default ~/.cache/gpt2ts)",
  backend: "cuda when a GPU is found, else native when built, else js", threads: "all cores",
  rewardModel: "none", rewardModule: "none",
};
/** llm.c's two-letter flags, which node's parser cannot take as short options */
const LLMC_LONG: Record<string, string> = { "-nk": "--keep", "-sl": "--skip-loss-z", "-sg": "--skip-norm-z", "-nm": "--major-every" };

/**
 * llm.c's train_gpt2.cu flags with no setting here, taken out of argv: accepted with a note where what they ask for
 * is what happens anyway, refused (naming what to use) where it is not.
 */
function llmcOnlyFlags(argv: string[]): { rest: string[]; notes: string[] } {
  const rest: string[] = [], notes: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (!["-w", "-ge", "-f", "-lg"].includes(flag)) { rest.push(flag); continue; }
    const v = argv[++i];
    if (v === undefined || !/^-?\d+$/.test(v)) throw new UsageError(`${flag} expects an integer, as llm.c's, got ${v === undefined ? "nothing" : `"${v}"`}`);
    const n = Number(v);
    if (flag === "-w") {
      if (n === 0) throw new UsageError("-w 0 (no fp32 master weights) is not offered: weights and AdamW state are always fp32; --dtype bf16 computes the matmuls in bf16");
      notes.push("-w 1: the weights are kept in fp32 (always)");
    } else if (flag === "-ge") notes.push(`-ge ${n}: GELU fusion is the backend's choice here (no fused GELU epilogue yet); ignored`);
    else if (flag === "-f") notes.push(n ? "-f 1: TF32 is not used (fp32 matmuls are full fp32); --dtype bf16 runs them on tensor cores" : "-f 0: fp32 matmuls are full fp32 (always)");
    else notes.push("-lg: no GPU log of its own (nvidia-smi shows the GPU; each step line shows the MFU); ignored");
  }
  return { rest, notes };
}
/** llm.c's multi-process init flags: -pi mpi|tcp|fs, -pn processes, -pr this rank, -pg GPUs per node, -pf folder, -ps server */
const INIT_FLAGS = ["-pi", "-pn", "-pr", "-pg", "-pf", "-ps"];

export interface InitFlags {
  /** how NCCL's ranks meet: mpi (mpirun launched them; the default), or tcp / fs without MPI */
  method: "mpi" | "tcp" | "fs";
  size: number;
  rank: number;
  gpusPerNode: number;
  dir?: string;
  server?: string;
}

/**
 * Takes llm.c's process-group flags out of argv. With mpirun (-pi mpi) the launcher gives ranks and sizes; -pi tcp
 * and -pi fs start NCCL without MPI, each process launched by hand (or by a scheduler) with its -pr.
 */
export function initFlags(argv: string[]): { rest: string[]; init: InitFlags } {
  const rest: string[] = [];
  const got: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    if (!INIT_FLAGS.includes(argv[i])) { rest.push(argv[i]); continue; }
    const flag = argv[i], value = argv[++i];
    if (value === undefined) throw new UsageError(`${flag} needs a value`);
    got[flag] = value;
  }
  const method = got["-pi"] ?? "mpi";
  if (method !== "mpi" && method !== "tcp" && method !== "fs") throw new UsageError(`-pi expects mpi, tcp or fs, got "${method}"`);
  const int = (flag: string, def: number, min: number) => num(got[flag], flag.slice(1), def, { int: true, min });
  if (method === "mpi") {
    const stray = Object.keys(got).find((f) => f !== "-pi");
    if (stray) throw new UsageError(`${stray} belongs to -pi tcp|fs (NCCL without MPI); with mpirun the launcher sets ranks and sizes`);
    return { rest, init: { method, size: 1, rank: 0, gpusPerNode: 8 } };
  }
  if (got["-pn"] === undefined || got["-pr"] === undefined) throw new UsageError(`-pi ${method} needs -pn (number of processes) and -pr (this process's rank)`);
  const init: InitFlags = { method, size: int("-pn", 1, 1), rank: int("-pr", 0, 0), gpusPerNode: int("-pg", 8, 1), dir: got["-pf"], server: got["-ps"] };
  if (init.rank >= init.size) throw new UsageError(`-pr ${init.rank} must be below -pn ${init.size}`);
  if (method === "fs" && !init.dir) throw new UsageError("-pi fs needs -pf DIR, a folder every process sees");
  if (method === "tcp" && !init.server) throw new UsageError("-pi tcp needs -ps HOST[:PORT], the address of rank 0 (port 12345 by default)");
  return { rest, init };
}

export type TrainCommand = "train" | "sft" | "rm" | "dpo" | "rl";

function flagsOf(command: TrainCommand): Record<string, [keyof TrainConfig, string?]> {
  return { ...COMMANDS[command].flags, ...FLAGS };
}

const USAGE: Record<TrainCommand, [string, string]> = {
  train: ["gpt2 train -i 'DIR/NAME_train_*.bin' [-j 'DIR/NAME_val_*.bin'] -o DIR -e d12|MODEL [flags]", "Pretraining, with llm.c's train_gpt2 flags (each also a long option)."],
  sft: ["gpt2 sft -e MODEL --data train.jsonl [--val-data val.jsonl] -o DIR [flags]", "Supervised fine-tuning on conversations ({\"messages\": [...]}) or prompt/completion rows; the loss counts the answers only."],
  rm: ["gpt2 rm train -e MODEL --data pairs.jsonl [--val-data pairs.jsonl] -o DIR [flags]", "A reward model: GPT-2 with a scalar head on the answer's last token, trained with the Bradley-Terry loss on preference pairs."],
  dpo: ["gpt2 dpo -e MODEL --data pairs.jsonl [--val-data pairs.jsonl] [--beta 0.1] -o DIR [flags]", "Direct Preference Optimisation against the starting model, frozen."],
  rl: ["gpt2 rl -e MODEL --prompts prompts.jsonl (--reward check.mjs | --reward-model RM) -o DIR [flags]", "Reinforcement learning with rewards (GRPO): groups of sampled answers, group-relative advantages, PPO's clip, KL to the starting model."],
};

/** `gpt2 train --help` (and sft, rm train, dpo, rl): every flag with its llm.c letter, meaning and default. */
export function trainingHelp(command: TrainCommand): CommandHelp {
  const defaults = { ...DEFAULTS, ...COMMANDS[command].defaults };
  const flags: Record<string, Flag> = {};
  for (const [long, [key, short]] of Object.entries(flagsOf(command))) {
    const two = Object.entries(LLMC_LONG).find(([, l]) => l === `--${long}`)?.[0];
    const d = defaults[key];
    flags[long] = {
      type: "string", short, arg: typeof d === "number" ? "N" : "VALUE", help: `${FLAG_HELP[key] ?? key}${two ? ` (llm.c's ${two})` : ""}`,
      shown: EFFECTIVE[key] ?? (d === "" ? undefined : String(d)),
    };
  }
  Object.assign(flags, {
    config: { type: "string", arg: "FILE.json", help: "settings by their long names in camelCase ({\"batchSize\": 8}); flags override it" },
    "no-shuffle": { type: "boolean", help: "llm.c's sequential data order (default: reshuffled every epoch, seeded)" },
    dashboard: { type: "boolean", help: "serve the live page while training (127.0.0.1 unless --dashboard-host)" },
    "dashboard-port": { type: "string", arg: "P", help: "its port", shown: "any free one" },
    "dashboard-host": { type: "string", arg: "H", help: "its address", shown: "127.0.0.1" },
  } satisfies Record<string, Flag>);
  return {
    usage: USAGE[command][0], about: USAGE[command][1], flags,
    more: "Processes without mpirun (NCCL, --backend cuda): -pi mpi|tcp|fs -pn N -pr RANK -pg GPUS_PER_NODE -pf DIR -ps HOST[:PORT].\n" +
      "llm.c's -w 1 and -f 0 are what happens here (fp32 weights, full fp32 matmuls) and are accepted; -w 0 is refused; -ge and -lg are accepted\n" +
      "and ignored, with a note. A negative value may follow a flag (-x -1). Ctrl-C, SIGTERM, SIGHUP and SIGUSR1 write a checkpoint and stop.",
  };
}

export function parseTrainArgs(argv: string[], command: TrainCommand = "train"): TrainConfig {
  const FLAGS = flagsOf(command);
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = { config: { type: "string" }, "no-shuffle": { type: "boolean" } };
  for (const [name, [, short]] of Object.entries(FLAGS)) options[name] = short ? { type: "string", short } : { type: "string" };
  const { values } = parse(argv.map((a) => LLMC_LONG[a] ?? a), options);
  let cfg: TrainConfig = { ...DEFAULTS, ...COMMANDS[command].defaults };
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
  if (command !== "train" && over.init === undefined && cfg.init === DEFAULTS.init) {
    throw new UsageError(`gpt2 ${command === "rm" ? "rm train" : command} needs -e MODEL: the model to start from (a gpt2ts checkpoint, a Hugging Face directory or an llm.c .bin)`);
  }
  return mergeConfig(cfg, over, "flags");
}

/** What to do with the model a run made. */
function nextStep(task: TrainTask, checkpoint: string): string {
  if (task.kind === "rm") return `score answers with it: gpt2 rm score --model ${checkpoint} --data pairs.jsonl   (or gpt2 rl --reward-model ${checkpoint})`;
  if (task.kind === "pretraining") return `sample from it: gpt2 sample --model ${checkpoint} --prompt "..."`;
  return `talk to it: gpt2 chat --model ${checkpoint}   (gpt2 eval chat --model ${checkpoint} --data tasks.jsonl measures it)`;
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
  return runTraining(argv, "train");
}

/** gpt2 sft -e MODEL --data train.jsonl [--val-data val.jsonl] [train's flags]: supervised fine-tuning */
export async function sftCommand(argv: string[]): Promise<void> {
  return runTraining(argv, "sft");
}

/** gpt2 dpo -e MODEL --data pairs.jsonl [--val-data ...] [--beta 0.1] [train's flags]: direct preference optimisation */
export async function dpoCommand(argv: string[]): Promise<void> {
  return runTraining(argv, "dpo");
}

/** gpt2 rl -e MODEL --prompts prompts.jsonl (--reward check.mjs | --reward-model RM) [train's flags]: GRPO */
export async function rlCommand(argv: string[]): Promise<void> {
  return runTraining(argv, "rl");
}

/** gpt2 rm train -e MODEL --data pairs.jsonl [...]: a reward model */
export async function rmTrainCommand(argv: string[]): Promise<void> {
  return runTraining(argv, "rm");
}

export async function runTraining(argv: string[], command: TrainCommand): Promise<void> {
  const { rest: afterLlmc, notes } = llmcOnlyFlags(argv);
  const { rest, init } = initFlags(afterLlmc);
  const dash = dashboardFlags(rest);
  for (const n of notes) process.stderr.write(`gpt2: note: ${n}\n`);
  let cfg = parseTrainArgs(dash.rest, command);
  // a model name (gpt2, gpt2-medium, ..., ORG/REPO) for -e or --reward-model: its pulled copy, pulled on first use
  const ranks = launcherWorld()?.size ?? 1;
  const noPull = ranks > 1 ? `${ranks} ranks would download it at once` : undefined;
  if (!PRESETS[cfg.init]) cfg = { ...cfg, init: await modelPath(cfg.init, noPull) };
  if (cfg.rewardModel) cfg = { ...cfg, rewardModel: await modelPath(cfg.rewardModel, noPull) };
  const task = command === "sft" ? sft() : command === "rm" ? rewardModelTask() : command === "dpo" ? dpoTask(cfg.beta >= 0 ? cfg.beta : 0.1, cfg.rpoAlpha)
    : command === "rl" ? rlTask() : pretraining();
  // processes: launched by mpirun (MPI moves host buffers and introduces NCCL's ranks), or by hand with -pi tcp|fs
  const host = init.method === "mpi" ? createCommunicator() : null;
  const world = launcherWorld();
  const size = host ? host.size : init.size;
  const localRank = host ? (world?.localRank ?? 0) : init.rank % init.gpusPerNode;
  let comm: Communicator = host ?? new SingleComm();
  try {
    const backend = await rankBackend(cfg, world, localRank);
    if (!host && !(backend instanceof CudaBackend)) {
      throw new UsageError(`-pi ${init.method} starts NCCL without MPI, which needs --backend cuda; on CPUs launch the ranks with mpirun`);
    }
    if (backend instanceof CudaBackend && (size > 1 || !host)) {
      comm = await NcclComm.create(backend, host ? { via: host } : { ...init, method: init.method as "tcp" | "fs", timeoutSeconds: commTimeout() }, commTimeout());
    }
    await trainRank(cfg, dash, comm, backend, task);
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
 * This rank's backend: a GPU rank takes the GPU of its place on the node; CPU ranks sharing a machine share its cores
 * (by default each takes cores / ranks-on-this-node threads).
 */
function rankBackend(cfg: TrainConfig, world: ReturnType<typeof launcherWorld>, localRank: number): Promise<Backend> {
  const threads = cfg.threads ? String(cfg.threads)
    : !env("GPT2_THREADS") && world && world.localSize > 1 ? String(Math.max(1, Math.floor(os.availableParallelism() / world.localSize))) : undefined;
  return backendFromFlags({ backend: cfg.backend || undefined, threads, dtype: cfg.dtype }, localRank);
}

async function trainRank(cfg: TrainConfig, dash: ReturnType<typeof dashboardFlags>, comm: Communicator, backend: Backend, task: TrainTask): Promise<void> {
  const { addon } = loadNativeAddon();
  // MFU's denominator: the measured fp32 FMA peak (bf16 dot products do twice the work per instruction), or the GPU's
  const peak = backend.name === "native" && addon ? cpuPeakGflops(addon) * (cfg.dtype === "bf16" ? 2 : 1)
    : backend instanceof CudaBackend ? backend.peakTflops() * 1000 : NaN;
  const signal = { stop: false };
  const live: StepMetrics[] = [];
  const dashboard = dash.on && comm.rank === 0 ? await startDashboard({
    runs: () => [{
      name: cfg.outDir ? path.basename(path.resolve(cfg.outDir)) : "run", metrics: live,
      config: { ...cfg, task: task.kind }, status: cfg.outDir ? readRunStatus(cfg.outDir) : null,
    }],
    port: dash.port === undefined ? 0 : num(dash.port, "dashboard-port", 0, { int: true, min: 0, max: 65535 }), host: dash.host,
  }) : null;
  if (dashboard) process.stdout.write(`dashboard: ${dashboard.url}\n`);
  const release = stopOnSignals(signal);
  let ok = false;
  try {
    const r = await train(cfg, backend, {
      print: (l) => process.stdout.write(l + "\n"), signal, peakGflops: peak, onMetrics: (m) => live.push({ ...m, time: new Date().toISOString() }),
      ...testFaults(comm.rank),
    }, comm, task);
    if (r.checkpoint && comm.rank === 0) {
      process.stdout.write(`done: ${r.steps} steps, train loss ${r.lastTrainLoss.toFixed(4)}` +
        `${Number.isFinite(r.lastValLoss) ? `, val loss ${r.lastValLoss.toFixed(4)}` : ""}\n` +
        `${nextStep(task, r.checkpoint)}\nlogs: ${cfg.outDir}/main.log, ${cfg.outDir}/metrics.jsonl\n`);
    }
    ok = true;
  } finally {
    release();
    // a run that failed says why at once: its page closes instead of waiting for Ctrl-C in front of the error
    if (dashboard) await (ok ? keepDashboard(dashboard, cfg.outDir, signal.stop) : dashboard.close());
  }
}

/**
 * After the run, the page stays up for a person at a terminal (until Ctrl-C) so the finished curves can still be
 * read; a script (no terminal) is not kept waiting: the page closes, with the command that reopens it.
 */
async function keepDashboard(d: { url: string; close(): Promise<void> }, outDir: string, interrupted: boolean): Promise<void> {
  const reopen = outDir ? `gpt2 dashboard ${outDir}` : "gpt2 dashboard DIR (give -o DIR to keep the logs)";
  if (process.stdout.isTTY && process.stdin.isTTY && !interrupted) {
    process.stdout.write(`the dashboard stays up at ${d.url} (Ctrl-C to close it; later: ${reopen})\n`);
    await new Promise<void>((resolve) => {
      const done = () => { process.off("SIGINT", done); process.off("SIGTERM", done); process.off("SIGHUP", done); resolve(); };
      process.once("SIGINT", done); process.once("SIGTERM", done); process.once("SIGHUP", done);
    });
  } else {
    process.stdout.write(`dashboard closed; reopen it with: ${reopen}\n`);
  }
  await d.close();
}
