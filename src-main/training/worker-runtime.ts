import type { BackendId, EngineConfig } from '../../src-shared/engine-config';
import { toErrorData, QuadraError } from '../../src-shared/errors';
import type { GpuSituation } from '../engine/backends';
import type { EngineCore } from '../engine/engine-core';
import type { ModelKernel, StepPhases } from '../engine/kernel';
import { Rng } from '../engine/random';
import type { SimdMemoryPlacement } from '../engine/simd/simd-kernel';
import { ChunkExchangeClient, type ChunkUpdater } from './chunk-exchange';
import type { ExchangeLayout } from './file-exchange';
import { SharedExchangeClient, type SharedExchangeLayout } from './shared-exchange';
import type { FromWorker, ParentChannel, ScalerReport, ToWorker } from './protocol';

// No Node import in this file or below it (type imports aside): a Chromium page bundles it too
// (browser-worker.ts). What differs between Node and a page comes in through WorkerPlatform.

/** What the worker reports about where it runs (its 'ready' reply). */
export interface WorkerHost {
  pid: number;
  cudaVisibleDevices: string | null;
}

/** What 'init' asks the platform to build. */
export interface WorkerEngineOptions {
  config: EngineConfig;
  backend: BackendId | 'auto';
  gpu: GpuSituation;
  rank: number;
  /** simd threads with a chunk exchange: where this worker's kernel lives in the shared memory. */
  placement?: SimdMemoryPlacement;
}

/** The file exchange's worker end (file-exchange.ts: a /dev/shm file shared by processes). */
export interface FileExchange {
  write(rank: number, gradients: Float32Array): void;
  /** Every slot's weighted sum; the array may be reused by the next call. */
  reduce(weights: readonly number[]): Float32Array;
  close(): void;
}

/**
 * What the worker needs from where it runs: Node's (node-worker-platform.ts: OscillatorEngine with
 * backend selection, the /dev/shm file exchange) or a page's (browser-worker-platform.ts: the
 * webgpu kernel on navigator.gpu, no files).
 */
export interface WorkerPlatform {
  createEngine(options: WorkerEngineOptions): Promise<EngineCore<ModelKernel>>;
  /** Opens the coordinator's exchange file, or refuses with the reason where there are no files. */
  openFileExchange(layout: ExchangeLayout): FileExchange;
  /**
   * Whether this thread may block in Atomics.wait (Node's threads and processes may; a page's main
   * thread may not, so it waits for the shared-memory barrier with Atomics.waitAsync).
   */
  mayBlock: boolean;
}

/**
 * A training worker: one engine replica behind one ParentChannel, whatever transport carries it
 * (the entry, worker-main.ts, picks the channel). It computes gradients on its shard, gets the mean
 * (from the coordinator's 'apply', or with shared memory from the other threads directly), and
 * applies the same AdamW update as every other replica. The kernel may answer with promises (a GPU
 * kernel's readback), so its results are awaited; the CPU kernels' answers cost one microtask each.
 */
