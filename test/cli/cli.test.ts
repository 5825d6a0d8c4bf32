import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { parseTrainArgs } from "../../src/cli/train.js";
import { fitSteps } from "../../src/cli/demo.js";
import { loadNativeAddon } from "../../src/kernels/native.js";
import { CLI, fixture, readJson, tmpDir } from "../helpers.js";

const gpt2 = (args: string[], input?: string) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", input });

test("tokenize / detokenize: GPT-2 ids as published by OpenAI's tiktoken tests, <|endoftext|> only when allowed", () => {
  assert.equal(gpt2(["tokenize", "--json"], "hello world").stdout.trim(), "[31373,995]");
  assert.equal(gpt2(["tokenize", "--json"], "Hello, I'm a language model,").stdout.trim(), "[15496,11,314,1101,257,3303,2746,11]");
  assert.equal(gpt2(["tokenize", "--json"], "<|endoftext|>").stdout.trim(), "[27,91,437,1659,5239,91,29]");
  assert.equal(gpt2(["tokenize", "--json", "--allow-special"], "<|endoftext|>").stdout.trim(), "[50256]");
  assert.equal(gpt2(["tokenize"], "hello world").stdout.trim(), "31373 995");
  assert.equal(gpt2(["detokenize"], "[31373, 995]").stdout, "hello world");
  assert.equal(gpt2(["detokenize"], "31373,995").stdout, "hello world");
  const text = "Émoji 👋🏽, 中文, e\u0301, tabs\t\tand   spaces, don't 12345\n";
  const ids = gpt2(["tokenize", "--json"], text).stdout;
  assert.equal(gpt2(["detokenize"], ids).stdout, text);
  const bad = gpt2(["detokenize"], "[1, 99999]");
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /token id 99999 is outside GPT-2's vocabulary with the chat tokens \[0, 50261\)/);
});

test("sample: greedy --json equals PyTorch's greedy continuation; streams text; seeds reproduce", () => {
  const exp = readJson(fixture("ref-gpt2vocab", "greedy.json"));
  const r = gpt2(["sample", "--model", fixture("ref-gpt2vocab"), "--prompt-ids", exp.prompt.join(","), "--temperature", "0",
    "--max-new-tokens", String(exp.max_new_tokens), "--json", "--no-stop", "--backend", "js"]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).ids, exp.new_tokens);
  const args = ["sample", "--model", fixture("ref-gpt2vocab"), "--prompt", "Hello", "--max-new-tokens", "8", "--seed", "4", "--num-samples", "2", "--json"];
  const a = gpt2(args), b = gpt2(args);
  assert.equal(a.stdout, b.stdout);
  const lines = a.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  assert.ok(lines.every((l) => Array.isArray(l.ids) && typeof l.text === "string"));
  const plain = gpt2(["sample", "--model", fixture("ref-gpt2vocab"), "--prompt", "Hello", "--max-new-tokens", "4", "--seed", "4"]);
  assert.ok(plain.stdout.startsWith("Hello"));
});

const native = loadNativeAddon();

for (const backend of ["js", "native"]) {
  test(`eval loss (${backend}): equals PyTorch's float64 loss within 1e-5 relative`, { skip: backend === "native" && !native.addon ? `native backend unavailable (${native.error})` : undefined }, () => {
    const exp = readJson(fixture("ref-small", "expected.json"));
    const { tokens } = readJson(fixture("ref-small", "tokens.json"));
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, "t.json"), JSON.stringify(tokens));
    const r = gpt2(["eval", "loss", "--model", fixture("ref-small"), "--tokens", path.join(dir, "t.json"), "--json", "--backend", backend]);
    assert.equal(r.status, 0, r.stderr);
    const { loss } = JSON.parse(r.stdout);
    assert.ok(Math.abs(loss - exp.loss) / exp.loss < 1e-5, `${backend}: ${loss} vs ${exp.loss}`);
  });
}

test("convert: HF -> llm.c -> gpt2ts -> HF keeps every weight bit-identical", () => {
  const dir = tmpDir();
  assert.equal(gpt2(["convert", fixture("ref-small"), path.join(dir, "m.bin")]).status, 0);
  assert.equal(gpt2(["convert", path.join(dir, "m.bin"), path.join(dir, "m.gpt2ts")]).status, 0);
  assert.equal(gpt2(["convert", path.join(dir, "m.gpt2ts"), path.join(dir, "hf")]).status, 0);
  assert.ok(fs.readFileSync(path.join(dir, "hf", "model.safetensors")).equals(fs.readFileSync(fixture("ref-small", "model.safetensors"))));
});

