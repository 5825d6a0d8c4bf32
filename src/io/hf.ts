// Hugging Face GPT-2 directories: config.json + model.safetensors with GPT2LMHeadModel names (the layout itself:
// ./hf-format.ts, shared with the browser), read and written with the tokenizer files HF's tools expect.

import * as fs from "node:fs";
import * as path from "node:path";
import type { Backend } from "../kernels/backend.js";
import type { GPT2Config } from "../model/config.js";
import type { GPT2 } from "../model/gpt2.js";
import { hfConfigFrom, hfEntries, loadHFFrom, transpose } from "./hf-format.js";

export { hfConfigFrom, hfConfigFromShapes, loadHFFrom } from "./hf-format.js";
import { CHAT_TOKENS, CHAT_VOCAB_SIZE, EOT_TEXT } from "../tokenizer/bpe.js";
import { gpt2TokenizerConfig, gpt2TokenizerFiles } from "../tokenizer/hf-files.js";
import { FormatError, ioError, requireFile } from "./files.js";
import { SafetensorsFile, writeSafetensors } from "./safetensors.js";
import { makeDir } from "../util/fs.js";

export function readHFConfig(dir: string): GPT2Config {
  const file = path.join(dir, "config.json");
  requireFile(file, "Hugging Face config");
  let raw: Record<string, unknown>;
  try { raw = JSON.parse(fs.readFileSync(file, "utf8")); } catch (e) {
    throw new FormatError(`${file} is not valid JSON (${(e as Error).message})`);
  }
  return hfConfigFrom(raw, file);
}

/** Loads an HF GPT-2 directory into a new model on the backend, tensor by tensor. */
export function loadHF(dir: string, backend: Backend): GPT2 {
  const config = readHFConfig(dir);
  const file = path.join(dir, "model.safetensors");
  requireFile(file, "Hugging Face weights");
  const st = new SafetensorsFile(file);
  try { return loadHFFrom(st, config, backend); } finally { st.close(); }
}

export function hfConfigJson(c: GPT2Config): Record<string, unknown> {
  return {
    activation_function: "gelu_new", architectures: ["GPT2LMHeadModel"],
    attn_pdrop: 0.0, embd_pdrop: 0.0, resid_pdrop: 0.0, bos_token_id: 50256, eos_token_id: 50256,
    initializer_range: 0.02, layer_norm_epsilon: 1e-5, model_type: "gpt2", n_ctx: c.blockSize, n_embd: c.nEmbd,
    n_head: c.nHead, n_inner: null, n_layer: c.nLayer, n_positions: c.blockSize, scale_attn_weights: true,
    tie_word_embeddings: true, vocab_size: c.vocabSize,
  };
}

/**
 * Writes the model as an HF directory (padded vocab rows dropped, lm_head tied and omitted), with the tokenizer
 * files Hugging Face tools expect beside it (vocab.json, merges.txt, tokenizer_config.json with the chat template
 * when the model has the chat tokens), so AutoTokenizer and pipelines load the directory as it is.
 */
export async function saveHF(model: GPT2, dir: string): Promise<void> {
  const c = model.config;
  makeDir(dir);
  const params = await model.backend.readAsync(model.params);
  const tensors: [string, number[], Float32Array][] = [];
  for (const e of hfEntries(c)) {
    const spec = model.layout.byName[e.ours];
    const per = e.layer < 0 ? 0 : spec.size / c.nLayer;
    const start = spec.offset + Math.max(e.layer, 0) * per;
    const n = e.shape.reduce((a, b) => a * b, 1);
    let data = params.subarray(start, start + n);
    if (e.transpose) data = transpose(data, e.shape[1], e.shape[0]);
    tensors.push([e.name, e.shape, data]);
  }
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  const files: Record<string, string> = {
    "config.json": JSON.stringify(hfConfigJson(c), null, 2) + "\n",
    ...gpt2TokenizerFiles(),
    "tokenizer_config.json": JSON.stringify(gpt2TokenizerConfig({ contextLength: c.blockSize, chat: c.vocabSize >= CHAT_VOCAB_SIZE }), null, 2) + "\n",
    "special_tokens_map.json": JSON.stringify({ bos_token: EOT_TEXT, eos_token: EOT_TEXT, unk_token: EOT_TEXT }, null, 2) + "\n",
    "generation_config.json": JSON.stringify({ bos_token_id: 50256, eos_token_id: c.vocabSize >= CHAT_VOCAB_SIZE ? [50256, CHAT_TOKENS.end] : 50256 }, null, 2) + "\n",
  };
  for (const [name, text] of Object.entries(files)) {
    try { fs.writeFileSync(path.join(dir, name), text); } catch (e) { throw ioError(e, `writing ${path.join(dir, name)}`); }
  }
}
