import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import type { OscillatorEngine } from '../../src-main/engine/engine';
import { MAX_PARAMETERS } from '../../src-main/engine/layout';
import { Rng } from '../../src-main/engine/random';
import type { TfjsKernel } from '../../src-main/engine/tfjs-kernel';
import { createEngine, expectSameState, firstBitDifference, SMALL_MODEL, TEST_BACKEND, thrownBy, useTestBackend } from '../helpers/engine';
import { expectQuadraError } from '../helpers/errors';

const F = SMALL_MODEL.fieldSize!;
const ROWS = 5;

function batch(seed: number, rows = ROWS): Float32Array {
  return new Rng(seed).fillNormal(new Float32Array(rows * F), 1);
}

const engines: OscillatorEngine[] = [];
async function small(config: Parameters<typeof createEngine>[0] = {}): Promise<OscillatorEngine> {
  const engine = await createEngine({ ...config, model: { ...SMALL_MODEL, ...config.model } });
  engines.push(engine);
  return engine;
}

afterAll(() => {
  for (const engine of engines) engine.dispose();
});

describe('config validation', () => {
  const SIZE_FIELDS = ['fieldSize', 'hiddenSize', 'spikingHiddenSize', 'spikingSteps'] as const;
  const BAD_SIZES: unknown[] = [0, -1, 1.5, 1e9, 'x', Number.NaN, Infinity, null];

  it.each(SIZE_FIELDS)('refuses bad model.%s values with INVALID_CONFIG naming the field', async (field) => {
    const tensors = tf.memory().numTensors;
    for (const bad of BAD_SIZES) {
      const error = await expectQuadraError(() => createEngine({ model: { ...SMALL_MODEL, [field]: bad as number } }), 'INVALID_CONFIG', `model.${field}`);
      expect(error.details?.fields, String(bad)).toEqual([`model.${field}`]);
    }
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it('names every bad field at once, including batchSize and rates', async () => {
    const error = await expectQuadraError(
      () => createEngine({ model: { ...SMALL_MODEL, hiddenSize: 0, dropout: 1 }, batchSize: -3, optimizer: { learningRate: Number.NaN } }),
      'INVALID_CONFIG',
      'model.hiddenSize',
      'model.dropout',
      'batchSize',
      'optimizer.learningRate',
    );
    expect(error.details?.fields).toEqual(expect.arrayContaining(['model.hiddenSize', 'model.dropout', 'batchSize', 'optimizer.learningRate']));
  });

  it.each(['fp16', 'mixed'] as const)("refuses precision '%s' as UNSUPPORTED: tfjs computes in float32 only", async (precision) => {
    const error = await expectQuadraError(() => createEngine({ model: SMALL_MODEL, precision }), 'UNSUPPORTED', `'${precision}'`, 'float32 only');
    expect(error.details).toMatchObject({ field: 'precision' });
  });

  it('refuses a model too large for a workstation before allocating anything', async () => {
    const tensors = tf.memory().numTensors;
    const error = await expectQuadraError(() => createEngine({ model: { fieldSize: 65_536, hiddenSize: 16_384 } }), 'INVALID_CONFIG', 'model too large', '65536', '16384');
    expect(error.details?.parameters).toBeGreaterThan(MAX_PARAMETERS);
    expect(tf.memory().numTensors).toBe(tensors);
  });
});

describe('batch validation', () => {
  it('refuses a batch of the wrong length with SHAPE_MISMATCH naming the expected shape, changing nothing', async () => {
    const engine = await small();
    engine.trainStep(batch(1));
    engine.processBatch(batch(1));
    const state = engine.getState();
    const tensors = tf.memory().numTensors;
    await expectQuadraError(() => engine.trainStep(new Float32Array(F * 2 + 1)), 'SHAPE_MISMATCH', `[rows, ${F}]`, String(F * 2 + 1));
    await expectQuadraError(() => engine.processBatch(new Float32Array(0)), 'SHAPE_MISMATCH', `[rows, ${F}]`, 'got 0');
    await expectQuadraError(() => engine.computeGradients(new Float32Array(F - 1)), 'SHAPE_MISMATCH', `[rows, ${F}]`);
    await expectQuadraError(() => engine.updateField(new Float32Array(F + 2)), 'SHAPE_MISMATCH', `[rows, ${F}]`);
    // An explicit row count that disagrees with the data.
    const error = await expectQuadraError(() => engine.trainStep(batch(1, 2), 3), 'SHAPE_MISMATCH', `[3, ${F}]`, `${2 * F} values`);
    expect(error.details).toMatchObject({ expected: [3, F], length: 2 * F });
    await expectQuadraError(() => engine.processBatch(batch(1, 2), 0), 'SHAPE_MISMATCH', 'rows');
    expect(tf.memory().numTensors).toBe(tensors);
    expectSameState(engine.getState(), state);
  });
});

describe('tensor memory', () => {
  it('leaks nothing over 20 trainSteps and 20 processBatch calls, and dispose frees everything', async () => {
    const start = tf.memory().numTensors;
    const engine = await createEngine({ model: SMALL_MODEL });
    const x = batch(2);
    // One warm-up call of each kind fills the kernel's caches (e.g. Wᵀ); after that the count is flat.
    engine.trainStep(x);
    const afterTrain = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) engine.trainStep(x);
    expect(tf.memory().numTensors).toBe(afterTrain);
    engine.processBatch(x);
    const afterEval = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) engine.processBatch(x);
    expect(tf.memory().numTensors).toBe(afterEval);
    engine.updateField(x);
    engine.getState();
    engine.setState(engine.getState());
    engine.computeGradients(x);
    engine.kernel.writeGradients(engine.kernel.readGradients());
    engine.applyGradients();
    engine.processBatch(x);
    expect(tf.memory().numTensors).toBe(afterEval);
    expect(engine.memoryStats()).toMatchObject({ backend: TEST_BACKEND, tensors: afterEval });
    engine.dispose();
    expect(tf.memory().numTensors).toBe(start);
    await expectQuadraError(() => engine.processBatch(x), 'INTERNAL', 'disposed');
  });

  it('an error thrown inside a training step propagates, frees the step\'s tensors, and training continues', async () => {
    const engine = await small();
    const kernel = engine.kernel as TfjsKernel;
    const x = batch(3);
    engine.trainStep(x);
    engine.processBatch(x); // holds the Wᵀ cache that the failing step will use
    const state = engine.getState();
    const tensors = tf.memory().numTensors;
    kernel.testHooks.insideStep = () => {
      throw new Error('boom');
    };
    const error = await thrownBy(() => engine.trainStep(x));
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe('boom');
    expect(tf.memory().numTensors).toBe(tensors);
    expectSameState(engine.getState(), state);
    kernel.testHooks.insideStep = undefined;
    const result = engine.trainStep(x);
    expect(Number.isFinite(result.loss)).toBe(true);
    expect(result.step).toBe(state.step + 1);
    engine.processBatch(x);
    expect(tf.memory().numTensors).toBe(tensors);
  });
});

