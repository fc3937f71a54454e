import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { RunProgress } from '../../src-shared/progress';
import type { CheckpointRecord, MetricPoint, RunRecord, RunStatus } from '../../src-shared/records';
import { ApiError } from '../../src-renderer/lib/api/client';
import { MAX_POINTS, POLL_MS, RunDetailState } from '../../src-renderer/components/runs/run-detail-state.svelte';
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
    controlRequest: null,
    summary: { bestValidationLoss: null, bestTrainLoss: null, lastTrainLoss: null, lastValidationLoss: null, samplesPerSec: null, durationS: null, steps: 0, epochs: 0, failureReason: null, ...summary },
  };
}

function metric(step: number, trainLoss: number | null, validationLoss: number | null = null, samplesPerSec: number | null = 1000): MetricPoint {
  return { runId: RUN_ID, step, epoch: 1, time: 0, trainLoss, validationLoss, samplesPerSec, gpuMemoryMiB: null, cpuPercent: null, rssBytes: null };
}

function progress(step: number, trainLoss: number, extra: Partial<RunProgress> = {}): RunProgress {
  return { ...metric(step, trainLoss, null, 2000), epoch: 2, stepInEpoch: step % 10, stepsPerEpoch: 10, paused: false, workers: [], ...extra };
}

/** Longer than the silence after which polling takes over, plus one poll. */
const SILENCE_AND_POLL = 2 * POLL_MS + 100;

function checkpoint(step: number): CheckpointRecord {
  return { id: step, runId: RUN_ID, epoch: 2, step, validationLoss: 0.35, trainLoss: 0.3, sha256: 'ab', sizeBytes: 100, createdAt: '2026-01-01T00:01:00.000Z', isBest: true };
}

const ys = (points: ReadonlyArray<{ x: number; y: number }>) => points.map((p) => [p.x, p.y]);

/** Lets the awaited fake calls land and the 250 ms publish timer fire. */
const settle = (ms = 300) => vi.advanceTimersByTimeAsync(ms);

let api: FakeApi;
let run: RunRecord;
let stored: MetricPoint[];
let checkpoints: CheckpointRecord[];
let stop: (() => void) | null = null;

/** As the server answers getMetrics: the stored points in the range, averaged down to maxPoints buckets of equal count. */
function storedMetrics({ fromStep = 0, toStep = Number.MAX_SAFE_INTEGER, maxPoints = 100_000 }: { fromStep?: number; toStep?: number; maxPoints?: number }): MetricPoint[] {
  const points = stored.filter((p) => p.step >= fromStep && p.step <= toStep);
  if (points.length <= maxPoints) return points;
  const size = Math.ceil(points.length / maxPoints);
  const mean = (values: Array<number | null>) => {
    const known = values.filter((v): v is number => v !== null);
    return known.length === 0 ? null : known.reduce((a, b) => a + b, 0) / known.length;
  };
  return Array.from({ length: Math.ceil(points.length / size) }, (_, k) => {
    const bucket = points.slice(k * size, (k + 1) * size);
    return { ...bucket.at(-1)!, trainLoss: mean(bucket.map((p) => p.trainLoss)), validationLoss: mean(bucket.map((p) => p.validationLoss)), samplesPerSec: mean(bucket.map((p) => p.samplesPerSec)) };
  });
}

