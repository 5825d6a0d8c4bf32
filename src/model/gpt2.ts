// GPT-2: the model as a sequence of kernel calls, forward and backward (llm.c's train_gpt2.c, in TypeScript).
// Parameters, gradients and activations are flat backend buffers allocated once; tensors are views.

import { bytesOf, type Backend, type DType, type Tensor } from "../kernels/backend.js";
import type { Rng } from "../util/rng.js";
import { describeConfig, type GPT2Config } from "./config.js";
import { paramLayout, type ParamLayout } from "./layout.js";
import { firstNonFinite, initParams } from "./params.js";
import { activationBytes, activationTable, CLASSIFIER_CHUNK, type ActName, type Activations, type RecomputeLevel } from "./activations.js";
import { blockBackward, blockForward, type BlockIO, type BlockWeights } from "./block.js";
import { classifier } from "./classifier.js";
export { activationTable, CLASSIFIER_CHUNK, type ActivationEntry, type RecomputeLevel } from "./activations.js";
export type { BlockIO } from "./block.js";

export type ParamName = "wte" | "wpe" | "ln1w" | "ln1b" | "qkvw" | "qkvb" | "attprojw" | "attprojb" | "ln2w" | "ln2b" |
  "fcw" | "fcb" | "fcprojw" | "fcprojb" | "lnfw" | "lnfb";

export type Views = Record<ParamName, Tensor>;

export class ShapeError extends Error {
  override name = "ShapeError";
}

/** Allocates n values, or fails with one line saying what for and how much (not an allocator's RangeError). */
function allocOrExplain(backend: Backend, n: number, what: string, dtype: DType = "f32"): Tensor {
  try {
    return backend.alloc(n, dtype);
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    throw new ShapeError(`cannot allocate ${what}: ${n.toLocaleString("en-US")} ${dtype} values (${(bytesOf(n, dtype) / 2 ** 30).toFixed(1)} GiB)`);
  }
}


/** the mean of the first M per-row losses (NaN when no row had a target) */
function meanLoss(losses: Float32Array, M: number): number {
  let sum = 0;
  for (let i = 0; i < M; i++) sum += losses[i];
  return M ? sum / M : NaN;
}

export class GPT2 {
  /** the shape; vocabSize may grow into the padded rows (extendVocab), nothing else changes after construction */
  config: GPT2Config;
  readonly layout: ParamLayout;
  readonly params: Tensor;
  readonly p: Views;
  grads: Tensor | null = null;
  g: Views | null = null;
  private acts: Activations | null = null;
  private lastBT: [number, number] = [0, 0];
  private hasDlogits = false;
  /** rows of the last forward that had a target, when not all did (the classifier ran over these only) */
  private trainedRows: Int32Array | null = null;
  /** what the last scores(..., grad) scored, for backwardScores */
  private scored: { rows: Int32Array; col: number } | null = null;
  /** (B,T,Vp) logits for forward() without targets (inference); allocated on first need, then reused */
  private fullLogits: Tensor | null = null;
  /** bf16 copies of the matmul weights for inference (useBf16Weights), or null: the float32 parameters serve */
  private half: Pick<Views, "qkvw" | "attprojw" | "fcw" | "fcprojw" | "wte"> | null = null;
  /**
   * Diagnosis hook: when set, called after every kernel with its output (where, tensor, floats), so a caller can find
   * the first layer and tensor where a non-finite value appears. Off (undefined) in normal runs: no cost.
   */
  debugCheck?: (where: string, t: Tensor, n: number) => void;

  /**
   * The context the weights were trained for (<= blockSize): a model trained from scratch at -t 64 has learned
   * positions 0..63 only, so generation slides its window there rather than reading untrained positions. Checkpoints
   * record it; other formats and fresh models have the whole block.
   */
  context: number;

  /** recompute level; takes effect when activations are allocated */
  constructor(config: GPT2Config, readonly backend: Backend, public recompute: RecomputeLevel = 0) {
    this.config = config;
    this.context = config.blockSize;
    this.layout = paramLayout(config);
    this.params = allocOrExplain(backend, this.layout.total, `the parameters of a GPT-2 with ${describeConfig(config)}`);
    this.p = this.views(this.params);
  }

