import { describe, expect, it } from 'vitest';
import type { NewDataset } from '../../src-main/store/datasets';
import { expectIntegrityOk, expectQuadraError, NEW_RUN, steppingClock, testStore } from './helpers';

const MNIST: NewDataset = { name: 'mnist', kind: 'npy', sourcePath: '/data/mnist.npy', rows: 60000, width: 784, sha256: 'ab'.repeat(32) };

describe('datasets', () => {
  it('adds and finds datasets by id and by name', () => {
    const store = testStore(':memory:', { now: steppingClock() });
    const mnist = store.datasets.add(MNIST);
    expect(mnist).toEqual({ id: 1, ...MNIST, createdAt: '2025-01-01T00:00:01.000Z' });
    const waves = store.datasets.add({ name: 'waves', kind: 'synthetic', sourcePath: null, rows: 1000, width: 6, sha256: 'cd'.repeat(32) });
    expect(store.datasets.get(mnist.id)).toEqual(mnist);
    expect(store.datasets.getByName('waves')).toEqual(waves);
    expect(store.datasets.getByName('nope')).toBeNull();
    expect(store.datasets.list().map((d) => d.name)).toEqual(['mnist', 'waves']);
    expectQuadraError(() => store.datasets.get(99), 'NOT_FOUND', 'dataset 99 does not exist');
  });

  it('refuses a second dataset with the same name, a bad kind and negative sizes', () => {
    const store = testStore();
    store.datasets.add(MNIST);
    expectQuadraError(() => store.datasets.add({ ...MNIST, rows: 1 }), 'INVALID_ARGUMENT', "a dataset named 'mnist' already exists");
    expectQuadraError(() => store.datasets.add({ ...MNIST, name: 'x', kind: 'parquet' as never }), 'INVALID_ARGUMENT', 'dataset kind must be one of synthetic, npy, csv, text');
    expectQuadraError(() => store.datasets.add({ ...MNIST, name: 'x', rows: -1 }), 'INVALID_ARGUMENT', 'dataset rows');
    expect(store.datasets.list()).toHaveLength(1);
  });

  it('removes a dataset; its runs stay, with datasetId null', () => {
    const store = testStore();
    const dataset = store.datasets.add(MNIST);
    const run = store.runs.create({ ...NEW_RUN, datasetId: dataset.id });
    expect(run.datasetId).toBe(dataset.id);
    store.datasets.remove(dataset.id);
    expect(store.datasets.list()).toEqual([]);
    expect(store.runs.get(run.id).datasetId).toBeNull();
    expectQuadraError(() => store.datasets.remove(dataset.id), 'NOT_FOUND', `dataset ${dataset.id}`);
    expectIntegrityOk(store);
  });
});