describe('determinism', () => {
  async function losses(seed: number, steps = 10): Promise<number[]> {
    const engine = await createEngine({ model: { ...SMALL_MODEL, dropout: 0.1 }, seed });
    const x = batch(4);
    const out: number[] = [];
    for (let i = 0; i < steps; i++) out.push(engine.trainStep(x).loss);
    engine.dispose();
    return out;
  }

  it('gives identical losses for the same seed (dropout on) and different ones for another seed', async () => {
    const a = await losses(7);
    const b = await losses(7);
    const c = await losses(8);
    expect(b).toEqual(a);
    for (let i = 0; i < a.length; i++) expect(c[i], `step ${i + 1}`).not.toBe(a[i]);
  });

  it('applies dropout in training only; masks follow (seed, step), so a restored state replays them', async () => {
    const engine = await small({ model: { dropout: 0.5 } });
    const x = batch(5);
    const evalLoss = engine.processBatch(x).loss;
    expect(engine.processBatch(x).loss).toBe(evalLoss);
    // Same parameters, dropout masks drawn from the step number: two different steps' masks differ.
    const first = engine.computeGradients(x).loss;
    expect(first).not.toBe(evalLoss);
    engine.applyGradients();
    const state = engine.getState();
    const again = await small({ model: { dropout: 0.5 } });
    again.setState(state);
    expect(again.computeGradients(x).loss).toBe(engine.computeGradients(x).loss);
  });
});

