// GPT-2's tokenizer as Hugging Face tools read it (vocab.json, merges.txt, tokenizer_config.json), derived from
// tiktoken's rank table: each token's text in GPT-2's byte-to-unicode alphabet, and each merge recovered as the last
// step byte-pair encoding takes to build a token from the ranks below its own.

import { createRequire } from "node:module";
import { CHAT_TOKENS, EOT_TEXT, EOT_TOKEN } from "./bpe.js";

/** GPT-2's printable stand-in for each byte (openai/gpt-2 encoder.py bytes_to_unicode) */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const out = new Array<string>(256);
  for (const b of bs) out[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (out[b] === undefined) out[b] = String.fromCharCode(256 + n++);
  return out;
}

/** tiktoken's ranks: token bytes (as a latin1 string) by rank */
function ranks(): string[] {
  const g = createRequire(import.meta.url)("tiktoken/encoders/gpt2.json") as { bpe_ranks: string };
  const fields = g.bpe_ranks.split(" ");
  // "! 0 tok tok ...": base64 tokens from rank 0 on
  const start = Number(fields[1]);
  const out: string[] = [];
  for (let i = 2; i < fields.length; i++) out[start + i - 2] = Buffer.from(fields[i], "base64").toString("latin1");
  return out;
}

export interface HfTokenizerFiles {
  "vocab.json": string;
  "merges.txt": string;
}

/** vocab.json and merges.txt of GPT-2 (the same for every GPT-2 model). */
export function gpt2TokenizerFiles(): HfTokenizerFiles {
  const tokens = ranks();
  const rankOf = new Map<string, number>(tokens.map((t, i) => [t, i]));
  const alphabet = bytesToUnicode();
  const show = (t: string) => { let s = ""; for (let i = 0; i < t.length; i++) s += alphabet[t.charCodeAt(i)]; return s; };
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => { vocab[show(t)] = i; });
  vocab[EOT_TEXT] = EOT_TOKEN;
  const merges: string[] = ["#version: 0.2"];
  for (let r = 256; r < tokens.length; r++) {
    // byte-pair encode the token with the merges ranked below it: the two parts left are the merge that made it
    let parts = [...tokens[r]];
    for (;;) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i + 1 < parts.length; i++) {
        const k = rankOf.get(parts[i] + parts[i + 1]);
        if (k !== undefined && k < r && k < bestRank) { bestRank = k; best = i; }
      }
      if (best < 0) break;
      parts = [...parts.slice(0, best), parts[best] + parts[best + 1], ...parts.slice(best + 2)];
    }
    if (parts.length !== 2) throw new Error(`token ${r} does not come from one merge (${parts.length} parts)`);
    merges.push(`${show(parts[0])} ${show(parts[1])}`);
  }
  return { "vocab.json": JSON.stringify(vocab), "merges.txt": merges.join("\n") + "\n" };
}

/**
 * tokenizer_config.json: <|endoftext|> as GPT-2's bos/eos/unk; for a model with the chat tokens, those tokens and
 * the chat template in Jinja, so that transformers' apply_chat_template renders what gpt2ts renders.
 */
export function gpt2TokenizerConfig(opts: { contextLength: number; chat: boolean }): Record<string, unknown> {
  const special = (content: string) => ({ content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true });
  const added: Record<string, unknown> = { [EOT_TOKEN]: special(EOT_TEXT) };
  if (opts.chat) {
    for (const [name, id] of Object.entries(CHAT_TOKENS)) added[id] = special(`<|${name}|>`);
  }
  return {
    add_prefix_space: false, bos_token: EOT_TEXT, eos_token: EOT_TEXT, unk_token: EOT_TEXT, clean_up_tokenization_spaces: false,
    model_max_length: opts.contextLength, tokenizer_class: "GPT2Tokenizer", added_tokens_decoder: added,
    ...(opts.chat ? {
      additional_special_tokens: Object.keys(CHAT_TOKENS).map((n) => `<|${n}|>`),
      chat_template: "{{ '<|endoftext|>' }}{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}",
    } : {}),
  };
}
