import { BACKEND_IDS, type BackendId } from './engine-config';

/**
 * What a benchmark suite can measure: our backends, and PyTorch running the same model
 * (bench/pytorch-reference.py) so users see how we compare with the library they know.
 * PyTorch is not an engine backend (BackendId): nothing trains on it, it is only measured.
 */
export const PYTORCH = 'pytorch';
export const BENCHMARK_BACKENDS = [...BACKEND_IDS, PYTORCH] as const;
export type BenchmarkBackend = BackendId | typeof PYTORCH;

export function isBenchmarkBackend(value: unknown): value is BenchmarkBackend {
  return (BENCHMARK_BACKENDS as readonly unknown[]).includes(value);
}

/** The cheap answer to "can this machine measure PyTorch?", for the suite form. */
export interface PytorchAvailability {
  available: boolean;
  /** Which Python and torch, or why none works (every Python tried, and how to install torch). */
  reason: string;
}

export interface SuiteConfiguration {
  backend: BenchmarkBackend;
  workers: number;
  batchSize: number;
}

/**
 * The configurations a suite runs, in order: backends × worker counts × batch sizes, except that
 * PyTorch runs once per batch size in one process (worker counts do not apply; it is recorded
 * with 1 worker, and its thread count is chosen by trial).
 */
export function suiteConfigurations(request: { backends: readonly BenchmarkBackend[]; workerCounts: readonly number[]; batchSizes: readonly number[] }): SuiteConfiguration[] {
  return request.backends.flatMap((backend) =>
    (backend === PYTORCH ? [1] : request.workerCounts).flatMap((workers) => request.batchSizes.map((batchSize) => ({ backend, workers, batchSize }))),
  );
}