  get numParams(): number { return this.layout.total; }

  private views(buf: Tensor): Views {
    const out = {} as Views;
    for (const t of this.layout.tensors) out[t.name as ParamName] = this.backend.view(buf, t.offset, t.size);
    return out;
  }

  /** GPT-2 init: N(0, 0.02); residual projections 0.02/sqrt(2L); biases 0; LayerNorm weights 1; padded vocab rows 0. */
  initWeights(rng: Rng): void { initParams(this.backend, this.layout, this.params, this.config, rng); }

  /**
   * Makes rows [vocabSize, V) of the padded vocabulary real tokens (the chat tokens live there): the model can then
   * read and predict them. Their embeddings start as the mean of the existing ones (as Hugging Face's
   * resize_token_embeddings does), so their logits start near the average instead of at 0, which would tower over
   * GPT-2's negative logits. No buffer is resized: the rows exist already as padding.
   */
  async extendVocab(V: number): Promise<void> {
    const { vocabSize: V0, paddedVocabSize: Vp, nEmbd: C } = this.config;
    if (V <= V0) return;
    if (V > Vp) throw new ShapeError(`cannot grow the vocabulary to ${V}: the model has ${Vp} rows`);
    const wte = await this.backend.readAsync(this.p.wte, 0, V0 * C);
    const mean = new Float64Array(C);
    for (let r = 0; r < V0; r++) for (let c = 0; c < C; c++) mean[c] += wte[r * C + c];
    const row = Float32Array.from(mean, (x) => x / V0);
    for (let r = V0; r < V; r++) this.backend.write(this.p.wte, row, r * C);
    this.config = { ...this.config, vocabSize: V };
    if (this.half) this.useBf16Weights(); // the bf16 copy follows the new rows
  }

  /**
   * Inference on bf16 weights: the matmul weights (the four of every block and the tied lm_head) are copied to bf16
   * and every forward from now on multiplies with them (in float32 arithmetic on host backends and WebGPU; in bf16
   * products on CUDA). Generating a token reads every weight once, so this reads half the bytes (the LayerNorms,
   * biases and embedding lookups stay float32). Training needs the float32 weights: a model in this mode refuses
   * gradients.
   */
  useBf16Weights(): void {
    const be = this.backend;
    const copy = (t: Tensor) => { const h = be.alloc(t.length, "bf16"); be.copy(h, t); return h; };
    const { qkvw, attprojw, fcw, fcprojw, wte } = this.p;
    this.half = { qkvw: copy(qkvw), attprojw: copy(attprojw), fcw: copy(fcw), fcprojw: copy(fcprojw), wte: copy(wte) };
  }

  /** the storage of the weights forwards multiply with: "bf16" after useBf16Weights() */
  get weightsDtype(): "f32" | "bf16" { return this.half ? "bf16" : "f32"; }

  /** the lm_head's weight (wte, tied), as forwards multiply with it */
  get headWeight(): Tensor { return this.half?.wte ?? this.p.wte; }

  private refuseGradOnBf16(): void {
    if (this.half) throw new ShapeError("this model multiplies with bf16 inference weights (useBf16Weights): it cannot be trained; load it again in float32");
  }

  /**
   * The first tensor of `buf` (the parameters, or the gradients) holding a NaN or an infinity, as "wte" or "qkvw of
   * layer 3"; null when all values are finite.
   */
  firstNonFinite(buf: Tensor = this.params): Promise<string | null> {
    return firstNonFinite(this.backend, this.layout, this.config.nLayer, buf);
  }

  /** Allocates gradients (once) and zeroes them: the one place gradients are zeroed. */
  zeroGrad(): void {
    if (!this.grads) {
      this.grads = this.backend.alloc(this.layout.total);
      this.g = this.views(this.grads);
    } else {
      this.backend.fill(this.grads, 0);
    }
  }

