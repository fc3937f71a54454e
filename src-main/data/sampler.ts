/**
 * Data-parallel sampler (like PyTorch's DistributedSampler, but planned per global step): each
 * epoch is a seeded permutation of the training rows; consecutive slices of `globalBatch` rows are
 * the steps; each step is cut into `workers` contiguous shards. Everything is a pure function of
 * (seed, epoch, step), so a run resumed at (epoch, step) sees exactly the rows it would have seen.
 */
import { QuadraError } from '../../src-shared/errors';
import { Rng } from '../engine/random';
import { checkSeed, shuffleInPlace } from './split';

/**
 * What to do with the last partial batch of an epoch. 'drop' (the default) skips it, so every
 * step has globalBatch real rows; 'wrap' pads it with rows from the start of the same epoch's
 * permutation, so every row is seen each epoch at the cost of a few repeats.
 */
export type LastBatch = 'drop' | 'wrap';

export const DEFAULT_LAST_BATCH: LastBatch = 'drop';

export interface SamplerOptions {
  /** The training rows (row numbers into the dataset). */
  indices: Uint32Array;
  globalBatch: number;
  workers: number;
  seed: number;
  lastBatch: LastBatch;
}

export interface WorkerShard {
  rank: number;
  rows: Uint32Array;
  /** Rows that are not wrap padding (they come first in `rows`). */
  realRows: number;
}

export interface PlannedStep {
  epoch: number;
  stepInEpoch: number;
  shards: WorkerShard[];
  /** Rows of this step that are not wrap padding; throughput counts only these. */
  realSamples: number;
}

export class EpochSampler {
  readonly #indices: Uint32Array;
  readonly #globalBatch: number;
  readonly #workers: number;
  readonly #seed: number;
  readonly #lastBatch: LastBatch;
  readonly #stepsPerEpoch: number;
  /** Shard sizes, identical for every step: the first globalBatch % workers shards get one more row. */
  readonly #shardStarts: number[];
  #cachedEpoch = -1;
  #cachedOrder: Uint32Array | null = null;

  constructor(options: SamplerOptions) {
    const { indices, globalBatch, workers, seed, lastBatch } = options;
    if (!(indices instanceof Uint32Array) || indices.length === 0) {
      throw new QuadraError('INVALID_ARGUMENT', 'sampler: there are no training rows to sample from', { rows: 0 });
    }
    if (!Number.isSafeInteger(workers) || workers < 1) {
      throw new QuadraError('INVALID_ARGUMENT', `sampler: workers must be a whole number ≥ 1, got ${workers}`, {
        field: 'workers',
        value: workers,
      });
    }
    if (!Number.isSafeInteger(globalBatch) || globalBatch < 1) {
      throw new QuadraError('INVALID_ARGUMENT', `sampler: global batch must be a whole number ≥ 1, got ${globalBatch}`, {
        field: 'globalBatch',
        value: globalBatch,
      });
    }
    if (globalBatch < workers) {
      throw new QuadraError(
        'INVALID_ARGUMENT',
        `sampler: global batch ${globalBatch} is smaller than the ${workers} workers — every worker needs at least one row per step`,
        { field: 'globalBatch', value: globalBatch, workers },
      );
    }
    checkSeed(seed);
    if (lastBatch !== 'drop' && lastBatch !== 'wrap') {
      throw new QuadraError('INVALID_ARGUMENT', `sampler: last batch must be 'drop' or 'wrap', got '${String(lastBatch)}'`, {
        field: 'lastBatch',
        value: lastBatch,
      });
    }
    const rows = indices.length;
    if (lastBatch === 'drop' && globalBatch > rows) {
      throw new QuadraError(
        'INVALID_ARGUMENT',
        `sampler: the dataset has ${rows} training rows, fewer than one batch of ${globalBatch} — lower the batch size or use lastBatch 'wrap'`,
        { field: 'globalBatch', value: globalBatch, rows },
      );
    }

    this.#indices = indices.slice();
    this.#globalBatch = globalBatch;
    this.#workers = workers;
    this.#seed = seed;
    this.#lastBatch = lastBatch;
    this.#stepsPerEpoch = lastBatch === 'drop' ? Math.floor(rows / globalBatch) : Math.ceil(rows / globalBatch);
    const base = Math.floor(globalBatch / workers);
    const extra = globalBatch % workers;
    this.#shardStarts = [0];
    for (let rank = 0; rank < workers; rank++) {
      this.#shardStarts.push(this.#shardStarts[rank]! + base + (rank < extra ? 1 : 0));
    }
  }

