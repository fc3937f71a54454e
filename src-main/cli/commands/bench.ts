import os from 'node:os';
import { runBench } from '../../bench/bench';
import type { CommandSpec, Parsed } from '../args';
import { BATCH_OPTION, engineFor, hardware, JSON_OPTION, MODEL_OPTIONS, modelConfigFrom, PRECISION_OPTION } from '../common';
import { formatRate, type Output } from '../output';
import { versions } from '../../engine/versions';
import { parseEngineConfig, type BackendId } from '../../../src-shared/engine-config';
import { MAX_WORKERS } from '../../../src-shared/run-config';
import { phaseLines, runParallelBench, type ParallelBenchResult } from '../../bench/parallel-bench';
import { selectBackend } from '../../engine/backends';
import { UsageError } from '../args';
import { BENCH_BACKEND_OPTION, benchPytorch } from './bench-pytorch';

export const benchSpec: CommandSpec = {
  name: 'bench',
  summary: 'Measure training and forward throughput: warm-up, then R repeats of N steps; reports median, min and max samples/s.',
  usage: 'quadra bench [--backend B|pytorch] [--batch-size N] [--iterations N] [--repeats R] [--warmup N] [--spike-gradient surrogate|none] [--workers 1,2] [model options] [--json]',
  options: {
    backend: BENCH_BACKEND_OPTION,
    'batch-size': { ...BATCH_OPTION, description: 'batch size (default 64)' },
    iterations: { kind: 'int', description: 'timed steps per repeat (default 50)', max: 1_000_000, placeholder: 'N' },
    repeats: { kind: 'int', description: 'timed repeats (default 5)', max: 1_000, placeholder: 'R' },
    warmup: { kind: 'int', min: 0, description: 'untimed warm-up steps (default 20)', max: 100_000, placeholder: 'N' },
    ...MODEL_OPTIONS,
    precision: PRECISION_OPTION,
    workers: { kind: 'string', description: 'data-parallel: comma-separated worker counts to compare at the same global batch, e.g. 1,2', placeholder: 'LIST' },
    profile: { kind: 'boolean', description: 'with --workers: where a step\'s time goes in each worker (ms per phase)' },
    'simd-memory': {
      kind: 'string',
      description: "with --workers, simd: 'shared' (default: the workers' kernels share one memory and update in chunks) or 'per-worker' (each its own memory, gradients exchanged through slots)",
      placeholder: 'shared|per-worker',
    },
    json: JSON_OPTION,
  },
};

export async function bench(parsed: Parsed, output: Output): Promise<number> {
  const { options } = parsed;
  if (options.backend === 'pytorch') return benchPytorch(parsed, output);
  // The webgpu kernel answers asynchronously, so it is always measured in a worker (one by default).
  if (options.workers !== undefined || options.backend === 'webgpu' || options.profile === true) return benchWorkers(parsed, output);
  const batchSize = (options['batch-size'] as number | undefined) ?? 64;
  const engine = await engineFor(options, { batchSize, model: modelConfigFrom(options), ...precisionFrom(options) }, output);
  const { spikeGradient, fieldSize } = engine.config.model;
  try {
    const progress = output.progress('bench');
    const result = runBench(engine, {
      iterations: (options.iterations as number | undefined) ?? 50,
      repeats: (options.repeats as number | undefined) ?? 5,
      warmup: (options.warmup as number | undefined) ?? 20,
      onProgress: (done, total) => progress.update(done, total),
    });
    progress.done();
    const summary = {
      backend: engine.backend.id,
      batchSize,
      fieldSize,
      spikeGradient,
      model: engine.config.model,
      iterations: result.iterations,
      repeats: result.repeats,
      trainSamplesPerSec: result.trainSamplesPerSec,
      forwardSamplesPerSec: result.forwardSamplesPerSec,
      msPerTrainStep: result.msPerTrainStep,
      msPerForward: result.msPerForward,
      cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
      versions: versions(),
    };
    if (output.json) {
      output.out(JSON.stringify(summary));
    } else {
      const s = (x: { median: number; min: number; max: number }) => `${formatRate(x.median)} (min ${Math.round(x.min)}, max ${Math.round(x.max)})`;
      output.out(`backend ${summary.backend}, batch ${batchSize}, field ${fieldSize}, spike gradient ${spikeGradient}, ${result.repeats} × ${result.iterations} steps`);
      output.out(`trainStep     ${s(result.trainSamplesPerSec)}  ${result.msPerTrainStep.median.toFixed(2)} ms/step`);
      output.out(`processBatch  ${s(result.forwardSamplesPerSec)}  ${result.msPerForward.median.toFixed(2)} ms/batch`);
    }
  } finally {
    engine.dispose();
  }
  return 0;
}

