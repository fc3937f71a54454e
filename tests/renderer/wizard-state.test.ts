import { describe, expect, it } from 'vitest';
import type { HardwareReport } from '../../src-shared/api';
import type { DatasetRecord } from '../../src-shared/records';
import { STEPS, TrainWizard } from '../../src-renderer/components/train/wizard-state.svelte';
import { FakeApi } from './fake-api';

const STEP = Object.fromEntries(STEPS.map((step, index) => [step.id, index])) as Record<(typeof STEPS)[number]['id'], number>;

function report(overrides: Partial<HardwareReport['recommended']> = {}, gpus = 0): HardwareReport {
  return {
    hardware: {
      platform: 'linux',
      arch: 'x64',
      cpu: { model: 'Test CPU', logicalCores: 8, physicalCores: 4 },
      memoryTotalBytes: 16 * 2 ** 30,
      memoryFreeBytes: 8 * 2 ** 30,
      gpus: Array.from({ length: gpus }, (_, index) => ({ index, name: 'GPU', uuid: null, memoryTotalMiB: 8192, memoryUsedMiB: 0, driverVersion: '550', cudaVersion: '12.4' })),
      nvidiaSmi: gpus > 0 ? { available: true, path: '/usr/bin/nvidia-smi' } : { available: false, reason: 'nvidia-smi not found on PATH' },
    },
    backends: [
      { id: 'simd', available: true, reason: 'selected: the fused kernel' },
      { id: 'wasm', available: true, reason: 'tfjs wasm' },
      { id: 'webgpu', available: false, reason: 'no GPU adapter' },
    ],
    recommended: { batchSize: 128, workers: 4, mode: 'multi-cpu', reasons: { batchSize: 'fits', workers: 'one per core', mode: 'several cores' }, ...overrides },
  };
}

const DATASET: DatasetRecord = { id: 7, name: 'sample numeric', kind: 'csv', sourcePath: null, rows: 500, width: 100, sha256: 'x', createdAt: '2026-01-01T00:00:00Z' };

function wizardWith(api = new FakeApi()): { wizard: TrainWizard; api: FakeApi } {
  api.handle('getHardware', () => report()).handle('listDatasets', () => [DATASET]);
  return { wizard: new TrainWizard(api), api };
}

/** Walks from the first step to `target`, asserting every step on the way lets the user through. */
function walkTo(wizard: TrainWizard, target: number): void {
  while (wizard.step < target) {
    const before = wizard.step;
    wizard.next();
    expect(wizard.step, `step ${STEPS[before]!.id}: ${wizard.stepProblems[before]}`).toBe(before + 1);
  }
}

