import { describe, expect, it } from 'vitest';
import { TrainingRun, type ProgressSnapshot, type StepResult } from '../../src-main/training/coordinator';
import type { EngineSnapshot } from '../../src-main/training/protocol';
import { firstBitDifference } from '../helpers/engine';
import { expectThreeWorkersEqualOne, F, plan, runCapturing } from '../helpers/training';
import { isProcessAlive } from '../../src-main/hardware/process-identity';

/** A worker's pid is alive (undefined: it never had one). */
const isAlive = (pid: number | undefined): boolean => pid !== undefined && isProcessAlive(pid);

async function waitUntil(predicate: () => boolean, timeoutMs: number): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('data-parallel training (real worker processes)', () => {
  it('keeps every replica bit-identical and never makes a worker wait for data', async () => {
    const { outcome, replicas, run } = await runCapturing(plan({ workers: 2, epochs: 2 }));
    expect(outcome.status).toBe('completed');
    expect(outcome.step).toBe(2 * Math.floor(230 / 16));
    expect(replicas).toHaveLength(2);
    expect(firstBitDifference(replicas[0]!.parameters, replicas[1]!.parameters)).toBe(-1);
    expect(firstBitDifference(replicas[0]!.optimizer.m, replicas[1]!.optimizer.m)).toBe(-1);
    expect(replicas[0]!.step).toBe(outcome.step);
    // Batches are sent a step ahead: over the whole run a worker waits well under a millisecond a step.
    for (const worker of run.snapshot.workers) expect(worker.dataWaitMs / outcome.step).toBeLessThan(1);
    expect(run.workerPids.every((pid) => !isAlive(pid))).toBe(true);
  });

  it('N workers at global batch B end where one worker at batch B ends (dropout 0, spike loss weight 0)', async () => {
    await expectThreeWorkersEqualOne(plan, { epochs: 1 });
  });

  it('multi-gpu mode starts one worker per GPU with CUDA_VISIBLE_DEVICES set to its index', async () => {
    const twoGpus = {
      gpus: [0, 1].map((index) => ({ index, name: 'NVIDIA GeForce RTX 3090', uuid: null, memoryTotalMiB: 24576, memoryUsedMiB: 0, driverVersion: '535.129.03', cudaVersion: '12.2' })),
      nvidiaSmi: { available: true as const, path: 'tests/fixtures/bin/nvidia-smi' },
    };
    let seen: Array<string | null> = [];
    // Runs on the CPU backend here; on a GPU machine the same plan names 'tensorflow-gpu'.
    const run = new TrainingRun(plan({ mode: 'multi-gpu', workers: 2, gpu: twoGpus, epochs: 1, rows: 64 }), {
      workersReady: (workers) => (seen = workers.map((w) => w.cudaVisibleDevices)),
    });
    expect((await run.run()).status).toBe('completed');
    expect(seen).toEqual(['0', '1']);
    expect(() => new TrainingRun(plan({ mode: 'multi-gpu', workers: 3, gpu: twoGpus }))).toThrow(/needs 3 GPUs, 2 found/);
  });

  it('a worker killed mid-run fails the run within 5 s, naming rank and signal, and leaves no process behind', async () => {
    const run = new TrainingRun(plan({ workers: 2, epochs: 50, rows: 512 }));
    const running = run.run();
    await waitUntil(() => run.snapshot.step >= 3, 30_000);
    const victim = run.workerPids[1]!;
    const killedAt = Date.now();
    process.kill(victim, 'SIGKILL');
    const outcome = await running;
    expect(Date.now() - killedAt).toBeLessThan(5000);
    expect(outcome.status).toBe('failed');
    expect(outcome.error?.message).toContain('worker rank 1');
    expect(outcome.error?.message).toContain('SIGKILL');
    await waitUntil(() => run.workerPids.every((pid) => !isAlive(pid)), 5000);
  });

  it('a NaN loss stops the run as diverged, with the step', async () => {
    const p = plan({ workers: 2, rows: 64 });
    // More training rows than the 10 a drop-last epoch leaves out, so some NaN row is certainly used.
    for (const row of p.trainRows.subarray(0, 30)) p.data.fill(Number.NaN, row * F, row * F + F);
    const outcome = await new TrainingRun(p).run();
    expect(outcome.status).toBe('diverged');
    expect(outcome.error?.code).toBe('DIVERGED');
    expect(outcome.error?.message).toMatch(/loss became NaN at step \d+/);
  });

  it('reports progress 2–10 times a second, pauses, resumes and cancels with a resumable checkpoint', async () => {
    const times: number[] = [];
    const snapshots: ProgressSnapshot[] = [];
    const statuses: string[] = [];
    let checkpointAt: { epoch: number; stepInEpoch: number } | null = null;
    const run = new TrainingRun(plan({ workers: 2, epochs: 100, rows: 512 }), {
      progress: (s) => {
        times.push(Date.now());
        snapshots.push(s);
      },
      status: (s) => statuses.push(s),
      checkpoint: (c) => {
        checkpointAt = c.resumeAt;
      },
    });
    const running = run.run();
    await waitUntil(() => run.snapshot.step >= 2, 30_000);
    run.pause();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const pausedAt = run.snapshot.step;
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(run.snapshot.step).toBe(pausedAt);
    expect(run.snapshot.paused).toBe(true);
    run.resume();
    await waitUntil(() => run.snapshot.step > pausedAt, 10_000);
    run.cancel();
    const outcome = await running;
    expect(outcome.status).toBe('cancelled');
    expect(statuses).toEqual(['paused', 'running']);
    expect(checkpointAt).not.toBeNull();
    // Rate over the middle of the run (the first tick comes after worker start-up).
    const span = (times.at(-1)! - times[0]!) / 1000;
    const rate = (times.length - 1) / span;
    expect(rate).toBeGreaterThanOrEqual(2);
    expect(rate).toBeLessThanOrEqual(10);
    expect(snapshots.at(-1)!.workers.every((w) => w.memory !== null && w.memory.rssBytes > 0)).toBe(true);
  });

  it('resuming from a checkpoint continues exactly where the run stood', async () => {
    const base = { workers: 2, rows: 160 };
    const full = await runCapturing(plan({ ...base, epochs: 2, checkpointEveryEpochs: 1 }));
    let afterEpochOne: { state: EngineSnapshot; resumeAt: { epoch: number; stepInEpoch: number } } | null = null;
    await new TrainingRun(plan({ ...base, epochs: 1 }), {
      checkpoint: (c) => {
        afterEpochOne = { state: c.state, resumeAt: c.resumeAt };
      },
    }).run();
    expect(afterEpochOne).not.toBeNull();
    const saved = afterEpochOne!;
    const resumed = await runCapturing(plan({ ...base, epochs: 2, start: { state: saved.state, ...saved.resumeAt } }));
    expect(resumed.outcome.step).toBe(full.outcome.step);
    expect(firstBitDifference(resumed.replicas[0]!.parameters, full.replicas[0]!.parameters)).toBe(-1);
  });

  it("reports every step's loss (stepEnd), each epoch's mean being theirs; validation shows in progress only at the step it was measured", async () => {
    const steps: StepResult[] = [];
    const epochs: Array<{ epoch: number; step: number; trainLoss: number; validationLoss: number | null }> = [];
    const snapshots: ProgressSnapshot[] = [];
    const run = new TrainingRun(plan({ workers: 1, backend: 'simd', epochs: 2 }), {
      stepEnd: (step, realSamples, result) => {
        expect(result.step).toBe(step);
        expect(realSamples).toBe(16);
        steps.push(result);
      },
      epochEnd: (summary) => epochs.push(summary),
      progress: (s) => snapshots.push(s),
    });
    const outcome = await run.run();
    expect(outcome.status).toBe('completed');
    const perEpoch = Math.floor(230 / 16);
    expect(steps.map((s) => s.step)).toEqual(Array.from({ length: 2 * perEpoch }, (_, i) => i + 1));
    expect(steps.map((s) => [s.epoch, s.stepInEpoch])).toEqual(steps.map((_, i) => [Math.floor(i / perEpoch) + 1, (i % perEpoch) + 1]));
    for (const s of steps) {
      expect(Number.isFinite(s.loss.loss) && s.loss.loss > 0).toBe(true);
      expect(s.samplesPerSec).toBeGreaterThan(0);
      expect(s.lossScale).toBeNull();
    }
    for (const e of epochs) {
      let sum = 0;
      for (const s of steps.filter((s) => s.epoch === e.epoch)) sum += s.loss.loss;
      expect(e.trainLoss).toBe(sum / perEpoch);
      expect(e.step).toBe(e.epoch * perEpoch);
    }
    // The final report stands after the last epoch's validation; any report between steps has none.
    expect(snapshots.at(-1)).toMatchObject({ step: 2 * perEpoch, validationLoss: epochs[1]!.validationLoss });
    expect(epochs[1]!.validationLoss).not.toBeNull();
    for (const s of snapshots) if (s.validationLoss !== null) expect(s.stepInEpoch).toBe(perEpoch);
  });
});
