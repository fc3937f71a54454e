import path from 'node:path';
import type { RunControlAction } from '../../src-shared/api';
import { parseEngineConfig, type BackendId, type EngineConfig } from '../../src-shared/engine-config';
import { QuadraError, toErrorData, type ErrorData } from '../../src-shared/errors';
import type { HardwareInfo } from '../../src-shared/hardware';
import { metricPointOf, type RunProgress } from '../../src-shared/progress';
import type { MetricPoint, RunMode, RunRecord } from '../../src-shared/records';
import {
  DEFAULT_VALIDATION_FRACTION,
  parseOrThrow,
  parseRunConfig,
  TrainingRequestSchema,
  type StoredRunConfig,
  type TrainingRequest,
  type TrainingRequestInput,
} from '../../src-shared/run-config';
import { splitTrainValidation } from '../data/split';
import { assertPrecisionSupported, chooseBackend, type ModelWidths } from '../engine/backends';
import { decodeCheckpoint, encodeCheckpoint, readCheckpointFile, type CheckpointContents } from '../engine/checkpoint';
import { initialFieldState } from '../engine/init';
import { buildLayout } from '../engine/layout';
import { chooseAdapters } from '../engine/webgpu-adapters';
import type { Store } from '../store/database';
import { CpuUsageSampler } from '../hardware/cpu-usage';
import { currentOwner } from '../hardware/process-identity';
import { TrainingRun, type ProgressSnapshot, type RunOutcome, type StepResult, type TrainingEvents, type TrainingPlan } from '../training/coordinator';
import type { EngineSnapshot } from '../training/protocol';
import type { TransportFactory } from '../training/transport';
import { resolveDataset, resumeDatasetOf, type LoadedData } from './datasets';

export type { TrainingRequest, TrainingRequestInput } from '../../src-shared/run-config';

export interface ServiceContext {
  store: Store;
  hardware: HardwareInfo;
  transport?: TransportFactory;
  onProgress?: (progress: RunProgress) => void;
  onEpoch?: (runId: number, summary: Parameters<NonNullable<TrainingEvents['epochEnd']>>[0]) => void;
  /** Called with the live run, so a caller can pause/resume/cancel it. */
  onStarted?: (runId: number, run: TrainingRun) => void;
  /** The run's stored status changed (running, paused, resumed). */
  onStatus?: (runId: number) => void;
}

/** How often the process training a run looks for a pause, resume or cancel asked through the database. */
export const CONTROL_POLL_MS = 500;

export interface TrainingResult {
  runId: number;
  mode: RunMode;
  workers: number;
  backend: BackendId;
  status: RunRecord['status'];
  outcome: RunOutcome;
  bestCheckpointId: number | null;
  latestCheckpointId: number | null;
  /** Set when recording the run itself failed (e.g. the database became read-only). */
  storeError: ErrorData | null;
}

/** Where a run starts from: a resumed checkpoint, or a warm start's weights. */
interface StartPoint {
  state: EngineSnapshot;
  epoch: number;
  stepInEpoch: number;
}

/**
 * Starts a run. Everything it needs — config, data, backend, worker counts, a batch to train on,
 * a warm start's checkpoint — is checked before its row is written, so a failed start leaves no
 * run behind.
 */
