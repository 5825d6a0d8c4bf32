// Chat: the KV cache kept across turns gives what a full recompute gives, feeding only the new turn; gpt2 chat in a
// pipe; completions stop at stop strings without showing any part of them.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { test } from "node:test";
import { cacheFor, complete, TextSink } from "../../src/chat/complete.js";
import { ChatSession } from "../../src/chat/session.js";
import { renderChat } from "../../src/chat/template.js";
import { saveCheckpoint } from "../../src/io/checkpoint.js";
import { loadHF } from "../../src/io/hf.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { KVCache, sampleToken } from "../../src/model/generate.js";
import { GPT2 } from "../../src/model/gpt2.js";
import { CHAT_VOCAB_SIZE, encodeOrdinary } from "../../src/tokenizer/bpe.js";
import { Rng } from "../../src/util/rng.js";
import { CLI, fixture, tmpDir } from "../helpers.js";

const be = new JsBackend();

/** PyTorch's small GPT-2 (GPT-2 vocabulary, 64 positions) with the chat tokens added */
async function chatModel(): Promise<GPT2> {
  const m = loadHF(fixture("ref-gpt2vocab"), be);
  await m.extendVocab(CHAT_VOCAB_SIZE);
  return m;
}

/** greedy tokens after `ids` by full recompute (no cache): the model's forward over the whole sequence each time */
function greedyFull(model: GPT2, ids: number[], n: number, stop: number[]): number[] {
  const out: number[] = [];
  const seq = [...ids];
  model.allocate(1, model.config.blockSize);
  for (let k = 0; k < n; k++) {
    const T = seq.length;
    model.forward(Int32Array.from(seq), null, 1, T);
    const logits = model.readLogits().subarray((T - 1) * model.config.paddedVocabSize);
    const tok = sampleToken(logits, model.config.vocabSize, new Rng(0), { temperature: 0 });
    if (stop.includes(tok)) break;
    out.push(tok);
    seq.push(tok);
  }
  return out;
}

test("a second turn feeds only its new tokens, and answers as a full recompute of the whole conversation does", async () => {
  const model = await chatModel();
  const s = new ChatSession(model, "You are terse.");
  const o = { maxTokens: 6, temperature: 0 };
  let first = "";
  for await (const piece of s.say("Hello", o, new Rng(1))) first += piece;
  const fedFirst = s.lastFed;
  let second = "";
  for await (const piece of s.say("And then?", o, new Rng(1))) second += piece;
  // the second turn fed the end of the first answer and the new user message, not the history
  // (at most: the first answer's last token, <|end|>, <|user|>, the text, <|end|>, <|assistant|>)
  assert.ok(s.lastFed <= encodeOrdinary("And then?").length + 5, `fed ${s.lastFed}`);
  assert.ok(s.lastFed < fedFirst + 6);
  // a fresh forward over the conversation's tokens up to the second answer gives the same greedy answer
  const conv = s.tokens;
  const secondIds = greedyFull(model, conv.slice(0, conv.length - 1 - s.lastAnswer.length), 6, [50260, 50256]);
  assert.deepEqual(s.lastAnswer, secondIds);
  assert.equal(s.messages.length, 5);
  assert.deepEqual(s.messages.map((m) => m.role), ["system", "user", "assistant", "user", "assistant"]);
  assert.equal(s.messages[4].content, second);
  // the template the session built is the template: the same ids as rendering the messages (for canonical answers)
  const rendered = renderChat(s.messages).ids;
  assert.deepEqual(conv.slice(0, 8), rendered.slice(0, 8));
});

test("incremental KV-cache steps equal one full forward (logits within 1e-5)", async () => {
  const model = await chatModel();
  const ids = renderChat([{ role: "user", content: "Where is the key?" }, { role: "assistant", content: "In the box." }, { role: "user", content: "Which box?" }], { generationPrompt: true }).ids;
  const cache = new KVCache(model, 1, 64);
  cache.step(Int32Array.from(ids.slice(0, 9)), 9);
  cache.step(Int32Array.from(ids.slice(9, 15)), 6);
  const inc = cache.step(Int32Array.from(ids.slice(15)), ids.length - 15);
  model.forward(Int32Array.from(ids), null, 1, ids.length);
  const full = model.readLogits().subarray((ids.length - 1) * model.config.paddedVocabSize, ids.length * model.config.paddedVocabSize);
  let worst = 0;
  for (let i = 0; i < model.config.vocabSize; i++) worst = Math.max(worst, Math.abs(inc[i] - full[i]));
  assert.ok(worst < 1e-5, `max abs diff ${worst}`);
});

test("stop strings end a completion before them, and no part of them is ever shown", async () => {
  const model = await chatModel();
  const prompt = renderChat([{ role: "user", content: "Tell me a story" }], { generationPrompt: true }).ids;
  const run = async (stopText: string[]) => {
    let text = "";
    const pieces: string[] = [];
    let reason = "";
    for await (const ev of complete(model, cacheFor(model, 1, prompt.length, 12), prompt, { maxTokens: 12, temperature: 0, stopTokens: [], stopText }, new Rng(1))) {
      if (ev.kind === "text") { text += ev.text; pieces.push(ev.text); } else reason = ev.reason;
    }
    return { text, pieces, reason };
  };
  const free = await run([]);
  assert.equal(free.reason, "length");
  assert.ok(free.text.length > 6, free.text);
  const stop = free.text.slice(3, 6);
  const cut = await run([stop]);
  assert.equal(cut.reason, "stop");
  assert.equal(cut.text, free.text.slice(0, free.text.indexOf(stop)));
  // the sink holds back what may be the start of a stop string, and never splits a character
  const sink = new TextSink(["END"]);
  let shown = "";
  for (const t of encodeOrdinary("abc EN")) shown += sink.push(t);
  assert.equal(shown, "abc "); // "EN" may still become "END": held back
  for (const t of encodeOrdinary("D more")) shown += sink.push(t);
  assert.equal(shown + sink.flush(), "abc ");
  assert.ok(sink.stopped);
});

test("gpt2 chat in a pipe: a reply per line, /reset and /system; a model without chat tokens is refused", async () => {
  const dir = tmpDir();
  const file = path.join(dir, "chat.gpt2ts");
  await saveCheckpoint(file, await chatModel());
  const r = spawnSync(process.execPath, [CLI, "chat", "--model", file, "--temperature", "0", "--max-new-tokens", "5", "--backend", "js"],
    { input: "Hello\n/reset\n/system Be kind.\nHi again\n", encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 4, r.stdout);
  assert.equal(lines[1], "(conversation reset)");
  assert.equal(lines[2], "(new conversation with that system message)");
  const base = spawnSync(process.execPath, [CLI, "chat", "--model", fixture("ref-gpt2vocab"), "--backend", "js"], { input: "Hello\n", encoding: "utf8" });
  assert.equal(base.status, 2);
  assert.match(base.stderr, /^gpt2: .*ref-gpt2vocab: this model has no chat tokens .*fine-tune it with gpt2 sft/);
});
