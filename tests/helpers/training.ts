import { expect } from 'vitest';
import { parseEngineConfig, type EngineConfigInput } from '../../src-shared/engine-config';
import type { HardwareInfo } from '../../src-shared/hardware';
import { syntheticRows } from '../../src-main/data/synthetic';
import { splitTrainValidation } from '../../src-main/data/split';
import { TrainingRun, type TrainingEvents, type TrainingPlan } from '../../src-main/training/coordinator';
import type { EngineSnapshot } from '../../src-main/training/protocol';
import { maxAbsDiff } from './engine';

/** A small data-parallel plan for the coordinator tests (2 workers, wasm unless overridden). */
export const NO_GPU = { gpus: [], nvidiaSmi: { available: false as const, reason: 'tests run without a GPU' } };
/** A 2-core machine without a GPU, as the service tests describe it. */
export const TEST_HARDWARE: HardwareInfo = {
  platform: 'linux',
  arch: 'x64',
  cpu: { model: 'test CPU', logicalCores: 2, physicalCores: 2 },
  memoryTotalBytes: 8 * 2 ** 30,
  memoryFreeBytes: 4 * 2 ** 30,
  gpus: [],
  nvidiaSmi: NO_GPU.nvidiaSmi,
};
export const F = 12;
export const SMALL = { fieldSize: F, hiddenSize: 16, spikingHiddenSize: 8, spikingSteps: 3 };

export function plan(overrides: Partial<TrainingPlan> & { engine?: EngineConfigInput; rows?: number } = {}): TrainingPlan {
  const rows = overrides.rows ?? 256;
  const { train, validation } = splitTrainValidation(rows, 0.1, 7);
  return {
    config: parseEngineConfig({ batchSize: 16, seed: 11, ...overrides.engine, model: { ...SMALL, ...overrides.engine?.model } }),
    mode: 'multi-cpu',
    workers: 2,
    backend: 'wasm',
    gpu: NO_GPU,
    epochs: 1,
    data: syntheticRows(rows, F, 3, 1),
    trainRows: train,
    validationRows: validation,
    lastBatch: 'drop',
    checkpointEveryEpochs: 5,
    ...overrides,
  };
}

/** Runs a plan, capturing every replica's final state through the end-of-run checkpoint. */
export async function runCapturing(p: TrainingPlan, events: TrainingEvents = {}): Promise<{ outcome: Awaited<ReturnType<TrainingRun['run']>>; replicas: EngineSnapshot[]; run: TrainingRun }> {
  let replicas: EngineSnapshot[] = [];
  const run = new TrainingRun(p, {
    ...events,
    checkpoint: async (request) => {
      replicas = await run.replicaStates();
      await events.checkpoint?.(request);
    },
  });
  const outcome = await run.run();
  return { outcome, replicas, run };
}

/**
 * DDP's guarantee: N workers at global batch B end where one worker at batch B ends (dropout 0,
 * spike-loss weight 0, within 1e-5), and the run really moved the weights (the comparison is not
 * between two untouched models). `makePlan` builds the backend's plan; `untouched` adjusts the
 * 24-row control run.
 */
export async function expectThreeWorkersEqualOne(makePlan: (overrides: Parameters<typeof plan>[0]) => TrainingPlan, untouched: Parameters<typeof plan>[0] = {}): Promise<void> {
  const engine = { batchSize: 24, model: { dropout: 0, spikeLossWeight: 0 } };
  const one = await runCapturing(makePlan({ workers: 1, mode: 'single', engine }));
  const three = await runCapturing(makePlan({ workers: 3, engine }));
  expect(one.outcome.step).toBe(three.outcome.step);
  expect(maxAbsDiff(one.replicas[0]!.parameters, three.replicas[0]!.parameters)).toBeLessThanOrEqual(1e-5);
  const control = await runCapturing(makePlan({ workers: 1, mode: 'single', engine, ...untouched, trainRows: new Uint32Array(24).map((_, i) => i) }));
  expect(maxAbsDiff(one.replicas[0]!.parameters, control.replicas[0]!.parameters)).toBeGreaterThan(1e-4);
}