export function serveWorker(channel: ParentChannel<ToWorker, FromWorker>, host: WorkerHost, platform: WorkerPlatform): void {
  let engine: EngineCore<ModelKernel> | null = null;
  let exchange: FileExchange | null = null;
  let shared: SharedExchangeClient | null = null;
  let chunks: ChunkExchangeClient | null = null;
  let rank = 0;
  /** ZeRO-1: moments of other workers' shards are stale here until gathered (a snapshot). */
  let momentsScattered = false;
  /** Profiling: when the previous step's work ended (the gap to the next is 'betweenSteps'). */
  let profiling = false;
  let lastStepEnd = 0;
  const batches = new Map<number, { rows: number; data: Float32Array }>();
  let batchArrived: (() => void) | null = null;
  let queue: Promise<void> = Promise.resolve();

  const send = (message: FromWorker) => channel.send(message);

  function requireEngine(): EngineCore<ModelKernel> {
    if (!engine) throw new QuadraError('INTERNAL', 'worker: no engine yet (init first)');
    return engine;
  }

  function release(): void {
    engine?.dispose();
    engine = null;
    exchange?.close();
    exchange = null;
    shared = null;
    chunks = null;
  }

  async function waitForBatch(step: number): Promise<{ rows: number; data: Float32Array; waitedMs: number }> {
    const start = performance.now();
    while (!batches.has(step)) await new Promise<void>((resolve) => (batchArrived = resolve));
    const batch = batches.get(step)!;
    batches.delete(step);
    return { ...batch, waitedMs: performance.now() - start };
  }

  async function handle(message: ToWorker): Promise<void> {
    switch (message.type) {
      case 'init': {
        // The exchange first: a platform that cannot take part refuses before building an engine.
        exchange = message.exchange?.kind === 'file' ? platform.openFileExchange(message.exchange) : null;
        shared = message.exchange?.kind === 'shared' ? openSharedExchange(message.exchange, message.rank) : null;
        chunks = message.exchange?.kind === 'chunks' ? new ChunkExchangeClient(message.exchange, message.rank) : null;
        const placement = chunks ? placementOf(chunks) : undefined;
        engine = await platform.createEngine({ config: message.config, backend: message.backend, gpu: message.gpu, rank: message.rank, ...(placement ? { placement } : {}) });
        if (chunks && !updatesChunks(engine.kernel)) throw new QuadraError('INTERNAL', `worker rank ${message.rank}: its kernel cannot take part in the shared-memory update`);
        rank = message.rank;
        profiling = message.profile === true;
        if (shared && platform.mayBlock && shardsOptimizer(engine.kernel)) {
          const [start, end] = shared.shard;
          engine.kernel.setUpdateShard(start, end);
        }
        send({
          type: 'ready',
          replyTo: message.seq,
          pid: host.pid,
          backend: engine.backend.id,
          report: engine.backend.report,
          cudaVisibleDevices: host.cudaVisibleDevices,
        });
        return;
      }
      case 'set-state':
        await requireEngine().setState(message.state);
        momentsScattered = false;
        send({ type: 'ok', replyTo: message.seq });
        return;
      case 'get-state': {
        // Sharded moments: every worker is asked (the coordinator does), and they gather here.
        if (momentsScattered && shared) gatherMoments(requireEngine().kernel, shared);
        momentsScattered = false;
        const state = await requireEngine().getState();
        send({ type: 'state', replyTo: message.seq, state });
        return;
      }
      case 'compute': {
        const e = requireEngine();
        const kernel: ModelKernel = e.kernel;
        const batch = message.batch ? { ...message.batch, waitedMs: 0 } : await waitForBatch(message.step);
        const start = performance.now();
        const phases: StepPhases | null = profiling ? { betweenSteps: lastStepEnd > 0 ? start - lastStepEnd : 0 } : null;
        kernel.profilePhases?.(phases);
        let loss;
        let applied = false;
        let exchangeMs = 0;
        if (chunks && updatesChunks(kernel)) {
          ({ loss, applied, exchangeMs } = await stepChunked(e, kernel, chunks, batch, phases));
        } else if (shared && platform.mayBlock && shardsOptimizer(kernel)) {
          ({ loss, applied, exchangeMs } = await stepSharded(e, kernel, shared, message.step, batch, phases));
          if (applied) momentsScattered = true;
        } else if (shared) {
          ({ loss, applied, exchangeMs } = await stepShared(e, shared, message.step, batch, platform.mayBlock, phases));
        } else {
          loss = await e.computeGradients(batch.data, batch.rows);
          if (exchange) exchange.write(rank, await kernel.readGradients());
          else {
            await e.applyGradients();
            applied = true;
          }
        }
        kernel.profilePhases?.(null);
        const memory = e.memoryStats();
        const scaler = await scalerReport(kernel, message.step);
        send({
          type: 'gradients',
          replyTo: message.seq,
          step: message.step,
          rows: batch.rows,
          loss,
          computeMs: performance.now() - start,
          dataWaitMs: batch.waitedMs,
          memory: { rssBytes: memory.rssBytes, tensors: memory.tensors, tensorBytes: memory.tensorBytes, gpuBytes: e.backend.id === 'webgpu' ? memory.tensorBytes : null },
          applied,
          exchangeMs,
          ...(scaler ? { scaler } : {}),
          ...(phases ? { phases } : {}),
        });
        lastStepEnd = performance.now();
        return;
      }
      case 'apply': {
        const e = requireEngine();
        const kernel: ModelKernel = e.kernel;
        if (!exchange) throw new QuadraError('INTERNAL', 'worker: apply without a gradient exchange');
        await kernel.writeGradients(exchange.reduce(message.weights));
        await e.applyGradients();
        send({ type: 'applied', replyTo: message.seq });
        return;
      }
      case 'evaluate': {
        const result = await requireEngine().processBatch(message.data, message.rows);
        send({
          type: 'evaluated',
          replyTo: message.seq,
          rows: message.rows,
          loss: { loss: result.loss, reconstructionLoss: result.reconstructionLoss, spikeLoss: result.spikeLoss },
        });
        return;
      }
      case 'time-forward': {
        const e = requireEngine();
        const batch = new Rng(e.config.seed + 13).fillNormal(new Float32Array(message.rows * e.config.model.fieldSize), 1);
        for (let i = 0; i < 3; i++) await e.processBatch(batch, message.rows);
        const msPerBatch: number[] = [];
        for (let r = 0; r < message.repeats; r++) {
          const start = performance.now();
          for (let i = 0; i < message.iterations; i++) await e.processBatch(batch, message.rows);
          msPerBatch.push((performance.now() - start) / message.iterations);
        }
        send({ type: 'timed', replyTo: message.seq, msPerBatch });
        return;
      }
      case 'shutdown':
        release();
        send({ type: 'ok', replyTo: message.seq });
        channel.close();
        return;
      case 'batch':
        return;
    }
  }

  function receive(message: ToWorker): void {
    // Batches are stored as they arrive (not queued), so a compute waiting for one is woken at once.
    if (message.type === 'batch') {
      batches.set(message.step, { rows: message.rows, data: message.data });
      batchArrived?.();
      batchArrived = null;
      return;
    }
    queue = queue.then(() =>
      handle(message).catch((error: unknown) => {
        send({ type: 'error', replyTo: message.seq, error: toErrorData(error) });
      }),
    );
  }

  channel.onMessage(receive);
  channel.onClose(release);
}

