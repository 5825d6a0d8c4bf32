// Shared CLI plumbing: strict flag parsing, backend selection from flags/env, one-line errors.

import { randomInt } from "node:crypto";
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { Backend } from "../kernels/backend.js";
import { resolveModel, type HubOptions } from "../io/hub.js";
import { BACKENDS, openBackend } from "../kernels/select.js";
import { loadModel, modelFile } from "../io/load.js";
import type { GPT2 } from "../model/gpt2.js";
import { cacheDir, env } from "../util/env.js";

export class UsageError extends Error {
  override name = "UsageError";
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** A flag: node:util parseArgs' option, with what --help says of it (parseArgs ignores the extra fields). */
export interface Flag {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  /** the value's name in --help (N, PATH, ...) */
  arg?: string;
  help: string;
  /** the effective default, as --help shows it */
  shown?: string;
}

/** What `gpt2 COMMAND --help` prints: a usage line, what the command does, every flag with its meaning and default. */
export interface CommandHelp<F extends Record<string, Flag> = Record<string, Flag>> {
  usage: string;
  about: string;
  flags: F;
  /** a closing paragraph (formats, examples) */
  more?: string;
}

/** A command's help, its flags' literal types kept (so parse() types a boolean flag's value as a boolean). */
export function commandHelp<const F extends Record<string, Flag>>(h: CommandHelp<F>): CommandHelp<F> { return h; }

export function formatHelp(h: CommandHelp): string {
  const heads = Object.entries(h.flags).map(([name, f]) => `${f.short ? `-${f.short}, ` : "    "}--${name}${f.type === "string" ? ` ${f.arg ?? "VALUE"}` : ""}`);
  // the help column starts past the longest flag (at least at 30)
  const width = Math.max(30, ...heads.map((x) => x.length));
  const rows = Object.entries(h.flags).map(([, f], i) => {
    const head = heads[i];
    return `  ${head.padEnd(width)} ${f.help}${f.shown === "required" ? " (required)" : f.shown !== undefined ? ` (default ${f.shown})` : ""}`;
  });
  return `usage: ${h.usage}\n\n${h.about}\n${rows.length ? `\nflags:\n${rows.join("\n")}\n` : ""}${h.more ? `\n${h.more}\n` : ""}`;
}

export const BACKEND_OPTIONS = {
  backend: { type: "string", arg: "js|native|cuda|webgpu", help: "the kernels (env GPT2_BACKEND)", shown: "cuda when a GPU is found, else native when built, else js" },
  threads: { type: "string", arg: "N", help: "CPU threads (env GPT2_THREADS)", shown: "all cores" },
  dtype: { type: "string", arg: "fp32|bf16", help: "the precision (bf16: bf16 matmul inputs with fp32 accumulation and activations stored in bf16 on the native backend; bf16 products on cuda; bf16 activations with fp32 products on webgpu)", shown: "fp32" },
} as const satisfies Record<string, Flag>;

/** the backend flags of the commands that generate (sample, chat, serve): --dtype is the weights' storage there */
export const INFERENCE_OPTIONS = {
  backend: BACKEND_OPTIONS.backend, threads: BACKEND_OPTIONS.threads,
  dtype: {
    type: "string", arg: "fp32|bf16", shown: "fp32",
    help: "bf16: the matmul weights kept in bf16, half the bytes read per generated token (float32 arithmetic on a CPU; bf16 products on CUDA)",
  },
} as const satisfies Record<string, Flag>;

/** A model to generate with, as INFERENCE_OPTIONS ask: loaded in float32, its matmul weights then copied to bf16. */
export async function inferenceModel(file: string, values: { backend?: string; threads?: string; dtype?: string }, expect: "language-model" | "reward-model"): Promise<GPT2> {
  const dtype = values.dtype ?? "fp32";
  if (dtype !== "fp32" && dtype !== "bf16") throw new UsageError(`--dtype expects fp32 or bf16, got "${dtype}"`);
  const host = await backendFromFlags({ backend: values.backend, threads: values.threads });
  // on CUDA, bf16 weights go with the bf16 backend (bf16 products): cuBLAS multiplies operands of one storage, so the
  // float32 activations of generation are rounded to bf16 for each product anyway
  const backend = dtype === "bf16" && host.name === "cuda" ? await backendFromFlags(values) : host;
  const model = await loadModel(file, backend, expect);
  if (dtype === "bf16") model.useBf16Weights();
  return model;
}

/** the sampling flags of sample, chat and serve's defaults */
export const SAMPLING_OPTIONS = {
  "max-new-tokens": { type: "string", arg: "N", help: "tokens to generate at most" },
  temperature: { type: "string", arg: "T", help: "sampling temperature; 0 = greedy" },
  "top-k": { type: "string", arg: "K", help: "sample among the K most likely tokens (0 = all)", shown: "0" },
  "top-p": { type: "string", arg: "P", help: "nucleus sampling: the smallest set of tokens whose probability reaches P", shown: "1" },
  seed: { type: "string", arg: "S", help: "random seed", shown: "random" },
} as const satisfies Record<string, Flag>;

export interface Sampling { maxTokens: number; temperature: number; topK: number; topP: number }

export function samplingFromFlags(values: Record<string, unknown>, defaults: { maxTokens: number; temperature: number }): Sampling {
  const v = values as Record<string, string | undefined>;
  return {
    maxTokens: num(v["max-new-tokens"], "max-new-tokens", defaults.maxTokens, { int: true, min: 1 }),
    temperature: num(v.temperature, "temperature", defaults.temperature, { min: 0 }),
    topK: num(v["top-k"], "top-k", 0, { int: true, min: 0 }),
    topP: num(v["top-p"], "top-p", 1.0, { min: 0, max: 1 }),
  };
}

/** The hub settings from the environment (HF_ENDPOINT, HF_TOKEN as Hugging Face's own tools read them; GPT2_CACHE). */
export function hubOptions(): HubOptions {
  const tty = process.stderr.isTTY;
  let lastShown = -1;
  return {
    endpoint: env("HF_ENDPOINT"), token: env("HF_TOKEN"), cache: cacheDir("models"),
    say: (l) => process.stderr.write(`${l}\n`),
    // a progress bar on a terminal; a line per 10 % in a log
    onProgress: (file, done, total) => {
      const pct = total > 0 ? Math.floor((100 * done) / total) : 0;
      if (tty) process.stderr.write(`\r  ${file}: ${(done / 2 ** 20).toFixed(1)} / ${(total / 2 ** 20).toFixed(1)} MiB (${pct}%)${done >= total ? "\n" : ""}`);
      else if (Math.floor(pct / 10) !== lastShown) { lastShown = Math.floor(pct / 10); process.stderr.write(`  ${file}: ${pct}%\n`); }
    },
  };
}

/** A --model / -e argument as a local path: model names (gpt2, gpt2-medium, ..., ORG/REPO) are pulled on first use. */
export async function modelPath(arg: string, noPull?: string): Promise<string> {
  // a run folder (gpt2 train -o DIR) stands for its newest checkpoint, as nanoGPT's out_dir does; its config.json
  // is the run's, not a Hugging Face model's
  const file = modelFile(arg);
  if (file !== arg) {
    process.stderr.write(`${arg}: its newest checkpoint, ${file}\n`);
    return file;
  }
  return resolveModel(arg, { ...hubOptions(), noPull });
}

/**
 * Progress of a long job on stderr: on a terminal one line rewritten in place with the ETA; in a log (stderr not a
 * terminal) a line at every tenth of the way, never a carriage-return soup.
 */
export function progress(label: string): { update(done: number, total: number, extra?: string): void; end(): void } {
  const tty = process.stderr.isTTY, t0 = performance.now();
  let shown = -1;
  return {
    update(done, total, extra = "") {
      const s = (performance.now() - t0) / 1000, eta = done > 0 ? (s * (total - done)) / done : NaN;
      const line = `${label}: ${done}/${total}${extra ? `, ${extra}` : ""}, ${s.toFixed(0)} s, ETA ${Number.isFinite(eta) ? `${eta.toFixed(0)} s` : "?"}`;
      if (tty) process.stderr.write(`\r${line}   `);
      else if (Math.floor((10 * done) / total) > shown) { shown = Math.floor((10 * done) / total); process.stderr.write(`${line}\n`); }
    },
    end() { if (tty) process.stderr.write("\n"); },
  };
}

/** a seed for runs that were not given one (the library itself never draws from Math.random) */
export function randomSeed(): number { return randomInt(2 ** 31); }

export type Values<O extends Options> = { [K in keyof O]?: O[K]["type"] extends "boolean" ? boolean : string };

/**
 * A negative number after a flag that takes a value is that value (`-x -1`, `--temperature -0.5`); node's parser would
 * take it for a flag. Such pairs become `--name=-1`.
 */
function joinNegativeValues(argv: string[], options: Options): string[] {
  const byShort = new Map(Object.entries(options).filter(([, o]) => o.short).map(([name, o]) => [o.short!, name]));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], next = argv[i + 1];
    const name = a.startsWith("--") ? a.slice(2) : /^-[^-]$/.test(a) ? byShort.get(a[1]) : undefined;
    if (name && options[name]?.type === "string" && next !== undefined && /^-(\d|\.\d)/.test(next)) { out.push(`--${name}=${next}`); i++; } else out.push(a);
  }
  return out;
}

