// The dashboard page: polls /runs.json and redraws in place (no reload). Charts on the left (every panel on one x
// range, zoomed together), the runs on the right (colour, status, progress and ETA, settings; a click hides one),
// the samples below. Controls: x axis (step, tokens, wall time), smoothing, log-scale loss; kept in the URL's hash
// so a reload or a shared link shows the same view.

export const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>gpt2ts dashboard</title>
<style>
 :root { font-family: system-ui, sans-serif; color: #222; }
 body { margin: 0; padding: 10px 16px; }
 header { display: flex; gap: 22px; align-items: center; flex-wrap: wrap; margin-bottom: 6px; }
 header h2 { margin: 0; font-size: 20px; }
 header label { font-size: 14px; display: flex; align-items: center; gap: 6px; }
 main { display: flex; gap: 14px; align-items: flex-start; }
 #chart { flex: 1; min-width: 0; }
 aside { width: 320px; flex-shrink: 0; font-size: 13px; }
 .run { border: 1px solid #ddd; border-left: 6px solid var(--c); border-radius: 4px; padding: 6px 8px; margin-bottom: 8px; cursor: pointer; }
 .run.off { opacity: 0.45; }
 .run .name { font-weight: 600; font-size: 14px; word-break: break-all; }
 .badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; color: #fff; margin-left: 6px; vertical-align: middle; }
 .running { background: #1f77b4; } .finished { background: #2ca02c; } .stopped { background: #ff7f0e; }
 .failed, .crashed { background: #d62728; } .unknown { background: #999; }
 .bar { height: 6px; background: #eee; border-radius: 3px; margin: 5px 0; } .bar div { height: 6px; background: var(--c); border-radius: 3px; }
 .cfg { color: #555; margin-top: 3px; line-height: 1.35; }
 .sample { border-left: 3px solid var(--c, #5470c6); margin: 8px 0; padding: 4px 10px; white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 13px; }
 .sample b { display: block; font-family: system-ui; }
</style></head>
<body>
<header><h2>gpt2ts</h2>
 <label>x axis <select id="x"><option value="step">step</option><option value="tokens">tokens</option><option value="time">wall time</option></select></label>
 <label>smoothing <input type="range" id="smooth" min="0" max="0.99" step="0.01" value="0.6"><span id="smoothv">0.60</span></label>
 <label><input type="checkbox" id="log"> log-scale loss</label>
 <span id="stats"></span>
</header>
<main><div id="chart"></div><aside id="runs"></aside></main>
<h3>Samples</h3><div id="samples"></div>
<script src="/assets/echarts.min.js"></script>
<script type="module">
import { buildOption, panelsFor, series, PALETTE, fmt } from "/assets/charts.js";
const $ = (id) => document.getElementById(id);
const chartBox = $("chart");
const chart = echarts.init(chartBox);
let runs = [];
const hidden = new Set();
// the view lives in the URL's hash: #x=tokens&smooth=0.8&log=1&hide=a,b
const view = new URLSearchParams(location.hash.slice(1));
if (view.get("x")) $("x").value = view.get("x");
if (view.get("smooth")) $("smooth").value = view.get("smooth");
if (view.get("log") === "1") $("log").checked = true;
for (const h of (view.get("hide") || "").split(",").filter(Boolean)) hidden.add(h);
function saveView() {
  const v = new URLSearchParams({ x: $("x").value, smooth: $("smooth").value, log: $("log").checked ? "1" : "0", hide: [...hidden].join(",") });
  history.replaceState(null, "", "#" + v.toString());
}
const dur = (s) => !isFinite(s) ? "?" : s < 60 ? Math.round(s) + "s" : s < 3600 ? Math.floor(s / 60) + "m" + String(Math.round(s % 60)).padStart(2, "0") + "s" : Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
function describe(c) {
  if (!c) return "";
  const m = c.model || {};
  const shape = m.nLayer ? m.nLayer + " layers, " + m.nHead + " heads, " + m.nEmbd + " wide" + (m.vocabSize ? ", vocab " + m.vocabSize : "") : "";
  const lines = [
    (c.task && c.task !== "pretraining" ? c.task + " from " : "") + (c.init || "") + (shape ? " (" + shape + ")" : ""),
    "B " + c.batchSize + " x T " + c.seqLen + (c.totalBatch > 0 ? ", " + c.totalBatch + " tokens/step" : ""),
    "lr " + (c.lr > 0 ? c.lr : "auto") + ", " + c.schedule + (c.warmup > 0 ? ", warmup " + c.warmup : "") + (c.finalLrFrac !== undefined && c.finalLrFrac !== 1 ? ", to x" + c.finalLrFrac : "") + ", wd " + c.weightDecay,
    (c.maxSteps > 0 ? c.maxSteps + " steps" : "one epoch") + (c.dtype && c.dtype !== "fp32" ? ", " + c.dtype : ""),
  ];
  return lines.filter(Boolean).map((l) => "<div>" + l.replace(/[&<>]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[ch]) + "</div>").join("");
}
function sidePanel() {
  const box = $("runs");
  box.replaceChildren(...runs.map((r, i) => {
    const d = document.createElement("div");
    d.className = "run" + (hidden.has(r.name) ? " off" : "");
    d.style.setProperty("--c", PALETTE[i % PALETTE.length]);
    const st = r.status, state = st ? st.state : (r.metrics.length ? "unknown" : "unknown");
    const tl = series(r.metrics, "train_loss").at(-1), vl = series(r.metrics, "val_loss").at(-1);
    const frac = st && st.max_steps ? Math.min(1, st.step / st.max_steps) : null;
    d.innerHTML = '<div class="name"></div>' +
      (frac !== null ? '<div class="bar"><div style="width:' + (100 * frac).toFixed(1) + '%"></div></div>' +
        "<div>step " + st.step + " / " + st.max_steps + (st.state === "running" && st.eta_s !== undefined ? ", ETA " + dur(st.eta_s) : "") + "</div>" : "") +
      "<div>" + [tl && "train " + fmt(tl[1]), vl && "val " + fmt(vl[1])].filter(Boolean).join(", ") + "</div>" +
      '<div class="cfg">' + describe(r.config) + "</div>";
    const name = d.querySelector(".name");
    name.textContent = r.name;
    const b = document.createElement("span"); b.className = "badge " + state; b.textContent = st ? state : (r.metrics.length ? "log" : "empty");
    if (st && st.message) b.title = st.message;
    name.append(b);
    d.addEventListener("click", () => { hidden.has(r.name) ? hidden.delete(r.name) : hidden.add(r.name); saveView(); draw(); });
    return d;
  }));
}
function draw() {
  const opts = { logScale: $("log").checked, full: true, x: $("x").value, smoothing: Number($("smooth").value), hidden: [...hidden] };
  const n = panelsFor(runs.filter((r) => !hidden.has(r.name)), opts).length;
  const height = Math.max(480, 190 * n + 70);
  if (chartBox.clientHeight !== height) { chartBox.style.height = height + "px"; chart.resize(); }
  const zoom = chart.getOption()?.dataZoom?.map((z) => ({ start: z.start, end: z.end }));
  chart.setOption(buildOption(runs, { ...opts, height }), true);
  if (zoom && zoom.length) chart.dispatchAction({ type: "dataZoom", start: zoom[0].start, end: zoom[0].end });
  window.__trainPoints = runs.reduce((a, r) => a + series(r.metrics, "train_loss").length, 0);
  sidePanel();
  const samples = runs.flatMap((r, i) => r.metrics.filter((m) => typeof m.sample === "string").map((m) => ({ run: r.name, i, step: m.step, text: m.sample })));
  $("samples").replaceChildren(...samples.reverse().slice(0, 50).map((s) => {
    const d = document.createElement("div"); d.className = "sample"; d.style.setProperty("--c", PALETTE[s.i % PALETTE.length]);
    const b = document.createElement("b"); b.textContent = (runs.length > 1 ? s.run + ", " : "") + "step " + s.step;
    d.append(b, document.createTextNode(s.text)); return d;
  }));
}
let lastBody = "";
async function poll() {
  try {
    const r = await fetch("/runs.json", { cache: "no-store" });
    if (r.ok) {
      const body = await r.text();
      $("stats").textContent = "";
      if (body !== lastBody) { lastBody = body; runs = JSON.parse(body); draw(); }
    }
  } catch { $("stats").textContent = "the dashboard server is not answering (reopen it with: gpt2 dashboard RUN_DIR)"; }
  setTimeout(poll, 1000);
}
for (const id of ["x", "log"]) $(id).addEventListener("change", () => { saveView(); draw(); });
$("smooth").addEventListener("input", () => { $("smoothv").textContent = Number($("smooth").value).toFixed(2); saveView(); draw(); });
$("smoothv").textContent = Number($("smooth").value).toFixed(2);
window.addEventListener("resize", () => chart.resize());
poll();
</script></body></html>`;
