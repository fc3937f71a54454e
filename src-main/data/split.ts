import { QuadraError } from '../../src-shared/errors';
import { Rng } from '../engine/random';

export interface TrainValidationSplit {
  /** Row numbers (0-based), ascending. */
  train: Uint32Array;
  /** Row numbers (0-based), ascending; disjoint from train. */
  validation: Uint32Array;
}

export const MAX_VALIDATION_FRACTION = 0.9;

/**
 * Seeded split: the first round(rows·fraction) rows of a permutation become validation. At least
 * one validation row when fraction > 0 and there are ≥ 2 rows, and always at least one training
 * row. Integer-only arithmetic on the Rng stream, so every machine gets the same split.
 */
export function splitTrainValidation(rows: number, validationFraction = 0.1, seed = 42): TrainValidationSplit {
  if (!Number.isSafeInteger(rows) || rows < 1 || rows > 0xffffffff) {
    throw new QuadraError('INVALID_ARGUMENT', `validation split: row count must be a whole number ≥ 1, got ${rows}`, { rows });
  }
  if (!(validationFraction >= 0 && validationFraction <= MAX_VALIDATION_FRACTION)) {
    throw new QuadraError(
      'INVALID_ARGUMENT',
      `validation fraction must be between 0 and ${MAX_VALIDATION_FRACTION}, got ${validationFraction}`,
      { field: 'validationFraction', value: validationFraction },
    );
  }
  checkSeed(seed);

  let validationRows = Math.round(rows * validationFraction);
  if (validationFraction > 0 && rows >= 2) validationRows = Math.max(1, validationRows);
  validationRows = Math.min(validationRows, rows - 1);

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
