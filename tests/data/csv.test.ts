import { describe, expect, it } from 'vitest';
import { parseNumericCsv } from '../../src-main/data/csv';
import { expectQuadraErrorSync } from '../helpers/errors';

const FILE = 'data.csv';

function expectInvalid(text: string, message: string, details: Record<string, unknown>): void {
  const error = expectQuadraErrorSync(() => parseNumericCsv(text, FILE), 'INVALID_FILE', message);
  expect(error.message.startsWith(`${FILE}: `)).toBe(true);
  expect(error.details).toEqual({ file: FILE, ...details });
}

describe('parseNumericCsv', () => {
  it('reads a headerless matrix row-major', () => {
    expect(parseNumericCsv('1,2,3\n4,5,6\n', FILE)).toEqual({
      rows: 2,
      cols: 3,
      data: new Float32Array([1, 2, 3, 4, 5, 6]),
      header: null,
    });
  });

  it('reads a header when a first-line cell is not a number', () => {
    const matrix = parseNumericCsv('x, y ,"label"\n1,2,3\n', FILE);
    expect(matrix.header).toEqual(['x', 'y', 'label']);
    expect(matrix.rows).toBe(1);
    expect(matrix.data).toEqual(new Float32Array([1, 2, 3]));
  });

  it('treats a header with an empty first cell (as pandas writes) as a header', () => {
    const matrix = parseNumericCsv(',a,b\n0,1.5,2\n', FILE);
    expect(matrix.header).toEqual(['', 'a', 'b']);
    expect(matrix.data).toEqual(new Float32Array([0, 1.5, 2]));
  });

  it('accepts decimal and exponent notation, signs, quotes, spaces, CRLF and a BOM', () => {
    const matrix = parseNumericCsv('\uFEFF1, -2.5 ,3e-4\r\n".5",+7,1.\r\n-0,1E3,"  4  "\r\n', FILE);
    expect(matrix.rows).toBe(3);
    expect(matrix.cols).toBe(3);
    expect(matrix.header).toBeNull();
    expect(matrix.data).toEqual(new Float32Array([1, -2.5, 3e-4, 0.5, 7, 1, -0, 1000, 4]));
  });

  it('strips a BOM before a header', () => {
    expect(parseNumericCsv('\uFEFFa,b\n1,2', FILE).header).toEqual(['a', 'b']);
  });

  it('skips blank lines anywhere but reports real line numbers', () => {
    const text = '\n\na,b\n\n1,2\n   \n3,4\n\n\n';
    const matrix = parseNumericCsv(text, FILE);
    expect(matrix.rows).toBe(2);
    expect(matrix.data).toEqual(new Float32Array([1, 2, 3, 4]));
    expectInvalid('\na,b\n\n1,2\n\n3,x\n', 'line 6, column 2: "x" is not a number', { line: 6, column: 2 });
  });

  it('rounds values to float32', () => {
    expect(parseNumericCsv('0.1', FILE).data[0]).toBe(Math.fround(0.1));
    expect(parseNumericCsv('3.4028234e38', FILE).data[0]).toBe(3.4028234663852886e38);
  });

  it('rejects non-numeric cells with line and column', () => {
    expectInvalid('a,b,c\n1,2,3\n4,5,abc\n', 'data.csv: line 3, column 3: "abc" is not a number', {
      line: 3,
      column: 3,
    });
  });

  it.each(['0x10', '1_000', '1,5e', '--1', '1e', 'e5', '12abc'])('rejects %s', (cell) => {
    const text = `a,b\n1,${cell}\n`;
    // A cell with a comma splits into more columns; anything else is reported as not a number.
    if (cell.includes(',')) {
      expectInvalid(text, 'line 2 has 3 columns, expected 2 (as on line 1)', { line: 2 });
    } else {
      expectInvalid(text, `line 2, column 2: "${cell}" is not a number`, { line: 2, column: 2 });
    }
  });

  it.each(['NaN', 'nan', 'Infinity', '-Infinity', 'inf', '-inf', '+INF'])('rejects non-finite %s', (cell) => {
    expectInvalid(
      `1,2\n3,${cell}\n`,
      `data.csv: line 2, column 2: "${cell}" is not finite — NaN/Inf values are not accepted`,
      { line: 2, column: 2 },
    );
  });

  it('rejects NaN on the first line instead of taking it for a header', () => {
    expectInvalid('1,nan\n2,3\n', 'line 1, column 2: "nan" is not finite', { line: 1, column: 2 });
    expectInvalid('0x10,1\n', 'line 1, column 1: "0x10" is not a number', { line: 1, column: 1 });
  });

  it('rejects values that overflow float32', () => {
    expectInvalid('1,2\n3,1e39\n', 'line 2, column 2: "1e39" is outside the float32 range', {
      line: 2,
      column: 2,
    });
    expectInvalid('-1e400\n', 'line 1, column 1: "-1e400" is outside the float32 range', {
      line: 1,
      column: 1,
    });
  });

  it('rejects empty cells', () => {
    expectInvalid('1,2\n3,\n', 'line 2, column 2: empty cell', { line: 2, column: 2 });
    expectInvalid('1,2\n"",4\n', 'line 2, column 1: empty cell', { line: 2, column: 1 });
    expectInvalid('1,,3\n', 'line 1, column 2: empty cell', { line: 1, column: 2 });
  });

  it('rejects ragged rows, naming the line that set the width', () => {
    expectInvalid(
      'a,b,c,d,e\n1,2,3,4,5\n\n1,2,3,4\n',
      'data.csv: line 4 has 4 columns, expected 5 (as on line 1)',
      { line: 4 },
    );
    expectInvalid('\n\n1,2\n1,2,3\n', 'line 4 has 3 columns, expected 2 (as on line 3)', { line: 4 });
  });

  it('rejects a non-numeric row after the header', () => {
    expectInvalid('a,b\nc,d\n', 'line 2, column 1: "c" is not a number', { line: 2, column: 1 });
  });

  it('rejects an empty file and a header-only file', () => {
    expectInvalid('', 'data.csv: file has no data rows', {});
    expectInvalid('\uFEFF\r\n  \n', 'file has no data rows', {});
    expectInvalid('a,b\n\n', 'file has no data rows (only the header on line 1)', {});
  });

  it('shortens very long cells in messages', () => {
    const long = 'x'.repeat(500);
    let message = '';
    try {
      parseNumericCsv(`1\n${long}\n`, FILE);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('"xxxxxxxx');
    expect(message.length).toBeLessThan(200);
  });
});
