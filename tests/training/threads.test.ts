import { describe, expect, it } from 'vitest';
import { TrainingRun, type TrainingPlan } from '../../src-main/training/coordinator';
import { threadTransport } from '../../src-main/training/thread-transport';
import type { TransportFactory, WorkerTransport } from '../../src-main/training/transport';
import { buildLayout } from '../../src-main/engine/layout';
import { createSharedExchange, shardRanges, SharedExchangeClient } from '../../src-main/training/shared-exchange';
import { firstBitDifference, maxAbsDiff } from '../helpers/engine';
import { expectThreeWorkersEqualOne, F, plan as basePlan, runCapturing } from '../helpers/training';

// The simd backend trains in worker threads of this process, reducing gradients through one
// SharedArrayBuffer; these are issue 3's DDP guarantees again, on that path.

/** The shared small plan, on the simd backend (worker threads). */
function plan(overrides: Parameters<typeof basePlan>[0] = {}): TrainingPlan {
  return basePlan({ backend: 'simd', ...overrides });
}

/** The thread transport, keeping each worker's handle so a test can end one. */
function recordingThreads(handles: WorkerTransport[]): TransportFactory {
  const threads = threadTransport();
  return Object.assign((options: Parameters<TransportFactory>[0]) => {
    const transport = threads(options);
    handles.push(transport);
    return transport;
  }, { entry: threads.entry, sharesMemory: true });
}

