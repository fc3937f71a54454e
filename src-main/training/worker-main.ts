import { toErrorData, QuadraError } from '../../src-shared/errors';
import { OscillatorEngine } from '../engine/engine';
import { Rng } from '../engine/random';
import { ExchangeClient } from './gradient-exchange';
import type { FromWorker, ToWorker } from './protocol';

/**
 * A training worker: one process, one engine replica. It computes gradients on its shard, waits
 * for the coordinator's mean, and applies the same AdamW update as every other replica.
 * It exits when its parent goes away (the IPC channel closes), so no worker outlives a run.
 */

let engine: OscillatorEngine | null = null;
let exchange: ExchangeClient | null = null;
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

function send(message: FromWorker): void {
  if (parentPort) parentPort.postMessage(message);
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
      exchange = message.exchange ? new ExchangeClient(message.exchange) : null;
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
      const loss = e.computeGradients(batch.data, batch.rows);
      if (exchange) exchange.write(rank, e.kernel.readGradients());
      else e.applyGradients();
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
      send({ type: 'ok', replyTo: message.seq });
      if (parentPort) setImmediate(() => process.exit(0));
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

if (parentPort) {
  // Electron ends utility processes with the app; nothing more to watch.
  parentPort.on('message', (event) => receive(event.data));
} else {
  process.on('message', receive);
  // The parent is gone (even SIGKILLed): the IPC channel closes, and so does this worker.
  process.on('disconnect', () => process.exit(0));
}
