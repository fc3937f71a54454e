import { writeFileAtomic } from '../../engine/checkpoint';
import { getOptimalConfig } from '../../engine/auto-config';
import { parseSyntheticSpec, syntheticRows } from '../../data/synthetic';
import { trainSingleProcess } from '../../training/single-process';
import { UsageError, type CommandSpec, type Parsed } from '../args';
import { BACKEND_OPTION, BATCH_OPTION, engineFor, hardware, JSON_OPTION, MODEL_OPTIONS, modelConfigFrom, SEED_OPTION } from '../common';
import { formatRate, type Output } from '../output';

export const trainSpec: CommandSpec = {
  name: 'train',
  summary: 'Train in this process on synthetic data (seeded N(0, 0.1²) rows, as the reference did) and optionally save the checkpoint.',
  usage: 'quadra train --epochs N [--batch-size N] [--dataset synthetic:N] [--checkpoint-out FILE [--fp16]] [--backend B] [--spike-gradient M] [model options] [--seed N] [--json]',
  options: {
    epochs: { kind: 'int', description: 'passes over the dataset (required)', max: 1_000_000, placeholder: 'N' },
    'batch-size': BATCH_OPTION,
    dataset: { kind: 'string', description: 'synthetic:N — N rows of N(0, 0.1²) data (default synthetic:1024)', placeholder: 'SPEC' },
    'checkpoint-out': { kind: 'string', description: 'write the final checkpoint (.safetensors) here', placeholder: 'FILE' },
    fp16: { kind: 'boolean', description: 'write the checkpoint as F16 (weights and field state only: half the size, for use elsewhere)' },
    'learning-rate': { kind: 'number', min: 0, max: 10, description: 'AdamW learning rate (default 0.001)', placeholder: 'LR' },
    ...MODEL_OPTIONS,
    seed: SEED_OPTION,
    backend: BACKEND_OPTION,
    json: JSON_OPTION,
  },
};

export async function train({ options }: Parsed, output: Output): Promise<number> {
  if (options.epochs === undefined) {
    throw new UsageError('--epochs is required');
  }
  const epochs = options.epochs as number;
  if (options.fp16 && options['checkpoint-out'] === undefined) throw new UsageError('--fp16 needs --checkpoint-out');
  const rows = parseSyntheticSpec((options.dataset as string | undefined) ?? 'synthetic:1024');
  const hw = await hardware();
  const batchSize = (options['batch-size'] as number | undefined) ?? getOptimalConfig(hw).batchSize;
  const seed = (options.seed as number | undefined) ?? 42;
  const engine = await engineFor(
    options,
    {
      batchSize,
      seed,
      model: modelConfigFrom(options),
      optimizer: options['learning-rate'] === undefined ? {} : { learningRate: options['learning-rate'] as number },
    },
    output,
  );
  try {
    const data = syntheticRows(rows, engine.config.model.fieldSize, seed);
    const progress = output.progress('train');
    const summary = trainSingleProcess(engine, data, rows, {
      epochs,
      onStep: ({ epoch, stepInEpoch, stepsPerEpoch, loss }) =>
        progress.update((epoch - 1) * stepsPerEpoch + stepInEpoch, epochs * stepsPerEpoch, `epoch ${epoch}/${epochs} loss ${loss.toFixed(5)}`),
      onEpoch: (r) => {
        if (!output.json) output.note(`epoch ${r.epoch}/${r.epochs}  loss ${r.trainLoss.toFixed(6)}  ${formatRate(r.samplesPerSec)}`);
      },
    });
    progress.done();
    const checkpointPath = options['checkpoint-out'] as string | undefined;
    if (checkpointPath) await writeFileAtomic(checkpointPath, engine.toCheckpoint({ dtype: options.fp16 ? 'F16' : 'F32' }));
    const result = {
      backend: engine.backend.id,
      batchSize,
      rows,
      ...summary,
      checkpoint: checkpointPath ?? null,
    };
    if (output.json) {
      output.out(JSON.stringify(result));
    } else {
      output.out(`trained ${summary.epochs} epochs (${summary.steps} steps, ${summary.samples} samples) on ${result.backend} in ${summary.durationS.toFixed(1)} s`);
      output.out(`final loss ${summary.finalLoss.toFixed(6)}, best epoch loss ${summary.bestEpochLoss.toFixed(6)}, ${formatRate(summary.samplesPerSec)}`);
      if (checkpointPath) output.out(`checkpoint written to ${checkpointPath}`);
    }
  } finally {
    engine.dispose();
  }
  return 0;
}
