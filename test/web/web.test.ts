// The web app (gpt2 web) in real headless Chromium, WebGPU on its software adapter (SwiftShader): a model opened by URL
// (llm.c .bin) and by the file picker (safetensors + config.json, a gpt2ts checkpoint) generates the CLI's greedy
// tokens; a few training steps on pasted text lower the loss; the downloaded checkpoint samples with `gpt2 sample`;
// nothing is fetched from outside the page's origin. A Chromium without WebGPU gets the message and the CPU backend.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { CLI, fixture, ROOT, tmpDir } from "../helpers.js";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => fs.existsSync(p));
const BUILT = fs.existsSync(path.join(ROOT, "dist/web/index.html"));
const skip = !CHROMIUM ? "chromium not installed (.ci/run installs it)" : !BUILT ? "the web app is not built (npm run build:web; npm install builds it)" : undefined;
const gpt2 = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
const BASE_ARGS = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

async function startWeb(args: string[]): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [CLI, "web", "--port", "0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  proc.stderr!.on("data", (d) => { err += d; });
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.on("data", (d) => { out += d; const m = /^gpt2 web: (\S+)/m.exec(out); if (m) resolve(m[1]); });
    proc.once("exit", (code) => reject(new Error(`gpt2 web exited with ${code}: ${err}`)));
  });
  return { url, proc };
}

test("web app on WebGPU: the CLI's greedy tokens from three formats, training lowers the loss, its download samples in the CLI, nothing external", { skip, timeout: 300_000 }, async () => {
  const { chromium } = await import("playwright-core");
  const dir = tmpDir();
  const bin = path.join(dir, "m.bin"), ckpt = path.join(dir, "m.gpt2ts");
  for (const [file, to] of [[bin, "llmc"], [ckpt, "gpt2ts"]]) assert.equal(gpt2(["convert", fixture("ref-gpt2vocab"), file, "--to", to]).status, 0);
  const cli = gpt2(["sample", "--model", ckpt, "--prompt", "Hello world", "--temperature", "0", "--max-new-tokens", "6", "--no-stop", "--json"]);
  assert.equal(cli.status, 0, cli.stderr);
  const want = JSON.parse(cli.stdout.trim().split("\n").pop()!).ids as number[];

  const { url, proc } = await startWeb(["--model", bin]);
  const origin = new URL(url).origin;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...BASE_ARGS, "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"] });
  try {
    const page = await browser.newPage({ acceptDownloads: true });
    const external: string[] = [];
    page.on("request", (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith(`blob:${origin}`)) external.push(r.url()); });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForSelector("body[data-ready]", { timeout: 60_000 });
    assert.equal(await page.getAttribute("body", "data-backend"), "webgpu", await page.textContent("#backend") ?? "");
    const settle = () => page.waitForFunction(() => !document.body.dataset.busy, null, { timeout: 120_000 });
    const generate = async () => {
      await page.$eval("#output", (e) => { e.removeAttribute("data-ids"); });
      await page.click("#generate");
      await page.waitForFunction(() => document.getElementById("output")!.dataset.ids || document.body.dataset.error, null, { timeout: 120_000 });
      assert.equal(await page.textContent("#error"), "");
      return JSON.parse((await page.getAttribute("#output", "data-ids"))!) as number[];
    };
    // ?model=models/m.bin: opened by URL
    await page.waitForFunction(() => document.body.dataset.model === "m.bin" || document.body.dataset.error, null, { timeout: 60_000 });
    await settle();
    assert.match((await page.textContent("#model-info"))!, /m\.bin \(llmc\): n_layer=2 n_head=4 n_embd=16/);
    await page.fill("#prompt", "Hello world");
    await page.fill("#temperature", "0");
    await page.fill("#max-tokens", "6");
    await page.check("#no-stop");
    assert.deepEqual(await generate(), want);
    // the file picker: Hugging Face's safetensors with its config.json, then a gpt2ts checkpoint
    for (const [files, name] of [[[fixture("ref-gpt2vocab", "model.safetensors"), fixture("ref-gpt2vocab", "config.json")], "model.safetensors"], [[ckpt], "m.gpt2ts"]] as const) {
      await page.setInputFiles("#model-files", [...files]);
      await page.waitForFunction((n) => document.body.dataset.model === n || document.body.dataset.error, name, { timeout: 60_000 });
      await settle();
      assert.deepEqual(await generate(), want, name);
    }
    // a bad file: one line on the page, nothing thrown
    await page.setInputFiles("#model-files", { name: "junk.bin", mimeType: "application/octet-stream", buffer: Buffer.from("not a model at all") });
    await page.waitForFunction(() => document.body.dataset.error, null, { timeout: 30_000 });
    assert.match((await page.textContent("#error"))!, /junk\.bin: not a gpt2ts checkpoint, an llm\.c model file or a safetensors file/);

    // training the tiny preset on pasted text, characters as tokens
    const text = fs.readFileSync(path.join(ROOT, "../shared/data/tinyshakespeare.txt"), "utf8").slice(0, 20_000);
    await page.fill("#train-text", text);
    await page.fill("#steps", "4");
    await page.fill("#batch", "2");
    await page.fill("#seq", "16");
    await page.fill("#lr", "0.003");
    await page.fill("#sample-tokens", "10");
    await page.click("#train");
    await page.waitForFunction(() => document.body.dataset.training === "done" || document.body.dataset.error, null, { timeout: 240_000 });
    assert.equal(await page.textContent("#error"), "");
    const losses = JSON.parse((await page.getAttribute("body", "data-losses"))!) as number[];
    assert.equal(losses.length, 4);
    assert.ok(Math.abs(losses[0] - Math.log(66)) < 0.5, `the first loss ${losses[0]} is about ln(vocab) = ${Math.log(66)}`);
    assert.ok(losses[3] < losses[0] - 0.3, `the loss falls: ${losses}`);
    assert.ok((await page.$$eval("#chart canvas", (c) => c.length)) > 0, "the loss chart is drawn");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    const saved = path.join(dir, "web.gpt2ts");
    await download.saveAs(saved);
    assert.deepEqual(external, [], "requests outside the page's origin");
    assert.deepEqual(errors, []);
    const s = gpt2(["sample", "--model", saved, "--prompt", "ROMEO:", "--max-new-tokens", "12", "--temperature", "0", "--no-stop", "--json"]);
    assert.equal(s.status, 0, s.stderr);
    // its character vocabulary came with it: 12 ids below 66, one character each
    const got = JSON.parse(s.stdout.trim().split("\n").pop()!) as { ids: number[]; text: string };
    assert.equal(got.ids.length, 12);
    assert.ok(got.ids.every((id) => id < 66), `${got.ids}`);
    assert.equal([...got.text].length, 12);
  } finally {
    await browser.close();
    proc.kill("SIGTERM");
  }
});

