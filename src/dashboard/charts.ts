// ECharts options for a run's curves, shared by the live dashboard (served to the browser as an ES module; so this
// file imports nothing) and by `gpt2 plot` (rendered server-side to SVG/PNG/HTML).

export interface MetricRecord {
  step: number;
  train_loss?: number;
  val_loss?: number;
  hellaswag?: number;
  lr?: number;
  tokens_per_s?: number;
  mfu?: number | null;
  sample?: string;
  // the preference and RL objectives' metrics (train, and validation as val_*)
  reward?: number;
  val_reward?: number;
  accuracy?: number;
  val_accuracy?: number;
  margin?: number;
  val_margin?: number;
  kl?: number;
}

/** panels that appear when a run logs them: reward models, DPO and RL */
const OBJECTIVE_PANELS: { title: string; keys: (keyof MetricRecord)[]; scale?: number }[] = [
  { title: "reward", keys: ["reward", "val_reward"] },
  { title: "accuracy %", keys: ["accuracy", "val_accuracy"], scale: 100 },
  { title: "preference margin", keys: ["margin", "val_margin"] },
  { title: "KL to the reference", keys: ["kl"] },
];

export interface RunMetrics {
  name: string;
  metrics: MetricRecord[];
}

export interface ChartOptions {
  logScale?: boolean;
  /** horizontal reference lines: values < 1 go to the HellaSwag panel, others to the loss panel */
  refs?: number[];
  /** the training-speed panels (live dashboard) */
  full?: boolean;
  width?: number;
}

/** Last value of each step for one field (a resumed run may log a step twice). */
export function series(ms: MetricRecord[], key: keyof MetricRecord): [number, number][] {
  const byStep = new Map<number, number>();
  for (const m of ms) {
    const v = m[key];
    if (typeof v === "number" && Number.isFinite(v)) byStep.set(m.step, v);
  }
  return [...byStep.entries()].sort((a, b) => a[0] - b[0]);
}

export function buildOption(runs: RunMetrics[], o: ChartOptions = {}): Record<string, unknown> {
  const hasHella = runs.some((r) => series(r.metrics, "hellaswag").length > 0) || (o.refs ?? []).some((v) => v < 1);
  const panels: { title: string; unit?: string; log?: boolean }[] = [{ title: "loss", log: o.logScale }];
  if (hasHella) panels.push({ title: "HellaSwag acc_norm" });
  const extras = OBJECTIVE_PANELS.filter((p) => runs.some((r) => p.keys.some((k) => series(r.metrics, k).length > 0)));
  for (const p of extras) panels.push({ title: p.title });
  if (o.full) panels.push({ title: "learning rate" }, { title: "tokens/s" }, { title: "MFU %" });
  const h = 100 / panels.length;
  const grid = panels.map((_, i) => ({ left: 70, right: 30, top: `${i * h + 5}%`, height: `${h - 12}%` }));
  const xAxis = panels.map((_, i) => ({ type: "value", gridIndex: i, name: i === panels.length - 1 ? "step" : "", min: "dataMin" }));
  const yAxis = panels.map((p, i) => ({ type: p.log ? "log" : "value", gridIndex: i, name: p.title, scale: true, nameGap: 10 }));
  const s: Record<string, unknown>[] = [];
  const line = (name: string, data: [number, number][], axis: number, extra: Record<string, unknown> = {}) =>
    s.push({ name, type: "line", xAxisIndex: axis, yAxisIndex: axis, data, showSymbol: data.length < 60, symbolSize: 4, ...extra });
  const multi = runs.length > 1;
  for (const r of runs) {
    const tag = multi ? `${r.name} ` : "";
    line(`${tag}train loss`, series(r.metrics, "train_loss"), 0);
    line(`${tag}val loss`, series(r.metrics, "val_loss"), 0, { lineStyle: { width: 3 } });
    let axis = 1;
    if (hasHella) line(`${tag}HellaSwag`, series(r.metrics, "hellaswag"), axis++);
    for (const p of extras) {
      for (const k of p.keys) {
        const data = series(r.metrics, k).map(([x, y]) => [x, y * (p.scale ?? 1)] as [number, number]);
        line(`${tag}${String(k).replace("_", " ")}`, data, axis, String(k).startsWith("val_") ? { lineStyle: { width: 3 } } : {});
      }
      axis++;
    }
    if (o.full) {
      line(`${tag}lr`, series(r.metrics, "lr"), axis++);
      line(`${tag}tokens/s`, series(r.metrics, "tokens_per_s"), axis++);
      line(`${tag}MFU`, series(r.metrics, "mfu").map(([x, y]) => [x, 100 * y] as [number, number]), axis++);
    }
  }
  for (const ref of o.refs ?? []) {
    const axis = ref < 1 && hasHella ? 1 : 0;
    s.push({ name: `ref ${ref}`, type: "line", xAxisIndex: axis, yAxisIndex: axis, data: [],
      markLine: { symbol: "none", lineStyle: { type: "dashed" }, label: { formatter: String(ref) }, data: [{ yAxis: ref }] } });
  }
  return {
    animation: false, grid, xAxis, yAxis, series: s,
    legend: { type: "scroll", top: 0 }, tooltip: { trigger: "axis" }, backgroundColor: "#fff",
  };
}
