import { QuadraError } from '../../src-shared/errors';
import { MAX_SYNTHETIC_ROWS, SyntheticRowsSchema } from '../../src-shared/run-config';
import { Rng } from '../engine/random';

/** Rows whose values are N(0, std²), seeded (the reference trained on N(0, 0.1²) noise). */
export function syntheticRows(rows: number, width: number, seed: number, std = 0.1): Float32Array {
  if (!Number.isInteger(rows) || rows < 1) throw new QuadraError('INVALID_ARGUMENT', `synthetic dataset: rows must be a whole number ≥ 1, got ${rows}`);
  return Rng.derive(seed, 0xda7a).fillNormal(new Float32Array(rows * width), std);
}

/** Parses 'synthetic:N' (N rows); the only dataset spec before the dataset store exists. */
export function parseSyntheticSpec(spec: string): number {
  const match = /^synthetic(?::(\d+))?$/.exec(spec);
  if (!match) {
    throw new QuadraError('INVALID_ARGUMENT', `--dataset: expected synthetic:N (N rows of N(0, 0.1²) data), got '${spec}'`, { field: 'dataset' });
  }
  const rows = match[1] === undefined ? 1024 : Number(match[1]);
  if (!SyntheticRowsSchema.safeParse(rows).success) {
    throw new QuadraError('INVALID_ARGUMENT', `--dataset: synthetic row count must be between 1 and ${MAX_SYNTHETIC_ROWS}, got ${match[1]}`, { field: 'dataset' });
  }
  return rows;
}
