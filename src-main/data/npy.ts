/**
 * NumPy .npy files (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
 * magic "\x93NUMPY", major/minor version, a little-endian header length (u16 in 1.0, u32 in
 * 2.0/3.0), then a Python-literal dict header and the raw array data. Pure: bytes in, bytes out.
 */
import { QuadraError } from '../../src-shared/errors';

export interface NpyArray {
  shape: number[];
  data: Float32Array;
  sourceDtype: '<f4' | '<f8';
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
const DATA_ALIGNMENT = 64;
const ITEM_SIZES = { '<f4': 4, '<f8': 8 } as const;
const ACCEPTED_DTYPES = "expected little-endian float32 '<f4' or float64 '<f8'";

type PyValue = string | number | boolean | null | PyValue[] | { [key: string]: PyValue };

export function parseNpy(bytes: Uint8Array, fileLabel: string): NpyArray {
  const fail = (message: string): never => {
    throw new QuadraError('INVALID_FILE', `${fileLabel}: ${message}`, { file: fileLabel });
  };

  if (MAGIC.some((byte, i) => bytes[i] !== byte)) {
    fail('not a .npy file (missing the "\\x93NUMPY" magic at the start)');
  }
  if (bytes.length < 8) {
    fail(`header is truncated: file is ${bytes.length} bytes, expected at least 10`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const minor = bytes[7];
  if (!((major === 1 || major === 2 || major === 3) && minor === 0)) {
    fail(`unknown .npy format version ${major}.${minor}, expected 1.0, 2.0 or 3.0`);
  }
  const lengthBytes = major === 1 ? 2 : 4;
  const prefixBytes = 8 + lengthBytes;
  if (bytes.length < prefixBytes) {
    fail(`header is truncated: file is ${bytes.length} bytes, expected at least ${prefixBytes}`);
  }
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataStart = prefixBytes + headerLength;
  if (bytes.length < dataStart) {
    fail(
      `header is truncated: it declares ${headerLength} bytes but only ${bytes.length - prefixBytes} follow`,
    );
  }
  let headerText = '';
  try {
    // 1.0/2.0 headers are latin-1; 3.0 allows UTF-8. Dicts NumPy writes are ASCII either way.
    headerText = new TextDecoder(major === 3 ? 'utf-8' : 'latin1', { fatal: true }).decode(
      bytes.subarray(prefixBytes, dataStart),
    );
  } catch {
    fail('header is not valid UTF-8 text');
  }

  let header: PyValue = null;
  try {
    header = parsePythonLiteral(headerText);
  } catch (error) {
    fail(
      `header dict could not be parsed (${(error as Error).message}), expected e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`,
    );
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    return fail('header is not a dict, expected keys descr, fortran_order and shape');
  }
  const { descr, fortran_order: fortranOrder, shape } = header;
  if (typeof descr !== 'string') {
    return fail(`header "descr" is ${describe(descr)}, ${ACCEPTED_DTYPES}`);
  }
  if (descr !== '<f4' && descr !== '<f8') {
    return fail(`dtype '${descr}' is not supported, ${ACCEPTED_DTYPES}`);
  }
  if (fortranOrder === true) {
    fail('array is stored in Fortran (column-major) order, expected C order (fortran_order False)');
  }
  if (fortranOrder !== false) {
    fail(`header "fortran_order" is ${describe(fortranOrder)}, expected False`);
  }
  if (
    !Array.isArray(shape) ||
    !shape.every((dim) => typeof dim === 'number' && Number.isSafeInteger(dim) && dim >= 0)
  ) {
    return fail(`header "shape" is ${describe(shape)}, expected a tuple of non-negative integers`);
  }
  const dims = shape as number[];
  if (dims.length !== 1 && dims.length !== 2) {
    fail(`array is ${dims.length}-D with shape (${dims.join(', ')}), expected a 1-D or 2-D array`);
  }

  const itemSize = ITEM_SIZES[descr];
  const count = dims.reduce((total, dim) => total * dim, 1);
  const expectedBytes = count * itemSize;
  const actualBytes = bytes.length - dataStart;
  if (actualBytes !== expectedBytes) {
    fail(
      `data is ${actualBytes} bytes, expected ${expectedBytes} bytes for dtype '${descr}' and shape (${dims.join(', ')})`,
    );
  }
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    data[i] =
      itemSize === 4
        ? view.getFloat32(dataStart + i * 4, true)
        : view.getFloat64(dataStart + i * 8, true);
  }
  return { shape: [...dims], data, sourceDtype: descr };
}

export function serializeNpy(data: Float32Array, shape: number[]): Uint8Array {
  if (shape.length !== 1 && shape.length !== 2) {
    throw new QuadraError(
      'INVALID_ARGUMENT',
      `shape [${shape.join(',')}] is ${shape.length}-D, expected a 1-D or 2-D shape`,
      { shape },
    );
  }
  if (!shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
    throw new QuadraError(
      'INVALID_ARGUMENT',
      `shape [${shape.join(',')}] must contain non-negative integers`,
      { shape },
    );
  }
  const count = shape.reduce((total, dim) => total * dim, 1);
  if (count !== data.length) {
    throw new QuadraError(
      'INVALID_ARGUMENT',
      `shape [${shape.join(',')}] holds ${count} values but data has ${data.length}`,
      { shape, length: data.length },
    );
  }

  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape[0]}, ${shape[1]})`;
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const prefixBytes = 10;
  // Pad with spaces before the final newline so the data starts on a 64-byte boundary.
  const headerLength =
    Math.ceil((prefixBytes + dict.length + 1) / DATA_ALIGNMENT) * DATA_ALIGNMENT - prefixBytes;
  const out = new Uint8Array(prefixBytes + headerLength + count * 4);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  view.setUint16(8, headerLength, true);
  out.set(new TextEncoder().encode(dict.padEnd(headerLength - 1, ' ') + '\n'), prefixBytes);
  const dataStart = prefixBytes + headerLength;
  for (let i = 0; i < count; i++) view.setFloat32(dataStart + i * 4, data[i]!, true);
  return out;
}

/**
 * Parses the subset of Python literals NumPy writes in headers: dicts, tuples, lists, strings,
 * integers, True/False/None. Throws a plain Error with the position on anything else.
 */
function parsePythonLiteral(text: string): PyValue {
  let position = 0;
  const error = (what: string): Error => new Error(`${what} at character ${position + 1}`);
  const skipSpace = (): void => {
    while (position < text.length && /\s/.test(text.charAt(position))) position++;
  };

  const parseValue = (): PyValue => {
    skipSpace();
    const char = text[position];
    if (char === '{') return parseDict();
    if (char === '(') return parseSequence(')');
    if (char === '[') return parseSequence(']');
    if (char === "'" || char === '"') return parseString();
    const word = /^(True|False|None)\b/.exec(text.slice(position));
    if (word !== null) {
      const literal = word[1] as 'True' | 'False' | 'None';
      position += literal.length;
      return literal === 'True' ? true : literal === 'False' ? false : null;
    }
    const integer = /^[-+]?\d+L?/.exec(text.slice(position));
    if (integer !== null) {
      position += integer[0].length;
      return Number(integer[0].replace(/L$/, ''));
    }
    throw error(char === undefined ? 'unexpected end' : `unexpected "${char}"`);
  };

  const parseString = (): string => {
    const quote = text[position];
    position++;
    let value = '';
    while (position < text.length && text[position] !== quote) {
      if (text[position] === '\\') position++;
      value += text[position];
      position++;
    }
    if (position >= text.length) throw error('unterminated string');
    position++;
    return value;
  };

  const parseSequence = (close: ')' | ']'): PyValue[] => {
    position++;
    const items: PyValue[] = [];
    for (;;) {
      skipSpace();
      if (text[position] === close) {
        position++;
        return items;
      }
      items.push(parseValue());
      skipSpace();
      if (text[position] === ',') position++;
      else if (text[position] !== close) throw error(`expected "," or "${close}"`);
    }
  };

  const parseDict = (): { [key: string]: PyValue } => {
    position++;
    const entries: [string, PyValue][] = [];
    for (;;) {
      skipSpace();
      if (text[position] === '}') {
        position++;
        return Object.fromEntries(entries);
      }
      const key = parseValue();
      if (typeof key !== 'string') throw error('expected a string key');
      skipSpace();
      if (text[position] !== ':') throw error('expected ":"');
      position++;
      entries.push([key, parseValue()]);
      skipSpace();
      if (text[position] === ',') position++;
      else if (text[position] !== '}') throw error('expected "," or "}"');
    }
  };

  const value = parseValue();
  skipSpace();
  if (position !== text.length) throw error('unexpected text after the dict');
  return value;
}

function describe(value: PyValue | undefined): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'None';
  if (Array.isArray(value)) return `(${value.map((item) => describe(item)).join(', ')})`;
  if (typeof value === 'object') return 'a dict';
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  return String(value);
}
