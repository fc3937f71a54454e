import { describe, expect, it } from 'vitest';
import { parseEngineConfig } from '../../src-shared/engine-config';
import { Rng } from '../../src-main/engine/random';
import { BROWSER_WORKER_PLATFORM } from '../../src-main/training/browser-worker-platform';
import { messagePortChannel, type StandardMessagePort } from '../../src-main/training/message-port-channel';
import { NODE_WORKER_PLATFORM } from '../../src-main/training/node-worker-platform';
import type { FromWorker, ToWorker } from '../../src-main/training/protocol';
import { createSharedExchange, SharedExchangeClient } from '../../src-main/training/shared-exchange';
import { serveWorker } from '../../src-main/training/worker-runtime';
import { F, NO_GPU, SMALL } from '../helpers/training';

// The worker over a standard MessagePort (Node's global MessageChannel here; a page's in the app),
// and the browser platform's refusals, which need no page to check.

const CONFIG = parseEngineConfig({ batchSize: 8, seed: 5, model: SMALL });

describe('the worker over a MessagePort', () => {
  it('answers the protocol with structured clones, and closes its port on shutdown', async () => {
    const { port1, port2 } = new MessageChannel();
    // Sent before the worker listens: the channel keeps it for the first listener.
    port1.postMessage({ type: 'init', seq: 1, rank: 0, worldSize: 1, config: CONFIG, backend: 'simd', gpu: NO_GPU, exchange: null } satisfies ToWorker);
    serveWorker(messagePortChannel<ToWorker, FromWorker>(port2 as unknown as StandardMessagePort), { pid: 77, cudaVisibleDevices: null }, NODE_WORKER_PLATFORM);
    const replies: FromWorker[] = [];
    const waiting: Array<(reply: FromWorker) => void> = [];
    port1.on('message', (reply: FromWorker) => {
      const waiter = waiting.shift();
      if (waiter) waiter(reply);
      else replies.push(reply);
    });
    const next = () => new Promise<FromWorker>((resolve) => (replies.length ? resolve(replies.shift()!) : waiting.push(resolve)));
    const closed = new Promise<void>((resolve) => port1.once('close', () => resolve()));
    expect(await next()).toMatchObject({ type: 'ready', replyTo: 1, pid: 77, backend: 'simd' });
    port1.postMessage({ type: 'batch', seq: 2, step: 1, rows: 8, data: new Rng(3).fillNormal(new Float32Array(8 * F), 1) } satisfies ToWorker);
    port1.postMessage({ type: 'compute', seq: 3, step: 1 } satisfies ToWorker);
    expect(await next()).toMatchObject({ type: 'gradients', replyTo: 3, rows: 8, applied: true });
    port1.postMessage({ type: 'get-state', seq: 4 } satisfies ToWorker);
    const state = await next();
    if (state.type !== 'state') throw new Error(`expected state, got ${state.type}`);
    expect(state.state.parameters).toBeInstanceOf(Float32Array);
    expect(state.state.step).toBe(1);
    port1.postMessage({ type: 'shutdown', seq: 5 } satisfies ToWorker);
    expect(await next()).toMatchObject({ type: 'ok', replyTo: 5 });
    await closed;
  });
});

describe("the browser worker's platform", () => {
  it('refuses every backend but webgpu, and the file exchange, by name', async () => {
    await expect(BROWSER_WORKER_PLATFORM.createEngine({ config: CONFIG, backend: 'simd', gpu: NO_GPU, rank: 0 })).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringMatching(/backend 'simd' does not run in a page/),
    });
    expect(() => BROWSER_WORKER_PLATFORM.openFileExchange({ kind: 'file', file: '/dev/shm/x', workers: 2, size: 4 })).toThrow(/cannot join the file gradient exchange/);
    expect(BROWSER_WORKER_PLATFORM.mayBlock).toBe(false);
  });
});

describe("a page's shared-memory barrier", () => {
  it('waits with Atomics.waitAsync: two workers on one thread meet without blocking it', async () => {
    const layout = createSharedExchange(2, 3);
    const [a, b] = [new SharedExchangeClient(layout, 0), new SharedExchangeClient(layout, 1)];
    // With Atomics.wait the first would block this thread forever; here it yields until the second arrives.
    const first = a.exchangeAsync(1, Float32Array.of(1, 2, 3), 1);
    const second = b.exchangeAsync(1, Float32Array.of(3, 2, 1), 3);
    expect(await Promise.all([first, second])).toEqual([[0.25, 0.75], [0.25, 0.75]]);
    const mean = new Float32Array(3);
    a.reduceInto(1, [0.25, 0.75], mean);
    expect(Array.from(mean)).toEqual([2.5, 2, 1.5]);
  });
});
