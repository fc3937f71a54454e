import type { BackendId, EngineConfig } from '../../src-shared/engine-config';
import { QuadraError, toErrorData, type ErrorData } from '../../src-shared/errors';
import type { RunMode } from '../../src-shared/records';
import { MAX_SHARED_MEMORY_WORKERS } from '../../src-shared/run-config';
import { EpochSampler, gatherRows, type LastBatch, type PlannedStep } from '../data/sampler';
import type { GpuSituation } from '../engine/backends';
import type { LossParts, StepPhases } from '../engine/kernel';
import type { EngineSnapshot, WorkerMemory } from './protocol';
import { buildLayout, type ParamLayout } from '../engine/layout';
import { ADAPTER_ENV } from '../engine/webgpu-adapters';
import { createExchange } from './file-exchange';
import { abortSharedExchange, createSharedExchange, type SharedExchangeLayout } from './shared-exchange';
import { abortChunkExchange, createChunkExchange, type ChunkExchangeLayout } from './chunk-exchange';
import { probeSimd } from '../engine/simd/module';
import { planSimdSharedMemory } from '../engine/simd/shared-memory';
import { threadTransport } from './thread-transport';
import { DEFAULT_WORKER_ENTRY, forkTransport, type TransportFactory } from './transport';
import { WorkerHandle, type WorkerExit } from './worker-handle';

/** Everything a data-parallel run needs; the dataset is already loaded and split. */
export interface TrainingPlan {
  /** batchSize is the global batch, split across the workers. */
  config: EngineConfig;
  mode: RunMode;
  workers: number;
  backend: BackendId | 'auto';
  gpu: GpuSituation;
  epochs: number;
  data: Float32Array;
  trainRows: Uint32Array;
  validationRows: Uint32Array;
  lastBatch: LastBatch;
  checkpointEveryEpochs: number;
  /** webgpu in multi-gpu mode: the adapter (by Dawn's name) each rank opens. */
  adapters?: readonly string[];
  /** Resume: the engine state and where the sampler stood. */
  start?: { state: EngineSnapshot; epoch: number; stepInEpoch: number };
  /**
   * How workers start (default: child processes). The simd backend always uses threads of this
   * process (gradients through shared memory); native tfjs bindings are not thread-safe.
   */
  transport?: TransportFactory;
  /** How often progress is reported (default 250 ms: 4 a second, within the 2–10 asked for). */
  progressIntervalMs?: number;
  /** Workers time each step's phases and report them (events.stepPhases); benchmarks only. */
  profile?: boolean;
  /**
   * simd in threads: the workers' kernels share one memory and update in chunks (default). False
   * gives each kernel its own memory and exchanges through slots (ZeRO-1), as when the shared
   * memory would not fit wasm32's 4 GiB; tests compare the two.
   */
  simdSharedMemory?: boolean;
}

export interface WorkerStats {
  rank: number;
  pid: number | undefined;
  cudaVisibleDevices: string | null;
  memory: WorkerMemory | null;
  computeMs: number;
  dataWaitMs: number;
}

export interface ProgressSnapshot {
  step: number;
  epoch: number;
  stepInEpoch: number;
  stepsPerEpoch: number;
  /** The latest step's loss. */
  trainLoss: number | null;
  /** Measured at this step (an epoch's last, after it), else null: the next step clears it. */
  validationLoss: number | null;
  samplesPerSec: number | null;
  paused: boolean;
  elapsedS: number;
  workers: WorkerStats[];
  /** Mixed precision: the loss scale and the steps skipped for overflow (rank 0's, as last read). */
  lossScale: number | null;
  skippedSteps: number | null;
}

/** What one step measured: everything its metric point needs. */
export interface StepResult {
  step: number;
  epoch: number;
  stepInEpoch: number;
  /** The global batch's loss (the shards' losses weighted by their rows). */
  loss: LossParts;
  /** This epoch's samples per second so far. */
  samplesPerSec: number;
  /** Mixed precision: the loss scale and the steps skipped for overflow so far (rank 0's). */
  lossScale: number | null;
  skippedSteps: number | null;
}

