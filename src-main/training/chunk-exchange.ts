import { QuadraError } from '../../src-shared/errors';
import type { OptimizerConfig } from '../../src-shared/engine-config';
import type { StepPhase, StepPhases, UpdateChunk } from '../engine/kernel';
import type { SimdSharedMemory } from '../engine/simd/shared-memory';
import { SpinWait } from './spin-wait';

/**
 * The all-reduce for kernels that live in one shared memory (simd worker threads; see
 * engine/simd/shared-memory.ts). Nothing is copied: each step every worker says its field
 * gradients are final (with its rows, or that its step failed), then that all of them are; then
 * every worker takes chunks of the update off one counter until none is left — the sum over every
 * worker's gradients in rank order (the same bits whoever computes it), AdamW and the Wᵀ rows of
 * that chunk — and waits until all are done. A worker that finishes its own backward early
 * updates the field network's chunks while a slower one still runs its spiking backward.
 *
 * The counters in the header only grow (wrapping in int32; compared by difference), so nothing is
 * reset between steps. Per-rank rows and flags alternate by step parity: a worker cannot post step
 * s + 2 before every worker has posted step s + 1, i.e. finished reading step s.
 */
export interface ChunkExchangeLayout {
  kind: 'chunks';
  header: SharedArrayBuffer;
  workers: number;
  /** Chunks at or past this offset need the spiking gradients of every worker. */
  fieldCount: number;
  simd: SimdSharedMemory;
}

const ABORT = 0;
const FIELD_POSTED = 1;
const ALL_POSTED = 2;
const NEXT_CHUNK = 3;
const DONE_CHUNKS = 4;
/** Then per parity, per rank: rows, ok flag. */
const FLAGS = 8;

export function createChunkExchange(simd: SimdSharedMemory, fieldCount: number): ChunkExchangeLayout {
  const workers = simd.ownBases.length;
  return { kind: 'chunks', header: new SharedArrayBuffer((FLAGS + 4 * workers) * 4), workers, fieldCount, simd };
}

/** Tells every waiting worker to give up (the run failed: a worker died or diverged). */
export function abortChunkExchange(layout: ChunkExchangeLayout): void {
  const header = new Int32Array(layout.header);
  Atomics.store(header, ABORT, 1);
  for (const index of [FIELD_POSTED, ALL_POSTED, DONE_CHUNKS]) Atomics.notify(header, index);
}

/** `value` has reached `target` (int32 counters that wrap: compared by their difference). */
const reached = (value: number, target: number): boolean => ((value - target) | 0) >= 0;

/** What an update needs of a kernel (simd-kernel.ts in a shared memory). */
export interface ChunkUpdater {
  updateChunk(chunk: UpdateChunk, weights: readonly number[], gradientAddresses: readonly number[], optimizer: OptimizerConfig): void;
}

export class ChunkExchangeClient {
  readonly layout: ChunkExchangeLayout;
  readonly rank: number;
  #header: Int32Array;
  /** Steps posted, and the counter values that mean "every worker has posted it". */
  #steps = 0;
  #fieldTarget = 0;
  #allTarget = 0;
  /** Chunk counter value where this step's chunks start (advances only with an applied update). */
  #chunkBase = 0;
  #waiter = new SpinWait();

  constructor(layout: ChunkExchangeLayout, rank: number) {
    this.layout = layout;
    this.rank = rank;
    this.#header = new Int32Array(layout.header);
  }

  /** This step's rows, and whether its gradients are good; its field gradients are final (or it failed). */
  postField(rows: number, ok: boolean): void {
    const h = this.#header;
    const flags = FLAGS + 2 * ((this.#steps % 2) * this.layout.workers + this.rank);
    Atomics.store(h, flags, rows);
    Atomics.store(h, flags + 1, ok ? 1 : 0);
    this.#fieldTarget = (this.#fieldTarget + this.layout.workers) | 0;
    this.#allTarget = (this.#allTarget + this.layout.workers) | 0;
    if (reached(Atomics.add(h, FIELD_POSTED, 1) + 1, this.#fieldTarget)) Atomics.notify(h, FIELD_POSTED);
  }

  /** All of this step's gradients are final (or it failed, after postField). */
  postAll(): void {
    const h = this.#header;
    if (reached(Atomics.add(h, ALL_POSTED, 1) + 1, this.#allTarget)) Atomics.notify(h, ALL_POSTED);
  }

  /** Waits for every worker's postField; the reduce weights (rows_r / Σ rows), or null when a worker's step failed. */
  weights(phases?: StepPhases | null): number[] | null {
    this.#waitFor(FIELD_POSTED, this.#fieldTarget, phases);
    const h = this.#header;
    const base = FLAGS + 2 * (this.#steps % 2) * this.layout.workers;
    this.#steps += 1;
    let total = 0;
    for (let r = 0; r < this.layout.workers; r++) {
      if (Atomics.load(h, base + 2 * r + 1) !== 1) return null;
      total += Atomics.load(h, base + 2 * r);
    }
    return Array.from({ length: this.layout.workers }, (_, r) => Atomics.load(h, base + 2 * r) / total);
  }

  /**
   * Takes chunks until none is left and updates each (waiting for every worker's spiking gradients
   * before the first chunk that needs them), then waits until every chunk is done.
   */
  update(kernel: ChunkUpdater, weights: readonly number[], optimizer: OptimizerConfig, phases?: StepPhases | null): void {
    const h = this.#header;
    const { chunks, ownBases } = this.layout.simd;
    const end = (this.#chunkBase + chunks.length) | 0;
    let spikingReady = false;
    for (;;) {
      const next = Atomics.load(h, NEXT_CHUNK);
      if (reached(next, end)) break;
      if (Atomics.compareExchange(h, NEXT_CHUNK, next, (next + 1) | 0) !== next) continue;
      const chunk = chunks[(next - this.#chunkBase) | 0]!;
      if (!spikingReady && chunk.start >= this.layout.fieldCount) {
        this.#waitFor(ALL_POSTED, this.#allTarget, phases);
        spikingReady = true;
      }
      const t = phases ? performance.now() : 0;
      kernel.updateChunk(chunk, weights, ownBases, optimizer);
      if (phases) lap(phases, 'update', t);
      if (reached(Atomics.add(h, DONE_CHUNKS, 1) + 1, end)) Atomics.notify(h, DONE_CHUNKS);
    }
    this.#waitFor(DONE_CHUNKS, end, phases);
    this.#chunkBase = end;
  }

  /** Waits until header[index] reaches target (spin-wait.ts), giving up when the run is stopped. */
  #waitFor(index: number, target: number, phases?: StepPhases | null): void {
    const h = this.#header;
    if (reached(Atomics.load(h, index), target)) return;
    const start = this.#waiter.wait(
      h,
      index,
      (value) => !reached(value, target),
      () => {
        if (Atomics.load(h, ABORT) === 1) throw new QuadraError('INTERNAL', `worker rank ${this.rank}: the run was stopped while waiting for the other workers' gradients`);
      },
    );
    if (phases) lap(phases, 'barrier', start);
  }
}

function lap(phases: StepPhases, phase: StepPhase, since: number): void {
  phases[phase] = (phases[phase] ?? 0) + (performance.now() - since);
}
