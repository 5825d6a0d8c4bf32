// Exact-match accuracy of a model's answers: for each row (a conversation whose last assistant message is the
// reference, or a prompt and its completion), the model answers greedily and the answer counts when it equals the
// reference (surrounding white space ignored).

import { cacheFor, complete } from "../chat/complete.js";
import { promptAndAnswer, type Example } from "../chat/template.js";
import type { GPT2 } from "../model/gpt2.js";
import { CHAT_TOKENS, encodeOrdinary, EOT_TOKEN } from "../tokenizer/bpe.js";
import { Rng } from "../util/rng.js";

export interface ChatEvalDetail { index: number; prompt: string; answer: string; reference: string; correct: boolean }
export interface ChatEvalResult { n: number; correct: number; accuracy: number; details: ChatEvalDetail[] }

export async function evaluateChat(model: GPT2, examples: Example[], o: { maxTokens?: number; onProgress?: (done: number, correct: number) => void } = {}): Promise<ChatEvalResult> {
  const details: ChatEvalDetail[] = [];
  const rng = new Rng(0); // greedy: never drawn from
  let correct = 0;
  const cache = cacheFor(model, 1, model.context, 0); // one cache for every row, reset for each
  for (const [index, ex] of examples.entries()) {
    const { prompt, answer: reference, chat } = promptAndAnswer(ex);
    // room for the reference's length twice over: a longer answer is wrong anyway
    const maxTokens = o.maxTokens ?? 2 * encodeOrdinary(reference).length + 8;
    const ids = prompt.slice(-(model.context - 1));
    cache.reset();
    let answer = "";
    for await (const ev of complete(model, cache, ids, { maxTokens, temperature: 0, stopTokens: chat ? [CHAT_TOKENS.end, EOT_TOKEN] : [EOT_TOKEN] }, rng)) {
      if (ev.kind === "text") answer += ev.text;
    }
    const ok = answer.trim() === reference.trim();
    if (ok) correct++;
    const last = ex.kind === "chat" ? [...ex.messages].reverse().find((m) => m.role === "user")?.content ?? "" : ex.prompt;
    details.push({ index, prompt: last, answer, reference, correct: ok });
    o.onProgress?.(index + 1, correct);
  }
  return { n: examples.length, correct, accuracy: examples.length ? correct / examples.length : NaN, details };
}
