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

/**
 * Upper bounds far beyond any GPT-2 (d48: 48 layers, 1600 wide, 1024 positions) that keep a damaged or hostile
 * config from asking for absurd allocations: it fails here, naming the field, not deep inside an allocator.
 */
const LIMITS = { blockSize: 1 << 20, vocabSize: 1 << 22, paddedVocabSize: 1 << 22, nLayer: 4096, nHead: 4096, nEmbd: 1 << 16 } as const;
/** parameters a model may have: 2^40 floats (4 TiB) */
const MAX_PARAMS = 2 ** 40;

/**
 * Checks a config; `where` (a file, a header) starts every message, and `names` gives the fields' names as that file
 * spells them (Hugging Face: n_layer, n_positions, ...).
 */
export function validateConfig(c: GPT2Config, where = "config", names: Partial<Record<keyof GPT2Config, string>> = {}): GPT2Config {
  if (!c || typeof c !== "object") throw new ConfigError(`${where} must be an object, got ${JSON.stringify(c)}`);
  for (const k of ["blockSize", "vocabSize", "paddedVocabSize", "nLayer", "nHead", "nEmbd"] as const) {
    const name = names[k] ?? k;
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new ConfigError(`${where}: ${name} must be a positive integer, got ${JSON.stringify(c[k] ?? null)}`);
    if (c[k] > LIMITS[k]) throw new ConfigError(`${where}: ${name} ${c[k]} is beyond any GPT-2 (at most ${LIMITS[k]})`);
  }
  if (c.nEmbd % c.nHead !== 0) throw new ConfigError(`${where}: n_embd ${c.nEmbd} must be divisible by n_head ${c.nHead}`);
  if (c.paddedVocabSize < c.vocabSize) throw new ConfigError(`${where}: padded vocab ${c.paddedVocabSize} < vocab ${c.vocabSize}`);
  const C = c.nEmbd, params = (c.paddedVocabSize + c.blockSize) * C + c.nLayer * 12 * C * C + 2 * C;
  if (params > MAX_PARAMS) throw new ConfigError(`${where}: ${c.nLayer} layers of width ${C} make ${params.toExponential(2)} parameters, beyond any GPT-2`);
  return c;
}

export function sameShape(a: GPT2Config, b: GPT2Config): boolean {
  return a.blockSize === b.blockSize && a.vocabSize === b.vocabSize && a.paddedVocabSize === b.paddedVocabSize &&
    a.nLayer === b.nLayer && a.nHead === b.nHead && a.nEmbd === b.nEmbd;
}

export function describeConfig(c: GPT2Config): string {
  return `n_layer=${c.nLayer} n_head=${c.nHead} n_embd=${c.nEmbd} block_size=${c.blockSize} vocab=${c.vocabSize} (padded ${c.paddedVocabSize})`;
}
