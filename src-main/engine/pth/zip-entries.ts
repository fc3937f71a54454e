/**
 * The zip container of a `torch.save` file (PyTorch ≥ 1.6): one folder, named after the file's
 * stem when it was written (`archive/` only by convention), holding `data.pkl` (the pickled
 * object), `data/<key>` (raw little-endian storages), `version` and, in newer versions, a few
 * small records. torch.save stores every entry uncompressed. Pure: bytes in, entries out; the zip
 * itself is read by fflate.
 */
import { unzipSync, type UnzipFileInfo } from 'fflate';
import { QuadraError } from '../../../src-shared/errors';

export interface TorchArchive {
  /** The folder every entry sits in. */
  root: string;
  /** `data.pkl`. */
  pickle: Uint8Array;
  /** `data/<key>` → that storage's bytes, by key. */
  storages: Map<string, Uint8Array>;
  /** The `version` record, trimmed, when there is one. */
  version: string | null;
}

export interface ZipLimits {
  maxEntries: number;
  maxPickleBytes: number;
}

/**
 * A checkpoint of our model has 2 records, 1 pickle and under 100 storages, and its pickle is a
 * few KiB: these bounds are far above any real file and far below trouble.
 */
export const ZIP_LIMITS: ZipLimits = { maxEntries: 10_000, maxPickleBytes: 16 * 1024 * 1024 };

const MAX_RECORD_BYTES = 256;
/** Small text records that torch.save versions write beside data.pkl; read and checked, or ignored. */
const RECORDS = new Set(['version', '.data/version', 'byteorder', '.data/serialization_id', '.format_version', '.storage_alignment']);
const STORAGE_KEY = /^[A-Za-z0-9_]{1,64}$/;
const ZIP_MAGIC = [0x50, 0x4b, 0x03, 0x04];

/** A zip's local-file-header magic, and not a safetensors header length that happens to start the same way (its JSON begins at byte 8). */
export function isZip(bytes: Uint8Array): boolean {
  return bytes.length >= 30 && ZIP_MAGIC.every((b, i) => bytes[i] === b) && bytes[8] !== 0x7b;
}

export function readTorchArchive(bytes: Uint8Array, fileLabel: string, limits: ZipLimits = ZIP_LIMITS): TorchArchive {
  // Typed explicitly so that calls narrow like `throw` does.
  const fail: (message: string, details?: Record<string, unknown>) => never = (message, details = {}) => {
    throw new QuadraError('INVALID_FILE', `${fileLabel}: ${message}`, { file: fileLabel, ...details });
  };
  if (!isZip(bytes)) fail('not a zip archive (a torch.save file starts with "PK\\x03\\x04")');

  // Set inside fflate's callback, so kept in an object the compiler does not narrow.
  const seen: { root: string | null } = { root: null };
  let count = 0;
  const declared = new Map<string, number>();
  const filter = (info: UnzipFileInfo): boolean => {
    count++;
    if (count > limits.maxEntries) fail(`the zip archive has more than ${limits.maxEntries} entries; a checkpoint has a few dozen`);
    const name = info.name;
    if (declared.has(name)) fail(`entry "${name}" appears twice in the zip archive`, { entry: name });
    const slash = name.indexOf('/');
    if (slash <= 0) fail(`entry "${name}" is not inside a folder; torch.save puts every entry in one`, { entry: name });
    const folder = name.slice(0, slash);
    seen.root ??= folder;
    if (folder !== seen.root) fail(`entries in two folders ("${seen.root}/" and "${folder}/"); torch.save writes one`, { entry: name });
    const rest = name.slice(slash + 1);
    const isStorage = rest.startsWith('data/') && STORAGE_KEY.test(rest.slice(5));
    const wanted = rest === 'data.pkl' || isStorage || RECORDS.has(rest);
    if (!wanted) return false; // never decompressed, never read
    if (info.compression !== 0) {
      fail(`entry "${name}" is compressed (zip method ${info.compression}); torch.save stores every entry uncompressed`, { entry: name });
    }
    if (info.size !== info.originalSize) fail(`entry "${name}" is stored with ${info.size} bytes but says it holds ${info.originalSize}`, { entry: name });
    if (rest === 'data.pkl' && info.size > limits.maxPickleBytes) {
      fail(`data.pkl is ${info.size} bytes, over the limit of ${limits.maxPickleBytes} bytes (a checkpoint's is a few KiB)`, { entry: name });
    }
    if (RECORDS.has(rest) && info.size > MAX_RECORD_BYTES) fail(`record "${name}" is ${info.size} bytes, expected a short line of text`, { entry: name });
    declared.set(name, info.size);
    return true;
  };

  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes, { filter });
  } catch (error) {
    if (error instanceof QuadraError) throw error;
    return fail(`not a readable zip archive (${(error as Error).message}; truncated?)`);
  }
  if (seen.root === null) return fail('the zip archive is empty');
  const folder = seen.root;

  for (const [name, size] of declared) {
    const got = files[name]?.length ?? 0;
    // fflate clamps an entry that runs past the end of the file; a short entry means a cut file.
    if (got !== size) fail(`entry "${name}" is truncated: ${got} of its ${size} bytes are in the file`, { entry: name });
  }
  const pickle = files[`${folder}/data.pkl`];
  if (!pickle) return fail(`no "${folder}/data.pkl" in the zip archive — not a torch.save checkpoint`);
  const text = (rest: string): string | null => {
    const record = files[`${folder}/${rest}`];
    return record ? new TextDecoder('utf-8', { fatal: false }).decode(record).trim() : null;
  };
  const byteOrder = text('byteorder');
  if (byteOrder !== null && byteOrder !== 'little') fail(`the storages are "${byteOrder}"-endian; only little-endian files are read`, { entry: `${folder}/byteorder` });

  const storages = new Map<string, Uint8Array>();
  const prefix = `${folder}/data/`;
  for (const [name, data] of Object.entries(files)) {
    if (name.startsWith(prefix)) storages.set(name.slice(prefix.length), data);
  }
  return { root: folder, pickle, storages, version: text('version') ?? text('.data/version') };
}
