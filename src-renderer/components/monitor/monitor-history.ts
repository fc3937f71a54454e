import type { GpuMonitorStatus, MonitorSample } from '../../../src-shared/monitor';

/** How far back the rolling charts reach. */
export const HISTORY_MS = 5 * 60_000;

/** One chart point: x is seconds before the latest sample (≤ 0); y null leaves a gap in the line. */
export interface HistoryPoint {
  x: number;
  y: number | null;
}

export interface GpuHistory {
  index: number;
  name: string;
  utilizationPercent: HistoryPoint[];
  memoryUsedGiB: HistoryPoint[];
}

export interface MonitorHistory {
  /** Seconds the charts span: grows in steps with the samples kept, up to HISTORY_MS. */
  spanSeconds: number;
  cpuTotalPercent: HistoryPoint[];
  gpus: GpuHistory[];
  /** The largest GPU memory seen, rounded up to a multiple of 4 GiB for even ticks, so the memory chart's scale stays put. */
  maxGpuMemoryGiB: number;
}

/** Steps the chart span grows through, so its axis does not rescale at every sample. */
const SPAN_STEPS_SECONDS = [10, 20, 30, 60, 120, 180, 240, 300];
const MIB_PER_GIB = 1024;

/** The samples of the last HISTORY_MS before `sample`, then `sample`: a new array, older ones dropped. */
export function appendSample(samples: readonly MonitorSample[], sample: MonitorSample, maxSamples: number): MonitorSample[] {
  const cutoff = sample.time - HISTORY_MS;
  let first = 0;
  while (first < samples.length && (samples[first]!.time < cutoff || samples.length - first >= maxSamples)) first++;
  return [...samples.slice(first), sample];
}

/** The chart series of a window of samples; a GPU missing from a sample (restarting, failed) is a gap. */
export function historyOf(samples: readonly MonitorSample[]): MonitorHistory {
  const latest = samples[samples.length - 1];
  if (latest === undefined) return { spanSeconds: SPAN_STEPS_SECONDS[0]!, cpuTotalPercent: [], gpus: [], maxGpuMemoryGiB: 4 };
  const secondsAgo = (time: number) => (time - latest.time) / 1000;
  const oldest = -secondsAgo(samples[0]!.time);
  const spanSeconds = SPAN_STEPS_SECONDS.find((step) => step >= oldest) ?? HISTORY_MS / 1000;

  const names = new Map<number, string>();
  let maxMemoryMiB = 0;
  for (const sample of samples) {
    for (const gpu of sample.gpus) {
      names.set(gpu.index, gpu.name);
      maxMemoryMiB = Math.max(maxMemoryMiB, gpu.memoryTotalMiB ?? 0, gpu.memoryUsedMiB ?? 0);
    }
  }
  const gpus = [...names.entries()]
    .sort(([a], [b]) => a - b)
    .map(([index, name]) => {
      const utilizationPercent: HistoryPoint[] = [];
      const memoryUsedGiB: HistoryPoint[] = [];
      for (const sample of samples) {
        const x = secondsAgo(sample.time);
        const gpu = sample.gpus.find((g) => g.index === index);
        utilizationPercent.push({ x, y: gpu?.utilizationPercent ?? null });
        memoryUsedGiB.push({ x, y: gpu?.memoryUsedMiB == null ? null : gpu.memoryUsedMiB / MIB_PER_GIB });
      }
      return { index, name, utilizationPercent, memoryUsedGiB };
    });
  return {
    spanSeconds,
    cpuTotalPercent: samples.map((sample) => ({ x: secondsAgo(sample.time), y: sample.cpu.totalPercent })),
    gpus,
    maxGpuMemoryGiB: Math.max(4, 4 * Math.ceil(maxMemoryMiB / MIB_PER_GIB / 4)),
  };
}

/**
 * The event payload is typed `unknown` in WorkstationEvents, so the shape is checked once here
 * rather than trusted by every component that reads a sample.
 */
export function isMonitorSample(value: unknown): value is MonitorSample {
  if (typeof value !== 'object' || value === null) return false;
  const sample = value as Partial<Record<keyof MonitorSample, unknown>>;
  const cpu = sample.cpu as { perCorePercent?: unknown; totalPercent?: unknown } | undefined;
  const memory = sample.memory as { totalBytes?: unknown; freeBytes?: unknown } | undefined;
  const status = sample.gpuStatus as { state?: unknown } | undefined;
  return (
    typeof sample.time === 'number' &&
    Array.isArray(cpu?.perCorePercent) &&
    typeof cpu.totalPercent === 'number' &&
    typeof memory?.totalBytes === 'number' &&
    typeof memory.freeBytes === 'number' &&
    Array.isArray(sample.gpus) &&
    Array.isArray(sample.processes) &&
    typeof status?.state === 'string'
  );
}

const NO_GPU_PREFIX = /^no NVIDIA GPU or driver found\s*(?:\((.*)\)|[—:-]\s*(.*))?$/is;

/** The monitor's `unavailable` reason already starts with "no NVIDIA GPU or driver found"; the view says that itself. */
export function unavailableReason(status: Extract<GpuMonitorStatus, { state: 'unavailable' | 'failed' }>): string {
  const match = NO_GPU_PREFIX.exec(status.reason.trim());
  if (!match) return status.reason;
  return (match[1] ?? match[2] ?? '').trim() || 'nvidia-smi lists no GPU';
}
