// An HTTP server with OpenAI's API for one model: POST /v1/chat/completions, POST /v1/completions (each streamed as
// server-sent events or not), GET /v1/models, and a chat page at /. Requests are validated field by field and
// refused with 400 in OpenAI's error shape; one completion runs at a time (the backend uses every core), the others
// wait in a bounded queue (full: 429); bodies are capped (413); a client that goes away stops its generation.
// It binds 127.0.0.1 unless told otherwise.

import { randomBytes } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { cacheFor, complete, type CompletionOptions, type FinishReason } from "../chat/complete.js";
import { ChatFormatError, parseMessages, renderChat } from "../chat/template.js";
import type { KVCache } from "../model/generate.js";
import type { GPT2 } from "../model/gpt2.js";
import { CHAT_TOKENS, CHAT_VOCAB_SIZE, EOT_TOKEN, encodeOrdinary } from "../tokenizer/bpe.js";
import { Rng } from "../util/rng.js";
import { chatPage } from "./page.js";

export interface ServeOptions {
  model: GPT2;
  /** the name /v1/models lists and responses carry */
  name: string;
  port?: number;
  host?: string;
  /** requests waiting for their turn beyond the one running (more: 429) */
  maxQueue?: number;
  /** max_tokens a request may ask for (default: the model's context) */
  maxTokens?: number;
  /** largest request body in bytes (413 beyond) */
  maxBodyBytes?: number;
  /** samples per request at most (n) */
  maxN?: number;
  /** seeds requests that give none (the library draws no randomness of its own) */
  seed: number;
  /** one line per request, for the operator's log */
  log?: (line: string) => void;
}

export interface Server {
  url: string;
  close(): Promise<void>;
}

/** A refused request: status, OpenAI's error fields. */
class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly param: string | null = null, readonly code: string | null = null,
    readonly type = status === 429 ? "rate_limit_error" : status >= 500 ? "server_error" : "invalid_request_error") {
    super(message);
  }
}

/** The client left (closed the connection) before its answer: nothing to answer, nothing to log as an error. */
class ClientGone extends Error {}

/** One completion at a time, the rest in a bounded first-come queue. */
class Turnstile {
  private busy = false;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly maxQueue: number) {}

  /** resolves when it is this request's turn; throws 429 at once when the queue is full */
  async enter(signal: AbortSignal): Promise<void> {
    if (!this.busy) { this.busy = true; return; }
    if (this.waiting.length >= this.maxQueue) throw new ApiError(429, `the server is busy (${this.waiting.length} requests waiting); try again shortly`, null, "server_busy");
    await new Promise<void>((resolve, reject) => {
      const go = () => { signal.removeEventListener("abort", gone); resolve(); };
      const gone = () => { this.waiting.splice(this.waiting.indexOf(go), 1); reject(new ClientGone("client went away while queued")); };
      this.waiting.push(go);
      signal.addEventListener("abort", gone, { once: true });
    });
  }

  leave(): void {
    const next = this.waiting.shift();
    if (next) next(); else this.busy = false;
  }
}

type Json = Record<string, unknown>;

/** Checks an optional number field against a range. */
function numberField(body: Json, key: string, def: number, min: number, max: number, int = false): number {
  const v = body[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== "number" || !Number.isFinite(v) || (int && !Number.isInteger(v))) {
    throw new ApiError(400, `'${key}' must be ${int ? "an integer" : "a number"}, got ${JSON.stringify(v)}`, key);
  }
  if (v < min || v > max) throw new ApiError(400, `'${key}' must be between ${min} and ${max}, got ${v}`, key);
  return v;
}

const UNSUPPORTED = ["tools", "functions", "tool_choice", "function_call", "logprobs", "top_logprobs", "echo", "suffix", "best_of", "audio", "modalities", "prediction"];

