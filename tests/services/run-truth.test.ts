import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeCheckpoint } from '../../src-main/engine/checkpoint';
import { processStartMark } from '../../src-main/hardware/process-identity';
import { resumeTraining, startTraining, type TrainingRequestInput } from '../../src-main/services/training-service';
import { importCheckpointBytes } from '../../src-main/services/workstation';
import { openStore, type Store } from '../../src-main/store/database';
import { TEST_HARDWARE } from '../helpers/training';
import { createExchange, removeOrphanedExchanges } from '../../src-main/training/file-exchange';
import { expectQuadraError } from '../store/helpers';

/**
 * Issue 9, "Runs keep their truth": one owner per running run, warm starts, no ghost runs, true
 * summaries, stored configs parsed, no orphaned /dev/shm files. Real SQLite, real workers.
 */

const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-truth-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const HARDWARE = TEST_HARDWARE;
const SMALL = { fieldSize: 8, hiddenSize: 12, spikingHiddenSize: 8, spikingSteps: 3 };

let dbCounter = 0;
const freshStore = (): Store => openStore(path.join(tmp, `truth-${++dbCounter}.sqlite`));

function request(overrides: Partial<TrainingRequestInput> = {}): TrainingRequestInput {
  return { mode: 'single', backend: 'simd', epochs: 2, dataset: 'synthetic:120', engine: { batchSize: 16, model: SMALL }, checkpointEveryEpochs: 1, ...overrides };
}

/** A real process that is not ours to stop: it stands in for another `quadra` training the run. */
function holder(): ChildProcess {
  return spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
}

describe('one owner per running run', () => {
  it('a resume is refused, naming the holder, while another live process owns the run; and works once it is gone', async () => {
    const store = freshStore();
    const first = await startTraining(request(), { store, hardware: HARDWARE });
    expect(first.status).toBe('completed');
    const other = holder();
    try {
      const pid = other.pid!;
      store.runs.claim(first.runId, { pid, start: processStartMark(pid) });
      const before = store.metrics.range(first.runId).length;
      await expect(resumeTraining(first.runId, { store, hardware: HARDWARE })).rejects.toMatchObject({
        code: 'CONFLICT',
        message: expect.stringContaining(`another process (pid ${pid})`),
      });
      // Nothing of the run was touched by the refused resume.
      expect(store.metrics.range(first.runId).length).toBe(before);
      expect(store.runs.get(first.runId).ownerPid).toBe(pid);
    } finally {
      other.kill('SIGKILL');
      await new Promise((resolve) => other.once('exit', resolve));
    }
    const resumed = await resumeTraining(first.runId, { store, hardware: HARDWARE });
    expect(resumed.status).toBe('completed');
    store.close();
  }, 60_000);

  it('a pid reused by another process does not keep a dead owner alive (process start mark)', () => {
    const store = freshStore();
    const run = store.runs.create({ name: 'r', config: {}, mode: 'single', backend: 'cpu', devices: [], workers: 1, datasetId: null, ownerPid: process.pid, ownerStart: 'linux:1' });
    store.runs.setStatus(run.id, 'running');
    // Same pid as this live process, but it started at another time: the owner is gone.
    const expected = process.platform === 'linux' ? [run.id] : [];
    expect(store.runs.markInterruptedRuns()).toEqual(expected);
    const claimed = store.runs.claim(run.id, { pid: process.pid, start: processStartMark(process.pid) });
    expect(claimed.status).toBe('queued');
    store.close();
  });

  it('two `quadra resume` of one run at once: exactly one trains it', async () => {
    const db = path.join(tmp, 'two-resumes.sqlite');
    const store = openStore(db);
    const first = await startTraining(request({ epochs: 1 }), { store, hardware: HARDWARE });
    // Give the run more epochs to go, so both resumes would have work to do.
    store.db.prepare("UPDATE runs SET config = json_set(config, '$.epochs', 40) WHERE id = ?").run(first.runId);
    store.close();
    const bin = path.resolve(__dirname, '../../src-main/cli/quadra.mjs');
    const resume = () =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [bin, 'resume', String(first.runId), '--db', db], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        const timer = setTimeout(() => child.kill('SIGINT'), 20_000);
        child.on('exit', (code) => {
          clearTimeout(timer);
          resolve({ code, stderr });
        });
      });
    const results = await Promise.all([resume(), resume()]);
    const refused = results.filter((r) => /another process \(pid \d+\)/.test(r.stderr));
    expect(refused, results.map((r) => r.stderr).join('\n---\n')).toHaveLength(1);
    expect(refused[0]!.code).toBe(1);
    const after = openStore(db);
    const steps = after.checkpoints.listByRun(first.runId).map((c) => c.step);
    expect(new Set(steps).size).toBe(steps.length);
    after.close();
  }, 60_000);
});

