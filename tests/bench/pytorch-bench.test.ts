import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  probePytorch,
  PytorchCrashError,
  PytorchOutputError,
  pytorchFingerprint,
  PytorchTimeoutError,
  PytorchUnavailableError,
  referenceScript,
  runPytorchBench,
  type PytorchProbe,
} from '../../src-main/bench/pytorch-bench';

/**
 * The PyTorch runner against Debian's real torch (bench/pytorch-reference.py, tiny iterations),
 * and against a Python without torch (tests/fixtures/bin/no-torch/python3, which fails as a real
 * one does at `import torch`, or crashes, hangs or prints nonsense when asked to).
 */
const DEBIAN_PYTHON = '/usr/bin/python3';
const HAS_TORCH = spawnSync(DEBIAN_PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
const SKIP = HAS_TORCH ? '' : ` — skipped: ${DEBIAN_PYTHON} cannot import torch (apt-get install python3-torch python3-numpy)`;
const NO_TORCH_DIR = path.resolve(__dirname, '../fixtures/bin/no-torch');
const NO_TORCH = path.join(NO_TORCH_DIR, 'python3');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'quadra-pytorch-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const TINY = { batchSize: 8, spikeGradient: 'none' as const, iterations: 2, repeats: 2, warmup: 1 };
/** A probe that "found" the fake Python, so the run itself meets the fake. */
const fakeFound: PytorchProbe = { available: true, python: NO_TORCH, torch: '2.3.1', cuda: false, gpu: null, cores: 1, reason: 'fake' };

describe('the PyTorch runner', () => {
  it.skipIf(!HAS_TORCH)(`runs bench/pytorch-reference.py with Debian's torch at its fastest thread count${SKIP}`, async () => {
    const env = { ...process.env, QUADRA_PYTHON: DEBIAN_PYTHON };
    const probe = await probePytorch({ env });
    expect(probe).toMatchObject({ available: true, python: DEBIAN_PYTHON });
    expect(probe.reason).toMatch(new RegExp(`^torch \\S+ in \\$QUADRA_PYTHON \\(${DEBIAN_PYTHON}\\); (CPU, \\d+ cores?|CUDA on .+)$`));

    const result = await runPytorchBench({ ...TINY, env, probe });
    expect(result).toMatchObject({ python: DEBIAN_PYTHON, batchSize: 8, fieldSize: 100, spikeGradient: 'none', iterations: 2, repeats: 2, warmup: 1, precision: 'fp32' });
    expect(result.torch).toBe(probe.available ? probe.torch : '');
    expect(result.script).toBe(referenceScript());
    for (const spread of [result.trainSamplesPerSec, result.forwardSamplesPerSec]) {
      expect(spread.median).toBeGreaterThan(0);
      expect(spread.min).toBeLessThanOrEqual(spread.median);
      expect(spread.max).toBeGreaterThanOrEqual(spread.median);
    }
    if (result.device === 'cpu') {
      // Every count tried is reported, 1 first, and the one kept is the fastest of them.
      expect(result.threadTrials[0]!.threads).toBe(1);
      const fastest = result.threadTrials.reduce((a, b) => (b.trainSamplesPerSec > a.trainSamplesPerSec ? b : a));
      expect(result.threads).toBe(fastest.threads);
    }
    expect(result.blas).toMatch(/ -> /);
    const fingerprint = pytorchFingerprint(result);
    expect(Object.keys(fingerprint)).toEqual(['torch', 'blas', 'threads', 'device']);
    expect(fingerprint.threads).toMatch(/^\d+ \((fastest of [\d, ]+|torch default)\)$/);
  }, 60_000);

  it.skipIf(!HAS_TORCH)(`finds the model (resources/torchrun/model.py) where the packaged app keeps it, and names where it looked when it is missing${SKIP}`, () => {
    const script = referenceScript();
    const model = path.join(path.dirname(script), '../resources/torchrun/model.py');
    const place = (files: Array<[string, string]>) => {
      const dir = mkdtempSync(path.join(tmp, 'layout-'));
      for (const [from, to] of files) {
        mkdirSync(path.dirname(path.join(dir, to)), { recursive: true });
        copyFileSync(from, path.join(dir, to));
      }
      return dir;
    };
    const help = (dir: string, file: string) => spawnSync(DEBIAN_PYTHON, [path.join(dir, file), '--help'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
    const app = place([[script, 'resources/app.asar.unpacked/bench/pytorch-reference.py'], [model, 'resources/torchrun/model.py']]);
    expect(help(app, 'resources/app.asar.unpacked/bench/pytorch-reference.py')).toMatchObject({ status: 0, stderr: '' });
    expect(existsSync(path.join(app, 'resources/torchrun/__pycache__'))).toBe(false);
    const alone = place([[script, 'pytorch-reference.py']]);
    const missing = help(alone, 'pytorch-reference.py');
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`pytorch-reference.py: model.py not found (looked in ${alone}, `);
  }, 30_000);

  it('says which Pythons it tried and how to install torch when none can import it', async () => {
    // $QUADRA_PYTHON, when set, is the only one tried: an explicit choice is never replaced by another torch.
    const chosen = { env: { QUADRA_PYTHON: NO_TORCH, PATH: '/usr/bin:/bin' } };
    const probe = await probePytorch(chosen);
    expect(probe.available).toBe(false);
    const error = await runPytorchBench({ ...TINY, ...chosen }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PytorchUnavailableError);
    const { message, code, name } = error as PytorchUnavailableError;
    expect({ code, name }).toEqual({ code: 'BACKEND_UNAVAILABLE', name: 'PytorchUnavailableError' });
    expect(message).toBe(
      `no Python with PyTorch found (tried $QUADRA_PYTHON (${NO_TORCH}): ModuleNotFoundError: No module named 'torch'); ` +
        "it cannot import torch: install PyTorch (pip install torch, or Debian's python3-torch), or set QUADRA_PYTHON to a Python that has it",
    );
    expect(probe.reason).toBe(message);

    // Otherwise python3 on PATH, then the system's, each named with why it failed.
    const emptyDir = mkdtempSync(path.join(tmp, 'empty-'));
    const none = await probePytorch({ env: { PATH: emptyDir }, systemPythons: ['/nonexistent/python3', NO_TORCH] });
    expect(none.reason).toBe(
      `no Python with PyTorch found (tried python3 on PATH: not found; /nonexistent/python3: not found; ${NO_TORCH}: ModuleNotFoundError: No module named 'torch'); ` +
        "none of them can import torch: install PyTorch (pip install torch, or Debian's python3-torch), or set QUADRA_PYTHON to a Python that has it",
    );
    // python3 found on PATH is named with where it was found; the same file is tried once.
    const onPath = await probePytorch({ env: { PATH: NO_TORCH_DIR }, systemPythons: [NO_TORCH] });
    expect(onPath.available ? [] : onPath.tried).toEqual([{ label: `python3 on PATH (${NO_TORCH})`, problem: "ModuleNotFoundError: No module named 'torch'" }]);
  });

  it('names a crash, a run past its time limit and output that is not the JSON result', async () => {
    const run = (mode: string, timeoutMs = 20_000) => runPytorchBench({ ...TINY, probe: fakeFound, env: { QUADRA_FAKE_PYTHON: mode }, timeoutMs }).catch((e: unknown) => e);

    const crash = await run('crash');
    expect(crash).toBeInstanceOf(PytorchCrashError);
    expect((crash as Error).message).toMatch(/^bench\/pytorch-reference\.py \(.*no-torch\/python3, batch 8\) failed: RuntimeError: \[enforce fail at alloc_cpu\.cpp:75\] DefaultCPUAllocator: not enough memory/);
    expect((crash as PytorchCrashError).details).toMatchObject({ exitCode: 1 });

    const started = Date.now();
    const hang = await run('hang', 500);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(hang).toBeInstanceOf(PytorchTimeoutError);
    expect((hang as Error).message).toContain('did not finish within 1 s (2 × 2 steps after 1 warm-up) and was stopped');

    const garbage = await run('garbage');
    expect(garbage).toBeInstanceOf(PytorchOutputError);
    expect((garbage as Error).message).toContain('printed no benchmark result');
    expect((garbage as Error).message).toContain('torch 2.3.1, 1 thread(s), batch 64');
  }, 30_000);

  it("refuses mixed precision where torch sees no CUDA GPU, before running anything", async () => {
    await expect(runPytorchBench({ ...TINY, probe: fakeFound, precision: 'mixed' })).rejects.toThrow(
      "precision 'mixed' on pytorch is torch.autocast float16 on CUDA; torch 2.3.1 here sees no CUDA GPU",
    );
  });
});
