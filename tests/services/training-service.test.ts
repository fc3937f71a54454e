import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { serializeNpy } from '../../src-main/data/npy';
import { decodeCheckpoint } from '../../src-main/engine/checkpoint';
import { resumeTraining, startTraining, type TrainingRequestInput } from '../../src-main/services/training-service';
import { openStore, type Store } from '../../src-main/store/database';
import { TEST_HARDWARE } from '../helpers/training';
import { isProcessAlive } from '../../src-main/hardware/process-identity';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'src-main/cli/quadra.mjs');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-service-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const HARDWARE = TEST_HARDWARE;
const SMALL = { fieldSize: 10, hiddenSize: 12, spikingHiddenSize: 6, spikingSteps: 3 };

let dbCounter = 0;
function freshStore(): Store {
  return openStore(path.join(tmp, `service-${++dbCounter}.sqlite`));
}

function request(overrides: Partial<TrainingRequestInput> = {}): TrainingRequestInput {
  return { mode: 'multi-cpu', workers: 2, backend: 'wasm', epochs: 4, dataset: 'synthetic:200', engine: { batchSize: 20, model: SMALL }, checkpointEveryEpochs: 1, keepLastCheckpoints: 2, ...overrides };
}

function integrityOk(store: Store): boolean {
  return (store.db.pragma('integrity_check', { simple: true }) as string) === 'ok';
}

