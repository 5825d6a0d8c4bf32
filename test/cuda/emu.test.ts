// The CUDA backend on the CPU emulation of CUDA (test/cuda/emu.cc): the real kernel source and the backend's host
// code, run on this machine. This is not a GPU test: test/cuda/gpu.test.ts runs the same checks on a GPU.
import assert from "node:assert/strict";
import { test } from "node:test";
import { useCudaEmulator } from "./emulator.js";

const emu = useCudaEmulator(); // before anything loads the CUDA driver
const skip = "skip" in emu ? emu.skip : undefined;
const { CudaBackend } = await import("../../src/kernels/cuda.js");
const { assertCrossEntropyEdges, assertSettingsPerBackend, runConformance } = await import("../kernels/suite.js");
const { runBf16Activations } = await import("../kernels/bf16-activations.js");
const suite = await import("./suite.js");

test("emulated CUDA: every kernel against the reference (fp32)", { skip }, () => runConformance(new CudaBackend("fp32"), { tol: 5e-5 }));

test("emulated CUDA: attention in batch chunks (as when B x NH x T^2 scores pass 1 GiB) against the reference", { skip }, async () => {
  process.env.GPT2_CUDA_ATTN_SCORES = "1"; // one batch row per chunk
  try {
    await runConformance(new CudaBackend("fp32"), { tol: 5e-5 });
  } finally {
    delete process.env.GPT2_CUDA_ATTN_SCORES;
  }
});

test("emulated CUDA: matmuls with bf16 inputs against the reference", { skip }, () =>
  runConformance(new CudaBackend("bf16"), { tol: 2e-2, bf16: true }));

test("emulated CUDA --dtype bf16: activations stored in bf16, every kernel against the reference's bf16 storage", { skip }, () =>
  runBf16Activations(new CudaBackend("bf16"), { matmulTol: 2e-2, bf16Attention: true, bf16Scores: true }));

test("emulated CUDA --dtype bf16: matmuls a few rows at a time (as when their bf16 copies pass 64 MiB) against the reference, and against themselves in one piece", { skip }, async () => {
  const be = new CudaBackend("bf16");
  // float32 inputs and gradients beside bf16 weights and outputs: every operand that is copied to bf16, in chunks
  const N = 37, C = 70, OC = 50, rng = (i: number) => Math.sin(i * 12.9898) * 2;
  const make = (n: number, dtype: "f32" | "bf16", seed: number) => {
    const t = be.alloc(n, dtype);
    be.write(t, Float32Array.from({ length: n }, (_, i) => rng(i + seed)));
    return t;
  };
  const inp = make(N * C, "f32", 1), w = make(OC * C, "bf16", 2), bias = make(OC, "f32", 3), dout = make(N * OC, "f32", 4);
  const run = () => {
    const out = be.alloc(N * OC, "bf16"), dinp = be.alloc(N * C), dw = be.alloc(OC * C), db = be.alloc(OC);
    be.matmulForward(out, inp, w, bias, N, C, OC);
    be.matmulBackward(dinp, dw, db, dout, inp, w, N, C, OC);
    return [out, dinp, dw, db].map((t) => be.read(t));
  };
  const whole = run();
  process.env.GPT2_CUDA_CHUNK_BYTES = "4096"; // 29 rows of the 140-byte bf16 input, 40 of the 100-byte gradient
  try {
    const [out, dinp, dw, db] = run();
    assert.deepEqual(out, whole[0], "forward: each row's products are the same sums");
    assert.deepEqual(dinp, whole[1], "dinp");
    assert.deepEqual(db, whole[3], "dbias");
    dw.forEach((v, i) => assert.ok(Math.abs(v - whole[2][i]) <= 1e-5 * (1 + Math.abs(v)), `dweight ${i}: ${v} vs ${whole[2][i]} (the chunks' sums added)`));
    await runBf16Activations(be, { matmulTol: 2e-2, bf16Attention: true, bf16Scores: true });
  } finally {
    delete process.env.GPT2_CUDA_CHUNK_BYTES;
  }
});

