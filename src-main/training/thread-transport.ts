import { Worker } from 'node:worker_threads';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DEFAULT_WORKER_ENTRY, runsThroughTsx, transportFactory, type SpawnOptions, type TransportFactory, type WorkerTransport } from './transport';

const THREAD_ENTRY = fileURLToPath(new URL('./thread-entry.mjs', import.meta.url));

/**
 * Workers as threads of this process (node:worker_threads). Used with the simd backend: its
 * kernel is plain WebAssembly with no native binding, so threads are safe, and replicas can
 * exchange gradients through one SharedArrayBuffer (shared-exchange.ts) instead of copying
 * 1.3 MB through a pipe or a file every step. `pid` is this process's; `kill` terminates the thread.
 */
export function threadTransport(entry: string = DEFAULT_WORKER_ENTRY): TransportFactory {
  return transportFactory(entry, spawnThread, { sharesMemory: true });
}

function spawnThread(entry: string, { rank, env }: SpawnOptions): WorkerTransport {
  // A TypeScript entry starts through thread-entry.mjs, which registers tsx's loader in the thread.
  const worker = new Worker(runsThroughTsx(entry) ? THREAD_ENTRY : entry, {
    workerData: { rank, entry: pathToFileURL(entry).href },
    env: { ...process.env, ...env },
    argv: [`--rank=${rank}`],
    stdout: false,
    stderr: false,
  });
  let exited = false;
  const exitListeners: Array<(code: number | null, signal: string | null) => void> = [];
  // An uncaught error in the thread: report it, then the 'exit' event fails the run.
  worker.on('error', (error) => {
    process.stderr.write(`quadra: training worker thread ${rank} failed: ${error.stack ?? error.message}\n`);
  });
  worker.on('exit', (code) => {
    exited = true;
    for (const listener of exitListeners) listener(code, null);
  });
  return {
    pid: process.pid,
    send: (message) => {
      if (!exited) worker.postMessage(message);
    },
    onMessage: (listener) => worker.on('message', listener),
    onExit: (listener) => exitListeners.push(listener),
    kill: () => {
      if (!exited) void worker.terminate();
    },
  };
}