describe('warm starts', () => {
  it('--init-from a checkpoint: the model comes from it, and its optimizer moments and step count unless reset', async () => {
    const store = freshStore();
    const source = await startTraining(request({ engine: { batchSize: 16, model: { ...SMALL, spikingSteps: 4 } } }), { store, hardware: HARDWARE });
    const checkpointId = source.latestCheckpointId!;
    const saved = decodeCheckpoint(store.checkpoints.getData(checkpointId), 'source');
    // No model given: the checkpoint's is used.
    const warm = await startTraining(request({ engine: { batchSize: 16 }, epochs: 1, initFrom: { checkpointId } }), { store, hardware: HARDWARE });
    expect(warm.status).toBe('completed');
    const run = store.runs.get(warm.runId);
    expect(run.config).toMatchObject({ engine: { model: { ...SMALL, spikingSteps: 4 } }, initFrom: { checkpointId, resetOptimizer: false } });
    const firstStep = store.metrics.range(warm.runId)[0]!.step;
    expect(firstStep).toBeGreaterThan(saved.step!);
    const reset = await startTraining(request({ engine: { batchSize: 16 }, epochs: 1, initFrom: { checkpointId }, resetOptimizer: true }), { store, hardware: HARDWARE });
    const resetSteps = store.metrics.range(reset.runId).map((m) => m.step);
    expect(Math.min(...resetSteps)).toBeLessThanOrEqual(100 / 16);
    expect(store.runs.get(reset.runId).summary.steps).toBe(Math.floor(108 / 16));
    store.close();
  }, 60_000);

  it('the first weights are the checkpoint\'s exactly (zero learning rate), also from a file', async () => {
    const store = freshStore();
    const source = await startTraining(request(), { store, hardware: HARDWARE });
    const bytes = store.checkpoints.getData(source.latestCheckpointId!);
    const file = path.join(tmp, 'warm.safetensors');
    writeFileSync(file, bytes);
    const frozen = await startTraining(
      request({ epochs: 1, engine: { batchSize: 16, optimizer: { learningRate: 0, weightDecay: 0 } }, initFrom: { file }, resetOptimizer: true }),
      { store, hardware: HARDWARE },
    );
    const after = decodeCheckpoint(store.checkpoints.getData(frozen.latestCheckpointId!), 'after');
    expect(after.parameters).toEqual(decodeCheckpoint(bytes, 'before').parameters);
    store.close();
  }, 60_000);

  it("the original project's .pth: imported as our checkpoint, and trained from with --init-from", async () => {
    const store = freshStore();
    const pth = path.resolve(__dirname, '../fixtures/pth/engine.pth');
    const imported = importCheckpointBytes(store, 'engine.pth', readFileSync(pth), undefined);
    const stored = decodeCheckpoint(store.checkpoints.getData(imported.checkpointId), 'stored');
    expect(stored.origin).toBe('quadra');
    expect(store.runs.get(imported.runId).config).toMatchObject({ origin: 'pth', importedFrom: 'engine.pth' });
    const warm = await startTraining(request({ engine: { batchSize: 16 }, epochs: 1, dataset: `synthetic:64`, initFrom: { file: pth } }), { store, hardware: HARDWARE });
    expect(warm.status).toBe('completed');
    expect(store.runs.get(warm.runId).config).toMatchObject({ engine: { model: { fieldSize: stored.model.fieldSize, hiddenSize: stored.model.hiddenSize } } });
    store.close();
  }, 60_000);

  it('a width that differs from the checkpoint is refused before any run is recorded', async () => {
    const store = freshStore();
    const source = await startTraining(request(), { store, hardware: HARDWARE });
    const runs = store.runs.list().length;
    await expect(
      startTraining(request({ engine: { batchSize: 16, model: { hiddenSize: 16 } }, initFrom: { checkpointId: source.latestCheckpointId! } }), { store, hardware: HARDWARE }),
    ).rejects.toMatchObject({ code: 'SHAPE_MISMATCH', message: expect.stringContaining('hiddenSize 12, but hiddenSize 16 was asked for') });
    expect(store.runs.list()).toHaveLength(runs);
    store.close();
  }, 60_000);

  it('resuming an imported run asks for a dataset (a warm start) instead of crashing', async () => {
    const store = freshStore();
    const source = await startTraining(request(), { store, hardware: HARDWARE });
    const imported = importCheckpointBytes(store, 'model.safetensors', store.checkpoints.getData(source.latestCheckpointId!), undefined);
    await expect(resumeTraining(imported.runId, { store, hardware: HARDWARE })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining(`--init-from ${imported.checkpointId} --dataset`),
    });
    store.close();
  }, 60_000);
});

