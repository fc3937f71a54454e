/**
 * What every repository shares: the connection, the file name for messages, the clock, and the
 * one place SQLite failures become QuadraErrors.
 */
import Database from 'better-sqlite3';
import { QuadraError } from '../../src-shared/errors';

export const BUSY_TIMEOUT_MS = 5000;

/** Turns a SqliteError into a QuadraError that names the file and says what to do; anything else is returned as is. */
export function toStoreError(error: unknown, file: string, action: string, writing: boolean): unknown {
  if (!(error instanceof Database.SqliteError)) return error;
  const code = error.code;
  const details = { file, action, sqliteCode: code };
  const nothingWritten = writing ? '; nothing was written' : '';
  const io = (reason: string) => new QuadraError('IO_ERROR', `${file}: could not ${action}: ${reason}${nothingWritten}`, details);
  if (code === 'SQLITE_FULL') return io('the disk is full (or the database reached its size limit) — free some space and try again');
  if (code === 'SQLITE_READONLY_DIRECTORY') {
    return io('the database is read-only: its folder is not writable, and SQLite needs to create the -wal and -shm files there');
  }
  if (code.startsWith('SQLITE_READONLY')) {
    return io('the database is read-only (it was opened read-only, or the file or its folder is not writable)');
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return io(`the database is locked by another process (waited ${BUSY_TIMEOUT_MS} ms) — try again when it finishes`);
  }
  if (code.startsWith('SQLITE_IOERR')) return io(`the disk reported an I/O error (${code})`);
  if (code.startsWith('SQLITE_CANTOPEN')) return io('the database file could not be opened (does its folder exist, and may this user write there?)');
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new QuadraError('INVALID_FILE', `${file}: could not ${action}: the file is not a SQLite database, or it is damaged (${error.message})`, details);
  }
  if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
    return new QuadraError('NOT_FOUND', `${file}: could not ${action}: it refers to a record that does not exist`, details);
  }
  if (code.startsWith('SQLITE_CONSTRAINT')) {
    return new QuadraError('INVALID_ARGUMENT', `${file}: could not ${action}: ${error.message}`, details);
  }
  return error;
}

export class StoreContext {
  readonly db: Database.Database;
  readonly file: string;
  readonly #now: () => Date;

  constructor(db: Database.Database, file: string, now: () => Date) {
    this.db = db;
    this.file = file;
    this.#now = now;
  }

  /** The current time as stored: an ISO 8601 string, which sorts like the time it names. */
  now(): string {
    return this.#now().toISOString();
  }

  /** Runs a write (callers make multi-statement writes one transaction), mapping SQLite failures. */
  write<T>(action: string, fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw toStoreError(error, this.file, action, true);
    }
  }

  read<T>(action: string, fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw toStoreError(error, this.file, action, false);
    }
  }
}

/** JSON text for a column; values JSON cannot hold (undefined, functions, BigInt, cycles) are INVALID_ARGUMENT. */
export function toJsonText(value: unknown, label: string, requireObject = false): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new QuadraError('INVALID_ARGUMENT', `${label} cannot be stored as JSON: ${(error as Error).message}`);
  }
  if (text === undefined) throw new QuadraError('INVALID_ARGUMENT', `${label} cannot be stored as JSON (it is ${typeof value})`);
  if (requireObject && (typeof value !== 'object' || value === null || Array.isArray(value))) {
    throw new QuadraError('INVALID_ARGUMENT', `${label} must be a JSON object`);
  }
  return text;
}

export function notFound(what: string, id: number | string): QuadraError {
  return new QuadraError('NOT_FOUND', `${what} ${id} does not exist`, { id });
}

export function assertWholeNumber(value: number, label: string, min = 0): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new QuadraError('INVALID_ARGUMENT', `${label} must be a whole number of at least ${min} (got ${value})`);
  }
}

export function assertOneOf<T extends string>(value: string, allowed: readonly T[], label: string): asserts value is T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new QuadraError('INVALID_ARGUMENT', `${label} must be one of ${allowed.join(', ')} (got '${value}')`);
  }
}
