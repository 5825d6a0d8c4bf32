// Reinforcement learning with rewards, the last stage of a GPT assistant: GRPO (DeepSeekMath, Shao et al. 2024) as
// TRL's GRPOTrainer and nanochat's RL do it. For each prompt a group of G answers is sampled with the KV cache,
// scored (by the user's checker, a module exporting reward(prompt, answer, row), or by a reward model), and each
// answer's advantage is its reward against its group's: A = (r - mean) / std. The loss per answer token is PPO's
// clipped surrogate, -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A), plus beta times the k3 estimate of the KL
// divergence to the frozen starting model, pi_ref / pi - log(pi_ref / pi) - 1; averaged over each answer's tokens,
// then over the answers. Its gradient is a weighted cross-entropy gradient over the answer tokens, so a batch runs
// one forward without gradients (the policy's log-probabilities, and the reference's) and one with per-token weights.

import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { cacheFor, complete } from "../chat/complete.js";
import type { KVCache } from "../model/generate.js";
import { PromptData, readPrompts, type Prompt, type PromptBatch } from "../data/prompts.js";
import type { Batch } from "../data/source.js";
import { loadModel, readModelKind } from "../io/load.js";
import type { GPT2 } from "../model/gpt2.js";
import { CHAT_TOKENS, EOT_TOKEN } from "../tokenizer/bpe.js";
import { Rng } from "../util/rng.js";
import { accumulationSteps, TrainConfigError, type TrainConfig } from "./config.js";
import { REWARD_ROW } from "./preference.js";
import { addChatTokens, type Objective, type ObjectiveResult, type SamplePrompt, type TrainTask } from "./task.js";

/** What a checker returns: a reward, or a reward and whether the answer is right (accuracy is then logged). */
export type RewardResult = number | { reward: number; correct?: boolean };
export type RewardFn = (prompt: string, answer: string, row: Record<string, unknown>) => RewardResult | Promise<RewardResult>;

/** Loads the user's checker: a module exporting reward (or a default function). */
export async function loadRewardModule(file: string): Promise<RewardFn> {
  if (!fs.existsSync(file)) throw new TrainConfigError(`reward module ${file} does not exist`);
  let mod: Record<string, unknown>;
  try { mod = await import(pathToFileURL(path.resolve(file)).href); } catch (e) {
    throw new TrainConfigError(`reward module ${file} failed to load: ${(e as Error).message.split("\n")[0]}`);
  }
  const fn = (mod.reward ?? mod.default) as unknown;
  if (typeof fn !== "function") throw new TrainConfigError(`reward module ${file} must export a function reward(prompt, answer, row)`);
  return fn as RewardFn;
}

/** One answer of a group, as scored. */
interface Answer { tokens: number[]; text: string; reward: number; correct: boolean | null }

/** What GRPO computes once per batch of answers, kept for PPO's further epochs on them. */
interface Rollouts {
  batch: Batch;
  /** per answer row: advantage and its answer's token count */
  advantage: Float64Array;
  lengths: Int32Array;
  /** per position: the log-probability under the policy that sampled (pi_old) and under the reference */
  oldLogp: Float64Array;
  refLogp: Float64Array;
  metrics: Record<string, number>;
  answers: number;
}

/** Per-position log-probabilities of the batch's targets under a model (0 where there is no target). */
async function tokenLogprobs(model: GPT2, b: Batch): Promise<Float64Array> {
  await model.forwardAsync(b.inputs, b.targets, b.B, b.T);
  const losses = await model.readLossesAsync(), out = new Float64Array(b.B * b.T);
  for (let i = 0; i < b.B * b.T; i++) if (b.targets[i] >= 0) out[i] = -losses[i];
  return out;
}

export interface RlOptions {
  beta: number;
  clip: number;
  temperature: number;
  maxNewTokens: number;
  /** the frozen starting model, for the KL penalty */
  reference: GPT2;
  /** the reward: the user's checker, or a reward model's score (logit of its score row at the answer's end) */
  reward: RewardFn | { model: GPT2; row: number };
  warn: (line: string) => void;
}

