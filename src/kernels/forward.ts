// The calls a TypeScript backend makes into native kernels, made from the addon's one kernel list (native/kernels.def,
// exported as `kernelList`): for each kernel, its tensors converted as the list says (a CPU backend passes its
// Float32Arrays, CUDA its device addresses) and the rest passed as they are. A backend writes by hand only the calls
// that differ (a per-call precision, a check of its own).

import type { Backend, Tensor } from "./backend.js";

/** one line of native/kernels.def: the CPU export, the CUDA export, and each argument's kind (t, t?, i or h) */
export interface KernelEntry { cpu: string; cuda: string; args: string }
export type KernelList = Record<string, KernelEntry>;

/** the Backend's methods that are kernels (everything but identity and memory) */
export type KernelMethods = Omit<Backend, "name" | "threads" | "device" | "classifierRows" | "freeBytes" | "alloc" | "view" |
  "write" | "read" | "readAsync" | "fill" | "copy" | "sumSquaresAsync">;

/**
 * Defines on `target` each listed kernel that its class does not write itself: `call(entry)` gives the native
 * function, `tensor` turns a tensor into what it takes. An addon without the list, without a listed kernel's export,
 * or without one of the backend's other `required` exports, was built from other sources: that is said in one line.
 */
export function forwardKernels<X>(target: object, list: KernelList | undefined, exportName: (entry: KernelEntry) => string,
  exports: Record<string, unknown>, call: (entry: KernelEntry) => (...args: unknown[]) => unknown, tensor: (t: Tensor) => X,
  required: string[] = [], dtypeMask = false): void {
  const stale = "the native addon was built from other sources than this gpt2ts: rebuild it (npm install, or npm rebuild gpt2ts)";
  if (!list || typeof list !== "object") throw new Error(`${stale} (it has no kernel list)`);
  for (const r of required) if (typeof exports[r] !== "function") throw new Error(`${stale} (it lacks ${r})`);
  const own = Object.getPrototypeOf(target) as object;
  for (const [name, entry] of Object.entries(list)) {
    if (typeof exports[exportName(entry)] !== "function") throw new Error(`${stale} (it lacks ${exportName(entry)})`);
    if (Object.prototype.hasOwnProperty.call(own, name)) continue; // written by hand in the class
    const kinds = entry.args.split(" ");
    Object.defineProperty(target, name, {
      configurable: true, writable: true,
      value(...args: unknown[]) {
        // dtypeMask: one more argument after the listed ones, bit i set when tensor argument i is bf16 (CUDA's tensors
        // cross as bare addresses, which do not say their storage)
        let mask = 0;
        if (dtypeMask) {
          args.length = kinds.length;
          for (let i = 0; i < kinds.length; i++) if ((args[i] as Tensor | null)?.dtype === "bf16") mask |= 1 << i;
        }
        for (let i = 0; i < kinds.length; i++) {
          if (kinds[i] === "t") args[i] = tensor(args[i] as Tensor);
          else if (kinds[i] === "i") {
            // token ids: a kernel would read another dtype's bytes as ids, outside the tables they index
            const t = args[i] as Tensor;
            if (t?.dtype !== "i32") throw new TypeError(`${name}: argument ${i} must be an i32 tensor of token ids, not ${t?.dtype ?? typeof t}`);
            args[i] = tensor(t);
          }
          else if (kinds[i] === "t?") args[i] = args[i] == null ? null : tensor(args[i] as Tensor);
        }
        if (dtypeMask) args.push(mask);
        return call(entry)(...args);
      },
    });
  }
}
