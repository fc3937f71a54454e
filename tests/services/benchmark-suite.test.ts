import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { WorkstationEvents } from '../../src-shared/api';
import { WorkstationService } from '../../src-main/services/workstation';
import { openStore } from '../../src-main/store/database';
import { TEST_HARDWARE } from '../helpers/training';

/**
 * A benchmark suite with PyTorch beside simd: pytorch runs once per batch size whatever the worker
 * counts, and both are stored with their fingerprints (torch's version, BLAS, threads and device
 * on the pytorch row). Uses the first Python with torch the runner finds (Debian's, here).
 */
const HAS_TORCH = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0 || Boolean(process.env.QUADRA_PYTHON);
const SKIP = HAS_TORCH ? '' : ' — skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch python3-numpy)';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-suite-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('runBenchmarkSuite with pytorch', () => {
  it.skipIf(!HAS_TORCH)(`measures pytorch once per batch size beside simd × 1, 2 workers and stores both with fingerprints${SKIP}`, async () => {
    const store = openStore(path.join(tmp, 'suite.sqlite'));
    const events: Array<WorkstationEvents['onDidProgressBenchmark']> = [];
    const service = new WorkstationService({
      store,
      hardware: async () => TEST_HARDWARE,
      dataDir: tmp,
      emit: (event, payload) => {
        if (event === 'onDidProgressBenchmark') events.push(payload as WorkstationEvents['onDidProgressBenchmark']);
      },
    });
    const availability = await service.getPytorchAvailability({});
    expect(availability.available, availability.reason).toBe(true);
    expect(availability.reason).toMatch(/^torch \S+ in /);

    const { suiteId } = await service.runBenchmarkSuite({ name: 'beside pytorch', backends: ['simd', 'pytorch'], workerCounts: [1, 2], batchSizes: [8], spikeGradient: 'none', warmup: 1, iterations: 2, repeats: 1 });
    await vi.waitFor(() => expect(events.some((e) => e.suiteId === suiteId && e.label === 'done')).toBe(true), { timeout: 90_000, interval: 200 });
    expect(events.filter((e) => e.error)).toEqual([]);
    // simd × 1, simd × 2, pytorch once: three configurations, not four.
    expect(events.map((e) => e.total)).toEqual([3, 3, 3, 3]);
    expect(events[2]!.label).toBe('pytorch (one process, fastest thread count), batch 8');

    const results = store.benchmarks.results(suiteId);
    expect(results.map((r) => [r.backend, r.workers, r.batchSize, r.spikeGradient])).toEqual([
      ['simd', 1, 8, 'none'],
      ['simd', 2, 8, 'none'],
      ['pytorch', 1, 8, 'none'],
    ]);
    const [simd, , pytorch] = results;
    expect(simd!.fingerprint).toMatchObject({ backend: 'simd', precision: 'fp32', cpu: 'test CPU (2 cores)' });
    expect(simd!.fingerprint.torch).toBeUndefined();
    expect(pytorch!.fingerprint).toMatchObject({ backend: 'pytorch', precision: 'fp32', cpu: 'test CPU (2 cores)' });
    expect(pytorch!.fingerprint.torch).toMatch(/^\d+\.\d+/);
    expect(pytorch!.fingerprint.blas).toMatch(/ -> /);
    expect(pytorch!.fingerprint.threads).toMatch(/^\d+ \((fastest of [\d, ]+|torch default)\)$/);
    expect(pytorch!.fingerprint.device).toMatch(/^(cpu|cuda \(.+\))$/);
    for (const r of results) expect(r.trainSamplesPerSec.median).toBeGreaterThan(0);
    store.close();
  }, 120_000);
});
