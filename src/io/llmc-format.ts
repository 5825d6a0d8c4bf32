// llm.c model checkpoints (gpt2_124M.bin): 256 int32 header (magic 20240326, version 3 = fp32 with padded vocab,
// maxT, V, L, NH, C, Vp; version 5 = the same in bf16), then every parameter in llm.c's order, which is our
// layout's order. Read from any byte source: io/llmc.ts opens files with it, the browser reads a File's bytes.

import type { Backend } from "../kernels/backend.js";
import { validateConfig, type GPT2Config } from "../model/config.js";
import { GPT2 } from "../model/gpt2.js";
import { paramLayout } from "../model/layout.js";
import { FormatError } from "../util/errors.js";
import { view, type ByteSource } from "./bytes.js";

export const LLMC_MODEL_MAGIC = 20240326;
export const LLMC_HEADER_BYTES = 256 * 4;

export function readLlmcHeader(src: ByteSource): { config: GPT2Config; version: number } {
  const h = view(src.read(0, LLMC_HEADER_BYTES));
  const i = (k: number) => h.getInt32(4 * k, true);
  const file = src.name;
  if (i(0) !== LLMC_MODEL_MAGIC) throw new FormatError(`bad magic in ${file}: ${i(0)} (expected ${LLMC_MODEL_MAGIC}, an llm.c model file)`);
  const version = i(1);
  if (version !== 3 && version !== 5) {
    throw new FormatError(`${file}: llm.c model version ${version} is not supported (expected 3 = fp32 or 5 = bf16)`);
  }
  const config = validateConfig({ blockSize: i(2), vocabSize: i(3), nLayer: i(4), nHead: i(5), nEmbd: i(6), paddedVocabSize: i(7) }, `${file}: header`);
  return { config, version };
}

/** A new model on the backend with the weights of an llm.c model file. */
export function loadLlmcFrom(src: ByteSource, backend: Backend): GPT2 {
  const { config, version } = readLlmcHeader(src);
  // the size is checked before anything is allocated: a damaged header asks for nothing
  const n = paramLayout(config).total, size = src.size;
  const want = LLMC_HEADER_BYTES + n * (version === 3 ? 4 : 2);
  if (size !== want) throw new FormatError(`${src.name}: ${size} bytes, expected ${want} for ${n} parameters (version ${version}); truncated?`);
  const model = new GPT2(config, backend);
  const chunk = new Float32Array(Math.min(n, 1 << 24));
  for (let off = 0; off < n; off += chunk.length) {
    const m = Math.min(chunk.length, n - off), part = chunk.subarray(0, m);
    if (version === 3) src.readFloats(part, LLMC_HEADER_BYTES + off * 4);
    else {
      const raw = view(src.read(LLMC_HEADER_BYTES + off * 2, 2 * m));
      const u = new Uint32Array(part.buffer, 0, m);
      for (let k = 0; k < m; k++) u[k] = raw.getUint16(2 * k, true) << 16;
    }
    backend.write(model.params, part, off);
  }
  return model;
}

/** The header of an llm.c version-3 (fp32) model file of this config. */
export function llmcHeader(c: GPT2Config): Uint8Array {
  const h = new Int32Array(256);
  h.set([LLMC_MODEL_MAGIC, 3, c.blockSize, c.vocabSize, c.nLayer, c.nHead, c.nEmbd, c.paddedVocabSize]);
  return new Uint8Array(h.buffer);
}