describe('TrainWizard steps', () => {
  it('starts on the data step with valid defaults, and moves only forward through valid steps', () => {
    const { wizard } = wizardWith();
    expect(wizard.currentStep).toBe('data');
    expect(wizard.stepValid).toEqual([true, true, true, true, true]);
    // Not reached yet: the indicator may not jump past the next step.
    expect(wizard.canVisit(STEP.schedule)).toBe(false);
    walkTo(wizard, STEP.review);
    expect(wizard.currentStep).toBe('review');
    expect(wizard.reached).toBe(STEP.review);
    wizard.goTo(STEP.data);
    expect(wizard.currentStep).toBe('data');
    // Once reached, a later step opens directly.
    expect(wizard.canVisit(STEP.review)).toBe(true);
  });

  it('blocks Next on a field the schema refuses, in the schema\'s words', () => {
    const { wizard } = wizardWith();
    walkTo(wizard, STEP.model);
    wizard.fieldSize = 1.5;
    expect(wizard.errors.fieldSize).toBe('fieldSize must be a whole number');
    expect(wizard.stepValid[STEP.model]).toBe(false);
    expect(wizard.blockedBy).toBe('fieldSize must be a whole number');
    wizard.next();
    expect(wizard.currentStep).toBe('model');
    // Nor can a later step be opened from the indicator while an earlier one has a problem.
    wizard.goTo(STEP.hardware);
    expect(wizard.currentStep).toBe('model');

    wizard.fieldSize = 100;
    expect(wizard.blockedBy).toBeNull();
    wizard.next();
    expect(wizard.currentStep).toBe('hardware');
  });

  it('an empty field is refused, and the review names the earlier step that has a problem', () => {
    const { wizard } = wizardWith();
    walkTo(wizard, STEP.review);
    expect(wizard.blockedBy).toBeNull();
    wizard.epochs = null;
    expect(wizard.errors.epochs).toMatch(/^epochs /);
    expect(wizard.allValid).toBe(false);
    expect(wizard.blockedBy).toBe('an earlier step has a problem — open it from the steps above');
  });

  it('checks across steps: one batch must fit in the rows the validation split leaves', () => {
    const { wizard } = wizardWith();
    wizard.syntheticRows = 100;
    wizard.validationFraction = 0.1;
    expect(wizard.trainingRows).toBe(90);
    wizard.batchSize = 128;
    expect(wizard.errors.batchSize).toBe('batchSize must be at most 90: that many rows are left for training after the validation split');
    expect(wizard.errors.validationFraction).toBe('validationFraction leaves 90 training rows, fewer than one batch of 128');
    expect(wizard.stepValid[STEP.hardware]).toBe(false);
    expect(wizard.stepValid[STEP.schedule]).toBe(false);
    wizard.batchSize = 90;
    expect(wizard.errors.batchSize).toBeNull();
    expect(wizard.errors.validationFraction).toBeNull();
  });

  it('a numbers dataset fixes the field size; the wizard offers its width', () => {
    const { wizard } = wizardWith();
    wizard.datasets.value = [{ ...DATASET, width: 12 }];
    wizard.chooseSource('registered');
    expect(wizard.datasetName).toBe('sample numeric');
    expect(wizard.widthMismatch).toEqual({ width: 12, fieldSize: 100 });
    expect(wizard.errors.dataset).toBe('sample numeric has rows of 12 values but the field size is 100');
    expect(wizard.stepValid[STEP.data]).toBe(false);
    wizard.useDataWidth();
    expect(wizard.fieldSize).toBe(12);
    expect(wizard.stepValid[STEP.data]).toBe(true);
  });

  it('takes the recommended hardware settings once, and never over the user\'s own choice', async () => {
    const { wizard } = wizardWith();
    await wizard.load();
    expect({ mode: wizard.mode, workers: wizard.workers, batchSize: wizard.batchSize }).toEqual({ mode: 'multi-cpu', workers: 4, batchSize: 128 });

    wizard.setMode('single');
    expect(wizard.workers).toBe(1);
    await wizard.loadHardware();
    expect(wizard.mode).toBe('single');

    wizard.useRecommended();
    expect(wizard.mode).toBe('multi-cpu');
  });

  it('refuses hardware this machine does not have', async () => {
    const { wizard } = wizardWith();
    await wizard.load();
    wizard.setMode('multi-gpu');
    expect(wizard.errors.mode).toBe('multi-gpu mode needs NVIDIA GPUs: nvidia-smi not found on PATH');
    wizard.setMode('multi-cpu');
    expect(wizard.errors.mode).toBeNull();
    wizard.workers = 8;
    wizard.batchSize = 4;
    expect(wizard.errors.batchSize).toBe('batchSize must be at least 8: the batch is split across the workers and each needs a row per step');

    wizard.backend = 'webgpu';
    expect(wizard.errors.backend).toBe('the webgpu backend is not available on this machine');
    wizard.backend = 'simd';
    wizard.precision = 'mixed';
    expect(wizard.errors.precision).toMatch(/^mixed precision runs on the webgpu backend only/);
  });
});

