import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { parseEngineConfig, type BackendId, type EngineConfig, type EngineConfigInput } from '../../src-shared/engine-config';
import { QuadraError, toErrorData, type ErrorData } from '../../src-shared/errors';
import type { HardwareInfo } from '../../src-shared/hardware';
import type { DatasetRecord, RunMode, RunRecord } from '../../src-shared/records';
import { loadDatasetFile } from '../data/dataset-file';
import type { LastBatch } from '../data/sampler';
import { splitTrainValidation } from '../data/split';
import { parseSyntheticSpec, syntheticRows } from '../data/synthetic';
import { selectBackend, type ModelWidths } from '../engine/backends';
import { decodeCheckpoint, encodeCheckpoint } from '../engine/checkpoint';
import { buildLayout } from '../engine/layout';
import type { Store } from '../store/database';
import { TrainingRun, type ProgressSnapshot, type RunOutcome, type TrainingEvents } from '../training/coordinator';
import type { TransportFactory } from '../training/transport';

/** What `quadra train` and the app's wizard ask for. */
export interface TrainingRequest {
  name?: string;
  mode: RunMode;
  /** Default: one per GPU (multi-gpu), one per physical core (multi-cpu), 1 (single). */
  workers?: number;
  backend: BackendId | 'auto';
  engine: EngineConfigInput;
  epochs: number;
  /** 'synthetic:N', a file path (.npy/.csv/.txt), or the name of a registered dataset. */
  dataset: string;
  validationFraction?: number;
  lastBatch?: LastBatch;
  checkpointEveryEpochs?: number;
  keepLastCheckpoints?: number;
}

export interface ServiceContext {
  store: Store;
  hardware: HardwareInfo;
  transport?: TransportFactory;
  onProgress?: (runId: number, snapshot: ProgressSnapshot) => void;
  onEpoch?: (runId: number, summary: Parameters<NonNullable<TrainingEvents['epochEnd']>>[0]) => void;
  /** Called with the live run, so a caller can pause/resume/cancel it. */
  onStarted?: (runId: number, run: TrainingRun) => void;
  /** The run's stored status changed (running, paused, resumed). */
  onStatus?: (runId: number) => void;
}

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

/** The run's settings as stored with it: enough to resume it later. */
interface StoredRunConfig {
  engine: EngineConfig;
  epochs: number;
  dataset: string;
  validationFraction: number;
  lastBatch: LastBatch;
  checkpointEveryEpochs: number;
  keepLastCheckpoints: number;
}

export async function startTraining(request: TrainingRequest, ctx: ServiceContext): Promise<TrainingResult> {
  const engine = parseEngineConfig(request.engine);
  // Refuse an impossible model before loading data or starting anything.
  buildLayout(engine.model);
  const stored: StoredRunConfig = {
    engine,
    epochs: positive(request.epochs, 'epochs'),
    dataset: request.dataset,
    validationFraction: request.validationFraction ?? 0.1,
    lastBatch: request.lastBatch ?? 'drop',
    checkpointEveryEpochs: positive(request.checkpointEveryEpochs ?? 5, 'checkpointEveryEpochs'),
    keepLastCheckpoints: positive(request.keepLastCheckpoints ?? 3, 'keepLastCheckpoints'),
  };
  const workers = request.workers ?? defaultWorkers(request.mode, ctx.hardware);
  const dataset = await resolveDataset(ctx.store, request.dataset, engine);
  const backend = await resolveBackend(request.mode, request.backend, ctx.hardware, engine.model);
  const run = ctx.store.runs.create({
    name: request.name ?? `${request.mode} ${new Date().toISOString().slice(0, 16).replace('T', ' ')}`,
    config: stored,
    mode: request.mode,
    backend,
    devices: devicesFor(request.mode, workers, ctx.hardware),
    workers,
    datasetId: dataset.record.id,
    ownerPid: process.pid,
  });
  return execute(run, stored, dataset.data, backend, ctx, undefined);
}

/** Continues a run from one of its checkpoints (default: the latest): same run, same curve. */
export async function resumeTraining(runId: number, ctx: ServiceContext, fromCheckpointId?: number): Promise<TrainingResult> {
  const run = ctx.store.runs.get(runId);
  const stored = run.config as StoredRunConfig;
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
  const dataset = await resolveDataset(ctx.store, stored.dataset, stored.engine);
  const backend = await resolveBackend(run.mode, run.backend, ctx.hardware, stored.engine.model);
  // The curve continues from the checkpoint: later points belong to the abandoned continuation.
  ctx.store.metrics.deleteAfter(runId, contents.step);
  ctx.store.runs.setStatus(runId, 'queued', { ownerPid: process.pid });
  const start = {
    state: { parameters: contents.parameters, optimizer: contents.optimizer, fieldState: contents.fieldState, step: contents.step },
    epoch: resumeEpoch,
    stepInEpoch: resumeStep,
  };
  return execute(ctx.store.runs.get(runId), stored, dataset.data, backend, ctx, start);
}

