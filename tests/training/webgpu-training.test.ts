import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { decodeCheckpoint } from '../../src-main/engine/checkpoint';
import { listNodeAdapters, nodeGpuAdapter } from '../../src-main/engine/webgpu-node';
import { probeBackends, selectBackend } from '../../src-main/engine/backends';
import { resumeTraining, startTraining, type TrainingRequestInput } from '../../src-main/services/training-service';
import { WorkstationService } from '../../src-main/services/workstation';
import { openStore } from '../../src-main/store/database';
import { chooseAdapters, parseAdapterList } from '../../src-main/engine/webgpu-adapters';
import { firstBitDifference } from '../helpers/engine';
import { plan, runCapturing, TEST_HARDWARE } from '../helpers/training';

/**
 * `--backend webgpu` end to end on SwiftShader (dawn.node, software Vulkan): real worker
 * processes, the real store, the fused WGSL kernels. Correctness only; SwiftShader is slow.
 */
const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
// The workers inherit this: they find the same adapter.
if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER)) process.env.VK_ICD_FILENAMES = SWIFTSHADER;
const adapter = await nodeGpuAdapter().catch(() => null);
const why = adapter ? null : 'dawn.node found no WebGPU adapter (SwiftShader needs libvulkan1 and Debian chromium)';
const adapterName = adapter ? (await listNodeAdapters())[0]?.name : undefined;

const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-webgpu-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const SMALL = { fieldSize: 8, hiddenSize: 12, spikingHiddenSize: 8, spikingSteps: 3 };

function request(overrides: Partial<TrainingRequestInput> = {}): TrainingRequestInput {
  return { mode: 'single', backend: 'webgpu', epochs: 2, dataset: 'synthetic:96', engine: { batchSize: 16, model: SMALL }, checkpointEveryEpochs: 1, ...overrides };
}

describe('one adapter per GPU worker, by Dawn\'s name', () => {
  // Dawn's own listing (printed when asked for an adapter name it does not have), recorded.
  const twoH200 = "no suitable backends found\nAvailable adapters:\n * backend: 'vulkan', name: 'NVIDIA H200'\n * backend: 'vulkan', name: 'NVIDIA H200'\n";
  const mixed = "no suitable backends found\nAvailable adapters:\n * backend: 'vulkan', name: 'NVIDIA GeForce RTX 4090'\n * backend: 'vulkan', name: 'AMD Radeon RX 7900 XTX (RADV NAVI31)'\n * backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)'\n";

  it('reads the adapters Dawn lists', () => {
    expect(parseAdapterList(mixed)).toEqual([
      { backend: 'vulkan', name: 'NVIDIA GeForce RTX 4090' },
      { backend: 'vulkan', name: 'AMD Radeon RX 7900 XTX (RADV NAVI31)' },
      { backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)' },
    ]);
  });

  it('gives each worker its own adapter, and refuses adapters it cannot tell apart or too few', () => {
    expect(chooseAdapters(parseAdapterList(mixed), 2)).toEqual(['NVIDIA GeForce RTX 4090', 'AMD Radeon RX 7900 XTX (RADV NAVI31)']);
    expect(() => chooseAdapters(parseAdapterList(twoH200), 2)).toThrow(/Dawn lists 2 adapters named 'NVIDIA H200' and picks adapters only by name/);
    expect(() => chooseAdapters(parseAdapterList(mixed), 4)).toThrow(/needs 4 GPU adapters; Dawn offers 3/);
  });
});

