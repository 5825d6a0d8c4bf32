// Opening a model in the browser: the bytes of a picked file (or files: model.safetensors with its config.json) or a
// fetched URL, in any format the CLI reads (a gpt2ts checkpoint, an llm.c .bin, Hugging Face safetensors), through
// the same readers and checks as Node's.

import type { Backend } from "../kernels/backend.js";
import type { GPT2 } from "../model/gpt2.js";
import { memorySource, utf8, view } from "../io/bytes.js";
import { CHECKPOINT_MAGIC, loadCheckpointFrom } from "../io/checkpoint-format.js";
import { hfConfigFrom, hfConfigFromShapes, loadHFFrom } from "../io/hf-format.js";
import { LLMC_MODEL_MAGIC, loadLlmcFrom } from "../io/llmc-format.js";
import { SafetensorsReader } from "../io/safetensors-reader.js";
import { FormatError } from "../util/errors.js";

export interface NamedBytes { name: string; bytes: Uint8Array }

export interface OpenedModel {
  model: GPT2;
  format: "gpt2ts" | "llmc" | "hf";
  /** the tokenizer recorded with it (a character vocabulary), or null: GPT-2's */
  tokenizer: unknown;
  /** the file the weights came from */
  name: string;
}

function formatOf(f: NamedBytes): OpenedModel["format"] | "config" | null {
  if (f.name.endsWith(".json")) return "config";
  if (f.bytes.length < 8) return null;
  const magic = view(f.bytes).getInt32(0, true);
  if (magic === CHECKPOINT_MAGIC) return "gpt2ts";
  if (magic === LLMC_MODEL_MAGIC) return "llmc";
  // safetensors: a u64 header length, then a JSON object
  const n = Number(view(f.bytes).getBigUint64(0, true));
  if (n > 0 && n < f.bytes.length && f.bytes[8] === 0x7b) return "hf";
  return null;
}

/** The model in `files`; a config.json among them gives a safetensors file its shape (else its tensors do). */
export async function openModel(files: NamedBytes[], backend: Backend): Promise<OpenedModel> {
  const weights = files.filter((f) => formatOf(f) !== "config");
  if (weights.length !== 1) {
    throw new FormatError(weights.length === 0 ? "no model file among the files given (a .gpt2ts checkpoint, an llm.c .bin or a model.safetensors)"
      : `one model file at a time, got ${weights.map((f) => f.name).join(", ")}`);
  }
  const file = weights[0], format = formatOf(file);
  if (!format || format === "config") throw new FormatError(`${file.name}: not a gpt2ts checkpoint, an llm.c model file or a safetensors file`);
  const src = memorySource(file.name, file.bytes);
  let model: GPT2, tokenizer: unknown = null;
  if (format === "gpt2ts") {
    const { model: m, header } = loadCheckpointFrom(src, backend);
    if ((header.state as { modelKind?: string }).modelKind === "reward-model") throw new FormatError(`${file.name} is a reward model, not a language model`);
    model = m;
    tokenizer = header.state.tokenizer ?? null;
  } else if (format === "llmc") {
    model = loadLlmcFrom(src, backend);
  } else {
    const st = new SafetensorsReader(src);
    const cfg = files.find((f) => f.name.endsWith(".json"));
    let config;
    if (cfg) {
      let raw: Record<string, unknown>;
      try { raw = JSON.parse(utf8(cfg.bytes)); } catch (e) { throw new FormatError(`${cfg.name} is not valid JSON (${(e as Error).message})`); }
      config = hfConfigFrom(raw, cfg.name);
    } else config = hfConfigFromShapes(st);
    model = loadHFFrom(st, config, backend);
  }
  const bad = await model.firstNonFinite();
  if (bad) throw new FormatError(`${file.name}: the weights are not finite (first in ${bad}); this model cannot be used`);
  return { model, format, tokenizer, name: file.name };
}
