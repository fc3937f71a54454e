import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { RunProgress } from '../../src-shared/api';
import type { MetricPoint, RunRecord, RunStatus } from '../../src-shared/records';
import { RunDetailState } from '../../src-renderer/components/runs/run-detail-state.svelte';
import { FakeApi } from './fake-api';

const RUN_ID = 4;

function runRecord(status: RunStatus, summary: Partial<RunRecord['summary']> = {}): RunRecord {
  return {
    id: RUN_ID,
    name: 'alpha',
    config: { epochs: 10 },
    mode: 'single',
    backend: 'simd',
    devices: [],
    workers: 1,
    datasetId: null,
    status,
    createdAt: '2026-01-01T00:00:00.000Z',
    startedAt: '2026-01-01T00:00:00.000Z',
    endedAt: null,
    ownerPid: null,
    summary: { bestValidationLoss: null, bestTrainLoss: null, lastTrainLoss: null, lastValidationLoss: null, samplesPerSec: null, durationS: null, steps: 0, epochs: 0, failureReason: null, ...summary },
  };
}

function metric(step: number, trainLoss: number | null, validationLoss: number | null = null, samplesPerSec: number | null = 1000): MetricPoint {
  return { runId: RUN_ID, step, epoch: 1, time: 0, trainLoss, validationLoss, samplesPerSec, gpuMemoryMiB: null, cpuPercent: null, rssBytes: null };
}

function progress(step: number, trainLoss: number, extra: Partial<RunProgress> = {}): RunProgress {
  return { ...metric(step, trainLoss, null, 2000), epoch: 2, stepInEpoch: step % 10, stepsPerEpoch: 10, paused: false, workers: [], ...extra };
}

const ys = (points: ReadonlyArray<{ x: number; y: number }>) => points.map((p) => [p.x, p.y]);

/** Lets the awaited fake calls land and the 250 ms publish timer fire. */
const settle = (ms = 300) => vi.advanceTimersByTimeAsync(ms);

let api: FakeApi;
let run: RunRecord;
let stored: MetricPoint[];
let stop: (() => void) | null = null;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] });
  vi.setSystemTime(Date.parse('2026-01-01T00:01:40.000Z'));
  run = runRecord('running');
  stored = [metric(0, 9), metric(5, 0.8, 0.9), metric(10, 0.5)];
  api = new FakeApi()
    .handle('getRun', () => ({ run, checkpoints: [] }))
    .handle('getMetrics', ({ fromStep = 0 }) => stored.filter((p) => p.step >= fromStep));
});

afterEach(() => {
  stop?.();
  stop = null;
  vi.useRealTimers();
});

async function started(): Promise<RunDetailState> {
  const detail = new RunDetailState(api, RUN_ID);
  stop = detail.start();
  await settle();
  return detail;
}

describe('RunDetailState curves', () => {
  it('draws the stored metrics, leaving out step 0 (before any training)', async () => {
    const detail = await started();
    expect(ys(detail.trainLoss)).toEqual([
      [5, 0.8],
      [10, 0.5],
    ]);
    expect(ys(detail.validationLoss)).toEqual([[5, 0.9]]);
    expect(detail.throughput).toHaveLength(2);
    expect(detail.step).toBe(10);
    expect(detail.loading).toBe(false);
  });

  it('extends the stored curve with live progress, published together at most every 250 ms', async () => {
    const detail = await started();
    api.emit('onDidProgress', progress(11, 0.45));
    api.emit('onDidProgress', progress(12, 0.4));
    // Not drawn point by point: both arrive with the next publish.
    expect(detail.trainLoss).toHaveLength(2);
    await settle();
    expect(ys(detail.trainLoss).slice(-3)).toEqual([
      [10, 0.5],
      [11, 0.45],
      [12, 0.4],
    ]);
    expect(detail.step).toBe(12);
    expect(detail.progress?.step).toBe(12);
  });

  it('a later reading of the same step replaces it; an older step (a late duplicate) is dropped', async () => {
    const detail = await started();
    api.emit('onDidProgress', progress(12, 0.4));
    api.emit('onDidProgress', progress(12, 0.38));
    api.emit('onDidProgress', progress(8, 0.1));
    await settle();
    expect(ys(detail.trainLoss)).toEqual([
      [5, 0.8],
      [10, 0.5],
      [12, 0.38],
    ]);
  });

  it('holds the events that arrive while the metrics load, and adds them after the stored points', async () => {
    let answer!: (points: MetricPoint[]) => void;
    api.handle('getMetrics', () => new Promise<MetricPoint[]>((resolve) => (answer = resolve)));
    const detail = new RunDetailState(api, RUN_ID);
    stop = detail.start();
    api.emit('onDidProgress', progress(11, 0.45));
    await settle();
    expect(detail.trainLoss).toEqual([]);
    answer(stored);
    await settle();
    expect(ys(detail.trainLoss)).toEqual([
      [5, 0.8],
      [10, 0.5],
      [11, 0.45],
    ]);
  });

  it('ignores another run\'s events, and stops listening when disposed', async () => {
    const detail = await started();
    api.emit('onDidProgress', { ...progress(20, 0.1), runId: RUN_ID + 1 });
    await settle();
    expect(detail.step).toBe(10);
    stop!();
    stop = null;
    expect(api.listenerCount('onDidProgress')).toBe(0);
    expect(api.listenerCount('onDidChangeRun')).toBe(0);
  });
});