describe.skipIf(why !== null)(`training on the webgpu backend${why ? ` (skipped: ${why})` : ''}`, () => {
  it('a software adapter is offered only when asked for by name', async () => {
    const statuses = await probeBackends(TEST_HARDWARE);
    const webgpu = statuses.find((s) => s.id === 'webgpu')!;
    expect(webgpu.available).toBe(false);
    expect(webgpu.reason).toMatch(/only a software adapter \(.*SwiftShader.*\)/i);
    const named = await selectBackend('webgpu', TEST_HARDWARE);
    expect(named.id).toBe('webgpu');
  });

  it('trains in a worker process, and tracks the simd backend from the same start', async () => {
    const store = openStore(path.join(tmp, `w${++counter}.sqlite`));
    const gpu = await startTraining(request(), { store, hardware: TEST_HARDWARE });
    expect(gpu.status, JSON.stringify(gpu.outcome.error)).toBe('completed');
    expect(store.runs.get(gpu.runId)).toMatchObject({ backend: 'webgpu', status: 'completed' });
    const cpu = await startTraining(request({ backend: 'simd' }), { store, hardware: TEST_HARDWARE });
    expect(cpu.status).toBe('completed');
    const g = store.metrics.range(gpu.runId).filter((m) => m.trainLoss !== null);
    const c = store.metrics.range(cpu.runId).filter((m) => m.trainLoss !== null);
    expect(g.length).toBeGreaterThan(0);
    expect(c.length).toBeGreaterThan(0);
    // Same data, seed, first weights and dropout masks: the final losses agree closely.
    expect(Math.abs(gpu.outcome.finalTrainLoss! - cpu.outcome.finalTrainLoss!)).toBeLessThan(1e-2 * Math.abs(cpu.outcome.finalTrainLoss!));
    // A webgpu checkpoint is an ordinary checkpoint: it decodes with the same layout.
    const saved = decodeCheckpoint(store.checkpoints.getData(gpu.latestCheckpointId!), 'webgpu checkpoint');
    expect(saved.metadata.backend).toBe('webgpu');
    expect(saved.parameters.length).toBe(decodeCheckpoint(store.checkpoints.getData(cpu.latestCheckpointId!), 'simd').parameters.length);
    // And the other way round: a simd checkpoint continues on webgpu, weights, moments and steps.
    const onGpu = await startTraining(request({ epochs: 1, engine: { batchSize: 16 }, initFrom: { checkpointId: cpu.latestCheckpointId! } }), { store, hardware: TEST_HARDWARE });
    expect(onGpu.status, JSON.stringify(onGpu.outcome.error)).toBe('completed');
    expect(store.metrics.range(onGpu.runId)[0]!.step).toBeGreaterThan(decodeCheckpoint(store.checkpoints.getData(cpu.latestCheckpointId!), 'simd').step!);
    store.close();
  }, 120_000);

  it('mixed precision: trains, records the loss scale, keeps the scaler in checkpoints and continues it on resume', async () => {
    const store = openStore(path.join(tmp, `w${++counter}.sqlite`));
    const mixed = await startTraining(request({ engine: { batchSize: 16, model: SMALL, precision: 'mixed' } }), { store, hardware: TEST_HARDWARE });
    expect(mixed.status, JSON.stringify(mixed.outcome.error)).toBe('completed');
    const scales = store.metrics.range(mixed.runId).filter((m) => m.lossScale !== undefined);
    expect(scales.length).toBeGreaterThan(0);
    expect(scales[0]).toMatchObject({ lossScale: 65536, skippedSteps: 0 });
    const saved = decodeCheckpoint(store.checkpoints.getData(mixed.latestCheckpointId!), 'mixed checkpoint');
    expect(saved.lossScaler).toMatchObject({ scale: 65536, skippedSteps: 0 });
    expect(saved.lossScaler!.growthTracker).toBe(saved.step);
    store.db.prepare("UPDATE runs SET config = json_set(config, '$.epochs', 3) WHERE id = ?").run(mixed.runId);
    const resumed = await resumeTraining(mixed.runId, { store, hardware: TEST_HARDWARE });
    expect(resumed.status).toBe('completed');
    const after = decodeCheckpoint(store.checkpoints.getData(resumed.latestCheckpointId!), 'resumed');
    // The growth tracker went on counting from the checkpoint: the scaler was restored, not restarted.
    expect(after.lossScaler!.growthTracker).toBe(after.step);
    store.close();
  }, 120_000);

  it('the benchmark suite runs webgpu in mixed precision, and says why simd cannot', async () => {
    const store = openStore(path.join(tmp, `w${++counter}.sqlite`));
    const events: Array<{ suiteId: number; label: string; error?: string }> = [];
    const service = new WorkstationService({
      store,
      hardware: async () => TEST_HARDWARE,
      dataDir: tmp,
      emit: (event, payload) => {
        if (event === 'onDidProgressBenchmark') events.push(payload as (typeof events)[number]);
      },
    });
    const { suiteId } = await service.runBenchmarkSuite({ name: 'mixed', backends: ['webgpu', 'simd'], precision: 'mixed', workerCounts: [1], batchSizes: [16], warmup: 1, iterations: 2, repeats: 1 });
    await vi.waitFor(() => expect(events.some((e) => e.suiteId === suiteId && e.label === 'done')).toBe(true), { timeout: 120_000, interval: 200 });
    const results = store.benchmarks.results(suiteId);
    expect(results.map((r) => [r.backend, r.fingerprint.precision])).toEqual([['webgpu', 'mixed']]);
    expect(results[0]!.trainSamplesPerSec.median).toBeGreaterThan(0);
    expect(events.find((e) => e.error)?.error).toMatch(/precision 'mixed' is not available on backend 'simd'/);
    store.close();
  }, 150_000);

  it('multi-gpu: each worker opens the adapter named for it; more workers than adapters are refused before any run is written', async () => {
    const store = openStore(path.join(tmp, `w${++counter}.sqlite`));
    const one = await startTraining(request({ mode: 'multi-gpu', workers: 1, epochs: 1 }), { store, hardware: TEST_HARDWARE });
    expect(one.status, JSON.stringify(one.outcome.error)).toBe('completed');
    expect(store.runs.get(one.runId).devices).toEqual([`GPU 0: ${adapterName} (webgpu)`]);
    await expect(startTraining(request({ mode: 'multi-gpu', workers: 2 }), { store, hardware: TEST_HARDWARE })).rejects.toThrow(
      `multi-gpu on webgpu with 2 workers needs 2 GPU adapters; Dawn offers 1 ('${adapterName}')`,
    );
    expect(store.runs.list()).toHaveLength(1);
    store.close();
  }, 120_000);

  it('two workers on one adapter keep bit-identical replicas', async () => {
    const { outcome, replicas } = await runCapturing(plan({ backend: 'webgpu', workers: 2, epochs: 1, rows: 96, engine: { model: { fieldSize: 12, hiddenSize: 16, spikingHiddenSize: 8, spikingSteps: 3 } } }));
    expect(outcome.status, JSON.stringify(outcome.error)).toBe('completed');
    expect(replicas).toHaveLength(2);
    expect(firstBitDifference(replicas[0]!.parameters, replicas[1]!.parameters)).toBe(-1);
    expect(firstBitDifference(replicas[0]!.optimizer.v, replicas[1]!.optimizer.v)).toBe(-1);
  }, 120_000);

  it('two webgpu workers on one adapter: data-parallel, and a simd run continues from its checkpoint', async () => {
    const store = openStore(path.join(tmp, `w${++counter}.sqlite`));
    const two = await startTraining(request({ mode: 'multi-cpu', workers: 2, epochs: 1 }), { store, hardware: TEST_HARDWARE });
    expect(two.status, JSON.stringify(two.outcome.error)).toBe('completed');
    expect(store.runs.get(two.runId).workers).toBe(2);
    const onSimd = await startTraining(request({ backend: 'simd', epochs: 1, engine: { batchSize: 16 }, initFrom: { checkpointId: two.latestCheckpointId! } }), {
      store,
      hardware: TEST_HARDWARE,
    });
    expect(onSimd.status).toBe('completed');
    store.close();
  }, 120_000);
});
