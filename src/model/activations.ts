// The activation buffers of a GPT-2 forward and backward, as one table: what each holds, its shape, and how many
// copies the recompute level keeps. GPT2.allocate allocates from it; the memory plan and the estimator sum it.

import { DTYPE_BYTES, type DType, type Tensor } from "../kernels/backend.js";
import type { GPT2Config } from "./config.js";

/** Rows per classifier chunk: logits exist for this many positions at a time (103 MB in float32 for GPT-2's vocab, 51 MB
 * in bf16), unless the backend asks for another number (Backend.classifierRows). 512 rather than 256: the lm_head
 * packs its 50304 x 768 weight once per chunk forward and again for the chunk's dinp, and reads and writes its whole
 * gradient once per chunk backward (K = the chunk's rows). Half the chunks took a d12 bf16 step at B=4, T=256 from
 * ~713 to ~620 ms of lm_head products (1024 rows measured the same as 512), and a float32 one from 1178 to 1128 ms, for
 * 47 MiB more (float32 logits). */
export const CLASSIFIER_CHUNK = 512;

/** Activation recompute: 0 stores everything; 1 recomputes GELU in backward; 2 also recomputes the LayerNorms. */
export type RecomputeLevel = 0 | 1 | 2;

/**
 * The activation buffers, one table for the allocation (GPT2.allocate) and the memory plan (GPT2.activationBytes,
 * the estimator, the check before a run starts). `layers`: per layer (L copies), or one buffer every layer reuses
 * (scratch, or what the recompute level `-r` recomputes in backward instead of keeping). `dtype`: "f32", stored in
 * float32 whatever the activation dtype (statistics, losses, and the gradients, which accumulate), "grad" (a block's backward scratch: the
 * backend's activationGradDtype, float32 unless it says bf16), or "i32" (token ids); the others take the activation dtype (bf16 under --dtype bf16 on a backend whose activationDtype says so), the
 * logits too, and with them the dlogits written over them. Shapes count values.
 */
const ACTIVATIONS = {
  tokens: { shape: (d: ActDims) => [d.BT], layers: () => 1, dtype: "i32", doc: "the input token ids (the encoder's, and its backward's)" },
  targets: { shape: (d: ActDims) => [d.BT], layers: () => 1, dtype: "i32", doc: "the classifier's target ids, of the rows it runs over" },
  rows: { shape: (d: ActDims) => [d.BT], layers: () => 1, dtype: "i32", doc: "row indices when the classifier or a score head runs over some rows" },
  encoded: { shape: (d: ActDims) => [d.BT, d.C], layers: () => 1, doc: "token + position embeddings" },
  ln1: { shape: (d: ActDims) => [d.BT, d.C], layers: (d: ActDims) => (d.recompute >= 2 ? 1 : d.L), doc: "ln_1 output (-r 2: recomputed)" },
  ln1Mean: { shape: (d: ActDims) => [d.BT], layers: (d: ActDims) => d.L, dtype: "f32", doc: "ln_1 mean" },
  ln1Rstd: { shape: (d: ActDims) => [d.BT], layers: (d: ActDims) => d.L, dtype: "f32", doc: "ln_1 1/std" },
  qkv: { shape: (d: ActDims) => [d.BT, 3 * d.C], layers: (d: ActDims) => d.L, doc: "attention's q, k, v" },
  atty: { shape: (d: ActDims) => [d.BT, d.C], layers: (d: ActDims) => d.L, doc: "attention output" },
  lse: { shape: (d: ActDims) => [d.B, d.NH, d.T], layers: (d: ActDims) => d.L, dtype: "f32", doc: "attention's log-sum-exp per row" },
  attproj: { shape: (d: ActDims) => [d.BT, d.C], layers: () => 1, doc: "attn.c_proj output (scratch: only its sum with the residual is kept)" },
  residual2: { shape: (d: ActDims) => [d.BT, d.C], layers: (d: ActDims) => d.L, doc: "residual after attention" },
  ln2: { shape: (d: ActDims) => [d.BT, d.C], layers: (d: ActDims) => (d.recompute >= 2 ? 1 : d.L), doc: "ln_2 output (-r 2: recomputed)" },
  ln2Mean: { shape: (d: ActDims) => [d.BT], layers: (d: ActDims) => d.L, dtype: "f32", doc: "ln_2 mean" },
  ln2Rstd: { shape: (d: ActDims) => [d.BT], layers: (d: ActDims) => d.L, dtype: "f32", doc: "ln_2 1/std" },
  fch: { shape: (d: ActDims) => [d.BT, 4 * d.C], layers: (d: ActDims) => d.L, doc: "mlp.c_fc output" },
  fchGelu: { shape: (d: ActDims) => [d.BT, 4 * d.C], layers: (d: ActDims) => (d.recompute >= 1 ? 1 : d.L), doc: "GELU output (-r 1: recomputed)" },
  fcproj: { shape: (d: ActDims) => [d.BT, d.C], layers: () => 1, doc: "mlp.c_proj output (scratch)" },
  residual3: { shape: (d: ActDims) => [d.BT, d.C], layers: (d: ActDims) => d.L, doc: "residual after the MLP: the block's output" },
  lnf: { shape: (d: ActDims) => [d.BT, d.C], layers: () => 1, doc: "ln_f output" },
  lnfMean: { shape: (d: ActDims) => [d.BT], layers: () => 1, dtype: "f32", doc: "ln_f mean" },
  lnfRstd: { shape: (d: ActDims) => [d.BT], layers: () => 1, dtype: "f32", doc: "ln_f 1/std" },
  logits: { shape: (d: ActDims) => [Math.min(d.BT, d.chunk), d.Vp], layers: () => 1, doc: "one chunk of the fused classifier's logits (the full (B,T,Vp) never exists in training)" },
  losses: { shape: (d: ActDims) => [d.BT], layers: () => 1, dtype: "f32", doc: "per-position losses" },
  dres: { shape: (d: ActDims) => [d.BT, d.C], layers: () => 1, dtype: "f32", doc: "backward: gradient of the residual stream" },
  dln: { shape: (d: ActDims) => [d.BT, d.C], layers: () => 1, dtype: "f32", doc: "backward scratch" },
  dblock: {
    shape: (d: ActDims) => [d.BT, 4 * d.C], layers: () => 1, dtype: "grad",
    doc: "backward scratch of a block, used twice: d(GELU output), then d(fch) over it (GELU's backward in place); then d(atty) in its first BT x C values and d(qkv) in the 3 BT x C after",
  },
  zeroRow: { shape: (d: ActDims) => [d.C], layers: () => 1, dtype: "f32", doc: "zeros: the position table when the encoder gathers rows" },
  rowScratch: { shape: (d: ActDims) => [d.C], layers: () => 1, dtype: "f32", doc: "where the gather's backward puts its (unused) position gradient" },
} as const;