describe('training', () => {
  const data = batch(6, 64);

  it.each(['surrogate', 'none'] as const)("lowers the loss over 200 full-batch steps ('%s')", async (spikeGradient) => {
    const engine = await small({ model: { spikeGradient } });
    const initial = engine.getState().parameters;
    const losses: number[] = [];
    for (let i = 0; i < 200; i++) losses.push(engine.trainStep(data).loss);
    const mean = (values: number[]) => values.reduce((s, v) => s + v, 0) / values.length;
    // The PyTorch reference goes 1.27 → 0.33 in 200 steps at these sizes; dropout adds noise of a few %.
    expect(mean(losses.slice(-5))).toBeLessThan(0.6 * mean(losses.slice(0, 5)));

    const state = engine.getState();
    const field = (p: Float32Array) => p.subarray(0, engine.layout.fieldCount);
    const spiking = (p: Float32Array) => p.subarray(engine.layout.fieldCount);
    expect(firstBitDifference(field(state.parameters), field(initial))).not.toBe(-1);
    expect(state.optimizer.fieldStep).toBe(200);
    const threshold = engine.layout.byName.get('spike_network.threshold')!.offset;
    const decay = engine.layout.byName.get('spike_network.decay')!.offset;
    expect(initial[threshold]).toBe(1);
    expect(initial[decay]).toBe(Math.fround(0.95));
    if (spikeGradient === 'surrogate') {
      expect(state.parameters[threshold]).not.toBe(initial[threshold]);
      expect(state.parameters[decay]).not.toBe(initial[decay]);
      expect(state.optimizer.spikeStep).toBe(200);
    } else {
      // No gradient: AdamW skips the spiking parameters entirely (no weight decay either), like PyTorch.
      expect(firstBitDifference(spiking(state.parameters), spiking(initial)), 'spiking parameters').toBe(-1);
      expect(spiking(state.optimizer.m).every((v) => v === 0)).toBe(true);
      expect(spiking(state.optimizer.v).every((v) => v === 0)).toBe(true);
      expect(state.optimizer.spikeStep).toBe(0);
    }
  });

  it('stops on a non-finite loss with DIVERGED, leaving parameters and optimiser state untouched', async () => {
    const engine = await small();
    const x = batch(7);
    engine.trainStep(x);
    engine.trainStep(x);
    const tensors = tf.memory().numTensors;
    const state = engine.getState();
    const poisoned = Float32Array.from(x);
    poisoned[3] = Number.NaN;
    const error = await expectQuadraError(() => engine.trainStep(poisoned), 'DIVERGED', 'step 3');
    expect(error.details).toMatchObject({ step: 3 });
    expect(Number.isNaN(error.details?.reconstructionLoss)).toBe(true);
    expectSameState(engine.getState(), state);
    poisoned[3] = Infinity;
    await expectQuadraError(() => engine.trainStep(poisoned), 'DIVERGED');
    expectSameState(engine.getState(), state);
    // Training goes on from the same place, and the failed steps left no tensors behind.
    expect(engine.trainStep(x).step).toBe(3);
    expect(tf.memory().numTensors).toBe(tensors);
  });
});

describe('updateField', () => {
  function expected(field: Float32Array, fieldOutput: Float32Array, rows: number, rate: number): Float32Array {
    // field ← field + rate·(mean over rows of f(x) − field), in float64, rounded once to float32.
    const out = new Float32Array(F);
    for (let j = 0; j < F; j++) {
      let mean = 0;
      for (let i = 0; i < rows; i++) mean += fieldOutput[i * F + j]!;
      mean /= rows;
      out[j] = field[j]! + rate * (mean - field[j]!);
    }
    return out;
  }

  it('moves the field state toward the batch-mean eval output by the given rate', async () => {
    const engine = await small({ fieldUpdateRate: 0.25 });
    const x = batch(8);
    engine.trainStep(x);
    const params = engine.getState().parameters;
    const fieldOutput = engine.processBatch(x).fieldOutput;
    for (const rate of [undefined, 0.01, 0.5, 1]) {
      const before = engine.fieldState;
      const result = engine.updateField(x, ROWS, rate);
      // The engine computes in float64 and rounds once, as `expected` does: the results agree bit for bit
      // unless a float64 sum lands within 1e-16 of a float32 rounding boundary (odds ~1e-8 per value).
      expect(Array.from(result), `rate ${rate}`).toEqual(Array.from(expected(before, fieldOutput, ROWS, rate ?? 0.25)));
      expect(Array.from(engine.fieldState)).toEqual(Array.from(result));
      for (let j = 0; j < F; j++) {
        let mean = 0;
        for (let i = 0; i < ROWS; i++) mean += fieldOutput[i * F + j]! / ROWS;
        expect(Math.abs(result[j]! - mean)).toBeLessThanOrEqual(Math.abs(before[j]! - mean));
      }
    }
    const before = engine.fieldState;
    expect(firstBitDifference(engine.updateField(x, ROWS, 0), before)).toBe(-1);
    // The returned array is a copy; the parameters and step do not move.
    engine.updateField(x).fill(123);
    expect(engine.fieldState[0]).not.toBe(123);
    expect(firstBitDifference(engine.getState().parameters, params)).toBe(-1);
    expect(engine.step).toBe(1);
  });
});

