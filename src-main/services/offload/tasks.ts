import { createHash } from 'node:crypto';
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BACKEND_IDS, parseEngineConfig, type BackendId } from '../../../src-shared/engine-config';
import { loadDatasetFile, previewDataset } from '../../data/dataset-file';
import { decodeCheckpoint, storableCheckpoint } from '../../engine/checkpoint';
import type { Store } from '../../store/database';
import { exportCheckpointFile } from '../export-service';
import type { OffloadArgs, OffloadResult, OffloadTask, PreparedCheckpointImport } from './protocol';

export type OffloadHandlers = { [K in OffloadTask]: (args: OffloadArgs<K>) => Promise<OffloadResult<K>> };

/**
 * The tasks, whichever thread runs them: the offload thread (over its read-only connection) or,
 * where there is none, the caller's (over the service's own store). The same code either way, so
 * the answers are the same.
 */
export function offloadHandlers(store: () => Store): OffloadHandlers {
  return {
    metrics: async ({ runId, range }) => store().metrics.range(runId, range),
    exportCheckpoint: ({ checkpointId, format, fp16 }) => exportCheckpointFile(store(), checkpointId, format, fp16),
    prepareCheckpointImport: async ({ fileName, source }) => prepareCheckpointImport(fileName, 'bytes' in source ? source.bytes : await readFile(source.path)),
    keepDatasetFile,
    loadDataset: ({ file, options }) => loadDatasetFile(file, options),
    previewDataset: previewDatasetFile,
  };
}

/** Decodes and checks a checkpoint file for import: what importCheckpointBytes records. */
export function prepareCheckpointImport(fileName: string, bytes: Uint8Array): PreparedCheckpointImport {
  const contents = decodeCheckpoint(bytes, fileName);
  const config = parseEngineConfig({ ...(contents.engineConfig ?? {}), model: contents.model });
  const backend = (BACKEND_IDS as readonly string[]).includes(contents.metadata.backend ?? '') ? (contents.metadata.backend as BackendId) : 'cpu';
  return {
    data: storableCheckpoint(bytes, contents),
    config,
    origin: contents.origin,
    step: contents.step ?? 0,
    epoch: wholeOrZero(contents.metadata.epoch),
    backend,
  };
}

async function keepDatasetFile({ folder, fileName, source }: OffloadArgs<'keepDatasetFile'>): Promise<OffloadResult<'keepDatasetFile'>> {
  mkdirSync(folder, { recursive: true });
  const named = (digest: string) => path.join(folder, `${digest.slice(0, 16)}-${fileName}`);
  if ('bytes' in source) {
    const file = named(createHash('sha256').update(source.bytes).digest('hex'));
    // The same content under the same name is already there (maybe another dataset's file): keep it, whatever happens.
    const existed = existsSync(file);
    if (!existed) writeFileSync(file, source.bytes);
    return { file, existed };
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(source.path)) hash.update(chunk as Buffer);
  const file = named(hash.digest('hex'));
  const existed = existsSync(file);
  try {
    // Moved, not copied: a file of gigabytes is never held in memory or written twice.
    if (!existed) renameSync(source.path, file);
  } catch {
    copyFileSync(source.path, file);
  }
  return { file, existed };
}

async function previewDatasetFile({ fileName, source, fieldSize }: OffloadArgs<'previewDataset'>): Promise<OffloadResult<'previewDataset'>> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'quadra-preview-'));
  try {
    // The loader reads the kind from the name's extension: an upload is linked under it, not copied,
    // and stays for the import that usually follows.
    const file = path.join(folder, fileName);
    if ('path' in source) linkOrCopy(source.path, file);
    else writeFileSync(file, source.bytes);
    const loaded = await loadDatasetFile(file, fieldSize === undefined ? {} : { textWidth: fieldSize });
    const widthMismatch = fieldSize !== undefined && loaded.width !== fieldSize ? { width: loaded.width, fieldSize } : null;
    return { rows: loaded.rows, width: loaded.width, kind: loaded.kind, firstRows: previewDataset(loaded, 5), widthMismatch };
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

function linkOrCopy(from: string, to: string): void {
  try {
    symlinkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

function wholeOrZero(text: string | undefined): number {
  const value = Number(text);
  return text !== undefined && Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

