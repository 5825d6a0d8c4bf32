// Opens any model file this project reads, detecting the format: an HF directory, an llm.c .bin, or ours.

import * as fs from "node:fs";
import * as path from "node:path";
import type { Backend } from "../kernels/backend.js";
import type { GPT2 } from "../model/gpt2.js";
import { latestCheckpoint } from "./rundir.js";
import { CHECKPOINT_MAGIC, loadCheckpoint, readCheckpointHeader, saveCheckpoint } from "./checkpoint.js";
import { FormatError } from "./files.js";
import { loadHF, saveHF } from "./hf.js";
import { LLMC_MODEL_MAGIC, loadLlmc, saveLlmc } from "./llmc.js";
import { gpt2Tokenizer, tokenizerFromSpec, type Tokenizer } from "../tokenizer/tokenizer.js";

export type ModelFormat = "hf" | "llmc" | "gpt2ts";

/**
 * The file a model path names: a run folder (gpt2 train -o DIR: checkpoints, no model.safetensors) stands for its
 * newest checkpoint, as nanoGPT's out_dir does; anything else is itself.
 */
export function modelFile(p: string): string {
  if (fs.existsSync(p) && fs.statSync(p).isDirectory() && !fs.existsSync(path.join(p, "model.safetensors"))) return latestCheckpoint(p) ?? p;
  return p;
}

export function detectFormat(p: string): ModelFormat {
  if (!fs.existsSync(p)) throw new FormatError(`model ${p} does not exist (expected an HF directory, an llm.c .bin or a gpt2ts checkpoint)`);
  if (fs.statSync(p).isDirectory()) {
    if (fs.existsSync(path.join(p, "model.safetensors"))) return "hf";
    // a run folder's config.json is the run's: without weights beside it this is not a Hugging Face model
    throw new FormatError(`${p} is a directory without model.safetensors (expected a Hugging Face GPT-2 directory, or a gpt2 train -o folder with checkpoints)`);
  }
  const fd = fs.openSync(p, "r");
  const b = Buffer.alloc(4);
  const n = fs.readSync(fd, b, 0, 4, 0);
  fs.closeSync(fd);
  const magic = n === 4 ? b.readInt32LE(0) : -1;
  if (magic === LLMC_MODEL_MAGIC) return "llmc";
  if (magic === CHECKPOINT_MAGIC) return "gpt2ts";
  throw new FormatError(`${p}: unknown model format (magic ${magic}; expected ${LLMC_MODEL_MAGIC} for llm.c, ${CHECKPOINT_MAGIC} for gpt2ts, or an HF directory)`);
}

/**
 * Loads any model file; weights that are not all finite are refused, naming the first such tensor. With `expect`, a
 * file of the other kind is refused (a reward model is not sampled from; a language model scores nothing).
 */
export async function loadModel(p: string, backend: Backend, expect?: "language-model" | "reward-model"): Promise<GPT2> {
  p = modelFile(p);
  const format = detectFormat(p);
  if (expect) {
    const { kind } = readModelKind(p);
    if (kind !== expect) {
      throw new FormatError(kind === "reward-model" ? `${p} is a reward model (it scores answers: gpt2 rm score, gpt2 rl --reward-model); use a language model here`
        : `${p} is a language model, not a reward model (make one with gpt2 rm train)`);
    }
  }
  const model = format === "hf" ? loadHF(p, backend) : format === "llmc" ? loadLlmc(p, backend) : loadCheckpoint(p, backend).model;
  const bad = await model.firstNonFinite();
  if (bad) throw new FormatError(`${p}: the weights are not finite (first in ${bad}); this model cannot be used (a run that diverged? use an earlier checkpoint)`);
  return model;
}

/**
 * What a model file holds: a language model, or a reward model (gpt2 rm train) whose score is the logit of wte row
 * scoreRow; recorded in gpt2ts checkpoints (other formats hold language models).
 */
export function readModelKind(p: string): { kind: "language-model" | "reward-model"; scoreRow?: number } {
  p = modelFile(p);
  if (detectFormat(p) !== "gpt2ts") return { kind: "language-model" };
  const state = readCheckpointHeader(p).state as { modelKind?: string; scoreRow?: number };
  return state.modelKind === "reward-model" ? { kind: "reward-model", scoreRow: state.scoreRow } : { kind: "language-model" };
}

/**
 * The tokenizer a model was trained with: a character vocabulary recorded in a gpt2ts checkpoint (gpt2 prepare
 * --tokenizer char), else GPT-2's.
 */
export function modelTokenizer(p: string): Tokenizer {
  p = modelFile(p);
  if (detectFormat(p) !== "gpt2ts") return gpt2Tokenizer;
  return tokenizerFromSpec((readCheckpointHeader(p).state as { tokenizer?: unknown }).tokenizer, p);
}

/** Refuses a character-level model where GPT-2's tokenizer is needed (chat tokens, HellaSwag, HF/llm.c exports). */
export function requireGpt2Tokenizer(p: string, what: string): void {
  p = modelFile(p);
  const t = modelTokenizer(p);
  if (t.kind !== "gpt2") throw new FormatError(`${p} is a character-level model (${t.vocabSize - 1} characters); ${what} needs GPT-2's tokenizer`);
}

/** Output format from the path: a directory or no extension = HF, .bin = llm.c, anything else = gpt2ts. */
export function formatForOutput(p: string): ModelFormat {
  if (p.endsWith(".bin")) return "llmc";
  if (path.extname(p) === "" || (fs.existsSync(p) && fs.statSync(p).isDirectory())) return "hf";
  return "gpt2ts";
}

/**
 * Writes a model in a format. A gpt2ts checkpoint records the context the weights were trained for and, from
 * `identity` (modelIdentity() of the file it came from), its vocabulary and kind, so that a converted character-level
 * model or reward model stays one.
 */
export async function saveModel(model: GPT2, p: string, format = formatForOutput(p), identity: Record<string, unknown> = {}): Promise<void> {
  if (format === "hf") await saveHF(model, p);
  else if (format === "llmc") await saveLlmc(model, p);
  else await saveCheckpoint(p, model, { ...identity, context: model.context });
}

/** What a model file says about its weights beyond their shape: the character vocabulary, a reward model's kind. */
export function modelIdentity(p: string): Record<string, unknown> {
  p = modelFile(p);
  if (detectFormat(p) !== "gpt2ts") return {};
  const s = readCheckpointHeader(p).state;
  return Object.fromEntries(["tokenizer", "modelKind", "scoreRow"].filter((k) => s[k] !== undefined).map((k) => [k, s[k]]));
}