describe('setState', () => {
  it('refuses a state of the wrong size and leaves the engine as it was', async () => {
    const engine = await small();
    const x = batch(9);
    engine.trainStep(x);
    const state = engine.getState();
    const other = await small({ seed: 99 });
    other.trainStep(batch(10));
    const good = other.getState();
    await expectQuadraError(() => engine.setState({ ...good, fieldState: new Float32Array(F + 1) }), 'SHAPE_MISMATCH', 'field_state');
    expectSameState(engine.getState(), state);
    await expectQuadraError(() => engine.setState({ ...good, optimizer: { ...good.optimizer, m: new Float32Array(3) } }), 'SHAPE_MISMATCH', 'optimizer.m');
    expectSameState(engine.getState(), state);
  });
});

describe('benchmark', () => {
  it('times 5 steps at the configured batch size', async () => {
    const engine = await small({ batchSize: 12 });
    const result = engine.benchmark(5);
    expect(result).toMatchObject({ backend: TEST_BACKEND, iterations: 5, batchSize: 12 });
    expect(result.samplesPerSec).toBeGreaterThan(0);
    expect(Number.isFinite(result.samplesPerSec)).toBe(true);
    expect(result.samplesPerSec).toBeCloseTo((5 * 12) / result.totalTimeS, 6);
    expect(result.msPerStep).toBeCloseTo((result.totalTimeS * 1000) / 5, 9);
    expect(engine.step).toBe(5);
    await expectQuadraError(() => engine.benchmark(0), 'INVALID_ARGUMENT', 'iterations');
    await expectQuadraError(() => engine.benchmark(1.5), 'INVALID_ARGUMENT', 'iterations');
  });
});

/**
 * The cpu backend (the last resort of the chain) stores the typed array a tensor is made from
 * without copying it, and tfjs-node copies it only on first use; wasm copies at once. Host buffers
 * handed to tf.tensor must therefore not be reused or exposed while the tensor lives.
 */
describe('same results on the cpu backend', () => {
  afterAll(async () => {
    await useTestBackend();
  });

  async function trainLosses(backend: 'cpu' | typeof TEST_BACKEND, dropout: number): Promise<number[]> {
    const engine = await createEngine({ model: { ...SMALL_MODEL, dropout }, seed: 5 }, backend);
    const x = batch(11);
    const out: number[] = [];
    for (let i = 0; i < 3; i++) out.push(engine.trainStep(x).loss);
    engine.dispose();
    return out;
  }

  it.each([0, 0.1])('trains like the test backend (dropout %s): masks and arithmetic agree to float32 rounding', async (dropout) => {
    const reference = await trainLosses(TEST_BACKEND, dropout);
    const cpu = await trainLosses('cpu', dropout);
    // Backends differ only in op-level rounding (XNNPACK vs JS loops): a few ulp of the ~1.6 loss per
    // step; the Adam steps taken so far keep that within ~1e-6 relative. A different dropout mask
    // moves the loss by ~1e-2.
    for (let i = 0; i < reference.length; i++) expect(Math.abs(cpu[i]! - reference[i]!), `step ${i + 1}`).toBeLessThan(1e-6 * reference[i]!);
  });

  it('copies the parameters it is given (a caller may reuse its array)', async () => {
    const engine = await createEngine({ model: SMALL_MODEL }, 'cpu');
    try {
      const x = batch(12);
      const parameters = engine.getState().parameters;
      engine.setState({ parameters });
      const before = engine.processBatch(x);
      parameters.fill(0);
      const after = engine.processBatch(x);
      expect(after.loss).toBe(before.loss);
      expect(firstBitDifference(after.fieldOutput, before.fieldOutput)).toBe(-1);
    } finally {
      engine.dispose();
    }
  });
});
