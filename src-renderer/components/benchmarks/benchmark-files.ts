import { z } from 'zod';
import { BENCHMARK_BACKENDS } from '../../../src-shared/benchmarks';
import { SPIKE_GRADIENTS } from '../../../src-shared/engine-config';
import type { BenchmarkResultRecord } from '../../../src-shared/records';
import { errorMessage } from '../../lib/errors';

/**
 * Benchmark results as files, so results measured on different machines can be compared side by
 * side: JSON keeps every field; CSV is one row per configuration with the fingerprint as
 * `fingerprint.<key>` columns, for spreadsheets. Both read back into the same records.
 */

export const BENCHMARK_FILE_FORMAT = 'quadra-benchmarks';

export interface BenchmarkFile {
  suiteName: string;
  results: BenchmarkResultRecord[];
}

const spread = z.object({ median: z.number().finite(), min: z.number().finite(), max: z.number().finite() });
const result = z.object({
  id: z.number().int(),
  suiteId: z.number().int(),
  backend: z.enum(BENCHMARK_BACKENDS),
  workers: z.number().int().min(1),
  batchSize: z.number().int().min(1),
  spikeGradient: z.enum(SPIKE_GRADIENTS),
  trainSamplesPerSec: spread,
  forwardSamplesPerSec: spread,
  fingerprint: z.record(z.string(), z.string()),
  createdAt: z.string(),
});
const jsonFile = z.object({
  format: z.literal(BENCHMARK_FILE_FORMAT),
  version: z.literal(1),
  suite: z.object({ name: z.string() }),
  results: z.array(result),
});

export function toJson(file: BenchmarkFile): string {
  return `${JSON.stringify({ format: BENCHMARK_FILE_FORMAT, version: 1, suite: { name: file.suiteName }, results: file.results }, null, 2)}\n`;
}

const FIXED_COLUMNS = [
  'suite',
  'backend',
  'workers',
  'batch_size',
  'spike_gradient',
  'train_median',
  'train_min',
  'train_max',
  'forward_median',
  'forward_min',
  'forward_max',
  'created_at',
] as const;
const FINGERPRINT_PREFIX = 'fingerprint.';

export function toCsv(file: BenchmarkFile): string {
  const keys = [...new Set(file.results.flatMap((r) => Object.keys(r.fingerprint)))];
  const header = [...FIXED_COLUMNS, ...keys.map((k) => FINGERPRINT_PREFIX + k)];
  const rows = file.results.map((r) => [
    file.suiteName,
    r.backend,
    r.workers,
    r.batchSize,
    r.spikeGradient,
    r.trainSamplesPerSec.median,
    r.trainSamplesPerSec.min,
    r.trainSamplesPerSec.max,
    r.forwardSamplesPerSec.median,
    r.forwardSamplesPerSec.min,
    r.forwardSamplesPerSec.max,
    r.createdAt,
    ...keys.map((k) => r.fingerprint[k] ?? ''),
  ]);
  return [header, ...rows].map((row) => row.map((cell) => csvCell(String(cell))).join(',')).join('\r\n') + '\r\n';
}

/** Reads a file written by toJson or toCsv; the error names the file and what is wrong with it. */
export function parseBenchmarkFile(fileName: string, text: string): BenchmarkFile {
  const trimmed = text.trimStart();
  const parsed = trimmed.startsWith('{') ? parseJson(fileName, trimmed) : parseCsv(fileName, text);
  if (parsed.results.length === 0) throw new Error(`${fileName}: the file holds no benchmark results`);
  return parsed;
}

function parseJson(fileName: string, text: string): BenchmarkFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`${fileName}: not valid JSON (${errorMessage(error)})`, { cause: error });
  }
  const checked = jsonFile.safeParse(raw);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new Error(`${fileName}: not a Quadra benchmark export — ${issue ? `${issue.path.join('.') || '(file)'}: ${issue.message}` : 'unknown shape'}`);
  }
  return { suiteName: checked.data.suite.name, results: checked.data.results };
}

function parseCsv(fileName: string, text: string): BenchmarkFile {
  const [header, ...rows] = readCsv(text).filter((row) => row.some((cell) => cell !== ''));
  if (!header) throw new Error(`${fileName}: the file is empty`);
  const missing = FIXED_COLUMNS.filter((c) => !header.includes(c));
  if (missing.length > 0) throw new Error(`${fileName}: not a Quadra benchmark CSV — missing column${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`);
  const at = (row: string[], column: string) => row[header.indexOf(column)] ?? '';
  const results = rows.map((row, index) => {
    const line = index + 2;
    const num = (column: string) => {
      const value = Number(at(row, column));
      if (at(row, column) === '' || !Number.isFinite(value)) throw new Error(`${fileName}, line ${line}: ${column} is not a number ('${at(row, column)}')`);
      return value;
    };
    const candidate = {
      id: index + 1,
      suiteId: 0,
      backend: at(row, 'backend'),
      workers: num('workers'),
      batchSize: num('batch_size'),
      spikeGradient: at(row, 'spike_gradient'),
      trainSamplesPerSec: { median: num('train_median'), min: num('train_min'), max: num('train_max') },
      forwardSamplesPerSec: { median: num('forward_median'), min: num('forward_min'), max: num('forward_max') },
      fingerprint: Object.fromEntries(
        header.flatMap((column, i) => (column.startsWith(FINGERPRINT_PREFIX) && row[i] ? [[column.slice(FINGERPRINT_PREFIX.length), row[i]]] : [])),
      ),
      createdAt: at(row, 'created_at'),
    };
    const checked = result.safeParse(candidate);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      throw new Error(`${fileName}, line ${line}: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid row'}`);
    }
    return checked.data;
  });
  return { suiteName: at(rows[0] ?? [], 'suite') || fileName, results };
}

function csvCell(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/** RFC 4180: quoted cells may hold commas, doubled quotes and line breaks. */
function readCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += c;
  }
  if (cell !== '' || row.length > 0) rows.push([...row, cell]);
  return rows;
}