export async function startTraining(input: TrainingRequestInput, ctx: ServiceContext): Promise<TrainingResult> {
  const request: TrainingRequest = parseOrThrow(TrainingRequestSchema, input, 'training request', 'INVALID_ARGUMENT');
  const warm = request.initFrom ? await readInitCheckpoint(ctx.store, request.initFrom) : null;
  // The request's own engine settings, before defaults: a warm start takes the rest from the checkpoint.
  const engine = parseEngineConfig(warm ? warmStartEngine(input.engine, warm.contents, warm.label) : request.engine);
  // Refuse an impossible model before loading data or starting anything.
  buildLayout(engine.model);
  const stored: StoredRunConfig = {
    engine,
    epochs: request.epochs,
    dataset: typeof request.dataset === 'string' ? request.dataset : `dataset ${request.dataset.datasetId}`,
    validationFraction: request.validationFraction ?? DEFAULT_VALIDATION_FRACTION,
    lastBatch: request.lastBatch ?? 'drop',
    checkpointEveryEpochs: request.checkpointEveryEpochs ?? 5,
    keepLastCheckpoints: request.keepLastCheckpoints ?? 3,
    ...(warm ? { initFrom: { ...warm.source, resetOptimizer: request.resetOptimizer ?? false } } : {}),
  };
  const dataset = await resolveDataset(ctx.store, request.dataset, engine);
  const resolved = await resolveBackend(request.mode, request.backend, ctx.hardware, engine.model, request.workers);
  const backend = resolved.id;
  const workers = request.workers ?? resolved.adapters?.length ?? defaultWorkers(request.mode, ctx.hardware);
  const start = warm ? { state: warmStartState(warm.contents, engine, request.resetOptimizer ?? false), epoch: 1, stepInEpoch: 0 } : undefined;
  const plan = planFor(stored, dataset.data, request.mode, workers, resolved, ctx, start);
  const owner = currentOwner();
  const run = ctx.store.runs.create({
    name: request.name ?? `${request.mode} ${new Date().toISOString().slice(0, 16).replace('T', ' ')}`,
    config: stored,
    mode: request.mode,
    backend,
    devices: devicesFor(request.mode, workers, ctx.hardware, resolved.adapters),
    workers,
    datasetId: dataset.register().id,
    ownerPid: owner.pid,
    ownerStart: owner.start,
  });
  return execute(run, stored, plan, ctx);
}

/** Continues a run from one of its checkpoints (default: the latest): same run, same curve. */
export async function resumeTraining(runId: number, ctx: ServiceContext, fromCheckpointId?: number): Promise<TrainingResult> {
  const run = ctx.store.runs.get(runId);
  const parsed = parseRunConfig(runId, run.config);
  if (parsed.kind === 'imported') {
    const latest = ctx.store.checkpoints.latest(runId);
    throw new QuadraError(
      'INVALID_ARGUMENT',
      `run ${runId} was imported from ${parsed.importedFrom} and has no dataset or schedule to continue; train a new run from its checkpoint with a dataset: quadra train --init-from ${latest?.id ?? 'CHECKPOINT_ID'} --dataset DATA --epochs N (in the app: Checkpoints → Train from this checkpoint)`,
      { runId, needs: 'dataset', checkpointId: latest?.id ?? null },
    );
  }
  const { kind: _kind, ...stored } = parsed;
  const checkpointRecord = fromCheckpointId === undefined ? ctx.store.checkpoints.latest(runId) : ctx.store.checkpoints.get(fromCheckpointId);
  if (!checkpointRecord) throw new QuadraError('NOT_FOUND', `run ${runId} has no checkpoint to resume from`, { runId });
  if (checkpointRecord.runId !== runId) {
    throw new QuadraError('INVALID_ARGUMENT', `checkpoint ${checkpointRecord.id} belongs to run ${checkpointRecord.runId}, not run ${runId}`);
  }
  const contents = decodeCheckpoint(ctx.store.checkpoints.getData(checkpointRecord.id), `checkpoint ${checkpointRecord.id}`, stored.engine.model);
  if (!contents.optimizer || !contents.fieldState || contents.step === null) {
    throw new QuadraError('INVALID_FILE', `checkpoint ${checkpointRecord.id} holds weights only (no optimizer state); it cannot resume training exactly`);
  }
  const resumeEpoch = Number(contents.metadata.resume_epoch);
  const resumeStep = Number(contents.metadata.resume_step_in_epoch);
  if (!Number.isSafeInteger(resumeEpoch) || !Number.isSafeInteger(resumeStep)) {
    throw new QuadraError('INVALID_FILE', `checkpoint ${checkpointRecord.id} does not record where the sampler stood (resume_epoch / resume_step_in_epoch)`);
  }
  const dataset = await resolveDataset(ctx.store, resumeDatasetOf(runId, run, stored), stored.engine);
  const resolved = await resolveBackend(run.mode, run.backend, ctx.hardware, stored.engine.model, run.workers);
  const start = {
    state: { parameters: contents.parameters, optimizer: contents.optimizer, fieldState: contents.fieldState, step: contents.step, lossScaler: contents.lossScaler ?? null },
    epoch: resumeEpoch,
    stepInEpoch: resumeStep,
  };
  const plan = planFor(stored, dataset.data, run.mode, run.workers, resolved, ctx, start);
  // Atomic: a second resume (another process, the app) is refused here, before anything changes.
  const claimed = ctx.store.runs.claim(runId, currentOwner());
  // The curve continues from the checkpoint: later points belong to the abandoned continuation.
  ctx.store.metrics.deleteAfter(runId, contents.step);
  return execute(claimed, stored, plan, ctx);
}

