// bfloat16 storage: the upper 16 bits of a float32 (8 exponent bits, 7 mantissa bits). Rounding to nearest, ties to
// even, as PyTorch's and the CPU's (vcvtneps2bf16) conversions do; NaN stays NaN.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** the bf16 bits nearest to x */
export function toBf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return (u >>> 16) | 0x40; // NaN: keep it a (quiet) NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** the float32 a bf16 value stands for (exact) */
export function fromBf16(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

export function toBf16Array(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) dst[i] = toBf16(src[i]);
  return dst;
}

export function fromBf16Array(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  const wide = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) wide[i] = src[i] << 16;
  return dst;
}

/** whether a tensor of a host backend holds bf16 values */
export function isBf16(t: { length: number }): t is Uint16Array {
  return t instanceof Uint16Array;
}
