import type { BackendId, EngineConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import { syntheticRows } from '../data/synthetic';
import type { GpuSituation } from '../engine/backends';
import { TrainingRun } from '../training/coordinator';
import type { TransportFactory } from '../training/transport';
import { spread, type Spread } from './stats';

export interface ParallelBenchOptions {
  config: EngineConfig;
  workers: number;
  backend: BackendId;
  gpu: GpuSituation;
  warmup: number;
  iterations: number;
  repeats: number;
  transport?: TransportFactory;
  onProgress?: (done: number, total: number) => void;
}

export interface ParallelBenchResult {
  workers: number;
  trainSamplesPerSec: Spread;
  msPerStep: Spread;
  /** Eval forward of one global batch, timed on rank 0 (forward passes are not data-parallel). */
  forwardSamplesPerSec: Spread;
}

/**
 * Data-parallel throughput at a fixed global batch: one run of warm-up + repeats × iterations
 * steps on synthetic data; each repeat is timed from step to step (worker start-up excluded).
 */
export async function runParallelBench(o: ParallelBenchOptions): Promise<ParallelBenchResult> {
  if (o.config.batchSize < o.workers) {
    throw new QuadraError('INVALID_ARGUMENT', `batch size ${o.config.batchSize} is smaller than ${o.workers} workers`, { field: 'batchSize' });
  }
  const steps = o.warmup + o.repeats * o.iterations;
  const rows = o.config.batchSize * steps;
  const marks: number[] = [];
  let forwardMs: number[] = [];
  const run: TrainingRun = new TrainingRun(
    {
      config: o.config,
      mode: o.workers > 1 ? 'multi-cpu' : 'single',
      workers: o.workers,
      backend: o.backend,
      gpu: o.gpu,
      epochs: 1,
      data: syntheticRows(rows, o.config.model.fieldSize, o.config.seed, 1),
      trainRows: Uint32Array.from({ length: rows }, (_, i) => i),
      validationRows: new Uint32Array(0),
      lastBatch: 'drop',
      checkpointEveryEpochs: 1_000_000,
      ...(o.transport ? { transport: o.transport } : {}),
    },
    {
      stepEnd: (step) => {
        o.onProgress?.(step, steps);
        if (step >= o.warmup && (step - o.warmup) % o.iterations === 0) marks.push(performance.now());
      },
      beforeShutdown: async () => {
        forwardMs = await run.timeForward(o.config.batchSize, o.iterations, o.repeats);
      },
    },
  );
  const outcome = await run.run();
  if (outcome.status !== 'completed') {
    throw new QuadraError(outcome.error?.code ?? 'INTERNAL', `benchmark with ${o.workers} worker(s) ${outcome.status}: ${outcome.error?.message ?? ''}`);
  }
  const ms: number[] = [];
  for (let i = 1; i < marks.length; i++) ms.push((marks[i]! - marks[i - 1]!) / o.iterations);
  return {
    workers: o.workers,
    trainSamplesPerSec: spread(ms.map((m) => (o.config.batchSize * 1000) / m)),
    msPerStep: spread(ms),
    forwardSamplesPerSec: spread(forwardMs.map((m) => (o.config.batchSize * 1000) / m)),
  };
}
