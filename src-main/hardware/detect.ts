import os from 'node:os';
import type { HardwareInfo } from '../../src-shared/hardware';
import { detectCpu } from './cpu';
import { queryGpus } from './nvidia-smi';

export interface DetectHardwareOptions {
  env?: NodeJS.ProcessEnv;
  /** nvidia-smi to run instead of the one found through QUADRA_NVIDIA_SMI or PATH. */
  nvidiaSmiPath?: string;
}

/** Everything the workstation shows about this machine; never throws for a missing or broken GPU driver. */
export async function detectHardware(options: DetectHardwareOptions = {}): Promise<HardwareInfo> {
  const { status, gpus } = await queryGpus({ path: options.nvidiaSmiPath, env: options.env });
  return {
    platform: process.platform,
    arch: process.arch,
    cpu: detectCpu(),
    memoryTotalBytes: os.totalmem(),
    memoryFreeBytes: os.freemem(),
    gpus,
    nvidiaSmi: status,
  };
}
