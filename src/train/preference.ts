// Learning from preferences, the third stage of a GPT assistant (TRL's RewardTrainer and DPOTrainer):
// - a reward model: GPT-2 with a scalar head on the last token, trained with the Bradley-Terry loss
//   -log sigmoid(r_chosen - r_rejected). The head is a padded row of wte (never a token, tied as the lm_head is), so
//   a reward model is a GPT-2 checkpoint like any other, with its kind and score row recorded;
// - DPO (Rafailov et al. 2023): -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) with pi and ref the summed
//   log-probabilities of each answer's tokens under the policy and the frozen starting model (computed once, before
//   training, as TRL's precompute_ref_log_probs). Its gradient is a weighted cross-entropy gradient over the answer
//   tokens, so each batch runs one forward without gradients (the policy's log-probabilities) and one with per-token
//   weights.

import { PairData, type PairBatch } from "../data/pairs.js";
import type { Batch } from "../data/source.js";
import type { GPT2 } from "../model/gpt2.js";
import { TrainConfigError, type TrainConfig } from "./config.js";
import { CHAT_TOKENS, EOT_TOKEN } from "../tokenizer/bpe.js";
import { addChatTokens, type Objective, type ObjectiveResult, type SamplePrompt, type TrainTask } from "./task.js";

/** The row of wte a reward model reads its score from: the last padded row (never a token of GPT-2 or the chat). */
export const REWARD_ROW = 50303;

const sigmoid = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
/** log(1 + e^x) without overflow */
const softplus = (x: number) => (x > 30 ? x : Math.log1p(Math.exp(x)));
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** A reward model's scores of a batch's rows (the score row's logit at each row's last token). */
export function rewardScores(model: GPT2, b: PairBatch | (Batch & { last: Int32Array }), row = REWARD_ROW, grad = false): Float32Array {
  return model.scores(b.inputs, b.B, b.T, b.last, row, grad);
}

/** rewardScores(), read back asynchronously: what training and validation use */
export function rewardScoresAsync(model: GPT2, b: PairBatch | (Batch & { last: Int32Array }), row = REWARD_ROW, grad = false): Promise<Float32Array> {
  return model.scoresAsync(b.inputs, b.B, b.T, b.last, row, grad);
}

/** Bradley-Terry loss of reward scores; rows 2k and 2k + 1 are pair k's chosen and rejected answers. */
function bradleyTerry(r: Float32Array, pairs: number): { loss: number; dr: Float32Array; metrics: Record<string, number> } {
  let loss = 0, correct = 0, margin = 0, chosen = 0, rejected = 0;
  const dr = new Float32Array(2 * pairs);
  for (let k = 0; k < pairs; k++) {
    const d = r[2 * k] - r[2 * k + 1];
    loss += softplus(-d);
    // d/dd softplus(-d) = -sigmoid(-d)
    dr[2 * k] = -sigmoid(-d);
    dr[2 * k + 1] = sigmoid(-d);
    if (d > 0) correct++;
    margin += d;
    chosen += r[2 * k];
    rejected += r[2 * k + 1];
  }
  return { loss: loss / pairs, dr, metrics: { accuracy: correct, margin, chosen, rejected } };
}

export const rewardModeling: Objective = {
  units: (b) => (b as PairBatch).pairs,
  async forwardBackward(model, b, weight) {
    const pb = b as PairBatch;
    const bt = bradleyTerry(await rewardScoresAsync(model, pb, REWARD_ROW, true), pb.pairs);
    // each pair's share of the step's mean: weight / pairs
    model.backwardScores(bt.dr.map((x) => (x * weight) / pb.pairs));
    return { loss: bt.loss, metrics: bt.metrics };
  },
  async evaluate(model, b) {
    const pb = b as PairBatch;
    const bt = bradleyTerry(await rewardScoresAsync(model, pb), pb.pairs);
    return { loss: bt.loss, metrics: bt.metrics };
  },
  metrics: [
    { name: "accuracy", format: (x) => `acc ${pct(x)}` },
    { name: "margin", format: (x) => `margin ${x.toFixed(3)}` },
  ],
};

