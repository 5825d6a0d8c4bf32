// Static plots of finished runs: the same ECharts option as the dashboard, rendered server-side to SVG
// (ECharts' SSR renderer), PNG (resvg) or a self-contained HTML page (ECharts and charts.js inlined: works offline).

import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as echarts from "echarts";
import { Resvg } from "@resvg/resvg-js";
import { buildOption, panelsFor, type ChartOptions, type RunMetrics } from "./charts.js";

/** a still image's height: room for each panel */
function heightFor(runs: RunMetrics[], o: ChartOptions): number {
  return Math.max(420, 230 * panelsFor(runs, o).length + 110);
}

export function renderSVG(runs: RunMetrics[], o: ChartOptions = {}, width = 1000): string {
  const still = { ...o, still: true };
  const height = heightFor(runs, still);
  const chart = echarts.init(null, null, { renderer: "svg", ssr: true, width, height });
  chart.setOption(buildOption(runs, { ...still, height }));
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
    // the option holds functions (tooltips): the page builds it itself from the same module
    const charts = fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "charts.js"), "utf8");
    const data = JSON.stringify({ runs, o: { ...o, full: false } }).replace(/</g, "\\u003c");
    const title = (o.title ?? "gpt2ts runs").replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]!);
    fs.writeFileSync(file, `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body style="margin:0">` +
      `<div id="c" style="width:100%"></div><script>${lib}</script><script type="module">\n${charts.replace(/<\/script/gi, "<\\/script")}\n` +
      `const { runs, o } = ${data};\nconst box = document.getElementById("c");\nconst height = Math.max(420, 230 * panelsFor(runs, o).length + 110);\n` +
      `box.style.height = height + "px";\nconst chart = echarts.init(box);\nchart.setOption(buildOption(runs, { ...o, height }));\n` +
      `window.addEventListener("resize", () => chart.resize());\n</script></body></html>\n`);
  } else throw new Error(`cannot write ${file}: use .png, .svg or .html`);
}
