import type { Statement } from 'better-sqlite3';
import { QuadraError } from '../../src-shared/errors';
import { BENCHMARK_BACKENDS, isBenchmarkBackend, type BenchmarkBackend } from '../../src-shared/benchmarks';
import type { SpikeGradient } from '../../src-shared/engine-config';
import type { BenchmarkResultRecord, BenchmarkSuiteRecord, ThroughputSpread } from '../../src-shared/records';
import { assertWholeNumber, notFound, toJsonText, type StoreContext } from './context';

export interface NewBenchmarkSuite {
  name: string;
  config: unknown;
}

export type NewBenchmarkResult = Omit<BenchmarkResultRecord, 'id' | 'createdAt'>;

interface SuiteRow {
  id: number;
  name: string;
  created_at: string;
  config: string;
}

interface ResultRow {
  id: number;
  suite_id: number;
  backend: BenchmarkBackend;
  workers: number;
  batch_size: number;
  spike_gradient: SpikeGradient;
  train_sps_median: number;
  train_sps_min: number;
  train_sps_max: number;
  forward_sps_median: number;
  forward_sps_min: number;
  forward_sps_max: number;
  fingerprint: string;
  created_at: string;
}

const SUITE_COLUMNS = 'id, name, created_at, config';
const RESULT_COLUMNS = `id, suite_id, backend, workers, batch_size, spike_gradient, train_sps_median, train_sps_min,
  train_sps_max, forward_sps_median, forward_sps_min, forward_sps_max, fingerprint, created_at`;

const toSuite = (row: SuiteRow): BenchmarkSuiteRecord => ({
  id: row.id,
  name: row.name,
  createdAt: row.created_at,
  config: JSON.parse(row.config) as unknown,
});

const toResult = (row: ResultRow): BenchmarkResultRecord => ({
  id: row.id,
  suiteId: row.suite_id,
  backend: row.backend,
  workers: row.workers,
  batchSize: row.batch_size,
  spikeGradient: row.spike_gradient,
  trainSamplesPerSec: { median: row.train_sps_median, min: row.train_sps_min, max: row.train_sps_max },
  forwardSamplesPerSec: { median: row.forward_sps_median, min: row.forward_sps_min, max: row.forward_sps_max },
  fingerprint: JSON.parse(row.fingerprint) as Record<string, string>,
  createdAt: row.created_at,
});

function checkSpread(spread: ThroughputSpread, label: string): void {
  for (const key of ['median', 'min', 'max'] as const) {
    if (!Number.isFinite(spread[key])) throw new QuadraError('INVALID_ARGUMENT', `${label}.${key} must be a finite number (got ${spread[key]})`);
  }
}

export class BenchmarkRepository {
  readonly #ctx: StoreContext;
  readonly #insertSuite: Statement<Record<string, unknown>, SuiteRow>;
  readonly #insertResult: Statement<Record<string, unknown>, ResultRow>;
  readonly #suites: Statement<[], SuiteRow>;
  readonly #results: Statement<[number], ResultRow>;
  readonly #deleteSuite: Statement<[number]>;

  constructor(ctx: StoreContext) {
    this.#ctx = ctx;
    const db = ctx.db;
    this.#insertSuite = db.prepare(
      `INSERT INTO benchmark_suites (name, created_at, config) VALUES (:name, :createdAt, :config) RETURNING ${SUITE_COLUMNS}`,
    );
    this.#insertResult = db.prepare(
      `INSERT INTO benchmark_results (suite_id, backend, workers, batch_size, spike_gradient, train_sps_median, train_sps_min,
         train_sps_max, forward_sps_median, forward_sps_min, forward_sps_max, fingerprint, created_at)
       VALUES (:suiteId, :backend, :workers, :batchSize, :spikeGradient, :trainMedian, :trainMin, :trainMax,
         :forwardMedian, :forwardMin, :forwardMax, :fingerprint, :createdAt)
       RETURNING ${RESULT_COLUMNS}`,
    );
    this.#suites = db.prepare(`SELECT ${SUITE_COLUMNS} FROM benchmark_suites ORDER BY created_at DESC, id DESC`);
    this.#results = db.prepare(`SELECT ${RESULT_COLUMNS} FROM benchmark_results WHERE suite_id = ? ORDER BY id`);
    this.#deleteSuite = db.prepare('DELETE FROM benchmark_suites WHERE id = ?');
  }

  createSuite(suite: NewBenchmarkSuite): BenchmarkSuiteRecord {
    const config = toJsonText(suite.config, 'benchmark suite config');
    const row = this.#ctx.write(`create benchmark suite '${suite.name}'`, () =>
      this.#insertSuite.get({ name: suite.name, createdAt: this.#ctx.now(), config }),
    );
    return toSuite(row!);
  }

  addResult(result: NewBenchmarkResult): BenchmarkResultRecord {
    // The column is TEXT: only names the app can show and compare are written to it.
    if (!isBenchmarkBackend(result.backend)) {
      throw new QuadraError('INVALID_ARGUMENT', `benchmark backend must be one of ${BENCHMARK_BACKENDS.join(', ')} (got '${String(result.backend)}')`);
    }
    assertWholeNumber(result.workers, 'benchmark workers', 1);
    assertWholeNumber(result.batchSize, 'benchmark batch size', 1);
    checkSpread(result.trainSamplesPerSec, 'trainSamplesPerSec');
    checkSpread(result.forwardSamplesPerSec, 'forwardSamplesPerSec');
    const fingerprint = toJsonText(result.fingerprint, 'benchmark fingerprint', true);
    const row = this.#ctx.write(`add a result to benchmark suite ${result.suiteId}`, () =>
      this.#insertResult.get({
        suiteId: result.suiteId,
        backend: result.backend,
        workers: result.workers,
        batchSize: result.batchSize,
        spikeGradient: result.spikeGradient,
        trainMedian: result.trainSamplesPerSec.median,
        trainMin: result.trainSamplesPerSec.min,
        trainMax: result.trainSamplesPerSec.max,
        forwardMedian: result.forwardSamplesPerSec.median,
        forwardMin: result.forwardSamplesPerSec.min,
        forwardMax: result.forwardSamplesPerSec.max,
        fingerprint,
        createdAt: this.#ctx.now(),
      }),
    );
    return toResult(row!);
  }

  /** Suites, newest first. */
  listSuites(): BenchmarkSuiteRecord[] {
    return this.#ctx.read('list benchmark suites', () => this.#suites.all()).map(toSuite);
  }

  /** The suite's results in the order they were measured. */
  results(suiteId: number): BenchmarkResultRecord[] {
    return this.#ctx.read(`read the results of benchmark suite ${suiteId}`, () => this.#results.all(suiteId)).map(toResult);
  }

  /** Deletes the suite and its results. */
  removeSuite(id: number): void {
    const { changes } = this.#ctx.write(`remove benchmark suite ${id}`, () => this.#deleteSuite.run(id));
    if (changes === 0) throw notFound('benchmark suite', id);
  }
}
