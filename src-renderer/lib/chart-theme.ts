/**
 * Chart.js draws on a canvas, which cannot read CSS variables: charts take the theme that
 * styles/controls.css defines from the page, with its values as fallbacks (and outside a page).
 */
export interface ChartTheme {
  text: string;
  muted: string;
  grid: string;
  surface: string;
  accent: string;
  good: string;
}

export function chartTheme(): ChartTheme {
  const style = typeof document === 'undefined' ? null : getComputedStyle(document.documentElement);
  const read = (name: string, fallback: string) => style?.getPropertyValue(name).trim() || fallback;
  return {
    text: read('--text', '#e6e9ee'),
    muted: read('--muted', '#8b95a3'),
    grid: read('--border', '#2a3038'),
    surface: read('--surface', '#171b21'),
    accent: read('--accent', '#5aa9ff'),
    good: read('--good', '#4cc38a'),
  };
}
