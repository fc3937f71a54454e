export { formatBytes } from '../../src-shared/format';

export function formatLoss(value: number | null | undefined): string {
  return value === null || value === undefined ? '—' : value < 1e-3 ? value.toExponential(3) : value.toFixed(5);
}

export function formatRate(value: number | null | undefined): string {
  return value === null || value === undefined ? '—' : Math.round(value).toLocaleString('en-US');
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  return m < 60 ? `${m} min ${Math.round(seconds % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function formatDate(iso: string): string {
  return iso.slice(0, 16).replace('T', ' ');
}
