// The periodic work of a run, between optimizer steps: validation loss, HellaSwag, a sample. Which steps do it is
// decided here too, so that a resumed run knows which of its first step's records it is about to write again.

import type { BatchSource } from "../data/source.js";
import { evaluateHellaswag, type HellaExample } from "../eval/hellaswag.js";
import { datasetLoss } from "../eval/loss.js";
import { generateAsync, type KVCache } from "../model/generate.js";
import type { GPT2 } from "../model/gpt2.js";
import { gpt2Tokenizer, type Tokenizer } from "../tokenizer/tokenizer.js";
import type { Rng } from "../util/rng.js";
import type { TrainConfig } from "./config.js";
import { metricMeans, type Objective, type SamplePrompt } from "./task.js";

/** validation (and HellaSwag) run at step 0, every -v steps and at the last step */
export function validatesAt(cfg: TrainConfig, step: number, last: boolean): boolean {
  return cfg.valEvery > 0 && (step % cfg.valEvery === 0 || last);
}

/** samples at step 0, every -s steps after the start (a resumed run does not repeat its first step's), and at the end */
export function samplesAt(cfg: TrainConfig, step: number, startStep: number, last: boolean): boolean {
  return cfg.sampleEvery > 0 && (step % cfg.sampleEvery === 0 || last) && (step > startStep || last || step === 0);
}

/**
 * The objective's mean loss and metrics over the first `batches` batches of the validation data (from its start
 * each time, so that every evaluation sees the same data).
 */
export async function validation(model: GPT2, val: BatchSource, batches: number, objective?: Objective): Promise<{ loss: number; metrics: Record<string, number> }> {
  if (!objective) return { loss: await datasetLoss(model, val, batches), metrics: {} };
  val.reset();
  const n = Math.min(batches, Math.max(1, val.batchesPerEpoch));
  let sum = 0, units = 0, counted = 0;
  const metrics: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const b = val.next();
    const u = objective.units(b);
    const r = await objective.evaluate(model, b);
    if (Number.isFinite(r.loss)) { sum += r.loss * u; counted += u; }
    units += u;
    for (const [k, x] of Object.entries(r.metrics ?? {})) metrics[k] = (metrics[k] ?? 0) + x;
  }
  return { loss: counted ? sum / counted : NaN, metrics: metricMeans(objective, metrics, units) };
}

/** HellaSwag acc_norm, with rows of 4 endings batched as the training buffers allow */
export async function hellaswagScore(model: GPT2, examples: HellaExample[], B: number): Promise<{ accNorm: number; n: number }> {
  const h = await evaluateHellaswag(model, examples, Math.max(1, Math.floor(B / 4)));
  return { accNorm: h.acc_norm, n: h.n };
}

/** A sample from the task's prompt, at temperature 1 (as llm.c's), until a stop token or genTokens. */
export async function sampleText(model: GPT2, cache: KVCache, rng: Rng, prompt: SamplePrompt, genTokens: number, tokenizer: Tokenizer = gpt2Tokenizer): Promise<string> {
  const room = Math.max(1, cache.maxT - prompt.ids.length);
  const [ids] = await generateAsync(model, prompt.ids.slice(-(cache.maxT - 1)), 1, rng,
    { maxNewTokens: Math.min(genTokens, room), temperature: 1, stopAtEot: prompt.stop.length > 0, stopTokens: prompt.stop }, cache);
  return tokenizer.decode(ids);
}
