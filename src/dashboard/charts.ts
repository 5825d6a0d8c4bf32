// ECharts options for runs' curves, shared by the live dashboard (served to the browser as an ES module; so this
// file imports nothing) and by `gpt2 plot` (rendered server-side to SVG/PNG/HTML). One colour per run across every
// panel; train curves thin (smoothed, with the raw values faint behind), validation thick; every panel on the same
// x range (step, tokens or wall time), zoomed together.

export interface MetricRecord {
  step: number;
  train_loss?: number;
  val_loss?: number;
  hellaswag?: number;
  lr?: number;
  norm?: number;
  ms?: number;
  tokens_per_s?: number;
  mfu?: number | null;
  sample?: string;
  /** ISO time the record was written (metrics.jsonl) */
  time?: string;
  // the preference and RL objectives' metrics (train, and validation as val_*)
  reward?: number;
  val_reward?: number;
  accuracy?: number;
  val_accuracy?: number;
  margin?: number;
  val_margin?: number;
  kl?: number;
}

/** what the dashboard knows of a run besides its records */
export interface RunStatus {
  /** running, finished, stopped (a signal: it resumes with -y 1), failed (an error), crashed (its process is gone) */
  state: "running" | "finished" | "stopped" | "failed" | "crashed";
  step: number;
  max_steps: number;
  eta_s?: number;
  updated?: string;
  message?: string;
}

export interface RunMetrics {
  name: string;
  metrics: MetricRecord[];
  /** the run's settings (its config.json: init, batchSize, seqLen, lr, schedule, ..., model) */
  config?: Record<string, unknown> | null;
  status?: RunStatus | null;
}

export type XMode = "step" | "tokens" | "time";

export interface ChartOptions {
  logScale?: boolean;
  /** horizontal reference lines: values < 1 go to the HellaSwag panel, others to the loss panel */
  refs?: number[];
  /** the training-speed and gradient panels (live dashboard) */
  full?: boolean;
  /** the x axis: optimizer steps (default), tokens seen, or hours since the run's first record */
  x?: XMode;
  /** exponential moving average of the train curves, 0 (off) to 0.99, as TensorBoard's slider */
  smoothing?: number;
  /** runs not drawn (their names) */
  hidden?: string[];
  /** a title over the panels (still images) */
  title?: string;
  /** a still image: a legend with every run's name, no zoom controls */
  still?: boolean;
  /** the chart's height in pixels (panels are laid out in it) */
  height?: number;
}

export const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

