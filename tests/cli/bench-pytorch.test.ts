import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/** `quadra bench --backend pytorch` as a user runs it: a real child process, Debian's torch. */
const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'src-main/cli/quadra.mjs');
const NO_TORCH = path.join(ROOT, 'tests/fixtures/bin/no-torch/python3');
const HAS_TORCH = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
const SKIP = HAS_TORCH ? '' : ' — skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch python3-numpy)';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-cli-pytorch-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function quadra(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, QUADRA_DB: path.join(tmp, 'cli.sqlite'), ...env }, timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

const TINY = ['--batch-size', '8', '--iterations', '2', '--repeats', '2', '--warmup', '1', '--spike-gradient', 'none'];

describe('quadra bench --backend pytorch', () => {
  it.skipIf(!HAS_TORCH)(`prints median/min/max samples/s like our backends, and one JSON object with --json${SKIP}`, async () => {
    const env = { QUADRA_PYTHON: '/usr/bin/python3' };
    const text = await quadra(['bench', '--backend', 'pytorch', ...TINY], env);
    expect(text.code, text.stderr).toBe(0);
    const lines = text.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^backend pytorch \(torch \S+, (cpu|cuda \(.+\)), threads \d+ \(.+\), BLAS .+\), batch 8, field 100, spike gradient none, 2 × 2 steps$/);
    expect(lines[1]).toMatch(/^trainStep {5}[\d,]+ samples\/s \(min \d+, max \d+\) {2}[\d.]+ ms\/step$/);
    expect(lines[2]).toMatch(/^processBatch {2}[\d,]+ samples\/s \(min \d+, max \d+\) {2}[\d.]+ ms\/batch$/);
    expect(text.stderr).toContain('pytorch ran ');

    const json = await quadra(['bench', '--backend', 'pytorch', ...TINY, '--json'], env);
    expect(json.code, json.stderr).toBe(0);
    const summary = JSON.parse(json.stdout) as Record<string, unknown> & { pytorch: Record<string, unknown>; trainSamplesPerSec: { median: number } };
    expect(json.stdout.trim().split('\n')).toHaveLength(1);
    expect(summary).toMatchObject({ backend: 'pytorch', batchSize: 8, fieldSize: 100, spikeGradient: 'none', precision: 'fp32', iterations: 2, repeats: 2, warmup: 1 });
    expect(summary.trainSamplesPerSec.median).toBeGreaterThan(0);
    expect(summary.pytorch).toMatchObject({ python: '/usr/bin/python3' });
    expect(Object.keys(summary.pytorch)).toEqual(['python', 'torch', 'blas', 'threads', 'threadTrials', 'device', 'gpu', 'cuda']);
  }, 60_000);

  it('refuses options that do not apply to PyTorch, as usage errors', async () => {
    const workers = await quadra(['bench', '--backend', 'pytorch', '--workers', '1,2']);
    expect(workers.code).toBe(2);
    expect(workers.stderr).toContain('--workers does not apply to --backend pytorch');
    const hidden = await quadra(['bench', '--backend', 'pytorch', '--hidden-size', '64']);
    expect(hidden.code).toBe(2);
    expect(hidden.stderr).toContain('--hidden-size: bench/pytorch-reference.py has the reference sizes fixed');
    const help = await quadra(['bench', '--help']);
    expect(help.stdout).toContain('or pytorch (the same model in PyTorch');
  });

  it('without torch: exit 1, the Python tried and how to install torch; --json gives one error object', async () => {
    const run = await quadra(['bench', '--backend', 'pytorch', '--json'], { QUADRA_PYTHON: NO_TORCH });
    expect(run.code).toBe(1);
    const { error } = JSON.parse(run.stdout) as { error: { code: string; message: string } };
    expect(error.code).toBe('BACKEND_UNAVAILABLE');
    expect(error.message).toContain(`tried $QUADRA_PYTHON (${NO_TORCH}): ModuleNotFoundError: No module named 'torch'`);
    expect(run.stderr).toContain("quadra bench: no Python with PyTorch found");
    expect(run.stderr).toContain("install PyTorch (pip install torch, or Debian's python3-torch)");
    expect(run.stderr).not.toMatch(/^\s+at /m);
  });
});
