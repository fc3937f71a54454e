import type { Statement, Transaction } from 'better-sqlite3';
import { QuadraError } from '../../src-shared/errors';
import type { MetricPoint } from '../../src-shared/records';
import { assertWholeNumber, type StoreContext } from './context';

export interface MetricRangeOptions {
  fromStep?: number;
  toStep?: number;
  /** Above this many points in the range, buckets are averaged on read. */
  maxPoints?: number;
}

export const DEFAULT_MAX_POINTS = 2000;

/** Rows come back from SQL under the record's own field names; the mixed-precision ones NULL when absent. */
type MetricRow = Omit<MetricPoint, 'lossScale' | 'skippedSteps'> & { lossScale: number | null; skippedSteps: number | null };

interface RangeParams {
  runId: number;
  lo: number | bigint;
  hi: number | bigint;
}

const COLUMNS = `run_id AS runId, step, epoch, time, train_loss AS trainLoss, validation_loss AS validationLoss,
  samples_per_sec AS samplesPerSec, gpu_memory_mib AS gpuMemoryMiB, cpu_percent AS cpuPercent, rss_bytes AS rssBytes,
  loss_scale AS lossScale, skipped_steps AS skippedSteps`;

/** A point as the record has it: the mixed-precision fields only where a mixed run measured them. */
const toPoint = ({ lossScale, skippedSteps, ...row }: MetricRow): MetricPoint => ({
  ...row,
  ...(lossScale === null ? {} : { lossScale }),
  ...(skippedSteps === null ? {} : { skippedSteps }),
});

function checkPoint(point: MetricPoint, index: number): void {
  const label = `metric point ${index} (run ${point.runId}, step ${point.step})`;
  assertWholeNumber(point.runId, `${label}: runId`, 1);
  assertWholeNumber(point.step, `${label}: step`);
  assertWholeNumber(point.epoch, `${label}: epoch`);
  assertWholeNumber(point.time, `${label}: time`);
  if (point.rssBytes !== null) assertWholeNumber(point.rssBytes, `${label}: rssBytes`);
  if (point.skippedSteps !== undefined) assertWholeNumber(point.skippedSteps, `${label}: skippedSteps`);
}

export class MetricRepository {
  readonly #ctx: StoreContext;
  readonly #upsert: Statement<MetricRow>;
  readonly #countUpTo: Statement<RangeParams & { limit: number }, { n: number }>;
  readonly #bounds: Statement<RangeParams, { lo: number; hi: number }>;
  readonly #raw: Statement<RangeParams, MetricRow>;
  readonly #bucket: Statement<RangeParams, Omit<MetricRow, 'runId'> & { n: number }>;
  readonly #last: Statement<[number], MetricRow>;
  readonly #deleteAfter: Statement<[number, number]>;
  readonly #appendTx: Transaction<(points: readonly MetricPoint[]) => void>;
  readonly #rangeTx: Transaction<(runId: number, from: number, to: number, maxPoints: number) => MetricPoint[]>;

