/** What the machine has, as detected in the main process and shown to the user (DTOs only). */

export interface CpuInfo {
  model: string;
  logicalCores: number;
  physicalCores: number;
}

/** One NVIDIA GPU as nvidia-smi reports it; memory in MiB because that is the unit nvidia-smi prints. */
export interface GpuInfo {
  index: number;
  name: string;
  uuid: string | null;
  memoryTotalMiB: number;
  memoryUsedMiB: number | null;
  driverVersion: string;
  /** The newest CUDA version the driver supports (nvidia-smi's banner), not an installed toolkit. */
  cudaVersion: string | null;
}

export type NvidiaSmiStatus = { available: true; path: string } | { available: false; reason: string };

export interface HardwareInfo {
  platform: string;
  arch: string;
  cpu: CpuInfo;
  memoryTotalBytes: number;
  memoryFreeBytes: number;
  gpus: GpuInfo[];
  nvidiaSmi: NvidiaSmiStatus;
}
