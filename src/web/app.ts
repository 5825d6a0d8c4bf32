// The web app (gpt2 web, npm run build:web): GPT-2 in the browser on WebGPU, from the same sources as the CLI.
// Open a model (a file, or a URL: gpt2ts, llm.c .bin, Hugging Face safetensors), generate with streamed tokens, or
// train the tiny preset on pasted or dropped text with the dashboard's loss chart, then download the checkpoint,
// which `gpt2 sample --model FILE` loads. Everything is fetched from the page's own origin.

import * as echarts from "echarts";
import type { Backend } from "../kernels/backend.js";
import { JsBackend } from "../kernels/js/backend.js";
import { WebGPUBackend } from "../kernels/webgpu/backend.js";
import { buildOption, type MetricRecord } from "../dashboard/charts.js";
import { describeConfig } from "../model/config.js";
import { generateAsync, KVCache } from "../model/generate.js";
import type { GPT2 } from "../model/gpt2.js";
import { CharTokenizer, charTokenizerFromSpec, type Tokenizer } from "../tokenizer/char.js";
import { Rng } from "../util/rng.js";
import { openModel, type NamedBytes } from "./model-file.js";
import { gpt2Tokenizer } from "./tokenizer.js";
import { TextTrainer } from "./trainer.js";

const base = new URL(".", location.href);
const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`the page lacks #${id}`);
  return e as T;
};
const input = (id: string) => $<HTMLInputElement>(id);
const num = (id: string, min: number, int = true): number => {
  const raw = input(id).value.trim(), v = Number(raw);
  if (raw === "" || !Number.isFinite(v) || (int && !Number.isInteger(v)) || v < min) {
    throw new RangeError(`${$(id).dataset.label ?? id} expects ${int ? "an integer" : "a number"} >= ${min}, got "${raw}"`);
  }
  return v;
};

let backend: Backend;
/** the model generation uses, with its KV cache (made once per model: its memory is the model's context) */
let current: { model: GPT2; tokenizer: Tokenizer; name: string; cache?: KVCache } | null = null;
let busy = false;
/** whether a Load click came from the user (true) or from the page's ?model= link */
let loadingByHand = true;

function say(id: string, text: string): void { $(id).textContent = text; }
function fail(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  say("error", msg);
  document.body.dataset.error = msg;
}
function clearError(): void { say("error", ""); delete document.body.dataset.error; }

/** WebGPU where the browser has it; otherwise the TypeScript backend on the CPU, with the reason shown. */
async function openBackend(): Promise<Backend> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  let why = "this browser has no WebGPU (navigator.gpu is missing)";
  if (gpu) {
    const adapter = await gpu.requestAdapter().catch(() => null) ?? await gpu.requestAdapter({ featureLevel: "compatibility" } as GPURequestAdapterOptions).catch(() => null);
    const L = adapter?.limits;
    const device = adapter && L ? await adapter.requestDevice({
        requiredLimits: {
          maxStorageBufferBindingSize: L.maxStorageBufferBindingSize, maxBufferSize: L.maxBufferSize,
          maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage, maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
          maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX,
        },
      }).catch((e: Error) => { why = `its adapter gave no device (${e.message})`; return null; }) : null;
    if (adapter && device) {
      const info = adapter.info;
      const what = [...new Set([info.vendor, info.architecture, info.device, info.description].filter(Boolean))].join(", ") || "a WebGPU adapter";
      say("backend", `WebGPU: ${what}`);
      document.body.dataset.backend = "webgpu";
      return new WebGPUBackend(device, what);
    }
    if (!adapter) why = "this browser has WebGPU but offered no adapter (a blocklisted GPU, or WebGPU switched off)";
  }
  $("no-webgpu").hidden = false;
  say("no-webgpu", `WebGPU is not available: ${why}. Running on the CPU with the TypeScript backend instead, far slower; ` +
    "a browser with WebGPU (Chrome or Edge 113+, Safari 26, Firefox 141+) runs it on the GPU.");
  say("backend", "TypeScript backend on the CPU (no WebGPU)");
  document.body.dataset.backend = "js";
  return new JsBackend();
}

