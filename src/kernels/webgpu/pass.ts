// How one compute pass of a kernel is laid out (./backend.ts records it): how each argument is read, which bindings
// the arguments get, the uniform block of parameters and offsets, and the WGSL made for that layout. No device here.

import type { ArgType, KernelSpec } from "./kernels.js";

/** what a pass needs of a tensor (./backend.ts's WebGPUTensor) */
export interface PassTensor {
  readonly buffer: GPUBuffer;
  /** in values */
  readonly offset: number;
  readonly length: number;
  readonly dtype: "f32" | "bf16" | "i32";
  readonly bytesPerValue: number;
}

/** how a kernel reads an argument: as declared, or a bf16 tensor unpacked to float32 */
export type Access = ArgType | "bf16";

export interface Slot { buffer: GPUBuffer; type: ArgType; lo: number; hi: number }

/**
 * The arguments' access and bindings. A bf16 tensor given for a float32 argument is read through an unpacking
 * accessor, and a "u32" argument is a bf16 tensor's raw words. One binding per range of a buffer: arguments whose
 * ranges overlap once widened to the device's alignment (an aliased argument, or neighbouring views) share one, as
 * WebGPU forbids overlapping writable bindings; others get their own, so a binding spans no more than its arguments
 * (a bias and its weight, far apart, stay apart). A binding over `maxBinding` bytes is refused in one line.
 */
export function layoutPass(name: string, spec: KernelSpec, tensors: PassTensor[], align: number, maxBinding: number):
  { access: Access[]; slots: Slot[]; slotOf: number[] } {
  const access = tensors.map((t, i): Access => {
    const declared = spec.args[i][1];
    if (t.dtype === "bf16") {
      if (declared === "f32") return "bf16";
      if (declared !== "u32") throw new TypeError(`${name}: argument ${spec.args[i][0]} cannot be bf16`);
      return "u32";
    }
    if (declared === "u32") throw new TypeError(`${name}: argument ${spec.args[i][0]} must be a bf16 tensor`);
    // token ids are i32 tensors, and nothing else is
    if ((declared === "i32") !== (t.dtype === "i32")) throw new TypeError(`${name}: argument ${spec.args[i][0]} must be ${declared === "i32" ? "an i32" : "a float32"} tensor, not ${t.dtype}`);
    return declared;
  });
  const slots: Slot[] = [];
  const slotOf = tensors.map((t, i) => {
    const type: ArgType = access[i] === "f32" || access[i] === "i32" ? access[i] as ArgType : "u32";
    slots.push({
      buffer: t.buffer, type,
      lo: Math.floor((t.offset * t.bytesPerValue) / align) * align,
      hi: Math.min(Math.ceil(((t.offset + Math.max(t.length, 1)) * t.bytesPerValue) / 4) * 4, t.buffer.size),
    });
    return i;
  });
  for (let merged = true; merged;) {
    merged = false;
    for (let a = 0; a < slots.length && !merged; a++) {
      for (let b = a + 1; b < slots.length && !merged; b++) {
        const x = slots[a], y = slots[b];
        if (x.buffer !== y.buffer || x.hi <= y.lo || y.hi <= x.lo) continue;
        if (x.type !== y.type) throw new TypeError(`${name}: one buffer range given as ${x.type} and ${y.type}`);
        x.lo = Math.min(x.lo, y.lo);
        x.hi = Math.max(x.hi, y.hi);
        slots.splice(b, 1);
        for (let k = 0; k < slotOf.length; k++) if (slotOf[k] === b) slotOf[k] = a; else if (slotOf[k] > b) slotOf[k]--;
        merged = true;
      }
    }
  }
  for (const s of slots) {
    if (s.hi - s.lo > maxBinding) {
      throw new RangeError(`${name}: one tensor of ${((s.hi - s.lo) / 2 ** 20).toFixed(0)} MiB is more than this WebGPU device binds at once ` +
        `(${(maxBinding / 2 ** 20).toFixed(0)} MiB): a smaller model, or a GPU adapter (their limits are in GiB)`);
    }
  }
  return { access, slots, slotOf };
}

/**
 * The uniform block: the workgroup count, the kernel's parameters (u32 or f32), then each argument's offset within
 * its binding, in values (float32, i32, bf16 unpacked) or in words (raw u32).
 */
