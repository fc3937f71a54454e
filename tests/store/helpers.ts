import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect } from 'vitest';
import { QuadraError, type ErrorCode } from '../../src-shared/errors';
import { openStore, type OpenStoreOptions, type Store } from '../../src-main/store/database';
import type { NewRun } from '../../src-main/store/runs';

const cleanups: (() => void)[] = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/** A fresh folder under the OS temp dir, removed after the test. */
export function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'quadra-store-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A store closed after the test; ':memory:' unless a file is given. */
export function testStore(file = ':memory:', options: OpenStoreOptions = {}): Store {
  const store = openStore(file, options);
  cleanups.push(() => store.close());
  return store;
}

/** A clock that moves one second per reading, so every stamp differs and sorts. */
export function steppingClock(start = Date.UTC(2025, 0, 1)): () => Date {
  let t = start;
  return () => new Date((t += 1000));
}

export function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

export function expectQuadraError(fn: () => unknown, code: ErrorCode, message?: string | RegExp): QuadraError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected a QuadraError').toBeInstanceOf(QuadraError);
  const error = caught as QuadraError;
  expect(error.code, error.message).toBe(code);
  if (typeof message === 'string') expect(error.message).toContain(message);
  else if (message) expect(error.message).toMatch(message);
  return error;
}

export function expectIntegrityOk(store: Store): void {
  expect(store.db.pragma('integrity_check', { simple: true })).toBe('ok');
  expect(store.db.pragma('foreign_key_check')).toEqual([]);
}

export const NEW_RUN: NewRun = {
  name: 'baseline',
  config: { model: { fieldSize: 6 }, epochs: 3 },
  mode: 'single',
  backend: 'wasm',
  devices: ['cpu'],
  workers: 1,
  datasetId: null,
  ownerPid: 4242,
};
