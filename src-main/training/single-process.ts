import { QuadraError } from '../../src-shared/errors';
import type { OscillatorEngine } from '../engine/engine';
import { Rng } from '../engine/random';

export interface EpochReport {
  epoch: number;
  epochs: number;
  step: number;
  trainLoss: number;
  samplesPerSec: number;
}

export interface StepReport {
  epoch: number;
  stepInEpoch: number;
  stepsPerEpoch: number;
  loss: number;
}

export interface TrainSummary {
  epochs: number;
  steps: number;
  samples: number;
  finalLoss: number;
  bestEpochLoss: number;
  samplesPerSec: number;
  durationS: number;
  epochLosses: number[];
}

export interface SingleProcessOptions {
  epochs: number;
  /** Called after every step (cheap) and every epoch. */
  onStep?: (report: StepReport) => void;
  onEpoch?: (report: EpochReport) => void;
}

/**
 * One process, one engine: each epoch visits every row once in an order seeded by (seed, epoch);
 * the last partial batch is dropped, as PyTorch's DataLoader(drop_last=True) would.
 * (Multi-worker data-parallel training lives in the coordinator.)
 */
export function trainSingleProcess(engine: OscillatorEngine, data: Float32Array, rows: number, options: SingleProcessOptions): TrainSummary {
  const F = engine.config.model.fieldSize;
  const batchSize = engine.config.batchSize;
  if (data.length !== rows * F) {
    throw new QuadraError('SHAPE_MISMATCH', `dataset: expected ${rows} rows of width ${F}, got ${data.length} values`);
  }
  if (!Number.isInteger(options.epochs) || options.epochs < 1) {
    throw new QuadraError('INVALID_ARGUMENT', `epochs must be a whole number ≥ 1, got ${options.epochs}`, { field: 'epochs' });
  }
  const stepsPerEpoch = Math.floor(rows / batchSize);
  if (stepsPerEpoch < 1) {
    throw new QuadraError('INVALID_ARGUMENT', `dataset has ${rows} rows, fewer than one batch of ${batchSize}; lower --batch-size or add rows`, {
      field: 'batchSize',
    });
  }
  const batch = new Float32Array(batchSize * F);
  const order = new Uint32Array(rows);
  const epochLosses: number[] = [];
  let finalLoss = Number.NaN;
  const start = performance.now();
  for (let epoch = 1; epoch <= options.epochs; epoch++) {
    const epochStart = performance.now();
    permutation(order, engine.config.seed, epoch);
    let lossSum = 0;
    for (let s = 0; s < stepsPerEpoch; s++) {
      for (let i = 0; i < batchSize; i++) {
        const row = order[s * batchSize + i]!;
        batch.set(data.subarray(row * F, row * F + F), i * F);
      }
      const { loss } = engine.trainStep(batch, batchSize);
      lossSum += loss;
      finalLoss = loss;
      options.onStep?.({ epoch, stepInEpoch: s + 1, stepsPerEpoch, loss });
    }
    const trainLoss = lossSum / stepsPerEpoch;
    epochLosses.push(trainLoss);
    const seconds = (performance.now() - epochStart) / 1000;
    options.onEpoch?.({ epoch, epochs: options.epochs, step: engine.step, trainLoss, samplesPerSec: (stepsPerEpoch * batchSize) / seconds });
  }
  const durationS = (performance.now() - start) / 1000;
  const samples = options.epochs * stepsPerEpoch * batchSize;
  return {
    epochs: options.epochs,
    steps: options.epochs * stepsPerEpoch,
    samples,
    finalLoss,
    bestEpochLoss: Math.min(...epochLosses),
    samplesPerSec: samples / durationS,
    durationS,
    epochLosses,
  };
}

/** Fisher–Yates with an Rng seeded by (seed, epoch): the same order on every machine. */
export function permutation(order: Uint32Array, seed: number, epoch: number): Uint32Array {
  for (let i = 0; i < order.length; i++) order[i] = i;
  const rng = Rng.derive(seed, 0x5a3, epoch);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    const tmp = order[i]!;
    order[i] = order[j]!;
    order[j] = tmp;
  }
  return order;
}