export function uniformBlock(spec: KernelSpec, groups: number, params: number[], tensors: PassTensor[], access: Access[],
  slots: Slot[], slotOf: number[]): ArrayBuffer {
  const offsets = tensors.map((t, i) => {
    const bytes = t.offset * t.bytesPerValue - slots[slotOf[i]].lo;
    return access[i] === "bf16" ? bytes / 2 : bytes / 4;
  });
  const data = new ArrayBuffer(Math.ceil(((1 + params.length + offsets.length) * 4) / 16) * 16);
  const view = new DataView(data);
  view.setUint32(0, groups, true);
  spec.params.forEach(([, type], i) => {
    if (type === "f32") view.setFloat32(4 * (i + 1), params[i], true);
    else view.setUint32(4 * (i + 1), params[i], true);
  });
  offsets.forEach((o, i) => view.setUint32(4 * (1 + params.length + i), o, true));
  return data;
}

/** whether the kernel's body writes argument `name` */
const writes = (spec: KernelSpec, name: string): boolean => spec.body.includes(`st_${name}(`);

/**
 * The WGSL of a kernel for one assignment of its arguments to bindings.
 *
 * A bf16 tensor the kernel writes (an activation stored in bf16) is bound as atomic words: its two values share a
 * 32-bit word, which two invocations may write at once, so a store clears its own half and sets it with atomicAnd /
 * atomicOr (neither touches the other half); its loads are atomicLoad. Values are rounded to nearest even, as
 * `toBf16` and the CPU round. Tensors only read stay plain words (inference weights).
 */
export function shader(spec: KernelSpec, slotOf: number[], slotTypes: ArgType[], access: Access[], hs: number): string {
  const atomic = slotTypes.map((_, s) => spec.args.some(([n], i) => slotOf[i] === s && access[i] === "bf16" && writes(spec, n)));
  const fields = [
    "total: u32",
    ...spec.params.map(([n, t]) => `${n}: ${t}`),
    ...spec.args.map(([n]) => `o_${n}: u32`),
  ];
  const lines = [
    hs ? `const HS: u32 = ${hs}u;` : "",
    `struct U { ${fields.join(", ")} }`,
    "@group(0) @binding(0) var<uniform> u: U;",
    ...slotTypes.map((t, i) => `@group(0) @binding(${i + 1}) var<storage, read_write> b${i}: array<${atomic[i] ? "atomic<u32>" : t}>;`),
    atomic.some((a) => a) ? BF16_STORE : "",
    ...spec.args.map(([n, t], i) => {
      if (access[i] !== "bf16") {
        return `fn ld_${n}(i: u32) -> ${t} { return b${slotOf[i]}[u.o_${n} + i]; }\n` +
          `fn st_${n}(i: u32, x: ${t}) { b${slotOf[i]}[u.o_${n} + i] = x; }`;
      }
      // value j of a bf16 tensor: the low half of word j/2 when j is even, the high half when odd
      const b = `b${slotOf[i]}`, word = atomic[slotOf[i]] ? `atomicLoad(&${b}[j >> 1u])` : `${b}[j >> 1u]`;
      return `fn ld_${n}(i: u32) -> f32 { let j = u.o_${n} + i; let w = ${word}; ` +
        `return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (j & 1u) == 1u)); }` +
        (atomic[slotOf[i]] ? `\nfn st_${n}(i: u32, x: f32) { let j = u.o_${n} + i; let h = bf16_of(x); ` +
          `if ((j & 1u) == 1u) { atomicAnd(&${b}[j >> 1u], 0x0000ffffu); atomicOr(&${b}[j >> 1u], h << 16u); } ` +
          `else { atomicAnd(&${b}[j >> 1u], 0xffff0000u); atomicOr(&${b}[j >> 1u], h); } }` : "");
    }),
    spec.decls ?? "",
    `@compute @workgroup_size(${spec.wg})`,
    "fn main(@builtin(workgroup_id) w: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) lid: u32) {",
    "  let wid = w.x + w.y * nw.x;",
    "  if (wid >= u.total) { return; }",
    spec.body,
    "}",
  ];
  return lines.join("\n");
}

/** float32 to bf16 bits, nearest even (NaN stays a quiet NaN): the stores of bf16 activations */
const BF16_STORE = /* wgsl */ `
fn bf16_of(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu) != 0u) { return (b >> 16u) | 0x40u; }
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}`;
