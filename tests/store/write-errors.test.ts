import Database from 'better-sqlite3';
import { chmodSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { MetricPoint } from '../../src-shared/records';
import { openStore, type Store } from '../../src-main/store/database';
import { toStoreError } from '../../src-main/store/context';
import { expectIntegrityOk, expectQuadraError, NEW_RUN, sha256File, tempDir, testStore } from './helpers';

const point = (runId: number, step: number): MetricPoint => ({
  runId,
  step,
  epoch: 0,
  time: step,
  trainLoss: 1 / (step + 1),
  validationLoss: null,
  samplesPerSec: null,
  gpuMemoryMiB: null,
  cpuPercent: null,
  rssBytes: null,
});

const count = (store: Store, table: string) => (store.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;

/** A file database holding one run with 10 metric points and one checkpoint. */
function seeded() {
  const file = path.join(tempDir(), 'quadra.sqlite');
  const store = openStore(file);
  const run = store.runs.create(NEW_RUN);
  store.metrics.append(Array.from({ length: 10 }, (_, i) => point(run.id, i)));
  const checkpoint = store.checkpoints.add({ runId: run.id, epoch: 0, step: 9, validationLoss: 0.5, trainLoss: 0.4, data: new Uint8Array(5000).fill(7) });
  return { file, store, run, checkpoint };
}

describe('write failures', () => {
  it('a read-only database: every write is IO_ERROR naming the file, reads still work', () => {
    const { file, store, run, checkpoint } = seeded();
    // So that marking interrupted runs and pruning would have something to write.
    store.runs.setStatus(run.id, 'running');
    for (const step of [19, 29]) store.checkpoints.add({ runId: run.id, epoch: 1, step, validationLoss: 0.6, trainLoss: 0.3, data: new Uint8Array(10) });
    store.close();
    const readonly = testStore(file, { readonly: true });
    expect(readonly.readonly).toBe(true);
    const writes: [string, () => unknown][] = [
      ['create run', () => readonly.runs.create(NEW_RUN)],
      ['set the status of run', () => readonly.runs.setStatus(run.id, 'running')],
      ['update the summary', () => readonly.runs.updateSummary(run.id, { steps: 5 })],
      ['mark interrupted runs', () => readonly.runs.markInterruptedRuns(() => false)],
      ['append 1 metric points', () => readonly.metrics.append([point(run.id, 100)])],
      ['add a checkpoint', () => readonly.checkpoints.add({ runId: run.id, epoch: 1, step: 10, validationLoss: null, trainLoss: null, data: new Uint8Array(3) })],
      ['prune the checkpoints', () => readonly.checkpoints.prune(run.id, 0)],
      ['add dataset', () => readonly.datasets.add({ name: 'd', kind: 'csv', sourcePath: '/d.csv', rows: 1, width: 1, sha256: '' })],
      ['create benchmark suite', () => readonly.benchmarks.createSuite({ name: 's', config: {} })],
      ['remove run', () => readonly.runs.remove(run.id)],
    ];
    for (const [action, write] of writes) {
      const error = expectQuadraError(write, 'IO_ERROR', `${file}: could not ${action}`);
      expect(error.message).toContain('the database is read-only');
      expect(error.message).toContain('nothing was written');
      expect(error.details).toMatchObject({ file, sqliteCode: 'SQLITE_READONLY' });
    }
    expect(readonly.runs.list()).toHaveLength(1);
    expect(readonly.runs.get(run.id).status).toBe('running');
    expect(readonly.checkpoints.listByRun(run.id)).toHaveLength(3);
    expect(readonly.metrics.range(run.id)).toHaveLength(10);
    expect(readonly.checkpoints.getData(checkpoint.id)).toHaveLength(5000);
    expectIntegrityOk(readonly);
  });

  // Root writes through file modes, so these need an ordinary user (CI, developers' machines).
  it.skipIf(process.getuid?.() === 0)('a file without write permission: IO_ERROR on write; a read-only folder: IO_ERROR on open', () => {
    const { file, store, run } = seeded();
    store.close();
    chmodSync(file, 0o444);
    const before = sha256File(file);
    const reader = openStore(file);
    try {
      expect(reader.runs.get(run.id).name).toBe('baseline');
      expectQuadraError(() => reader.runs.create(NEW_RUN), 'IO_ERROR', 'the database is read-only');
      expectIntegrityOk(reader);
    } finally {
      reader.close();
    }
    expect(sha256File(file)).toBe(before);

    const dir = path.dirname(file);
    try {
      // The read-only connection above could not delete its -wal and -shm; with them there,
      // a read-only folder still lets the database be read.
      chmodSync(dir, 0o555);
      const withShm = openStore(file);
      try {
        expect(withShm.runs.list()).toHaveLength(1);
        expectQuadraError(() => withShm.runs.create(NEW_RUN), 'IO_ERROR', 'the database is read-only');
      } finally {
        withShm.close();
      }
      // Without them, SQLite cannot open a WAL database in a read-only folder at all.
      chmodSync(dir, 0o755);
      rmSync(`${file}-wal`, { force: true });
      rmSync(`${file}-shm`, { force: true });
      chmodSync(dir, 0o555);
      for (const readonly of [false, true]) {
        const error = expectQuadraError(() => openStore(file, { readonly }), 'IO_ERROR', 'its folder is not writable');
        expect(error.details).toMatchObject({ sqliteCode: 'SQLITE_READONLY_DIRECTORY' });
      }
      expect(sha256File(file)).toBe(before);
    } finally {
      chmodSync(dir, 0o755);
    }
  });

  it('a full disk: IO_ERROR, nothing of the failed transaction written, earlier rows intact', () => {
    const { file, store, run, checkpoint } = seeded();
    try {
      const pages = store.db.pragma('page_count', { simple: true }) as number;
      store.db.pragma(`max_page_count = ${pages + 2}`);

      const big = new Uint8Array(1 << 20).fill(1);
      const error = expectQuadraError(
        () => store.checkpoints.add({ runId: run.id, epoch: 1, step: 20, validationLoss: 0.1, trainLoss: 0.1, data: big }),
        'IO_ERROR',
        `${file}: could not add a checkpoint to run ${run.id}: the disk is full`,
      );
      expect(error.details).toMatchObject({ sqliteCode: 'SQLITE_FULL' });

      const many = Array.from({ length: 50_000 }, (_, i) => point(run.id, 1000 + i));
      expectQuadraError(() => store.metrics.append(many), 'IO_ERROR', 'could not append 50000 metric points: the disk is full');

      expect(count(store, 'checkpoints')).toBe(1);
      expect(count(store, 'metrics')).toBe(10);
      expect(store.metrics.range(run.id).map((p) => p.step)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(store.checkpoints.getData(checkpoint.id)).toHaveLength(5000);
      expect(store.db.inTransaction).toBe(false);
      expectIntegrityOk(store);

      // Space again: the same writes go through.
      store.db.pragma('max_page_count = 4294967294');
      store.metrics.append(many);
      store.checkpoints.add({ runId: run.id, epoch: 1, step: 20, validationLoss: 0.1, trainLoss: 0.1, data: big });
      expect(count(store, 'metrics')).toBe(50_010);
    } finally {
      store.close();
    }
    const reopened = testStore(file);
    expect(count(reopened, 'checkpoints')).toBe(2);
    expectIntegrityOk(reopened);
  });

  it('maps each SQLite failure to a code and a message that says what to do', () => {
    const sqliteError = (code: string) => new Database.SqliteError('raw message', code);
    const map = (code: string) => toStoreError(sqliteError(code), 'q.sqlite', 'save things', true) as { code: string; message: string };
    expect(map('SQLITE_BUSY')).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining('locked by another process (waited 5000 ms)') });
    expect(map('SQLITE_LOCKED')).toMatchObject({ code: 'IO_ERROR' });
    expect(map('SQLITE_IOERR_WRITE')).toMatchObject({ code: 'IO_ERROR', message: 'q.sqlite: could not save things: the disk reported an I/O error (SQLITE_IOERR_WRITE); nothing was written' });
    expect(map('SQLITE_CANTOPEN')).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining('could not be opened') });
    expect(map('SQLITE_READONLY_DBMOVED')).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining('read-only') });
    expect(map('SQLITE_CORRUPT')).toMatchObject({ code: 'INVALID_FILE' });
    expect(map('SQLITE_CONSTRAINT_CHECK')).toMatchObject({ code: 'INVALID_ARGUMENT' });
    const other = sqliteError('SQLITE_ERROR');
    expect(toStoreError(other, 'q.sqlite', 'x', true)).toBe(other);
    const plain = new Error('not sqlite');
    expect(toStoreError(plain, 'q.sqlite', 'x', true)).toBe(plain);
  });
});