test("--help: the command list, and each command's flags with effective defaults; --version; bare -h", () => {
  const all = gpt2(["--help"]);
  assert.equal(all.status, 0);
  assert.match(all.stdout, /gpt2 sample +KV-cached sampling/);
  const commands = [...all.stdout.matchAll(/^  gpt2 (\S+) /gm)].map((m) => m[1]);
  assert.ok(commands.length >= 19, all.stdout);
  const subs: Record<string, string[]> = { rm: ["train", "score"], eval: ["loss", "hellaswag", "chat"], demo: ["", "assistant"] };
  for (const c of commands) {
    for (const sub of subs[c] ?? [""]) {
      const r = gpt2([c, ...(sub ? [sub] : []), "--help"]);
      assert.equal(r.status, 0, `${c} ${sub}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^usage: gpt2 ${c}`), `${c} ${sub}`);
      // placeholders are not defaults: every listed default is what the command uses
      assert.doesNotMatch(r.stdout, /\(default (-1|"")\)/, `${c} ${sub}`);
    }
  }
  const sample = gpt2(["sample", "--help"]);
  assert.match(sample.stdout, /^usage: gpt2 sample --model PATH\|NAME \(--prompt TEXT \| --prompt-file FILE/);
  assert.match(sample.stdout, /--top-k K +sample among the K most likely tokens \(0 = all\) \(default 0\)/);
  const train = gpt2(["train", "--help"]);
  assert.match(train.stdout, /-x, --max-steps N +optimizer steps \(default one epoch of the training data\)/);
  assert.match(train.stdout, /-l, --learning-rate N +peak learning rate \(default 3e-4 from scratch/);
  assert.match(train.stdout, /--skip-loss-z N .*\(llm.c's -sl\)/);
  assert.match(train.stdout, /-pi mpi\|tcp\|fs/);
  const sft = gpt2(["sft", "--help"]);
  assert.match(sft.stdout, /--data VALUE +training data/);
  assert.match(sft.stdout, /--too-long VALUE +truncate or skip rows longer than -t \(default truncate\)/);
  // -h alone is help; in train, -h N is llm.c's HellaSwag flag
  assert.equal(gpt2(["sample", "-h"]).stdout, sample.stdout);
  assert.equal(gpt2(["train", "-h"]).stdout, train.stdout);
  assert.equal(gpt2(["train", "-h", "-b", "4"]).stdout, train.stdout);
  const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(CLI), "..", "..", "..", "package.json"), "utf8"));
  assert.equal(gpt2(["--version"]).stdout, `gpt2ts ${pkg.version}\n`);
});

test("flags: negative values parse (-x -1, --temperature -1 refused with its reason); llm.c's -sl -sg -nm -w -ge -f", () => {
  const t = gpt2(["sample", "--model", fixture("ref-small"), "--prompt", "x", "--temperature", "-1"]);
  assert.equal(t.status, 2);
  assert.match(t.stderr, /^gpt2: --temperature must be >= 0, got -1/);
  const cfg = parseTrainArgs(["-i", "a.bin", "-x", "-1", "-u", "-1", "-sl", "3.5", "-sg", "4", "-nm", "1000", "-h", "1"].map((a) => a), "train");
  assert.deepEqual([cfg.maxSteps, cfg.warmup, cfg.skipLossZ, cfg.skipNormZ, cfg.majorEvery, cfg.hellaswag], [-1, -1, 3.5, 4, 1000, 1]);
  const w0 = gpt2(["train", "-i", fixture("tiny_shard.bin"), "-w", "0"]);
  assert.equal(w0.status, 2);
  assert.match(w0.stderr, /^gpt2: -w 0 \(no fp32 master weights\) is not offered: .*--dtype bf16/);
  // accepted ones say what they mean, then the run goes on (here it stops at the missing data file)
  const ge = gpt2(["train", "-i", "/no/such/*.bin", "-ge", "1", "-f", "0", "-w", "1"]);
  assert.match(ge.stderr, /note: -ge 1: GELU fusion .*ignored/);
  assert.match(ge.stderr, /note: -f 0: fp32 matmuls are full fp32/);
  assert.match(ge.stderr, /note: -w 1: the weights are kept in fp32/);
  assert.match(ge.stderr, /\/no\/such\/\*\.bin/);
});

test("sample: the prompt from --prompt-file or stdin, the same as --prompt", () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, "p.txt"), "Hello");
  const args = ["--model", fixture("ref-gpt2vocab"), "--max-new-tokens", "4", "--temperature", "0", "--json", "--no-stop", "--backend", "js"];
  const viaArg = gpt2(["sample", "--prompt", "Hello", ...args]);
  const viaFile = gpt2(["sample", "--prompt-file", path.join(dir, "p.txt"), ...args]);
  const viaStdin = gpt2(["sample", ...args], "Hello");
  assert.equal(viaArg.status, 0, viaArg.stderr);
  assert.equal(viaFile.stdout, viaArg.stdout);
  assert.equal(viaStdin.stdout, viaArg.stdout);
  const missing = gpt2(["sample", "--prompt-file", path.join(dir, "none.txt"), ...args]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /none\.txt/);
});

