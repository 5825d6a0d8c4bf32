// Published dense peaks of the NVIDIA GPUs people train GPT-2 on: the denominator of MFU for a card the CUDA backend
// finds (by the driver's name for it), and of `gpt2 estimate`'s plans. SXM parts unless named.

export interface GpuSpec {
  /** how the driver names it */
  match: RegExp;
  name: string;
  /** dense TFLOP/s of matrix products: bf16 on tensor cores, fp32 on CUDA cores */
  bf16: number;
  fp32: number;
  memoryGiB: number;
}

export const GPU_SPECS: Record<string, GpuSpec> = {
  h100pcie: { match: /H100.*PCIe/i, name: "H100 80GB PCIe", bf16: 756, fp32: 51.2, memoryGiB: 80 },
  h100: { match: /H100/i, name: "H100 80GB SXM", bf16: 989.4, fp32: 66.9, memoryGiB: 80 },
  h200: { match: /H200|GH200/i, name: "H200 141GB", bf16: 989.4, fp32: 66.9, memoryGiB: 141 },
  b200: { match: /B200/i, name: "B200", bf16: 2250, fp32: 80, memoryGiB: 180 },
  a100: { match: /A100/i, name: "A100 80GB SXM", bf16: 312, fp32: 19.5, memoryGiB: 80 },
  l40s: { match: /L40S/i, name: "L40S", bf16: 362, fp32: 91.6, memoryGiB: 48 },
  rtx4090: { match: /RTX 4090/i, name: "RTX 4090", bf16: 165, fp32: 82.6, memoryGiB: 24 },
};

/** the spec of the card the driver calls `name` (the first that matches), or null */
export function gpuSpec(name: string): GpuSpec | null {
  return Object.values(GPU_SPECS).find((g) => g.match.test(name)) ?? null;
}
