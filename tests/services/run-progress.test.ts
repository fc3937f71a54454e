import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { metricPointOf, type RunProgress } from '../../src-shared/progress';
import { startTraining, type TrainingRequestInput } from '../../src-main/services/training-service';
import { openStore, type Store } from '../../src-main/store/database';
import type { TrainingRun } from '../../src-main/training/coordinator';
import { TEST_HARDWARE } from '../helpers/training';

/**
 * Issue 13: one shape for a progress point (RunProgress, stored as the MetricPoint it is), and the
 * loss of every step recorded, in batched writes that lose nothing when a run stops early.
 * Real SQLite, real simd workers.
 */

const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-progress-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const SMALL = { fieldSize: 8, hiddenSize: 12, spikingHiddenSize: 8, spikingSteps: 3 };
let dbCounter = 0;
const freshStore = (): Store => openStore(path.join(tmp, `progress-${++dbCounter}.sqlite`));

function request(overrides: Partial<TrainingRequestInput> = {}): TrainingRequestInput {
  // 1,800 training rows in batches of 16: 112 steps an epoch.
  return { mode: 'single', backend: 'simd', epochs: 3, dataset: 'synthetic:2000', engine: { batchSize: 16, model: SMALL }, checkpointEveryEpochs: 1, ...overrides };
}

describe('every step recorded', () => {
  it('a short real run stores one train-loss point per step, validation at each epoch end, and progress events that are those points', async () => {
    const store = freshStore();
    const events: RunProgress[] = [];
    const result = await startTraining(request(), { store, hardware: TEST_HARDWARE, onProgress: (p) => events.push(p) });
    expect(result.status).toBe('completed');
    const steps = result.outcome.step;
    expect(steps).toBe(3 * 112);
    const points = store.metrics.range(result.runId, { maxPoints: 100_000 });
    expect(points.map((p) => p.step)).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
    for (const p of points) {
      expect(p.trainLoss, `step ${p.step}`).toBeGreaterThan(0);
      expect(p.samplesPerSec, `step ${p.step}`).toBeGreaterThan(0);
      expect(p.epoch).toBe(Math.ceil(p.step / 112));
    }
    // Each epoch's validation loss at its last step, as its checkpoint has it.
    const validated = points.filter((p) => p.validationLoss !== null);
    expect(validated.map((p) => p.step)).toEqual([112, 224, 336]);
    const checkpoints = store.checkpoints.listByRun(result.runId);
    expect(validated.map((p) => p.validationLoss)).toEqual(checkpoints.map((c) => c.validationLoss));
    // The ticks' resource use lands on their steps.
    expect(points.some((p) => p.cpuPercent !== null || p.rssBytes !== null)).toBe(true);
    expect(store.runs.get(result.runId).summary.lastTrainLoss).toBe(points.at(-1)!.trainLoss);

    // Progress events are RunProgress: the stored point of their step, plus schedule and workers.
    expect(events.length).toBeGreaterThan(0);
    const last = events.at(-1)!;
    expect(last).toMatchObject({ runId: result.runId, step: steps, epoch: 3, stepInEpoch: 112, stepsPerEpoch: 112, paused: false });
    expect(last.workers).toEqual([expect.objectContaining({ rank: 0, pid: expect.any(Number) })]);
    const stored = points.find((p) => p.step === last.step)!;
    expect(metricPointOf(last)).toMatchObject({ runId: result.runId, step: last.step, trainLoss: stored.trainLoss, validationLoss: stored.validationLoss });
    expect(Object.keys(metricPointOf(last)).sort()).toEqual(Object.keys(stored).sort());
    store.close();
  });

  it('a cancelled run keeps the points of every step it made, up to its last', async () => {
    const store = freshStore();
    let live: TrainingRun | null = null;
    const result = await startTraining(request({ epochs: 10_000 }), {
      store,
      hardware: TEST_HARDWARE,
      onStarted: (_runId, run) => (live = run),
      // Cancelled between ticks: the steps since the last flush are written at the end.
      onProgress: (p) => {
        if (p.step >= 150) live?.cancel();
      },
    });
    expect(result.status).toBe('cancelled');
    const steps = result.outcome.step;
    expect(steps).toBeGreaterThanOrEqual(150);
    const points = store.metrics.range(result.runId, { maxPoints: 100_000 });
    expect(points.map((p) => p.step)).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
    expect(points.every((p) => p.trainLoss !== null)).toBe(true);
    const run = store.runs.get(result.runId);
    expect(run.summary.steps).toBe(steps);
    expect(store.checkpoints.latest(result.runId)!.step).toBe(steps);
    store.close();
  });
});