describe('no ghost runs', () => {
  it.each([
    ['too few rows for one batch', request({ dataset: 'synthetic:20', engine: { batchSize: 64, model: SMALL } }), 'INVALID_ARGUMENT'],
    ['more simd workers than the shared exchange holds', request({ mode: 'multi-cpu', workers: 129, dataset: 'synthetic:2000', engine: { batchSize: 256, model: SMALL } }), 'INVALID_ARGUMENT'],
    ['a fractional worker count', request({ mode: 'multi-cpu', workers: 30.5 }), 'INVALID_ARGUMENT'],
    ['mixed precision on a CPU backend', request({ engine: { batchSize: 16, model: SMALL, precision: 'mixed' } }), 'UNSUPPORTED'],
    ['an impossible model', request({ engine: { batchSize: 16, model: { ...SMALL, fieldSize: 0 } } }), 'INVALID_ARGUMENT'],
  ] as const)('%s: refused, and no run is written', async (_what, bad, code) => {
    const store = freshStore();
    const error = await startTraining(bad, { store, hardware: HARDWARE }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code });
    expect((error as Error).message).not.toContain('30.5 workers');
    expect(store.runs.list()).toEqual([]);
    store.close();
  });

  it('the simd worker limit says a whole number', async () => {
    const store = freshStore();
    await expect(startTraining(request({ mode: 'multi-cpu', workers: 129, dataset: 'synthetic:2000' }), { store, hardware: HARDWARE })).rejects.toThrow(
      'the simd backend trains at most 128 workers (its shared-memory gradient exchange), got 129',
    );
    store.close();
  });
});