/** node:util parseArgs with unknown flags and stray positionals turned into UsageErrors. */
export function parse<O extends Options>(argv: string[], options: O, positionals = 0): { values: Values<O>; positionals: string[] } {
  try {
    const r = parseArgs({ args: joinNegativeValues(argv, options), options, strict: true, allowPositionals: positionals > 0 });
    if (r.positionals.length > positionals) throw new UsageError(`unexpected argument "${r.positionals[positionals]}"`);
    return r as { values: Values<O>; positionals: string[] };
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError((e as Error).message.split("\n")[0].replace(/^Unknown option/, "unknown flag"));
  }
}

export function num(v: string | undefined, name: string, def: number, opts: { int?: boolean; min?: number; max?: number } = {}): number {
  if (v === undefined) return def;
  const x = Number(v);
  if (!Number.isFinite(x) || (opts.int && !Number.isInteger(x))) throw new UsageError(`--${name} expects ${opts.int ? "an integer" : "a number"}, got "${v}"`);
  if (opts.min !== undefined && x < opts.min) throw new UsageError(`--${name} must be >= ${opts.min}, got ${x}`);
  if (opts.max !== undefined && x > opts.max) throw new UsageError(`--${name} must be <= ${opts.max}, got ${x}`);
  return x;
}

/** The backend the flags ask for; `device` is the GPU ordinal a CUDA backend takes (a rank's place on its node). */
export async function backendFromFlags(values: { backend?: string | boolean; threads?: string | boolean; dtype?: string | boolean }, device = 0): Promise<Backend> {
  const name = (values.backend as string | undefined) ?? env("GPT2_BACKEND");
  const threadsRaw = (values.threads as string | undefined) ?? env("GPT2_THREADS");
  const threads = threadsRaw === undefined ? undefined : num(threadsRaw, "threads", 1, { int: true, min: 1 });
  const dtype = (values.dtype as string | undefined) ?? "fp32";
  if (dtype !== "fp32" && dtype !== "bf16") throw new UsageError(`--dtype expects fp32 or bf16, got "${dtype}"`);
  if (name !== undefined && !(BACKENDS as readonly string[]).includes(name)) throw new UsageError(`--backend expects ${BACKENDS.join(", ")}, got "${name}"`);
  return openBackend({ name, threads, dtype, device, warn: (m) => process.stderr.write(m + "\n") });
}

