import { PYTORCH } from '../../../src-shared/benchmarks';
import type { BenchmarkResultRecord, ThroughputSpread } from '../../../src-shared/records';

/** Where results shown together came from: this workstation's suite, or a file from another machine. */
export interface ResultSource {
  id: string;
  kind: 'local' | 'imported';
  /** What the legend calls it. */
  label: string;
  /** What a table row calls it. */
  shortLabel: string;
  suiteName: string;
  /** The machine its numbers were measured on, from the first result's fingerprint. */
  machine: string;
  fingerprint: Record<string, string>;
  results: BenchmarkResultRecord[];
}

export interface ResultRow {
  /** Unique across sources: the baseline is chosen by it. */
  key: string;
  source: ResultSource;
  result: BenchmarkResultRecord;
}

export type Metric = 'train' | 'forward';

/** The fingerprint fields in the order a reader compares machines; unknown keys follow. */
export const FINGERPRINT_FIELDS = [
  { key: 'cpu', label: 'CPU' },
  { key: 'gpus', label: 'GPUs' },
  { key: 'driver', label: 'Driver' },
  { key: 'cuda', label: 'CUDA' },
  { key: 'os', label: 'OS' },
  { key: 'backend', label: 'Backend' },
  { key: 'tfjs', label: 'tfjs' },
  { key: 'node', label: 'Node' },
  { key: 'electron', label: 'Electron' },
  { key: 'quadra', label: 'Quadra' },
] as const;

export function spreadOf(result: BenchmarkResultRecord, metric: Metric): ThroughputSpread {
  return metric === 'train' ? result.trainSamplesPerSec : result.forwardSamplesPerSec;
}

/** fp32 unless the result was measured in mixed precision (recorded in its fingerprint). */
const precisionOf = (r: BenchmarkResultRecord): string => r.fingerprint.precision ?? 'fp32';

export function configurationKey(r: BenchmarkResultRecord): string {
  return `${r.backend}|${r.workers}|${r.batchSize}|${r.spikeGradient}|${precisionOf(r)}`;
}

export function configurationLabel(r: BenchmarkResultRecord): string {
  // PyTorch is one process at its own thread count: worker counts do not apply to it.
  const workers = r.backend === PYTORCH ? 'one process' : `${r.workers} worker${r.workers === 1 ? '' : 's'}`;
  const precision = precisionOf(r) === 'fp32' ? '' : ` · ${precisionOf(r)}`;
  return `${r.backend}${precision} · ${workers} · batch ${r.batchSize}${r.spikeGradient === 'surrogate' ? '' : ` · ${r.spikeGradient}`}`;
}

/** Backend, then workers, then batch size: the order a suite is run in, whatever the source. */
export function compareConfigurations(a: BenchmarkResultRecord, b: BenchmarkResultRecord): number {
  return a.backend.localeCompare(b.backend) || a.workers - b.workers || a.batchSize - b.batchSize || a.spikeGradient.localeCompare(b.spikeGradient);
}

export function machineOf(fingerprint: Record<string, string>): string {
  const cpu = (fingerprint.cpu ?? 'unknown CPU').replace(/\s+/g, ' ').trim();
  const gpus = fingerprint.gpus && fingerprint.gpus !== 'none' ? ` + ${fingerprint.gpus}` : '';
  const os = fingerprint.os ? ` · ${fingerprint.os.split(' ').slice(0, 2).join(' ')}` : '';
  return `${cpu}${gpus}${os}`;
}

/** Every fingerprint field as "Label: value" lines, for a tooltip. */
export function fingerprintText(fingerprint: Record<string, string>): string {
  const known = new Set<string>(FINGERPRINT_FIELDS.map((f) => f.key));
  const lines = FINGERPRINT_FIELDS.filter((f) => fingerprint[f.key] !== undefined).map((f) => `${f.label}: ${fingerprint[f.key]}`);
  for (const [key, value] of Object.entries(fingerprint)) if (!known.has(key)) lines.push(`${key}: ${value}`);
  return lines.join('\n');
}

/** What a PyTorch row ran with ("torch 2.3.1 · 4 threads · cpu"); null for our backends. */
export function pytorchDetail(r: BenchmarkResultRecord): string | null {
  if (r.backend !== PYTORCH) return null;
  const f = r.fingerprint;
  const threads = f.threads ? `${f.threads.split(' ')[0]} thread${f.threads.startsWith('1 ') ? '' : 's'}` : null;
  return [f.torch ? `torch ${f.torch}` : null, threads, f.device ? f.device.split(' (')[0] : null].filter(Boolean).join(' · ') || null;
}

export function formatSpeedup(speedup: number | null): string {
  return speedup === null ? '—' : `×${speedup >= 10 ? speedup.toFixed(1) : speedup.toFixed(2)}`;
}