test("emulated CUDA --dtype bf16: activations and a block's backward scratch allocated in bf16, as the memory plan counts them", { skip }, async () => {
  const { GPT2 } = await import("../../src/model/gpt2.js");
  const { makeConfig } = await import("../../src/model/config.js");
  const { activationTable } = await import("../../src/model/activations.js");
  const config = makeConfig("tiny", { nLayer: 2, nHead: 2, nEmbd: 64, blockSize: 32, vocabSize: 200 });
  const be = new CudaBackend("bf16");
  assert.equal(be.activationGradDtype, "bf16");
  const model = new GPT2(config, be, 1);
  model.allocate(2, 32);
  const table = activationTable(config, 2, 32, 1, be.classifierRows, "bf16", "bf16");
  assert.equal(table.find((e) => e.name === "dblock")!.dtype, "bf16");
  assert.equal(model.activationBytes, GPT2.activationBytes(config, 2, 32, 1, be.classifierRows, "bf16", "bf16"));
  assert.ok(model.activationBytes < GPT2.activationBytes(config, 2, 32, 1, be.classifierRows, "bf16", "f32"));
  assert.equal(new CudaBackend("bf16", 0, "f32").activationGradDtype, "f32"); // GPT2_ACTIVATIONS=f32: all float32
});

test("emulated CUDA: settings are per backend (cuBLAS's precision follows the backend whose kernel runs)", { skip }, () =>
  assertSettingsPerBackend(() => new CudaBackend("fp32"), () => new CudaBackend("bf16")));

test("emulated CUDA: 20 training steps give the CPU's losses (fp32 within 1e-4, bf16 within 2 %)", { skip }, () => {
  const cpu = suite.trainSteps(suite.cpuBackend(), 20);
  suite.assertLossesClose(suite.trainSteps(new CudaBackend("fp32"), 20), cpu, 1e-4, "fp32");
  suite.assertLossesClose(suite.trainSteps(new CudaBackend("bf16"), 20), cpu, 2e-2, "bf16");
});

test("emulated CUDA: the gradients do not depend on the order the GPU runs blocks and threads in (no float atomics)", { skip }, () => {
  try {
    suite.gradientsRepeat(new CudaBackend("fp32"), () => { process.env.GPT2_EMU_ORDER = "reverse"; });
  } finally {
    delete process.env.GPT2_EMU_ORDER;
  }
});

test("emulated CUDA: every kernel against the reference with blocks and threads run last-first (what a kernel that leans on an order the GPU does not promise gets wrong)", { skip }, async () => {
  process.env.GPT2_EMU_ORDER = "reverse";
  try {
    await runConformance(new CudaBackend("fp32"), { tol: 5e-5 });
    await runBf16Activations(new CudaBackend("bf16"), { matmulTol: 2e-2, bf16Attention: true, bf16Scores: true });
  } finally {
    delete process.env.GPT2_EMU_ORDER;
  }
});

test("emulated CUDA: greedy generation with the KV cache gives the CPU's tokens", { skip }, () => suite.greedyMatchesCpu(new CudaBackend("fp32")));

test("emulated CUDA --dtype bf16: greedy generation on bf16 weights gives the CPU's tokens on them", { skip }, () =>
  suite.greedyMatchesCpu(new CudaBackend("bf16"), true));

test("emulated CUDA: gpt2 train --backend cuda, checkpoint resumed on the CPU, same samples and eval loss on both", { skip }, () =>
  suite.cliTrainResumeOnCpu({ ...process.env }, 1e-4));

