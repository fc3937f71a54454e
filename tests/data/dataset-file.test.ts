import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuadraError } from '../../src-shared/errors';
import { loadDatasetFile, previewDataset } from '../../src-main/data/dataset-file';
import { serializeNpy } from '../../src-main/data/npy';

const SAMPLES = fileURLToPath(new URL('../../resources/datasets/', import.meta.url));

let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quadra-dataset-file-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function write(name: string, content: string | Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

/** A float64 .npy (NumPy's default dtype) from plain numbers. */
function npyF64(values: number[], shape: number[]): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const header = `{'descr': '<f8', 'fortran_order': False, 'shape': ${shapeText}, }`.padEnd(117, ' ') + '\n';
  const out = new Uint8Array(10 + header.length + values.length * 8);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  values.forEach((value, i) => view.setFloat64(10 + header.length + i * 8, value, true));
  return out;
}

async function expectError(
  promise: Promise<unknown>,
  code: string,
  fragments: string[],
  details?: Record<string, unknown>,
): Promise<QuadraError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(QuadraError);
  const error = caught as QuadraError;
  expect(error.code).toBe(code);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
  if (details !== undefined) expect(error.details).toEqual(details);
  return error;
}

describe('loadDatasetFile: npy', () => {
  it('loads a 2-D float32 array with the sha256 of its bytes', async () => {
    const bytes = serializeNpy(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
    const path = await write('matrix.npy', bytes);
    const loaded = await loadDatasetFile(path);
    expect(loaded).toEqual({
      kind: 'npy',
      sourcePath: path,
      rows: 2,
      width: 3,
      data: new Float32Array([1, 2, 3, 4, 5, 6]),
      sha256: createHash('sha256').update(bytes).digest('hex'),
      header: null,
    });
  });

  it('treats a 1-D array as one row', async () => {
    const loaded = await loadDatasetFile(await write('vector.npy', serializeNpy(new Float32Array([7, 8, 9, 10]), [4])));
    expect(loaded.rows).toBe(1);
    expect(loaded.width).toBe(4);
  });

  it('reads float64 and matches the extension case-insensitively', async () => {
    const loaded = await loadDatasetFile(await write('upper.NPY', npyF64([0.5, -1.25], [1, 2])));
    expect(loaded.kind).toBe('npy');
    expect(loaded.data).toEqual(new Float32Array([0.5, -1.25]));
  });

  it.each([
    ['NaN', Number.NaN, 'value is NaN'],
    ['Infinity', Number.POSITIVE_INFINITY, 'value is Infinity'],
    ['-Infinity', Number.NEGATIVE_INFINITY, 'value is -Infinity'],
  ])('rejects %s naming the 1-based row and column', async (_name, bad, text) => {
    const data = new Float32Array(12);
    data[1 * 4 + 2] = bad; // row 2, column 3
    const path = await write('bad.npy', serializeNpy(data, [3, 4]));
    await expectError(loadDatasetFile(path), 'INVALID_FILE', ['bad.npy: row 2, column 3: ', text, 'not accepted'], {
      file: 'bad.npy',
      row: 2,
      column: 3,
    });
  });

  it('explains that a float64 beyond the float32 range becomes infinite', async () => {
    const path = await write('huge.npy', npyF64([1, 2, 1e300], [3]));
    await expectError(loadDatasetFile(path), 'INVALID_FILE', ['row 1, column 3', 'outside the float32 range']);
  });

  it.each([
    ['(0, 100)', [0, 100]],
    ['(5, 0)', [5, 0]],
    ['(0,)', [0]],
  ])('rejects an empty array of shape %s', async (shapeText, shape) => {
    const path = await write('empty.npy', serializeNpy(new Float32Array(0), shape));
    await expectError(loadDatasetFile(path), 'INVALID_FILE', [`empty.npy: array has shape ${shapeText.replace(',)', ')')}`, 'no values']);
  });

  it('passes on parse errors from the npy reader', async () => {
    const path = await write('junk.npy', 'not numpy at all');
    await expectError(loadDatasetFile(path), 'INVALID_FILE', ['junk.npy: not a .npy file']);
  });
});

describe('loadDatasetFile: csv', () => {
  it('loads rows, width and the header', async () => {
    const content = 'a,b,c\n1,2,3\n4,5,6\n';
    const path = await write('table.csv', content);
    const loaded = await loadDatasetFile(path, { expectedWidth: 3 });
    expect(loaded.kind).toBe('csv');
    expect(loaded.rows).toBe(2);
    expect(loaded.width).toBe(3);
    expect(loaded.header).toEqual(['a', 'b', 'c']);
    expect(loaded.data).toEqual(new Float32Array([1, 2, 3, 4, 5, 6]));
    expect(loaded.sha256).toBe(createHash('sha256').update(content).digest('hex'));
  });

  it.each([
    ['NaN', '1,2\n3,NaN\n', 'line 2, column 2: "NaN" is not finite', { line: 2, column: 2 }],
    ['Inf', '1,2\n-inf,4\n', 'line 2, column 1: "-inf" is not finite', { line: 2, column: 1 }],
    ['a non-numeric cell', 'x,y\n1,2\n3,abc\n', 'line 3, column 2: "abc" is not a number', { line: 3, column: 2 }],
    ['an empty cell', '1,2\n3,\n', 'line 2, column 2: empty cell', { line: 2, column: 2 }],
    ['a ragged row', '1,2,3\n4,5\n', 'line 2 has 2 columns, expected 3', { line: 2 }],
  ])('rejects %s naming the line and column', async (_name, content, message, where) => {
    const path = await write('bad.csv', content);
    await expectError(loadDatasetFile(path), 'INVALID_FILE', [`bad.csv: ${message}`], { file: 'bad.csv', ...where });
  });

  it.each([
    ['an empty file', '', 'no data rows'],
    ['only a header', 'a,b\n', 'only the header'],
  ])('rejects %s', async (_name, content, message) => {
    const path = await write('empty.csv', content);
    await expectError(loadDatasetFile(path), 'INVALID_FILE', ['empty.csv: ', message]);
  });

  it('rejects bytes that are not UTF-8', async () => {
    const path = await write('latin1.csv', new Uint8Array([0x31, 0x2c, 0xe9, 0x0a]));
    await expectError(loadDatasetFile(path), 'INVALID_FILE', ['latin1.csv: is not UTF-8 text']);
  });
});

describe('loadDatasetFile: text', () => {
  it.each(['.txt', '.text', '.md'])('turns %s files into hashed features', async (extension) => {
    const path = await write(`words${extension}`, 'one two\n\n***\nthree\n');
    const loaded = await loadDatasetFile(path);
    expect(loaded.kind).toBe('text');
    expect(loaded.rows).toBe(2);
    expect(loaded.width).toBe(100);
    expect(loaded.header).toBeNull();
    expect(loaded.skippedLines).toBe(1);
    expect(loaded.data.length).toBe(200);
  });

  it('uses textWidth, else expectedWidth, for the width', async () => {
    const path = await write('words.txt', 'alpha beta\n');
    expect((await loadDatasetFile(path, { expectedWidth: 32 })).width).toBe(32);
    expect((await loadDatasetFile(path, { textWidth: 16 })).width).toBe(16);
    await expectError(loadDatasetFile(path, { textWidth: 16, expectedWidth: 32 }), 'SHAPE_MISMATCH', ['rows have 16 values']);
  });

  it('rejects a file without any words', async () => {
    await expectError(loadDatasetFile(await write('empty.txt', '')), 'INVALID_FILE', ['empty.txt: no text to turn into features']);
    await expectError(loadDatasetFile(await write('dashes.md', '---\n')), 'INVALID_FILE', ['dashes.md: no text to turn into features']);
  });
});

describe('loadDatasetFile: checks', () => {
  it('reports a width that differs from the field size as SHAPE_MISMATCH with the fix', async () => {
    const path = await write('wide.csv', '1,2,3,4,5\n');
    await expectError(
      loadDatasetFile(path, { expectedWidth: 100 }),
      'SHAPE_MISMATCH',
      [
        "wide.csv: rows have 5 values but the model's field size is 100 — set the field size to 5 (e.g. --field-size 5) to train on this file",
      ],
      { file: 'wide.csv', width: 5, expected: 100 },
    );
    const npy = await write('wide.npy', serializeNpy(new Float32Array(6), [2, 3]));
    await expectError(loadDatasetFile(npy, { expectedWidth: 4 }), 'SHAPE_MISMATCH', ['rows have 3 values'], {
      file: 'wide.npy',
      width: 3,
      expected: 4,
    });
  });

  it.each([
    ['data.json', "has the extension '.json'"],
    ['data.tsv', "has the extension '.tsv'"],
    ['README', 'has no extension'],
  ])('rejects %s naming the extension and the accepted ones', async (name, message) => {
    const path = await write(name, '1,2\n');
    await expectError(loadDatasetFile(path), 'INVALID_FILE', [`${name}: ${message}`, '.npy', '.csv', '.txt/.text/.md']);
  });

  it('reports read errors as IO_ERROR with the OS code', async () => {
    const missing = join(dir, 'missing.csv');
    await expectError(loadDatasetFile(missing), 'IO_ERROR', [missing, 'ENOENT'], { file: missing, osCode: 'ENOENT' });
    const folder = join(dir, 'folder.csv');
    await mkdir(folder);
    await expectError(loadDatasetFile(folder), 'IO_ERROR', [folder, 'EISDIR'], { file: folder, osCode: 'EISDIR' });
  });

  it.each([
    [{ expectedWidth: 0 }],
    [{ expectedWidth: 2.5 }],
    [{ textWidth: -1 }],
  ])('rejects bad options %j', async (options) => {
    await expectError(loadDatasetFile(join(dir, 'unused.csv'), options), 'INVALID_ARGUMENT', ['must be a whole number']);
  });
});

describe('sample datasets', () => {
  it('sample-numeric.csv has 1,000 rows of 100 columns named f0..f99', async () => {
    const path = join(SAMPLES, 'sample-numeric.csv');
    const loaded = await loadDatasetFile(path, { expectedWidth: 100 });
    expect(loaded.kind).toBe('csv');
    expect(loaded.rows).toBe(1000);
    expect(loaded.width).toBe(100);
    expect(loaded.header).toEqual(Array.from({ length: 100 }, (_, i) => `f${i}`));
    expect(loaded.sha256).toBe(createHash('sha256').update(await readFile(path)).digest('hex'));
  });

  it('sample-text.txt turns into rows of width 100', async () => {
    const loaded = await loadDatasetFile(join(SAMPLES, 'sample-text.txt'), { expectedWidth: 100 });
    expect(loaded.kind).toBe('text');
    expect(loaded.width).toBe(100);
    expect(loaded.rows).toBeGreaterThanOrEqual(300);
    expect(loaded.rows).toBeLessThanOrEqual(600);
    expect(loaded.skippedLines).toBe(24);
  });
});

describe('previewDataset', () => {
  it('returns the first rows as plain arrays', async () => {
    const loaded = await loadDatasetFile(await write('preview.csv', '1,2\n3,4\n5,6\n'));
    expect(previewDataset(loaded, 2)).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(previewDataset(loaded)).toHaveLength(3);
    expect(previewDataset(loaded, 0)).toEqual([]);
    expect(() => previewDataset(loaded, -1)).toThrow(QuadraError);
  });
});
