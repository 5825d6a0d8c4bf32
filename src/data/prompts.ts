// RL's data: prompts to answer (JSONL rows with "messages", a conversation ending with the user's message, or
// "prompt", a plain string), batched for GRPO's groups of answers. Rows keep their other fields: the reward checker
// sees them (a reference answer, test cases).

import * as fs from "node:fs";
import { parseJsonl, parseMessages, renderChat, renderText } from "../chat/template.js";
import { FormatError } from "../io/files.js";
import { EOT_TOKEN } from "../tokenizer/bpe.js";
import { Rng } from "../util/rng.js";
import { findFiles } from "./sft.js";
import type { Batch, BatchPosition, BatchSource } from "./source.js";

/** A prompt to answer: its tokens, its text as the checker sees it, and its row (other fields go to the checker). */
export interface Prompt {
  ids: number[];
  text: string;
  chat: boolean;
  row: Record<string, unknown>;
  where: string;
}

export function readPrompts(pattern: string): Prompt[] {
  const out: Prompt[] = [];
  for (const file of findFiles(pattern, "JSONL files")) {
    for (const { row, where } of parseJsonl(fs.readFileSync(file, "utf8"), file)) {
      if (!row || typeof row !== "object" || Array.isArray(row)) throw new FormatError(`${where}: expected an object with "messages" or "prompt"`);
      const r = row as Record<string, unknown>;
      if ("messages" in r) {
        const messages = parseMessages(r.messages, where);
        if (messages.at(-1)!.role === "assistant") {
          throw new FormatError(`${where}: the conversation must end with the user's message (the model answers it)`);
        }
        const user = [...messages].reverse().find((m) => m.role === "user");
        out.push({ ids: renderChat(messages, { generationPrompt: true }).ids, text: user?.content ?? "", chat: true, row: r, where });
      } else if (typeof r.prompt === "string") {
        out.push({ ids: renderText(r.prompt).ids, text: r.prompt, chat: false, row: r, where });
      } else {
        throw new FormatError(`${where}: expected "messages" (a conversation ending with the user's message) or "prompt" (a string)`);
      }
    }
  }
  if (out.length === 0) throw new FormatError(`${pattern} holds no prompts`);
  return out;
}

/** A batch of prompts; inputs/targets are the prompts themselves (checkpoints check their weights on them). */
export interface PromptBatch extends Batch {
  prompts: Prompt[];
  /** answers per prompt: the group in training, one greedy answer in validation */
  group: number;
  /** where the batch sits, seeding its answers: the same batch always samples the same way from the same weights */
  seed: number;
}

export interface PromptPosition extends BatchPosition { index: number; repeat: number }

export class PromptData implements BatchSource {
  readonly T: number;
  private pos: PromptPosition = { epoch: 0, index: 0, repeat: 0 };
  private order: Uint32Array | null = null;
  private orderEpoch = -1;
  private last: PromptBatch | null = null;

  /**
   * @param B prompts per batch
   * @param repeats each batch comes back this many times in a row (PPO's inner epochs on the same answers)
   */
  constructor(readonly prompts: Prompt[], readonly B: number, T: number, readonly group: number, private readonly o:
    { shuffle: boolean; seed: number; rank: number; worldSize: number; repeats: number }) {
    this.T = T;
    const long = prompts.find((p) => p.ids.length >= T);
    if (long) throw new FormatError(`${long.where}: the prompt has ${long.ids.length} tokens; -t ${T} leaves it no room to answer`);
    if (prompts.length < B * o.worldSize) throw new FormatError(`${prompts.length} prompt(s), fewer than one batch needs (B x ranks = ${B * o.worldSize})`);
  }

  get position(): PromptPosition { return { ...this.pos }; }
  set position(p: PromptPosition) {
    if (!(Number.isInteger(p.index) && p.index >= 0 && p.index < this.prompts.length && p.epoch >= 0)) {
      throw new RangeError(`prompt position ${JSON.stringify(p)} does not fit ${this.prompts.length} prompts`);
    }
    this.pos = { epoch: p.epoch, index: p.index, repeat: p.repeat ?? 0 };
    this.last = null;
  }
  get epoch(): number { return this.pos.epoch; }
  get batchesPerEpoch(): number { return Math.floor(this.prompts.length / (this.B * this.o.worldSize)) * this.o.repeats; }
  reset(): void { this.pos = { epoch: 0, index: 0, repeat: 0 }; this.last = null; }
  describe(): string { return `${this.prompts.length.toLocaleString("en-US")} prompts, ${this.group} answer(s) each`; }
  close(): void { this.order = null; }

  private at(epoch: number, i: number): Prompt {
    if (!this.o.shuffle) return this.prompts[i];
    if (this.orderEpoch !== epoch) {
      this.order = new Rng((this.o.seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0).permutation(this.prompts.length);
      this.orderEpoch = epoch;
    }
    return this.prompts[this.order![i]];
  }

  batchOf(prompts: Prompt[], seed: number): PromptBatch {
    const B = prompts.length;
    let T = 2;
    for (const p of prompts) T = Math.max(T, p.ids.length);
    const inputs = new Int32Array(B * T).fill(EOT_TOKEN), targets = new Int32Array(B * T).fill(-1);
    prompts.forEach((p, b) => {
      for (let t = 0; t < p.ids.length; t++) {
        inputs[b * T + t] = p.ids[t];
        if (t + 1 < p.ids.length) targets[b * T + t] = p.ids[t + 1];
      }
    });
    return { inputs, targets, B, T, prompts, group: this.group, seed };
  }

  next(): PromptBatch {
    const { epoch, index } = this.pos;
    if (!this.last) {
      const ps = Array.from({ length: this.B }, (_, b) => this.at(epoch, index + this.o.rank * this.B + b));
      this.last = this.batchOf(ps, (Math.imul(this.o.seed ^ (epoch * 7919), 0x9e3779b1) + index * 31 + this.o.rank) >>> 0);
    }
    const batch = this.last;
    if (++this.pos.repeat >= this.o.repeats) {
      const group = this.B * this.o.worldSize;
      this.pos = { epoch, index: index + group, repeat: 0 };
      if (this.pos.index + group > this.prompts.length) this.pos = { epoch: epoch + 1, index: 0, repeat: 0 };
      this.last = null;
    }
    return batch;
  }

  heldBatch(): PromptBatch { return this.batchOf(this.prompts.slice(0, this.B), 0); }
}
