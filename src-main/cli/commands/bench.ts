import os from 'node:os';
import type { SpikeGradient } from '../../../src-shared/engine-config';
import { runBench } from '../../bench/bench';
import type { CommandSpec, Parsed } from '../args';
import { BACKEND_OPTION, BATCH_OPTION, engineFor, JSON_OPTION, SPIKE_GRADIENT_OPTION } from '../common';
import { formatRate, type Output } from '../output';
import { versions } from '../../engine/versions';

export const benchSpec: CommandSpec = {
  name: 'bench',
  summary: 'Measure training and forward throughput: warm-up, then R repeats of N steps; reports median, min and max samples/s.',
  usage: 'quadra bench [--backend B] [--batch-size N] [--iterations N] [--repeats R] [--spike-gradient surrogate|none] [--field-size N] [--json]',
  options: {
    backend: BACKEND_OPTION,
    'batch-size': { ...BATCH_OPTION, description: 'batch size (default 64)' },
    iterations: { kind: 'int', description: 'timed steps per repeat (default 50)', max: 1_000_000, placeholder: 'N' },
    repeats: { kind: 'int', description: 'timed repeats (default 5)', max: 1_000, placeholder: 'R' },
    warmup: { kind: 'int', min: 0, description: 'untimed warm-up steps (default 20)', max: 100_000, placeholder: 'N' },
    'spike-gradient': SPIKE_GRADIENT_OPTION,
    'field-size': { kind: 'int', description: 'field size (default 100)', max: 65_536, placeholder: 'N' },
    json: JSON_OPTION,
  },
};

export async function bench({ options }: Parsed, output: Output): Promise<number> {
  const spikeGradient = (options['spike-gradient'] as SpikeGradient | undefined) ?? 'surrogate';
  const batchSize = (options['batch-size'] as number | undefined) ?? 64;
  const fieldSize = (options['field-size'] as number | undefined) ?? 100;
  const engine = await engineFor(options, { batchSize, model: { spikeGradient, fieldSize } }, output);
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
