// Host tensors: the storage of the TypeScript and native backends. Typed arrays that say their dtype, so a tensor's
// bytes follow from it as on a device; a view (subarray) is of the same class.

import type { Tensor } from "./backend.js";

/** float32 host storage */
export class HostF32 extends Float32Array implements Tensor {
  get dtype(): "f32" { return "f32"; }
}

/** bf16 host storage: the upper 16 bits of each float32 */
export class HostBf16 extends Uint16Array implements Tensor {
  get dtype(): "bf16" { return "bf16"; }
}

/** int32 host storage: token ids */
export class HostI32 extends Int32Array implements Tensor {
  get dtype(): "i32" { return "i32"; }
}
