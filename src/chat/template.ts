// The chat template: how a conversation becomes token ids, and which of them a fine-tune trains on. One template,
// used by SFT, `gpt2 chat`, `gpt2 serve` and `gpt2 eval chat` alike:
//
//   <|endoftext|> [<|system|> TEXT <|end|>] <|user|> TEXT <|end|> <|assistant|> TEXT <|end|> <|user|> ...
//
// Each message is its role token, its text (GPT-2 BPE of the text as written: chat tokens typed by a user stay
// ordinary text) and <|end|>. The loss counts each assistant message's text and its <|end|> (the model learns to
// answer and to stop); everything else is context. To ask for an answer, the prompt ends with <|assistant|>.
//
// Rows that are plain text, {"prompt": "...", "completion": "..."}, are rendered without chat tokens, as TRL's
// prompt-completion format: <|endoftext|> PROMPT COMPLETION <|endoftext|>, trained on the completion and the final
// <|endoftext|>.

import { CHAT_TOKENS, encodeOrdinary, EOT_TOKEN } from "../tokenizer/bpe.js";

export type Role = "system" | "user" | "assistant";

export interface Message {
  role: Role;
  content: string;
}

/** One training or evaluation row: a conversation, or a plain-text prompt and completion. */
export type Example =
  | { kind: "chat"; messages: Message[] }
  | { kind: "text"; prompt: string; completion: string };

export interface Rendered {
  ids: number[];
  /** trained[i] = 1 when ids[i] is a token the loss counts (predicted from the tokens before it) */
  trained: Uint8Array;
}

/** A row or request that does not follow the format; the message names where (file:line, or the field). */
export class ChatFormatError extends Error {
  override name = "ChatFormatError";
}

const ROLE_TOKEN: Record<Role, number> = { system: CHAT_TOKENS.system, user: CHAT_TOKENS.user, assistant: CHAT_TOKENS.assistant };

/**
 * Renders a conversation. With `generationPrompt` the ids end with <|assistant|>, ready for the model to answer
 * (the conversation then normally ends with a user message).
 */
export function renderChat(messages: Message[], opts: { generationPrompt?: boolean } = {}): Rendered {
  const ids: number[] = [EOT_TOKEN];
  const trained: number[] = [0];
  for (const m of messages) {
    const learn = m.role === "assistant" ? 1 : 0;
    ids.push(ROLE_TOKEN[m.role]);
    trained.push(0);
    for (const id of encodeOrdinary(m.content)) { ids.push(id); trained.push(learn); }
    ids.push(CHAT_TOKENS.end);
    trained.push(learn);
  }
  if (opts.generationPrompt) { ids.push(CHAT_TOKENS.assistant); trained.push(0); }
  return { ids, trained: Uint8Array.from(trained) };
}

/** Renders a plain-text prompt (and completion, when training). */
export function renderText(prompt: string, completion?: string): Rendered {
  const p = encodeOrdinary(prompt);
  const c = completion === undefined ? null : encodeOrdinary(completion);
  const n = 1 + p.length + (c ? c.length + 1 : 0);
  const ids = new Array<number>(n), trained = new Uint8Array(n);
  ids[0] = EOT_TOKEN;
  for (let i = 0; i < p.length; i++) ids[1 + i] = p[i];
  if (c) {
    for (let i = 0; i < c.length; i++) { ids[1 + p.length + i] = c[i]; trained[1 + p.length + i] = 1; }
    ids[n - 1] = EOT_TOKEN;
    trained[n - 1] = 1;
  }
  return { ids, trained };
}

export function renderExample(ex: Example): Rendered {
  return ex.kind === "chat" ? renderChat(ex.messages) : renderText(ex.prompt, ex.completion);
}

/**
 * The prompt an evaluation or a server hands the model, and the reference answer: a conversation up to (without)
 * its last assistant message, or the plain-text prompt.
 */
