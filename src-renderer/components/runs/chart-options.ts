import type { ChartConfiguration, ChartType } from 'chart.js';

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

/** Canvas text can't use CSS variables: read the theme App.svelte defines, with its values as fallbacks. */
function theme(): { text: string; muted: string; grid: string; surface: string } {
  const style = typeof document === 'undefined' ? null : getComputedStyle(document.documentElement);
  const read = (name: string, fallback: string) => style?.getPropertyValue(name).trim() || fallback;
  return { text: read('--text', '#e6e9ee'), muted: read('--muted', '#8b95a3'), grid: read('--border', '#2a3038'), surface: read('--surface', '#171b21') };
}

/** A line chart of curves over steps, themed for the dark UI; ready for the Chart component. */
export function lineChart(curves: readonly Curve[], options: { yTitle: string; logScale?: boolean; legend?: boolean; yFormat?: (value: number) => string }): ChartConfiguration<ChartType> {
  const t = theme();
  const ticks = { color: t.muted, font: { size: 11 } };
  const config: ChartConfiguration<'line', ChartPoint[]> = {
    type: 'line',
    data: {
      datasets: curves.map((curve) => ({
        label: curve.label,
        data: curve.points as ChartPoint[],
        borderColor: curve.color,
        backgroundColor: curve.color,
        borderWidth: 1.75,
        borderDash: curve.dashed ? [5, 4] : [],
        // A single point would be invisible as a line.
        pointRadius: curve.points.length === 1 ? 3 : 0,
        pointHoverRadius: 4,
        tension: 0,
        spanGaps: true,
      })),
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      normalized: true,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      scales: {
        x: {
          type: 'linear',
          title: { display: true, text: 'step', color: t.muted, font: { size: 11 } },
          ticks: { ...ticks, maxTicksLimit: 8, precision: 0 },
          grid: { color: t.grid },
          border: { color: t.grid },
        },
        y: {
          type: options.logScale ? 'logarithmic' : 'linear',
          title: { display: true, text: options.yTitle, color: t.muted, font: { size: 11 } },
          ticks: { ...ticks, maxTicksLimit: 6, ...(options.yFormat ? { callback: (value) => options.yFormat!(Number(value)) } : {}) },
          grid: { color: t.grid },
          border: { color: t.grid },
        },
      },
      plugins: {
        legend: {
          display: options.legend ?? true,
          position: 'top',
          align: 'end',
          labels: { color: t.text, boxWidth: 14, boxHeight: 2, padding: 12, font: { size: 12 } },
        },
        tooltip: {
          backgroundColor: t.surface,
          borderColor: t.grid,
          borderWidth: 1,
          titleColor: t.text,
          bodyColor: t.text,
          callbacks: { title: (items) => (items[0] ? `step ${items[0].parsed.x}` : '') },
        },
      },
    },
  };
  return config as unknown as ChartConfiguration<ChartType>;
}

/** Loss axis labels: short, and readable across orders of magnitude. */
export function formatAxisLoss(value: number): string {
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  return magnitude >= 0.01 && magnitude < 1000 ? String(Number(value.toPrecision(3))) : value.toExponential(1);
}

export function formatAxisRate(value: number): string {
  return value >= 10_000 ? `${Number((value / 1000).toPrecision(3))}k` : String(Math.round(value));
}