  /**
   * Allocates activations for (B, T) once. Every buffer is sized by B*T, so later calls may use any (B', T') with
   * B'*T' <= B*T (evaluation batches of another shape reuse the training buffers).
   */
  allocate(B: number, T: number): void {
    if (T > this.config.blockSize) throw new ShapeError(`sequence length ${T} exceeds block size ${this.config.blockSize}`);
    if (this.acts) {
      if (B * T <= this.acts.B * this.acts.T) return;
      throw new ShapeError(`activations were allocated for B=${this.acts.B}, T=${this.acts.T} (${this.acts.B * this.acts.T} tokens); got B=${B}, T=${T}`);
    }
    this.acts = this.makeActivations(B, T);
  }

  /**
   * Bytes of activations for B x T at a recompute level, `chunk` rows of logits at a time, activations stored in
   * `dtype` and a block's backward scratch in `gradDtype` (the activation table's sum)
   */
  static activationBytes(c: GPT2Config, B: number, T: number, recompute: RecomputeLevel, chunk = CLASSIFIER_CHUNK,
    dtype: "f32" | "bf16" = "f32", gradDtype: "f32" | "bf16" = "f32"): number {
    return activationBytes(activationTable(c, B, T, recompute, chunk, dtype, gradDtype));
  }

  private makeActivations(B: number, T: number): Activations {
    const table = activationTable(this.config, B, T, this.recompute, this.classifierRows, this.activationDtype,
      this.backend.activationGradDtype);
    const bufs = Object.fromEntries(table.map((e) => [e.name, allocOrExplain(this.backend, e.floats, `activation ${e.name}`, e.dtype)])) as Record<ActName, Tensor>;
    return { ...bufs, B, T, bytes: activationBytes(table) };
  }

  /** bytes of the allocated activations (0 before the first forward or allocate()) */
  get activationBytes(): number { return this.acts ? this.acts.bytes : 0; }

  /** the dtype activations are stored in: the backend's (bf16 on the native backend under --dtype bf16) */
  get activationDtype(): "f32" | "bf16" { return this.backend.activationDtype ?? "f32"; }

  /** rows of logits per classifier chunk on this backend */
  get classifierRows(): number { return this.backend.classifierRows ?? CLASSIFIER_CHUNK; }

  /** Slice l of a (L, ...) activation with n floats per layer; `shared` buffers hold one layer, reused by all. */
  private at(t: Tensor, l: number, n: number, shared = false): Tensor {
    return this.backend.view(t, shared ? 0 : l * n, n);
  }

  private layerParams(l: number, p: Views = this.p): BlockWeights {
    const { nEmbd: C } = this.config;
    const be = this.backend;
    // the matmul weights forwards multiply with: the bf16 copies in inference on bf16 weights
    const w = p === this.p && this.half ? this.half : p;
    return {
      ln1w: be.view(p.ln1w, l * C, C), ln1b: be.view(p.ln1b, l * C, C),
      qkvw: be.view(w.qkvw, l * 3 * C * C, 3 * C * C), qkvb: be.view(p.qkvb, l * 3 * C, 3 * C),
      attprojw: be.view(w.attprojw, l * C * C, C * C), attprojb: be.view(p.attprojb, l * C, C),
      ln2w: be.view(p.ln2w, l * C, C), ln2b: be.view(p.ln2b, l * C, C),
      fcw: be.view(w.fcw, l * 4 * C * C, 4 * C * C), fcb: be.view(p.fcb, l * 4 * C, 4 * C),
      fcprojw: be.view(w.fcprojw, l * 4 * C * C, 4 * C * C), fcprojb: be.view(p.fcprojb, l * C, C),
    };
  }

  private checkInputs(inputs: Int32Array, targets: Int32Array | null, B: number, T: number): void {
    const BT = B * T;
    if (inputs.length < BT) throw new ShapeError(`inputs hold ${inputs.length} tokens, expected B*T = ${BT}`);
    if (targets && targets.length < BT) throw new ShapeError(`targets hold ${targets.length} tokens, expected B*T = ${BT}`);
    const V = this.config.vocabSize;
    for (let i = 0; i < BT; i++) {
      if (inputs[i] < 0 || inputs[i] >= V) throw new RangeError(`token id ${inputs[i]} at position ${i} is outside the vocabulary [0, ${V})`);
    }
    // a negative target means "no target here"; one past the vocabulary would index outside a row of logits
    if (targets) {
      for (let i = 0; i < BT; i++) {
        if (targets[i] >= V) throw new RangeError(`target id ${targets[i]} at position ${i} is outside the vocabulary [0, ${V})`);
      }
    }
  }

