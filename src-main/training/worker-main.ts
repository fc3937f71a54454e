import { toErrorData, QuadraError } from '../../src-shared/errors';
import { OscillatorEngine } from '../engine/engine';
import { Rng } from '../engine/random';
import { parentPort as threadPort, isMainThread } from 'node:worker_threads';
import { SimdKernel } from '../engine/simd/simd-kernel';
import { ExchangeClient } from './gradient-exchange';
import { SharedExchangeClient } from './shared-exchange';
import type { FromWorker, ToWorker } from './protocol';

/**
 * A training worker: one process (or, with the simd backend, one thread), one engine replica. It
 * computes gradients on its shard, gets the mean (from the coordinator's 'apply', or with shared
 * memory from the other threads directly), and applies the same AdamW update as every other
 * replica. A process exits when its parent goes away (the IPC channel closes); a thread ends with
 * its process — so no worker outlives a run.
 */

let engine: OscillatorEngine | null = null;
let exchange: ExchangeClient | null = null;
let shared: SharedExchangeClient | null = null;
let rank = 0;
const batches = new Map<number, { rows: number; data: Float32Array }>();
let batchArrived: (() => void) | null = null;
let queue: Promise<void> = Promise.resolve();

/** In an Electron utility process the channel is process.parentPort; under child_process.fork it is process.send. */
interface ParentPort {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (event: { data: unknown }) => void): void;
}
const parentPort = (process as unknown as { parentPort?: ParentPort }).parentPort;
const inThread = !isMainThread && threadPort !== null;

function send(message: FromWorker): void {
  if (inThread) threadPort!.postMessage(message);
  else if (parentPort) parentPort.postMessage(message);
  else process.send?.(message);
}

function requireEngine(): OscillatorEngine {
  if (!engine) throw new QuadraError('INTERNAL', 'worker: no engine yet (init first)');
  return engine;
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
      engine = await OscillatorEngine.create({ config: message.config, backend: message.backend, gpu: message.gpu, rank: message.rank });
      rank = message.rank;
      exchange = message.exchange?.kind === 'file' ? new ExchangeClient(message.exchange) : null;
      shared = message.exchange?.kind === 'shared' ? new SharedExchangeClient(message.exchange, rank) : null;
      send({
        type: 'ready',
        replyTo: message.seq,
        pid: process.pid,
        backend: engine.backend.id,
        report: engine.backend.report,
        cudaVisibleDevices: process.env.CUDA_VISIBLE_DEVICES ?? null,
      });
      return;
    }
    case 'set-state':
      requireEngine().setState(message.state);
      send({ type: 'ok', replyTo: message.seq });
      return;
    case 'get-state': {
      const state = requireEngine().getState();
      send({ type: 'state', replyTo: message.seq, state });
      return;
    }
    case 'compute': {
      const e = requireEngine();
      const batch = await waitForBatch(message.step);
      const start = performance.now();
      let loss;
      let applied = false;
      let exchangeMs = 0;
      if (shared) {
        ({ loss, applied, exchangeMs } = stepShared(e, shared, message.step, batch));
      } else {
        loss = e.computeGradients(batch.data, batch.rows);
        if (exchange) exchange.write(rank, e.kernel.readGradients());
        else {
          e.applyGradients();
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
      if (!exchange) throw new QuadraError('INTERNAL', 'worker: apply without a gradient exchange');
      e.kernel.writeGradients(exchange.reduce(message.weights));
      e.applyGradients();
      send({ type: 'applied', replyTo: message.seq });
      return;
    }
    case 'evaluate': {
      const result = requireEngine().processBatch(message.data, message.rows);
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
      for (let i = 0; i < 3; i++) e.processBatch(batch, message.rows);
      const msPerBatch: number[] = [];
      for (let r = 0; r < message.repeats; r++) {
        const start = performance.now();
        for (let i = 0; i < message.iterations; i++) e.processBatch(batch, message.rows);
        msPerBatch.push((performance.now() - start) / message.iterations);
      }
      send({ type: 'timed', replyTo: message.seq, msPerBatch });
      return;
    }
    case 'shutdown':
      engine?.dispose();
      engine = null;
      exchange?.close();
      exchange = null;
      shared = null;
      send({ type: 'ok', replyTo: message.seq });
      if (inThread) threadPort!.close();
      else if (parentPort) setImmediate(() => process.exit(0));
      else process.disconnect?.();
      return;
    case 'batch':
      return;
  }
}

function receive(raw: unknown): void {
  const message = raw as ToWorker;
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

/**
 * One step with the shared-memory all-reduce: gradients go into this worker's slot, every worker
 * waits for the others, computes the same mean and applies it. A worker whose step failed still
 * arrives (with no gradients), so the others skip the update instead of waiting forever.
 */
function stepShared(e: OscillatorEngine, client: SharedExchangeClient, step: number, batch: { rows: number; data: Float32Array }) {
  const kernel = e.kernel;
  let loss;
  try {
    loss = e.computeGradients(batch.data, batch.rows);
  } catch (error) {
    client.exchange(step, null, batch.rows);
    throw error;
  }
  const start = performance.now();
  // The simd kernel's gradients are read and written in place, in its own memory.
  const direct = kernel instanceof SimdKernel ? kernel : null;
  const weights = client.exchange(step, direct ? direct.gradientView() : kernel.readGradients(), batch.rows);
  if (!weights) return { loss, applied: false, exchangeMs: performance.now() - start };
  if (direct) {
    direct.allReduce(client.rank, weights, client.slots(step));
  } else {
    const mean = new Float32Array(client.layout.size);
    client.reduceInto(step, weights, mean);
    kernel.writeGradients(mean);
  }
  const exchangeMs = performance.now() - start;
  e.applyGradients();
  return { loss, applied: true, exchangeMs };
}

if (inThread) {
  threadPort!.on('message', receive);
} else if (parentPort) {
  // Electron ends utility processes with the app; nothing more to watch.
  parentPort.on('message', (event) => receive(event.data));
} else {
  process.on('message', receive);
  // The parent is gone (even SIGKILLed): the IPC channel closes, and so does this worker.
  process.on('disconnect', () => process.exit(0));
}
