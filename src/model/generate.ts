// KV-cached autoregressive inference and sampling (temperature, top-k, top-p), batch of B streams.

import type { Tensor } from "../kernels/backend.js";
import type { Rng } from "../util/rng.js";
import { EOT } from "./config.js";
import type { GPT2 } from "./gpt2.js";

/** Keys and values of every layer for B streams: (L, B, NH, maxT, hs) each; scratch for up to maxT new tokens. */
export class KVCache {
  readonly kcache: Tensor;
  readonly vcache: Tensor;
  private readonly x: Tensor; // (B,Tq,C) residual stream
  private readonly ln: Tensor; // (B,Tq,C)
  private readonly qkv: Tensor; // (B,Tq,3C)
  private readonly atty: Tensor; // (B,Tq,C)
  private readonly proj: Tensor; // (B,Tq,C)
  private readonly fch: Tensor; // (B,Tq,4C)
  private readonly fchGelu: Tensor; // (B,Tq,4C)
  private readonly stats: Tensor; // (2*B*Tq) mean and rstd, unused after the call
  private readonly last: Tensor; // (B,C) final LayerNorm of each stream's last token
  private readonly logits: Tensor; // (B,Vp)
  private readonly tokens: Tensor; // (B,Tq) i32: the new tokens' ids
  /** tokens held in the cache */
  pos = 0;

  constructor(readonly model: GPT2, readonly B: number, readonly maxT = model.context) {
    const { nLayer: L, nEmbd: C, paddedVocabSize: Vp, blockSize } = model.config;
    if (maxT > blockSize) throw new RangeError(`KV cache length ${maxT} exceeds block size ${blockSize}`);
    const be = model.backend, BT = B * maxT;
    this.kcache = be.alloc(L * BT * C);
    this.vcache = be.alloc(L * BT * C);
    this.x = be.alloc(BT * C);
    this.ln = be.alloc(BT * C);
    this.qkv = be.alloc(BT * 3 * C);
    this.atty = be.alloc(BT * C);
    this.proj = be.alloc(BT * C);
    this.fch = be.alloc(BT * 4 * C);
    this.fchGelu = be.alloc(BT * 4 * C);
    this.stats = be.alloc(2 * BT);
    this.last = be.alloc(B * C);
    this.logits = be.alloc(B * Vp);
    this.tokens = be.alloc(BT, "i32");
  }

  reset(): void { this.pos = 0; }

  /**
   * Feeds Tq new tokens per stream (tokens is (B,Tq)) at positions pos..pos+Tq-1 and returns the logits (B,Vp) of each
   * stream's last new token.
   */
  step(tokens: Int32Array, Tq: number): Float32Array {
    this.launch(tokens, Tq);
    return this.model.backend.read(this.logits, 0, this.B * this.model.config.paddedVocabSize);
  }

  /** step(), the logits read back asynchronously (Backend.readAsync): what generation, chat and serving use */
  async stepAsync(tokens: Int32Array, Tq: number): Promise<Float32Array> {
    this.launch(tokens, Tq);
    return this.model.backend.readAsync(this.logits, 0, this.B * this.model.config.paddedVocabSize);
  }

  /** the kernels of a step: the logits of each stream's last new token are left in this.logits */
  private launch(tokens: Int32Array, Tq: number): void {
    const { nLayer: L, nEmbd: C, nHead: NH, paddedVocabSize: Vp, vocabSize: V } = this.model.config;
    const { B, maxT, pos } = this;
    if (pos + Tq > maxT) throw new RangeError(`KV cache holds ${maxT} tokens; ${pos} + ${Tq} do not fit`);
    if (tokens.length < B * Tq) throw new RangeError(`tokens hold ${tokens.length} ids, expected B*Tq = ${B * Tq}`);
    for (let i = 0; i < B * Tq; i++) {
      if (tokens[i] < 0 || tokens[i] >= V) throw new RangeError(`token id ${tokens[i]} is outside the vocabulary [0, ${V})`);
    }
    const be = this.model.backend, p = this.model.p, N = B * Tq;
    const v = (t: Tensor, n: number, off = 0) => be.view(t, off, n);
    const x = v(this.x, N * C), ln = v(this.ln, N * C), qkv = v(this.qkv, N * 3 * C), atty = v(this.atty, N * C);
    const proj = v(this.proj, N * C), fch = v(this.fch, N * 4 * C), fchGelu = v(this.fchGelu, N * 4 * C);
    const mean = v(this.stats, N), rstd = v(this.stats, N, N), ids = v(this.tokens, N);

    // token + position embeddings: wpe rows pos.. are selected by encoding against a shifted wpe view
    be.write(ids, tokens.subarray(0, N));
    be.encoderForward(x, ids, p.wte, be.view(p.wpe, pos * C, Tq * C), B, Tq, C);
    const layerSize = B * NH * maxT * (C / NH);
    // the same block as training's forward, attending against the cache; one residual stream updated in place
    const io = { input: x, ln1: ln, ln1Mean: mean, ln1Rstd: rstd, qkv, atty, attproj: proj, res2: x, ln2: ln, ln2Mean: mean, ln2Rstd: rstd, fch, fchGelu, fcproj: proj, res3: x };
    for (let l = 0; l < L; l++) {
      const k = v(this.kcache, layerSize, l * layerSize), vv = v(this.vcache, layerSize, l * layerSize);
      this.model.blockForward(l, io, N, (q, out) => be.attentionCached(out, k, vv, q, B, Tq, pos, maxT, C, NH));
    }
    for (let b = 0; b < B; b++) {
      const row = (b * Tq + Tq - 1) * C;
      be.layernormForward(v(this.last, C, b * C), v(mean, 1), v(rstd, 1), v(x, C, row), p.lnfw, p.lnfb, 1, C);
    }
    be.matmulForward(this.logits, this.last, this.model.headWeight, null, B, C, Vp);
    this.pos += Tq;
  }
}

