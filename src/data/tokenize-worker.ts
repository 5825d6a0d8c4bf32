// worker_threads body: tokenizes batches of documents with its own tiktoken instance.
// Message in: { id, texts: string[], starts: boolean[] }; out: { id, tokens: Uint16Array, lens: Uint32Array }:
// EOT before each document start, and each text's token count (its EOT included), transferred without a copy.

import { parentPort } from "node:worker_threads";
import { EOT_TOKEN, encodeOrdinary } from "../tokenizer/bpe.js";

export function tokenizeBatch(texts: string[], starts: boolean[]): { tokens: Uint16Array; lens: Uint32Array } {
  const parts: Uint32Array[] = [];
  let n = 0;
  for (let i = 0; i < texts.length; i++) {
    const ids = encodeOrdinary(texts[i]);
    parts.push(ids);
    n += ids.length + (starts[i] ? 1 : 0);
  }
  const out = new Uint16Array(n), lens = new Uint32Array(texts.length);
  let o = 0;
  for (let i = 0; i < texts.length; i++) {
    if (starts[i]) out[o++] = EOT_TOKEN;
    out.set(parts[i], o);
    o += parts[i].length;
    lens[i] = parts[i].length + (starts[i] ? 1 : 0);
  }
  return { tokens: out, lens };
}

parentPort?.on("message", (msg: { id: number; texts: string[]; starts: boolean[] }) => {
  const { tokens, lens } = tokenizeBatch(msg.texts, msg.starts);
  parentPort!.postMessage({ id: msg.id, tokens, lens }, [tokens.buffer as ArrayBuffer, lens.buffer as ArrayBuffer]);
});
