// The dashboard page: polls /runs.json and redraws the charts in place (no reload); samples listed under their step.

export const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>gpt2ts dashboard</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 0; padding: 12px 20px; color: #222; }
 header { display: flex; gap: 24px; align-items: baseline; flex-wrap: wrap; }
 #stats span { margin-right: 18px; } #chart { width: 100%; height: 900px; }
 .sample { border-left: 3px solid #5470c6; margin: 8px 0; padding: 4px 10px; white-space: pre-wrap; font-family: ui-monospace, monospace; }
 .sample b { display: block; font-family: system-ui; }
</style></head>
<body>
<header><h2>gpt2ts</h2><div id="stats"></div>
<label><input type="checkbox" id="log"> log-scale loss</label></header>
<div id="chart"></div>
<h3>Samples</h3><div id="samples"></div>
<script src="/assets/echarts.min.js"></script>
<script type="module">
import { buildOption, series } from "/assets/charts.js";
const chart = echarts.init(document.getElementById("chart"));
const logBox = document.getElementById("log");
let runs = [];
function draw() {
  chart.setOption(buildOption(runs, { logScale: logBox.checked, full: true }), true);
  window.__trainPoints = runs.reduce((a, r) => a + series(r.metrics, "train_loss").length, 0);
  const last = runs[0]?.metrics ?? [];
  const tl = series(last, "train_loss").at(-1), vl = series(last, "val_loss").at(-1), tps = series(last, "tokens_per_s").at(-1);
  const mfu = series(last, "mfu").at(-1), hs = series(last, "hellaswag").at(-1);
  document.getElementById("stats").innerHTML = [
    tl && "step " + tl[0] + " train loss " + tl[1].toFixed(4), vl && "val loss " + vl[1].toFixed(4),
    tps && Math.round(tps[1]) + " tok/s", mfu && "MFU " + (100 * mfu[1]).toFixed(1) + "%", hs && "HellaSwag " + (100 * hs[1]).toFixed(2) + "%",
  ].filter(Boolean).map((s) => "<span>" + s + "</span>").join("");
  const samples = runs.flatMap((r) => r.metrics.filter((m) => typeof m.sample === "string").map((m) => ({ run: r.name, step: m.step, text: m.sample })));
  const box = document.getElementById("samples");
  box.replaceChildren(...samples.reverse().map((s) => {
    const d = document.createElement("div"); d.className = "sample";
    const b = document.createElement("b"); b.textContent = (runs.length > 1 ? s.run + ", " : "") + "step " + s.step;
    d.append(b, document.createTextNode(s.text)); return d;
  }));
}
async function poll() {
  try {
    const r = await fetch("/runs.json", { cache: "no-store" });
    if (r.ok) { runs = await r.json(); draw(); }
  } catch {}
  setTimeout(poll, 1000);
}
logBox.addEventListener("change", draw);
window.addEventListener("resize", () => chart.resize());
poll();
</script></body></html>`;
