import type { CheckpointRecord, RunRecord } from '../../../src-shared/records';
import type { ApiClient } from '../../lib/api';
import { errorMessage } from '../../lib/errors';
import { formatBytes } from '../../lib/format';
import { KeyedLoadable, Loadable } from '../../lib/state/loadable.svelte';

/** What the last action did, said once above the table. */
export interface Notice {
  kind: 'resumed' | 'imported' | 'exported';
  text: string;
  runId: number;
  /** Where an export was written (the desktop app's save dialog). */
  path?: string;
}

/** The exported bytes as a Uint8Array backed by its own ArrayBuffer (what Blob wants). */
function bytesOf(value: unknown): Uint8Array<ArrayBuffer> {
  if (value instanceof Uint8Array) return new Uint8Array(value);
  throw new Error('the workstation sent the checkpoint in an unknown form');
}

/**
 * The Checkpoints view's state: the runs (newest first), the chosen run's checkpoints, and the
 * export / import / resume actions with their errors. Live runs update through onDidChangeRun.
 */
export class CheckpointsState {
  readonly runs: Loadable<RunRecord[]>;
  /** The chosen run (its id is the key) and its checkpoints, oldest first. */
  readonly checkpoints: KeyedLoadable<number, CheckpointRecord[]>;
  /** Where the export goes: our safetensors, the original project's .pth, ONNX, or a torchrun package (.zip). */
  format = $state<'safetensors' | 'pth' | 'onnx' | 'torchrun'>('safetensors');
  /** Export as half precision (about half the size; weights only lose precision): safetensors and onnx. */
  fp16 = $state(false);
  /** F16 applies where the format carries weights only. */
  readonly fp16Applies = $derived(this.format === 'safetensors' || this.format === 'onnx');
  /** The action under way, e.g. 'export:12', 'resume:12', 'import'; one at a time. */
  busy = $state<string | null>(null);
  actionError = $state<string | null>(null);
  notice = $state.raw<Notice | null>(null);

  #api: ApiClient;

  constructor(api: ApiClient) {
    this.#api = api;
    this.runs = new Loadable(() => api.call('listRuns', {}));
    this.checkpoints = new KeyedLoadable((runId) => api.call('listCheckpoints', { runId }));
  }

  get selectedRunId(): number | null {
    return this.checkpoints.key;
  }

  get selectedRun(): RunRecord | null {
    return this.runs.value?.find((r) => r.id === this.selectedRunId) ?? null;
  }

  /** Loads the runs and shows `select`, else the current run, else the newest. */
  async refresh(select?: number): Promise<void> {
    await this.runs.refresh();
    const runs = this.runs.value ?? [];
    const wanted = select ?? this.selectedRunId;
    await this.selectRun(runs.find((r) => r.id === wanted)?.id ?? runs[0]?.id ?? null);
  }

  /** Shows a run's checkpoints; `quiet` reloads them without the loading state (a live run). */
  selectRun(runId: number | null, quiet = false): Promise<void> {
    return this.checkpoints.select(runId, quiet);
  }

  /**
   * Exports the checkpoint in the chosen format and saves it: through the desktop app's save dialog
   * (the notice says where it went) or as the browser's download (serve mode).
   */
  async exportCheckpoint(checkpoint: CheckpointRecord): Promise<void> {
    const fp16 = this.fp16 && this.fp16Applies;
    const format = this.format;
    await this.#act(`export:${checkpoint.id}`, async () => {
      const file = await this.#api.call('exportCheckpoint', { checkpointId: checkpoint.id, format, ...(fp16 ? { fp16 } : {}) });
      const bytes = bytesOf(file.bytes);
      const what = `${file.fileName} (${formatBytes(bytes.length)}${fp16 ? ', F16' : ''})`;
      const saved = await this.#api.saveFile(file.fileName, bytes, 'application/octet-stream');
      if (saved.kind === 'saved') this.notice = { kind: 'exported', text: `Saved ${what} to ${saved.path}`, runId: checkpoint.runId, path: saved.path };
      else if (saved.kind === 'downloaded') this.notice = { kind: 'exported', text: `Exported ${what}`, runId: checkpoint.runId };
    });
  }

  async importCheckpoint(file: File, name: string): Promise<boolean> {
    const fileName = file.name;
    const done = await this.#act('import', async () => {
      const source = await this.#api.upload(file);
      const { runId } = await this.#api.call('importCheckpoint', { fileName, ...source, ...(name ? { name } : {}) });
      await this.refresh(runId);
      this.notice = { kind: 'imported', text: `Imported ${fileName} as run ${runId}${this.selectedRun ? ` “${this.selectedRun.name}”` : ''}`, runId };
      return true;
    });
    return done ?? false;
  }

  async resume(checkpoint: CheckpointRecord): Promise<void> {
    await this.#act(`resume:${checkpoint.id}`, async () => {
      const { runId } = await this.#api.call('resumeRun', { runId: checkpoint.runId, fromCheckpointId: checkpoint.id });
      this.notice = { kind: 'resumed', text: `Run ${runId} resumed from epoch ${checkpoint.epoch}, step ${checkpoint.step}`, runId };
      await this.refresh(runId);
    });
  }

  /** Keeps run statuses current and picks up checkpoints a live run writes. */
  listen(): () => void {
    return this.#api.on('onDidChangeRun', (run) => {
      const runs = this.runs.value;
      if (!runs) return;
      this.runs.value = runs.some((r) => r.id === run.id) ? runs.map((r) => (r.id === run.id ? run : r)) : [run, ...runs];
      if (run.id === this.selectedRunId) void this.selectRun(run.id, true);
    });
  }

  async #act<T>(what: string, action: () => Promise<T>): Promise<T | null> {
    this.busy = what;
    this.actionError = null;
    this.notice = null;
    try {
      return await action();
    } catch (error) {
      this.actionError = errorMessage(error);
      return null;
    } finally {
      this.busy = null;
    }
  }
}
