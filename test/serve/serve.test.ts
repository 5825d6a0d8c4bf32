// gpt2 serve's OpenAI-compatible API, spoken to by the official `openai` client, streaming included; bad requests
// get 4xx in OpenAI's error shape; a full queue 429; a client that goes away frees the server.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as path from "node:path";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { saveCheckpoint } from "../../src/io/checkpoint.js";
import { loadHF } from "../../src/io/hf.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { generate } from "../../src/model/generate.js";
import { GPT2 } from "../../src/model/gpt2.js";
import { startServer, type Server } from "../../src/serve/server.js";
import { renderChat } from "../../src/chat/template.js";
import { CHAT_VOCAB_SIZE, decode, encodeOrdinary } from "../../src/tokenizer/bpe.js";
import { Rng } from "../../src/util/rng.js";
import { CLI, fixture, tmpDir } from "../helpers.js";

const be = new JsBackend();
let model: GPT2, server: Server, client: OpenAI;
const serverLog: string[] = [];

before(async () => {
  model = loadHF(fixture("ref-gpt2vocab"), be);
  await model.extendVocab(CHAT_VOCAB_SIZE);
  server = await startServer({ model, name: "tiny-chat", port: 0, seed: 1, maxQueue: 0, maxTokens: 40, maxBodyBytes: 4096, log: (l) => serverLog.push(l) });
  client = new OpenAI({ baseURL: server.url + "v1", apiKey: "unused", maxRetries: 0 });
});
after(async () => { await server.close(); });

/** the greedy answer computed without the server: the model's own KV-cached generation */
function greedyTokens(ids: number[], maxNew: number, stop: number[]): number[] {
  return generate(model, ids, 1, new Rng(0), { maxNewTokens: maxNew, temperature: 0, stopAtEot: true, stopTokens: stop })[0];
}
const greedy = (ids: number[], maxNew: number, stop: number[]): string => decode(greedyTokens(ids, maxNew, stop));

test("it binds 127.0.0.1; GET /v1/models lists the model", async () => {
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => [m.id, m.object, m.owned_by]), [["tiny-chat", "model", "gpt2ts"]]);
  assert.equal((await client.models.retrieve("tiny-chat")).id, "tiny-chat");
});

test("chat completions, plain and streamed, give the model's greedy answer with usage and finish reasons", async () => {
  const messages = [{ role: "system" as const, content: "Be brief." }, { role: "user" as const, content: "Where is the key?" }];
  const r = await client.chat.completions.create({ model: "tiny-chat", messages, temperature: 0, max_tokens: 12 });
  const prompt = renderChat(messages, { generationPrompt: true }).ids;
  const want = greedy(prompt, 12, [50260]);
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(r.choices[0].message.content, want);
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  assert.equal(r.usage!.prompt_tokens, prompt.length);
  assert.equal(r.usage!.completion_tokens, greedyTokens(prompt, 12, [50260]).length);
  assert.equal(r.usage!.total_tokens, r.usage!.prompt_tokens + r.usage!.completion_tokens);
  const stream = await client.chat.completions.create({ model: "tiny-chat", messages, temperature: 0, max_tokens: 12, stream: true, stream_options: { include_usage: true } });
  let text = "", finish: string | null = null, usage = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    assert.equal(c.object, "chat.completion.chunk");
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) { text += ch.delta.content ?? ""; if (ch.finish_reason) finish = ch.finish_reason; }
  }
  assert.ok(chunks > 2, `${chunks} chunks`);
  assert.equal(text, want);
  assert.equal(finish, r.choices[0].finish_reason);
  assert.deepEqual(usage, r.usage);
});

