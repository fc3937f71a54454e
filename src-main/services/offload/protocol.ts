import type { DatasetPreview, ExportedFile } from '../../../src-shared/api';
import type { BackendId, EngineConfig } from '../../../src-shared/engine-config';
import type { ErrorData } from '../../../src-shared/errors';
import type { MetricPoint } from '../../../src-shared/records';
import type { LoadDatasetOptions, LoadedDataset } from '../../data/dataset-file';
import type { CheckpointContents } from '../../engine/checkpoint';
import type { ExportFormat } from '../../engine/export/formats';
import type { MetricRangeOptions } from '../../store/metrics';

/**
 * The service ↔ offload thread protocol: the heavy half of the service methods that would
 * otherwise hold up the thread serving the UI (Electron's main process). Requests carry a `type`
 * (the task) and a `seq`; each reply carries the request's seq in `replyTo`, and errors travel as
 * data (QuadraError's code, message and details). Database writes never come here: the service
 * keeps the one writing connection, the thread reads through its own read-only one.
 */

/** A file's content: the bytes themselves (the app), or where it lies (an upload in serve mode, the CLI). */
export type FileSource = { bytes: Uint8Array } | { path: string };

/** A checkpoint file decoded and checked, ready to be recorded as an imported run. */
export interface PreparedCheckpointImport {
  /** What is stored: the file as it is, or (a .pth) its re-encoding as our safetensors. */
  data: Uint8Array;
  config: EngineConfig;
  origin: CheckpointContents['origin'];
  step: number;
  epoch: number;
  backend: BackendId;
}

/** Each task: what it is given and what it answers. */
export interface OffloadTasks {
  /** A run's metric points, downsampled in SQL when there are more than maxPoints. */
  metrics: { args: { runId: number; range: MetricRangeOptions }; result: MetricPoint[] };
  /** A stored checkpoint encoded in a format (a torchrun package as one .zip). */
  exportCheckpoint: { args: { checkpointId: number; format: ExportFormat; fp16: boolean }; result: ExportedFile };
  /** A checkpoint file (ours, a PyTorch state_dict, the original project's .pth) decoded for import. */
  prepareCheckpointImport: { args: { fileName: string; source: FileSource }; result: PreparedCheckpointImport };
  /**
   * A dataset file kept in `folder` under a name made of its content's hash and `fileName` (an
   * upload is moved there); `existed` when the same content under that name already was.
   */
  keepDatasetFile: { args: { folder: string; fileName: string; source: FileSource }; result: { file: string; existed: boolean } };
  /** A dataset file parsed (npy, csv, text) and hashed. */
  loadDataset: { args: { file: string; options: LoadDatasetOptions }; result: LoadedDataset };
  /** A dataset file's shape and first rows, without keeping it; `fileName` chooses the parser by its extension. */
  previewDataset: { args: { fileName: string; source: FileSource; fieldSize?: number }; result: DatasetPreview };
}

export type OffloadTask = keyof OffloadTasks;
export type OffloadArgs<K extends OffloadTask> = OffloadTasks[K]['args'];
export type OffloadResult<K extends OffloadTask> = OffloadTasks[K]['result'];

export type ToOffload = { [K in OffloadTask]: { type: K; seq: number; args: OffloadArgs<K> } }[OffloadTask] | { type: 'shutdown'; seq: number };

export type FromOffload = { replyTo: number; ok: true; value: unknown } | { replyTo: number; ok: false; error: ErrorData };

/** What the offload thread is started with. */
export interface OffloadWorkerData {
  /** The database the read tasks open read-only; null when it cannot be shared (in memory). */
  databaseFile: string | null;
  /** Electron's resources folder (the torchrun templates in the packaged app), which a thread's `process` may lack. */
  resourcesPath: string | null;
  /** The entry module, for thread-entry.mjs (sources run through tsx). */
  entry: string;
}

/** Where the heavy work runs: a worker thread (OffloadThread), or the calling thread where none can be used. */
export interface Offload {
  run<K extends OffloadTask>(task: K, args: OffloadArgs<K>): Promise<OffloadResult<K>>;
  /** Lets running tasks finish, then ends the thread; later calls fail. */
  close(): Promise<void>;
}
