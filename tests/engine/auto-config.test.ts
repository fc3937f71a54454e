import { describe, expect, it } from 'vitest';
import { getOptimalConfig, gpuMemoryGb } from '../../src-main/engine/auto-config';
import type { CpuInfo, GpuInfo } from '../../src-shared/hardware';

// Memory totals as nvidia-smi prints them for these cards in published real output
// (resources/nvidia-smi/README.md for the 3090 and T4; the others from public nvidia-smi tables).
const RTX_3090 = { name: 'NVIDIA GeForce RTX 3090', mib: 24576 };
const TESLA_T4 = { name: 'Tesla T4', mib: 15360 };
const RTX_A4000 = { name: 'NVIDIA RTX A4000', mib: 16376 };
const QUADRO_RTX_4000 = { name: 'Quadro RTX 4000', mib: 8192 };
const GTX_1660 = { name: 'NVIDIA GeForce GTX 1660', mib: 6144 };

const CPU: CpuInfo = { model: 'AMD EPYC', logicalCores: 16, physicalCores: 8 };

function gpus(...cards: { name: string; mib: number }[]): GpuInfo[] {
  return cards.map((card, index) => ({
    index,
    name: card.name,
    uuid: null,
    memoryTotalMiB: card.mib,
    memoryUsedMiB: 0,
    driverVersion: '535.129.03',
    cudaVersion: '12.2',
  }));
}

describe('gpuMemoryGb', () => {
  it('converts MiB to decimal GB like torch total_memory / 1e9', () => {
    expect(gpuMemoryGb(24576)).toBeCloseTo(25.769803776, 9);
    expect(gpuMemoryGb(15360)).toBeCloseTo(16.10612736, 9);
  });
});

describe('getOptimalConfig', () => {
  it('2 × 24 GB: multi-gpu, one worker per GPU, batch 64', () => {
    expect(getOptimalConfig({ cpu: CPU, gpus: gpus(RTX_3090, RTX_3090) })).toEqual({
      batchSize: 64,
      workers: 2,
      mode: 'multi-gpu',
      device: 'gpu',
      reasons: {
        batchSize: '2 × NVIDIA GeForce RTX 3090 with 25.8 GB each (≥ 16 GB) → batch 64 per worker',
        workers: '2 GPUs → 2 workers, one per GPU',
        mode: '2 GPUs → multi-gpu: data-parallel training, one worker per GPU',
      },
    });
  });

  it('1 × T4 (15360 MiB = 15.0 GiB but 16.1 GB): the decimal rule gives batch 64', () => {
    const config = getOptimalConfig({ cpu: CPU, gpus: gpus(TESLA_T4) });
    expect(config).toMatchObject({ batchSize: 64, workers: 1, mode: 'single', device: 'gpu' });
    expect(config.reasons).toEqual({
      batchSize: '1 × Tesla T4 with 16.1 GB (≥ 16 GB) → batch 64 per worker',
      workers: '1 GPU → 1 worker',
      mode: '1 GPU → single: one worker on the GPU',
    });
    expect(getOptimalConfig({ cpu: CPU, gpus: gpus(RTX_A4000) }).batchSize).toBe(64);
  });

  it('1 × 8 GB: batch 32', () => {
    const config = getOptimalConfig({ cpu: CPU, gpus: gpus(QUADRO_RTX_4000) });
    expect(config).toMatchObject({ batchSize: 32, workers: 1, mode: 'single', device: 'gpu' });
    expect(config.reasons.batchSize).toBe('1 × Quadro RTX 4000 with 8.6 GB (≥ 8 GB) → batch 32 per worker');
  });

  it('1 × 6 GB: batch 16', () => {
    const config = getOptimalConfig({ cpu: CPU, gpus: gpus(GTX_1660) });
    expect(config).toMatchObject({ batchSize: 16, workers: 1, mode: 'single', device: 'gpu' });
    expect(config.reasons.batchSize).toBe('1 × NVIDIA GeForce GTX 1660 with 6.4 GB (< 8 GB) → batch 16 per worker');
  });

  it('24 GB + 8 GB: the smallest GPU sets the batch for every worker', () => {
    const config = getOptimalConfig({ cpu: CPU, gpus: gpus(RTX_3090, QUADRO_RTX_4000) });
    expect(config).toMatchObject({ batchSize: 32, workers: 2, mode: 'multi-gpu', device: 'gpu' });
    expect(config.reasons.batchSize).toBe(
      '2 GPUs (NVIDIA GeForce RTX 3090 25.8 GB, Quadro RTX 4000 8.6 GB); the smallest, Quadro RTX 4000, has 8.6 GB (≥ 8 GB) → batch 32 per worker',
    );
  });

  it('at a threshold, the reason shows enough digits not to contradict itself', () => {
    // 7629 MiB = 7.9996 GB: below 8, though it rounds to 8.0.
    const below = getOptimalConfig({ cpu: CPU, gpus: gpus({ name: 'Edge', mib: 7629 }) });
    expect(below.batchSize).toBe(16);
    expect(below.reasons.batchSize).toBe('1 × Edge with 7.9996 GB (< 8 GB) → batch 16 per worker');
    expect(getOptimalConfig({ cpu: CPU, gpus: gpus({ name: 'Edge', mib: 7630 }) }).batchSize).toBe(32);
  });

  const CPU_ONLY = [
    {
      title: 'CPU only, 2 physical cores: multi-cpu, 2 workers, batch 64',
      cpu: { model: 'AMD EPYC', logicalCores: 2, physicalCores: 2 },
      workers: 2,
      mode: 'multi-cpu',
      reasons: {
        workers: '2 physical cores → 2 workers, one per core',
        mode: 'no NVIDIA GPU and 2 physical cores → multi-cpu: data-parallel training, one worker per core',
      },
    },
    {
      title: 'CPU only, 1 physical core (hyperthreaded): single, 1 worker',
      cpu: { model: 'Intel Atom', logicalCores: 2, physicalCores: 1 },
      workers: 1,
      mode: 'single',
      reasons: { workers: '1 physical core → 1 worker', mode: 'no NVIDIA GPU and 1 physical core → single: one CPU worker' },
    },
  ];
  for (const { title, cpu, workers, mode, reasons } of CPU_ONLY) {
    it(title, () => {
      expect(getOptimalConfig({ cpu, gpus: [] })).toEqual({
        batchSize: 64,
        workers,
        mode,
        device: 'cpu',
        reasons: { batchSize: 'no NVIDIA GPU → CPU: batch 64', ...reasons },
      });
    });
  }
});
