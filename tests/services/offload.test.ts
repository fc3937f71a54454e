import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { threadId } from 'node:worker_threads';
import { unzipSync } from 'fflate';
import { afterAll, describe, expect, it } from 'vitest';
import { parseEngineConfig, type ModelConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import type { MetricPoint } from '../../src-shared/records';
import { decodeCheckpoint, encodeCheckpoint } from '../../src-main/engine/checkpoint';
import { buildLayout } from '../../src-main/engine/layout';
import { Rng } from '../../src-main/engine/random';
import { createWorkstation } from '../../src-main/services/create-workstation';
import { createOffload, inProcessOffload, OffloadThread } from '../../src-main/services/offload/offload';
import type { Offload } from '../../src-main/services/offload/protocol';
import { WorkstationService, type UploadResolver } from '../../src-main/services/workstation';
import { openStore } from '../../src-main/store/database';

/**
 * The offload thread (issue 13): checkpoint encoding and decoding, dataset parsing and metric
 * downsampling run beside the thread that serves the UI, answer exactly what the calling thread
 * would, keep their errors' codes and details, and leave the caller's event loop free.
 */

const ROOT = path.resolve(__dirname, '../..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'quadra-offload-'));
const store = openStore(path.join(dir, 'offload.sqlite'));
const thread = new OffloadThread({ databaseFile: store.file });
afterAll(async () => {
  await thread.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Serve mode's upload folder, reduced to a map: an id per file, used up by consume(). */
const uploaded = new Map<string, string>();
const uploads: UploadResolver = {
  path: (id) => {
    const file = uploaded.get(id);
    if (!file) throw new QuadraError('NOT_FOUND', `upload ${id} is unknown or used; upload the file again`);
    return file;
  },
  consume: (id) => {
    const file = uploaded.get(id);
    uploaded.delete(id);
    if (file) rmSync(file, { force: true });
  },
};
let uploadCount = 0;
function upload(bytes: Uint8Array): string {
  const id = `upload-${++uploadCount}`;
  const file = path.join(dir, `${id}.upload`);
  writeFileSync(file, bytes);
  uploaded.set(id, file);
  return id;
}

function service(offload?: Offload): WorkstationService {
  return new WorkstationService({
    store,
    hardware: async () => {
      throw new QuadraError('UNSUPPORTED', 'no hardware detection in this test');
    },
    dataDir: dir,
    emit: () => undefined,
    uploads,
    ...(offload ? { offload } : {}),
  });
}
/** The same service with its work on the calling thread, and on the offload thread. */
const inline = service();
const threaded = service(thread);

/** Our checkpoint for `model` with N(0, 0.05²) parameters and moments. */
function checkpoint(model: Partial<ModelConfig>, seed: number, step = 12): Uint8Array<ArrayBuffer> {
  const config = parseEngineConfig({ model, seed });
  const n = buildLayout(config.model).total;
  const rng = new Rng(seed);
  const parameters = rng.fillNormal(new Float32Array(n), 0.05);
  const m = rng.fillNormal(new Float32Array(n), 0.01);
  const v = m.map((x) => x * x);
  return new Uint8Array(encodeCheckpoint({ config, parameters, optimizer: { m, v, fieldStep: step, spikeStep: step }, fieldState: new Float32Array(config.model.fieldSize), step, backend: 'simd' }));
}

const MODEL: Partial<ModelConfig> = { fieldSize: 6, hiddenSize: 8, spikingHiddenSize: 5, spikingSteps: 4 };
const CSV = new TextEncoder().encode(Array.from({ length: 40 }, (_, r) => Array.from({ length: 6 }, (_, c) => ((r * 7 + c * 3) % 11) / 10).join(',')).join('\n'));

/** A trained run (as training stores it) on a registered dataset, with one checkpoint and `points` metric points. */
async function trainedRun(points: number): Promise<{ runId: number; checkpointId: number }> {
  const dataset = await inline.importDataset({ fileName: 'rows.csv', bytes: CSV, name: `rows ${++uploadCount}` });
  const engine = parseEngineConfig({ model: MODEL, seed: 5 });
  const run = store.runs.create({
    name: 'trained',
    config: { engine, epochs: 3, dataset: 'rows', validationFraction: 0.1, lastBatch: 'drop', checkpointEveryEpochs: 1, keepLastCheckpoints: 3 },
    mode: 'single',
    backend: 'simd',
    devices: [],
    workers: 1,
    datasetId: dataset.id,
    ownerPid: null,
  });
  const stored = store.checkpoints.add({ runId: run.id, epoch: 1, step: 12, validationLoss: 0.4, trainLoss: 0.5, data: checkpoint(MODEL, 5) });
  const metrics: MetricPoint[] = Array.from({ length: points }, (_, step) => ({
    runId: run.id,
    step,
    epoch: Math.floor(step / 100),
    time: 1_700_000_000_000 + step,
    trainLoss: 1 / (step + 1),
    validationLoss: step % 100 === 99 ? 2 / (step + 1) : null,
    samplesPerSec: 1000 + (step % 17),
    gpuMemoryMiB: null,
    cpuPercent: 50 + (step % 7),
    rssBytes: 1_000_000 + step,
  }));
  store.metrics.append(metrics);
  return { runId: run.id, checkpointId: stored.id };
}

/** What a rejection carries across a boundary. */
async function failure(promise: Promise<unknown>): Promise<{ code: string; message: string; details: unknown }> {
  const error = await promise.then(
    () => expect.unreachable('expected a rejection'),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(QuadraError);
  const { code, message, details } = error as QuadraError;
  return { code, message, details };
}

/** A checkpoint's contents, without the moment it was encoded (a re-encoding stamps `created`). */
function contentsOf(bytes: Uint8Array) {
  const { metadata, ...contents } = decodeCheckpoint(bytes, 'x.safetensors');
  const { created: _created, ...rest } = metadata;
  return { ...contents, metadata: rest };
}

describe('the offload thread answers as the calling thread does', () => {
  it('exports a stored checkpoint to every format, byte for byte (a torchrun .zip entry for entry)', async () => {
    const { checkpointId } = await trainedRun(10);
    const cases = [
      { format: 'safetensors', fp16: false },
      { format: 'safetensors', fp16: true },
      { format: 'pth', fp16: false },
      { format: 'onnx', fp16: false },
      { format: 'onnx', fp16: true },
      { format: 'torchrun', fp16: false },
    ] as const;
    for (const { format, fp16 } of cases) {
      const [here, there] = await Promise.all([inline.exportCheckpoint({ checkpointId, format, fp16 }), threaded.exportCheckpoint({ checkpointId, format, fp16 })]);
      expect(there.fileName, format).toBe(here.fileName);
      expect(there.bytes).toBeInstanceOf(Uint8Array);
      if (format === 'torchrun') {
        const [a, b] = [unzipSync(here.bytes), unzipSync(there.bytes)];
        expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
        // The run's registered rows travel as data.npy: the thread read the dataset too.
        expect(Object.keys(b).some((name) => name.endsWith('/data.npy'))).toBe(true);
        for (const name of Object.keys(a)) expect(Buffer.from(b[name]!).equals(Buffer.from(a[name]!)), name).toBe(true);
      } else if (format === 'safetensors' && fp16) {
        // A re-encoding, stamped with the moment it was made.
        expect(contentsOf(there.bytes)).toEqual(contentsOf(here.bytes));
      } else {
        expect(Buffer.from(there.bytes).equals(Buffer.from(here.bytes)), `${format}${fp16 ? ' fp16' : ''}`).toBe(true);
      }
    }
  });

  it('reads metrics, raw and downsampled in SQL, as the store does', async () => {
    const { runId } = await trainedRun(5000);
    for (const request of [{ runId }, { runId, maxPoints: 100 }, { runId, fromStep: 1234, toStep: 4321, maxPoints: 37 }, { runId, fromStep: 10, toStep: 60 }]) {
      const [here, there] = await Promise.all([inline.getMetrics(request), threaded.getMetrics(request)]);
      expect(there).toEqual(here);
      expect(there).toEqual(store.metrics.range(runId, request));
    }
    // A write on the service's connection is seen by the thread's next read (WAL, read-only beside it).
    store.metrics.append([{ runId, step: 5000, epoch: 50, time: 1, trainLoss: 0.25, validationLoss: null, samplesPerSec: null, gpuMemoryMiB: null, cpuPercent: null, rssBytes: null }]);
    expect((await threaded.getMetrics({ runId, fromStep: 5000 })).map((p) => p.trainLoss)).toEqual([0.25]);
  });

  it('imports checkpoints (ours, the original project’s .pth) from bytes and from uploads', async () => {
    const pth = readFileSync(path.join(ROOT, 'tests/fixtures/pth/engine.pth'));
    const ours = checkpoint(MODEL, 9, 30);
    for (const [fileName, bytes] of [['engine.pth', new Uint8Array(pth)], ['model.safetensors', ours]] as const) {
      const here = await inline.importCheckpoint({ fileName, bytes });
      const there = await threaded.importCheckpoint({ fileName, bytes });
      const fromUpload = await threaded.importCheckpoint({ fileName, uploadId: upload(bytes) });
      const expected = { ...store.runs.get(here.runId), id: 0, createdAt: '', startedAt: '', endedAt: '' };
      for (const imported of [there, fromUpload]) {
        expect({ ...store.runs.get(imported.runId), id: 0, createdAt: '', startedAt: '', endedAt: '' }).toEqual(expected);
        expect(contentsOf(store.checkpoints.getData(imported.checkpointId))).toEqual(contentsOf(store.checkpoints.getData(here.checkpointId)));
        const record = store.checkpoints.get(imported.checkpointId);
        expect({ step: record.step, epoch: record.epoch }).toEqual({ step: store.checkpoints.get(here.checkpointId).step, epoch: store.checkpoints.get(here.checkpointId).epoch });
      }
    }
    // Ours is stored as it came, whichever thread decoded it.
    const again = await threaded.importCheckpoint({ fileName: 'again.safetensors', bytes: ours });
    expect(Buffer.from(store.checkpoints.getData(again.checkpointId)).equals(Buffer.from(ours))).toBe(true);
    expect(uploaded.size).toBe(0);
  });

  it('previews and imports datasets from bytes and from uploads', async () => {
    for (const fieldSize of [undefined, 6, 4]) {
      const request = { fileName: 'rows.csv', bytes: CSV, ...(fieldSize === undefined ? {} : { fieldSize }) };
      const here = await inline.previewDataset(request);
      expect(await threaded.previewDataset(request)).toEqual(here);
      const id = upload(CSV);
      expect(await threaded.previewDataset({ fileName: 'rows.csv', uploadId: id, ...(fieldSize === undefined ? {} : { fieldSize }) })).toEqual(here);
      uploads.consume(id);
    }
    const text = new TextEncoder().encode('the quick brown fox\njumps over the lazy dog\n');
    expect(await threaded.previewDataset({ fileName: 'notes.txt', bytes: text, fieldSize: 16 })).toEqual(await inline.previewDataset({ fileName: 'notes.txt', bytes: text, fieldSize: 16 }));

    const bytes = new TextEncoder().encode('1,2,3\n4,5,6\n7,8,9\n');
    const here = await inline.importDataset({ fileName: 'three.csv', bytes, name: 'three (here)' });
    const there = await threaded.importDataset({ fileName: 'three.csv', bytes, name: 'three (there)' });
    const fromUpload = await threaded.importDataset({ fileName: 'three.csv', uploadId: upload(bytes), name: 'three (upload)' });
    for (const record of [there, fromUpload]) {
      expect({ ...record, id: 0, name: '', createdAt: '' }).toEqual({ ...here, id: 0, name: '', createdAt: '' });
    }
    expect(uploaded.size).toBe(0);
  });
});

describe('errors cross the thread with their codes, messages and details', () => {
  it('as the calling thread throws them', async () => {
    const { runId, checkpointId } = await trainedRun(3);
    const calls: Array<[string, (s: WorkstationService) => Promise<unknown>]> = [
      ['unknown checkpoint', (s) => s.exportCheckpoint({ checkpointId: 987654 })],
      ['fp16 .pth', (s) => s.exportCheckpoint({ checkpointId, format: 'pth', fp16: true })],
      ['metrics range backwards', (s) => s.getMetrics({ runId, fromStep: 9, toStep: 3 })],
      ['not a checkpoint', (s) => s.importCheckpoint({ fileName: 'x.safetensors', bytes: CSV })],
      ['a legacy torch.save', (s) => s.importCheckpoint({ fileName: 'x.pth', bytes: Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]) })],
      ['a bad CSV cell', (s) => s.previewDataset({ fileName: 'bad.csv', bytes: new TextEncoder().encode('1,2\n3,oops\n') })],
      ['an unknown extension', (s) => s.previewDataset({ fileName: 'rows.xlsx', bytes: CSV })],
      ['the wrong width', (s) => s.importDataset({ fileName: 'rows.csv', bytes: CSV, fieldSize: 5 })],
    ];
    for (const [what, call] of calls) {
      const here = await failure(call(inline));
      const there = await failure(call(threaded));
      expect(there, what).toEqual(here);
    }
    expect((await failure(threaded.importDataset({ fileName: 'rows.csv', bytes: CSV, fieldSize: 5 }))).details).toMatchObject({ width: 6, expected: 5 });
  });
});

describe('the calling thread stays free', () => {
  /** The longest the caller's event loop went without running a 5 ms timer (ms) while `work` ran, and how long the work took. */
  async function longestStall(work: () => Promise<unknown>): Promise<{ stallMs: number; workMs: number }> {
    const started = performance.now();
    let last = started;
    let stallMs = 0;
    const tick = () => {
      const now = performance.now();
      stallMs = Math.max(stallMs, now - last);
      last = now;
    };
    const timer = setInterval(tick, 5);
    await work();
    tick();
    clearInterval(timer);
    return { stallMs, workMs: performance.now() - started };
  }

  it('while a large checkpoint is exported, the event loop keeps answering; the work ran on another thread', async () => {
    const big = checkpoint({ fieldSize: 100, hiddenSize: 512, spikingHiddenSize: 128, spikingSteps: 4 }, 3);
    const { checkpointId } = await inline.importCheckpoint({ fileName: 'big.safetensors', bytes: big });
    // Warm both paths (module loading, the thread's database connection).
    await Promise.all([inline.exportCheckpoint({ checkpointId, format: 'onnx' }), threaded.exportCheckpoint({ checkpointId, format: 'onnx' })]);

    const onCaller = await longestStall(() => inline.exportCheckpoint({ checkpointId, format: 'safetensors', fp16: true }));
    const offCaller = await longestStall(() => threaded.exportCheckpoint({ checkpointId, format: 'safetensors', fp16: true }));
    // The control: on the calling thread the export holds the event loop for most of its run.
    expect(onCaller.stallMs).toBeGreaterThan(Math.min(150, onCaller.workMs / 2));
    // Off it, the loop answers within a fraction of that, however long the export takes.
    expect(offCaller.stallMs).toBeLessThan(Math.max(60, onCaller.stallMs / 4));
    expect(thread.threadId).not.toBeNull();
    expect(thread.threadId).not.toBe(threadId);
  });
});

describe('OffloadThread', () => {
  /** An entry that answers a task with its runId, and exits (code 3) for runId 0. */
  function echoEntry(): string {
    const file = path.join(dir, 'echo-entry.mjs');
    writeFileSync(
      file,
      `import { parentPort } from 'node:worker_threads';
parentPort.on('message', (m) => {
  if (m.type === 'shutdown') return parentPort.close();
  if (m.args.runId === 0) process.exit(3);
  parentPort.postMessage({ replyTo: m.seq, ok: true, value: m.args.runId });
});
`,
    );
    return file;
  }

  it('fails what was in flight when the thread stops, starts a fresh one for the next task, and refuses work once closed', async () => {
    const echo = new OffloadThread({ databaseFile: store.file, entry: echoEntry() });
    expect(await echo.run('metrics', { runId: 5, range: {} })).toBe(5);
    const first = echo.threadId;
    const lost = await failure(echo.run('metrics', { runId: 0, range: {} }));
    expect(lost.code).toBe('INTERNAL');
    expect(lost.message).toContain('metrics: the offload thread stopped before it answered (exit code 3)');
    expect(await echo.run('metrics', { runId: 7, range: {} })).toBe(7);
    expect(echo.threadId).not.toBe(first);
    await echo.close();
    expect((await failure(echo.run('metrics', { runId: 8, range: {} }))).code).toBe('UNSUPPORTED');
  });

  it('turns a thread that cannot start into an error naming why', async () => {
    const broken = path.join(dir, 'broken-entry.mjs');
    writeFileSync(broken, "throw new Error('cannot start here');\n");
    const offload = new OffloadThread({ databaseFile: store.file, entry: broken });
    const error = await failure(offload.run('metrics', { runId: 1, range: {} }));
    expect(error).toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('cannot start here') });
    await offload.close();
  });

  it('is used for a database file; an in-memory database keeps the work on the calling thread', async () => {
    const memory = openStore(':memory:');
    const offload = createOffload(memory);
    expect(offload).not.toBeInstanceOf(OffloadThread);
    await offload.close();
    memory.close();
    expect(inProcessOffload(store)).not.toBeInstanceOf(OffloadThread);
  });

  it('createWorkstation starts one for its database and close() ends it', async () => {
    const databaseFile = path.join(dir, 'workstation.sqlite');
    const workstation = createWorkstation({
      databaseFile,
      emit: () => undefined,
      hardware: async () => {
        throw new QuadraError('UNSUPPORTED', 'no hardware detection in this test');
      },
    });
    expect(workstation.offload).toBeInstanceOf(OffloadThread);
    const { runId } = await workstation.service.importCheckpoint({ fileName: 'model.safetensors', bytes: checkpoint(MODEL, 2) });
    expect(await workstation.service.getMetrics({ runId })).toEqual([]);
    await workstation.close();
    expect((await failure(workstation.offload.run('metrics', { runId, range: {} }))).code).toBe('UNSUPPORTED');
  });
});
