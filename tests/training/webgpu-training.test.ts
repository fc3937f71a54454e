import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeCheckpoint } from '../../src-main/engine/checkpoint';
import { nodeGpuAdapter } from '../../src-main/engine/webgpu-node';
import { probeBackends, selectBackend } from '../../src-main/engine/backends';
import { startTraining, type TrainingRequestInput } from '../../src-main/services/training-service';
import { openStore } from '../../src-main/store/database';
import { TEST_HARDWARE } from '../helpers/training';

/**
 * `--backend webgpu` end to end on SwiftShader (dawn.node, software Vulkan): real worker
 * processes, the real store, the fused WGSL kernels. Correctness only; SwiftShader is slow.
 */
const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
// The workers inherit this: they find the same adapter.
if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER)) process.env.VK_ICD_FILENAMES = SWIFTSHADER;
const adapter = await nodeGpuAdapter().catch(() => null);
const why = adapter ? null : 'dawn.node found no WebGPU adapter (SwiftShader needs libvulkan1 and Debian chromium)';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-webgpu-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const SMALL = { fieldSize: 8, hiddenSize: 12, spikingHiddenSize: 8, spikingSteps: 3 };

function request(overrides: Partial<TrainingRequestInput> = {}): TrainingRequestInput {
  return { mode: 'single', backend: 'webgpu', epochs: 2, dataset: 'synthetic:96', engine: { batchSize: 16, model: SMALL }, checkpointEveryEpochs: 1, ...overrides };
}

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
    store.close();
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
