/// <reference types="@webgpu/types" />
import { existsSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseEngineConfig, type ModelConfig, type SpikeGradient } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import { initialParameters } from '../../src-main/engine/init';
import type { ForwardResult, LossParts } from '../../src-main/engine/kernel';
import { spikeLossHost } from '../../src-main/engine/lif-host';
import { buildLayout, view, type ParamLayout } from '../../src-main/engine/layout';
import { Rng } from '../../src-main/engine/random';
import { SimdKernel } from '../../src-main/engine/simd/simd-kernel';
import { SURROGATE_SLOPE, TfjsKernel } from '../../src-main/engine/tfjs-kernel';
import { createWebGpuKernel, type WebGpuKernel } from '../../src-main/engine/webgpu/webgpu-kernel';
import { nodeGpuDevice } from '../../src-main/engine/webgpu-node';
import { firstBitDifference, maxAbsDiff, normal, rel, relErr, useTestBackend } from '../helpers/engine';
import { expectQuadraError } from '../helpers/errors';
import { expectGradientsMatchFiniteDifferences, kinkFreeSpikingParameters } from '../helpers/smooth-spike';

/**
 * The fused WebGPU kernel against the fused simd kernel (itself checked against tfjs) from the same
 * weights, batch and dropout masks, and its own BPTT against finite differences. Runs on dawn.node
 * over SwiftShader (a software Vulkan driver) unless VK_ICD_FILENAMES names another driver, so the
 * models are small.
 */

const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER)) process.env.VK_ICD_FILENAMES = SWIFTSHADER;

const { device, reason } = await nodeGpuDevice().then(
  (found) => ({ device: found, reason: found ? '' : 'dawn.node found no GPU adapter' }),
  (error: unknown) => ({ device: null, reason: `dawn.node failed: ${String(error)}` }),
);

/** float32 unit roundoff. */
const U = 2 ** -24;
const MODES: readonly SpikeGradient[] = ['none', 'surrogate'];
const DROPOUT_SEED = 1234;
/** Small enough for a software GPU; widths multiples of 4 so the simd kernel runs them too. */
const SMALL = { fieldSize: 12, hiddenSize: 16, spikingHiddenSize: 8, spikingSteps: 3 } as const;
const CAPACITY = 16;

const live: Array<{ dispose(): void }> = [];
afterEach(() => {
  for (const kernel of live.splice(0)) kernel.dispose();
});
afterAll(() => device?.destroy());

/**
 * A simd and a webgpu kernel from the same initial parameters. θ is lowered to 0.15 so every layer
 * spikes on these small models (at θ = 1 nothing fires and the spiking backward would see zeros).
 */
async function pair(model: Partial<ModelConfig>, seed = 7) {
  const config = parseEngineConfig({ model: { ...SMALL, ...model } });
  const layout = buildLayout(config.model);
  const p0 = initialParameters(layout, seed);
  view(p0, layout.byName.get('spike_network.threshold')!)[0] = 0.15;
  const simd = new SimdKernel(config.model, layout, p0);
  live.push(simd);
  const gpu = await createWebGpuKernel(device!, config.model, layout, p0, { capacity: CAPACITY });
  live.push(gpu);
  return { config, layout, p0, simd, gpu, F: config.model.fieldSize };
}

function expectLossParity(label: string, mine: LossParts, simd: LossParts): void {
  for (const key of ['loss', 'reconstructionLoss', 'spikeLoss'] as const) {
    expect(rel(mine[key], simd[key]), `${label} ${key}: webgpu ${mine[key]}, simd ${simd[key]}`).toBeLessThan(1e-5);
  }
}

function expectForwardParity(label: string, mine: ForwardResult, simd: ForwardResult): void {
  expect(maxAbsDiff(mine.fieldOutput, simd.fieldOutput), `${label} fieldOutput`).toBeLessThan(1e-4);
  // The spiking recurrence is the same float32 arithmetic in the same order: identical 0/1 spikes.
  // (A GPU that fused a·b + c into an fma could flip a membrane within rounding of θ; SwiftShader does not.)
  expect(maxAbsDiff(mine.spikeRates, simd.spikeRates), `${label} spikeRates`).toBe(0);
  expect(simd.spikeRates.some((r) => r > 0) && simd.spikeRates.some((r) => r < 1), `${label}: some units fire, some do not`).toBe(true);
  expectLossParity(label, mine, simd);
}

function expectGradientParity(layout: ParamLayout, mine: Float32Array, simd: Float32Array, mode: SpikeGradient): void {
  for (const e of layout.entries) expect(relErr(view(mine, e), view(simd, e)), e.name).toBeLessThan(1e-3);
  if (mode === 'none') expect(mine.subarray(layout.fieldCount).every((g) => g === 0), 'spiking gradients are zero').toBe(true);
  else expect(maxAbsDiff(simd.subarray(layout.fieldCount), new Float32Array(layout.total - layout.fieldCount)), 'spiking gradients flow').toBeGreaterThan(0);
}