/** The kernel's own in-place all-reduce, when it has one (capabilities, not classes: any kernel may). */
type InPlaceReducer = ModelKernel & Required<Pick<ModelKernel, 'gradientView' | 'allReduce'>>;

function reducesInPlace(kernel: ModelKernel): kernel is InPlaceReducer {
  return kernel.capabilities.allReducesInPlace && kernel.gradientView !== undefined && kernel.allReduce !== undefined;
}

/**
 * One step with the shared-memory all-reduce: gradients go into this worker's slot, every worker
 * waits for the others, computes the same mean and applies it. A worker whose step failed (or
 * whose gradients could not be read) still arrives, with no gradients, so the others skip the
 * update instead of waiting forever.
 */
async function stepShared(e: EngineCore<ModelKernel>, client: SharedExchangeClient, step: number, batch: { rows: number; data: Float32Array }, mayBlock: boolean, phases: StepPhases | null) {
  const kernel: ModelKernel = e.kernel;
  const exchange = (gradients: Float32Array | null) => (mayBlock ? client.exchange(step, gradients, batch.rows, phases) : client.exchangeAsync(step, gradients, batch.rows));
  // A kernel that reduces in place has its gradients read and written in its own memory.
  const direct = reducesInPlace(kernel) ? kernel : null;
  let loss;
  let gradients: Float32Array;
  let start: number;
  try {
    loss = await e.computeGradients(batch.data, batch.rows);
    start = performance.now();
    gradients = direct ? direct.gradientView() : await kernel.readGradients();
  } catch (error) {
    await exchange(null);
    throw error;
  }
  const weights = await exchange(gradients);
  if (!weights) return { loss, applied: false, exchangeMs: performance.now() - start };
  const reduceStart = performance.now();
  if (direct) {
    await direct.allReduce(client.rank, weights, client.slots(step));
  } else {
    const mean = new Float32Array(client.layout.size);
    client.reduceInto(step, weights, mean);
    await kernel.writeGradients(mean);
  }
  if (phases) lap(phases, 'reduce', reduceStart);
  const exchangeMs = performance.now() - start;
  await e.applyGradients();
  return { loss, applied: true, exchangeMs };
}

/** Where this worker's kernel lives in the memory every worker's kernel shares. */
function placementOf(client: ChunkExchangeClient): SimdMemoryPlacement {
  const { memory, sharedBase, ownBases, capacity } = client.layout.simd;
  return { memory, sharedBase, ownBase: ownBases[client.rank]!, capacity };
}

type ChunkKernel = ModelKernel & ChunkUpdater;

function updatesChunks(kernel: ModelKernel): kernel is ChunkKernel {
  return kernel.capabilities.sharedMemory === true && kernel.updateChunk !== undefined;
}

/**
 * One step over the chunk exchange (kernels in one shared memory): the field gradients are posted
 * as soon as the backward has them, so a worker done early starts the update's field chunks while
 * the others finish; then every worker takes chunks until all are done. A failed step still posts,
 * flagged, and every worker skips the update.
 */
async function stepChunked(e: EngineCore<ModelKernel>, kernel: ChunkKernel, client: ChunkExchangeClient, batch: { rows: number; data: Float32Array }, phases: StepPhases | null) {
  let posted = false;
  const hooks = {
    fieldGradientsReady: () => {
      client.postField(batch.rows, true);
      posted = true;
    },
  };
  let loss;
  try {
    loss = await e.computeGradients(batch.data, batch.rows, hooks);
    if (!posted) hooks.fieldGradientsReady();
  } catch (error) {
    if (!posted) client.postField(batch.rows, false);
    client.postAll();
    throw error;
  }
  const start = performance.now();
  client.postAll();
  const weights = client.weights(phases);
  if (!weights) return { loss, applied: false, exchangeMs: performance.now() - start };
  client.update(kernel, weights, e.config.optimizer, phases);
  await e.applyGradients();
  return { loss, applied: true, exchangeMs: performance.now() - start };
}