async function tokenizerFor(spec: unknown, name: string): Promise<Tokenizer> {
  return charTokenizerFromSpec(spec, name) ?? gpt2Tokenizer(base);
}

function describe(name: string, m: GPT2, t: Tokenizer, how: string): string {
  return `${name} (${how}): ${describeConfig(m.config)}, ${(m.numParams / 1e6).toFixed(2)}M parameters, ` +
    `context ${m.context}, ${t.kind === "char" ? `${t.vocabSize - 1} characters` : "GPT-2's BPE"}`;
}

async function useModel(files: NamedBytes[]): Promise<void> {
  say("model-info", `reading ${files.map((f) => f.name).join(", ")} ...`);
  const opened = await openModel(files, backend);
  const tokenizer = await tokenizerFor(opened.tokenizer, opened.name);
  current = { model: opened.model, tokenizer, name: opened.name };
  say("model-info", describe(opened.name, opened.model, tokenizer, opened.format));
  document.body.dataset.model = opened.name;
}

/** runs one action at a time, with its errors shown on the page */
function action(f: () => Promise<void>): () => void {
  return () => {
    if (busy) { say("error", "busy with the last action: wait for it (or Stop a training run)"); return; }
    busy = true;
    clearError();
    document.body.dataset.busy = "1";
    f().catch(fail).finally(() => { busy = false; delete document.body.dataset.busy; });
  };
}

// ---------------------------------------------------------------- generation
async function generateText(): Promise<void> {
  if (!current) throw new Error("open a model first (a file, a URL, or train one below)");
  const { model, tokenizer } = current;
  const maxNewTokens = num("max-tokens", 1), temperature = num("temperature", 0, false), topK = num("top-k", 0);
  const topP = num("top-p", 0, false), seed = num("seed", 0);
  const text = input("prompt").value;
  const prompt = text === "" ? [tokenizer.eot] : tokenizer.encode(text, { allowSpecial: true });
  const out = $("output"), dec = tokenizer.decoder();
  out.textContent = text;
  out.dataset.ids = "";
  const t0 = performance.now();
  let n = 0;
  const [ids] = await generateAsync(model, prompt, 1, new Rng(seed), {
    maxNewTokens, temperature, topK, topP, stopAtEot: !input("no-stop").checked,
    onToken: (_, tok) => { n++; out.textContent += dec.push(tok); },
  }, current.cache ??= new KVCache(model, 1));
  out.textContent += dec.flush();
  out.dataset.ids = JSON.stringify(ids);
  const s = (performance.now() - t0) / 1000;
  say("gen-status", `${n} tokens in ${s.toFixed(1)} s (${(n / s).toFixed(1)} tokens/s)`);
}

// ---------------------------------------------------------------- training
let trainer: TextTrainer | null = null;
let stopRequested = false;