  /**
   * Forward pass over inputs (B,T). With targets, returns the mean loss over positions whose target >= 0
   * (per-position losses are in `losses`); without, returns NaN and leaves logits (B,T,Vp) readable.
   * With `grad` the classifier writes dlogits (scaled by lossScale / count) over the logits, ready for backward();
   * `tokenWeights` (B,T) scales each position's gradient further (preference and policy-gradient objectives: the
   * gradient of sum_t w_t * loss_t).
   */
  forward(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, grad = false, lossScale = 1,
    tokenWeights: Float32Array | null = null): number {
    const M = this.launchForward(inputs, targets, B, T, grad, lossScale, tokenWeights);
    return M < 0 ? NaN : meanLoss(this.backend.read(this.acts!.losses, 0, M), M);
  }

  /** forward(), reading the loss back asynchronously (Backend.readAsync): what training and evaluation use */
  async forwardAsync(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, grad = false, lossScale = 1,
    tokenWeights: Float32Array | null = null): Promise<number> {
    const M = this.launchForward(inputs, targets, B, T, grad, lossScale, tokenWeights);
    return M < 0 ? NaN : meanLoss(await this.backend.readAsync(this.acts!.losses, 0, M), M);
  }

  /**
   * The kernels of forward(): the loss rows are left in acts.losses. Returns how many rows had a target (the loss
   * averages over them), or -1 for inference (no targets: the logits of every position are kept).
   */
  private launchForward(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, grad: boolean, lossScale: number,
    tokenWeights: Float32Array | null): number {
    if (grad) this.refuseGradOnBf16();
    const lnf = this.trunk(inputs, targets, B, T, grad);
    const { nEmbd: C, vocabSize: V, paddedVocabSize: Vp } = this.config;
    const be = this.backend, a = this.acts!, p = this.p, BT = B * T;
    const v = (t: Tensor, n: number) => be.view(t, 0, n);
    if (!targets) {
      // inference: all logits are wanted
      if (!this.fullLogits || this.fullLogits.length < BT * Vp) this.fullLogits = be.alloc(BT * Vp);
      be.matmulForward(v(this.fullLogits, BT * Vp), lnf, this.headWeight, null, BT, C, Vp);
      return -1;
    }
    // the classifier runs over the rows that have a target: all of them in pretraining; in an SFT batch only the
    // answers' few tokens, gathered into a compact (M, C) block first (the lm_head is most of a small model's work)
    const rows: number[] = [];
    for (let i = 0; i < BT; i++) if (targets[i] >= 0) rows.push(i);
    const M = rows.length;
    this.trainedRows = M < BT ? Int32Array.from(rows) : null;
    const scale = M ? lossScale / M : 0;
    const x = this.trainedRows ? this.gatherRows(lnf, this.trainedRows) : lnf;
    // the targets of those rows, as the device's i32 tensor
    const t = v(a.targets, M);
    be.write(t, this.trainedRows ? Int32Array.from(rows, (i) => targets[i]) : targets.subarray(0, BT));
    const w = tokenWeights ? Float32Array.from(rows, (i) => tokenWeights[i]) : null;
    // d(lnf) goes to dln, where backward() starts (through the gathered rows' scratch when only some rows ran)
    const dx = this.trainedRows ? v(a.dblock, M * C) : v(a.dln, BT * C);
    classifier(be, {
      x, targets: t, losses: a.losses, logits: a.logits, dx: grad ? dx : null, head: this.headWeight, wte: p.wte,
      dwte: grad ? this.g!.wte : null,
    }, M, C, V, Vp, this.classifierRows, scale, w, this.debugCheck);
    if (grad && this.trainedRows) this.scatterRows(dx, M);
    this.hasDlogits = grad;
    return M;
  }

