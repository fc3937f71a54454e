import { describe, expect, it } from 'vitest';
import type { MetricPoint } from '../../src-shared/records';
import { DEFAULT_MAX_POINTS } from '../../src-main/store/metrics';
import { expectIntegrityOk, expectQuadraError, NEW_RUN, testStore } from './helpers';

const point = (runId: number, step: number, extra: Partial<MetricPoint> = {}): MetricPoint => ({
  runId,
  step,
  epoch: Math.floor(step / 100),
  time: 1_700_000_000_000 + step * 10,
  trainLoss: 1 / step,
  validationLoss: null,
  samplesPerSec: 1000,
  gpuMemoryMiB: null,
  cpuPercent: 50,
  rssBytes: 100_000_000,
  ...extra,
});

function storeWithRun() {
  const store = testStore();
  const run = store.runs.create(NEW_RUN);
  return { store, runId: run.id };
}

describe('metrics', () => {
  it('appends points and reads them back by step', () => {
    const { store, runId } = storeWithRun();
    const points = [3, 1, 2].map((step) => point(runId, step));
    store.metrics.append(points);
    expect(store.metrics.range(runId)).toEqual([1, 2, 3].map((step) => point(runId, step)));
    expect(store.metrics.last(runId)).toEqual(point(runId, 3));
    expect(store.metrics.last(runId + 1)).toBeNull();
    expect(store.metrics.range(runId + 1)).toEqual([]);
  });

  it("keeps a mixed-precision run's loss scale and skipped steps, also when downsampled; other points have none", () => {
    const { store, runId } = storeWithRun();
    store.metrics.append([1, 2, 3, 4].map((step) => point(runId, step, { lossScale: 65536 / step, skippedSteps: step - 1 })));
    store.metrics.append([point(runId, 5)]);
    const points = store.metrics.range(runId);
    expect(points[0]).toEqual(point(runId, 1, { lossScale: 65536, skippedSteps: 0 }));
    expect(points[4]).toEqual(point(runId, 5));
    expect('lossScale' in points[4]!).toBe(false);
    // Two points a bucket: the smaller scale (a halving shows) and the larger skip count.
    const down = store.metrics.range(runId, { maxPoints: 2 });
    expect(down.map((p) => [p.lossScale, p.skippedSteps])).toEqual([[65536 / 3, 2], [65536 / 4, 3]]);
    expectQuadraError(() => store.metrics.append([point(runId, 9, { skippedSteps: 1.5 })]), 'INVALID_ARGUMENT', 'skippedSteps');
  });

  it('merges a second point for the same step, keeping what it does not measure', () => {
    const { store, runId } = storeWithRun();
    store.metrics.append([point(runId, 100, { trainLoss: 0.5 })]);
    store.metrics.append([point(runId, 100, { trainLoss: null, validationLoss: 0.6, samplesPerSec: null, time: 5 })]);
    expect(store.metrics.range(runId)).toEqual([point(runId, 100, { trainLoss: 0.5, validationLoss: 0.6, time: 5 })]);
  });

  it('writes all points or none', () => {
    const { store, runId } = storeWithRun();
    store.metrics.append([point(runId, 1)]);
    expectQuadraError(() => store.metrics.append([point(runId, 2), point(runId + 5, 3)]), 'NOT_FOUND', 'could not append 2 metric points');
    expectQuadraError(() => store.metrics.append([point(runId, 2), point(runId, 2.5)]), 'INVALID_ARGUMENT', 'metric point 1 (run 1, step 2.5): step');
    expect(store.metrics.range(runId).map((p) => p.step)).toEqual([1]);
    store.metrics.append([]);
    expectIntegrityOk(store);
  });

  it('deletes the points after a step (resuming from a checkpoint)', () => {
    const { store, runId } = storeWithRun();
    const other = store.runs.create(NEW_RUN).id;
    store.metrics.append([1, 2, 3, 4, 5].flatMap((step) => [point(runId, step), point(other, step)]));
    expect(store.metrics.deleteAfter(runId, 3)).toBe(2);
    expect(store.metrics.range(runId).map((p) => p.step)).toEqual([1, 2, 3]);
    expect(store.metrics.range(other)).toHaveLength(5);
    expect(store.metrics.deleteAfter(runId, 3)).toBe(0);
    expectQuadraError(() => store.metrics.deleteAfter(runId, -1), 'INVALID_ARGUMENT', 'step');
  });

  it('limits the range to fromStep..toStep, inclusive', () => {
    const { store, runId } = storeWithRun();
    store.metrics.append(Array.from({ length: 20 }, (_, i) => point(runId, i + 1)));
    expect(store.metrics.range(runId, { fromStep: 5, toStep: 8 }).map((p) => p.step)).toEqual([5, 6, 7, 8]);
    expect(store.metrics.range(runId, { fromStep: 18 }).map((p) => p.step)).toEqual([18, 19, 20]);
    expect(store.metrics.range(runId, { toStep: 2 }).map((p) => p.step)).toEqual([1, 2]);
    expectQuadraError(() => store.metrics.range(runId, { fromStep: 9, toStep: 3 }), 'INVALID_ARGUMENT', 'fromStep (9) is after toStep (3)');
    expectQuadraError(() => store.metrics.range(runId, { maxPoints: 0 }), 'INVALID_ARGUMENT', 'maxPoints');
  });

  it('averages buckets of equal step width when the range holds more than maxPoints (hand-checked)', () => {
    const { store, runId } = storeWithRun();
    // Steps 1..10, train loss = step; validation loss only at steps 4 and 10.
    store.metrics.append(
      Array.from({ length: 10 }, (_, i) =>
        point(runId, i + 1, {
          epoch: i < 5 ? 0 : 1,
          time: 1000 + i,
          trainLoss: i + 1,
          validationLoss: i + 1 === 4 ? 0.4 : i + 1 === 10 ? 0.1 : null,
          samplesPerSec: (i + 1) * 10,
          rssBytes: i % 2 === 0 ? 100 : 201,
        }),
      ),
    );
    expect(store.metrics.range(runId, { maxPoints: 10 })).toHaveLength(10); // not more than maxPoints: raw
    const buckets = store.metrics.range(runId, { maxPoints: 5 });
    // 5 buckets over [1, 10]: {1,2} {3,4} {5,6} {7,8} {9,10}; each reports its last step.
    expect(buckets.map((b) => b.step)).toEqual([2, 4, 6, 8, 10]);
    expect(buckets.map((b) => b.trainLoss)).toEqual([1.5, 3.5, 5.5, 7.5, 9.5]);
    expect(buckets.map((b) => b.validationLoss)).toEqual([null, 0.4, null, null, 0.1]);
    expect(buckets.map((b) => b.samplesPerSec)).toEqual([15, 35, 55, 75, 95]);
    expect(buckets.map((b) => b.epoch)).toEqual([0, 0, 1, 1, 1]);
    expect(buckets.map((b) => b.time)).toEqual([1001, 1003, 1005, 1007, 1009]);
    expect(buckets.map((b) => b.rssBytes)).toEqual([151, 151, 151, 151, 151]); // round(150.5)
    expect(buckets.map((b) => b.gpuMemoryMiB)).toEqual([null, null, null, null, null]);
    expect(buckets.every((b) => b.runId === runId)).toBe(true);

    // Three buckets over [1, 10]: steps 1-4, 5-7, 8-10.
    expect(store.metrics.range(runId, { maxPoints: 3 }).map((b) => [b.step, b.trainLoss])).toEqual([[4, 2.5], [7, 6], [10, 9]]);
    expect(store.metrics.range(runId, { maxPoints: 1 }).map((b) => [b.step, b.trainLoss])).toEqual([[10, 5.5]]);
    // Within a sub-range, the buckets cover only that range.
    expect(store.metrics.range(runId, { fromStep: 3, toStep: 6, maxPoints: 2 }).map((b) => [b.step, b.trainLoss])).toEqual([[4, 3.5], [6, 5.5]]);
  });

  it('downsamples 50,000 points to at most 500 rows, quickly', () => {
    const { store, runId } = storeWithRun();
    const points = Array.from({ length: 50_000 }, (_, i) => point(runId, i + 1, { trainLoss: i + 1, validationLoss: null }));
    store.metrics.append(points);
    const started = performance.now();
    const rows = store.metrics.range(runId, { maxPoints: 500 });
    const elapsed = performance.now() - started;
    expect(rows.length).toBeLessThanOrEqual(500);
    expect(rows.length).toBe(500);
    // Buckets of 100 steps: the first covers 1..100, the last 49,901..50,000.
    expect(rows[0]).toMatchObject({ step: 100, trainLoss: 50.5, epoch: 1 });
    expect(rows.at(-1)).toMatchObject({ step: 50_000, trainLoss: 49_950.5, epoch: 500 });
    const steps = rows.map((r) => r.step);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(elapsed).toBeLessThan(2000);
    // A zoomed-in range with few points comes back raw.
    expect(store.metrics.range(runId, { fromStep: 1000, toStep: 1099, maxPoints: 500 })).toEqual(points.slice(999, 1099));
    expect(store.metrics.last(runId)?.step).toBe(50_000);
    expectIntegrityOk(store);
  });

  it("a point per step, as training writes them (batches; ticks' resource use and epochs' validation merged into their step), still reads back bounded", () => {
    const { store, runId } = storeWithRun();
    const STEPS = 20_000;
    const EPOCH = 1000;
    let batch: MetricPoint[] = [];
    for (let step = 1; step <= STEPS; step++) {
      batch.push(point(runId, step, { cpuPercent: null, rssBytes: null }));
      if (step % 50 === 0) batch.push(point(runId, step, { trainLoss: null, samplesPerSec: null, cpuPercent: 75, rssBytes: 5000 }));
      if (step % EPOCH === 0) batch.push(point(runId, step, { trainLoss: null, samplesPerSec: null, cpuPercent: null, rssBytes: null, validationLoss: step / EPOCH }));
      if (step % 60 === 0 || step === STEPS) {
        store.metrics.append(batch);
        batch = [];
      }
    }
    const all = store.metrics.range(runId, { maxPoints: STEPS });
    expect(all).toHaveLength(STEPS);
    expect(all[49]).toMatchObject({ step: 50, trainLoss: 1 / 50, cpuPercent: 75, rssBytes: 5000, validationLoss: null });
    expect(all[EPOCH - 1]).toMatchObject({ step: EPOCH, trainLoss: 1 / EPOCH, validationLoss: 1 });
    const curve = store.metrics.range(runId);
    expect(curve.length).toBeLessThanOrEqual(DEFAULT_MAX_POINTS);
    expect(curve.length).toBe(DEFAULT_MAX_POINTS);
    // Every epoch's validation loss survives the averaging, in the bucket that holds its step.
    expect(curve.filter((p) => p.validationLoss !== null).map((p) => p.validationLoss)).toEqual(Array.from({ length: STEPS / EPOCH }, (_, i) => i + 1));
    expect(store.metrics.range(runId, { maxPoints: 100_000 })).toHaveLength(STEPS);
  });

  it('leaves sparse steps in fewer buckets, never more than maxPoints', () => {
    const { store, runId } = storeWithRun();
    const steps = [1, 2, 3, 1000, 1001, 5000, 9999, 10_000];
    store.metrics.append(steps.map((step) => point(runId, step)));
    const rows = store.metrics.range(runId, { maxPoints: 4 });
    expect(rows.map((r) => r.step)).toEqual([1001, 5000, 10_000]);
  });
});
