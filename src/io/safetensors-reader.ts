// Reading safetensors (u64 LE header length, JSON header {name: {dtype, shape, data_offsets}}, raw little-endian
// data) from any byte source: the header is validated fully before any tensor is read (sizes, offsets, overlaps,
// dtypes). io/safetensors.ts opens files with it in Node; the browser reads a File's bytes with it.

import { FormatError } from "../util/errors.js";
import { utf8, view, type ByteSource } from "./bytes.js";

export interface TensorInfo {
  dtype: "F32" | "F16" | "BF16" | "F64";
  shape: number[];
  /** byte offsets relative to the start of the data section */
  begin: number;
  end: number;
}

const DTYPE_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

export class SafetensorsReader {
  readonly tensors = new Map<string, TensorInfo>();
  readonly metadata: Record<string, string> = {};
  readonly file: string;
  private readonly dataStart: number;

  constructor(protected readonly src: ByteSource) {
    const file = this.file = src.name, size = src.size;
    if (size < 8) throw new FormatError(`${file} is not a safetensors file: ${size} bytes, need at least 8`);
    const n = Number(view(src.read(0, 8)).getBigUint64(0, true));
    if (n <= 0 || 8 + n > size) throw new FormatError(`${file}: header length ${n} does not fit the file size ${size}`);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(utf8(src.read(8, n)));
    } catch (e) {
      throw new FormatError(`${file}: header is not valid JSON (${(e as Error).message})`);
    }
    if (!header || typeof header !== "object" || Array.isArray(header)) throw new FormatError(`${file}: header must be a JSON object of tensors`);
    this.dataStart = 8 + n;
    const dataSize = size - this.dataStart;
    const spans: [number, number, string][] = [];
    for (const [name, raw] of Object.entries(header)) {
      if (name === "__metadata__") { Object.assign(this.metadata, raw); continue; }
      const info = raw as { dtype?: string; shape?: number[]; data_offsets?: number[] };
      if (!info || typeof info.dtype !== "string" || !(info.dtype in DTYPE_BYTES)) {
        throw new FormatError(`${file}: tensor ${name} has unsupported dtype ${info?.dtype} (expected F32, F16, BF16 or F64)`);
      }
      if (!Array.isArray(info.shape) || !info.shape.every((d) => Number.isInteger(d) && d >= 0)) {
        throw new FormatError(`${file}: tensor ${name} has a malformed shape ${JSON.stringify(info.shape)}`);
      }
      const off = info.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !Number.isInteger(off[0]) || !Number.isInteger(off[1]) || off[0] > off[1]) {
        throw new FormatError(`${file}: tensor ${name} has malformed data_offsets ${JSON.stringify(off)}`);
      }
      const want = info.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[info.dtype];
      if (off[1] - off[0] !== want) {
        throw new FormatError(`${file}: tensor ${name} spans ${off[1] - off[0]} bytes, but shape ${JSON.stringify(info.shape)} of ${info.dtype} needs ${want}`);
      }
      if (off[1] > dataSize) throw new FormatError(`${file}: tensor ${name} ends at byte ${off[1]} past the data section (${dataSize} bytes); truncated file?`);
      spans.push([off[0], off[1], name]);
      this.tensors.set(name, { dtype: info.dtype as TensorInfo["dtype"], shape: info.shape, begin: off[0], end: off[1] });
    }
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i][0] < spans[i - 1][1]) throw new FormatError(`${file}: tensors ${spans[i - 1][2]} and ${spans[i][2]} overlap`);
    }
  }

  /** Reads a tensor as float32 (F16/BF16/F64 converted), checking its shape when one is expected. */
  read(name: string, expectShape?: number[]): Float32Array {
    const info = this.tensors.get(name);
    if (!info) throw new FormatError(`${this.file}: missing tensor ${name}${expectShape ? ` (expected shape ${JSON.stringify(expectShape)})` : ""}`);
    if (expectShape && JSON.stringify(info.shape) !== JSON.stringify(expectShape)) {
      throw new FormatError(`${this.file}: tensor ${name} has shape ${JSON.stringify(info.shape)}, expected ${JSON.stringify(expectShape)}`);
    }
    const n = info.shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    if (info.dtype === "F32") { this.src.readFloats(out, this.dataStart + info.begin); return out; }
    const dv = view(this.src.read(this.dataStart + info.begin, info.end - info.begin));
    if (info.dtype === "F64") for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
    else if (info.dtype === "BF16") {
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(2 * i, true) << 16;
    } else for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(2 * i, true));
    return out;
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