describe.skipIf(!device)(`webgpu kernel parity with simd${device ? '' : ` (skipped: ${reason})`}`, () => {
  it('forwards 7 rows (odd, below capacity), 16 (capacity) and 40 (in chunks) like simd', async () => {
    const { simd, gpu, F } = await pair({});
    const x = normal(3, 40 * F);
    for (const rows of [7, 16, 40]) {
      const batch = x.subarray(0, rows * F);
      expectForwardParity(`${rows} rows`, await gpu.forward(batch, rows), simd.forward(batch, rows));
    }
  });

  for (const mode of MODES) {
    for (const dropout of [0, 0.2]) {
      it(`computes simd's losses and every gradient ('${mode}', dropout ${dropout}, same masks)`, async () => {
        const { layout, simd, gpu, F } = await pair({ spikeGradient: mode, dropout });
        for (const rows of [5, CAPACITY]) {
          const x = normal(4 + rows, rows * F);
          expectLossParity(`${rows} rows`, await gpu.computeGradients(x, rows, DROPOUT_SEED), simd.computeGradients(x, rows, DROPOUT_SEED));
          expectGradientParity(layout, await gpu.readGradients(), simd.readGradients(), mode);
        }
        if (dropout > 0) {
          // The masks follow the seed: another seed, another loss (on both kernels alike).
          const x = normal(5, 5 * F);
          const other = await gpu.computeGradients(x, 5, DROPOUT_SEED + 1);
          expect(other.loss).not.toBe((await gpu.computeGradients(x, 5, DROPOUT_SEED)).loss);
          expectLossParity('seed + 1', other, simd.computeGradients(x, 5, DROPOUT_SEED + 1));
        }
      });
    }

    it(`takes simd's AdamW step from computed and from written gradients ('${mode}')`, async () => {
      const { layout, p0, simd, gpu, config, F } = await pair({ spikeGradient: mode });
      const spiking = (values: Float32Array) => values.subarray(layout.fieldCount);
      const x = normal(9, 6 * F);
      await gpu.computeGradients(x, 6, DROPOUT_SEED);
      simd.computeGradients(x, 6, DROPOUT_SEED);
      for (const step of [1, 2]) {
        if (step === 2) {
          const written = new Rng(10).fillNormal(new Float32Array(layout.total), 1e-2);
          await gpu.writeGradients(written);
          simd.writeGradients(written.slice());
          expect(firstBitDifference(await gpu.readGradients(), simd.readGradients()), 'written gradients read back').toBe(-1);
        }
        await gpu.applyGradients(config.optimizer);
        simd.applyGradients(config.optimizer);
        const params = await gpu.getParameters();
        expect(maxAbsDiff(params, simd.getParameters()), `parameters after step ${step}`).toBeLessThan(1e-5);
        const [mine, theirs] = [await gpu.getOptimizerState(), simd.getOptimizerState()];
        expect(maxAbsDiff(mine.m, theirs.m), 'Adam m').toBeLessThan(1e-5);
        expect(maxAbsDiff(mine.v, theirs.v), 'Adam v').toBeLessThan(1e-5);
        expect(relErr(mine.m, theirs.m), 'Adam m, relative').toBeLessThan(1e-3);
        expect([mine.fieldStep, mine.spikeStep]).toEqual([theirs.fieldStep, theirs.spikeStep]);
        if (mode === 'none') {
          // No gradient: AdamW leaves the spiking parameters and their moments alone (no weight decay either).
          expect(firstBitDifference(spiking(params), spiking(p0))).toBe(-1);
          expect(spiking(mine.m).every((v) => v === 0) && spiking(mine.v).every((v) => v === 0)).toBe(true);
        }
      }
      expect(await gpu.getOptimizerState()).toMatchObject({ fieldStep: 2, spikeStep: mode === 'none' ? 0 : 2 });
    });
  }

  // The simd kernel needs widths that are multiples of 4; this one takes any, so compare with tfjs.
  it.each(MODES)("matches the tfjs kernel at odd widths (F 7, H 10, S 5), 9 rows ('%s')", async (mode) => {
    await useTestBackend('wasm');
    const config = parseEngineConfig({ model: { fieldSize: 7, hiddenSize: 10, spikingHiddenSize: 5, spikingSteps: 3, dropout: 0.2, spikeGradient: mode } });
    const layout = buildLayout(config.model);
    const p0 = initialParameters(layout, 11);
    view(p0, layout.byName.get('spike_network.threshold')!)[0] = 0.15;
    const tfjs = new TfjsKernel('wasm', config.model, layout, p0);
    live.push(tfjs);
    const gpu = await createWebGpuKernel(device!, config.model, layout, p0, { capacity: CAPACITY });
    live.push(gpu);
    const x = normal(12, 9 * 7);
    expectLossParity('train', await gpu.computeGradients(x, 9, DROPOUT_SEED), tfjs.computeGradients(x, 9, DROPOUT_SEED));
    expectGradientParity(layout, await gpu.readGradients(), tfjs.readGradients(), mode);
    expectForwardParity('eval', await gpu.forward(x, 9), tfjs.forward(x, 9));
  });

  it("tracks simd's loss over 200 training steps (surrogate, dropout 0.1)", async () => {
    const { simd, gpu, config, F } = await pair({ spikeGradient: 'surrogate', dropout: 0.1 });
    const rows = 8;
    const data = normal(21, 4 * rows * F);
    const mine: number[] = [];
    const theirs: number[] = [];
    for (let step = 0; step < 200; step++) {
      const x = data.subarray((step % 4) * rows * F, ((step % 4) + 1) * rows * F);
      mine.push((await gpu.computeGradients(x, rows, step)).loss);
      theirs.push(simd.computeGradients(x, rows, step).loss);
      await gpu.applyGradients(config.optimizer);
      simd.applyGradients(config.optimizer);
      if (step === 19) expect(maxAbsDiff(await gpu.getParameters(), simd.getParameters()), 'parameters after 20 steps').toBeLessThan(1e-4);
    }
    // Float rounding apart, the curves are one: equal to 5 digits until a membrane within rounding of
    // θ fires on one kernel only (here after ~30 steps), then within 2% — the bound simd-training
    // holds simd to against tfjs over its 200 surrogate steps.
    for (let step = 0; step < 200; step++) expect(rel(mine[step]!, theirs[step]!), `step ${step}: ${mine[step]} vs ${theirs[step]}`).toBeLessThan(2e-2);
    expect(mine.slice(0, 20).every((loss, step) => rel(loss, theirs[step]!) < 1e-5), 'the first 20 steps agree to 1e-5').toBe(true);
    expect(theirs.slice(196).reduce((a, b) => a + b), 'the loss goes down').toBeLessThan(theirs.slice(0, 4).reduce((a, b) => a + b));
    expect(mine.slice(196).reduce((a, b) => a + b), 'on both').toBeLessThan(mine.slice(0, 4).reduce((a, b) => a + b));
  });
});

