// The charts' option, as the page and gpt2 plot build it: colours, panels, axes, ranges, tooltips.
import assert from "node:assert/strict";
import { test } from "node:test";
import { buildOption, fmt, smooth, xOf, type RunMetrics } from "../../src/dashboard/charts.js";

type Series = { name: string; color?: string; xAxisIndex: number; yAxisIndex: number; data: [number, number][]; markLine?: unknown };
type Axis = { name: string; min?: number; max?: number };

const run = (name: string, n: number, extra: (s: number) => object = () => ({})): RunMetrics => ({
  name,
  metrics: Array.from({ length: n }, (_, i) => ({ step: i + 1, train_loss: 10 - i, lr: 1e-3, norm: 1 + i, tokens_per_s: 1000, ms: 512, mfu: 0.3,
    time: new Date(Date.UTC(2026, 0, 1, 0, i * 30)).toISOString(), ...extra(i + 1) })),
  config: { batchSize: 4, seqLen: 128, totalBatch: -1 },
});

test("charts: one colour per run on every panel; grad-norm panel; every panel on the same x range", () => {
  const runs = [run("a", 5, (s) => (s === 5 ? { val_loss: 5.5 } : {})), run("b", 8)];
  const o = buildOption(runs, { full: true, smoothing: 0.5 });
  const series = o.series as Series[];
  const colours = (r: string) => new Set(series.filter((s) => s.name.startsWith(r + " ")).map((s) => s.color));
  assert.equal(colours("a").size, 1);
  assert.equal(colours("b").size, 1);
  assert.notDeepEqual([...colours("a")], [...colours("b")]);
  const y = (o.yAxis as Axis[]).map((a) => a.name);
  assert.deepEqual(y, ["loss", "gradient norm", "learning rate", "tokens/s", "MFU %"]);
  const x = o.xAxis as Axis[];
  assert.ok(x.every((a) => a.min === 1 && a.max === 8), JSON.stringify(x));
  // smoothing: the smoothed curve and the raw one behind it; the validation curve is never smoothed
  const a = series.find((s) => s.name === "a train loss")!, raw = series.find((s) => s.name === "a train loss (raw)")!;
  assert.deepEqual(raw.data.map((p) => p[1]), [10, 9, 8, 7, 6]);
  assert.ok(Math.abs(a.data[1][1] - (0.5 * 10 * 0.5 + 0.5 * 9) / 0.75) < 1e-12, String(a.data[1][1])); // debiased EMA
  assert.deepEqual(series.find((s) => s.name === "a val loss")!.data, [[5, 5.5]]);
  // one zoom for all panels
  const zoom = o.dataZoom as { xAxisIndex: number[] }[];
  assert.deepEqual(zoom[0].xAxisIndex, [0, 1, 2, 3, 4]);
});

test("charts: x by tokens (measured per step, or B x T) and by wall time", () => {
  const r = run("a", 4);
  assert.deepEqual([1, 2, 4].map(xOf(r, "tokens")), [512, 1024, 2048]);
  const old: RunMetrics = { name: "llmc", metrics: [{ step: 1, train_loss: 3 }, { step: 2, train_loss: 2 }], config: { batchSize: 8, seqLen: 1024, totalBatch: 524288 } };
  assert.deepEqual([1, 2].map(xOf(old, "tokens")), [524288, 1048576]);
  assert.deepEqual([1, 2, 4].map(xOf(r, "time")), [0, 0.5, 1.5]);
  const noInfo: RunMetrics = { name: "x", metrics: [{ step: 3, train_loss: 1 }] };
  assert.equal(xOf(noInfo, "tokens")(3), 3);
});

test("charts: reference lines inside the y range; still images have a plain legend of run names and a title", () => {
  const runs = [run("alpha", 5), run("beta", 5)];
  const o = buildOption(runs, { refs: [3.28, 0.294], still: true, title: "alpha vs beta" });
  const y = o.yAxis as Axis[];
  assert.equal(y[0].name, "loss");
  assert.ok(y[0].min! <= 3.28 && y[0].max! >= 10, JSON.stringify(y[0]));
  assert.equal(y[1].name, "HellaSwag acc_norm");
  assert.ok(y[1].min! <= 0.294 && y[1].max! >= 0.294);
  const legend = o.legend as { type: string; data: string[] };
  assert.equal(legend.type, "plain");
  assert.deepEqual(legend.data, ["alpha", "beta"]);
  assert.equal((o.title as { text: string }).text, "alpha vs beta");
});

test("charts: tooltips give the step as an integer and values to 4 significant digits", () => {
  assert.deepEqual([fmt(3.14159265), fmt(1234.5678), fmt(0.0000123456), fmt(2), fmt(1e7)], ["3.142", "1235", "1.235e-5", "2", "1.000e+7"]);
  const o = buildOption([run("a", 3)], {});
  const format = (o.tooltip as { formatter: (rows: object[]) => string }).formatter;
  const html = format([{ axisValue: 2.0000001, seriesName: "a train loss", value: [2, 9.87654321], color: "#1f77b4" }]);
  assert.match(html, /<b>step 2<\/b>/);
  assert.match(html, /a train loss: <b>9\.877<\/b>/);
  assert.deepEqual(smooth([[1, 4]], 0.9), [[1, 4]]);
});
