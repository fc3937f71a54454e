/**
 * A live run's progress, in one shape from the training service to the chart: the metric point it
 * is stored as, plus where the run stands in its schedule and what its workers hold.
 */
import type { MetricPoint } from './records';

/** One worker as it last reported; null where its backend does not say. */
export interface WorkerProgress {
  rank: number;
  pid: number | null;
  rssBytes: number | null;
  tensors: number | null;
  tensorBytes: number | null;
  /** What the worker's webgpu buffers hold on the GPU. */
  gpuBytes: number | null;
}

/**
 * The onDidProgress event, 2–10 a second per running run. It is a MetricPoint (the run's latest
 * step: its loss, throughput and resource use; `validationLoss` only at the step where it was
 * measured, an epoch's last), so a chart adds it as it adds stored points.
 */
export interface RunProgress extends MetricPoint {
  stepInEpoch: number;
  stepsPerEpoch: number;
  paused: boolean;
  workers: WorkerProgress[];
}

/** The part of a progress report that the store keeps. */
export function metricPointOf(progress: RunProgress): MetricPoint {
  const { stepInEpoch: _stepInEpoch, stepsPerEpoch: _stepsPerEpoch, paused: _paused, workers: _workers, ...point } = progress;
  return point;
}
