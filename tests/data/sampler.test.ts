import { describe, expect, it } from 'vitest';
import { QuadraError } from '../../src-shared/errors';
import { EpochSampler, gatherRows, type PlannedStep, type SamplerOptions } from '../../src-main/data/sampler';

/** Training rows that are not 0..n-1, as after a validation split. */
function trainingRows(n: number): Uint32Array {
  return Uint32Array.from({ length: n }, (_, i) => i * 2 + 1);
}

function sampler(overrides: Partial<SamplerOptions> = {}): EpochSampler {
  return new EpochSampler({ indices: trainingRows(100), globalBatch: 8, workers: 3, seed: 11, lastBatch: 'drop', ...overrides });
}

/** The step's rows in shard order (rank 0 first). */
function stepRows(step: PlannedStep): number[] {
  return step.shards.flatMap((shard) => Array.from(shard.rows));
}

function epochRows(s: EpochSampler, epoch: number): number[] {
  return [...s.epoch(epoch)].flatMap(stepRows);
}

function expectInvalidArgument(make: () => unknown, fragment: string): void {
  let caught: unknown;
  try {
    make();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(QuadraError);
  expect((caught as QuadraError).code).toBe('INVALID_ARGUMENT');
  expect((caught as QuadraError).message).toContain(fragment);
}

describe('EpochSampler', () => {
  it("splits each step into contiguous shards, the first ones one row larger (8 rows over 3 workers: 3, 3, 2)", () => {
    const s = sampler();
    for (const step of s.epoch(0)) {
      expect(step.shards.map((shard) => shard.rank)).toEqual([0, 1, 2]);
      expect(step.shards.map((shard) => shard.rows.length)).toEqual([3, 3, 2]);
      expect(step.shards.map((shard) => shard.realRows)).toEqual([3, 3, 2]);
      expect(step.realSamples).toBe(8);
    }
  });

  it('makes shards disjoint and contiguous slices of the epoch order', () => {
    const s = sampler({ globalBatch: 10, workers: 4 });
    const order = epochRows(s, 3);
    for (const step of s.epoch(3)) {
      const seen = new Set<number>();
      let position = step.stepInEpoch * 10;
      for (const shard of step.shards) {
        for (const row of shard.rows) {
          expect(seen.has(row)).toBe(false);
          seen.add(row);
        }
        // Contiguous: the shard is exactly the next rows of the epoch's order.
        expect(Array.from(shard.rows)).toEqual(order.slice(position, position + shard.rows.length));
        position += shard.rows.length;
      }
    }
  });

  it("with 'drop' sees every training row at most once per epoch and skips only the tail", () => {
    const indices = trainingRows(100);
    const s = sampler({ globalBatch: 8 });
    expect(s.stepsPerEpoch()).toBe(12);
    const rows = epochRows(s, 0);
    expect(rows).toHaveLength(96);
    expect(new Set(rows).size).toBe(96);
    const allowed = new Set(indices);
    for (const row of rows) expect(allowed.has(row)).toBe(true);
  });

  it("with an exact multiple and 'drop' sees every row exactly once", () => {
    const s = sampler({ globalBatch: 20, workers: 4 });
    expect(s.stepsPerEpoch()).toBe(5);
    expect(epochRows(s, 1).sort((a, b) => a - b)).toEqual(Array.from(trainingRows(100)));
  });

  it("with 'wrap' pads the last batch from the start of the epoch and counts only real samples", () => {
    const s = sampler({ globalBatch: 8, workers: 3, lastBatch: 'wrap' });
    expect(s.stepsPerEpoch()).toBe(13);
    const steps = [...s.epoch(2)];
    const rows = steps.flatMap(stepRows);
    expect(rows).toHaveLength(104);
    expect(new Set(rows)).toEqual(new Set(trainingRows(100)));
    expect(rows.slice(100)).toEqual(rows.slice(0, 4));

    const last = steps[12]!;
    expect(last.realSamples).toBe(4);
    expect(last.shards.map((shard) => shard.realRows)).toEqual([3, 1, 0]);
    expect(steps.reduce((total, step) => total + step.realSamples, 0)).toBe(100);
    for (const step of steps.slice(0, 12)) expect(step.realSamples).toBe(8);
  });

  it("with 'wrap' handles a batch larger than the dataset by cycling the order", () => {
    const s = new EpochSampler({ indices: trainingRows(3), globalBatch: 8, workers: 2, seed: 1, lastBatch: 'wrap' });
    expect(s.stepsPerEpoch()).toBe(1);
    const step = s.step(0, 0);
    const rows = stepRows(step);
    expect(step.realSamples).toBe(3);
    expect(step.shards.map((shard) => shard.realRows)).toEqual([3, 0]);
    expect(rows).toEqual([...rows.slice(0, 3), ...rows.slice(0, 3), ...rows.slice(0, 2)]);
    expect(new Set(rows)).toEqual(new Set(trainingRows(3)));
  });

  it('gives the same order for the same seed and epoch, and a different one otherwise', () => {
    expect(epochRows(sampler(), 4)).toEqual(epochRows(sampler(), 4));
    expect(epochRows(sampler(), 4)).not.toEqual(epochRows(sampler(), 5));
    expect(epochRows(sampler(), 4)).not.toEqual(epochRows(sampler({ seed: 12 }), 4));
  });

  it('step(e, k) equals the k-th step of the generator, in any call order', () => {
    const reference = sampler({ lastBatch: 'wrap' });
    const planned = [0, 1, 2].map((epoch) => [...reference.epoch(epoch)]);
    const fresh = sampler({ lastBatch: 'wrap' });
    // Jump between epochs so the cached permutation is replaced and rebuilt.
    for (const [epoch, k] of [[2, 7], [0, 12], [1, 0], [2, 0], [0, 3], [1, 12]]) {
      expect(fresh.step(epoch!, k!)).toEqual(planned[epoch!]![k!]);
    }
  });

  it('resumes mid-epoch with exactly the remaining steps', () => {
    const s = sampler();
    const full = [...s.epoch(6)];
    expect([...sampler().epoch(6, 5)]).toEqual(full.slice(5));
    expect([...sampler().epoch(6, s.stepsPerEpoch())]).toEqual([]);
  });

  it('does not let callers corrupt its state through returned or passed arrays', () => {
    const indices = trainingRows(16);
    const s = new EpochSampler({ indices, globalBatch: 4, workers: 2, seed: 3, lastBatch: 'drop' });
    const before = s.step(0, 1);
    s.step(0, 0).shards[0]!.rows.fill(999);
    indices.fill(0);
    expect(s.step(0, 1)).toEqual(before);
  });

  it('allows one worker taking the whole batch and as many workers as rows', () => {
    const one = sampler({ workers: 1, globalBatch: 8 });
    expect(one.step(0, 0).shards.map((shard) => shard.rows.length)).toEqual([8]);
    const many = sampler({ workers: 8, globalBatch: 8 });
    expect(many.step(0, 0).shards.map((shard) => shard.rows.length)).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
  });

  it('spreads an uneven batch of 10 over 4 workers as 3, 3, 2, 2', () => {
    expect(sampler({ globalBatch: 10, workers: 4 }).step(0, 0).shards.map((shard) => shard.rows.length)).toEqual([3, 3, 2, 2]);
  });

  it('rejects a batch larger than the dataset with drop, naming the row count', () => {
    expectInvalidArgument(() => sampler({ indices: trainingRows(5), globalBatch: 8 }), 'the dataset has 5 training rows, fewer than one batch of 8');
  });

  it('rejects bad options', () => {
    expectInvalidArgument(() => sampler({ globalBatch: 2, workers: 3 }), 'smaller than the 3 workers');
    expectInvalidArgument(() => sampler({ workers: 0 }), 'workers must be');
    expectInvalidArgument(() => sampler({ globalBatch: 0 }), 'global batch must be');
    expectInvalidArgument(() => sampler({ globalBatch: 2.5 }), 'global batch must be');
    expectInvalidArgument(() => sampler({ seed: 0.5 }), 'seed must be');
    expectInvalidArgument(() => sampler({ indices: new Uint32Array(0) }), 'no training rows');
    expectInvalidArgument(() => sampler({ lastBatch: 'pad' as 'wrap' }), "'drop' or 'wrap'");
  });

  it('rejects steps and epochs outside the plan', () => {
    const s = sampler();
    expectInvalidArgument(() => s.step(0, 12), 'step 12 is outside the epoch, expected 0 to 11');
    expectInvalidArgument(() => s.step(0, -1), 'outside the epoch');
    expectInvalidArgument(() => s.step(-1, 0), 'epoch must be');
    expectInvalidArgument(() => [...s.epoch(0, 13)], 'start step 13');
  });
});

describe('gatherRows', () => {
  const data = Float32Array.from({ length: 12 }, (_, i) => i); // 4 rows × 3

  it('copies the selected rows, repeats included, into a contiguous batch', () => {
    expect(Array.from(gatherRows(data, 3, Uint32Array.from([2, 0, 2])))).toEqual([6, 7, 8, 0, 1, 2, 6, 7, 8]);
  });

  it('writes into a given buffer and returns the used part of it', () => {
    const out = new Float32Array(12).fill(-1);
    const batch = gatherRows(data, 3, Uint32Array.from([3, 1]), out);
    expect(batch.buffer).toBe(out.buffer);
    expect(Array.from(batch)).toEqual([9, 10, 11, 3, 4, 5]);
    expect(out[6]).toBe(-1);
  });

  it('rejects a too-small buffer, rows out of range and a bad width', () => {
    expectInvalidArgument(() => gatherRows(data, 3, Uint32Array.from([0, 1]), new Float32Array(5)), 'expected at least 6');
    expectInvalidArgument(() => gatherRows(data, 3, Uint32Array.from([4])), 'row 4 is out of range, the data has 4 rows');
    expectInvalidArgument(() => gatherRows(data, 0, Uint32Array.from([0])), 'width must be');
  });
});
