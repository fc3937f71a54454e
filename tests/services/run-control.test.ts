import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ApiEvent, WorkstationEvents } from '../../src-shared/api';
import type { RunRecord, RunStatus } from '../../src-shared/records';
import { WorkstationService } from '../../src-main/services/workstation';
import { openStore, type Store } from '../../src-main/store/database';
import { TEST_HARDWARE } from '../helpers/training';

/**
 * Issue 13: a run is paused, resumed and cancelled from whichever process asks (the app, a
 * browser through `quadra serve`, `quadra runs pause`), whichever process trains it, through the
 * run's row in the database. Real processes on one database file.
 */

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'src-main/cli/quadra.mjs');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-control-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const MODEL = ['--field-size', '8', '--hidden-size', '12', '--spiking-hidden-size', '8', '--spiking-steps', '3'];
const SMALL = { fieldSize: 8, hiddenSize: 12, spikingHiddenSize: 8, spikingSteps: 3 };

interface Exited {
  code: number | null;
  stdout: string;
  stderr: string;
}

function quadra(args: string[]): Promise<Exited> {
  return new Promise((resolve) =>
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    ),
  );
}

function workstation(store: Store): { service: WorkstationService; changes: RunRecord[] } {
  const changes: RunRecord[] = [];
  const service = new WorkstationService({
    store,
    hardware: async () => TEST_HARDWARE,
    dataDir: tmp,
    emit: <E extends ApiEvent>(event: E, payload: WorkstationEvents[E]) => {
      if (event === 'onDidChangeRun') changes.push(payload as RunRecord);
    },
  });
  return { service, changes };
}

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 30_000): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const lastStep = (store: Store, runId: number) => store.metrics.last(runId)?.step ?? 0;
const statusOf = (store: Store, runId: number): RunStatus => store.runs.get(runId).status;

/** The run stands still: no step stored over a while (after the last tick's flush). */
async function expectNoSteps(store: Store, runId: number): Promise<void> {
  await sleep(600);
  const at = lastStep(store, runId);
  await sleep(900);
  expect(lastStep(store, runId)).toBe(at);
}

