import type { MetricPoint } from '../../../src-shared/records';

/*
 * The curves a run's charts draw, as plain data: the state classes build them without a page (and
 * are tested without one); chart-options.ts turns them into Chart.js configurations.
 */

/** A point of a curve: x is the training step. */
export interface ChartPoint {
  x: number;
  y: number;
}

export interface Curve {
  label: string;
  color: string;
  points: readonly ChartPoint[];
  dashed?: boolean;
}

/** One colour per compared run, distinct on the dark background (2–5 runs). */
export const RUN_COLORS = ['#5aa9ff', '#f5a524', '#4cc38a', '#e879f9', '#f87171'] as const;
export const TRAIN_COLOR = '#5aa9ff';
export const VALIDATION_COLOR = '#f5a524';
export const THROUGHPUT_COLOR = '#4cc38a';

/** One measure of stored points as a curve over steps; step 0 (before any training) and gaps are left out. */
export function curveOf(points: readonly MetricPoint[], pick: (point: MetricPoint) => number | null): ChartPoint[] {
  return points.flatMap((point) => {
    const y = pick(point);
    return y === null || !Number.isFinite(y) || point.step <= 0 ? [] : [{ x: point.step, y }];
  });
}
