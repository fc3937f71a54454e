import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { threadTransport } from '../../src-main/training/thread-transport';
import { DEFAULT_WORKER_ENTRY, forkTransport, transportFactory, withBackendTransports, workerEntryNextTo, type TransportFactory } from '../../src-main/training/transport';
import { plan, runCapturing } from '../helpers/training';
import type { FixtureReply } from '../fixtures/workers/answer-ready';

const WORKER_A = fileURLToPath(new URL('../fixtures/workers/worker-a.ts', import.meta.url));
const WORKER_B = fileURLToPath(new URL('../fixtures/workers/worker-b.ts', import.meta.url));

/** Starts one worker, asks who it is, asks it to stop; resolves with its answer and exit code. */
function greet(factory: TransportFactory, rank: number): Promise<{ ready: FixtureReply; code: number | null }> {
  return new Promise((resolve, reject) => {
    const worker = factory({ rank, env: {} });
    let ready: FixtureReply | null = null;
    const timer = setTimeout(() => {
      worker.kill('SIGKILL');
      reject(new Error(`worker ${factory.entry} did not answer within 20 s`));
    }, 20_000);
    worker.onMessage((raw) => {
      const reply = raw as FixtureReply;
      if (reply.type === 'ready') {
        ready = reply;
        worker.send({ type: 'shutdown', seq: 2 });
      }
    });
    worker.onExit((code) => {
      clearTimeout(timer);
      if (ready) resolve({ ready, code });
      else reject(new Error(`worker ${factory.entry} exited (code ${code}) before answering`));
    });
    worker.send({ type: 'hello', seq: 1 });
  });
}

describe('transport factories carry their own worker entry', () => {
  for (const [kind, make] of [
    ['fork', forkTransport],
    ['thread', threadTransport],
  ] as const) {
    it(`${kind}: two factories with different entries, in one process, start different scripts over the ${kind} channel`, async () => {
      const a = make(WORKER_A);
      const b = make(WORKER_B);
      expect(a.entry).toBe(WORKER_A);
      expect(b.entry).toBe(WORKER_B);
      expect(a.sharesMemory === true).toBe(kind === 'thread');
      const [fromA, fromB] = await Promise.all([greet(a, 0), greet(b, 1)]);
      expect(fromA.ready).toMatchObject({ type: 'ready', replyTo: 1, script: 'worker-a', channel: kind, rank: '--rank=0' });
      expect(fromB.ready).toMatchObject({ type: 'ready', replyTo: 1, script: 'worker-b', channel: kind, rank: '--rank=1' });
      // Closing the channel after 'shutdown' ends the worker cleanly.
      expect(fromA.code).toBe(0);
      expect(fromB.code).toBe(0);
    });
  }

  it('defaults to worker-main.ts from the sources, and to worker-main.mjs next to a bundle', () => {
    expect(DEFAULT_WORKER_ENTRY).toBe(fileURLToPath(new URL('../../src-main/training/worker-main.ts', import.meta.url)));
    expect(forkTransport().entry).toBe(DEFAULT_WORKER_ENTRY);
    expect(threadTransport().entry).toBe(DEFAULT_WORKER_ENTRY);
    expect(workerEntryNextTo('file:///opt/quadra/dist/electron/main.mjs')).toBe('/opt/quadra/dist/electron/worker-main.mjs');
    expect(workerEntryNextTo('file:///repo/src-main/training/transport.ts')).toBe('/repo/src-main/training/worker-main.ts');
  });
});

describe('a transport with its own factory for some backends (the app: webgpu in hidden windows)', () => {
  it('starts a run on a named backend through that factory, and others through the base', async () => {
    const spawned: string[] = [];
    const counting = (name: string, base: TransportFactory) => transportFactory(base.entry, (_entry, options) => (spawned.push(name), base(options)));
    const combined = withBackendTransports(counting('base', forkTransport()), { wasm: counting('wasm', forkTransport()) });
    expect(combined.entry).toBe(DEFAULT_WORKER_ENTRY);
    expect(combined.forBackend?.('webgpu')).toBeUndefined();
    expect(combined.forBackend?.('auto')).toBeUndefined();
    const onWasm = await runCapturing(plan({ mode: 'single', workers: 1, backend: 'wasm', transport: combined }));
    expect(onWasm.outcome.status).toBe('completed');
    const onCpu = await runCapturing(plan({ mode: 'single', workers: 1, backend: 'cpu', transport: combined }));
    expect(onCpu.outcome.status).toBe('completed');
    expect(spawned).toEqual(['wasm', 'base']);
  }, 60_000);
});
