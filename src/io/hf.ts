// Hugging Face GPT-2 layout: config.json + model.safetensors with GPT2LMHeadModel names. HF's Conv1D stores
// weights as [in, out]; ours are nn.Linear's [out, in] (llm.c's), so matmul weights are transposed both ways.

import * as fs from "node:fs";
import * as path from "node:path";
import type { Backend } from "../kernels/backend.js";
import { padVocab, validateConfig, type GPT2Config } from "../model/config.js";
import { GPT2 } from "../model/gpt2.js";
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
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw new FormatError(`${file}: expected a JSON object (GPT-2's config), got ${JSON.stringify(raw)}`);
  const num = (k: string): number => {
    const v = raw[k];
    if (typeof v !== "number") throw new FormatError(`${file}: missing or non-numeric "${k}"`);
    return v;
  };
  const eps = raw.layer_norm_epsilon ?? 1e-5;
  if (eps !== 1e-5) throw new FormatError(`${file}: layer_norm_epsilon ${eps} is not supported (GPT-2 uses 1e-5)`);
  if (raw.activation_function !== undefined && raw.activation_function !== "gelu_new") {
    throw new FormatError(`${file}: activation_function "${raw.activation_function}" is not GPT-2's gelu_new`);
  }
  const vocabSize = num("vocab_size");
  return validateConfig({
    nLayer: num("n_layer"), nHead: num("n_head"), nEmbd: num("n_embd"), blockSize: num("n_positions"),
    vocabSize, paddedVocabSize: padVocab(vocabSize),
  }, file, { nLayer: "n_layer", nHead: "n_head", nEmbd: "n_embd", blockSize: "n_positions", vocabSize: "vocab_size", paddedVocabSize: "vocab_size (padded)" });
}

/** [HF name, our tensor, layer, transpose] for every parameter, in GPT2LMHeadModel.state_dict() order. */
function hfEntries(c: GPT2Config): { name: string; ours: string; layer: number; shape: number[]; transpose: boolean }[] {
  const C = c.nEmbd;
  const out = [
    { name: "transformer.wte.weight", ours: "wte", layer: -1, shape: [c.vocabSize, C], transpose: false },
    { name: "transformer.wpe.weight", ours: "wpe", layer: -1, shape: [c.blockSize, C], transpose: false },
  ];
  for (let l = 0; l < c.nLayer; l++) {
    const p = `transformer.h.${l}.`;
    out.push(
      { name: p + "ln_1.weight", ours: "ln1w", layer: l, shape: [C], transpose: false },
      { name: p + "ln_1.bias", ours: "ln1b", layer: l, shape: [C], transpose: false },
      { name: p + "attn.c_attn.weight", ours: "qkvw", layer: l, shape: [C, 3 * C], transpose: true },
      { name: p + "attn.c_attn.bias", ours: "qkvb", layer: l, shape: [3 * C], transpose: false },
      { name: p + "attn.c_proj.weight", ours: "attprojw", layer: l, shape: [C, C], transpose: true },
      { name: p + "attn.c_proj.bias", ours: "attprojb", layer: l, shape: [C], transpose: false },
      { name: p + "ln_2.weight", ours: "ln2w", layer: l, shape: [C], transpose: false },
      { name: p + "ln_2.bias", ours: "ln2b", layer: l, shape: [C], transpose: false },
      { name: p + "mlp.c_fc.weight", ours: "fcw", layer: l, shape: [C, 4 * C], transpose: true },
      { name: p + "mlp.c_fc.bias", ours: "fcb", layer: l, shape: [4 * C], transpose: false },
      { name: p + "mlp.c_proj.weight", ours: "fcprojw", layer: l, shape: [4 * C, C], transpose: true },
      { name: p + "mlp.c_proj.bias", ours: "fcprojb", layer: l, shape: [C], transpose: false },
    );
  }
  out.push(
    { name: "transformer.ln_f.weight", ours: "lnfw", layer: -1, shape: [C], transpose: false },
    { name: "transformer.ln_f.bias", ours: "lnfb", layer: -1, shape: [C], transpose: false },
  );
  return out;
}

/** [rows, cols] -> [cols, rows] */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/** Loads an HF GPT-2 directory into a new model on the backend, tensor by tensor. */
export function loadHF(dir: string, backend: Backend): GPT2 {
  const config = readHFConfig(dir);
  const file = path.join(dir, "model.safetensors");
  requireFile(file, "Hugging Face weights");
  const st = new SafetensorsFile(file);
  try {
    const model = new GPT2(config, backend);
    // official checkpoints save GPT2Model names without the "transformer." prefix
    const prefix = st.tensors.has("transformer.wte.weight") ? "transformer." : "";
    const known = new Set<string>();
    for (const e of hfEntries(config)) {
      const name = prefix + e.name.slice("transformer.".length);
      known.add(name);
      let data = st.read(name, e.shape);
      if (e.transpose) data = transpose(data, e.shape[0], e.shape[1]);
      const spec = model.layout.byName[e.ours];
      const per = e.layer < 0 ? 0 : spec.size / config.nLayer;
      backend.write(model.params, data, spec.offset + Math.max(e.layer, 0) * per);
    }
    if (st.tensors.has("lm_head.weight")) {
      const head = st.read("lm_head.weight", [config.vocabSize, config.nEmbd]);
      const wte = st.read(prefix + "wte.weight");
      for (let i = 0; i < head.length; i++) {
        if (head[i] !== wte[i]) throw new FormatError(`${file}: lm_head.weight differs from wte (untied heads are not GPT-2)`);
      }
      known.add("lm_head.weight");
    }
    for (const name of st.tensors.keys()) {
      // attention mask buffers saved by older transformers versions carry no parameters
      if (!known.has(name) && !/\.attn\.(masked_)?bias$/.test(name)) {
        throw new FormatError(`${file}: unexpected tensor ${name} for a GPT-2 with ${config.nLayer} layers`);
      }
    }
    return model;
  } finally {
    st.close();
  }
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
export function saveHF(model: GPT2, dir: string): void {
  const c = model.config;
  makeDir(dir);
  const params = model.backend.read(model.params);
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