async function train(): Promise<void> {
  const text = $<HTMLTextAreaElement>("train-text").value;
  if (text.trim() === "") throw new Error("paste or drop a text to train on first");
  const kind = $<HTMLSelectElement>("tokenizer").value;
  const tokenizer = kind === "char" ? CharTokenizer.fromText([text]) : await gpt2Tokenizer(base);
  const opts = { steps: num("steps", 1), batchSize: num("batch", 1), seqLen: num("seq", 2), lr: num("lr", 0, false), sampleTokens: num("sample-tokens", 1) };
  trainer = new TextTrainer(text, tokenizer, backend, { ...opts, warmup: Math.min(20, Math.floor(opts.steps / 10)), evalEvery: Math.max(5, Math.round(opts.steps / 10)) });
  const t = trainer;
  current = { model: t.model, tokenizer, name: "the model trained here" };
  say("model-info", describe("trained here", t.model, tokenizer, `${t.trainTokens.length.toLocaleString()} training tokens`));
  $<HTMLButtonElement>("download").disabled = true;
  stopRequested = false;
  const records: MetricRecord[] = [];
  const losses: number[] = [];
  const chart = echarts.init($("chart"));
  let drawn = 0;
  const draw = () => {
    chart.setOption(buildOption([{ name: "this page", metrics: records, status: { state: "running", step: t.step, max_steps: opts.steps } }], { full: true }), true);
    drawn = performance.now();
  };
  document.body.dataset.training = "running";
  $("samples").textContent = "";
  try {
  for await (const ev of t.run(() => stopRequested)) {
    if (ev.kind === "step") {
      losses.push(ev.loss);
      document.body.dataset.losses = JSON.stringify(losses);
      records.push({ step: ev.step, train_loss: ev.loss, lr: ev.lr, norm: ev.norm, ms: ev.ms, tokens_per_s: ev.tokensPerS });
      say("train-status", `step ${ev.step}/${opts.steps} | loss ${ev.loss.toFixed(4)} | lr ${ev.lr.toExponential(2)} | norm ${ev.norm.toFixed(3)} | ` +
        `${ev.ms.toFixed(0)} ms | ${ev.tokensPerS.toFixed(0)} tok/s`);
    } else if (ev.kind === "val") {
      records.push({ step: ev.step, val_loss: ev.loss });
    } else {
      records.push({ step: ev.step, sample: ev.text });
      $("samples").textContent = `step ${ev.step}:\n${ev.text}\n\n` + $("samples").textContent;
    }
    // the chart at most 4 times a second; every step yields to the page so it stays responsive
    if (performance.now() - drawn > 250) draw();
  }
  } catch (e) {
    document.body.dataset.training = "failed";
    throw e;
  }
  draw();
  document.body.dataset.training = stopRequested ? "stopped" : "done";
  $<HTMLButtonElement>("download").disabled = false;
}

async function download(): Promise<void> {
  if (!trainer) throw new Error("train a model first");
  const parts = await trainer.checkpoint();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob(parts as BlobPart[], { type: "application/octet-stream" }));
  a.download = `gpt2ts-web-step${trainer.step}.gpt2ts`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
}

// ---------------------------------------------------------------- wiring
async function readFiles(list: FileList): Promise<NamedBytes[]> {
  return Promise.all([...list].map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
}

async function main(): Promise<void> {
  backend = await openBackend();
  input("model-files").addEventListener("change", action(async () => { const f = input("model-files").files; if (f?.length) await useModel(await readFiles(f)); }));
  $("load-url").addEventListener("click", action(async () => {
    const url = new URL(input("model-url").value.trim(), base);
    // a model from another site only when asked for by hand (the page's own link, ?model=, stays on this server)
    if (url.origin !== location.origin && !loadingByHand) throw new Error(`?model= names ${url.origin}: the page opens models from its own server only that way; paste the URL and press Load`);
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    await useModel([{ name: url.pathname.split("/").pop() || url.href, bytes: new Uint8Array(await r.arrayBuffer()) }]);
  }));
  $("generate").addEventListener("click", action(generateText));
  $("train").addEventListener("click", action(train));
  $("stop").addEventListener("click", () => { stopRequested = true; });
  $("download").addEventListener("click", action(download));
  const area = $<HTMLTextAreaElement>("train-text");
  area.addEventListener("dragover", (e) => e.preventDefault());
  area.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = e.dataTransfer?.files[0];
    if (f) f.text().then((t) => { area.value = t; }, fail);
  });
  // gpt2 web --model FILE opens the page with ?model=models/NAME
  const given = new URLSearchParams(location.search).get("model");
  if (given) {
    input("model-url").value = given;
    loadingByHand = false;
    $("load-url").click();
    loadingByHand = true;
  }
  document.body.dataset.ready = "1";
}

main().catch(fail);
