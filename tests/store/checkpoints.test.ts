import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Store } from '../../src-main/store/database';
import { expectIntegrityOk, expectQuadraError, NEW_RUN, steppingClock, testStore } from './helpers';

const bytes = (seed: number, length = 64) => Uint8Array.from({ length }, (_, i) => (seed * 31 + i) & 0xff);
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

function storeWithRun() {
  const store = testStore(':memory:', { now: steppingClock() });
  return { store, runId: store.runs.create(NEW_RUN).id };
}

/** Adds one checkpoint per loss (validation loss, or null), steps 100, 200, …; returns their ids. */
function addAll(store: Store, runId: number, losses: (number | null)[], trainLosses: (number | null)[] = losses.map(() => 1)): number[] {
  return losses.map((validationLoss, i) =>
    store.checkpoints.add({ runId, epoch: i, step: (i + 1) * 100, validationLoss, trainLoss: trainLosses[i]!, data: bytes(i) }).id,
  );
}

describe('checkpoints', () => {
  it('stores the bytes with their sha256 and size, and reads them back verified', () => {
    const { store, runId } = storeWithRun();
    const data = bytes(7, 1000);
    const record = store.checkpoints.add({ runId, epoch: 2, step: 300, validationLoss: 0.25, trainLoss: 0.2, data });
    expect(record).toEqual({
      id: 1,
      runId,
      epoch: 2,
      step: 300,
      validationLoss: 0.25,
      trainLoss: 0.2,
      sha256: sha256(data),
      sizeBytes: 1000,
      createdAt: '2025-01-01T00:00:02.000Z',
      isBest: true,
    });
    expect(store.checkpoints.get(record.id)).toEqual(record);
    expect(Object.keys(record)).not.toContain('data');
    const read = store.checkpoints.getData(record.id);
    expect(read).toBeInstanceOf(Uint8Array);
    expect(Array.from(read)).toEqual(Array.from(data));
  });

  it('stores only the view of a Uint8Array that is part of a bigger buffer', () => {
    const { store, runId } = storeWithRun();
    const whole = bytes(3, 100);
    const view = whole.subarray(10, 30);
    const { id, sizeBytes, sha256: hash } = store.checkpoints.add({ runId, epoch: 0, step: 1, validationLoss: null, trainLoss: null, data: view });
    expect(sizeBytes).toBe(20);
    expect(hash).toBe(sha256(view));
    expect(Array.from(store.checkpoints.getData(id))).toEqual(Array.from(view));
  });

  it('refuses data that no longer matches its sha256', () => {
    const { store, runId } = storeWithRun();
    const { id } = store.checkpoints.add({ runId, epoch: 0, step: 1, validationLoss: null, trainLoss: 1, data: bytes(1) });
    store.db.prepare('UPDATE checkpoints SET data = ? WHERE id = ?').run(Buffer.from(bytes(2)), id);
    const error = expectQuadraError(() => store.checkpoints.getData(id), 'INVALID_FILE', `checkpoint ${id}: stored data does not match its sha256`);
    expect(error.details).toMatchObject({ id, expected: sha256(bytes(1)), actual: sha256(bytes(2)) });
  });

  it('reports missing checkpoints and runs', () => {
    const { store, runId } = storeWithRun();
    expectQuadraError(() => store.checkpoints.get(5), 'NOT_FOUND', 'checkpoint 5 does not exist');
    expectQuadraError(() => store.checkpoints.getData(5), 'NOT_FOUND', 'checkpoint 5');
    expectQuadraError(() => store.checkpoints.remove(5), 'NOT_FOUND', 'checkpoint 5');
    expectQuadraError(
      () => store.checkpoints.add({ runId: runId + 1, epoch: 0, step: 1, validationLoss: null, trainLoss: null, data: bytes(0) }),
      'NOT_FOUND',
      `could not add a checkpoint to run ${runId + 1}`,
    );
    expect(store.checkpoints.best(runId)).toBeNull();
    expect(store.checkpoints.latest(runId)).toBeNull();
    expect(store.checkpoints.listByRun(runId)).toEqual([]);
  });

  it('marks the lowest validation loss as best, ignoring checkpoints without one', () => {
    const { store, runId } = storeWithRun();
    const ids = addAll(store, runId, [0.5, null, 0.3, 0.4], [0.1, 0.01, 0.2, 0.3]);
    const list = store.checkpoints.listByRun(runId);
    expect(list.map((c) => c.id)).toEqual(ids);
    expect(list.map((c) => c.isBest)).toEqual([false, false, true, false]);
    expect(store.checkpoints.best(runId)?.id).toBe(ids[2]);
    expect(store.checkpoints.get(ids[2]!).isBest).toBe(true);
    expect(store.checkpoints.get(ids[1]!).isBest).toBe(false);
    expect(store.checkpoints.latest(runId)?.id).toBe(ids[3]);
  });

  it('falls back to the lowest train loss when no checkpoint has a validation loss; the earliest wins a tie', () => {
    const { store, runId } = storeWithRun();
    const ids = addAll(store, runId, [null, null, null, null], [0.9, 0.2, 0.2, null]);
    expect(store.checkpoints.best(runId)?.id).toBe(ids[1]);
    const other = store.runs.create(NEW_RUN).id;
    addAll(store, other, [null], [null]);
    expect(store.checkpoints.best(other)).toBeNull();
    expect(store.checkpoints.listByRun(other).map((c) => c.isBest)).toEqual([false]);
  });

  describe('prune', () => {
    const survivors = (store: Store, runId: number) => store.checkpoints.listByRun(runId).map((c) => c.id);

    it('keeps the best (the oldest here) and the newest K', () => {
      const { store, runId } = storeWithRun();
      const ids = addAll(store, runId, [0.1, 0.5, 0.4, 0.3, 0.2, 0.6]);
      expect(store.checkpoints.prune(runId, 2)).toEqual([ids[1], ids[2], ids[3]]);
      expect(survivors(store, runId)).toEqual([ids[0], ids[4], ids[5]]);
      expect(store.checkpoints.best(runId)?.id).toBe(ids[0]);
    });

    it('keeps only the newest K when the best is among them', () => {
      const { store, runId } = storeWithRun();
      const ids = addAll(store, runId, [0.9, 0.8, 0.7, 0.1, 0.5]);
      expect(store.checkpoints.prune(runId, 2)).toEqual([ids[0], ids[1], ids[2]]);
      expect(survivors(store, runId)).toEqual([ids[3], ids[4]]);
    });

    it('keeps the best in the middle and the newest one with keepLast 0 or 1', () => {
      const { store, runId } = storeWithRun();
      const ids = addAll(store, runId, [0.9, 0.2, 0.7, 0.8]);
      expect(store.checkpoints.prune(runId, 0)).toEqual([ids[0], ids[2]]);
      expect(survivors(store, runId)).toEqual([ids[1], ids[3]]);
      expect(store.checkpoints.prune(runId, 1)).toEqual([]);
    });

    it('keeps a newest checkpoint that is also the best alone with keepLast 0', () => {
      const { store, runId } = storeWithRun();
      const ids = addAll(store, runId, [0.9, 0.8, 0.1]);
      expect(store.checkpoints.prune(runId, 0)).toEqual([ids[0], ids[1]]);
      expect(survivors(store, runId)).toEqual([ids[2]]);
    });

    it('deletes nothing when K covers every checkpoint, and touches only its own run', () => {
      const { store, runId } = storeWithRun();
      const ids = addAll(store, runId, [0.3, 0.2, 0.1]);
      const other = store.runs.create(NEW_RUN).id;
      const otherIds = addAll(store, other, [0.5, 0.6, 0.7, 0.8]);
      expect(store.checkpoints.prune(runId, 5)).toEqual([]);
      expect(survivors(store, runId)).toEqual(ids);
      expect(store.checkpoints.prune(other, 1)).toEqual([otherIds[1], otherIds[2]]);
      expect(survivors(store, runId)).toEqual(ids);
      expect(store.checkpoints.prune(runId + 99, 1)).toEqual([]);
    });

    it('uses the train-loss best when no checkpoint has a validation loss, and checks keepLast', () => {
      const { store, runId } = storeWithRun();
      const ids = addAll(store, runId, [null, null, null, null], [0.5, 0.1, 0.4, 0.3]);
      expect(store.checkpoints.prune(runId, 1)).toEqual([ids[0], ids[2]]);
      expectQuadraError(() => store.checkpoints.prune(runId, -1), 'INVALID_ARGUMENT', 'keepLast');
      expectQuadraError(() => store.checkpoints.prune(runId, 1.5), 'INVALID_ARGUMENT', 'keepLast');
      expectIntegrityOk(store);
    });
  });

  it('removes one checkpoint', () => {
    const { store, runId } = storeWithRun();
    const ids = addAll(store, runId, [0.2, 0.1]);
    store.checkpoints.remove(ids[1]!);
    expect(store.checkpoints.listByRun(runId).map((c) => [c.id, c.isBest])).toEqual([[ids[0], true]]);
  });
});
