import type { ChartConfiguration, ChartType } from 'chart.js';
import { chartTheme } from '../../lib/chart-theme';
import type { ChartPoint, Curve } from './curves';

/** A line chart of curves over steps, themed for the dark UI; ready for the Chart component. */
export function lineChart(curves: readonly Curve[], options: { yTitle: string; logScale?: boolean; legend?: boolean; yFormat?: (value: number) => string }): ChartConfiguration<ChartType> {
  const t = chartTheme();
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
