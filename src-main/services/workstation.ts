import { createHash } from 'node:crypto';
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ApiEvent, ApiRequest, DatasetPreview, ExportedFile, HardwareReport, RunDetail, WorkstationApi, WorkstationEvents } from '../../src-shared/api';
import type { PytorchAvailability } from '../../src-shared/benchmarks';
import { BACKEND_IDS, parseEngineConfig, type BackendId } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import type { HardwareInfo } from '../../src-shared/hardware';
import type { OurGpuWorker } from '../../src-shared/monitor';
import type { BenchmarkResultRecord, BenchmarkSuiteRecord, CheckpointRecord, DatasetRecord, MetricPoint, RunRecord } from '../../src-shared/records';
import { probePytorch, type PytorchProbe } from '../bench/pytorch-bench';
import { runSuite } from '../bench/suite';
import { loadDatasetFile, previewDataset } from '../data/dataset-file';
import { getOptimalConfig } from '../engine/auto-config';
import { probeBackends } from '../engine/backends';
import { decodeCheckpoint, storableCheckpoint } from '../engine/checkpoint';
import { exportStoredCheckpoint, zipFolder } from './export-service';
import type { MonitorSource } from '../hardware/gpu-monitor';
import type { Store } from '../store/database';
import type { TrainingRun } from '../training/coordinator';
import type { TransportFactory } from '../training/transport';
import { importedRecord } from './datasets';
import { resumeTraining, startTraining, type ServiceContext, type TrainingResult } from './training-service';

/** Serve mode's upload folder, as the service sees it: a file by its random id, and "done with it". */
export interface UploadResolver {
  /** The uploaded file; NOT_FOUND when the id is unknown, used or expired. */
  path(uploadId: string): string;
  /** Forgets the upload, deleting its file if it is still there. */
  consume(uploadId: string): void;
}

export interface WorkstationDeps {
  store: Store;
  hardware: () => Promise<HardwareInfo>;
  /** Where uploaded datasets are kept (a folder the server chooses, never the browser). */
  dataDir: string;
  emit: <E extends ApiEvent>(event: E, payload: WorkstationEvents[E]) => void;
  transport?: TransportFactory;
  monitor?: MonitorSource;
  /** Where requests that name a file by `uploadId` (serve mode) find it; without it only `bytes` work. */
  uploads?: UploadResolver;
}

/**
 * The WorkstationApi over the store, the training service, datasets, checkpoints and benchmarks.
 * One instance per process that owns the database (Electron main, `quadra serve`); training runs
 * in worker processes, so nothing here blocks for long.
 */
export class WorkstationService implements WorkstationApi {
  #deps: WorkstationDeps;
  #live = new Map<number, TrainingRun>();
  /** What shutdown() waits for: each started run until it has finished. */
  #finished = new Map<number, Promise<TrainingResult>>();
  #stopMonitor: (() => void) | null = null;
  /** Importing torch takes a second or more: a Python that has it is found once per process. */
  #pytorch: Promise<PytorchProbe> | null = null;

  constructor(deps: WorkstationDeps) {
    this.#deps = deps;
  }

  async getHardware(_request: ApiRequest<'getHardware'>): Promise<HardwareReport> {
    const hardware = await this.#deps.hardware();
    const backends = await probeBackends({ gpus: hardware.gpus, nvidiaSmi: hardware.nvidiaSmi });
    return { hardware, backends, recommended: getOptimalConfig(hardware) };
  }

  async listDatasets(_request: ApiRequest<'listDatasets'>): Promise<DatasetRecord[]> {
    return this.#deps.store.datasets.list();
  }

