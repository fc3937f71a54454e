import type { BackendId, EngineConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import { syntheticRows } from '../data/synthetic';
import { STEP_PHASES, type StepPhase } from '../engine/kernel';
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
  /** Time each phase of a step in every worker (ParallelBenchResult.phases). */
  profile?: boolean;
  /** simd: false gives each worker's kernel its own memory (the slot exchange), to compare with the shared memory. */
  simdSharedMemory?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface ParallelBenchResult {
  workers: number;
  trainSamplesPerSec: Spread;
  msPerStep: Spread;
  /** Eval forward of one global batch, timed on rank 0 (forward passes are not data-parallel). */
  forwardSamplesPerSec: Spread;
  /** With `profile`: per rank, the mean ms per timed step in each phase (phases a worker never timed are absent). */
  phases?: Array<Partial<Record<StepPhase, number>>>;
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
  const phaseSums: Array<Partial<Record<StepPhase, number>>> = Array.from({ length: o.workers }, () => ({}));
  let profiledSteps = 0;
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
      ...(o.profile ? { profile: true } : {}),
      ...(o.simdSharedMemory === false ? { simdSharedMemory: false } : {}),
    },
    {
      stepEnd: (step) => {
        o.onProgress?.(step, steps);
        if (step >= o.warmup && (step - o.warmup) % o.iterations === 0) marks.push(performance.now());
      },
      stepPhases: (step, phases) => {
        // The steps timed above: after the warm-up, up to the last mark.
        if (step <= o.warmup + 1) return;
        profiledSteps += 1;
        phases.forEach((p, rank) => {
          for (const phase of STEP_PHASES) if (p?.[phase] !== undefined) phaseSums[rank]![phase] = (phaseSums[rank]![phase] ?? 0) + p[phase];
        });
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
    ...(o.profile
      ? { phases: phaseSums.map((sums) => Object.fromEntries(Object.entries(sums).map(([phase, ms]) => [phase, ms / Math.max(1, profiledSteps)]))) }
      : {}),
  };
}

/** The profile as text: one line per rank, the phases in step order with their mean ms per step. */
export function phaseLines(result: ParallelBenchResult): string[] {
  return (result.phases ?? []).map((phases, rank) => {
    const parts = STEP_PHASES.filter((phase) => phases[phase] !== undefined).map((phase) => `${phase} ${phases[phase]!.toFixed(3)}`);
    const total = Object.values(phases).reduce((sum, ms) => sum + ms, 0);
    return `   rank ${rank}: ${parts.join(', ')} (Σ ${total.toFixed(3)} ms/step)`;
  });
}
