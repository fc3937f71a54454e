/**
 * Loads a user's dataset file into rows × width float32, whatever its format, and checks it
 * against the model's field size. Messages name the file (its base name; `sourcePath` keeps the
 * full path) and use 1-based row/line and column numbers.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { QuadraError } from '../../src-shared/errors';
import { parseNumericCsv } from './csv';
import { parseNpy } from './npy';
import { textToFeatures } from './text';

export type DatasetKind = 'npy' | 'csv' | 'text';

export interface LoadedDataset {
  kind: DatasetKind;
  sourcePath: string;
  rows: number;
  width: number;
  /** Row-major, rows × width. */
  data: Float32Array;
  /** Hex SHA-256 of the file's bytes, so a stored dataset can be matched to its file. */
  sha256: string;
  /** Column names from a CSV header line; null for headerless CSV, npy and text. */
  header: string[] | null;
  /** Text only: non-blank lines without a single letter or digit. */
  skippedLines?: number;
}

export interface LoadDatasetOptions {
  /** The model's field size; a file with another width is a SHAPE_MISMATCH. */
  expectedWidth?: number;
  /** Width of hashed text features; defaults to expectedWidth, then DEFAULT_TEXT_WIDTH. */
  textWidth?: number;
}

export const DEFAULT_TEXT_WIDTH = 100;

const KIND_BY_EXTENSION: Record<string, DatasetKind> = {
  '.npy': 'npy',
  '.csv': 'csv',
  '.txt': 'text',
  '.text': 'text',
  '.md': 'text',
};
const ACCEPTED = '.npy (NumPy float32/float64 array), .csv (numbers, optional header) or .txt/.text/.md (text)';

export async function loadDatasetFile(filePath: string, options: LoadDatasetOptions = {}): Promise<LoadedDataset> {
  const { expectedWidth, textWidth } = options;
  checkWidthOption('expectedWidth', expectedWidth);
  checkWidthOption('textWidth', textWidth);

  const file = basename(filePath);
  const extension = extname(filePath).toLowerCase();
  const kind = KIND_BY_EXTENSION[extension];
  if (kind === undefined) {
    const what = extension === '' ? 'has no extension' : `has the extension '${extension}'`;
    throw new QuadraError('INVALID_FILE', `${file}: ${what}, expected ${ACCEPTED}`, { file, extension });
  }

  let bytes: Uint8Array;
  try {
    bytes = await readFile(filePath);
  } catch (error) {
    const osCode = (error as NodeJS.ErrnoException).code ?? 'unknown';
    throw new QuadraError('IO_ERROR', `${filePath}: could not read the file (${osCode}: ${describeOsCode(osCode)})`, {
      file: filePath,
      osCode,
    });
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');

  let loaded: LoadedDataset;
  if (kind === 'npy') {
    const array = parseNpy(bytes, file);
    // parseNpy accepts one or two dimensions, so shape[0] (and shape[1] for two) exist.
    const [rows, width] = array.shape.length === 1 ? [1, array.shape[0]!] : [array.shape[0]!, array.shape[1]!];
    if (rows === 0 || width === 0) {
      throw new QuadraError('INVALID_FILE', `${file}: array has shape (${array.shape.join(', ')}) and holds no values, expected at least one row`, {
        file,
        shape: array.shape,
      });
    }
    checkFinite(array.data, width, file, array.sourceDtype === '<f8');
    loaded = { kind, sourcePath: filePath, rows, width, data: array.data, sha256, header: null };
  } else if (kind === 'csv') {
    const matrix = parseNumericCsv(decodeUtf8(bytes, file), file);
    loaded = { kind, sourcePath: filePath, rows: matrix.rows, width: matrix.cols, data: matrix.data, sha256, header: matrix.header };
  } else {
    const width = textWidth ?? expectedWidth ?? DEFAULT_TEXT_WIDTH;
    const features = textToFeatures(decodeUtf8(bytes, file), width, file);
    loaded = {
      kind,
      sourcePath: filePath,
      rows: features.rows,
      width,
      data: features.data,
      sha256,
      header: null,
      skippedLines: features.skippedLines,
    };
  }

  if (expectedWidth !== undefined && loaded.width !== expectedWidth) {
    const w = loaded.width;
    throw new QuadraError(
      'SHAPE_MISMATCH',
      `${file}: rows have ${w} values but the model's field size is ${expectedWidth} — set the field size to ${w} (e.g. --field-size ${w}) to train on this file`,
      { file, width: w, expected: expectedWidth },
    );
  }
  return loaded;
}

/** The first `rows` rows as plain arrays (for showing a file before importing it). */
export function previewDataset(loaded: LoadedDataset, rows = 5): number[][] {
  if (!Number.isSafeInteger(rows) || rows < 0) {
    throw new QuadraError('INVALID_ARGUMENT', `preview rows must be a whole number ≥ 0, got ${rows}`, { rows });
  }
  const preview: number[][] = [];
  for (let row = 0; row < Math.min(rows, loaded.rows); row++) {
    preview.push(Array.from(loaded.data.subarray(row * loaded.width, (row + 1) * loaded.width)));
  }
  return preview;
}

function checkWidthOption(name: string, value: number | undefined): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
    throw new QuadraError('INVALID_ARGUMENT', `${name} must be a whole number ≥ 1, got ${value}`, { field: name, value });
  }
}

function checkFinite(data: Float32Array, width: number, file: string, fromFloat64: boolean): void {
  for (let i = 0; i < data.length; i++) {
    const value = data[i];
    if (Number.isFinite(value)) continue;
    const row = Math.floor(i / width) + 1;
    const column = (i % width) + 1;
    // A float64 beyond ±3.4e38 also becomes ±Infinity when converted to float32.
    const why = fromFloat64 && !Number.isNaN(value) ? ' (or a float64 outside the float32 range)' : '';
    throw new QuadraError(
      'INVALID_FILE',
      `${file}: row ${row}, column ${column}: value is ${value}${why} — NaN/Inf values are not accepted`,
      { file, row, column },
    );
  }
}

function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new QuadraError('INVALID_FILE', `${file}: is not UTF-8 text — save it with UTF-8 encoding`, { file });
  }
}

function describeOsCode(code: string): string {
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a folder, not a file';
    case 'EMFILE':
      return 'too many open files';
    default:
      return 'the operating system refused the read';
  }
}