export type ActName = keyof typeof ACTIVATIONS;
interface ActDims { L: number; B: number; T: number; BT: number; C: number; NH: number; Vp: number; chunk: number; recompute: RecomputeLevel }

/** One row of the activation table: a buffer's name, per-layer shape, copies, values, dtype, bytes, what it holds. */
export interface ActivationEntry { name: ActName; shape: number[]; layers: number; floats: number; bytes: number; dtype: DType; doc: string }

/**
 * The activation buffers a model of config `c` allocates for B x T at a recompute level, activations stored in
 * `dtype` (GPT2.allocate uses it; `floats` counts values of the entry's dtype, `bytes` follows from it).
 */
export function activationTable(c: GPT2Config, B: number, T: number, recompute: RecomputeLevel, chunk = CLASSIFIER_CHUNK,
  dtype: "f32" | "bf16" = "f32", gradDtype: "f32" | "bf16" = "f32"): ActivationEntry[] {
  const d: ActDims = { L: c.nLayer, B, T, BT: B * T, C: c.nEmbd, NH: c.nHead, Vp: c.paddedVocabSize, chunk, recompute };
  return (Object.keys(ACTIVATIONS) as ActName[]).map((name) => {
    const e: { shape: (d: ActDims) => number[]; layers: (d: ActDims) => number; dtype?: "f32" | "i32" | "grad"; doc: string } = ACTIVATIONS[name];
    const shape = e.shape(d), layers = e.layers(d), dt = e.dtype === "grad" ? gradDtype : e.dtype ?? dtype;
    const floats = layers * shape.reduce((x, y) => x * y, 1);
    return { name, shape, layers, floats, bytes: floats * DTYPE_BYTES[dt], dtype: dt, doc: e.doc };
  });
}

/** bytes of the whole table */
export function activationBytes(table: ActivationEntry[]): number {
  return table.reduce((sum, e) => sum + e.bytes, 0);
}

/** the allocated buffers, by name */
export type Activations = Record<ActName, Tensor> & { B: number; T: number; bytes: number };
