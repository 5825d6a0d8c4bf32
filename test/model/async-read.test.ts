// The async read path: a backend that refuses synchronous reads (as WebGPU must: it maps buffers asynchronously)
// still trains (gradient-norm clipping included), validates, samples, scores HellaSwag and generates, with the
// results of the synchronous path, and writes its checkpoints (read back asynchronously) with the same bytes.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { complete } from "../../src/chat/complete.js";
import type { Tensor } from "../../src/kernels/backend.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { loadHF } from "../../src/io/hf.js";
import { readCheckpointHeader } from "../../src/io/checkpoint.js";
import { generate, generateAsync, KVCache } from "../../src/model/generate.js";
import { DEFAULTS, mergeConfig } from "../../src/train/config.js";
import { train } from "../../src/train/loop.js";
import { Rng } from "../../src/util/rng.js";
import { evaluateHellaswag, readHellaswag } from "../../src/eval/hellaswag.js";
import { ha, fixture, readJson, tmpDir } from "../helpers.js";

/** Synchronous reads throw once `strict` is set; asynchronous ones resolve on a later turn of the event loop. */
class AsyncOnlyBackend extends JsBackend {
  strict = false;
  asyncReads = 0;
  override read(t: Tensor, offset = 0, n = t.length - offset): Float32Array {
    if (this.strict) throw new Error("a synchronous read on a backend that can only read asynchronously");
    return super.read(t, offset, n);
  }
  override sumSquares(t: Tensor, n: number): number {
    if (this.strict) throw new Error("a synchronous sum of squares on a backend that can only read asynchronously");
    return super.sumSquares(t, n);
  }
  override sumSquaresAsync(t: Tensor, n: number): Promise<number> {
    const s = super.sumSquares(t, n);
    return new Promise((resolve) => setImmediate(() => resolve(s)));
  }
  override readAsync(t: Tensor, offset = 0, n = t.length - offset): Promise<Float32Array> {
    const data = new Float32Array(ha(t).subarray(offset, offset + n));
    this.asyncReads++;
    return new Promise((resolve) => setImmediate(() => resolve(data)));
  }
}

function batch(dir: string) {
  const { tokens } = readJson<{ tokens: number[][] }>(fixture(dir, "tokens.json"));
  const B = tokens.length, T = tokens[0].length - 1;
  return { B, T, inputs: Int32Array.from(tokens.flatMap((r) => r.slice(0, T))), targets: Int32Array.from(tokens.flatMap((r) => r.slice(1))) };
}

test("async reads: forward, forwardBackward and per-position losses equal the synchronous path and PyTorch", async () => {
  const exp = readJson(fixture("ref-small", "expected.json"));
  const be = new AsyncOnlyBackend();
  const model = loadHF(fixture("ref-small"), be), sync = loadHF(fixture("ref-small"), new JsBackend());
  const { B, T, inputs, targets } = batch("ref-small");
  be.strict = true;
  const loss = await model.forwardAsync(inputs, targets, B, T);
  assert.equal(loss, sync.forward(inputs, targets, B, T));
  assert.ok(Math.abs(loss - exp.loss) / exp.loss < 1e-5);
  assert.deepEqual(await model.readLossesAsync(), sync.readLosses());
  model.zeroGrad();
  sync.zeroGrad();
  assert.equal(await model.forwardBackwardAsync(inputs, targets, B, T), sync.forwardBackward(inputs, targets, B, T));
  be.strict = false;
  assert.deepEqual(be.read(model.grads!), sync.backend.read(sync.grads!));
  assert.ok(be.asyncReads >= 3);
});

test("async reads: generation and chat completion give PyTorch's greedy tokens, as the synchronous path does", async () => {
  const exp = readJson(fixture("ref-gpt2vocab", "greedy.json"));
  const be = new AsyncOnlyBackend();
  const model = loadHF(fixture("ref-gpt2vocab"), be);
  const opts = { maxNewTokens: exp.max_new_tokens, temperature: 0, stopAtEot: false };
  be.strict = true;
  assert.deepEqual((await generateAsync(model, exp.prompt, 1, new Rng(1), opts))[0], exp.new_tokens);
  // a short cache: the window slides, and both paths slide the same way
  const slid = await generateAsync(model, exp.prompt, 2, new Rng(3), { ...opts, temperature: 1 }, new KVCache(model, 2, 12));
  be.strict = false;
  assert.deepEqual(slid, generate(model, exp.prompt, 2, new Rng(3), { ...opts, temperature: 1 }, new KVCache(model, 2, 12)));
  be.strict = true;
  const cache = new KVCache(model, 1, exp.prompt.length + exp.max_new_tokens);
  const tokens: number[] = [];
  for await (const ev of complete(model, cache, exp.prompt, { maxTokens: exp.max_new_tokens, temperature: 0, stopTokens: [] }, new Rng(1))) {
    if (ev.kind === "done") tokens.push(...ev.tokens);
  }
  assert.deepEqual(tokens, exp.new_tokens);
});

test("async reads: the training loop trains, validates, samples, checkpoints and scores HellaSwag without one synchronous read", async () => {
  const dir = tmpDir();
  const shard = path.join(dir, "tiny_train_000001.bin");
  fs.copyFileSync(fixture("tiny_shard.bin"), shard);
  const be = new AsyncOnlyBackend();
  const lines: string[] = [];
  const cfg = mergeConfig(DEFAULTS, {
    trainData: shard, valData: shard, init: "tiny", nLayer: 1, nEmbd: 32, nHead: 2, batchSize: 2, seqLen: 16, maxSteps: 4,
    lr: 1e-3, warmup: 0, valEvery: 2, valBatches: 2, sampleEvery: 2, genTokens: 4, recompute: 0, seed: 1, checkpointEvery: 2,
  }, "test");
  const sync = await train({ ...cfg, outDir: path.join(dir, "sync") }, new JsBackend(), { print: () => {} });
  const r = await train({ ...cfg, outDir: path.join(dir, "async") }, be, { print: (l) => lines.push(l), afterStep: () => { be.strict = true; } });
  assert.equal(r.steps, 4);
  assert.equal(r.lastTrainLoss, sync.lastTrainLoss);
  assert.equal(r.lastValLoss, sync.lastValLoss);
  assert.ok(lines.some((l) => /^sample at step 4:/.test(l)), lines.join("\n"));
  // the checkpoints of steps 2 and 4, written from asynchronous reads: the synchronous run's weights and AdamW state
  for (const step of ["00000002", "00000004"]) {
    const [a, b] = ["async", "sync"].map((d) => readCheckpointHeader(path.join(dir, d, `checkpoint_${step}.gpt2ts`)));
    assert.deepEqual(a.sections, b.sections, `checkpoint of step ${step}`);
  }
  // HellaSwag reads its per-ending losses asynchronously too
  const h = await evaluateHellaswag(loadHF(fixture("ref-gpt2vocab"), be), readHellaswag(fixture("hellaswag_small.jsonl")), 2);
  be.strict = false;
  const ref = await evaluateHellaswag(loadHF(fixture("ref-gpt2vocab"), new JsBackend()), readHellaswag(fixture("hellaswag_small.jsonl")), 2);
  assert.deepEqual(h.details, ref.details);
});
