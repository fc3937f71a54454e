import { OscillatorEngine } from '../engine/engine';
import { ExchangeClient } from './file-exchange';
import type { WorkerPlatform } from './worker-runtime';

/**
 * The worker's platform in Node (child processes, utility processes, threads): every backend
 * through OscillatorEngine's selection, and the /dev/shm file exchange.
 */
export const NODE_WORKER_PLATFORM: WorkerPlatform = {
  // Looked up at each call, so a test may wrap OscillatorEngine.createForWorker.
  createEngine: (options) => OscillatorEngine.createForWorker(options),
  openFileExchange: (layout) => new ExchangeClient(layout),
  mayBlock: true,
};
