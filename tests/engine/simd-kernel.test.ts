import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseEngineConfig, type ModelConfig, type SpikeGradient } from '../../src-shared/engine-config';
import { resetBackendSelectionForTests, selectBackend } from '../../src-main/engine/backends';
import { initialParameters } from '../../src-main/engine/init';
import type { ForwardResult, LossParts, SyncModelKernel } from '../../src-main/engine/kernel';
import { buildLayout, view, type ParamLayout } from '../../src-main/engine/layout';
import { Rng } from '../../src-main/engine/random';
import { SimdKernel } from '../../src-main/engine/simd/simd-kernel';
import { TfjsKernel } from '../../src-main/engine/tfjs-kernel';
import { createEngine, firstBitDifference, maxAbsDiff, normal, rel, relErr, useTestBackend } from '../helpers/engine';
import { expectQuadraError } from '../helpers/errors';
import { expectGradientsMatchFiniteDifferences, kinkFreeSpikingParameters, smoothSpikes64 } from '../helpers/smooth-spike';

/**
 * The fused wasm SIMD kernel against the reference TfjsKernel (tfjs 'wasm' backend) from the same
 * weights, batch and dropout masks, and its own BPTT against finite differences.
 * The 200-step training runs and the engine-level checks are in simd-training.test.ts.
 */

/** float32 unit roundoff. */
const U = 2 ** -24;
const NO_GPU = { gpus: [], nvidiaSmi: { available: false as const, reason: 'tests run without a GPU' } };
const MODES: readonly SpikeGradient[] = ['none', 'surrogate'];
const DROPOUT_SEED = 1234;

const live: SyncModelKernel[] = [];
afterEach(() => {
  for (const kernel of live.splice(0)) kernel.dispose();
});

/** The reference and the fused kernel, built from the same initial parameters. */
function pair(model: Partial<ModelConfig>, seed = 7) {
  const config = parseEngineConfig({ model });
  const layout = buildLayout(config.model);
  const p0 = initialParameters(layout, seed);
  const tfjs = new TfjsKernel('wasm', config.model, layout, p0);
  const simd = new SimdKernel(config.model, layout, p0);
  live.push(tfjs, simd);
  return { config, layout, p0, tfjs, simd, F: config.model.fieldSize };
}

function expectLossParity(label: string, simd: LossParts, tfjs: LossParts): void {
  for (const key of ['loss', 'reconstructionLoss', 'spikeLoss'] as const) {
    expect(rel(simd[key], tfjs[key]), `${label} ${key}: simd ${simd[key]}, tfjs ${tfjs[key]}`).toBeLessThan(1e-5);
  }
}

function expectGradientParity(layout: ParamLayout, simd: Float32Array, tfjs: Float32Array, mode: SpikeGradient): void {
  for (const e of layout.entries) expect(relErr(view(simd, e), view(tfjs, e)), e.name).toBeLessThan(1e-4);
  // 'none': the spiking parameters have no gradient at all.
  if (mode === 'none') expect(simd.subarray(layout.fieldCount).every((g) => g === 0), 'spiking gradients are zero').toBe(true);
}

function expectForwardParity(label: string, simd: ForwardResult, tfjs: ForwardResult): void {
  expect(maxAbsDiff(simd.fieldOutput, tfjs.fieldOutput), `${label} fieldOutput`).toBeLessThan(1e-5);
  // The spiking recurrence is the same arithmetic on both: 0/1 spikes, identical rates.
  expect(maxAbsDiff(simd.spikeRates, tfjs.spikeRates), `${label} spikeRates`).toBe(0);
  expectLossParity(label, simd, tfjs);
}

/** DESIGN.md §4's spike term in float64: unbiased variance over every rate + |mean − 0.5|. */
function spikeLoss64(rates: Float32Array): number {
  const mean = rates.reduce((s, r) => s + r, 0) / rates.length;
  const variance = rates.reduce((s, r) => s + (r - mean) ** 2, 0) / (rates.length - 1);
  return variance + Math.abs(mean - 0.5);
}

beforeAll(async () => {
  await useTestBackend('wasm');
});

/** Both kernels on `rows` rows of N(0, 1) from `seed`: losses and every gradient, then (unless told not to) the eval forward. */
function expectTrainingParity(model: Partial<ModelConfig>, seed: number, rows: number, { forward = true } = {}): void {
  const { layout, tfjs, simd, F } = pair(model);
  const x = normal(seed, rows * F);
  expectLossParity('train', simd.computeGradients(x, rows, DROPOUT_SEED), tfjs.computeGradients(x, rows, DROPOUT_SEED));
  expectGradientParity(layout, simd.readGradients(), tfjs.readGradients(), model.spikeGradient ?? 'surrogate');
  if (forward) expectForwardParity('eval', simd.forward(x, rows), tfjs.forward(x, rows));
}