/** A kernel that updates one shard of the layout (ZeRO-1) over the shared-memory exchange. */
type ShardingKernel = InPlaceReducer & Required<Pick<ModelKernel, 'setUpdateShard' | 'reduceShard' | 'parameterView' | 'momentViews' | 'parametersChanged'>>;

function shardsOptimizer(kernel: ModelKernel): kernel is ShardingKernel {
  return (
    reducesInPlace(kernel) &&
    kernel.capabilities.shardsOptimizer === true &&
    [kernel.setUpdateShard, kernel.reduceShard, kernel.parameterView, kernel.momentViews, kernel.parametersChanged].every((method) => method !== undefined)
  );
}

/**
 * One step with a sharded optimiser (ZeRO-1): gradients of the updated part go into this worker's
 * slot; after the barrier it sums only its own shard of every slot (rank order, as the full
 * all-reduce: the same bits), runs AdamW on that shard, publishes the shard's parameters and,
 * after a second barrier, copies the other shards in. Blocking waits only (worker threads).
 */
async function stepSharded(e: EngineCore<ModelKernel>, kernel: ShardingKernel, client: SharedExchangeClient, step: number, batch: { rows: number; data: Float32Array }, phases: StepPhases | null) {
  const shards = client.layout.shards;
  const updated = shards[shards.length - 1]![1];
  const [lo, hi] = client.shard;
  let loss;
  try {
    loss = await e.computeGradients(batch.data, batch.rows);
  } catch (error) {
    client.exchange(step, null, batch.rows);
    throw error;
  }
  const start = performance.now();
  // This worker's own shard is reduced from its own memory: only the others' shards go to the slot.
  const weights = client.exchange(step, kernel.gradientView().subarray(0, updated), batch.rows, phases, client.shard);
  if (!weights) return { loss, applied: false, exchangeMs: performance.now() - start };
  let t = phases ? performance.now() : 0;
  kernel.reduceShard(client.rank, weights, client.slots(step), lo, hi);
  if (phases) t = lap(phases, 'reduce', t);
  const exchangeMs = performance.now() - start;
  await e.applyGradients();
  t = phases ? performance.now() : 0;
  const parameters = kernel.parameterView();
  client.parameters.set(parameters.subarray(lo, hi), lo);
  if (phases) t = lap(phases, 'parameterShare', t);
  client.barrier();
  if (phases) t = lap(phases, 'barrier', t);
  parameters.set(client.parameters.subarray(0, lo), 0);
  parameters.set(client.parameters.subarray(hi, updated), hi);
  kernel.parametersChanged();
  if (phases) lap(phases, 'parameterShare', t);
  return { loss, applied: true, exchangeMs };
}

/** Every worker publishes its shard's moments and takes the others', so each holds the whole optimiser state. */
function gatherMoments(kernel: ModelKernel, client: SharedExchangeClient): void {
  if (!shardsOptimizer(kernel)) return;
  const shards = client.layout.shards;
  const [lo, hi] = client.shard;
  const own = kernel.momentViews();
  client.moments.m.set(own.m.subarray(lo, hi), lo);
  client.moments.v.set(own.v.subarray(lo, hi), lo);
  client.barrier();
  const updated = shards[shards.length - 1]![1];
  for (const key of ['m', 'v'] as const) {
    own[key].set(client.moments[key].subarray(0, lo), 0);
    own[key].set(client.moments[key].subarray(hi, updated), hi);
  }
  // No second barrier: the moments region is written only here, and the next gather comes after a
  // step, whose barrier every worker reaches only once done reading this one.
}

function lap(phases: StepPhases, phase: keyof StepPhases, since: number): number {
  const now = performance.now();
  phases[phase] = (phases[phase] ?? 0) + (now - since);
  return now;
}

/** The threads' shared-memory exchange; a page can only have received one when it is cross-origin isolated. */
function openSharedExchange(layout: SharedExchangeLayout, rank: number): SharedExchangeClient {
  if (typeof SharedArrayBuffer === 'undefined' || !(layout.buffer instanceof SharedArrayBuffer)) {
    throw new QuadraError('UNSUPPORTED', 'the shared-memory gradient exchange needs a SharedArrayBuffer, which this worker does not have (a page must be cross-origin isolated)', {
      exchange: 'shared',
    });
  }
  return new SharedExchangeClient(layout, rank);
}

/** How often a mixed-precision worker reads its loss scaler back (a small GPU readback). */
export const SCALER_REPORT_EVERY = 20;

async function scalerReport(kernel: ModelKernel, step: number): Promise<ScalerReport | null> {
  if (kernel.precision !== 'mixed' || !kernel.scalerState || (step !== 1 && step % SCALER_REPORT_EVERY !== 0)) return null;
  const state = await kernel.scalerState();
  return state ? { scale: state.scale, skippedSteps: state.skippedSteps } : null;
}