test("web app without WebGPU: a clear message, and the TypeScript backend generates the same tokens", { skip, timeout: 120_000 }, async () => {
  const { chromium } = await import("playwright-core");
  const dir = tmpDir(), ckpt = path.join(dir, "m.gpt2ts");
  assert.equal(gpt2(["convert", fixture("ref-gpt2vocab"), ckpt, "--to", "gpt2ts"]).status, 0);
  const cli = gpt2(["sample", "--model", ckpt, "--prompt", "Hi", "--temperature", "0", "--max-new-tokens", "4", "--no-stop", "--json"]);
  const want = JSON.parse(cli.stdout.trim().split("\n").pop()!).ids as number[];
  const { url, proc } = await startWeb(["--model", ckpt]);
  // WebGPU switched off: navigator.gpu is missing, as in a browser without it
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...BASE_ARGS, "--disable-gpu", "--disable-features=WebGPU,Vulkan"] });
  try {
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForSelector("body[data-ready]", { timeout: 60_000 });
    assert.equal(await page.getAttribute("body", "data-backend"), "js");
    assert.ok(await page.isVisible("#no-webgpu"));
    assert.match((await page.textContent("#no-webgpu"))!, /^WebGPU is not available: .*TypeScript backend/);
    await page.waitForFunction(() => document.body.dataset.model === "m.gpt2ts" && !document.body.dataset.busy, null, { timeout: 60_000 });
    await page.fill("#prompt", "Hi");
    await page.fill("#temperature", "0");
    await page.fill("#max-tokens", "4");
    await page.check("#no-stop");
    await page.click("#generate");
    await page.waitForFunction(() => document.getElementById("output")!.dataset.ids, null, { timeout: 60_000 });
    assert.deepEqual(JSON.parse((await page.getAttribute("#output", "data-ids"))!), want);
  } finally {
    await browser.close();
    proc.kill("SIGTERM");
  }
});

test("gpt2 web's server: the app's files with their types, models under /models/, nothing else (no paths above, no listing, GET and HEAD only)", async () => {
  const { startStaticServer } = await import("../../src/serve/static.js");
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, "index.html"), "<p>hi</p>");
  fs.writeFileSync(path.join(dir, "x.wasm"), Buffer.from([0, 97, 115, 109]));
  fs.mkdirSync(path.join(dir, "sub"));
  const model = path.join(tmpDir(), "m.gpt2ts");
  fs.writeFileSync(model, "weights");
  const s = await startStaticServer({ dir, models: [model], port: 0 });
  try {
    assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const get = (p: string, init?: RequestInit) => fetch(s.url + p.replace(/^\//, ""), init);
    let r = await get("/");
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "<p>hi</p>");
    assert.equal((await get("/x.wasm")).headers.get("content-type"), "application/wasm");
    assert.equal(await (await get("/models/m.gpt2ts")).text(), "weights");
    for (const bad of ["/models/other.gpt2ts", "/sub", "/nope.js", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd"]) {
      assert.equal((await get(bad)).status, 404, bad);
    }
    r = await get("/", { method: "POST", body: "x" });
    assert.equal(r.status, 405);
    assert.equal((await get("/", { method: "HEAD" })).status, 200);
  } finally {
    await s.close();
  }
});

test("gpt2 web's server on loopback: answers to loopback names in any case, refuses other names (DNS rebinding)", async () => {
  const http = await import("node:http");
  const { startStaticServer } = await import("../../src/serve/static.js");
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, "index.html"), "ok");
  const s = await startStaticServer({ dir, port: 0 });
  const port = Number(new URL(s.url).port);
  const status = (host: string) => new Promise<number>((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: "/", headers: { host } }, (r) => { r.resume(); resolve(r.statusCode!); }).on("error", reject);
  });
  try {
    for (const ok of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`]) assert.equal(await status(ok), 200, ok);
    for (const bad of [`evil.example:${port}`, "localhost", `localhost:${port + 1}`, `127.0.0.1.evil.example:${port}`]) assert.equal(await status(bad), 421, bad);
  } finally {
    await s.close();
  }
});
