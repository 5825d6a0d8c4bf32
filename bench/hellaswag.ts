// HellaSwag scoring speed for a d12-sized model (random weights: speed only) on N examples of the hand-made file
// repeated. Run: node dist/bench/hellaswag.js [--examples 40] [--batch 4]
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { evaluateHellaswag, readHellaswag } from "../src/eval/hellaswag.js";
import { createBackend } from "../src/kernels/select.js";
import { makeConfig } from "../src/model/config.js";
import { GPT2 } from "../src/model/gpt2.js";
import { Rng } from "../src/util/rng.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const { values } = parseArgs({ options: { examples: { type: "string" }, batch: { type: "string" } } });
const n = Number(values.examples ?? 40), perBatch = Number(values.batch ?? 4);
const rows = fs.readFileSync(path.join(root, "test/fixtures/hellaswag_small.jsonl"), "utf8").trim().split("\n");
const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "hs-")), "hs.jsonl");
fs.writeFileSync(file, Array.from({ length: n }, (_, i) => rows[i % rows.length]).join("\n") + "\n");
const model = new GPT2(makeConfig("d12"), createBackend({}));
model.initWeights(new Rng(1));
const examples = readHellaswag(file);
fs.rmSync(path.dirname(file), { recursive: true, force: true });
await evaluateHellaswag(model, examples.slice(0, perBatch), perBatch); // warm-up
const t0 = performance.now();
const r = await evaluateHellaswag(model, examples, perBatch);
const s = (performance.now() - t0) / 1000;
console.log(`d12, ${r.n} examples (${perBatch} per forward, ${os.availableParallelism()} threads): ${(r.n / s).toFixed(2)} examples/s`);
