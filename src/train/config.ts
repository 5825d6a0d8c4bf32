// The training run's configuration: one typed object, defaults in one place with their reasons (llm.c's
// train_gpt2 defaults unless said otherwise). Precedence: defaults < --config JSON file < flags.

import type { ScheduleKind } from "./schedule.js";
import { SCHEDULES } from "./schedule.js";

export interface TrainConfig {
  /** -i: train shards (glob) */
  trainData: string;
  /** -j: validation shards (glob); empty = no validation */
  valData: string;
  /** -o: output dir for main.log, metrics.jsonl and checkpoints; empty = none */
  outDir: string;
  /** -e: a preset (tiny, d6, d12, ...) to train from scratch, or a checkpoint path to continue / fine-tune */
  init: string;
  nLayer: number; // 0 = the preset's
  nHead: number;
  nEmbd: number;
  /** -b: micro-batch size */
  batchSize: number;
  /** -t: sequence length */
  seqLen: number;
  /** -d: total batch in tokens; -1 = one micro-batch (no accumulation) */
  totalBatch: number;
  /** -x: optimizer steps; -1 = one epoch of the train shards */
  maxSteps: number;
  /** -l; 0 = automatic: 3e-4 from scratch, 3e-5 when fine-tuning a checkpoint */
  lr: number;
  /** -u; -1 = automatic: 0 from scratch, 10 steps when fine-tuning */
  warmup: number;
  /** -k */
  schedule: ScheduleKind;
  /** -q: final LR as a fraction of -l */
  finalLrFrac: number;
  /** -c: AdamW weight decay on 2-D parameters */
  weightDecay: number;
  gradClip: number;
  /** -v: validate every N steps (0 = never) */
  valEvery: number;
  /** -m: validation batches */
  valBatches: number;
  /** -s: sample every N steps (0 = never) */
  sampleEvery: number;
  /** -g: tokens to generate per sample */
  genTokens: number;
  /** -h: HellaSwag at every validation */
  hellaswag: number;
  hellaswagData: string;
  /** examples per HellaSwag evaluation (0 = all 10042) */
  hellaswagLimit: number;
  /** -n: checkpoint every N steps (0 = only at the end when -o is given) */
  checkpointEvery: number;
  /** --keep: checkpoints kept */
  keep: number;
  /** -y: resume from the latest checkpoint in -o */
  resume: number;
  /** -r: recompute level */
  recompute: 0 | 1 | 2;
  /** -a: overfit a single batch (debugging) */
  overfitSingleBatch: number;
  dtype: "fp32" | "bf16";
  /** visit shards and documents in a new seeded order every epoch (0 = llm.c's sequential order) */
  shuffle: number;
  /** skip the update of a step whose loss or grad-norm z-score exceeds this (0 = never) */
  skipUpdateZ: number;
  /** llm.c's -sl / -sg: separate z-score limits for the loss and the gradient norm (0 = skipUpdateZ's) */
  skipLossZ: number;
  skipNormZ: number;
  /** llm.c's -nm: checkpoints at multiples of this are major: --keep never prunes them (0 = none) */
  majorEvery: number;
  /** on a non-finite loss/norm: "stop" with a diagnosis, or "rollback" to the last checkpoint with a lower LR */
  onNan: "stop" | "rollback";
  /** LR multiplier applied at each rollback */
  rollbackLrFactor: number;
  /** -z: ZeRO stage for data-parallel runs: 0 = every rank holds all AdamW state, 1 = AdamW state sharded across ranks */
  zero: number;
  /** SFT: a row longer than -t + 1 tokens is cut to that length ("truncate") or left out ("skip") */
  tooLong: "truncate" | "skip";
  /** DPO's temperature, RL's KL coefficient; -1 = automatic (0.1 for DPO, 0.04 for RL) */
  beta: number;
  /** DPO: weight of the chosen answers' NLL added to the loss (RPO; TRL's rpo_alpha); 0 = plain DPO */
  rpoAlpha: number;
  /** RL: answers sampled per prompt (the group whose rewards are compared) */
  group: number;
  /** RL: sampling temperature of the answers */
  rlTemperature: number;
  /** RL: tokens an answer may have */
  maxNewTokens: number;
  /** RL: optimizer steps on each batch of answers (PPO's inner epochs) */
  ppoEpochs: number;
  /** RL: PPO's ratio clip range */
  clipRange: number;
  /** RL: the reward: a reward model (gpt2 rm train) ... */
  rewardModel: string;
  /** ... or a module exporting reward(prompt, answer, row) */
  rewardModule: string;
  seed: number;
  backend: string;
  threads: number; // 0 = all cores
}

