// The WebGPU backend as a user meets it: `gpt2 train --backend webgpu` trains with the CPU's losses, writes a
// checkpoint that the CPU samples from (and back), and a run resumes across the two. Its kernels are checked one by
// one in conformance.test.ts and against PyTorch in test/model/reference.test.ts. On a machine without a GPU this
// runs on Mesa's CPU adapter (Dawn's OpenGL ES backend); without one, it is skipped with the reason.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { test } from "node:test";
import { writeShard } from "../../src/data/shard.js";
import { createWebGPUBackend } from "../../src/kernels/webgpu/node.js";
import type { HostBackend } from "./suite.js";
import { CLI, tmpDir } from "../helpers.js";

const probe = await createWebGPUBackend().then((be) => { be.destroy(); return false as const; }, (e: Error) => e.message);

const gpt2 = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
const losses = (out: string) => [...out.matchAll(/^step +\d+\/\d+ \| loss ([\d.]+)/gm)].map((m) => Number(m[1]));

function shard(dir: string): string {
  const toks: number[] = [];
  for (let d = 0; d < 200; d++) toks.push(50256, ...Array.from({ length: 15 }, (_, i) => 100 + ((d * 7 + i * 3) % 400)));
  const file = path.join(dir, "w_train_000001.bin");
  writeShard(file, Uint16Array.from(toks));
  return file;
}

test("gpt2 train --backend webgpu: the CPU's losses, a checkpoint the CPU samples from and back, a resume across backends", { skip: probe || undefined }, () => {
  const dir = tmpDir(), data = shard(dir);
  const flags = (out: string, steps: number) => ["train", "-i", data, "-e", "tiny", "--n-layer", "2", "--n-embd", "64", "--n-head", "2",
    "-b", "2", "-t", "32", "-x", String(steps), "-l", "1e-3", "-v", "0", "-s", "0", "-o", path.join(dir, out)];
  const gpu = gpt2([...flags("gpu", 4), "--backend", "webgpu"]);
  assert.equal(gpu.status, 0, gpu.stderr);
  assert.match(gpu.stdout, /backend: webgpu/);
  const cpu = gpt2([...flags("cpu", 4), "--backend", "native"]);
  assert.equal(cpu.status, 0, cpu.stderr);
  const [g, c] = [losses(gpu.stdout), losses(cpu.stdout)];
  assert.equal(g.length, 4);
  assert.ok(g[3] < g[0], `the loss falls: ${g}`);
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(g[i] - c[i]) < 1e-4 * c[i], `step ${i + 1}: webgpu ${g[i]} vs native ${c[i]}`);

  // the checkpoint written from the GPU's buffers: the same greedy tokens on either backend, from either run
  const sample = (run: string, backend: string) => {
    const r = gpt2(["sample", "--model", path.join(dir, run), "--prompt", "Hello", "--max-new-tokens", "8", "--temperature", "0", "--no-stop", "--json", "--backend", backend]);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split("\n").pop()!).ids as number[];
  };
  const ids = sample("gpu", "native");
  assert.equal(ids.length, 8);
  assert.deepEqual(sample("gpu", "webgpu"), ids);
  assert.deepEqual(sample("cpu", "webgpu"), sample("cpu", "native"));

  // a run begun on the CPU goes on on WebGPU (-y 1): the steps after the checkpoint are those of an unbroken run
  const whole = gpt2([...flags("whole", 6), "--backend", "native"]);
  const first = gpt2([...flags("split", 6), "-x", "3", "--backend", "native"]);
  assert.equal(first.status, 0, first.stderr);
  const rest = gpt2([...flags("split", 6), "-y", "1", "--backend", "webgpu"]);
  assert.equal(rest.status, 0, rest.stderr);
  const [w, r] = [losses(whole.stdout), losses(rest.stdout)];
  assert.equal(r.length, 3);
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(r[i] - w[i + 3]) < 1e-4 * w[i + 3], `step ${i + 4}: resumed ${r[i]} vs unbroken ${w[i + 3]}`);
});

test("webgpu: the classifier's chunk of GPT-2 logits fits one binding of the device (a 128 MiB limit gives 640 rows)", { skip: probe || undefined }, async () => {
  for (const adapter of ["vulkan", "opengles"] as const) {
    const be = await createWebGPUBackend({ adapter }).catch(() => null);
    if (!be) continue;
    const limit = be.maxBinding;
    assert.ok(be.classifierRows * 50304 * 4 <= limit, `${adapter}: ${be.classifierRows} rows of 50304 floats > ${limit} bytes`);
    if (limit === 2 ** 27) assert.equal(be.classifierRows, 640);
    be.destroy();
  }
});