  /**
   * Scores: the logit of vocabulary row `col` at positions `rows` of (B,T), a scalar head on the hidden state whose
   * weights are that row of wte (a padded row, never a token: a reward model's head, tied as the lm_head is). With
   * `grad`, backwardScores(dscores) completes the backward pass.
   */
  scores(inputs: Int32Array, B: number, T: number, rows: Int32Array, col: number, grad = false): Float32Array {
    return this.backend.read(this.launchScores(inputs, B, T, rows, col, grad), 0, rows.length);
  }

  /** scores(), read back asynchronously */
  async scoresAsync(inputs: Int32Array, B: number, T: number, rows: Int32Array, col: number, grad = false): Promise<Float32Array> {
    return this.backend.readAsync(this.launchScores(inputs, B, T, rows, col, grad), 0, rows.length);
  }

  private launchScores(inputs: Int32Array, B: number, T: number, rows: Int32Array, col: number, grad: boolean): Tensor {
    if (grad) this.refuseGradOnBf16();
    const lnf = this.trunk(inputs, null, B, T, grad);
    const { nEmbd: C, paddedVocabSize: Vp } = this.config;
    if (!(col >= 0 && col < Vp)) throw new ShapeError(`score row ${col} is outside the ${Vp} rows of wte`);
    const be = this.backend, a = this.acts!, M = rows.length;
    const x = this.gatherRows(lnf, rows);
    const out = be.view(a.losses, 0, M);
    be.matmulForward(out, x, be.view(this.headWeight, col * C, C), null, M, C, 1);
    this.scored = grad ? { rows, col } : null;
    this.hasDlogits = false;
    return out;
  }

  /** The backward pass of the last scores(..., grad): d(objective)/d(score) per scored row. Gradients accumulate. */
  backwardScores(dscores: Float32Array): void {
    if (!this.scored || !this.grads) throw new Error("backwardScores() needs scores(..., grad = true) first");
    const { rows, col } = this.scored;
    const { nEmbd: C } = this.config;
    const be = this.backend, a = this.acts!, M = rows.length;
    const x = be.view(a.fcproj, 0, M * C), dx = be.view(a.dblock, 0, M * C), dout = be.view(a.losses, 0, M);
    be.write(dout, dscores);
    be.matmulBackward(dx, be.view(this.g!.wte, col * C, C), null, dout, x, be.view(this.p.wte, col * C, C), M, C, 1);
    this.scatterRows(dx, M);
    this.scored = null;
    this.hasDlogits = true;
    this.backward();
  }

  /**
   * (M,C) rows of lnf, gathered into the fcproj scratch: the encoder is an embedding lookup, lnf its table. The row
   * indices go to acts.rows, where scatterRows finds them.
   */
  private gatherRows(lnf: Tensor, rows: Int32Array): Tensor {
    const { nEmbd: C } = this.config, be = this.backend, a = this.acts!, M = rows.length;
    const x = be.view(a.fcproj, 0, M * C);
    if (M > 0) {
      const ids = be.view(a.rows, 0, M);
      be.write(ids, rows);
      be.encoderForward(x, ids, lnf, a.zeroRow, M, 1, C); // a zero position row: a plain gather
    }
    return x;
  }

  /** dln = 0, then rows acts.rows[0..M) of it += dx: the gather's backward (rows without a gradient get zero) */
  private scatterRows(dx: Tensor, M: number): void {
    const { nEmbd: C } = this.config, be = this.backend, a = this.acts!;
    const [B, T] = this.lastBT;
    be.fill(be.view(a.dln, 0, B * T * C), 0);
    be.fill(a.rowScratch, 0);
    if (M > 0) be.encoderBackward(be.view(a.dln, 0, B * T * C), a.rowScratch, dx, be.view(a.rows, 0, M), M, 1, C);
  }

