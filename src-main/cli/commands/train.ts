import { RUN_MODES, type RunMode } from '../../../src-shared/records';
import { DEFAULT_VALIDATION_FRACTION, MAX_VALIDATION_FRACTION, MAX_WORKERS } from '../../../src-shared/run-config';
import { toF16Checkpoint, writeFileAtomic } from '../../engine/checkpoint';
import { getOptimalConfig } from '../../engine/auto-config';
import { resumeTraining, startTraining, type ServiceContext, type TrainingResult } from '../../services/training-service';
import type { TrainingRun } from '../../training/coordinator';
import { UsageError, type CommandSpec, type Parsed } from '../args';
import { BACKEND_OPTION, BATCH_OPTION, DB_OPTION, hardware, JSON_OPTION, MODEL_OPTIONS, modelConfigFrom, openCliStore, PRECISION_OPTION, SEED_OPTION } from '../common';
import { formatRate, type Output } from '../output';

export const trainSpec: CommandSpec = {
  name: 'train',
  summary: 'Train a model — in one worker process, or data-parallel on every core (multi-cpu) or GPU (multi-gpu) — recording the run, its metrics and checkpoints in the database.',
  usage:
    'quadra train --epochs N [--mode single|multi-cpu|multi-gpu] [--workers N] [--batch-size N] [--dataset synthetic:N|FILE|NAME] [--init-from CHECKPOINT_ID|FILE [--reset-optimizer]] [--db FILE] [--checkpoint-out FILE [--fp16]] [model options] [--json]',
  options: {
    epochs: { kind: 'int', description: 'passes over the training split (required)', max: 1_000_000, placeholder: 'N' },
    mode: { kind: 'string', choices: RUN_MODES, description: 'single (default), multi-cpu or multi-gpu', placeholder: 'MODE' },
    workers: { kind: 'int', description: 'worker processes (default: one per physical core / GPU; 1 in single mode)', max: MAX_WORKERS, placeholder: 'N' },
    'batch-size': { ...BATCH_OPTION, description: 'global batch size, split across the workers (default: the recommended one)' },
    dataset: { kind: 'string', description: 'synthetic:N (N seeded N(0, 0.1²) rows; default synthetic:1024), a .npy/.csv/.txt file, or a registered dataset name', placeholder: 'SPEC' },
    name: { kind: 'string', description: 'a name for the run', placeholder: 'TEXT' },
    'validation-fraction': { kind: 'number', min: 0, max: MAX_VALIDATION_FRACTION, description: `share of rows held out for validation (default ${DEFAULT_VALIDATION_FRACTION})`, placeholder: 'X' },
    'last-batch': { kind: 'string', choices: ['drop', 'wrap'], description: "a last partial batch: 'drop' it (default) or 'wrap' around to fill it", placeholder: 'HOW' },
    'checkpoint-every': { kind: 'int', description: 'save a checkpoint every N epochs, and at the end (default 5)', max: 1_000_000, placeholder: 'N' },
    'keep-last': { kind: 'int', description: 'checkpoints kept besides the best one (default 3)', max: 10_000, placeholder: 'K' },
    'init-from': {
      kind: 'string',
      description: "warm start: a stored checkpoint's id, or a .safetensors/.pth file; the model's sizes come from it, and its optimizer moments and step count when it has them",
      placeholder: 'ID|FILE',
    },
    'reset-optimizer': { kind: 'boolean', description: 'with --init-from: take the weights only (fresh AdamW moments, step 0)' },
    'checkpoint-out': { kind: 'string', description: 'also write the final checkpoint to this .safetensors file', placeholder: 'FILE' },
    fp16: { kind: 'boolean', description: 'write --checkpoint-out as F16 (weights and field state only: half the size)' },
    'learning-rate': { kind: 'number', min: 0, max: 10, description: 'AdamW learning rate (default 0.001)', placeholder: 'LR' },
    ...MODEL_OPTIONS,
    seed: SEED_OPTION,
    precision: PRECISION_OPTION,
    backend: BACKEND_OPTION,
    db: DB_OPTION,
    json: JSON_OPTION,
  },
};

