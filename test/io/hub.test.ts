// Pretrained weights by name, against a local stand-in for the Hugging Face hub (its tree API and resolve URLs, with
// Range requests), and the tokenizer files an HF export carries, checked by tiktoken's own loader of such files.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { test } from "node:test";
import { load } from "tiktoken/load";
import { loadHF, saveHF } from "../../src/io/hf.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { CLI, fixture, tmpDir } from "../helpers.js";

interface Hub { url: string; requests: string[]; ranges: string[]; close(): Promise<void>; lie?: boolean }

/** serves fixture("ref-gpt2vocab") as `repo` (and as openai-community/gpt2) */
async function fakeHub(repos: string[]): Promise<Hub> {
  const dir = fixture("ref-gpt2vocab");
  const files = ["config.json", "model.safetensors"].map((name) => {
    const data = fs.readFileSync(path.join(dir, name));
    return { name, data, sha256: createHash("sha256").update(data).digest("hex"),
      blob: createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex") };
  });
  const hub: Partial<Hub> = { requests: [], ranges: [] };
  const server = http.createServer((req, res) => {
    const url = req.url ?? "";
    hub.requests!.push(url);
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/main$/.exec(url);
    if (tree) {
      if (!repos.includes(tree[1])) { res.writeHead(404).end("{}"); return; }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(files.map((f) => f.name === "config.json"
        ? { type: "file", path: f.name, size: f.data.length, oid: f.blob }
        : { type: "file", path: f.name, size: 135, oid: "0".repeat(40), lfs: { oid: hub.lie ? "f".repeat(64) : f.sha256, size: f.data.length, pointerSize: 135 } })));
      return;
    }
    const file = /^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(url);
    const f = file && repos.includes(file[1]) ? files.find((x) => x.name === file[2]) : undefined;
    if (!f) { res.writeHead(404).end(); return; }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (range) {
      hub.ranges!.push(`${f.name} ${range[1]}`);
      const from = Number(range[1]);
      res.writeHead(206, { "content-length": f.data.length - from }).end(f.data.subarray(from));
    } else res.writeHead(200, { "content-length": f.data.length }).end(f.data);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  hub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  hub.close = () => new Promise((r) => server.close(() => r()));
  return hub as Hub;
}

function gpt2(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d) => { stdout += d; });
    child.stderr.on("data", (d) => { stderr += d; });
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

test("gpt2 pull NAME and --model NAME: downloads checked against the hub's hashes, resumed, cached, pulled on first use", async () => {
  const hub = await fakeHub(["test/tiny", "openai-community/gpt2"]);
  const cache = tmpDir();
  const env = { HF_ENDPOINT: hub.url, GPT2_CACHE: cache };
  try {
    let r = await gpt2(["pull", "test/tiny"], env);
    assert.equal(r.code, 0, r.stderr);
    const dir = path.join(cache, "models", "test--tiny");
    assert.match(r.stdout, new RegExp(`test/tiny is in ${dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
    assert.ok(fs.readFileSync(path.join(dir, "model.safetensors")).equals(fs.readFileSync(fixture("ref-gpt2vocab", "model.safetensors"))));
    // --model NAME uses the cache: no new download
    hub.requests.length = 0;
    r = await gpt2(["sample", "--model", "test/tiny", "--prompt-ids", "1,2", "--max-new-tokens", "3", "--json", "--backend", "js"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).ids.length, 3);
    assert.deepEqual(hub.requests, []);
    // nanoGPT's names: gpt2 is openai-community/gpt2, pulled on first use, saying so
    r = await gpt2(["sample", "--model", "gpt2", "--prompt-ids", "1", "--max-new-tokens", "2", "--json", "--backend", "js"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /gpt2 is not in .* yet: pulling openai-community\/gpt2 from http:\/\/127\.0\.0\.1/);
    assert.ok(fs.existsSync(path.join(cache, "models", "openai-community--gpt2", "model.safetensors")));
    // an interrupted download resumes where it stopped (an HTTP Range request)
    const other = path.join(cache, "models", "openai-community--gpt2");
    fs.rmSync(path.join(other, "model.safetensors"));
    fs.writeFileSync(path.join(other, "model.safetensors.partial"), fs.readFileSync(fixture("ref-gpt2vocab", "model.safetensors")).subarray(0, 1000));
    r = await gpt2(["pull", "gpt2"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(hub.ranges, ["model.safetensors 1000"]);
    assert.ok(fs.readFileSync(path.join(other, "model.safetensors")).equals(fs.readFileSync(fixture("ref-gpt2vocab", "model.safetensors"))));
    // a download that does not match the hub's sha256 is refused and removed
    hub.lie = true;
    fs.rmSync(path.join(other, "model.safetensors"));
    r = await gpt2(["pull", "gpt2"], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr.trim().split("\n").at(-1)!, /^gpt2: checksum mismatch for .*model\.safetensors: sha256 [0-9a-f]{64}, expected f{64}; the partial file was removed, run again$/);
    assert.ok(!fs.existsSync(path.join(other, "model.safetensors")) && !fs.existsSync(path.join(other, "model.safetensors.partial")));
    // a name the hub does not have, a hub that does not answer
    r = await gpt2(["pull", "test/missing"], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^gpt2: test\/missing is not a file or folder here, and not a model on http:\/\/127\.0\.0\.1:\d+ \(revision main\)\n$/);
    r = await gpt2(["pull", "test/tiny"], { HF_ENDPOINT: "http://127.0.0.1:9", GPT2_CACHE: tmpDir() });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^gpt2: cannot reach http:\/\/127\.0\.0\.1:9 for test\/tiny: .*\(offline\? pull it where there is a network/);
  } finally {
    await hub.close();
  }
});

test("an HF export carries GPT-2's tokenizer files: tiktoken's own loader of vocab.json + merges.txt gives tiktoken's ranks; chat models get their template", async () => {
  const dir = tmpDir();
  const m = loadHF(fixture("ref-gpt2vocab"), new JsBackend());
  await m.extendVocab(50261);
  await saveHF(m, path.join(dir, "hf"));
  const read = (f: string) => fs.readFileSync(path.join(dir, "hf", f), "utf8");
  const mine = await load({
    data_gym_to_mergeable_bpe_ranks: { vocab_bpe_file: path.join(dir, "hf", "merges.txt"), encoder_json_file: path.join(dir, "hf", "vocab.json") },
    explicit_n_vocab: 50257, pat_str: "", special_tokens: {},
  } as never, async (p: string) => fs.readFileSync(p, "utf8"));
  const { createRequire } = await import("node:module");
  const want = createRequire(import.meta.url)("tiktoken/encoders/gpt2.json").bpe_ranks as string;
  // tiktoken's dump format ("base64 rank" per line) against its packaged table ("! 0" then base64 by rank)
  const byRank: string[] = [];
  for (const line of mine.bpe_ranks.trim().split("\n")) { const [b64, rank] = line.split(" "); byRank[Number(rank)] = b64; }
  assert.deepEqual(byRank, want.trim().split(" ").slice(2));
  const cfg = JSON.parse(read("tokenizer_config.json"));
  assert.equal(cfg.eos_token, "<|endoftext|>");
  assert.deepEqual(Object.keys(cfg.added_tokens_decoder), ["50256", "50257", "50258", "50259", "50260"]);
  assert.match(cfg.chat_template, /'<\|' \+ message\['role'\] \+ '\|>' \+ message\['content'\] \+ '<\|end\|>'/);
  assert.equal(JSON.parse(read("config.json")).vocab_size, 50261);
  assert.equal(loadHF(path.join(dir, "hf"), new JsBackend()).config.vocabSize, 50261);
});
