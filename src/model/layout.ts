// Parameter layout: one flat buffer, tensors in llm.c's order, each (L, ...) block contiguous.
// The same order is the llm.c checkpoint body, so reading one is a single copy.

import type { GPT2Config } from "./config.js";

export interface TensorSpec {
  /** llm.c name: wte, wpe, ln1w, ... */
  name: string;
  /** full shape including the leading L for per-layer tensors */
  shape: number[];
  offset: number;
  size: number;
  /** weight decay applies to matmul weights and embeddings (2-D per layer), not to biases or LayerNorm */
  decay: boolean;
}

export interface ParamLayout {
  tensors: TensorSpec[];
  byName: Record<string, TensorSpec>;
  total: number;
}

export function paramLayout(c: GPT2Config): ParamLayout {
  const { nLayer: L, nEmbd: C, paddedVocabSize: Vp, blockSize: maxT } = c;
  const defs: [string, number[], boolean][] = [
    ["wte", [Vp, C], true],
    ["wpe", [maxT, C], true],
    ["ln1w", [L, C], false],
    ["ln1b", [L, C], false],
    ["qkvw", [L, 3 * C, C], true],
    ["qkvb", [L, 3 * C], false],
    ["attprojw", [L, C, C], true],
    ["attprojb", [L, C], false],
    ["ln2w", [L, C], false],
    ["ln2b", [L, C], false],
    ["fcw", [L, 4 * C, C], true],
    ["fcb", [L, 4 * C], false],
    ["fcprojw", [L, C, 4 * C], true],
    ["fcprojb", [L, C], false],
    ["lnfw", [C], false],
    ["lnfb", [C], false],
  ];
  const tensors: TensorSpec[] = [];
  const byName: Record<string, TensorSpec> = {};
  let offset = 0;
  for (const [name, shape, decay] of defs) {
    const size = shape.reduce((a, b) => a * b, 1);
    const t = { name, shape, offset, size, decay };
    tensors.push(t);
    byName[name] = t;
    offset += size;
  }
  return { tensors, byName, total: offset };
}

/** Parameters of the real (unpadded) model, the number people quote: 124M for d12. */
export function countParams(c: GPT2Config): number {
  const C = c.nEmbd;
  return paramLayout(c).total - (c.paddedVocabSize - c.vocabSize) * C;
}