async function execute(
  run: RunRecord,
  stored: StoredRunConfig,
  data: LoadedData,
  backend: BackendId,
  ctx: ServiceContext,
  start: { state: { parameters: Float32Array; optimizer: NonNullable<ReturnType<typeof decodeCheckpoint>['optimizer']>; fieldState: Float32Array; step: number }; epoch: number; stepInEpoch: number } | undefined,
): Promise<TrainingResult> {
  const { store } = ctx;
  const split = splitTrainValidation(data.rows, stored.validationFraction, stored.engine.seed);
  let storeError: ErrorData | null = null;
  let lastRecordedStep = -1;
  const cpu = new CpuMeter();
  let training: TrainingRun | null = null;
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
  training = new TrainingRun(
    {
      config: stored.engine,
      mode: run.mode,
      workers: run.workers,
      backend,
      gpu: { gpus: ctx.hardware.gpus, nvidiaSmi: ctx.hardware.nvidiaSmi },
      epochs: stored.epochs,
      data: data.values,
      trainRows: split.train,
      validationRows: split.validation,
      lastBatch: stored.lastBatch,
      checkpointEveryEpochs: stored.checkpointEveryEpochs,
      ...(start ? { start } : {}),
      ...(ctx.transport ? { transport: ctx.transport } : {}),
    },
    {
      workersReady: () => {
        record(() => store.runs.setStatus(run.id, 'running', { ownerPid: process.pid }));
        ctx.onStatus?.(run.id);
      },
      status: (status) => {
        record(() => store.runs.setStatus(run.id, status, { ownerPid: process.pid }));
        ctx.onStatus?.(run.id);
      },
      progress: (snapshot) => {
        ctx.onProgress?.(run.id, snapshot);
        if (snapshot.step === lastRecordedStep || snapshot.step === 0) return;
        lastRecordedStep = snapshot.step;
        const rss = snapshot.workers.reduce((sum, w) => sum + (w.memory?.rssBytes ?? 0), 0);
        record(() =>
          store.metrics.append([
            {
              runId: run.id,
              step: snapshot.step,
              epoch: snapshot.epoch,
              time: Date.now(),
              trainLoss: finiteOrNull(snapshot.trainLoss),
              validationLoss: finiteOrNull(snapshot.validationLoss),
              samplesPerSec: finiteOrNull(snapshot.samplesPerSec),
              gpuMemoryMiB: null,
              cpuPercent: cpu.percent(),
              rssBytes: rss > 0 ? rss : null,
            },
          ]),
        );
      },
      epochEnd: (summary) => ctx.onEpoch?.(run.id, summary),
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
    },
  );
  ctx.onStarted?.(run.id, training);
  const outcome = await training.run();
  const status: RunRecord['status'] = storeError ? 'failed' : outcome.status;
  const reason = storeError ? (storeError as ErrorData).message : outcome.error?.message ?? null;
  record(() => {
    store.runs.updateSummary(run.id, {
      lastTrainLoss: finiteOrNull(outcome.finalTrainLoss),
      bestValidationLoss: finiteOrNull(outcome.bestValidationLoss),
      samplesPerSec: finiteOrNull(outcome.samplesPerSec),
      durationS: outcome.durationS,
      steps: outcome.step,
      epochs: outcome.epoch,
    });
    store.runs.setStatus(run.id, status, { failureReason: status === 'completed' || status === 'cancelled' ? null : reason });
  });
  // A failed final write must not hide the run's own result; it is reported beside it.
  const best = safe(() => store.checkpoints.best(run.id));
  const latest = safe(() => store.checkpoints.latest(run.id));
  return { runId: run.id, mode: run.mode, workers: run.workers, backend, status, outcome, bestCheckpointId: best?.id ?? null, latestCheckpointId: latest?.id ?? null, storeError };
}

interface LoadedData {
  rows: number;
  width: number;
  values: Float32Array;
}

