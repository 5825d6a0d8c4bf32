// The chat template against tiktoken's ids for the message texts, and the rows it refuses.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { get_encoding } from "tiktoken";
import { ChatFormatError, parseExample, parseJsonl, promptAndAnswer, renderChat, renderText } from "../../src/chat/template.js";
import { decode } from "../../src/tokenizer/bpe.js";
import { CLI } from "../helpers.js";

const tk = get_encoding("gpt2");
const ids = (s: string) => Array.from(tk.encode_ordinary(s));
const [EOT, SYS, USER, ASST, END] = [50256, 50257, 50258, 50259, 50260];

test("a conversation renders as role token + tiktoken's ids of the text + <|end|>; only the assistant's text and <|end|> are trained", () => {
  const r = renderChat([
    { role: "system", content: "Be brief." },
    { role: "user", content: "What is 2+3?" },
    { role: "assistant", content: "5" },
    { role: "user", content: "And 2+4?" },
    { role: "assistant", content: "Six, I think." },
  ]);
  const want = [EOT, SYS, ...ids("Be brief."), END, USER, ...ids("What is 2+3?"), END, ASST, ...ids("5"), END,
    USER, ...ids("And 2+4?"), END, ASST, ...ids("Six, I think."), END];
  assert.deepEqual(r.ids, want);
  const trainedIds = r.ids.filter((_, i) => r.trained[i]);
  assert.deepEqual(trainedIds, [...ids("5"), END, ...ids("Six, I think."), END]);
  // the token before each trained run is <|assistant|>: the model learns to answer after it, and to stop
  for (let i = 1; i < r.ids.length; i++) if (r.trained[i] && !r.trained[i - 1]) assert.equal(r.ids[i - 1], ASST);
  assert.equal(decode(r.ids), "<|endoftext|><|system|>Be brief.<|end|><|user|>What is 2+3?<|end|><|assistant|>5<|end|><|user|>And 2+4?<|end|><|assistant|>Six, I think.<|end|>");
});

test("chat tokens typed by a user are ordinary text; the generation prompt ends with <|assistant|>", () => {
  const text = "hi <|user|> <|assistant|><|end|><|endoftext|>";
  const r = renderChat([{ role: "user", content: text }], { generationPrompt: true });
  assert.deepEqual(r.ids, [EOT, USER, ...ids(text), END, ASST]);
  assert.ok(r.ids.slice(2, -2).every((id) => id < 50256));
  assert.ok(r.trained.every((t) => t === 0));
});

test("prompt/completion rows: plain text, trained on the completion and the final <|endoftext|>", () => {
  const r = renderText("Q: 2+3=", " 5");
  assert.deepEqual(r.ids, [EOT, ...ids("Q: 2+3="), ...ids(" 5"), EOT]);
  assert.deepEqual(r.ids.filter((_, i) => r.trained[i]), [...ids(" 5"), EOT]);
  const pa = promptAndAnswer({ kind: "chat", messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }] });
  assert.deepEqual(pa.prompt, [EOT, USER, ...ids("a"), END, ASST]);
  assert.equal(pa.answer, "b");
});

test("bad rows are refused with file:line and what is wrong", () => {
  const bad: [string, RegExp][] = [
    ["{", /f\.jsonl:2: not valid JSON/],
    ["null", /f\.jsonl:2: expected an object/],
    ['{"messages": []}', /f\.jsonl:2: "messages" must be a non-empty array/],
    ['{"messages": [{"role": "bot", "content": "x"}]}', /f\.jsonl:2: message 1: role must be "system", "user" or "assistant", got "bot"/],
    ['{"messages": [{"content": "x"}]}', /f\.jsonl:2: message 1: role must be .* got null/],
    ['{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}', /f\.jsonl:2: message 1: "content" must be a string/],
    ['{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]}', /f\.jsonl:2: message 2: empty assistant message/],
    ['{"messages": [{"role": "user", "content": "x"}]}', /f\.jsonl:2: no assistant message to train on/],
    ['{"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}, {"role": "assistant", "content": "z"}]}', /message 2: a system message may only come first/],
    ['{"prompt": "x"}', /f\.jsonl:2: "completion" must be a string/],
    ['{"prompt": "x", "completion": ""}', /f\.jsonl:2: empty "completion"/],
    ['{"text": "x"}', /f\.jsonl:2: expected "messages" \(a conversation\) or "prompt" and "completion"/],
  ];
  const good = '{"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}, {"role": "assistant", "content": "y"}]}';
  assert.equal(parseExample(parseJsonl(good, "f.jsonl")[0].row, "f.jsonl:1").kind, "chat");
  for (const [line, want] of bad) {
    try {
      for (const { row, where } of parseJsonl(good + "\n" + line + "\n", "f.jsonl")) parseExample(row, where);
      assert.fail(`accepted: ${line}`);
    } catch (e) {
      assert.ok(e instanceof ChatFormatError, String(e));
      assert.match((e as Error).message, want);
    }
  }
});

test("gpt2 tokenize --chat shows the ids and marks the trained tokens", () => {
  const conv = JSON.stringify({ messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello!" }] });
  const r = spawnSync(process.execPath, [CLI, "tokenize", "--chat"], { input: conv, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^<\|endoftext\|><\|user\|>Hi<\|end\|><\|assistant\|>\[\[Hello!<\|end\|>\]\]\n/);
  const j = spawnSync(process.execPath, [CLI, "tokenize", "--chat", "--json"], { input: conv, encoding: "utf8" });
  const out = JSON.parse(j.stdout);
  assert.deepEqual(out.ids, [EOT, USER, ...ids("Hi"), END, ASST, ...ids("Hello!"), END]);
  assert.deepEqual(out.trained, out.ids.map((_: number, i: number) => (i >= 5 ? 1 : 0)));
  const bad = spawnSync(process.execPath, [CLI, "tokenize", "--chat"], { input: "not json", encoding: "utf8" });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^gpt2: --chat expects a JSON conversation on stdin/);
});
