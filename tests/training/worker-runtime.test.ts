import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseEngineConfig } from '../../src-shared/engine-config';
import { buildLayout } from '../../src-main/engine/layout';
import { OscillatorEngine } from '../../src-main/engine/engine';
import type { ModelKernel } from '../../src-main/engine/kernel';
import { Rng } from '../../src-main/engine/random';
import type { FromWorker, ParentChannel, ToWorker } from '../../src-main/training/protocol';
import { createSharedExchange } from '../../src-main/training/shared-exchange';
import { NODE_WORKER_PLATFORM } from '../../src-main/training/node-worker-platform';
import { serveWorker } from '../../src-main/training/worker-runtime';
import { firstBitDifference } from '../helpers/engine';
import { F, NO_GPU, SMALL } from '../helpers/training';

// The worker behind an in-memory ParentChannel: no process, no thread — what any new transport
// (e.g. a renderer's MessagePort) plugs into.

const CONFIG = parseEngineConfig({ batchSize: 8, seed: 5, model: SMALL });

/** A ParentChannel held by the test: requests go in, replies come back in order. */
function memoryChannel() {
  let deliver: ((message: ToWorker) => void) | null = null;
  const replies: FromWorker[] = [];
  const waiting: Array<(reply: FromWorker) => void> = [];
  let closed = false;
  const channel: ParentChannel<ToWorker, FromWorker> = {
    send: (message) => {
      const waiter = waiting.shift();
      if (waiter) waiter(message);
      else replies.push(message);
    },
    onMessage: (listener) => (deliver = listener),
    onClose: () => undefined,
    close: () => (closed = true),
  };
  let seq = 0;
  return {
    channel,
    get closed() {
      return closed;
    },
    post(message: Record<string, unknown> & { type: ToWorker['type'] }): void {
      deliver!({ ...message, seq: ++seq } as ToWorker);
    },
    async request(message: Record<string, unknown> & { type: ToWorker['type'] }): Promise<FromWorker> {
      const reply = new Promise<FromWorker>((resolve) => (replies.length ? resolve(replies.shift()!) : waiting.push(resolve)));
      this.post(message);
      return reply;
    },
  };
}

/** One simd worker, one training step on the same batch; its parameters after the step. */
async function oneStep(exchange: 'none' | 'shared', onEngine?: (engine: OscillatorEngine<ModelKernel>) => void): Promise<Float32Array> {
  const create = OscillatorEngine.createForWorker.bind(OscillatorEngine);
  const spy = vi.spyOn(OscillatorEngine, 'createForWorker').mockImplementation(async (options) => {
    const engine = await create(options);
    onEngine?.(engine);
    return engine;
  });
  try {
    const parent = memoryChannel();
    serveWorker(parent.channel, { pid: 1234, cudaVisibleDevices: null }, NODE_WORKER_PLATFORM);
    const shared = exchange === 'shared' ? createSharedExchange(1, buildLayout(CONFIG.model).total) : null;
    const ready = await parent.request({ type: 'init', rank: 0, worldSize: 1, config: CONFIG, backend: 'simd', gpu: NO_GPU, exchange: shared });
    expect(ready).toMatchObject({ type: 'ready', pid: 1234, backend: 'simd', cudaVisibleDevices: null });
    const data = new Rng(3).fillNormal(new Float32Array(8 * F), 1);
    parent.post({ type: 'batch', step: 1, rows: 8, data });
    const gradients = await parent.request({ type: 'compute', step: 1 });
    expect(gradients).toMatchObject({ type: 'gradients', step: 1, rows: 8, applied: true });
    const state = await parent.request({ type: 'get-state' });
    if (state.type !== 'state') throw new Error(`expected state, got ${state.type}`);
    expect(await parent.request({ type: 'shutdown' })).toMatchObject({ type: 'ok' });
    expect(parent.closed).toBe(true);
    return state.state.parameters;
  } finally {
    spy.mockRestore();
  }
}

afterEach(() => vi.restoreAllMocks());

describe('the worker over any ParentChannel', () => {
  it('trains through the sharded optimiser, the kernel\'s in-place all-reduce and the general path to the same bits', async () => {
    const calls: string[] = [];
    const record = (engine: OscillatorEngine<ModelKernel>) => {
      const kernel = engine.kernel;
      for (const method of ['reduceShard', 'allReduce', 'readGradients', 'writeGradients'] as const) {
        const original = kernel[method]!.bind(kernel) as (...args: unknown[]) => unknown;
        Object.defineProperty(kernel, method, { value: (...args: unknown[]) => (calls.push(method), original(...args)) });
      }
    };
    const alone = await oneStep('none');
    // simd in a thread that may block: ZeRO-1 (with one worker its shard is the whole layout).
    const sharded = await oneStep('shared', (engine) => {
      expect(engine.kernel.capabilities.shardsOptimizer).toBe(true);
      record(engine);
    });
    expect(calls.splice(0)).toEqual(['reduceShard']);
    const inPlace = await oneStep('shared', (engine) => {
      Object.defineProperty(engine.kernel, 'capabilities', { value: { synchronous: true, allReducesInPlace: true, shardsOptimizer: false } });
      record(engine);
    });
    expect(calls.splice(0)).toEqual(['allReduce']);
    // A kernel without the in-place all-reduce (e.g. a GPU one) reads, reduces on the host and writes back.
    const general = await oneStep('shared', (engine) => {
      Object.defineProperty(engine.kernel, 'capabilities', { value: { synchronous: true, allReducesInPlace: false } });
      record(engine);
    });
    expect(calls.splice(0)).toEqual(['readGradients', 'writeGradients']);
    expect(firstBitDifference(alone, sharded)).toBe(-1);
    expect(firstBitDifference(alone, inPlace)).toBe(-1);
    expect(firstBitDifference(alone, general)).toBe(-1);
  });
});