describe('training service (real store, real worker processes)', () => {
  it('records the run, a metric row per step, checkpoints every N epochs, keeping the best and the last K', async () => {
    const store = freshStore();
    const result = await startTraining(request(), { store, hardware: HARDWARE });
    expect(result.status).toBe('completed');
    const run = store.runs.get(result.runId);
    expect(run).toMatchObject({ status: 'completed', mode: 'multi-cpu', workers: 2, backend: 'wasm' });
    expect(run.summary.steps).toBe(4 * Math.floor(180 / 20));
    expect(run.summary.bestValidationLoss).not.toBeNull();
    expect(run.startedAt).not.toBeNull();
    expect(run.endedAt).not.toBeNull();
    const dataset = store.datasets.get(run.datasetId!);
    expect(dataset).toMatchObject({ kind: 'synthetic', rows: 200, width: 10 });
    const metrics = store.metrics.range(run.id);
    expect(metrics.map((m) => m.step)).toEqual(Array.from({ length: run.summary.steps }, (_, i) => i + 1));
    // 4 epochs, a checkpoint after each; retention keeps the best plus the last 2.
    const checkpoints = store.checkpoints.listByRun(run.id);
    expect(checkpoints.length).toBeGreaterThanOrEqual(2);
    expect(checkpoints.length).toBeLessThanOrEqual(3);
    expect(checkpoints.at(-1)!.step).toBe(run.summary.steps);
    expect(checkpoints.filter((c) => c.isBest)).toHaveLength(1);
    expect(result.bestCheckpointId).toBe(checkpoints.find((c) => c.isBest)!.id);
    const contents = decodeCheckpoint(store.checkpoints.getData(checkpoints.at(-1)!.id), 'latest');
    expect(contents.step).toBe(run.summary.steps);
    expect(contents.metadata.resume_epoch).toBe('5');
    expect(integrityOk(store)).toBe(true);
    store.close();
  });

  it('resumes from an earlier checkpoint: the step count, optimizer state and loss curve continue from there', async () => {
    const store = freshStore();
    const first = await startTraining(request({ epochs: 3, keepLastCheckpoints: 5 }), { store, hardware: HARDWARE });
    const checkpoints = store.checkpoints.listByRun(first.runId);
    const fromEpochOne = checkpoints.find((c) => c.epoch === 1)!;
    const stepsBefore = store.runs.get(first.runId).summary.steps;
    const resumed = await resumeTraining(first.runId, { store, hardware: HARDWARE }, fromEpochOne.id);
    expect(resumed.status).toBe('completed');
    const run = store.runs.get(first.runId);
    // Epochs 2 and 3 again, from the epoch-1 state: the same number of steps in the end.
    expect(run.summary.steps).toBe(stepsBefore);
    expect(resumed.outcome.step).toBe(stepsBefore);
    const metrics = store.metrics.range(first.runId);
    expect(metrics.at(-1)!.step).toBe(stepsBefore);
    // The resumed continuation is bit-identical to the first one: same data order, dropout, AdamW.
    const latest = decodeCheckpoint(store.checkpoints.getData(store.checkpoints.latest(first.runId)!.id), 'latest');
    const original = decodeCheckpoint(store.checkpoints.getData(checkpoints.at(-1)!.id), 'original');
    expect(Buffer.from(latest.parameters.buffer).equals(Buffer.from(original.parameters.buffer))).toBe(true);
    store.close();
  });

  it('a loss that becomes non-finite stops the run as diverged, naming the step', async () => {
    const store = freshStore();
    const file = path.join(tmp, 'huge.npy');
    // Finite values whose squares overflow float32: the loss is Inf at the first step.
    writeFileSync(file, serializeNpy(new Float32Array(40 * 10).fill(3e30), [40, 10]));
    const result = await startTraining(request({ dataset: file, engine: { batchSize: 8, model: SMALL } }), { store, hardware: HARDWARE });
    expect(result.status).toBe('diverged');
    const run = store.runs.get(result.runId);
    expect(run.status).toBe('diverged');
    expect(run.summary.failureReason).toMatch(/loss became (Infinity|NaN) at step 1/);
    expect(store.checkpoints.listByRun(run.id)).toEqual([]);
    store.close();
  });

  it('when the database cannot take more writes (disk full), training stops safely with a clear error and keeps what was stored', async () => {
    const store = freshStore();
    const first = await startTraining(request({ epochs: 1 }), { store, hardware: HARDWARE });
    const kept = store.checkpoints.listByRun(first.runId).map((c) => c.id);
    // Room for a few more pages only: the next checkpoint cannot be stored.
    const pages = store.db.pragma('page_count', { simple: true }) as number;
    store.db.pragma(`max_page_count = ${pages + 2}`);
    const result = await startTraining(request({ epochs: 3 }), { store, hardware: HARDWARE });
    expect(result.status).not.toBe('completed');
    const message = result.storeError?.message ?? result.outcome.error?.message ?? '';
    expect(message).toMatch(/disk is full|database or disk is full/);
    expect(store.checkpoints.listByRun(first.runId).map((c) => c.id)).toEqual(kept);
    for (const id of kept) expect(store.checkpoints.getData(id).length).toBeGreaterThan(0);
    expect(integrityOk(store)).toBe(true);
    store.close();
  });

  it('a read-only database refuses to start a run, with the file named', async () => {
    const file = path.join(tmp, 'readonly.sqlite');
    openStore(file).close();
    const store = openStore(file, { readonly: true });
    const error = await startTraining(request({ epochs: 1 }), { store, hardware: HARDWARE }).catch((e: unknown) => e);
    expect((error as { code: string }).code).toBe('IO_ERROR');
    expect((error as Error).message).toContain('readonly.sqlite');
    expect((error as Error).message).toMatch(/read-only/);
    store.close();
  });

  it('SIGKILL of the whole process, even mid checkpoint write: the file stays sound, the run reads "interrupted", resume works', async () => {
    const db = path.join(tmp, 'killed.sqlite');
    const args = ['train', '--mode', 'multi-cpu', '--workers', '2', '--epochs', '400', '--dataset', 'synthetic:60', '--batch-size', '20', '--checkpoint-every', '1', '--keep-last', '2',
      '--field-size', '10', '--hidden-size', '12', '--spiking-hidden-size', '6', '--spiking-steps', '3', '--backend', 'wasm', '--db', db];
    // Several kills at varied moments; with a checkpoint every epoch (every 2 steps) some land inside a write.
    for (const delayMs of [1800, 2400, 3000]) {
      const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      const workers = await childPids(child.pid!);
      // It must still be training when killed; if it already exited, say why instead of waiting for an exit that came.
      expect(child.exitCode, `quadra train exited early: ${stderr.slice(-2000)}`).toBeNull();
      child.kill('SIGKILL');
      if (child.signalCode === null) await new Promise((resolve) => child.once('exit', resolve));
      // Its workers notice the parent is gone and exit on their own.
      await waitFor(() => workers.every((pid) => !isProcessAlive(pid)), 5000);
      const store = openStore(db);
      expect(integrityOk(store)).toBe(true);
      store.runs.markInterruptedRuns();
      const run = store.runs.list({ limit: 1 })[0]!;
      expect(run.status).toBe('interrupted');
      for (const c of store.checkpoints.listByRun(run.id)) decodeCheckpoint(store.checkpoints.getData(c.id), `checkpoint ${c.id}`);
      store.close();
    }
    // Resume the newest run that got as far as a checkpoint (a run killed while its workers were
    // still starting has none, and is correctly 'interrupted' all the same).
    const store = openStore(db);
    const run = store.runs.list().find((r) => store.checkpoints.latest(r.id) !== null);
    store.close();
    expect(run).toBeDefined();
    // Bounded inside the test's own limit, so a hang reports what the command printed.
    const resumed = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [BIN, 'resume', String(run!.id), '--db', db, '--json'], { cwd: ROOT, timeout: 200_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
      ),
    );
    expect(resumed.code, `quadra resume: ${resumed.stderr.slice(-2000)}`).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ runId: run!.id, status: 'completed' });
  }, 300_000);
});


function childPids(pid: number): Promise<number[]> {
  return new Promise((resolve) =>
    execFile('ps', ['-o', 'pid=', '--ppid', String(pid)], (_error, stdout) => resolve(stdout.split('\n').map((l) => Number(l.trim())).filter((n) => n > 0))),
  );
}

async function waitFor(predicate: () => boolean, timeoutMs: number): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