export interface CheckpointRequest {
  epoch: number;
  stepInEpoch: number;
  step: number;
  trainLoss: number | null;
  validationLoss: number | null;
  state: EngineSnapshot;
  /** Where the sampler resumes from this checkpoint. */
  resumeAt: { epoch: number; stepInEpoch: number };
}

export interface TrainingEvents {
  progress?(snapshot: ProgressSnapshot): void;
  epochEnd?(summary: { epoch: number; step: number; trainLoss: number; validationLoss: number | null; samplesPerSec: number }): void;
  /** Persist a checkpoint; awaited, so a failure stops the run before more work is done. */
  checkpoint?(request: CheckpointRequest): Promise<void> | void;
  status?(status: 'running' | 'paused'): void;
  workersReady?(workers: WorkerStats[], backend: BackendId): void;
  /** After every step (cheap): benchmarks time steps exactly; the training service records each step's loss. */
  stepEnd?(step: number, realSamples: number, result: StepResult): void;
  /** With plan.profile: each worker's phase times (ms) for step `step` (numbered as stepEnd's), by rank. */
  stepPhases?(step: number, phases: Array<StepPhases | null>): void;
  /** After a completed run, before the workers stop (benchmarks time forward passes here). */
  beforeShutdown?(): Promise<void>;
}

export type RunOutcomeStatus = 'completed' | 'cancelled' | 'failed' | 'diverged';

export interface RunOutcome {
  status: RunOutcomeStatus;
  step: number;
  epoch: number;
  error: ErrorData | null;
  finalTrainLoss: number | null;
  bestValidationLoss: number | null;
  samplesPerSec: number | null;
  durationS: number;
  realSamples: number;
}

/**
 * Synchronous data-parallel training, like PyTorch DDP: rank 0's initial parameters go to every
 * worker; each step every worker computes gradients on its shard of the global batch, the mean
 * (weighted by shard size) goes back, and every worker applies the same AdamW update, so the
 * replicas stay bit-identical. Batches are sent one step ahead, so no worker waits for data.
 */
export class TrainingRun {
  readonly plan: TrainingPlan;
  #events: TrainingEvents;
  #workers: WorkerHandle[] = [];
  #stats: WorkerStats[] = [];
  #cancelled = false;
  #paused = false;
  #resumeGate: (() => void) | null = null;
  #failure: { promise: Promise<never>; fail: (error: QuadraError) => void };
  #snapshot: ProgressSnapshot;
  #started = 0;
  #sentBatches = new Set<number>();
  #sampler: EpochSampler;
  #exchange: ReturnType<typeof createExchange> | null = null;
  /** Threads: the slot exchange, or the chunk exchange when the kernels share one memory. */
  #shared: SharedExchangeLayout | ChunkExchangeLayout | null = null;