  /** Encoder, blocks and the final LayerNorm over inputs (B,T): the (B,T,C) hidden states. */
  private trunk(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, grad: boolean): Tensor {
    this.allocate(B, T);
    this.checkInputs(inputs, targets, B, T);
    if (grad && !this.grads) this.zeroGrad();
    const { nLayer: L, nEmbd: C, nHead: NH } = this.config;
    const be = this.backend, a = this.acts!, p = this.p, BT = B * T;
    const v = (t: Tensor, n: number) => be.view(t, 0, n);

    const tokens = v(a.tokens, BT); // (B,T) ids, on the device for the encoder and its backward
    be.write(tokens, inputs.subarray(0, BT));
    be.encoderForward(v(a.encoded, BT * C), tokens, p.wte, p.wpe, B, T, C);
    let residual = v(a.encoded, BT * C);
    for (let l = 0; l < L; l++) {
      const { io, lse } = this.layerActs(l, B, T, residual);
      this.blockForward(l, io, BT, (q, out) => be.attentionForward(out, lse, q, B, T, C, NH));
      residual = io.res3;
    }
    const lnf = v(a.lnf, BT * C);
    be.layernormForward(lnf, v(a.lnfMean, BT), v(a.lnfRstd, BT), residual, p.lnfw, p.lnfb, BT, C);
    this.debugCheck?.("ln_f output (forward)", lnf, BT * C);
    this.lastBT = [B, T];
    this.hasDlogits = false;
    this.trainedRows = null;
    this.scored = null; // a scores(..., grad) before this forward cannot be completed any more: its activations are gone
    return lnf;
  }

  /**
   * Layer l's transformer block forward over N rows (./block.ts): the one routine of training, evaluation and cached
   * generation, with this model's weights (the bf16 copies in inference on bf16 weights) and diagnosis hook.
   */
  blockForward(l: number, io: BlockIO, N: number, attend: (qkv: Tensor, atty: Tensor) => void): void {
    blockForward(this.backend, this.config.nEmbd, this.layerParams(l), io, N, attend, this.debugCheck, `layer ${l}`);
  }

  /**
   * Layer l's buffers in the training activations for (B,T), its block's input being `input`: views of the per-layer
   * slices, or of the one buffer all layers share where the recompute level keeps nothing (scratch for the others).
   */
  private layerActs(l: number, B: number, T: number, input: Tensor): { io: BlockIO; lse: Tensor } {
    const { nEmbd: C, nHead: NH } = this.config, a = this.acts!, BT = B * T, r = this.recompute;
    const v = (t: Tensor, n: number) => this.backend.view(t, 0, n);
    const io: BlockIO = {
      input, ln1: this.at(a.ln1, l, BT * C, r >= 2), ln1Mean: this.at(a.ln1Mean, l, BT), ln1Rstd: this.at(a.ln1Rstd, l, BT),
      qkv: this.at(a.qkv, l, BT * 3 * C), atty: this.at(a.atty, l, BT * C), attproj: v(a.attproj, BT * C),
      res2: this.at(a.residual2, l, BT * C), ln2: this.at(a.ln2, l, BT * C, r >= 2), ln2Mean: this.at(a.ln2Mean, l, BT),
      ln2Rstd: this.at(a.ln2Rstd, l, BT), fch: this.at(a.fch, l, BT * 4 * C), fchGelu: this.at(a.fchGelu, l, BT * 4 * C, r >= 1),
      fcproj: v(a.fcproj, BT * C), res3: this.at(a.residual3, l, BT * C),
    };
    return { io, lse: this.at(a.lse, l, B * NH * T) };
  }

  /** Logits (B,T,Vp) of the last forward without targets, copied to the host. */
  readLogits(): Float32Array {
    const [B, T] = this.lastBT;
    if (!this.fullLogits) throw new Error("readLogits() needs a forward pass without targets first");
    return this.backend.read(this.fullLogits, 0, B * T * this.config.paddedVocabSize);
  }

  /** readLogits(), read back asynchronously */
  async readLogitsAsync(): Promise<Float32Array> {
    const [B, T] = this.lastBT;
    if (!this.fullLogits) throw new Error("readLogits() needs a forward pass without targets first");
    return this.backend.readAsync(this.fullLogits, 0, B * T * this.config.paddedVocabSize);
  }

  /** Per-position losses (B,T) of the last forward with targets. */
  readLosses(): Float32Array {
    const [B, T] = this.lastBT;
    return this.placeLosses(this.backend.read(this.acts!.losses, 0, this.trainedRows ? this.trainedRows.length : B * T));
  }

