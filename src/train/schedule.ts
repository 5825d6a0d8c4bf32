// Learning-rate schedules (llm.c's schedulers.h): linear warmup, then cosine / linear / constant / WSD decay to
// finalFraction * maxLr at the last step.

export type ScheduleKind = "cosine" | "linear" | "constant" | "wsd";
export const SCHEDULES: ScheduleKind[] = ["cosine", "linear", "constant", "wsd"];

export interface Schedule {
  kind: ScheduleKind;
  maxLr: number;
  warmup: number;
  totalSteps: number;
  /** lr at the end as a fraction of maxLr */
  finalFraction: number;
  /** WSD: fraction of steps spent in the final decay (default 0.2) */
  decayFraction?: number;
}

export function learningRate(s: Schedule, step: number): number {
  const { maxLr, warmup, totalSteps, finalFraction } = s;
  const minLr = maxLr * finalFraction;
  if (step < warmup) return (maxLr * (step + 1)) / warmup;
  if (s.kind === "constant") return maxLr;
  const span = Math.max(1, totalSteps - warmup);
  const progress = Math.min(1, (step - warmup) / span);
  if (s.kind === "cosine") return minLr + 0.5 * (1 + Math.cos(Math.PI * progress)) * (maxLr - minLr);
  if (s.kind === "linear") return maxLr - progress * (maxLr - minLr);
  // warmup-stable-decay: hold maxLr, then decay linearly over the last decayFraction of the steps
  const decaySteps = Math.max(1, Math.round((s.decayFraction ?? 0.2) * totalSteps));
  const decayStart = totalSteps - decaySteps;
  if (step < decayStart) return maxLr;
  return maxLr - (Math.min(1, (step - decayStart) / decaySteps)) * (maxLr - minLr);
}
