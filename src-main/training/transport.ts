import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BackendId } from '../../src-shared/engine-config';

/**
 * How a worker is started and talked to: child_process.fork here (CLI, serve mode, tests), worker
 * threads (thread-transport.ts) and Electron's utilityProcess in src-main/electron; the worker
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

/** Starts one worker per call, each running the factory's own entry script. */
export interface TransportFactory {
  (options: SpawnOptions): WorkerTransport;
  /** The script every worker of this factory runs (a .ts file runs through tsx's loader). */
  readonly entry: string;
  /** Workers are threads of this process: gradients can go through a SharedArrayBuffer. */
  readonly sharesMemory?: boolean;
  /**
   * Another factory for runs on some backends (withBackendTransports): the app trains webgpu in
   * hidden windows and everything else in utility processes. Undefined: this factory for all.
   */
  readonly forBackend?: (backend: BackendId | 'auto') => TransportFactory | undefined;
}

/**
 * The worker entry next to this module, resolved once: worker-main.ts when running from the
 * sources (tsx, vitest), worker-main.mjs when this module is bundled (dist/electron/main.mjs, whose
 * build writes the worker next to it).
 */
export const DEFAULT_WORKER_ENTRY = workerEntryNextTo(import.meta.url);

export function workerEntryNextTo(moduleUrl: string): string {
  const fromSources = new URL(moduleUrl).pathname.endsWith('.ts');
  return fileURLToPath(new URL(fromSources ? './worker-main.ts' : './worker-main.mjs', moduleUrl));
}

/** A TypeScript entry needs tsx's loader; a bundled one runs as it is. */
export function runsThroughTsx(entry: string): boolean {
  return entry.endsWith('.ts');
}

/** Binds a spawn function to its entry: the factory carries the entry, nothing module-wide does. */
export function transportFactory(
  entry: string,
  spawn: (entry: string, options: SpawnOptions) => WorkerTransport,
  traits: { sharesMemory?: boolean } = {},
): TransportFactory {
  return Object.freeze(Object.assign((options: SpawnOptions) => spawn(entry, options), { entry, ...traits }));
}

/**
 * `base`, except for the backends named in `byBackend`, whose runs start their workers there
 * (e.g. webgpu in Electron's hidden windows). Only a run's own backend decides, never 'auto'.
 */
export function withBackendTransports(base: TransportFactory, byBackend: Partial<Record<BackendId, TransportFactory>>): TransportFactory {
  const forBackend = (backend: BackendId | 'auto') => (backend === 'auto' ? undefined : byBackend[backend]);
  return Object.freeze(Object.assign((options: SpawnOptions) => base(options), { entry: base.entry, ...(base.sharesMemory ? { sharesMemory: true } : {}), forBackend }));
}

/** Workers as Node child processes (a TypeScript entry runs through tsx's loader). */
export function forkTransport(entry: string = DEFAULT_WORKER_ENTRY): TransportFactory {
  return transportFactory(entry, spawnChild);
}

function spawnChild(entry: string, { rank, env }: SpawnOptions): WorkerTransport {
  const child: ChildProcess = fork(entry, [`--rank=${rank}`], {
    execArgv: runsThroughTsx(entry) ? ['--import', 'tsx'] : [],
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
}
