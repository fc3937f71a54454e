import { BACKEND_IDS, type BackendId } from './engine-config';
import { MAX_WORKERS } from './run-config';

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

/**
 * A suite's number fields, each from min to max: API_REQUESTS.runBenchmarkSuite validates with
 * them and the renderer's suite form checks its fields with them. Worker counts share the run's
 * bound, so a benchmark can measure any worker count a run may have.
 */
export const BENCHMARK_SUITE_LIMITS = {
  workers: { min: 1, max: MAX_WORKERS },
  batchSize: { min: 1, max: 65_536 },
  warmup: { min: 0, max: 10_000 },
  iterations: { min: 1, max: 100_000 },
  repeats: { min: 1, max: 100 },
} as const;

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
