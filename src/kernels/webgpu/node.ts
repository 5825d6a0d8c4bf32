// A WebGPU device in Node, through the npm package `webgpu` (Dawn, Chromium's WebGPU). It tries Dawn's default
// adapters (Vulkan, Metal, D3D12: a real GPU), then its OpenGL ES backend on Mesa (EGL without a display): the CPU
// adapter (llvmpipe) that GPU-less machines such as CI have, where correctness can be tested and speed means nothing.

import * as fs from "node:fs";
import * as path from "node:path";
import { env, setEnv } from "../../util/env.js";
import { WebGPUBackend } from "./backend.js";

export class WebGPUUnavailableError extends Error {
  override name = "WebGPUUnavailableError";
}

type Dawn = { create(options: string[]): GPU };
/** Dawn instances stay referenced for the process's life: a collected instance takes its devices with it */
const instances: GPU[] = [];

async function loadDawn(): Promise<Dawn> {
  try {
    return (await import("webgpu")) as unknown as Dawn;
  } catch (e) {
    throw new WebGPUUnavailableError(`WebGPU in Node needs the npm package "webgpu" (Dawn), which did not load: ${(e as Error).message.split("\n")[0]}`);
  }
}

/**
 * Whether Linux's loader would find the Vulkan loader (libvulkan.so.1), which Dawn's default backends need there: when
 * it is missing, Dawn is not asked (it would print a warning per process) and the OpenGL ES backend is tried directly.
 */
function vulkanLoader(): boolean {
  if (process.platform !== "linux") return true;
  const dirs = (env("LD_LIBRARY_PATH") ?? "").split(":").filter(Boolean);
  if (dirs.some((d) => fs.existsSync(path.join(d, "libvulkan.so.1")))) return true;
  try { return fs.readFileSync("/etc/ld.so.cache").includes("libvulkan.so.1"); } catch { return true; }
}

export type WebGPUAdapterKind = "default" | "vulkan" | "opengles";

/** the adapter asked for (else by GPT2_WEBGPU_ADAPTER): "default" (a real GPU), "opengles" (Mesa's CPU rendering), or both in turn */
function adapterOrder(asked?: WebGPUAdapterKind): string[] {
  const want = asked ?? env("GPT2_WEBGPU_ADAPTER");
  if (want === undefined) return vulkanLoader() ? ["default", "opengles"] : ["opengles"];
  if (want !== "default" && want !== "opengles" && want !== "vulkan") {
    throw new WebGPUUnavailableError(`GPT2_WEBGPU_ADAPTER expects default, vulkan or opengles, got "${want}"`);
  }
  return [want];
}

async function requestAdapter(dawn: Dawn, kind: string): Promise<GPUAdapter | null> {
  // Mesa's EGL reads it when Dawn opens the display: no display here (a server, CI), Mesa's CPU renderer
  if (kind === "opengles" && env("EGL_PLATFORM") === undefined) setEnv("EGL_PLATFORM", "surfaceless");
  const gpu = dawn.create(kind === "default" ? [] : [`backend=${kind}`]);
  instances.push(gpu);
  // Dawn's OpenGL ES backend offers only WebGPU's compatibility level
  return (await gpu.requestAdapter({ powerPreference: "high-performance" })) ??
    (await gpu.requestAdapter({ featureLevel: "compatibility" } as GPURequestAdapterOptions));
}

/** Opens the first WebGPU adapter found (or the kind asked for) and returns a backend on it. */
export async function createWebGPUBackend(opts: { adapter?: WebGPUAdapterKind; maxBindingBytes?: number; activations?: "f32" | "bf16" } = {}): Promise<WebGPUBackend> {
  const dawn = await loadDawn();
  const tried: string[] = [];
  for (const kind of adapterOrder(opts.adapter)) {
    const adapter = await requestAdapter(dawn, kind).catch(() => null);
    if (!adapter) { tried.push(kind); continue; }
    const L = adapter.limits;
    const device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
        maxBufferSize: L.maxBufferSize,
        maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
        maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX,
      },
    });
    const info = adapter.info;
    const what = [...new Set([info.vendor, info.device, info.description].filter(Boolean))].join(", ") || "a WebGPU adapter";
    return new WebGPUBackend(device, `${what} (${kind === "default" ? "Dawn" : `Dawn, ${kind}`})`, { maxBindingBytes: opts.maxBindingBytes, activations: opts.activations });
  }
  throw new WebGPUUnavailableError(`no WebGPU adapter found (tried Dawn's ${tried.join(" and ")} backends; on a machine without a GPU, Mesa's EGL and GLES libraries give a CPU adapter)`);
}
