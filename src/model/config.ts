// GPT-2 model configuration: presets, validation, vocab padding.

export interface GPT2Config {
  /** maximum sequence length (learned positions) */
  blockSize: number;
  /** real vocabulary size (50257 for GPT-2) */
  vocabSize: number;
  /** vocabulary padded to a multiple of 128 (50304): faster matmuls; padded logits are never used */
  paddedVocabSize: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
}

export const GPT2_VOCAB = 50257;
export const EOT = 50256;

/** Pads the vocabulary to a multiple of 128, as llm.c does (50257 -> 50304). */
export function padVocab(vocabSize: number): number {
  return Math.ceil(vocabSize / 128) * 128;
}

type Shape = Pick<GPT2Config, "nLayer" | "nHead" | "nEmbd">;

export const PRESETS: Record<string, Shape> = {
  tiny: { nLayer: 4, nHead: 4, nEmbd: 128 },
  d6: { nLayer: 6, nHead: 6, nEmbd: 384 },
  d12: { nLayer: 12, nHead: 12, nEmbd: 768 }, // GPT-2 124M
  d24: { nLayer: 24, nHead: 16, nEmbd: 1024 }, // GPT-2 350M
  d36: { nLayer: 36, nHead: 20, nEmbd: 1280 }, // GPT-2 774M
  d48: { nLayer: 48, nHead: 25, nEmbd: 1600 }, // GPT-2 1558M
};

export class ConfigError extends Error {
  override name = "ConfigError";
}

export interface ConfigOverrides {
  nLayer?: number;
  nHead?: number;
  nEmbd?: number;
  blockSize?: number;
  vocabSize?: number;
}

/** Builds a full config from a preset name and optional overrides (GPT-2 defaults: block 1024, vocab 50257). */
export function makeConfig(preset: string, over: ConfigOverrides = {}): GPT2Config {
  const base = PRESETS[preset];
  if (!base) throw new ConfigError(`unknown model preset "${preset}" (expected one of ${Object.keys(PRESETS).join(", ")})`);
  const vocabSize = over.vocabSize ?? GPT2_VOCAB;
  return validateConfig({
    blockSize: over.blockSize ?? 1024,
    vocabSize,
    paddedVocabSize: padVocab(vocabSize),
    nLayer: over.nLayer ?? base.nLayer,
    nHead: over.nHead ?? base.nHead,
    nEmbd: over.nEmbd ?? base.nEmbd,
  });
}

export function validateConfig(c: GPT2Config): GPT2Config {
  for (const k of ["blockSize", "vocabSize", "paddedVocabSize", "nLayer", "nHead", "nEmbd"] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new ConfigError(`config ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.nEmbd % c.nHead !== 0) throw new ConfigError(`n_embd ${c.nEmbd} must be divisible by n_head ${c.nHead}`);
  if (c.paddedVocabSize < c.vocabSize) throw new ConfigError(`padded vocab ${c.paddedVocabSize} < vocab ${c.vocabSize}`);
  return c;
}

export function sameShape(a: GPT2Config, b: GPT2Config): boolean {
  return a.blockSize === b.blockSize && a.vocabSize === b.vocabSize && a.paddedVocabSize === b.paddedVocabSize &&
    a.nLayer === b.nLayer && a.nHead === b.nHead && a.nEmbd === b.nEmbd;
}

export function describeConfig(c: GPT2Config): string {
  return `n_layer=${c.nLayer} n_head=${c.nHead} n_embd=${c.nEmbd} block_size=${c.blockSize} vocab=${c.vocabSize} (padded ${c.paddedVocabSize})`;
}