/**
 * The kernel's own BPTT against finite differences of its own loss, as simd-kernel.test.ts checks
 * the simd kernel (the regime, steps and tolerance: tests/helpers/smooth-spike.ts): the smooth
 * spike z/(1 + 25|z|) and spiking parameters that keep every membrane ≥ 0.04 from θ. One
 * difference: the kernel sums its loss in float32 on the GPU, too coarse for differences of ~1e-7,
 * so the loss differenced here is summed in float64 on the host from the kernel's forward outputs;
 * without dropout (whose masks the parity tests cover) that forward is the function
 * computeGradients differentiates.
 */
describe.skipIf(!device)(`finite differences of the webgpu gradients${device ? '' : ` (skipped: ${reason})`}`, () => {
  const MODEL = { fieldSize: 8, hiddenSize: 8, spikingHiddenSize: 8, spikingSteps: 4, dropout: 0, spikeGradient: 'surrogate' } as const;
  const ROWS = 5;
  const x = normal(7, ROWS * MODEL.fieldSize);

  it('computeGradients matches central differences of its loss in the 2 largest elements of every tensor (smooth spike)', async () => {
    expect(SURROGATE_SLOPE).toBe(25);
    const config = parseEngineConfig({ model: MODEL });
    const layout = buildLayout(config.model);
    const p0 = initialParameters(layout, 3);
    kinkFreeSpikingParameters(layout, p0, [0.05, 0.07]);
    const kernel = await createWebGpuKernel(device!, config.model, layout, p0, { capacity: ROWS });
    live.push(kernel);
    kernel.spikeForward = 'smooth';
    // The smooth forward agrees with simd's smooth forward (itself checked against float64).
    const simd = new SimdKernel(config.model, layout, p0);
    live.push(simd);
    simd.spikeForward = 'smooth';
    expect(maxAbsDiff((await kernel.forward(x, ROWS)).spikeRates, simd.forward(x, ROWS).spikeRates)).toBeLessThan(40 * U * 0.25);

    const lossAt = async (p: Float32Array): Promise<number> => {
      await kernel.setParameters(p);
      const { fieldOutput, spikeRates } = await kernel.forward(x, ROWS);
      let squares = 0;
      for (let i = 0; i < x.length; i++) squares += (fieldOutput[i]! - x[i]!) ** 2;
      return squares / x.length + config.model.spikeLossWeight * spikeLossHost(spikeRates, null).loss;
    };
    const loss0 = await lossAt(p0);
    const trained = await kernel.computeGradients(x, ROWS, DROPOUT_SEED);
    const grads = await kernel.readGradients();
    expect(rel(trained.loss, loss0), 'the training loss is the forward loss').toBeLessThan(1e-6);

    await expectGradientsMatchFiniteDifferences({ layout, p0, loss0, grads, lossAt, largest: 2, relativeTolerance: 2e-3, noiseUlps: [-16, -1, 1, 16] });
  });
});