export function promptAndAnswer(ex: Example): { prompt: number[]; answer: string; chat: boolean } {
  if (ex.kind === "text") return { prompt: renderText(ex.prompt).ids, answer: ex.completion, chat: false };
  let last = ex.messages.length - 1;
  while (last >= 0 && ex.messages[last].role !== "assistant") last--;
  if (last < 0) throw new ChatFormatError("the conversation has no assistant message to compare with");
  return { prompt: renderChat(ex.messages.slice(0, last), { generationPrompt: true }).ids, answer: ex.messages[last].content, chat: true };
}

/**
 * A message's text: a string, or OpenAI's list of content parts ({"type": "text", "text": ...}; other part types
 * such as images are refused).
 */
function contentText(c: unknown, where: string): string {
  if (typeof c === "string") return c;
  if (Array.isArray(c)) {
    let text = "";
    for (const [k, part] of c.entries()) {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (!p || typeof p !== "object" || p.type !== "text" || typeof p.text !== "string") {
        throw new ChatFormatError(`${where}: content part ${k + 1} must be {"type": "text", "text": "..."}`);
      }
      text += p.text;
    }
    return text;
  }
  throw new ChatFormatError(`${where}: "content" must be a string`);
}

/**
 * Checks a list of messages in OpenAI's chat format: roles system, user or assistant, a system message only first,
 * string content. `needAssistant`: a training row must hold a non-empty assistant message to learn from.
 */
export function parseMessages(x: unknown, where: string, opts: { needAssistant?: boolean } = {}): Message[] {
  if (!Array.isArray(x) || x.length === 0) throw new ChatFormatError(`${where}: "messages" must be a non-empty array of {"role", "content"} objects`);
  const out: Message[] = [];
  for (const [i, m] of x.entries()) {
    const at = `${where}: message ${i + 1}`;
    if (!m || typeof m !== "object" || Array.isArray(m)) throw new ChatFormatError(`${at} must be an object with "role" and "content"`);
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (role !== "system" && role !== "user" && role !== "assistant") {
      throw new ChatFormatError(`${at}: role must be "system", "user" or "assistant", got ${JSON.stringify(role ?? null)}`);
    }
    if (role === "system" && i > 0) throw new ChatFormatError(`${at}: a system message may only come first`);
    const text = contentText(content, at);
    if (role === "assistant" && opts.needAssistant && text.trim() === "") throw new ChatFormatError(`${at}: empty assistant message (nothing to learn)`);
    out.push({ role, content: text });
  }
  if (opts.needAssistant && !out.some((m) => m.role === "assistant")) throw new ChatFormatError(`${where}: no assistant message to train on`);
  return out;
}

/**
 * One JSONL row: {"messages": [...]} (OpenAI's chat format) or {"prompt": "...", "completion": "..."}. Other fields
 * are left for others (an RL checker reads "answer", for instance).
 */
export function parseExample(row: unknown, where: string, opts: { needAssistant?: boolean } = { needAssistant: true }): Example {
  if (!row || typeof row !== "object" || Array.isArray(row)) throw new ChatFormatError(`${where}: expected an object with "messages" or "prompt" and "completion"`);
  const r = row as Record<string, unknown>;
  if ("messages" in r) return { kind: "chat", messages: parseMessages(r.messages, where, opts) };
  if ("prompt" in r || "completion" in r) {
    if (typeof r.prompt !== "string") throw new ChatFormatError(`${where}: "prompt" must be a string`);
    if (typeof r.completion !== "string") throw new ChatFormatError(`${where}: "completion" must be a string`);
    if (opts.needAssistant && r.completion.trim() === "") throw new ChatFormatError(`${where}: empty "completion" (nothing to learn)`);
    return { kind: "text", prompt: r.prompt, completion: r.completion };
  }
  throw new ChatFormatError(`${where}: expected "messages" (a conversation) or "prompt" and "completion"`);
}

/** Parses JSONL text into rows, naming file:line for a line that is not JSON. Blank lines are skipped. */
export function parseJsonl(text: string, file: string): { row: unknown; where: string }[] {
  const out: { row: unknown; where: string }[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    const where = `${file}:${i + 1}`;
    let row: unknown;
    try { row = JSON.parse(line); } catch { throw new ChatFormatError(`${where}: not valid JSON`); }
    out.push({ row, where });
  }
  return out;
}
