import path from 'node:path';
import type { HardwareInfo } from '../../src-shared/hardware';
import { detectHardware } from '../hardware/detect';
import { GpuMonitor } from '../hardware/gpu-monitor';
import { openStore, type Store } from '../store/database';
import { defaultDatabasePath } from '../store/paths';
import type { TransportFactory } from '../training/transport';
import { WorkstationService, type UploadResolver, type WorkstationDeps } from './workstation';

export interface CreateWorkstationOptions {
  /** The SQLite file; default: the desktop app's, in the platform app-data folder (QUADRA_DB overrides). */
  databaseFile?: string;
  /** Sends an event to every client (the app's windows, serve mode's WebSockets). */
  emit: WorkstationDeps['emit'];
  /** This machine's hardware; default: detected once, starting now. */
  hardware?: () => Promise<HardwareInfo>;
  /** How training and benchmark workers start; default: child processes and threads, as in plain Node. */
  transport?: TransportFactory;
  /** Serve mode's upload folder, made once the database (and so the data folder beside it) is open. */
  uploads?: (dataDir: string) => UploadResolver;
}

export interface Workstation {
  store: Store;
  /** The folder beside the database, where imported datasets (and serve mode's uploads) are kept. */
  dataDir: string;
  service: WorkstationService;
}

/**
 * The services of one process that owns the database (the desktop app's main process, `quadra
 * serve`): the store, with runs a dead process left 'running' marked interrupted; hardware
 * detection; the GPU monitor, which marks the workstation's own workers; and the WorkstationService
 * over them. What differs between the two (transports, how events travel, uploads) comes as options.
 */
export function createWorkstation(options: CreateWorkstationOptions): Workstation {
  const store = openStore(options.databaseFile ?? defaultDatabasePath());
  store.runs.markInterruptedRuns();
  const dataDir = path.dirname(store.file);
  let hardware = options.hardware;
  if (!hardware) {
    const detected = detectHardware();
    hardware = () => detected;
  }
  // One long-running nvidia-smi per query while a client watches the monitor, not one per tick.
  const monitor = new GpuMonitor({ ourPids: (): number[] => service.workerPids() });
  const service: WorkstationService = new WorkstationService({
    store,
    hardware,
    dataDir,
    emit: options.emit,
    monitor,
    ...(options.transport ? { transport: options.transport } : {}),
    ...(options.uploads ? { uploads: options.uploads(dataDir) } : {}),
  });
  return { store, dataDir, service };
}
