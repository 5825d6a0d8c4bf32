// The live dashboard in a real headless browser (Debian chromium + playwright-core; .ci/run installs chromium).
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { CLI, tmpDir } from "../helpers.js";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => fs.existsSync(p));

test("dashboard: page loads offline, one point per step, a new step appears without reload; runs' status, progress and settings beside", { skip: CHROMIUM ? undefined : "chromium not installed (.ci/run installs it)", timeout: 120_000 }, async () => {
  const { chromium } = await import("playwright-core");
  const dir = tmpDir();
  const metrics = path.join(dir, "metrics.jsonl");
  const rec = (m: object) => JSON.stringify(m) + "\n";
  fs.writeFileSync(metrics, [1, 2, 3, 4, 5].map((s) => rec({ step: s, train_loss: 10 - s, lr: 1e-3, tokens_per_s: 1000, mfu: 0.3 })).join("") +
    rec({ step: 5, val_loss: 5.5 }) + rec({ step: 5, sample: "Fellow citizens of the Senate" }));
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ init: "d12", batchSize: 4, seqLen: 64, totalBatch: -1, lr: 6e-4, schedule: "cosine", warmup: 10, weightDecay: 0.1, maxSteps: 10, task: "pretraining", model: { nLayer: 12, nHead: 12, nEmbd: 768 } }));
  fs.writeFileSync(path.join(dir, "status.json"), JSON.stringify({ state: "running", step: 5, max_steps: 10, eta_s: 75, pid: process.pid, host: os.hostname() }));
  // a second run whose process is gone without saying so: crashed
  const dead = tmpDir();
  fs.writeFileSync(path.join(dead, "metrics.jsonl"), rec({ step: 1, train_loss: 9 }));
  fs.writeFileSync(path.join(dead, "status.json"), JSON.stringify({ state: "running", step: 1, max_steps: 10, pid: 4194303, host: os.hostname() }));
  const server = spawn(process.execPath, [CLI, "dashboard", dir, dead, "--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    server.stdout!.on("data", (d) => { out += d; const m = /dashboard: (http:\/\/\S+)/.exec(out); if (m) resolve(m[1]); });
    server.on("exit", (c) => reject(new Error(`dashboard exited with ${c}`)));
  });
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    const external: string[] = [];
    page.on("request", (r) => { if (!r.url().startsWith(url)) external.push(r.url()); });
    await page.goto(url);
    await page.waitForFunction(() => (window as unknown as { __trainPoints?: number }).__trainPoints === 6, null, { timeout: 30_000 });
    assert.match(await page.textContent("#samples") ?? "", /step 5\s*Fellow citizens of the Senate/);
    const side = await page.textContent("#runs") ?? "";
    assert.match(side, new RegExp(`${path.basename(dir)}running\\s*step 5 / 10, ETA 1m15s`));
    assert.match(side, /d12 \(12 layers, 12 heads, 768 wide\)B 4 x T 64lr 0\.0006, cosine, warmup 10, wd 0\.110 steps/);
    assert.match(side, new RegExp(`${path.basename(dead)}crashed`));
    // the x axis by tokens, kept in the URL
    await page.selectOption("#x", "tokens");
    assert.equal(await page.evaluate(() => ((window as any).echarts.getInstanceByDom(document.getElementById("chart")).getOption().xAxis as { name: string }[]).at(-1)!.name), "tokens");
    assert.match(page.url(), /#x=tokens/);
    await page.evaluate(() => { (window as unknown as { __sameDocument: boolean }).__sameDocument = true; });
    fs.appendFileSync(metrics, rec({ step: 6, train_loss: 3.9, lr: 1e-3, tokens_per_s: 1000, mfu: 0.3 }));
    await page.waitForFunction(() => (window as unknown as { __trainPoints?: number }).__trainPoints === 7, null, { timeout: 30_000 });
    assert.equal(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument), true, "the page reloaded");
    assert.deepEqual(external, [], "the page fetched something from outside the dashboard");
    const json = await (await fetch(url + "metrics.json")).json();
    assert.equal(json.length, 8);
    assert.equal(json[5].val_loss, 5.5);
  } finally {
    await browser.close();
    server.kill();
  }
});

test("plot: PNG, SVG and HTML of a run with a reference line", () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, "main.log"), "s:0 tel:10.9\ns:1 trl:10.8 lr:0.001 norm:1.0\ns:2 trl:9.5 lr:0.001 norm:1.0\ns:2 eval:0.26\n");
  const html = run([CLI, "plot", dir, "-o", path.join(dir, "x.html"), "--ref", "0.294"]);
  assert.equal(html.status, 0, html.stderr);
  assert.match(fs.readFileSync(path.join(dir, "x.html"), "utf8"), /echarts\.init/);
  const r = run([CLI, "plot", dir, "-o", path.join(dir, "x.svg"), "--ref", "3.28"]);
  assert.equal(r.status, 0, r.stderr);
  const svg = fs.readFileSync(path.join(dir, "x.svg"), "utf8");
  assert.match(svg, /^<svg/);
  assert.match(svg, new RegExp(path.basename(dir))); // the run's name: the title and the legend
  assert.match(svg, /ref 3\.28/);
  const png = run([CLI, "plot", dir, "-o", path.join(dir, "x.png")]);
  assert.equal(png.status, 0, png.stderr);
  assert.deepEqual([...fs.readFileSync(path.join(dir, "x.png")).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  const bad = run([CLI, "plot", dir, "-o", path.join(dir, "x.gif")]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /use a \.png, \.svg or \.html file/);
});

function run(args: string[]) {
  return spawnSync(process.execPath, args, { encoding: "utf8" });
}
