/**
 * The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian u64
 * header length N, N bytes of UTF-8 JSON header, then the byte buffer the header's
 * `data_offsets` point into. Pure: bytes in, bytes out.
 */
import { QuadraError } from '../../src-shared/errors';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Always decoded to float32 and always a fresh copy, never a view of the input. */
  data: Float32Array;
}

export interface SafetensorsFile {
  /** In file-header order. */
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

export interface ParseOptions {
  /** Default 100 MiB. */
  maxHeaderBytes?: number;
  /** Default true. */
  rejectNonFinite?: boolean;
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array;
}

const DEFAULT_MAX_HEADER_BYTES = 100 * 1024 * 1024;
const HEADER_PREFIX_BYTES = 8;
const METADATA_KEY = '__metadata__';
const ACCEPTED_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16'];
const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };
const FLOAT16_MAX = 65504;

interface HeaderEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

export function parseSafetensors(
  bytes: Uint8Array,
  fileLabel: string,
  options: ParseOptions = {},
): SafetensorsFile {
  const maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const rejectNonFinite = options.rejectNonFinite ?? true;
  const fail = (message: string, tensor?: string): never => {
    throw new QuadraError(
      'INVALID_FILE',
      `${fileLabel}: ${message}`,
      tensor === undefined ? { file: fileLabel } : { file: fileLabel, tensor },
    );
  };

  if (bytes.length < HEADER_PREFIX_BYTES) {
    fail(
      `file is ${bytes.length} bytes long, expected at least ${HEADER_PREFIX_BYTES} bytes (the header length)`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  const available = bytes.length - HEADER_PREFIX_BYTES;
  if (headerLength > BigInt(maxHeaderBytes)) {
    fail(`header length ${headerLength} bytes exceeds the limit of ${maxHeaderBytes} bytes`);
  }
  if (headerLength > BigInt(available)) {
    fail(
      `header length ${headerLength} bytes exceeds the ${available} bytes that follow the length prefix (file truncated?)`,
    );
  }
  const headerEnd = HEADER_PREFIX_BYTES + Number(headerLength);

  let header: unknown;
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(
      bytes.subarray(HEADER_PREFIX_BYTES, headerEnd),
    );
    header = JSON.parse(text);
  } catch (error) {
    fail(`header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (!isPlainObject(header)) {
    fail(`header is ${describeJson(header)}, expected a JSON object`);
  }
  const headerObject = header as Record<string, unknown>;

  const metadata = parseMetadata(headerObject[METADATA_KEY], fail);
  const bufferLength = bytes.length - headerEnd;
  const entries: HeaderEntry[] = [];
  const seen = new Set<string>();
  // Object.entries would move integer-like names ("0", "1") first; the text keeps the file's order.
  for (const name of topLevelKeys(text)) {
    if (seen.has(name)) fail(`tensor "${name}" appears more than once in the header`, name);
    seen.add(name);
    if (name === METADATA_KEY) continue;
    entries.push(parseEntry(name, headerObject[name], bufferLength, fail));
  }
  checkNoOverlap(entries, fail);

  const tensors = new Map<string, SafetensorsTensor>();
  for (const entry of entries) {
    const data = decodeTensor(view, headerEnd + entry.begin, entry.dtype, entry.end - entry.begin);
    if (rejectNonFinite) {
      const badIndex = data.findIndex((value) => !Number.isFinite(value));
      if (badIndex !== -1) {
        fail(
          `tensor "${entry.name}" has a non-finite value (${data[badIndex]}) at flat index ${badIndex}, expected only finite values`,
          entry.name,
        );
      }
    }
    tensors.set(entry.name, { dtype: entry.dtype, shape: entry.shape, data });
  }
  return { tensors, metadata };
}

export function serializeSafetensors(
  tensors: TensorToWrite[],
  metadata: Record<string, string>,
  options: { dtype?: 'F32' | 'F16' } = {},
): Uint8Array {
  const dtype = options.dtype ?? 'F32';
  const fail = (message: string, tensor?: string): never => {
    throw new QuadraError(
      'INVALID_ARGUMENT',
      message,
      tensor === undefined ? undefined : { tensor },
    );
  };

  // Written as [key, value] pairs because an object would reorder integer-like tensor names.
  const header: [string, unknown][] = [];
  if (Object.keys(metadata).length > 0) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        fail(`metadata "${key}" is ${describeJson(value)}, expected a string`);
      }
    }
    header.push([METADATA_KEY, metadata]);
  }

  const seen = new Set<string>();
  let offset = 0;
  for (const tensor of tensors) {
    if (tensor.name === METADATA_KEY) {
      fail(`tensor name "${METADATA_KEY}" is reserved for metadata`, tensor.name);
    }
    if (seen.has(tensor.name)) {
      fail(`tensor "${tensor.name}" appears more than once, expected unique names`, tensor.name);
    }
    seen.add(tensor.name);
    if (!tensor.shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
      fail(
        `tensor "${tensor.name}" has shape [${tensor.shape.join(',')}], expected non-negative integers`,
        tensor.name,
      );
    }
    const elements = product(tensor.shape);
    if (elements !== tensor.data.length) {
      fail(
        `tensor "${tensor.name}" has shape [${tensor.shape.join(',')}] (${elements} elements) but ${tensor.data.length} values`,
        tensor.name,
      );
    }
    if (dtype === 'F16') {
      const tooLarge = tensor.data.findIndex(
        (value) => Number.isFinite(value) && Math.abs(value) > FLOAT16_MAX,
      );
      if (tooLarge !== -1) {
        fail(
          `tensor "${tensor.name}" value ${tensor.data[tooLarge]} at flat index ${tooLarge} is outside the F16 range (magnitude at most ${FLOAT16_MAX})`,
          tensor.name,
        );
      }
    }
    const byteLength = elements * DTYPE_BYTES[dtype];
    header.push([
      tensor.name,
      { dtype, shape: tensor.shape, data_offsets: [offset, offset + byteLength] },
    ]);
    offset += byteLength;
  }

  const members = header.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`);
  const json = `{${members.join(',')}}`;
  const encoded = new TextEncoder().encode(json);
  // Pad with spaces so the byte buffer starts 8-byte aligned, as the reference writer does.
  const headerLength = Math.ceil((HEADER_PREFIX_BYTES + encoded.length) / 8) * 8 - HEADER_PREFIX_BYTES;
  const out = new Uint8Array(HEADER_PREFIX_BYTES + headerLength + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerLength), true);
  out.set(encoded, HEADER_PREFIX_BYTES);
  out.fill(0x20, HEADER_PREFIX_BYTES + encoded.length, HEADER_PREFIX_BYTES + headerLength);

  let position = HEADER_PREFIX_BYTES + headerLength;
  for (const tensor of tensors) {
    for (const value of tensor.data) {
      if (dtype === 'F16') {
        view.setUint16(position, float32ToFloat16Bits(value), true);
        position += 2;
      } else {
        view.setFloat32(position, value, true);
        position += 4;
      }
    }
  }
  return out;
}

/** IEEE 754 binary16 bits of a float32 value: round-to-nearest-even, overflow → ±Inf, subnormals kept. */
export function float32ToFloat16Bits(value: number): number {
  const scratch = new DataView(new ArrayBuffer(4));
  scratch.setFloat32(0, value);
  const bits = scratch.getUint32(0);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;

  if (exponent === 0xff) {
    // Keep NaN a NaN (quiet bit set) even if its payload lives only in the low bits.
    return mantissa === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mantissa >>> 13);
  }
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Subnormal half (or zero): shift the mantissa with its implicit leading 1 into place.
    if (halfExponent < -10) return sign;
    const full = mantissa | 0x800000;
    const shift = 14 - halfExponent;
    return sign | roundShiftRightEven(full, shift);
  }
  // Normal: a carry out of the mantissa correctly bumps the exponent (up to Inf).
  return sign | ((halfExponent << 10) + roundShiftRightEven(mantissa, 13));
}

