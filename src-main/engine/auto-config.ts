import type { GpuInfo, HardwareInfo } from '../../src-shared/hardware';

export interface OptimalConfig {
  batchSize: number;
  workers: number;
  mode: 'single' | 'multi-cpu' | 'multi-gpu';
  device: 'gpu' | 'cpu';
  reasons: { batchSize: string; workers: string; mode: string };
}

const BYTES_PER_MIB = 1_048_576;

/** Batch size per worker by the smallest GPU's memory in decimal GB, largest threshold first. */
export const GPU_BATCH_SIZES: readonly { minGb: number; batchSize: number }[] = [
  { minGb: 16, batchSize: 64 },
  { minGb: 8, batchSize: 32 },
  { minGb: 0, batchSize: 16 },
];
export const CPU_BATCH_SIZE = 64;

/** Decimal GB, as the reference computed it from PyTorch (`total_memory / 1e9`); nvidia-smi reports MiB. */
export function gpuMemoryGb(memoryTotalMiB: number): number {
  return (memoryTotalMiB * BYTES_PER_MIB) / 1e9;
}

/** One decimal, unless rounding would put the number on the other side of a threshold it is compared with. */
function formatGb(gb: number): string {
  for (let digits = 1; digits < 6; digits++) {
    const text = gb.toFixed(digits);
    if (GPU_BATCH_SIZES.every(({ minGb }) => gb >= minGb === Number(text) >= minGb)) return text;
  }
  return gb.toFixed(6);
}

function gpuBatchSize(gpus: readonly GpuInfo[]): { batchSize: number; reason: string } {
  const smallest = gpus.reduce((min, gpu) => (gpu.memoryTotalMiB < min.memoryTotalMiB ? gpu : min));
  const gb = gpuMemoryGb(smallest.memoryTotalMiB);
  const rule = GPU_BATCH_SIZES.find(({ minGb }) => gb >= minGb) ?? GPU_BATCH_SIZES[GPU_BATCH_SIZES.length - 1]!;
  const nextUp = GPU_BATCH_SIZES[GPU_BATCH_SIZES.indexOf(rule) - 1];
  const comparison = rule.minGb > 0 ? `≥ ${rule.minGb} GB` : `< ${nextUp?.minGb ?? 0} GB`;
  const outcome = `(${comparison}) → batch ${rule.batchSize} per worker`;

  const identical = gpus.every((gpu) => gpu.name === smallest.name && gpu.memoryTotalMiB === smallest.memoryTotalMiB);
  if (identical) {
    const each = gpus.length > 1 ? ' each' : '';
    return { batchSize: rule.batchSize, reason: `${gpus.length} × ${smallest.name} with ${formatGb(gb)} GB${each} ${outcome}` };
  }
  // Every worker runs the same batch (synchronous data parallel), so the smallest GPU decides.
  const list = gpus.map((gpu) => `${gpu.name} ${formatGb(gpuMemoryGb(gpu.memoryTotalMiB))} GB`).join(', ');
  return {
    batchSize: rule.batchSize,
    reason: `${gpus.length} GPUs (${list}); the smallest, ${smallest.name}, has ${formatGb(gb)} GB ${outcome}`,
  };
}

/** The configuration the workstation recommends for this machine, with a reason for each choice. */
export function getOptimalConfig(hw: Pick<HardwareInfo, 'cpu' | 'gpus'>): OptimalConfig {
  const { gpus } = hw;
  if (gpus.length > 0) {
    const { batchSize, reason } = gpuBatchSize(gpus);
    const multi = gpus.length >= 2;
    return {
      batchSize,
      workers: gpus.length,
      mode: multi ? 'multi-gpu' : 'single',
      device: 'gpu',
      reasons: {
        batchSize: reason,
        workers: multi ? `${gpus.length} GPUs → ${gpus.length} workers, one per GPU` : '1 GPU → 1 worker',
        mode: multi
          ? `${gpus.length} GPUs → multi-gpu: data-parallel training, one worker per GPU`
          : '1 GPU → single: one worker on the GPU',
      },
    };
  }

  const cores = Math.max(1, Math.floor(hw.cpu.physicalCores) || 1);
  const multi = cores >= 2;
  return {
    batchSize: CPU_BATCH_SIZE,
    workers: cores,
    mode: multi ? 'multi-cpu' : 'single',
    device: 'cpu',
    reasons: {
      batchSize: `no NVIDIA GPU → CPU: batch ${CPU_BATCH_SIZE}`,
      workers: multi ? `${cores} physical cores → ${cores} workers, one per core` : '1 physical core → 1 worker',
      mode: multi
        ? `no NVIDIA GPU and ${cores} physical cores → multi-cpu: data-parallel training, one worker per core`
        : 'no NVIDIA GPU and 1 physical core → single: one CPU worker',
    },
  };
}