test("n samples, seeds reproduce, stop strings cut before the stop, penalties and logit_bias apply", async () => {
  const messages = [{ role: "user" as const, content: "Say something." }];
  const a = await client.chat.completions.create({ model: "tiny-chat", messages, n: 3, temperature: 1, seed: 42, max_tokens: 10 });
  const b = await client.chat.completions.create({ model: "tiny-chat", messages, n: 3, temperature: 1, seed: 42, max_tokens: 10 });
  assert.equal(a.choices.length, 3);
  assert.deepEqual(a.choices.map((c) => c.index), [0, 1, 2]);
  assert.deepEqual(a.choices.map((c) => c.message.content), b.choices.map((c) => c.message.content));
  assert.ok(new Set(a.choices.map((c) => c.message.content)).size > 1, "three samples at temperature 1 differ");
  const free = await client.chat.completions.create({ model: "tiny-chat", messages, temperature: 0, max_tokens: 16 });
  const text = free.choices[0].message.content!;
  const stop = text.slice(4, 7);
  const cut = await client.chat.completions.create({ model: "tiny-chat", messages, temperature: 0, max_tokens: 16, stop: [stop] });
  assert.equal(cut.choices[0].message.content, text.slice(0, text.indexOf(stop)));
  assert.equal(cut.choices[0].finish_reason, "stop");
  // a bias of -100 on the greedy first token changes the answer; a large frequency penalty changes repetition
  const first = encodeOrdinary(text)[0];
  const biased = await client.chat.completions.create({ model: "tiny-chat", messages, temperature: 0, max_tokens: 4, logit_bias: { [first]: -100 } });
  assert.notEqual(encodeOrdinary(biased.choices[0].message.content ?? "")[0], first);
});

test("completions: a text prompt (or ids), plain and streamed", async () => {
  const r = await client.completions.create({ model: "tiny-chat", prompt: "Once upon a time", temperature: 0, max_tokens: 10 });
  const want = greedy([50256, ...encodeOrdinary("Once upon a time")], 10, []);
  assert.equal(r.object, "text_completion");
  assert.equal(r.choices[0].text, want);
  assert.equal(r.choices[0].finish_reason, "length");
  let text = "";
  for await (const c of await client.completions.create({ model: "tiny-chat", prompt: "Once upon a time", temperature: 0, max_tokens: 10, stream: true })) text += c.choices[0]?.text ?? "";
  assert.equal(text, want);
  const ids = await client.completions.create({ model: "tiny-chat", prompt: [50256, ...encodeOrdinary("Once upon a time")], temperature: 0, max_tokens: 10 });
  assert.equal(ids.choices[0].text, want);
});

test("bad requests: 400 with OpenAI's error shape naming the field; 404, 405, 413", async () => {
  const cases: [object, string | null, RegExp][] = [
    [{ messages: [{ role: "user", content: "x" }], temperature: 5 }, "temperature", /'temperature' must be between 0 and 2/],
    [{ messages: [{ role: "user", content: "x" }], max_tokens: 41 }, "max_tokens", /'max_tokens' must be between 1 and 40/],
    [{ messages: [{ role: "user", content: "x" }], n: 0 }, "n", /'n' must be between 1 and 8/],
    [{ messages: [{ role: "robot", content: "x" }] }, "messages", /message 1: role must be/],
    [{ messages: "hi" }, "messages", /"messages" must be a non-empty array/],
    [{ messages: [{ role: "user", content: "x" }], tools: [{ type: "function" }] }, "tools", /'tools' is not supported/],
    [{ messages: [{ role: "user", content: "x" }], stop: [1] }, "stop", /'stop' must be a string or up to 4/],
    [{ messages: [{ role: "user", content: "word ".repeat(80) }] }, "messages", /maximum context length is 64 tokens/],
  ];
  for (const [body, param, msg] of cases) {
    await assert.rejects(client.chat.completions.create({ model: "tiny-chat", ...body } as never), (e: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(e.status, 400, JSON.stringify(body));
      assert.equal(e.param, param);
      assert.equal(e.type, "invalid_request_error");
      assert.match(e.message, msg);
      return true;
    });
  }
  const raw = async (url: string, init: RequestInit) => { const r = await fetch(server.url + url, init); return { status: r.status, body: await r.json() }; };
  let r = await raw("v1/chat/completions", { method: "POST", body: "{not json", headers: { "content-type": "application/json" } });
  assert.equal(r.status, 400);
  assert.deepEqual(Object.keys(r.body.error).sort(), ["code", "message", "param", "type"]);
  assert.match(r.body.error.message, /not valid JSON/);
  r = await raw("v1/chat/completions", { method: "POST", body: JSON.stringify({ messages: [{ role: "user", content: "x".repeat(5000) }] }) });
  assert.equal(r.status, 413);
  assert.equal((await raw("v1/embeddings", { method: "POST", body: "{}" })).status, 404);
  assert.equal((await raw("v1/chat/completions", { method: "GET" })).status, 405);
  await assert.rejects(client.models.retrieve("other"), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 404);
});

