import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { evaluateHellaswag, readHellaswag, renderExample } from "../../src/eval/hellaswag.js";
import { sequenceLoss } from "../../src/eval/loss.js";
import { loadHF } from "../../src/io/hf.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { encode } from "../../src/tokenizer/bpe.js";
import { CLI, fixture, tmpDir } from "../helpers.js";

test("HellaSwag: each ending's score equals eval loss over the same tokens; acc and acc_norm follow the scores", async () => {
  const model = loadHF(fixture("ref-gpt2vocab"), new JsBackend());
  const examples = readHellaswag(fixture("hellaswag_small.jsonl"));
  assert.equal(examples.length, 5);
  const r = await evaluateHellaswag(model, examples, 2);
  // example 3 has a one-token context ("The"): the ending's mean loss is exactly eval loss of [ctx, ending]
  const ex = examples[3];
  for (let k = 0; k < 4; k++) {
    const row = [...encode(ex.ctx), ...encode(" " + ex.endings[k])];
    const ref = await sequenceLoss(loadHF(fixture("ref-gpt2vocab"), new JsBackend()), [row]);
    const [sum, n] = r.details[3].losses[k];
    assert.equal(n, row.length - 1);
    assert.ok(Math.abs(sum / n - ref.loss) < 1e-6 * ref.loss, `ending ${k}: ${sum / n} vs ${ref.loss}`);
  }
  let acc = 0, accNorm = 0;
  for (const d of r.details) {
    const sums = d.losses.map(([s]) => s), means = d.losses.map(([s, n]) => s / n);
    assert.equal(d.pred, sums.indexOf(Math.min(...sums)));
    assert.equal(d.pred_norm, means.indexOf(Math.min(...means)));
    acc += d.pred === d.label ? 1 : 0;
    accNorm += d.pred_norm === d.label ? 1 : 0;
  }
  assert.equal(r.acc, acc / 5);
  assert.equal(r.acc_norm, accNorm / 5);
  // batching does not change the scores
  const single = await evaluateHellaswag(loadHF(fixture("ref-gpt2vocab"), new JsBackend()), examples, 1);
  for (let i = 0; i < 5; i++) for (let k = 0; k < 4; k++) assert.ok(Math.abs(single.details[i].losses[k][0] - r.details[i].losses[k][0]) < 1e-4);
  assert.equal(renderExample(ex, 1024).starts[0], 1);
});

test("HellaSwag: malformed rows name file and line; an empty file is an error; the CLI prints JSON", () => {
  const dir = tmpDir();
  const bad = (name: string, body: string, re: RegExp) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, body);
    assert.throws(() => readHellaswag(f), re);
  };
  bad("a.jsonl", '{"ctx":"x","endings":["a","b","c","d"],"label":0}\nnot json\n', /a\.jsonl:2: not valid JSON/);
  bad("b.jsonl", '{"ctx":"x","endings":["a","b","c"],"label":0}\n', /b\.jsonl:1: "endings" must be an array of 4 strings/);
  bad("c.jsonl", '{"ctx":"x","endings":["a","b","c","d"],"label":4}\n', /c\.jsonl:1: "label" must be 0, 1, 2 or 3, got 4/);
  bad("d.jsonl", '{"endings":["a","b","c","d"],"label":1}\n', /d\.jsonl:1: missing string field "ctx"/);
  bad("e.jsonl", "\n", /e\.jsonl holds no examples/);
  const r = spawnSync(process.execPath, [CLI, "eval", "hellaswag", "--model", fixture("ref-gpt2vocab"), "--data", fixture("hellaswag_small.jsonl"), "--json", "--details", "--backend", "js"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.n, 5);
  assert.equal(j.details.length, 5);
  assert.ok(j.acc >= 0 && j.acc <= 1 && j.acc_norm >= 0 && j.acc_norm <= 1);
});