describe('summaries stay true', () => {
  it('resuming a completed run keeps its steps, epochs, best validation loss and throughput', async () => {
    const store = freshStore();
    const done = await startTraining(request(), { store, hardware: HARDWARE });
    const before = store.runs.get(done.runId).summary;
    expect(before.bestValidationLoss).not.toBeNull();
    expect(before.samplesPerSec).not.toBeNull();
    const again = await resumeTraining(done.runId, { store, hardware: HARDWARE });
    expect(again.status).toBe('completed');
    const after = store.runs.get(done.runId).summary;
    expect(after).toMatchObject({ steps: before.steps, epochs: before.epochs, bestValidationLoss: before.bestValidationLoss });
    expect(after.samplesPerSec).not.toBeNull();
    expect(after.durationS).toBeGreaterThanOrEqual(before.durationS!);
    store.close();
  }, 60_000);

  it('an interrupted run shows the steps, epochs and losses its metrics and checkpoints reached', async () => {
    const store = freshStore();
    const done = await startTraining(request(), { store, hardware: HARDWARE });
    const truth = store.runs.get(done.runId).summary;
    // As a killed process leaves it: running, owner gone, the summary never written.
    store.db.prepare("UPDATE runs SET status = 'running', owner_pid = ?, steps = 0, epochs = 0, best_validation_loss = NULL, samples_per_sec = NULL, last_train_loss = NULL WHERE id = ?").run(2 ** 22 + 7, done.runId);
    expect(store.runs.markInterruptedRuns()).toEqual([done.runId]);
    const summary = store.runs.get(done.runId).summary;
    expect(summary).toMatchObject({ steps: truth.steps, epochs: truth.epochs, bestValidationLoss: truth.bestValidationLoss });
    expect(summary.samplesPerSec).toBeGreaterThan(0);
    expect(summary.lastTrainLoss).not.toBeNull();
    store.close();
  }, 60_000);

  it("an imported run shows its checkpoint's step, epoch and backend", async () => {
    const store = freshStore();
    const done = await startTraining(request(), { store, hardware: HARDWARE });
    const latest = store.checkpoints.latest(done.runId)!;
    const imported = importCheckpointBytes(store, 'x.safetensors', store.checkpoints.getData(latest.id), undefined);
    const run = store.runs.get(imported.runId);
    expect(run.summary).toMatchObject({ steps: latest.step, epochs: latest.epoch });
    expect(run.backend).toBe('simd');
    expect(store.checkpoints.get(imported.checkpointId)).toMatchObject({ step: latest.step, epoch: latest.epoch });
    store.close();
  }, 60_000);

  it('a malformed stored config is a named error, not a TypeError', async () => {
    const store = freshStore();
    const done = await startTraining(request(), { store, hardware: HARDWARE });
    store.db.prepare("UPDATE runs SET config = json_set(config, '$.epochs', 'many') WHERE id = ?").run(done.runId);
    await expect(resumeTraining(done.runId, { store, hardware: HARDWARE })).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
      message: expect.stringMatching(/run \d+'s stored config is invalid — epochs: epochs must be a number/),
    });
    store.close();
  }, 60_000);
});

describe('/dev/shm files of a killed coordinator', () => {
  it('are removed at the next start when their owner is gone; a live owner keeps its file', () => {
    const folder = mkdtempSync(path.join(tmp, 'shm-'));
    const dead = path.join(folder, `quadra-grad-${2 ** 22 + 3}-0badc0de`);
    const live = path.join(folder, `quadra-grad-${process.pid}-00c0ffee`);
    const unrelated = path.join(folder, 'quadra-grad-notes.txt');
    for (const file of [dead, live, unrelated]) writeFileSync(file, 'x');
    expect(removeOrphanedExchanges(folder)).toEqual([dead]);
    expect([existsSync(dead), existsSync(live), existsSync(unrelated)]).toEqual([false, true, true]);
  });

  it('createExchange cleans the real exchange folder first', () => {
    const exchange = createExchange(2, 4);
    const stale = path.join(path.dirname(exchange.file), `quadra-grad-${2 ** 22 + 5}-deadbeef`);
    writeFileSync(stale, 'x');
    const next = createExchange(2, 4);
    expect(existsSync(stale)).toBe(false);
    exchange.remove();
    next.remove();
  });
});

describe('request errors name the field', () => {
  it('a bad request is INVALID_ARGUMENT naming each field', async () => {
    const store = freshStore();
    await expect(startTraining({ ...request(), epochs: 0, dataset: '' }, { store, hardware: HARDWARE })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/epochs: epochs must be at least 1.*dataset/),
    });
    expectQuadraError(() => store.runs.get(1), 'NOT_FOUND');
    store.close();
  });
});