/** The training plan, checked (TrainingRun.check) so a run that cannot start is refused before it is recorded. */
function planFor(
  stored: StoredRunConfig,
  data: LoadedData,
  mode: RunMode,
  workers: number,
  backend: ResolvedBackend,
  ctx: ServiceContext,
  start: StartPoint | undefined,
): TrainingPlan {
  assertPrecisionSupported(stored.engine.precision, backend.id);
  const split = splitTrainValidation(data.rows, stored.validationFraction, stored.engine.seed);
  const plan: TrainingPlan = {
    config: stored.engine,
    mode,
    workers,
    backend: backend.id,
    ...(backend.adapters ? { adapters: backend.adapters } : {}),
    gpu: { gpus: ctx.hardware.gpus, nvidiaSmi: ctx.hardware.nvidiaSmi },
    epochs: stored.epochs,
    data: data.values,
    trainRows: split.train,
    validationRows: split.validation,
    lastBatch: stored.lastBatch,
    checkpointEveryEpochs: stored.checkpointEveryEpochs,
    ...(start ? { start } : {}),
    ...(ctx.transport ? { transport: ctx.transport } : {}),
  };
  TrainingRun.check(plan);
  return plan;
}

/** A warm start's checkpoint: a stored one by id, or (CLI) a .safetensors/.pth file. */
async function readInitCheckpoint(
  store: Store,
  from: NonNullable<TrainingRequest['initFrom']>,
): Promise<{ contents: CheckpointContents; label: string; source: { checkpointId: number } | { file: string } }> {
  if ('checkpointId' in from) {
    const record = store.checkpoints.get(from.checkpointId);
    const label = `checkpoint ${record.id}`;
    return { contents: decodeCheckpoint(store.checkpoints.getData(record.id), label), label, source: { checkpointId: record.id } };
  }
  const { contents } = await readCheckpointFile(from.file);
  return { contents, label: from.file, source: { file: path.resolve(from.file) } };
}

/**
 * The engine config of a warm start: the checkpoint's model (and, for ours, its other settings),
 * with the request's own settings on top. A width that differs from the checkpoint's is an error:
 * the weights would not fit.
 */
function warmStartEngine(requested: TrainingRequestInput['engine'], contents: CheckpointContents, label: string): unknown {
  const model = { ...(contents.engineConfig?.model ?? {}), ...contents.model };
  for (const key of ['fieldSize', 'hiddenSize', 'spikingHiddenSize'] as const) {
    const asked = requested.model?.[key];
    if (asked !== undefined && asked !== model[key]) {
      throw new QuadraError('SHAPE_MISMATCH', `${label} holds a model with ${key} ${model[key]}, but ${key} ${asked} was asked for; leave it out to use the checkpoint's`, {
        field: key,
        expected: model[key],
        found: asked,
      });
    }
  }
  return { ...(contents.engineConfig ?? {}), ...requested, model: { ...model, ...(requested.model ?? {}) } };
}

/** The engine state a warm start begins with: the checkpoint's weights, and its optimizer unless reset or absent. */
function warmStartState(contents: CheckpointContents, engine: EngineConfig, resetOptimizer: boolean): EngineSnapshot {
  const total = contents.parameters.length;
  const keep = !resetOptimizer && contents.optimizer !== null;
  return {
    parameters: contents.parameters,
    optimizer: keep ? contents.optimizer! : { m: new Float32Array(total), v: new Float32Array(total), fieldStep: 0, spikeStep: 0 },
    fieldState: contents.fieldState ?? initialFieldState(engine.model.fieldSize, engine.seed),
    step: keep ? (contents.step ?? 0) : 0,
    lossScaler: keep ? (contents.lossScaler ?? null) : null,
  };
}

