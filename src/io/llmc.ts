// llm.c model checkpoints (gpt2_124M.bin): 256 int32 header (magic 20240326, version 3 = fp32 with padded vocab,
// maxT, V, L, NH, C, Vp), then every parameter as float32 in llm.c's order, which is our layout's order.

import * as fs from "node:fs";
import type { Backend } from "../kernels/backend.js";
import { validateConfig, type GPT2Config } from "../model/config.js";
import { GPT2 } from "../model/gpt2.js";
import { paramLayout } from "../model/layout.js";
import { FormatError, floatBytes, readExact, readFloatsInto, requireFile, writeFileAtomic } from "./files.js";

export const LLMC_MODEL_MAGIC = 20240326;
const HEADER_BYTES = 256 * 4;

export function readLlmcHeader(file: string, fd: number): { config: GPT2Config; version: number } {
  const h = readExact(fd, file, HEADER_BYTES, 0);
  const i = (k: number) => h.readInt32LE(4 * k);
  if (i(0) !== LLMC_MODEL_MAGIC) throw new FormatError(`bad magic in ${file}: ${i(0)} (expected ${LLMC_MODEL_MAGIC}, an llm.c model file)`);
  const version = i(1);
  if (version !== 3 && version !== 5) {
    throw new FormatError(`${file}: llm.c model version ${version} is not supported (expected 3 = fp32 or 5 = bf16)`);
  }
  const config = validateConfig({ blockSize: i(2), vocabSize: i(3), nLayer: i(4), nHead: i(5), nEmbd: i(6), paddedVocabSize: i(7) }, `${file}: header`);
  return { config, version };
}

export function loadLlmc(file: string, backend: Backend): GPT2 {
  requireFile(file, "llm.c checkpoint");
  const fd = fs.openSync(file, "r");
  try {
    const { config, version } = readLlmcHeader(file, fd);
    // the size is checked before anything is allocated: a damaged header asks for nothing
    const n = paramLayout(config).total, size = fs.fstatSync(fd).size;
    const want = HEADER_BYTES + n * (version === 3 ? 4 : 2);
    if (size !== want) throw new FormatError(`${file}: ${size} bytes, expected ${want} for ${n} parameters (version ${version}); truncated?`);
    const model = new GPT2(config, backend);
    const chunk = new Float32Array(Math.min(n, 1 << 24));
    for (let off = 0; off < n; off += chunk.length) {
      const m = Math.min(chunk.length, n - off), part = chunk.subarray(0, m);
      if (version === 3) readFloatsInto(fd, file, part, HEADER_BYTES + off * 4);
      else {
        const raw = readExact(fd, file, 2 * m, HEADER_BYTES + off * 2);
        const u = new Uint32Array(part.buffer, 0, m);
        for (let k = 0; k < m; k++) u[k] = raw.readUInt16LE(2 * k) << 16;
      }
      backend.write(model.params, part, off);
    }
    return model;
  } finally {
    fs.closeSync(fd);
  }
}

export function saveLlmc(model: GPT2, file: string): void {
  const c = model.config;
  const h = new Int32Array(256);
  h.set([LLMC_MODEL_MAGIC, 3, c.blockSize, c.vocabSize, c.nLayer, c.nHead, c.nEmbd, c.paddedVocabSize]);
  writeFileAtomic(file, (append) => {
    append(new Uint8Array(h.buffer));
    append(floatBytes(model.backend.read(model.params)));
  });
}
