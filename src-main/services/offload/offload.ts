import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { QuadraError, type ErrorData } from '../../../src-shared/errors';
import type { Store } from '../../store/database';
import type { FromOffload, Offload, OffloadArgs, OffloadResult, OffloadTask, OffloadWorkerData, ToOffload } from './protocol';
import { offloadHandlers } from './tasks';

/** A TypeScript entry starts through the training workers' thread-entry.mjs, which registers tsx's loader in the thread. */
const THREAD_ENTRY = fileURLToPath(new URL('../../training/thread-entry.mjs', import.meta.url));
/** How long close() lets the thread close its database before it is terminated. */
const CLOSE_TIMEOUT_MS = 5000;

/**
 * The offload thread's entry: offload-main.ts from the sources (tsx, vitest), offload-main.mjs
 * next to a bundle (dist/electron/main.mjs, where build.mjs puts it).
 */
export function offloadEntryNextTo(moduleUrl: string): string {
  const fromSources = new URL(moduleUrl).pathname.endsWith('.ts');
  return fileURLToPath(new URL(fromSources ? './offload-main.ts' : './offload-main.mjs', moduleUrl));
}

export const DEFAULT_OFFLOAD_ENTRY = offloadEntryNextTo(import.meta.url);

/** The tasks in the calling thread, over the service's own store: tests, an in-memory database, a bundle without the entry. */
export function inProcessOffload(store: Store): Offload {
  const handlers = offloadHandlers(() => store);
  return {
    run: <K extends OffloadTask>(task: K, args: OffloadArgs<K>) => (handlers[task] as (a: OffloadArgs<K>) => Promise<OffloadResult<K>>)(args),
    close: async () => undefined,
  };
}

export interface OffloadThreadOptions {
  /** The database file the read tasks open read-only (never ':memory:': a thread cannot share it). */
  databaseFile: string;
  /** Default: DEFAULT_OFFLOAD_ENTRY. */
  entry?: string;
}

interface Pending {
  task: OffloadTask;
  resolve: (value: never) => void;
  reject: (error: unknown) => void;
  settled: Promise<unknown>;
}

/**
 * One long-lived worker thread for the heavy half of the service methods (metric downsampling,
 * checkpoint encoding and decoding, dataset parsing), so the thread that serves the UI keeps
 * answering. It owns the thread as the training transports own theirs: numbered requests, replies
 * by seq, errors as data turned back into QuadraErrors; an exit fails what was in flight and the
 * next task starts a fresh thread; close() waits, then ends it. The thread never keeps the
 * process alive while idle.
 */
export class OffloadThread implements Offload {
  readonly #databaseFile: string;
  readonly #entry: string;
  #worker: Worker | null = null;
  #seq = 0;
  readonly #pending = new Map<number, Pending>();
  #closing: Promise<void> | null = null;

  constructor(options: OffloadThreadOptions) {
    this.#databaseFile = options.databaseFile;
    this.#entry = options.entry ?? DEFAULT_OFFLOAD_ENTRY;
    // Started now, so the first request does not wait for the thread (and, from the sources, tsx) to load.
    this.#start();
  }

  /** The thread's id while it runs (tests: the work is done there, not here). */
  get threadId(): number | null {
    return this.#worker?.threadId ?? null;
  }

  run<K extends OffloadTask>(task: K, args: OffloadArgs<K>): Promise<OffloadResult<K>> {
    if (this.#closing) return Promise.reject(new QuadraError('UNSUPPORTED', `${task}: the workstation is shutting down`));
    const worker = this.#worker ?? this.#start();
    const seq = ++this.#seq;
    let pending!: Pending;
    const settled = new Promise<OffloadResult<K>>((resolve, reject) => {
      pending = { task, resolve: resolve as (value: never) => void, reject, settled: Promise.resolve() };
    });
    pending.settled = settled.catch(() => undefined);
    this.#pending.set(seq, pending);
    // Held open while it has work: a CLI awaiting an export must not exit under it.
    worker.ref();
    try {
      // Arguments are copied, never transferred: the caller keeps its buffers.
      worker.postMessage({ type: task, seq, args } as ToOffload);
    } catch (error) {
      this.#settle(seq)?.reject(new QuadraError('INTERNAL', `${task}: its arguments cannot be sent to the offload thread: ${(error as Error).message}`));
    }
    return settled;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([...this.#pending.values()].map((p) => p.settled));
      const worker = this.#worker;
      if (!worker) return;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.ref();
      worker.postMessage({ type: 'shutdown', seq: ++this.#seq } satisfies ToOffload);
      const timer = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    })();
    return this.#closing;
  }

  #start(): Worker {
    const data: OffloadWorkerData = {
      databaseFile: this.#databaseFile,
      resourcesPath: (process as NodeJS.Process & { resourcesPath?: string }).resourcesPath ?? null,
      entry: pathToFileURL(this.#entry).href,
    };
    const worker = new Worker(this.#entry.endsWith('.ts') ? THREAD_ENTRY : this.#entry, { workerData: data, stdout: false, stderr: false });
    worker.unref();
    let failure: string | null = null;
    worker.on('message', (message: FromOffload) => {
      const pending = this.#settle(message.replyTo);
      if (!pending) return;
      if (message.ok) pending.resolve(message.value as never);
      else pending.reject(toQuadraError(message.error));
    });
    // An uncaught error in the thread: the 'exit' that follows fails what was in flight, with it.
    worker.on('error', (error) => {
      failure = error.message;
    });
    worker.on('exit', (code) => {
      if (this.#worker === worker) this.#worker = null;
      const why = failure ?? `exit code ${code}`;
      for (const seq of [...this.#pending.keys()]) {
        const pending = this.#settle(seq)!;
        pending.reject(new QuadraError('INTERNAL', `${pending.task}: the offload thread stopped before it answered (${why}); try again`));
      }
    });
    this.#worker = worker;
    return worker;
  }

  /** Forgets a request once answered; the thread is let go when nothing is left in flight. */
  #settle(seq: number): Pending | undefined {
    const pending = this.#pending.get(seq);
    this.#pending.delete(seq);
    if (this.#pending.size === 0 && !this.#closing) this.#worker?.unref();
    return pending;
  }
}

/**
 * The offload for a store: a thread over its file, or the calling thread for an in-memory database
 * (a thread cannot open it) and for a bundle that does not ship the thread's entry (said once on stderr).
 */
export function createOffload(store: Store, entry: string = DEFAULT_OFFLOAD_ENTRY): Offload {
  if (store.file === ':memory:' || store.file === '') return inProcessOffload(store);
  if (!existsSync(entry)) {
    process.stderr.write(`quadra: ${entry} is missing; checkpoint, dataset and metrics work runs on the main thread\n`);
    return inProcessOffload(store);
  }
  return new OffloadThread({ databaseFile: store.file, entry });
}

function toQuadraError(error: ErrorData): QuadraError {
  return new QuadraError(error.code, error.message, error.details);
}
