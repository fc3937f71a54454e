import { QuadraError } from '../../src-shared/errors';
import { MAX_SHARED_MEMORY_WORKERS } from '../../src-shared/run-config';
import type { StepPhases } from '../engine/kernel';
import { SpinWait, WAIT_SLICE_MS } from './spin-wait';
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
 *
 * ZeRO-1 (a kernel with a sharded optimiser, e.g. simd): worker r owns `shards[r]` of the updated
 * part of the flat layout. After the barrier it sums only its shard of every slot, runs AdamW on
 * it, publishes the new parameters of its shard in `parameters` and, after a second barrier, copies
 * the other shards in. The moments stay with their owner; `moments` gathers them for a snapshot.
 */
export interface SharedExchangeLayout {
  kind: 'shared';
  buffer: SharedArrayBuffer;
  workers: number;
  /** Values per slot (the model's parameter count). */
  size: number;
  /**
   * Each rank's [start, end) of the part of the layout the optimiser updates (all of it, or the
   * field part when the spiking network gets no gradient): contiguous, 16-float (cache line) aligned.
   */
  shards: Array<[number, number]>;
}

// Header (Int32): arrived count, generation, abort flag, then per rank: rows, ok flag; sized by
// the worker count and rounded up to a cache line, so the float regions after it stay aligned.
const ARRIVED = 0;
const GENERATION = 1;
const ABORT = 2;
const HEADER = 3;
/** Shard boundaries fall on cache lines (16 floats), so two owners never write one line. */
const SHARD_ALIGN = 16;

function headerBytes(workers: number): number {
  return Math.ceil(((HEADER + 2 * workers) * 4) / 64) * 64;
}

/** Offsets (bytes) of the regions after the header: shared parameters, gathered moments (m, v), slots. */
function regions(workers: number, size: number): { parameters: number; moments: number; slots: number; end: number } {
  const parameters = headerBytes(workers);
  const moments = parameters + size * 4;
  const slots = moments + 2 * size * 4;
  return { parameters, moments, slots, end: slots + 2 * workers * size * 4 };
}

/**
 * Splits [0, count) into `workers` contiguous ranges of nearly equal length (AdamW and the reduce
 * cost the same per value), boundaries on 16-float cache lines; trailing ranges may be empty.
 */
export function shardRanges(count: number, workers: number): Array<[number, number]> {
  const lines = Math.ceil(count / SHARD_ALIGN);
  const ranges: Array<[number, number]> = [];
  for (let r = 0; r < workers; r++) {
    const start = Math.min(count, Math.round((lines * r) / workers) * SHARD_ALIGN);
    const end = Math.min(count, Math.round((lines * (r + 1)) / workers) * SHARD_ALIGN);
    ranges.push([start, end]);
  }
  return ranges;
}

/** `updated`: how much of the layout (from its start) the optimiser updates; the rest is never sharded. */
export function createSharedExchange(workers: number, size: number, updated = size): SharedExchangeLayout {
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_SHARED_MEMORY_WORKERS) {
    throw new QuadraError('INVALID_ARGUMENT', `the shared-memory gradient exchange holds 1 to ${MAX_SHARED_MEMORY_WORKERS} workers, got ${workers}`, { field: 'workers' });
  }
  const { end } = regions(workers, size);
  let buffer: SharedArrayBuffer;
  try {
    buffer = new SharedArrayBuffer(end);
  } catch (error) {
    throw new QuadraError('UNSUPPORTED', `the shared-memory gradient exchange for ${workers} workers needs ${Math.ceil(end / 2 ** 20)} MiB, which could not be allocated: ${String(error)}`, {
      field: 'workers',
    });
  }
  return { kind: 'shared', buffer, workers, size, shards: shardRanges(updated, workers) };
}

/** Tells every waiting worker to give up (the run failed: a worker died or diverged). */
export function abortSharedExchange(layout: SharedExchangeLayout): void {
  const header = new Int32Array(layout.buffer, 0, headerBytes(layout.workers) / 4);
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
  /** How long this worker's last blocking barrier waited (ms). */
  #waiter = new SpinWait();
  /** ZeRO-1: the parameters every owner publishes its shard into. */
  readonly parameters: Float32Array;
  /** ZeRO-1: Adam's m and v, gathered from their owners for a snapshot. */
  readonly moments: { m: Float32Array; v: Float32Array };

  constructor(layout: SharedExchangeLayout, rank: number) {
    this.layout = layout;
    this.rank = rank;
    const { workers, size } = layout;
    const at = regions(workers, size);
    this.#header = new Int32Array(layout.buffer, 0, headerBytes(workers) / 4);
    this.parameters = new Float32Array(layout.buffer, at.parameters, size);
    this.moments = { m: new Float32Array(layout.buffer, at.moments, size), v: new Float32Array(layout.buffer, at.moments + size * 4, size) };
    this.#slots = [0, 1].map((set) => Array.from({ length: workers }, (_, r) => new Float32Array(layout.buffer, at.slots + (set * workers + r) * size * 4, size)));
  }

  /** This worker's shard of the updated layout. */
  get shard(): [number, number] {
    return this.layout.shards[this.rank] ?? [0, 0];
  }

  /** A barrier with nothing to contribute (ZeRO-1: every shard is published; a snapshot's gather). */
  barrier(): void {
    this.#barrier();
  }

  /**
   * Contributes this worker's gradients for `step` (null when its step failed) and waits for every
   * worker. Returns the reduce weights (rows_r / Σ rows), or null when any worker failed. `phases`
   * (a profile) gets the copy and the wait; `skip` is a range no other worker reads (see #arrive).
   */
  exchange(step: number, gradients: Float32Array | null, rows: number, phases?: StepPhases | null, skip?: readonly [number, number]): number[] | null {
    const start = phases ? performance.now() : 0;
    this.#arrive(step, gradients, rows, skip);
    const arrived = phases ? performance.now() : 0;
    this.#barrier();
    if (phases) {
      phases.gradientCopy = (phases.gradientCopy ?? 0) + (arrived - start);
      phases.barrier = (phases.barrier ?? 0) + (performance.now() - arrived);
    }
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

  /** `skip`: a range of `gradients` nobody reads from the slot (ZeRO-1: this worker's own shard, reduced in place). */
  #arrive(step: number, gradients: Float32Array | null, rows: number, skip?: readonly [number, number]): void {
    const slot = this.#slots[step % 2]![this.rank]!;
    if (gradients && skip) {
      slot.set(gradients.subarray(0, skip[0]), 0);
      slot.set(gradients.subarray(skip[1]), skip[1]);
    } else if (gradients) slot.set(gradients);
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
    this.#waiter.wait(this.#header, GENERATION, (value) => value === generation, () => this.#checkAbort());
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
    if (Atomics.load(this.#header, GENERATION) !== generation) return false;
    this.#checkAbort();
    return true;
  }

  #checkAbort(): void {
    if (Atomics.load(this.#header, ABORT) === 1) throw new QuadraError('INTERNAL', `worker rank ${this.rank}: the run was stopped while waiting for the other workers' gradients`);
  }
}
