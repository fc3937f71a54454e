import { describe, expect, it } from 'vitest';
import { parseEngineConfig } from '../../src-shared/engine-config';
import { phaseLines, runParallelBench } from '../../src-main/bench/parallel-bench';
import { NO_GPU, SMALL } from '../helpers/training';

describe('quadra bench --workers --profile', () => {
  const config = parseEngineConfig({ batchSize: 16, seed: 5, model: SMALL });
  const options = { config, workers: 2, backend: 'simd' as const, gpu: NO_GPU, warmup: 2, iterations: 3, repeats: 2 };

  it("reports each simd worker's time per phase, timed in the workers, and nothing when not asked", async () => {
    const profiled = await runParallelBench({ ...options, profile: true });
    expect(profiled.phases).toHaveLength(2);
    for (const phases of profiled.phases!) {
      for (const phase of ['betweenSteps', 'forward', 'backward'] as const) expect(phases[phase]).toBeGreaterThanOrEqual(0);
      expect(phases.forward! + phases.backward!).toBeGreaterThan(0);
      // One shared memory: no copies, no separate AdamW or Wᵀ pass — the update's chunks.
      for (const phase of ['gradientCopy', 'reduce', 'adamw', 'parameterShare', 'transposes'] as const) expect(phases[phase]).toBeUndefined();
    }
    // Chunks go to whichever worker is free: between them the workers timed the update and their waits.
    expect(profiled.phases!.some((p) => (p.update ?? 0) > 0)).toBe(true);
    expect(profiled.phases!.some((p) => p.barrier !== undefined)).toBe(true);
    const lines = phaseLines(profiled);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^ {3}rank 1: betweenSteps \d+\.\d{3}, forward \d+\.\d{3}, backward .*\(Σ \d+\.\d{3} ms\/step\)$/);
    const plain = await runParallelBench(options);
    expect(plain.phases).toBeUndefined();
    expect(phaseLines(plain)).toEqual([]);
  });

  it('with a memory per worker (--simd-memory per-worker): every phase of a ZeRO-1 step', async () => {
    const profiled = await runParallelBench({ ...options, profile: true, simdSharedMemory: false });
    for (const phases of profiled.phases!) {
      for (const phase of ['betweenSteps', 'forward', 'backward', 'gradientCopy', 'barrier', 'reduce', 'adamw', 'parameterShare', 'transposes'] as const) {
        expect(phases[phase]).toBeGreaterThanOrEqual(0);
      }
      expect(phases.update).toBeUndefined();
    }
    expect(phaseLines(profiled)[1]).toMatch(/^ {3}rank 1: betweenSteps \d+\.\d{3}, forward .*transposes \d+\.\d{3} \(Σ \d+\.\d{3} ms\/step\)$/);
  });
});
