import { describe, expect, it } from 'vitest';
import { validateRequest } from '../../src-shared/api';
import { isBenchmarkBackend, suiteConfigurations } from '../../src-shared/benchmarks';

describe('benchmark suites with pytorch', () => {
  it('runs pytorch once per batch size, as 1 worker, whatever the worker counts', () => {
    expect(suiteConfigurations({ backends: ['simd', 'pytorch'], workerCounts: [1, 2], batchSizes: [32, 64] })).toEqual([
      { backend: 'simd', workers: 1, batchSize: 32 },
      { backend: 'simd', workers: 1, batchSize: 64 },
      { backend: 'simd', workers: 2, batchSize: 32 },
      { backend: 'simd', workers: 2, batchSize: 64 },
      { backend: 'pytorch', workers: 1, batchSize: 32 },
      { backend: 'pytorch', workers: 1, batchSize: 64 },
    ]);
    expect(suiteConfigurations({ backends: ['pytorch'], workerCounts: [], batchSizes: [] })).toEqual([]);
  });

  it("accepts 'pytorch' beside our backends in runBenchmarkSuite, and nothing else new", () => {
    const request = { name: 's', workerCounts: [1], batchSizes: [64] };
    expect(validateRequest('runBenchmarkSuite', { ...request, backends: ['pytorch', 'wasm'] }).backends).toEqual(['pytorch', 'wasm']);
    expect(() => validateRequest('runBenchmarkSuite', { ...request, backends: ['torch'] })).toThrow(/backends\.0/);
    expect(validateRequest('getPytorchAvailability', {})).toEqual({});
    expect([isBenchmarkBackend('pytorch'), isBenchmarkBackend('simd'), isBenchmarkBackend('jax'), isBenchmarkBackend(undefined)]).toEqual([true, true, false, false]);
  });
});