describe('run control across processes', () => {
  it('a `quadra train` process is paused, resumed and cancelled by a WorkstationService on the same database', async () => {
    const db = path.join(tmp, 'cli-owned.sqlite');
    const child = spawn(
      process.execPath,
      [BIN, 'train', '--mode', 'single', '--backend', 'simd', '--epochs', '100000', '--dataset', 'synthetic:2000', '--batch-size', '16', ...MODEL, '--db', db, '--json'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const store = openStore(db);
    const { service, changes } = workstation(store);
    try {
      await waitFor(`quadra train to run (${stderr.slice(-500)})`, () => store.runs.list({ limit: 1 })[0]?.status === 'running' && lastStep(store, store.runs.list({ limit: 1 })[0]!.id) > 0);
      const runId = store.runs.list({ limit: 1 })[0]!.id;
      expect(store.runs.get(runId).ownerPid).toBe(child.pid);

      const paused = await service.controlRun({ runId, action: 'pause' });
      expect(paused.status).toBe('paused');
      expect(statusOf(store, runId)).toBe('paused');
      expect(changes.at(-1)).toMatchObject({ id: runId, status: 'paused' });
      await expectNoSteps(store, runId);

      const before = lastStep(store, runId);
      const resumed = await service.controlRun({ runId, action: 'resume' });
      expect(resumed.status).toBe('running');
      await waitFor('steps after the resume', () => lastStep(store, runId) > before, 10_000);

      await service.controlRun({ runId, action: 'cancel' });
      expect(await exited, stderr.slice(-2000)).toBe(130);
      expect(JSON.parse(stdout)).toMatchObject({ runId, status: 'cancelled' });
      const run = store.runs.get(runId);
      expect(run.status).toBe('cancelled');
      // Every step it made is stored, and the checkpoint it kept stands at the last one.
      const points = store.metrics.range(runId, { maxPoints: 100_000 });
      expect(points.map((p) => p.step)).toEqual(Array.from({ length: run.summary.steps }, (_, i) => i + 1));
      expect(store.checkpoints.latest(runId)!.step).toBe(run.summary.steps);

      // Not live anywhere now: refused, saying why.
      await expect(service.controlRun({ runId, action: 'resume' })).rejects.toMatchObject({ code: 'CONFLICT', message: `run ${runId} is cancelled: only a queued, running or paused run can be resumed` });
    } finally {
      child.kill('SIGKILL');
      await service.shutdown();
      store.close();
    }
  }, 120_000);

  it('refuses a run whose process is gone, and stores that it was interrupted', async () => {
    const store = openStore(path.join(tmp, 'orphan.sqlite'));
    const { service } = workstation(store);
    const gone = spawn(process.execPath, ['-e', '0']);
    await new Promise((resolve) => gone.once('exit', resolve));
    const run = store.runs.create({ name: 'orphan', config: {}, mode: 'single', backend: 'simd', devices: [], workers: 1, datasetId: null, ownerPid: gone.pid! });
    store.runs.setStatus(run.id, 'running');
    await expect(service.controlRun({ runId: run.id, action: 'pause' })).rejects.toMatchObject({
      code: 'CONFLICT',
      message: expect.stringContaining(`the process that trained it (pid ${gone.pid}) has stopped, so it is now 'interrupted'`),
    });
    expect(statusOf(store, run.id)).toBe('interrupted');
    store.close();
  });

  it('a run owned by a WorkstationService is paused, resumed and cancelled by `quadra runs pause|resume|cancel ID`', async () => {
    const db = path.join(tmp, 'workstation-owned.sqlite');
    const store = openStore(db);
    const { service, changes } = workstation(store);
    try {
      const { runId } = await service.startRun({ mode: 'single', backend: 'simd', epochs: 100_000, dataset: 'synthetic:2000', engine: { batchSize: 16, model: SMALL } });
      await waitFor('the run to train', () => statusOf(store, runId) === 'running' && lastStep(store, runId) > 0);

      const paused = await quadra(['runs', 'pause', String(runId), '--db', db, '--json']);
      expect(paused.code, paused.stderr).toBe(0);
      expect(JSON.parse(paused.stdout)).toMatchObject({ id: runId, status: 'paused', action: 'pause', taken: true });
      expect(statusOf(store, runId)).toBe('paused');
      // The workstation's clients hear of it as of any change of its own runs.
      expect(changes.some((r) => r.id === runId && r.status === 'paused')).toBe(true);
      await expectNoSteps(store, runId);

      const before = lastStep(store, runId);
      const resumed = await quadra(['runs', 'resume', String(runId), '--db', db]);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout).toContain(`run ${runId}: running`);
      await waitFor('steps after the resume', () => lastStep(store, runId) > before, 10_000);

      const cancelled = await quadra(['runs', 'cancel', String(runId), '--db', db]);
      expect(cancelled.code, cancelled.stderr).toBe(0);
      expect(cancelled.stdout).toMatch(new RegExp(`run ${runId}: (cancelling|cancelled)`));
      await waitFor('the run to end', () => statusOf(store, runId) === 'cancelled', 10_000);
      const run = store.runs.get(runId);
      expect(store.metrics.range(runId, { maxPoints: 100_000 }).map((p) => p.step)).toEqual(Array.from({ length: run.summary.steps }, (_, i) => i + 1));

      // Finished: the CLI refuses, exit 1, naming the run's status.
      const refused = await quadra(['runs', 'pause', String(runId), '--db', db]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(`run ${runId} is cancelled: only a queued, running or paused run can be paused`);
    } finally {
      await service.shutdown();
      store.close();
    }
  }, 120_000);
});