export interface SampleOptions {
  /** 0 = greedy (argmax) */
  temperature?: number;
  /** keep the k most likely tokens (0 = all) */
  topK?: number;
  /** nucleus: keep the smallest set whose probability reaches p (1 = all) */
  topP?: number;
}

/** Picks the next token from logits[0..V) (padded columns never count). */
export function sampleToken(logits: Float32Array, V: number, rng: Rng, opts: SampleOptions = {}): number {
  const temperature = opts.temperature ?? 1;
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  const topK = opts.topK && opts.topK > 0 ? Math.min(opts.topK, V) : V;
  const topP = opts.topP ?? 1;
  let idx: Uint32Array | null = null;
  let n = V;
  if (topK < V || topP < 1) {
    // sort candidates by logit (descending), ties by id so results are deterministic
    const all = new Uint32Array(V);
    for (let i = 0; i < V; i++) all[i] = i;
    all.sort((a, b) => logits[b] - logits[a] || a - b);
    idx = all;
    n = topK;
  }
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[idx ? idx[i] : i]);
  const probs = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) { probs[i] = Math.exp((logits[idx ? idx[i] : i] - max) / temperature); sum += probs[i]; }
  if (topP < 1) {
    let cum = 0, keep = 0;
    while (keep < n) { cum += probs[keep] / sum; keep++; if (cum >= topP) break; }
    n = keep;
    sum = 0;
    for (let i = 0; i < n; i++) sum += probs[i];
  }
  let r = rng.random() * sum;
  for (let i = 0; i < n; i++) {
    r -= probs[i];
    if (r <= 0) return idx ? idx[i] : i;
  }
  return idx ? idx[n - 1] : n - 1;
}

export interface GenerateOptions extends SampleOptions {
  maxNewTokens: number;
  /** stop a stream at <|endoftext|> (default true); the EOT itself is not returned */
  stopAtEot?: boolean;
  /** more tokens that end a stream (not returned), e.g. the chat template's <|end|> */
  stopTokens?: number[];
  /** called with each new token of each stream as it is produced */
  onToken?: (stream: number, token: number) => void;
}

/**
 * Generates up to maxNewTokens after the prompt for each of B streams (same prompt), with a KV cache.
 * When the context fills the cache, the window slides: the cache is rebuilt from the last half of each stream.
 */
export function generate(model: GPT2, prompt: number[], B: number, rng: Rng, opts: GenerateOptions, cache?: KVCache): number[][] {
  const kv = cache ?? new KVCache(model, B);
  const g = generation(model, prompt, B, rng, opts, kv);
  for (let r = g.next(); ; ) {
    if (r.done) return r.value;
    r = g.next(kv.step(r.value.tokens, r.value.Tq));
  }
}

/** generate(), with the logits read back asynchronously: for any backend (a WebGPU one reads only this way) */
export async function generateAsync(model: GPT2, prompt: number[], B: number, rng: Rng, opts: GenerateOptions, cache?: KVCache): Promise<number[][]> {
  const kv = cache ?? new KVCache(model, B);
  const g = generation(model, prompt, B, rng, opts, kv);
  for (let r = g.next(); ; ) {
    if (r.done) return r.value;
    r = g.next(await kv.stepAsync(r.value.tokens, r.value.Tq));
  }
}

/**
 * The generation loop, written once for both reads: it yields each cache step it needs (tokens fed, Tq per stream)
 * and is resumed with that step's logits.
 */
function* generation(model: GPT2, prompt: number[], B: number, rng: Rng, opts: GenerateOptions, kv: KVCache):
  Generator<{ tokens: Int32Array; Tq: number }, number[][], Float32Array> {
  const { vocabSize: V, paddedVocabSize: Vp } = model.config;
  if (prompt.length === 0) throw new RangeError("the prompt must hold at least one token (use <|endoftext|> = 50256 to start from nothing)");
  const stopAtEot = opts.stopAtEot ?? true;
  const histories = Array.from({ length: B }, () => prompt.slice(-kv.maxT));
  const outs: number[][] = Array.from({ length: B }, () => []);
  const done = new Array<boolean>(B).fill(false);
  kv.reset();
  let logits = yield { tokens: Int32Array.from(histories.flat()), Tq: histories[0].length };
  for (let s = 0; s < opts.maxNewTokens; s++) {
    const next = new Int32Array(B);
    for (let b = 0; b < B; b++) {
      const tok = sampleToken(logits.subarray(b * Vp, b * Vp + V), V, rng, opts);
      next[b] = tok;
      histories[b].push(tok);
      if (done[b]) continue;
      if ((stopAtEot && tok === EOT) || opts.stopTokens?.includes(tok)) { done[b] = true; continue; }
      outs[b].push(tok);
      opts.onToken?.(b, tok);
    }
    if (done.every(Boolean) || s === opts.maxNewTokens - 1) break;
    if (kv.pos + 1 > kv.maxT) {
      // slide the window: rebuild the cache from the last half of each stream
      const keep = Math.floor(kv.maxT / 2);
      kv.reset();
      logits = yield { tokens: Int32Array.from(histories.flatMap((h) => h.slice(-keep))), Tq: keep };
    } else {
      logits = yield { tokens: next, Tq: 1 };
    }
  }
  return outs;
}
