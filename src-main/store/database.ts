/**
 * Opens the one SQLite file everything is recorded in: checks its schema version before
 * writing anything, sets the connection up, applies pending migrations, and hands out the
 * repositories. One process writes; others may read (WAL lets them do so at the same time).
 */
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { QuadraError } from '../../src-shared/errors';
import { BenchmarkRepository } from './benchmarks';
import { CheckpointRepository } from './checkpoints';
import { BUSY_TIMEOUT_MS, StoreContext, toStoreError } from './context';
import { DatasetRepository } from './datasets';
import { MetricRepository } from './metrics';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, type Migration } from './migrations/index';
import { RunRepository } from './runs';

/** Past this, the WAL file is truncated back after a checkpoint (checkpoint blobs would otherwise leave it large). */
const JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

export interface OpenStoreOptions {
  /** Open without the right to write: no migrations, and every write fails with IO_ERROR. */
  readonly?: boolean;
  /** The clock for createdAt/startedAt/endedAt stamps (tests). */
  now?: () => Date;
}

export interface Store {
  readonly db: Database.Database;
  readonly file: string;
  readonly readonly: boolean;
  readonly datasets: DatasetRepository;
  readonly runs: RunRepository;
  readonly metrics: MetricRepository;
  readonly checkpoints: CheckpointRepository;
  readonly benchmarks: BenchmarkRepository;
  /** Gives the space of deleted rows (checkpoint blobs) back to the disk. */
  reclaimSpace(): void;
  close(): void;
}

const isInMemory = (file: string) => file === ':memory:' || file === '';

function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

function newerSchemaError(file: string, version: number): QuadraError {
  return new QuadraError(
    'UNSUPPORTED',
    `${file}: database schema version ${version} is newer than this app's (${LATEST_SCHEMA_VERSION}) — it was written by a newer Quadra Workstation; update the app (the file was not changed)`,
    { file, version, supported: LATEST_SCHEMA_VERSION },
  );
}

function applyMigration(db: Database.Database, file: string, migration: Migration): void {
  // IMMEDIATE and a second look at the version: two processes opening a new file at once
  // must not both create the tables.
  db.transaction(() => {
    const current = userVersion(db);
    if (current > LATEST_SCHEMA_VERSION) throw newerSchemaError(file, current);
    if (current >= migration.version) return;
    migration.up(db);
    // PRAGMA takes no parameters; the version is a whole number from our own registry.
    db.pragma(`user_version = ${migration.version}`);
  }).immediate();
}

function configure(db: Database.Database, readonly: boolean, version: number): void {
  if (!readonly) {
    // Only possible before the first table exists; lets reclaimSpace() shrink the file after deletes.
    if (version === 0 && (db.pragma('page_count', { simple: true }) as number) === 0) db.pragma('auto_vacuum = INCREMENTAL');
    // Readers (the CLI, the app) never block the writer, nor it them.
    db.pragma('journal_mode = WAL');
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT_BYTES}`);
  }
  db.pragma('foreign_keys = ON');
  // In WAL mode NORMAL never corrupts the database; a power loss may drop the last committed
  // transactions, which for metrics and checkpoints a training run rewrites anyway, while FULL
  // would fsync on every metrics tick.
  db.pragma('synchronous = NORMAL');
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
}

function prepareFile(file: string, readonly: boolean): void {
  if (isInMemory(file)) return;
  if (readonly) {
    if (!existsSync(file)) throw new QuadraError('NOT_FOUND', `${file}: there is no database here to open read-only`, { file });
    return;
  }
  try {
    mkdirSync(path.dirname(file), { recursive: true });
  } catch (error) {
    throw new QuadraError('IO_ERROR', `${file}: could not create the database's folder: ${(error as Error).message}`, { file });
  }
}

/**
 * Opens (creating it if needed, unless read-only) the database at `file`. A database written by
 * a newer app is refused with UNSUPPORTED and left byte for byte as it was.
 */
export function openStore(file: string, options: OpenStoreOptions = {}): Store {
  const readonly = options.readonly ?? false;
  prepareFile(file, readonly);
  let db: Database.Database;
  try {
    db = new Database(file, { readonly, fileMustExist: readonly, timeout: BUSY_TIMEOUT_MS });
  } catch (error) {
    throw toStoreError(error, file, 'open the database', false);
  }
  try {
    // Before anything that writes: even switching to WAL changes the file.
    const version = userVersion(db);
    if (version > LATEST_SCHEMA_VERSION) throw newerSchemaError(file, version);
    if (version === 0) {
      const objects = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'").get() as { n: number };
      if (objects.n > 0) {
        throw new QuadraError('INVALID_FILE', `${file}: this SQLite database was not made by Quadra Workstation (it has tables but no schema version); choose another file`, { file });
      }
    }
    if (readonly && version < LATEST_SCHEMA_VERSION) {
      throw new QuadraError(
        'UNSUPPORTED',
        `${file}: database schema version ${version} is older than this app's (${LATEST_SCHEMA_VERSION}) and it was opened read-only; open it once for writing to upgrade it`,
        { file, version, supported: LATEST_SCHEMA_VERSION },
      );
    }
    configure(db, readonly, version);
    if (!readonly) for (const migration of MIGRATIONS) if (migration.version > version) applyMigration(db, file, migration);
    return createStore(new StoreContext(db, file, options.now ?? (() => new Date())), readonly);
  } catch (error) {
    db.close();
    throw toStoreError(error, file, 'open the database', !readonly);
  }
}

function createStore(ctx: StoreContext, readonly: boolean): Store {
  const db = ctx.db;
  return {
    db,
    file: ctx.file,
    readonly,
    datasets: new DatasetRepository(ctx),
    runs: new RunRepository(ctx),
    metrics: new MetricRepository(ctx),
    checkpoints: new CheckpointRepository(ctx),
    benchmarks: new BenchmarkRepository(ctx),
    reclaimSpace() {
      ctx.write('reclaim free space', () => {
        db.pragma('incremental_vacuum');
        if (!isInMemory(ctx.file)) db.pragma('wal_checkpoint(TRUNCATE)');
      });
    },
    close() {
      if (!db.open) return;
      // Keeps the query planner's statistics fresh, as SQLite recommends before closing.
      if (!readonly) {
        try {
          db.pragma('optimize');
        } catch {
          // A full or read-only disk must not stop the close.
        }
      }
      db.close();
    },
  };
}
