// The named datasets' public sources (gpt2 prepare tinyshakespeare | fineweb-edu).

import { DownloadError } from "../util/download.js";

export interface NamedDataset {
  files: { url: string; name: string; sha256?: string }[];
  /** defaults that match how llm.c / build-nanogpt prepare it */
  valTokens: number;
  shardSize: number;
  docSeparator?: string;
}

/**
 * Public sources. `mirrors.data` (GPT2_DATA_URL, for tinyshakespeare) and `mirrors.hf` (HF_ENDPOINT, for Hugging
 * Face) point them elsewhere, e.g. a mirror.
 */
export function namedDataset(name: string, files = 14, mirrors: { data?: string; hf?: string } = {}): NamedDataset {
  if (name === "tinyshakespeare") {
    const base = mirrors.data ?? "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare";
    return {
      files: [{ url: `${base}/input.txt`, name: "tinyshakespeare.txt", sha256: "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed" }],
      valTokens: 32768, shardSize: 100_000_000, docSeparator: "\n\n",
    };
  }
  if (name === "fineweb-edu") {
    const hf = mirrors.hf ?? "https://huggingface.co";
    const n = Math.max(1, Math.min(14, files));
    return {
      files: Array.from({ length: n }, (_, i) => {
        const f = `${String(i).padStart(3, "0")}_00000.parquet`;
        return { url: `${hf}/datasets/HuggingFaceFW/fineweb-edu/resolve/main/sample/10BT/${f}`, name: `fineweb-edu-10BT/${f}` };
      }),
      valTokens: 100_000_000, shardSize: 100_000_000,
    };
  }
  throw new DownloadError(`unknown dataset "${name}" (known: tinyshakespeare, fineweb-edu)`);
}