test("one completion at a time: a second request while the queue is full gets 429; a client that leaves frees the server", async () => {
  const messages = [{ role: "user" as const, content: "Talk for a while." }];
  const stop = new AbortController();
  const long = await client.chat.completions.create({ model: "tiny-chat", messages, max_tokens: 40, temperature: 1, stream: true }, { signal: stop.signal });
  const it = long[Symbol.asyncIterator]();
  await it.next(); // the request is running
  await assert.rejects(client.chat.completions.create({ model: "tiny-chat", messages, max_tokens: 2 }), (e: InstanceType<typeof OpenAI.APIError>) => {
    assert.equal(e.status, 429);
    return true;
  });
  stop.abort();
  await it.next().catch(() => {});
  // the server notices the closed connection between two tokens, stops generating and is free again
  const t0 = performance.now();
  for (;;) {
    try {
      const r = await client.chat.completions.create({ model: "tiny-chat", messages, max_tokens: 2 });
      assert.equal(r.choices.length, 1);
      break;
    } catch (e) {
      assert.equal((e as InstanceType<typeof OpenAI.APIError>).status, 429);
      assert.ok(performance.now() - t0 < 10_000, "the server did not notice that the client left");
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  assert.ok(serverLog.some((l) => /chat\/completions: client went away/.test(l)), serverLog.join("\n"));
});

test("a model without chat tokens serves completions and refuses chat with a reason; gpt2 serve prints its address", async () => {
  const base = loadHF(fixture("ref-gpt2vocab"), be);
  const s = await startServer({ model: base, name: "base", port: 0, seed: 1 });
  try {
    const c = new OpenAI({ baseURL: s.url + "v1", apiKey: "unused", maxRetries: 0 });
    await assert.rejects(c.chat.completions.create({ model: "base", messages: [{ role: "user", content: "x" }] }), /no chat tokens .* use \/v1\/completions/);
    assert.equal((await c.completions.create({ model: "base", prompt: "x", max_tokens: 3 })).choices.length, 1);
  } finally {
    await s.close();
  }
  const dir = tmpDir();
  const file = path.join(dir, "m.gpt2ts");
  await saveCheckpoint(file, model);
  const child = spawn(process.execPath, [CLI, "serve", "--model", file, "--port", "0", "--backend", "js"], { stdio: ["ignore", "pipe", "pipe"] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => { out += d; const m = /serving m at (http:\/\/\S+\/)/.exec(out); if (m) resolve(m[1]); });
    child.on("exit", (code) => reject(new Error(`gpt2 serve exited with ${code}`)));
  });
  try {
    const c = new OpenAI({ baseURL: url + "v1", apiKey: "unused", maxRetries: 0 });
    const r = await c.chat.completions.create({ model: "m", messages: [{ role: "user", content: "Hello" }], temperature: 0, max_tokens: 5 });
    assert.equal(r.model, "m");
  } finally {
    child.kill("SIGINT");
  }
});