export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

export function bfloat16BitsToFloat32(bits: number): number {
  const scratch = new DataView(new ArrayBuffer(4));
  scratch.setUint32(0, (bits & 0xffff) << 16);
  return scratch.getFloat32(0);
}

function roundShiftRightEven(value: number, shift: number): number {
  const kept = value >>> shift;
  const remainder = value & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (remainder > half || (remainder === half && (kept & 1) === 1)) return kept + 1;
  return kept;
}

function decodeTensor(
  view: DataView,
  start: number,
  dtype: SafetensorsDtype,
  byteLength: number,
): Float32Array {
  const count = byteLength / DTYPE_BYTES[dtype];
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    if (dtype === 'F32') data[i] = view.getFloat32(start + i * 4, true);
    else if (dtype === 'F16') data[i] = float16BitsToFloat32(view.getUint16(start + i * 2, true));
    else data[i] = bfloat16BitsToFloat32(view.getUint16(start + i * 2, true));
  }
  return data;
}

function parseMetadata(
  value: unknown,
  fail: (message: string, tensor?: string) => never,
): Record<string, string> {
  if (value === undefined) return {};
  if (!isPlainObject(value)) {
    return fail(`"${METADATA_KEY}" is ${describeJson(value)}, expected an object of string values`);
  }
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== 'string') {
      fail(`"${METADATA_KEY}" field "${key}" is ${describeJson(item)}, expected a string`);
    }
  }
  // fromEntries defines own properties, so a "__proto__" key stays data.
  return Object.fromEntries(Object.entries(value)) as Record<string, string>;
}

