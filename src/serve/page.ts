// The chat page `gpt2 serve` shows at /: a conversation view that streams the answer token by token from the
// server's own /v1/chat/completions (or /v1/completions for a model without chat tokens), a stop button, a system
// message and the sampling settings. One self-contained page: no request leaves the server's origin.

export function chatPage(name: string, chat: boolean, maxTokens: number): string {
  const meta = JSON.stringify({ name, chat, maxTokens }).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(name)} — gpt2ts</title>
<style>
 :root { --fg: #1d2330; --muted: #6b7280; --line: #e5e7eb; --accent: #2f6feb; --bg2: #f6f7f9; }
 * { box-sizing: border-box; }
 body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); display: grid;
   grid-template-columns: 1fr 270px; height: 100vh; }
 main { display: flex; flex-direction: column; min-width: 0; }
 header { padding: 10px 18px; border-bottom: 1px solid var(--line); display: flex; gap: 12px; align-items: baseline; }
 header h1 { font-size: 16px; margin: 0; } header span { color: var(--muted); font-size: 13px; }
 #log { flex: 1; overflow-y: auto; padding: 18px; }
 .msg { max-width: 760px; margin: 0 auto 14px; white-space: pre-wrap; word-wrap: break-word; }
 .msg .who { font-size: 12px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
 .msg.user .body { background: var(--bg2); border-radius: 10px; padding: 8px 12px; display: inline-block; }
 .msg.assistant .body { padding: 2px 0; } .msg .note { color: var(--muted); font-size: 12px; margin-left: 6px; }
 .msg.error .body { color: #b42318; }
 form { display: flex; gap: 8px; padding: 12px 18px; border-top: 1px solid var(--line); max-width: 800px; width: 100%; margin: 0 auto; }
 textarea { flex: 1; resize: none; font: inherit; padding: 8px 10px; border: 1px solid var(--line); border-radius: 8px; height: 64px; }
 button { font: inherit; border: 0; border-radius: 8px; padding: 0 16px; background: var(--accent); color: white; cursor: pointer; }
 button:disabled { opacity: .4; cursor: default; } #stop { background: #b42318; } #clear { background: #6b7280; }
 aside { border-left: 1px solid var(--line); padding: 14px; background: var(--bg2); overflow-y: auto; }
 aside h2 { font-size: 13px; text-transform: uppercase; color: var(--muted); margin: 4px 0 10px; }
 aside label { display: block; font-size: 13px; margin: 10px 0 2px; } aside input, aside textarea { width: 100%; }
 aside textarea { height: 90px; font-size: 13px; } output { float: right; color: var(--muted); }
 @media (max-width: 760px) { body { grid-template-columns: 1fr; } aside { display: none; } }
</style></head>
<body>
<main>
 <header><h1 id="name"></h1><span id="mode"></span><span id="speed"></span></header>
 <div id="log" aria-live="polite"></div>
 <form id="form">
  <textarea id="input" placeholder="Write a message (Enter to send, Shift+Enter for a new line)" autofocus></textarea>
  <button id="send" type="submit">Send</button><button id="stop" type="button" disabled>Stop</button><button id="clear" type="button">New</button>
 </form>
</main>
<aside>
 <h2>Settings</h2>
 <label for="system">System message</label><textarea id="system" placeholder="(none)"></textarea>
 <label for="temperature">Temperature <output id="temperatureOut"></output></label><input id="temperature" type="range" min="0" max="2" step="0.05" value="0.7">
 <label for="top_p">Top p <output id="top_pOut"></output></label><input id="top_p" type="range" min="0.05" max="1" step="0.05" value="0.95">
 <label for="max_tokens">Max tokens</label><input id="max_tokens" type="number" min="1" value="200">
 <label for="seed">Seed (empty: random)</label><input id="seed" type="number">
</aside>
<script>
const META = ${meta};
const $ = (id) => document.getElementById(id);
$("name").textContent = META.name;
$("mode").textContent = META.chat ? "chat" : "text completion (this model has no chat tokens)";
const history = [];
let controller = null;
let conversation = 0; // bumped by "New": a reply still streaming then belongs to a conversation that is gone
$("max_tokens").max = META.maxTokens;
$("max_tokens").value = Math.min(200, Math.max(1, Math.floor(META.maxTokens / 2)));
for (const k of ["temperature", "top_p"]) { const f = () => $(k + "Out").textContent = $(k).value; $(k).addEventListener("input", f); f(); }

function add(role, text) {
  const d = document.createElement("div"); d.className = "msg " + role;
  const who = document.createElement("div"); who.className = "who"; who.textContent = role === "error" ? "error" : role;
  const body = document.createElement("div"); body.className = "body"; body.textContent = text;
  d.append(who, body); $("log").append(d); $("log").scrollTop = $("log").scrollHeight;
  return body;
}
function busy(on) { $("send").disabled = on; $("stop").disabled = !on; }

async function send(text) {
  const mine = conversation;
  history.push({ role: "user", content: text });
  add("user", text);
  const out = add("assistant", "");
  const settings = { temperature: Number($("temperature").value), top_p: Number($("top_p").value), max_tokens: Number($("max_tokens").value) };
  if ($("seed").value !== "") settings.seed = Number($("seed").value);
  const system = $("system").value.trim();
  const request = () => {
    const messages = (system ? [{ role: "system", content: system }] : []).concat(history);
    return META.chat ? { model: META.name, messages, stream: true, ...settings }
      : { model: META.name, prompt: history.map((m) => m.content).join("\\n"), stream: true, ...settings };
  };
  controller = new AbortController(); busy(true);
  let text2 = "", reason = null, tokens = 0; const t0 = performance.now();
  try {
    let r;
    for (;;) {
      r = await fetch(META.chat ? "/v1/chat/completions" : "/v1/completions", {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(request()), signal: controller.signal });
      if (r.ok) break;
      const e = await r.json().catch(() => ({}));
      // a conversation longer than the model's context: its oldest exchange goes, as a chat CLI would drop it
      if (e.error?.code === "context_length_exceeded" && history.length > 2 && mine === conversation) { history.splice(0, 2); continue; }
      throw new Error(e.error?.message ?? r.statusText);
    }
    const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
    for (;;) {
      const { value, done } = await reader.read(); if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\\n\\n")) >= 0) {
        const line = buf.slice(0, i); buf = buf.slice(i + 2);
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6); if (data === "[DONE]") continue;
        const c = JSON.parse(data).choices[0]; if (!c) continue;
        const piece = META.chat ? (c.delta.content ?? "") : c.text;
        if (piece) { text2 += piece; tokens++; out.textContent = text2; $("log").scrollTop = $("log").scrollHeight; }
        if (c.finish_reason) reason = c.finish_reason;
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") {
      out.parentElement.className = "msg error"; out.textContent = e.message;
      // the message was not answered: it leaves the conversation (the user can edit and send it again)
      if (mine === conversation) history.pop();
      controller = null; busy(false);
      window.__replies = (window.__replies ?? 0) + 1;
      return;
    }
  } finally {
    controller = null; busy(false);
  }
  if (mine !== conversation) return;
  const note = document.createElement("span"); note.className = "note";
  note.textContent = reason === "length" ? "(cut at max tokens)" : reason === null ? "(stopped)" : "";
  out.append(note);
  $("speed").textContent = tokens ? (tokens / ((performance.now() - t0) / 1000)).toFixed(1) + " pieces/s" : "";
  history.push({ role: "assistant", content: text2 });
  window.__replies = (window.__replies ?? 0) + 1;
}
$("form").addEventListener("submit", (e) => {
  e.preventDefault(); const text = $("input").value.trim();
  if (!text || controller) return; $("input").value = ""; send(text);
});
$("input").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); } });
$("stop").addEventListener("click", () => controller?.abort());
$("clear").addEventListener("click", () => { conversation++; controller?.abort(); history.length = 0; $("log").replaceChildren(); });
</script></body></html>`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
}
