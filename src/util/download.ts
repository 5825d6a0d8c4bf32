// Resumable, checksummed downloads: HTTP Range into NAME.partial, sha256 checked, then renamed into place.

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { makeDir } from "./fs.js";

export class DownloadError extends Error {
  override name = "DownloadError";
}

export interface DownloadOptions {
  /** expected sha256 (hex); when absent, the server's x-linked-etag (Hugging Face LFS) is used if it looks like one */
  sha256?: string;
  /** extra request headers (e.g. Authorization for a gated Hugging Face repository) */
  headers?: Record<string, string>;
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
    res = await fetch(url, { headers: { ...opts.headers, ...(have > 0 ? { Range: `bytes=${have}-` } : {}) } });
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

