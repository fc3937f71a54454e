import { describe, expect, it } from 'vitest';
import type { NewBenchmarkResult } from '../../src-main/store/benchmarks';
import { expectIntegrityOk, expectQuadraError, steppingClock, testStore } from './helpers';

const result = (suiteId: number, workers: number): NewBenchmarkResult => ({
  suiteId,
  backend: 'tensorflow',
  workers,
  batchSize: 64,
  spikeGradient: 'surrogate',
  trainSamplesPerSec: { median: 1000 * workers, min: 900 * workers, max: 1100 * workers },
  forwardSamplesPerSec: { median: 5000, min: 4800, max: 5100 },
  fingerprint: { cpu: 'AMD Ryzen 9 7950X', tfjs: '4.22.0', node: 'v20.19.0' },
});

describe('benchmarks', () => {
  it('stores suites (newest first) and their results (in order)', () => {
    const store = testStore(':memory:', { now: steppingClock() });
    const first = store.benchmarks.createSuite({ name: 'nightly', config: { iterations: 20, repeats: 5 } });
    const second = store.benchmarks.createSuite({ name: 'scaling', config: { workers: [1, 2, 4] } });
    expect(first).toEqual({ id: 1, name: 'nightly', createdAt: '2025-01-01T00:00:01.000Z', config: { iterations: 20, repeats: 5 } });
    const added = [1, 2, 4].map((w) => store.benchmarks.addResult(result(second.id, w)));
    expect(added[0]).toEqual({ id: 1, ...result(second.id, 1), createdAt: '2025-01-01T00:00:03.000Z' });
    expect(store.benchmarks.listSuites().map((s) => s.name)).toEqual(['scaling', 'nightly']);
    expect(store.benchmarks.results(second.id)).toEqual(added);
    expect(store.benchmarks.results(first.id)).toEqual([]);
  });

  it('rejects results for a missing suite or with non-finite numbers', () => {
    const store = testStore();
    expectQuadraError(() => store.benchmarks.addResult(result(5, 1)), 'NOT_FOUND', 'refers to a record that does not exist');
    const { id } = store.benchmarks.createSuite({ name: 's', config: {} });
    const bad = result(id, 1);
    bad.trainSamplesPerSec.median = Number.NaN;
    expectQuadraError(() => store.benchmarks.addResult(bad), 'INVALID_ARGUMENT', 'trainSamplesPerSec.median must be a finite number');
  });

  it("stores PyTorch's results under 'pytorch' and refuses a backend the app cannot show", () => {
    const store = testStore();
    const { id } = store.benchmarks.createSuite({ name: 'beside pytorch', config: {} });
    const pytorch = { ...result(id, 1), backend: 'pytorch' as const, fingerprint: { cpu: 'AMD EPYC', torch: '2.3.1', blas: 'generic -> OpenBLAS 0.3.21', threads: '2 (fastest of 1, 2)', device: 'cpu' } };
    expect(store.benchmarks.addResult(pytorch)).toMatchObject({ backend: 'pytorch', fingerprint: pytorch.fingerprint });
    expect(store.benchmarks.results(id).map((r) => r.backend)).toEqual(['pytorch']);
    const unknown = { ...result(id, 1), backend: 'jax' } as unknown as NewBenchmarkResult;
    expectQuadraError(() => store.benchmarks.addResult(unknown), 'INVALID_ARGUMENT', "benchmark backend must be one of tensorflow-gpu, webgpu, simd, tensorflow, wasm, cpu, pytorch (got 'jax')");
    expect(store.benchmarks.results(id)).toHaveLength(1);
  });

  it('deletes a suite with its results (cascade)', () => {
    const store = testStore();
    const keep = store.benchmarks.createSuite({ name: 'keep', config: {} });
    const drop = store.benchmarks.createSuite({ name: 'drop', config: {} });
    store.benchmarks.addResult(result(keep.id, 1));
    store.benchmarks.addResult(result(drop.id, 1));
    store.benchmarks.addResult(result(drop.id, 2));
    store.benchmarks.removeSuite(drop.id);
    expect(store.benchmarks.results(drop.id)).toEqual([]);
    expect(store.benchmarks.results(keep.id)).toHaveLength(1);
    expect(store.db.prepare('SELECT count(*) AS n FROM benchmark_results').get()).toEqual({ n: 1 });
    expectIntegrityOk(store);
  });
});