export async function startServer(o: ServeOptions): Promise<Server> {
  const { model } = o;
  const context = model.context;
  const maxTokensLimit = Math.min(o.maxTokens ?? context, context);
  const maxBody = o.maxBodyBytes ?? 1 << 20;
  const maxN = o.maxN ?? 8;
  const turnstile = new Turnstile(o.maxQueue ?? 16);
  const created = Math.floor(Date.now() / 1000);
  const chatCapable = model.config.vocabSize >= CHAT_VOCAB_SIZE;
  // one KV cache (context-long, for the last request's n), reused while requests ask for the same n; another n
  // replaces it (the old one is garbage, its memory given back by the backend's finalizer)
  let kv: KVCache | null = null;
  const cache = (n: number): KVCache => {
    if (!kv || kv.B !== n) { kv = null; kv = cacheFor(model, n, context, 0); }
    kv.reset();
    return kv;
  };
  const seeds = new Rng(o.seed);

  /** the sampling fields both endpoints share */
  function sampling(body: Json, promptLength: number, promptField: string): { n: number; opts: CompletionOptions; rng: Rng } {
    for (const k of UNSUPPORTED) {
      if (body[k] !== undefined && body[k] !== null && body[k] !== false) throw new ApiError(400, `'${k}' is not supported by this server`, k);
    }
    if (body.model !== undefined && typeof body.model !== "string") throw new ApiError(400, "'model' must be a string", "model");
    const n = numberField(body, "n", 1, 1, maxN, true);
    const room = context - promptLength;
    if (room < 1) {
      throw new ApiError(400, `This model's maximum context length is ${context} tokens. However, your prompt is ${promptLength} tokens.`, promptField, "context_length_exceeded");
    }
    // max_completion_tokens is the newer name of max_tokens; both are checked, the newer wins
    const legacy = numberField(body, "max_tokens", Math.min(maxTokensLimit, room), 1, maxTokensLimit, true);
    const asked = numberField(body, "max_completion_tokens", legacy, 1, maxTokensLimit, true);
    let stopText: string[] = [];
    if (typeof body.stop === "string") {
      if (body.stop === "") throw new ApiError(400, "'stop' must not be empty", "stop");
      stopText = [body.stop];
    }
    else if (Array.isArray(body.stop)) {
      if (body.stop.length > 4 || !body.stop.every((s) => typeof s === "string" && s.length > 0)) throw new ApiError(400, "'stop' must be a string or up to 4 non-empty strings", "stop");
      stopText = body.stop as string[];
    } else if (body.stop !== undefined && body.stop !== null) throw new ApiError(400, "'stop' must be a string or an array of strings", "stop");
    const seed = body.seed === undefined || body.seed === null ? seeds.nextU32() : numberField(body, "seed", 0, -(2 ** 53), 2 ** 53, true);
    let logitBias: [number, number][] = [];
    if (body.logit_bias !== undefined && body.logit_bias !== null) {
      if (typeof body.logit_bias !== "object" || Array.isArray(body.logit_bias)) throw new ApiError(400, "'logit_bias' must map token ids to numbers", "logit_bias");
      logitBias = Object.entries(body.logit_bias as Json).map(([k, v]) => {
        const id = /^(0|[1-9]\d{0,9})$/.test(k) ? Number(k) : -1;
        if (id < 0 || id >= model.config.vocabSize || typeof v !== "number" || !(v >= -100 && v <= 100)) {
          throw new ApiError(400, `'logit_bias' entry ${JSON.stringify(k)}: ${JSON.stringify(v)} must be a token id of this model and a number in [-100, 100]`, "logit_bias");
        }
        return [id, v];
      });
    }
    if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean") throw new ApiError(400, "'stream' must be a boolean", "stream");
    if (body.stream_options !== undefined && body.stream_options !== null) {
      const so = body.stream_options as Json;
      if (typeof so !== "object" || Array.isArray(so)) throw new ApiError(400, "'stream_options' must be an object", "stream_options");
      if (!body.stream) throw new ApiError(400, "'stream_options' needs 'stream': true", "stream_options");
      if (so.include_usage !== undefined && typeof so.include_usage !== "boolean") throw new ApiError(400, "'stream_options.include_usage' must be a boolean", "stream_options");
    }
    return {
      n,
      rng: new Rng(seed >>> 0),
      opts: {
        maxTokens: Math.min(asked, room),
        temperature: numberField(body, "temperature", 1, 0, 2),
        topP: numberField(body, "top_p", 1, 0, 1),
        presencePenalty: numberField(body, "presence_penalty", 0, -2, 2),
        frequencyPenalty: numberField(body, "frequency_penalty", 0, -2, 2),
        stopTokens: [EOT_TOKEN],
        stopText,
        logitBias: logitBias.length ? logitBias : undefined,
      },
    };
  }

  /** The prompt's tokens, and whether it is a chat (chat tokens end a sample there). */
  function promptOf(body: Json, chat: boolean): number[] {
    if (chat) {
      if (!chatCapable) throw new ApiError(400, `model ${o.name} has no chat tokens (it was not fine-tuned on conversations with gpt2 sft); use /v1/completions`, "model");
      try {
        return renderChat(parseMessages(body.messages, "messages"), { generationPrompt: true }).ids;
      } catch (e) {
        if (e instanceof ChatFormatError) throw new ApiError(400, e.message, "messages");
        throw e;
      }
    }
    let p = body.prompt;
    if (Array.isArray(p) && p.length === 1 && (typeof p[0] === "string" || Array.isArray(p[0]))) p = p[0];
    if (typeof p === "string") return [EOT_TOKEN, ...encodeOrdinary(p)];
    if (Array.isArray(p) && p.length > 0 && p.every((t) => Number.isInteger(t) && t >= 0 && t < model.config.vocabSize)) return p as number[];
    throw new ApiError(400, "'prompt' must be a string or an array of token ids of this model (one prompt per request)", "prompt");
  }

  async function readBody(req: http.IncomingMessage): Promise<Json> {
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > maxBody) throw new ApiError(413, `the request body is ${declared} bytes; at most ${maxBody} are accepted`);
    const chunks: Buffer[] = [];
    let size = 0;
    const chunksOf = async function* () {
      try { for await (const c of req) yield c as Buffer; } catch (e) { throw new ClientGone((e as Error).message); }
    };
    for await (const c of chunksOf()) {
      size += (c as Buffer).length;
      if (size > maxBody) throw new ApiError(413, `the request body is larger than ${maxBody} bytes`);
      chunks.push(c as Buffer);
    }
    let body: unknown;
    try { body = JSON.parse(Buffer.concat(chunks).toString("utf8")); } catch { throw new ApiError(400, "the request body is not valid JSON"); }
    if (!body || typeof body !== "object" || Array.isArray(body)) throw new ApiError(400, "the request body must be a JSON object");
    return body as Json;
  }

  async function completion(req: http.IncomingMessage, res: http.ServerResponse, chat: boolean): Promise<void> {
    const body = await readBody(req);
    const prompt = promptOf(body, chat);
    const { n, opts, rng } = sampling(body, prompt.length, chat ? "messages" : "prompt");
    if (chat) opts.stopTokens = [CHAT_TOKENS.end, EOT_TOKEN];
    const stream = body.stream === true;
    const usageInStream = stream && (body.stream_options as Json | undefined)?.include_usage === true;
    const id = `${chat ? "chatcmpl" : "cmpl"}-${randomBytes(12).toString("hex")}`;
    const object = chat ? (stream ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    const abort = new AbortController();
    res.on("close", () => { if (!res.writableFinished) abort.abort(); });
    await turnstile.enter(abort.signal);
    const t0 = performance.now();
    const texts = Array.from({ length: n }, () => "");
    const reasons: (FinishReason | null)[] = new Array(n).fill(null);
    let completionTokens = 0;
    const created = Math.floor(Date.now() / 1000);
    // with include_usage every chunk has "usage": null but the last, which has only the usage (as OpenAI's)
    const chunk = (choices: Json[], extra: Json = usageInStream ? { usage: null } : {}) =>
      res.write(`data: ${JSON.stringify({ id, object, created, model: o.name, system_fingerprint: null, choices, ...extra })}\n\n`);
    try {
      if (stream) {
        res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" });
        if (chat) for (let index = 0; index < n; index++) chunk([{ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]);
      }
      for await (const ev of complete(model, cache(n), prompt, opts, rng, abort.signal)) {
        if (ev.kind === "text") {
          texts[ev.index] += ev.text;
          if (stream) chunk([chat ? { index: ev.index, delta: { content: ev.text }, logprobs: null, finish_reason: null } : { index: ev.index, text: ev.text, logprobs: null, finish_reason: null }]);
        } else if (ev.reason !== "abort") {
          reasons[ev.index] = ev.reason;
          completionTokens += ev.tokens.length;
          if (stream) chunk([chat ? { index: ev.index, delta: {}, logprobs: null, finish_reason: ev.reason } : { index: ev.index, text: "", logprobs: null, finish_reason: ev.reason }]);
        }
      }
    } finally {
      turnstile.leave();
    }
    if (abort.signal.aborted) { o.log?.(`${req.method} ${req.url}: client went away`); return; }
    const usage = { prompt_tokens: prompt.length, completion_tokens: completionTokens, total_tokens: prompt.length + completionTokens };
    o.log?.(`${req.method} ${req.url}: ${prompt.length} prompt + ${completionTokens} completion tokens, n=${n}, ${(performance.now() - t0).toFixed(0)} ms`);
    if (stream) {
      if (usageInStream) chunk([], { usage });
      res.end("data: [DONE]\n\n");
      return;
    }
    const choices = texts.map((text, index) => chat
      ? { index, message: { role: "assistant", content: text, refusal: null }, logprobs: null, finish_reason: reasons[index] }
      : { index, text, logprobs: null, finish_reason: reasons[index] });
    sendJson(res, 200, { id, object, created, model: o.name, system_fingerprint: null, choices, usage });
  }

  const modelEntry = { id: o.name, object: "model", created, owned_by: "gpt2ts" };
  const page = chatPage(o.name, chatCapable, maxTokensLimit);
  const server = http.createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    const route = async () => {
      if (req.method === "GET" && (url === "/" || url === "/index.html")) {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
        res.end(page);
        return;
      }
      if (req.method === "GET" && url === "/v1/models") return sendJson(res, 200, { object: "list", data: [modelEntry] });
      if (req.method === "GET" && url.startsWith("/v1/models/")) {
        let asked = "";
        try { asked = decodeURIComponent(url.slice("/v1/models/".length)); } catch { /* a malformed escape names no model */ }
        if (asked !== o.name) throw new ApiError(404, `The model '${url.slice(11)}' does not exist`, "model", "model_not_found");
        return sendJson(res, 200, modelEntry);
      }
      if (url === "/v1/chat/completions" || url === "/v1/completions") {
        if (req.method !== "POST") { res.setHeader("allow", "POST"); throw new ApiError(405, `${url} takes POST`); }
        return completion(req, res, url === "/v1/chat/completions");
      }
      throw new ApiError(404, `no route ${req.method} ${url}`);
    };
    route().catch((e: Error) => {
      if (e instanceof ClientGone) { o.log?.(`${req.method} ${url}: ${e.message}`); res.destroy(); return; }
      const err = e instanceof ApiError ? e : new ApiError(500, e.message);
      if (err.status >= 500) o.log?.(`${req.method} ${url}: ${e.stack ?? e.message}`);
      if (res.headersSent) { res.end(); return; }
      sendJson(res, err.status, { error: { message: err.message, type: err.type, param: err.param, code: err.code } });
    });
  });
  server.requestTimeout = 0; // a long generation is not a slow client
  const host = o.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}/`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
