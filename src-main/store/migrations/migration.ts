import type Database from 'better-sqlite3';

/** One schema version. `up` runs inside the transaction that also sets PRAGMA user_version. */
export interface Migration {
  /** The PRAGMA user_version the database has once this migration is applied. */
  version: number;
  name: string;
  up(db: Database.Database): void;
}