/** Reads all of stdin as text. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Parses ids given as a JSON array or separated by commas/whitespace. */
export function parseIds(text: string, what: string): number[] {
  const t = text.trim();
  let ids: unknown;
  if (t.startsWith("[")) {
    try { ids = JSON.parse(t); } catch { throw new UsageError(`${what}: not a valid JSON array`); }
  } else ids = t === "" ? [] : t.split(/[\s,]+/).map(Number);
  if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x) && x >= 0)) throw new UsageError(`${what}: expected non-negative integer token ids`);
  return ids as number[];
}

/**
 * Ctrl-C, and the signals schedulers stop jobs with (SLURM and Kubernetes send SIGTERM; a closed terminal SIGHUP;
 * SIGUSR1 for MPI jobs and SLURM's advance warning), set `signal.stop`: the run finishes its step, writes a checkpoint
 * and exits cleanly. A second signal quits at once.
 * Returns a function that removes the handlers.
 */
export function stopOnSignals(signal: { stop: boolean }): () => void {
  // SIGUSR1 too: mpirun forwards it to every rank at once (a SIGTERM it turns into SIGTERM then SIGKILL a second
  // later), and it is what SLURM's --signal=B:USR1@SECONDS sends before a job's time runs out
  const codes = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129, SIGUSR1: 138 } as const;
  // after a hang-up the terminal is gone and writing to it fails: that must not end the run before its checkpoint
  const ignore = () => {};
  for (const stream of [process.stdout, process.stderr]) stream.on("error", ignore);
  const handlers = (Object.keys(codes) as (keyof typeof codes)[]).map((sig) => {
    const name = sig === "SIGINT" ? "Ctrl-C" : sig;
    const h = () => {
      if (signal.stop) process.exit(codes[sig]);
      signal.stop = true;
      process.stderr.write(`\n${name}: finishing this step and writing a checkpoint (${name} again to quit now)\n`);
    };
    process.on(sig, h);
    return [sig, h] as const;
  });
  return () => {
    for (const [sig, h] of handlers) process.off(sig, h);
    // mpirun forwards SIGUSR1 to every rank at once, but a rank may stop first, by the others' agreement: its own
    // copy can then arrive while MPI finalizes, and the default action would kill it (a failed job after a clean
    // checkpoint). The process is ending: it is ignored from here on.
    if (process.listenerCount("SIGUSR1") === 0) process.on("SIGUSR1", ignore);
    for (const stream of [process.stdout, process.stderr]) stream.off("error", ignore);
  };
}
