// What a run trains on. Pretraining reads token shards; supervised fine-tuning reads conversations rendered by the
// chat template, with the loss on the assistant's tokens only. Both run through the same loop (loop.ts) with the
// same guarantees: checkpoints and exact resume, the NaN guard and rollback, the memory plan, data parallelism.

import { promptAndAnswer, type Example } from "../chat/template.js";
import { DataLoader } from "../data/loader.js";
import { readExamples, SftData } from "../data/sft.js";
import type { BatchSource } from "../data/source.js";
import type { GPT2 } from "../model/gpt2.js";
import { CHAT_TOKENS, CHAT_VOCAB_SIZE, EOT_TOKEN } from "../tokenizer/bpe.js";
import { TrainConfigError, type TrainConfig } from "./config.js";

/** The prompt of the periodic samples, and the tokens that end a sample. */
export interface SamplePrompt {
  ids: number[];
  stop: number[];
  /** what is printed before the sample: "" for pretraining, the conversation's last user message for SFT */
  label: string;
}

export interface TrainTask {
  /** recorded in checkpoints and logs */
  readonly kind: "pretraining" | "sft";
  /** opens this rank's data; fails (naming the file) before anything big is allocated */
  open(cfg: TrainConfig, rank: number, ranks: number): { train: BatchSource; val: BatchSource | null };
  /** adapts the model before training (SFT: the chat tokens); returns a line for the log, or null */
  prepareModel(model: GPT2): string | null;
  samplePrompt(): SamplePrompt;
}

/** Pretraining on llm.c token shards (-i, -j). */
export function pretraining(): TrainTask {
  return {
    kind: "pretraining",
    open(cfg, rank, ranks) {
      if (!cfg.trainData) throw new TrainConfigError("no train shards: give -i 'DIR/NAME_train_*.bin' (make them with gpt2 prepare)");
      const train = new DataLoader(cfg.trainData, cfg.batchSize, cfg.seqLen, { shuffle: cfg.shuffle === 1, seed: cfg.seed, rank, worldSize: ranks });
      return { train, val: cfg.valData ? new DataLoader(cfg.valData, cfg.batchSize, cfg.seqLen) : null };
    },
    prepareModel: () => null,
    samplePrompt: () => ({ ids: [EOT_TOKEN], stop: [], label: "" }),
  };
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
    prepareModel(model) {
      if (!chat || model.config.vocabSize >= CHAT_VOCAB_SIZE) return null;
      if (model.config.paddedVocabSize < CHAT_VOCAB_SIZE) {
        throw new TrainConfigError(`the model's vocabulary has ${model.config.paddedVocabSize} rows, too few for the chat tokens (${CHAT_VOCAB_SIZE})`);
      }
      model.extendVocab(CHAT_VOCAB_SIZE);
      return `chat tokens <|system|> <|user|> <|assistant|> <|end|> added as ids ${CHAT_TOKENS.system}-${CHAT_TOKENS.end} ` +
        `(padded vocabulary rows; embeddings start at the mean of the others)`;
    },
    samplePrompt() {
      if (!first) return { ids: [EOT_TOKEN], stop: [], label: "" };
      const { prompt, chat: isChat } = promptAndAnswer(first);
      const label = first.kind === "text" ? first.prompt : [...first.messages].reverse().find((m) => m.role === "user")?.content ?? "";
      return { ids: prompt, stop: isChat ? [CHAT_TOKENS.end, EOT_TOKEN] : [EOT_TOKEN], label };
    },
  };
}
