/**
 * Numeric CSV matrices: comma separated, optional header line, every data cell a finite
 * decimal number that fits in float32. Pure: text in, matrix out.
 */
import { QuadraError } from '../../src-shared/errors';

export interface NumericMatrix {
  rows: number;
  cols: number;
  /** Row-major, rows × cols. */
  data: Float32Array;
  header: string[] | null;
}

const DECIMAL_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const NON_FINITE_WORD = /^[+-]?(nan|inf|infinity)$/i;
const FLOAT32_MAX = 3.4028234663852886e38;
const MAX_CELL_CHARS_IN_MESSAGE = 40;

export function parseNumericCsv(text: string, fileLabel: string): NumericMatrix {
  const lines = (text.startsWith('\uFEFF') ? text.slice(1) : text).split(/\r?\n/);
  const fail = (message: string, line?: number, column?: number): never => {
    const details: Record<string, unknown> = { file: fileLabel };
    if (line !== undefined) details.line = line;
    if (column !== undefined) details.column = column;
    throw new QuadraError('INVALID_FILE', `${fileLabel}: ${message}`, details);
  };

  let header: string[] | null = null;
  let cols = -1;
  let firstLine = 0;
  let rows = 0;
  const values: number[] = [];

  for (const [index, line] of lines.entries()) {
    if (line.trim() === '') continue;
    const lineNumber = index + 1;
    const cells = line.split(',').map(cleanCell);

    if (cols === -1) {
      cols = cells.length;
      firstLine = lineNumber;
      // Empty and NaN/Inf/hex-looking cells don't make a header: they are bad data, reported below.
      if (cells.some((cell) => cell !== '' && !looksNumeric(cell))) {
        header = cells;
        continue;
      }
    } else if (cells.length !== cols) {
      fail(
        `line ${lineNumber} has ${cells.length} columns, expected ${cols} (as on line ${firstLine})`,
        lineNumber,
      );
    }

    for (const [column, cell] of cells.entries()) values.push(parseCell(cell, lineNumber, column + 1, fail));
    rows++;
  }

  if (rows === 0) {
    fail(
      header === null
        ? 'file has no data rows (it is empty), expected at least one row of numbers'
        : `file has no data rows (only the header on line ${firstLine}), expected at least one row of numbers`,
    );
  }
  return { rows, cols, data: Float32Array.from(values), header };
}

function cleanCell(raw: string): string {
  const cell = raw.trim();
  if (cell.length >= 2 && cell.startsWith('"') && cell.endsWith('"')) return cell.slice(1, -1).trim();
  return cell;
}

function looksNumeric(cell: string): boolean {
  return !Number.isNaN(Number(cell)) || NON_FINITE_WORD.test(cell);
}

function parseCell(
  cell: string,
  line: number,
  column: number,
  fail: (message: string, line?: number, column?: number) => never,
): number {
  const where = `line ${line}, column ${column}`;
  if (cell === '') return fail(`${where}: empty cell, expected a number`, line, column);
  if (NON_FINITE_WORD.test(cell)) {
    return fail(
      `${where}: ${quote(cell)} is not finite — NaN/Inf values are not accepted`,
      line,
      column,
    );
  }
  if (!DECIMAL_NUMBER.test(cell)) {
    return fail(
      `${where}: ${quote(cell)} is not a number, expected a decimal like 1, -2.5 or 3e-4`,
      line,
      column,
    );
  }
  const value = Number(cell);
  if (!Number.isFinite(Math.fround(value))) {
    return fail(
      `${where}: ${quote(cell)} is outside the float32 range (magnitude at most ${FLOAT32_MAX.toPrecision(8)})`,
      line,
      column,
    );
  }
  return value;
}

function quote(cell: string): string {
  const shown =
    cell.length > MAX_CELL_CHARS_IN_MESSAGE ? `${cell.slice(0, MAX_CELL_CHARS_IN_MESSAGE)}…` : cell;
  return JSON.stringify(shown);
}