describe('RunDetailState status', () => {
  it('a live run\'s pause shows from its progress before its record says so', async () => {
    const detail = await started();
    expect(detail.live).toBe(true);
    expect(detail.status).toBe('running');
    api.emit('onDidProgress', progress(11, 0.45, { paused: true }));
    await settle();
    expect(detail.paused).toBe(true);
    expect(detail.status).toBe('paused');
  });

  it('when the run finishes it reads only what is new: checkpoints, status and the last points', async () => {
    const detail = await started();
    run = runRecord('completed', { steps: 20, epochs: 10 });
    stored = [...stored, metric(20, 0.3, 0.35)];
    api.emit('onDidChangeRun', run);
    await settle();
    expect(api.callsOf('getMetrics').at(-1)).toMatchObject({ fromStep: 10 });
    expect(detail.live).toBe(false);
    expect(detail.paused).toBe(false);
    expect(detail.status).toBe('completed');
    expect(ys(detail.trainLoss).at(-1)).toEqual([20, 0.3]);
    expect(detail.step).toBe(20);
  });

  it('a stopped run resumed from a checkpoint reloads its whole curve (it continues from there)', async () => {
    run = runRecord('cancelled', { steps: 10 });
    const detail = await started();
    const loads = api.callsOf('getMetrics').length;
    run = runRecord('running', { steps: 5 });
    stored = [metric(5, 0.8)];
    api.emit('onDidChangeRun', run);
    await settle();
    const reload = api.callsOf('getMetrics')[loads];
    expect(reload).toBeDefined();
    expect(reload).not.toHaveProperty('fromStep');
    expect(ys(detail.trainLoss)).toEqual([[5, 0.8]]);
    expect(detail.live).toBe(true);
  });

  it('pause, resume and cancel: one request at a time, and a refusal is said, not thrown', async () => {
    api.handle('controlRun', ({ action }) => {
      if (action === 'cancel') throw new Error('the run already stopped');
      return runRecord(action === 'pause' ? 'paused' : 'running');
    });
    const detail = await started();
    const pausing = detail.control('pause');
    expect(detail.controlPending).toBe('pause');
    await pausing;
    expect(detail.controlPending).toBeNull();
    expect(detail.run?.status).toBe('paused');
    expect(detail.paused).toBe(true);

    await detail.control('cancel');
    expect(detail.controlError).toBe('Could not cancel the run: the run already stopped');
    detail.dismissControlError();
    expect(detail.controlError).toBeNull();
  });

  it('a failed load says why and keeps nothing half-drawn', async () => {
    api.handle('getRun', () => {
      throw new Error('run 4 not found');
    });
    const detail = await started();
    expect(detail.error).toBe('run 4 not found');
    expect(detail.run).toBeNull();
    expect(detail.trainLoss).toEqual([]);
  });
});

describe('RunDetailState facts', () => {
  it('prefers live progress, then the newest point, then the stored summary', async () => {
    run = runRecord('running', { lastTrainLoss: 0.9, samplesPerSec: 10 });
    const detail = await started();
    expect(detail.lastTrainLoss).toBe(0.5);
    expect(detail.samplesPerSec).toBe(1000);
    api.emit('onDidProgress', progress(13, 0.42));
    await settle();
    expect(detail.lastTrainLoss).toBe(0.42);
    expect(detail.samplesPerSec).toBe(2000);
    expect(detail.epochText).toBe('epoch 2/10 · step 3/10');
  });

  it('once stopped, the summary speaks: best loss, epochs and duration', async () => {
    run = runRecord('completed', { bestValidationLoss: 0.31, epochs: 10, durationS: 12.5 });
    const detail = await started();
    expect(detail.liveProgress).toBeNull();
    expect(detail.bestValidationLoss).toBe(0.31);
    expect(detail.epochText).toBe('10/10 epochs');
    expect(detail.durationS).toBe(12.5);
  });

  it('without a stored best, the best validation loss is the lowest point drawn', async () => {
    stored = [metric(5, 0.8, 0.9), metric(10, 0.5, 0.6), metric(15, 0.4, 0.7)];
    const detail = await started();
    expect(detail.bestValidationLoss).toBe(0.6);
  });

  it('counts a live run\'s duration from its start, anew with each progress event', async () => {
    const detail = await started();
    // Started at 00:00:00; the clock stood at 00:01:40 and the load took 300 ms.
    expect(detail.durationS).toBeCloseTo(100.3, 6);
    await vi.advanceTimersByTimeAsync(1000);
    api.emit('onDidProgress', progress(11, 0.45));
    await settle();
    expect(detail.durationS).toBeCloseTo(101.6, 6);
  });

  it('a mixed-precision run shows its latest loss scale and skipped steps; others none', async () => {
    const detail = await started();
    expect(detail.scaler).toBeNull();
    api.emit('onDidProgress', progress(11, 0.45, { lossScale: 1024, skippedSteps: 2 }));
    await settle();
    expect(detail.scaler).toEqual({ scale: 1024, skippedSteps: 2 });
  });

  it('names where an imported run came from', async () => {
    run = { ...runRecord('completed'), config: { importedFrom: 'default.safetensors', origin: 'pytorch' } };
    const detail = await started();
    expect(detail.importedFrom).toBe('default.safetensors (pytorch)');
    expect(detail.plannedEpochs).toBeNull();
  });
});
