import os from 'node:os';
import { BENCHMARK_BACKENDS, PYTORCH } from '../../../src-shared/benchmarks';
import type { SpikeGradient } from '../../../src-shared/engine-config';
import { describeThreads, runPytorchBench } from '../../bench/pytorch-bench';
import { versions } from '../../engine/versions';
import { UsageError, type OptionSpec, type Parsed } from '../args';
import { BACKEND_OPTION } from '../common';
import { formatRate, type Output } from '../output';

/** `quadra bench --backend`: our backends, and pytorch (bench/pytorch-reference.py, the same model). */
export const BENCH_BACKEND_OPTION: OptionSpec = {
  ...BACKEND_OPTION,
  description: `${BACKEND_OPTION.description}, or ${PYTORCH} (the same model in PyTorch, bench/pytorch-reference.py, at its fastest thread count)`,
  choices: ['auto', ...BENCHMARK_BACKENDS],
};

/** The reference script fixes these sizes (hidden 256, spiking 128 × 10), so they cannot be asked for. */
const FIXED_BY_SCRIPT = ['hidden-size', 'spiking-hidden-size', 'spiking-steps'];

/** `quadra bench --backend pytorch`: the same measurement as ours, made by PyTorch in a Python child process. */
export async function benchPytorch({ options }: Parsed, output: Output): Promise<number> {
  if (options.workers !== undefined) {
    throw new UsageError('--workers does not apply to --backend pytorch: PyTorch runs in one process, at the fastest of the thread counts it tries');
  }
  if (options.profile === true) throw new UsageError('--profile does not apply to --backend pytorch (it times our workers\' phases)');
  const fixed = FIXED_BY_SCRIPT.filter((name) => options[name] !== undefined);
  if (fixed.length > 0) {
    throw new UsageError(`${fixed.map((n) => `--${n}`).join(', ')}: bench/pytorch-reference.py has the reference sizes fixed (hidden 256, spiking 128 × 10 steps)`);
  }
  const batchSize = (options['batch-size'] as number | undefined) ?? 64;
  const iterations = (options.iterations as number | undefined) ?? 50;
  const repeats = (options.repeats as number | undefined) ?? 5;
  const warmup = (options.warmup as number | undefined) ?? 20;
  if (!output.json) output.note(`backend ${PYTORCH}: finding a Python with torch, then trying thread counts before ${repeats} × ${iterations} steps…`);
  const r = await runPytorchBench({
    batchSize,
    spikeGradient: (options['spike-gradient'] as SpikeGradient | undefined) ?? 'surrogate',
    fieldSize: (options['field-size'] as number | undefined) ?? 100,
    iterations,
    repeats,
    warmup,
    precision: (options.precision as 'fp32' | 'mixed' | undefined) ?? 'fp32',
  });
  const device = r.device === 'cuda' ? `cuda (${r.gpu}, CUDA ${r.cuda})` : 'cpu';
  const summary = {
    backend: PYTORCH,
    batchSize: r.batchSize,
    fieldSize: r.fieldSize,
    spikeGradient: r.spikeGradient,
    precision: r.precision,
    iterations: r.iterations,
    repeats: r.repeats,
    warmup: r.warmup,
    trainSamplesPerSec: r.trainSamplesPerSec,
    forwardSamplesPerSec: r.forwardSamplesPerSec,
    msPerTrainStep: r.msPerTrainStep,
    msPerForward: r.msPerForward,
    pytorch: { python: r.python, torch: r.torch, blas: r.blas, threads: r.threads, threadTrials: r.threadTrials, device: r.device, gpu: r.gpu, cuda: r.cuda },
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    versions: versions(),
  };
  if (output.json) {
    output.out(JSON.stringify(summary));
    return 0;
  }
  const s = (x: { median: number; min: number; max: number }) => `${formatRate(x.median)} (min ${Math.round(x.min)}, max ${Math.round(x.max)})`;
  output.out(`backend ${PYTORCH} (torch ${r.torch}, ${device}, threads ${describeThreads(r)}, BLAS ${r.blas}), batch ${r.batchSize}, field ${r.fieldSize}, spike gradient ${r.spikeGradient}, ${r.repeats} × ${r.iterations} steps`);
  output.out(`trainStep     ${s(r.trainSamplesPerSec)}  ${r.msPerTrainStep.median.toFixed(2)} ms/step`);
  output.out(`processBatch  ${s(r.forwardSamplesPerSec)}  ${r.msPerForward.median.toFixed(2)} ms/batch`);
  if (r.threadTrials.length > 1) output.note(`pytorch threads tried: ${r.threadTrials.map((t) => `${t.threads} → ${formatRate(t.trainSamplesPerSec)}`).join(', ')} (short trials)`);
  output.note(`pytorch ran ${r.script} with ${r.python}`);
  return 0;
}