  constructor(plan: TrainingPlan, events: TrainingEvents = {}) {
    this.#sampler = TrainingRun.check(plan);
    this.plan = plan;
    this.#events = events;
    let fail!: (error: QuadraError) => void;
    const promise = new Promise<never>((_, reject) => (fail = reject));
    promise.catch(() => undefined);
    this.#failure = { promise, fail };
    this.#snapshot = {
      step: plan.start?.state.step ?? 0,
      epoch: plan.start?.epoch ?? 1,
      stepInEpoch: plan.start?.stepInEpoch ?? 0,
      stepsPerEpoch: this.#sampler.stepsPerEpoch(),
      trainLoss: null,
      validationLoss: null,
      samplesPerSec: null,
      paused: false,
      elapsedS: 0,
      lossScale: null,
      skippedSteps: null,
      workers: [],
    };
  }

  /**
   * Everything that would make the plan fail to start, checked before anything is recorded or
   * started: worker counts (GPUs, the shared exchange's room), and a sampler that has a batch to
   * give. Returns that sampler.
   */
  static check(plan: TrainingPlan): EpochSampler {
    if (!Number.isInteger(plan.workers) || plan.workers < 1) {
      throw new QuadraError('INVALID_ARGUMENT', `workers must be a whole number ≥ 1, got ${plan.workers}`, { field: 'workers' });
    }
    const gpus = plan.backend === 'webgpu' ? (plan.adapters?.length ?? 0) : plan.gpu.gpus.length;
    if (plan.mode === 'multi-gpu' && plan.workers > gpus) {
      throw new QuadraError('INVALID_ARGUMENT', `multi-gpu mode with ${plan.workers} workers needs ${plan.workers} GPUs, ${gpus} found`, {
        field: 'workers',
      });
    }
    if (plan.workers > 1 && usesSharedMemory(plan) && plan.workers > MAX_SHARED_MEMORY_WORKERS) {
      throw new QuadraError(
        'INVALID_ARGUMENT',
        `the ${plan.backend} backend trains at most ${MAX_SHARED_MEMORY_WORKERS} workers (its shared-memory gradient exchange), got ${plan.workers}`,
        { field: 'workers', max: MAX_SHARED_MEMORY_WORKERS },
      );
    }
    return new EpochSampler({
      indices: plan.trainRows,
      globalBatch: plan.config.batchSize,
      workers: plan.workers,
      seed: plan.config.seed,
      lastBatch: plan.lastBatch,
    });
  }

  cancel(): void {
    this.#cancelled = true;
    this.resume();
  }

  pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#snapshot.paused = true;
    this.#events.status?.('paused');
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#snapshot.paused = false;
    this.#resumeGate?.();
    this.#resumeGate = null;
    if (!this.#cancelled) this.#events.status?.('running');
  }

  get snapshot(): ProgressSnapshot {
    return { ...this.#snapshot, workers: this.#stats.map((s) => ({ ...s })) };
  }

  /** Eval-forward timings on rank 0 (ms per batch of `rows`, one number per repeat). */
  async timeForward(rows: number, iterations: number, repeats: number): Promise<number[]> {
    const reply = await this.#guard(this.#workers[0]!.request({ type: 'time-forward', rows, iterations, repeats }, 'timed'));
    return reply.msPerBatch;
  }

  /** Every replica's full state; call between steps (e.g. from the checkpoint event). */
  async replicaStates(): Promise<EngineSnapshot[]> {
    const replies = await Promise.all(this.#workers.map((w) => w.request({ type: 'get-state' }, 'state')));
    return replies.map((r) => r.state);
  }

  /** Worker process ids (for tests and the monitor). */
  get workerPids(): Array<number | undefined> {
    return this.#workers.map((w) => w.pid);
  }

  async run(): Promise<RunOutcome> {
    this.#started = performance.now();
    const timer = setInterval(() => this.#emitProgress(), this.plan.progressIntervalMs ?? 250);
    let outcome: RunOutcome;
    try {
      await this.#guard(this.#startWorkers());
      outcome = await this.#loop();
      if (outcome.status === 'completed') await this.#guard(this.#events.beforeShutdown?.() ?? Promise.resolve());
    } catch (error) {
      const data = toErrorData(error);
      outcome = this.#outcome(data.code === 'DIVERGED' ? 'diverged' : 'failed', data);
    } finally {
      clearInterval(timer);
    }
    this.#emitProgress();
    if (outcome.status === 'failed' || outcome.status === 'diverged') {
      // Threads waiting at the all-reduce barrier for a dead or failed peer stop waiting.
      if (this.#shared?.kind === 'shared') abortSharedExchange(this.#shared);
      else if (this.#shared) abortChunkExchange(this.#shared);
      await Promise.all(this.#workers.map((w) => w.kill()));
    }
    else await Promise.all(this.#workers.map((w) => w.shutdown()));
    this.#exchange?.remove();
    return outcome;
  }

  async #startWorkers(): Promise<void> {
    const { plan } = this;
    // The simd backend always trains in threads (also in Electron, whose default transport is a
    // utility process): its all-reduce is through shared memory.
    const factory = transportFor(plan);
    for (let rank = 0; rank < plan.workers; rank++) {
      const env = workerEnv(plan, rank);
      const worker = new WorkerHandle(rank, factory, env);
      worker.onUnexpectedExit((exit) => this.#failure.fail(workerDied(exit)));
      this.#workers.push(worker);
    }
    const workerConfig = { ...plan.config, batchSize: Math.max(1, Math.ceil(plan.config.batchSize / plan.workers)) };
    if (plan.workers > 1) {
      const layout = buildLayout(plan.config.model);
      const size = layout.total;
      // The optimiser shards cover what it updates: everything, or the field part when the spiking network gets no gradient.
      const updated = plan.config.model.spikeGradient === 'surrogate' ? size : layout.fieldCount;
      if (factory.sharesMemory) this.#shared = chunkExchangeFor(plan, layout, workerConfig.batchSize, updated) ?? createSharedExchange(plan.workers, size, updated);
      else this.#exchange = createExchange(plan.workers, size);
    }
    const exchange = this.#shared ?? (this.#exchange ? { kind: 'file' as const, file: this.#exchange.file, workers: this.#exchange.workers, size: this.#exchange.size } : null);
    const ready = await Promise.all(
      this.#workers.map((w) =>
        w.request({ type: 'init', rank: w.rank, worldSize: plan.workers, config: workerConfig, backend: plan.backend, gpu: plan.gpu, exchange, profile: plan.profile === true }, 'ready'),
      ),
    );
    this.#stats = ready.map((r, rank) => ({ rank, pid: r.pid, cudaVisibleDevices: r.cudaVisibleDevices, memory: null, computeMs: 0, dataWaitMs: 0 }));
    this.#events.workersReady?.(this.#stats.map((s) => ({ ...s })), ready[0]!.backend);
    // Rank 0's parameters (or the resumed state) go to every worker, so all replicas start equal.
    const state = plan.start?.state ?? (await this.#workers[0]!.request({ type: 'get-state' }, 'state')).state;
    const targets = plan.start ? this.#workers : this.#workers.slice(1);
    await Promise.all(targets.map((w) => w.request({ type: 'set-state', state }, 'ok')));
  }

  async #loop(): Promise<RunOutcome> {
    const { plan } = this;
    const startEpoch = plan.start?.epoch ?? 1;
    let startStep = plan.start?.stepInEpoch ?? 0;
    let step = plan.start?.state.step ?? 0;
    let realSamples = 0;
    let bestValidation: number | null = null;
    const steps = this.#sampler.stepsPerEpoch();
    for (let epoch = startEpoch; epoch <= plan.epochs; epoch++) {
      const epochStart = performance.now();
      let epochLoss = 0;
      let epochSteps = 0;
      let epochSamples = 0;
      // The step already sent to the workers (see below), if any.
      let ahead: Promise<LossParts> | null = null;
      for (let k = startStep; k < steps; k++) {
        let work = ahead;
        ahead = null;
        const planned = this.#sampler.step(epoch, k);
        if (!work) {
          if (this.#paused) await new Promise<void>((resolve) => (this.#resumeGate = resolve));
          if (this.#cancelled) {
            await this.#checkpoint(epoch, k, step, null, { epoch, stepInEpoch: k });
            return this.#outcome('cancelled', null, realSamples, bestValidation);
          }
          this.#prefetch(planned, step);
          work = this.#guard(this.#step(step));
        }
        const next = k + 1 < steps ? this.#sampler.step(epoch, k + 1) : epoch < plan.epochs ? this.#sampler.step(epoch + 1, 0) : null;
        // Where workers apply their own updates (one worker, or the shared-memory all-reduce), the
        // next step's request goes out now with its data, queued behind this one, so no worker
        // idles for the round trip through this thread (one message per worker and step). Not
        // across an epoch end (validation and checkpoints come first), nor while pausing or
        // cancelling: those take effect once the queued step is done. Otherwise the next step's
        // data alone goes out now, while this step computes.
        if (this.#pipelined() && k + 1 < steps && !this.#paused && !this.#cancelled) {
          ahead = this.#guard(this.#step(step + 1, next));
          ahead.catch(() => undefined);
        } else if (next) {
          this.#prefetch(next, step + 1);
        }
        const loss = await work;
        step += 1;
        realSamples += planned.realSamples;
        epochSamples += planned.realSamples;
        epochLoss += loss.loss;
        epochSteps += 1;
        const samplesPerSec = epochSamples / ((performance.now() - epochStart) / 1000);
        Object.assign(this.#snapshot, { step, epoch, stepInEpoch: k + 1, trainLoss: loss.loss, validationLoss: null, samplesPerSec });
        const { lossScale, skippedSteps } = this.#snapshot;
        this.#events.stepEnd?.(step, planned.realSamples, { step, epoch, stepInEpoch: k + 1, loss, samplesPerSec, lossScale, skippedSteps });
      }
      startStep = 0;
      const validationLoss = await this.#guard(this.#validate());
      if (validationLoss !== null) bestValidation = bestValidation === null ? validationLoss : Math.min(bestValidation, validationLoss);
      this.#snapshot.validationLoss = validationLoss;
      const trainLoss = epochSteps > 0 ? epochLoss / epochSteps : Number.NaN;
      this.#events.epochEnd?.({ epoch, step, trainLoss, validationLoss, samplesPerSec: epochSamples / ((performance.now() - epochStart) / 1000) });
      const last = epoch === plan.epochs;
      if (last || epoch % plan.checkpointEveryEpochs === 0) {
        await this.#checkpoint(epoch, steps, step, validationLoss, { epoch: epoch + 1, stepInEpoch: 0 });
      }
    }
    return this.#outcome('completed', null, realSamples, bestValidation);
  }

  #pipelined(): boolean {
    return this.#workers.length === 1 || this.#shared !== null;
  }

  /** One synchronous data-parallel step: gradients from every shard, weighted mean, same update everywhere. */
  /** `planned`: the step's data travels with the request (unless it went ahead already). */
  async #step(step: number, planned: PlannedStep | null = null): Promise<LossParts> {
    const batches = planned && !this.#sentBatches.has(step) ? this.#batchesOf(planned, step) : null;
    // One worker applies its own gradients; several write theirs to the shared exchange.
    const replies = await Promise.all(this.#workers.map((w) => w.request({ type: 'compute', step, ...(batches?.[w.rank] ? { batch: batches[w.rank] } : {}) }, 'gradients')));
    const totalRows = replies.reduce((sum, r) => sum + r.rows, 0);
    const scaler = replies[0]?.scaler;
    if (scaler) Object.assign(this.#snapshot, { lossScale: scaler.scale, skippedSteps: scaler.skippedSteps });
    this.#events.stepPhases?.(step + 1, replies.map((r) => r.phases ?? null));
    replies.forEach((reply, rank) => {
      const stats = this.#stats[rank]!;
      stats.memory = reply.memory;
      stats.computeMs = reply.computeMs;
      stats.dataWaitMs += reply.dataWaitMs;
    });
    if (this.#workers.length > 1 && !this.#shared) {
      // The mean is weighted by shard size, so N shards give the gradient of the whole global batch.
      const weights = replies.map((r) => r.rows / totalRows);
      await Promise.all(this.#workers.map((w) => w.request({ type: 'apply', weights }, 'applied')));
    }
    const parts: LossParts = { loss: 0, reconstructionLoss: 0, spikeLoss: 0 };
    for (const reply of replies) {
      const weight = reply.rows / totalRows;
      parts.loss += weight * reply.loss.loss;
      parts.reconstructionLoss += weight * reply.loss.reconstructionLoss;
      parts.spikeLoss += weight * reply.loss.spikeLoss;
    }
    return parts;
  }

  #prefetch(planned: PlannedStep, step: number): void {
    if (this.#sentBatches.has(step)) return;
    for (const [rank, batch] of this.#batchesOf(planned, step).entries()) if (batch) this.#workers[rank]!.post({ type: 'batch', step, ...batch });
  }

  /** Each rank's rows of a step, gathered once: the step is marked sent. */
  #batchesOf(planned: PlannedStep, step: number): Array<{ rows: number; data: Float32Array } | undefined> {
    this.#sentBatches.add(step);
    this.#sentBatches.delete(step - 2);
    const width = this.plan.config.model.fieldSize;
    const batches: Array<{ rows: number; data: Float32Array } | undefined> = [];
    for (const shard of planned.shards) batches[shard.rank] = { rows: shard.rows.length, data: gatherRows(this.plan.data, width, shard.rows) };
    return batches;
  }

  /** Validation loss on rank 0, in chunks of the global batch; null when there is no validation split. */
  async #validate(): Promise<number | null> {
    const rows = this.plan.validationRows;
    if (rows.length === 0) return null;
    const width = this.plan.config.model.fieldSize;
    const chunk = this.plan.config.batchSize;
    let weighted = 0;
    for (let start = 0; start < rows.length; start += chunk) {
      const part = rows.subarray(start, Math.min(rows.length, start + chunk));
      const reply = await this.#workers[0]!.request({ type: 'evaluate', rows: part.length, data: gatherRows(this.plan.data, width, part) }, 'evaluated');
      weighted += reply.loss.loss * part.length;
    }
    return weighted / rows.length;
  }

  async #checkpoint(epoch: number, stepInEpoch: number, step: number, validationLoss: number | null, resumeAt: { epoch: number; stepInEpoch: number }): Promise<void> {
    if (!this.#events.checkpoint) return;
    // Sharded optimiser moments (shared-memory exchange) are gathered by every worker together.
    const asked = this.#shared?.kind === 'shared' ? this.#workers : this.#workers.slice(0, 1);
    const replies = await this.#guard(Promise.all(asked.map((w) => w.request({ type: 'get-state' }, 'state'))));
    const state = replies[0]?.state;
    if (!state) throw new QuadraError('INTERNAL', 'checkpoint: no worker to read the state from');
    await this.#events.checkpoint({ epoch, stepInEpoch, step, trainLoss: this.#snapshot.trainLoss, validationLoss, state, resumeAt });
  }

  /** Races work against a worker dying, so a dead worker fails the run at once rather than hanging it. */
  #guard<T>(work: Promise<T>): Promise<T> {
    return Promise.race([work, this.#failure.promise]);
  }

  #emitProgress(): void {
    this.#snapshot.elapsedS = (performance.now() - this.#started) / 1000;
    this.#events.progress?.(this.snapshot);
  }

  #outcome(status: RunOutcomeStatus, error: ErrorData | null, realSamples = 0, bestValidationLoss: number | null = null): RunOutcome {
    const durationS = (performance.now() - this.#started) / 1000;
    return {
      status,
      step: this.#snapshot.step,
      epoch: this.#snapshot.epoch,
      error,
      finalTrainLoss: this.#snapshot.trainLoss,
      bestValidationLoss,
      samplesPerSec: this.#snapshot.samplesPerSec,
      durationS,
      realSamples,
    };
  }
}

function workerDied(exit: WorkerExit): QuadraError {
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  return new QuadraError('INTERNAL', `worker rank ${exit.rank} (pid ${exit.pid}) ${how}`, { rank: exit.rank, code: exit.code, signal: exit.signal });
}

const DEFAULT_FORK_TRANSPORT = forkTransport(DEFAULT_WORKER_ENTRY);

/**
 * How the plan's workers start: the transport's own choice for the plan's backend if it has one
 * (the app's webgpu windows); simd in threads (its all-reduce is through shared memory), running
 * the same entry as the plan's transport (e.g. the app's bundled worker); otherwise the plan's
 * transport, or child processes.
 */
function transportFor(plan: TrainingPlan): TransportFactory {
  const ownTransport = plan.transport?.forBackend?.(plan.backend);
  if (ownTransport) return ownTransport;
  if (plan.backend === 'simd' && !plan.transport?.sharesMemory) return threadTransport(plan.transport?.entry ?? DEFAULT_WORKER_ENTRY);
  return plan.transport ?? DEFAULT_FORK_TRANSPORT;
}

/** simd threads whose kernels can share one memory: the chunk exchange (null: the slot exchange). */
function chunkExchangeFor(plan: TrainingPlan, layout: ParamLayout, rowsPerWorker: number, updated: number): ChunkExchangeLayout | null {
  if (plan.backend !== 'simd' || plan.simdSharedMemory === false) return null;
  const probe = probeSimd();
  if (!probe.available) return null;
  const simd = planSimdSharedMemory(probe.module, plan.config.model, layout, plan.workers, rowsPerWorker, updated);
  return simd ? createChunkExchange(simd, layout.fieldCount) : null;
}

function usesSharedMemory(plan: TrainingPlan): boolean {
  return transportFor(plan).sharesMemory === true;
}

/** One GPU per worker: CUDA numbers the visible devices from 0 in each process; Dawn picks adapters by name. */
function workerEnv(plan: TrainingPlan, rank: number): Record<string, string> {
  if (plan.mode !== 'multi-gpu') return {};
  if (plan.backend === 'webgpu') return { [ADAPTER_ENV]: plan.adapters![rank]! };
  return { CUDA_VISIBLE_DEVICES: String(rank) };
}
