// gpt2ts library API.
export * from "./model/config.js";
export { paramLayout, countParams, type ParamLayout, type TensorSpec } from "./model/layout.js";
export { GPT2, ShapeError, type RecomputeLevel } from "./model/gpt2.js";
export { KVCache, generate, sampleToken, type GenerateOptions, type SampleOptions } from "./model/generate.js";
export type { Backend, Tensor } from "./kernels/backend.js";
export { JsBackend } from "./kernels/js/backend.js";
export { createBackend, type BackendName } from "./kernels/select.js";
export { encode, decode, StreamDecoder, EOT_TOKEN, EOT_TEXT } from "./tokenizer/bpe.js";
export { loadModel, saveModel, detectFormat, type ModelFormat } from "./io/load.js";
export { loadHF, saveHF, readHFConfig } from "./io/hf.js";
export { loadLlmc, saveLlmc } from "./io/llmc.js";
export { saveCheckpoint, loadCheckpoint, restoreCheckpoint, readCheckpointHeader } from "./io/checkpoint.js";
export { SafetensorsFile, writeSafetensors } from "./io/safetensors.js";
export { FormatError } from "./io/files.js";
export { Rng } from "./util/rng.js";