/** Summed log-probabilities of each row's answer tokens (the batch's targets) under the model. */
export async function answerLogprobs(model: GPT2, b: Batch): Promise<Float64Array> {
  await model.forwardAsync(b.inputs, b.targets, b.B, b.T);
  const losses = await model.readLossesAsync(), out = new Float64Array(b.B);
  for (let r = 0; r < b.B; r++) for (let t = 0; t < b.T; t++) if (b.targets[r * b.T + t] >= 0) out[r] -= losses[r * b.T + t];
  return out;
}

/**
 * The DPO objective at temperature beta; with rpoAlpha > 0, plus rpoAlpha times the chosen answers' mean token NLL
 * (RPO, Pang et al. 2024; TRL's rpo_alpha): DPO alone lowers the likelihood of both answers and can degrade what the
 * model generates; the NLL term keeps the chosen ones likely.
 */
export function directPreference(beta: number, rpoAlpha = 0): Objective {
  const margins = (pi: Float64Array, pb: PairBatch) => {
    if (!pb.ref) throw new Error("DPO batches need the reference log-probabilities (computed before training)");
    const z = new Float64Array(pb.pairs);
    for (let k = 0; k < pb.pairs; k++) z[k] = beta * ((pi[2 * k] - pb.ref[2 * k]) - (pi[2 * k + 1] - pb.ref[2 * k + 1]));
    return z;
  };
  /** answer tokens of the chosen rows (the NLL term's mean is over them) */
  const chosenTokens = (pb: PairBatch) => {
    let n = 0;
    for (let k = 0; k < pb.pairs; k++) for (let t = 0; t < pb.T; t++) if (pb.targets[2 * k * pb.T + t] >= 0) n++;
    return n;
  };
  const stats = (pi: Float64Array, pb: PairBatch, z: Float64Array): ObjectiveResult => {
    let loss = 0, correct = 0, margin = 0, chosen = 0, rejected = 0, nll = 0;
    for (let k = 0; k < pb.pairs; k++) {
      loss += softplus(-z[k]);
      if (z[k] > 0) correct++;
      margin += z[k];
      // the implicit rewards beta * (pi - ref), as TRL logs them
      chosen += beta * (pi[2 * k] - pb.ref![2 * k]);
      rejected += beta * (pi[2 * k + 1] - pb.ref![2 * k + 1]);
      nll -= pi[2 * k];
    }
    const rpo = rpoAlpha > 0 ? (rpoAlpha * nll) / Math.max(1, chosenTokens(pb)) : 0;
    return { loss: loss / pb.pairs + rpo, metrics: { accuracy: correct, margin, chosen, rejected } };
  };
  return {
    units: (b) => (b as PairBatch).pairs,
    async forwardBackward(model, b, weight) {
      const pb = b as PairBatch;
      const pi = await answerLogprobs(model, pb);
      const z = margins(pi, pb);
      // dL/dpi_c = -beta sigmoid(-z), dL/dpi_r = +beta sigmoid(-z); the token gradient of -pi is that of the
      // cross-entropy, so each answer token's weight is -dL/dpi of its row, times the pair's share of the step
      const w = new Float32Array(pb.B * pb.T);
      // the NLL term: rpoAlpha / (chosen tokens) on each chosen token, times the batch's share of the step
      const nllWeight = rpoAlpha > 0 ? (rpoAlpha * weight) / Math.max(1, chosenTokens(pb)) : 0;
      for (let k = 0; k < pb.pairs; k++) {
        const g = (beta * sigmoid(-z[k]) * weight) / pb.pairs;
        for (let t = 0; t < pb.T; t++) {
          w[2 * k * pb.T + t] = g + nllWeight;
          w[(2 * k + 1) * pb.T + t] = -g;
        }
      }
      let M = 0;
      for (let i = 0; i < pb.B * pb.T; i++) if (pb.targets[i] >= 0) M++;
      // forward divides the gradient by the targets counted (M): lossScale M leaves the weights as they are
      await model.forwardBackwardAsync(pb.inputs, pb.targets, pb.B, pb.T, M, w);
      return stats(pi, pb, z);
    },
    async evaluate(model, b) {
      const pb = b as PairBatch;
      const pi = await answerLogprobs(model, pb);
      return stats(pi, pb, margins(pi, pb));
    },
    metrics: [
      { name: "accuracy", format: (x) => `acc ${pct(x)}` },
      { name: "margin", format: (x) => `margin ${x.toFixed(3)}` },
      { name: "chosen", format: (x) => `r+ ${x.toFixed(3)}` },
      { name: "rejected", format: (x) => `r- ${x.toFixed(3)}` },
    ],
  };
}

