import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * How a worker process is started and talked to. Two small implementations: child_process.fork
 * here (CLI, serve mode, tests) and Electron's utilityProcess in src-main/electron; the worker
 * handle and the coordinator see only this interface.
 */
export interface WorkerTransport {
  readonly pid: number | undefined;
  send(message: unknown): void;
  onMessage(listener: (message: unknown) => void): void;
  onExit(listener: (code: number | null, signal: string | null) => void): void;
  kill(signal?: NodeJS.Signals): void;
}

export interface SpawnOptions {
  rank: number;
  /** Extra environment for this worker (e.g. CUDA_VISIBLE_DEVICES). */
  env: Record<string, string>;
}

export type TransportFactory = ((options: SpawnOptions) => WorkerTransport) & {
  /** Workers are threads of this process: gradients can go through a SharedArrayBuffer. */
  sharesMemory?: boolean;
};

/** The worker's entry file: the TypeScript source (run through tsx) unless a bundle says otherwise. */
export let WORKER_ENTRY = fileURLToPath(new URL('./worker-main.ts', import.meta.url));

/** The packaged app runs a bundled worker (dist/electron/worker-main.mjs). */
export function setWorkerEntry(file: string): void {
  WORKER_ENTRY = file;
}

/** Workers as Node child processes, running the TypeScript entry through tsx's loader. */
export const forkTransport: TransportFactory = ({ rank, env }) => {
  const child: ChildProcess = fork(WORKER_ENTRY, [`--rank=${rank}`], {
    execArgv: WORKER_ENTRY.endsWith('.ts') ? ['--import', 'tsx'] : [],
    env: { ...process.env, ...env },
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return {
    get pid() {
      return child.pid;
    },
    send: (message) => {
      if (child.connected) child.send(message as never);
    },
    onMessage: (listener) => child.on('message', listener),
    onExit: (listener) => child.on('exit', listener),
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
};
