import { describe, expect, it } from 'vitest';
import { parseEngineConfig } from '../../src-shared/engine-config';
import { phaseLines, runParallelBench } from '../../src-main/bench/parallel-bench';
import { NO_GPU, SMALL } from '../helpers/training';

describe('quadra bench --workers --profile', () => {
  it("reports each simd worker's time per phase, timed in the workers, and nothing when not asked", async () => {
    const config = parseEngineConfig({ batchSize: 16, seed: 5, model: SMALL });
    const options = { config, workers: 2, backend: 'simd' as const, gpu: NO_GPU, warmup: 2, iterations: 3, repeats: 2 };
    const profiled = await runParallelBench({ ...options, profile: true });
    expect(profiled.phases).toHaveLength(2);
    for (const phases of profiled.phases!) {
      // ZeRO-1 on threads: every phase of a sharded step was timed.
      for (const phase of ['betweenSteps', 'forward', 'backward', 'gradientCopy', 'barrier', 'reduce', 'adamw', 'parameterShare', 'transposes'] as const) {
        expect(phases[phase]).toBeGreaterThanOrEqual(0);
      }
      expect(phases.forward! + phases.backward!).toBeGreaterThan(0);
    }
    const lines = phaseLines(profiled);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^ {3}rank 1: betweenSteps \d+\.\d{3}, forward .*transposes \d+\.\d{3} \(Σ \d+\.\d{3} ms\/step\)$/);
    const plain = await runParallelBench(options);
    expect(plain.phases).toBeUndefined();
    expect(phaseLines(plain)).toEqual([]);
  });
});