export const resumeSpec: CommandSpec = {
  name: 'resume',
  summary: "Continue a run from its latest checkpoint (or --from one of them): step count, optimizer state, data order and the loss curve pick up where they stopped.",
  usage: 'quadra resume RUN_ID [--from CHECKPOINT_ID] [--db FILE] [--json]',
  options: {
    from: { kind: 'int', description: 'the checkpoint to resume from (default: the run\'s latest)', placeholder: 'ID' },
    db: DB_OPTION,
    json: JSON_OPTION,
  },
  positionals: [{ name: 'RUN_ID', required: true }],
};

export async function train({ options }: Parsed, output: Output): Promise<number> {
  if (options.epochs === undefined) throw new UsageError('--epochs is required');
  if (options.fp16 && options['checkpoint-out'] === undefined) throw new UsageError('--fp16 needs --checkpoint-out');
  if (options['reset-optimizer'] && options['init-from'] === undefined) throw new UsageError('--reset-optimizer needs --init-from');
  const hw = await hardware();
  const mode = (options.mode as RunMode | undefined) ?? 'single';
  if (mode === 'single' && options.workers !== undefined && options.workers !== 1) throw new UsageError('--workers must be 1 in single mode (use --mode multi-cpu)');
  const store = openCliStore(options);
  try {
    const request = {
      mode,
      backend: (options.backend as never) ?? 'auto',
      epochs: options.epochs as number,
      dataset: (options.dataset as string | undefined) ?? 'synthetic:1024',
      engine: {
        batchSize: (options['batch-size'] as number | undefined) ?? getOptimalConfig(hw).batchSize,
        model: modelConfigFrom(options),
        ...(options.seed === undefined ? {} : { seed: options.seed as number }),
        ...(options.precision === undefined ? {} : { precision: options.precision as 'fp32' | 'mixed' }),
        ...(options['learning-rate'] === undefined ? {} : { optimizer: { learningRate: options['learning-rate'] as number } }),
      },
      ...(options.workers === undefined ? {} : { workers: options.workers as number }),
      ...(options.name === undefined ? {} : { name: options.name as string }),
      ...(options['validation-fraction'] === undefined ? {} : { validationFraction: options['validation-fraction'] as number }),
      ...(options['last-batch'] === undefined ? {} : { lastBatch: options['last-batch'] as 'drop' | 'wrap' }),
      ...(options['checkpoint-every'] === undefined ? {} : { checkpointEveryEpochs: options['checkpoint-every'] as number }),
      ...(options['keep-last'] === undefined ? {} : { keepLastCheckpoints: options['keep-last'] as number }),
      ...(options['init-from'] === undefined ? {} : { initFrom: initFromArgument(options['init-from'] as string) }),
      ...(options['reset-optimizer'] ? { resetOptimizer: true } : {}),
    };
    const result = await withLiveRun(output, (ctx) => startTraining(request, { store, hardware: hw, ...ctx }));
    const exported = options['checkpoint-out'] as string | undefined;
    if (exported && result.latestCheckpointId !== null) {
      const bytes = store.checkpoints.getData(result.latestCheckpointId);
      await writeFileAtomic(exported, options.fp16 ? toF16Checkpoint(bytes, `checkpoint ${result.latestCheckpointId}`) : bytes);
    }
    return report(result, output, exported ?? null);
  } finally {
    store.close();
  }
}

export async function resume({ options, positionals }: Parsed, output: Output): Promise<number> {
  const runId = Number(positionals[0]);
  if (!Number.isSafeInteger(runId) || runId < 1) throw new UsageError(`RUN_ID must be a run number, got '${positionals[0]}'`);
  const hw = await hardware();
  const store = openCliStore(options);
  try {
    const result = await withLiveRun(output, (ctx) => resumeTraining(runId, { store, hardware: hw, ...ctx }, options.from as number | undefined));
    return report(result, output, null);
  } finally {
    store.close();
  }
}

