// Training a small GPT-2 on a text, as the web page does (and as a library call in Node): the same model, AdamW,
// gradient clipping and LR schedule as `gpt2 train`, on random windows of the text (nanoGPT's get_batch), with the
// reads asynchronous so a WebGPU backend serves it. No DOM and no Node APIs here.

import type { Backend } from "../kernels/backend.js";
import { encodeCheckpoint } from "../io/checkpoint-format.js";
import { makeConfig, type GPT2Config } from "../model/config.js";
import { generateAsync } from "../model/generate.js";
import { GPT2 } from "../model/gpt2.js";
import type { Tokenizer } from "../tokenizer/char.js";
import { AdamW, ADAMW_DEFAULTS, clipFactor, gradNormAsync } from "../train/adamw.js";
import { learningRate, type Schedule } from "../train/schedule.js";
import { Rng } from "../util/rng.js";

export interface TextTrainOptions {
  steps: number;
  batchSize: number;
  seqLen: number;
  lr: number;
  warmup: number;
  /** validation on the text's last tenth every N steps (0: never) */
  evalEvery: number;
  /** a sample every N steps (0: never) */
  sampleEvery: number;
  sampleTokens: number;
  seed: number;
  /** the model's shape (default: the tiny preset, 4 layers of 128) */
  preset: string;
}

export const TEXT_TRAIN_DEFAULTS: TextTrainOptions = {
  steps: 300, batchSize: 8, seqLen: 64, lr: 2e-3, warmup: 20, evalEvery: 50, sampleEvery: 100, sampleTokens: 120, seed: 1337, preset: "tiny",
};

export type TrainEvent =
  | { kind: "step"; step: number; loss: number; lr: number; norm: number; ms: number; tokensPerS: number }
  | { kind: "val"; step: number; loss: number }
  | { kind: "sample"; step: number; text: string };

const VAL_BATCHES = 4;

export class TextTrainer {
  readonly model: GPT2;
  readonly config: GPT2Config;
  readonly opts: TextTrainOptions;
  readonly trainTokens: Int32Array;
  readonly valTokens: Int32Array | null;
  step = 0;
  private readonly opt: AdamW;
  private readonly rng: Rng;
  private readonly schedule: Schedule;

  constructor(text: string, readonly tokenizer: Tokenizer, backend: Backend, opts: Partial<TextTrainOptions> = {}) {
    const o = this.opts = { ...TEXT_TRAIN_DEFAULTS, ...opts };
    const ids = Int32Array.from(tokenizer.encode(text));
    if (ids.length < o.seqLen + 2) {
      throw new RangeError(`the text gives ${ids.length} tokens: at least ${o.seqLen + 2} are needed for windows of ${o.seqLen} (paste more text or lower the sequence length)`);
    }
    // the last tenth validates when it holds a whole window, as nanoGPT's 90/10 split
    const cut = Math.floor(ids.length * 0.9);
    const hasVal = ids.length - cut >= o.seqLen + 1 && cut >= o.seqLen + 1;
    this.trainTokens = hasVal ? ids.subarray(0, cut) : ids;
    this.valTokens = hasVal ? ids.subarray(cut) : null;
    this.config = makeConfig(o.preset, { vocabSize: tokenizer.vocabSize, blockSize: Math.max(1024, o.seqLen) });
    this.model = new GPT2(this.config, backend);
    this.model.context = o.seqLen;
    this.rng = new Rng(o.seed);
    this.model.initWeights(this.rng);
    this.model.allocate(o.batchSize, o.seqLen);
    this.opt = new AdamW(this.model, { ...ADAMW_DEFAULTS, weightDecay: 0.1 });
    this.schedule = { kind: "cosine", maxLr: o.lr, warmup: o.warmup, totalSteps: o.steps, finalFraction: 0.1 };
  }

  /** B windows of T + 1 tokens at random offsets: inputs and the targets one token on */
  private batch(tokens: Int32Array, rng: Rng): { inputs: Int32Array; targets: Int32Array } {
    const { batchSize: B, seqLen: T } = this.opts;
    const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const at = rng.int(tokens.length - T);
      inputs.set(tokens.subarray(at, at + T), b * T);
      targets.set(tokens.subarray(at + 1, at + T + 1), b * T);
    }
    return { inputs, targets };
  }

  /** the mean loss over the same validation windows every time */
  async validate(): Promise<number | null> {
    if (!this.valTokens) return null;
    const rng = new Rng(this.opts.seed + 1);
    let sum = 0;
    for (let i = 0; i < VAL_BATCHES; i++) {
      const { inputs, targets } = this.batch(this.valTokens, rng);
      sum += await this.model.forwardAsync(inputs, targets, this.opts.batchSize, this.opts.seqLen);
    }
    return sum / VAL_BATCHES;
  }

  /** a temperature-0.8 sample from the text's first token */
  async sample(): Promise<string> {
    const out = await generateAsync(this.model, [this.trainTokens[0]], 1, new Rng(this.opts.seed + this.step),
      { maxNewTokens: this.opts.sampleTokens, temperature: 0.8, topK: 40, stopAtEot: false });
    return this.tokenizer.decode([this.trainTokens[0], ...out[0]]);
  }

  /** Trains up to opts.steps, yielding each step's numbers, validations and samples; `stop()` true ends it early. */
  async *run(stop: () => boolean = () => false): AsyncGenerator<TrainEvent> {
    const { batchSize: B, seqLen: T, steps } = this.opts;
    while (this.step < steps && !stop()) {
      if (this.opts.evalEvery > 0 && this.step % this.opts.evalEvery === 0) {
        const loss = await this.validate();
        if (loss !== null) yield { kind: "val", step: this.step, loss };
      }
      const t0 = performance.now();
      const { inputs, targets } = this.batch(this.trainTokens, this.rng);
      this.model.zeroGrad();
      const loss = await this.model.forwardBackwardAsync(inputs, targets, B, T);
      if (!Number.isFinite(loss)) throw new Error(`the loss is ${loss} at step ${this.step + 1}: lower the learning rate`);
      const norm = await gradNormAsync(this.model);
      const lr = learningRate(this.schedule, this.step);
      this.opt.update(lr, clipFactor(norm, 1.0));
      this.step++;
      const ms = performance.now() - t0;
      yield { kind: "step", step: this.step, loss, lr, norm, ms, tokensPerS: (B * T * 1000) / ms };
      if (this.opts.sampleEvery > 0 && (this.step % this.opts.sampleEvery === 0 || this.step === steps)) {
        yield { kind: "sample", step: this.step, text: await this.sample() };
      }
    }
    const loss = await this.validate();
    if (loss !== null && this.opts.evalEvery > 0) yield { kind: "val", step: this.step, loss };
  }

  /** The model as a gpt2ts checkpoint (its bytes), with its tokenizer and context recorded: `gpt2 sample` loads it. */
  async checkpoint(): Promise<Uint8Array[]> {
    const params = await this.model.backend.readAsync(this.model.params);
    const state = {
      step: this.step, context: this.opts.seqLen, ...(this.tokenizer.spec ? { tokenizer: this.tokenizer.spec } : {}),
      trainedIn: "gpt2ts web", config: { init: this.opts.preset, seqLen: this.opts.seqLen, batchSize: this.opts.batchSize, lr: this.opts.lr, maxSteps: this.opts.steps },
    };
    return encodeCheckpoint(this.config, state, [["params", params]]);
  }
}
