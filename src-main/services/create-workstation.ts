import path from 'node:path';
import type { HardwareInfo } from '../../src-shared/hardware';
import { detectHardware } from '../hardware/detect';
import { GpuMonitor } from '../hardware/gpu-monitor';
import { openStore, type Store } from '../store/database';
import { defaultDatabasePath } from '../store/paths';
import type { TransportFactory } from '../training/transport';
import { createOffload } from './offload/offload';
import type { Offload } from './offload/protocol';
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
  /** The thread that checkpoint, dataset and metrics work runs in, off the thread that serves the UI. */
  offload: Offload;
  /** Stops live runs (each keeps a checkpoint), ends the offload thread, closes the database. */
  close(): Promise<void>;
}

/**
 * The services of one process that owns the database (the desktop app's main process, `quadra
 * serve`): the store, with runs a dead process left 'running' marked interrupted; hardware
 * detection; the GPU monitor, which marks the workstation's own workers; the offload thread, which
 * reads, encodes and parses beside the store's one writer; and the WorkstationService over them.
 * What differs between the two (transports, how events travel, uploads) comes as options.
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
  // Heavy reads and encoding leave this thread: Electron's main process must keep every window answering.
  const offload = createOffload(store);
  // One long-running nvidia-smi per query while a client watches the monitor, not one per tick.
  const monitor = new GpuMonitor({ ourPids: (): number[] => service.workerPids() });
  const service: WorkstationService = new WorkstationService({
    store,
    hardware,
    dataDir,
    emit: options.emit,
    monitor,
    offload,
    ...(options.transport ? { transport: options.transport } : {}),
    ...(options.uploads ? { uploads: options.uploads(dataDir) } : {}),
  });
  const close = async () => {
    await service.shutdown();
    await offload.close();
    store.close();
  };
  return { store, dataDir, service, offload, close };
}
