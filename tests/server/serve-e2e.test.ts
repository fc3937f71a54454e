import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeCheckpoint } from '../../src-main/engine/checkpoint';
import { decodeWire } from '../../src-shared/wire';
import { apiClient } from './helpers';

const ROOT = path.resolve(__dirname, '../..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-serve-e2e-'));
let child: ChildProcess | null = null;
afterAll(() => {
  child?.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

interface Client {
  call<T = unknown>(method: string, request?: unknown): Promise<{ ok: boolean; value: T; error?: { code: string; message: string } }>;
  events: Array<{ event: string; payload: Record<string, unknown> }>;
  waitFor(predicate: (e: { event: string; payload: Record<string, unknown> }) => boolean, timeoutMs: number): Promise<void>;
  close(): void;
}

/** The UI's client (helpers' apiClient) that also keeps every event the server pushes. */
async function connect(url: string): Promise<Client> {
  const { port, searchParams } = new URL(url);
  const { ws, call, close } = await apiClient(Number(port), searchParams.get('token')!);
  const events: Client['events'] = [];
  const watchers: Array<() => void> = [];
  ws.on('message', (data) => {
    const message = decodeWire(data.toString()) as { event?: string; payload?: Record<string, unknown> };
    if (message.event) {
      events.push({ event: message.event, payload: message.payload! });
      watchers.forEach((w) => w());
    }
  });
  return {
    events,
    call: call as Client['call'],
    waitFor: (predicate, timeoutMs) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('timed out waiting for an event')), timeoutMs);
        const check = () => {
          if (events.some(predicate)) {
            clearTimeout(timer);
            resolve();
          }
        };
        watchers.push(check);
        check();
      }),
    close,
  };
}

