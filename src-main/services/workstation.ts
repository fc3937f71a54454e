import { rmSync } from 'node:fs';
import path from 'node:path';
import {
  DEFAULT_MONITOR_INTERVAL_MS,
  type ApiCaller,
  type ApiEvent,
  type ApiRequest,
  type DatasetPreview,
  type ExportedFile,
  type HardwareReport,
  type RunDetail,
  type WorkstationApi,
  type WorkstationEvents,
} from '../../src-shared/api';
import type { PytorchAvailability } from '../../src-shared/benchmarks';
import { QuadraError } from '../../src-shared/errors';
import type { HardwareInfo } from '../../src-shared/hardware';
import type { MonitorSample, OurGpuWorker } from '../../src-shared/monitor';
import type { BenchmarkResultRecord, BenchmarkSuiteRecord, CheckpointRecord, DatasetRecord, MetricPoint, RunRecord } from '../../src-shared/records';
import { probePytorch, type PytorchProbe } from '../bench/pytorch-bench';
import { runSuite } from '../bench/suite';
import { getOptimalConfig } from '../engine/auto-config';
import { probeBackends } from '../engine/backends';
import type { MonitorSource } from '../hardware/gpu-monitor';
import type { Store } from '../store/database';
import type { TrainingRun } from '../training/coordinator';
import type { TransportFactory } from '../training/transport';
import { importedRecord } from './datasets';
import { inProcessOffload } from './offload/offload';
import type { Offload, PreparedCheckpointImport } from './offload/protocol';
import { prepareCheckpointImport } from './offload/tasks';
import { requestRunControl, resumeTraining, startTraining, type ServiceContext, type TrainingResult } from './training-service';

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
  /**
   * Where checkpoint encoding and decoding, dataset parsing and metric downsampling run: the
   * workstation's offload thread (createWorkstation); without one, this thread.
   */
  offload?: Offload;
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
  /** Each client that watches the monitor, with its own interval and when it was last sent a sample. */
  #watchers = new Map<ApiCaller, { intervalMs: number; lastSentAt: number }>();
  /** Clients whose disconnect is already listened for. */
  #hooked = new WeakSet<ApiCaller>();
  #stopMonitor: (() => void) | null = null;
  /** The interval the monitor runs at: the smallest any watcher asked for. */
  #monitorIntervalMs: number | null = null;
  /** Calls that come without a client (in-process use) get their events through deps.emit. */
  readonly #everyone: ApiCaller = { send: (event, payload) => this.#deps.emit(event, payload), onDidDisconnect: () => undefined };
  /** Importing torch takes a second or more: a Python that has it is found once per process. */
  #pytorch: Promise<PytorchProbe> | null = null;
  /** The calling thread's stand-in when no offload thread was given. */
  #inProcess: Offload | null = null;

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
    // Written out (an upload is linked where it lies), parsed and cut to five rows in the offload thread.
    const source = request.uploadId !== undefined ? { path: this.#uploadedFile(request.uploadId) } : { bytes: request.bytes! };
    return this.#offload().run('previewDataset', { fileName: safeName(request.fileName), source, ...(request.fieldSize === undefined ? {} : { fieldSize: request.fieldSize }) });
  }

  async importDataset(request: ApiRequest<'importDataset'>): Promise<DatasetRecord> {
    // Kept under a name derived from the content, in the server's own data folder. Hashing, moving
    // or writing, and parsing run in the offload thread; the record is written here.
    const folder = path.join(this.#deps.dataDir, 'datasets');
    const fileName = safeName(request.fileName);
    let kept: { file: string; existed: boolean };
    if (request.uploadId !== undefined) {
      const upload = this.#uploadedFile(request.uploadId);
      try {
        kept = await this.#offload().run('keepDatasetFile', { folder, fileName, source: { path: upload } });
      } finally {
        this.#deps.uploads!.consume(request.uploadId);
      }
    } else {
      kept = await this.#offload().run('keepDatasetFile', { folder, fileName, source: { bytes: request.bytes! } });
    }
    try {
      const options = request.fieldSize === undefined ? {} : { expectedWidth: request.fieldSize, textWidth: request.fieldSize };
      const loaded = await this.#offload().run('loadDataset', { file: kept.file, options });
      return importedRecord(this.#deps.store, loaded, request.name ?? request.fileName);
    } catch (error) {
      // The same content under the same name was already there (maybe another dataset's file): it stays, whatever happens.
      if (!kept.existed) rmSync(kept.file, { force: true });
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
    // Downsampling a long run's points in SQL takes a while: the offload thread reads them.
    return this.#offload().run('metrics', { runId, range });
  }

  /**
   * A run trained here is paused, resumed or cancelled at once; one trained by another process
   * (`quadra train`, another workstation) through the database: its owner takes the request
   * within half a second, and the run comes back as it then stands.
   */
  async controlRun(request: ApiRequest<'controlRun'>): Promise<RunRecord> {
    const live = this.#live.get(request.runId);
    if (!live) {
      const { run } = await requestRunControl(this.#deps.store, request.runId, request.action);
      this.#deps.emit('onDidChangeRun', run);
      return run;
    }
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
    // The offload thread reads the checkpoint, decodes and encodes it (a torchrun package: zips its folder).
    return this.#offload().run('exportCheckpoint', { checkpointId: request.checkpointId, format: request.format ?? 'safetensors', fp16: request.fp16 ?? false });
  }

  async importCheckpoint(request: ApiRequest<'importCheckpoint'>): Promise<{ runId: number; checkpointId: number }> {
    // Decoded (a .pth re-encoded) in the offload thread; recorded here, by the one writer.
    if (request.uploadId === undefined) {
      const prepared = await this.#offload().run('prepareCheckpointImport', { fileName: request.fileName, source: { bytes: request.bytes! } });
      return recordCheckpointImport(this.#deps.store, request.fileName, prepared, request.name);
    }
    // Read once (it is stored as one BLOB); the upload is used up whether or not it was a checkpoint.
    const upload = this.#uploadedFile(request.uploadId);
    try {
      const prepared = await this.#offload().run('prepareCheckpointImport', { fileName: request.fileName, source: { path: upload } });
      return recordCheckpointImport(this.#deps.store, request.fileName, prepared, request.name);
    } finally {
      this.#deps.uploads!.consume(request.uploadId);
    }
  }

  #offload(): Offload {
    if (this.#deps.offload) return this.#deps.offload;
    this.#inProcess ??= inProcessOffload(this.#deps.store);
    return this.#inProcess;
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

  /**
   * Turns monitoring on or off for `caller` alone (a WebSocket session, an app window); a client
   * that disconnects stops watching. One monitor runs while any client watches, at the smallest
   * interval asked for; each client gets samples no faster than its own interval.
   */
  async setMonitoring(request: ApiRequest<'setMonitoring'>, caller: ApiCaller = this.#everyone): Promise<{ enabled: boolean; intervalMs: number | null }> {
    if (!this.#deps.monitor) throw new QuadraError('UNSUPPORTED', 'this workstation was started without a hardware monitor');
    if (request.enabled) {
      const intervalMs = request.intervalMs ?? DEFAULT_MONITOR_INTERVAL_MS;
      const watcher = this.#watchers.get(caller);
      if (watcher) watcher.intervalMs = intervalMs;
      else this.#watchers.set(caller, { intervalMs, lastSentAt: 0 });
      if (!this.#hooked.has(caller)) {
        this.#hooked.add(caller);
        caller.onDidDisconnect(() => {
          if (this.#watchers.delete(caller)) this.#updateMonitor();
        });
      }
    } else this.#watchers.delete(caller);
    this.#updateMonitor();
    return { enabled: this.#watchers.has(caller), intervalMs: this.#watchers.get(caller)?.intervalMs ?? null };
  }

  /** Starts, retunes or stops the one monitor for the clients now watching. */
  #updateMonitor(): void {
    const monitor = this.#deps.monitor;
    if (!monitor) return;
    if (this.#watchers.size === 0) {
      this.#stopMonitor?.();
      this.#stopMonitor = null;
      this.#monitorIntervalMs = null;
      return;
    }
    if (!this.#stopMonitor) {
      const unsubscribe = monitor.onDidSample((sample) => this.#sendSample(sample));
      this.#stopMonitor = () => {
        unsubscribe();
        void monitor.stop();
      };
    }
    const fastest = Math.min(...[...this.#watchers.values()].map((w) => w.intervalMs));
    if (fastest !== this.#monitorIntervalMs) {
      this.#monitorIntervalMs = fastest;
      monitor.start(fastest);
    }
  }

  /** A sample goes to each watcher whose own interval has (about) passed since its last one. */
  #sendSample(sample: MonitorSample): void {
    // Half a tick of slack, so timer jitter never makes a client skip a whole tick.
    const slack = (this.#monitorIntervalMs ?? 0) / 2;
    let payload: MonitorSample | null = null;
    for (const [caller, watcher] of this.#watchers) {
      if (sample.time - watcher.lastSentAt < watcher.intervalMs - slack) continue;
      watcher.lastSentAt = sample.time;
      payload ??= { ...sample, ourGpuWorkers: this.#ourGpuWorkers() };
      caller.send('onDidSampleMonitor', payload);
    }
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
    this.#watchers.clear();
    this.#updateMonitor();
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
          onProgress: (progress) => emit('onDidProgress', progress),
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
  return recordCheckpointImport(store, fileName, prepareCheckpointImport(fileName, bytes), name);
}

/** Writes a decoded checkpoint file (prepareCheckpointImport) as an imported run, in one transaction. */
export function recordCheckpointImport(store: Store, fileName: string, prepared: PreparedCheckpointImport, name: string | undefined): { runId: number; checkpointId: number } {
  const { config, origin, step, epoch, backend, data } = prepared;
  return store.db.transaction(() => {
    const run = store.runs.create({
      name: name ?? `imported ${path.basename(fileName)}`,
      config: { engine: config, importedFrom: path.basename(fileName), origin },
      mode: 'single',
      backend,
      devices: [],
      workers: 1,
      datasetId: null,
      ownerPid: null,
    });
    // An imported model is a finished run with one checkpoint; its name and config say where it came from.
    store.runs.setStatus(run.id, 'completed');
    const checkpoint = store.checkpoints.add({ runId: run.id, epoch, step, validationLoss: null, trainLoss: null, data });
    store.runs.updateSummary(run.id, { steps: step, epochs: epoch });
    return { runId: run.id, checkpointId: checkpoint.id };
  })();
}

function safeName(fileName: string): string {
  const base = path.basename(fileName).replace(/[^\w.\- ]+/g, '_');
  return base.length > 0 && base !== '.' && base !== '..' ? base.slice(0, 120) : 'upload';
}
