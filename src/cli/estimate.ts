// gpt2 estimate --model d48 --tokens 33.6e9 [--gpu h100|a100|h200|cpu] ...: flags in `help`.

import * as fs from "node:fs";
import { makeConfig, PRESETS } from "../model/config.js";
import { estimate, GPUS } from "../train/estimate.js";
import { benchCachePath } from "./bench.js";
import { commandHelp, num, parse, UsageError } from "./common.js";

export const help = commandHelp({
  usage: "gpt2 estimate --model PRESET --tokens N [--gpu h100|a100|h200|cpu] [--gpus 8] [--mfu M] [--price P]",
  about: "Parameters, FLOPs (6N + 12LCT per token), memory per device at each recompute level, and the time and cost\n" +
    "of a training run, on GPUs at an assumed MFU, or on this CPU at the speed \"gpt2 bench\" measured.",
  flags: {
    model: { type: "string", arg: "PRESET", help: `the shape: ${Object.keys(PRESETS).join(", ")}`, shown: "d12" },
    tokens: { type: "string", arg: "N", help: "training tokens (e.g. 10e9); required" },
    gpu: { type: "string", arg: "KIND", help: `${Object.keys(GPUS).join(", ")}, or cpu (this machine, from the bench cache)`, shown: "h100" },
    gpus: { type: "string", arg: "N", help: "GPUs in data parallel", shown: "8" },
    mfu: { type: "string", arg: "M", help: "model FLOPs utilisation assumed on GPUs, 0..1", shown: "the GPU's typical llm.c value" },
    price: { type: "string", arg: "USD", help: "per GPU-hour (per hour for cpu)", shown: "the GPU's typical cloud price; 0 for cpu" },
    batch: { type: "string", arg: "B", help: "rows per device, for the memory estimate", shown: "16 (4 for cpu)" },
    seq: { type: "string", arg: "T", help: "sequence length", shown: "1024" },
    json: { type: "boolean", help: "one JSON object on stdout" },
  },
});

export async function estimateCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, help.flags);
  const preset = values.model ?? "d12";
  if (!PRESETS[preset]) throw new UsageError(`--model expects a preset (${Object.keys(PRESETS).join(", ")}), got "${preset}"`);
  if (!values.tokens) throw new UsageError("--tokens N is required (e.g. 10e9)");
  const tokens = num(values.tokens, "tokens", 0, { min: 1 });
  const seq = num(values.seq, "seq", 1024, { int: true, min: 1 });
  const config = makeConfig(preset, { blockSize: Math.max(1024, seq) });
  const kind = values.gpu ?? "h100";
  let throughput: Parameters<typeof estimate>[0]["throughput"], price: number, gpus: number, what: string;
  if (kind === "cpu") {
    const file = benchCachePath();
    if (!fs.existsSync(file)) throw new UsageError(`no measured CPU throughput: run "gpt2 bench --model ${preset}" first (it writes ${file})`);
    const b = JSON.parse(fs.readFileSync(file, "utf8"));
    if (b.mode !== "train") throw new UsageError(`${file} holds a generation benchmark; run "gpt2 bench --model ${preset}" (training)`);
    // measured tokens/s scaled by FLOPs per token if the benchmark used another model
    const { flopsPerToken } = await import("../train/flops.js");
    const scale = flopsPerToken(makeConfig(b.model), b.seq) / flopsPerToken(config, seq);
    throughput = { kind: "cpu", tokensPerS: b.tokens_per_s * scale };
    price = num(values.price, "price", 0, { min: 0 });
    gpus = 1;
    what = `this CPU (${b.tokens_per_s.toFixed(1)} tokens/s measured on ${b.model} by gpt2 bench, ${b.date})`;
  } else {
    const g = GPUS[kind];
    if (!g) throw new UsageError(`--gpu expects ${Object.keys(GPUS).join(", ")} or cpu, got "${kind}"`);
    gpus = num(values.gpus, "gpus", 8, { int: true, min: 1 });
    throughput = { kind: "gpu", peakFlops: g.peakFlops, mfu: num(values.mfu, "mfu", g.mfu, { min: 0.01, max: 1 }) };
    price = num(values.price, "price", g.price, { min: 0 });
    what = `${gpus} x ${g.name} at ${(100 * throughput.mfu).toFixed(0)}% MFU of ${(g.peakFlops / 1e12).toFixed(0)} TFLOP/s bf16`;
  }
  const batch = num(values.batch, "batch", kind === "cpu" ? 4 : 16, { int: true, min: 1 });
  const e = estimate({ config, tokens, batch, seq, gpus, throughput, pricePerHour: price });
  if (values.json) { process.stdout.write(JSON.stringify({ model: preset, gpu: kind, gpus, ...e }) + "\n"); return; }
  const f = (x: number) => x.toExponential(3);
  const p = (s: string, m: { params_gib: number; grads_gib: number; adamw_gib: number; activations_gib: number; total_gib: number }) =>
    `  ${s.padEnd(20)} params ${m.params_gib.toFixed(2)} + grads ${m.grads_gib.toFixed(2)} + AdamW ${m.adamw_gib.toFixed(2)} + activations ${m.activations_gib.toFixed(2)} = ${m.total_gib.toFixed(2)} GiB`;
  process.stdout.write([
    `${preset}: ${(e.params / 1e6).toFixed(1)}M parameters; ${f(e.flops_per_token)} FLOPs/token (6N + 12*L*C*T at T=${seq})`,
    `${tokens.toExponential(2)} tokens: ${f(e.total_flops)} FLOPs on ${what}`,
    `time ${e.hours < 48 ? e.hours.toFixed(2) + " h" : (e.hours / 24).toFixed(1) + " days"}, cost $${e.cost_usd.toFixed(0)}${price ? ` at $${price}/${kind === "cpu" ? "hour" : "GPU-hour"}` : ""}`,
    `memory per device at B=${batch}, T=${seq}:`,
    p("no recompute", e.memory.recompute0), p("recompute GELU (-r 1)", e.memory.recompute1), p("recompute +LN (-r 2)", e.memory.recompute2),
    ...(gpus > 1 ? [p("-r 1 + ZeRO-1", e.memory.recompute1_zero1)] : []),
  ].join("\n") + "\n");
}
