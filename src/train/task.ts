// What a run trains on. Pretraining reads token shards; supervised fine-tuning reads conversations rendered by the
// chat template, with the loss on the assistant's tokens only. Both run through the same loop (loop.ts) with the
// same guarantees: checkpoints and exact resume, the NaN guard and rollback, the memory plan, data parallelism.

import { promptAndAnswer, type Example } from "../chat/template.js";
import { DataLoader } from "../data/loader.js";
import { readExamples, SftData } from "../data/sft.js";
import { countTargets, type Batch, type BatchSource } from "../data/source.js";
import type { GPT2 } from "../model/gpt2.js";
import { CHAT_TOKENS, CHAT_VOCAB_SIZE, EOT_TOKEN } from "../tokenizer/bpe.js";
import { gpt2Tokenizer, shardTokenizer, type Tokenizer } from "../tokenizer/tokenizer.js";
import { findShards } from "../data/loader.js";
import { TrainConfigError, type TrainConfig } from "./config.js";

/** The prompt of the periodic samples, and the tokens that end a sample. */
export interface SamplePrompt {
  ids: number[];
  stop: number[];
  /** what is printed before the sample: "" for pretraining, the conversation's last user message for SFT */
  label: string;
}

/**
 * What a step minimises. The loss of a step is the mean over its units (trained tokens, preference pairs, sampled
 * answers) across micro-batches and ranks; metrics are sums over units, reported as means.
 */
export interface Objective {
  /** the units a batch's loss averages over */
  units(b: Batch): number;
  /**
   * Forward and backward of one micro-batch: gradients ACCUMULATE, scaled by `weight` (this batch's units over the
   * step's, so that the step's gradient is the gradient of its mean). Returns the batch's mean loss and metric sums.
   */
  forwardBackward(model: GPT2, b: Batch, weight: number): Promise<ObjectiveResult> | ObjectiveResult;
  /** the same without gradients: validation */
  evaluate(model: GPT2, b: Batch): Promise<ObjectiveResult> | ObjectiveResult;
  /**
   * names and one-line formats of the metrics, in the order of the step line; a metric is a sum over units, shown
   * as its mean per unit, or per the sum of another metric (`per`: e.g. the answers a checker could judge)
   */
  readonly metrics?: { name: string; format: (mean: number) => string; per?: string }[];
}

/** The sums an objective's metrics need (theirs and their denominators'). */
export function metricNames(o: Objective): string[] {
  return [...new Set((o.metrics ?? []).flatMap((m) => (m.per ? [m.name, m.per] : [m.name])))];
}

/** Metric means from sums over `units`. */
export function metricMeans(o: Objective, sums: Record<string, number>, units: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of o.metrics ?? []) out[m.name] = (sums[m.name] ?? 0) / (m.per ? sums[m.per] ?? 0 : units);
  return out;
}

export interface ObjectiveResult {
  loss: number;
  /** sums over the batch's units, by metric name */
  metrics?: Record<string, number>;
}

/** Next-token cross-entropy over the targets (>= 0) of a batch: pretraining and SFT. */
export const languageModeling: Objective = {
  units: countTargets,
  forwardBackward: async (model, b, weight) => ({ loss: await model.forwardBackwardAsync(b.inputs, b.targets, b.B, b.T, weight) }),
  evaluate: async (model, b) => ({ loss: await model.forwardAsync(b.inputs, b.targets, b.B, b.T) }),
};

export interface TrainTask {
  /** recorded in checkpoints and logs */
  readonly kind: "pretraining" | "sft" | "rm" | "dpo" | "rl";
  /** what a step minimises (default: languageModeling); a task may set it in prepareModel */
  objective?: Objective;
  /** what the checkpoints are: a language model (default) or a reward model (its score row recorded) */
  readonly modelKind?: "language-model" | "reward-model";
  /** rows of a batch of B (preference pairs: 2B, a chosen and a rejected answer each); default B */
  rowsPerBatch?(B: number, cfg: TrainConfig): number;
  /** opens this rank's data; fails (naming the file) before anything big is allocated */
  open(cfg: TrainConfig, rank: number, ranks: number): { train: BatchSource; val: BatchSource | null };
  /** anything asynchronous the task needs before the model (RL: loading the user's reward module) */
  init?(): Promise<void>;
  /**
   * adapts the model before training (SFT: the chat tokens) and makes what the task needs beside it; `print` is the
   * run's log (warnings during training go there too); returns a line for the log, or null
   */
  prepareModel(model: GPT2, print: (line: string) => void): string | null | Promise<string | null>;
  samplePrompt(): SamplePrompt;
  /**
   * the data's tokenizer, known once open() ran: GPT-2's unless the shards carry a character vocabulary (a model from
   * scratch then gets its size; a checkpoint must have been trained with the same)
   */
  tokenizer?: Tokenizer;
}

