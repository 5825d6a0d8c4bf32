// FLOP accounting as in the PaLM/nanoGPT MFU estimate: 6N per token for the parameters' matmuls (forward + backward)
// plus attention's scores and weighted sum, 12 * L * C * T per token (6 * L * 2 * C * T: QK^T and AV, fwd + bwd).

import type { GPT2Config } from "../model/config.js";
import { paramLayout } from "../model/layout.js";

/** Non-embedding matmul parameters plus the tied lm_head (which is a real matmul), as nanoGPT counts N. */
export function matmulParams(c: GPT2Config): number {
  const total = paramLayout(c).total;
  return total - c.blockSize * c.nEmbd; // position embeddings are a lookup, not a matmul
}

/** Training FLOPs per token at sequence length T. */
export function flopsPerToken(c: GPT2Config, T: number): number {
  return 6 * matmulParams(c) + 12 * c.nLayer * c.nEmbd * T;
}

/**
 * Training FLOPs of a step that processes `tokens` positions of which `trained` have targets: the classifier (the
 * tied lm_head) runs over the trained positions only (SFT batches), everything else over all of them.
 */
export function stepFlops(c: GPT2Config, T: number, tokens: number, trained: number): number {
  const head = 6 * c.paddedVocabSize * c.nEmbd;
  return (flopsPerToken(c, T) - head) * tokens + head * trained;
}