  constructor(ctx: StoreContext) {
    this.#ctx = ctx;
    const db = ctx.db;
    // A second point for a step (say the epoch's validation loss after its last train step)
    // fills in what it measured and keeps what the first one had.
    this.#upsert = db.prepare(
      `INSERT INTO metrics (run_id, step, epoch, time, train_loss, validation_loss, samples_per_sec, gpu_memory_mib, cpu_percent, rss_bytes, loss_scale, skipped_steps)
       VALUES (:runId, :step, :epoch, :time, :trainLoss, :validationLoss, :samplesPerSec, :gpuMemoryMiB, :cpuPercent, :rssBytes, :lossScale, :skippedSteps)
       ON CONFLICT (run_id, step) DO UPDATE SET
         epoch = excluded.epoch,
         time = excluded.time,
         train_loss = coalesce(excluded.train_loss, train_loss),
         validation_loss = coalesce(excluded.validation_loss, validation_loss),
         samples_per_sec = coalesce(excluded.samples_per_sec, samples_per_sec),
         gpu_memory_mib = coalesce(excluded.gpu_memory_mib, gpu_memory_mib),
         cpu_percent = coalesce(excluded.cpu_percent, cpu_percent),
         rss_bytes = coalesce(excluded.rss_bytes, rss_bytes),
         loss_scale = coalesce(excluded.loss_scale, loss_scale),
         skipped_steps = coalesce(excluded.skipped_steps, skipped_steps)`,
    );
    // Counting stops at maxPoints + 1 and min/max are one index probe each, so deciding whether to
    // downsample costs nothing like a scan of a long run.
    this.#countUpTo = db.prepare(
      'SELECT count(*) AS n FROM (SELECT 1 FROM metrics WHERE run_id = :runId AND step BETWEEN :lo AND :hi LIMIT :limit)',
    );
    this.#bounds = db.prepare(
      `SELECT (SELECT min(step) FROM metrics WHERE run_id = :runId AND step BETWEEN :lo AND :hi) AS lo,
              (SELECT max(step) FROM metrics WHERE run_id = :runId AND step BETWEEN :lo AND :hi) AS hi`,
    );
    this.#raw = db.prepare(`SELECT ${COLUMNS} FROM metrics WHERE run_id = :runId AND step BETWEEN :lo AND :hi ORDER BY step`);
    // One bucket: its last step, epoch and time, and the mean of each measure (NULL when the
    // bucket never measured it). A plain range aggregate walks the primary key in order; one
    // GROUP BY over the whole range would sort every row first (about 2.5× slower at 1M rows).
    this.#bucket = db.prepare(
      `SELECT count(*) AS n, max(step) AS step, max(epoch) AS epoch, max(time) AS time,
         avg(train_loss) AS trainLoss, avg(validation_loss) AS validationLoss, avg(samples_per_sec) AS samplesPerSec,
         avg(gpu_memory_mib) AS gpuMemoryMiB, avg(cpu_percent) AS cpuPercent, round(avg(rss_bytes)) AS rssBytes,
         min(loss_scale) AS lossScale, max(skipped_steps) AS skippedSteps
       FROM metrics WHERE run_id = :runId AND step BETWEEN :lo AND :hi`,
    );
    this.#last = db.prepare(`SELECT ${COLUMNS} FROM metrics WHERE run_id = ? ORDER BY step DESC LIMIT 1`);
    this.#deleteAfter = db.prepare('DELETE FROM metrics WHERE run_id = ? AND step > ?');

    this.#appendTx = db.transaction((points: readonly MetricPoint[]) => {
      for (const point of points) this.#upsert.run({ ...point, lossScale: point.lossScale ?? null, skippedSteps: point.skippedSteps ?? null });
    });
    // One read transaction, so the count and the rows come from the same snapshot.
    this.#rangeTx = db.transaction((runId: number, from: number, to: number, maxPoints: number) => {
      const range = { runId, lo: from, hi: to };
      if (this.#countUpTo.get({ ...range, limit: maxPoints + 1 })!.n <= maxPoints) return this.#raw.all(range).map(toPoint);
      const extent = this.#bounds.get(range)!;
      // Bucket k holds the steps s with floor((s - lo) · maxPoints / width) = k: equal step widths.
      const lo = BigInt(extent.lo);
      const width = BigInt(extent.hi) - lo + 1n;
      const buckets = BigInt(maxPoints);
      const firstOffset = (k: bigint) => (k * width + buckets - 1n) / buckets; // ceil(k · width / buckets)
      const points: MetricPoint[] = [];
      for (let k = 0n; k < buckets; k++) {
        const row = this.#bucket.get({ runId, lo: lo + firstOffset(k), hi: lo + firstOffset(k + 1n) - 1n })!;
        if (row.n === 0) continue;
        const { n: _n, ...point } = row;
        points.push(toPoint({ ...point, runId }));
      }
      return points;
    });
  }

  /** Writes the points in one transaction: all of them or none. */
  append(points: readonly MetricPoint[]): void {
    points.forEach(checkPoint);
    if (points.length === 0) return;
    this.#ctx.write(`append ${points.length} metric points`, () => this.#appendTx(points));
  }

  /**
   * The run's points with fromStep ≤ step ≤ toStep, by step. More than maxPoints are averaged
   * in SQL into at most maxPoints buckets of equal step width, each reported at its last step, so
   * a long run reads fast (1M points → 2000 in about 0.3 s).
   */
  range(runId: number, options: MetricRangeOptions = {}): MetricPoint[] {
    const from = options.fromStep ?? 0;
    const to = options.toStep ?? Number.MAX_SAFE_INTEGER;
    const maxPoints = options.maxPoints ?? DEFAULT_MAX_POINTS;
    assertWholeNumber(from, 'fromStep');
    assertWholeNumber(to, 'toStep');
    assertWholeNumber(maxPoints, 'maxPoints', 1);
    if (from > to) throw new QuadraError('INVALID_ARGUMENT', `fromStep (${from}) is after toStep (${to})`);
    return this.#ctx.read(`read the metrics of run ${runId}`, () => this.#rangeTx(runId, from, to, maxPoints));
  }

  /** The run's latest point, or null when it has none. */
  last(runId: number): MetricPoint | null {
    const row = this.#ctx.read(`read the metrics of run ${runId}`, () => this.#last.get(runId));
    return row === undefined ? null : toPoint(row);
  }

  /** Deletes the run's points after `step` (resuming from a checkpoint abandons them); returns how many. */
  deleteAfter(runId: number, step: number): number {
    assertWholeNumber(step, 'step');
    return this.#ctx.write(`delete the metrics of run ${runId} after step ${step}`, () => this.#deleteAfter.run(runId, step).changes);
  }
}