export function grpo(o: RlOptions): Objective {
  const done = new WeakMap<Batch, Rollouts>();
  // one KV cache per group size (the group, and 1 for greedy validation), reset for every prompt
  const caches = new Map<number, KVCache>();
  const cacheOf = (model: GPT2, G: number) => {
    let c = caches.get(G);
    if (!c) { c = cacheFor(model, G, model.context, 0); caches.set(G, c); }
    c.reset();
    return c;
  };

  /** samples and scores the batch's groups; the rows of the answer batch are prompt-major, group-minor */
  async function rollout(model: GPT2, pb: PromptBatch, greedy: boolean): Promise<Rollouts | null> {
    const G = greedy ? 1 : pb.group;
    const rng = new Rng(pb.seed);
    const kept: { prompt: Prompt; answers: Answer[] }[] = [];
    let known = 0, correct = 0;
    for (const prompt of pb.prompts) {
      const cache = cacheOf(model, G);
      const stop = prompt.chat ? [CHAT_TOKENS.end, EOT_TOKEN] : [EOT_TOKEN];
      const answers: Answer[] = Array.from({ length: G }, () => ({ tokens: [], text: "", reward: 0, correct: null }));
      for await (const ev of complete(model, cache, prompt.ids, { maxTokens: o.maxNewTokens, temperature: greedy ? 0 : o.temperature, stopTokens: stop }, rng)) {
        if (ev.kind === "text") answers[ev.index].text += ev.text;
        // the stop token, when the model chose it, is part of what it did: it is trained on too
        else answers[ev.index].tokens = ev.stopToken !== undefined ? [...ev.tokens, ev.stopToken] : ev.tokens;
      }
      let ok = true;
      if ("model" in o.reward) {
        // scored as the template ends an answer: its text, then the stop token
        const rows = answers.map((a) => [...prompt.ids, ...a.tokens.filter((t) => !stop.includes(t)), stop[0]]);
        const T = Math.max(...rows.map((r) => r.length));
        const inputs = new Int32Array(G * T).fill(EOT_TOKEN), last = new Int32Array(G);
        rows.forEach((r, b) => { inputs.set(r, b * T); last[b] = b * T + r.length - 1; });
        const s = await o.reward.model.scoresAsync(inputs, G, T, last, o.reward.row);
        answers.forEach((a, i) => { a.reward = s[i]; });
      } else {
        for (const a of answers) {
          try {
            const r = await o.reward(prompt.text, a.text, prompt.row);
            const reward = typeof r === "number" ? r : r?.reward;
            if (typeof reward !== "number" || !Number.isFinite(reward)) throw new Error(`returned ${typeof r === "number" ? String(r) : JSON.stringify(r)}, not a finite number`);
            a.reward = reward;
            if (typeof r === "object" && typeof r.correct === "boolean") a.correct = r.correct;
          } catch (e) {
            o.warn(`${prompt.where}: the reward function failed on an answer (${(e as Error).message.split("\n")[0]}); this prompt's answers are left out of the step`);
            ok = false;
            break;
          }
        }
      }
      if (!ok) continue;
      for (const a of answers) if (a.correct !== null) { known++; if (a.correct) correct++; }
      kept.push({ prompt, answers });
    }
    if (kept.length === 0) return null;
    // the answers as training rows: prompt + answer, targets on the answer's tokens
    const rows = kept.flatMap((k) => k.answers.map((a) => ({ ids: [...k.prompt.ids, ...a.tokens], start: k.prompt.ids.length })));
    const B = rows.length;
    let T = 2;
    for (const r of rows) T = Math.max(T, r.ids.length);
    const inputs = new Int32Array(B * T).fill(EOT_TOKEN), targets = new Int32Array(B * T).fill(-1);
    const lengths = new Int32Array(B);
    rows.forEach((r, b) => {
      for (let t = 0; t < r.ids.length; t++) {
        inputs[b * T + t] = r.ids[t];
        if (t + 1 >= r.start && t + 1 < r.ids.length) targets[b * T + t] = r.ids[t + 1];
      }
      lengths[b] = r.ids.length - r.start;
    });
    const batch: Batch = { inputs, targets, B, T };
    // group-relative advantages
    const advantage = new Float64Array(B);
    let sumR = 0, row = 0;
    for (const k of kept) {
      const rs = k.answers.map((a) => a.reward);
      const mean = rs.reduce((x, y) => x + y, 0) / rs.length;
      const std = Math.sqrt(rs.reduce((x, y) => x + (y - mean) ** 2, 0) / rs.length);
      for (const r of rs) { advantage[row++] = std > 1e-8 ? (r - mean) / std : 0; sumR += r; }
    }
    const oldLogp = greedy ? new Float64Array(0) : await tokenLogprobs(model, batch);
    const refLogp = greedy ? new Float64Array(0) : await tokenLogprobs(o.reference, batch);
    let len = 0;
    for (const l of lengths) len += l;
    return {
      batch, advantage, lengths, oldLogp, refLogp, answers: B,
      metrics: { reward: sumR, length: len, accuracy: correct, known, answers: B },
    };
  }

  return {
    units: (b) => (b as PromptBatch).prompts.length * (b as PromptBatch).group,
    async forwardBackward(model, b, weight) {
      const pb = b as PromptBatch;
      let r = done.get(b);
      if (!r) {
        const fresh = await rollout(model, pb, false);
        if (!fresh) {
          // every prompt's checker failed (each said so): nothing to train on; a backward with zero weight keeps
          // this rank's collectives in step with the others' (data parallelism reduces gradients during backward)
          await model.forwardBackwardAsync(pb.inputs, pb.targets, pb.B, pb.T, 0);
          return { loss: 0, metrics: {} };
        }
        r = fresh;
        done.set(b, r);
      }
      const { batch, advantage, lengths, oldLogp, refLogp } = r;
      const logp = await tokenLogprobs(model, batch);
      const w = new Float32Array(batch.B * batch.T);
      let loss = 0, kl = 0;
      // per answer: its share of the step (weight over this micro-batch's answers), spread over its tokens
      const perAnswer = weight / (pb.prompts.length * pb.group);
      for (let i = 0; i < batch.B; i++) {
        let li = 0, ki = 0;
        for (let t = 0; t < batch.T; t++) {
          const j = i * batch.T + t;
          if (batch.targets[j] < 0) continue;
          const ratio = Math.exp(Math.min(20, logp[j] - oldLogp[j])); // clamped: a ratio beyond e^20 is clipped anyway
          const A = advantage[i];
          const unclipped = A >= 0 ? ratio <= 1 + o.clip : ratio >= 1 - o.clip;
          const surrogate = Math.min(ratio * A, Math.min(Math.max(ratio, 1 - o.clip), 1 + o.clip) * A);
          const d = Math.min(20, refLogp[j] - logp[j]);
          const k3 = Math.exp(d) - d - 1;
          li += -surrogate + o.beta * k3;
          ki += k3;
          // dL/dlogp = -(A ratio [unclipped] - beta (1 - pi_ref / pi)) / |o|; the weight on the cross-entropy
          // gradient (that of -logp) is its negative
          w[j] = ((unclipped ? A * ratio : 0) - o.beta * (1 - Math.exp(d))) * perAnswer / Math.max(1, lengths[i]);
        }
        loss += li / Math.max(1, lengths[i]);
        kl += ki / Math.max(1, lengths[i]);
      }
      let M = 0;
      for (let i = 0; i < batch.B * batch.T; i++) if (batch.targets[i] >= 0) M++;
      await model.forwardBackwardAsync(batch.inputs, batch.targets, batch.B, batch.T, M, w);
      // answers left out (a failing checker) count as zero loss in the step's mean
      return { loss: loss / (pb.prompts.length * pb.group), metrics: { ...r.metrics, kl } };
    },
    async evaluate(model, b) {
      const pb = b as PromptBatch;
      const r = await rollout(model, { ...pb, group: 1 }, true);
      if (!r) return { loss: NaN, metrics: {} };
      return { loss: NaN, metrics: { reward: r.metrics.reward, accuracy: r.metrics.accuracy, known: r.metrics.known, length: r.metrics.length, answers: r.metrics.answers } } as ObjectiveResult;
    },
    // means over the answers scored (a failing checker's prompts are left out), accuracy over those it could judge
    metrics: [
      { name: "reward", format: (x) => `reward ${Number.isFinite(x) ? x.toFixed(3) : "-"}`, per: "answers" },
      { name: "accuracy", format: (x) => `acc ${Number.isFinite(x) ? (100 * x).toFixed(1) + "%" : "-"}`, per: "known" },
      { name: "kl", format: (x) => `kl ${Number.isFinite(x) ? x.toFixed(4) : "-"}`, per: "answers" },
      { name: "length", format: (x) => `len ${Number.isFinite(x) ? x.toFixed(1) : "-"}`, per: "answers" },
    ],
  };
}