describe('parity with the tfjs kernel', () => {
  it.each(MODES)("matches tfjs losses, every gradient and the eval forward at the default sizes, 64 rows ('%s')", (mode) => {
    expectTrainingParity({ spikeGradient: mode }, 3, 64);
  });

  it.each(MODES)("matches at widths ≡ 4 (mod 8), where the kernel's 4-wide tail paths run ('%s')", (mode) => {
    expectTrainingParity({ fieldSize: 12, hiddenSize: 20, spikingHiddenSize: 36, spikingSteps: 3, spikeGradient: mode }, 4, 7);
  });
});

describe('row counts and growth', () => {
  it.each(MODES)("matches tfjs gradients for an odd batch of 5 rows ('%s')", (mode) => {
    expectTrainingParity({ spikeGradient: mode }, 5, 5, { forward: false });
  });

  it('forwards 1, 5 and 300 rows like tfjs; 300 rows run in chunks on a 64-row kernel, yet the spike loss covers every row', () => {
    const { layout, p0, tfjs, simd, F } = pair({});
    const x = normal(6, 300 * F);
    const forwards = new Map<number, ForwardResult>();
    for (const rows of [1, 5, 300]) {
      const batch = x.subarray(0, rows * F);
      const mine = simd.forward(batch, rows);
      expectForwardParity(`${rows} rows`, mine, tfjs.forward(batch, rows));
      expect(rel(mine.spikeLoss, spikeLoss64(mine.spikeRates)), `${rows} rows: spike loss over all rates`).toBeLessThan(1e-12);
      forwards.set(rows, mine);
    }
    const chunked = forwards.get(300)!;
    const chunkedBytes = simd.memory().bytes;
    // Growing to 300 rows for training keeps the parameters where they were and gives tfjs's gradients.
    expectLossParity('train 300 rows', simd.computeGradients(x, 300, DROPOUT_SEED), tfjs.computeGradients(x, 300, DROPOUT_SEED));
    expectGradientParity(layout, simd.readGradients(), tfjs.readGradients(), 'surrogate');
    expect(firstBitDifference(simd.getParameters(), p0)).toBe(-1);
    expect(simd.memory().bytes, 'the forward did not size the kernel for all 300 rows').toBeGreaterThan(chunkedBytes);
    // Now sized for 320 rows, the same forward runs in one piece: row results are unchanged.
    const tensors = tf.memory().numTensors;
    const whole = simd.forward(x, 300);
    expect(firstBitDifference(whole.fieldOutput, chunked.fieldOutput)).toBe(-1);
    expect(firstBitDifference(whole.spikeRates, chunked.spikeRates)).toBe(-1);
    expect(rel(whole.loss, chunked.loss)).toBeLessThan(1e-12);
    // The fused kernel never touches tfjs.
    expect(tf.memory().numTensors - tensors).toBe(0);
    expect(simd.memory().tensors).toBe(0);
  });

  // Regression: the packed-B scratch once held too little for fc2/fc3's weights at small row
  // capacities, and packing them overwrote the input that fc1's weight gradient reads next.
  it('gives tfjs gradients whatever row capacity the engine sized it for (batchSize 8, hiddenSize 16)', async () => {
    const config = { model: { hiddenSize: 16, spikeGradient: 'surrogate' as const }, batchSize: 8 };
    const simd = await createEngine(config, 'simd');
    const tfjs = await createEngine(config, 'wasm');
    live.push(simd.kernel, tfjs.kernel);
    const x = normal(8, 8 * simd.config.model.fieldSize);
    expectLossParity('train', simd.computeGradients(x, 8), tfjs.computeGradients(x, 8));
    expectGradientParity(simd.layout, simd.kernel.readGradients(), tfjs.kernel.readGradients(), 'surrogate');
  });
});

/**
 * The kernel's own BPTT against finite differences of its own training loss, following the tfjs
 * kernel's check in gradients.test.ts (the regime, steps and tolerance: tests/helpers/smooth-spike.ts):
 * the Heaviside spike has no derivative, so `spikeForward = 'smooth'` swaps it for
 * s(z) = z/(1 + 25|z|), whose exact derivative is the surrogate; the spiking parameters are set so
 * every membrane sits ≥ 0.04 above θ, so no kink of s′ lies inside a perturbation (fc1 biases a
 * little higher than there: 8 inputs spread fc1(x) more than 6). Dropout stays on: a fixed dropout
 * seed fixes the masks, so the training loss is a plain function of the parameters.
 */