  /** readLosses(), read back asynchronously */
  async readLossesAsync(): Promise<Float32Array> {
    const [B, T] = this.lastBT;
    return this.placeLosses(await this.backend.readAsync(this.acts!.losses, 0, this.trainedRows ? this.trainedRows.length : B * T));
  }

  private placeLosses(compact: Float32Array): Float32Array {
    const [B, T] = this.lastBT;
    if (!this.trainedRows) return compact;
    // the classifier ran over the rows with targets only: put their losses back in place, 0 elsewhere
    const out = new (compact.constructor as Float32ArrayConstructor)(B * T); // the backend's precision (a test's float64)
    for (let i = 0; i < compact.length; i++) out[this.trainedRows[i]] = compact[i];
    return out;
  }

  /** forward(grad) + backward: gradients ACCUMULATE into this.grads (call zeroGrad() once per optimizer step). */
  forwardBackward(inputs: Int32Array, targets: Int32Array, B: number, T: number, lossScale = 1,
    tokenWeights: Float32Array | null = null): number {
    if (!this.grads) this.zeroGrad();
    const loss = this.forward(inputs, targets, B, T, true, lossScale, tokenWeights);
    this.backward();
    return loss;
  }

  /** forwardBackward(), the loss read back asynchronously after the backward pass is launched */
  async forwardBackwardAsync(inputs: Int32Array, targets: Int32Array, B: number, T: number, lossScale = 1,
    tokenWeights: Float32Array | null = null): Promise<number> {
    if (!this.grads) this.zeroGrad();
    const M = this.launchForward(inputs, targets, B, T, true, lossScale, tokenWeights);
    this.backward();
    // acts.losses is written by the forward only: reading it after the backward lets a device run both first
    return meanLoss(await this.backend.readAsync(this.acts!.losses, 0, M), M);
  }

  /**
   * Called during backward as soon as a part's parameter gradients are complete: `layer` L for ln_f, then each block
   * L-1 .. 0 (wte and wpe are complete when backward returns). Data-parallel training starts its all-reduces here.
   */
  onLayerBackward: ((layer: number) => void) | null = null;

  private backward(): void {
    if (!this.hasDlogits) throw new Error("backward() needs a forward pass with targets and grad first");
    const { nLayer: L, nEmbd: C, nHead: NH } = this.config;
    const be = this.backend, a = this.acts!, p = this.p, g = this.g!;
    const [B, T] = this.lastBT, BT = B * T;
    const v = (t: Tensor, n: number) => be.view(t, 0, n);
    const d = {
      dres: v(a.dres, BT * C), dln: v(a.dln, BT * C),
      // one scratch for the MLP's gradients and then attention's (as llm.c reuses its buffers): see the table
      dfchGelu: v(a.dblock, BT * 4 * C), dfch: v(a.dblock, BT * 4 * C), datty: v(a.dblock, BT * C), dqkv: be.view(a.dblock, BT * C, BT * 3 * C),
    };

    // the classifier's backward ran inside forward (fused, chunked): dln holds d(ln_f output)
    be.fill(d.dres, 0);
    const lastRes = this.at(a.residual3, L - 1, BT * C);
    be.layernormBackward(d.dres, g.lnfw, g.lnfb, d.dln, lastRes, p.lnfw, v(a.lnfMean, BT), v(a.lnfRstd, BT), BT, C);
    this.onLayerBackward?.(L);

    for (let l = L - 1; l >= 0; l--) {
      const { io, lse } = this.layerActs(l, B, T, l === 0 ? v(a.encoded, BT * C) : this.at(a.residual3, l - 1, BT * C));
      blockBackward(be, C, this.layerParams(l), this.layerParams(l, g), io, d, BT, this.recompute,
        (dqkv, datty) => be.attentionBackward(dqkv, datty, io.qkv, io.atty, lse, B, T, C, NH), this.debugCheck, `layer ${l}`);
      this.onLayerBackward?.(l);
    }
    be.encoderBackward(g.wte, g.wpe, d.dres, v(a.tokens, BT), B, T, C);
    this.hasDlogits = false;
  }
}