async function execute(run: RunRecord, stored: StoredRunConfig, plan: TrainingPlan, ctx: ServiceContext): Promise<TrainingResult> {
  const { store } = ctx;
  const backend = plan.backend as BackendId;
  const previousDurationS = run.summary.durationS ?? 0;
  let storeError: ErrorData | null = null;
  // The start (a resumed or warm-started step) is not a new step: its point is the earlier segment's.
  let lastTickStep = plan.start?.state.step ?? 0;
  const cpu = new CpuUsageSampler();
  let training: TrainingRun | null = null;
  /** Every step's point (and the ticks' and epochs' additions) since the last flush. */
  let pending: MetricPoint[] = [];
  /** A store write that fails stops the run cleanly instead of losing track of it. */
  const record = (action: () => void) => {
    if (storeError) return;
    try {
      action();
    } catch (error) {
      storeError = toErrorData(error);
      training?.cancel();
    }
  };
  /** One transaction for everything since the last flush: at each progress tick, and once at the end. */
  const flush = () => {
    if (pending.length === 0) return;
    const points = pending;
    pending = [];
    record(() => store.metrics.append(points));
  };
  training = new TrainingRun(plan, {
    workersReady: () => {
      // Paused before its workers were up (a request through the database): it starts paused.
      record(() => store.runs.setStatus(run.id, training?.snapshot.paused ? 'paused' : 'running'));
      ctx.onStatus?.(run.id);
    },
    status: (status) => {
      record(() => store.runs.setStatus(run.id, status));
      ctx.onStatus?.(run.id);
    },
    stepEnd: (_step, _realSamples, result) => pending.push(stepPoint(run.id, result)),
    progress: (snapshot) => {
      const progress = runProgress(run.id, snapshot, cpu.totalPercent());
      ctx.onProgress?.(progress);
      // The tick adds its resource use to its step's point (the store merges points of one step).
      if (progress.step > lastTickStep) {
        lastTickStep = progress.step;
        pending.push(metricPointOf(progress));
      }
      flush();
    },
    epochEnd: (summary) => {
      if (summary.validationLoss !== null) pending.push(validationPoint(run.id, summary));
      ctx.onEpoch?.(run.id, summary);
    },
    checkpoint: (c) => {
      const bytes = encodeCheckpoint(
        { config: stored.engine, ...c.state, backend },
        {
          extraMetadata: {
            run_id: String(run.id),
            epoch: String(c.epoch),
            resume_epoch: String(c.resumeAt.epoch),
            resume_step_in_epoch: String(c.resumeAt.stepInEpoch),
          },
        },
      );
      // Throws (and so stops the run) when the database cannot take it: nothing is half-written.
      store.checkpoints.add({ runId: run.id, epoch: c.epoch, step: c.step, validationLoss: finiteOrNull(c.validationLoss), trainLoss: finiteOrNull(c.trainLoss), data: bytes });
      store.checkpoints.prune(run.id, stored.keepLastCheckpoints);
    },
  });
  const live = training;
  // A pause, resume or cancel asked by another process (the app, a browser, `quadra runs pause`):
  // looked for with a read, then taken and applied in one transaction, so whoever waits for it
  // sees the new status with it.
  const control = setInterval(() => {
    record(() => {
      if (store.runs.pendingControl(run.id) === null) return;
      store.db.transaction(() => applyControl(live, store.runs.takeControlRequest(run.id))).immediate();
    });
  }, CONTROL_POLL_MS);
  ctx.onStarted?.(run.id, training);
  let outcome: RunOutcome;
  try {
    outcome = await training.run();
  } finally {
    clearInterval(control);
    // The steps since the last tick: a cancelled or failed run keeps every step it made.
    flush();
  }
  const status: RunRecord['status'] = storeError ? 'failed' : outcome.status;
  const reason = storeError ? (storeError as ErrorData).message : outcome.error?.message ?? null;
  record(() => {
    // What the metrics and checkpoints say first; then this segment's own figures where it has them,
    // so a resume that trains nothing (or fails at once) never erases what the run had reached.
    store.runs.refreshSummary(run.id);
    store.runs.updateSummary(run.id, {
      steps: outcome.step,
      // A resume with no epoch left to train stands at the next epoch, which never began.
      epochs: Math.min(outcome.epoch, stored.epochs),
      durationS: previousDurationS + outcome.durationS,
      ...definedOnly({
        lastTrainLoss: finiteOrNull(outcome.finalTrainLoss),
        samplesPerSec: finiteOrNull(outcome.samplesPerSec),
      }),
    });
    store.runs.setStatus(run.id, status, { failureReason: status === 'completed' || status === 'cancelled' ? null : reason });
  });
  // A failed final write must not hide the run's own result; it is reported beside it.
  const best = safe(() => store.checkpoints.best(run.id));
  const latest = safe(() => store.checkpoints.latest(run.id));
  return { runId: run.id, mode: run.mode, workers: run.workers, backend, status, outcome, bestCheckpointId: best?.id ?? null, latestCheckpointId: latest?.id ?? null, storeError };
}

