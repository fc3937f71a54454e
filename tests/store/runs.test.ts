import { describe, expect, it } from 'vitest';
import { RUN_STATUSES } from '../../src-shared/records';
import { expectIntegrityOk, expectQuadraError, NEW_RUN, steppingClock, testStore } from './helpers';

describe('runs', () => {
  it('creates a queued run and reads it back', () => {
    const store = testStore(':memory:', { now: steppingClock() });
    const run = store.runs.create({ ...NEW_RUN, mode: 'multi-gpu', backend: 'tensorflow-gpu', devices: ['gpu:0', 'gpu:1'], workers: 2 });
    expect(run).toEqual({
      id: 1,
      name: 'baseline',
      config: { model: { fieldSize: 6 }, epochs: 3 },
      mode: 'multi-gpu',
      backend: 'tensorflow-gpu',
      devices: ['gpu:0', 'gpu:1'],
      workers: 2,
      datasetId: null,
      status: 'queued',
      createdAt: '2025-01-01T00:00:01.000Z',
      startedAt: null,
      endedAt: null,
      ownerPid: 4242,
      controlRequest: null,
      summary: {
        bestValidationLoss: null,
        bestTrainLoss: null,
        lastTrainLoss: null,
        lastValidationLoss: null,
        samplesPerSec: null,
        durationS: null,
        steps: 0,
        epochs: 0,
        failureReason: null,
      },
    });
    expect(store.runs.get(run.id)).toEqual(run);
  });

  it('says which run is missing', () => {
    const store = testStore();
    const error = expectQuadraError(() => store.runs.get(77), 'NOT_FOUND', 'run 77 does not exist');
    expect(error.details).toEqual({ id: 77 });
    expectQuadraError(() => store.runs.setStatus(77, 'running'), 'NOT_FOUND', 'run 77');
    expectQuadraError(() => store.runs.updateSummary(77, { steps: 1 }), 'NOT_FOUND', 'run 77');
    expectQuadraError(() => store.runs.remove(77), 'NOT_FOUND', 'run 77');
  });

  it('rejects what it cannot store', () => {
    const store = testStore();
    expectQuadraError(() => store.runs.create({ ...NEW_RUN, config: [1, 2] }), 'INVALID_ARGUMENT', 'run config must be a JSON object');
    expectQuadraError(() => store.runs.create({ ...NEW_RUN, config: { n: 1n } }), 'INVALID_ARGUMENT', 'cannot be stored as JSON');
    expectQuadraError(() => store.runs.create({ ...NEW_RUN, workers: 0 }), 'INVALID_ARGUMENT', 'workers');
    expectQuadraError(() => store.runs.create({ ...NEW_RUN, mode: 'cluster' as never }), 'INVALID_ARGUMENT', 'run mode must be one of');
    expectQuadraError(() => store.runs.create({ ...NEW_RUN, datasetId: 9 }), 'NOT_FOUND', 'refers to a record that does not exist');
    expect(store.runs.list()).toEqual([]);
  });

  it('lists newest first, with a limit and a status filter', () => {
    const store = testStore(':memory:', { now: steppingClock() });
    const ids = ['a', 'b', 'c', 'd'].map((name) => store.runs.create({ ...NEW_RUN, name }).id);
    store.runs.setStatus(ids[1]!, 'running');
    store.runs.setStatus(ids[3]!, 'running');
    expect(store.runs.list().map((r) => r.name)).toEqual(['d', 'c', 'b', 'a']);
    expect(store.runs.list({ limit: 2 }).map((r) => r.name)).toEqual(['d', 'c']);
    expect(store.runs.list({ status: 'running' }).map((r) => r.name)).toEqual(['d', 'b']);
    expect(store.runs.list({ status: 'running', limit: 1 }).map((r) => r.name)).toEqual(['d']);
    expect(store.runs.list({ limit: 0 })).toEqual([]);
  });

  it('orders runs created in the same millisecond by id', () => {
    const store = testStore(':memory:', { now: () => new Date(0) });
    for (const name of ['x', 'y', 'z']) store.runs.create({ ...NEW_RUN, name });
    expect(store.runs.list().map((r) => r.name)).toEqual(['z', 'y', 'x']);
  });

  it('stamps startedAt on the first running and endedAt on every finished status', () => {
    const store = testStore(':memory:', { now: steppingClock() });
    const { id } = store.runs.create(NEW_RUN); // t=1s
    const running = store.runs.setStatus(id, 'running'); // 2s
    expect(running.startedAt).toBe('2025-01-01T00:00:02.000Z');
    expect(running.endedAt).toBeNull();
    const paused = store.runs.setStatus(id, 'paused'); // 3s
    expect(paused.status).toBe('paused');
    const resumed = store.runs.setStatus(id, 'running'); // 4s
    expect(resumed.startedAt).toBe('2025-01-01T00:00:02.000Z');
    const failed = store.runs.setStatus(id, 'failed', { failureReason: 'worker 1 exited with code 134' }); // 5s
    expect(failed).toMatchObject({ status: 'failed', startedAt: '2025-01-01T00:00:02.000Z', endedAt: '2025-01-01T00:00:05.000Z' });
    expect(failed.summary.failureReason).toBe('worker 1 exited with code 134');
    // Resuming a finished run (e.g. an interrupted one in another process) clears endedAt and the reason.
    const again = store.runs.setStatus(id, 'running', { ownerPid: 777 }); // 6s
    expect(again).toMatchObject({ endedAt: null, ownerPid: 777, startedAt: '2025-01-01T00:00:02.000Z' });
    expect(again.summary.failureReason).toBeNull();
    for (const status of ['completed', 'cancelled', 'diverged', 'interrupted'] as const) {
      expect(store.runs.setStatus(id, status).endedAt).not.toBeNull();
    }
    expectQuadraError(() => store.runs.setStatus(id, 'exploded' as never), 'INVALID_ARGUMENT', RUN_STATUSES.join(', '));
    expect(store.runs.get(id).status).toBe('interrupted');
  });

  it('updates only the summary fields given', () => {
    const store = testStore();
    const { id } = store.runs.create(NEW_RUN);
    store.runs.updateSummary(id, { steps: 100, epochs: 1, lastTrainLoss: 0.5, bestTrainLoss: 0.4 });
    const updated = store.runs.updateSummary(id, { lastTrainLoss: 0.3, bestValidationLoss: 0.35, durationS: 12.5, samplesPerSec: 900 });
    const expected = {
      bestValidationLoss: 0.35,
      bestTrainLoss: 0.4,
      lastTrainLoss: 0.3,
      lastValidationLoss: null,
      samplesPerSec: 900,
      durationS: 12.5,
      steps: 100,
      epochs: 1,
      failureReason: null,
    };
    expect(updated.summary).toEqual(expected);
    expect(store.runs.get(id).summary).toEqual(expected);
    expect(store.runs.updateSummary(id, { bestTrainLoss: null }).summary.bestTrainLoss).toBeNull();
    expectQuadraError(() => store.runs.updateSummary(id, { steps: 1.5 }), 'INVALID_ARGUMENT', 'steps');
  });

  it('marks runs whose owner process died as interrupted, leaving live and finished ones', () => {
    const store = testStore(':memory:', { now: steppingClock() });
    const make = (name: string, ownerPid: number | null) => store.runs.create({ ...NEW_RUN, name, ownerPid }).id;
    const deadRunning = make('dead-running', 101);
    const deadPaused = make('dead-paused', 102);
    const liveRunning = make('live-running', 200);
    const deadQueued = make('dead-queued', 103);
    const deadCompleted = make('dead-completed', 104);
    const noOwner = make('no-owner', null);
    for (const id of [deadRunning, liveRunning, deadCompleted, noOwner]) store.runs.setStatus(id, 'running');
    store.runs.setStatus(deadPaused, 'running');
    store.runs.setStatus(deadPaused, 'paused');
    store.runs.setStatus(deadCompleted, 'completed');

    const asked: number[] = [];
    const changed = store.runs.markInterruptedRuns((pid) => {
      asked.push(pid);
      return pid === 200;
    });
    // A queued run whose owner died is interrupted too: a process can die while its workers start.
    expect(changed).toEqual([deadRunning, deadPaused, deadQueued]);
    expect(asked.sort()).toEqual([101, 102, 103, 200]);
    const interrupted = store.runs.get(deadRunning);
    expect(interrupted.status).toBe('interrupted');
    expect(interrupted.summary.failureReason).toBe('the process running it stopped unexpectedly (pid 101)');
    expect(interrupted.endedAt).not.toBeNull();
    expect(store.runs.get(deadPaused).summary.failureReason).toBe('the process running it stopped unexpectedly (pid 102)');
    expect(store.runs.get(liveRunning).status).toBe('running');
    expect(store.runs.get(deadQueued).status).toBe('interrupted');
    expect(store.runs.get(deadCompleted).status).toBe('completed');
    expect(store.runs.get(noOwner).status).toBe('running');
    expect(store.runs.markInterruptedRuns(() => false)).toEqual([liveRunning]);
  });

  it('asks the OS by default: this process is alive, a pid that cannot exist is not', () => {
    const store = testStore();
    const mine = store.runs.create({ ...NEW_RUN, ownerPid: process.pid }).id;
    const gone = store.runs.create({ ...NEW_RUN, ownerPid: 2 ** 22 + 12345 }).id; // above Linux's pid_max limit
    store.runs.setStatus(mine, 'running');
    store.runs.setStatus(gone, 'running');
    expect(store.runs.markInterruptedRuns()).toEqual([gone]);
  });

  it('takes a control request for a live run whose owner lives: stored for the owner to take once; a pending cancel stays', () => {
    const store = testStore(':memory:', { now: steppingClock() });
    const id = store.runs.create({ ...NEW_RUN, ownerPid: 200 }).id;
    store.runs.setStatus(id, 'running');
    const alive = (pid: number) => pid === 200;
    expect(store.runs.pendingControl(id)).toBeNull();
    expect(store.runs.takeControlRequest(id)).toBeNull();
    // The request does not change the status: the owner does, once it applies it.
    expect(store.runs.requestControl(id, 'pause', alive)).toMatchObject({ status: 'running', controlRequest: 'pause' });
    expect(store.runs.pendingControl(id)).toEqual({ action: 'pause', requestedAt: expect.stringMatching(/^2025-01-01T/) });
    store.runs.requestControl(id, 'resume', alive);
    expect(store.runs.pendingControl(id)?.action).toBe('resume');
    expect(store.runs.takeControlRequest(id)).toBe('resume');
    expect(store.runs.get(id).controlRequest).toBeNull();
    expect(store.runs.takeControlRequest(id)).toBeNull();
    expect(store.runs.pendingControl(id)).toBeNull();
    store.runs.requestControl(id, 'cancel', alive);
    store.runs.requestControl(id, 'pause', alive);
    expect(store.runs.pendingControl(id)?.action).toBe('cancel');
    // A run that finishes drops what was asked of it; a resume's claim starts clean too.
    store.runs.setStatus(id, 'cancelled');
    expect(store.runs.pendingControl(id)).toBeNull();
    const other = store.runs.create({ ...NEW_RUN, ownerPid: 200 }).id;
    store.runs.setStatus(other, 'paused');
    store.runs.requestControl(other, 'resume', alive);
    store.runs.setStatus(other, 'interrupted');
    store.runs.claim(other, { pid: 200, start: null }, alive);
    expect(store.runs.pendingControl(other)).toBeNull();
  });

  it('refuses a control request for a run not live anywhere, saying why; a dead owner leaves the run interrupted', () => {
    const store = testStore(':memory:', { now: steppingClock() });
    const finished = store.runs.create({ ...NEW_RUN, ownerPid: 200 }).id;
    store.runs.setStatus(finished, 'completed');
    expectQuadraError(() => store.runs.requestControl(finished, 'pause', () => true), 'CONFLICT', `run ${finished} is completed: only a queued, running or paused run can be paused`);
    expectQuadraError(() => store.runs.requestControl(404, 'cancel', () => true), 'NOT_FOUND', 'run 404 does not exist');
    const unowned = store.runs.create({ ...NEW_RUN, ownerPid: null }).id;
    store.runs.setStatus(unowned, 'running');
    expectQuadraError(() => store.runs.requestControl(unowned, 'cancel', () => true), 'CONFLICT', 'records no process that trains it');
    const orphan = store.runs.create({ ...NEW_RUN, ownerPid: 101 }).id;
    store.runs.setStatus(orphan, 'running');
    expectQuadraError(
      () => store.runs.requestControl(orphan, 'resume', () => false),
      'CONFLICT',
      `run ${orphan} cannot be resumed: the process that trained it (pid 101) has stopped, so it is now 'interrupted'; resume it to continue (quadra resume ${orphan}`,
    );
    const interrupted = store.runs.get(orphan);
    expect(interrupted.status).toBe('interrupted');
    expect(interrupted.summary.failureReason).toBe('the process running it stopped unexpectedly (pid 101)');
    expect(store.runs.pendingControl(orphan)).toBeNull();
    expect(store.runs.pendingControl(finished)).toBeNull();
  });

  it('removes a run with its metrics and checkpoints (cascade)', () => {
    const store = testStore();
    const keep = store.runs.create({ ...NEW_RUN, name: 'keep' }).id;
    const drop = store.runs.create({ ...NEW_RUN, name: 'drop' }).id;
    for (const runId of [keep, drop]) {
      store.metrics.append([{ runId, step: 1, epoch: 0, time: 1, trainLoss: 1, validationLoss: null, samplesPerSec: null, gpuMemoryMiB: null, cpuPercent: null, rssBytes: null }]);
      store.checkpoints.add({ runId, epoch: 0, step: 1, validationLoss: 1, trainLoss: 1, data: new Uint8Array([1, 2, 3]) });
    }
    store.runs.remove(drop);
    const count = (table: string) => (store.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    expect(count('metrics')).toBe(1);
    expect(count('checkpoints')).toBe(1);
    expect(store.metrics.range(drop)).toEqual([]);
    expect(store.checkpoints.listByRun(drop)).toEqual([]);
    expect(store.checkpoints.listByRun(keep)).toHaveLength(1);
    expectIntegrityOk(store);
  });
});
