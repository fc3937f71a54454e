import type { BarElement, Plugin } from 'chart.js';

/** One bar: the median, with the spread drawn as a whisker and the speedup printed above it. */
export interface SpreadPoint {
  x: string;
  y: number;
  min: number;
  max: number;
  speedup: string;
}

const isSpreadPoint = (value: unknown): value is SpreadPoint =>
  typeof value === 'object' && value !== null && 'min' in value && 'max' in value && 'y' in value;

/**
 * Chart.js has no error bars: this draws min–max whiskers over each bar whose data point is a
 * SpreadPoint, and the speedup above the whisker where the bar is wide enough to hold it. It reads
 * the points from the chart's own data, so whiskers never lag behind the bars.
 */
export function errorBarsPlugin(colors: { whisker: string; text: string }): Plugin<'bar'> {
  return {
    id: 'quadraErrorBars',
    afterDatasetsDraw(chart) {
      const { ctx } = chart;
      const y = chart.scales.y;
      if (!y) return;
      ctx.save();
      ctx.strokeStyle = colors.whisker;
      ctx.fillStyle = colors.text;
      ctx.lineWidth = 1.5;
      ctx.font = '600 11px system-ui, sans-serif';
      ctx.textAlign = 'center';
      ctx.textBaseline = 'bottom';
      chart.data.datasets.forEach((dataset, d) => {
        if (!chart.isDatasetVisible(d)) return;
        chart.getDatasetMeta(d).data.forEach((element, i) => {
          const point: unknown = dataset.data[i];
          if (!isSpreadPoint(point)) return;
          const { x, width } = (element as unknown as BarElement).getProps(['x', 'width'], true);
          if (x === null || width === null) return;
          const top = y.getPixelForValue(point.max);
          const bottom = y.getPixelForValue(point.min);
          const cap = Math.max(3, Math.min(8, width * 0.3));
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, bottom);
          ctx.moveTo(x - cap, top);
          ctx.lineTo(x + cap, top);
          ctx.moveTo(x - cap, bottom);
          ctx.lineTo(x + cap, bottom);
          ctx.stroke();
          if (point.speedup && width >= 30) ctx.fillText(point.speedup, x, top - 3);
        });
      });
      ctx.restore();
    },
  };
}