function applyControl(run: TrainingRun, action: RunControlAction | null): void {
  if (action === 'pause') run.pause();
  else if (action === 'resume') run.resume();
  else if (action === 'cancel') run.cancel();
}

/**
 * The one place a RunProgress is built: the coordinator's snapshot, with the run's id, this tick's
 * time and CPU use, and its workers' memory summed.
 */
export function runProgress(runId: number, snapshot: ProgressSnapshot, cpuPercent: number | null, time = Date.now()): RunProgress {
  const rss = snapshot.workers.reduce((sum, w) => sum + (w.memory?.rssBytes ?? 0), 0);
  // What our webgpu buffers hold on the GPU, all workers together.
  const gpuBytes = snapshot.workers.reduce((sum, w) => sum + (w.memory?.gpuBytes ?? 0), 0);
  return {
    runId,
    step: snapshot.step,
    epoch: snapshot.epoch,
    time,
    trainLoss: finiteOrNull(snapshot.trainLoss),
    validationLoss: finiteOrNull(snapshot.validationLoss),
    samplesPerSec: finiteOrNull(snapshot.samplesPerSec),
    gpuMemoryMiB: gpuBytes > 0 ? gpuBytes / 2 ** 20 : null,
    cpuPercent,
    rssBytes: rss > 0 ? rss : null,
    ...(snapshot.lossScale === null ? {} : { lossScale: snapshot.lossScale }),
    ...(snapshot.skippedSteps === null ? {} : { skippedSteps: snapshot.skippedSteps }),
    stepInEpoch: snapshot.stepInEpoch,
    stepsPerEpoch: snapshot.stepsPerEpoch,
    paused: snapshot.paused,
    workers: snapshot.workers.map((w) => ({
      rank: w.rank,
      pid: w.pid ?? null,
      rssBytes: w.memory?.rssBytes ?? null,
      tensors: w.memory?.tensors ?? null,
      tensorBytes: w.memory?.tensorBytes ?? null,
      gpuBytes: w.memory?.gpuBytes ?? null,
    })),
  };
}

/** One step's point: its loss and the epoch's throughput so far (resource use comes with the ticks). */
function stepPoint(runId: number, result: StepResult): MetricPoint {
  return {
    runId,
    step: result.step,
    epoch: result.epoch,
    time: Date.now(),
    trainLoss: finiteOrNull(result.loss.loss),
    validationLoss: null,
    samplesPerSec: finiteOrNull(result.samplesPerSec),
    gpuMemoryMiB: null,
    cpuPercent: null,
    rssBytes: null,
    ...(result.lossScale === null ? {} : { lossScale: result.lossScale }),
    ...(result.skippedSteps === null ? {} : { skippedSteps: result.skippedSteps }),
  };
}

