// Pretrained weights by name, from the Hugging Face hub: gpt2, gpt2-medium, gpt2-large, gpt2-xl (OpenAI's GPT-2,
// openai-community/*) or any ORG/REPO in GPT-2's layout. `pull` downloads config.json and model.safetensors into a
// cache folder, resumable, each file checked against the hub's own record of it (the sha256 of LFS files, the git
// blob hash of small ones); a model name given to -e / --model resolves to that folder, pulling it on first use.

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { download, DownloadError } from "../util/download.js";
import { makeDir } from "../util/fs.js";
import { cacheDir } from "../util/env.js";

/** OpenAI's GPT-2 checkpoints, as nanoGPT's init_from names them */
export const GPT2_MODELS: Record<string, string> = {
  gpt2: "openai-community/gpt2",
  "gpt2-medium": "openai-community/gpt2-medium",
  "gpt2-large": "openai-community/gpt2-large",
  "gpt2-xl": "openai-community/gpt2-xl",
};

/** the files a GPT-2 in Hugging Face layout needs */
const FILES = ["config.json", "model.safetensors"];

export interface HubOptions {
  /** the hub (HF_ENDPOINT): https://huggingface.co, or a mirror */
  endpoint?: string;
  /** a token for gated or private repositories (HF_TOKEN) */
  token?: string;
  revision?: string;
  /** where pulled models are kept (default ~/.cache/gpt2ts/models) */
  cache?: string;
  /** resolveModel: use the cache only, never download (data-parallel ranks would download together) */
  noPull?: string;
  /** one line per event (a download starting, done) */
  say?: (line: string) => void;
  onProgress?: (file: string, done: number, total: number) => void;
}

/** The hub repository a name means (a known GPT-2 name or ORG/REPO), or null for something else (a path). */
export function hubRepo(name: string): string | null {
  if (GPT2_MODELS[name]) return GPT2_MODELS[name];
  // ORG/REPO; not something that reads as a file (a checkpoint, an llm.c .bin)
  if (/\.(gpt2ts|bin|safetensors|json)$/.test(name)) return null;
  return /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(name) && !name.includes("..") ? name : null;
}

export function modelCacheDir(repo: string, o: HubOptions = {}): string {
  return path.join(o.cache ?? cacheDir("models"), repo.replace("/", "--"));
}

interface TreeEntry { type: string; path: string; size: number; oid: string; lfs?: { oid: string; size: number } }

/** git's blob hash of a file: sha1("blob <size>\0" + contents), what the hub lists for files outside LFS */
function gitBlobSha1(file: string): string {
  const data = fs.readFileSync(file);
  return createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
}

/** Downloads a model's files into the cache (what is there and intact already is kept); returns its folder. */
export async function pull(repo: string, o: HubOptions = {}): Promise<string> {
  const endpoint = (o.endpoint ?? "https://huggingface.co").replace(/\/$/, "");
  const revision = o.revision ?? "main";
  const headers: Record<string, string> = o.token ? { authorization: `Bearer ${o.token}` } : {};
  const dir = modelCacheDir(repo, o);
  // the hub's record of the files: sizes and hashes to check the downloads against
  const treeUrl = `${endpoint}/api/models/${repo}/tree/${encodeURIComponent(revision)}`;
  let tree: TreeEntry[];
  try {
    const res = await fetch(treeUrl, { headers });
    if (res.status === 401 || res.status === 403) throw new DownloadError(`${repo} on ${endpoint} needs an access token (set HF_TOKEN)`);
    if (res.status === 404) throw new DownloadError(`${repo} is not a file or folder here, and not a model on ${endpoint} (revision ${revision})`);
    if (!res.ok) throw new DownloadError(`cannot list ${repo} on ${endpoint}: HTTP ${res.status}`);
    tree = (await res.json()) as TreeEntry[];
  } catch (e) {
    if (e instanceof DownloadError) throw e;
    throw new DownloadError(`cannot reach ${endpoint} for ${repo}: ${(e as Error).cause ?? (e as Error).message} (offline? pull it where there is a network and copy ${dir})`);
  }
  if (!Array.isArray(tree)) throw new DownloadError(`${treeUrl}: unexpected answer (not a file list)`);
  makeDir(dir);
  for (const name of FILES) {
    const entry = tree.find((t) => t.path === name && t.type === "file");
    if (!entry) throw new DownloadError(`${repo} has no ${name}: not a GPT-2 in Hugging Face's layout (config.json + model.safetensors)`);
    const dest = path.join(dir, name);
    const sha256 = entry.lfs?.oid;
    if (fs.existsSync(dest)) {
      // kept from an earlier pull: trusted when its size matches (hashing a 6 GB file on every use would be slow)
      if (fs.statSync(dest).size === (entry.lfs?.size ?? entry.size)) continue;
      fs.rmSync(dest);
    }
    o.say?.(`downloading ${repo}/${name} (${((entry.lfs?.size ?? entry.size) / 2 ** 20).toFixed(1)} MiB) into ${dir}`);
    await download(`${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${name}`, dest, {
      sha256, headers, offline: `pull it where there is a network and copy ${dir}`,
      onProgress: (done, total) => o.onProgress?.(name, done, total),
    });
    if (!sha256 && gitBlobSha1(dest) !== entry.oid) {
      fs.rmSync(dest);
      throw new DownloadError(`${repo}/${name} does not match the hub's record (git blob ${entry.oid}); removed, run again`);
    }
  }
  return dir;
}

/**
 * A model argument as a local path: an existing path as it is; a model name (gpt2, gpt2-medium, ..., ORG/REPO) as
 * its cache folder, pulled first when it is not there yet.
 */
export async function resolveModel(nameOrPath: string, o: HubOptions = {}): Promise<string> {
  if (fs.existsSync(nameOrPath)) return nameOrPath;
  const repo = hubRepo(nameOrPath);
  if (!repo) return nameOrPath; // loading it says that it does not exist
  const dir = modelCacheDir(repo, o);
  if (FILES.every((f) => fs.existsSync(path.join(dir, f)))) return dir;
  if (o.noPull) throw new DownloadError(`${nameOrPath} is not pulled yet (${o.noPull}): run gpt2 pull ${nameOrPath} first`);
  o.say?.(`${nameOrPath} is not in ${path.dirname(dir)} yet: pulling ${repo} from ${o.endpoint ?? "https://huggingface.co"}`);
  return pull(repo, o);
}
