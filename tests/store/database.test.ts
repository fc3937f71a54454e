import Database from 'better-sqlite3';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStore } from '../../src-main/store/database';
import { LATEST_SCHEMA_VERSION } from '../../src-main/store/migrations/index';
import { defaultDatabasePath } from '../../src-main/store/paths';
import { expectIntegrityOk, expectQuadraError, NEW_RUN, sha256File, tempDir, testStore } from './helpers';

describe('openStore', () => {
  it('creates the folder and the file, in WAL mode with foreign keys, synchronous NORMAL and a busy timeout', () => {
    const file = path.join(tempDir(), 'nested', 'deeper', 'quadra.sqlite');
    const store = testStore(file);
    expect(existsSync(file)).toBe(true);
    expect(store.file).toBe(file);
    expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(store.db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(store.db.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
    expect(store.db.pragma('busy_timeout', { simple: true })).toBe(5000);
    expect(store.db.pragma('auto_vacuum', { simple: true })).toBe(2); // INCREMENTAL
    expect(store.db.pragma('user_version', { simple: true })).toBe(LATEST_SCHEMA_VERSION);
    expectIntegrityOk(store);
  });

  it('keeps data across close and reopen, without migrating again', () => {
    const file = path.join(tempDir(), 'quadra.sqlite');
    const first = openStore(file);
    const run = first.runs.create(NEW_RUN);
    first.close();
    first.close(); // a second close is harmless

    const again = testStore(file);
    expect(again.runs.get(run.id)).toEqual(run);
    expect(again.db.pragma('user_version', { simple: true })).toBe(LATEST_SCHEMA_VERSION);
    expectIntegrityOk(again);
  });

  it('lets a second connection read while the first one is open (the CLI next to the app)', () => {
    const file = path.join(tempDir(), 'quadra.sqlite');
    const writer = testStore(file);
    const run = writer.runs.create(NEW_RUN);
    const reader = testStore(file, { readonly: true });
    expect(reader.runs.get(run.id).name).toBe('baseline');
    writer.runs.setStatus(run.id, 'running');
    expect(reader.runs.get(run.id).status).toBe('running');
    expect(reader.db.pragma('foreign_keys', { simple: true })).toBe(1);
  });

  it('refuses a database from a newer app and leaves the file byte-identical', () => {
    const dir = tempDir();
    const file = path.join(dir, 'quadra.sqlite');
    const store = openStore(file);
    store.runs.create(NEW_RUN);
    store.close();
    const raw = new Database(file);
    raw.pragma(`user_version = ${LATEST_SCHEMA_VERSION + 5}`);
    raw.close();
    const before = sha256File(file);
    const filesBefore = readdirSync(dir).sort();

    const error = expectQuadraError(
      () => openStore(file),
      'UNSUPPORTED',
      `${file}: database schema version ${LATEST_SCHEMA_VERSION + 5} is newer than this app's (${LATEST_SCHEMA_VERSION}) — it was written by a newer Quadra Workstation; update the app (the file was not changed)`,
    );
    expect(error.details).toMatchObject({ version: LATEST_SCHEMA_VERSION + 5, supported: LATEST_SCHEMA_VERSION });
    expect(sha256File(file)).toBe(before);
    expect(readdirSync(dir).sort()).toEqual(filesBefore);
    // A read-only connection to a WAL database leaves its (empty) -wal and -shm behind, as
    // SQLite always does; the database file itself is untouched.
    expectQuadraError(() => openStore(file, { readonly: true }), 'UNSUPPORTED', 'is newer than');
    expect(sha256File(file)).toBe(before);
  });

  it('refuses a newer database in rollback-journal mode without switching it to WAL', () => {
    const file = path.join(tempDir(), 'future.sqlite');
    const raw = new Database(file);
    raw.exec('CREATE TABLE future (x INTEGER)');
    raw.pragma('user_version = 999');
    raw.close();
    const before = sha256File(file);
    expectQuadraError(() => openStore(file), 'UNSUPPORTED', 'schema version 999 is newer');
    expect(sha256File(file)).toBe(before);
    const check = new Database(file, { readonly: true });
    expect(check.pragma('journal_mode', { simple: true })).toBe('delete');
    check.close();
  });

  it('refuses a SQLite database that is not ours, and a file that is not SQLite', () => {
    const dir = tempDir();
    const foreign = path.join(dir, 'other.sqlite');
    const raw = new Database(foreign);
    raw.exec('CREATE TABLE contacts (name TEXT)');
    raw.close();
    const before = sha256File(foreign);
    expectQuadraError(() => openStore(foreign), 'INVALID_FILE', 'was not made by Quadra Workstation');
    expect(sha256File(foreign)).toBe(before);

    const text = path.join(dir, 'notes.txt');
    writeFileSync(text, 'these are not the pages you are looking for '.repeat(100));
    expectQuadraError(() => openStore(text), 'INVALID_FILE', 'not a SQLite database');
  });

  it('opens read-only only an existing, up-to-date database', () => {
    const dir = tempDir();
    expectQuadraError(() => openStore(path.join(dir, 'missing.sqlite'), { readonly: true }), 'NOT_FOUND', 'no database here');
    expect(readdirSync(dir)).toEqual([]);

    const old = path.join(dir, 'old.sqlite');
    new Database(old).close();
    expectQuadraError(() => openStore(old, { readonly: true }), 'UNSUPPORTED', `schema version 0 is older than this app's (${LATEST_SCHEMA_VERSION})`);
  });

  it('works in memory', () => {
    const store = testStore(':memory:');
    expect(store.db.pragma('journal_mode', { simple: true })).toBe('memory');
    expect(store.db.pragma('foreign_keys', { simple: true })).toBe(1);
    expectIntegrityOk(store);
  });

  it('gives deleted checkpoint space back with reclaimSpace', () => {
    const file = path.join(tempDir(), 'quadra.sqlite');
    const store = testStore(file);
    const run = store.runs.create(NEW_RUN);
    for (let i = 0; i < 4; i++) store.checkpoints.add({ runId: run.id, epoch: i, step: i, validationLoss: null, trainLoss: 1, data: new Uint8Array(1 << 20).fill(i) });
    const pagesWithBlobs = store.db.pragma('page_count', { simple: true }) as number;
    store.runs.remove(run.id);
    store.reclaimSpace();
    expect(store.db.pragma('freelist_count', { simple: true })).toBe(0);
    expect(store.db.pragma('page_count', { simple: true }) as number).toBeLessThan(pagesWithBlobs / 10);
    expectIntegrityOk(store);
  });
});

describe('defaultDatabasePath', () => {
  const file = 'quadra.sqlite';
  const product = 'Quadra Matrix Workstation';

  it('uses QUADRA_DB when set', () => {
    expect(defaultDatabasePath({ QUADRA_DB: '/data/q.sqlite', HOME: '/home/ada' }, 'linux')).toBe('/data/q.sqlite');
  });

  it('follows Electron userData on Linux: XDG_CONFIG_HOME, else ~/.config', () => {
    expect(defaultDatabasePath({ HOME: '/home/ada', XDG_CONFIG_HOME: '/xdg' }, 'linux')).toBe(`/xdg/${product}/${file}`);
    expect(defaultDatabasePath({ HOME: '/home/ada' }, 'linux')).toBe(`/home/ada/.config/${product}/${file}`);
    expect(defaultDatabasePath({ HOME: '/home/ada', XDG_CONFIG_HOME: '', QUADRA_DB: '' }, 'linux')).toBe(`/home/ada/.config/${product}/${file}`);
  });

  it('on macOS: ~/Library/Application Support', () => {
    expect(defaultDatabasePath({ HOME: '/Users/ada' }, 'darwin')).toBe(`/Users/ada/Library/Application Support/${product}/${file}`);
  });

  it('on Windows: %APPDATA%', () => {
    expect(defaultDatabasePath({ APPDATA: 'C:\\Users\\ada\\AppData\\Roaming' }, 'win32')).toBe(`C:\\Users\\ada\\AppData\\Roaming\\${product}\\${file}`);
    expect(defaultDatabasePath({ USERPROFILE: 'C:\\Users\\bo' }, 'win32')).toBe(`C:\\Users\\bo\\AppData\\Roaming\\${product}\\${file}`);
  });
});
