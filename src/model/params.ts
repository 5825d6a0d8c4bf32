// What is done to the flat parameter buffer (./layout.ts) as a whole: GPT-2's initialization, and finding the first
// tensor that holds a non-finite value (the training guard's diagnosis).

import type { Backend, Tensor } from "../kernels/backend.js";
import type { Rng } from "../util/rng.js";
import type { GPT2Config } from "./config.js";
import type { ParamLayout } from "./layout.js";

/** GPT-2 init: N(0, 0.02); residual projections 0.02/sqrt(2L); biases 0; LayerNorm weights 1; padded vocab rows 0. */
export function initParams(be: Backend, layout: ParamLayout, params: Tensor, c: GPT2Config, rng: Rng): void {
  const { nLayer: L, nEmbd: C, vocabSize: V } = c;
  const residualStd = 0.02 / Math.sqrt(2 * L);
  // tensor by tensor through a small host chunk: no second full copy of the parameters
  const chunk = new Float32Array(1 << 20);
  for (const t of layout.tensors) {
    const isLnWeight = t.name.startsWith("ln") && t.name.endsWith("w");
    const std = t.name === "attprojw" || t.name === "fcprojw" ? residualStd : 0.02;
    const random = t.decay ? (t.name === "wte" ? V * C : t.size) : 0;
    for (let off = 0; off < t.size; off += chunk.length) {
      const n = Math.min(chunk.length, t.size - off), part = chunk.subarray(0, n);
      for (let i = 0; i < n; i++) part[i] = isLnWeight ? 1 : off + i < random ? rng.normal() * std : 0;
      be.write(params, part, t.offset + off);
    }
  }
}

/**
 * The first tensor of `buf` (parameters or gradients, laid out as `layout`) holding a NaN or an infinity, as "wte" or
 * "qkvw of layer 3"; null when all values are finite.
 */
export async function firstNonFinite(be: Backend, layout: ParamLayout, L: number, buf: Tensor): Promise<string | null> {
  const finite = async (t: Tensor, n: number) => Number.isFinite(await be.sumSquaresAsync(t, n));
  if (await finite(buf, layout.total)) return null;
  for (const spec of layout.tensors) {
    const perLayer = spec.shape.length > 1 && spec.shape[0] === L && spec.name !== "wte" && spec.name !== "wpe" ? spec.size / L : 0;
    if (perLayer) {
      for (let l = 0; l < L; l++) {
        if (!(await finite(be.view(buf, spec.offset + l * perLayer, perLayer), perLayer))) return `${spec.name} of layer ${l}`;
      }
    } else if (!(await finite(be.view(buf, spec.offset, spec.size), spec.size))) return spec.name;
  }
  return "a value outside every tensor";
}
