// gpt2 serve's chat page in a real headless browser (Debian chromium + playwright-core; .ci/run installs chromium).
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { test } from "node:test";
import OpenAI from "openai";
import { loadHF } from "../../src/io/hf.js";
import { JsBackend } from "../../src/kernels/js/backend.js";
import { startServer } from "../../src/serve/server.js";
import { CHAT_VOCAB_SIZE } from "../../src/tokenizer/bpe.js";
import { fixture } from "../helpers.js";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => fs.existsSync(p));

test("chat page: a message gets the streamed greedy answer; Stop ends an answer; nothing outside the server is fetched", { skip: CHROMIUM ? undefined : "chromium not installed (.ci/run installs it)", timeout: 120_000 }, async () => {
  const { chromium } = await import("playwright-core");
  const model = loadHF(fixture("ref-gpt2vocab"), new JsBackend());
  await model.extendVocab(CHAT_VOCAB_SIZE);
  const log: string[] = [];
  const server = await startServer({ model, name: "page-test", port: 0, seed: 1, log: (l) => log.push(l) });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    const external: string[] = [];
    page.on("request", (r) => { if (!r.url().startsWith(server.url)) external.push(r.url()); });
    await page.goto(server.url);
    assert.equal(await page.textContent("#name"), "page-test");
    // greedy, 8 tokens: the page must show exactly what the API gives
    await page.$eval("#temperature", (el) => { (el as HTMLInputElement).value = "0"; el.dispatchEvent(new Event("input")); });
    await page.fill("#max_tokens", "8");
    await page.fill("#system", "Be brief.");
    await page.fill("#input", "Where is the key?");
    await page.press("#input", "Enter");
    await page.waitForFunction(() => (window as unknown as { __replies?: number }).__replies === 1, null, { timeout: 60_000 });
    const shown = (await page.textContent(".msg.assistant .body"))!.replace(/\((cut at max tokens|stopped)\)$/, "");
    const api = new OpenAI({ baseURL: server.url + "v1", apiKey: "unused", maxRetries: 0 });
    const r = await api.chat.completions.create({ model: "page-test", temperature: 0, max_tokens: 8, top_p: 0.95,
      messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Where is the key?" }] });
    assert.equal(shown, r.choices[0].message.content);
    assert.equal(await page.textContent(".msg.user .body"), "Where is the key?");
    // Stop, pressed as the request starts: the answer ends as stopped and the server hears the client leave
    await page.fill("#max_tokens", "40");
    await page.fill("#input", "Tell me more.");
    await page.evaluate(() => { (document.getElementById("form") as HTMLFormElement).requestSubmit(); (document.getElementById("stop") as HTMLButtonElement).click(); });
    await page.waitForFunction(() => (window as unknown as { __replies?: number }).__replies === 2, null, { timeout: 60_000 });
    assert.match((await page.$$eval(".msg.assistant .note", (ns) => ns.map((n) => n.textContent))).at(-1) ?? "", /stopped/);
    assert.equal(await page.isEnabled("#send"), true);
    assert.deepEqual(external, [], "the page fetched something from outside the server");
  } finally {
    await browser.close();
    await server.close();
  }
});