describe('finite differences of the simd gradients', () => {
  const MODEL = { fieldSize: 8, hiddenSize: 8, spikingHiddenSize: 8, spikingSteps: 4, dropout: 0.1, spikeGradient: 'surrogate' } as const;
  const ROWS = 5;
  const x = normal(7, ROWS * MODEL.fieldSize);

  it('computeGradients matches central differences of its training loss in the 3 largest elements of every tensor (smooth spike, fixed masks)', async () => {
    const config = parseEngineConfig({ model: MODEL });
    const layout = buildLayout(config.model);
    const p0 = initialParameters(layout, 3);
    kinkFreeSpikingParameters(layout, p0, [0.05, 0.07]);
    const kernel = new SimdKernel(config.model, layout, p0);
    live.push(kernel);
    kernel.spikeForward = 'smooth';

    // Precondition of the check, and the smooth forward itself against the float64 reference
    // (a rate comes through ≤ 40 float32 ops on values ≤ 0.25 with gains ≤ 1: |error| ≤ 40·u·0.25).
    const reference = smoothSpikes64(layout, p0, x, ROWS, MODEL);
    expect(reference.margin).toBeGreaterThan(0.04);
    const evalRates = kernel.forward(x, ROWS).spikeRates;
    for (let i = 0; i < reference.rates.length; i++) expect(Math.abs(evalRates[i]! - reference.rates[i]!), `rate ${i}`).toBeLessThan(40 * U * 0.25);

    const lossAt = (p: Float32Array): number => {
      kernel.setParameters(p);
      return kernel.computeGradients(x, ROWS, DROPOUT_SEED).loss;
    };
    const loss0 = kernel.computeGradients(x, ROWS, DROPOUT_SEED).loss;
    const grads = kernel.readGradients();
    // The masks really are on, and fixed by the seed.
    expect(kernel.computeGradients(x, ROWS, DROPOUT_SEED + 1).loss).not.toBe(loss0);
    expect(lossAt(p0)).toBe(loss0);

    const checked = await expectGradientsMatchFiniteDifferences({ layout, p0, loss0, grads, lossAt, largest: 3, relativeTolerance: 1e-3, noiseUlps: [-64, -16, -4, -1, 1, 4, 16, 64] });
    expect(checked).toContain('spike_network.threshold');
    expect(checked).toContain('spike_network.decay');
  });
});

describe('errors', () => {
  const SMALL = { fieldSize: 8, hiddenSize: 8, spikingHiddenSize: 8, spikingSteps: 4 };

  it('refuses a batch of the wrong length with SHAPE_MISMATCH naming the batch and its expected shape, changing nothing', async () => {
    const { simd, p0, F } = pair(SMALL);
    for (const run of [() => simd.computeGradients(normal(1, 2 * F + 1), 2, 0), () => simd.forward(normal(1, 2 * F + 1), 2)]) {
      const error = await expectQuadraError(run, 'SHAPE_MISMATCH', 'batch', `[2, ${F}]`, `got ${2 * F + 1} values`);
      expect(error.details).toMatchObject({ expected: [2, F], length: 2 * F + 1 });
    }
    await expectQuadraError(() => simd.forward(new Float32Array(0), 0), 'SHAPE_MISMATCH', 'batch', 'rows');
    // No parameters moved and no gradients are pending.
    expect(firstBitDifference(simd.getParameters(), p0)).toBe(-1);
    await expectQuadraError(() => simd.applyGradients(parseEngineConfig({}).optimizer), 'INTERNAL', 'no gradients');
  });

  it('refuses widths that are not multiples of 4 with BACKEND_UNAVAILABLE naming each one', async () => {
    for (const [model, names] of [
      [{ ...SMALL, fieldSize: 6 }, ['fieldSize (6)']],
      [{ ...SMALL, hiddenSize: 10, spikingHiddenSize: 5 }, ['hiddenSize (10)', 'spikingHiddenSize (5)']],
    ] as const) {
      const config = parseEngineConfig({ model });
      const layout = buildLayout(config.model);
      const error = await expectQuadraError(() => new SimdKernel(config.model, layout, initialParameters(layout, 1)), 'BACKEND_UNAVAILABLE', "backend 'simd'", ...names, 'multiple of 4');
      if (!names.some((n) => n.startsWith('fieldSize'))) expect(error.message).not.toContain('fieldSize');
    }
    // Asked for by name through the engine, the same model is refused with the same reason.
    await expectQuadraError(() => createEngine({ model: { ...SMALL, fieldSize: 6 } }, 'simd'), 'BACKEND_UNAVAILABLE', "backend 'simd'", 'fieldSize (6)');
  });

  it("'auto' skips simd for such a model, saying why, and starts the next backend", async () => {
    resetBackendSelectionForTests();
    try {
      const selection = await selectBackend('auto', NO_GPU, { fieldSize: 6, hiddenSize: 8, spikingHiddenSize: 8 });
      const simd = selection.report.find((r) => r.id === 'simd');
      expect(simd).toMatchObject({ available: false });
      expect(simd!.reason).toContain('fieldSize (6)');
      expect(simd!.reason).not.toContain('hiddenSize');
      expect(selection.id).not.toBe('simd');
      expect(selection.report.at(-1)).toMatchObject({ id: selection.id, available: true });
    } finally {
      resetBackendSelectionForTests();
      await useTestBackend('wasm');
    }
  });

  it('refuses gradients of the wrong length, and reading or applying gradients when none are pending', async () => {
    const { simd, layout, F } = pair(SMALL);
    const optimizer = parseEngineConfig({}).optimizer;
    await expectQuadraError(() => simd.readGradients(), 'INTERNAL', 'no gradients');
    await expectQuadraError(() => simd.applyGradients(optimizer), 'INTERNAL', 'no gradients');
    const error = await expectQuadraError(() => simd.writeGradients(new Float32Array(layout.total - 1)), 'SHAPE_MISMATCH', 'gradients', String(layout.total));
    expect(error.details).toMatchObject({ expected: layout.total, length: layout.total - 1 });
    // A refused write leaves nothing pending; applying consumes what was pending.
    await expectQuadraError(() => simd.applyGradients(optimizer), 'INTERNAL', 'no gradients');
    simd.computeGradients(normal(2, 3 * F), 3, 0);
    simd.applyGradients(optimizer);
    await expectQuadraError(() => simd.applyGradients(optimizer), 'INTERNAL', 'no gradients');
    simd.dispose();
    await expectQuadraError(() => simd.forward(normal(2, 3 * F), 3), 'INTERNAL', 'disposed');
  });
});

