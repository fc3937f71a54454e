import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { getOptimalConfig } from '../../src-main/engine/auto-config';
import { detectHardware } from '../../src-main/hardware/detect';

const FAKE_SMI = fileURLToPath(new URL('../fixtures/bin/nvidia-smi', import.meta.url));
const emptyDir = mkdtempSync(path.join(os.tmpdir(), 'quadra-detect-'));
afterAll(() => rmSync(emptyDir, { recursive: true, force: true }));

describe('detectHardware', () => {
  it('describes this machine and the GPUs the (fake) nvidia-smi reports', async () => {
    const hw = await detectHardware({ env: { ...process.env, QUADRA_NVIDIA_SMI: FAKE_SMI } });
    expect(hw.platform).toBe(process.platform);
    expect(hw.arch).toBe(process.arch);
    expect(hw.cpu.logicalCores).toBe(os.cpus().length || os.availableParallelism());
    expect(hw.cpu.physicalCores).toBeGreaterThanOrEqual(1);
    expect(hw.memoryTotalBytes).toBe(os.totalmem());
    expect(hw.memoryFreeBytes).toBeGreaterThan(0);
    expect(hw.memoryFreeBytes).toBeLessThanOrEqual(hw.memoryTotalBytes);
    expect(hw.nvidiaSmi).toEqual({ available: true, path: FAKE_SMI });
    expect(hw.gpus.map((gpu) => [gpu.name, gpu.memoryTotalMiB, gpu.cudaVersion])).toEqual([
      ['NVIDIA GeForce RTX 3090', 24576, '12.2'],
      ['NVIDIA GeForce RTX 3090', 24576, '12.2'],
    ]);
    expect(getOptimalConfig(hw)).toMatchObject({ mode: 'multi-gpu', workers: 2, batchSize: 64, device: 'gpu' });
  });

  it('takes nvidia-smi from the nvidiaSmiPath option', async () => {
    const hw = await detectHardware({
      nvidiaSmiPath: FAKE_SMI,
      env: { ...process.env, PATH: emptyDir, QUADRA_FAKE_SMI_VARIANT: '1x' },
    });
    expect(hw.nvidiaSmi).toEqual({ available: true, path: FAKE_SMI });
    expect(hw.gpus.map((gpu) => gpu.name)).toEqual(['Tesla T4']);
    // 15360 MiB is 15.0 GiB but 16.1 decimal GB, the unit the batch-size rule uses.
    expect(getOptimalConfig(hw)).toMatchObject({ mode: 'single', workers: 1, batchSize: 64, device: 'gpu' });
  });

  it('without nvidia-smi: no GPUs, the reason, and a CPU configuration', async () => {
    const hw = await detectHardware({ env: { PATH: emptyDir } });
    expect(hw.nvidiaSmi).toEqual({ available: false, reason: 'nvidia-smi not found on PATH (no NVIDIA driver installed?)' });
    expect(hw.gpus).toEqual([]);
    const config = getOptimalConfig(hw);
    expect(config.device).toBe('cpu');
    expect(config.workers).toBe(hw.cpu.physicalCores);
  });
});
