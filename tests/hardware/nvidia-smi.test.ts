import { accessSync, chmodSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { QuadraError } from '../../src-shared/errors';
import {
  GPU_QUERY_ARGS,
  NOT_ON_PATH_REASON,
  parseCudaVersion,
  parseGpuQueryCsv,
  queryGpus,
  resolveNvidiaSmi,
} from '../../src-main/hardware/nvidia-smi';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FAKE_SMI = path.join(ROOT, 'tests/fixtures/bin/nvidia-smi');
const RECORDINGS = path.join(ROOT, 'resources/nvidia-smi');
const recording = (name: string) => readFileSync(path.join(RECORDINGS, name), 'utf8');

const DRIVER_FAILURE =
  "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.";

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'quadra-smi-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** The environment a test's nvidia-smi runs in: this process's, plus the fake's knobs. */
function fakeEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, QUADRA_NVIDIA_SMI: FAKE_SMI, ...extra };
}

function parseError(text: string): QuadraError {
  try {
    parseGpuQueryCsv(text);
  } catch (error) {
    if (error instanceof QuadraError) return error;
    throw error;
  }
  throw new Error('expected parseGpuQueryCsv to throw');
}

describe('parseGpuQueryCsv', () => {
  it('reads the recorded two-GPU query', () => {
    expect(parseGpuQueryCsv(recording('query-gpu.csv'))).toEqual([
      {
        index: 0,
        name: 'NVIDIA GeForce RTX 3090',
        uuid: 'GPU-00000000-0000-0000-0000-000000000000',
        memoryTotalMiB: 24576,
        memoryUsedMiB: 513,
        driverVersion: '535.129.03',
        cudaVersion: null,
      },
      {
        index: 1,
        name: 'NVIDIA GeForce RTX 3090',
        uuid: 'GPU-00000000-0000-0000-0000-000000000001',
        memoryTotalMiB: 24576,
        memoryUsedMiB: 12,
        driverVersion: '535.129.03',
        cudaVersion: null,
      },
    ]);
  });

  it('turns [N/A] and [Not Supported] into null where the field may be missing', () => {
    const [gpu, other] = parseGpuQueryCsv(
      '0, NVIDIA GeForce RTX 3090, [N/A], 24576, [Not Supported], 535.129.03\n' +
        '1, Tesla T4, GPU-00000000-0000-0000-0000-000000000001, 15360, [N/A], 535.129.03\n',
    );
    expect(gpu?.uuid).toBeNull();
    expect(gpu?.memoryUsedMiB).toBeNull();
    expect(other?.uuid).toBe('GPU-00000000-0000-0000-0000-000000000001');
    expect(other?.memoryUsedMiB).toBeNull();
  });

  it('keeps names with spaces (and, should one ever appear, ", ") whole; accepts CRLF', () => {
    const gpus = parseGpuQueryCsv(
      '0, NVIDIA RTX A4000, GPU-a, 16376, 1, 580.95.05\r\n1, Some Board, Rev 2, GPU-b, 4094, 1, 580.95.05\r\n',
    );
    expect(gpus.map((gpu) => gpu.name)).toEqual(['NVIDIA RTX A4000', 'Some Board, Rev 2']);
    expect(gpus.map((gpu) => gpu.uuid)).toEqual(['GPU-a', 'GPU-b']);
  });

  it('returns no GPUs for empty output', () => {
    expect(parseGpuQueryCsv('')).toEqual([]);
    expect(parseGpuQueryCsv('\n')).toEqual([]);
  });

  it('names the line and what it expected when a line does not parse', () => {
    const short = parseError('0, NVIDIA GeForce RTX 3090, GPU-a, 24576, 513, 535.129.03\n1, NVIDIA GeForce RTX 3090, GPU-b, 24576\n');
    expect(short.code).toBe('INVALID_FILE');
    expect(short.message).toBe(
      'nvidia-smi: line 2: expected 6 fields separated by ", " (index, name, uuid, memory.total, memory.used, driver_version), got 4',
    );

    // The header nvidia-smi prints without `noheader`, e.g. if someone changes the arguments.
    expect(parseError('index, name, uuid, memory.total [MiB], memory.used [MiB], driver_version\n').message).toBe(
      'nvidia-smi: line 1: index must be a whole number, got "index"',
    );
    // Units nvidia-smi prints without `nounits`.
    expect(parseError('0, Tesla T4, GPU-a, 15360 MiB, 2 MiB, 535.129.03').message).toBe(
      'nvidia-smi: line 1: memory.total must be a number of MiB, got "15360 MiB"',
    );
    expect(parseError('0, Tesla T4, GPU-a, [N/A], 2, 535.129.03').message).toBe(
      'nvidia-smi: line 1: memory.total is [N/A]; expected a number of MiB',
    );
  });
});

describe('parseCudaVersion', () => {
  it('reads the CUDA version from the recorded banners', () => {
    expect(parseCudaVersion(recording('banner.txt'))).toBe('12.2');
    expect(parseCudaVersion(recording('banner-1x.txt'))).toBe('12.2');
  });

  it('reads the header of R610+ drivers, which say "CUDA UMD Version"', () => {
    const header = '| NVIDIA-SMI 610.43.02              KMD Version: 610.43.02     CUDA UMD Version: 13.3     |';
    expect(parseCudaVersion(header)).toBe('13.3');
  });

  it('returns null for drivers that print no CUDA version, and for the driver failure message', () => {
    expect(parseCudaVersion('| NVIDIA-SMI 331.62     Driver Version: 331.62         |')).toBeNull();
    expect(parseCudaVersion(DRIVER_FAILURE)).toBeNull();
  });
});

