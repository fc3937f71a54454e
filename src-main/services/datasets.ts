import { createHash } from 'node:crypto';
import path from 'node:path';
import type { EngineConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import type { DatasetRecord, RunRecord } from '../../src-shared/records';
import type { StoredRunConfig } from '../../src-shared/run-config';
import { loadDatasetFile } from '../data/dataset-file';
import { parseSyntheticSpec, syntheticRows } from '../data/synthetic';
import type { Store } from '../store/database';

/** A dataset's rows, loaded: what a run trains on. */
export interface LoadedData {
  rows: number;
  width: number;
  values: Float32Array;
}

/** 'synthetic' or 'synthetic:…' (parseSyntheticSpec says what is wrong with the rest); a file named synthetic.csv is a file. */
export function isSyntheticSpec(spec: string): boolean {
  return spec === 'synthetic' || spec.startsWith('synthetic:');
}

/**
 * Resolves 'synthetic:N', a registered dataset ({ datasetId }, or from the CLI its name) or (CLI) a
 * file path, loading the data. What is new is registered only by `register()`, which the caller
 * calls once the run is sure to start.
 */
export async function resolveDataset(
  store: Store,
  spec: string | { datasetId: number },
  engine: EngineConfig,
): Promise<{ data: LoadedData; register: () => DatasetRecord }> {
  const F = engine.model.fieldSize;
  if (typeof spec === 'string' && isSyntheticSpec(spec)) {
    const rows = parseSyntheticSpec(spec);
    const values = syntheticRows(rows, F, engine.seed);
    const name = `synthetic:${rows}x${F}:seed${engine.seed}`;
    const register = () => store.datasets.getByName(name) ?? store.datasets.add({ name, kind: 'synthetic', sourcePath: null, rows, width: F, sha256: sha256Of(values) });
    return { data: { rows, width: F, values }, register };
  }
  const registered = typeof spec === 'string' ? store.datasets.getByName(spec) : store.datasets.get(spec.datasetId);
  if (registered) {
    const label = `"${registered.name}"`;
    if (registered.kind === 'synthetic' || !registered.sourcePath) {
      throw new QuadraError('INVALID_ARGUMENT', `dataset ${label} is synthetic; use synthetic:N`);
    }
    const loaded = await loadDatasetFile(registered.sourcePath, { expectedWidth: F });
    if (loaded.sha256 !== registered.sha256) {
      throw new QuadraError('INVALID_FILE', `${registered.sourcePath}: the file changed since it was imported as ${label} (sha256 differs); import it again`, {
        file: registered.sourcePath,
      });
    }
    return { data: { rows: loaded.rows, width: loaded.width, values: loaded.data }, register: () => registered };
  }
  const loaded = await loadDatasetFile(spec as string, { expectedWidth: F });
  return { data: { rows: loaded.rows, width: loaded.width, values: loaded.data }, register: () => importedRecord(store, loaded, undefined) };
}

/** The data a resumed run trains on: its synthetic spec, or the dataset it registered (by id). */
export function resumeDatasetOf(runId: number, run: RunRecord, stored: StoredRunConfig): string | { datasetId: number } {
  if (isSyntheticSpec(stored.dataset)) return stored.dataset;
  if (run.datasetId === null) {
    throw new QuadraError('NOT_FOUND', `run ${runId}'s dataset (${stored.dataset}) is no longer registered; import it again and train from the run's checkpoint with --init-from`, { runId });
  }
  return { datasetId: run.datasetId };
}

/** Registers a loaded file (reusing the record when the same bytes were imported before). */
export function importedRecord(store: Store, loaded: Awaited<ReturnType<typeof loadDatasetFile>>, name: string | undefined): DatasetRecord {
  const existing = store.datasets.list().find((d) => d.sha256 === loaded.sha256 && d.width === loaded.width);
  if (existing && (name === undefined || existing.name === name)) return existing;
  const base = name ?? path.basename(loaded.sourcePath);
  let unique = base;
  for (let i = 2; store.datasets.getByName(unique); i++) unique = `${base} (${i})`;
  if (name !== undefined && unique !== name) {
    throw new QuadraError('INVALID_ARGUMENT', `a dataset named "${name}" already exists; choose another --name`, { field: 'name' });
  }
  return store.datasets.add({ name: unique, kind: loaded.kind, sourcePath: path.resolve(loaded.sourcePath), rows: loaded.rows, width: loaded.width, sha256: loaded.sha256 });
}

function sha256Of(values: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest('hex');
}
