/**
 * What the store keeps, as plain data: the records the training service writes and the CLI and
 * the app read. Ids are SQLite row ids; times are ISO 8601 strings except metric times (ms).
 */
import type { BenchmarkBackend } from './benchmarks';
import type { BackendId, SpikeGradient } from './engine-config';

export const RUN_STATUSES = ['queued', 'running', 'paused', 'completed', 'cancelled', 'failed', 'diverged', 'interrupted'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/**
 * Statuses in which a process owns the run: it may still train, takes pause, resume and cancel, and
 * cannot be resumed elsewhere until it stops. The store (its claim, control and interrupt checks),
 * the CLI and the renderer (live view, Checkpoints) all ask isLiveStatus.
 */
export const LIVE_RUN_STATUSES = ['queued', 'running', 'paused'] as const satisfies readonly RunStatus[];

/** Statuses a run does not leave on its own: reaching one stamps `endedAt`. */
export const FINISHED_RUN_STATUSES = ['completed', 'cancelled', 'failed', 'diverged', 'interrupted'] as const satisfies readonly RunStatus[];

type LiveRunStatus = (typeof LIVE_RUN_STATUSES)[number];
type FinishedRunStatus = (typeof FINISHED_RUN_STATUSES)[number];
/** Compile-time check that every status is live or finished, never both. */
export const RUN_STATUSES_SPLIT: [Exclude<RunStatus, LiveRunStatus | FinishedRunStatus>, LiveRunStatus & FinishedRunStatus] extends [never, never] ? true : never = true;

export function isLiveStatus(status: RunStatus): boolean {
  return (LIVE_RUN_STATUSES as readonly RunStatus[]).includes(status);
}

export function isFinishedStatus(status: RunStatus): boolean {
  return (FINISHED_RUN_STATUSES as readonly RunStatus[]).includes(status);
}

export const RUN_MODES = ['single', 'multi-cpu', 'multi-gpu'] as const;
export type RunMode = (typeof RUN_MODES)[number];

export const DATASET_KINDS = ['synthetic', 'npy', 'csv', 'text'] as const;
export type DatasetKind = (typeof DATASET_KINDS)[number];

export interface DatasetRecord {
  id: number;
  name: string;
  kind: DatasetKind;
  /** The file it was read from; null for synthetic data. */
  sourcePath: string | null;
  rows: number;
  width: number;
  sha256: string;
  createdAt: string;
}

export interface RunSummary {
  bestValidationLoss: number | null;
  bestTrainLoss: number | null;
  lastTrainLoss: number | null;
  lastValidationLoss: number | null;
  samplesPerSec: number | null;
  durationS: number | null;
  steps: number;
  epochs: number;
  failureReason: string | null;
}

export interface RunRecord {
  id: number;
  name: string;
  /** The run's configuration as a JSON object. */
  config: unknown;
  mode: RunMode;
  backend: BackendId;
  devices: string[];
  workers: number;
  datasetId: number | null;
  status: RunStatus;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  /** The process that runs it; a run whose owner died is marked 'interrupted'. */
  ownerPid: number | null;
  /** A pause, resume or cancel asked through the database that the run's owner has not yet taken (it looks twice a second). */
  controlRequest: 'pause' | 'resume' | 'cancel' | null;
  summary: RunSummary;
}

export interface MetricPoint {
  runId: number;
  step: number;
  epoch: number;
  /** Milliseconds since the Unix epoch. */
  time: number;
  trainLoss: number | null;
  validationLoss: number | null;
  samplesPerSec: number | null;
  gpuMemoryMiB: number | null;
  cpuPercent: number | null;
  rssBytes: number | null;
  /** Mixed precision only (absent otherwise): the dynamic loss scale, and the steps skipped for overflow so far. */
  lossScale?: number;
  skippedSteps?: number;
}

/** A checkpoint's description; its safetensors bytes are read separately. */
export interface CheckpointRecord {
  id: number;
  runId: number;
  epoch: number;
  step: number;
  validationLoss: number | null;
  trainLoss: number | null;
  sha256: string;
  sizeBytes: number;
  createdAt: string;
  /** Lowest validation loss of the run (lowest train loss when no checkpoint has a validation loss). */
  isBest: boolean;
}

export interface BenchmarkSuiteRecord {
  id: number;
  name: string;
  createdAt: string;
  config: unknown;
}

export interface ThroughputSpread {
  median: number;
  min: number;
  max: number;
}

export interface BenchmarkResultRecord {
  id: number;
  suiteId: number;
  /** One of our backends, or 'pytorch' (bench/pytorch-reference.py, recorded with 1 worker). */
  backend: BenchmarkBackend;
  workers: number;
  batchSize: number;
  spikeGradient: SpikeGradient;
  trainSamplesPerSec: ThroughputSpread;
  forwardSamplesPerSec: ThroughputSpread;
  /** Hardware and software the numbers were measured on (CPU model, GPU, driver, tfjs version …). */
  fingerprint: Record<string, string>;
  createdAt: string;
}
