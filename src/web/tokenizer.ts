// GPT-2's BPE in the browser: OpenAI's tiktoken (its WASM build, the same as Node's), with the WASM module and GPT-2's
// ranks fetched from the page's own origin (copied there by scripts/build-web.mjs), so ids are tiktoken's, as in Node.

import { init, Tiktoken } from "tiktoken/lite/init";
import type { Tokenizer } from "../tokenizer/char.js";
import { ByteStreamDecoder, decodeBytesWith, EOT_TEXT, EOT_TOKEN, VOCAB_SIZE } from "../tokenizer/special.js";

let loading: Promise<Tokenizer> | null = null;

/** GPT-2's tokenizer, loaded once from `base` (the folder of the page's files). */
export function gpt2Tokenizer(base: string | URL): Promise<Tokenizer> {
  // a failed load is tried again next time (a network hiccup must not need a reload)
  loading ??= load(base).catch((e) => { loading = null; throw e; });
  return loading;
}

async function get(url: URL): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url.pathname}: HTTP ${r.status} (GPT-2's tokenizer files are served beside the page)`);
  return r;
}

async function load(base: string | URL): Promise<Tokenizer> {
  const url = (f: string) => new URL(f, base);
  await init(async (imports) => WebAssembly.instantiate(await (await get(url("tiktoken_bg.wasm"))).arrayBuffer(), imports));
  const ranks = await (await get(url("gpt2.json"))).json() as { bpe_ranks: string; special_tokens: Record<string, number>; pat_str: string };
  const enc = new Tiktoken(ranks.bpe_ranks, ranks.special_tokens, ranks.pat_str);
  const bytes = (ids: ArrayLike<number>) => decodeBytesWith((run) => enc.decode(run), ids);
  return {
    kind: "gpt2", vocabSize: VOCAB_SIZE, eot: EOT_TOKEN, spec: null,
    encode(text, opts = {}) {
      if (!opts.allowSpecial) return Array.from(enc.encode_ordinary(text));
      const out: number[] = [];
      text.split(EOT_TEXT).forEach((part, i) => {
        if (i > 0) out.push(EOT_TOKEN);
        out.push(...enc.encode_ordinary(part));
      });
      return out;
    },
    decode: (ids) => new TextDecoder().decode(bytes(ids)),
    decoder: () => new ByteStreamDecoder(bytes),
  };
}
