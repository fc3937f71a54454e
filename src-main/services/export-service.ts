import path from 'node:path';
import { zipSync } from 'fflate';
import type { ExportedFile as DownloadedFile } from '../../src-shared/api';
import { parseEngineConfig } from '../../src-shared/engine-config';
import { QuadraError } from '../../src-shared/errors';
import { parseRunConfig } from '../../src-shared/run-config';
import { decodeCheckpoint, toF16Checkpoint } from '../engine/checkpoint';
import { EXPORT_FORMATS, type ExportedFile, type ExportFormat, type ExportInput } from '../engine/export/formats';
import { exportOnnx } from '../engine/export/onnx';
import { exportPth } from '../engine/export/pth';
import { exportTorchrun } from '../engine/export/torchrun';
import type { Store } from '../store/database';
import { isSyntheticSpec, resolveDataset } from './datasets';

/**
 * One stored checkpoint out to where the model goes next (DESIGN.md §6): our safetensors (F16
 * optional), the original project's .pth, ONNX for deployment, or a torchrun package (a folder;
 * as one .zip where it must travel as one file, e.g. a browser download).
 */
export async function exportStoredCheckpoint(store: Store, checkpointId: number, format: ExportFormat, fp16: boolean): Promise<{ baseName: string; files: ExportedFile[] }> {
  const record = store.checkpoints.get(checkpointId);
  const run = store.runs.get(record.runId);
  const bytes = store.checkpoints.getData(record.id);
  const label = `checkpoint ${record.id}`;
  const baseName = `run-${record.runId}-step-${record.step}${fp16 ? '-f16' : ''}`;
  if (fp16 && (format === 'pth' || format === 'torchrun')) {
    throw new QuadraError('INVALID_ARGUMENT', `--fp16 applies to safetensors and onnx; a ${format} export carries the float32 weights and optimizer state training needs`, { field: 'fp16' });
  }
  if (format === 'safetensors') return { baseName, files: [{ path: `${baseName}.safetensors`, bytes: fp16 ? toF16Checkpoint(bytes, label) : bytes }] };
  const contents = decodeCheckpoint(bytes, label);
  const parsed = safeRunConfig(run.id, run.config);
  const engine = parseEngineConfig({ ...(contents.engineConfig ?? {}), ...(parsed ? { ...parsed.engine } : {}), model: contents.model });
  const input: ExportInput = { contents, engine, checkpointBytes: bytes, fp16 };
  if (format === 'onnx') return { baseName, files: [{ path: `${baseName}.onnx`, bytes: exportOnnx(input) }] };
  if (format === 'pth') return { baseName, files: [{ path: `${baseName}.pth`, bytes: exportPth(input) }] };
  if (parsed?.kind === 'trained') {
    const data = await runData(store, run.datasetId, parsed.dataset, engine);
    input.run = { epochs: parsed.epochs, validationFraction: parsed.validationFraction, lastBatch: parsed.lastBatch, checkpointEveryEpochs: parsed.checkpointEveryEpochs, data };
  }
  return { baseName, files: exportTorchrun(input) };
}

/** A stored checkpoint exported as one file to hand over (a browser download, the app's save dialog): a torchrun package as one .zip of its folder. */
export async function exportCheckpointFile(store: Store, checkpointId: number, format: ExportFormat, fp16: boolean): Promise<DownloadedFile> {
  const { baseName, files } = await exportStoredCheckpoint(store, checkpointId, format, fp16);
  if (format === 'torchrun') return { fileName: `${baseName}-torchrun.zip`, bytes: zipFolder(`${baseName}-torchrun`, files) };
  return { fileName: files[0]!.path, bytes: files[0]!.bytes };
}

/** Several files as one .zip (stored entries under the package's folder name), for a single download. */
export function zipFolder(folder: string, files: readonly ExportedFile[]): Uint8Array {
  return zipSync(Object.fromEntries(files.map((f) => [`${folder}/${f.path}`, f.bytes])), { level: 6 });
}

/** The format a path asks for by its extension (a folder, without one, is a torchrun package). */
export function formatFromPath(file: string): ExportFormat {
  const extension = path.extname(file).toLowerCase().slice(1);
  if (extension === '') return 'torchrun';
  if (extension === 'pt') return 'pth';
  if ((EXPORT_FORMATS as readonly string[]).includes(extension)) return extension as ExportFormat;
  throw new QuadraError('INVALID_ARGUMENT', `--out ${file}: cannot tell the format from '.${extension}'; use .safetensors, .pth, .onnx or a folder (torchrun), or --format`, { field: 'out' });
}

function safeRunConfig(runId: number, config: unknown) {
  try {
    return parseRunConfig(runId, config);
  } catch {
    // A run whose stored config no longer parses still exports its checkpoint, with the checkpoint's own config.
    return null;
  }
}

/** The run's training rows for a torchrun package: its registered dataset, or synthetic rows regenerated with the seed. */
async function runData(store: Store, datasetId: number | null, spec: string, engine: ReturnType<typeof parseEngineConfig>): Promise<NonNullable<ExportInput['run']>['data']> {
  try {
    const resolved = await resolveDataset(store, isSyntheticSpec(spec) ? spec : datasetId !== null ? { datasetId } : spec, engine);
    return { rows: resolved.data.rows, width: resolved.data.width, values: resolved.data.values };
  } catch {
    // The data is gone (a deleted or changed file): the package trains on the --data the user gives it.
    return null;
  }
}
