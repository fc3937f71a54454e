import os from 'node:os';
import { runBench } from '../../bench/bench';
import type { CommandSpec, Parsed } from '../args';
import { BACKEND_OPTION, BATCH_OPTION, engineFor, JSON_OPTION, MODEL_OPTIONS, modelConfigFrom } from '../common';
import { formatRate, type Output } from '../output';
import { versions } from '../../engine/versions';

export const benchSpec: CommandSpec = {
  name: 'bench',
  summary: 'Measure training and forward throughput: warm-up, then R repeats of N steps; reports median, min and max samples/s.',
  usage: 'quadra bench [--backend B] [--batch-size N] [--iterations N] [--repeats R] [--warmup N] [--spike-gradient surrogate|none] [model options] [--json]',
  options: {
    backend: BACKEND_OPTION,
    'batch-size': { ...BATCH_OPTION, description: 'batch size (default 64)' },
    iterations: { kind: 'int', description: 'timed steps per repeat (default 50)', max: 1_000_000, placeholder: 'N' },
    repeats: { kind: 'int', description: 'timed repeats (default 5)', max: 1_000, placeholder: 'R' },
    warmup: { kind: 'int', min: 0, description: 'untimed warm-up steps (default 20)', max: 100_000, placeholder: 'N' },
    ...MODEL_OPTIONS,
    json: JSON_OPTION,
  },
};

export async function bench({ options }: Parsed, output: Output): Promise<number> {
  const batchSize = (options['batch-size'] as number | undefined) ?? 64;
  const engine = await engineFor(options, { batchSize, model: modelConfigFrom(options) }, output);
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
