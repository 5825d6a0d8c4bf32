// ZeRO-1's pieces without MPI: shard ranges, AdamW on shards equal to AdamW on the whole buffer, and optimizer
// shards written for one split read back for another (the resume-with-a-different-N path).
import assert from "node:assert/strict";
import * as path from "node:path";
import { test } from "node:test";
import { readOptimizerRange, saveOptimizerShard } from "../../src/io/checkpoint.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { makeConfig } from "../../src/model/config.js";
import { GPT2 } from "../../src/model/gpt2.js";
import { shardRange } from "../../src/parallel/comm.js";
import { AdamW } from "../../src/train/adamw.js";
import { Rng } from "../../src/util/rng.js";
import { ha, ht, tmpDir } from "../helpers.js";

function model(seed: number): GPT2 {
  const m = new GPT2(makeConfig("tiny", { vocabSize: 300, nLayer: 2, nEmbd: 64, nHead: 4, blockSize: 32 }), new JsBackend());
  m.initWeights(new Rng(seed));
  m.zeroGrad();
  const rng = new Rng(seed + 1), g = ha(m.grads);
  for (let i = 0; i < g.length; i++) g[i] = rng.normal() * 0.01;
  return m;
}

test("shard ranges tile the buffer in rank order, the last one shorter", () => {
  for (const [total, size] of [[11, 2], [12, 3], [1000003, 8], [5, 8]]) {
    let next = 0;
    for (let r = 0; r < size; r++) {
      const { counts, lo, hi } = shardRange(total, size, r);
      assert.equal(counts.reduce((a, b) => a + b, 0), total);
      assert.equal(lo, next);
      assert.equal(hi - lo, counts[r]);
      next = hi;
    }
    assert.equal(next, total);
  }
});

test("AdamW on three shards (boundaries inside tensors) equals AdamW on the whole buffer, weight decay included", () => {
  const whole = model(3), parts = model(3);
  const full = new AdamW(whole, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  const total = whole.layout.total;
  const shards = [0, 1, 2].map((r) => new AdamW(parts, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 }, shardRange(total, 3, r)));
  for (let step = 0; step < 3; step++) {
    full.update(1e-2);
    for (const s of shards) s.update(1e-2);
  }
  assert.deepEqual(parts.params, whole.params);
  // and the shards' state is the whole state, cut
  const m = ha(full.m);
  for (const s of shards) assert.deepEqual(s.m, m.subarray(s.lo, s.hi));
});

test("optimizer shards saved over 2 ranks read back for 3 ranks and for one process", async () => {
  const dir = tmpDir(), m = model(5), total = m.layout.total;
  const full = new AdamW(m);
  full.update(1e-3);
  const sources = await Promise.all([0, 1].map(async (r) => {
    const { lo, hi } = shardRange(total, 2, r);
    const file = path.join(dir, `opt.rank${r}.gpt2ts`);
    const mm = (ha(full.m)).slice(lo, hi), vv = (ha(full.v)).slice(lo, hi);
    await saveOptimizerShard(file, m, lo, hi, { m: ht(mm), v: ht(vv) });
    return { file, lo, hi };
  }));
  for (const ranks of [3, 1]) {
    for (let r = 0; r < ranks; r++) {
      const { lo, hi } = shardRange(total, ranks, r);
      const back = { m: new Float32Array(hi - lo), v: new Float32Array(hi - lo) };
      readOptimizerRange(sources, lo, hi, m.backend, { m: ht(back.m), v: ht(back.v) });
      assert.deepEqual(back.m, new Float32Array(ha(full.m).subarray(lo, hi)));
      assert.deepEqual(back.v, new Float32Array(ha(full.v).subarray(lo, hi)));
    }
  }
  // a missing shard is an error that names the files, not a silent hole
  assert.throws(() => readOptimizerRange(sources.slice(0, 1), 0, total, m.backend, { m: ht(new Float32Array(total)), v: ht(new Float32Array(total)) }),
    /optimizer state for parameters \[0, \d+\) is incomplete in .*opt\.rank0/);
});