/** An epoch's validation loss, at the epoch's last step. */
function validationPoint(runId: number, epoch: { epoch: number; step: number; validationLoss: number | null }): MetricPoint {
  return {
    runId,
    step: epoch.step,
    epoch: epoch.epoch,
    time: Date.now(),
    trainLoss: null,
    validationLoss: finiteOrNull(epoch.validationLoss),
    samplesPerSec: null,
    gpuMemoryMiB: null,
    cpuPercent: null,
    rssBytes: null,
  };
}

/**
 * Asks the process that trains a run (this one's or another's: `quadra train`, the app, `quadra
 * serve`) to pause, resume or cancel it, through the database, and waits up to `waitMs` for that
 * process to take the request. `taken` is false when it has not yet; the request then stays.
 */
export async function requestRunControl(
  store: Store,
  runId: number,
  action: RunControlAction,
  { waitMs = 3000, pollMs = 100 }: { waitMs?: number; pollMs?: number } = {},
): Promise<{ run: RunRecord; taken: boolean }> {
  store.runs.requestControl(runId, action);
  const deadline = Date.now() + waitMs;
  // Cleared by the owner as it applies it (or by the run's end).
  while (store.runs.pendingControl(runId) !== null) {
    if (Date.now() >= deadline) return { run: store.runs.get(runId), taken: false };
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  return { run: store.runs.get(runId), taken: true };
}

/** The entries whose value is not null (null means "this segment does not know"). */
function definedOnly<T extends Record<string, number | null>>(values: T): Partial<{ [K in keyof T]: number }> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== null)) as Partial<{ [K in keyof T]: number }>;
}

/** The run's backend, chosen here once so every worker runs the same one and the run records which. */
interface ResolvedBackend {
  id: BackendId;
  /** webgpu in multi-gpu mode: one adapter per worker, by Dawn's name. */
  adapters?: string[];
}

async function resolveBackend(mode: RunMode, requested: BackendId | 'auto', hardware: HardwareInfo, model: ModelWidths, workers: number | undefined): Promise<ResolvedBackend> {
  const gpu = { gpus: hardware.gpus, nvidiaSmi: hardware.nvidiaSmi };
  if (mode === 'multi-gpu' && requested === 'webgpu') {
    const { listNodeAdapters } = await import('../engine/webgpu-node');
    const adapters = chooseAdapters(await listNodeAdapters(), workers);
    await chooseBackend('webgpu', gpu, model);
    return { id: 'webgpu', adapters };
  }
  if (mode === 'multi-gpu') {
    if (hardware.gpus.length === 0) {
      const why = hardware.nvidiaSmi.available ? 'nvidia-smi lists none' : hardware.nvidiaSmi.reason;
      throw new QuadraError('BACKEND_UNAVAILABLE', `multi-gpu mode needs NVIDIA GPUs (${why}), or several GPU adapters with --backend webgpu`);
    }
    if (requested === 'auto') return { id: 'tensorflow-gpu' };
  }
  // Chosen here, started in the workers: this process (Electron's main one) never loads libtensorflow.
  return { id: await chooseBackend(requested, gpu, model) };
}

export function defaultWorkers(mode: RunMode, hardware: HardwareInfo): number {
  if (mode === 'single') return 1;
  if (mode === 'multi-gpu') return Math.max(1, hardware.gpus.length);
  return Math.max(1, hardware.cpu.physicalCores);
}

function devicesFor(mode: RunMode, workers: number, hardware: HardwareInfo, adapters: readonly string[] | undefined): string[] {
  if (adapters) return adapters.map((name, i) => `GPU ${i}: ${name} (webgpu)`);
  if (mode === 'multi-gpu') return hardware.gpus.slice(0, workers).map((g) => `GPU ${g.index}: ${g.name}`);
  return Array.from({ length: workers }, (_, i) => `CPU worker ${i}`);
}

function finiteOrNull(value: number | null | undefined): number | null {
  return value === null || value === undefined || !Number.isFinite(value) ? null : value;
}

function safe<T>(read: () => T): T | null {
  try {
    return read();
  } catch {
    return null;
  }
}
