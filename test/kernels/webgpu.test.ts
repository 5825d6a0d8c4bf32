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
    const limit = be.gpu.limits.maxStorageBufferBindingSize;
    assert.ok(be.classifierRows * 50304 * 4 <= limit, `${adapter}: ${be.classifierRows} rows of 50304 floats > ${limit} bytes`);
    if (limit === 2 ** 27) assert.equal(be.classifierRows, 640);
    be.destroy();
  }
});