/**
 * Gives a model the chat tokens when it lacks them (rows of its padded vocabulary, embeddings started at the mean of
 * the others); returns a line for the log, or null when it has them.
 */
export async function addChatTokens(model: GPT2): Promise<string | null> {
  if (model.config.vocabSize >= CHAT_VOCAB_SIZE) return null;
  if (model.config.paddedVocabSize < CHAT_VOCAB_SIZE) {
    throw new TrainConfigError(`the model's vocabulary has ${model.config.paddedVocabSize} rows, too few for the chat tokens (${CHAT_VOCAB_SIZE})`);
  }
  await model.extendVocab(CHAT_VOCAB_SIZE);
  return `chat tokens <|system|> <|user|> <|assistant|> <|end|> added as ids ${CHAT_TOKENS.system}-${CHAT_TOKENS.end} ` +
    `(padded vocabulary rows; embeddings start at the mean of the others)`;
}

/** Pretraining on llm.c token shards (-i, -j). */
export function pretraining(): TrainTask {
  const task: TrainTask = {
    kind: "pretraining",
    tokenizer: gpt2Tokenizer,
    open(cfg, rank, ranks) {
      if (!cfg.trainData) throw new TrainConfigError("no train shards: give -i 'DIR/NAME_train_*.bin' (make them with gpt2 prepare)");
      const files = findShards(cfg.trainData);
      const tok = shardTokenizer(files[0]);
      if (cfg.valData) {
        const v = shardTokenizer(findShards(cfg.valData)[0]);
        if (JSON.stringify(v.spec) !== JSON.stringify(tok.spec)) {
          throw new TrainConfigError(`-i and -j were made with different tokenizers (${tok.kind}, ${v.kind}): prepare them together`);
        }
      }
      task.tokenizer = tok;
      const o = { vocabSize: tok.vocabSize, eot: tok.eot };
      const train = new DataLoader(files, cfg.batchSize, cfg.seqLen, { ...o, shuffle: cfg.shuffle === 1, seed: cfg.seed, rank, worldSize: ranks });
      return { train, val: cfg.valData ? new DataLoader(cfg.valData, cfg.batchSize, cfg.seqLen, o) : null };
    },
    prepareModel: () => null,
    samplePrompt: () => ({ ids: [task.tokenizer!.eot], stop: [], label: "" }),
  };
  return task;
}

/** Supervised fine-tuning on JSONL rows (--data, --val-data): conversations or prompt/completion pairs. */
export function sft(): TrainTask {
  let first: Example | null = null;
  let chat = false;
  return {
    kind: "sft",
    open(cfg, rank, ranks) {
      if (!cfg.trainData) throw new TrainConfigError("no training rows: give --data FILE.jsonl (rows {\"messages\": [...]} or {\"prompt\", \"completion\"})");
      const o = { B: cfg.batchSize, T: cfg.seqLen, tooLong: cfg.tooLong, seed: cfg.seed };
      const rows = readExamples(cfg.trainData);
      const train = new SftData(rows.map((r) => r.example), { ...o, shuffle: cfg.shuffle === 1, rank, worldSize: ranks }, cfg.trainData);
      let val: SftData | null = null;
      first = rows[0].example;
      if (cfg.valData) {
        const valRows = readExamples(cfg.valData);
        val = new SftData(valRows.map((r) => r.example), { ...o, shuffle: false }, cfg.valData);
        first = valRows[0].example;
      }
      chat = train.stats.chat || !!val?.stats.chat;
      return { train, val };
    },
    prepareModel: (model) => (chat ? addChatTokens(model) : null),
    samplePrompt() {
      if (!first) return { ids: [EOT_TOKEN], stop: [], label: "" };
      const { prompt, chat: isChat } = promptAndAnswer(first);
      const label = first.kind === "text" ? first.prompt : [...first.messages].reverse().find((m) => m.role === "user")?.content ?? "";
      return { ids: prompt, stop: isChat ? [CHAT_TOKENS.end, EOT_TOKEN] : [EOT_TOKEN], label };
    },
  };
}