test("errors: unknown command, unknown flag, missing file, malformed checkpoint: one line, non-zero exit", () => {
  const cases: [string[], RegExp, number][] = [
    [["frobnicate"], /^gpt2: unknown command "frobnicate"/, 2],
    [["sample", "--model", fixture("ref-small"), "--prompt", "x", "--tempreature", "1"], /^gpt2: unknown flag '--tempreature'/, 2],
    [["sample", "--model", "/no/such/model", "--prompt", "x"], /^gpt2: model \/no\/such\/model does not exist/, 1],
    [["sample", "--model", fixture("tiny_shard.bin"), "--prompt", "x"], /^gpt2: .*tiny_shard\.bin: unknown model format \(magic 20240520/, 1],
    [["eval", "loss", "--model", fixture("ref-small")], /^gpt2: --tokens FILE is required/, 2],
    [["sample", "--model", fixture("ref-small"), "--prompt", "x", "--top-p", "2"], /^gpt2: --top-p must be <= 1/, 2],
    [["train", "-i", fixture("tiny_shard.bin"), "-z", "2"], /^gpt2: flags: zero must be 0 or 1 \(ZeRO-1\), got 2/, 1],
    [["train", "-i", fixture("tiny_shard.bin"), "--backend", "native", "-pi", "tcp", "-pn", "2", "-pr", "0", "-ps", "127.0.0.1"],
      /^gpt2: -pi tcp starts NCCL without MPI, which needs --backend cuda/, 2],
    [["train", "-i", fixture("tiny_shard.bin"), "-pi", "tcp", "-pn", "2"], /^gpt2: -pi tcp needs -pn \(number of processes\) and -pr/, 2],
    [["train", "-i", fixture("tiny_shard.bin"), "-pi", "fs", "-pn", "2", "-pr", "1"], /^gpt2: -pi fs needs -pf DIR/, 2],
    [["train", "-i", fixture("tiny_shard.bin"), "-pn", "2"], /^gpt2: -pn belongs to -pi tcp\|fs/, 2],
  ];
  for (const [args, re, code] of cases) {
    const r = gpt2(args);
    assert.equal(r.status, code, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});

test("demo step fitting: 85 % of the minutes over the step time, in tens, floor 20 (said), cap 20,000", () => {
  assert.deepEqual(fitSteps(3.5, 160), { steps: 1120, floor: false }); // 3.5 min x 0.85 / 160 ms = 1115.6 -> 1120
  assert.deepEqual(fitSteps(1, 600), { steps: 90, floor: false }); // 85 -> 90
  assert.deepEqual(fitSteps(0.05, 600), { steps: 20, floor: true }); // 4.25 -> 0: the floor
  assert.deepEqual(fitSteps(60, 1), { steps: 20_000, floor: false });
  const both = gpt2(["demo", "--minutes", "1", "--steps", "5"]);
  assert.equal(both.status, 2);
  assert.match(both.stderr, /give --minutes or --steps, not both/);
});

test("gpt2 demo (npm start): the built-in corpus prepared, steps fitted to --minutes from a timed step, val loss reached, a final sample and a sample command that runs", { skip: loadNativeAddon().addon ? undefined : "native addon not built" }, () => {
  const out = path.join(tmpDir(), "demo");
  // the step count is what fits in --minutes at the step time measured on this machine (fitSteps, tested below)
  const r = gpt2(["demo", "--minutes", "0.15", "--out", out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^data: [\d,]+ GPT-2 tokens from 233 addresses/m);
  const fit = /^a step takes (\d+) ms here: (?:(\d+) steps fit in about 0\.15 minutes|fewer than 20 fit)/m.exec(r.stdout);
  assert.ok(fit, r.stdout);
  const steps = fit[2] ? Number(fit[2]) : 20;
  assert.equal(steps, fitSteps(0.15, Number(fit[1])).steps);
  assert.match(r.stdout, new RegExp(`^val loss [\\d.]+ at step ${steps}$`, "m"));
  const done = /^done: (\d+) steps in [\d.]+ min; train loss ([\d.]+), val loss ([\d.]+)$/m.exec(r.stdout);
  assert.ok(done, r.stdout);
  assert.equal(Number(done[1]), steps);
  assert.ok(Number(done[3]) < 10.8, `val loss ${done[3]} did not fall from ln(50257) = 10.82`);
  assert.match(r.stdout, /^Fellow citizens\S*/m);
  const cmd = /^sample from it: {2}npx gpt2 (sample .*)$/m.exec(r.stdout)![1];
  const args = cmd.match(/"[^"]*"|\S+/g)!.map((a) => a.replace(/^"|"$/g, ""));
  const s = gpt2([...args.slice(0, args.indexOf("--max-new-tokens")), "--max-new-tokens", "5", ...args.slice(args.indexOf("--max-new-tokens") + 2)]);
  assert.equal(s.status, 0, s.stderr);
  assert.match(s.stdout, /^Fellow citizens/);
  // the run folder stands for its newest checkpoint (its config.json is the run's, not a Hugging Face model's)
  const byDir = gpt2(["sample", "--model", out, "--prompt", "The", "--max-new-tokens", "3"]);
  assert.equal(byDir.status, 0, byDir.stderr);
  assert.match(byDir.stdout, /^The/);
  const empty = path.join(tmpDir(), "run");
  fs.mkdirSync(empty);
  fs.writeFileSync(path.join(empty, "config.json"), "{}");
  const none = gpt2(["sample", "--model", empty]);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /^gpt2: .*run is a directory without model\.safetensors \(expected a Hugging Face GPT-2 directory, or a gpt2 train -o folder with checkpoints\)\n$/);
  // only the final checkpoint: the demo leaves one file behind, not one per validation
  assert.deepEqual(fs.readdirSync(out).filter((f) => f.endsWith(".gpt2ts")), [`checkpoint_${String(steps).padStart(8, "0")}.gpt2ts`]);
});

test("environment variables: read in one place (util/env.ts), each in its table with a meaning, listed by gpt2 --help", async () => {
  const { ENV_VARS } = await import("../../src/util/env.js");
  const root = path.resolve(path.dirname(CLI), "../../..");
  const files = (dir: string, ext: RegExp): string[] => fs.readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name), ext) : ext.test(e.name) ? [path.join(dir, e.name)] : []));
  const used = new Set<string>();
  for (const f of [...files(path.join(root, "src"), /\.ts$/), ...files(path.join(root, "native"), /\.(cc|h)$/)]) {
    const text = fs.readFileSync(f, "utf8");
    // names read from the environment: process.env.X / process.env["X"] (TypeScript), getenv("X") (native)
    for (const m of text.matchAll(/process\.env(?:\.|\[")([A-Z_0-9]+)|getenv\("([A-Z_0-9]+)"\)/g)) {
      const name = m[1] ?? m[2];
      if (!f.endsWith(path.join("util", "env.ts"))) assert.ok(/\.cc$|\.h$/.test(f), `${path.relative(root, f)} reads ${name} itself: use env() from util/env.ts`);
      used.add(name);
    }
    for (const m of text.matchAll(/env\("([A-Z_0-9]+)"/g)) used.add(m[1]);
  }
  for (const name of used) assert.ok(name in ENV_VARS, `${name} is read but not in ENV_VARS`);
  const help = gpt2(["--help"]).stdout;
  for (const name of Object.keys(ENV_VARS).filter((k) => !k.startsWith("GPT2_TEST_"))) assert.match(help, new RegExp(`^  ${name} +\\S`, "m"));
});

test("the cache folder: GPT2_CACHE, else XDG_CACHE_HOME/gpt2ts; a folder only an older layout holds is still found", async () => {
  const { cacheDir } = await import("../../src/util/env.js");
  const dir = tmpDir();
  const xdg = path.join(dir, "xdg"), mine = path.join(dir, "mine"), HOME = path.join(dir, "home");
  assert.equal(cacheDir("models", { HOME, GPT2_CACHE: mine, XDG_CACHE_HOME: xdg }), path.join(mine, "models"));
  assert.equal(cacheDir("models", { HOME, XDG_CACHE_HOME: xdg }), path.join(xdg, "gpt2ts", "models"));
  // datasets prepared before GPT2_CACHE applied to them (always ~/.cache/gpt2ts then): still used
  fs.mkdirSync(path.join(HOME, ".cache", "gpt2ts", "datasets"), { recursive: true });
  assert.equal(cacheDir("datasets", { HOME, GPT2_CACHE: mine, XDG_CACHE_HOME: xdg }), path.join(HOME, ".cache", "gpt2ts", "datasets"));
  // models pulled before XDG_CACHE_HOME applied to them: still used
  fs.mkdirSync(path.join(HOME, ".cache", "gpt2ts", "models"), { recursive: true });
  assert.equal(cacheDir("models", { HOME, XDG_CACHE_HOME: xdg }), path.join(HOME, ".cache", "gpt2ts", "models"));
  // once the new place has it, the new place wins
  fs.mkdirSync(path.join(mine, "datasets"), { recursive: true });
  assert.equal(cacheDir("datasets", { HOME, GPT2_CACHE: mine, XDG_CACHE_HOME: xdg }), path.join(mine, "datasets"));
});