describe('quadra serve, end to end over the WebSocket', () => {
  it('imports data, trains on 2 workers with live progress, exports and imports checkpoints, benchmarks', async () => {
    child = spawn(process.execPath, [path.join(ROOT, 'src-main/cli/quadra.mjs'), 'serve', '--port', '0', '--db', path.join(tmp, 'serve.sqlite')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const url = await new Promise<string>((resolve, reject) => {
      let text = '';
      child!.stdout!.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        const match = /http:\/\/127\.0\.0\.1:\d+\/\?token=\S+/.exec(text);
        if (match) resolve(match[0]);
      });
      child!.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
    });
    const client = await connect(url);

    const hardware = await client.call<{ backends: Array<{ id: string; available: boolean }> }>('getHardware');
    expect(hardware.ok).toBe(true);
    expect(hardware.value.backends.find((b) => b.id === 'wasm')?.available).toBe(true);

    const csv = readFileSync(path.join(ROOT, 'resources/datasets/sample-numeric.csv'));
    const preview = await client.call<{ rows: number; width: number; widthMismatch: unknown; firstRows: number[][] }>('previewDataset', { fileName: 'sample.csv', bytes: new Uint8Array(csv), fieldSize: 64 });
    expect(preview.value).toMatchObject({ rows: 1000, width: 100, widthMismatch: { width: 100, fieldSize: 64 } });
    expect(preview.value.firstRows).toHaveLength(5);
    const bad = await client.call('previewDataset', { fileName: 'bad.csv', bytes: new TextEncoder().encode('1,2\n3,oops\n') });
    expect(bad.error).toMatchObject({ code: 'INVALID_FILE' });
    expect(bad.error!.message).toContain('line 2, column 2');
    const dataset = await client.call<{ id: number; name: string; rows: number }>('importDataset', { fileName: 'sample.csv', bytes: new Uint8Array(csv), name: 'numeric' });
    expect(dataset.value).toMatchObject({ name: 'numeric', rows: 1000 });
    // The same file the way the page sends it: streamed to POST /upload, then named by its id.
    const { origin, searchParams } = new URL(url);
    const uploaded = await fetch(`${origin}/upload`, { method: 'POST', body: csv, headers: { authorization: `Bearer ${searchParams.get('token')}` } });
    const { uploadId } = (await uploaded.json()) as { uploadId: string };
    expect(readdirSync(path.join(tmp, 'uploads'))).toEqual([`${uploadId}.upload`]);
    const uploadedPreview = await client.call<{ rows: number; width: number }>('previewDataset', { fileName: 'sample.csv', uploadId });
    expect(uploadedPreview.value).toMatchObject({ rows: 1000, width: 100 });
    const uploadedDataset = await client.call<{ name: string; rows: number; sourcePath: string }>('importDataset', { fileName: 'sample.csv', uploadId, name: 'numeric-uploaded' });
    expect(uploadedDataset.value).toMatchObject({ name: 'numeric-uploaded', rows: 1000 });
    expect(path.dirname(uploadedDataset.value.sourcePath)).toBe(path.join(tmp, 'datasets'));
    expect(readdirSync(path.join(tmp, 'uploads'))).toEqual([]);

    const started = await client.call<{ runId: number }>('startRun', {
      mode: 'multi-cpu', workers: 2, backend: 'wasm', epochs: 2, dataset: { datasetId: dataset.value.id }, checkpointEveryEpochs: 1,
      engine: { batchSize: 100, model: { hiddenSize: 32, spikingHiddenSize: 16, spikingSteps: 3 } },
    });
    expect(started.ok).toBe(true);
    const runId = started.value.runId;
    await client.waitFor((e) => e.event === 'onDidChangeRun' && e.payload.id === runId && e.payload.status === 'completed', 120_000);
    const progress = client.events.filter((e) => e.event === 'onDidProgress' && e.payload.runId === runId);
    expect(progress.length).toBeGreaterThan(0);
    expect((progress.at(-1)!.payload.workers as unknown[]).length).toBe(2);
    const notLive = await client.call('controlRun', { runId, action: 'pause' });
    // Finished: not live anywhere, so there is no one to ask.
    expect(notLive.error).toMatchObject({ code: 'CONFLICT', message: `run ${runId} is completed: only a queued, running or paused run can be paused` });

    const checkpoints = await client.call<Array<{ id: number; isBest: boolean }>>('listCheckpoints', { runId });
    expect(checkpoints.value).toHaveLength(2);
    const exported = await client.call<{ fileName: string; bytes: Uint8Array }>('exportCheckpoint', { checkpointId: checkpoints.value[1]!.id, fp16: true });
    expect(exported.value.fileName).toMatch(/^run-\d+-step-\d+-f16\.safetensors$/);
    const contents = decodeCheckpoint(exported.value.bytes, exported.value.fileName);
    expect(contents.model).toMatchObject({ fieldSize: 100, hiddenSize: 32 });
    const reimported = await client.call<{ runId: number }>('importCheckpoint', { fileName: exported.value.fileName, bytes: exported.value.bytes });
    expect(reimported.ok).toBe(true);
    const metrics = await client.call<unknown[]>('getMetrics', { runId, maxPoints: 50 });
    expect(metrics.value.length).toBeGreaterThan(0);

    const suite = await client.call<{ suiteId: number }>('runBenchmarkSuite', { name: 'tiny', backends: ['wasm'], workerCounts: [1], batchSizes: [16], warmup: 1, iterations: 3, repeats: 1 });
    await client.waitFor((e) => e.event === 'onDidProgressBenchmark' && e.payload.suiteId === suite.value.suiteId && e.payload.label === 'done', 120_000);
    const results = await client.call<Array<{ trainSamplesPerSec: { median: number }; forwardSamplesPerSec: { median: number }; fingerprint: Record<string, string> }>>('getBenchmarkResults', { suiteId: suite.value.suiteId });
    expect(results.value).toHaveLength(1);
    expect(results.value[0]!.trainSamplesPerSec.median).toBeGreaterThan(0);
    expect(results.value[0]!.forwardSamplesPerSec.median).toBeGreaterThan(0);
    expect(results.value[0]!.fingerprint).toMatchObject({ backend: 'wasm' });
    expect(Object.keys(results.value[0]!.fingerprint)).toEqual(expect.arrayContaining(['cpu', 'gpus', 'driver', 'os', 'node', 'tfjs']));
    // The monitor streams samples; without nvidia-smi (as here) CPU samples continue and the GPU state says why.
    const monitoring = await client.call<{ enabled: boolean }>('setMonitoring', { enabled: true });
    expect(monitoring.value.enabled).toBe(true);
    await client.waitFor((e) => e.event === 'onDidSampleMonitor', 10_000);
    const sample = client.events.find((e) => e.event === 'onDidSampleMonitor')!.payload as { cpu: { perCorePercent: number[] }; gpuStatus: { state: string } };
    expect(sample.cpu.perCorePercent.length).toBeGreaterThan(0);
    expect(['ok', 'unavailable', 'starting']).toContain(sample.gpuStatus.state);
    expect((await client.call<{ enabled: boolean }>('setMonitoring', { enabled: false })).value.enabled).toBe(false);
    client.close();

    child.kill('SIGINT');
    const code = await new Promise((resolve) => child!.once('exit', resolve));
    expect(code).toBe(0);
    child = null;
  }, 300_000);
});