describe('resolveNvidiaSmi', () => {
  it('honours QUADRA_NVIDIA_SMI as given', () => {
    expect(resolveNvidiaSmi({ QUADRA_NVIDIA_SMI: '/opt/odd place/nvidia-smi', PATH: '' })).toBe('/opt/odd place/nvidia-smi');
  });

  it.skipIf(process.platform === 'win32')('finds the first runnable nvidia-smi on PATH, or returns null', () => {
    const empty = tempDir();
    const notExecutable = tempDir();
    writeFileSync(path.join(notExecutable, 'nvidia-smi'), '#!/bin/sh\n');
    chmodSync(path.join(notExecutable, 'nvidia-smi'), 0o644);
    const good = tempDir();
    writeFileSync(path.join(good, 'nvidia-smi'), '#!/bin/sh\n');
    chmodSync(path.join(good, 'nvidia-smi'), 0o755);

    expect(resolveNvidiaSmi({ PATH: [empty, notExecutable, good].join(path.delimiter) })).toBe(path.join(good, 'nvidia-smi'));
    expect(resolveNvidiaSmi({ PATH: [empty, notExecutable].join(path.delimiter) })).toBeNull();
    expect(resolveNvidiaSmi({})).toBeNull();
  });
});

describe('queryGpus against the fake nvidia-smi', () => {
  it('the fake is executable and answers only the recorded query', () => {
    expect(() => accessSync(FAKE_SMI, constants.X_OK)).not.toThrow();
    expect(GPU_QUERY_ARGS).toEqual([
      '--query-gpu=index,name,uuid,memory.total,memory.used,driver_version',
      '--format=csv,noheader,nounits',
    ]);
  });

  it('reports the two recorded GPUs with driver and CUDA version', async () => {
    const { status, gpus } = await queryGpus({ env: fakeEnv() });
    expect(status).toEqual({ available: true, path: FAKE_SMI });
    expect(gpus).toHaveLength(2);
    expect(gpus.map((gpu) => gpu.index)).toEqual([0, 1]);
    for (const gpu of gpus) {
      expect(gpu.name).toBe('NVIDIA GeForce RTX 3090');
      expect(gpu.memoryTotalMiB).toBe(24576);
      expect(gpu.driverVersion).toBe('535.129.03');
      expect(gpu.cudaVersion).toBe('12.2');
    }
    expect(gpus.map((gpu) => gpu.memoryUsedMiB)).toEqual([513, 12]);
  });

  it('reports the one-GPU recording', async () => {
    const { status, gpus } = await queryGpus({ env: fakeEnv({ QUADRA_FAKE_SMI_VARIANT: '1x' }) });
    expect(status.available).toBe(true);
    expect(gpus).toEqual([
      {
        index: 0,
        name: 'Tesla T4',
        uuid: 'GPU-00000000-0000-0000-0000-000000000000',
        memoryTotalMiB: 15360,
        memoryUsedMiB: 2,
        driverVersion: '535.129.03',
        cudaVersion: '12.2',
      },
    ]);
  });

  it('an explicit path option wins over the environment', async () => {
    const { status, gpus } = await queryGpus({ path: FAKE_SMI, env: { ...process.env, QUADRA_NVIDIA_SMI: '/nonexistent/nvidia-smi' } });
    expect(status).toEqual({ available: true, path: FAKE_SMI });
    expect(gpus).toHaveLength(2);
  });

  it('a driver that is not loaded: available false with nvidia-smi’s own message', async () => {
    const result = await queryGpus({ env: fakeEnv({ QUADRA_FAKE_SMI_FAIL: '1' }) });
    expect(result).toEqual({
      status: { available: false, reason: `nvidia-smi exited with code 9: ${DRIVER_FAILURE}` },
      gpus: [],
    });
  });

  it('a path that does not exist: available false, not found', async () => {
    const missing = path.join(tempDir(), 'nvidia-smi');
    const result = await queryGpus({ env: { ...process.env, QUADRA_NVIDIA_SMI: missing } });
    expect(result).toEqual({ status: { available: false, reason: `nvidia-smi not found at ${missing}` }, gpus: [] });
  });

  it('nothing on PATH: available false with the hint about the driver', async () => {
    const result = await queryGpus({ env: { PATH: tempDir() } });
    expect(result).toEqual({ status: { available: false, reason: NOT_ON_PATH_REASON }, gpus: [] });
    expect(NOT_ON_PATH_REASON).toBe('nvidia-smi not found on PATH (no NVIDIA driver installed?)');
  });

  it('a hung nvidia-smi: available false after the timeout', async () => {
    const started = Date.now();
    const result = await queryGpus({ env: fakeEnv({ QUADRA_FAKE_SMI_SLEEP: '2' }), timeoutMs: 300 });
    expect(result).toEqual({ status: { available: false, reason: 'nvidia-smi did not answer within 300 ms (a hung driver?)' }, gpus: [] });
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('output it cannot read: available false naming the line', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'query-gpu.csv'), '0, Tesla T4, GPU-a, 15360 MiB, 2 MiB, 535.129.03\n');
    const result = await queryGpus({ env: fakeEnv({ QUADRA_FAKE_SMI_DIR: dir }) });
    expect(result).toEqual({
      status: { available: false, reason: 'nvidia-smi: line 1: memory.total must be a number of MiB, got "15360 MiB"' },
      gpus: [],
    });
  });

  it('a banner that fails leaves the GPUs, without a CUDA version', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'query-gpu.csv'), recording('query-gpu.csv'));
    const { status, gpus } = await queryGpus({ env: fakeEnv({ QUADRA_FAKE_SMI_DIR: dir }) });
    expect(status.available).toBe(true);
    expect(gpus.map((gpu) => gpu.cudaVersion)).toEqual([null, null]);
  });
});
