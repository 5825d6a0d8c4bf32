// A multi-turn conversation with a model, as `gpt2 chat` holds it: the conversation's tokens, and a KV cache that
// keeps them, so each turn feeds only its new tokens (the user's message and the template's tags), never the whole
// history again. When the context would overflow, the oldest turns are dropped (the system message stays) and the
// cache is rebuilt once.

import type { KVCache } from "../model/generate.js";
import type { GPT2 } from "../model/gpt2.js";
import { CHAT_TOKENS, decode, EOT_TOKEN, encodeOrdinary } from "../tokenizer/bpe.js";
import type { Rng } from "../util/rng.js";
import { cacheFor, complete, type CompletionOptions, type FinishReason } from "./complete.js";
import type { Message } from "./template.js";

export class ChatSession {
  /** the conversation as text */
  readonly messages: Message[] = [];
  /** the system message's tokens (<|endoftext|> [<|system|> ... <|end|>]) and each turn's (user + assistant) */
  private head: number[] = [EOT_TOKEN];
  private turns: number[][] = [];
  private cache: KVCache | null = null;
  /** tokens the cache holds: a prefix of head + turns */
  private cached = 0;
  /** how many tokens the last reply fed to the model (the new turn only, unless the cache was rebuilt) */
  lastFed = 0;

  constructor(readonly model: GPT2, system?: string) {
    if (model.config.vocabSize < CHAT_TOKENS.end + 1) {
      throw new RangeError("this model has no chat tokens (vocabulary 50257): fine-tune it with gpt2 sft on conversations first");
    }
    if (system) this.setSystem(system);
  }

  /** Starts over with a new system message ("" for none). */
  setSystem(text: string): void {
    const head = text ? [EOT_TOKEN, CHAT_TOKENS.system, ...encodeOrdinary(text), CHAT_TOKENS.end] : [EOT_TOKEN];
    if (head.length > this.model.context / 2) {
      throw new RangeError(`the system message (${head.length} tokens) takes more than half the model's context (${this.model.context})`);
    }
    this.reset();
    this.head = head;
    if (text) this.messages.push({ role: "system", content: text });
  }

  /** Forgets the conversation (the system message too). */
  reset(): void {
    this.head = [EOT_TOKEN];
    this.turns = [];
    this.messages.length = 0;
    this.cached = 0;
    this.cache?.reset();
  }

  private get ids(): number[] { return [...this.head, ...this.turns.flat()]; }

  /** the conversation's tokens, as the model saw them (the template, with the answers' sampled tokens) */
  get tokens(): number[] { return this.ids; }

  /** the last answer's tokens (without the closing <|end|>) */
  lastAnswer: number[] = [];

  /**
   * The assistant's reply to `text`, streamed as text pieces; the reply joins the conversation when it ends
   * (also when cut by maxTokens, `signal`, or the caller leaving the loop). Returns why it ended.
   */
  async *say(text: string, o: Omit<CompletionOptions, "stopTokens" | "stopText">, rng: Rng, signal?: AbortSignal): AsyncGenerator<string, FinishReason> {
    const blockSize = this.model.context;
    const turn = [CHAT_TOKENS.user, ...encodeOrdinary(text), CHAT_TOKENS.end, CHAT_TOKENS.assistant];
    // refused before anything changes: the conversation stays as it was
    if (this.head.length + turn.length + 1 > blockSize) {
      throw new RangeError(`the message is too long for the model's context (${blockSize} tokens, ${this.head.length} of them the system message)`);
    }
    const room = Math.min(o.maxTokens, blockSize - this.head.length - turn.length);
    this.turns.push(turn);
    this.messages.push({ role: "user", content: text });
    // when the context would overflow, drop the oldest turns: down to three quarters of it, so that the next few
    // turns fit without dropping (and rebuilding the cache) again
    let dropped = false;
    if (this.ids.length + room > blockSize) {
      while (this.turns.length > 1 && this.ids.length + room > blockSize - Math.floor(blockSize / 4)) { this.turns.shift(); dropped = true; }
    }
    this.cache ??= cacheFor(this.model, 1, blockSize, 0);
    if (dropped) this.cached = 0;
    this.cache.pos = this.cached; // entries past what the conversation holds are stale; they are written over
    const feed = this.ids.slice(this.cached);
    this.lastFed = feed.length;
    let reason: FinishReason = "abort";
    const answer: number[] = [];
    try {
      for await (const ev of complete(this.model, this.cache, feed, { ...o, maxTokens: room, stopTokens: [CHAT_TOKENS.end, EOT_TOKEN] }, rng, signal)) {
        if (ev.kind === "text") yield ev.text;
        else { reason = ev.reason; answer.push(...ev.tokens); }
      }
    } finally {
      // however the reply ended, it joins the conversation as far as it went: the cache holds the prompt and the
      // answer but (maybe) its last token, and the template closes the answer with <|end|>
      this.cached = this.cache.pos;
      turn.push(...answer, CHAT_TOKENS.end);
      this.lastAnswer = answer;
      this.messages.push({ role: "assistant", content: decode(answer) });
    }
    return reason;
  }
}