export const DEFAULTS: TrainConfig = {
  trainData: "",
  valData: "",
  outDir: "",
  init: "d12", // GPT-2 124M, the model people reproduce
  nLayer: 0,
  nHead: 0,
  nEmbd: 0,
  batchSize: 4, // llm.c's default micro-batch
  seqLen: 1024, // GPT-2's context
  totalBatch: -1, // no accumulation unless asked
  maxSteps: -1, // one epoch
  lr: 0, // auto: 3e-4 (llm.c / nanoGPT) from scratch, 3e-5 (nanoGPT's Shakespeare fine-tune) from a checkpoint
  warmup: -1, // auto: 0 from scratch (llm.c), 10 steps for a fine-tune so the first updates are gentle
  schedule: "cosine",
  finalLrFrac: 1.0, // llm.c: no decay unless -q says so
  weightDecay: 0.0, // llm.c's default; GPT-2 reproductions use -c 0.1
  gradClip: 1.0, // GPT-2 / GPT-3 clip the global norm at 1.0
  valEvery: 20,
  valBatches: 20,
  sampleEvery: 20,
  genTokens: 64,
  hellaswag: 0,
  hellaswagData: "",
  hellaswagLimit: 0,
  checkpointEvery: 0,
  keep: 2, // the last two: one may be mid-write when the machine dies (writes are atomic anyway)
  resume: 0,
  recompute: 1, // llm.c's default: recompute GELU, saving L*B*T*4C floats for ~2% time
  overfitSingleBatch: 0,
  dtype: "fp32",
  shuffle: 1, // unshuffled epochs repeat the same batch order: periodic loss patterns (build-nanogpt PR #52)
  skipUpdateZ: 0, // off, as llm.c; 5-6 catches real spikes
  skipLossZ: 0,
  skipNormZ: 0,
  majorEvery: 0,
  onNan: "stop",
  rollbackLrFactor: 0.5,
  zero: 0,
  tooLong: "truncate", // as TRL's SFTTrainer (max_length truncation); both are counted in the log
  beta: -1, // automatic: DPO 0.1 (TRL's and the paper's default), RL 0.04 (DeepSeekMath's GRPO)
  rpoAlpha: 0, // TRL's default: plain DPO
  group: 8, // GRPO's G: enough answers per prompt for a mean and a spread of rewards
  rlTemperature: 1.0, // sample from the model as it is: the advantages need varied answers
  maxNewTokens: 64,
  ppoEpochs: 1, // GRPO's default: one update per batch of answers (the ratio is then 1 and never clipped)
  clipRange: 0.2, // PPO's epsilon
  rewardModel: "",
  rewardModule: "",
  seed: 1337,
  backend: "",
  threads: 0,
};

export class TrainConfigError extends Error {
  override name = "TrainConfigError";
}

/** Merges a partial config (from a JSON file or flags) into a base; unknown keys are errors. */
export function mergeConfig(base: TrainConfig, over: Record<string, unknown>, source: string): TrainConfig {
  if (!over || typeof over !== "object" || Array.isArray(over)) {
    throw new TrainConfigError(`${source}: expected a JSON object of settings ({"batchSize": 8, ...}), got ${JSON.stringify(over)}`);
  }
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    if (!(k in DEFAULTS)) throw new TrainConfigError(`${source}: unknown setting "${k}" (known: ${Object.keys(DEFAULTS).join(", ")})`);
    const want = typeof DEFAULTS[k as keyof TrainConfig];
    if (typeof v !== want) throw new TrainConfigError(`${source}: "${k}" must be a ${want}, got ${JSON.stringify(v)}`);
    out[k] = v;
  }
  return validate(out as unknown as TrainConfig, source);
}