test("webgpu on a device that binds 1 MiB at once: element-wise work over 2.4 MB tensors is split to fit and gives the reference's numbers", { skip: probe || undefined }, async () => {
  const { JsBackend } = await import("../../src/kernels/js/backend.js");
  const { Rng } = await import("../../src/util/rng.js");
  const { fromBf16, toBf16 } = await import("../../src/kernels/bf16.js");
  const be = await createWebGPUBackend({ maxBindingBytes: 1 << 20 }), ref = new JsBackend() as unknown as HostBackend;
  assert.equal(be.maxBinding, 1 << 20);
  const n = 600_001, r = new Rng(3), rand = () => Float32Array.from({ length: n }, () => r.normal());
  const [p, g, m, v] = [rand(), rand(), rand().map((x) => 0.1 * x), rand().map((x) => Math.abs(0.1 * x))];
  const t = (a: Float32Array) => { const x = be.alloc(a.length); be.write(x, a); return x; };
  const [tp, tg, tm, tv] = [t(p), t(g), t(m), t(v)];
  be.adamw(tp, tg, tm, tv, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 2, 0.5);
  ref.adamw(p, g.map((x) => x * 0.5), m, v, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 2, 1);
  const got = await be.readAsync(tp);
  for (let i = 0; i < n; i += 997) assert.ok(Math.abs(got[i] - p[i]) <= 1e-6 * (1 + Math.abs(p[i])), `adamw [${i}]`);
  assert.ok(Math.abs((await be.sumSquaresAsync(tg, n)) - ref.sumSquares(g, n)) <= 1e-6 * ref.sumSquares(g, n));
  be.scale(tg, n, 0.5);
  assert.equal((await be.readAsync(tg, n - 1, 1))[0], Math.fround(g[n - 1] * 0.5));
  const copy = be.alloc(n), half = be.alloc(n, "bf16");
  be.copy(copy, tm);
  be.copy(half, tm);
  const mDev = await be.readAsync(tm);
  be.fill(tm, 2);
  assert.deepEqual(await be.readAsync(copy), mDev);
  assert.deepEqual(await be.readAsync(half), mDev.map((x) => fromBf16(toBf16(x))));
  assert.deepEqual(Array.from(await be.readAsync(tm, n - 2, 2)), [2, 2]);
  // one tensor larger than the device binds, in a kernel that cannot be split: one line saying so
  const big = be.alloc(300_000), out = be.alloc(2 * 300_000);
  assert.throws(() => be.matmulForward(out, be.alloc(2), big, null, 2, 1, 300_000), /one tensor of \d+ MiB is more than this WebGPU device binds at once \(1 MiB\): a smaller model, or a GPU adapter/);
  be.destroy();
});

test("webgpu --dtype bf16: activations stored in bf16 train as the reference's bf16 storage does, and gpt2 train says so", { skip: probe || undefined }, async () => {
  const { JsBackend } = await import("../../src/kernels/js/backend.js");
  const { makeConfig } = await import("../../src/model/config.js");
  const { GPT2 } = await import("../../src/model/gpt2.js");
  const { AdamW, ADAMW_DEFAULTS, clipFactor, gradNormAsync } = await import("../../src/train/adamw.js");
  const { Rng } = await import("../../src/util/rng.js");
  // the same model, data and steps on WebGPU's bf16 storage and on the reference's (float32 products, bf16 storage,
  // every value rounded once on its way out): they differ by float32 summation order, and where that moves a value
  // across a bf16 rounding boundary, by a bf16 step of it
  const run = async (be: import("../../src/kernels/backend.js").Backend) => {
    const model = new GPT2(makeConfig("tiny", { nLayer: 2, nHead: 2, nEmbd: 64, vocabSize: 300, blockSize: 32 }), be, 1);
    model.initWeights(new Rng(5));
    const opt = new AdamW(model, { ...ADAMW_DEFAULTS });
    const r = new Rng(6), inputs = Int32Array.from({ length: 64 }, () => r.int(300)), targets = Int32Array.from({ length: 64 }, () => r.int(300));
    const out: number[] = [];
    for (let s = 0; s < 4; s++) {
      model.zeroGrad();
      out.push(await model.forwardBackwardAsync(inputs, targets, 2, 32));
      opt.update(3e-3, clipFactor(await gradNormAsync(model), 1));
    }
    assert.equal(model.activationBytes, GPT2.activationBytes(model.config, 2, 32, 1, model.classifierRows, "bf16"), "bf16 activations allocated");
    return out;
  };
  const gpu = await createWebGPUBackend({ activations: "bf16" });
  assert.equal(gpu.activationDtype, "bf16");
  const [g, want] = [await run(gpu), await run(new JsBackend("bf16"))];
  gpu.destroy();
  assert.ok(g[3] < g[0] - 0.5, `the loss falls: ${g}`);
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(g[i] - want[i]) < 2e-3 * want[i], `step ${i + 1}: webgpu ${g[i]} vs reference ${want[i]}`);

  const dir = tmpDir(), data = shard(dir);
  const flags = (dtype: string) => ["train", "-i", data, "-e", "tiny", "--n-layer", "2", "--n-embd", "64", "--n-head", "2",
    "-b", "2", "-t", "32", "-x", "3", "-l", "1e-3", "-v", "0", "-s", "0", "--backend", "webgpu", "--dtype", dtype];
  const [half, full] = [gpt2(flags("bf16")), gpt2(flags("fp32"))];
  assert.equal(half.status, 0, half.stderr);
  assert.match(half.stdout, /backend: webgpu, .*dtype bf16 \(activations stored in bf16\)/);
  const [h, f] = [losses(half.stdout), losses(full.stdout)];
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(h[i] - f[i]) < 1e-2 * f[i], `step ${i + 1}: bf16 storage ${h[i]} vs float32 ${f[i]}`);
});
