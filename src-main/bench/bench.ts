import type { OscillatorEngine } from '../engine/engine';
import { Rng } from '../engine/random';
import { spread, type Spread } from './stats';

export interface BenchOptions {
  /** Timed steps per repeat. */
  iterations: number;
  repeats: number;
  /** Untimed steps before the first repeat (XNNPACK packing, JIT, allocator warm-up). */
  warmup: number;
  onProgress?: (done: number, total: number) => void;
}

export interface BenchResult {
  batchSize: number;
  iterations: number;
  repeats: number;
  trainSamplesPerSec: Spread;
  forwardSamplesPerSec: Spread;
  msPerTrainStep: Spread;
  msPerForward: Spread;
}

/**
 * Throughput of trainStep and processBatch on N(0,1) data: warm-up, then `repeats` timed runs of
 * `iterations` steps each; median, min and max over the repeats.
 */
export function runBench(engine: OscillatorEngine, options: BenchOptions): BenchResult {
  const batchSize = engine.config.batchSize;
  const batch = new Rng(engine.config.seed + 7).fillNormal(new Float32Array(batchSize * engine.config.model.fieldSize), 1);
  const total = options.warmup + options.repeats * options.iterations * 2;
  let done = 0;
  const tick = () => options.onProgress?.(++done, total);
  for (let i = 0; i < options.warmup; i++) {
    engine.processBatch(batch, batchSize);
    engine.trainStep(batch, batchSize);
    tick();
  }
  const train: number[] = [];
  const forward: number[] = [];
  for (let r = 0; r < options.repeats; r++) {
    let start = performance.now();
    for (let i = 0; i < options.iterations; i++) {
      engine.trainStep(batch, batchSize);
      tick();
    }
    train.push((performance.now() - start) / options.iterations);
    start = performance.now();
    for (let i = 0; i < options.iterations; i++) {
      engine.processBatch(batch, batchSize);
      tick();
    }
    forward.push((performance.now() - start) / options.iterations);
  }
  const perSec = (ms: number[]) => spread(ms.map((m) => (batchSize * 1000) / m));
  return {
    batchSize,
    iterations: options.iterations,
    repeats: options.repeats,
    trainSamplesPerSec: perSec(train),
    forwardSamplesPerSec: perSec(forward),
    msPerTrainStep: spread(train),
    msPerForward: spread(forward),
  };
}