function validate(c: TrainConfig, source: string): TrainConfig {
  const posInt = ["batchSize", "seqLen", "valBatches", "genTokens", "keep"] as const;
  for (const k of posInt) if (!Number.isInteger(c[k]) || c[k] < 1) throw new TrainConfigError(`${source}: ${k} must be a positive integer, got ${c[k]}`);
  const nonNeg = ["valEvery", "sampleEvery", "checkpointEvery", "nLayer", "nHead", "nEmbd", "threads", "resume", "hellaswag", "hellaswagLimit", "overfitSingleBatch", "shuffle"] as const;
  for (const k of nonNeg) if (!Number.isInteger(c[k]) || c[k] < 0) throw new TrainConfigError(`${source}: ${k} must be a non-negative integer, got ${c[k]}`);
  if (!SCHEDULES.includes(c.schedule)) throw new TrainConfigError(`${source}: schedule must be one of ${SCHEDULES.join(", ")}, got "${c.schedule}"`);
  if (![0, 1, 2].includes(c.recompute)) throw new TrainConfigError(`${source}: recompute must be 0, 1 or 2, got ${c.recompute}`);
  if (c.dtype !== "fp32" && c.dtype !== "bf16") throw new TrainConfigError(`${source}: dtype must be fp32 or bf16, got "${c.dtype}"`);
  if (!(c.lr >= 0)) throw new TrainConfigError(`${source}: lr must be positive (0 = automatic), got ${c.lr}`);
  if (!Number.isInteger(c.warmup) || c.warmup < -1) throw new TrainConfigError(`${source}: warmup must be a non-negative integer (-1 = automatic), got ${c.warmup}`);
  if (c.zero !== 0 && c.zero !== 1) throw new TrainConfigError(`${source}: zero must be 0 or 1 (ZeRO-1), got ${c.zero}`);
  if (c.tooLong !== "truncate" && c.tooLong !== "skip") throw new TrainConfigError(`${source}: tooLong must be truncate or skip, got "${c.tooLong}"`);
  if (!(c.beta === -1 || c.beta >= 0)) throw new TrainConfigError(`${source}: beta must be >= 0 (-1 = automatic), got ${c.beta}`);
  if (!(c.rpoAlpha >= 0)) throw new TrainConfigError(`${source}: rpoAlpha must be >= 0, got ${c.rpoAlpha}`);
  for (const k of ["group", "maxNewTokens", "ppoEpochs"] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new TrainConfigError(`${source}: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.group < 2) throw new TrainConfigError(`${source}: group must be at least 2 (advantages compare the answers of a group), got ${c.group}`);
  if (!(c.rlTemperature > 0)) throw new TrainConfigError(`${source}: the sampling temperature must be > 0, got ${c.rlTemperature}`);
  if (!(c.clipRange > 0 && c.clipRange < 1)) throw new TrainConfigError(`${source}: clipRange must be in (0, 1), got ${c.clipRange}`);
  for (const k of ["skipUpdateZ", "skipLossZ", "skipNormZ"] as const) if (!(c[k] >= 0)) throw new TrainConfigError(`${source}: ${k} must be >= 0`);
  if (!Number.isInteger(c.majorEvery) || c.majorEvery < 0) throw new TrainConfigError(`${source}: majorEvery must be a non-negative integer`);
  if (c.onNan !== "stop" && c.onNan !== "rollback") throw new TrainConfigError(`${source}: onNan must be stop or rollback, got "${c.onNan}"`);
  if (!(c.rollbackLrFactor > 0 && c.rollbackLrFactor < 1)) throw new TrainConfigError(`${source}: rollbackLrFactor must be in (0, 1)`);
  if (!(c.finalLrFrac >= 0 && c.finalLrFrac <= 1)) throw new TrainConfigError(`${source}: finalLrFrac must be in [0, 1], got ${c.finalLrFrac}`);
  if (!(c.weightDecay >= 0)) throw new TrainConfigError(`${source}: weightDecay must be >= 0`);
  if (c.maxSteps !== -1 && !(Number.isInteger(c.maxSteps) && c.maxSteps >= 1)) throw new TrainConfigError(`${source}: maxSteps must be -1 or a positive integer`);
  if (c.totalBatch !== -1 && !(Number.isInteger(c.totalBatch) && c.totalBatch >= 1)) throw new TrainConfigError(`${source}: totalBatch must be -1 or a positive integer`);
  return c;
}

/** Gradient-accumulation steps: total batch / (B * T * ranks), which must divide evenly. */
export function accumulationSteps(c: TrainConfig, ranks = 1): number {
  const micro = c.batchSize * c.seqLen * ranks;
  const total = c.totalBatch === -1 ? micro : c.totalBatch;
  if (total % micro !== 0) {
    throw new TrainConfigError(`total batch ${total} tokens (-d) is not a multiple of B*T${ranks > 1 ? "*ranks" : ""} = ${micro}; choose -d as a multiple of ${micro}`);
  }
  return total / micro;
}