/** `--workers 1,2`: the worker counts to compare, each from 1 to MAX_WORKERS. */
export function parseWorkerCounts(list: string): number[] {
  return list.split(',').map((text) => {
    const n = Number(text.trim());
    if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS) throw new UsageError(`--workers must list whole numbers from 1 to ${MAX_WORKERS}, got '${text.trim()}'`);
    return n;
  });
}

/** `--workers 1,2`: data-parallel throughput at the same global batch, and the speedup over the first count. */
async function benchWorkers({ options }: Parsed, output: Output): Promise<number> {
  const counts = parseWorkerCounts(String(options.workers ?? '1'));
  const hw = await hardware();
  const gpu = { gpus: hw.gpus, nvidiaSmi: hw.nvidiaSmi };
  const config = parseEngineConfig({ batchSize: (options['batch-size'] as number | undefined) ?? 64, model: modelConfigFrom(options), ...precisionFrom(options) });
  const selection = await selectBackend((options.backend as BackendId | 'auto' | undefined) ?? 'auto', gpu, config.model);
  const results: ParallelBenchResult[] = [];
  for (const workers of counts) {
    const progress = output.progress(`bench ${workers} worker${workers > 1 ? 's' : ''}`);
    results.push(
      await runParallelBench({
        config,
        workers,
        backend: selection.id,
        gpu,
        warmup: (options.warmup as number | undefined) ?? 10,
        iterations: (options.iterations as number | undefined) ?? 30,
        repeats: (options.repeats as number | undefined) ?? 3,
        profile: options.profile === true,
        simdSharedMemory: simdMemoryFrom(options),
        onProgress: (done, total) => progress.update(done, total),
      }),
    );
    progress.done();
  }
  const base = results[0]!.trainSamplesPerSec.median;
  const summary = {
    backend: selection.id,
    precision: config.precision,
    batchSize: config.batchSize,
    spikeGradient: config.model.spikeGradient,
    results: results.map((r) => ({ ...r, speedup: r.trainSamplesPerSec.median / base })),
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    versions: versions(),
  };
  if (output.json) {
    output.out(JSON.stringify(summary));
  } else {
    output.out(`backend ${selection.id}, ${config.precision}, global batch ${config.batchSize}, spike gradient ${config.model.spikeGradient}`);
    for (const r of summary.results) {
      output.out(`${String(r.workers).padStart(2)} worker${r.workers > 1 ? 's' : ' '}  ${formatRate(r.trainSamplesPerSec.median)} (min ${Math.round(r.trainSamplesPerSec.min)}, max ${Math.round(r.trainSamplesPerSec.max)})  ×${r.speedup.toFixed(2)}`);
      for (const line of phaseLines(r)) output.out(line);
    }
  }
  return 0;
}

function precisionFrom(options: Parsed['options']): { precision?: 'fp32' | 'mixed' } {
  return options.precision === undefined ? {} : { precision: options.precision as 'fp32' | 'mixed' };
}

function simdMemoryFrom(options: Parsed['options']): boolean {
  const value = options['simd-memory'];
  if (value === undefined || value === 'shared') return true;
  if (value === 'per-worker') return false;
  throw new UsageError(`--simd-memory must be 'shared' or 'per-worker', got '${String(value)}'`);
}