describe.skipIf(!device)(`webgpu kernel state and errors${device ? '' : ` (skipped: ${reason})`}`, () => {
  it('round-trips parameters and optimizer state (what checkpoints need)', async () => {
    const { layout, gpu } = await pair({});
    const params = normal(30, layout.total);
    const state = { m: normal(31, layout.total), v: normal(32, layout.total).map(Math.abs), fieldStep: 17, spikeStep: 5 };
    await gpu.setParameters(params);
    await gpu.setOptimizerState(state);
    expect(firstBitDifference(await gpu.getParameters(), params)).toBe(-1);
    const back = await gpu.getOptimizerState();
    expect(firstBitDifference(back.m, state.m)).toBe(-1);
    expect(firstBitDifference(back.v, state.v)).toBe(-1);
    expect([back.fieldStep, back.spikeStep]).toEqual([17, 5]);
    expect(gpu.memory().bytes).toBeGreaterThan(layout.total * 16);
  });

  it('refuses a batch of the wrong length or over capacity, and reading or applying gradients when none are pending', async () => {
    const { gpu, p0, layout, config, F } = await pair({});
    for (const run of [() => gpu.computeGradients(normal(1, 2 * F + 1), 2, 0), () => gpu.forward(normal(1, 2 * F + 1), 2)]) {
      const error = await expectQuadraError(run, 'SHAPE_MISMATCH', 'batch', `[2, ${F}]`, `got ${2 * F + 1} values`);
      expect(error.details).toMatchObject({ expected: [2, F], length: 2 * F + 1 });
    }
    await expectQuadraError(() => gpu.computeGradients(normal(1, (CAPACITY + 1) * F), CAPACITY + 1, 0), 'SHAPE_MISMATCH', `${CAPACITY + 1} rows`, `capacity of ${CAPACITY}`);
    await expectQuadraError(() => gpu.forward(new Float32Array(0), 0), 'SHAPE_MISMATCH', 'batch', 'rows');
    await expectQuadraError(() => gpu.readGradients(), 'INTERNAL', 'no gradients');
    await expectQuadraError(() => gpu.applyGradients(config.optimizer), 'INTERNAL', 'no gradients');
    await expectQuadraError(() => gpu.writeGradients(new Float32Array(layout.total - 1)), 'SHAPE_MISMATCH', 'gradients', String(layout.total));
    await expectQuadraError(() => gpu.setParameters(new Float32Array(3)), 'SHAPE_MISMATCH', 'parameters');
    expect(firstBitDifference(await gpu.getParameters(), p0)).toBe(-1);
    gpu.dispose();
    await expectQuadraError(() => gpu.forward(normal(2, 3 * F), 3), 'INTERNAL', 'disposed');
  });

  it('rejects pending work with a named error when the device is destroyed mid-use, without hanging', async () => {
    const own = await nodeGpuDevice();
    expect(own).not.toBeNull();
    const config = parseEngineConfig({ model: SMALL });
    const layout = buildLayout(config.model);
    const kernel: WebGpuKernel = await createWebGpuKernel(own!, config.model, layout, initialParameters(layout, 1), { capacity: CAPACITY });
    const F = config.model.fieldSize;
    // Healthy first.
    await kernel.computeGradients(normal(1, 4 * F), 4, 0);
    const pending = kernel.computeGradients(normal(2, 4 * F), 4, 0);
    own!.destroy();
    const outcome = async (work: Promise<unknown>): Promise<unknown> => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve(new Error('no answer within 10 s')), 10_000)));
      try {
        return await Promise.race([work.then(() => 'resolved', (error: unknown) => error), timeout]);
      } finally {
        clearTimeout(timer);
      }
    };
    // Either the readback was cut off (a named error), or it finished before the loss: then the next call says so.
    let error = await outcome(pending);
    if (error === 'resolved') error = await outcome(kernel.forward(normal(3, 2 * F), 2));
    expect(error).toBeInstanceOf(QuadraError);
    expect((error as QuadraError).code, String(error)).toBe('BACKEND_UNAVAILABLE');
    expect((error as QuadraError).message).toMatch(/lost|device/);
    // Later calls fail at once with the device-lost error, naming the reason.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await expectQuadraError(() => kernel.getParameters(), 'BACKEND_UNAVAILABLE', 'lost', 'destroyed');
    kernel.dispose();
  });
});