describe('simd backend: data-parallel training in worker threads with a shared-memory all-reduce', () => {
  it('keeps the replicas bit-identical (threads of this process, surrogate gradients)', async () => {
    const { outcome, replicas, run } = await runCapturing(plan({ workers: 2, epochs: 2 }));
    expect(outcome.status).toBe('completed');
    expect(outcome.step).toBe(2 * Math.floor(230 / 16));
    expect(run.workerPids).toEqual([process.pid, process.pid]);
    expect(firstBitDifference(replicas[0]!.parameters, replicas[1]!.parameters)).toBe(-1);
    expect(firstBitDifference(replicas[0]!.optimizer.m, replicas[1]!.optimizer.m)).toBe(-1);
    expect(firstBitDifference(replicas[0]!.optimizer.v, replicas[1]!.optimizer.v)).toBe(-1);
    expect(replicas[0]!.optimizer.spikeStep).toBe(outcome.step);
  });

  it('N workers at global batch B end where one worker at batch B ends (dropout 0, spike loss weight 0)', async () => {
    await expectThreeWorkersEqualOne(plan);
  });

  it.each(['surrogate', 'none'] as const)(
    'ZeRO-1 with 3 workers of unequal shards (%s, each kernel in its own memory): replicas bit-identical, moments gathered, equal to one worker',
    async (spikeGradient) => {
      const engine = { batchSize: 24, model: { dropout: 0, spikeLossWeight: 0, spikeGradient } };
      const layout = buildLayout(plan({ engine }).config.model);
      const shards = createSharedExchange(3, layout.total, spikeGradient === 'surrogate' ? layout.total : layout.fieldCount).shards;
      // The small model's shards differ in length and (surrogate) one spans the field/spiking optimiser boundary.
      expect(new Set(shards.map(([a, b]) => b - a)).size).toBeGreaterThan(1);
      if (spikeGradient === 'surrogate') expect(shards.some(([a, b]) => a < layout.fieldCount && b > layout.fieldCount)).toBe(true);
      await expectThreeEqualOne(engine, false);
    },
  );

  it.each(['surrogate', 'none'] as const)(
    'chunked update with 3 workers in one shared memory (%s): replicas identical, equal to one worker',
    async (spikeGradient) => {
      const engine = { batchSize: 24, model: { dropout: 0, spikeLossWeight: 0, spikeGradient } };
      await expectThreeEqualOne(engine, true);
    },
  );

  it('a NaN loss in one shard stops the run as diverged; the other thread does not wait forever', async () => {
    const p = plan({ workers: 2, rows: 64 });
    for (const row of p.trainRows.subarray(0, 30)) p.data.fill(Number.NaN, row * F, row * F + F);
    const outcome = await new TrainingRun(p).run();
    expect(outcome.status).toBe('diverged');
    expect(outcome.error?.message).toMatch(/loss became NaN at step \d+/);
  });

  it('a worker thread that ends mid-run fails the run within 5 s, naming its rank', async () => {
    const handles: WorkerTransport[] = [];
    const run = new TrainingRun(plan({ workers: 2, epochs: 200, rows: 512, transport: recordingThreads(handles) }));
    const running = run.run();
    const start = Date.now();
    while (run.snapshot.step < 3) {
      if (Date.now() - start > 30_000) throw new Error('the run did not start');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const endedAt = Date.now();
    handles[1]!.kill();
    const outcome = await running;
    expect(Date.now() - endedAt).toBeLessThan(5000);
    expect(outcome.status).toBe('failed');
    expect(outcome.error?.message).toContain('worker rank 1');
  });
});

/**
 * 3 workers against one at the same global batch, through the slot exchange (each kernel its own
 * memory, ZeRO-1) or the chunk exchange (one shared memory).
 */
async function expectThreeEqualOne(engine: { batchSize: number; model: Record<string, unknown> }, simdSharedMemory: boolean) {
  const one = await runCapturing(plan({ workers: 1, mode: 'single', engine }));
  // Which phases each rank ever timed: only the chunk exchange times 'update', only the slot exchange 'parameterShare'.
  const timed = new Set<string>();
  const three = await runCapturing(plan({ workers: 3, engine, simdSharedMemory, profile: true }), {
    stepPhases: (_, phases) => phases.forEach((p) => Object.keys(p ?? {}).forEach((phase) => timed.add(phase))),
  });
  expect(three.outcome.status).toBe('completed');
  for (const replica of three.replicas.slice(1)) {
    expect(firstBitDifference(three.replicas[0]!.parameters, replica.parameters)).toBe(-1);
    expect(firstBitDifference(three.replicas[0]!.optimizer.m, replica.optimizer.m)).toBe(-1);
    expect(firstBitDifference(three.replicas[0]!.optimizer.v, replica.optimizer.v)).toBe(-1);
  }
  expect(maxAbsDiff(one.replicas[0]!.parameters, three.replicas[0]!.parameters)).toBeLessThanOrEqual(1e-5);
  expect(maxAbsDiff(one.replicas[0]!.optimizer.m, three.replicas[0]!.optimizer.m)).toBeLessThanOrEqual(1e-5);
  expect(maxAbsDiff(one.replicas[0]!.optimizer.v, three.replicas[0]!.optimizer.v)).toBeLessThanOrEqual(1e-5);
  expect(three.replicas[0]!.optimizer.fieldStep).toBe(three.outcome.step);
  expect({ update: timed.has('update'), parameterShare: timed.has('parameterShare') }).toEqual({ update: simdSharedMemory, parameterShare: !simdSharedMemory });
}

describe('the shared exchange', () => {
  it('splits the optimiser into contiguous cache-line shards that cover it once, balanced to a line', () => {
    for (const [count, workers] of [[1898, 3], [1612, 3], [330_000, 2], [40, 5], [7, 2]] as const) {
      const shards = shardRanges(count, workers);
      expect(shards).toHaveLength(workers);
      expect(shards[0]![0]).toBe(0);
      expect(shards[workers - 1]![1]).toBe(count);
      shards.forEach(([start, end], r) => {
        expect(start % 16 === 0 || start === count).toBe(true);
        if (r > 0) expect(start).toBe(shards[r - 1]![1]);
        expect(end).toBeGreaterThanOrEqual(start);
      });
      const lengths = shards.map(([a, b]) => b - a);
      if (count >= 16 * workers) expect(Math.max(...lengths) - Math.min(...lengths)).toBeLessThanOrEqual(16 + (count % 16));
    }
  });

  it('holds up to 128 workers (the header grows with them) and refuses more', async () => {
    const layout = createSharedExchange(128, 4);
    const clients = Array.from({ length: 128 }, (_, r) => new SharedExchangeClient(layout, r));
    // Rank r brings r + 1 rows and gradients all equal to r: every rank's cell and slot stay apart.
    const weights = await Promise.all(clients.map((c, r) => c.exchangeAsync(1, new Float32Array(4).fill(r), r + 1)));
    const total = (128 * 129) / 2;
    for (const w of weights) expect(w).toEqual(Array.from({ length: 128 }, (_, r) => (r + 1) / total));
    const mean = new Float32Array(4);
    clients[0]!.reduceInto(1, weights[0]!, mean);
    const expected = Array.from({ length: 128 }, (_, r) => (r * (r + 1)) / total).reduce((a, b) => a + b, 0);
    expect(mean[3]).toBeCloseTo(expected, 2);
    expect(() => createSharedExchange(129, 4)).toThrow('the shared-memory gradient exchange holds 1 to 128 workers, got 129');
  });
});
