// Static plots of finished runs: the same ECharts option as the dashboard, rendered server-side to SVG
// (ECharts' SSR renderer), PNG (resvg) or a self-contained HTML page.

import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import * as echarts from "echarts";
import { Resvg } from "@resvg/resvg-js";
import { buildOption, type ChartOptions, type RunMetrics } from "./charts.js";

export function renderSVG(runs: RunMetrics[], o: ChartOptions = {}, width = 1000, height = 700): string {
  const chart = echarts.init(null, null, { renderer: "svg", ssr: true, width, height });
  chart.setOption(buildOption(runs, o));
  const svg = chart.renderToSVGString();
  chart.dispose();
  return svg;
}

export function writePlot(file: string, runs: RunMetrics[], o: ChartOptions = {}): void {
  const ext = path.extname(file).toLowerCase();
  if (ext === ".svg") fs.writeFileSync(file, renderSVG(runs, o));
  else if (ext === ".png") fs.writeFileSync(file, new Resvg(renderSVG(runs, o), { fitTo: { mode: "width", value: 1500 }, font: { loadSystemFonts: true } }).render().asPng());
  else if (ext === ".html") {
    const require = createRequire(import.meta.url);
    const lib = fs.readFileSync(path.join(path.dirname(require.resolve("echarts/package.json")), "dist", "echarts.min.js"), "utf8");
    const option = JSON.stringify(buildOption(runs, o)).replace(/</g, "\\u003c");
    fs.writeFileSync(file, `<!doctype html><html><head><meta charset="utf-8"><title>gpt2ts runs</title></head><body>` +
      `<div id="c" style="width:100%;height:90vh"></div><script>${lib}</script>` +
      `<script>echarts.init(document.getElementById("c")).setOption(${option});</script></body></html>\n`);
  } else throw new Error(`cannot write ${file}: use .png, .svg or .html`);
}