/** Last value of each step for one field (a resumed run may log a step twice). */
export function series(ms: MetricRecord[], key: keyof MetricRecord): [number, number][] {
  const byStep = new Map<number, number>();
  for (const m of ms) {
    const v = m[key];
    if (typeof v === "number" && Number.isFinite(v)) byStep.set(m.step, v);
  }
  return [...byStep.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * Where each step sits on the x axis. tokens: the running sum of each step's tokens (tokens/s x ms), else B x T x
 * accumulation from the config; time: hours since the first record (metrics.jsonl's times). Falls back to steps.
 */
export function xOf(run: RunMetrics, mode: XMode): (step: number) => number {
  if (mode === "tokens") {
    const per = new Map<number, number>();
    for (const m of run.metrics) {
      if (typeof m.tokens_per_s === "number" && typeof m.ms === "number" && m.train_loss !== undefined) per.set(m.step, (m.tokens_per_s * m.ms) / 1000);
    }
    const c = run.config ?? {};
    const fixed = typeof c.totalBatch === "number" && c.totalBatch > 0 ? c.totalBatch
      : typeof c.batchSize === "number" && typeof c.seqLen === "number" ? c.batchSize * c.seqLen : 0;
    if (per.size > 0) {
      const steps = [...per.keys()].sort((a, b) => a - b);
      const cum = new Map<number, number>([[0, 0]]);
      let sum = 0;
      for (const s of steps) { sum += per.get(s)!; cum.set(s, sum); }
      const mean = sum / steps.length;
      return (s) => cum.get(s) ?? s * mean;
    }
    if (fixed) return (s) => s * fixed;
  }
  if (mode === "time") {
    const times = run.metrics.filter((m) => m.time).map((m) => [m.step, Date.parse(m.time!)] as [number, number]).filter(([, t]) => Number.isFinite(t));
    if (times.length > 0) {
      const t0 = Math.min(...times.map(([, t]) => t));
      const at = new Map<number, number>();
      for (const [s, t] of times) at.set(s, Math.max(at.get(s) ?? 0, (t - t0) / 3.6e6));
      const known = [...at.entries()].sort((a, b) => a[0] - b[0]);
      return (s) => at.get(s) ?? known.reduce((best, [k, v]) => (k <= s ? v : best), 0);
    }
  }
  return (s) => s;
}

/** TensorBoard's smoothing: an exponential moving average, debiased at the start. */
export function smooth(data: [number, number][], weight: number): [number, number][] {
  if (!(weight > 0)) return data;
  let ema = 0, n = 0;
  return data.map(([x, y]) => { ema = weight * ema + (1 - weight) * y; n++; return [x, ema / (1 - weight ** n)]; });
}

/** 4 significant digits, no exponent for ordinary magnitudes (tooltips, axis labels) */
export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

interface Panel { title: string; keys: { key: keyof MetricRecord; val?: boolean; scale?: number }[]; log?: boolean; refs?: number[]; train?: boolean }

export function panelsFor(runs: RunMetrics[], o: ChartOptions): Panel[] {
  const has = (k: keyof MetricRecord) => runs.some((r) => series(r.metrics, k).length > 0);
  const refs = o.refs ?? [];
  const hellaRefs = refs.filter((v) => v < 1), lossRefs = refs.filter((v) => v >= 1);
  const panels: Panel[] = [{ title: "loss", keys: [{ key: "train_loss" }, { key: "val_loss", val: true }], log: o.logScale, refs: lossRefs, train: true }];
  if (has("hellaswag") || hellaRefs.length) panels.push({ title: "HellaSwag acc_norm", keys: [{ key: "hellaswag", val: true }], refs: hellaRefs });
  if (has("reward") || has("val_reward")) panels.push({ title: "reward", keys: [{ key: "reward" }, { key: "val_reward", val: true }], train: true });
  if (has("accuracy") || has("val_accuracy")) panels.push({ title: "accuracy %", keys: [{ key: "accuracy", scale: 100 }, { key: "val_accuracy", val: true, scale: 100 }], train: true });
  if (has("margin") || has("val_margin")) panels.push({ title: "preference margin", keys: [{ key: "margin" }, { key: "val_margin", val: true }], train: true });
  if (has("kl")) panels.push({ title: "KL to the reference", keys: [{ key: "kl" }], train: true });
  if (o.full) {
    if (has("norm")) panels.push({ title: "gradient norm", keys: [{ key: "norm" }], log: true, train: true });
    panels.push({ title: "learning rate", keys: [{ key: "lr" }] });
    if (has("tokens_per_s")) panels.push({ title: "tokens/s", keys: [{ key: "tokens_per_s" }] });
    if (has("mfu")) panels.push({ title: "MFU %", keys: [{ key: "mfu", scale: 100 }] });
  }
  return panels;
}

const X_NAME: Record<XMode, string> = { step: "step", tokens: "tokens", time: "hours" };

export function buildOption(allRuns: RunMetrics[], o: ChartOptions = {}): Record<string, unknown> {
  const mode = o.x ?? "step";
  const colorOf = new Map(allRuns.map((r, i) => [r.name, PALETTE[i % PALETTE.length]]));
  const runs = allRuns.filter((r) => !(o.hidden ?? []).includes(r.name));
  const panels = panelsFor(runs, o);
  const top = o.title ? 40 : 10, bottom = o.still ? 40 : 60, legend = o.still && runs.length > 0 ? 24 : 0;
  const gap = 34;
  const s: Record<string, unknown>[] = [];
  const extents = panels.map(() => ({ min: Infinity, max: -Infinity }));
  let xMin = Infinity, xMax = -Infinity;
  for (const r of runs) {
    const x = xOf(r, mode), color = colorOf.get(r.name)!;
    // the legend's entry for the run: one series by its name, drawing nothing
    if (o.still) s.push({ name: r.name, type: "line", data: [], color, xAxisIndex: 0, yAxisIndex: 0 });
    panels.forEach((p, axis) => {
      for (const k of p.keys) {
        const raw = series(r.metrics, k.key).map(([st, y]) => [x(st), y * (k.scale ?? 1)] as [number, number]);
        if (raw.length === 0) continue;
        for (const [xx, y] of raw) {
          xMin = Math.min(xMin, xx); xMax = Math.max(xMax, xx);
          if (!p.log || y > 0) { extents[axis].min = Math.min(extents[axis].min, y); extents[axis].max = Math.max(extents[axis].max, y); }
        }
        const name = `${r.name} ${String(k.key).replace(/_/g, " ")}`;
        const base = { type: "line", xAxisIndex: axis, yAxisIndex: axis, color, showSymbol: raw.length < 40, symbolSize: 4, animation: false };
        if (k.val) { s.push({ ...base, name, data: raw, lineStyle: { width: 2.5, type: "dashed" }, showSymbol: true, symbolSize: 5 }); continue; }
        const smoothed = p.train && (o.smoothing ?? 0) > 0;
        if (smoothed) s.push({ ...base, name: `${name} (raw)`, data: raw, lineStyle: { width: 1, opacity: 0.25 }, showSymbol: false, silent: true, tooltip: { show: false } });
        s.push({ ...base, name, data: smoothed ? smooth(raw, o.smoothing!) : raw, lineStyle: { width: 1.5 } });
      }
    });
  }
  // y ranges from the data and the reference lines (a reference outside the data stays visible), padded 5 %
  const yAxis = panels.map((p, i) => {
    const e = extents[i];
    for (const v of p.refs ?? []) { e.min = Math.min(e.min, v); e.max = Math.max(e.max, v); }
    const ok = Number.isFinite(e.min) && Number.isFinite(e.max);
    let min: number | undefined, max: number | undefined;
    if (ok && p.log) { min = e.min / 1.15; max = e.max * 1.15; }
    else if (ok) { const pad = (e.max - e.min || Math.abs(e.max) || 1) * 0.05; min = e.min - pad; max = e.max + pad; }
    return {
      type: p.log ? "log" : "value", gridIndex: i, name: p.title, nameLocation: "middle", nameGap: 56, nameTextStyle: { fontSize: 12 },
      ...(min !== undefined ? { min: Number(min.toPrecision(6)), max: Number(max!.toPrecision(6)) } : {}),
      axisLabel: { fontSize: 11, hideOverlap: true }, splitLine: { lineStyle: { color: "#eee" } },
    };
  });
  for (const [axis, p] of panels.entries()) {
    for (const v of p.refs ?? []) {
      s.push({ name: `ref ${v}`, type: "line", xAxisIndex: axis, yAxisIndex: axis, data: [], silent: true,
        markLine: { symbol: "none", silent: true, lineStyle: { type: "dashed", color: "#555" }, label: { formatter: `ref ${v}`, position: "insideEndTop" }, data: [{ yAxis: v }] } });
    }
  }
  const xr = Number.isFinite(xMin) ? { min: xMin, max: xMax > xMin ? xMax : xMin + 1 } : {};
  const xAxis = panels.map((_, i) => ({
    type: "value", gridIndex: i, ...xr, name: i === panels.length - 1 ? X_NAME[mode] : "", nameLocation: "middle", nameGap: 26,
    axisLabel: { show: i === panels.length - 1, fontSize: 11, hideOverlap: true }, splitLine: { lineStyle: { color: "#eee" } },
  }));
  // panels share the height left after the title, legend and zoom bar, stacked at the same left and right edges
  const n = panels.length, usable = Math.max(60 * n, (o.height ?? 700) - top - legend - bottom);
  const gridOut = panels.map((_, i) => ({ left: 80, right: 24, top: Math.round(top + legend + (i * usable) / n), height: Math.round(usable / n - gap) }));
  const xLabel = (v: number) => (mode === "step" ? `step ${Math.round(v)}` : mode === "tokens" ? `${fmt(v)} tokens` : `${fmt(v)} h`);
  const esc = (t: string) => t.replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]!);
  type TipRow = { axisValue: number; seriesName: string; value: [number, number]; color: string };
  const tooltip = (rows: TipRow[]) => {
    const seen = rows.filter((r) => !r.seriesName.endsWith("(raw)"));
    if (seen.length === 0) return "";
    return `<b>${xLabel(seen[0].axisValue)}</b><br>` + seen.map((r) =>
      `<span style="color:${r.color}">●</span> ${esc(r.seriesName)}: <b>${fmt(r.value[1])}</b>`).join("<br>");
  };
  return {
    animation: false, backgroundColor: "#fff", color: PALETTE,
    ...(o.title ? { title: { text: o.title, left: "center", top: 8, textStyle: { fontSize: 16 } } } : {}),
    grid: gridOut, xAxis, yAxis, series: s,
    // a still image names its runs in one plain legend (never paginated); the page has its side panel instead
    legend: o.still ? { type: "plain", top, left: "center", data: runs.map((r) => r.name), textStyle: { fontSize: 12 } } : { show: false },
    tooltip: o.still ? { show: false } : { trigger: "axis", axisPointer: { type: "line" }, formatter: tooltip, confine: true },
    axisPointer: { link: [{ xAxisIndex: "all" }] },
    dataZoom: o.still ? [] : [
      { type: "inside", xAxisIndex: panels.map((_, i) => i), filterMode: "none" },
      { type: "slider", xAxisIndex: panels.map((_, i) => i), filterMode: "none", bottom: 8, height: 18 },
    ],
  };
}