  async previewDataset(request: ApiRequest<'previewDataset'>): Promise<DatasetPreview> {
    const folder = mkdtempSync(path.join(os.tmpdir(), 'quadra-preview-'));
    try {
      // The loader reads the kind from the name's extension: an upload is linked under it, not copied,
      // and stays for the import that usually follows.
      const file = path.join(folder, safeName(request.fileName));
      if (request.uploadId !== undefined) {
        const upload = this.#uploadedFile(request.uploadId);
        try {
          symlinkSync(upload, file);
        } catch {
          copyFileSync(upload, file);
        }
      } else writeFileSync(file, request.bytes!);
      const loaded = await loadDatasetFile(file, request.fieldSize === undefined ? {} : { textWidth: request.fieldSize });
      const widthMismatch = request.fieldSize !== undefined && loaded.width !== request.fieldSize ? { width: loaded.width, fieldSize: request.fieldSize } : null;
      return { rows: loaded.rows, width: loaded.width, kind: loaded.kind, firstRows: previewDataset(loaded, 5), widthMismatch };
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  }

  async importDataset(request: ApiRequest<'importDataset'>): Promise<DatasetRecord> {
    // Kept under a name derived from the content, in the server's own data folder.
    const folder = path.join(this.#deps.dataDir, 'datasets');
    mkdirSync(folder, { recursive: true });
    const named = (digest: string) => path.join(folder, `${digest.slice(0, 16)}-${safeName(request.fileName)}`);
    let file: string;
    // The same content under the same name is already there (maybe another dataset's file): keep it, whatever happens.
    let existed: boolean;
    if (request.uploadId !== undefined) {
      const upload = this.#uploadedFile(request.uploadId);
      const hash = createHash('sha256');
      for await (const chunk of createReadStream(upload)) hash.update(chunk as Buffer);
      file = named(hash.digest('hex'));
      existed = existsSync(file);
      try {
        // Moved, not copied: a file of gigabytes is never held in memory or written twice.
        if (!existed) renameSync(upload, file);
      } catch {
        copyFileSync(upload, file);
      } finally {
        this.#deps.uploads!.consume(request.uploadId);
      }
    } else {
      file = named(createHash('sha256').update(request.bytes!).digest('hex'));
      existed = existsSync(file);
      if (!existed) writeFileSync(file, request.bytes!);
    }
    try {
      const options = request.fieldSize === undefined ? {} : { expectedWidth: request.fieldSize, textWidth: request.fieldSize };
      const loaded = await loadDatasetFile(file, options);
      return importedRecord(this.#deps.store, loaded, request.name ?? request.fileName);
    } catch (error) {
      if (!existed) rmSync(file, { force: true });
      throw error;
    }
  }

  async startRun(request: ApiRequest<'startRun'>): Promise<{ runId: number }> {
    return this.#launch((ctx) => startTraining(request, ctx));
  }

  async resumeRun(request: ApiRequest<'resumeRun'>): Promise<{ runId: number }> {
    if (this.#live.has(request.runId)) throw new QuadraError('INVALID_ARGUMENT', `run ${request.runId} is already running`);
    return this.#launch((ctx) => resumeTraining(request.runId, ctx, request.fromCheckpointId));
  }

  async listRuns(request: ApiRequest<'listRuns'>): Promise<RunRecord[]> {
    return this.#deps.store.runs.list(request.limit === undefined ? {} : { limit: request.limit });
  }

  async getRun(request: ApiRequest<'getRun'>): Promise<RunDetail> {
    return { run: this.#deps.store.runs.get(request.runId), checkpoints: this.#deps.store.checkpoints.listByRun(request.runId) };
  }

  async getMetrics(request: ApiRequest<'getMetrics'>): Promise<MetricPoint[]> {
    const { runId, ...range } = request;
    this.#deps.store.runs.get(runId);
    return this.#deps.store.metrics.range(runId, range);
  }

  async controlRun(request: ApiRequest<'controlRun'>): Promise<RunRecord> {
    const live = this.#live.get(request.runId);
    if (!live) throw new QuadraError('NOT_FOUND', `run ${request.runId} is not running in this workstation`, { runId: request.runId });
    if (request.action === 'pause') live.pause();
    else if (request.action === 'resume') live.resume();
    else live.cancel();
    return this.#deps.store.runs.get(request.runId);
  }

  async listCheckpoints(request: ApiRequest<'listCheckpoints'>): Promise<CheckpointRecord[]> {
    this.#deps.store.runs.get(request.runId);
    return this.#deps.store.checkpoints.listByRun(request.runId);
  }

  async exportCheckpoint(request: ApiRequest<'exportCheckpoint'>): Promise<ExportedFile> {
    const format = request.format ?? 'safetensors';
    const { baseName, files } = await exportStoredCheckpoint(this.#deps.store, request.checkpointId, format, request.fp16 ?? false);
    // A torchrun package is a folder: it travels as one .zip of it.
    if (format === 'torchrun') return { fileName: `${baseName}-torchrun.zip`, bytes: zipFolder(`${baseName}-torchrun`, files) };
    return { fileName: files[0]!.path, bytes: files[0]!.bytes };
  }

  async importCheckpoint(request: ApiRequest<'importCheckpoint'>): Promise<{ runId: number; checkpointId: number }> {
    if (request.uploadId === undefined) return importCheckpointBytes(this.#deps.store, request.fileName, request.bytes!, request.name);
    // Read once (it is stored as one BLOB); the upload is used up whether or not it was a checkpoint.
    const bytes = await readFile(this.#uploadedFile(request.uploadId));
    try {
      return importCheckpointBytes(this.#deps.store, request.fileName, bytes, request.name);
    } finally {
      this.#deps.uploads!.consume(request.uploadId);
    }
  }

  /** The file behind an uploadId (serve mode); the desktop app passes bytes and has no upload folder. */
  #uploadedFile(uploadId: string): string {
    if (!this.#deps.uploads) throw new QuadraError('UNSUPPORTED', 'uploadId: this workstation takes files as bytes, it has no upload folder');
    return this.#deps.uploads.path(uploadId);
  }

  async runBenchmarkSuite(request: ApiRequest<'runBenchmarkSuite'>): Promise<{ suiteId: number }> {
    const { store, emit } = this.#deps;
    const hardware = await this.#deps.hardware();
    const suite = store.benchmarks.createSuite({ name: request.name, config: request });
    // Runs in the background; progress and the finished results arrive as events and in the store.
    void runSuite({
      store,
      suiteId: suite.id,
      request,
      hardware,
      ...(this.#deps.transport ? { transport: this.#deps.transport } : {}),
      probePytorch: () => this.#probePytorch(),
      onProgress: (progress) => emit('onDidProgressBenchmark', progress),
    });
    return { suiteId: suite.id };
  }

  /** A Python with torch, once found, is kept; after a failure the next call looks again (torch may have been installed). */
  async #probePytorch(): Promise<PytorchProbe> {
    const last = this.#pytorch ? await this.#pytorch : null;
    if (last?.available) return last;
    this.#pytorch = probePytorch();
    return this.#pytorch;
  }

  async getPytorchAvailability(_request: ApiRequest<'getPytorchAvailability'>): Promise<PytorchAvailability> {
    const probe = await this.#probePytorch();
    return { available: probe.available, reason: probe.reason };
  }

  async listBenchmarkSuites(_request: ApiRequest<'listBenchmarkSuites'>): Promise<BenchmarkSuiteRecord[]> {
    return this.#deps.store.benchmarks.listSuites();
  }

  async getBenchmarkResults(request: ApiRequest<'getBenchmarkResults'>): Promise<BenchmarkResultRecord[]> {
    return this.#deps.store.benchmarks.results(request.suiteId);
  }

  async setMonitoring(request: ApiRequest<'setMonitoring'>): Promise<{ enabled: boolean }> {
    const monitor = this.#deps.monitor;
    if (!monitor) throw new QuadraError('UNSUPPORTED', 'this workstation was started without a hardware monitor');
    if (request.enabled && !this.#stopMonitor) {
      const unsubscribe = monitor.onDidSample((sample) => this.#deps.emit('onDidSampleMonitor', { ...sample, ourGpuWorkers: this.#ourGpuWorkers() }));
      monitor.start();
      this.#stopMonitor = () => {
        unsubscribe();
        void monitor.stop();
      };
    } else if (!request.enabled && this.#stopMonitor) {
      this.#stopMonitor();
      this.#stopMonitor = null;
    }
    return { enabled: this.#stopMonitor !== null };
  }

  /** Every live run's workers that hold GPU buffers (webgpu), with how much, as they last reported. */
  #ourGpuWorkers(): OurGpuWorker[] {
    return [...this.#live.entries()].flatMap(([runId, run]) =>
      run.snapshot.workers.flatMap((w) =>
        w.memory?.gpuBytes != null ? [{ runId, rank: w.rank, pid: w.pid ?? null, backend: run.plan.backend, gpuBytes: w.memory.gpuBytes }] : [],
      ),
    );
  }

  /** Process ids of every live run's workers: the monitor marks them as ours. */
  workerPids(): number[] {
    return [...this.#live.values()].flatMap((run) => run.workerPids.filter((pid): pid is number => pid !== undefined));
  }

  /** Cancels every live run (each keeps a checkpoint) and waits for them. */
  async shutdown(): Promise<void> {
    for (const run of this.#live.values()) run.cancel();
    await Promise.allSettled([...this.#finished.values()]);
    this.#stopMonitor?.();
  }

  /** Starts a run in the background and answers as soon as it has an id. */
  #launch(start: (ctx: ServiceContext) => Promise<TrainingResult>): Promise<{ runId: number }> {
    const { store, emit } = this.#deps;
    return new Promise((resolve, reject) => {
      let startedId: number | null = null;
      void this.#deps.hardware().then((hardware) => {
        const finished = start({
          store,
          hardware,
          ...(this.#deps.transport ? { transport: this.#deps.transport } : {}),
          onStarted: (runId, run) => {
            startedId = runId;
            this.#live.set(runId, run);
            this.#finished.set(runId, finished);
            resolve({ runId });
          },
          onProgress: (runId, s) => {
            emit('onDidProgress', {
              runId,
              step: s.step,
              epoch: s.epoch,
              stepInEpoch: s.stepInEpoch,
              stepsPerEpoch: s.stepsPerEpoch,
              trainLoss: s.trainLoss,
              validationLoss: s.validationLoss,
              samplesPerSec: s.samplesPerSec,
              paused: s.paused,
              workers: s.workers.map((w) => ({
                rank: w.rank,
                pid: w.pid,
                rssBytes: w.memory?.rssBytes ?? null,
                tensors: w.memory?.tensors ?? null,
                tensorBytes: w.memory?.tensorBytes ?? null,
                gpuBytes: w.memory?.gpuBytes ?? null,
              })),
              lossScale: s.lossScale,
              skippedSteps: s.skippedSteps,
            });
          },
          onEpoch: (runId) => emit('onDidChangeRun', store.runs.get(runId)),
          onStatus: (runId) => emit('onDidChangeRun', store.runs.get(runId)),
        });
        finished.then(
          (result) => {
            this.#live.delete(result.runId);
            this.#finished.delete(result.runId);
            emit('onDidChangeRun', store.runs.get(result.runId));
          },
          (error: unknown) => {
            if (startedId === null) reject(error);
            else this.#finished.delete(startedId);
          },
        );
      }, reject);
    });
  }
}

/**
 * Registers a checkpoint file (ours, a PyTorch state_dict, or the original project's .pth) as a
 * finished run with one checkpoint, whose summary shows the checkpoint's step and epoch.
 */
export function importCheckpointBytes(store: Store, fileName: string, bytes: Uint8Array, name: string | undefined): { runId: number; checkpointId: number } {
  const contents = decodeCheckpoint(bytes, fileName);
  const config = parseEngineConfig({ ...(contents.engineConfig ?? {}), model: contents.model });
  const step = contents.step ?? 0;
  const epoch = wholeOrZero(contents.metadata.epoch);
  const backend = (BACKEND_IDS as readonly string[]).includes(contents.metadata.backend ?? '') ? (contents.metadata.backend as BackendId) : 'cpu';
  return store.db.transaction(() => {
    const run = store.runs.create({
      name: name ?? `imported ${path.basename(fileName)}`,
      config: { engine: config, importedFrom: path.basename(fileName), origin: contents.origin },
      mode: 'single',
      backend,
      devices: [],
      workers: 1,
      datasetId: null,
      ownerPid: null,
    });
    // An imported model is a finished run with one checkpoint; its name and config say where it came from.
    store.runs.setStatus(run.id, 'completed');
    const checkpoint = store.checkpoints.add({ runId: run.id, epoch, step, validationLoss: null, trainLoss: null, data: storableCheckpoint(bytes, contents) });
    store.runs.updateSummary(run.id, { steps: step, epochs: epoch });
    return { runId: run.id, checkpointId: checkpoint.id };
  })();
}

function wholeOrZero(text: string | undefined): number {
  const value = Number(text);
  return text !== undefined && Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

function safeName(fileName: string): string {
  const base = path.basename(fileName).replace(/[^\w.\- ]+/g, '_');
  return base.length > 0 && base !== '.' && base !== '..' ? base.slice(0, 120) : 'upload';
}