describe('writeGradients and applyGradients', () => {
  it.each(MODES)("reads back what was written and takes tfjs's AdamW steps from it ('%s')", (mode) => {
    const { layout, p0, tfjs, simd, config, F } = pair({ spikeGradient: mode });
    const spiking = (values: Float32Array) => values.subarray(layout.fieldCount);
    // Written gradients replace computed ones; in 'none' mode the spiking part reads as zero.
    simd.computeGradients(normal(9, 4 * F), 4, DROPOUT_SEED);
    for (const seed of [10, 11]) {
      const written = new Rng(seed).fillNormal(new Float32Array(layout.total), 1e-2);
      simd.writeGradients(written);
      tfjs.writeGradients(written.slice());
      const read = simd.readGradients();
      const expected = written.slice();
      if (mode === 'none') expected.fill(0, layout.fieldCount);
      expect(firstBitDifference(read, expected)).toBe(-1);
      expect(firstBitDifference(read, tfjs.readGradients())).toBe(-1);
      simd.applyGradients(config.optimizer);
      tfjs.applyGradients(config.optimizer);
      const params = simd.getParameters();
      expect(maxAbsDiff(params, tfjs.getParameters()), `parameters after step ${seed - 9}`).toBeLessThan(1e-6);
      const [mine, theirs] = [simd.getOptimizerState(), tfjs.getOptimizerState()];
      expect(relErr(mine.m, theirs.m), 'Adam m').toBeLessThan(1e-5);
      expect([mine.fieldStep, mine.spikeStep]).toEqual([theirs.fieldStep, theirs.spikeStep]);
      expect(maxAbsDiff(params.subarray(0, layout.fieldCount), p0.subarray(0, layout.fieldCount))).toBeGreaterThan(0);
      if (mode === 'none') {
        // No gradient: AdamW leaves the spiking parameters and their moments alone (no weight decay either).
        expect(firstBitDifference(spiking(params), spiking(p0))).toBe(-1);
        expect(spiking(mine.m).every((v) => v === 0) && spiking(mine.v).every((v) => v === 0)).toBe(true);
      }
    }
    expect(simd.getOptimizerState()).toMatchObject({ fieldStep: 2, spikeStep: mode === 'none' ? 0 : 2 });
  });

  // Regression: 1 − β was once formed in float32 inside the kernel (1 − f32(0.999) ≠ 0.001).
  it("updates Adam's moments with 1 − β taken in double, as the host AdamW and PyTorch do", () => {
    const { layout, tfjs, simd, config } = pair({ fieldSize: 8, hiddenSize: 8, spikingHiddenSize: 8, spikingSteps: 4 });
    const written = new Rng(12).fillNormal(new Float32Array(layout.total), 1e-2);
    simd.writeGradients(written);
    tfjs.writeGradients(written.slice());
    simd.applyGradients(config.optimizer);
    tfjs.applyGradients(config.optimizer);
    const [mine, theirs] = [simd.getOptimizerState(), tfjs.getOptimizerState()];
    // Both round (1 − β)·g (and ·g²) to float32 from the same inputs: a few ulps apart at most.
    expect(relErr(mine.m, theirs.m), 'Adam m').toBeLessThan(1e-6);
    expect(relErr(mine.v, theirs.v), 'Adam v').toBeLessThan(1e-6);
  });
});
