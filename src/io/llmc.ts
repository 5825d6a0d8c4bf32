// llm.c model files on disk (the format itself: ./llmc-format.ts, shared with the browser).

import type { Backend } from "../kernels/backend.js";
import type { GPT2 } from "../model/gpt2.js";
import { fileSource, floatBytes, requireFile, writeFileAtomic } from "./files.js";
import { llmcHeader, loadLlmcFrom } from "./llmc-format.js";

export { LLMC_MODEL_MAGIC, loadLlmcFrom, readLlmcHeader } from "./llmc-format.js";

export function loadLlmc(file: string, backend: Backend): GPT2 {
  requireFile(file, "llm.c checkpoint");
  const src = fileSource(file);
  try { return loadLlmcFrom(src, backend); } finally { src.close(); }
}

export async function saveLlmc(model: GPT2, file: string): Promise<void> {
  const params = await model.backend.readAsync(model.params);
  writeFileAtomic(file, (append) => {
    append(llmcHeader(model.config));
    append(floatBytes(params));
  });
}