  stepsPerEpoch(): number {
    return this.#stepsPerEpoch;
  }

  step(epoch: number, stepInEpoch: number): PlannedStep {
    if (!Number.isSafeInteger(epoch) || epoch < 0) {
      throw new QuadraError('INVALID_ARGUMENT', `sampler: epoch must be a whole number ≥ 0, got ${epoch}`, { epoch });
    }
    if (!Number.isSafeInteger(stepInEpoch) || stepInEpoch < 0 || stepInEpoch >= this.#stepsPerEpoch) {
      throw new QuadraError(
        'INVALID_ARGUMENT',
        `sampler: step ${stepInEpoch} is outside the epoch, expected 0 to ${this.#stepsPerEpoch - 1}`,
        { stepInEpoch, stepsPerEpoch: this.#stepsPerEpoch },
      );
    }
    const order = this.#order(epoch);
    const rows = order.length;
    const first = stepInEpoch * this.#globalBatch;
    const realSamples = Math.min(this.#globalBatch, rows - first);
    const shards: WorkerShard[] = [];
    for (let rank = 0; rank < this.#workers; rank++) {
      const start = first + this.#shardStarts[rank]!;
      const end = first + this.#shardStarts[rank + 1]!;
      let shardRows: Uint32Array;
      if (end <= rows) {
        shardRows = order.slice(start, end);
      } else {
        shardRows = new Uint32Array(end - start);
        // Wrap padding: positions past the end continue from the start of this epoch's order.
        for (let position = start; position < end; position++) shardRows[position - start] = order[position % rows]!;
      }
      shards.push({ rank, rows: shardRows, realRows: Math.max(0, Math.min(end, rows) - start) });
    }
    return { epoch, stepInEpoch, shards, realSamples };
  }

  *epoch(epoch: number, startStep = 0): Generator<PlannedStep> {
    if (!Number.isSafeInteger(startStep) || startStep < 0 || startStep > this.#stepsPerEpoch) {
      throw new QuadraError(
        'INVALID_ARGUMENT',
        `sampler: start step ${startStep} is outside the epoch, expected 0 to ${this.#stepsPerEpoch}`,
        { startStep, stepsPerEpoch: this.#stepsPerEpoch },
      );
    }
    for (let step = startStep; step < this.#stepsPerEpoch; step++) yield this.step(epoch, step);
  }

  /** The epoch's permutation of the training rows; the current epoch's is kept so step() is cheap. */
  #order(epoch: number): Uint32Array {
    if (this.#cachedEpoch !== epoch || this.#cachedOrder === null) {
      this.#cachedOrder = shuffleInPlace(this.#indices.slice(), Rng.derive(this.#seed, 0xe90c, epoch));
      this.#cachedEpoch = epoch;
    }
    return this.#cachedOrder;
  }
}

/** Copies the selected rows of a row-major matrix into one contiguous batch (into `out` if given). */
export function gatherRows(data: Float32Array, width: number, rows: Uint32Array, out?: Float32Array): Float32Array {
  if (!Number.isSafeInteger(width) || width < 1) {
    throw new QuadraError('INVALID_ARGUMENT', `gatherRows: width must be a whole number ≥ 1, got ${width}`, { width });
  }
  const size = rows.length * width;
  if (out !== undefined && out.length < size) {
    throw new QuadraError(
      'INVALID_ARGUMENT',
      `gatherRows: output holds ${out.length} values, expected at least ${size} (${rows.length} rows × ${width})`,
      { outLength: out.length, expected: size },
    );
  }
  const batch = out === undefined ? new Float32Array(size) : out.subarray(0, size);
  const available = Math.floor(data.length / width);
  for (const [i, row] of rows.entries()) {
    if (row >= available) {
      throw new QuadraError('INVALID_ARGUMENT', `gatherRows: row ${row} is out of range, the data has ${available} rows of ${width}`, {
        row,
        rows: available,
      });
    }
    batch.set(data.subarray(row * width, (row + 1) * width), i * width);
  }
  return batch;
}
