import { QuadraError } from '../../src-shared/errors';
import { weightedSum } from './weighted-sum';

/**
 * The gradient all-reduce between worker threads, through one SharedArrayBuffer: no copy through
 * a pipe or a file, and no round trip through the coordinator. Each step every worker copies its
 * gradients into its slot, waits at a barrier (Atomics), then computes the same weighted mean in
 * the same order — so replicas stay bit-identical — and applies it (a kernel whose capabilities
 * say allReducesInPlace, e.g. simd inside wasm, sums with its own allReduce; others use
 * reduceInto). Two slot sets alternate by step parity: a fast worker writing step s+1 never
 * overwrites a slot a slow one is still reading for step s (it cannot reach step s+2 before the slow one has
 * arrived at step s+1's barrier, i.e. finished reading step s).
 */
export interface SharedExchangeLayout {
  kind: 'shared';
  buffer: SharedArrayBuffer;
  workers: number;
  /** Values per slot (the model's parameter count). */
  size: number;
}

// Header (Int32): arrived count, generation, abort flag, then per rank: rows, ok flag.
const ARRIVED = 0;
const GENERATION = 1;
const ABORT = 2;
const HEADER = 3;
const HEADER_BYTES = 64 * 4;
/** Atomics.wait slice: a waiting worker checks the abort flag this often. */
const WAIT_SLICE_MS = 200;

/** The most workers the header has room for (two Int32 per rank). */
export const MAX_SHARED_EXCHANGE_WORKERS = Math.floor((HEADER_BYTES / 4 - HEADER) / 2);

export function createSharedExchange(workers: number, size: number): SharedExchangeLayout {
  if (workers > MAX_SHARED_EXCHANGE_WORKERS) {
    throw new QuadraError('INVALID_ARGUMENT', `the shared-memory gradient exchange holds at most ${MAX_SHARED_EXCHANGE_WORKERS} workers, got ${workers}`, { field: 'workers' });
  }
  const buffer = new SharedArrayBuffer(HEADER_BYTES + 2 * workers * size * 4);
  return { kind: 'shared', buffer, workers, size };
}

/** Tells every waiting worker to give up (the run failed: a worker died or diverged). */
export function abortSharedExchange(layout: SharedExchangeLayout): void {
  const header = new Int32Array(layout.buffer, 0, HEADER_BYTES / 4);
  Atomics.store(header, ABORT, 1);
  Atomics.notify(header, GENERATION);
}

/** Atomics.waitAsync (ES2024; in Node ≥ 16 and Chromium), which this project's ES2023 lib does not declare. */
interface AtomicsWithWaitAsync {
  waitAsync(array: Int32Array, index: number, value: number, timeoutMs: number): { async: false; value: string } | { async: true; value: Promise<string> };
}

export class SharedExchangeClient {
  readonly layout: SharedExchangeLayout;
  readonly rank: number;
  #header: Int32Array;
  #slots: Float32Array[][];

  constructor(layout: SharedExchangeLayout, rank: number) {
    this.layout = layout;
    this.rank = rank;
    this.#header = new Int32Array(layout.buffer, 0, HEADER_BYTES / 4);
    const { workers, size } = layout;
    this.#slots = [0, 1].map((set) =>
      Array.from({ length: workers }, (_, r) => new Float32Array(layout.buffer, HEADER_BYTES + (set * workers + r) * size * 4, size)),
    );
  }

  /**
   * Contributes this worker's gradients for `step` (null when its step failed) and waits for every
   * worker. Returns the reduce weights (rows_r / Σ rows), or null when any worker failed.
   */
  exchange(step: number, gradients: Float32Array | null, rows: number): number[] | null {
    this.#arrive(step, gradients, rows);
    this.#barrier();
    return this.#weights();
  }

  /**
   * exchange() for a thread that must not block (a page's main thread, where Atomics.wait throws):
   * the same barrier, waited for with Atomics.waitAsync.
   */
  async exchangeAsync(step: number, gradients: Float32Array | null, rows: number): Promise<number[] | null> {
    this.#arrive(step, gradients, rows);
    await this.#barrierAsync();
    return this.#weights();
  }

  #arrive(step: number, gradients: Float32Array | null, rows: number): void {
    if (gradients) this.#slots[step % 2]![this.rank]!.set(gradients);
    Atomics.store(this.#header, HEADER + 2 * this.rank, rows);
    Atomics.store(this.#header, HEADER + 2 * this.rank + 1, gradients ? 1 : 0);
  }

  #weights(): number[] | null {
    const { workers } = this.layout;
    const weights: number[] = [];
    let total = 0;
    for (let r = 0; r < workers; r++) {
      if (Atomics.load(this.#header, HEADER + 2 * r + 1) !== 1) return null;
      total += Atomics.load(this.#header, HEADER + 2 * r);
    }
    for (let r = 0; r < workers; r++) weights.push(Atomics.load(this.#header, HEADER + 2 * r) / total);
    return weights;
  }

  /** Every worker's slot for `step` (views into the shared buffer; read after exchange()). */
  slots(step: number): readonly Float32Array[] {
    return this.#slots[step % 2]!;
  }

  /** Σ_r weight_r · g_r for `step` into `out` (for kernels that do not all-reduce in place). */
  reduceInto(step: number, weights: readonly number[], out: Float32Array): void {
    weightedSum(this.#slots[step % 2]!, weights, out);
  }

  /** Sense-reversing barrier on the generation counter. */
  #barrier(): void {
    const generation = this.#enterBarrier();
    if (generation === null) return;
    while (this.#stillWaiting(generation)) Atomics.wait(this.#header, GENERATION, generation, WAIT_SLICE_MS);
  }

  async #barrierAsync(): Promise<void> {
    const generation = this.#enterBarrier();
    if (generation === null) return;
    while (this.#stillWaiting(generation)) {
      const wait = (Atomics as unknown as AtomicsWithWaitAsync).waitAsync(this.#header, GENERATION, generation, WAIT_SLICE_MS);
      if (wait.async) await wait.value;
    }
  }

  /** Arrives; the last worker releases the others and gets null, the others the generation to wait out. */
  #enterBarrier(): number | null {
    const h = this.#header;
    const generation = Atomics.load(h, GENERATION);
    if (Atomics.add(h, ARRIVED, 1) === this.layout.workers - 1) {
      Atomics.store(h, ARRIVED, 0);
      Atomics.add(h, GENERATION, 1);
      Atomics.notify(h, GENERATION);
      return null;
    }
    return generation;
  }

  #stillWaiting(generation: number): boolean {
    const h = this.#header;
    if (Atomics.load(h, GENERATION) !== generation) return false;
    if (Atomics.load(h, ABORT) === 1) throw new QuadraError('INTERNAL', `worker rank ${this.rank}: the run was stopped while waiting for the other workers' gradients`);
    return true;
  }
}
