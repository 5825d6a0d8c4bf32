// Resumable, checksummed downloads (HTTP Range into NAME.partial, sha256 checked, then renamed into place) and the
// named datasets' public sources.

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeDir } from "../util/fs.js";

export class DownloadError extends Error {
  override name = "DownloadError";
}

export interface DownloadOptions {
  /** expected sha256 (hex); when absent, the server's x-linked-etag (Hugging Face LFS) is used if it looks like one */
  sha256?: string;
  onProgress?: (done: number, total: number) => void;
  /** how to do without the download, for the offline message (default: pass a local file with --input) */
  offline?: string;
}

async function sha256File(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Downloads url to dest unless dest already exists; resumes a .partial file left by an interrupted run. */
export async function download(url: string, dest: string, opts: DownloadOptions = {}): Promise<string> {
  if (fs.existsSync(dest)) return dest;
  makeDir(path.dirname(dest));
  const partial = dest + ".partial";
  let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
  let res: Response;
  try {
    res = await fetch(url, { headers: have > 0 ? { Range: `bytes=${have}-` } : {} });
  } catch (e) {
    throw new DownloadError(`cannot download ${url}: ${(e as Error).cause ?? (e as Error).message} (offline? ${opts.offline ?? "pass a local file with --input"})`);
  }
  if (res.status === 416 && have > 0) { have = 0; fs.rmSync(partial); return download(url, dest, opts); }
  if (!res.ok) throw new DownloadError(`cannot download ${url}: HTTP ${res.status} ${res.statusText}`);
  if (have > 0 && res.status !== 206) have = 0; // the server ignored the range: start over
  const etag = (res.headers.get("x-linked-etag") ?? "").replace(/"/g, "");
  const expected = opts.sha256 ?? (/^[0-9a-f]{64}$/.test(etag) ? etag : undefined);
  const total = have + Number(res.headers.get("content-length") ?? 0);
  const out = fs.createWriteStream(partial, { flags: have > 0 ? "a" : "w" });
  let done = have;
  if (!res.body) throw new DownloadError(`cannot download ${url}: empty response`);
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
    done += chunk.byteLength;
    opts.onProgress?.(done, total);
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  if (expected) {
    const got = await sha256File(partial);
    if (got !== expected) {
      fs.rmSync(partial);
      throw new DownloadError(`checksum mismatch for ${url}: sha256 ${got}, expected ${expected}; the partial file was removed, run again`);
    }
  }
  fs.renameSync(partial, dest);
  return dest;
}

export interface NamedDataset {
  files: { url: string; name: string; sha256?: string }[];
  /** defaults that match how llm.c / build-nanogpt prepare it */
  valTokens: number;
  shardSize: number;
  docSeparator?: string;
}

/** Public sources. GPT2_DATA_URL (tinyshakespeare) and HF_ENDPOINT (Hugging Face) point them elsewhere, e.g. a mirror. */
export function namedDataset(name: string, files = 14): NamedDataset {
  if (name === "tinyshakespeare") {
    const base = process.env.GPT2_DATA_URL ?? "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare";
    return {
      files: [{ url: `${base}/input.txt`, name: "tinyshakespeare.txt", sha256: "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed" }],
      valTokens: 32768, shardSize: 100_000_000, docSeparator: "\n\n",
    };
  }
  if (name === "fineweb-edu") {
    const hf = process.env.HF_ENDPOINT ?? "https://huggingface.co";
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
