// Hugging Face GPT-2 weights: GPT2LMHeadModel's names in model.safetensors, shapes from config.json. HF's Conv1D
// stores weights as [in, out]; ours are nn.Linear's [out, in] (llm.c's), so matmul weights are transposed both ways.
// No file system here: io/hf.ts reads directories with it, the browser a picked or fetched file.

import type { Backend } from "../kernels/backend.js";
import { padVocab, validateConfig, type GPT2Config } from "../model/config.js";
import { GPT2 } from "../model/gpt2.js";
import { FormatError } from "../util/errors.js";
import type { SafetensorsReader } from "./safetensors-reader.js";

/** GPT-2's config from the parsed config.json (`file` names it in errors). */
export function hfConfigFrom(raw: Record<string, unknown>, file: string): GPT2Config {
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


/**
 * A config from the weights alone (a model.safetensors picked without its config.json): layers, width, vocabulary
 * and positions from the tensors' shapes, and GPT-2's head size of 64 (every GPT-2 size has it).
 */
export function hfConfigFromShapes(st: SafetensorsReader): GPT2Config {
  const prefix = st.tensors.has("transformer.wte.weight") ? "transformer." : "";
  const wte = st.tensors.get(prefix + "wte.weight"), wpe = st.tensors.get(prefix + "wpe.weight");
  if (!wte || !wpe || wte.shape.length !== 2 || wpe.shape.length !== 2) throw new FormatError(`${st.file}: no wte/wpe weights: not a GPT-2 model`);
  let nLayer = 0;
  while (st.tensors.has(`${prefix}h.${nLayer}.ln_1.weight`)) nLayer++;
  const [vocabSize, nEmbd] = wte.shape;
  return validateConfig({ nLayer, nHead: Math.max(1, Math.round(nEmbd / 64)), nEmbd, blockSize: wpe.shape[0], vocabSize, paddedVocabSize: padVocab(vocabSize) }, st.file);
}

/** [HF name, our tensor, layer, transpose] for every parameter, in GPT2LMHeadModel.state_dict() order. */
export function hfEntries(c: GPT2Config): { name: string; ours: string; layer: number; shape: number[]; transpose: boolean }[] {
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
export function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/** A new model on the backend with the weights of a safetensors file in GPT2LMHeadModel's layout, tensor by tensor. */
export function loadHFFrom(st: SafetensorsReader, config: GPT2Config, backend: Backend): GPT2 {
  const file = st.file;
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
}
