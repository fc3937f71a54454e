import type { EngineConfig } from '../../../src-shared/engine-config';
import type { CheckpointContents } from '../checkpoint';

/** Where a trained model goes next (DESIGN.md §6). */
export const EXPORT_FORMATS = ['safetensors', 'pth', 'onnx', 'torchrun'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** One stored checkpoint, decoded and validated, with what the exporters need around it. */
export interface ExportInput {
  /** The checkpoint's contents (parameters in layout order, optimizer state when present, field state). */
  contents: CheckpointContents;
  /** The engine config the checkpoint was trained with (model sizes, optimizer settings, seed). */
  engine: EngineConfig;
  /** The stored safetensors bytes as they are (the safetensors export, and the torchrun package's start). */
  checkpointBytes: Uint8Array;
  /** Half-precision weights where the format allows it (safetensors F16, ONNX float16 initializers). */
  fp16: boolean;
  /** torchrun: the run's schedule and data, when the checkpoint belongs to a trained run. */
  run?: {
    epochs: number;
    validationFraction: number;
    lastBatch: 'drop' | 'wrap';
    checkpointEveryEpochs: number;
    /** 'synthetic:N' (regenerated with the seed), or the dataset's rows to ship as data.npy. */
    data: { synthetic: number } | { rows: number; width: number; values: Float32Array } | null;
  };
}

/** What an export writes: one file, or (torchrun) a folder of files by relative path. */
export interface ExportedFile {
  /** Relative path inside the output (a file name for single-file formats). */
  path: string;
  bytes: Uint8Array;
}
