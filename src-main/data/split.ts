import { QuadraError } from '../../src-shared/errors';
import { DEFAULT_VALIDATION_FRACTION, validationRowCount } from '../../src-shared/run-config';
import { Rng } from '../engine/random';

export interface TrainValidationSplit {
  /** Row numbers (0-based), ascending. */
  train: Uint32Array;
  /** Row numbers (0-based), ascending; disjoint from train. */
  validation: Uint32Array;
}

/**
 * Seeded split: the first validationRowCount(rows, fraction) rows of a permutation become
 * validation (the count the wizard previews). Integer-only arithmetic on the Rng stream, so every
 * machine gets the same split.
 */
export function splitTrainValidation(rows: number, validationFraction = DEFAULT_VALIDATION_FRACTION, seed = 42): TrainValidationSplit {
  if (rows > 0xffffffff) {
    throw new QuadraError('INVALID_ARGUMENT', `validation split: at most ${0xffffffff} rows (row numbers are Uint32), got ${rows}`, { rows });
  }
  const validationRows = validationRowCount(rows, validationFraction);
  checkSeed(seed);

  const order = identity(rows);
  shuffleInPlace(order, Rng.derive(seed, 0x5911));
  return {
    train: order.slice(validationRows).sort(),
    validation: order.slice(0, validationRows).sort(),
  };
}

/** Fisher–Yates with unbiased integer draws (rejection sampling, no floating point). */
export function shuffleInPlace(values: Uint32Array, rng: Rng): Uint32Array {
  for (let i = values.length - 1; i > 0; i--) {
    const j = uniformIndex(rng, i + 1);
    const swap = values[i]!;
    values[i] = values[j]!;
    values[j] = swap;
  }
  return values;
}

/** Uniform integer in [0, n) for 1 ≤ n ≤ 2^32. */
export function uniformIndex(rng: Rng, n: number): number {
  // Reject the top partial block of the 2^32 range so every residue is equally likely.
  const limit = 4294967296 - (4294967296 % n);
  let draw = rng.nextUint32();
  while (draw >= limit) draw = rng.nextUint32();
  return draw % n;
}

export function checkSeed(seed: number): void {
  if (!Number.isSafeInteger(seed)) {
    throw new QuadraError('INVALID_ARGUMENT', `seed must be a whole number, got ${seed}`, { field: 'seed', value: seed });
  }
}

function identity(n: number): Uint32Array {
  const values = new Uint32Array(n);
  for (let i = 0; i < n; i++) values[i] = i;
  return values;
}