/** Every step from `from` to `to`, as training now stores them. */
const everyStep = (from: number, to: number, loss: (step: number) => number) => Array.from({ length: to - from + 1 }, (_, i) => metric(from + i, loss(from + i)));

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'] });
  vi.setSystemTime(Date.parse('2026-01-01T00:01:40.000Z'));
  run = runRecord('running');
  stored = [metric(0, 9), metric(5, 0.8, 0.9), metric(10, 0.5)];
  checkpoints = [];
  api = new FakeApi()
    .handle('getRun', () => ({ run, checkpoints }))
    .handle('getMetrics', (request) => storedMetrics(request));
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

  it('a later reading of the same step replaces it; an older step lands in step order, and the facts stay with the newest', async () => {
    const detail = await started();
    api.emit('onDidProgress', progress(12, 0.4));
    api.emit('onDidProgress', progress(12, 0.38));
    api.emit('onDidProgress', progress(8, 0.1));
    await settle();
    expect(ys(detail.trainLoss)).toEqual([
      [5, 0.8],
      [8, 0.1],
      [10, 0.5],
      [12, 0.38],
    ]);
    expect(detail.step).toBe(12);
  });

  it('a first event far past what was stored when the page loaded (a run that had just started): the steps between are read', async () => {
    stored = [];
    run = runRecord('queued');
    const detail = await started();
    // Workers report once before their first step.
    api.emit('onDidProgress', { ...progress(0, 0), trainLoss: null });
    await settle();
    stored = everyStep(1, 40, (step) => 1 / step);
    run = runRecord('running');
    api.emit('onDidProgress', progress(40, 1 / 40));
    await settle();
    expect(api.callsOf('getMetrics').at(-1)).toEqual({ runId: RUN_ID, fromStep: 0, toStep: 40, maxPoints: MAX_POINTS });
    expect(detail.trainLoss.map((p) => p.x)).toEqual(everyStep(1, 40, () => 0).map((p) => p.step));
    expect(detail.trainLoss[0]).toEqual({ x: 1, y: 1 });
    // Later events are a step or so apart: nothing more is read.
    const reads = api.callsOf('getMetrics').length;
    api.emit('onDidProgress', progress(44, 1 / 44));
    await settle();
    expect(api.callsOf('getMetrics')).toHaveLength(reads);
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

  it('an event held during the load, far past what the load read: the steps between are read after it lands', async () => {
    let answer!: (points: MetricPoint[]) => void;
    api.handle('getMetrics', () => new Promise<MetricPoint[]>((resolve) => (answer = resolve)));
    const detail = new RunDetailState(api, RUN_ID);
    stop = detail.start();
    api.emit('onDidProgress', progress(40, 1 / 40));
    await settle();
    api.handle('getMetrics', (request) => storedMetrics(request));
    stored = everyStep(1, 40, (step) => 1 / step);
    // The load had read the database before any step was stored.
    answer([]);
    await settle();
    expect(api.callsOf('getMetrics').at(-1)).toEqual({ runId: RUN_ID, fromStep: 0, toStep: 40, maxPoints: MAX_POINTS });
    expect(detail.trainLoss).toHaveLength(40);
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

  it('when the run finishes it reads its whole stored curve again: every step, where live events sampled it', async () => {
    const detail = await started();
    // Live events come 4 times a second: here every fourth step.
    for (const step of [12, 16]) api.emit('onDidProgress', progress(step, 1 / step));
    await settle();
    expect(detail.trainLoss.map((p) => p.x)).toEqual([5, 10, 12, 16]);
    // The store kept every step.
    stored = [...stored, ...everyStep(11, 19, (step) => 1 / step), metric(20, 0.05, 0.06)];
    run = runRecord('completed', { steps: 20, epochs: 2 });
    checkpoints = [checkpoint(20)];
    api.emit('onDidChangeRun', run);
    await settle();
    const reload = api.callsOf('getMetrics').at(-1);
    expect(reload).toEqual({ runId: RUN_ID, maxPoints: MAX_POINTS });
    expect(detail.trainLoss.map((p) => p.x)).toEqual([5, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    expect(ys(detail.validationLoss)).toEqual([
      [5, 0.9],
      [20, 0.06],
    ]);
    expect(detail.checkpoints).toEqual(checkpoints);
    expect(detail.live).toBe(false);
    expect(detail.paused).toBe(false);
    expect(detail.status).toBe('completed');
    expect(detail.step).toBe(20);
  });

  it("a long run's final curve is the server's average of every step, at most MAX_POINTS points", async () => {
    const detail = await started();
    stored = everyStep(1, 3 * MAX_POINTS, (step) => 1 / step);
    run = runRecord('completed', { steps: 3 * MAX_POINTS });
    api.emit('onDidChangeRun', run);
    await settle();
    expect(detail.trainLoss).toHaveLength(MAX_POINTS);
    expect(detail.trainLoss.at(-1)?.x).toBe(3 * MAX_POINTS);
    // Each point is the mean of its three steps, not one sampled step.
    expect(detail.trainLoss[0]!.y).toBeCloseTo((1 / 1 + 1 / 2 + 1 / 3) / 3, 12);
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

  it('pause, resume and cancel: one request at a time, busy while it is on its way', async () => {
    api.handle('controlRun', ({ action }) => runRecord(action === 'pause' ? 'paused' : 'running'));
    const detail = await started();
    const pausing = detail.control('pause');
    expect(detail.controlPending).toBe('pause');
    // A second request while one is on its way is not sent.
    await detail.control('cancel');
    await pausing;
    expect(api.callsOf('controlRun')).toEqual([{ runId: RUN_ID, action: 'pause' }]);
    expect(detail.controlPending).toBeNull();
    expect(detail.run?.status).toBe('paused');
    expect(detail.paused).toBe(true);
  });

  it('a refusal (CONFLICT) is said, not thrown, and the run is read again to show why', async () => {
    const message = "run 4 cannot be cancelled: the process that trained it (pid 4242) has stopped, so it is now 'interrupted'";
    api.handle('controlRun', () => {
      run = runRecord('interrupted');
      throw new ApiError({ code: 'CONFLICT', message });
    });
    const detail = await started();
    await detail.control('cancel');
    expect(detail.controlError).toBe(`Could not cancel the run: ${message}`);
    expect(detail.controlPending).toBeNull();
    await settle();
    expect(detail.status).toBe('interrupted');
    expect(detail.live).toBe(false);
    detail.dismissControlError();
    expect(detail.controlError).toBeNull();
  });

  it('a run trained by another process: the request takes seconds, and one not yet taken is shown until it is', async () => {
    run = { ...runRecord('running'), ownerPid: 4242 };
    api.handle('controlRun', () => new Promise((resolve) => setTimeout(() => resolve((run = { ...run, controlRequest: 'pause' })), 3000)));
    const detail = await started();
    const pausing = detail.control('pause');
    await settle(2500);
    expect(detail.controlPending).toBe('pause');
    await settle(600);
    await pausing;
    expect(detail.controlPending).toBeNull();
    expect(detail.controlRequested).toBe('pause');
    expect(detail.paused).toBe(false);
    // Its owner takes it; the next poll shows it paused.
    run = { ...run, status: 'paused', controlRequest: null };
    await settle(POLL_MS);
    expect(detail.paused).toBe(true);
    expect(detail.controlRequested).toBeNull();
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

describe('RunDetailState live events and polling', () => {
  /** Progress 4 times a second for `seconds`, from `step` on. */
  async function report(seconds: number, step: number): Promise<number> {
    for (let i = 0; i < seconds * 4; i++) {
      api.emit('onDidProgress', progress(++step, 1 / step));
      await vi.advanceTimersByTimeAsync(250);
    }
    return step;
  }

  it('a run this workstation trains is never polled: its events and announcements say everything', async () => {
    const detail = await started();
    await report(12, 10);
    expect(api.callsOf('getRun')).toHaveLength(1);
    expect(api.callsOf('getMetrics')).toHaveLength(1);
    expect(detail.reporting).toBe(true);
    expect(detail.step).toBe(58);
    // A status change is announced with the record itself: nothing to read.
    api.emit('onDidChangeRun', runRecord('paused'));
    await settle();
    expect(detail.run?.status).toBe('paused');
    expect(api.callsOf('getRun')).toHaveLength(1);
  });

  it('a run trained by another process sends no events: it is polled, from its last step, until it stops', async () => {
    run = { ...runRecord('running'), ownerPid: 4242 };
    const detail = await started();
    expect(detail.reporting).toBeNull();
    stored = [...stored, ...everyStep(11, 14, (step) => 1 / step)];
    await settle(POLL_MS);
    expect(api.callsOf('getMetrics').at(-1)).toMatchObject({ fromStep: 10 });
    expect(detail.reporting).toBe(false);
    expect(detail.trainLoss.map((p) => p.x)).toEqual([5, 10, 11, 12, 13, 14]);
    expect(detail.step).toBe(14);

    // It finishes: read whole once, then no more polls.
    run = { ...run, status: 'completed' };
    await settle(POLL_MS);
    expect(detail.live).toBe(false);
    expect(api.callsOf('getMetrics').at(-1)).toEqual({ runId: RUN_ID, maxPoints: MAX_POINTS });
    const calls = api.calls.length;
    await settle(5 * POLL_MS);
    expect(api.calls).toHaveLength(calls);
  });

  it('polling stops as soon as the run\'s events arrive, and starts again if they stop', async () => {
    const detail = await started();
    await settle(POLL_MS);
    const polled = api.callsOf('getRun').length;
    expect(polled).toBe(2);
    const step = await report(10, 10);
    expect(api.callsOf('getRun')).toHaveLength(polled);
    await settle(SILENCE_AND_POLL);
    expect(api.callsOf('getRun').length).toBeGreaterThan(polled);
    expect(detail.step).toBe(step);
  });

  it("an epoch's end: the validation loss comes with the progress of the epoch's last step", async () => {
    const detail = await started();
    api.emit('onDidProgress', progress(20, 0.3, { epoch: 2, stepInEpoch: 10 }));
    api.emit('onDidProgress', progress(20, 0.3, { epoch: 2, stepInEpoch: 10, validationLoss: 0.35 }));
    await settle();
    expect(ys(detail.validationLoss)).toEqual([
      [5, 0.9],
      [20, 0.35],
    ]);
    expect(ys(detail.trainLoss).at(-1)).toEqual([20, 0.3]);
  });

  it("the next epoch's first step reads the last epoch's end (its validation point, its checkpoint) when live events missed it", async () => {
    const detail = await started();
    api.emit('onDidProgress', progress(19, 0.31, { epoch: 2, stepInEpoch: 9 }));
    stored = [...stored, ...everyStep(11, 19, () => 0.31), metric(20, 0.3, 0.35)];
    checkpoints = [checkpoint(20)];
    api.emit('onDidProgress', progress(21, 0.29, { epoch: 3, stepInEpoch: 1 }));
    await settle();
    expect(api.callsOf('getMetrics').at(-1)).toEqual({ runId: RUN_ID, fromStep: 20, toStep: 20, maxPoints: MAX_POINTS });
    expect(ys(detail.validationLoss)).toEqual([
      [5, 0.9],
      [20, 0.35],
    ]);
    // Step 20's train point, read after step 21's event, lands before it.
    expect(detail.trainLoss.map((p) => p.x)).toEqual([5, 10, 19, 20, 21]);
    expect(detail.step).toBe(21);
    expect(detail.checkpoints).toEqual(checkpoints);
  });

  it('epochs that end faster than a read returns: one read at a time, the ones asked meanwhile read together', async () => {
    const detail = await started();
    const answers: Array<() => void> = [];
    api.handle('getMetrics', (request) => new Promise((resolve) => answers.push(() => resolve(storedMetrics(request)))));
    stored = [...stored, metric(20, 0.3, 0.35), metric(30, 0.2, 0.25), metric(40, 0.1, 0.15)];
    api.emit('onDidProgress', progress(11, 0.4, { epoch: 2, stepInEpoch: 1 }));
    api.emit('onDidProgress', progress(21, 0.3, { epoch: 3, stepInEpoch: 1 }));
    api.emit('onDidProgress', progress(31, 0.2, { epoch: 4, stepInEpoch: 1 }));
    api.emit('onDidProgress', progress(41, 0.1, { epoch: 5, stepInEpoch: 1 }));
    await settle();
    expect(api.callsOf('getMetrics').slice(1)).toEqual([{ runId: RUN_ID, fromStep: 20, toStep: 20, maxPoints: MAX_POINTS }]);
    answers.shift()!();
    await settle();
    expect(api.callsOf('getMetrics').slice(2)).toEqual([{ runId: RUN_ID, fromStep: 30, toStep: 40, maxPoints: MAX_POINTS }]);
    answers.shift()!();
    await settle();
    expect(ys(detail.validationLoss)).toEqual([
      [5, 0.9],
      [20, 0.35],
      [30, 0.25],
      [40, 0.15],
    ]);
  });

  it('after a dropped connection it reads the run again (the events sent meanwhile are lost)', async () => {
    const detail = await started();
    api.setConnection('closed');
    api.setConnection('connecting');
    stored = [...stored, ...everyStep(11, 30, (step) => 1 / step)];
    run = runRecord('running', { steps: 30 });
    api.setConnection('open');
    await settle();
    expect(api.callsOf('getMetrics').at(-1)).toEqual({ runId: RUN_ID, maxPoints: MAX_POINTS });
    expect(detail.trainLoss.at(-1)?.x).toBe(30);
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