describe('TrainWizard start', () => {
  it('starts the run it shows on the review, and resolves with its id', async () => {
    const { wizard, api } = wizardWith();
    api.handle('startRun', () => ({ runId: 42 }));
    await wizard.load();
    wizard.setMode('single');
    wizard.runName = '  tiny  ';
    walkTo(wizard, STEP.review);

    await expect(wizard.start()).resolves.toBe(42);
    expect(wizard.startedRunId).toBe(42);
    expect(wizard.starting).toBeNull();
    const [request] = api.callsOf('startRun');
    expect(request).toMatchObject({
      name: 'tiny',
      mode: 'single',
      workers: 1,
      backend: 'auto',
      dataset: 'synthetic:1024',
      epochs: 10,
      engine: { batchSize: 128, precision: 'fp32', model: { fieldSize: 100, hiddenSize: 256, spikeGradient: 'surrogate' } },
    });
    expect(request).not.toHaveProperty('initFrom');
  });

  it('imports a checked file first and trains on the dataset it became', async () => {
    const { wizard, api } = wizardWith();
    api
      .handle('previewDataset', () => ({ rows: 300, width: 100, kind: 'csv', firstRows: [[1, 2]], widthMismatch: null }))
      .handle('importDataset', () => ({ ...DATASET, id: 9, name: 'mine' }))
      .handle('startRun', () => ({ runId: 3 }));
    wizard.chooseSource('file');
    expect(wizard.errors.file).toBe('choose a file to import');
    await wizard.checkFile(new File(['1,2\n'], 'rows.csv'));
    expect(wizard.checkedFile?.preview.rows).toBe(300);
    expect(wizard.importName).toBe('rows.csv');
    wizard.importName = 'mine';
    walkTo(wizard, STEP.review);

    await expect(wizard.start()).resolves.toBe(3);
    expect(api.callsOf('importDataset')[0]).toMatchObject({ fileName: 'rows.csv', name: 'mine', fieldSize: 100 });
    expect(api.callsOf('startRun')[0]?.dataset).toEqual({ datasetId: 9 });
  });

  it('says why a run could not start, and stays on the review', async () => {
    const { wizard, api } = wizardWith();
    api.handle('startRun', () => {
      throw new Error('no worker could start');
    });
    walkTo(wizard, STEP.review);
    await expect(wizard.start()).resolves.toBeNull();
    expect(wizard.startError).toBe('no worker could start');
    expect(wizard.startedRunId).toBeNull();
    expect(wizard.currentStep).toBe('review');
  });

  it('refuses to start while a step is invalid', async () => {
    const { wizard, api } = wizardWith();
    api.handle('startRun', () => ({ runId: 1 }));
    wizard.hiddenSize = 0;
    await expect(wizard.start()).resolves.toBeNull();
    expect(api.callsOf('startRun')).toEqual([]);
  });

  it('a warm start takes the checkpoint\'s model sizes and asks for its weights', async () => {
    const { wizard, api } = wizardWith();
    api.handle('startRun', () => ({ runId: 5 }));
    wizard.useWarmStart({ checkpointId: 11, runId: 2, runName: 'seeded', step: 40, epoch: 2, model: { fieldSize: 100, hiddenSize: 16, spikingHiddenSize: 8 } });
    expect({ hiddenSize: wizard.hiddenSize, spikingHiddenSize: wizard.spikingHiddenSize }).toEqual({ hiddenSize: 16, spikingHiddenSize: 8 });
    wizard.resetOptimizer = true;
    walkTo(wizard, STEP.review);
    await wizard.start();
    expect(api.callsOf('startRun')[0]).toMatchObject({ initFrom: { checkpointId: 11 }, resetOptimizer: true, engine: { model: { hiddenSize: 16, spikingHiddenSize: 8 } } });

    wizard.clearWarmStart();
    expect(wizard.request('synthetic:8')).not.toHaveProperty('initFrom');
  });
});
