/** The live GPU/CPU monitor's samples, one per interval, as the main process sends them to clients (DTOs only). */

/** One GPU at one tick. nvidia-smi's [N/A] and [Not Supported] become null, which the view shows as N/A. */
export interface GpuSample {
  index: number;
  name: string;
  uuid: string | null;
  memoryUsedMiB: number | null;
  memoryTotalMiB: number | null;
  utilizationPercent: number | null;
  temperatureC: number | null;
  powerW: number | null;
  powerLimitW: number | null;
}

/** A process with a compute context on a GPU (nvidia-smi --query-compute-apps). */
export interface GpuProcessSample {
  /** The GPU's index, found through its UUID in the latest GPU tick; null while that GPU is not known. */
  gpuIndex: number | null;
  gpuUuid: string | null;
  pid: number;
  processName: string;
  /** null = N/A: Windows in WDDM mode never reports memory per process. */
  usedMemoryMiB: number | null;
  /** One of our own worker processes. */
  ours: boolean;
}

export interface CpuSample {
  /** Busy share of each logical core since the previous sample, 0–100. */
  perCorePercent: number[];
  /** Busy share of all cores together, 0–100. */
  totalPercent: number;
}

/**
 * Where GPU data comes from right now. `starting`: nvidia-smi runs but has not printed a tick yet.
 * `restarting`: it stopped and is started again after a pause (restart of maxRestarts).
 * `unavailable`: no NVIDIA GPU or driver on this machine; `failed`: it kept failing and we gave up.
 * Neither of the last two is retried; CPU samples go on in every state.
 */
export type GpuMonitorStatus =
  | { state: 'starting' }
  | { state: 'ok' }
  | { state: 'restarting'; reason: string; restart: number; maxRestarts: number }
  | { state: 'unavailable' | 'failed'; reason: string };

export interface MonitorSample {
  /** When the sample was taken, ms since the epoch. */
  time: number;
  cpu: CpuSample;
  memory: { totalBytes: number; freeBytes: number };
  /** The latest tick nvidia-smi printed; empty unless gpuStatus is ok. */
  gpus: GpuSample[];
  processes: GpuProcessSample[];
  gpuStatus: GpuMonitorStatus;
  /**
   * What this workstation's own GPU workers hold in their GPU buffers (webgpu), from the workers
   * themselves: on any vendor's GPU, whether or not nvidia-smi is there.
   */
  ourGpuWorkers?: OurGpuWorker[];
}

export interface OurGpuWorker {
  runId: number;
  rank: number;
  pid: number | null;
  backend: string;
  gpuBytes: number;
}