/** A number is a stored checkpoint's id; anything else a file. */
function initFromArgument(value: string): { checkpointId: number } | { file: string } {
  if (/^\d+$/.test(value)) {
    const id = Number(value);
    if (!Number.isSafeInteger(id) || id < 1) throw new UsageError(`--init-from: checkpoint id must be ≥ 1, got ${value}`);
    return { checkpointId: id };
  }
  return { file: value };
}

/** Progress display and Ctrl-C handling around a run: the first Ctrl-C cancels cleanly (a checkpoint is kept). */
async function withLiveRun(output: Output, start: (ctx: Omit<ServiceContext, 'store' | 'hardware'>) => Promise<TrainingResult>): Promise<TrainingResult> {
  const progress = output.progress('train');
  let live: TrainingRun | null = null;
  let interrupts = 0;
  const onSigint = () => {
    interrupts += 1;
    if (interrupts > 1) process.exit(130);
    output.note('stopping after this step (a checkpoint is saved); press Ctrl-C again to quit at once');
    live?.cancel();
  };
  process.on('SIGINT', onSigint);
  try {
    const result = await start({
      onStarted: (runId, run) => {
        live = run;
        if (!output.json) output.note(`run ${runId}: ${run.plan.mode}, ${run.plan.workers} worker${run.plan.workers > 1 ? 's' : ''}, backend ${run.plan.backend}, global batch ${run.plan.config.batchSize}`);
      },
      onProgress: (s) => {
        const total = s.stepsPerEpoch * (live?.plan.epochs ?? 1);
        const done = (s.epoch - 1) * s.stepsPerEpoch + s.stepInEpoch;
        const loss = s.trainLoss === null ? '' : ` loss ${s.trainLoss.toFixed(5)}`;
        const rate = s.samplesPerSec === null ? '' : ` ${formatRate(s.samplesPerSec)}`;
        progress.update(done, total, `epoch ${s.epoch}${loss}${rate}${s.paused ? ' (paused)' : ''}`);
      },
      onEpoch: (_runId, e) => {
        if (!output.json) {
          const validation = e.validationLoss === null ? '' : `  validation ${e.validationLoss.toFixed(6)}`;
          output.note(`epoch ${e.epoch}  train ${e.trainLoss.toFixed(6)}${validation}  ${formatRate(e.samplesPerSec)}`);
        }
      },
    });
    progress.done(result.status);
    return result;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

function report(result: TrainingResult, output: Output, exported: string | null): number {
  const o = result.outcome;
  const summary = {
    runId: result.runId,
    status: result.status,
    mode: result.mode,
    workers: result.workers,
    backend: result.backend,
    steps: o.step,
    epochs: o.epoch,
    samples: o.realSamples,
    samplesPerSec: o.samplesPerSec,
    finalLoss: o.finalTrainLoss,
    bestValidationLoss: o.bestValidationLoss,
    bestCheckpointId: result.bestCheckpointId,
    latestCheckpointId: result.latestCheckpointId,
    durationS: o.durationS,
    checkpoint: exported,
    error: result.storeError ?? o.error,
  };
  if (output.json) {
    output.out(JSON.stringify(summary));
  } else {
    output.out(`run ${summary.runId} ${summary.status} after ${summary.steps} steps (${summary.epochs} epochs) in ${o.durationS.toFixed(1)} s`);
    if (o.finalTrainLoss !== null) output.out(`final loss ${o.finalTrainLoss.toFixed(6)}${o.bestValidationLoss === null ? '' : `, best validation ${o.bestValidationLoss.toFixed(6)}`}${o.samplesPerSec ? `, ${formatRate(o.samplesPerSec)}` : ''}`);
    if (result.bestCheckpointId !== null) output.out(`best checkpoint ${result.bestCheckpointId}, latest ${result.latestCheckpointId}`);
    if (exported) output.out(`checkpoint written to ${exported}`);
  }
  if (summary.error && !output.json) output.note(`quadra train: ${summary.error.message}`);
  return result.status === 'completed' || result.status === 'cancelled' ? (result.status === 'cancelled' ? 130 : 0) : 1;
}