/** Resolves 'synthetic:N', a file path or a registered dataset name, registering what is new. */
export async function resolveDataset(store: Store, spec: string, engine: EngineConfig): Promise<{ record: DatasetRecord; data: LoadedData }> {
  const F = engine.model.fieldSize;
  if (spec.startsWith('synthetic')) {
    const rows = parseSyntheticSpec(spec);
    const values = syntheticRows(rows, F, engine.seed);
    const name = `synthetic:${rows}x${F}:seed${engine.seed}`;
    const record = store.datasets.getByName(name) ?? store.datasets.add({ name, kind: 'synthetic', sourcePath: null, rows, width: F, sha256: sha256Of(values) });
    return { record, data: { rows, width: F, values } };
  }
  const registered = store.datasets.getByName(spec);
  if (registered) {
    if (registered.kind === 'synthetic' || !registered.sourcePath) {
      throw new QuadraError('INVALID_ARGUMENT', `dataset "${spec}" is synthetic; use --dataset synthetic:N`);
    }
    const loaded = await loadDatasetFile(registered.sourcePath, { expectedWidth: F });
    if (loaded.sha256 !== registered.sha256) {
      throw new QuadraError('INVALID_FILE', `${registered.sourcePath}: the file changed since it was imported as "${spec}" (sha256 differs); import it again`, {
        file: registered.sourcePath,
      });
    }
    return { record: registered, data: { rows: loaded.rows, width: loaded.width, values: loaded.data } };
  }
  const loaded = await loadDatasetFile(spec, { expectedWidth: F });
  const record = importedRecord(store, loaded, undefined);
  return { record, data: { rows: loaded.rows, width: loaded.width, values: loaded.data } };
}

/** Registers a loaded file (reusing the record when the same bytes were imported before). */
export function importedRecord(store: Store, loaded: Awaited<ReturnType<typeof loadDatasetFile>>, name: string | undefined): DatasetRecord {
  const existing = store.datasets.list().find((d) => d.sha256 === loaded.sha256 && d.width === loaded.width);
  if (existing && (name === undefined || existing.name === name)) return existing;
  const base = name ?? path.basename(loaded.sourcePath);
  let unique = base;
  for (let i = 2; store.datasets.getByName(unique); i++) unique = `${base} (${i})`;
  if (name !== undefined && unique !== name) {
    throw new QuadraError('INVALID_ARGUMENT', `a dataset named "${name}" already exists; choose another --name`, { field: 'name' });
  }
  return store.datasets.add({ name: unique, kind: loaded.kind, sourcePath: path.resolve(loaded.sourcePath), rows: loaded.rows, width: loaded.width, sha256: loaded.sha256 });
}

async function resolveBackend(mode: RunMode, requested: BackendId | 'auto', hardware: HardwareInfo, model: ModelWidths): Promise<BackendId> {
  if (mode === 'multi-gpu') {
    if (hardware.gpus.length === 0) {
      throw new QuadraError('BACKEND_UNAVAILABLE', `multi-gpu mode needs NVIDIA GPUs: ${hardware.nvidiaSmi.available ? 'nvidia-smi lists none' : hardware.nvidiaSmi.reason}`);
    }
    if (requested === 'auto') return 'tensorflow-gpu';
  }
  // Chosen here once, so every worker runs the same backend and the run records which.
  const selection = await selectBackend(requested, { gpus: hardware.gpus, nvidiaSmi: hardware.nvidiaSmi }, model);
  return selection.id;
}

export function defaultWorkers(mode: RunMode, hardware: HardwareInfo): number {
  if (mode === 'single') return 1;
  if (mode === 'multi-gpu') return Math.max(1, hardware.gpus.length);
  return Math.max(1, hardware.cpu.physicalCores);
}

function devicesFor(mode: RunMode, workers: number, hardware: HardwareInfo): string[] {
  if (mode === 'multi-gpu') return hardware.gpus.slice(0, workers).map((g) => `GPU ${g.index}: ${g.name}`);
  return Array.from({ length: workers }, (_, i) => `CPU worker ${i}`);
}

function positive(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 1) throw new QuadraError('INVALID_ARGUMENT', `${field} must be a whole number ≥ 1, got ${value}`, { field });
  return value;
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

function sha256Of(values: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest('hex');
}

/** Whole-machine CPU use between two calls, from the kernel's per-core counters. */
class CpuMeter {
  #last = os.cpus().map((c) => c.times);

  percent(): number | null {
    const now = os.cpus().map((c) => c.times);
    let busy = 0;
    let total = 0;
    now.forEach((t, i) => {
      const p = this.#last[i];
      if (!p) return;
      const idle = t.idle - p.idle;
      const all = t.user - p.user + (t.nice - p.nice) + (t.sys - p.sys) + (t.irq - p.irq) + idle;
      busy += all - idle;
      total += all;
    });
    this.#last = now;
    return total > 0 ? (100 * busy) / total : null;
  }
}
