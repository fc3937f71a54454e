import { QuadraError } from '../../src-shared/errors';
import type { FromWorker, Request, ToWorker } from './protocol';
import type { TransportFactory, WorkerTransport } from './transport';

export interface WorkerExit {
  rank: number;
  pid: number | undefined;
  code: number | null;
  signal: string | null;
}

type Reply = Exclude<FromWorker, { type: 'error' }>;

/**
 * Owns one worker process: starts it, sends typed requests with a seq and matches replies, notices
 * when it dies, and on shutdown asks politely, waits, then kills. The transport decides whether the
 * process is a child_process or an Electron utilityProcess.
 */
export class WorkerHandle {
  readonly rank: number;
  #transport: WorkerTransport;
  #seq = 0;
  #pending = new Map<number, { resolve: (reply: Reply) => void; reject: (error: Error) => void }>();
  #exit: WorkerExit | null = null;
  #exitListeners: Array<(exit: WorkerExit) => void> = [];
  #exited: Promise<WorkerExit>;
  #stopping = false;

  constructor(rank: number, factory: TransportFactory, env: Record<string, string> = {}) {
    this.rank = rank;
    this.#transport = factory({ rank, env });
    this.#transport.onMessage((raw) => this.#onMessage(raw as FromWorker));
    this.#exited = new Promise((resolve) => {
      this.#transport.onExit((code, signal) => {
        this.#exit = { rank, pid: this.#transport.pid, code, signal };
        const reason = new QuadraError('INTERNAL', `worker rank ${rank} (pid ${this.#transport.pid}) ${describeExit(code, signal)}`, {
          rank,
          code,
          signal,
        });
        for (const pending of this.#pending.values()) pending.reject(reason);
        this.#pending.clear();
        if (!this.#stopping) for (const listener of this.#exitListeners) listener(this.#exit);
        resolve(this.#exit);
      });
    });
  }

  get pid(): number | undefined {
    return this.#transport.pid;
  }

  get exited(): WorkerExit | null {
    return this.#exit;
  }

  /** Called when the worker dies without being asked to stop. */
  onUnexpectedExit(listener: (exit: WorkerExit) => void): void {
    this.#exitListeners.push(listener);
  }

  /** Fire-and-forget (e.g. prefetched batches). */
  post(request: Request): void {
    if (this.#exit) return;
    this.#transport.send({ ...request, seq: ++this.#seq } as ToWorker);
  }

  request<T extends Reply['type']>(request: Request, expect: T): Promise<Extract<Reply, { type: T }>> {
    if (this.#exit) {
      return Promise.reject(new QuadraError('INTERNAL', `worker rank ${this.rank} ${describeExit(this.#exit.code, this.#exit.signal)}`));
    }
    const seq = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#pending.set(seq, {
        resolve: (reply) => {
          if (reply.type !== expect) reject(new QuadraError('INTERNAL', `worker rank ${this.rank} answered '${reply.type}' to a request expecting '${expect}'`));
          else resolve(reply as Extract<Reply, { type: T }>);
        },
        reject,
      });
      this.#transport.send({ ...request, seq } as ToWorker);
    });
  }

  /** Asks the worker to stop, waits up to `graceMs`, then kills it. Resolves once it has exited. */
  async shutdown(graceMs = 3000): Promise<WorkerExit> {
    this.#stopping = true;
    if (this.#exit) return this.#exit;
    this.#transport.send({ type: 'shutdown', seq: ++this.#seq } satisfies ToWorker);
    const timer = setTimeout(() => this.#transport.kill('SIGKILL'), graceMs);
    try {
      return await this.#exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Immediate kill (a failed run stops everything at once). */
  async kill(): Promise<WorkerExit> {
    this.#stopping = true;
    if (this.#exit) return this.#exit;
    this.#transport.kill('SIGKILL');
    return this.#exited;
  }

  #onMessage(message: FromWorker): void {
    const pending = this.#pending.get(message.replyTo);
    if (!pending) return;
    this.#pending.delete(message.replyTo);
    if (message.type === 'error') {
      pending.reject(new QuadraError(message.error.code, message.error.message, { ...message.error.details, rank: this.rank }));
    } else {
      pending.resolve(message);
    }
  }
}

export function describeExit(code: number | null, signal: string | null): string {
  if (signal) return `was killed by ${signal}`;
  return `exited with code ${code}`;
}