function parseEntry(
  name: string,
  value: unknown,
  bufferLength: number,
  fail: (message: string, tensor?: string) => never,
): HeaderEntry {
  if (!isPlainObject(value)) {
    return fail(
      `tensor "${name}" header entry is ${describeJson(value)}, expected an object with dtype, shape and data_offsets`,
      name,
    );
  }
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string' || !(ACCEPTED_DTYPES as readonly string[]).includes(dtype)) {
    const found = dtype === undefined ? 'missing' : typeof dtype === 'string' ? dtype : describeJson(dtype);
    fail(
      `tensor "${name}" dtype is ${found}, expected one of ${ACCEPTED_DTYPES.join(', ')}`,
      name,
    );
  }
  const checkedDtype = dtype as SafetensorsDtype;
  if (
    !Array.isArray(shape) ||
    !shape.every((dim) => typeof dim === 'number' && Number.isSafeInteger(dim) && dim >= 0)
  ) {
    fail(
      `tensor "${name}" shape is ${JSON.stringify(shape) ?? 'missing'}, expected an array of non-negative integers`,
      name,
    );
  }
  const checkedShape = shape as number[];
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((offset) => typeof offset === 'number' && Number.isSafeInteger(offset)) ||
    !(0 <= offsets[0] && offsets[0] <= offsets[1] && offsets[1] <= bufferLength)
  ) {
    fail(
      `tensor "${name}" data_offsets ${JSON.stringify(offsets) ?? 'missing'} are invalid, expected [begin, end] integers with 0 <= begin <= end <= ${bufferLength} (the byte buffer length)`,
      name,
    );
  }
  const [begin, end] = offsets as [number, number];
  const expectedBytes = product(checkedShape) * DTYPE_BYTES[checkedDtype];
  if (end - begin !== expectedBytes) {
    fail(
      `tensor "${name}" data_offsets [${begin}, ${end}] do not match dtype ${checkedDtype} and shape [${checkedShape.join(',')}] (expected ${expectedBytes} bytes)`,
      name,
    );
  }
  return { name, dtype: checkedDtype, shape: [...checkedShape], begin, end };
}

function checkNoOverlap(
  entries: HeaderEntry[],
  fail: (message: string, tensor?: string) => never,
): void {
  // Empty tensors occupy no bytes and cannot overlap anything.
  const sorted = entries
    .filter((entry) => entry.end > entry.begin)
    .sort((a, b) => a.begin - b.begin || a.end - b.end);
  // Compare against the range reaching furthest so far, not just the previous one.
  let furthest: HeaderEntry | undefined;
  for (const current of sorted) {
    if (furthest !== undefined && current.begin < furthest.end) {
      fail(
        `tensors "${furthest.name}" [${furthest.begin}, ${furthest.end}] and "${current.name}" [${current.begin}, ${current.end}] have overlapping data_offsets, expected disjoint byte ranges`,
        current.name,
      );
    }
    if (furthest === undefined || current.end > furthest.end) furthest = current;
  }
}

/** Keys of the top-level object of already-validated JSON text, in text order. */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, end + 1)) as string);
      expectKey = false;
      i = end;
    } else if (char === '{' || char === '[') {
      depth++;
      expectKey = depth === 1;
    } else if (char === '}' || char === ']') {
      depth--;
    } else if (char === ',' && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

function product(shape: readonly number[]): number {
  return shape.reduce((total, dim) => total * dim, 1);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describeJson(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}