test("emulated CUDA: GPT2_CUDA_PROFILE=1 prints where the time went, per kernel and cuBLAS call", { skip }, async () => {
  const { spawnSync } = await import("node:child_process");
  const { CLI, fixture } = await import("../helpers.js");
  const r = spawnSync(process.execPath, [CLI, "train", "--backend", "cuda", "-i", fixture("tiny_shard.bin"), "-e", "tiny", "--n-layer", "1",
    "--n-embd", "32", "--n-head", "2", "-b", "1", "-t", "16", "-x", "1", "-v", "0", "-s", "0"], { encoding: "utf8", env: { ...process.env, GPT2_CUDA_PROFILE: "1" } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^GPT2_CUDA_PROFILE: [\d.]+ ms in kernels and cuBLAS$/m);
  for (const name of ["cuBLAS matmuls", "cuBLAS attention products", "causal_softmax", "cross_entropy", "adamw_kernel"]) {
    assert.match(r.stderr, new RegExp(`^  ${name} +[\\d.]+ ms +[\\d.]+ % +\\d+ calls$`, "m"));
  }
});

test("emulated CUDA: a run too big for the GPU is refused before it allocates; a failed allocation names the sizes", { skip }, async () => {
  const { spawnSync } = await import("node:child_process");
  const { CLI, fixture } = await import("../helpers.js");
  const r = spawnSync(process.execPath, [CLI, "train", "--backend", "cuda", "-i", fixture("tiny_shard.bin"), "-e", "d48", "-b", "1", "-t", "256"],
    { encoding: "utf8" });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^gpt2: the run needs .* MiB, but only \d+ MiB are free; lower -b, use -r 1 or 2, or a smaller model\n$/);
  const be = new CudaBackend("fp32");
  assert.throws(() => be.alloc(4 * 2 ** 30), /^Error: CUDA out of memory: 16384 MiB asked, \d+ MiB free of 8192$/);
});

test("emulated NCCL, one rank: every collective leaves device and host buffers as they were (sum over one rank)", { skip }, async () => {
  const { NcclComm } = await import("../../src/parallel/nccl.js");
  const { tmpDir } = await import("../helpers.js");
  const be = new CudaBackend("fp32");
  const comm = await NcclComm.create(be, { method: "fs", rank: 0, size: 1, dir: tmpDir(), timeoutSeconds: 10 }, 10);
  assert.match(comm.description, /^NCCL \d+\.\d+\.\d+ \(ids shared through .*\), 1 ranks$/);
  const host = Float32Array.from({ length: 1001 }, (_, i) => Math.sin(i));
  const t = be.alloc(host.length);
  be.write(t, host);
  comm.allReduceSum(t);
  comm.startAllReduceSum(be.view(t, 10, 500)).wait();
  comm.reduceScatterSum(t, [host.length]);
  comm.allGather(t, [host.length]);
  comm.broadcast(t, 0);
  assert.deepEqual(be.read(t), host);
  const scalars = new Float64Array([1.5, -2.25]), bytes = Uint8Array.from([1, 2, 3]);
  comm.allReduceSum(scalars);
  comm.broadcast(bytes, 0);
  comm.barrier();
  assert.deepEqual([...scalars, ...bytes], [1.5, -2.25, 1, 2, 3]);
  comm.close();
});

test("emulated NCCL with one rank (-pi fs -pn 1) trains the same steps as the single-process CUDA path, -z 0 and -z 1", { skip }, () =>
  suite.ncclOneRankMatchesSingle());

test("emulated CUDA: cross-entropy's edges as the reference's (a NaN logit makes its row NaN; masked -Infinity columns stay finite), float32 and bf16 logits", { skip }, async () => {
  await assertCrossEntropyEdges(new CudaBackend("fp32"));
  await assertCrossEntropyEdges(new CudaBackend("bf16"), "bf16");
});

test("emulated CUDA: a target id past the vocabulary gives a NaN loss, not a read outside its row (the model refuses such ids first)", { skip }, async () => {
  const be = new CudaBackend("fp32");
  const N = 2, V = 5, Vp = 8;
  const logits = be.alloc(N * Vp), losses = be.alloc(N), targets = be.alloc(N, "i32");
  be.write(logits, Float32Array.from({ length: N * Vp }, (_, i) => Math.sin(i)));
  be.write(targets, Int32Array.of(1, 100000));
  be.crossEntropy(losses, null, logits, targets, N, V, Vp, 1);
  const l = await be.readAsync(losses);
  assert.ok(Number.isFinite(l[0]), `row 0: ${l[0]}`);
  assert.ok(Number.isNaN(l[1]), `row 1 (target 100000 of 5): ${l[1]}`);
});
