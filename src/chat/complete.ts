// Completions over a KV cache: n samples of one prompt side by side (one cache row each), streamed as text that is
// safe to show (whole UTF-8 characters, nothing that may turn out to be the start of a stop string), ending at a stop
// token, a stop string, max tokens or a full context. Used by `gpt2 chat`, `gpt2 serve` and `gpt2 eval chat`.

import { KVCache, sampleToken, type SampleOptions } from "../model/generate.js";
import type { GPT2 } from "../model/gpt2.js";
import { StreamDecoder } from "../tokenizer/bpe.js";
import type { Rng } from "../util/rng.js";

export interface CompletionOptions extends SampleOptions {
  /** new tokens at most, per sample */
  maxTokens: number;
  /** tokens that end a sample (not part of its text), e.g. <|end|> and <|endoftext|> */
  stopTokens: number[];
  /** strings that end a sample (not part of its text), as OpenAI's `stop` */
  stopText?: string[];
  /** OpenAI's penalties on tokens already sampled in this completion: once (presence) and per time (frequency) */
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** [token, bias] added to that token's logit at every step, as OpenAI's logit_bias */
  logitBias?: [number, number][];
}

/** why a sample ended: a stop token or string, max tokens or a full context, or the caller's signal */
export type FinishReason = "stop" | "length" | "abort";

export type CompletionEvent =
  | { kind: "text"; index: number; text: string }
  | { kind: "done"; index: number; reason: FinishReason; tokens: number[]; stopToken?: number };

/** Turns one sample's tokens into text pieces, holding back what could still become a stop string. */
export class TextSink {
  private readonly dec = new StreamDecoder();
  private text = "";
  private sent = 0;
  private readonly hold: number;
  stopped = false;

  constructor(private readonly stops: string[] = []) {
    this.hold = Math.max(0, ...stops.map((s) => s.length - 1));
  }

  /** Adds a token; returns the text that may be shown now ("" if none). Sets `stopped` when a stop string appears. */
  push(token: number): string {
    if (this.stopped) return "";
    this.text += this.dec.push(token);
    // a stop string not found before must end in the new text, so it starts at or after `sent` (held back); each
    // one found cuts the text, so the earliest of several wins
    for (const stop of this.stops) {
      const at = this.text.indexOf(stop, this.sent);
      if (at >= 0) {
        this.stopped = true;
        this.text = this.text.slice(0, at);
      }
    }
    let end = this.stopped ? this.text.length : this.text.length - this.hold;
    if (end > this.sent && end < this.text.length && isLowSurrogate(this.text.charCodeAt(end))) end--;
    if (end <= this.sent) return "";
    const out = this.text.slice(this.sent, end);
    this.sent = end;
    return out;
  }

  /** The rest, when the sample has ended. */
  flush(): string {
    if (!this.stopped) this.text += this.dec.flush();
    const out = this.text.slice(this.sent);
    this.sent = this.text.length;
    return out;
  }

  /** all text so far */
  get all(): string { return this.text; }
}

function isLowSurrogate(c: number): boolean { return c >= 0xdc00 && c <= 0xdfff; }

/** A cache for n samples long enough for the prompt and the answer (at most the model's context). */
export function cacheFor(model: GPT2, n: number, promptLength: number, maxTokens: number): KVCache {
  return new KVCache(model, n, Math.min(model.context, promptLength + maxTokens));
}

/**
 * Feeds `feed` to every row of the cache (after what it holds already), then samples up to maxTokens per row.
 * Yields text as it becomes safe to show and one "done" per sample; between tokens it yields to the event loop,
 * so a server stays responsive and `signal` (a client gone, a stop button) is noticed. The cache ends holding the
 * prompt and every sampled token but each sample's last one.
 */
export async function* complete(model: GPT2, cache: KVCache, feed: number[], o: CompletionOptions, rng: Rng,
  signal?: AbortSignal): AsyncGenerator<CompletionEvent> {
  const n = cache.B, { vocabSize: V, paddedVocabSize: Vp } = model.config;
  if (feed.length === 0) throw new RangeError("nothing to feed: the prompt is empty");
  if (cache.pos + feed.length > cache.maxT) throw new RangeError(`the prompt (${cache.pos + feed.length} tokens) does not fit the context (${cache.maxT})`);
  const rows = new Int32Array(n * feed.length);
  for (let b = 0; b < n; b++) rows.set(feed, b * feed.length);
  let logits = await cache.stepAsync(rows, feed.length);
  const sinks = Array.from({ length: n }, () => new TextSink(o.stopText));
  const tokens: number[][] = Array.from({ length: n }, () => []);
  const counts = Array.from({ length: n }, () => new Map<number, number>());
  const done = new Array<boolean>(n).fill(false);
  const penalize = (o.presencePenalty ?? 0) !== 0 || (o.frequencyPenalty ?? 0) !== 0;
  const next = new Int32Array(n);
  const abort = function* (): Generator<CompletionEvent> {
    for (let b = 0; b < n; b++) if (!done[b]) yield { kind: "done", index: b, reason: "abort", tokens: tokens[b] };
  };
  for (;;) {
    if (signal?.aborted) { yield* abort(); return; }
    for (let b = 0; b < n; b++) {
      if (done[b]) continue;
      const row = logits.subarray(b * Vp, b * Vp + V);
      if (o.logitBias) for (const [tok, bias] of o.logitBias) row[tok] += bias;
      if (penalize) {
        for (const [tok, c] of counts[b]) row[tok] -= (o.frequencyPenalty ?? 0) * c + (o.presencePenalty ?? 0);
      }
      const tok = sampleToken(row, V, rng, o);
      next[b] = tok;
      if (o.stopTokens.includes(tok)) {
        done[b] = true;
        const rest = sinks[b].flush();
        if (rest) yield { kind: "text", index: b, text: rest };
        yield { kind: "done", index: b, reason: "stop", tokens: tokens[b], stopToken: tok };
        continue;
      }
      tokens[b].push(tok);
      counts[b].set(tok, (counts[b].get(tok) ?? 0) + 1);
      const text = sinks[b].push(tok);
      const full = tokens[b].length >= o.maxTokens || cache.pos >= cache.maxT;
      if (sinks[b].stopped || full) {
        done[b] = true;
        const rest = text + sinks[b].flush();
        if (rest) yield { kind: "text", index: b, text: rest };
        yield { kind: "done", index: b, reason: sinks[b].stopped ? "stop" : "length", tokens: tokens[b] };
      } else if (text) {
        yield { kind: "text", index: b, text };
      }
    }
    if (done.every(Boolean)) return;
    await new Promise((r) => setImmediate(r));
    if (signal?.aborted) { yield* abort(); return; }
    logits = await cache.stepAsync(next, 1);
  }
}