/** `gpt2 rl`: GRPO from an SFT model, rewarded by a checker module or a reward model. */
export function rlTask(): TrainTask {
  let prompts: { train: PromptData; val: PromptData | null } | null = null;
  let cfg: TrainConfig | null = null;
  let reward: RewardFn | null = null;
  let objective: Objective | null = null;
  const task: TrainTask = {
    kind: "rl",
    rowsPerBatch: (B, c) => B * c.group,
    open(c, rank, ranks) {
      cfg = c;
      if (!c.trainData) throw new TrainConfigError("no prompts: give --prompts prompts.jsonl (rows {\"messages\": [...]} or {\"prompt\": \"...\"}, other fields go to the checker)");
      if (!c.rewardModel === !c.rewardModule) throw new TrainConfigError("give exactly one reward: --reward-model RM (made by gpt2 rm train) or --reward check.mjs");
      // PPO's epochs come back as the same batch in consecutive steps: with accumulation they would land in one step
      if (c.ppoEpochs > 1 && accumulationSteps(c, ranks) > 1) throw new TrainConfigError("--ppo-epochs above 1 needs one micro-batch per step (no -d accumulation)");
      const o = { shuffle: c.shuffle === 1, seed: c.seed, rank, worldSize: ranks, repeats: c.ppoEpochs };
      // a prompt leaves room for an answer of --max-new-tokens and its stop token within -t
      const room = c.seqLen - c.maxNewTokens;
      if (room < 2) throw new TrainConfigError(`-t ${c.seqLen} leaves no room for prompts beside answers of --max-new-tokens ${c.maxNewTokens}`);
      const train = new PromptData(readPrompts(c.trainData), c.batchSize, room, c.group, o);
      const val = c.valData ? new PromptData(readPrompts(c.valData), c.batchSize, room, 1, { ...o, shuffle: false, rank: 0, worldSize: 1, repeats: 1 }) : null;
      prompts = { train, val };
      return prompts;
    },
    async init() {
      if (cfg!.rewardModule) reward = await loadRewardModule(cfg!.rewardModule);
    },
    async prepareModel(model, print) {
      const c = cfg!;
      const chat = prompts!.train.prompts.some((p) => p.chat);
      const line = chat ? await addChatTokens(model) : null;
      // the reference: the starting model, frozen
      const reference = await loadModel(c.init, model.backend);
      if (chat) await addChatTokens(reference);
      let rewardOf: RlOptions["reward"];
      let how: string;
      if (reward) { rewardOf = reward; how = `reward from ${c.rewardModule}`; } else {
        const kind = readModelKind(c.rewardModel);
        if (kind.kind !== "reward-model") throw new TrainConfigError(`${c.rewardModel} is not a reward model (make one with gpt2 rm train)`);
        const rm = await loadModel(c.rewardModel, model.backend, "reward-model");
        if (chat && rm.config.vocabSize < model.config.vocabSize) {
          throw new TrainConfigError(`${c.rewardModel} has no chat tokens: it cannot score conversations (train it with gpt2 rm train on conversation pairs)`);
        }
        rewardOf = { model: rm, row: kind.scoreRow ?? REWARD_ROW };
        how = `reward from the reward model ${c.rewardModel}`;
      }
      const beta = c.beta >= 0 ? c.beta : 0.04;
      // the other models take batches of the policy's shapes: allocated once, now
      const rows = c.batchSize * c.group;
      reference.allocate(rows, c.seqLen);
      if ("model" in rewardOf) rewardOf.model.allocate(c.group, c.seqLen);
      objective = grpo({ beta, clip: c.clipRange, temperature: c.rlTemperature, maxNewTokens: c.maxNewTokens, reference, reward: rewardOf,
        warn: (l) => print(`warning: ${l}`) });
      (task as { objective?: Objective }).objective = objective;
      return `${line ? line + "; " : ""}GRPO: ${c.group} answers per prompt at temperature ${c.rlTemperature}, at most ${c.maxNewTokens} tokens; ${how}; ` +
        `KL to the starting model x${beta}; ${c.ppoEpochs} update(s) per batch of answers, clip ${c.clipRange}`;
    },
    samplePrompt(): SamplePrompt {
      const p = (prompts?.val ?? prompts?.train)?.prompts[0];
      if (!p) return { ids: [EOT_TOKEN], stop: [], label: "" };
      return { ids: p.ids, stop: p.chat ? [CHAT_TOKENS.end, EOT_TOKEN] : [EOT_TOKEN], label: p.text };
    },
  };
  return task;
}

