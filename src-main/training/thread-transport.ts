import { Worker } from 'node:worker_threads';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { WORKER_ENTRY, type TransportFactory } from './transport';

const THREAD_ENTRY = fileURLToPath(new URL('./thread-entry.mjs', import.meta.url));

/**
 * Workers as threads of this process (node:worker_threads). Used with the simd backend: its
 * kernel is plain WebAssembly with no native binding, so threads are safe, and replicas can
 * exchange gradients through one SharedArrayBuffer (shared-exchange.ts) instead of copying
 * 1.3 MB through a pipe or a file every step. `pid` is this process's; `kill` terminates the thread.
 */
export const threadTransport: TransportFactory = Object.assign(
  ({ rank, env }: { rank: number; env: Record<string, string> }) => {
    const typescript = WORKER_ENTRY.endsWith('.ts');
    const worker = new Worker(typescript ? THREAD_ENTRY : WORKER_ENTRY, {
      workerData: { rank, entry: pathToFileURL(WORKER_ENTRY).href },
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
      send: (message: unknown) => {
        if (!exited) worker.postMessage(message);
      },
      onMessage: (listener: (message: unknown) => void) => worker.on('message', listener),
      onExit: (listener: (code: number | null, signal: string | null) => void) => exitListeners.push(listener),
      kill: () => {
        if (!exited) void worker.terminate();
      },
    };
  },
  { sharesMemory: true },
);