/** The prompt of a pair's chosen answer (its tokens before the answer), for the periodic samples. */
function pairPrompt(d: { rows: { ids: Int32Array; trained: Uint8Array }[][] } | null): SamplePrompt {
  if (!d || d.rows.length === 0) return { ids: [EOT_TOKEN], stop: [], label: "" };
  const { ids, trained } = d.rows[0][0];
  const start = trained.indexOf(1);
  const prompt = Array.from(ids.subarray(0, start));
  const chat = prompt.at(-1) === CHAT_TOKENS.assistant;
  return { ids: prompt, stop: chat ? [CHAT_TOKENS.end, EOT_TOKEN] : [EOT_TOKEN], label: "(the first pair's prompt)" };
}

/** Opens preference pairs for a run (2B rows per batch: B pairs). */
function openPairs(cfg: TrainConfig, rank: number, ranks: number): { train: PairData; val: PairData | null } {
  if (!cfg.trainData) throw new TrainConfigError("no preference pairs: give --data pairs.jsonl (rows {\"messages\" or \"prompt\", \"chosen\", \"rejected\"})");
  const o = { B: cfg.batchSize, T: cfg.seqLen, tooLong: cfg.tooLong, seed: cfg.seed };
  const train = PairData.open(cfg.trainData, { ...o, shuffle: cfg.shuffle === 1, rank, worldSize: ranks });
  const val = cfg.valData ? PairData.open(cfg.valData, { ...o, shuffle: false }) : null;
  return { train, val };
}

/** `gpt2 rm train`: a reward model from an SFT model (or any GPT-2), on preference pairs. */
export function rewardModelTask(): TrainTask {
  let data: { train: PairData; val: PairData | null } | null = null;
  return {
    kind: "rm",
    modelKind: "reward-model",
    objective: rewardModeling,
    rowsPerBatch: (B) => 2 * B,
    open(cfg, rank, ranks) {
      data = openPairs(cfg, rank, ranks);
      return data;
    },
    async prepareModel(model) {
      const line = data!.train.stats.chat ? await addChatTokens(model) : null;
      if (model.config.vocabSize > REWARD_ROW) throw new TrainConfigError(`the model's vocabulary (${model.config.vocabSize}) reaches the score row ${REWARD_ROW}`);
      return `${line ? line + "; " : ""}reward model: the score is the logit of wte row ${REWARD_ROW} (a padded row) at each answer's last token`;
    },
    samplePrompt: () => pairPrompt(null), // a reward model's samples mean nothing: -s 0 (the CLI's default)
  };
}

/** `gpt2 dpo`: DPO against the starting model, frozen (its log-probabilities computed once, before step 0). */
export function dpoTask(beta: number, rpoAlpha = 0): TrainTask {
  let data: { train: PairData; val: PairData | null } | null = null;
  return {
    kind: "dpo",
    objective: directPreference(beta, rpoAlpha),
    rowsPerBatch: (B) => 2 * B,
    open(cfg, rank, ranks) {
      data = openPairs(cfg, rank, ranks);
      return data;
    },
    async prepareModel(model) {
      const line = data!.train.stats.chat ? await addChatTokens(model) : null;
      // the reference: this model as it starts, before any update (a resumed run computes it from -e, the same)
      const t0 = performance.now();
      for (const d of [data!.train, data!.val]) {
        if (!d) continue;
        d.ref = new Float64Array(2 * d.rows.length);
        for (let k0 = 0; k0 < d.rows.length; k0 += d.B) {
          const ids = Array.from({ length: Math.min(d.B, d.rows.length - k0) }, (_, i) => k0 + i);
          const lp = await answerLogprobs(model, d.batchOf(ids));
          ids.forEach((k, i) => { d.ref![2 * k] = lp[2 * i]; d.ref![2 * k + 1] = lp[2 * i + 1]; });
        }
      }
      return `${line ? line + "; " : ""}DPO: beta ${beta}${rpoAlpha ? `, plus ${rpoAlpha} x the chosen answers' NLL (RPO)` : ""}; the reference (the starting model) scored ${data!.train.rows.length + (data!.val?.rows.length ?? 0)} pairs in ` +
        `${((performance.now() - t0) / 1000).toFixed(1)} s`;
    },
    samplePrompt: () => pairPrompt(data && (data.val ?? data.train)),
  };
}
