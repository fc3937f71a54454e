import { toErrorData, QuadraError } from '../../src-shared/errors';
import { OscillatorEngine } from '../engine/engine';
import type { ModelKernel } from '../engine/kernel';
import { Rng } from '../engine/random';
import { ExchangeClient } from './gradient-exchange';
import { SharedExchangeClient } from './shared-exchange';
import type { FromWorker, ParentChannel, ToWorker } from './protocol';

/** What the worker reports about where it runs (its 'ready' reply). */
export interface WorkerHost {
  pid: number;
  cudaVisibleDevices: string | null;
}

/**
 * A training worker: one engine replica behind one ParentChannel, whatever transport carries it
 * (the entry, worker-main.ts, picks the channel). It computes gradients on its shard, gets the mean
 * (from the coordinator's 'apply', or with shared memory from the other threads directly), and
 * applies the same AdamW update as every other replica. The kernel may answer with promises (a GPU
 * kernel's readback), so its results are awaited; the CPU kernels' answers cost one microtask each.
 */
export function serveWorker(channel: ParentChannel<ToWorker, FromWorker>, host: WorkerHost): void {
  let engine: OscillatorEngine<ModelKernel> | null = null;
  let exchange: ExchangeClient | null = null;
  let shared: SharedExchangeClient | null = null;
  let rank = 0;
  const batches = new Map<number, { rows: number; data: Float32Array }>();
  let batchArrived: (() => void) | null = null;
  let queue: Promise<void> = Promise.resolve();

  const send = (message: FromWorker) => channel.send(message);

  function requireEngine(): OscillatorEngine<ModelKernel> {
    if (!engine) throw new QuadraError('INTERNAL', 'worker: no engine yet (init first)');
    return engine;
  }

  function release(): void {
    engine?.dispose();
    engine = null;
    exchange?.close();
    exchange = null;
    shared = null;
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
        engine = await OscillatorEngine.createForWorker({ config: message.config, backend: message.backend, gpu: message.gpu, rank: message.rank });
        rank = message.rank;
        exchange = message.exchange?.kind === 'file' ? new ExchangeClient(message.exchange) : null;
        shared = message.exchange?.kind === 'shared' ? new SharedExchangeClient(message.exchange, rank) : null;
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
        send({ type: 'ok', replyTo: message.seq });
        return;
      case 'get-state': {
        const state = await requireEngine().getState();
        send({ type: 'state', replyTo: message.seq, state });
        return;
      }
      case 'compute': {
        const e = requireEngine();
        const kernel: ModelKernel = e.kernel;
        const batch = await waitForBatch(message.step);
        const start = performance.now();
        let loss;
        let applied = false;
        let exchangeMs = 0;
        if (shared) {
          ({ loss, applied, exchangeMs } = await stepShared(e, shared, message.step, batch));
        } else {
          loss = await e.computeGradients(batch.data, batch.rows);
          if (exchange) exchange.write(rank, await kernel.readGradients());
          else {
            await e.applyGradients();
            applied = true;
          }
        }
        const memory = e.memoryStats();
        send({
          type: 'gradients',
          replyTo: message.seq,
          step: message.step,
          rows: batch.rows,
          loss,
          computeMs: performance.now() - start,
          dataWaitMs: batch.waitedMs,
          memory: { rssBytes: memory.rssBytes, tensors: memory.tensors, tensorBytes: memory.tensorBytes },
          applied,
          exchangeMs,
        });
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
async function stepShared(e: OscillatorEngine<ModelKernel>, client: SharedExchangeClient, step: number, batch: { rows: number; data: Float32Array }) {
  const kernel: ModelKernel = e.kernel;
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
    client.exchange(step, null, batch.rows);
    throw error;
  }
  const weights = client.exchange(step, gradients, batch.rows);
  if (!weights) return { loss, applied: false, exchangeMs: performance.now() - start };
  if (direct) {
    await direct.allReduce(client.rank, weights, client.slots(step));
  } else {
    const mean = new Float32Array(client.layout.size);
    client.reduceInto(step, weights, mean);
    await kernel.writeGradients(mean);
  }
  const exchangeMs = performance.now() - start;
  await e.applyGradients();
  return { loss, applied: true, exchangeMs };
}
